"""The per-run folder: a unique name, and the arrays its report is rebuilt from.

A run folder holds the run's submission and record, and everything the figures
need, as `.npy` and `.json` files, so they can be redrawn without TensorFlow:

    submission.csv, record.json        copies of what `--out` got
    validation_rows.npy                rows of train.csv that were held out
    validation_labels.npy              their true digits
    validation_probabilities.npy       softmax on them (out-of-fold for --folds)
    validation_members.npy             which member (fold) predicted each row
    histories.json                     per-member, per-epoch loss and accuracy
    test_probabilities.npy             the ensemble's softmax on test.csv
    train_labels.npy                   every training digit (class balance)
    mistake_positions.npy, mistake_images.npy
                                       the most confident validation mistakes
    gallery_rows.npy, gallery_images.npy
                                       a fixed sample of test images
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import UserError
from .files import write_json

RUNS_FOLDER = "runs"
RUN_RECORD_NAME = "record.json"
RUN_SUBMISSION_NAME = "submission.csv"
HISTORIES_NAME = "histories.json"
RUN_ARRAY_NAMES = (
    "validation_rows",
    "validation_labels",
    "validation_probabilities",
    "validation_members",
    "test_probabilities",
    "train_labels",
    "mistake_positions",
    "mistake_images",
    "gallery_rows",
    "gallery_images",
)
# Enough digits to see a pattern in the failures, few enough to stay legible.
MISTAKES_KEPT = 24
GALLERY_SIZE = 24
GALLERY_SEED = 0


@dataclass
class RunArrays:
    """What a run's report is drawn from; see the module docstring for the files."""

    validation_rows: np.ndarray
    validation_labels: np.ndarray
    validation_probabilities: np.ndarray
    validation_members: np.ndarray
    histories: list[dict[str, list[float]]]
    test_probabilities: np.ndarray
    train_labels: np.ndarray
    mistake_positions: np.ndarray
    mistake_images: np.ndarray
    gallery_rows: np.ndarray
    gallery_images: np.ndarray


def confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, count: int = MISTAKES_KEPT) -> np.ndarray:
    """Positions of the wrongly predicted rows, most confident first (at most `count`)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    # A stable sort keeps ties in row order, so the choice is reproducible.
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def gallery_sample(n_test: int, count: int = GALLERY_SIZE, seed: int = GALLERY_SEED) -> np.ndarray:
    """A fixed random sample of test rows, in ascending order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_test, size=min(count, n_test), replace=False))


def collect_run_arrays(
    validation_rows: np.ndarray,
    validation_probabilities: np.ndarray,
    validation_members: np.ndarray,
    histories: list[dict[str, list[float]]],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_probabilities: np.ndarray,
) -> RunArrays:
    """Gather a run's arrays, keeping only the few images the figures show."""
    validation_labels = train_labels[validation_rows]
    mistake_positions = confident_mistakes(validation_probabilities, validation_labels)
    gallery_rows = gallery_sample(len(test_images))
    return RunArrays(
        validation_rows=np.asarray(validation_rows, dtype=np.int64),
        validation_labels=np.asarray(validation_labels, dtype=np.int64),
        validation_probabilities=np.asarray(validation_probabilities, dtype=np.float32),
        validation_members=np.asarray(validation_members, dtype=np.int64),
        histories=[{key: [float(value) for value in values] for key, values in h.items()} for h in histories],
        test_probabilities=np.asarray(test_probabilities, dtype=np.float32),
        train_labels=np.asarray(train_labels, dtype=np.uint8),
        mistake_positions=mistake_positions.astype(np.int64),
        mistake_images=np.asarray(train_images[validation_rows[mistake_positions]], dtype=np.uint8),
        gallery_rows=gallery_rows.astype(np.int64),
        gallery_images=np.asarray(test_images[gallery_rows], dtype=np.uint8),
    )


def create_run_dir(parent: str | Path, short_name: str) -> Path:
    """Make a new, empty `parent/<UTC timestamp>-<short_name>` folder.

    Two runs started in the same second get `-2`, `-3`, ... suffixes; `mkdir`
    without `exist_ok` makes the claim atomic, even across processes.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{short_name}"
    for attempt in range(1, 1000):
        run_dir = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        return run_dir
    raise UserError(f"{parent}: could not create a new run folder named {stem}-N")


def save_run(run_dir: str | Path, arrays: RunArrays, record: dict, submission_path: str | Path) -> Path:
    """Write the arrays, the record and a copy of the submission into `run_dir`."""
    run_dir = Path(run_dir)
    for name in RUN_ARRAY_NAMES:
        np.save(run_dir / f"{name}.npy", getattr(arrays, name), allow_pickle=False)
    (run_dir / HISTORIES_NAME).write_text(json.dumps(arrays.histories) + "\n")
    shutil.copyfile(submission_path, run_dir / RUN_SUBMISSION_NAME)
    write_json(run_dir / RUN_RECORD_NAME, record)
    return run_dir


def load_run(run_dir: str | Path) -> tuple[RunArrays, dict]:
    """Read back what `save_run` wrote: `(arrays, record)`; a `UserError` names a missing file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a folder; expected a run folder such as submissions/runs/<name>")
    needed = [f"{name}.npy" for name in RUN_ARRAY_NAMES] + [HISTORIES_NAME, RUN_RECORD_NAME]
    missing = [name for name in needed if not (run_dir / name).is_file()]
    if missing:
        raise UserError(f"{run_dir}: not a complete run folder; missing {', '.join(missing)}")
    try:
        values = {name: np.load(run_dir / f"{name}.npy", allow_pickle=False) for name in RUN_ARRAY_NAMES}
        histories = json.loads((run_dir / HISTORIES_NAME).read_text())
    except (ValueError, OSError) as error:
        raise UserError(f"{run_dir}: unreadable run file: {error}") from None
    return RunArrays(histories=histories, **values), read_run_record(run_dir)


def read_run_record(run_dir: str | Path) -> dict:
    """A run folder's `record.json`, checked for what the report reads from it."""
    path = Path(run_dir) / RUN_RECORD_NAME
    if not path.is_file():
        raise UserError(f"{run_dir}: no {RUN_RECORD_NAME}; expected a run folder such as submissions/runs/<name>")
    try:
        record = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise UserError(f"{path}: unreadable: {error}") from None
    sections = {"config": dict, "validation": dict, "timings": dict}
    for key, kind in sections.items():
        if not isinstance(record, dict) or not isinstance(record.get(key), kind):
            raise UserError(f"{path}: not a run record; expected a JSON object with {', '.join(sections)}")
    if not {"scheme", "accuracy"} <= record["validation"].keys():
        raise UserError(f"{path}: not a run record; its validation lacks scheme and accuracy")
    return record
