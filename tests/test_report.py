"""The run folder, its figures and HTML report, regeneration and `--compare`."""

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

from src.config import Config
from src.pipeline import run
from src.report import (
    CONFUSION_MATRIX_PNG,
    GALLERY_PNG,
    LEARNING_CURVES_PNG,
    MISTAKES_PNG,
    REPORT_HTML,
    compare_runs,
    confusion_counts,
    make_report,
)
from src.runs import RUN_ARRAY_NAMES, confident_mistakes, create_run_dir, load_run
from tests.conftest import REPO_ROOT
from tests.synthetic import write_dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = (LEARNING_CURVES_PNG, CONFUSION_MATRIX_PNG, MISTAKES_PNG, GALLERY_PNG)
RUN_NAME = re.compile(r"^\d{8}-\d{6}-(?P<config>.+?)(-\d+)?$")


def python(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, env=env, capture_output=True, text=True)


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 300, pixels.shape
    assert pixels.std() > 0, f"{path} is blank"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny real runs into one submissions folder: a 2-fold ensemble and a single model."""
    base = tmp_path_factory.mktemp("report")
    data_dir = write_dataset(base / "data")
    out = base / "submissions" / "submission.csv"
    ensemble = Config(epochs=3, folds=2, seed=1)
    single = Config(epochs=2, folds=1, seed=1)
    return [(config, run(config, data_dir, out, verbose=0)) for config in (ensemble, single)]


def test_every_run_gets_its_own_folder_beside_out(runs):
    (ensemble, first), (single, second) = runs
    assert first.run_dir != second.run_dir
    for config, result in runs:
        assert result.run_dir.parent == result.submission_path.parent / "runs"
        assert RUN_NAME.match(result.run_dir.name)["config"] == config.short_name()
        assert result.record["run_dir"] == str(result.run_dir)
    # --out holds the latest run; each run folder keeps its own copy.
    assert (second.run_dir / "submission.csv").read_bytes() == second.submission_path.read_bytes()
    assert json.loads((second.run_dir / "record.json").read_text()) == json.loads(second.record_path.read_text())
    assert json.loads((first.run_dir / "record.json").read_text())["config"]["folds"] == 2


def test_run_folder_names_are_unique_within_a_second(tmp_path):
    folders = [create_run_dir(tmp_path, "h20-15_e1_f1_s42") for _ in range(3)]
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
        assert record == json.loads(json.dumps(result.record))


def test_confusion_matrix_sums_to_the_validation_rows(runs):
    for _, result in runs:
        arrays, record = load_run(result.run_dir)
        counts = confusion_counts(arrays.validation_labels, arrays.validation_probabilities.argmax(axis=1))
        n_validation = sum(member["validation_rows"] for member in record["validation"]["members"])
        assert counts.shape == (10, 10)
        assert counts.sum() == n_validation == len(arrays.validation_rows)
        assert np.trace(counts) / counts.sum() == pytest.approx(record["validation"]["accuracy"])


def test_report_numbers_equal_the_record(runs):
    for _, result in runs:
        record = result.record
        page = (result.run_dir / REPORT_HTML).read_text()
        per_class = record["per_class"]
        assert per_class["accuracy"] == pytest.approx(record["validation"]["accuracy"])
        assert sum(per_class[str(digit)]["support"] for digit in range(10)) == len(result.training.validation_rows())
        assert f"<th>validation accuracy</th><td>{record['validation']['accuracy']:.4f}</td>" in page
        for digit in range(10):
            row = per_class[str(digit)]
            cells = [
                str(digit),
                *(f"{row[key]:.4f}" for key in ("precision", "recall", "f1-score")),
                str(row["support"]),
            ]
            assert "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>" in page
        for stage, seconds in record["timings"].items():
            assert f"<th>{stage}</th><td>{seconds}</td>" in page


def test_the_report_regenerates_without_tensorflow(runs, tmp_path):
    _, result = runs[0]
    copy = shutil.copytree(result.run_dir, tmp_path / result.run_dir.name)
    for name in (*FIGURES, REPORT_HTML):
        (copy / name).unlink()
    check = (
        "import sys; from src.report import main; code = main([sys.argv[1]]); "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), 'TensorFlow was imported'; sys.exit(code)"
    )
    regenerated = python("-c", check, copy)
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
    assert rows["folds"] == ["2", "1"] and rows["epochs"] == ["3", "2"]
    assert "seed" not in rows  # only the settings that differ
    accuracy = [f"{result.record['validation']['accuracy']:.4f}" for _, result in runs]
    assert any(line.split()[-2:] == accuracy for line in lines if line.startswith("validation accuracy"))

    cli = python("-m", "src.report", "--compare", first.run_dir, second.run_dir)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == table + "\n"


def test_a_bad_run_folder_is_a_one_line_error(runs, tmp_path):
    missing = python("-m", "src.report", tmp_path / "nowhere")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error:") and "not a folder" in missing.stderr
    incomplete = shutil.copytree(runs[0][1].run_dir, tmp_path / "incomplete")
    (incomplete / "histories.json").unlink()
    result = python("-m", "src.report", incomplete)
    assert result.returncode == 2 and "missing histories.json" in result.stderr
    result = python("-m", "src.report", "--compare", runs[0][1].run_dir, tmp_path)
    assert result.returncode == 2 and "no record.json" in result.stderr
    for text in ('{"config": {}}', "[1]"):
        (incomplete / "record.json").write_text(text)
        result = python("-m", "src.report", "--compare", runs[0][1].run_dir, incomplete)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "record.json: not a run record" in result.stderr


def test_confident_mistakes_are_the_wrong_rows_most_confident_first():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7], [0.95, 0.05]])
    labels = np.array([0, 0, 0, 1, 1])
    np.testing.assert_array_equal(confident_mistakes(probabilities, labels), [4, 1, 2])
    np.testing.assert_array_equal(confident_mistakes(probabilities, labels, count=1), [4])


def test_no_report_keeps_the_arrays_and_skips_the_figures(tmp_path):
    data_dir = write_dataset(tmp_path / "data")
    out = tmp_path / "submission.csv"
    result = python(
        "-m", "src.submit", "--data", data_dir, "--out", out, "--epochs", "2", "--verbose", "0", "--no-report"
    )
    assert result.returncode == 0, result.stderr
    assert "per class, on the held-out rows:" in result.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"run folder: {run_dir}" in result.stdout
    assert not [path for path in run_dir.iterdir() if path.suffix in (".png", ".html")]
    assert {f"{name}.npy" for name in RUN_ARRAY_NAMES} <= {path.name for path in run_dir.iterdir()}
    # Everything needed is there to draw them later.
    make_report(run_dir)
    for name in FIGURES:
        assert_png(run_dir / name)
