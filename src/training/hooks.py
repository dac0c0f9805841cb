"""Callbacks a caller adds to training, beside the trainer's own; both trainers call them the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def no_callbacks(index: int) -> list:
    return []


@dataclass(frozen=True)
class TrainingCallbacks:
    """Keras callbacks for `src.training.trainer.train`.

    Attributes:
        member: Fresh callbacks for member `index` (0-based); they see that member's own logs.
        run: Callbacks that see one set of logs per epoch for the whole run: the members' means
            when they train together (a fold ensemble's `val_accuracy` is its folds' mean), the
            first member's own when `fit` trains them one after another.
    """

    member: Callable[[int], list] = no_callbacks
    run: Sequence = field(default_factory=tuple)

    def for_fit(self, index: int) -> list:
        """What member `index`'s `fit` adds: its own callbacks, and on the first member the run's."""
        return [*self.member(index), *(self.run if index == 0 else ())]


def mean_logs(logs: dict) -> dict[str, float]:
    """Each metric's mean over the members (`logs` holds one value per member)."""
    return {name: float(sum(values) / len(values)) for name, values in logs.items()}
