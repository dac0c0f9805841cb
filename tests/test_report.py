"""The run folder, its figures and HTML report, regeneration, `--compare`, and damaged folders."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from src.models.registry import run_name
from src.report import main as report_main
from src.runs.folders import INCOMPLETE_MARKER, RUN_ARRAY_NAMES, create_run_dir, load_run
from src.runs.record import RunRecord
from src.runs.reporting import (
    CONFUSION_MATRIX_PNG,
    GALLERY_PNG,
    GRID_COLUMNS,
    LEARNING_CURVES_PNG,
    MISTAKES_PNG,
    REPORT_HTML,
    TITLE_LINE,
    compare_runs,
    digit_montage,
    make_report,
    plot_learning_curves,
)
from src.submit import main as submit_main
from src.training.evaluation import confusion_counts, predicted_labels
from tests.helpers import REPO_ROOT, assert_one_line_error, run_command, run_main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = (LEARNING_CURVES_PNG, CONFUSION_MATRIX_PNG, MISTAKES_PNG, GALLERY_PNG)
RUN_NAME = re.compile(r"^\d{8}-\d{6}-(?P<config>.+?)_(?P<data>(train|sample)\d+)(-\d+)?$")


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 300, pixels.shape
    assert pixels.std() > 0, f"{path} is blank"


@pytest.fixture
def runs(small_runs):
    """The shared tiny runs with their reports, in one submissions folder: a 2-fold ensemble and a single model."""
    return [(result.record.config, result) for result in (small_runs["folds"], small_runs["single"])]


def test_every_run_gets_its_own_folder_named_by_settings_and_data(runs):
    (_, first), (_, second) = runs
    assert first.run_dir != second.run_dir
    for config, result in runs:
        assert result.run_dir.parent == result.submission_path.parent / "runs"
        name = RUN_NAME.match(result.run_dir.name)
        assert name["config"] == run_name(config) and name["data"] == "train80"
        assert result.record.run_dir == str(result.run_dir)
        assert not (result.run_dir / INCOMPLETE_MARKER).exists()
    # --out holds the latest run; each run folder keeps its own copy.
    assert (second.run_dir / "submission.csv").read_bytes() == second.submission_path.read_bytes()
    assert RunRecord.from_json(second.run_dir / "record.json") == RunRecord.from_json(second.record_path)
    assert RunRecord.from_json(first.run_dir / "record.json").config.folds == 2


def test_run_folder_names_are_unique_within_a_second(tmp_path):
    folders = [create_run_dir(tmp_path, "h20-15_e1_f1_s42_train80") for _ in range(3)]
    assert len(set(folders)) == 3 and all(folder.is_dir() for folder in folders)


def test_every_artefact_is_a_valid_png_or_html(runs):
    for _, result in runs:
        for name in FIGURES:
            assert_png(result.run_dir / name)
        page = (result.run_dir / REPORT_HTML).read_text()
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
        embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
        assert len(embedded) == len(FIGURES)
        for encoded in embedded:
            assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)
        assert result.report_path == result.run_dir / REPORT_HTML


def test_saved_arrays_are_the_runs_own(runs):
    for config, result in runs:
        arrays, record = load_run(result.run_dir)
        training = result.training
        np.testing.assert_array_equal(arrays.validation_rows, training.validation_rows())
        np.testing.assert_allclose(arrays.validation_probabilities, training.validation_probabilities(), rtol=1e-6)
        np.testing.assert_allclose(arrays.test_probabilities, result.test_probabilities, rtol=1e-6)
        assert len(arrays.histories) == config.folds
        for saved, member in zip(arrays.histories, training.members, strict=True):
            assert saved.keys() == member.history.keys()
            np.testing.assert_allclose(saved["val_loss"], member.history["val_loss"])
            assert len(saved["loss"]) == config.epochs
        assert np.bincount(arrays.validation_members).tolist() == [len(m.validation_rows) for m in training.members]
        assert record == result.record
        # Each kept mistake names its row of train.csv: that row's label is the mistake's true label.
        np.testing.assert_array_equal(
            arrays.train_labels[arrays.mistake_rows], arrays.validation_labels[arrays.mistake_positions]
        )


def test_confusion_matrix_sums_to_the_validation_rows(runs):
    for _, result in runs:
        arrays, record = load_run(result.run_dir)
        counts = confusion_counts(arrays.validation_labels, predicted_labels(arrays.validation_probabilities))
        n_validation = sum(member.validation_rows for member in record.validation.members)
        assert counts.shape == (10, 10)
        assert counts.sum() == n_validation == len(arrays.validation_rows)
        assert np.trace(counts) / counts.sum() == pytest.approx(record.validation.accuracy)


def test_report_numbers_equal_the_record(runs):
    for _, result in runs:
        record = result.record
        page = (result.run_dir / REPORT_HTML).read_text()
        per_class = record.validation.per_class
        assert sum(per_class[str(digit)].support for digit in range(10)) == len(result.training.validation_rows())
        assert f"<th>validation accuracy</th><td>{record.validation.accuracy:.4f}</td>" in page
        # A k-fold's table counts every row, each scored by the fold that left it out.
        scored = "out-of-fold" if record.config.folds > 1 else "validation"
        assert f"<h2>Per class ({scored} rows)</h2>" in page
        for digit in range(10):
            row = per_class[str(digit)]
            cells = [str(digit), *(f"{value:.4f}" for value in (row.precision, row.recall, row.f1)), str(row.support)]
            assert "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>" in page
        for stage in ("load", "train", "predict", "write", "total"):
            assert f"<th>{stage}</th><td>{getattr(record.timings, stage)}</td>" in page


def test_the_config_shows_what_the_run_read_and_names_the_rest(runs):
    for config, result in runs:
        page = (result.run_dir / REPORT_HTML).read_text()
        config_section = page.split("<h2>Config</h2>")[1].split("<h2>")[0]
        shown = re.findall(r"<tr><th>([^<]+)</th>", config_section)
        # A dense network reads its hidden units and no filters; a k-fold ensemble no validation split.
        assert "hidden_units" in shown and "filters" not in shown
        assert ("validation_split" in shown) == (config.folds == 1)
        unread = re.search(r"<th>not read by this run</th><td>([^<]+)</td>", config_section).group(1).split(", ")
        assert "filters" in unread and ("validation_split" in unread) == (config.folds > 1)
        assert set(shown[:-1]) | set(unread) == set(config.to_dict())


def test_times_are_true_for_members_trained_together(runs):
    (_, ensemble), (_, single) = runs
    timings = ensemble.record.timings
    assert timings.total >= timings.load + timings.train + timings.predict + timings.write
    # The 2 folds shared one compiled loop: its time is given once, not split in two.
    validation = ensemble.record.validation
    assert validation.members_trained_together
    assert [member.seconds for member in validation.members] == [timings.train, timings.train]
    page = (ensemble.run_dir / REPORT_HTML).read_text()
    assert f"The 2 models were trained together, in one compiled loop: {timings.train:.1f} s in all." in page
    assert not single.record.validation.members_trained_together


@pytest.mark.slow
def test_the_report_regenerates_without_tensorflow(runs, tmp_path):
    _, result = runs[0]
    copy = shutil.copytree(result.run_dir, tmp_path / result.run_dir.name)
    for name in (*FIGURES, REPORT_HTML):
        (copy / name).unlink()
    check = (
        "import sys; from src.report import main; code = main([sys.argv[1]]); "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), 'TensorFlow was imported'; sys.exit(code)"
    )
    regenerated = run_command("-c", check, copy)
    assert regenerated.returncode == 0, regenerated.stderr
    assert f"wrote {copy / REPORT_HTML}" in regenerated.stdout
    for name in FIGURES:
        assert_png(copy / name)
    # Same arrays, same pictures: the redrawn report is the one the run wrote.
    assert (copy / REPORT_HTML).read_text() == (result.run_dir / REPORT_HTML).read_text()


def test_compare_puts_runs_side_by_side(runs):
    (_, first), (_, second) = runs
    table = compare_runs([first.run_dir, second.run_dir])
    lines = table.splitlines()
    assert first.run_dir.name in lines[0] and second.run_dir.name in lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["folds"] == ["2", "1"] and rows["epochs"] == ["2", "1"]
    assert "seed" not in rows  # only the settings that differ
    # Both ran on the same files: the data row says which, and how many rows.
    (data,) = [line for line in lines if line.startswith("data ")]
    assert data.count(f"files {first.record.inputs.train.path[: -len('/train.csv')]}/ (80+20 rows)") == 2
    accuracy = [f"{result.record.validation.accuracy:.4f}" for _, result in runs]
    assert any(line.split()[-2:] == accuracy for line in lines if line.startswith("validation accuracy"))
    totals = [f"{result.record.timings.total:.1f}" for _, result in runs]
    assert any(line.split()[-2:] == totals for line in lines if line.startswith("total seconds"))


def test_compare_shows_a_setting_a_run_does_not_read_as_a_dash(small_runs):
    dense, cnn = small_runs["single"], small_runs["cnn"]
    lines = compare_runs([dense.run_dir, cnn.run_dir]).splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["family"] == ["dense", "cnn"]
    assert rows["filters"] == ["-", "4"] and rows["hidden_units"] == ["20,15", "-"]
    # The same value in both configs, read by the dense network alone.
    assert dense.record.config.l2 == cnn.record.config.l2 and rows["l2"] == ["0.0001", "-"]
    assert "seed" not in rows


@pytest.mark.parametrize("stderr_too", [False, True], ids=["stdout-closed", "both-closed"])
def test_compare_into_a_closed_output_ends_with_141_and_one_line(runs, stderr_too):
    """Python buffers a pipe's output (no PYTHONUNBUFFERED): the table meets the closed pipe as the command ends."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [sys.executable, "-m", "src.report", "--compare", runs[0][1].run_dir.parent],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE,
    )
    process.stdout.close()  # as `| head` does once it has had enough; here before the first line
    stderr = b"" if stderr_too else process.stderr.read()
    assert process.wait(timeout=120) == 141
    if not stderr_too:
        assert stderr.decode() == "stopped (output closed): nothing was finished\n"


def test_compare_takes_the_folder_of_runs(runs, capsys):
    runs_folder = runs[0][1].run_dir.parent
    run_dirs = sorted(path for path in runs_folder.iterdir() if path.is_dir())
    cli = run_main(capsys, report_main, "--compare", runs_folder)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == compare_runs(run_dirs) + "\n"


def test_a_digit_grid_is_one_picture_with_every_digit_in_its_own_tile_on_white():
    # Digit i is all i, but for a top row of 100 + i and a left column of 200 + i: upside down,
    # mirrored or transposed, it would not match.
    images = np.zeros((7, 28, 28), dtype=np.uint8)
    for index in range(7):
        images[index] = index + 1
        images[index, :, 0] = 200 + index
        images[index, 0, :] = 100 + index
    for title_lines in (1, 2):
        montage = digit_montage(images.reshape(7, 784), title_lines)
        rows, columns = montage.shape
        tile_height, tile_width = rows // 2, columns // GRID_COLUMNS  # 7 digits: two rows of six
        assert (rows % 2, columns % GRID_COLUMNS) == (0, 0) and montage.dtype == np.uint8
        for index, image in enumerate(images):
            row, column = divmod(index, GRID_COLUMNS)
            tile = montage[row * tile_height : (row + 1) * tile_height, column * tile_width : (column + 1) * tile_width]
            # The whole digit, as it was, in its own tile, below the white space its title lines take.
            top, left = np.argwhere(tile).min(axis=0)
            np.testing.assert_array_equal(tile[top : top + 28, left : left + 28], image)
            assert (tile != 0).sum() == 784
            assert top >= TITLE_LINE * title_lines
        assert not montage[tile_height:, tile_width:].any()  # the empty tiles of the last row stay white
    assert digit_montage(images.reshape(7, 784), 2).shape[0] > digit_montage(images.reshape(7, 784), 1).shape[0]


def test_many_members_draw_a_mean_and_a_band(tmp_path):
    rng = np.random.default_rng(0)
    # The first epoch's loss is a hundred times the rest, as with raw pixels.
    histories = [
        {"loss": [100.0, *rng.uniform(0.5, 1.0, 9)], "accuracy": list(rng.uniform(0.8, 0.9, 10))} for _ in range(5)
    ]
    assert_png(plot_learning_curves(histories, tmp_path / LEARNING_CURVES_PNG))


def damage_array(name, array):
    return lambda run_dir: np.save(run_dir / f"{name}.npy", array)


def out_of_range(name):
    def damage(run_dir):
        array = np.load(run_dir / f"{name}.npy")
        array[0] = 10**6
        np.save(run_dir / f"{name}.npy", array)

    return damage


def damage_record(edit):
    def damage(run_dir):
        values = json.loads((run_dir / "record.json").read_text())
        edit(values)
        (run_dir / "record.json").write_text(json.dumps(values))

    return damage


def write_text(name, text):
    return lambda run_dir: (run_dir / name).write_text(text)


# Each damage, what the one line says, and whether --compare (which reads only the record) meets it too.
DAMAGES = {
    "an empty array": (write_text("validation_probabilities.npy", ""), "unreadable array (0 bytes)", False),
    "a wrong shape": (
        damage_array("validation_probabilities", np.zeros((3, 10))),
        "does not fit the other arrays",
        False,
    ),
    "a wrong rank": (
        damage_array("gallery_images", np.zeros(5, dtype=np.uint8)),
        "expected integers of shape (g, 784)",
        False,
    ),
    "a float index": (damage_array("validation_rows", np.zeros(16)), "expected integers of shape (n)", False),
    "an index out of range": (out_of_range("mistake_positions"), "values must be in 0..", False),
    "a missing array": (lambda run_dir: (run_dir / "train_labels.npy").unlink(), "missing train_labels.npy", False),
    "a record without a key": (damage_record(lambda v: v.pop("validation")), "validation is missing", True),
    "a record of the wrong type": (
        damage_record(lambda v: v["timings"].update(total="7")),
        "timings.total should be a finite number",
        True,
    ),
    "a record that is a list": (write_text("record.json", "[1]"), "the record should be an object", True),
    "histories of the wrong length": (write_text("histories.json", "[]"), "a list of 2 member histories", False),
    "histories without loss": (
        write_text("histories.json", '[{"accuracy": [1]}, {}]'),
        "lacks loss and accuracy",
        False,
    ),
    "histories of uneven epochs": (
        write_text("histories.json", '[{"loss": [1, 2], "accuracy": [1]}, {"loss": [1], "accuracy": [1]}]'),
        "different numbers of epochs",
        False,
    ),
    "histories that are not JSON": (write_text("histories.json", "{"), "histories.json: unreadable", False),
    "an unfinished save": (write_text(INCOMPLETE_MARKER, ""), "incomplete run folder", True),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_run_folder_is_one_line_and_exit_2(runs, tmp_path, capsys, damage):
    spoil, fragment, compare_too = DAMAGES[damage]
    copy = shutil.copytree(runs[0][1].run_dir, tmp_path / "run")
    spoil(copy)
    commands = [[str(copy)]] + ([["--compare", str(runs[1][1].run_dir), str(copy)]] if compare_too else [])
    for argv in commands:
        assert report_main(argv) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1, error
        assert str(copy) in error and fragment in error, error


def test_a_damaged_run_folder_from_the_command_line(runs, tmp_path, capsys):
    assert_one_line_error(run_main(capsys, report_main, tmp_path / "nowhere"), 2, "not a folder")
    copy = shutil.copytree(runs[0][1].run_dir, tmp_path / "run")
    (copy / "test_probabilities.npy").write_bytes(b"")
    assert_one_line_error(run_main(capsys, report_main, copy), 2, "test_probabilities.npy", "unreadable array")
    (copy / INCOMPLETE_MARKER).touch()
    assert_one_line_error(run_main(capsys, report_main, "--compare", copy), 2, "incomplete run folder")


@pytest.mark.slow
def test_a_sample_run_without_the_report(tmp_path, capsys):
    out = tmp_path / "submission.csv"
    args = ("--sample", "--out", out, "--epochs", "1", "--verbose", "0", "--no-report")
    result = run_main(capsys, submit_main, *args)
    assert result.returncode == 0, result.stderr
    assert "per class, on the held-out rows:" in result.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert RUN_NAME.match(run_dir.name)["data"] == "sample1500"
    assert f"run folder: {run_dir}" in result.stdout
    record = RunRecord.from_json(out.with_suffix(".json"))
    # The sample's temporary folder is gone: the record names what it was instead.
    assert record.inputs.source == "sample" and record.inputs.sample_seed == 0
    assert record.inputs.train.path is None and record.inputs.train.rows == 1500
    # One total: the console's closing line and the record say the same.
    assert f"; {record.timings.total:.1f} s\n" in result.stdout
    assert not [path for path in run_dir.iterdir() if path.suffix in (".png", ".html")]
    assert {f"{name}.npy" for name in RUN_ARRAY_NAMES} <= {path.name for path in run_dir.iterdir()}
    # Everything needed is there to draw them later.
    make_report(run_dir)
    for name in FIGURES:
        assert_png(run_dir / name)
