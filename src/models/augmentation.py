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
    """Random rotation (up to +-`rotation_degrees`), zoom and shift (shares of the side) of training images,
    and an elastic distortion (`elastic` pixels, smoothed over `elastic_sigma` pixels).

    Drawn per image and applied as one warp (one resampling, not one per
    distortion), in the input pipeline: never at prediction, and the trained model
    holds no trace of them.
    """

    rotation_degrees: float = 10.0
    zoom: float = 0.1
    shift: float = 0.1
    elastic: float = 0.0
    elastic_sigma: float = 4.0

    @classmethod
    def of(cls, config) -> Distortions | None:
        """The distortions `config` asks for; `None` when it asks for none."""
        if not config.augmented:
            return None
        return cls(
            config.augment_rotation,
            config.augment_zoom,
            config.augment_shift,
            config.augment_elastic,
            config.elastic_sigma,
        )

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

    def displacements(self, count, seed) -> tf.Tensor:
        """`count` elastic fields, shape (count, 2, side, side): (right, down) in pixels at each output pixel.

        Simard et al. (2003): uniform noise in [-1, 1] per pixel and direction, smoothed by a
        Gaussian of `elastic_sigma` pixels (zeros beyond the edge, as `scipy.ndimage.gaussian_filter`
        with mode "constant" and its radius), then scaled by `elastic`.
        """
        noise = tf.random.stateless_uniform((count, 2, IMAGE_SIDE, IMAGE_SIDE), seed, minval=-1.0, maxval=1.0)
        # The separable blur as two small matrix products: several times faster on a CPU than convolutions.
        blur = gaussian_blur_matrix(self.elastic_sigma, IMAGE_SIDE)
        return self.elastic * tf.einsum("ij,bcjk,lk->bcil", blur, noise, blur)

    def __call__(self, features, seed) -> tf.Tensor:
        """A batch of 784-pixel rows, each warped at random as an image, with zeros where no pixel maps."""
        images = tf.reshape(features, (-1, IMAGE_SIDE, IMAGE_SIDE, 1))
        count = tf.shape(images)[0]
        transforms = self.transforms(count, seed)
        if self.elastic:
            # Its own stream of draws, so that the affine draws are the same with it as without.
            fields = self.displacements(count, tf.random.experimental.stateless_fold_in(seed, 1))
            warped = warp(images[..., 0], *sampling_points(transforms, fields))
        else:
            warped = tf.raw_ops.ImageProjectiveTransformV3(
                images=images,
                transforms=transforms,
                output_shape=(IMAGE_SIDE, IMAGE_SIDE),
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode="CONSTANT",
            )
        return tf.reshape(warped, tf.shape(features))


def gaussian_blur_matrix(sigma: float, side: int) -> np.ndarray:
    """The (side, side) matrix that blurs a line of pixels by a Gaussian of `sigma`, zeros beyond its ends.

    The Gaussian is normalised over `scipy.ndimage`'s radius (4 sigma, rounded) and cut there.
    """
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    distance = np.arange(side)[None, :] - np.arange(side)[:, None]
    inside = np.abs(distance) <= radius
    return np.where(inside, kernel[np.clip(distance + radius, 0, 2 * radius)], 0.0).astype(np.float32)


def sampling_points(transforms, fields) -> tuple[tf.Tensor, tf.Tensor]:
    """The input point (column, row) each output pixel reads: the affine map, then the field's displacement."""
    rows, columns = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype(np.float32)
    a = [tf.reshape(transforms[:, i], (-1, 1, 1)) for i in range(6)]
    x = a[0] * columns + a[1] * rows + a[2] + fields[:, 0]
    y = a[3] * columns + a[4] * rows + a[5] + fields[:, 1]
    return x, y


def warp(images, x, y) -> tf.Tensor:
    """`images` (batch, side, side) read bilinearly at columns `x` and rows `y` (each batch, side, side).

    A neighbour outside the image reads 0, as TensorFlow's projective transform with a
    constant fill of 0 does, so that with no elastic field both warps agree.
    """
    # Every 2x2 neighbourhood of the image framed by one zero pixel, so that a point needs one gather,
    # not four: the frame stands for every neighbour outside the image.
    framed = tf.pad(images, ((0, 0), (1, 1), (1, 1)))
    corners = tf.stack(
        [framed[:, :-1, :-1], framed[:, :-1, 1:], framed[:, 1:, :-1], framed[:, 1:, 1:]], axis=-1
    )  # (batch, side + 1, side + 1, 4): upper left, upper right, lower left, lower right
    left, top = tf.floor(x), tf.floor(y)
    column, row = left + 1, top + 1  # the neighbourhood's place in the framed image
    inside = (column >= 0) & (column <= IMAGE_SIDE) & (row >= 0) & (row <= IMAGE_SIDE)
    index = tf.cast(
        tf.clip_by_value(row, 0, IMAGE_SIDE) * (IMAGE_SIDE + 1) + tf.clip_by_value(column, 0, IMAGE_SIDE), tf.int32
    )
    batch = tf.shape(images)[0]
    values = tf.gather(tf.reshape(corners, (batch, -1, 4)), tf.reshape(index, (batch, -1)), batch_dims=1)
    values = tf.reshape(values, (batch, IMAGE_SIDE, IMAGE_SIDE, 4)) * tf.cast(inside, images.dtype)[..., None]
    right_weight, down_weight = x - left, y - top
    upper = (1 - right_weight) * values[..., 0] + right_weight * values[..., 1]
    lower = (1 - right_weight) * values[..., 2] + right_weight * values[..., 3]
    return (1 - down_weight) * upper + down_weight * lower


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
