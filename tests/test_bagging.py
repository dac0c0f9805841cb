"""Bagging: each member on its own random share of the rows (`--bag-share`), scored out-of-bag."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

import src.training.prediction
from src.core.config import Config, bag_size
from src.core.errors import UserError
from src.data.loading import Datasets, as_features
from src.models.augmentation import IMAGE_SIDE, predict_with_tta
from src.pipeline.run import run
from src.submit import main as submit_main
from src.training.evaluation import accuracy
from src.training.prediction import held_out_probabilities, tta_validation_accuracy
from src.training.trainer import Member, TrainingResult, member_seeds, split_rows, train
from tests.helpers import assert_one_line_error, run_main
from tests.synthetic import make_arrays, write_dataset


def test_members_never_validate_on_their_own_training_rows_and_differ_by_seed():
    labels = np.arange(203) % 10
    config = Config(members=5, seed=3)
    splits = split_rows(config, labels)
    assert len(splits) == 5
    for train_rows, validation_rows in splits:
        assert not set(train_rows) & set(validation_rows)
        np.testing.assert_array_equal(np.sort(np.concatenate([train_rows, validation_rows])), np.arange(203))
        assert len(train_rows) == bag_size(203, config.bag_share) == 182
    held_out = [frozenset(validation_rows) for _, validation_rows in splits]
    assert len(set(held_out)) == 5, "every member draws its own rows"
    seeds = member_seeds(config)
    assert len(set(seeds)) == 5 and config.seed not in seeds
    # The same seed draws the same bag; another seed another.
    assert [frozenset(rows) for _, rows in split_rows(config, labels)] == held_out
    assert [frozenset(rows) for _, rows in split_rows(config.replace(seed=4), labels)] != held_out
    # Member i's rows depend on the seed and i only, not on how many members there are.
    np.testing.assert_array_equal(split_rows(config.replace(members=2), labels)[1][1], splits[1][1])


def test_the_bag_share_sets_how_many_rows_each_member_trains_on(tmp_path, capsys):
    labels = np.arange(203) % 10
    for share, size in ((0.5, 101), (0.25, 50)):
        for train_rows, validation_rows in split_rows(Config(members=4, bag_share=share, seed=3), labels):
            assert (len(train_rows), len(validation_rows)) == (size, 203 - size)
            assert not set(train_rows) & set(validation_rows)
    for share in (0, 1.5):
        with pytest.raises(UserError, match=r"bag_share must be in \(0, 1\]"):
            Config(members=2, bag_share=share)
    # Refused whatever the data, so a kernel or a fan-out is never built with it.
    with pytest.raises(UserError, match="--bag-share 1 trains every member on every row"):
        Config(members=2, bag_share=1.0)
    # Like a CNN setting on a dense network, a share without a bag changes nothing (a search may vary both).
    single = split_rows(Config(bag_share=0.5), labels)
    np.testing.assert_array_equal(single[0][1], split_rows(Config(), labels)[0][1])
    # On 80 rows a share of 1% trains a member on no row at all: refused before any training.
    data = write_dataset(tmp_path / "data")
    flags = ("--data", data, "--out", tmp_path / "out" / "submission.csv", "--members", "2", "--bag-share", "0.01")
    result = run_main(capsys, submit_main, *flags)
    assert_one_line_error(result, 2, "--bag-share 0.01 leaves no training row of 80")
    # Every row in every bag leaves nothing out of it to score it on, unless the bag has a holdout.
    result = run_main(capsys, submit_main, *flags[:-1], "1")
    assert_one_line_error(result, 2, "--bag-share 1 trains every member on every row", "or add --bag-holdout")
    assert not (tmp_path / "out").exists()


def member(rows, probabilities, model=None) -> Member:
    rows = np.array(rows)
    return Member(model, {}, rows, np.zeros(len(rows)), np.array(probabilities, np.float32), 0.0)


def test_out_of_bag_accuracy_averages_the_members_that_held_each_row_out():
    labels = np.array([0, 1, 2, 3, 4])
    # Row 0: only member A held it out, and says 0 (right).
    # Row 1: A says 3 at 0.6, B says 1 at 0.9: the mean (0.25, 0.45, 0, 0.3) says 1 (right), though A alone is wrong.
    # Row 2: B says 2 at 0.4, C says 5 at 0.8: the mean (0.25, 0, 0.2, 0, 0, 0.55) says 5 (wrong), though B is right.
    # Row 3: only C, and it says 3 (right). Row 4: no member held it out, so it is not scored.
    digit = np.eye(10)
    a = member([0, 1], [digit[0], 0.4 * digit[0] + 0.6 * digit[3]])
    b = member([1, 2], [0.1 * digit[0] + 0.9 * digit[1], 0.4 * digit[2] + 0.3 * digit[5] + 0.3 * digit[0]])
    c = member([2, 3], [0.8 * digit[5] + 0.2 * digit[0], digit[3]])
    result = TrainingResult([a, b, c], bagged=True)
    np.testing.assert_array_equal(result.validation_rows(), [0, 1, 2, 3])
    np.testing.assert_allclose(result.validation_probabilities()[1], [0.25, 0.45, 0, 0.3, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(result.validation_probabilities().argmax(axis=1), [0, 1, 5, 3])
    np.testing.assert_array_equal(result.validation_members(), [0, 0, 1, 2])
    assert result.validation_accuracy(labels) == pytest.approx(3 / 4)
    # The same members as folds would simply be concatenated: each member's own rows, row 1 and 2 twice.
    assert TrainingResult([a, b, c]).validation_accuracy(labels) == pytest.approx(4 / 6)


class CentreLookup:
    """Stands in for a Keras model: probabilities looked up by the image's centre pixel.

    The test images are flat, so every one-pixel test-time shift keeps the centre.
    """

    def __init__(self, table: dict[int, np.ndarray]):
        self.table = table

    def predict(self, pixels, batch_size=None, verbose=0):
        centres = pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)[:, IMAGE_SIDE // 2, IMAGE_SIDE // 2]
        return np.array([self.table[int(centre)] for centre in centres], np.float32)


def test_a_bags_tta_accuracy_averages_the_members_that_held_each_row_out():
    labels = np.array([0, 1, 2, 3, 4])
    features = np.repeat(np.arange(5.0), IMAGE_SIDE * IMAGE_SIDE).reshape(5, -1)  # row i: every pixel i
    digit = np.eye(10)
    # With TTA, the members say what the out-of-bag test above has them say; without, 9 for every row.
    a = CentreLookup({0: digit[0], 1: 0.4 * digit[0] + 0.6 * digit[3]})
    b = CentreLookup({1: 0.1 * digit[0] + 0.9 * digit[1], 2: 0.4 * digit[2] + 0.3 * digit[5] + 0.3 * digit[0]})
    c = CentreLookup({2: 0.8 * digit[5] + 0.2 * digit[0], 3: digit[3]})
    members = [member(rows, [digit[9]] * 2, model) for rows, model in (([0, 1], a), ([1, 2], b), ([2, 3], c))]
    result = TrainingResult(members, bagged=True)
    assert result.validation_accuracy(labels) == 0
    # Member by member, rows 1 and 2 counted twice, TTA would score 4/6; out-of-bag, as the run is scored, 3/4.
    one_by_one = held_out_probabilities(members, features, tta=True)
    assert accuracy(labels[[0, 1, 1, 2, 2, 3]], np.concatenate(one_by_one)) == pytest.approx(4 / 6)
    assert tta_validation_accuracy(result, features, labels) == pytest.approx(3 / 4)


@pytest.mark.slow
def test_the_pipeline_reports_a_bags_tta_accuracy_out_of_bag(monkeypatch, tmp_path):
    images, labels, test_images = make_arrays()
    config = Config(members=3, epochs=1, seed=2, scaling="unit", tta=True)
    features = as_features(images, config)
    held_out = [validation_rows for _, validation_rows in split_rows(config, labels)]
    assert len(np.concatenate(held_out)) > len(np.unique(np.concatenate(held_out))), "some row held out twice"
    # With TTA the first member is sure of each row's label; the others lean 0.6 to the next digit.
    right, wrong = np.eye(10)[labels], np.eye(10)[(labels + 1) % 10]
    leaning = [right if index == 0 else 0.4 * right + 0.6 * wrong for index in range(3)]
    row_of = {row.tobytes(): index for index, row in enumerate(features)}

    def scripted_tta(model, pixels, batch_size=512, shifts=None):
        rows = [row_of.get(row.tobytes()) for row in pixels]
        if None in rows:  # the test rows, which only need to be more than one digit
            return np.eye(10, dtype=np.float32)[np.arange(len(pixels)) % 10]
        index = next(index for index, member_rows in enumerate(held_out) if list(member_rows) == rows)
        return leaning[index][rows].astype(np.float32)

    monkeypatch.setattr(src.training.prediction, "predict_with_tta", scripted_tta)
    datasets = Datasets(images, labels, test_images)
    result = run(config, tmp_path, tmp_path / "submission.csv", datasets_override=datasets, verbose=0, report=False)
    # Out-of-bag, a row is right exactly when the first member held it out: its 1.0 outweighs any mean of 0.6s.
    unique = np.unique(np.concatenate(held_out))
    expected = len(held_out[0]) / len(unique)
    member_by_member = len(held_out[0]) / len(np.concatenate(held_out))
    assert expected != member_by_member
    assert result.record.validation.tta_accuracy == pytest.approx(expected)
    # With no shift at all, the TTA figure is the plain one: the same rows, counted the same way.
    monkeypatch.setattr(
        src.training.prediction, "predict_with_tta", functools.partial(predict_with_tta, shifts=[(0, 0)])
    )
    assert tta_validation_accuracy(result.training, features, labels) == result.record.validation.accuracy


@pytest.mark.slow
@pytest.mark.parametrize("plain", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["compiled", "fit"])
def test_a_bag_trains_each_member_on_its_own_rows_from_its_own_seed(plain):
    images, labels, _ = make_arrays(n_per_class=8)
    config = Config(members=3, epochs=1, scaling="unit", batch_size=16, plain=plain)
    result = train(config, images, labels, verbose=0)
    splits = split_rows(config, labels)
    assert len(result.members) == 3 and result.bagged
    for trained, (train_rows, validation_rows), seed in zip(result.members, splits, member_seeds(config), strict=True):
        np.testing.assert_array_equal(trained.train_rows, train_rows)
        np.testing.assert_array_equal(trained.validation_rows, validation_rows)
        assert trained.seed == seed
        predicted = trained.model.predict(images[validation_rows] / 255.0, verbose=0)
        np.testing.assert_allclose(trained.validation_probabilities, predicted, atol=1e-4)
    first_kernels = [trained.model.get_weights()[0] for trained in result.members]
    assert not np.allclose(first_kernels[0], first_kernels[1]) and not np.allclose(first_kernels[1], first_kernels[2])
    held_out = np.unique(np.concatenate([rows for _, rows in splits]))
    np.testing.assert_array_equal(result.validation_rows(), held_out)


def test_members_and_folds_do_not_combine(capsys):
    with pytest.raises(UserError, match="--members 3 and --folds 5 are two ways to ensemble"):
        Config(members=3, folds=5)
    result = run_main(capsys, submit_main, "--sample", "--preset", "wide-ensemble", "--members", "3")
    assert_one_line_error(result, 2, "--members 3 and --folds 5", "choose one")


def test_a_bag_holdout_keeps_the_single_models_rows_out_of_every_member():
    labels = np.arange(203) % 10
    config = Config(members=4, bag_share=0.5, validation_split=0.1, bag_holdout=True, seed=3)
    holdout = split_rows(config.replace(members=1), labels)[0][1]
    np.testing.assert_array_equal(holdout, np.arange(182, 203))
    # Without a bag it is what a single model does anyway.
    np.testing.assert_array_equal(split_rows(config.replace(members=1, bag_holdout=False), labels)[0][1], holdout)
    splits = split_rows(config, labels)
    for train_rows, validation_rows in splits:
        np.testing.assert_array_equal(validation_rows, holdout)
        assert len(train_rows) == bag_size(182, 0.5) == 91 and train_rows.max() < 182
    assert len({frozenset(train_rows) for train_rows, _ in splits}) == 4, "every member draws its own bag"
    # A share of 1 trains every member on every row before the holdout: they differ by their seeds alone.
    for train_rows, validation_rows in split_rows(config.replace(bag_share=1.0), labels):
        np.testing.assert_array_equal(train_rows, np.arange(182))
        np.testing.assert_array_equal(validation_rows, holdout)
    # Member i's bag depends on the seed and i only, as without a holdout.
    np.testing.assert_array_equal(split_rows(config.replace(members=2), labels)[1][0], splits[1][0])
    # Scored as a whole: every holdout row by the mean of all members, not by those that left it out.
    digit = np.eye(10, dtype=np.float32)
    rows = [20, 21]
    sure_wrong = member(rows, [0.7 * digit[1] + 0.3 * digit[0], 0.7 * digit[2] + 0.3 * digit[1]])
    right = [member(rows, [0.6 * digit[0] + 0.4 * digit[1], digit[1]]) for _ in range(2)]
    result = TrainingResult([sure_wrong, *right], bagged=True)
    np.testing.assert_array_equal(result.validation_rows(), rows)
    assert result.validation_accuracy(np.array([0] * 20 + [0, 1])) == 1.0
    assert sure_wrong.validation_accuracy(np.array([0] * 20 + [0, 1])) == 0.0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ("--bag-holdout", "--members", "2", "--validation-split", "0"),
            "use --no-bag-holdout --bag-share 0.9 in place of",
        ),
        (
            ("--bag-holdout", "--members", "2", "--bag-share", "0.01"),
            "--bag-share 0.01 of the 64 rows before the holdout leaves no training row",
        ),
    ],
)
def test_a_bag_holdout_refuses_what_leaves_it_nothing(tmp_path, capsys, flags, message):
    data = write_dataset(tmp_path / "data")
    result = run_main(capsys, submit_main, "--data", data, "--out", tmp_path / "out" / "submission.csv", *flags)
    assert_one_line_error(result, 2, message)
    assert not (tmp_path / "out").exists()


def test_a_bag_with_a_holdout_is_scored_as_a_whole_on_rows_no_member_saw(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    out = tmp_path / "out" / "submission.csv"
    flags = ("--members", "3", "--bag-holdout", "--validation-split", "0.25", "--epochs", "2", "--verbose", "0")
    result = run_main(capsys, submit_main, "--data", data, "--out", out, *flags)
    assert result.returncode == 0, result.stderr
    assert "bag of 3; validation accuracy" in result.stdout
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["validation"]["scheme"] == "bag of 3, holdout"
    assert [score["validation_rows"] for score in record["validation"]["members"]] == [20, 20, 20]
    assert record["config"]["bag_holdout"] is True
    run_dir = Path(record["run_dir"])
    rows = np.load(run_dir / "validation_rows.npy")
    np.testing.assert_array_equal(rows, np.arange(60, 80))
    # The figure is the whole bag's: its mean probabilities on those rows, which no member trained on.
    labels = np.load(run_dir / "validation_labels.npy")
    probabilities = np.load(run_dir / "validation_probabilities.npy")
    assert record["validation"]["accuracy"] == pytest.approx(accuracy(labels, probabilities))
