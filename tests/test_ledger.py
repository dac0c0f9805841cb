"""The submissions ledger: rows written by uploads, refreshed from the fake Kaggle's list, the table and the figure."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from src.core.errors import EXIT_USER
from src.core.files import sha256
from src.ledger import main as ledger_main
from src.runs.ledger import COLUMNS
from tests.fake_kaggle import FakeKaggle, assert_no_secret_in_files, run_with_fake
from tests.helpers import assert_one_line_error, run_module

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ELSEWHERE = {
    "ref": 4000,
    "date": "2026-11-01T10:00:00Z",
    "description": "made on the website",
    "fileName": "mine.csv",
    "status": "COMPLETE",
    "publicScore": "0.95000",
}


def ledger(url, tmp_path, *args):
    return run_with_fake("-m", "src.ledger", *args, url=url, home=tmp_path / "home")


def rows(tmp_path) -> list[dict]:
    with open(tmp_path / "home" / "ledger.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_a_trained_submission_from_submit_to_the_figure(tiny_data, tmp_path):
    """Train, submit without waiting, refresh from Kaggle; the row survives its run folder's deletion."""
    out = tmp_path / "out" / "submission.csv"
    train = ("--data", tiny_data, "--out", out, "--epochs", "2", "--verbose", "0", "--no-report")
    with FakeKaggle(submissions=[ELSEWHERE]) as fake:
        submitted = run_with_fake(
            *("-m", "src.submit", *train, "--submit", "--force", "-m", "tutorial", "--no-wait"),
            url=fake.url,
            home=tmp_path / "home",
        )
        assert submitted.returncode == 0, submitted.stderr
        [row] = rows(tmp_path)
        assert row["status"] == "pending" and row["sha256"] == sha256(out)
        record_path = out.with_suffix(".json")
        assert json.loads(record_path.read_text())["kaggle"]["status"] == "pending"
        refreshed = ledger(fake.url, tmp_path)
    assert refreshed.returncode == 0, refreshed.stderr
    lines = refreshed.stdout.splitlines()
    assert lines[0] == f"refreshed {tmp_path / 'home' / 'ledger.csv'} from Kaggle: 1 updated, 1 made elsewhere added"
    assert lines[1].split() == ["ref", "submitted", "(UTC)", "settings", "local", "public", "status", "message"]
    # Oldest first: the website's submission, then ours, now scored.
    assert lines[2].split() == [
        "4000",
        "2026-11-01",
        "10:00",
        "unknown",
        "-",
        "0.95000",
        "complete",
        "made",
        "on",
        "the",
        "website",
    ]
    ours = lines[3].split()
    assert ours[0] == "4242" and ours[3] == "h20-15_e2_f1_s42_train80"
    assert ours[5:] == ["0.91234", "complete", "tutorial"]
    assert float(ours[4]) == round(float(rows(tmp_path)[1]["local_accuracy"]), 4)
    # The refresh completed the run's records too.
    record = json.loads(record_path.read_text())
    run_record = json.loads((Path(record["run_dir"]) / "record.json").read_text())
    expected = {"ref": 4242, "message": "tutorial", "status": "complete", "public_score": 0.91234}
    assert record["kaggle"] == run_record["kaggle"] == expected
    figure = tmp_path / "home" / "ledger.png"
    assert lines[-1] == f"wrote {figure}: 1 submissions with both a local accuracy and a public score"
    assert figure.read_bytes().startswith(PNG_SIGNATURE)
    assert [(row["kaggle_ref"], row["settings"], row["status"]) for row in rows(tmp_path)] == [
        ("4000", "unknown", "complete"),
        ("4242", "h20-15_e2_f1_s42_train80", "complete"),
    ]

    # The report still reads the run's record, with its kaggle section.
    compared = run_module("src.report", "--compare", record["run_dir"])
    assert compared.returncode == 0, compared.stderr

    # Delete the run folder and the file: the row still prints, and says its folder is gone.
    shutil.rmtree(rows(tmp_path)[1]["run_folder"])
    out.unlink()
    offline = run_with_fake("-m", "src.ledger", "--offline", url="http://127.0.0.1:9", home=tmp_path / "home")
    assert offline.returncode == 0, offline.stderr
    assert "h20-15_e2_f1_s42_train80 (run folder gone)" in offline.stdout.splitlines()[2]
    assert_no_secret_in_files(tmp_path)


def test_a_second_refresh_changes_nothing(tmp_path):
    with FakeKaggle(submissions=[ELSEWHERE]) as fake:
        first = ledger(fake.url, tmp_path)
        before = (tmp_path / "home" / "ledger.csv").read_bytes()
        second = ledger(fake.url, tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "0 updated, 0 made elsewhere added" in second.stdout
    assert (tmp_path / "home" / "ledger.csv").read_bytes() == before
    # One submission with a public score but no local accuracy: nothing to draw.
    assert "ledger.png not drawn" in second.stdout and not (tmp_path / "home" / "ledger.png").exists()


def test_no_ledger_yet(tmp_path):
    result = run_with_fake("-m", "src.ledger", "--offline", url="http://127.0.0.1:9", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("no submissions yet; python -m src.upload FILE -m TEXT adds the first\n")


def test_a_file_that_is_not_a_ledger_is_refused_and_kept(tmp_path):
    path = tmp_path / "home" / "ledger.csv"
    path.parent.mkdir(parents=True)
    path.write_text("ImageId,Label\n1,2\n")
    with FakeKaggle(submissions=[ELSEWHERE]) as fake:
        result = ledger(fake.url, tmp_path)
    assert_one_line_error(result, EXIT_USER, f"{path}: line 1: not a ledger", ",".join(COLUMNS))
    assert path.read_text() == "ImageId,Label\n1,2\n"


@pytest.mark.parametrize("column, cell", [("local_accuracy", "0.97x"), ("public_score", "nan"), ("kaggle_ref", "12.5")])
def test_a_hand_edited_number_cell_is_one_line_naming_file_line_and_column(column, cell, tmp_path, capsys):
    path = tmp_path / "ledger.csv"
    good = {name: "" for name in COLUMNS} | {"local_accuracy": "0.97", "public_score": "0.96", "kaggle_ref": "12"}
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([good, good | {column: cell}])
    before = path.read_bytes()
    assert ledger_main(["--offline", "--ledger", str(path)]) == EXIT_USER
    error = capsys.readouterr().err
    assert error.startswith(f"error: {path}: line 3: column {column}: '{cell}'") and error.count("\n") == 1, error
    assert path.read_bytes() == before
