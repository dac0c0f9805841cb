"""The fused batch norm: Keras' layer, computed in one operation each way while training on image maps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from src.models.batch_norm import FusedBatchNormalization

CHANNELS = 6


def pair(shape, momentum=0.9, dtype=None):
    """Keras' batch norm and the fused one, built on `shape` with the same random scale and offset."""
    keras_layer = keras.layers.BatchNormalization(momentum=momentum, dtype=dtype)
    fused_layer = FusedBatchNormalization(momentum=momentum, dtype=dtype)
    rng = np.random.default_rng(1)
    for layer in (keras_layer, fused_layer):
        layer.build(shape)
    weights = [rng.normal(size=CHANNELS).astype("float32") for _ in range(2)] + keras_layer.get_weights()[2:]
    keras_layer.set_weights(weights)
    fused_layer.set_weights(weights)
    return keras_layer, fused_layer


def batch(shape, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(2.0, 3.0, size=shape).astype("float32"))


def outputs_and_gradients(layer, inputs, weights_of_loss):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=True)
        loss = tf.reduce_sum(outputs * weights_of_loss)
    return outputs, tape.gradient(loss, [inputs, layer.gamma, layer.beta])


def test_training_on_image_maps_matches_keras_forward_backward_and_moving_statistics():
    shape = (16, 5, 7, CHANNELS)
    keras_layer, fused_layer = pair(shape)
    inputs, weights_of_loss = batch(shape), batch(shape, seed=1)
    expected, expected_gradients = outputs_and_gradients(keras_layer, inputs, weights_of_loss)
    outputs, gradients = outputs_and_gradients(fused_layer, inputs, weights_of_loss)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    for gradient, expected_gradient in zip(gradients, expected_gradients, strict=True):
        np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-4, atol=1e-3)
    # The moving variance follows the batch's biased variance, as Keras' does (not the fused kernel's unbiased one).
    moments = np.var(inputs.numpy(), axis=(0, 1, 2)), np.mean(inputs.numpy(), axis=(0, 1, 2))
    np.testing.assert_allclose(fused_layer.moving_variance.numpy(), 0.9 + 0.1 * moments[0], rtol=1e-5)
    np.testing.assert_allclose(fused_layer.moving_mean.numpy(), 0.1 * moments[1], rtol=1e-5, atol=1e-6)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(fused_layer, name).numpy(), getattr(keras_layer, name).numpy(), rtol=1e-5)


def test_the_training_step_runs_one_fused_operation():
    shape = (4, 3, 3, CHANNELS)
    _, fused_layer = pair(shape)
    graph = (
        tf.function(lambda inputs: fused_layer(inputs, training=True))
        .get_concrete_function(tf.TensorSpec(shape, tf.float32))
        .graph
    )
    kinds = [operation.type for operation in graph.get_operations()]
    assert kinds.count("FusedBatchNormV3") == 1 and "Mean" not in kinds


@pytest.mark.parametrize(
    "shape, training, frozen, dtype",
    [
        ((16, 5, 7, CHANNELS), False, False, "float32"),  # predicting
        ((16, CHANNELS), True, False, "float32"),  # the dense head
        ((16, 5, 7, CHANNELS), True, True, "float32"),  # a frozen layer normalizes with its moving statistics
        ((16, 5, 7, CHANNELS), True, False, "float64"),  # a float64 layer, which Keras normalizes in float64
    ],
)
def test_prediction_frozen_layers_and_other_inputs_are_keras_own(shape, training, frozen, dtype):
    keras_layer, fused_layer = pair(shape, dtype=dtype)
    keras_layer.trainable = fused_layer.trainable = not frozen
    inputs = tf.cast(batch(shape), dtype)
    np.testing.assert_array_equal(fused_layer(inputs, training=training), keras_layer(inputs, training=training))


def test_a_saved_model_loads_with_the_layer_and_predicts_the_same(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, CHANNELS)), FusedBatchNormalization(name="bn")])
    model.get_layer("bn").set_weights([np.full(CHANNELS, value, "float32") for value in (2.0, 1.0, 0.5, 4.0)])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    inputs = batch((3, 4, 4, CHANNELS))
    assert isinstance(loaded.get_layer("bn"), FusedBatchNormalization)
    np.testing.assert_array_equal(loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0))


def test_mixed_precision_normalizes_in_float32_and_returns_the_compute_dtype():
    shape = (8, 3, 3, CHANNELS)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras_layer, fused_layer = pair(shape)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    inputs = tf.cast(batch(shape), "float16")
    outputs = fused_layer(inputs, training=True)
    assert outputs.dtype == tf.float16 and fused_layer.moving_variance.dtype == "float32"
    np.testing.assert_allclose(outputs.numpy(), keras_layer(inputs, training=True).numpy(), atol=1e-2)
