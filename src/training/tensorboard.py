"""Training curves for TensorBoard: each member's per-epoch scalars, written as event files.

Keras' own `keras.callbacks.TensorBoard` also writes the graph, weight histograms and
profiler traces; `ScalarWriter` writes only the scalars a run is judged by, so it stays
fast and adds nothing random to training (the submission's bytes do not change).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow import keras

from src.core.interrupts import deferred_interrupts
from src.training.hooks import TrainingCallbacks
from src.training.pseudo_labels import train_with_pseudo_labels

# The curves every run writes, per member and epoch, under TensorBoard's `epoch_` prefix as Keras names them.
SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
MEMBER_FOLDER = "member-{index}"
TENSORBOARD_FOLDER = "tensorboard"  # in each run folder
LIVE_PREFIX = "training-"  # a run's curves while it trains, beside the run folders


def member_folder(root: str | Path, index: int) -> Path:
    """Where member `index` (0-based) writes: `root/member-<index + 1>`, as its model file is numbered."""
    return Path(root) / MEMBER_FOLDER.format(index=index + 1)


def current_learning_rate(model: keras.Model) -> float | None:
    """The optimizer's learning rate now (a schedule's value at the current step); None without an optimizer."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))


class ScalarWriter(keras.callbacks.Callback):
    """Writes `epoch_loss`, `epoch_accuracy`, `epoch_val_loss`, `epoch_val_accuracy` and `epoch_learning_rate`.

    One value per epoch (step = epoch, from 0), flushed at each epoch's end so that
    `tensorboard --logdir` shows a run while it trains.
    """

    def __init__(self, folder: str | Path):
        super().__init__()
        self.folder = Path(folder)
        self.writer = None

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(str(self.folder))

    def on_epoch_end(self, epoch, logs=None):
        values = {name: value for name, value in (logs or {}).items() if name in SCALARS}
        if "learning_rate" not in values:
            rate = current_learning_rate(self.model)
            if rate is not None:
                values["learning_rate"] = rate
        with self.writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(f"epoch_{name}", float(value), step=epoch)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def with_scalar_writers(
    callbacks: TrainingCallbacks | None, folder: Path, writers: list[ScalarWriter]
) -> TrainingCallbacks:
    """`callbacks` with a `ScalarWriter` per member, writing into `folder/member-<i>`, each added to `writers`."""
    callbacks = callbacks or TrainingCallbacks()

    def member(index: int) -> list:
        writers.append(ScalarWriter(member_folder(folder, index)))
        return [writers[-1], *callbacks.member(index)]

    return TrainingCallbacks(member=member, run=callbacks.run)


def live_curves_folder(runs_folder: str | Path) -> Path:
    """Where a run's curves go while it trains: beside the run folders, named by process and time, so unique."""
    return Path(runs_folder) / f"{LIVE_PREFIX}{os.getpid()}-{time.time_ns()}"


def train_with_curves(
    config, images, labels, verbose: int, callbacks: TrainingCallbacks | None, folder: Path, test_images=None
):
    """`train` (twice with `--pseudo-label`, see `src.training.pseudo_labels`), writing TensorBoard's curves
    into `folder`; its writers closed however it ends.

    The caller removes `folder` when the run fails (see `discarded_on_failure`).
    """
    writers = []
    try:
        hooks = with_scalar_writers(callbacks, folder, writers)
        return train_with_pseudo_labels(config, images, labels, test_images, verbose=verbose, callbacks=hooks)
    finally:
        with deferred_interrupts():
            for writer in writers:
                writer.close()


@contextlib.contextmanager
def discarded_on_failure(folder: Path):
    """A failure or a signal inside removes `folder`, and the runs folder holding it when it was made for it.

    A stopped run leaves every folder as it was: even the runs folder, if still empty.
    """
    made_parent = not folder.parent.exists()
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if made_parent:
            with contextlib.suppress(OSError):
                folder.parent.rmdir()  # only if still empty: another run may have started in it
        raise


def keep_curves(folder: Path, run_dir: Path) -> Path | None:
    """Move the curves written while training into the run folder, as `run_dir/tensorboard`."""
    if not folder.is_dir():
        return None
    return Path(shutil.move(str(folder), str(Path(run_dir) / TENSORBOARD_FOLDER)))


def write_hparams(folder: str | Path, trial_id: str, hparams: dict, metrics: dict[str, float]) -> None:
    """One search trial's settings and results, for TensorBoard's HParams tab (`folder`: the trial's curves)."""
    from tensorboard.plugins.hparams import api as hp

    with summary_file(folder):
        hp.hparams(hparams, trial_id=trial_id)
        for name, value in metrics.items():
            tf.summary.scalar(name, value, step=0)


def write_hparams_config(folder: str | Path, hparam_names: list[str], metric_names: list[str]) -> None:
    """The columns of TensorBoard's HParams tab for a study's trials, written at the top of `folder`."""
    from tensorboard.plugins.hparams import api as hp

    with summary_file(folder):
        hp.hparams_config(
            hparams=[hp.HParam(name) for name in hparam_names],
            metrics=[hp.Metric(name) for name in metric_names]
            + [hp.Metric("epoch_val_accuracy", group="member-1", display_name="member 1 val_accuracy")],
        )


@contextlib.contextmanager
def summary_file(folder: str | Path):
    """The block's summaries written into `folder`, with a Ctrl-C held until they are (see `src.core.interrupts`)."""
    with deferred_interrupts():
        writer = tf.summary.create_file_writer(str(folder))
        with writer.as_default():
            yield
        writer.close()
