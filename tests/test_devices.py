"""The multi-device path, on a CPU split into two logical devices (as Kaggle's two GPUs would be used)."""

from __future__ import annotations

import json

import pytest

from src.core.errors import UserError
from src.models.devices import LOGICAL_CPUS_VARIABLE, logical_cpus_wanted
from tests.helpers import run_command

# Trains a small CNN under the strategy, then predicts with its weights in a model built outside any strategy.
TWO_DEVICES_SCRIPT = """
import json
import numpy as np
import tensorflow as tf
from src.core.config import Config
from src.models.devices import distribution_strategy
from src.models.registry import build_model
from src.training.trainer import train
from tests.synthetic import make_arrays

images, labels, test_images = make_arrays(n_per_class=20, n_test=50)
config = Config(
    family="cnn", scaling="unit", filters=(8, 16), convs_per_block=1, head_units=0, dropout=0.0,
    epochs=3, batch_size=16, learning_rate=3e-3,
)
result = train(config, images, labels, verbose=0)
model = result.members[0].model
strategy = distribution_strategy()
plain = build_model(config)
plain.set_weights(model.get_weights())
features = test_images / 255.0
mirrored, alone = model.predict(features, verbose=0), plain.predict(features, verbose=0)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "devices": sorted(strategy.extended.worker_devices),
    "distributed_weights": all(isinstance(w.value, tf.distribute.DistributedValues) for w in model.trainable_variables),
    "accuracy": result.validation_accuracy(labels),
    "difference": float(np.abs(mirrored - alone).max()),
    "same_labels": bool((mirrored.argmax(axis=1) == alone.argmax(axis=1)).all()),
}))
"""


@pytest.mark.slow
def test_training_spreads_over_two_logical_devices_and_predicts_as_without_them():
    result = run_command("-c", TWO_DEVICES_SCRIPT, env={LOGICAL_CPUS_VARIABLE: "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["replicas"] == 2 and len(found["devices"]) == 2
    assert found["distributed_weights"], "the model was not built under the strategy"
    assert found["accuracy"] >= 0.5, "training under the strategy learned nothing (chance is 0.1)"
    # The same weights on one device: the same digits, and probabilities equal up to kernel round-off.
    assert found["same_labels"]
    assert found["difference"] < 2e-3


def test_logical_cpus_are_counted_from_the_environment(monkeypatch):
    monkeypatch.delenv(LOGICAL_CPUS_VARIABLE, raising=False)
    assert logical_cpus_wanted() == 1
    monkeypatch.setenv(LOGICAL_CPUS_VARIABLE, " 3 ")
    assert logical_cpus_wanted() == 3
    for wrong in ("0", "two", "-1"):
        monkeypatch.setenv(LOGICAL_CPUS_VARIABLE, wrong)
        with pytest.raises(UserError, match=f"^{LOGICAL_CPUS_VARIABLE} must be a whole number"):
            logical_cpus_wanted()
