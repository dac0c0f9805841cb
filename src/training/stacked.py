"""The fast path: every member of a dense ensemble trained at once, in one compiled program.

On a CPU a training step of the tutorial's small network is a few MFLOP, and
`model.fit` spends most of each step on per-step framework overhead.
`StackedDense` re-implements that network's forward pass, loss and Adam with a
leading member axis on every weight, so one XLA-compiled call trains all
members for a whole epoch. It mirrors `build_model`'s network and nothing
else: `check_mirrored` refuses any other model before training starts.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow import keras

from src.core.config import N_CLASSES, Config
from src.core.interrupts import raise_if_interrupted
from src.training.epoch_timer import EpochTimer
from src.training.hooks import TrainingCallbacks, mean_logs
from src.training.prediction import predict_probabilities

# XLA-compile the stacked loop: on 2 CPU cores it cut the step time by a quarter
# (5 members) to a half (one model), for about a second more compiling.
JIT_COMPILE = True
# Dense settings the stacked loop need not mirror: it copies the initial weights themselves.
DENSE_KEYS_NOT_MIRRORED = frozenset({"name", "kernel_initializer", "bias_initializer"})
# Adam's constants, which the stacked loop reads from the compiled optimizer itself.
ADAM_CONSTANTS = ("beta_1", "beta_2", "epsilon")
MIRRORED_LOSS = "categorical_crossentropy"
MIRRORED_NETWORK = (
    "a keras.Sequential of Dense layers with biases, ReLU hidden and softmax output activations, float32, "
    "L2 kernel regularizers of the config's factor, compiled with Adam at the config's learning rate "
    "(no weight decay, clipping, EMA or amsgrad) and categorical cross-entropy"
)


def train_stacked(
    config: Config,
    models: list[keras.Model],
    features,
    labels,
    splits,
    verbose: int,
    hooks: TrainingCallbacks | None = None,
    seeds: list[int] | None = None,
) -> list[tuple[keras.Model, np.ndarray]]:
    """Train one member per split, all at once in one compiled program; see `StackedDense`.

    Each member starts from the weights of its fresh `build_model(config)` model in `models`, draws
    its own shuffled batches from its own training rows every epoch, and keeps
    Keras-style logs (loss, accuracy, val_loss, val_accuracy) in its own History;
    Keras' progress display prints one line per epoch for the whole ensemble.
    `hooks` adds each member's own callbacks beside its History, and the run's
    callbacks, which see the members' mean logs (see `src.training.hooks`).

    Returns:
        For each split, its Keras model, holding the member's final weights and
        its History (`model.history`), and the model's softmax output on the
        split's validation rows.
    """
    network = StackedDense(config, models, features, labels)
    train_rows = [rows for rows, _ in splits]
    validation_rows, validation_mask = padded_rows([rows for _, rows in splits])
    n_steps = math.ceil(max(len(rows) for rows in train_rows) / config.batch_size)
    # Each member keeps its own History; one progress display speaks for them all.
    hooks = hooks or TrainingCallbacks()
    histories = [
        keras.callbacks.CallbackList(
            [EpochTimer(), *hooks.member(member)], add_history=True, model=model, epochs=config.epochs, steps=n_steps
        )
        for member, model in enumerate(models)
    ]
    progress = keras.callbacks.CallbackList(
        add_progbar=verbose != 0, model=models[0], verbose=verbose, epochs=config.epochs, steps=n_steps
    )
    whole_run = keras.callbacks.CallbackList(list(hooks.run), model=models[0], epochs=config.epochs, steps=n_steps)
    callbacks = [*histories, progress, whole_run]
    best = BestEpochs(network, len(models)) if config.keep_best and validation_rows.shape[1] else None
    # One shuffler per member, from its own seed: its batches do not depend on the members beside it,
    # so a part of a bag or k-fold trains what the whole would.
    shufflers = [np.random.default_rng(seed) for seed in seeds or [config.seed] * len(models)]
    for member_callbacks in callbacks:
        member_callbacks.on_train_begin()
    raise_if_interrupted()  # before the first epoch, which traces the loop
    for epoch in range(config.epochs):
        for member_callbacks in callbacks:
            member_callbacks.on_epoch_begin(epoch)
        batch_rows, batch_mask = epoch_batches(shufflers, train_rows, config.batch_size)
        loss, accuracy, val_loss, val_accuracy, val_probabilities = network.run_epoch(
            batch_rows, batch_mask, validation_rows, validation_mask
        )
        logs = {"accuracy": accuracy, "loss": loss, "val_accuracy": val_accuracy, "val_loss": val_loss}
        logs = {name: values.numpy() for name, values in logs.items()}
        if not validation_rows.shape[1]:
            # `--validation-split 0`: nothing was held out, so there is nothing to log about it.
            logs = {name: values for name, values in logs.items() if not name.startswith("val_")}
        for member, member_callbacks in enumerate(histories):
            member_callbacks.on_epoch_end(epoch, {name: float(values[member]) for name, values in logs.items()})
        if best is not None:
            best.update(epoch, logs["val_loss"])
        progress.on_epoch_end(epoch, ensemble_logs(logs))
        whole_run.on_epoch_end(epoch, mean_logs(logs))
        raise_if_interrupted()  # a Ctrl-C that Keras' callback list swallowed (see `src.core.interrupts`)
    for member_callbacks in callbacks:
        member_callbacks.on_train_end()
    raise_if_interrupted()

    trained = []
    for member, (model, (_, rows)) in enumerate(zip(models, splits, strict=True)):
        if best is None or best.epochs[member] == config.epochs - 1:
            model.set_weights(network.member_weights(member))
            # The last epoch scored the validation rows with the final weights already.
            probabilities = val_probabilities[member, : len(rows)].numpy()
        else:
            model.set_weights(best.weights[member])
            probabilities = predict_probabilities([model], features[rows])
        best_epoch = None if best is None else best.epochs[member] + 1
        trained.append((model, probabilities, best_epoch))
    return trained


class BestEpochs:
    """Each member's epoch of lowest validation loss so far, and its weights then (`keep_best`)."""

    def __init__(self, network, n_members: int):
        self.network = network
        self.losses = np.full(n_members, np.inf)
        self.epochs = [0] * n_members
        self.weights: list[list[np.ndarray] | None] = [None] * n_members

    def update(self, epoch: int, val_losses: np.ndarray) -> None:
        for member, loss in enumerate(val_losses):
            if loss < self.losses[member]:
                self.losses[member], self.epochs[member] = loss, epoch
                self.weights[member] = self.network.member_weights(member)


def ensemble_logs(logs: dict[str, np.ndarray]) -> dict[str, float]:
    """One epoch's logs for the progress line: one member's own, or the members' means and each one's val_accuracy."""
    if len(logs["loss"]) == 1:
        return {name: float(values[0]) for name, values in logs.items()}
    means = {f"mean_{name}": float(np.mean(values)) for name, values in logs.items()}
    folds = {
        f"fold{member}_val_accuracy": float(value) for member, value in enumerate(logs.get("val_accuracy", []), start=1)
    }
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


def epoch_batches(shufflers: list[np.random.Generator], train_rows: list[np.ndarray], batch_size: int):
    """One epoch of batches: each member's training rows in a fresh random order, drawn by its own shuffler.

    A member's rows fill its batches in order, the last one partial, as `fit`
    batches them; members with fewer rows get fully masked steps at the end.

    Returns:
        `(rows, mask)`, both of shape (n_steps, n_members, batch_size).
    """
    n_steps = max(math.ceil(len(rows) / batch_size) for rows in train_rows)
    orders = [shuffler.permutation(rows) for shuffler, rows in zip(shufflers, train_rows, strict=True)]
    rows, mask = padded_rows(orders, n_steps * batch_size)
    shape = (len(train_rows), n_steps, batch_size)
    return rows.reshape(shape).transpose(1, 0, 2), mask.reshape(shape).transpose(1, 0, 2)


def check_mirrored(model: keras.Model, config: Config) -> None:
    """Refuse a model that is not the network `StackedDense` trains.

    The stacked loop re-implements `build_model`'s dense network, its loss and
    its optimizer; given anything else (a dropout layer, another activation,
    optimizer or loss) it would silently train a different network.

    Raises:
        ValueError: naming every difference found.
    """
    problems = [*layer_problems(model, config), *compile_problems(model, config)]
    if problems:
        raise ValueError(
            f"the stacked trainer cannot train this model: {'; '.join(problems)}. It mirrors {MIRRORED_NETWORK}; "
            "train any other model with model.fit (--plain)"
        )


def layer_problems(model: keras.Model, config: Config) -> list[str]:
    """How `model`'s layers differ from the Dense stack that `StackedDense` mirrors."""
    if type(model) is not keras.Sequential:
        return [f"the model is a {type(model).__name__}, not a keras.Sequential"]
    if not model.layers:
        return ["the model has no layers"]
    problems = []
    output_index = len(model.layers) - 1
    for index, layer in enumerate(model.layers):
        if type(layer) is not keras.layers.Dense:
            problems.append(f"layer {layer.name!r} is a {type(layer).__name__}, not a Dense layer")
            continue
        if layer.activity_regularizer is not None:
            problems.append(f"layer {layer.name!r} has an activity regularizer")
        mirrored = keras.layers.Dense(
            layer.units,
            activation="softmax" if index == output_index else "relu",
            kernel_regularizer=keras.regularizers.l2(config.l2),
            # Initializers are not compared; a random one would draw from Python's seeded random state.
            kernel_initializer="zeros",
            dtype="float32",
            name="mirrored",
        )
        problems.extend(
            f"layer {layer.name!r} has {difference}"
            for difference in config_differences(layer.get_config(), mirrored.get_config(), DENSE_KEYS_NOT_MIRRORED)
        )
    return problems


def compile_problems(model: keras.Model, config: Config) -> list[str]:
    """How `model`'s optimizer and loss differ from the Adam and cross-entropy that `StackedDense` mirrors."""
    problems = []
    optimizer = getattr(model, "optimizer", None)
    if type(optimizer) is not keras.optimizers.Adam:
        problems.append(f"its optimizer is {type(optimizer).__name__}, not Adam")
    else:
        mirrored = keras.optimizers.Adam(learning_rate=config.learning_rate)
        ignored = frozenset({"name", *ADAM_CONSTANTS})
        differences = config_differences(optimizer.get_config(), mirrored.get_config(), ignored)
        problems.extend(f"its Adam optimizer has {difference}" for difference in differences)
        problems.extend(
            f"its Adam {name} is {getattr(optimizer, name)!r}, not a number"
            for name in ADAM_CONSTANTS
            if not isinstance(getattr(optimizer, name), (int, float))
        )
    loss = getattr(model, "loss", None)
    if isinstance(loss, keras.losses.CategoricalCrossentropy):
        differences = config_differences(loss.get_config(), keras.losses.CategoricalCrossentropy().get_config())
        problems.extend(f"its loss has {difference}" for difference in differences)
    elif loss != MIRRORED_LOSS:
        problems.append(f"its loss is {loss!r}, not {MIRRORED_LOSS!r}")
    return problems


def config_differences(found: dict, mirrored: dict, ignored: frozenset = frozenset()) -> list[str]:
    """`key=value (expected value)` for each setting of a Keras `get_config()` that differs."""
    keys = sorted((found.keys() | mirrored.keys()) - ignored)
    return [
        f"{key}={short_setting(found.get(key))} (expected {short_setting(mirrored.get(key))})"
        for key in keys
        if found.get(key) != mirrored.get(key)
    ]


def short_setting(value) -> str:
    """A serialized Keras object as `ClassName(setting=value)`, a float to float32's precision, else a repr."""
    if isinstance(value, dict) and "class_name" in value:
        settings = ", ".join(f"{name}={short_setting(setting)}" for name, setting in value.get("config", {}).items())
        return f"{value['class_name']}({settings})"
    if isinstance(value, float):
        return f"{value:.7g}"
    return repr(value)


class StackedDense(tf.Module):
    """K copies of the dense network trained side by side, as K separate fits would train them.

    Every weight carries a leading member axis, so one step runs all K forward
    and backward passes as batched matrix products, each member on its own
    batch. The loss of a member is its mean categorical cross-entropy over its
    batch plus `l2 * sum(kernel ** 2)` per kernel, as Keras computes it, and
    Adam (elementwise, so per member) follows `keras.optimizers.Adam` exactly,
    with the betas and epsilon of the models' compiled optimizer.
    A member whose batch is fully masked (its epoch is over) is left untouched,
    its Adam step counter included. `run_epoch` is `train_epoch` compiled into
    one TensorFlow graph: a whole epoch per Python call.
    """

    def __init__(self, config: Config, models: list[keras.Model], features: np.ndarray, labels: np.ndarray):
        super().__init__()
        for model in models:
            check_mirrored(model, config)
        self.l2 = config.l2
        self.learning_rate = config.learning_rate
        self.beta_1, self.beta_2, self.epsilon = (getattr(models[0].optimizer, name) for name in ADAM_CONSTANTS)
        self.n_members = len(models)
        # All of a member's weights in one row, so Adam is a handful of operations per step.
        initial_weights = stacked_weights(models)
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
        alpha = self.learning_rate * tf.sqrt(1 - self.beta_2**step) / (1 - self.beta_1**step)
        keep = active[:, None]
        momentum = self.momentum + (gradient - self.momentum) * (1 - self.beta_1)
        velocity = self.velocity + (tf.square(gradient) - self.velocity) * (1 - self.beta_2)
        change = momentum * alpha[:, None] / (tf.sqrt(velocity) + self.epsilon)
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
