"""Safeguards around an upload and a run: checked before sending, said after sending, and a competitor's guards."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile

import pandas as pd
import pytest

from src.core.errors import EXIT_NOT_RECORDED, EXIT_USER
from src.predict import main as predict_main
from src.runs import ledger
from src.submit import main as submit_main
from tests.fake_kaggle import FakeKaggle, kaggle_env, run_with_fake
from tests.helpers import (
    assert_one_line_error,
    call_main,
    run_main,
    run_module,
    start_command,
    write_previous_pair,
)
from tests.synthetic import write_dataset


def paired_file(folder, accuracy=None):
    """A valid 20-row submission whose record names its sha256 and, when given, a local accuracy."""
    submission = write_previous_pair(folder)
    record = json.loads(submission.with_suffix(".json").read_text())
    if accuracy is not None:
        record["validation"] = {"accuracy": accuracy}
    submission.with_suffix(".json").write_text(json.dumps(record))
    return submission


def upload(fake, tmp_path, data, file, *flags, extra=None):
    args = ("-m", "src.upload", file, "-m", "test", "--data", data, *flags)
    return run_with_fake(*args, url=fake.url, home=tmp_path / "home", extra=extra)


def write_ledger_rows(tmp_path, local, public):
    row = ledger.Row(*([""] * len(ledger.COLUMNS)))
    row.kaggle_ref, row.local_accuracy, row.public_score, row.status = "17", local, public, "complete"
    ledger.write_ledger(tmp_path / "home" / "ledger.csv", [row])


# --- checked before sending ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoil", "fragment"),
    [
        (lambda home: (home / "ledger.csv").write_text("ImageId,Label\n1,2\n"), "line 1: not a ledger"),
        (lambda home: (home / "ledger.csv").write_bytes(b"time_utc\xff\n"), "unreadable ledger"),
    ],
)
def test_an_unreadable_ledger_is_found_before_sending(spoil, fragment, tmp_path):
    data, file = write_dataset(tmp_path / "data"), paired_file(tmp_path / "s")
    (tmp_path / "home").mkdir()
    spoil(tmp_path / "home")
    with FakeKaggle() as fake:
        result = upload(fake, tmp_path, data, file)
    assert_one_line_error(result, EXIT_USER, "ledger.csv", fragment)
    assert fake.uploads() == [] and fake.calls("CreateSubmission") == []


def test_a_ledger_that_cannot_be_written_and_a_bad_poll_setting_are_found_before_sending(tmp_path):
    data, file = write_dataset(tmp_path / "data"), paired_file(tmp_path / "s")
    (tmp_path / "a-file").write_text("")
    with FakeKaggle() as fake:
        nowhere = upload(fake, tmp_path, data, file, extra={"DIGIT_RECOGNIZER_LEDGER": str(tmp_path / "a-file" / "l")})
        polls = upload(fake, tmp_path, data, file, extra={"DIGIT_RECOGNIZER_POLL_SECONDS": "soon"})
    assert_one_line_error(nowhere, EXIT_USER, "a-file: not a folder", "nothing was sent")
    assert_one_line_error(polls, EXIT_USER, "DIGIT_RECOGNIZER_POLL_SECONDS")
    assert fake.uploads() == []


@pytest.mark.slow
def test_a_ledger_spoiled_while_waiting_says_the_file_was_submitted(tmp_path):
    data, file = write_dataset(tmp_path / "data"), paired_file(tmp_path / "s")
    path = tmp_path / "home" / "ledger.csv"
    with FakeKaggle(scoring=["PENDING"] * 100 + ["COMPLETE"]) as fake:
        env = kaggle_env(dict(os.environ), fake.url, tmp_path / "home")
        process = start_command("-m", "src.upload", file, "-m", "test", "--data", data, env=env)
        deadline = time.monotonic() + 120
        while not (path.exists() and "4242" in path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        path.write_text("not,a,ledger\n")
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_NOT_RECORDED, stderr
    assert stderr.startswith("error: submitted as 4242; could not update the ledger") and stderr.count("\n") == 1
    assert "line 1: not a ledger" in stderr and len(fake.uploads()) == 1


# --- a competitor's safeguards ------------------------------------------------------------------------------------


def test_a_submission_below_the_floor_is_refused_unless_forced(tmp_path):
    data, file = write_dataset(tmp_path / "data"), paired_file(tmp_path / "s", accuracy=0.4521)
    with FakeKaggle() as fake:
        refused = upload(fake, tmp_path, data, file)
        assert fake.uploads() == []
        forced = upload(fake, tmp_path, data, file, "--force")
    assert_one_line_error(refused, EXIT_USER, "local accuracy 0.4521 is below the floor 0.90", "add --force")
    assert forced.returncode == 0, forced.stderr
    assert len(fake.uploads()) == 1


def test_a_submission_below_the_best_scored_one_is_refused(tmp_path):
    data, file = write_dataset(tmp_path / "data"), paired_file(tmp_path / "s", accuracy=0.95)
    write_ledger_rows(tmp_path, "0.970000", "0.96000")
    with FakeKaggle() as fake:
        refused = upload(fake, tmp_path, data, file)
    assert_one_line_error(refused, EXIT_USER, "local accuracy 0.9500 is below 0.9700", "public score 0.96000")
    assert fake.uploads() == []
    write_ledger_rows(tmp_path, "0.940000", "0.96000")
    with FakeKaggle() as fake:
        assert upload(fake, tmp_path, data, file).returncode == 0
    assert len(fake.uploads()) == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["src.submit", "--sample", "--hidden-units", "256", "128"], "use commas: --hidden-units 256,128"),
        (["src.submit", "--sample", "--filters", "32", "64"], "use commas: --filters 32,64"),
        (["src.submit", "--sample", "--epo", "3"], "unrecognized arguments: --epo"),
        (["src.upload", "x.csv", "--mess", "x"], "--mess"),
        (["src.kaggle", "kernel-wait", "a/b", "--time", "3"], "unrecognized arguments: --time"),
    ],
)
def test_abbreviations_and_spaced_lists_are_refused(args, fragment):
    assert_one_line_error(run_module(*args), EXIT_USER, fragment)


# --- runs: what a submission replaced, a run that barely learned, the zip, predict's defaults, blend weights --------


def competition_zip(folder):
    data = write_dataset(folder / "files")
    rows = len(pd.read_csv(data / "test.csv"))
    (data / "sample_submission.csv").write_text("ImageId,Label\n" + "".join(f"{i},0\n" for i in range(1, rows + 1)))
    path = folder / "digit-recognizer.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("train.csv", "test.csv", "sample_submission.csv"):
            archive.write(data / name, name)
    return path, data


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs into one --out: the first from the zip, the second from a path to train.csv."""
    base = tmp_path_factory.mktemp("safeguards")
    zip_path, data = competition_zip(base)
    out = base / "submissions" / "submission.csv"
    common = ("--out", out, "--epochs", "1", "--verbose", "0", "--no-report", "--seed", "1")
    first = call_main(submit_main, "--data", zip_path, *common, "--scaling", "none")
    first_record = json.loads(out.with_suffix(".json").read_text())
    second = call_main(submit_main, "--data", data / "train.csv", *common, "--scaling", "unit")
    return {"first": first, "second": second, "first_record": first_record, "out": out, "zip": zip_path, "data": data}


@pytest.mark.slow
def test_the_competition_zip_is_unpacked_into_the_cache_keyed_by_its_sha256(two_runs):
    assert two_runs["first"].returncode == 0, two_runs["first"].stderr
    digest = hashlib.sha256(two_runs["zip"].read_bytes()).hexdigest()
    train_path = two_runs["first_record"]["inputs"]["train"]["path"]
    assert f"zip-{digest}" in train_path and train_path.endswith("train.csv")


def test_a_damaged_zip_is_one_line(tmp_path):
    path = tmp_path / "digit-recognizer.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    result = run_module("src.submit", "--data", path, "--out", tmp_path / "s.csv", "--epochs", "1")
    assert_one_line_error(result, EXIT_USER, str(path), "zip")


def test_a_csv_of_another_name_as_data_is_refused_not_passed_over_for_its_folders_train_csv(tiny_data, tmp_path):
    mine = tiny_data / "my_digits.csv"
    mine.write_bytes((tiny_data / "train.csv").read_bytes())
    result = run_module("src.submit", "--data", mine, "--out", tmp_path / "s.csv", "--epochs", "1")
    assert_one_line_error(result, EXIT_USER, f"{mine}: --data takes the folder holding train.csv", "as train.csv")
    assert not (tmp_path / "s.csv").exists()


def test_the_summary_says_what_was_replaced_and_warns_of_a_run_that_barely_learned(two_runs):
    first, second, record = two_runs["first"], two_runs["second"], two_runs["first_record"]
    assert second.returncode == 0, second.stderr
    was = record["validation"]["accuracy"]
    new = json.loads(two_runs["out"].with_suffix(".json").read_text())["validation"]["accuracy"]
    name = record["run_dir"].rsplit("/", 1)[-1]
    assert f"replaced {two_runs['out']}: was {was:.4f} (run {name}), now {new:.4f}" in second.stdout
    assert "replaced" not in first.stdout
    # The first run trained on raw pixels (the default scaling) of 80 rows for one epoch.
    assert was < 0.5, was
    assert f"warning: validation accuracy {was:.4f} is below 0.5" in first.stderr
    assert "add --scaling unit" in first.stderr
    assert "warning" not in first.stdout


@pytest.mark.parametrize(
    "preset, changes, rows, cause",
    [
        # The embedded sample: 1,500 rows in batches of 128 for 8 epochs.
        ("cnn-fast", {}, 1500, "1500 rows made at most 96: train on more rows or --epochs, or add --no-batch-norm"),
        ("cnn-fast", {"batch_norm": False}, 1500, "check the data, --learning-rate and --epochs"),
        ("cnn-fast", {}, 42_000, "check the data, --learning-rate and --epochs"),
        ("tutorial-scaled", {}, 1500, "check the data, --learning-rate and --epochs"),
    ],
)
def test_a_cnn_that_barely_learned_in_few_steps_is_told_of_batch_norm(preset, changes, rows, cause):
    from src.core.config import PRESETS
    from src.runs.record import low_accuracy_line

    line = low_accuracy_line(0.2733, PRESETS[preset].replace(**changes), rows)
    assert line.startswith("warning: validation accuracy 0.2733 is below 0.5: the network barely learned; ")
    assert line.endswith(cause)
    assert low_accuracy_line(0.5, PRESETS[preset].replace(**changes), rows) == ""


@pytest.mark.slow
def test_predict_defaults_to_the_runs_test_file_and_an_out_beside_the_runs_folder(two_runs, capsys):
    run_dir = json.loads(two_runs["out"].with_suffix(".json").read_text())["run_dir"]
    result = run_main(capsys, predict_main, run_dir)
    name = run_dir.rsplit("/", 1)[-1]
    expected = two_runs["out"].parent / f"predict-{name}.csv"
    assert result.returncode == 0, result.stderr
    assert expected.is_file() and "the run's own test file" in result.stdout


@pytest.mark.slow
def test_huge_blend_weights_do_not_overflow(two_runs, tmp_path):
    runs = sorted(str(path) for path in (two_runs["out"].parent / "runs").iterdir())
    equal = run_module("src.blend", *runs, "--out", tmp_path / "equal.csv")
    huge = run_module("src.blend", *runs, "--weights", "1e308,1e308", "--out", tmp_path / "huge.csv")
    assert equal.returncode == 0 and huge.returncode == 0, huge.stderr
    assert (tmp_path / "equal.csv").read_bytes() == (tmp_path / "huge.csv").read_bytes()
    record = json.loads((tmp_path / "huge.json").read_text())
    assert [source["weight"] for source in record["sources"]] == [0.5, 0.5]
    refused = run_module("src.blend", *runs, "--weights", "1e308,1e309", "--out", tmp_path / "inf.csv")
    assert_one_line_error(refused, EXIT_USER, "weights must be finite")
