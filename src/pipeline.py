"""The whole job: read the data, train, predict, write the submission and its record."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .data import Datasets, as_features, check_labels, load_datasets
from .files import write_json
from .prediction import predict_labels, predict_probabilities
from .record import build_record
from .report import make_report, per_class_scores
from .runs import RUNS_FOLDER, collect_run_arrays, create_run_dir, save_run
from .submission import check_submission_path, write_submission
from .training import TrainingResult, train


@dataclass
class RunResult:
    submission_path: Path
    record_path: Path
    record: dict
    training: TrainingResult
    test_probabilities: np.ndarray
    run_dir: Path | None = None
    report_path: Path | None = None


def record_path_for(submission_path: str | Path) -> Path:
    """The record sits beside the submission: `submission.csv` -> `submission.json`."""
    return Path(submission_path).with_suffix(".json")


def run(
    config: Config,
    data_dir: str | Path,
    out_path: str | Path,
    datasets_override: Datasets | None = None,
    verbose: int = 2,
    report: bool = True,
) -> RunResult:
    """Train as `config` says and write `out_path`, its JSON record and a run folder.

    The run folder, `runs/<timestamp>-<config.short_name()>/` beside `out_path`,
    keeps a copy of the submission and record and the arrays the report is
    drawn from (see `src/runs.py`); with `report`, also the figures and
    `report.html` (see `src/report.py`).

    Args:
        config: The run's settings.
        data_dir: Folder holding `train.csv` and `test.csv`.
        out_path: The submission file to write.
        datasets_override: Datasets to use instead of reading `data_dir`
            (already loaded, or built in memory by a test).
        verbose: 0 silent, 1 progress bars, 2 a line per epoch.
        report: Draw the figures and `report.html`; False saves only the arrays.
    """
    check_submission_path(out_path)
    datasets = load_datasets(data_dir) if datasets_override is None else datasets_override
    check_labels(datasets.train_labels, config.folds, Path(data_dir) / "train.csv")
    inputs = datasets.inputs or {"train": {"rows": len(datasets.train_labels)}}
    timings = {"load": datasets.load_seconds}

    started = time.perf_counter()
    training = train(config, datasets.train_images, datasets.train_labels, verbose=verbose)
    timings["train"] = time.perf_counter() - started

    started = time.perf_counter()
    test_probabilities = predict_probabilities(training.models, as_features(datasets.test_images, config.scaling))
    timings["predict"] = time.perf_counter() - started

    # Everything the record needs comes first, so the submission and its record are replaced back to back.
    predicted = training.validation_probabilities().argmax(axis=1)
    per_class = per_class_scores(datasets.train_labels[training.validation_rows()], predicted)
    run_dir = create_run_dir(Path(out_path).parent / RUNS_FOLDER, config.short_name())
    started = time.perf_counter()
    submission_path = write_submission(predict_labels(test_probabilities), out_path)
    timings["write"] = time.perf_counter() - started
    record = build_record(config, inputs, training, datasets.train_labels, timings, submission_path)
    record.update(per_class=per_class, run_dir=str(run_dir))
    record_path = write_json(record_path_for(submission_path), record)

    save_run(run_dir, run_arrays(training, datasets, test_probabilities), record, submission_path)
    report_path = make_report(run_dir) if report else None
    return RunResult(submission_path, record_path, record, training, test_probabilities, run_dir, report_path)


def run_arrays(training: TrainingResult, datasets: Datasets, test_probabilities: np.ndarray) -> dict:
    """The arrays a run folder keeps, to draw the report from (see `src.runs`)."""
    return collect_run_arrays(
        training.validation_rows(),
        training.validation_probabilities(),
        training.validation_members(),
        [member.history for member in training.members],
        datasets.train_images,
        datasets.train_labels,
        datasets.test_images,
        test_probabilities,
    )
