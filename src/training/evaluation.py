"""How well a run did on its held-out rows: every score the package reports, computed once.

NumPy and scikit-learn only, so the report and the record need no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.core.config import N_CLASSES

DIGITS = list(range(N_CLASSES))
# The rows of the per-class table after the ten digits, as scikit-learn names them.
AVERAGES = {"macro avg": "macro", "weighted avg": "weighted"}
CLASS_NAMES = (*map(str, DIGITS), *AVERAGES)


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one digit (or their average), over `support` true rows."""

    precision: float
    recall: float
    f1: float
    support: int


def predicted_labels(probabilities: np.ndarray) -> np.ndarray:
    """The most probable digit of each row (the first one on a tie)."""
    return np.asarray(probabilities).argmax(axis=1).astype(np.int64)


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The share of rows whose most probable digit is the true one."""
    return float(np.mean(predicted_labels(probabilities) == np.asarray(labels)))


def per_class_scores(labels: np.ndarray, predicted: np.ndarray) -> dict[str, ClassScores]:
    """Scores per digit ("0".."9"), then "macro avg" and "weighted avg", as scikit-learn computes them."""
    # Imported here: scikit-learn takes a second to load, and the record and the ledger need only this module's names.
    from sklearn.metrics import precision_recall_fscore_support

    scores = {}
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=DIGITS, zero_division=0)
    for digit in DIGITS:
        scores[str(digit)] = ClassScores(
            float(precision[digit]), float(recall[digit]), float(f1[digit]), int(support[digit])
        )
    for name, average in AVERAGES.items():
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predicted, labels=DIGITS, average=average, zero_division=0
        )
        scores[name] = ClassScores(float(precision), float(recall), float(f1), int(support.sum()))
    return scores


def accuracy_text(accuracy: float | None, missing: str = "none (no rows held out)") -> str:
    """An accuracy to four places, or `missing` when no row was held out to measure it on."""
    return missing if accuracy is None else f"{accuracy:.4f}"


def format_per_class(scores: dict[str, ClassScores], accuracy: float) -> str:
    """The per-class table as aligned text, laid out like `classification_report`'s."""
    lines = [f"{'digit':>12} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
    for name in CLASS_NAMES:
        if name == next(iter(AVERAGES)):
            total = scores[name].support
            lines.append(f"{'accuracy':>12} {'':>9} {'':>9} {accuracy:9.4f} {total:9d}")
        row = scores[name]
        lines.append(f"{name:>12} {row.precision:9.4f} {row.recall:9.4f} {row.f1:9.4f} {row.support:9d}")
    return "\n".join(lines)


def confusion_counts(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """A 10x10 table: rows are the true digit, columns the predicted one."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(labels, predicted, labels=DIGITS)


def confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Positions of the wrongly predicted rows, most confident first (at most `count`)."""
    predicted = predicted_labels(probabilities)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    # A stable sort keeps ties in row order, so the choice is reproducible.
    return wrong[np.argsort(-confidence, kind="stable")][:count]
