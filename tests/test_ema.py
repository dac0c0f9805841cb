"""`--ema`: a moving average of the weights, which the saved model and its predictions use."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow import keras

from src.core.config import Config
from src.core.errors import UserError
from src.training.hooks import TrainingCallbacks
from src.training.trainer import train
from tests.synthetic import make_arrays

DECAY = 0.5  # far from 1, so that the average differs from the last weights by a lot


class RawWeights(keras.callbacks.Callback):
    """The weights after every step, as the optimizer left them (before any averaging is written over them)."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([weight.numpy().copy() for weight in self.model.trainable_weights])


def running_average(steps, decay):
    # Keras starts the average at the first step's weights, then mixes in each step's.
    average = steps[0]
    for weights in steps[1:]:
        average = [decay * mean + (1 - decay) * new for mean, new in zip(average, weights, strict=True)]
    return average


@pytest.fixture(scope="module")
def data():
    images, labels, _ = make_arrays(n_per_class=8)
    return images, labels


@pytest.mark.slow
def test_the_model_ends_with_the_running_average_of_its_weights(data):
    probe = RawWeights()
    config = Config(hidden_units=(8,), epochs=3, batch_size=16, scaling="unit", ema=DECAY)
    result = train(config, *data, verbose=0, callbacks=TrainingCallbacks(member=lambda index: [probe]))
    model = result.members[0].model
    assert len(probe.steps) == 3 * 4  # 64 rows at 16 a step, 3 epochs
    expected = running_average(probe.steps, DECAY)
    final = [weight.numpy() for weight in model.trainable_weights]
    for got, wanted, last in zip(final, expected, probe.steps[-1], strict=True):
        np.testing.assert_allclose(got, wanted, rtol=1e-5, atol=1e-6)
        assert not np.allclose(got, last)  # the average, not the last step's weights
    # The held-out rows were scored with the averaged weights, as the test rows will be.
    features = data[0][result.members[0].validation_rows] / 255.0
    np.testing.assert_allclose(
        result.members[0].validation_probabilities, model.predict(features, verbose=0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow
def test_without_ema_the_model_keeps_its_last_weights(data):
    probe = RawWeights()
    config = Config(hidden_units=(8,), epochs=2, batch_size=16, scaling="unit", plain=True)
    result = train(config, *data, verbose=0, callbacks=TrainingCallbacks(member=lambda index: [probe]))
    for got, last in zip(result.members[0].model.trainable_weights, probe.steps[-1], strict=True):
        np.testing.assert_array_equal(got.numpy(), last)


def test_ema_cannot_go_with_a_kept_epoch():
    with pytest.raises(UserError, match="--ema averages the weights .* choose one"):
        Config(ema=0.99, keep_best=True)
    with pytest.raises(UserError, match="ema must be in \\[0, 1\\), got 1.0"):
        Config(ema=1.0)
