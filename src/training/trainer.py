"""Training one model, a stratified k-fold ensemble, or a bag of models.

`train` is the one entry: it splits the rows, builds each member's model and
hands the members to one of two trainers. The tutorial's dense network goes to
`src.stacked`'s compiled loop, every member at once; anything that loop does not
mirror (a CNN, a schedule, augmentation, label smoothing, early stopping) and
every `--plain` run goes to Keras' `fit`, one member after another.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from tensorflow import keras

from src.core.config import N_CLASSES, Config, ensemble_kind, ensemble_size, member_indices, trains_together
from src.core.errors import UserError
from src.core.interrupts import deferred_interrupts, raise_if_interrupted
from src.data.loading import as_features
from src.data.splits import member_seeds, split_rows
from src.models.augmentation import Distortions
from src.models.devices import configure_devices, distribution_strategy, model_scope, training_devices
from src.models.family import count_text
from src.models.registry import build_model, model_cost, out_of_memory
from src.training.epoch_timer import SECONDS_KEY, EpochTimer
from src.training.evaluation import accuracy
from src.training.hooks import TrainingCallbacks
from src.training.prediction import predict_probabilities
from src.training.stacked import train_stacked

# Early stopping watches the held-out rows' loss, smoother than their accuracy.
EARLY_STOPPING_MONITOR = "val_loss"


@dataclass
class Member:
    """One trained model and how it did on the rows it never trained on (none after `--validation-split 0`)."""

    model: keras.Model
    history: dict[str, list[float]]
    validation_rows: np.ndarray
    validation_labels: np.ndarray
    validation_probabilities: np.ndarray
    seconds: float  # its training time; with members trained together, their one shared time
    train_rows: np.ndarray | None = None
    seed: int | None = None
    best_epoch: int | None = None  # 1-based; None when it kept its last epoch's weights

    def validation_accuracy(self, labels: np.ndarray) -> float | None:
        """Accuracy on its held-out rows; `None` when it held none out."""
        if not len(self.validation_rows):
            return None
        return accuracy(labels[self.validation_rows], self.validation_probabilities)


@dataclass
class TrainingResult:
    """The members of a run: one for a single model, K for a k-fold ensemble, N for a bag.

    The held-out rows of a fold ensemble are every row, each scored by the member
    that did not train on it; those of a bag are the out-of-bag rows, each scored
    by the mean of the members that did not train on it.
    """

    members: list[Member] = field(default_factory=list)
    bagged: bool = False
    parameters: int = 0
    # Trained at once in the compiled loop, rather than one `fit` after another.
    trained_together: bool = False
    # How many pseudo-labelled test images joined the training rows (`src.training.pseudo_labels`).
    pseudo_labels: int | None = None

    @property
    def models(self) -> list[keras.Model]:
        return [member.model for member in self.members]

    def held_out(self, member_probabilities: list[np.ndarray] | None = None):
        """The rows the run is scored on, its probabilities on them, and the member that scored each.

        Out-of-fold or holdout: each member's own rows, one after another; a bag:
        `out_of_bag`. Every held-out figure of the run is computed here, so one
        computed from other probabilities (test-time augmentation) counts the
        same rows the same way.

        Args:
            member_probabilities: Each member's probabilities on its own
                validation rows, in place of those it kept from training.

        Returns:
            `(rows, probabilities, members)`; in a bag, `members` names the
            first of the members that held each row out.
        """
        if member_probabilities is None:
            member_probabilities = [member.validation_probabilities for member in self.members]
        member_rows = [member.validation_rows for member in self.members]
        if [len(rows) for rows in member_rows] != [len(values) for values in member_probabilities]:
            raise ValueError("member_probabilities needs one row per validation row of each member")
        if self.bagged:
            return out_of_bag(member_rows, member_probabilities)
        owners = np.repeat(np.arange(len(member_rows)), [len(rows) for rows in member_rows])
        return np.concatenate(member_rows), np.concatenate(member_probabilities), owners

    def validation_rows(self) -> np.ndarray:
        return self.held_out()[0]

    def images_per_second(self) -> list[float]:
        """Training images per second in each epoch: of every member at once when trained together, else their mean.

        An epoch's time is from the end of the one before to its own end (`EpochTimer`), its validation included.
        """
        speeds = []
        for member in self.members:
            ends = member.history.get(SECONDS_KEY, [])
            durations = np.diff([0.0, *ends])
            rows = (
                sum(len(other.train_rows) for other in self.members)
                if self.trained_together
                else len(member.train_rows)
            )
            speeds.append(rows / np.maximum(durations, 1e-9))
            if self.trained_together:
                break  # one shared clock
        epochs = min((len(values) for values in speeds), default=0)
        return [round(float(np.mean([values[epoch] for values in speeds])), 1) for epoch in range(epochs)]

    def validation_probabilities(self) -> np.ndarray:
        return self.held_out()[1]

    def validation_members(self) -> np.ndarray:
        """Which member predicted each of `validation_rows()`; in a bag, the first of those that did."""
        return self.held_out()[2]

    def validation_accuracy(
        self, labels: np.ndarray, member_probabilities: list[np.ndarray] | None = None
    ) -> float | None:
        """Accuracy on the held-out rows (out-of-fold or out-of-bag for an ensemble); `None` without any.

        With `member_probabilities` (see `held_out`), the same accuracy from those instead.
        """
        rows, probabilities, _ = self.held_out(member_probabilities)
        if not len(rows):
            return None
        return accuracy(labels[rows], probabilities)


def out_of_bag(
    member_rows: list[np.ndarray], member_probabilities: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row some member held out, scored by the mean probabilities of the members that held it out.

    Args:
        member_rows: Each member's validation rows.
        member_probabilities: Each member's probabilities on its own rows.

    Returns:
        `(rows, probabilities, first_member)`: the sorted rows, their mean
        probabilities, and the index of the first member that held each out.
    """
    rows = np.concatenate(member_rows)
    probabilities = np.concatenate(member_probabilities)
    owners = np.repeat(np.arange(len(member_rows)), [len(member) for member in member_rows])
    unique_rows, position = np.unique(rows, return_inverse=True)
    sums = np.zeros((len(unique_rows), N_CLASSES), np.float64)
    np.add.at(sums, position, probabilities)
    counts = np.bincount(position, minlength=len(unique_rows))
    first_member = np.full(len(unique_rows), len(member_rows), np.int64)
    np.minimum.at(first_member, position, owners)
    return unique_rows, (sums / counts[:, None]).astype(np.float32), first_member


def validation_scheme(config: Config) -> str:
    """How the held-out rows were chosen, in words, for records and summaries."""
    part = member_indices(config)
    scored = "holdout" if config.bag_holdout else "out-of-bag"
    if config.members > 1 and len(part) < config.members:
        return f"members {part.start + 1}-{part.stop} of a bag of {config.members}, {scored}"
    if config.members > 1:
        return f"bag of {config.members}, {scored}"
    if config.folds > 1 and len(part) < config.folds:
        return f"folds {part.start + 1}-{part.stop} of a stratified {config.folds}-fold"
    if config.folds > 1:
        return f"stratified {config.folds}-fold"
    return "holdout" if config.validation_split else "no validation"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def with_extra_rows(splits, n_rows: int, n_extra: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`splits` with rows `n_rows..n_rows + n_extra - 1` added to every member's training rows."""
    extra_rows = np.arange(n_rows, n_rows + n_extra)
    return [(np.concatenate([train_rows, extra_rows]), validation_rows) for train_rows, validation_rows in splits]


@contextlib.contextmanager
def memory_refused(config: Config):
    """Running out of memory inside is one line naming what to make smaller, not a traceback.

    NumPy's `MemoryError` and TensorFlow's `ResourceExhaustedError` both: the
    estimate of `check_size` let the run start, yet it did not fit.
    """
    try:
        yield
    except (MemoryError, tf.errors.ResourceExhaustedError):
        raise out_of_memory(config) from None


def train(
    config: Config,
    images: np.ndarray,
    labels: np.ndarray,
    verbose: int = 2,
    callbacks: TrainingCallbacks | None = None,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainingResult:
    """Train the model, k-fold ensemble or bag that `config` describes.

    The tutorial's dense network (any members) trains in `src.stacked`'s compiled
    loop, every member at once; everything else, and every `config.plain` run,
    with Keras' `fit`, member after member. Both train the same thing for the
    dense network: same initialisation, loss, optimizer, batches and held-out rows.

    Args:
        config: The run's settings.
        images: uint8 pixels, shape (n_samples, 784).
        labels: Digits 0..9, shape (n_samples,).
        verbose: Keras' `fit` verbosity; 0 also silences the per-member lines.
        callbacks: Callbacks to add (TensorBoard's curves, a search's pruning); see `src.training.hooks`.
        extra: `(images, labels)` added to every member's training rows, never to its held-out
            rows: the pseudo-labelled test images (see `src.training.pseudo_labels`).
    """
    configure_devices()
    seed_everything(config.seed)
    # The rows are split before the extra ones join, so every held-out row is a labelled row.
    splits = split_rows(config, labels)
    if extra is not None:
        splits = with_extra_rows(splits, len(labels), len(extra[1]))
        images, labels = np.concatenate([images, extra[0]]), np.concatenate([labels, extra[1]])
    features = as_features(images, config)
    seeds = member_seeds(config)
    together = trains_together(config)
    trainer = train_together if together else train_with_fit
    with deferred_interrupts():
        result = trainer(config, features, labels, splits, seeds, verbose, callbacks or TrainingCallbacks())
    result.bagged = config.members > 1
    result.trained_together = together
    result.parameters = int(result.members[0].model.count_params())
    if verbose:
        print_members(config, result, labels)
    return result


def print_members(config: Config, result: TrainingResult, labels: np.ndarray) -> None:
    """The parameter count, then each member's held-out accuracy and time when there are several.

    Members trained together have one shared time, printed once rather than split among them.
    """
    multiply_adds = model_cost(config).multiply_adds
    print(
        f"model: {config.family}, {result.parameters:,} parameters and {count_text(multiply_adds)} multiply-adds "
        "per image, per member",
        flush=True,
    )
    if len(result.members) == 1:
        return
    for index, member in enumerate(result.members, start=1):
        took = "" if result.trained_together else f" ({member.seconds:.1f} s)"
        print(
            f"{ensemble_kind(config)} {index}/{len(result.members)}: validation accuracy "
            f"{member.validation_accuracy(labels):.4f}{took}",
            flush=True,
        )
    if result.trained_together:
        print(f"{ensemble_kind(config)}s trained together in {result.members[0].seconds:.1f} s", flush=True)
    if result.bagged:
        n_rows = len(result.validation_rows())
        part = member_indices(config)
        whole = "the whole bag's" if len(part) == config.members else f"members {part.start + 1}-{part.stop}'s"
        name = f"{whole} validation" if config.bag_holdout else "out-of-bag"
        print(f"{name} accuracy {result.validation_accuracy(labels):.4f} on {n_rows} rows", flush=True)


def new_model(config: Config, train_rows: np.ndarray, seed: int, strategy=None) -> keras.Model:
    """A model's fresh weights; in a bag or k-fold, drawn from its own seed, whatever was drawn before it."""
    if ensemble_size(config) > 1:
        keras.utils.set_random_seed(seed)
    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        # Keras 3's loop of several steps per call fails under a strategy with more than one device
        # ("You must feed a value for placeholder tensor", keras-team/keras#19246); one step per call
        # trains the same weights.
        config = config.replace(steps_per_execution=1)
    with model_scope(config.family, strategy):
        return build_model(config, steps_per_epoch=steps_per_epoch)


def batches(
    features: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
    replicas: int = 1,
    distortions: Distortions | None = None,
    distorting: tf.Variable | None = None,
):
    """A `tf.data` pipeline of `(features, targets)` batches, reshuffled every epoch when `shuffle_seed` is given.

    Split over `replicas` devices, a batch must give each device a row: an empty share makes a
    step's per-device gradients of different shapes (`AddN` fails) or its statistics NaN. So a
    last batch smaller than `replicas` is left out; with `shuffle_seed` that is other rows each epoch.
    (A last batch of any other size trains; the batch size itself must split evenly: `replica_count`.)

    `distortions` warp each batch, with new draws every epoch, while `distorting` holds True (always,
    without it); the draws come from `shuffle_seed` and each batch's place, so a run is repeatable.
    Reading the variable is a stateful op: under TensorFlow's op determinism (`seed_everything`) the
    pipeline then makes one batch at a time, before each step. Without it the warps run in the
    pipeline's threads.
    """
    dataset = tf.data.Dataset.from_tensor_slices((features, targets))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(features), seed=shuffle_seed, reshuffle_each_iteration=True)
    remainder = len(features) % batch_size
    if 0 < remainder < replicas:
        dataset = dataset.take(len(features) - remainder)
    dataset = dataset.batch(batch_size)
    if distortions is not None:
        seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).batch(2)

        def distort(batch, seed):
            images, labels = batch
            if distorting is None:
                return distortions(images, seed), labels
            return tf.cond(distorting, lambda: distortions(images, seed), lambda: images), labels

        dataset = tf.data.Dataset.zip(dataset, seeds).map(distort, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def replica_count(config: Config, strategy) -> int:
    """How many devices share each batch; a batch size they cannot share evenly is refused."""
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if config.batch_size % replicas:
        below = config.batch_size - config.batch_size % replicas
        choices = f"{below} or {below + replicas}" if below else f"{replicas}"
        raise UserError(
            f"--batch-size {config.batch_size} does not split evenly over the {replicas} training devices "
            f"(Keras then fails to add up the devices' shares): use a multiple of {replicas}, such as {choices}"
        )
    return replicas


def train_with_fit(
    config: Config, features, labels, splits, seeds, verbose: int, hooks: TrainingCallbacks
) -> TrainingResult:
    """One Keras `fit` per member, on a `tf.data` pipeline, over every device TensorFlow sees.

    One model spreads each batch over every device (`MirroredStrategy`); several, on two or more
    devices, train side by side, one per device (`train_side_by_side`).
    """
    targets = keras.utils.to_categorical(labels, N_CLASSES)
    devices = training_devices()
    if len(splits) > 1 and len(devices) > 1:
        return train_side_by_side(config, features, targets, labels, splits, seeds, verbose, hooks, devices)
    strategy = distribution_strategy()
    replicas = replica_count(config, strategy)
    result = TrainingResult()
    for index, (split, seed) in enumerate(zip(splits, seeds, strict=True), start=1):
        started = time.perf_counter()
        if verbose and len(splits) > 1:
            print(f"{ensemble_kind(config)} {index}/{len(splits)}: training on {len(split[0])} rows", flush=True)
        prepared = prepare_fit(config, features, targets, split, seed, hooks, index - 1, strategy, replicas)
        result.members.append(run_fit(config, prepared, features, labels, verbose, started))
    return result


def train_side_by_side(
    config: Config, features, targets, labels, splits, seeds, verbose: int, hooks: TrainingCallbacks, devices
) -> TrainingResult:
    """Several members at once, one per device, each trained exactly as alone on one device.

    Measured on two logical CPU devices (docs/speed.md), this beat mirroring each small network
    over both. Each member's model and pipelines are built here, one after another, as seeds are
    global; only `fit` runs in the threads, under its device. Keras' progress bars would
    interleave, so each member prints one line when it is done instead.
    """
    members = []
    for wave in range(0, len(splits), len(devices)):
        started = time.perf_counter()
        tasks = []
        for index, device in zip(range(wave, len(splits)), devices, strict=False):
            with tf.device(device):
                prepared = prepare_fit(config, features, targets, splits[index], seeds[index], hooks, index, None, 1)
            tasks.append(functools.partial(fit_on, device, config, prepared, features, labels, started))
        trained = in_threads(tasks)
        for index, (member, device) in enumerate(zip(trained, devices, strict=False), start=wave + 1):
            if verbose:
                print(
                    f"{ensemble_kind(config)} {index}/{len(splits)}: trained on {len(member.train_rows)} rows "
                    f"on {device} in {member.seconds:.1f} s",
                    flush=True,
                )
        members += trained
    return TrainingResult(members=members)


def fit_on(device: str, config: Config, prepared, features, labels, started: float) -> Member:
    with tf.device(device):
        return run_fit(config, prepared, features, labels, 0, started)


def in_threads(tasks: list) -> list:
    """Each task's result, the tasks run at once in threads; the first exception (a pruned trial, say) re-raised.

    Daemon threads: a Ctrl-C stops each at its next batch (see `src.core.interrupts`), a second one the
    waiting main thread at once, and the process does not wait for them.
    """
    results, errors = [None] * len(tasks), [None] * len(tasks)

    def run(position: int) -> None:
        try:
            results[position] = tasks[position]()
        except BaseException as error:  # handed to the main thread, which raises it
            errors[position] = error

    threads = [threading.Thread(target=run, args=(position,), daemon=True) for position in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results


@dataclass
class PreparedFit:
    """A model ready for `fit`: its weights built and its batches' order fixed, both from its own seed."""

    model: keras.Model
    training: tf.data.Dataset
    validation: tf.data.Dataset | None
    callbacks: list
    stopping: keras.callbacks.EarlyStopping | None
    train_rows: np.ndarray
    validation_rows: np.ndarray
    seed: int


def best_epoch_callback(config: Config) -> keras.callbacks.EarlyStopping | None:
    """Early stopping (`early_stopping` epochs of patience), or `keep_best`'s best epoch; None for neither.

    Keras 3 restores the best epoch's weights at the end of training, stopped early or not.
    """
    if not (config.early_stopping or config.keep_best):
        return None
    return keras.callbacks.EarlyStopping(
        monitor=EARLY_STOPPING_MONITOR, patience=config.early_stopping or config.epochs, restore_best_weights=True
    )


def prepare_fit(
    config: Config, features, targets, split, seed: int, hooks: TrainingCallbacks, index: int, strategy, replicas: int
) -> PreparedFit:
    """Build member `index`'s (0-based) model, callbacks and pipelines: every draw from its seed, before training."""
    train_rows, validation_rows = split
    model = new_model(config, train_rows, seed, strategy)
    if ensemble_size(config) > 1:
        keras.utils.set_random_seed(seed)  # its training draws too, whatever the models before it drew
    validation = None
    callbacks = [EpochTimer()]
    distortions = Distortions.of(config)
    # Only clean epochs need the switch; a pipeline without it can run in parallel.
    distorting = tf.Variable(True, trainable=False, name="distorting") if config.clean_epochs else None
    if config.clean_epochs:
        callbacks.append(CleanEpochs(config.epochs - config.clean_epochs, distorting))
    if len(validation_rows):
        held_out = (features[validation_rows], targets[validation_rows])
        validation = batches(*held_out, config.batch_size, replicas=replicas)
    stopping = best_epoch_callback(config) if len(validation_rows) else None
    if stopping is not None:
        callbacks.append(stopping)
    # The caller's after early stopping, so that they see an epoch that ends training as the last.
    callbacks.extend(hooks.for_fit(index))
    rows = (features[train_rows], targets[train_rows])
    training = batches(*rows, config.batch_size, seed, replicas, distortions, distorting)
    if strategy is None:
        build_training_state(model, training)
    callbacks.append(RaiseIfInterrupted())  # last: after every other callback of the same hook
    return PreparedFit(model, training, validation, callbacks, stopping, train_rows, validation_rows, seed)


def build_training_state(model: keras.Model, training: tf.data.Dataset) -> None:
    """Create the optimizer's and the metrics' variables now, from the batches' shapes alone.

    Without a distribution strategy Keras leaves them to the first trace of its training step,
    and a trace that creates variables makes TensorFlow trace the step a second time: about a
    second more for every model (a quarter to a third of a small model's whole `fit`). Under a
    strategy Keras builds them itself before tracing. The values are the same zeros either
    way, and no batch is drawn, so the trained weights are the same to the byte.
    """
    # A Keras without this method only traces the step twice, as before.
    build = getattr(model, "_symbolic_build", None)
    if build is not None:
        build(data_batch=training.element_spec)


def run_fit(config: Config, prepared: PreparedFit, features, labels, verbose: int, started: float) -> Member:
    """Train a prepared model with `fit`, then score its held-out rows."""
    history = prepared.model.fit(
        prepared.training,
        validation_data=prepared.validation,
        epochs=config.epochs,
        callbacks=prepared.callbacks,
        shuffle=False,  # the pipeline shuffles, with the member's seed
        verbose=verbose,
    )
    validation_rows = prepared.validation_rows
    probabilities = np.zeros((0, N_CLASSES), np.float32)
    if len(validation_rows):
        probabilities = predict_probabilities([prepared.model], features[validation_rows])
    return Member(
        model=prepared.model,
        history=history.history,
        validation_rows=validation_rows,
        validation_labels=labels[validation_rows],
        validation_probabilities=probabilities,
        seconds=time.perf_counter() - started,
        train_rows=prepared.train_rows,
        seed=prepared.seed,
        best_epoch=None if prepared.stopping is None else prepared.stopping.best_epoch + 1,
    )


class RaiseIfInterrupted(keras.callbacks.Callback):
    """Raise a Ctrl-C that Keras' callback list swallowed, at the next batch or epoch (see `src.core.interrupts`).

    Batch beginnings, not ends: a callback with its own batch-end hook would stop Keras
    from dispatching those hooks off the training thread.
    """

    def check(self, *args, **kwargs):
        raise_if_interrupted()

    on_train_batch_begin = on_test_batch_begin = on_epoch_end = on_train_end = check


class CleanEpochs(keras.callbacks.Callback):
    """Switches the distortions off from epoch `first` (0-based) on: the last epochs see the images as they are.

    `fit` makes each epoch's pipeline after this hook has run, so none of its batches was distorted ahead.
    """

    def __init__(self, first: int, distorting: tf.Variable):
        super().__init__()
        self.first = first
        self.distorting = distorting

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.first:
            self.distorting.assign(False)


def train_together(
    config: Config, features, labels, splits, seeds, verbose: int, hooks: TrainingCallbacks
) -> TrainingResult:
    """Every member at once, in one compiled program: `src.stacked.train_stacked`."""
    started = time.perf_counter()
    models = []
    for (train_rows, _), seed in zip(splits, seeds, strict=True):
        models.append(new_model(config, train_rows, seed))
        raise_if_interrupted()  # building many members takes a while before the loop's first check
    trained = train_stacked(config, models, features, labels, splits, verbose, hooks, seeds)
    # The members shared one loop: each one's time is that loop's whole time, as the record gives it.
    seconds = time.perf_counter() - started
    result = TrainingResult()
    for (model, probabilities, best_epoch), (train_rows, validation_rows), seed in zip(
        trained, splits, seeds, strict=True
    ):
        member = Member(
            model=model,
            history=model.history.history,
            validation_rows=validation_rows,
            validation_labels=labels[validation_rows],
            validation_probabilities=probabilities,
            seconds=seconds,
            train_rows=train_rows,
            seed=seed,
            best_epoch=best_epoch,
        )
        result.members.append(member)
    return result
