"""The tutorial's plain dense network."""

from __future__ import annotations

from tensorflow import keras

from .config import N_CLASSES, N_PIXELS, Config


def build_model(config: Config) -> keras.Sequential:
    """Build and compile the dense network described by `config`.

    With the default config this is the tutorial's model exactly:
    784 -> Dense(20, relu) -> Dense(15, relu) -> Dense(10, softmax), each
    kernel L2(1e-2)-regularised, 16,175 parameters, Adam and categorical
    cross-entropy.
    """
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
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
