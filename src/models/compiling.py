"""What every family's model is compiled with: Adam, optionally with a moving average of the weights."""

from __future__ import annotations

from src.core.config import Config


def compile_model(model, config: Config, learning_rate, loss) -> None:
    """Compile `model` with Adam at `learning_rate` (a rate or a schedule), `loss` and accuracy.

    With `config.ema`, Adam keeps a moving average of the weights after every step,
    and Keras' `fit` writes it over the weights when training ends: the model is then
    evaluated, saved and predicted with the averaged weights. Each epoch's logged
    validation figures are still those of the weights as they were (not averaged).
    """
    from tensorflow import keras

    averaging = {"use_ema": True, "ema_momentum": config.ema} if config.ema else {}
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, **averaging),
        loss=loss,
        metrics=["accuracy"],
        steps_per_execution=config.steps_per_execution,
    )
