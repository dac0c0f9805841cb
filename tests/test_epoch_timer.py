"""Epoch end times in the histories (`src.training.epoch_timer`), the images per second they give, and the
benchmark's time-to-accuracy table."""

from __future__ import annotations

import json
import time

import pytest

from src.core.config import Config
from src.training.epoch_timer import SECONDS_KEY
from src.training.trainer import train
from tests.helpers import REPO_ROOT, run_command
from tests.synthetic import make_arrays, write_dataset


@pytest.mark.slow
@pytest.mark.parametrize("plain", [False, True], ids=["compiled-loop", "fit"])
def test_epoch_end_seconds_rise_and_give_each_epochs_images_per_second(plain, capsys):
    images, labels, _ = make_arrays(n_per_class=6)
    started = time.perf_counter()
    result = train(Config(epochs=3, folds=2, scaling="unit", plain=plain), images, labels, verbose=2)
    elapsed = time.perf_counter() - started
    for member in result.members:
        seconds = member.history[SECONDS_KEY]
        assert len(seconds) == len(member.history["loss"]) == 3
        assert 0 < seconds[0] <= seconds[1] <= seconds[2] < elapsed
    # The times go into the History, not into Keras' per-epoch progress line.
    assert SECONDS_KEY not in capsys.readouterr().out

    # Images per second: the members' training rows over an epoch's time, of all at once when trained together.
    speeds = result.images_per_second()
    assert len(speeds) == 3 and all(speed > 0 for speed in speeds)
    first = result.members[0]
    rows = sum(len(member.train_rows) for member in result.members) if not plain else len(first.train_rows)
    epoch_two = first.history[SECONDS_KEY][1] - first.history[SECONDS_KEY][0]
    if not plain:
        assert speeds[1] == pytest.approx(rows / epoch_two, rel=1e-3)
    else:
        second = result.members[1]
        other = len(second.train_rows) / (second.history[SECONDS_KEY][1] - second.history[SECONDS_KEY][0])
        assert speeds[1] == pytest.approx((rows / epoch_two + other) / 2, rel=1e-3)


@pytest.mark.slow
def test_benchmark_time_to_accuracy_table(tmp_path):
    data = write_dataset(tmp_path / "data")
    out = tmp_path / "curves"
    completed = run_command(
        REPO_ROOT / "scripts" / "benchmark.py", "--time-to-accuracy", "tutorial-scaled", "--epochs", "2",
        "--data", data, "--out", out,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    (curve,) = report["presets"]
    assert curve["preset"] == "tutorial-scaled" and [row["epoch"] for row in curve["epochs"]] == [1, 2]
    assert curve["epochs"][0]["seconds"] <= curve["epochs"][1]["seconds"] <= curve["train_seconds"]
    assert curve["epochs"][-1]["val_accuracy"] == curve["accuracy"]
    assert "| tutorial-scaled | 2 |" in out.with_suffix(".md").read_text()
