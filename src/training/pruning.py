"""Stopping a search's hopeless trial early: each epoch's validation accuracy goes to Optuna's pruner."""

from __future__ import annotations

import optuna
from tensorflow import keras

from src.core.config import Config, member_indices, trains_together

# The accuracy the pruner compares trials by, as both trainers log it (a fold ensemble's: its folds' mean).
PRUNING_METRIC = "val_accuracy"


class PruningCallback(keras.callbacks.Callback):
    """Reports `val_accuracy` at each epoch's end (step = epoch, from 0) and stops the trial when Optuna says so.

    Added as a run callback (see `src.training.hooks`), it sees one value per epoch: the whole run's, or,
    where members train one after another, the first member's. Raising `optuna.TrialPruned` ends training
    at once, so the pruned trial leaves no run folder. After the run's last epoch stopping saves nothing,
    so the trial is not pruned then: it completes, with its run. Its last epoch is `config.epochs`'s, or the
    one early stopping ends it at; the trainer adds this callback after its `EarlyStopping` for that.
    """

    def __init__(self, trial: optuna.Trial, config: Config):
        super().__init__()
        self.trial = trial
        # After the first member's last epoch, pruning still saves the members that would follow it.
        self.sees_the_end = trains_together(config) or len(member_indices(config)) == 1
        self.last_epoch = config.epochs - 1

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(PRUNING_METRIC)
        if value is None:
            return
        self.trial.report(float(value), step=epoch)
        if not self.ends_the_run(epoch) and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: validation accuracy {float(value):.4f}")

    def ends_the_run(self, epoch: int) -> bool:
        # Early stopping ends training by setting `stop_training` (the fused loop refuses --early-stopping).
        ends_training = epoch == self.last_epoch or getattr(self.model, "stop_training", False)
        return self.sees_the_end and ends_training
