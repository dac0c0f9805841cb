"""Bagging: each member on its own random 90% of the rows, scored out-of-bag."""

from __future__ import annotations

import numpy as np
import pytest

from src.config import Config, bag_size
from src.errors import UserError
from src.training import Member, TrainingResult, member_seeds, split_rows, train
from tests.conftest import assert_one_line_error, run_command
from tests.synthetic import make_arrays


def test_members_never_validate_on_their_own_training_rows_and_differ_by_seed():
    labels = np.arange(203) % 10
    config = Config(members=5, seed=3)
    splits = split_rows(config, labels)
    assert len(splits) == 5
    for train_rows, validation_rows in splits:
        assert not set(train_rows) & set(validation_rows)
        np.testing.assert_array_equal(np.sort(np.concatenate([train_rows, validation_rows])), np.arange(203))
        assert len(train_rows) == bag_size(203) == 182
    held_out = [frozenset(validation_rows) for _, validation_rows in splits]
    assert len(set(held_out)) == 5, "every member draws its own rows"
    seeds = member_seeds(config)
    assert len(set(seeds)) == 5 and config.seed not in seeds
    # The same seed draws the same bag; another seed another.
    assert [frozenset(rows) for _, rows in split_rows(config, labels)] == held_out
    assert [frozenset(rows) for _, rows in split_rows(config.replace(seed=4), labels)] != held_out
    # Member i's rows depend on the seed and i only, not on how many members there are.
    np.testing.assert_array_equal(split_rows(config.replace(members=2), labels)[1][1], splits[1][1])


def member(rows, probabilities) -> Member:
    rows = np.array(rows)
    return Member(None, {}, rows, np.zeros(len(rows)), np.array(probabilities, np.float32), 0.0)


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


@pytest.mark.parametrize("plain", [False, True], ids=["compiled", "fit"])
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


def test_members_and_folds_do_not_combine():
    with pytest.raises(UserError, match="--members 3 and --folds 5 are two ways to ensemble"):
        Config(members=3, folds=5)
    result = run_command("-m", "src.submit", "--sample", "--preset", "wide-ensemble", "--members", "3")
    assert_one_line_error(result, 2, "--members 3 and --folds 5", "choose one")
