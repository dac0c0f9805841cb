"""Keras' batch norm, trained on image maps with TensorFlow's fused kernel."""

from __future__ import annotations

import tensorflow as tf
from tensorflow import keras

IMAGE_RANK = 4  # batch, height, width, channels
FUSED_DTYPES = ("float16", "bfloat16", "float32")  # Keras normalizes float64 in float64
MIN_FUSED_EPSILON = 1.001e-5  # cuDNN's fused kernel refuses a smaller one


@keras.utils.register_keras_serializable(package="digit_recognizer")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step on NHWC maps is one fused operation.

    Keras 3 computes a batch's moments and its normalization as a chain of
    separate operations, each a pass over the activations forward and again
    backward; TensorFlow's fused kernel makes one pass each way. On 2 CPU cores
    a whole `cnn-fast` run took 0.84 of its time. The arithmetic is Keras':
    the batch's own statistics normalize it, and the moving averages follow the
    batch's biased variance (the fused kernel returns the unbiased one). Outside
    training, and for anything but a 4-D map normalized over its channels, the
    layer is Keras' own.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        # Keras normalizes in float32 whatever the compute dtype (float16 statistics overflow).
        images = tf.cast(inputs, "float32")
        outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            images, tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"), epsilon=self.epsilon
        )
        values_per_channel = tf.cast(tf.reduce_prod(tf.shape(images)[:-1]), "float32")
        variance = unbiased_variance * (values_per_channel - 1.0) / values_per_channel
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask) -> bool:
        return (
            mask is None
            and len(inputs.shape) == IMAGE_RANK
            and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES
            and self.epsilon >= MIN_FUSED_EPSILON
            and self.axis in (-1, IMAGE_RANK - 1)
            and self.center
            and self.scale
            and not self.renorm
            and not self.synchronized
        )
