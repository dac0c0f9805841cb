"""Blending runs: their test probabilities averaged, and the held-out rows they share, to measure the gain.

NumPy only: `src.blend` is its command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.core.config import N_CLASSES
from src.core.errors import UserError


@dataclass
class SharedValidation:
    """The held-out rows every blended run predicted, their labels, and each run's probabilities on them."""

    rows: np.ndarray
    labels: np.ndarray
    probabilities: list[np.ndarray]


def check_same_test_file(run_dirs: list[Path], records) -> None:
    """Every run must have predicted the same test file (by its sha256 in the run's record)."""
    digests = []
    for run_dir, record in zip(run_dirs, records, strict=True):
        if record.inputs.test.sha256 is None:
            raise UserError(f"{run_dir}: its record names no test file sha256, so what it predicted cannot be matched")
        digests.append(record.inputs.test.sha256)
    for run_dir, digest in zip(run_dirs[1:], digests[1:], strict=True):
        if digest != digests[0]:
            raise UserError(
                f"{run_dirs[0]} and {run_dir} were made on different test files "
                f"(sha256 {digests[0][:12]}... and {digest[:12]}...); blend runs of one test set"
            )


def normalized_weights(weights) -> np.ndarray:
    """`weights` (finite, >= 0, not all 0) scaled to sum to 1.

    Divided by the largest first: `1e308,1e308` would sum to inf and every share become 0.
    """
    weights = np.asarray(weights, dtype=np.float64)
    scaled = weights / weights.max()
    return scaled / scaled.sum()


def weighted_mean(arrays: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The weighted mean of equally shaped arrays; `weights` need not sum to 1."""
    return np.tensordot(normalized_weights(weights), np.stack(arrays), axes=1)


def held_out_by_row(arrays) -> tuple[np.ndarray, np.ndarray]:
    """A run's held-out rows, each once, and its probabilities on them.

    A row held out by several members (bagging) gets their mean, as the run's
    own out-of-bag score counts it.
    """
    rows, positions = np.unique(arrays.validation_rows, return_inverse=True)
    sums = np.zeros((len(rows), N_CLASSES))
    np.add.at(sums, positions, arrays.validation_probabilities)
    counts = np.bincount(positions, minlength=len(rows))
    return rows, sums / counts[:, None]


def shared_validation(loaded) -> SharedValidation | None:
    """The held-out rows all runs share, with their probabilities; None when they share none.

    Rows can only be matched when every run trained on the same `train.csv`:
    the same sha256 in their records.
    """
    train_digests = {record.inputs.train.sha256 for _, record in loaded}
    if len(train_digests) != 1 or None in train_digests:
        return None
    by_row = [held_out_by_row(arrays) for arrays, _ in loaded]
    shared = by_row[0][0]
    for rows, _ in by_row[1:]:
        shared = np.intersect1d(shared, rows)
    if not len(shared):
        return None
    probabilities = [values[np.searchsorted(rows, shared)] for rows, values in by_row]
    labels = loaded[0][0].train_labels[shared]
    return SharedValidation(shared, labels, probabilities)
