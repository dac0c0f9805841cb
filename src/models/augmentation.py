"""Random distortions of the training images, and test-time augmentation over fixed shifts."""

from __future__ import annotations

import numpy as np
from tensorflow import keras

from src.core.config import IMAGE_SIDE

FULL_TURN_DEGREES = 360.0

# Test-time shifts in pixels (down, right): the image itself and one pixel each way.
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def build_augmentation(
    rotation_degrees: float = 10.0, zoom: float = 0.1, shift: float = 0.1, seed: int = 0, switchable: bool = False
) -> keras.Layer:
    """Random rotation (up to +-`rotation_degrees`), zoom and shift (shares of the side) of 28x28x1 images.

    Keras' random layers change images in training only (`fit`, or
    `training=True`) and pass them through unchanged in `predict`. Each layer
    draws from its own seed derived from `seed`, so a run is repeatable.
    `switchable` wraps them in `Switchable`, which `switch_off` can stop for the last epochs.
    """
    if switchable:
        return Switchable(rotation_degrees, zoom, shift, seed, name="augmentation")
    return distortions(rotation_degrees, zoom, shift, seed)


def distortions(rotation_degrees: float, zoom: float, shift: float, seed: int) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.layers.RandomRotation(rotation_degrees / FULL_TURN_DEGREES, fill_mode="constant", seed=seed),
            keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 2),
        ],
        name="augmentation",
    )


@keras.utils.register_keras_serializable(package="digit_recognizer")
class Switchable(keras.layers.Layer):
    """The random distortions, which `switch_off` can stop for the rest of training.

    Off, the images pass through unchanged, as in `predict`, and the distortions
    cost nothing: the training step is traced again without them.
    """

    def __init__(self, rotation_degrees: float, zoom: float, shift: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.settings = {"rotation_degrees": rotation_degrees, "zoom": zoom, "shift": shift, "seed": seed}
        self.distort = distortions(rotation_degrees, zoom, shift, seed)
        self.active = True

    def build(self, input_shape):
        self.distort.build(input_shape)

    def call(self, images, training=None):
        return self.distort(images, training=True) if training and self.active else images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.settings}


def switch_off(model: keras.Model) -> None:
    """Stop `model`'s `Switchable` distortions: the steps that follow train on the images as they are.

    Called between epochs of `fit`, which looks its training step up again at every step.
    """
    for layer in model.layers:
        if isinstance(layer, Switchable):
            layer.active = False
    model.make_train_function(force=True)


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
