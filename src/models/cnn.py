"""The convolutional family: blocks of convolutions, each ending in a halving of the image.

Each filter count is one block: `convs_per_block` convolutions of `kernel_size`,
then a halving of the image, by a stride-2 convolution of
`downsample_kernel_size` ("stride") or a 2x2 max-pool ("pool"), then dropout
(unless `block_dropout` is off). The first convolution may take a larger
`first_kernel_size` (0: `kernel_size` like the rest). The head is flatten, a
dense layer of `head_units` (none when 0) and a 10-way softmax kept in
float32, so mixed precision on a GPU still gives float32 probabilities.
Batch norm, when on, follows every convolution and the head's dense layer,
which then carry no bias; on the convolutions' maps it trains with
TensorFlow's fused kernel (`src.models.batch_norm`).

The network is written once, as a plan of layers (`plan`): `cost` walks it to
count parameters and multiply-adds and to refuse an image that shrinks to
nothing, and `build` turns it into Keras layers. `[32C3-32C3-32C5S2]-
[64C3-64C3-64C5S2]-128-10` (the `cnn-ensemble` member, 326,826 parameters) is
`filters=(32, 64), padding="valid", downsample_kernel_size=5`.
"""

from __future__ import annotations

from dataclasses import dataclass

from src.core.config import IMAGE_SIDE, N_CLASSES, N_PIXELS, Config
from src.core.errors import UserError
from src.models.compiling import compile_model
from src.models.family import Cost, Family

BATCH_NORM_VALUES = 4  # per channel: scale, offset, moving mean, moving variance


@dataclass(frozen=True)
class Layer:
    """One step of the plan: a convolution, a max-pool, or a dense layer (with its batch norm and ReLU)."""

    kind: str  # "conv", "pool" or "dense"
    name: str
    units: int = 0
    size: int = 1
    strides: int = 1
    padding: str = "same"


def plan(config: Config) -> list[Layer]:
    layers = []
    for block, units in enumerate(config.filters, start=1):
        for index in range(1, config.convs_per_block + 1):
            size = config.first_kernel_size if block == index == 1 and config.first_kernel_size else config.kernel_size
            layers.append(Layer("conv", f"block{block}_conv{index}", units, size, 1, config.padding))
        if config.downsample == "stride":
            layers.append(Layer("conv", f"block{block}_down", units, config.downsample_kernel_size, 2, "same"))
        else:
            layers.append(Layer("pool", f"block{block}_pool", units, 2, 2, "valid"))
    if config.head_units:
        layers.append(Layer("dense", "dense", config.head_units))
    return layers


def output_side(side: int, layer: Layer) -> int:
    """The image side after `layer`, as Keras computes it."""
    if layer.padding == "same":
        return -(-side // layer.strides)
    return (side - layer.size) // layer.strides + 1


def cost(config: Config) -> Cost:
    side, channels = IMAGE_SIDE, 1
    parameters = multiply_adds = 0
    activations = N_PIXELS
    batch_norm = BATCH_NORM_VALUES if config.batch_norm else 0
    for layer in plan(config):
        if layer.kind == "dense":
            break
        new_side = output_side(side, layer)
        if new_side < 1:
            raise UserError(
                f"the image shrinks to nothing at {layer.name}: a {side}x{side} map cannot take a "
                f"{layer.size}x{layer.size} {'pool' if layer.kind == 'pool' else 'convolution'} with "
                f"{layer.padding} padding; use fewer --filters blocks, --padding same or a smaller --kernel-size"
            )
        if layer.kind == "conv":
            weights = layer.size * layer.size * channels * layer.units
            parameters += weights + (layer.units * batch_norm if config.batch_norm else layer.units)
            multiply_adds += new_side * new_side * weights
            # The convolution's output, its batch norm's and its ReLU's are kept for the backward pass.
            activations += new_side * new_side * layer.units * (3 if config.batch_norm else 2)
        side, channels = new_side, layer.units
    features = side * side * channels
    if config.head_units:
        parameters += features * config.head_units + config.head_units * (batch_norm or 1)
        multiply_adds += features * config.head_units
        activations += config.head_units * 3
        features = config.head_units
    parameters += features * N_CLASSES + N_CLASSES
    multiply_adds += features * N_CLASSES
    return Cost(parameters=parameters, multiply_adds=multiply_adds, activations=activations + N_CLASSES)


def build(config: Config, learning_rate):
    """Build and compile the network of `config` on 784-pixel rows scaled to 0..1."""
    from tensorflow import keras

    from src.models.batch_norm import FusedBatchNormalization

    cost(config)  # refuses, in one line, settings that shrink the image to nothing

    def with_norm_and_relu(layer, name):
        layers = [layer]
        if config.batch_norm:
            layers.append(FusedBatchNormalization(name=f"{name}_bn"))
        layers.append(keras.layers.Activation("relu", name=f"{name}_relu"))
        return layers

    layers = [keras.Input(shape=(N_PIXELS,)), keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1), name="image")]
    for step in plan(config):
        if step.kind == "conv":
            convolution = keras.layers.Conv2D(
                step.units,
                step.size,
                strides=step.strides,
                padding=step.padding,
                use_bias=not config.batch_norm,
                name=step.name,
            )
            layers += with_norm_and_relu(convolution, step.name)
        elif step.kind == "pool":
            layers.append(keras.layers.MaxPooling2D(2, name=step.name))
        else:
            layers.append(keras.layers.Flatten(name="flatten"))
            dense = keras.layers.Dense(step.units, use_bias=not config.batch_norm, name=step.name)
            layers += with_norm_and_relu(dense, step.name)
        # Dropout closes the head, and each block (after its halving) unless it is the head's alone.
        closes_block = config.block_dropout and step.name.endswith(("_down", "_pool"))
        if config.dropout and (closes_block or step.kind == "dense"):
            layers.append(keras.layers.Dropout(config.dropout, name=f"{step.name.split('_')[0]}_dropout"))
    if not config.head_units:
        layers.append(keras.layers.Flatten(name="flatten"))
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax", dtype="float32", name="output"))
    model = keras.Sequential(layers, name="cnn")
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    compile_model(model, config, learning_rate, loss)
    return model


def short_name(config: Config) -> str:
    return "cnn" + "-".join(str(units) for units in config.filters)


FAMILY = Family(name="cnn", cost=cost, build=build, short_name=short_name)
