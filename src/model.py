"""The model families: the tutorial's dense network and convolutional networks."""

from __future__ import annotations

from tensorflow import keras

from .augmentation import build_augmentation
from .config import DOWNSAMPLINGS, IMAGE_SIDE, N_CLASSES, N_PIXELS, PADDINGS, Config
from .schedules import learning_rate_schedule


def build_model(config: Config, steps_per_epoch: int = 1, seed: int | None = None) -> keras.Model:
    """Build and compile the model of `config.family`, with its schedule, label smoothing and augmentation.

    Args:
        config: The run's settings.
        steps_per_epoch: Training steps in an epoch, which a schedule counts in.
        seed: Seed of the augmentation's random layers (default: `config.seed`).
    """
    learning_rate = learning_rate_schedule(
        config.schedule, config.learning_rate, steps_per_epoch, config.epochs, config.decay
    )
    augmentation = None
    if config.augmented:
        augmentation = build_augmentation(
            config.augment_rotation, config.augment_zoom, config.augment_shift, config.seed if seed is None else seed
        )
    if config.family == "cnn":
        return build_cnn(
            filters=config.filters,
            convs_per_block=config.convs_per_block,
            kernel_size=config.kernel_size,
            padding=config.padding,
            downsample=config.downsample,
            downsample_kernel_size=config.downsample_kernel_size,
            batch_norm=config.batch_norm,
            dropout=config.dropout,
            dense_units=config.head_units,
            learning_rate=learning_rate,
            label_smoothing=config.label_smoothing,
            augmentation=augmentation,
        )
    return build_dense(config, learning_rate, augmentation)


def build_dense(
    config: Config,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule | None = None,
    augmentation: keras.layers.Layer | None = None,
) -> keras.Sequential:
    """Build and compile the dense network described by `config`.

    With the default config this is the tutorial's model exactly:
    784 -> Dense(20, relu) -> Dense(15, relu) -> Dense(10, softmax), each
    kernel L2(1e-2)-regularised, 16,175 parameters, Adam and categorical
    cross-entropy. `augmentation` (see `src.augmentation`) distorts the rows
    as 28x28 images first, in training only.
    """
    # The augmentation's layers work on images: the rows go through them as 28x28x1 and come back flat.
    distortion = [keras.layers.Reshape(IMAGE_SHAPE, name="image"), augmentation, keras.layers.Flatten(name="pixels")]
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
            *(distortion if augmentation is not None else []),
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
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate if learning_rate is None else learning_rate),
        loss=loss,
        metrics=["accuracy"],
    )
    return model


IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, 1)


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
