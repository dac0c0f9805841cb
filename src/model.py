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


IMAGE_SHAPE = (28, 28, 1)
DOWNSAMPLINGS = ("stride", "pool")
PADDINGS = ("same", "valid")


def build_cnn(
    filters: tuple[int, ...] = (16, 32, 64),
    convs_per_block: int = 2,
    kernel_size: int = 3,
    padding: str = "same",
    downsample: str = "stride",
    downsample_kernel_size: int = 3,
    batch_norm: bool = True,
    dropout: float = 0.4,
    dense_units: int = 128,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    label_smoothing: float = 0.0,
    augmentation: keras.layers.Layer | None = None,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
) -> keras.Model:
    """Build and compile a convolutional network on 784-pixel rows scaled to 0..1.

    Each filter count is one block: `convs_per_block` convolutions of
    `kernel_size`, then a halving of the image, by a stride-2 convolution of
    `downsample_kernel_size` ("stride") or a 2x2 max-pool ("pool"), then
    dropout. The head is flatten, a dense layer of `dense_units` (none when 0)
    and a 10-way softmax kept in float32, so mixed precision on a GPU still
    gives float32 probabilities.

    The issue's 327k-parameter network `[32C3-32C3-32C5S2]-[64C3-64C3-64C5S2]-128C4-10`
    is `build_cnn((32, 64), padding="valid", downsample_kernel_size=5)`:
    its 128C4 on the 4x4 map left is a dense layer of 128 on that map, flattened.

    `augmentation` (see `src.augmentation`) runs on the images first; Keras'
    random layers are active in `fit` only, never in `predict`.
    """
    if not filters or min(filters) < 1:
        raise ValueError(f"filters must be one or more positive counts, got {filters!r}")
    if downsample not in DOWNSAMPLINGS:
        raise ValueError(f"downsample must be one of {DOWNSAMPLINGS}, got {downsample!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

    def convolution(units, size, strides, padding, name):
        # Batch norm takes the bias's place, so the convolution carries none then.
        layers = [
            keras.layers.Conv2D(units, size, strides=strides, padding=padding, use_bias=not batch_norm, name=name)
        ]
        if batch_norm:
            layers.append(keras.layers.BatchNormalization(name=f"{name}_bn"))
        layers.append(keras.layers.Activation("relu", name=f"{name}_relu"))
        return layers

    layers = [keras.Input(shape=(N_PIXELS,)), keras.layers.Reshape(IMAGE_SHAPE, name="image")]
    if augmentation is not None:
        layers.append(augmentation)
    for block, units in enumerate(filters, start=1):
        for index in range(1, convs_per_block + 1):
            layers += convolution(units, kernel_size, 1, padding, f"block{block}_conv{index}")
        if downsample == "stride":
            layers += convolution(units, downsample_kernel_size, 2, "same", f"block{block}_down")
        else:
            layers.append(keras.layers.MaxPooling2D(2, name=f"block{block}_pool"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name=f"block{block}_dropout"))
    layers.append(keras.layers.Flatten(name="flatten"))
    if dense_units:
        layers.append(keras.layers.Dense(dense_units, use_bias=not batch_norm, name="dense"))
        if batch_norm:
            layers.append(keras.layers.BatchNormalization(name="dense_bn"))
        layers.append(keras.layers.Activation("relu", name="dense_relu"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name="dense_dropout"))
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax", dtype="float32", name="output"))
    model = keras.Sequential(layers, name="cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model
