"""The multi-device path, on a CPU split into two logical devices (as Kaggle's two GPUs would be used).

Under `MirroredStrategy` each batch is cut into one share per device. A share
with no row made the step fail (`AddN`: per-device gradients of shapes [1, ...]
and [0, ...]) or its statistics NaN: with `--batch-size 1` every step, and with
a last batch of one row (181 training rows in batches of 6) once an epoch.
A bag's members train one per device, at once, each exactly as on one device.

The split needs a process of its own: every scenario runs in one (`tests/device_runs.py`).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from src.core.config import Config
from src.core.errors import EXIT_USER, UserError
from src.models.devices import LOGICAL_CPUS_VARIABLE, logical_cpus_wanted
from tests.device_runs import side_by_side
from tests.helpers import assert_one_line_error, run_command
from tests.synthetic import write_dataset


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> tuple[dict, str]:
    """What `tests.device_runs` found on two logical devices, and what it printed before."""
    base = tmp_path_factory.mktemp("two-devices")
    data = write_dataset(base / "data")
    out = base / "out" / "submission.csv"
    result = run_command("-m", "tests.device_runs", data, out, env={LOGICAL_CPUS_VARIABLE: "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    *printed, findings = result.stdout.strip().splitlines()
    assert not out.parent.exists()  # the refused run wrote nothing
    return json.loads(findings), "\n".join(printed)


@pytest.mark.slow
def test_training_spreads_over_two_logical_devices_and_predicts_as_without_them(two_devices):
    found = two_devices[0]["mirrored"]
    assert found["replicas"] == 2 and len(found["devices"]) == 2
    assert found["distributed_weights"], "the model was not built under the strategy"
    assert found["accuracy"] >= 0.5, "training under the strategy learned nothing (chance is 0.1)"
    # The same weights on one device: the same digits, and probabilities equal up to kernel round-off.
    assert found["same_labels"]
    assert found["difference"] < 2e-3


@pytest.mark.slow
def test_last_batches_two_devices_cannot_share_evenly_train_without_nan(two_devices):
    found = two_devices[0]["remainder"]
    assert found["rows_over"] == [5, 3]  # last batches of odd sizes, in training and in validation
    assert found["finite"] and found["weights_finite"]
    assert all(loss == loss for loss in found["losses"]), found  # no NaN
    assert found["accuracy"] >= 0.5


@pytest.mark.slow
def test_a_batch_of_one_row_on_two_devices_is_refused_in_one_line(two_devices):
    found = two_devices[0]["batch_of_one"]
    result = subprocess.CompletedProcess("src.submit", found["returncode"], found["stdout"], found["stderr"])
    assert_one_line_error(
        result, EXIT_USER, "--batch-size 1 does not split evenly over the 2 training devices", "such as 2"
    )


@pytest.mark.slow
def test_a_bags_members_train_one_per_device_at_once_as_each_would_alone(two_devices):
    found, printed = two_devices[0]["side_by_side"], two_devices[1]
    # Three members on two devices: members 1 and 2 at once, then member 3, each on its own device.
    devices = [device.rsplit("/", 1)[-1] for device in found["devices"]]
    assert devices == ["device:CPU:0", "device:CPU:1", "device:CPU:0"]
    assert "member 2/3: trained on 90 rows on /device:CPU:1" in printed
    # Not mirrored: each member is trained exactly as on one device (here, in this process), to the byte.
    alone = side_by_side(verbose=0)
    assert found["weights"] == alone["weights"]
    assert found["probabilities"] == alone["probabilities"]


def test_logical_cpus_are_counted_from_the_environment(monkeypatch):
    monkeypatch.delenv(LOGICAL_CPUS_VARIABLE, raising=False)
    assert logical_cpus_wanted() == 1
    monkeypatch.setenv(LOGICAL_CPUS_VARIABLE, " 3 ")
    assert logical_cpus_wanted() == 3
    for wrong in ("0", "two", "-1"):
        monkeypatch.setenv(LOGICAL_CPUS_VARIABLE, wrong)
        with pytest.raises(UserError, match=f"^{LOGICAL_CPUS_VARIABLE} must be a whole number"):
            logical_cpus_wanted()


def test_a_batch_size_the_devices_cannot_share_evenly_is_refused_naming_the_nearest_that_can():
    from src.training.trainer import replica_count

    class TwoDevices:
        num_replicas_in_sync = 2

    assert replica_count(Config(batch_size=98), TwoDevices()) == 2
    assert replica_count(Config(batch_size=97), None) == 1
    with pytest.raises(UserError, match="--batch-size 97 does not split evenly over the 2 .* such as 96 or 98"):
        replica_count(Config(batch_size=97), TwoDevices())
