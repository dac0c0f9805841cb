"""Where one epoch of a preset's training goes, for `scripts/benchmark.py --profile` to run in its own process.

python scripts/epoch_profile.py PRESET DATA_DIR STEPS RESULT_JSON

Builds the preset's model as `python -m src.submit` does, then times, over
STEPS batches of its batch size (after a first pass that traces each
function), and scales each to one epoch of the preset's training rows:
  fit step            Keras' whole training step (forward, backward, Adam) on the run's own pipeline, as `fit` runs it
  input pipeline      the run's batches alone: shuffled and distorted, as its pipeline makes them
  augmentation        the random distortions alone, on one thread (presets without any: 0)
  forward             the network in training mode, no gradient
  forward + backward  the loss and its gradients, no update
The optimizer's update and Keras' own step overhead is what the fit step
takes beyond forward + backward; the backward pass is forward + backward
less forward. Op determinism is on, as in a run: a pipeline that reads the
clean epochs' switch then makes one batch at a time, before each step, so
the fit step includes the distortions' time.
"""

import json
import math
import sys
import time
from pathlib import Path

# This checkout's own `src`, as the benchmark's other runs use.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from src.core.cli import import_tensorflow  # noqa: E402
from src.core.config import N_CLASSES, PRESETS  # noqa: E402
from src.data.loading import as_features, load_datasets  # noqa: E402
from src.data.splits import split_rows  # noqa: E402
from src.models.augmentation import Distortions  # noqa: E402
from src.models.registry import build_model  # noqa: E402
from src.training.trainer import batches as run_batches  # noqa: E402

preset, data_dir, steps, result_path = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
tf = import_tensorflow()
keras = tf.keras
config = PRESETS[preset]
keras.utils.set_random_seed(config.seed)
tf.config.experimental.enable_op_determinism()  # as `seed_everything` in a run: it shapes the pipeline

datasets = load_datasets(data_dir)
((train_rows, _),) = split_rows(config.replace(folds=1, members=1), datasets.train_labels)
rows = train_rows[: steps * config.batch_size]
features = as_features(datasets.train_images[rows], config)
targets = keras.utils.to_categorical(datasets.train_labels[rows], N_CLASSES)
epoch_scale = math.ceil(len(train_rows) / config.batch_size) / steps
model = build_model(config, steps_per_epoch=steps)
batches = tf.data.Dataset.from_tensor_slices((features, targets)).batch(config.batch_size).cache()
distortions = Distortions.of(config)
training = run_batches(features, targets, config.batch_size, config.seed, 1, distortions, tf.Variable(True))


def seconds_per_epoch(step) -> float:
    """`step` over every batch once to trace it, then timed over them all, scaled to one epoch."""
    for batch in batches.take(1):
        step(*batch)
    started = time.perf_counter()
    for batch in batches:
        result = step(*batch)
    float(tf.reduce_sum(result))  # wait for the last step's work
    return (time.perf_counter() - started) * epoch_scale


def timed_fit() -> float:
    model.fit(training, epochs=1, verbose=0)  # traces the training step
    started = time.perf_counter()
    model.fit(training, epochs=1, verbose=0)
    return (time.perf_counter() - started) * epoch_scale


def timed_pipeline() -> float:
    for _ in training:  # its threads start
        pass
    started = time.perf_counter()
    for _ in training:
        pass
    return (time.perf_counter() - started) * epoch_scale


loss = model.loss if callable(model.loss) else keras.losses.get(model.loss)


@tf.function
def augment(images, labels):
    return distortions(images, tf.constant([1, 2], tf.int64))


@tf.function
def forward(images, labels):
    return model(images, training=True)


@tf.function
def forward_backward(images, labels):
    with tf.GradientTape() as tape:
        value = loss(labels, model(images, training=True))
    gradients = tape.gradient(value, model.trainable_variables)
    return tf.add_n([tf.reduce_sum(gradient) for gradient in gradients])


fit = timed_fit()
result = {
    "preset": preset,
    "steps": steps,
    "batch_size": config.batch_size,
    "epoch_steps": math.ceil(len(train_rows) / config.batch_size),
    "fit_step": fit,
    "input_pipeline": timed_pipeline(),
    "augmentation": seconds_per_epoch(augment) if distortions is not None else 0.0,
    "forward": seconds_per_epoch(forward),
    "forward_backward": seconds_per_epoch(forward_backward),
}
result["backward"] = result["forward_backward"] - result["forward"]
result["optimizer_and_overhead"] = fit - result["forward_backward"]
result_path.write_text(json.dumps(result))
