"""Random distortions of the training images, and test-time augmentation over fixed shifts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow import keras

from src.core.config import IMAGE_SIDE

FULL_TURN_DEGREES = 360.0
HALF_TURN_DEGREES = 180.0

# Test-time shifts in pixels (down, right): the image itself and one pixel each way.
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


@dataclass(frozen=True)
class Distortions:
    """Random rotation (up to +-`rotation_degrees`), zoom and shift (shares of the side) of training images.

    Drawn per image and applied as one affine warp (one resampling, not one per
    distortion), in the input pipeline: never at prediction, and the trained model
    holds no trace of them.
    """

    rotation_degrees: float = 10.0
    zoom: float = 0.1
    shift: float = 0.1

    @classmethod
    def of(cls, config) -> Distortions | None:
        """The distortions `config` asks for; `None` when it asks for none."""
        if not config.augmented:
            return None
        return cls(config.augment_rotation, config.augment_zoom, config.augment_shift)

    def transforms(self, count, seed) -> tf.Tensor:
        """`count` random warps, drawn from the stateless `seed` (shape [2]), as the 8 numbers TensorFlow takes.

        Each maps an output pixel `p` to the input point `c + scale * R(angle) @ (p - c - offset)`,
        around the image's centre `c`: Keras' RandomRotation, RandomZoom and RandomTranslation
        applied in that order, with their ranges, composed into one map.
        """
        draws = tf.random.stateless_uniform((count, 4), seed, minval=-1.0, maxval=1.0)
        angle = draws[:, 0] * (self.rotation_degrees * math.pi / HALF_TURN_DEGREES)
        scale = 1.0 + draws[:, 1] * self.zoom
        offset_x, offset_y = draws[:, 2] * self.shift * IMAGE_SIDE, draws[:, 3] * self.shift * IMAGE_SIDE
        cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
        centre = (IMAGE_SIDE - 1) / 2.0
        from_x, from_y = centre + offset_x, centre + offset_y  # the output point that lands on the input's centre
        zeros = tf.zeros_like(angle)
        return tf.stack(
            [
                *(cos, -sin, centre - cos * from_x + sin * from_y),
                *(sin, cos, centre - sin * from_x - cos * from_y),
                zeros,
                zeros,
            ],
            axis=1,
        )

    def __call__(self, features, seed) -> tf.Tensor:
        """A batch of 784-pixel rows, each warped at random as an image, with zeros where no pixel maps."""
        images = tf.reshape(features, (-1, IMAGE_SIDE, IMAGE_SIDE, 1))
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=self.transforms(tf.shape(images)[0], seed),
            output_shape=(IMAGE_SIDE, IMAGE_SIDE),
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )
        return tf.reshape(warped, tf.shape(features))


@keras.utils.register_keras_serializable(package="digit_recognizer")
class Switchable(keras.layers.Layer):
    """Loads the models of runs made before the distortions moved to the input pipeline.

    Those models began with this layer, whose distortions were active in training
    only; at prediction, the one use left to them, it passes images through.
    """

    def __init__(self, rotation_degrees: float, zoom: float, shift: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.settings = {"rotation_degrees": rotation_degrees, "zoom": zoom, "shift": shift, "seed": seed}
        # The random layers' seed states were saved with the model: they are rebuilt to be loaded into.
        self.distort = keras.Sequential(
            [
                keras.layers.RandomRotation(rotation_degrees / FULL_TURN_DEGREES, fill_mode="constant", seed=seed),
                keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 1),
                keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 2),
            ]
        )

    def build(self, input_shape):
        self.distort.build(input_shape)

    def call(self, images, training=None):
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.settings}


def tta_shifts() -> tuple[tuple[int, int], ...]:
    """The fixed (down, right) pixel shifts that test-time augmentation averages over."""
    return TTA_SHIFTS


def shift_images(pixels: np.ndarray, down: int, right: int) -> np.ndarray:
    """Rows of 784 pixels moved `down` and `right` (negative: up, left), with zeros shifted in."""
    images = pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    # Pad zeros all round, then cut out the window the shift points to.
    margin = max(abs(down), abs(right))
    padded = np.pad(images, ((0, 0), (margin, margin), (margin, margin)))
    top, left = margin - down, margin - right
    return padded[:, top : top + IMAGE_SIDE, left : left + IMAGE_SIDE].reshape(pixels.shape)


def predict_with_tta(model: keras.Model, pixels: np.ndarray, batch_size: int = 512, shifts=TTA_SHIFTS) -> np.ndarray:
    """The mean of `model`'s probabilities over `pixels` shifted by each of `shifts`."""
    probabilities = [
        model.predict(shift_images(pixels, down, right), batch_size=batch_size, verbose=0) for down, right in shifts
    ]
    return np.mean(probabilities, axis=0)
