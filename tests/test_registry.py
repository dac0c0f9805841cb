"""The model families' registry: costs counted without building, against Keras and by hand; size checks."""

from __future__ import annotations

import functools

import pytest

from src.core.config import SETTINGS_BY_NAME, Config
from src.core.errors import UserError
from src.models.registry import (
    FAMILIES,
    MAX_MULTIPLY_ADDS,
    build_model,
    check_size,
    model_cost,
    run_name,
    training_bytes,
)

CNN = dict(family="cnn", scaling="unit")


def test_every_family_is_a_choice_of_the_family_setting_and_back():
    assert set(FAMILIES) == set(SETTINGS_BY_NAME["family"].choices)
    assert all(name == family.name for name, family in FAMILIES.items())


def test_an_unknown_family_cannot_be_configured():
    with pytest.raises(UserError, match="family must be one of dense, cnn"):
        Config(family="resnet")


def test_dense_cost_by_hand():
    cost = model_cost(Config())
    assert cost.parameters == 784 * 20 + 20 + 20 * 15 + 15 + 15 * 10 + 10 == 16_175
    assert cost.multiply_adds == 784 * 20 + 20 * 15 + 15 * 10
    assert cost.activations == 784 + 20 + 15 + 10


def test_small_cnn_cost_by_hand():
    # 28x28x1 -> conv 3x3 x4 (same) -> pool -> 14x14x4 -> dense 8 -> 10; no batch norm: biases everywhere.
    config = Config(**CNN, filters=(4,), convs_per_block=1, downsample="pool", batch_norm=False, head_units=8)
    cost = model_cost(config)
    assert cost.parameters == (9 * 1 * 4 + 4) + (14 * 14 * 4 * 8 + 8) + (8 * 10 + 10)
    assert cost.multiply_adds == 28 * 28 * 9 * 4 + 14 * 14 * 4 * 8 + 8 * 10
    # 28x28x1 -> conv 5x5 x2 (valid, bn) -> 24x24x2 -> stride-2 3x3 (same, bn) -> 12x12x2 -> 10.
    config = Config(**CNN, filters=(2,), convs_per_block=1, kernel_size=5, padding="valid", head_units=0)
    cost = model_cost(config)
    assert cost.parameters == (25 * 2 + 4 * 2) + (9 * 2 * 2 + 4 * 2) + (12 * 12 * 2 * 10 + 10)
    assert cost.multiply_adds == 24 * 24 * 25 * 2 + 12 * 12 * 9 * 2 * 2 + 12 * 12 * 2 * 10
    # The first convolution alone takes --first-kernel-size: 5x5 x2 (same), then 3x3 x2 (same), each pooled.
    config = Config(**CNN, filters=(2, 2), convs_per_block=1, first_kernel_size=5, downsample="pool", head_units=0)
    cost = model_cost(config)
    assert cost.parameters == (25 * 2 + 4 * 2) + (9 * 2 * 2 + 4 * 2) + (7 * 7 * 2 * 10 + 10)
    assert cost.multiply_adds == 28 * 28 * 25 * 2 + 14 * 14 * 9 * 2 * 2 + 7 * 7 * 2 * 10


@pytest.mark.parametrize(
    "changes",
    [
        {},
        dict(**CNN),
        dict(**CNN, filters=(32, 64), padding="valid", downsample_kernel_size=5),
        dict(**CNN, filters=(8, 8, 8), downsample="pool", batch_norm=False, head_units=0),
        dict(**CNN, filters=(6,), convs_per_block=3, kernel_size=7, padding="valid", dropout=0.0),
        dict(hidden_units=(64, 32, 16), scaling="unit"),
    ],
    ids=["tutorial", "cnn-defaults", "cnn-preset", "pools-no-bn", "valid-7", "dense-3"],
)
def test_counted_parameters_are_keras_count(changes):
    config = Config(**changes)
    assert model_cost(config).parameters == build_model(config).count_params()


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        (dict(padding="valid", kernel_size=7, convs_per_block=8, filters=(4,)), "block1_conv5"),
        (dict(downsample="pool", filters=(1, 1, 1, 1, 1, 1)), "block5_pool"),
    ],
)
def test_an_image_that_shrinks_to_nothing_is_refused_before_building(changes, where):
    with pytest.raises(UserError, match=f"the image shrinks to nothing at {where}"):
        check_size(Config(**CNN, **changes))


def test_a_network_past_the_multiply_add_limit_is_refused():
    config = Config(**CNN, filters=(2000, 2000))
    assert model_cost(config).multiply_adds > MAX_MULTIPLY_ADDS
    with pytest.raises(UserError, match=r"G multiply-adds per image \(the limit is 2 G"):
        check_size(config)


def test_memory_estimate_counts_weights_adam_and_a_batch_per_member():
    parameters = 784 * 20 + 20 + 20 * 15 + 15 + 15 * 10 + 10
    activations = 128 * (784 + 20 + 15 + 10)
    assert training_bytes(Config()) == (4 * parameters + 2 * activations) * 4
    # The fused dense trainer trains every member at once; the CNN one at a time.
    assert training_bytes(Config(folds=5)) == 5 * training_bytes(Config())
    assert training_bytes(Config(**CNN, members=5)) == training_bytes(Config(**CNN))
    check_size(Config(), available=2**30)
    huge = Config(hidden_units=(30_000, 30_000), folds=3)
    estimate = f"{training_bytes(huge) / 2**30:.1f}"
    with pytest.raises(UserError, match=f"need about {estimate} GiB to train, but 1.0 GiB of memory is available"):
        check_size(huge, available=2**30)
    wide_cnn = Config(**CNN, filters=(64, 64), batch_size=8192)
    with pytest.raises(UserError, match="filters 64,64, head_units 128, batch_size 8192"):
        check_size(wide_cnn, available=2**30)


@pytest.mark.parametrize(
    ("flag", "value", "bound"),
    [("batch_size", 99999999999999999999, 65536), ("epochs", 10**20, 10000), ("filters", (100_000,), 4096)],
)
def test_integer_settings_have_upper_bounds(flag, value, bound):
    with pytest.raises(UserError, match=str(bound)):
        Config(**CNN, **{flag: value})


def test_run_names():
    assert run_name(Config()) == "h20-15_e50_f1_s42"
    assert run_name(Config(**CNN, filters=(16, 32), members=5, epochs=15)) == "cnn16-32_e15_m5_s42"
    assert run_name(Config(**CNN, filters=(16, 64), epochs=12, deskew=True)) == "cnn16-64_e12_f1_deskew_s42"


# Runs that read some settings and not others.
RUNS = {
    "dense": dict(preset="wide"),
    "dense/exponential": dict(preset="wide", schedule="exponential"),
    "dense/early-stopping": dict(preset="wide", early_stopping=2),
    "dense/elastic": dict(preset="wide", augment_elastic=20.0),
    "dense/folds": dict(preset="wide", folds=3),
    "cnn": dict(preset="cnn-fast"),
    "cnn/pool": dict(preset="cnn-fast", downsample="pool"),
    "cnn/no-dropout": dict(preset="cnn-fast", dropout=0.0),
    "cnn/bag": dict(preset="cnn-fast", members=3),
    "cnn/bag-holdout": dict(preset="cnn-fast", members=3, bag_holdout=True),
}
# A value for each setting read only under a condition (None: the other choice than the run's).
OTHER_VALUES = {
    "hidden_units": (64,),
    "l2": 0.5,
    "filters": (8, 8),
    "convs_per_block": 1,
    "kernel_size": 5,
    "first_kernel_size": 5,
    "padding": None,
    "downsample": None,
    "downsample_kernel_size": 7,
    "batch_norm": None,
    "dropout": 0.1,
    "block_dropout": None,
    "head_units": 7,
    "elastic_sigma": 2.0,
    "decay": 0.5,
    "keep_best": None,
    "validation_split": 0.3,
    "bag_share": 0.5,
    "bag_holdout": None,
    "plain": None,
}


def run_config(run: str) -> Config:
    from src.core.config import PRESETS

    changes = dict(RUNS[run])
    return PRESETS[changes.pop("preset")].replace(epochs=3, **changes)


@functools.cache
def what_a_run_does(config: Config):
    """The network, its optimizer and loss, the trainer, the best-epoch callback, every model's rows, and
    the distorted images of one batch."""
    import keras
    import numpy as np

    from src.core.config import trains_together
    from src.data.splits import split_rows
    from src.models.augmentation import Distortions
    from src.training.trainer import best_epoch_callback

    keras.backend.clear_session(free_memory=False)  # layer names count up across builds otherwise
    model = build_model(config, steps_per_epoch=10)
    loss = model.loss if isinstance(model.loss, str) else model.loss.get_config()
    stopping = best_epoch_callback(config)
    stopping = stopping and (stopping.monitor, stopping.patience, stopping.restore_best_weights)
    labels = np.arange(200) % 10
    rows = [[part.tolist() for part in split] for split in split_rows(config, labels)]
    distortions = Distortions.of(config)
    pixels = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    images = None if distortions is None else distortions(pixels, seed=(3, 4)).numpy().tolist()
    trainer = trains_together(config)
    return model.to_json(), model.optimizer.get_config(), loss, trainer, stopping, rows, images


def test_every_conditional_setting_has_a_value_to_try_and_every_condition_is_declared():
    from src.core.config import CONDITIONS

    assert sorted(OTHER_VALUES) == sorted(name for name, entry in SETTINGS_BY_NAME.items() if entry.needs)
    for entry in SETTINGS_BY_NAME.values():
        assert set(entry.needs) <= set(CONDITIONS), entry.name
    for condition in CONDITIONS.values():
        assert set(condition.settings) <= set(SETTINGS_BY_NAME)


@pytest.mark.parametrize("name", sorted(OTHER_VALUES))
def test_a_flag_is_refused_exactly_where_it_would_change_nothing(name):
    """In every run: refused as unread if and only if the run with it does the same as the run without."""
    from src.core.config import check_read, flag_as_given

    setting, refused_somewhere = SETTINGS_BY_NAME[name], False
    for run in RUNS:
        base = run_config(run)
        other = OTHER_VALUES[name]
        if other is None:
            other = next(choice for choice in setting.choices or (True, False) if choice != getattr(base, name))
        changed = base.replace(**{name: other})
        assert getattr(changed, name) != getattr(base, name), run
        try:
            check_read(changed, [name])
            refused = False
        except UserError as error:
            assert str(error).startswith(f"{flag_as_given(setting, other)} is read only with"), error
            refused = refused_somewhere = True
        assert refused == (what_a_run_does(changed) == what_a_run_does(base)), run
    assert refused_somewhere
