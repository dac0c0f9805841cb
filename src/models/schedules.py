"""Learning-rate schedules: each a function of the optimizer's step count, as Keras applies them."""

from __future__ import annotations

import math

from tensorflow import keras

from src.core.config import SCHEDULES

# One-cycle's shape (Smith, 2018, as fastai sets it): a quarter of the steps warming
# up from max/25, the rest annealing along a cosine to max/25e4.
ONE_CYCLE_WARMUP_SHARE = 0.25
ONE_CYCLE_START_DIVISOR = 25.0
ONE_CYCLE_END_DIVISOR = 25e4


@keras.utils.register_keras_serializable(package="digit_recognizer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine warm-up from `maximum / start_divisor` to `maximum`, then cosine down to `maximum / end_divisor`."""

    def __init__(
        self,
        maximum: float,
        total_steps: int,
        warmup_share: float = ONE_CYCLE_WARMUP_SHARE,
        start_divisor: float = ONE_CYCLE_START_DIVISOR,
        end_divisor: float = ONE_CYCLE_END_DIVISOR,
    ):
        if total_steps < 1:
            raise ValueError(f"total_steps must be at least 1, got {total_steps!r}")
        if not 0.0 < warmup_share < 1.0:
            raise ValueError(f"warmup_share must be in (0, 1), got {warmup_share!r}")
        self.maximum = maximum
        self.total_steps = total_steps
        self.warmup_share = warmup_share
        self.start_divisor = start_divisor
        self.end_divisor = end_divisor

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup_steps = self.total_steps * self.warmup_share
        start, end = self.maximum / self.start_divisor, self.maximum / self.end_divisor
        rising = keras.ops.clip(step / warmup_steps, 0.0, 1.0)
        falling = keras.ops.clip((step - warmup_steps) / (self.total_steps - warmup_steps), 0.0, 1.0)
        # Each half is a cosine from its first value (progress 0) to its last (progress 1).
        up = _cosine_between(start, self.maximum, rising)
        down = _cosine_between(self.maximum, end, falling)
        return keras.ops.where(step < warmup_steps, up, down)

    def get_config(self):
        return {
            "maximum": self.maximum,
            "total_steps": self.total_steps,
            "warmup_share": self.warmup_share,
            "start_divisor": self.start_divisor,
            "end_divisor": self.end_divisor,
        }


def _cosine_between(first, last, progress):
    return last + (first - last) * (1.0 + keras.ops.cos(math.pi * progress)) / 2.0


def learning_rate_schedule(
    name: str, learning_rate: float, steps_per_epoch: int, epochs: int, decay: float = 0.95
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate (or schedule) to give the optimizer, by `name`.

    "constant": `learning_rate` throughout.
    "exponential": `learning_rate * decay**epoch`, changing at each epoch's first step.
    "one-cycle": `OneCycle` peaking at `learning_rate` over all `epochs`.
    "cosine": `learning_rate` annealed along a cosine to zero over all `epochs`.
    """
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"steps_per_epoch and epochs must be at least 1, got {steps_per_epoch!r} and {epochs!r}")
    total_steps = steps_per_epoch * epochs
    if name == "constant":
        return learning_rate
    if name == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=steps_per_epoch, decay_rate=decay, staircase=True
        )
    if name == "one-cycle":
        return OneCycle(learning_rate, total_steps)
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")
