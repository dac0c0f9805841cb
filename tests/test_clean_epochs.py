"""`--clean-epochs`: the last epochs train on the images as they are, undistorted."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow import keras

from src.core.config import N_CLASSES, Config
from src.core.errors import UserError
from src.models.augmentation import Switchable, switch_off
from src.models.registry import build_model
from src.training.hooks import TrainingCallbacks
from src.training.trainer import train
from tests.synthetic import make_arrays

ROTATION, ZOOM, SHIFT = 20.0, 0.2, 0.2


@pytest.fixture(scope="module")
def images():
    pixels, labels, _ = make_arrays(n_per_class=4)
    return (pixels / 255.0).reshape(-1, 28, 28, 1).astype("float32"), labels


def test_switched_off_the_distortions_pass_images_through_in_training(images):
    layer = Switchable(ROTATION, ZOOM, SHIFT, seed=0)
    pictures = images[0]
    assert not np.allclose(layer(pictures, training=True), pictures)
    np.testing.assert_array_equal(layer(pictures, training=False), pictures)
    layer.active = False
    np.testing.assert_array_equal(layer(pictures, training=True), pictures)


def small_models(pictures):
    """A model with the switchable distortions and one without, with the same weights."""

    def model(*distortion):
        network = keras.Sequential(
            [keras.Input((28, 28, 1)), *distortion, keras.layers.Flatten(), keras.layers.Dense(N_CLASSES)]
        )
        network.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        return network

    distorted, plain = model(Switchable(ROTATION, ZOOM, SHIFT, seed=0)), model()
    plain.set_weights(distorted.get_weights())
    return distorted, plain


@pytest.mark.slow
@pytest.mark.parametrize("switched", [True, False])
def test_a_step_after_switch_off_trains_exactly_as_without_distortions(images, switched):
    pictures, labels = images
    distorted, plain = small_models(pictures)
    # Traced once with the distortions on, as an augmented run's first epochs are.
    distorted.fit(pictures[:1], labels[:1], epochs=1, verbose=0)
    plain.fit(pictures[:1], labels[:1], epochs=1, verbose=0)
    plain.set_weights(distorted.get_weights())
    if switched:
        switch_off(distorted)
    for network in (distorted, plain):
        network.fit(pictures, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    same = all(np.array_equal(a, b) for a, b in zip(distorted.get_weights(), plain.get_weights(), strict=True))
    assert same == switched


class ActiveProbe(keras.callbacks.Callback):
    """Whether the distortions were on during each epoch's steps."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.epochs.append(self.model.get_layer("augmentation").active)


@pytest.mark.slow
def test_the_last_epochs_are_the_clean_ones(images):
    probe = ActiveProbe()
    pixels, labels, _ = make_arrays(n_per_class=8)
    config = Config(family="cnn", filters=(4,), head_units=0, scaling="unit", augment_rotation=ROTATION)
    config = config.replace(epochs=4, clean_epochs=2, batch_size=32)
    result = train(config, pixels, labels, verbose=0, callbacks=TrainingCallbacks(member=lambda index: [probe]))
    assert probe.epochs == [True, True, False, False]
    assert len(result.members[0].history["loss"]) == 4


def test_the_augmentation_is_switchable_only_with_clean_epochs():
    augmented = Config(family="cnn", scaling="unit", augment_shift=0.1, epochs=2)
    assert type(build_model(augmented).get_layer("augmentation")) is keras.Sequential
    assert type(build_model(augmented.replace(clean_epochs=1)).get_layer("augmentation")) is Switchable


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
