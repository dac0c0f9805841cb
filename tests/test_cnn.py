"""The CNN family's pieces: architecture, learning-rate schedules, test-time augmentation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from src.core.config import Config
from src.core.errors import UserError
from src.models import cnn
from src.models.augmentation import predict_with_tta, shift_images, tta_shifts
from src.models.schedules import OneCycle, learning_rate_schedule

# The issue's [32C3-32C3-32C5S2]-[64C3-64C3-64C5S2]-128C4-10, counted by hand: convolutions
# carry no bias under batch norm, each batch norm has 4 values per channel.
DEOTTE_PARAMETERS = (
    (1 * 32 * 9 + 4 * 32)
    + (32 * 32 * 9 + 4 * 32)
    + (32 * 32 * 25 + 4 * 32)
    + (32 * 64 * 9 + 4 * 64)
    + (64 * 64 * 9 + 4 * 64)
    + (64 * 64 * 25 + 4 * 64)
    + (4 * 4 * 64 * 128 + 4 * 128)
    + (128 * 10 + 10)
)


def build_cnn(filters, learning_rate=1e-3, **changes):
    """The cnn family's network of `filters`, with `changes` to the defaults."""
    return cnn.build(Config(family="cnn", scaling="unit", filters=filters, **changes), learning_rate)


def images(count=4, seed=0):
    return np.random.default_rng(seed).random((count, 784), dtype=np.float32)


def test_cnn_architecture_and_parameter_count():
    model = build_cnn((32, 64), padding="valid", downsample_kernel_size=5, head_units=128)
    assert model.count_params() == DEOTTE_PARAMETERS == 326_826
    assert model.input_shape == (None, 784)
    assert model.get_layer("image").output.shape == (None, 28, 28, 1)
    assert model.get_layer("block1_down").kernel_size == (5, 5)
    assert model.get_layer("block1_down").strides == (2, 2)
    assert model.get_layer("block2_down_relu").output.shape == (None, 4, 4, 64)
    assert model.get_layer("output").output.shape == (None, 10)
    assert model.loss.get_config()["label_smoothing"] == 0.0


def test_pooling_without_batch_norm_or_head():
    model = build_cnn((8,), downsample="pool", batch_norm=False, dropout=0.0, head_units=0, label_smoothing=0.1)
    assert [layer.name for layer in model.layers] == [
        "image",
        "block1_conv1",
        "block1_conv1_relu",
        "block1_conv2",
        "block1_conv2_relu",
        "block1_pool",
        "flatten",
        "output",
    ]
    assert model.count_params() == (9 * 8 + 8) + (8 * 8 * 9 + 8) + (14 * 14 * 8 * 10 + 10)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)


def test_output_stays_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_cnn((4,), head_units=8)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("block1_conv1").compute_dtype == "float16"
    assert model.predict(images(), verbose=0).dtype == np.float32


@pytest.mark.parametrize(
    "changes", [{"filters": ()}, {"filters": (8, 0)}, {"downsample": "avg"}, {"padding": "full"}, {"dropout": 1.0}]
)
def test_invalid_cnn_settings_are_refused(changes):
    with pytest.raises(UserError):
        build_cnn(**{"filters": (8,), **changes})


def test_schedule_values_at_given_steps():
    assert learning_rate_schedule("constant", 1e-3, steps_per_epoch=10, epochs=5) == 1e-3
    exponential = learning_rate_schedule("exponential", 1e-3, steps_per_epoch=10, epochs=5, decay=0.95)
    # lr * decay**epoch: steps 0-9 are epoch 0, steps 20-29 epoch 2.
    assert [float(exponential(step)) for step in (0, 9, 10, 25)] == pytest.approx([1e-3, 1e-3, 9.5e-4, 9.025e-4])
    cosine = learning_rate_schedule("cosine", 1e-3, steps_per_epoch=10, epochs=5)
    assert [float(cosine(step)) for step in (0, 25, 50)] == pytest.approx([1e-3, 5e-4, 0.0], abs=1e-9)


def test_one_cycle_rises_to_its_peak_then_anneals():
    schedule = learning_rate_schedule("one-cycle", 4e-3, steps_per_epoch=10, epochs=4)
    assert isinstance(schedule, OneCycle)
    # 40 steps: a cosine rise from 4e-3/25 over the first 10, then a cosine fall to 4e-3/25e4.
    expected = {0: 1.6e-4, 5: (1.6e-4 + 4e-3) / 2, 10: 4e-3, 25: (4e-3 + 1.6e-8) / 2, 40: 1.6e-8, 100: 1.6e-8}
    assert [float(schedule(step)) for step in expected] == pytest.approx(list(expected.values()), rel=1e-4)
    assert OneCycle.from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule must be one of"):
        learning_rate_schedule("step", 1e-3, steps_per_epoch=10, epochs=5)


def test_shift_moves_pixels_and_fills_with_zeros():
    pixels = np.zeros((1, 784), dtype=np.float32)
    pixels[0, 5 * 28 + 7] = 1.0
    moved = shift_images(pixels, 1, -2)
    assert moved.shape == pixels.shape
    assert np.argwhere(moved.reshape(28, 28)).tolist() == [[6, 5]]
    edge = np.zeros((1, 784), dtype=np.float32)
    edge[0, 27] = 1.0
    assert not shift_images(edge, 0, 1).any()


def test_tta_averages_exactly_its_shifts():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(10, activation="softmax")])
    pixels = images(6)
    shifted = [model.predict(shift_images(pixels, *shift), verbose=0) for shift in tta_shifts()]
    averaged = predict_with_tta(model, pixels)
    assert len(tta_shifts()) == len(set(tta_shifts())) == 5 and (0, 0) in tta_shifts()
    np.testing.assert_allclose(averaged, np.mean(shifted, axis=0), rtol=1e-6)
    assert not np.allclose(averaged, np.mean(shifted[:-1], axis=0))
