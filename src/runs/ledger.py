"""The ledger: one CSV row per submission sent to Kaggle, its local accuracy beside its public score.

`submissions/ledger.csv` (or DIGIT_RECOGNIZER_LEDGER) has the columns of
`COLUMNS`; every change rewrites it atomically. A row keeps what it needs to
print (settings, local accuracy), so it still prints when its file or run
folder is deleted.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.core.cli import shorten
from src.core.errors import UserError
from src.core.files import atomic_write, locked, sha256
from src.core.paths import RUN_RECORD_NAME, RUN_SUBMISSION_NAME, RUNS_FOLDER, record_path_for
from src.core.readers import read_json

if TYPE_CHECKING:  # for the types only: the client module loads pandas, half a second the ledger does not need
    from src.kaggle import client

LEDGER_VARIABLE = "DIGIT_RECOGNIZER_LEDGER"
DEFAULT_LEDGER = Path("submissions/ledger.csv")
UNKNOWN_RUN = "unknown"  # the settings of a submission made elsewhere (the website, another machine)
# The cells read as numbers, and as what; an empty one stands for what is not known.
NUMBER_CELLS = {"local_accuracy": float, "public_score": float, "kaggle_ref": int}
SHOWN_CELL_CHARS = 30  # of a bad cell, in its error message


@dataclass
class Row:
    """One submission. Empty strings stand for what is not known."""

    time_utc: str
    file: str
    sha256: str
    run_folder: str
    settings: str
    validation: str  # "holdout" or "stratified K-fold": what local_accuracy was measured on
    local_accuracy: str
    kaggle_ref: str
    message: str
    status: str  # "pending", "complete" or "error"
    public_score: str


COLUMNS = tuple(field.name for field in fields(Row))


def ledger_path() -> Path:
    """Where the ledger is: DIGIT_RECOGNIZER_LEDGER, else submissions/ledger.csv."""
    return Path(os.environ.get(LEDGER_VARIABLE) or DEFAULT_LEDGER)


def read_ledger(path: str | Path) -> list[Row]:
    """The ledger's rows; none when there is no ledger yet."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            reader = csv.reader(stream)
            if tuple(next(reader, ())) != COLUMNS:
                raise UserError(f"{path}: line 1: not a ledger; expected the header {','.join(COLUMNS)}")
            rows = [_row_of(cells, f"{path}: line {reader.line_num}") for cells in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problem = f"unreadable ledger ({type(error).__name__})"
        raise UserError(f"{path}: {problem}; move it aside to start a new one") from None
    return rows


def _row_of(cells: list[str], where: str) -> Row:
    if len(cells) != len(COLUMNS):
        raise UserError(f"{where}: {len(cells)} cells, expected {len(COLUMNS)}; correct it or move the ledger aside")
    row = Row(*cells)
    check_numbers(row, where)
    return row


def check_numbers(row: Row, where: str) -> None:
    """Refuse a row whose number cells (`NUMBER_CELLS`) hold anything but a finite number or nothing."""
    for name, kind in NUMBER_CELLS.items():
        text = getattr(row, name)
        if text and not _is_number(text, kind):
            shown = text if len(text) <= SHOWN_CELL_CHARS else text[:SHOWN_CELL_CHARS] + "..."
            number = "a whole number" if kind is int else "a number"
            raise UserError(f"{where}: column {name}: {shown!r} is not {number}; correct it or move the ledger aside")


def _is_number(text: str, kind: type) -> bool:
    try:
        return math.isfinite(kind(text))
    except ValueError:
        return False


def write_ledger(path: str | Path, rows: list[Row]) -> None:
    """Rewrite the whole ledger atomically: a reader sees the old rows or the new ones."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    # Not `asdict`, which deep-copies every row: a 10,000-row ledger is rewritten on each upload.
    writer.writerows([getattr(row, name) for name in COLUMNS] for row in rows)
    atomic_write(path, lambda temporary: temporary.write_text(text.getvalue(), encoding="utf-8"))


FIGURE_NAME = "ledger.png"
TABLE_COLUMNS = ("ref", "submitted (UTC)", "settings", "local", "public", "status", "message")
MESSAGE_WIDTH = 40  # characters of a message shown in the table
LABELLED_POINTS = 20  # of the figure's points, the newest, labelled with their ref and settings
FIGURE_DPI = 120
# The grid points are merged on: finer than the figure's 720 pixels a side, so no merged pair is told apart.
PIXEL_CELLS = 1440


def format_table(rows: list[Row]) -> str:
    """The ledger as an aligned text table, oldest first."""
    # Each folder looked up once: thousands of rows share a few run folders.
    gone = {folder for folder in {row.run_folder for row in rows} if folder and not Path(folder).is_dir()}
    cells = [TABLE_COLUMNS] + [
        (
            row.kaggle_ref or "-",
            row.time_utc.replace("T", " ")[:16] or "-",
            row.settings + (" (run folder gone)" if row.run_folder in gone else ""),
            f"{float(row.local_accuracy):.4f}" if row.local_accuracy else "-",
            row.public_score or "-",
            row.status or "-",
            shorten(row.message, MESSAGE_WIDTH),
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in cells) for column in range(len(TABLE_COLUMNS))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells)
    return "\n".join(line.rstrip() for line in lines)


def draw(rows: list[Row], figure_path: Path) -> int:
    """Plot local accuracy against public score, with y = x; the number of submissions plotted.

    Drawn for speed on a 10,000-row ledger: one marker line (not a scatter of
    separately styled points), points that would land on the same pixel drawn
    once, a fixed layout and no pyplot.
    """
    from matplotlib.figure import Figure

    from src.runs.reporting import save_figure

    points = [row for row in rows if row.local_accuracy and row.public_score]
    local = np.array([row.local_accuracy for row in points], dtype=float)
    public = np.array([row.public_score for row in points], dtype=float)
    low, high = axis_limits(local, public)
    figure = Figure(figsize=(6, 6), dpi=FIGURE_DPI)
    figure.subplots_adjust(left=0.14, right=0.96, bottom=0.1, top=0.93)
    axes = figure.subplots()
    axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="public = local")
    shown_x, shown_y = one_per_pixel(local, public, low, high)
    axes.plot(shown_x, shown_y, linestyle="none", marker="o", color="tab:blue", zorder=3, label="a submission")
    # Only the newest are labelled: thousands of labels take minutes to lay out and hide every point.
    newest = range(max(0, len(points) - LABELLED_POINTS), len(points))
    for index in newest:
        label = f"{points[index].kaggle_ref} {points[index].settings}"
        axes.annotate(label, (local[index], public[index]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set(
        xlim=(low, high),
        ylim=(low, high),
        xlabel="local accuracy (validation or out-of-fold)",
        ylabel="Kaggle public score",
        title="Does validation track the leaderboard?",
    )
    axes.set_aspect("equal")
    # A fixed corner: "best" weighs every point against every corner, a tenth of a second at 10,000 points.
    axes.legend(loc="upper left")
    save_figure(figure, figure_path)
    return len(points)


def one_per_pixel(x: np.ndarray, y: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """The points with those that fall on the same pixel of the figure kept once (a marker is several pixels)."""
    span = high - low
    # Points far outside the axes (a hand-edited cell) are clipped first, so the scaling cannot overflow;
    # they stay outside the grid, never merged with a point that shows.
    inside = np.clip(np.column_stack((x, y)), low - span, high + span)
    cells = np.round((inside - low) / span * PIXEL_CELLS)
    _, first = np.unique(cells, axis=0, return_index=True)
    kept = np.sort(first)
    return x[kept], y[kept]


def axis_limits(*values: np.ndarray) -> tuple[float, float]:
    """Both axes' range: the values with a margin; 0..1 when a hand-edited cell makes the span absurd."""
    low, high = min(float(part.min()) for part in values), max(float(part.max()) for part in values)
    margin = max(0.005, (high - low) * 0.08)  # room for the points at the edges and their labels
    if not math.isfinite(margin) or margin > 1:
        return 0.0, 1.0
    return low - margin, high + margin


def best_row(rows: list[Row]) -> Row | None:
    """The row with the highest public score among those with a local accuracy too; None when there is none."""
    scored = [row for row in rows if row.public_score and row.local_accuracy]
    return max(scored, key=lambda row: float(row.public_score), default=None)


def records_of(submission_path: str | Path) -> list[Path]:
    """The run records that describe this submission file: the one beside it and its run folder's.

    A record counts only when it is the file's: the sha256 it names is the
    file's (or, for a record without one, its run folder's copy has the same bytes).
    """
    submission_path = Path(submission_path)
    beside = record_path_for(submission_path)
    record = _read_object(beside)
    if record is None:
        return []
    digest = sha256(submission_path)
    named = record.get("submission")
    if isinstance(named, dict) and named.get("sha256") not in (None, digest):
        return []
    run_dir = _run_folder(record, submission_path)
    if run_dir is None:
        return [beside]
    copy = run_dir / RUN_SUBMISSION_NAME
    if copy.is_file() and sha256(copy) != digest:
        return []
    return [beside, run_dir / RUN_RECORD_NAME]


def new_row(submission_path: str | Path, result: client.SubmitResult, message: str) -> Row:
    """The row of a submission just sent, with what its record says about the run."""
    records = records_of(submission_path)
    record = _read_object(records[0]) if records else None
    run_dir = _run_folder(record, Path(submission_path)) if record else None
    validation = record.get("validation", {}) if record else {}
    accuracy = validation.get("accuracy") if isinstance(validation, dict) else None
    return Row(
        time_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        file=str(submission_path),
        sha256=sha256(submission_path),
        run_folder=str(run_dir or ""),
        settings=_settings_name(record, run_dir) if record else UNKNOWN_RUN,
        validation=str(validation.get("scheme", "")) if isinstance(validation, dict) else "",
        local_accuracy=f"{accuracy:.6f}" if isinstance(accuracy, float) else "",
        kaggle_ref=str(result.ref or ""),
        message=message,
        status="pending",
        public_score="",
    )


def append_row(row: Row, path: str | Path | None = None) -> None:
    """Add `row` at the end; under the ledger's lock, so concurrent uploads keep every row."""
    path = path or ledger_path()
    with locked(path):
        write_ledger(path, [*read_ledger(path), row])


def update_row(ref: int, status: str, public_score: float | None, path: str | Path | None = None) -> None:
    """Set the status and public score of the row of submission `ref`, under the ledger's lock."""
    path = path or ledger_path()
    with locked(path):
        rows = read_ledger(path)
        for row in rows:
            if row.kaggle_ref == str(ref):
                row.status, row.public_score = status, _score_text(public_score)
        write_ledger(path, rows)


def merge_into_ledger(path: str | Path, submissions: list[client.Submission]) -> tuple[list[Row], list[Row], int]:
    """`merge_submissions` on the ledger at `path`, saved when anything changed, under its lock."""
    with locked(path):
        rows, changed, added = merge_submissions(read_ledger(path), submissions)
        if changed or added:
            write_ledger(path, rows)
    return rows, changed, added


def merge_submissions(rows: list[Row], submissions: list[client.Submission]) -> tuple[list[Row], list[Row], int]:
    """Rows updated from Kaggle's list; its submissions missing from the ledger added as unknown runs.

    Returns:
        `(rows, changed, added)`: every row, oldest first; the rows whose status or score changed;
        the number of rows added.
    """
    by_ref = {row.kaggle_ref: row for row in rows if row.kaggle_ref}
    changed, added = [], 0
    for submission in submissions:
        row = by_ref.get(str(submission.ref))
        if row is None:
            rows.append(_row_from_kaggle(submission))
            added += 1
        elif (row.status, row.public_score) != (submission.status, _score_text(submission.public_score)):
            row.status, row.public_score = submission.status, _score_text(submission.public_score)
            changed.append(row)
    return sorted(rows, key=lambda row: row.time_utc), changed, added


def records_of_row(row: Row) -> list[Path]:
    """The run records of a ledger row that are still there: its file's, when the file is unchanged."""
    file = Path(row.file)
    if not row.sha256 or not file.is_file() or sha256(file) != row.sha256:
        return []
    return records_of(file)


def _row_from_kaggle(submission: client.Submission) -> Row:
    date = submission.date
    if date is not None:  # Kaggle's dates are UTC, with or without saying so
        date = date.replace(tzinfo=UTC) if date.tzinfo is None else date.astimezone(UTC)
    return Row(
        time_utc=date.isoformat(timespec="seconds") if date else "",
        file=submission.file_name,
        sha256="",
        run_folder="",
        settings=UNKNOWN_RUN,
        validation="",
        local_accuracy="",
        kaggle_ref=str(submission.ref),
        message=submission.description,
        status=submission.status,
        public_score=_score_text(submission.public_score),
    )


def _score_text(score: float | None) -> str:
    # Kaggle has answered NaN for a score; a non-finite one would make the ledger unreadable.
    return "" if score is None or not math.isfinite(score) else f"{score:.5f}"


def _read_object(path: Path) -> dict | None:
    """A JSON object from `path`, or None when there is none (missing, unreadable, not an object)."""
    try:
        return read_json(path, "run record")
    except UserError:
        return None


def _run_folder(record: dict, submission_path: Path) -> Path | None:
    """The record's run folder, which a run always puts in `runs/` beside its submission.

    Only there: a record fetched from a kernel, or edited, may name any folder, and the
    `kaggle` section is written into the run folder's record.
    """
    named = record.get("run_dir")
    if not isinstance(named, str) or not named:
        return None
    candidate = submission_path.parent / RUNS_FOLDER / Path(named).name
    return candidate if (candidate / RUN_RECORD_NAME).is_file() else None


def _settings_name(record: dict, run_dir: Path | None) -> str:
    """The run's short settings name: the record's, else its run folder's name without the timestamp."""
    if isinstance(record.get("short_name"), str):
        return record["short_name"]
    named = run_dir.name if run_dir else Path(str(record.get("run_dir") or "")).name
    parts = named.split("-", 2)  # "20261130-021500-h20-15_e50_f1_s42"
    return parts[2] if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() else named or UNKNOWN_RUN
