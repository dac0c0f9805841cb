"""The whole job: read the data, train, predict, write the submission and its record."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.core.config import Config
from src.core.files import sha256
from src.core.interrupts import raise_if_interrupted
from src.data.loading import SAMPLE_SEED, Datasets, as_features, check_labels, load_datasets, train_file_name
from src.data.submission import check_predictions, write_submission
from src.models.registry import check_size, run_name
from src.runs.folders import RunArrays, collect_run_arrays, create_run_dir, save_run, unfinished_on_failure
from src.runs.outputs import pause_point, plan_outputs, prepared_pair
from src.runs.record import (
    SOURCE_ARRAYS,
    SOURCE_FILES,
    SOURCE_SAMPLE,
    InputFile,
    Inputs,
    MemberScore,
    RunRecord,
    SearchTrial,
    Submission,
    Timings,
    Validation,
    command_line,
    created_now,
    package_versions,
)
from src.runs.reporting import make_report
from src.training.evaluation import per_class_scores, predicted_labels
from src.training.hooks import TrainingCallbacks
from src.training.prediction import predict_probabilities, tta_validation_accuracy, uses_tta
from src.training.tensorboard import discarded_on_failure, keep_curves, live_curves_folder, train_with_curves
from src.training.trainer import TrainingResult, memory_refused, validation_scheme


@dataclass
class RunResult:
    submission_path: Path
    record_path: Path
    record: RunRecord
    training: TrainingResult
    test_probabilities: np.ndarray
    run_dir: Path | None = None
    report_path: Path | None = None


def run(
    config: Config,
    data_dir: str | Path,
    out_path: str | Path,
    datasets_override: Datasets | None = None,
    verbose: int = 2,
    report: bool = True,
    sample: bool = False,
    started: float | None = None,
    callbacks: TrainingCallbacks | None = None,
    search: SearchTrial | None = None,
    machine: dict | None = None,
) -> RunResult:
    """Train as `config` says and write `out_path`, its JSON record and a run folder.

    The run folder, `runs/<timestamp>-<config>_<data>/` beside `out_path`,
    keeps a copy of the submission and record and the arrays the report is
    drawn from (see `src/runs/folders.py`), and TensorBoard's curves in
    `tensorboard/member-<i>/` (see `src/training/tensorboard.py`); with `report`,
    also the figures and `report.html` (see `src/runs/reporting.py`).

    Args:
        config: The run's settings.
        data_dir: Folder holding `train.csv` and `test.csv`.
        out_path: The submission file to write.
        datasets_override: Datasets to use instead of reading `data_dir`
            (already loaded, or built in memory by a test).
        verbose: 0 silent, 1 progress bars, 2 a line per epoch.
        report: Draw the figures and `report.html`; False saves only the arrays.
        sample: `data_dir` holds the embedded sample (`src.data.write_sample`),
            a temporary folder the record must not name.
        started: `time.perf_counter()` when the command started, so the
            record's total counts its start-up too; default: now.
        callbacks: Callbacks to add to training (a search's pruning).
        search: The search trial this run is, for its record.
        machine: What a Kaggle kernel ran on, kept in the record.
    """
    started = time.perf_counter() if started is None else started
    datasets = load_datasets(data_dir) if datasets_override is None else datasets_override
    # Every output is checked before training: not an input, a writable file, room for it (see src.runs.outputs).
    inputs_read = [file["path"] for file in datasets.inputs.values()]
    plan = plan_outputs(out_path, inputs_read, test_rows=len(datasets.test_images))
    check_labels(datasets.train_labels, config.folds, train_file_name(data_dir, sample))
    cost = check_size(config)
    timings = {"load": datasets.load_seconds}

    stage_started = time.perf_counter()
    # The curves go beside the run folders while training, so that TensorBoard shows them live; until they
    # move into the run folder, a failure, a signal or running out of memory leaves none of them behind.
    curves = live_curves_folder(plan.runs)
    with discarded_on_failure(curves), memory_refused(config):
        training = train_with_curves(
            config, datasets.train_images, datasets.train_labels, verbose, callbacks, curves, datasets.test_images
        )
        timings["train"] = time.perf_counter() - stage_started

        stage_started = time.perf_counter()
        tta = uses_tta(config)
        test_features = as_features(datasets.test_images, config)
        test_probabilities = predict_probabilities(training.models, test_features, tta)
        timings["predict"] = time.perf_counter() - stage_started
        # A diverged run (NaN probabilities, one class for every image) must not replace a good submission.
        check_predictions(test_probabilities)

        inputs = describe_inputs(datasets, sample)
        validation = score(config, training, datasets.train_labels, timings["train"])
        # With test-time augmentation, the held-out rows are scored with it too, to show what it gains.
        if tta and validation.accuracy is not None:
            features = as_features(datasets.train_images, config)
            tta_accuracy = tta_validation_accuracy(training, features, datasets.train_labels)
            validation = dataclasses.replace(validation, tta_accuracy=tta_accuracy)
        raise_if_interrupted()  # nothing is saved after a Ctrl-C, even one a library swallowed
        run_dir = create_run_dir(plan.runs, f"{run_name(config)}_{inputs.short_name()}")
        keep_curves(curves, run_dir)
    # All or nothing: the new pair is written and checked beside the old one, and the run folder saved,
    # before the pair replaces the old one; any failure or signal until then leaves the old one as it was.
    with prepared_pair(plan) as pair:
        stage_started = time.perf_counter()
        write_submission(predicted_labels(test_probabilities), pair.submission)
        timings["write"] = time.perf_counter() - stage_started
        record = RunRecord(
            created=created_now(),
            command=command_line(),
            config=config,
            versions=package_versions(),
            inputs=inputs,
            validation=validation,
            timings=rounded_timings(timings, total=time.perf_counter() - started),
            submission=Submission(str(plan.submission), sha256(pair.submission), len(test_probabilities)),
            run_dir=str(run_dir),
            parameters=training.parameters,
            multiply_adds=cost.multiply_adds,
            images_per_second=training.images_per_second(),
            pseudo_labels=training.pseudo_labels,
            search=search,
            machine=machine,
        )
        record.to_json(pair.record)
        pause_point("run-folder")
        save_run(run_dir, run_arrays(training, datasets, test_probabilities), record, pair.submission, training.models)
        with unfinished_on_failure(run_dir):
            pause_point("report")
            report_path = make_report(run_dir) if report else None
        pair.swap()
    return RunResult(plan.submission, plan.record, record, training, test_probabilities, run_dir, report_path)


def rounded_timings(timings: dict[str, float], total: float) -> Timings:
    """Milliseconds are as precise as a wall-clock figure gets."""
    return Timings(**{stage: round(seconds, 3) for stage, seconds in {**timings, "total": total}.items()})


def describe_inputs(datasets: Datasets, sample: bool) -> Inputs:
    """Where the rows came from; the embedded sample by its seed, not by its deleted temporary folder."""
    files = datasets.inputs
    if not files:
        rows = InputFile(len(datasets.train_labels)), InputFile(len(datasets.test_images))
        return Inputs(SOURCE_ARRAYS, *rows)
    train_file, test_file = (InputFile(**files[name]) for name in ("train", "test"))
    if sample:
        train_file, test_file = (InputFile(file.rows, file.sha256) for file in (train_file, test_file))
        return Inputs(SOURCE_SAMPLE, train_file, test_file, sample_seed=SAMPLE_SEED)
    return Inputs(SOURCE_FILES, train_file, test_file)


def score(config: Config, training: TrainingResult, labels: np.ndarray, train_seconds: float) -> Validation:
    """The held-out scores of the run and of each member."""
    # The compiled loop trains every member at once: each member's time is the whole stage's, shared.
    together = training.trained_together and len(training.members) > 1
    members = [
        MemberScore(
            validation_rows=len(member.validation_rows),
            validation_accuracy=member.validation_accuracy(labels),
            seconds=round(train_seconds if together else member.seconds, 3),
            best_epoch=member.best_epoch,
        )
        for member in training.members
    ]
    rows, probabilities, _ = training.held_out()
    validation_labels = labels[rows]
    held_out = len(rows) > 0  # none after --validation-split 0
    return Validation(
        scheme=validation_scheme(config),
        # The one held-out accuracy, as `tta_validation_accuracy` counts it too.
        accuracy=training.validation_accuracy(labels),
        members=members,
        members_trained_together=together,
        per_class=per_class_scores(validation_labels, predicted_labels(probabilities)) if held_out else {},
    )


def run_arrays(training: TrainingResult, datasets: Datasets, test_probabilities: np.ndarray) -> RunArrays:
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
