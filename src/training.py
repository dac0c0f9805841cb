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

# keras.optimizers.Adam's defaults, which the stacked loop reproduces.
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-7
# XLA-compile the stacked loop: on 2 CPU cores it cut the step time by a quarter
# (5 members) to a half (one model), for about a second more compiling.
JIT_COMPILE = True


@dataclass
class Member:
    """One trained model and how it did on the rows it never trained on."""

    model: keras.Model
    history: dict[str, list[float]]
    validation_rows: np.ndarray
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

    By default every member is trained at once by `train_stacked`; with
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
        result = train_stacked(config, features, labels, splits, verbose)
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
        probabilities = predict_probabilities([model], features[validation_rows])
        member = Member(model, history.history, validation_rows, probabilities, time.perf_counter() - started)
        result.members.append(member)
    return result


def train_stacked(config: Config, features, labels, splits, verbose: int) -> TrainingResult:
    """Train every member at once in one compiled program; see `StackedDense`.

    Each member starts from a fresh `build_model(config)` model's weights, draws
    its own shuffled batches from its own training rows every epoch, and keeps
    Keras-style logs (loss, accuracy, val_loss, val_accuracy) in its own History;
    Keras' progress display prints one line per epoch for the whole ensemble.
    At the end each member's weights go back into its Keras model.
    """
    started = time.perf_counter()
    models = [build_model(config) for _ in splits]
    network = StackedDense(config, stacked_weights(models), features, labels)
    train_rows = [rows for rows, _ in splits]
    validation_rows, validation_mask = padded_rows([rows for _, rows in splits])
    n_steps = math.ceil(max(len(rows) for rows in train_rows) / config.batch_size)
    # Each member keeps its own History; one progress display speaks for them all.
    histories = [
        keras.callbacks.CallbackList(add_history=True, model=model, epochs=config.epochs, steps=n_steps)
        for model in models
    ]
    progress = keras.callbacks.CallbackList(
        add_progbar=verbose != 0, model=models[0], verbose=verbose, epochs=config.epochs, steps=n_steps
    )
    callbacks = [*histories, progress]
    shuffler = np.random.default_rng(config.seed)
    for member_callbacks in callbacks:
        member_callbacks.on_train_begin()
    for epoch in range(config.epochs):
        for member_callbacks in callbacks:
            member_callbacks.on_epoch_begin(epoch)
        batch_rows, batch_mask = epoch_batches(shuffler, train_rows, config.batch_size)
        loss, accuracy, val_loss, val_accuracy, val_probabilities = network.run_epoch(
            batch_rows, batch_mask, validation_rows, validation_mask
        )
        logs = {"accuracy": accuracy, "loss": loss, "val_accuracy": val_accuracy, "val_loss": val_loss}
        logs = {name: values.numpy() for name, values in logs.items()}
        for member, member_callbacks in enumerate(histories):
            member_callbacks.on_epoch_end(epoch, {name: float(values[member]) for name, values in logs.items()})
        progress.on_epoch_end(epoch, ensemble_logs(logs))
    for member_callbacks in callbacks:
        member_callbacks.on_train_end()

    # The members shared one loop; each is charged an equal share of its time.
    seconds = (time.perf_counter() - started) / len(splits)
    result = TrainingResult()
    for member, (model, (_, rows)) in enumerate(zip(models, splits, strict=True)):
        model.set_weights(network.member_weights(member))
        # The last epoch scored the validation rows with the final weights already.
        probabilities = val_probabilities[member, : len(rows)].numpy()
        result.members.append(Member(model, model.history.history, rows, probabilities, seconds))
    return result


def ensemble_logs(logs: dict[str, np.ndarray]) -> dict[str, float]:
    """One epoch's logs for the progress line: one member's own, or the members' means and each one's val_accuracy."""
    if len(logs["loss"]) == 1:
        return {name: float(values[0]) for name, values in logs.items()}
    means = {f"mean_{name}": float(np.mean(values)) for name, values in logs.items()}
    folds = {f"fold{member}_val_accuracy": float(value) for member, value in enumerate(logs["val_accuracy"], start=1)}
    return {**means, **folds}


def stacked_weights(models: list[keras.Model]) -> list[np.ndarray]:
    """Each weight of `models` (kernel, bias, ...), stacked along a leading member axis."""
    return [np.stack(values) for values in zip(*(model.get_weights() for model in models), strict=True)]


def padded_rows(row_lists: list[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of each member, padded with row 0 to `length`, and a 0/1 mask of the real ones.

    Returns:
        `(rows, mask)`, int32 and float32, both of shape (n_members, length).
    """
    length = max(len(rows) for rows in row_lists) if length is None else length
    rows = np.zeros((len(row_lists), length), np.int32)
    mask = np.zeros((len(row_lists), length), np.float32)
    for member, member_rows in enumerate(row_lists):
        rows[member, : len(member_rows)] = member_rows
        mask[member, : len(member_rows)] = 1.0
    return rows, mask


def epoch_batches(shuffler: np.random.Generator, train_rows: list[np.ndarray], batch_size: int):
    """One epoch of batches: each member's training rows in a fresh random order.

    A member's rows fill its batches in order, the last one partial, as `fit`
    batches them; members with fewer rows get fully masked steps at the end.

    Returns:
        `(rows, mask)`, both of shape (n_steps, n_members, batch_size).
    """
    n_steps = max(math.ceil(len(rows) / batch_size) for rows in train_rows)
    orders = [shuffler.permutation(rows) for rows in train_rows]
    rows, mask = padded_rows(orders, n_steps * batch_size)
    shape = (len(train_rows), n_steps, batch_size)
    return rows.reshape(shape).transpose(1, 0, 2), mask.reshape(shape).transpose(1, 0, 2)


class StackedDense(tf.Module):
    """K copies of the dense network trained side by side, as K separate fits would train them.

    Every weight carries a leading member axis, so one step runs all K forward
    and backward passes as batched matrix products, each member on its own
    batch. The loss of a member is its mean categorical cross-entropy over its
    batch plus `l2 * sum(kernel ** 2)` per kernel, as Keras computes it, and
    Adam (elementwise, so per member) follows `keras.optimizers.Adam` exactly.
    A member whose batch is fully masked (its epoch is over) is left untouched,
    its Adam step counter included. `run_epoch` is `train_epoch` compiled into
    one TensorFlow graph: a whole epoch per Python call.
    """

    def __init__(self, config: Config, initial_weights: list[np.ndarray], features: np.ndarray, labels: np.ndarray):
        super().__init__()
        self.l2 = config.l2
        self.learning_rate = config.learning_rate
        self.n_members = len(initial_weights[0])
        # All of a member's weights in one row, so Adam is a handful of operations per step.
        self.shapes = [weight.shape[1:] for weight in initial_weights]
        self.sizes = [int(np.prod(shape)) for shape in self.shapes]
        flat = np.concatenate([weight.reshape(self.n_members, -1) for weight in initial_weights], axis=1)
        self.parameters = tf.Variable(flat)
        self.momentum = tf.Variable(tf.zeros_like(flat))
        self.velocity = tf.Variable(tf.zeros_like(flat))
        self.iterations = tf.Variable(tf.zeros(self.n_members))
        # The data stays on the device (a GPU where there is one) as tensors; batches are gathered from it.
        self.features = tf.constant(features, tf.float32)
        self.targets = tf.one_hot(labels, N_CLASSES)
        self.run_epoch = tf.function(self.train_epoch, jit_compile=JIT_COMPILE)

    def weights(self, parameters):
        """The (K, ...) kernels and biases, in `build_model`'s order, from the (K, n_parameters) rows."""
        pieces = tf.split(parameters, self.sizes, axis=1)
        return [tf.reshape(piece, [self.n_members, *shape]) for piece, shape in zip(pieces, self.shapes, strict=True)]

    def member_weights(self, member: int) -> list[np.ndarray]:
        return [weight[member].numpy() for weight in self.weights(self.parameters)]

    def logits(self, weights, inputs):
        """(K, rows, 784) inputs -> (K, rows, 10) logits, member by member."""
        outputs = inputs
        n_layers = len(weights) // 2
        for layer in range(n_layers):
            kernel, bias = weights[2 * layer], weights[2 * layer + 1]
            outputs = tf.einsum("kbi,kio->kbo", outputs, kernel) + bias[:, None, :]
            if layer < n_layers - 1:
                outputs = tf.nn.relu(outputs)
        return outputs

    def losses(self, rows, mask):
        """Each member's loss on its (masked) rows; also its correct predictions, row count and logits."""
        weights = self.weights(self.parameters)
        logits = self.logits(weights, tf.gather(self.features, rows))
        targets = tf.gather(self.targets, rows)
        counts = tf.reduce_sum(mask, axis=1)
        cross_entropy = tf.nn.softmax_cross_entropy_with_logits(targets, logits)
        mean_cross_entropy = tf.reduce_sum(cross_entropy * mask, axis=1) / tf.maximum(counts, 1.0)
        kernels = weights[0::2]
        penalty = self.l2 * tf.add_n([tf.reduce_sum(tf.square(kernel), axis=[1, 2]) for kernel in kernels])
        hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1), tf.argmax(targets, axis=-1)), tf.float32)
        return mean_cross_entropy + penalty, tf.reduce_sum(hits * mask, axis=1), counts, logits

    def train_step(self, rows, mask):
        with tf.GradientTape() as tape:
            losses, correct, counts, _ = self.losses(rows, mask)
            # Members share no weights, so the gradient of the sum is each member's own.
            total = tf.reduce_sum(losses)
        self.apply_adam(tape.gradient(total, self.parameters), counts > 0)
        return losses * counts, correct, counts

    def apply_adam(self, gradient, active):
        """`keras.optimizers.Adam.update_step`, on the members that took a step."""
        iterations = self.iterations + tf.cast(active, tf.float32)
        self.iterations.assign(iterations)
        step = tf.maximum(iterations, 1.0)
        alpha = self.learning_rate * tf.sqrt(1 - ADAM_BETA_2**step) / (1 - ADAM_BETA_1**step)
        keep = active[:, None]
        momentum = self.momentum + (gradient - self.momentum) * (1 - ADAM_BETA_1)
        velocity = self.velocity + (tf.square(gradient) - self.velocity) * (1 - ADAM_BETA_2)
        change = momentum * alpha[:, None] / (tf.sqrt(velocity) + ADAM_EPSILON)
        self.momentum.assign(tf.where(keep, momentum, self.momentum))
        self.velocity.assign(tf.where(keep, velocity, self.velocity))
        self.parameters.assign(tf.where(keep, self.parameters - change, self.parameters))

    def train_epoch(self, batch_rows, batch_mask, validation_rows, validation_mask):
        """One epoch: train on (n_steps, K, batch) rows, then score the (K, rows) validation rows.

        Returns:
            Each member's loss, accuracy, val_loss and val_accuracy, as `fit` logs
            them, and its softmax output on its validation rows.
        """
        loss_sum = tf.zeros(self.n_members)
        correct_sum = tf.zeros(self.n_members)
        count_sum = tf.zeros(self.n_members)
        for step in tf.range(tf.shape(batch_rows)[0]):
            losses, correct, counts = self.train_step(batch_rows[step], batch_mask[step])
            loss_sum += losses
            correct_sum += correct
            count_sum += counts
        val_losses, val_correct, val_counts, val_logits = self.losses(validation_rows, validation_mask)
        val_accuracy = val_correct / val_counts
        return loss_sum / count_sum, correct_sum / count_sum, val_losses, val_accuracy, tf.nn.softmax(val_logits)
