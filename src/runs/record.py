"""The run record: what a submission came from, as one typed dataclass and its JSON file.

`RunRecord.to_json` writes it; `RunRecord.from_json` reads it back, and reading
is checking: a missing key or a value of the wrong type is a one-line
`UserError` that names the file and the key, so nothing that reads a record
(the report, `--compare`, the closing summary, the benchmark) trips on one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import shlex
import sys
import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from src.core.config import Config, stored_settings
from src.core.errors import UserError
from src.core.files import write_json
from src.core.paths import record_path_for
from src.core.readers import read_json
from src.training.evaluation import CLASS_NAMES, ClassScores

PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn")
# Where the training and test rows came from.
SOURCE_FILES = "files"
SOURCE_SAMPLE = "sample"
SOURCE_ARRAYS = "arrays"
SOURCES = (SOURCE_FILES, SOURCE_SAMPLE, SOURCE_ARRAYS)


@dataclass(frozen=True)
class InputFile:
    """One of the CSV files read; `path` is None for the embedded sample (its folder is gone)."""

    rows: int
    sha256: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Inputs:
    """The data a run trained and predicted on."""

    source: str
    train: InputFile
    test: InputFile
    # The embedded sample is scikit-learn's digits, shuffled and split with this seed.
    sample_seed: int | None = None

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")

    def describe(self) -> str:
        """E.g. `files data/ (42000+28000 rows)` or `sample seed 0 (1500+297 rows)`."""
        rows = f"({self.train.rows}+{self.test.rows} rows)"
        if self.source == SOURCE_FILES and self.train.path:
            return f"files {Path(self.train.path).parent}/ {rows}"
        if self.source == SOURCE_SAMPLE:
            return f"sample seed {self.sample_seed} {rows}"
        return f"{self.source} {rows}"

    def paths(self) -> list[Path]:
        """The CSV files read, where they were files: what a later command must never write over."""
        return [Path(file.path) for file in (self.train, self.test) if file.path]

    def short_name(self) -> str:
        """For run-folder names: `sample1500` or `train42000`."""
        return f"{'sample' if self.source == SOURCE_SAMPLE else 'train'}{self.train.rows}"


@dataclass(frozen=True)
class MemberScore:
    """One trained model: its held-out rows, its accuracy on them, and its training time."""

    validation_rows: int
    validation_accuracy: float | None
    seconds: float
    # The epoch whose weights it kept (`keep_best` or early stopping); None: its last.
    best_epoch: int | None = None


# How a summary says that a run held no row out (`--validation-split 0`).
NO_VALIDATION = "no validation (trained on every row)"


@dataclass(frozen=True)
class Validation:
    """How the run scored on rows it never trained on (out-of-fold for folds, out-of-bag for a bag, or the
    whole bag on its holdout with `bag_holdout`).

    `accuracy` is None, and `per_class` empty, when no row was held out (`--validation-split 0`).

    `members_trained_together`: the members were trained at once, in one
    compiled loop, so each member's `seconds` is that loop's shared time, not
    its own. `tta_accuracy`: with test-time augmentation, the accuracy on the
    same rows with it, counted the same way (`accuracy` is without); None when
    the run did not use it.
    """

    scheme: str
    accuracy: float | None
    members: list[MemberScore]
    members_trained_together: bool
    per_class: dict[str, ClassScores]
    tta_accuracy: float | None = None

    def __post_init__(self):
        missing = [name for name in CLASS_NAMES if name not in self.per_class and self.accuracy is not None]
        if missing:
            raise ValueError(f"per_class lacks {', '.join(missing)}")
        if not self.members:
            raise ValueError("members is empty")


@dataclass(frozen=True)
class Timings:
    """Seconds per stage; `total` runs from the command's start to the submission and record written."""

    load: float
    train: float
    predict: float
    write: float
    total: float


@dataclass(frozen=True)
class Submission:
    """The submission file the record belongs to; its sha256 tells a mismatched pair."""

    path: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class KaggleSubmission:
    """Kaggle's answer to the submission of this run's file (see src/kaggle/scores.py), the latest one."""

    ref: int | None
    message: str
    status: str  # "pending", "complete" or "error"
    public_score: float | None
    error: str = ""  # Kaggle's reason for an "error"


@dataclass(frozen=True)
class SearchTrial:
    """The search this run was a trial of (`python -m src.search`): its Optuna study and trial number."""

    study: str
    trial: int
    # A rerun of the study's best trial on another seed (`--confirm`), not a trial of its own.
    confirmation: bool = False


# The run record's format; each `Setting.since` is at most this.
RECORD_SCHEMA = 8


@dataclass(frozen=True)
class RunRecord:
    """Everything needed to tell how a submission was made."""

    created: str
    command: str
    config: Config
    versions: dict[str, str]
    inputs: Inputs
    validation: Validation
    timings: Timings
    submission: Submission
    run_dir: str | None = None
    # Parameters of each member's network (None in records written before it was kept).
    parameters: int | None = None
    # Multiply-adds of one image's forward pass through one member (None before schema 2 kept it).
    multiply_adds: int | None = None
    # Training images per second in each epoch (every member's at once when trained together, else their mean).
    images_per_second: list[float] | None = None
    # Test images added to the training rows under their first-stage labels (`--pseudo-label`); None without.
    pseudo_labels: int | None = None
    kaggle: KaggleSubmission | None = None  # added when the file is submitted
    # Only a search's trials have it; other records leave the key out, and read as before.
    search: SearchTrial | None = None
    # What a Kaggle kernel found it ran on (src.pipeline.kernel_entry.describe_machine); None elsewhere.
    machine: dict[str, object] | None = None
    # Records before schema 2 said no version; they may lack the settings added since (`Setting.since`).
    schema: int = RECORD_SCHEMA

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["config"] = self.config.to_dict()
        if self.search is None:
            del values["search"]
        return values

    def to_json(self, path: str | Path) -> Path:
        """Write the record as indented JSON, atomically."""
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, values, where: str = "record") -> RunRecord:
        """Check `values` (parsed JSON) and build the record; a `UserError` names `where` and the key.

        A setting the record's schema predates is filled in with its default, which is how
        that run trained; any other missing setting is an error, never today's default.
        """
        if isinstance(values, dict):
            schema = values.get("schema", 1)
            _expect(isinstance(schema, int) and not isinstance(schema, bool), "an integer", schema, where, "schema")
            if schema > RECORD_SCHEMA:
                raise UserError(f"{where}: record schema {schema} is newer than this package's ({RECORD_SCHEMA})")
            values = {**values, "schema": schema}
            if "config" in values:
                values["config"] = stored_settings(values["config"], schema)
        return _build(cls, values, where, "")

    @classmethod
    def from_json(cls, path: str | Path) -> RunRecord:
        path = Path(path)
        return cls.from_dict(read_json(path, "run record", expect=object), str(path))


def recorded_accuracy(values: dict) -> float | None:
    """The local accuracy a parsed record gives: a run's validation accuracy, or a blend's; None without one."""
    validation = values.get("validation")
    accuracy = validation.get("accuracy") if isinstance(validation, dict) else values.get("validation_accuracy")
    return float(accuracy) if isinstance(accuracy, int | float) and not isinstance(accuracy, bool) else None


def previous_submission(submission: str | Path) -> tuple[float | None, str] | None:
    """What the submission at `submission` was, from its record: `(local accuracy, run name)`; None without one."""
    try:
        values = read_json(record_path_for(Path(submission)), "run record")
    except UserError:
        return None  # no record, or one the new run replaces anyway
    sources = values.get("sources")
    named = values.get("run_dir") or (sources[0].get("run_dir") if isinstance(sources, list) and sources else None)
    return recorded_accuracy(values), Path(str(named or "unknown")).name


LOW_ACCURACY = 0.5  # below it a run learned next to nothing (chance is 0.1)
RAW_PIXELS_ROWS = 5000  # under it, unscaled 0..255 pixels rarely train in a few epochs
# Batch norm predicts with running averages over about the last 100 steps (Keras' momentum 0.99): in
# far fewer steps they keep much of their starting values (80 steps: 45%; `cnn-fast --sample` 0.27).
BATCH_NORM_STEPS = 1000


def low_accuracy_line(accuracy: float | None, config: Config, rows: int) -> str:
    """A warning when a held-out `accuracy` on `rows` labelled rows is below `LOW_ACCURACY`, with the likely
    cause where known; else nothing."""
    if accuracy is None or accuracy >= LOW_ACCURACY:
        return ""
    cause = "check the data, --learning-rate and --epochs"
    # Every row counted, held-out ones too: an upper bound, which is all the hint needs.
    steps = math.ceil(rows / config.batch_size) * config.epochs
    if config.family == "cnn" and config.batch_norm and steps < BATCH_NORM_STEPS:
        cause = (
            f"batch norm's running averages settle over hundreds of steps, and {rows} rows made at most {steps}: "
            "train on more rows or --epochs, or add --no-batch-norm"
        )
    if config.scaling == "none" and rows < RAW_PIXELS_ROWS:
        cause = f"raw pixels (--scaling none) on {rows} rows rarely train: add --scaling unit"
    return f"warning: validation accuracy {accuracy:.4f} is below {LOW_ACCURACY}: the network barely learned; {cause}"


def replaced_line(submission: str | Path, previous: tuple[float | None, str] | None, accuracy: float | None) -> str:
    """E.g. `replaced submissions/submission.csv: was 0.9449 (run <name>), now 0.9602`; empty without a previous one."""
    if previous is None:
        return ""
    was, name = previous

    def shown(value):
        return "no local accuracy" if value is None else f"{value:.4f}"

    return f"replaced {submission}: was {shown(was)} (run {name}), now {shown(accuracy)}"


def command_line() -> str:
    """How this process was started, e.g. `python -m src.submit --folds 5` or `python -m src.kaggle fan-out`."""
    program = Path(sys.argv[0])
    package = Path(__file__).resolve().parents[1]  # src/
    if program.suffix == ".py" and program.resolve().is_relative_to(package):
        module = [package.name, *program.resolve().relative_to(package).with_suffix("").parts]
        start = f"python -m {'.'.join(part for part in module if part != '__main__')}"
    else:
        start = f"python {program.name}"
    return " ".join([start, *map(shlex.quote, sys.argv[1:])])


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def created_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _build(kind, value, where: str, key: str):
    """`value` as `kind` (a dataclass, list[...], dict[str, ...], X | None or a plain type), checked."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        (kind,) = [argument for argument in arguments if argument is not type(None)]
        return _build(kind, value, where, key)
    if dataclasses.is_dataclass(kind):
        return _build_dataclass(kind, value, where, key)
    if origin is list:
        _expect(isinstance(value, list), "a list", value, where, key)
        return [_build(arguments[0], item, where, f"{key}[{index}]") for index, item in enumerate(value)]
    if origin is tuple:
        _expect(isinstance(value, list), "a list", value, where, key)
        return tuple(_build(arguments[0], item, where, f"{key}[{index}]") for index, item in enumerate(value))
    if origin is dict:
        _expect(isinstance(value, dict), "an object", value, where, key)
        return {name: _build(arguments[1], item, where, f"{key}.{name}") for name, item in value.items()}
    if kind is bool:
        _expect(isinstance(value, bool), "true or false", value, where, key)
    elif kind is int:
        _expect(isinstance(value, int) and not isinstance(value, bool), "an integer", value, where, key)
    elif kind is float:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        _expect(is_number and math.isfinite(value), "a finite number", value, where, key)
        return float(value)
    elif kind is str:
        _expect(isinstance(value, str), "a string", value, where, key)
    return value


def _build_dataclass(kind, value, where: str, key: str):
    _expect(isinstance(value, dict), "an object", value, where, key or "the record")
    hints = typing.get_type_hints(kind)
    fields = {declared.name: declared for declared in dataclasses.fields(kind)}
    prefix = f"{key}." if key else ""
    for name, declared in fields.items():
        has_default = declared.default is not dataclasses.MISSING or declared.default_factory is not dataclasses.MISSING
        # A setting is never filled in from today's default here: that would misreport the run
        # (`RunRecord.from_dict` fills in only those the record's schema predates).
        if name not in value and (kind is Config or not has_default):
            raise UserError(f"{where}: not a run record: {prefix}{name} is missing")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise UserError(f"{where}: not a run record: unknown key {prefix}{unknown[0]}")
    arguments = {name: _build(hints[name], item, where, f"{prefix}{name}") for name, item in value.items()}
    try:
        return kind(**arguments)
    except (UserError, ValueError, TypeError) as error:
        raise UserError(f"{where}: not a run record: {key or 'the record'}: {_short(error)}") from None


def _expect(condition: bool, wanted: str, value, where: str, key: str) -> None:
    if not condition:
        raise UserError(f"{where}: not a run record: {key} should be {wanted}, not {_short(json.dumps(value))}")


def _short(error, limit: int = 80) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# How a derived submission (made without training) came about.
DERIVED_PREDICT = "predict"
DERIVED_BLEND = "blend"
DERIVED_KINDS = (DERIVED_PREDICT, DERIVED_BLEND)


@dataclass(frozen=True)
class SourceRun:
    """A run folder a derived submission was made from.

    `validation_accuracy` is the run's own (from its record; None when it held
    out no rows); `weight` its share of the blend (1.0 for `predict`);
    `shared_rows_accuracy` its accuracy on the held-out rows every blended run
    shares, None when there are none.
    """

    run_dir: str
    validation_accuracy: float | None
    weight: float = 1.0
    shared_rows_accuracy: float | None = None


@dataclass(frozen=True)
class DerivedRecord:
    """The record of a submission made from earlier runs without training.

    `python -m src.predict` (kind `predict`) predicts a test file with one run's
    saved models, `python -m src.blend` (kind `blend`) averages several runs'
    test probabilities. `test` is the test file predicted (sha256 and rows);
    `tta`, whether predictions were averaged over test-time shifts;
    `validation_accuracy`, a blend's accuracy on the `validation_rows` held-out
    rows its runs share (None, 0 rows: not measurable).
    """

    kind: str
    created: str
    command: str
    versions: dict[str, str]
    test: InputFile
    sources: list[SourceRun]
    submission: Submission
    tta: bool = False
    validation_accuracy: float | None = None
    validation_rows: int = 0

    def __post_init__(self):
        if self.kind not in DERIVED_KINDS:
            raise ValueError(f"kind must be one of {', '.join(DERIVED_KINDS)}, got {self.kind!r}")
        if not self.sources:
            raise ValueError("sources is empty")

    def to_json(self, path: str | Path) -> Path:
        """Write the record as indented JSON, atomically."""
        return write_json(path, dataclasses.asdict(self))

    @classmethod
    def from_json(cls, path: str | Path) -> DerivedRecord:
        path = Path(path)
        return _build(cls, read_json(path, "record", expect=object), str(path), "")
