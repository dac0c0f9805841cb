"""`python -m src.blend`: one test file only, labels from the weighted mean, the measured gain."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.blend import main as blend_main
from src.data.submission import validate_submission
from src.runs.folders import INCOMPLETE_MARKER, load_run
from src.runs.record import DERIVED_BLEND, DerivedRecord, RunRecord
from src.training.evaluation import accuracy
from tests.helpers import assert_one_line_error, run_command, run_main


@pytest.fixture
def runs(small_runs):
    """The shared tiny runs' folders: two on one dataset, one on another train.csv with the same test.csv, one on
    another test.csv."""
    return {name: small_runs[name].run_dir for name in ("single", "folds", "other train", "other test")}


def blend(capsys, *arguments):
    """`python -m src.blend ARGUMENTS`, in this process."""
    return run_main(capsys, blend_main, *arguments)


def read_labels(path):
    return pd.read_csv(path)["Label"].to_numpy()


@pytest.mark.slow
def test_labels_are_the_argmax_of_the_mean_probabilities_and_the_gain_is_measured(runs, tmp_path, capsys):
    out = tmp_path / "blend.csv"
    completed = blend(capsys, runs["single"], runs["folds"], "--out", out)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    (single, single_record), (folds, folds_record) = load_run(runs["single"]), load_run(runs["folds"])
    mean = (single.test_probabilities + folds.test_probabilities) / 2
    validate_submission(out, n_rows=20)
    np.testing.assert_array_equal(read_labels(out), mean.argmax(axis=1))

    record = DerivedRecord.from_json(tmp_path / "blend.json")
    assert record.kind == DERIVED_BLEND
    assert record.test == single_record.inputs.test
    assert [source.run_dir for source in record.sources] == [str(runs["single"]), str(runs["folds"])]
    assert [source.validation_accuracy for source in record.sources] == [
        single_record.validation.accuracy,
        folds_record.validation.accuracy,
    ]
    assert [source.weight for source in record.sources] == [0.5, 0.5]
    # The single model held out the last 16 rows; the 2-fold run held out every row: 16 shared.
    shared = single.validation_rows
    assert record.validation_rows == len(shared) == 16
    folds_on_shared = folds.validation_probabilities[np.argsort(folds.validation_rows)][shared]
    labels = single.train_labels[shared]
    assert record.validation_accuracy == accuracy(labels, (single.validation_probabilities + folds_on_shared) / 2)
    assert record.sources[0].shared_rows_accuracy == single_record.validation.accuracy
    assert record.sources[1].shared_rows_accuracy == accuracy(labels, folds_on_shared)
    gain = record.validation_accuracy - max(source.shared_rows_accuracy for source in record.sources)
    against = f"{abs(gain):.4f} {'above' if gain > 0 else 'below'}" if gain else "level with"
    shown = f"{record.validation_accuracy:.4f} ({against} the best run there)"
    assert f"blend accuracy on the 16 shared held-out rows: {shown}" in completed.stdout


@pytest.mark.slow
def test_blend_in_its_own_process_starts_quietly(runs, tmp_path):
    out = tmp_path / "blend.csv"
    completed = run_command("-m", "src.blend", runs["single"], runs["folds"], "--out", out)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    assert f"wrote {out}" in completed.stdout
    validate_submission(out, n_rows=20)


def test_weights_change_the_mean(runs, tmp_path, capsys):
    out = tmp_path / "weighted.csv"
    completed = blend(capsys, runs["single"], runs["folds"], "--weights", "3,1", "--out", out)
    assert completed.returncode == 0, completed.stderr
    single, folds = load_run(runs["single"])[0], load_run(runs["folds"])[0]
    weighted = 0.75 * single.test_probabilities + 0.25 * folds.test_probabilities
    np.testing.assert_array_equal(read_labels(out), weighted.argmax(axis=1))
    assert [source.weight for source in DerivedRecord.from_json(out.with_suffix(".json")).sources] == [0.75, 0.25]


def test_runs_without_shared_held_out_rows_say_the_gain_cannot_be_measured(runs, tmp_path, capsys):
    out = tmp_path / "blend.csv"
    completed = blend(capsys, runs["single"], runs["other train"], "--out", out)
    assert completed.returncode == 0, completed.stderr
    assert "blend gain cannot be measured" in completed.stdout
    record = DerivedRecord.from_json(out.with_suffix(".json"))
    assert record.validation_accuracy is None and record.validation_rows == 0
    validate_submission(out, n_rows=20)


def test_a_file_that_is_not_a_submission_is_never_replaced(runs, tmp_path, capsys):
    out = tmp_path / "README.md"
    out.write_text("# notes\n")
    completed = blend(capsys, runs["single"], runs["folds"], "--out", out)
    assert_one_line_error(completed, 2, f"{out}: is not a submission", "choose another --out")
    assert out.read_text() == "# notes\n"
    assert not out.with_suffix(".json").exists()


@pytest.mark.parametrize("moment", ["writing", "after-writing"])
def test_ctrl_c_says_whether_the_blend_replaced_the_submission(runs, tmp_path, capsys, monkeypatch, moment):
    import src.blend
    import src.data.submission

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "blend.csv"
    if moment == "writing":
        monkeypatch.setattr(src.data.submission, "write_submission", interrupted)
    else:
        monkeypatch.setattr(src.blend, "gain_lines", interrupted)  # the line printed once the pair is in place
    completed = blend(capsys, runs["single"], runs["folds"], "--out", out)
    assert completed.returncode == 130
    said = f"{out} was left as it was" if moment == "writing" else f"after writing {out} and its record"
    assert completed.stderr == f"interrupted: {said}\n"
    assert out.exists() == (moment == "after-writing")


def test_runs_on_different_test_files_are_refused(runs, tmp_path, capsys):
    out = tmp_path / "blend.csv"
    completed = blend(capsys, runs["single"], runs["other test"], "--out", out)
    assert_one_line_error(completed, 2, str(runs["single"]), str(runs["other test"]), "different test files")
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize("target", ["test.csv", "train.csv"])
def test_out_never_replaces_a_file_the_runs_read(runs, target, capsys):
    read = Path(RunRecord.from_json(runs["single"] / "record.json").inputs.test.path).parent / target
    before = read.read_bytes()
    assert_one_line_error(blend(capsys, runs["single"], runs["folds"], "--out", read), 2, "is an input file")
    assert read.read_bytes() == before


@pytest.mark.parametrize("name", ["members/member-1.keras", "test_probabilities.npy", "submission.csv"])
def test_out_never_replaces_a_file_of_another_run_folder(runs, name, capsys):
    target = runs["other test"] / name
    before = target.read_bytes()
    completed = blend(capsys, runs["single"], runs["folds"], "--out", target)
    assert_one_line_error(completed, 2, f"is inside the run folder {runs['other test']}")
    assert target.read_bytes() == before


@pytest.mark.parametrize("case", ["one run", "incomplete", "weights", "named twice", "out in a run folder"])
def test_bad_requests_are_one_line(runs, tmp_path, case, capsys):
    incomplete = shutil.copytree(runs["folds"], tmp_path / "incomplete")
    (incomplete / INCOMPLETE_MARKER).touch()
    out = tmp_path / "blend.csv"
    arguments, fragment = {
        "one run": ((runs["single"], "--out", out), "at least 2 run folders"),
        "incomplete": ((runs["single"], incomplete, "--out", out), "incomplete run folder"),
        "weights": ((runs["single"], runs["folds"], "--weights", "1", "--out", out), "one per run"),
        "named twice": ((runs["single"], runs["single"], "--out", out), "named twice"),
        "out in a run folder": ((runs["single"], runs["folds"], "--out", runs["folds"] / "b.csv"), "inside the run"),
    }[case]
    assert_one_line_error(blend(capsys, *arguments), 2, fragment)
    assert not out.exists() and not (runs["folds"] / "b.csv").exists()
