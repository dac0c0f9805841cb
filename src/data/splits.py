"""A bag's members: each one's seed and rows, NumPy only, so that a fan-out can match its parts without TensorFlow.

Member i's seed comes from the run's seed and i alone, and its rows from that
seed and the row count alone: member i is the same whatever N is, and whichever
part of a fan-out trains it.
"""

from __future__ import annotations

import numpy as np

from src.core.config import Config, bag_size, member_indices


def member_seeds(config: Config) -> list[int]:
    """Each member's own seed: `config.seed` for a single model or folds, derived from it and the index in a bag.

    A part of a bag (`first_member`, `last_member`) gets the seeds of its members only.
    """
    if config.members == 1:
        return [config.seed] * config.folds
    return [member_seed(config.seed, index) for index in member_indices(config)]


def member_seed(seed: int, index: int) -> int:
    """Bag member `index`'s (0-based) seed."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def bag_rows(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random `bag_size` of the rows to train on and the rest to validate on, both sorted."""
    order = np.random.default_rng(seed).permutation(n_samples)
    n_train = bag_size(n_samples)
    return np.sort(order[:n_train]), np.sort(order[n_train:])
