"""What `tests/test_devices.py` runs on a CPU split into logical devices, all in one process.

    DIGIT_RECOGNIZER_LOGICAL_CPUS=2 python -m tests.device_runs DATA_FOLDER OUT_FOLDER

The split must come before TensorFlow's first operation, so it needs a process
of its own; one process runs every scenario and prints one JSON object, its
findings by scenario. `side_by_side` also runs on one device, in the test's own
process, for the comparison.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

from src.core.cli import import_tensorflow
from src.core.config import Config
from src.submit import main as submit_main
from tests.helpers import call_main
from tests.synthetic import make_arrays


def trained(config: Config, images, labels, verbose: int):
    # Imported here, so that `main` loads TensorFlow first, quietly, as the commands do.
    from src.training.trainer import train

    return train(config, images, labels, verbose=verbose)


def mirrored() -> dict:
    """A small CNN trained under the strategy, distorted but for its last epoch, then predicting with its weights
    in a model built outside it."""
    import tensorflow as tf

    from src.models.devices import distribution_strategy
    from src.models.registry import build_model

    images, labels, test_images = make_arrays(n_per_class=20, n_test=50)
    config = Config(
        family="cnn", scaling="unit", filters=(8, 16), convs_per_block=1, head_units=0, dropout=0.0,
        epochs=3, batch_size=16, learning_rate=3e-3, augment_rotation=10.0, augment_shift=0.1, clean_epochs=1,
        steps_per_execution=8,  # as the CNN presets: Keras cannot loop steps under a strategy, so it takes one
    )  # fmt: skip
    result = trained(config, images, labels, verbose=0)
    model = result.members[0].model
    strategy = distribution_strategy()
    plain = build_model(config)
    plain.set_weights(model.get_weights())
    features = test_images / 255.0
    on_devices, alone = model.predict(features, verbose=0), plain.predict(features, verbose=0)
    distributed = [isinstance(w.value, tf.distribute.DistributedValues) for w in model.trainable_variables]
    return {
        "replicas": strategy.num_replicas_in_sync,
        "devices": sorted(strategy.extended.worker_devices),
        "distributed_weights": all(distributed),
        "accuracy": result.validation_accuracy(labels),
        "difference": float(np.abs(on_devices - alone).max()),
        "same_labels": bool((on_devices.argmax(axis=1) == alone.argmax(axis=1)).all()),
    }


def remainder() -> dict:
    """200 rows, 0.095 held out: 181 training rows and 19 held out, leaving 5 and 3 rows over in batches of 8:
    last batches two devices share unevenly (a batch size that does not split evenly fails in Keras)."""
    images, labels, _ = make_arrays(n_per_class=20, n_test=10)
    # Every epoch ends in the remainders; one, at a higher rate, learns these rows.
    config = Config(
        family="cnn", scaling="unit", filters=(8, 16), convs_per_block=1, head_units=0, dropout=0.0,
        epochs=1, batch_size=8, learning_rate=1e-2, validation_split=0.095, augment_rotation=10.0,
    )  # fmt: skip
    result = trained(config, images, labels, verbose=0)
    member = result.members[0]
    return {
        "rows_over": [len(member.train_rows) % config.batch_size, len(member.validation_rows) % config.batch_size],
        "losses": member.history["loss"] + member.history["val_loss"],
        "finite": bool(np.isfinite(member.validation_probabilities).all()),
        "weights_finite": all(bool(np.isfinite(w).all()) for w in member.model.get_weights()),
        "accuracy": result.validation_accuracy(labels),
    }


def side_by_side(verbose: int = 1) -> dict:
    """A bag of three small CNNs, distorted but for their last epoch: each member's weights (hashed), device and
    held-out probabilities."""
    images, labels, _ = make_arrays(n_per_class=10, n_test=10)
    config = Config(
        family="cnn", scaling="unit", filters=(4,), head_units=8, epochs=2, batch_size=16, members=3, seed=2,
        augment_rotation=10.0, augment_zoom=0.1, clean_epochs=1,
    )  # fmt: skip
    result = trained(config, images, labels, verbose=verbose)
    weights = [b"".join(w.tobytes() for w in m.model.get_weights()) for m in result.members]
    return {
        "weights": [hashlib.sha256(values).hexdigest() for values in weights],
        "devices": [m.model.weights[0].value.device for m in result.members],
        "probabilities": [m.validation_probabilities.tolist() for m in result.members],
    }


def batch_of_one(data: str, out: str) -> dict:
    """`python -m src.submit ... --batch-size 1`: one row cannot be shared evenly by two devices."""
    flags = ["--family", "cnn", "--scaling", "unit", "--filters", "4", "--epochs", "1", "--batch-size", "1"]
    result = call_main(submit_main, "--data", data, "--out", out, *flags)
    return {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}


def main() -> None:
    data, out = sys.argv[1:]
    import_tensorflow()
    found = {"batch_of_one": batch_of_one(data, out), "mirrored": mirrored(), "remainder": remainder()}
    # Its progress lines go to stdout before the findings; the test reads them from there.
    found["side_by_side"] = side_by_side()
    print(json.dumps(found))


if __name__ == "__main__":
    main()
