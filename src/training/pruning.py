"""Stopping a search's hopeless trial early: each epoch's validation accuracy goes to Optuna's pruner."""

from __future__ import annotations

import optuna
from tensorflow import keras

# The accuracy the pruner compares trials by, as both trainers log it (a fold ensemble's: its folds' mean).
PRUNING_METRIC = "val_accuracy"


class PruningCallback(keras.callbacks.Callback):
    """Reports `val_accuracy` at each epoch's end (step = epoch, from 0) and stops the trial when Optuna says so.

    Added as a run callback (see `src.training.hooks`), it sees one value per epoch for the whole run.
    Raising `optuna.TrialPruned` ends training at once, so the pruned trial leaves no run folder. After
    the last of `epochs` nothing is left to save, so the trial is not pruned then: it completes, with its run.
    """

    def __init__(self, trial: optuna.Trial, epochs: int):
        super().__init__()
        self.trial = trial
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(PRUNING_METRIC)
        if value is None:
            return
        self.trial.report(float(value), step=epoch)
        if epoch + 1 < self.epochs and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: validation accuracy {float(value):.4f}")
