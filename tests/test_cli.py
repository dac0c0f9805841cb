"""`python -m src.submit` end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.files import sha256
from src.submission import validate_submission
from tests.conftest import REPO_ROOT

FAST = ["--epochs", "3", "--verbose", "0"]


def submit(*args, cwd=REPO_ROOT):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "src.submit", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    # Input and flag problems are caught before TensorFlow loads, so nothing else is printed.
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_single_model_run_writes_submission_and_record(tiny_data, tmp_path):
    out = tmp_path / "submissions" / "submission.csv"
    result = submit("--data", tiny_data, "--out", out, *FAST)
    assert result.returncode == 0, result.stderr
    assert "single model; validation accuracy" in result.stdout
    assert f"wrote {out}" in result.stdout
    assert len(validate_submission(out, n_rows=20)) == 20

    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["epochs"] == 3 and record["config"]["hidden_units"] == [20, 15]
    assert record["command"].startswith("python -m src.submit --data ")
    assert record["inputs"]["train"]["sha256"] == sha256(tiny_data / "train.csv")
    assert record["inputs"]["test"]["rows"] == 20
    assert record["validation"]["members"][0]["validation_rows"] == 16  # the last 20% of 80 rows
    assert set(record["timings"]) == {"load", "train", "predict", "write", "total"}
    assert record["versions"]["tensorflow"]
    # The per-class table is printed, and the run keeps its own folder with the report.
    assert "per class, on the held-out rows:" in result.stdout
    run_dir = out.parent / "runs" / Path(record["run_dir"]).name
    assert f"report: {run_dir / 'report.html'}" in result.stdout
    assert (run_dir / "submission.csv").read_bytes() == out.read_bytes()


def test_fold_ensemble_run(tiny_data, tmp_path):
    out = tmp_path / "submission.csv"
    result = submit("--data", tiny_data, "--out", out, "--folds", "3", "--epochs", "3", "--verbose", "2")
    assert result.returncode == 0, result.stderr
    assert "Epoch 3/3" in result.stdout
    for fold in (1, 2, 3):
        assert f"fold {fold}/3: validation accuracy" in result.stdout
    assert "3-fold ensemble; out-of-fold accuracy" in result.stdout
    validate_submission(out, n_rows=20)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["validation"]["scheme"] == "stratified 3-fold"
    assert sum(member["validation_rows"] for member in record["validation"]["members"]) == 80


def test_same_seed_gives_the_same_bytes(tiny_data, tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (first, second):
        assert submit("--data", tiny_data, "--out", out, "--folds", "2", *FAST).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    records = [json.loads(path.with_suffix(".json").read_text()) for path in (first, second)]
    accuracies = [[member["validation_accuracy"] for member in r["validation"]["members"]] for r in records]
    assert accuracies[0] == accuracies[1]


def test_sample_runs_without_any_download(tmp_path):
    out = tmp_path / "sample.csv"
    result = submit("--sample", "--out", out, "--verbose", "0", "--scaling", "unit")
    assert result.returncode == 0, result.stderr
    assert "1500 training rows, 297 test rows" in result.stdout
    validate_submission(out, n_rows=297)
    accuracy = json.loads(out.with_suffix(".json").read_text())["validation"]["accuracy"]
    assert accuracy >= 0.85


def test_missing_data_is_a_one_line_error(tmp_path):
    result = submit("--data", tmp_path / "nowhere", "--out", tmp_path / "s.csv")
    assert_one_line_error(result, "train.csv: file not found", "scripts/download.sh", "--sample")


def test_bad_input_keeps_the_previous_submission(tiny_data, tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text("ImageId,Label\n1,7\n")
    lines = (tiny_data / "test.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",", ",300,", 1).rsplit(",", 1)[0]
    (tiny_data / "test.csv").write_text("\n".join(lines) + "\n")
    result = submit("--data", tiny_data, "--out", out, *FAST)
    assert_one_line_error(result, "test.csv: line 6, column pixel1: expected a pixel 0..255, found 300")
    assert out.read_text() == "ImageId,Label\n1,7\n"
    assert not out.with_suffix(".json").exists()


def test_bad_flag_is_a_one_line_error(tiny_data, tmp_path):
    assert_one_line_error(submit("--data", tiny_data, "--epochs", "0"), "epochs must be >= 1")
    assert_one_line_error(submit("--data", tiny_data, "--seed", "-1"), "seed must be in 0..4294967295")
    assert_one_line_error(submit("--data", tiny_data, "--out", tmp_path / "s.json"), "must not be a .json file")
    assert_one_line_error(submit("--data", tiny_data, "--out", tmp_path), "is a folder")
    assert_one_line_error(submit("--data", tiny_data, "--folds", "9", *FAST), "9 folds need at least 9 rows")


def test_ctrl_c_during_training_keeps_the_previous_submission(tiny_data, tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text("ImageId,Label\n1,7\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "src.submit", "--data", tiny_data, "--out", out, "--epochs", "100000"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while "Epoch 2/" not in process.stdout.readline():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("training never started")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert out.read_text() == "ImageId,Label\n1,7\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "submission.csv"]


def test_help_lists_every_setting():
    result = submit("--help")
    assert result.returncode == 0
    for flag in (
        "--data", "--out", "--folds", "--epochs", "--seed", "--sample", "--hidden-units", "--l2", "--learning-rate",
        "--batch-size", "--validation-split", "--scaling", "--preset", "--plain", "--verbose", "--no-report",
        "--submit", "--message",
    ):  # fmt: skip
        assert flag in result.stdout
