"""Test-set predictions: one model's softmax, or the mean over an ensemble's."""

from __future__ import annotations

import numpy as np
from tensorflow import keras

PREDICT_BATCH_SIZE = 4096


def predict_probabilities(models: list[keras.Model], features: np.ndarray) -> np.ndarray:
    """Mean softmax output of `models`, shape (n_samples, 10)."""
    if not models:
        raise ValueError("predict_probabilities needs at least one model")
    outputs = [model.predict(features, batch_size=PREDICT_BATCH_SIZE, verbose=0) for model in models]
    return np.mean(outputs, axis=0)
