"""The scores every report and record use, checked against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from src.training.evaluation import (
    accuracy,
    confident_mistakes,
    confusion_counts,
    format_per_class,
    per_class_scores,
    predicted_labels,
)

# Four rows over digits 0..2 (the other seven columns are zero): predicted 0, 1, 1, 2; true 0, 1, 2, 2.
PROBABILITIES = np.zeros((4, 10))
PROBABILITIES[:, :3] = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]
LABELS = np.array([0, 1, 2, 2])


def test_predicted_labels_take_the_most_probable_digit_and_the_first_on_a_tie():
    assert predicted_labels(PROBABILITIES).tolist() == [0, 1, 1, 2]
    tie = np.full((1, 10), 0.1)
    assert predicted_labels(tie).tolist() == [0]
    assert predicted_labels(PROBABILITIES).dtype == np.int64


def test_accuracy_is_the_share_of_right_rows():
    assert accuracy(LABELS, PROBABILITIES) == 0.75
    assert accuracy(np.array([1, 1, 1, 1]), PROBABILITIES) == 0.5


def test_per_class_scores_by_hand():
    scores = per_class_scores(LABELS, predicted_labels(PROBABILITIES))
    # Digit 1: predicted twice, right once (precision 1/2); one true row, found (recall 1).
    assert scores["1"].precision == 0.5 and scores["1"].recall == 1.0 and scores["1"].support == 1
    assert scores["1"].f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    # Digit 2: predicted once, right (precision 1); two true rows, one found (recall 1/2).
    assert scores["2"].precision == 1.0 and scores["2"].recall == 0.5 and scores["2"].support == 2
    # Digits never seen nor predicted score 0, not a warning.
    assert scores["7"].precision == scores["7"].recall == scores["7"].f1 == 0.0 and scores["7"].support == 0
    # The averages run over all ten digits (macro) or weigh each by its support (weighted).
    assert scores["macro avg"].recall == pytest.approx((1 + 1 + 0.5) / 10)
    assert scores["weighted avg"].recall == pytest.approx((1 * 1 + 1 * 1 + 0.5 * 2) / 4)
    assert scores["macro avg"].support == scores["weighted avg"].support == 4


def test_per_class_table_has_every_digit_the_accuracy_and_the_averages():
    scores = per_class_scores(LABELS, predicted_labels(PROBABILITIES))
    lines = format_per_class(scores, 0.75).splitlines()
    assert lines[0].split() == ["digit", "precision", "recall", "f1-score", "support"]
    assert [line.split()[0] for line in lines[1:11]] == [str(digit) for digit in range(10)]
    assert lines[11].split() == ["accuracy", "0.7500", "4"]
    assert lines[12].startswith("   macro avg") and lines[13].startswith("weighted avg")
    assert lines[2].split() == ["1", "0.5000", "1.0000", "0.6667", "1"]


def test_confusion_counts_rows_are_true_columns_predicted():
    counts = confusion_counts(LABELS, predicted_labels(PROBABILITIES))
    expected = np.zeros((10, 10), dtype=int)
    expected[0, 0] = expected[1, 1] = expected[2, 1] = expected[2, 2] = 1
    np.testing.assert_array_equal(counts, expected)


def test_confident_mistakes_are_the_wrong_rows_most_confident_first():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7], [0.95, 0.05]])
    labels = np.array([0, 0, 0, 1, 1])
    np.testing.assert_array_equal(confident_mistakes(probabilities, labels, count=24), [4, 1, 2])
    np.testing.assert_array_equal(confident_mistakes(probabilities, labels, count=1), [4])
    # Ties keep row order, so the choice is reproducible.
    tied = np.array([[0.2, 0.8], [0.2, 0.8]])
    np.testing.assert_array_equal(confident_mistakes(tied, np.array([0, 0]), count=24), [0, 1])
