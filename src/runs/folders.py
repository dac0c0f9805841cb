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
    members/member-1.keras, ...        the trained models, to predict again
    members.json                       which model files, with their sha256
    .incomplete                        present until the save has finished

Loading checks every file (shapes, kinds and ranges of the arrays, the
histories, the record), so a damaged folder is a one-line `UserError`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from src.core.config import N_CLASSES, N_PIXELS
from src.core.errors import REASON_CHARS, UserError
from src.core.files import sha256, write_json
from src.core.paths import RUN_RECORD_NAME, RUN_SUBMISSION_NAME
from src.core.readers import UnreadableFile, read_json, read_npy
from src.runs.record import RunRecord
from src.training.evaluation import confident_mistakes

HISTORIES_NAME = "histories.json"
INCOMPLETE_MARKER = ".incomplete"
MEMBERS_FOLDER = "members"
MEMBERS_MANIFEST = "members.json"
# Each array's shape, in named sizes: n held-out rows, m test rows, t training rows,
# k kept mistakes, g gallery images. Every array holds integers but the probabilities.
RUN_ARRAY_SHAPES = {
    "validation_rows": ("n",),
    "validation_labels": ("n",),
    "validation_probabilities": ("n", N_CLASSES),
    "validation_members": ("n",),
    "test_probabilities": ("m", N_CLASSES),
    "train_labels": ("t",),
    "mistake_positions": ("k",),
    "mistake_images": ("k", N_PIXELS),
    "gallery_rows": ("g",),
    "gallery_images": ("g", N_PIXELS),
}
RUN_ARRAY_NAMES = tuple(RUN_ARRAY_SHAPES)
PROBABILITY_ARRAYS = ("validation_probabilities", "test_probabilities")
HISTORY_METRICS = ("loss", "accuracy")
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

    @property
    def mistake_rows(self) -> np.ndarray:
        """The training rows (0-based, as in train.csv after its header) of the kept mistakes."""
        return self.validation_rows[self.mistake_positions]


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
    mistake_positions = confident_mistakes(validation_probabilities, validation_labels, MISTAKES_KEPT)
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
    """Make a new `parent/<UTC timestamp>-<short_name>` folder, marked incomplete until `save_run` ends.

    Two runs started in the same second get `-2`, `-3`, ... suffixes; `mkdir`
    without `exist_ok` makes the claim atomic, even across processes.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{short_name}"
    for attempt in range(1, 1000):
        run_dir = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        (run_dir / INCOMPLETE_MARKER).touch()
        return run_dir
    raise UserError(f"{parent}: could not create a new run folder named {stem}-N")


def save_run(run_dir: str | Path, arrays: RunArrays, record: RunRecord, submission_path: str | Path, models=()) -> Path:
    """Write the arrays, the trained `models` (Keras), the record and a copy of the submission into `run_dir`.

    The folder stays marked incomplete until the last file is written, so an
    interrupted save is never taken for a finished one.
    """
    run_dir = Path(run_dir)
    marker = run_dir / INCOMPLETE_MARKER
    marker.touch()
    for name in RUN_ARRAY_NAMES:
        np.save(run_dir / f"{name}.npy", getattr(arrays, name), allow_pickle=False)
    (run_dir / HISTORIES_NAME).write_text(json.dumps(arrays.histories) + "\n")
    if models:
        save_members(run_dir, models)
    shutil.copyfile(submission_path, run_dir / RUN_SUBMISSION_NAME)
    record.to_json(run_dir / RUN_RECORD_NAME)
    marker.unlink()
    return run_dir


@contextmanager
def unfinished_on_failure(run_dir: str | Path) -> Iterator[None]:
    """Mark a saved `run_dir` incomplete again if the block fails or is interrupted.

    Drawing the report follows the save and is still the run: a Ctrl-C there must not leave
    a folder that looks finished while the old submission stays in place.
    """
    try:
        yield
    except BaseException:
        (Path(run_dir) / INCOMPLETE_MARKER).touch()
        raise


def save_members(run_dir: Path, models) -> list[Path]:
    """Save each Keras model as `members/member-<i>.keras`, and list them with their sha256 in `members.json`."""
    (run_dir / MEMBERS_FOLDER).mkdir(exist_ok=True)
    entries = []
    for index, model in enumerate(models, start=1):
        name = member_file_name(index)
        model.save(run_dir / name)
        entries.append({"file": name, "sha256": sha256(run_dir / name)})
    write_json(run_dir / MEMBERS_MANIFEST, {"members": entries})
    return [run_dir / entry["file"] for entry in entries]


def member_file_name(index: int) -> str:
    """Where member `index` (1-based) is saved, relative to the run folder."""
    return f"{MEMBERS_FOLDER}/member-{index}.keras"


def member_files(run_dir: str | Path) -> list[Path]:
    """The saved models of a finished run folder, each checked against its sha256 in `members.json`.

    Needs no TensorFlow: a missing, altered or truncated file is a one-line
    `UserError` before any model is loaded.
    """
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    manifest = run_dir / MEMBERS_MANIFEST
    if not manifest.is_file():
        raise UserError(f"{run_dir}: no saved models ({MEMBERS_MANIFEST} is missing); train the run again to keep them")
    entries = read_json(manifest, "list of saved models").get("members")
    try:
        files = [(entry["file"], entry["sha256"]) for entry in entries]
    except (KeyError, TypeError) as error:
        raise UserError(f"{manifest}: unreadable list of saved models: {str(error)[:REASON_CHARS]}") from None
    # Only the names save_members gives: a list pointing elsewhere is not this run's.
    expected_names = [member_file_name(index) for index in range(1, len(files) + 1)]
    if [name for name, _ in files] != expected_names:
        raise UserError(f"{manifest}: expected the files {', '.join(expected_names)}")
    files = [(run_dir / name, digest) for name, digest in files]
    if len(files) != len(record.validation.members):
        raise UserError(f"{manifest}: lists {len(files)} models, but the run trained {len(record.validation.members)}")
    for path, expected in files:
        if not path.is_file():
            raise UserError(f"{path}: saved model is missing; the run folder is damaged")
        if sha256(path) != expected:
            raise UserError(f"{path}: saved model is damaged (its sha256 differs from {MEMBERS_MANIFEST}'s)")
    return [path for path, _ in files]


def is_run_dir(path: Path) -> bool:
    return (path / RUN_RECORD_NAME).is_file() or (path / INCOMPLETE_MARKER).exists()


def find_run_dirs(paths: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """The run folders that `paths` name: `(finished, incomplete)`.

    A path that is not a run folder itself but holds some (`submissions/runs`)
    stands for all of them, oldest first; incomplete ones among those are set
    aside. A run folder named directly is always kept, so loading it says what is wrong.
    """
    finished, incomplete = [], []
    for path in map(Path, paths):
        children = sorted(child for child in path.iterdir() if child.is_dir()) if path.is_dir() else []
        runs = [child for child in children if is_run_dir(child)]
        if is_run_dir(path) or not runs:
            finished.append(path)
            continue
        for child in runs:
            (incomplete if (child / INCOMPLETE_MARKER).exists() else finished).append(child)
    return finished, incomplete


def load_run(run_dir: str | Path) -> tuple[RunArrays, RunRecord]:
    """Read back what `save_run` wrote: `(arrays, record)`; anything wrong is a one-line `UserError`."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    needed = [f"{name}.npy" for name in RUN_ARRAY_NAMES] + [HISTORIES_NAME]
    missing = [name for name in needed if not (run_dir / name).is_file()]
    if missing:
        raise UserError(f"{run_dir}: not a complete run folder; missing {', '.join(missing)}")
    values = {name: _load_array(run_dir / f"{name}.npy") for name in RUN_ARRAY_NAMES}
    _check_arrays(run_dir, values, n_members=len(record.validation.members))
    histories = _load_histories(run_dir / HISTORIES_NAME, n_members=len(record.validation.members))
    return RunArrays(histories=histories, **values), record


def read_run_record(run_dir: str | Path) -> RunRecord:
    """A finished run folder's `record.json`, checked."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a folder; expected a run folder such as submissions/runs/<name>")
    if (run_dir / INCOMPLETE_MARKER).exists():
        raise UserError(
            f"{run_dir}: incomplete run folder: its run stopped before its files and report were all written; "
            "delete it or run again"
        )
    if not (run_dir / RUN_RECORD_NAME).is_file():
        raise UserError(f"{run_dir}: no {RUN_RECORD_NAME}; expected a run folder such as submissions/runs/<name>")
    return RunRecord.from_json(run_dir / RUN_RECORD_NAME)


def _load_array(path: Path) -> np.ndarray:
    # Shape and kind are `_check_arrays`' to name; the header's size is checked here, before any allocation.
    try:
        return read_npy(path, shape=None, kinds=None)
    except UnreadableFile as error:
        raise UserError(f"{path}: unreadable array ({path.stat().st_size} bytes): {error.reason}") from None


def _check_arrays(run_dir: Path, values: dict[str, np.ndarray], n_members: int) -> None:
    """Every array has its declared shape and kind, the sizes agree, and every index is in range."""
    sizes = {}
    for name, shape in RUN_ARRAY_SHAPES.items():
        array = values[name]
        kinds, wanted = ("f", "floats") if name in PROBABILITY_ARRAYS else ("iu", "integers")
        if array.ndim != len(shape) or array.dtype.kind not in kinds:
            expected = ", ".join(map(str, shape))
            raise UserError(
                f"{run_dir / name}.npy: expected {wanted} of shape ({expected}), got {array.dtype} {list(array.shape)}"
            )
        for size, actual in zip(shape, array.shape, strict=True):
            if sizes.setdefault(size, actual if isinstance(size, str) else size) != actual:
                raise UserError(f"{run_dir / name}.npy: shape {list(array.shape)} does not fit the other arrays' sizes")
    for name in PROBABILITY_ARRAYS:
        if not np.isfinite(values[name]).all():
            raise UserError(f"{run_dir / name}.npy: holds non-finite probabilities")
    bounds = {
        "validation_rows": sizes["t"],
        "validation_labels": N_CLASSES,
        "validation_members": n_members,
        "train_labels": N_CLASSES,
        "mistake_positions": sizes["n"],
        "gallery_rows": sizes["m"],
    }
    for name, bound in bounds.items():
        array = values[name]
        if array.size and (array.min() < 0 or array.max() >= bound):
            raise UserError(
                f"{run_dir / name}.npy: values must be in 0..{bound - 1}, found {array.min()}..{array.max()}"
            )


def _load_histories(path: Path, n_members: int) -> list[dict[str, list[float]]]:
    """`histories.json`: one `{metric: [value per epoch]}` per member, every list the same length."""
    try:
        histories = read_json(path, "list of histories", expect=list)
    except UnreadableFile as error:
        raise UserError(f"{path}: unreadable: {error.reason}") from None
    if len(histories) != n_members:
        raise UserError(f"{path}: expected a list of {n_members} member histories")
    for index, history in enumerate(histories):
        if not isinstance(history, dict) or not set(HISTORY_METRICS) <= history.keys():
            raise UserError(f"{path}: member {index + 1} lacks {' and '.join(HISTORY_METRICS)}")
        lengths = set()
        for metric, values in history.items():
            numbers = isinstance(values, list) and all(
                isinstance(value, int | float) and not isinstance(value, bool) for value in values
            )
            if not numbers or not values:
                raise UserError(f"{path}: member {index + 1}'s {metric} is not a list of numbers")
            lengths.add(len(values))
        if len(lengths) > 1:
            raise UserError(f"{path}: member {index + 1}'s metrics have different numbers of epochs")
    return histories
