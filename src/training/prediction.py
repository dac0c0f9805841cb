"""Predictions: one model's softmax, or the mean over an ensemble's, optionally with test-time augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tensorflow import keras

from src.core.errors import UserError, error_reason
from src.core.interrupts import deferred_interrupts
from src.models.augmentation import predict_with_tta
from src.models.batch_norm import FusedBatchNormalization  # noqa: F401  (registered for `load_model`)

PREDICT_BATCH_SIZE = 4096


def uses_tta(config) -> bool:
    """Whether a run's config asks for test-time augmentation (any family; a config without the setting: no)."""
    return bool(getattr(config, "tta", False))


def predict_probabilities(models: list[keras.Model], features: np.ndarray, tta: bool = False) -> np.ndarray:
    """Mean softmax output of `models`, shape (n_samples, 10).

    With `tta`, each model's output is itself the mean over the fixed small
    shifts of `src.augmentation` (test-time augmentation).
    """
    if not models:
        raise ValueError("predict_probabilities needs at least one model")
    outputs = []
    for model in models:
        # Model after model, so that a Ctrl-C waits for one model's prediction at most.
        with deferred_interrupts():
            if tta:
                outputs.append(predict_with_tta(model, features, batch_size=PREDICT_BATCH_SIZE))
            else:
                outputs.append(model.predict(features, batch_size=PREDICT_BATCH_SIZE, verbose=0))
    return np.mean(outputs, axis=0)


def held_out_probabilities(members, features: np.ndarray, tta: bool = False) -> list[np.ndarray]:
    """Each member's probabilities on its own validation rows, one array per member.

    Args:
        members: Trained members, each with `.model` and `.validation_rows`.
        features: The network's input for every training row.
        tta: Average each prediction over the test-time shifts.
    """
    return [predict_probabilities([member.model], features[member.validation_rows], tta) for member in members]


def tta_validation_accuracy(training, features: np.ndarray, labels: np.ndarray) -> float | None:
    """The run's held-out accuracy with test-time augmentation, counted as the one without it.

    The same rows, combined the same way (`TrainingResult.validation_accuracy`:
    out-of-fold for folds, out-of-bag means for a bag); only each member's
    probabilities are its test-time-augmented ones.

    Args:
        training: The run's `TrainingResult`.
        features: The network's input for every training row.
        labels: Every training row's label.
    """
    return training.validation_accuracy(labels, held_out_probabilities(training.members, features, tta=True))


def load_models(paths: list[Path]) -> list[keras.Model]:
    """The Keras models saved at `paths` (`.keras` files), uncompiled: they only predict."""
    models = []
    for path in paths:
        try:
            models.append(keras.models.load_model(path, compile=False))
        # Keras reports a damaged file as any of several kinds (zip, JSON, HDF5, shape errors).
        except Exception as error:  # noqa: BLE001
            raise UserError(f"{path}: cannot load the saved model: {error_reason(error)}") from None
    return models


def check_input_width(models, paths: list[Path], width: int) -> None:
    """Every model must take rows of `width` pixels, as the test file gives them."""
    for model, path in zip(models, paths, strict=True):
        shape = tuple(model.input_shape)
        if shape[1:] != (width,):
            raise UserError(f"{path}: the model takes inputs of shape {shape[1:]}, not rows of {width} pixels")
