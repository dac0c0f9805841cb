"""Pseudo-labels: a second training run that adds the test images the first run is sure of.

The first run trains as the config says and predicts the test images; those whose
highest probability is at least `config.pseudo_label` join every member's training
rows under the label predicted, and the second run trains afresh with them. They
never join a held-out row (see `train`'s `extra`), so every reported accuracy is
still measured on labelled rows only. The test file's true labels are never known.
"""

from __future__ import annotations

import math

import numpy as np

from src.core.config import Config
from src.data.loading import as_features
from src.training.hooks import TrainingCallbacks
from src.training.prediction import predict_probabilities, uses_tta
from src.training.trainer import TrainingResult, train


def confident_rows(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The rows whose highest probability is at least `threshold`."""
    return np.flatnonzero(probabilities.max(axis=1) >= threshold)


def pseudo_label_line(probabilities: np.ndarray, chosen: np.ndarray, threshold: float) -> str:
    """What the first run chose; with none chosen, how near the most confident image came."""
    line = f"pseudo-labels: {len(chosen)} of {len(probabilities)} test images at probability >= {threshold:g}"
    if len(chosen):
        return f"{line} join the training rows; second run"
    alone = "second run on the labelled rows alone"
    highest = probabilities.max()
    if not np.isfinite(highest):  # a diverged first run: the submission's check says so, in its words
        return f"{line}; {alone}"
    # Label smoothing caps what a network learns to say (its target is 0.91 at 0.1): a threshold above it takes none.
    # Rounded down, so that the figure shown is never at or above a threshold it missed.
    highest = math.floor(highest * 10_000) / 10_000
    return f"{line} (the most confident reached {highest:.4f}; lower --pseudo-label to add some); {alone}"


def train_with_pseudo_labels(
    config: Config,
    images: np.ndarray,
    labels: np.ndarray,
    test_images: np.ndarray | None,
    verbose: int = 2,
    callbacks: TrainingCallbacks | None = None,
) -> TrainingResult:
    """`train`, then, with `config.pseudo_label`, `train` again with the confident test images added.

    The caller's callbacks (curves, a search's pruning) follow the second run, the one
    the submission comes from. `TrainingResult.pseudo_labels` says how many images joined.
    """
    if not config.pseudo_label or test_images is None:
        return train(config, images, labels, verbose=verbose, callbacks=callbacks)
    if verbose:
        print("first run, to label the test images", flush=True)
    first = train(config, images, labels, verbose=verbose)
    probabilities = predict_probabilities(first.models, as_features(test_images, config), uses_tta(config))
    chosen = confident_rows(probabilities, config.pseudo_label)
    if verbose:
        print(pseudo_label_line(probabilities, chosen, config.pseudo_label), flush=True)
    extra = (test_images[chosen], probabilities[chosen].argmax(axis=1))
    result = train(config, images, labels, verbose=verbose, callbacks=callbacks, extra=extra)
    result.pseudo_labels = len(chosen)
    return result
