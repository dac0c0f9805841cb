"""The dense family: the Keras tutorial's network, or any widths of it."""

from __future__ import annotations

import itertools

from src.core.config import N_CLASSES, N_PIXELS, Config
from src.models.compiling import compile_model
from src.models.family import Cost, Family


def widths(config: Config) -> tuple[int, ...]:
    return (N_PIXELS, *config.hidden_units, N_CLASSES)


def cost(config: Config) -> Cost:
    pairs = list(itertools.pairwise(widths(config)))
    return Cost(
        parameters=sum(fan_in * fan_out + fan_out for fan_in, fan_out in pairs),
        multiply_adds=sum(fan_in * fan_out for fan_in, fan_out in pairs),
        activations=sum(widths(config)),
    )


def build(config: Config, learning_rate):
    """Build and compile the dense network described by `config`.

    With the default config this is the tutorial's model exactly:
    784 -> Dense(20, relu) -> Dense(15, relu) -> Dense(10, softmax), each
    kernel L2(1e-2)-regularised, 16,175 parameters, Adam and categorical
    cross-entropy.
    """
    from tensorflow import keras

    hidden_layers = [
        keras.layers.Dense(
            units,
            activation="relu",
            kernel_regularizer=keras.regularizers.l2(config.l2),
            name=f"l{index}",
        )
        for index, units in enumerate(config.hidden_units, start=1)
    ]
    model = keras.Sequential(
        [
            keras.Input(shape=(N_PIXELS,)),
            *hidden_layers,
            keras.layers.Dense(
                N_CLASSES,
                activation="softmax",
                kernel_regularizer=keras.regularizers.l2(config.l2),
                name="output",
            ),
        ]
    )
    # The tutorial's loss by name; label smoothing needs the loss object.
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        if config.label_smoothing
        else "categorical_crossentropy"
    )
    compile_model(model, config, learning_rate, loss)
    return model


def short_name(config: Config) -> str:
    return "h" + "-".join(str(units) for units in config.hidden_units)


FAMILY = Family(name="dense", cost=cost, build=build, short_name=short_name)
