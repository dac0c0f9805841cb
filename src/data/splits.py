"""An ensemble's models: each one's seed and rows, NumPy only, so that a fan-out can match its parts without TensorFlow.

Model i of a bag or a k-fold (member or fold i) gets its seed from the run's
seed and i alone, and its rows from that seed and the rows alone (a bag), or
from the run's seed and the labels (a k-fold, whose folds are drawn together):
model i is the same whatever trained before it, and whichever part of a
fan-out trains it.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import StratifiedKFold

from src.core.config import Config, bag_size, ensemble_size, member_indices


def member_seeds(config: Config) -> list[int]:
    """Each model's own seed: `config.seed` for a single model, derived from it and the index in a bag or k-fold.

    A part of an ensemble (`first_member`, `last_member`) gets the seeds of its models only.
    """
    if ensemble_size(config) == 1:
        return [config.seed]
    return [member_seed(config.seed, index) for index in member_indices(config)]


def member_seed(seed: int, index: int) -> int:
    """Model `index`'s (0-based) seed, in a bag or a k-fold."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def bag_rows(n_samples: int, seed: int, share: float) -> tuple[np.ndarray, np.ndarray]:
    """A random `bag_size` of the rows to train on and the rest to validate on, both sorted."""
    order = np.random.default_rng(seed).permutation(n_samples)
    n_train = bag_size(n_samples, share)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def split_rows(config: Config, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(train_rows, validation_rows)` of each model this run trains (one part's only, in a fan-out).

    A single model holds out the last `validation_split` of the rows, exactly as
    Keras' `fit(validation_split=...)` does (none with 0); a k-fold uses
    scikit-learn's `StratifiedKFold`, so every row is validated exactly once;
    a bagged member trains on a random `bag_share` of the rows drawn with its
    own seed and holds out the rest. With `bag_holdout`, the bag holds out the
    single model's rows instead: each member draws its share from the rows
    before them and is scored on them, so the whole bag is scored on rows none
    of its members saw.
    """
    n_samples = len(labels)
    split_at = int(math.floor(n_samples * (1.0 - config.validation_split)))
    holdout = np.arange(split_at, n_samples)
    if config.members > 1 and config.bag_holdout:
        return [(bag_rows(split_at, seed, config.bag_share)[0], holdout) for seed in member_seeds(config)]
    if config.members > 1:
        return [bag_rows(n_samples, seed, config.bag_share) for seed in member_seeds(config)]
    if config.folds == 1:
        return [(np.arange(split_at), holdout)]
    folds = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    # Every fold is drawn, then the part's are kept: fold i's rows do not depend on which part trains it.
    every_fold = list(folds.split(np.zeros(n_samples), labels))
    return [every_fold[index] for index in member_indices(config)]
