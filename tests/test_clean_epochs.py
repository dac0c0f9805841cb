"""`--clean-epochs`: the last epochs train on the images as they are, undistorted."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from tensorflow import keras

from src.core.config import IMAGE_SIDE, N_CLASSES, Config
from src.core.errors import UserError
from src.training.hooks import TrainingCallbacks
from src.training.trainer import prepare_fit, run_fit
from tests.synthetic import make_arrays


@keras.utils.register_keras_serializable(package="tests")
class SquaresProbe(keras.layers.Layer):
    """Passes its input through, adding up the squares of the pixels it trains on (distortions blur them)."""

    def build(self, input_shape):
        self.total = self.add_weight(shape=(), initializer="zeros", trainable=False, name="total")

    def call(self, inputs, training=None):
        if training:
            self.total.assign_add(keras.ops.sum(keras.ops.square(inputs)))
        return inputs


class EpochSquares(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.totals = []

    def on_epoch_end(self, epoch, logs=None):
        probe = self.model.get_layer("probe")
        self.totals.append(float(probe.total.numpy()))
        probe.total.assign(0.0)


@pytest.mark.slow
def test_the_clean_epochs_train_on_the_images_as_they_are():
    # The run's own pipeline and callbacks, around a model that records what it trains on.
    pixels, labels, _ = make_arrays(n_per_class=8)
    config = Config(family="cnn", filters=(4,), scaling="unit", augment_rotation=20.0, augment_zoom=0.2)
    config = config.replace(epochs=4, clean_epochs=2, batch_size=32, validation_split=0.25)
    features = (pixels / 255.0).astype(np.float32)
    targets = keras.utils.to_categorical(labels, N_CLASSES)
    train_rows, validation_rows = np.arange(60, len(labels)), np.arange(60)
    recorder = EpochSquares()
    hooks = TrainingCallbacks(member=lambda index: [recorder])
    prepared = prepare_fit(config, features, targets, (train_rows, validation_rows), 5, hooks, 0, None, 1)
    probe = keras.Sequential(
        [keras.Input((IMAGE_SIDE * IMAGE_SIDE,)), SquaresProbe(name="probe"), keras.layers.Dense(N_CLASSES)]
    )
    probe.compile(optimizer="sgd", loss="categorical_crossentropy")
    member = run_fit(config, dataclasses.replace(prepared, model=probe), features, labels, 0, time.perf_counter())
    undistorted = float(np.sum(np.square(features[train_rows])))
    distorted, clean = recorder.totals[:2], recorder.totals[2:]
    np.testing.assert_allclose(clean, [undistorted] * 2, rtol=1e-5)
    assert all(total < 0.97 * undistorted for total in distorted)
    assert len(member.history["loss"]) == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"clean_epochs": 1}, "--clean-epochs turns augmentation off .* there is none"),
        ({"clean_epochs": 2, "augment_zoom": 0.1}, "--clean-epochs 2 must leave at least one of the 2 --epochs"),
    ],
)
def test_clean_epochs_need_augmented_ones(changes, message):
    with pytest.raises(UserError, match=message):
        Config(epochs=2, **changes)
