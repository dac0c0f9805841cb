"""Training one model, or a stratified k-fold ensemble of them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from sklearn.model_selection import StratifiedKFold
from tensorflow import keras

from .config import N_CLASSES, Config
from .data import as_features
from .evaluation import accuracy
from .model import build_model
from .prediction import predict_probabilities
from .stacked import train_stacked


@dataclass
class Member:
    """One trained model and how it did on the rows it never trained on."""

    model: keras.Model
    history: dict[str, list[float]]
    validation_rows: np.ndarray
    validation_labels: np.ndarray
    validation_probabilities: np.ndarray
    seconds: float

    def validation_accuracy(self, labels: np.ndarray) -> float:
        return accuracy(labels[self.validation_rows], self.validation_probabilities)


@dataclass
class TrainingResult:
    """The members of a run; one for a single model, K for a k-fold ensemble."""

    members: list[Member] = field(default_factory=list)

    @property
    def models(self) -> list[keras.Model]:
        return [member.model for member in self.members]

    def validation_rows(self) -> np.ndarray:
        return np.concatenate([member.validation_rows for member in self.members])

    def validation_probabilities(self) -> np.ndarray:
        return np.concatenate([member.validation_probabilities for member in self.members])

    def validation_members(self) -> np.ndarray:
        """Which member predicted each of `validation_rows()`."""
        sizes = [len(member.validation_rows) for member in self.members]
        return np.repeat(np.arange(len(sizes)), sizes)

    def validation_accuracy(self, labels: np.ndarray) -> float:
        """Accuracy on the held-out rows (out-of-fold for an ensemble)."""
        return accuracy(labels[self.validation_rows()], self.validation_probabilities())


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def split_rows(config: Config, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(train_rows, validation_rows)` for each member.

    A single model holds out the last `validation_split` of the rows, exactly as
    Keras' `fit(validation_split=...)` does; an ensemble uses scikit-learn's
    `StratifiedKFold`, so every row is validated exactly once.
    """
    n_samples = len(labels)
    if config.folds == 1:
        split_at = int(math.floor(n_samples * (1.0 - config.validation_split)))
        return [(np.arange(split_at), np.arange(split_at, n_samples))]
    folds = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    return list(folds.split(np.zeros(n_samples), labels))


def train(config: Config, images: np.ndarray, labels: np.ndarray, verbose: int = 2) -> TrainingResult:
    """Train the model (or the k-fold ensemble) that `config` describes.

    By default every member is trained at once by `src.stacked`'s compiled loop; with
    `config.plain`, one after another by Keras' `model.fit`. Both train the
    same thing: same initialisation, loss, optimizer, batches and held-out rows.

    Args:
        config: The run's settings.
        images: uint8 pixels, shape (n_samples, 784).
        labels: Digits 0..9, shape (n_samples,).
        verbose: Keras' `fit` verbosity; 0 also silences the per-fold lines.
    """
    seed_everything(config.seed)
    features = as_features(images, config.scaling)
    splits = split_rows(config, labels)
    if config.plain:
        result = train_plain(config, features, labels, splits, verbose)
    else:
        result = train_together(config, features, labels, splits, verbose)
    if verbose and config.folds > 1:
        for index, member in enumerate(result.members, start=1):
            print(
                f"fold {index}/{config.folds}: validation accuracy "
                f"{member.validation_accuracy(labels):.4f} ({member.seconds:.1f} s)",
                flush=True,
            )
    return result


def train_plain(config: Config, features, labels, splits, verbose: int) -> TrainingResult:
    """One `model.fit` per member, as the tutorial does it."""
    targets = keras.utils.to_categorical(labels, N_CLASSES)
    result = TrainingResult()
    for train_rows, validation_rows in splits:
        started = time.perf_counter()
        model = build_model(config)
        if config.folds == 1:
            # The tutorial's call, verbatim: Keras holds out the last rows itself.
            history = model.fit(
                features,
                targets,
                validation_split=config.validation_split,
                batch_size=config.batch_size,
                epochs=config.epochs,
                verbose=verbose,
            )
        else:
            history = model.fit(
                features[train_rows],
                targets[train_rows],
                validation_data=(features[validation_rows], targets[validation_rows]),
                batch_size=config.batch_size,
                epochs=config.epochs,
                verbose=verbose,
            )
        member = Member(
            model=model,
            history=history.history,
            validation_rows=validation_rows,
            validation_labels=labels[validation_rows],
            validation_probabilities=predict_probabilities([model], features[validation_rows]),
            seconds=time.perf_counter() - started,
        )
        result.members.append(member)
    return result


def train_together(config: Config, features, labels, splits, verbose: int) -> TrainingResult:
    """Every member at once, in one compiled program: `src.stacked.train_stacked`."""
    started = time.perf_counter()
    trained = train_stacked(config, features, labels, splits, verbose)
    # The members shared one loop; each is charged an equal share of its time.
    seconds = (time.perf_counter() - started) / len(splits)
    result = TrainingResult()
    for (model, probabilities), (_, validation_rows) in zip(trained, splits, strict=True):
        member = Member(
            model=model,
            history=model.history.history,
            validation_rows=validation_rows,
            validation_labels=labels[validation_rows],
            validation_probabilities=probabilities,
            seconds=seconds,
        )
        result.members.append(member)
    return result
