"""`--pseudo-label`: confident test images join the training rows, never the held-out ones."""

from __future__ import annotations

import numpy as np
import pytest

from src.core.config import Config
from src.core.errors import UserError
from src.data.loading import read_train
from src.data.splits import split_rows
from src.pipeline.run import run
from src.training.pseudo_labels import confident_rows, pseudo_label_line

N_TRAIN, N_TEST = 80, 20  # the tiny data's rows
# Ten classes: the highest of ten probabilities is at least 0.1, so every test image joins.
EVERY_IMAGE = 0.1


def test_confident_rows_are_those_at_or_above_the_threshold():
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_array_equal(confident_rows(probabilities, 0.8), [1, 2])
    np.testing.assert_array_equal(confident_rows(probabilities, 0.95), [])


def test_the_line_says_how_near_the_most_confident_image_came_when_none_is_chosen():
    probabilities = np.array([[0.91, 0.09], [0.3, 0.7]])
    diverged = np.array([[np.nan, np.nan]])
    assert pseudo_label_line(diverged, confident_rows(diverged, 0.9), 0.9) == (
        "pseudo-labels: 0 of 1 test images at probability >= 0.9; second run on the labelled rows alone"
    )
    nearly = np.array([[0.99996, 0.00004]])
    assert "reached 0.9999;" in pseudo_label_line(nearly, confident_rows(nearly, 0.99999), 0.99999)
    assert pseudo_label_line(probabilities, confident_rows(probabilities, 0.9), 0.9) == (
        "pseudo-labels: 1 of 2 test images at probability >= 0.9 join the training rows; second run"
    )
    assert pseudo_label_line(probabilities, confident_rows(probabilities, 0.95), 0.95) == (
        "pseudo-labels: 0 of 2 test images at probability >= 0.95 (the most confident reached 0.9100; "
        "lower --pseudo-label to add some); second run on the labelled rows alone"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes",
    [{}, {"plain": True}, {"folds": 2}, {"members": 2}, {"members": 2, "bag_holdout": True}],
    ids=["holdout", "holdout-with-fit", "folds", "bag", "bag-holdout"],
)
def test_pseudo_labelled_images_train_but_are_never_held_out(tiny_data, tmp_path, changes):
    config = Config(hidden_units=(8,), epochs=2, scaling="unit", pseudo_label=EVERY_IMAGE, **changes)
    result = run(config, tiny_data, tmp_path / "submission.csv", verbose=0, report=False)
    assert result.record.pseudo_labels == N_TEST
    _, labels = read_train(tiny_data / "train.csv")
    test_rows = np.arange(N_TRAIN, N_TRAIN + N_TEST)
    # Each model's rows as the run would split the labelled rows alone, plus every test image to train on.
    for member, (train_rows, validation_rows) in zip(result.training.members, split_rows(config, labels), strict=True):
        np.testing.assert_array_equal(member.validation_rows, validation_rows)
        assert member.validation_rows.max() < N_TRAIN
        np.testing.assert_array_equal(member.train_rows, np.concatenate([train_rows, test_rows]))
    assert result.training.validation_rows().max() < N_TRAIN
    if config.bag_holdout:
        # The whole bag is scored on the last 20%, which no member trained on (nor any of the first run's,
        # split the same way): the test images' labels owe nothing to them.
        np.testing.assert_array_equal(result.training.validation_rows(), np.arange(64, N_TRAIN))
        assert not any(set(member.train_rows) & set(range(64, N_TRAIN)) for member in result.training.members)


@pytest.mark.slow
def test_no_test_image_is_confident_enough_for_a_threshold_of_one(tiny_data, tmp_path):
    config = Config(hidden_units=(8,), epochs=1, scaling="unit", pseudo_label=1.0)
    result = run(config, tiny_data, tmp_path / "submission.csv", verbose=0, report=False)
    assert result.record.pseudo_labels == 0
    assert all(len(member.train_rows) == 64 for member in result.training.members)


def test_a_part_of_a_bag_cannot_pseudo_label():
    with pytest.raises(UserError, match="--pseudo-label labels the test images with the whole bag's first run"):
        Config(members=4, first_member=2, pseudo_label=0.9)
