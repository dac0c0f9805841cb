"""Two logical devices: one model's batches split over both, several models side by side.

Under `MirroredStrategy` each batch is cut into one share per device. A share
with no row made the step fail (`AddN`: per-device gradients of shapes [1, ...]
and [0, ...]) or its statistics NaN: with `--batch-size 1` every step, and with
a last batch of one row (179 training rows in batches of 2) once an epoch.
A bag's members train one per device, at once, each exactly as on one device.
"""

from __future__ import annotations

import json

import pytest

from src.core.errors import EXIT_USER
from src.models.devices import LOGICAL_CPUS_VARIABLE
from tests.helpers import assert_one_line_error, run_command
from tests.synthetic import write_dataset

# 200 rows, 0.1035 held out: 179 training rows and 21 held out, each leaving one row over in batches of 2.
REMAINDER_SCRIPT = """
import json
import numpy as np
from src.core.config import Config
from src.training.trainer import train
from tests.synthetic import make_arrays

images, labels, _ = make_arrays(n_per_class=20, n_test=10)
config = Config(
    family="cnn", scaling="unit", filters=(8, 16), convs_per_block=1, head_units=0, dropout=0.0,
    epochs=3, batch_size=2, learning_rate=3e-3, validation_split=0.1035,
)
result = train(config, images, labels, verbose=0)
member = result.members[0]
print(json.dumps({
    "losses": member.history["loss"] + member.history["val_loss"],
    "finite": bool(np.isfinite(member.validation_probabilities).all()),
    "weights_finite": all(bool(np.isfinite(w).all()) for w in member.model.get_weights()),
    "accuracy": result.validation_accuracy(labels),
}))
"""


@pytest.mark.slow
def test_a_last_batch_of_one_row_on_two_devices_trains_without_nan():
    result = run_command("-c", REMAINDER_SCRIPT, env={LOGICAL_CPUS_VARIABLE: "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["finite"] and found["weights_finite"]
    assert all(loss == loss for loss in found["losses"]), found  # no NaN
    assert found["accuracy"] >= 0.5


@pytest.mark.slow
def test_a_batch_of_one_row_on_two_devices_is_refused_in_one_line(tmp_path):
    data = write_dataset(tmp_path / "data")
    result = run_command(
        *("-m", "src.submit", "--data", data, "--out", tmp_path / "out" / "submission.csv"),
        *("--family", "cnn", "--scaling", "unit", "--filters", "4", "--epochs", "1", "--batch-size", "1"),
        env={LOGICAL_CPUS_VARIABLE: "2"},
    )
    assert_one_line_error(result, EXIT_USER, "--batch-size 1 cannot give each of the 2 training devices a row")
    assert not (tmp_path / "out").exists()


SIDE_BY_SIDE_SCRIPT = """
import hashlib, json
from src.core.config import Config
from src.training.trainer import train
from tests.synthetic import make_arrays

images, labels, _ = make_arrays(n_per_class=10, n_test=10)
config = Config(
    family="cnn", scaling="unit", filters=(4,), head_units=8, epochs=2, batch_size=16, members=3, seed=2,
)
result = train(config, images, labels, verbose=1)
weights = [b"".join(w.tobytes() for w in m.model.get_weights()) for m in result.members]
print(json.dumps({
    "weights": [hashlib.sha256(values).hexdigest() for values in weights],
    "devices": [m.model.weights[0].value.device for m in result.members],
    "probabilities": [m.validation_probabilities.tolist() for m in result.members],
}))
"""


@pytest.mark.slow
def test_a_bags_members_train_one_per_device_at_once_as_each_would_alone():
    found = {}
    for count in ("1", "2"):
        result = run_command("-c", SIDE_BY_SIDE_SCRIPT, env={LOGICAL_CPUS_VARIABLE: count})
        assert result.returncode == 0, result.stderr[-3000:]
        found[count] = (json.loads(result.stdout.strip().splitlines()[-1]), result.stdout)
    (alone, _), (side_by_side, printed) = found["1"], found["2"]
    # Three members on two devices: members 1 and 2 at once, then member 3, each on its own device.
    assert [device.rsplit("/", 1)[-1] for device in side_by_side["devices"]] == [
        "device:CPU:0",
        "device:CPU:1",
        "device:CPU:0",
    ]
    assert "member 2/3: trained on 90 rows on /device:CPU:1" in printed
    # Not mirrored: each member is trained exactly as on one device, to the byte.
    assert side_by_side["weights"] == alone["weights"]
    assert side_by_side["probabilities"] == alone["probabilities"]
