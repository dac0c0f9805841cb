"""What a model family declares: its settings group, its builder, its cost and its short name.

A family is one module of `src.models` holding a `FAMILY`, and one line in
`src.models.registry`. Everything here but `build` is plain Python, so that a
run's settings are checked (shapes, size, memory) before TensorFlow loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from src.core.config import Config

BYTES_PER_FLOAT = 4
# Per member: the weights, their gradients and Adam's two moments.
WEIGHT_COPIES = 4
# Per image in a batch: each layer's output kept for the backward pass, and its gradient.
ACTIVATION_COPIES = 2


@dataclass(frozen=True)
class Cost:
    """What one member's network costs, counted from the settings without building it.

    Attributes:
        parameters: Weights, as Keras counts them (batch norm's four per channel included).
        multiply_adds: Multiply-adds of one image's forward pass (convolutions and dense layers).
        activations: Floats one image's forward pass keeps for the backward pass.
    """

    parameters: int
    multiply_adds: int
    activations: int

    def training_bytes(self, batch_size: int, members_at_once: int = 1) -> int:
        """A rough estimate of training memory: weights and optimizer state, and one batch's activations."""
        per_member = WEIGHT_COPIES * self.parameters + ACTIVATION_COPIES * batch_size * self.activations
        return per_member * BYTES_PER_FLOAT * members_at_once


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: The `--family` value.
        cost: The network's `Cost` for a config; raises `UserError` for settings that cannot build
            (an image that shrinks to nothing), before anything loads.
        build: The compiled Keras model for a config and a learning rate (or schedule); imports TensorFlow.
        short_name: The network's shape in a run folder's name, e.g. `h20-15` or `cnn32-64`.
    """

    name: str
    cost: Callable[[Config], Cost]
    build: Callable
    short_name: Callable[[Config], str]


def count_text(count: int) -> str:
    """A count as a summary line shows it: `16,130` below a million, `15.2 M` above."""
    return f"{count:,}" if count < 1_000_000 else f"{count / 1e6:,.1f} M"
