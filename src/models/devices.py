"""Where training runs: a GPU when TensorFlow sees one, every device when it sees several.

CNNs train in mixed precision (`mixed_float16`) on a GPU, their softmax kept in
float32. With two or more GPUs (Kaggle's "GPU T4 x2") `fit` spreads each batch
over all of them with `tf.distribute.MirroredStrategy`. The environment
variable `DIGIT_RECOGNIZER_LOGICAL_CPUS=N` splits the CPU into N logical
devices, so that the multi-device path can be tested on a machine without GPUs.
"""

from __future__ import annotations

import contextlib
import os

import tensorflow as tf
from tensorflow import keras

from src.core.errors import UserError

LOGICAL_CPUS_VARIABLE = "DIGIT_RECOGNIZER_LOGICAL_CPUS"
MIXED_PRECISION = "mixed_float16"
# The families whose layers cast their inputs, so that mixed precision is safe for them.
MIXED_PRECISION_FAMILIES = frozenset({"cnn"})


def logical_cpus_wanted() -> int:
    """The number of logical CPUs `DIGIT_RECOGNIZER_LOGICAL_CPUS` asks for; 1 when unset."""
    text = os.environ.get(LOGICAL_CPUS_VARIABLE, "").strip()
    if not text:
        return 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise UserError(f"{LOGICAL_CPUS_VARIABLE} must be a whole number of devices >= 1, got {text!r}")
    return count


def configure_devices() -> None:
    """Split the CPU as `DIGIT_RECOGNIZER_LOGICAL_CPUS` asks; must run before TensorFlow's first operation."""
    count = logical_cpus_wanted()
    if count == 1:
        return
    (cpu,) = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        # TensorFlow has started already: fine if it was split the same way.
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise UserError(f"{LOGICAL_CPUS_VARIABLE}={count} came after TensorFlow had started") from None


def training_devices() -> list[str]:
    """The devices a model trains on: every GPU, else every logical CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in gpus or tf.config.list_logical_devices("CPU")]


def distribution_strategy() -> tf.distribute.Strategy | None:
    """`MirroredStrategy` over the training devices when there are two or more; else `None` (the default device)."""
    devices = training_devices()
    if len(devices) < 2:
        return None
    return tf.distribute.MirroredStrategy(devices)


@contextlib.contextmanager
def model_scope(family: str, strategy: tf.distribute.Strategy | None):
    """Where a model is built: under `strategy`, in mixed precision for a CNN on a GPU."""
    mixed = family in MIXED_PRECISION_FAMILIES and bool(tf.config.list_logical_devices("GPU"))
    previous = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy(MIXED_PRECISION)
    try:
        with strategy.scope() if strategy else contextlib.nullcontext():
            yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
