"""Every preset: its network and parameter count, and a one-epoch run end to end on tiny data."""

from __future__ import annotations

import hashlib
import json
import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from src.core.config import IMAGE_SIDE, N_CLASSES, N_PIXELS, PRESETS
from src.models.registry import build_model
from src.pipeline.run import run
from src.submit import main as submit_main
from tests.helpers import run_main

# Batch normalization keeps four numbers per channel: scale, offset, moving mean, moving variance.
BATCH_NORM_NUMBERS = 4


def dense_parameters(config) -> int:
    widths = (N_PIXELS, *config.hidden_units, N_CLASSES)
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in pairwise(widths))


def cnn_parameters(config) -> int:
    """Counted by hand from the settings: no Keras involved."""

    def layer(fan_in: int, units: int) -> int:
        # With batch norm the layer carries no bias; the norm's offset takes its place.
        extra = BATCH_NORM_NUMBERS * units if config.batch_norm else units
        return fan_in * units + extra

    side, channels, total = IMAGE_SIDE, 1, 0
    sizes = [config.first_kernel_size or config.kernel_size] + [config.kernel_size] * 100
    for filters in config.filters:
        for _ in range(config.convs_per_block):
            size = sizes.pop(0)
            total += layer(size**2 * channels, filters)
            channels = filters
            if config.padding == "valid":
                side -= size - 1
        if config.downsample == "stride":
            total += layer(config.downsample_kernel_size**2 * channels, filters)
            side = math.ceil(side / 2)
        else:
            side //= 2
    features = side * side * channels
    if config.head_units:
        total += layer(features, config.head_units)
        features = config.head_units
    return total + features * N_CLASSES + N_CLASSES


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_presets_network_and_parameter_count(name):
    config = PRESETS[name]
    model = build_model(config)
    kinds = [type(layer).__name__ for layer in model.layers]
    output = model.get_layer("output")
    assert output.units == N_CLASSES and output.dtype_policy.compute_dtype == "float32"
    assert "augmentation" not in [layer.name for layer in model.layers]  # distortions live in the pipeline
    if config.family == "dense":
        assert model.count_params() == dense_parameters(config)
        assert kinds == ["Dense"] * (len(config.hidden_units) + 1)
        return
    assert model.count_params() == cnn_parameters(config)
    convolutions = len(config.filters) * (config.convs_per_block + (config.downsample == "stride"))
    assert kinds.count("Conv2D") == convolutions
    assert kinds.count("FusedBatchNormalization") == (convolutions + bool(config.head_units)) * config.batch_norm


def test_the_ensemble_preset_is_the_large_network_bagged():
    # [32C3-32C3-32C5S2]-[64C3-64C3-64C5S2]-128-10 with batch norm: 327k parameters, counted by hand.
    config = PRESETS["cnn-ensemble"]
    assert cnn_parameters(config) == 326_826
    assert (config.members, config.folds, config.batch_size, config.epochs) == (15, 1, 64, 45)
    assert (config.schedule, config.decay, config.augment_rotation, config.augment_zoom) == (
        "exponential",
        0.95,
        10,
        0.1,
    )


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The ensembles take the longest: the slow tier runs them.
DENSE_PRESETS = [
    pytest.param(name, marks=pytest.mark.slow) if PRESETS[name].folds > 1 or PRESETS[name].members > 1 else name
    for name in sorted(name for name in PRESETS if PRESETS[name].family == "dense")
]


@pytest.mark.slow
@pytest.mark.parametrize("name", DENSE_PRESETS)
def test_every_dense_preset_runs_end_to_end_for_one_epoch(tiny_data, tmp_path, name):
    # In this process: the command line around the pipeline is the same for every preset, and is run below.
    out = tmp_path / "submission.csv"
    result = run(PRESETS[name].replace(epochs=1), tiny_data, out, verbose=0, report=False)
    assert result.record.config.family == "dense" and result.record.parameters == dense_parameters(PRESETS[name])
    assert len(out.read_text().splitlines()) == 21


def test_the_fast_cnn_is_the_measured_network():
    # [16C3-16C3-16C5S2]-[32C3-32C3-32C5S2]-256-10 with batch norm, dropout on the head only, counted by
    # hand: the convolutions' weights 144 + 2,304 + 6,400 + 4,608 + 9,216 + 25,600 and their batch norms'
    # 3 x 16 x 4 + 3 x 32 x 4; the head 4 x 4 x 32 x 256 + 256 x 4; the output 256 x 10 + 10.
    config = PRESETS["cnn-fast"]
    assert config.deskew and config.epochs == 8 and config.clean_epochs == 1
    assert cnn_parameters(config) == 48_272 + 576 + 131_072 + 1_024 + 2_570 == 183_514
    model = build_model(config)
    dropouts = [layer.name for layer in model.layers if type(layer).__name__ == "Dropout"]
    assert dropouts == ["dense_dropout"]
    assert model.get_layer("block1_conv1").kernel_size == (3, 3)
    assert model.get_layer("block2_down").kernel_size == (5, 5)
    assert model.get_layer("block2_down").output.shape[1:] == (4, 4, 32)


def test_the_cnn_preset_is_the_fast_cnn_with_a_wider_second_block_trained_longer():
    # Counted by hand: the convolutions' weights 144 + 2,304 + 6,400 + 9,216 + 36,864 + 102,400 and their
    # batch norms' 3 x 16 x 4 + 3 x 64 x 4; the head 4 x 4 x 64 x 256 + 256 x 4; the output 256 x 10 + 10.
    config = PRESETS["cnn"]
    assert config == PRESETS["cnn-fast"].replace(filters=(16, 64), epochs=11)
    assert config.deskew
    assert cnn_parameters(config) == 157_328 + 960 + 262_144 + 1_024 + 2_570 == 424_026
    assert build_model(config).count_params() == 424_026
    # Its bag: ten of it for the 12 epochs its figures were measured with, each on its own random 90% of
    # the rows, scored out-of-bag.
    assert PRESETS["cnn-bag"] == config.replace(members=10, epochs=12, bag_share=0.9, bag_holdout=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn-fast", "cnn-bag"])
def test_the_fast_cnn_presets_run_end_to_end(tiny_data, tmp_path, name):
    # Two epochs: the last one is the clean one. Two members stand for the bag's ten.
    config = PRESETS[name].replace(epochs=2, members=2 if PRESETS[name].members > 1 else None)
    result = run(config, tiny_data, tmp_path / "submission.csv", verbose=0, report=False)
    assert result.record.parameters == cnn_parameters(config)
    assert len(result.training.members) == config.members
    assert len((tmp_path / "submission.csv").read_text().splitlines()) == 21
    if config.members == 1:
        np.testing.assert_array_equal(result.training.validation_rows(), np.arange(72, 80))
    else:
        # Scored out-of-bag: every row some member left out, and no other.
        assert result.record.validation.scheme == "bag of 2, out-of-bag"
        left_out = np.union1d(*(member.validation_rows for member in result.training.members))
        np.testing.assert_array_equal(np.sort(result.training.validation_rows()), left_out)
        assert 0 < len(left_out) < 80


@pytest.mark.slow
def test_the_cnn_ensemble_preset_runs_end_to_end_for_one_epoch_with_its_report(tiny_data, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    # Two members stand for fifteen: the bag's machinery is the same. The report draws learning curves
    # per member and the out-of-bag confusion matrix and mistakes.
    flags = ("--preset", "cnn-ensemble", "--epochs", "1", "--members", "2", "--verbose", "0")
    result = run_main(capsys, submit_main, "--data", tiny_data, "--out", out, *flags)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["family"] == "cnn" and record["parameters"] == cnn_parameters(PRESETS["cnn-ensemble"])
    assert len(out.read_text().splitlines()) == 21
    assert "bag of 2; out-of-bag accuracy" in result.stdout
    assert "per class, on the out-of-bag rows:" in result.stdout
    assert record["validation"]["scheme"] == "bag of 2, out-of-bag"
    assert (Path(record["run_dir"]) / "report.html").is_file()


@pytest.mark.slow
def test_the_cnn_preset_gives_the_same_bytes_with_the_same_seed(tiny_data, tmp_path):
    # One run after the other in one process: nothing the first leaves behind may change the second.
    # Two epochs: the last one is the clean one.
    config = PRESETS["cnn"].replace(epochs=2, seed=7)
    paths = [tmp_path / "first" / "submission.csv", tmp_path / "second" / "submission.csv"]
    run_dirs = [run(config, tiny_data, path, verbose=0, report=False).run_dir for path in paths]
    assert sha256(paths[0]) == sha256(paths[1])
    for name in ("test_probabilities.npy", "validation_probabilities.npy"):
        assert sha256(run_dirs[0] / name) == sha256(run_dirs[1] / name), name
