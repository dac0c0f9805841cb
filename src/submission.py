"""The `ImageId,Label` submission file: writing it safely and checking it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import N_CLASSES, UserError
from .files import atomic_write

HEADER = ["ImageId", "Label"]


def check_submission_path(path: str | Path) -> None:
    """Refuse, before any training, a submission path that cannot be written as a file beside its record."""
    if Path(path).is_dir():
        raise UserError(f"{path}: is a folder; give --out a file name such as {Path(path) / 'submission.csv'}")
    if Path(path).suffix.lower() == ".json":
        raise UserError(f"{path}: a submission must not be a .json file; its record is written beside it as one")


def write_submission(labels: np.ndarray, path: str | Path) -> Path:
    """Write one `ImageId,Label` row per test image, atomically.

    The file is written to a temporary name, read back and validated, and only
    then renamed onto `path`; a previous submission survives any failure.
    """
    frame = pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": np.asarray(labels, dtype=np.int64)})

    def write_and_check(temporary: Path) -> None:
        frame.to_csv(temporary, index=False, lineterminator="\n")
        validate_submission(temporary, n_rows=len(labels))

    return atomic_write(path, write_and_check)


def validate_submission(path: str | Path, n_rows: int | None = None) -> pd.DataFrame:
    """Check a submission file; raise `UserError` naming the first problem.

    Checks: the exact header `ImageId,Label`; integer values; ImageId running
    1..N without gaps; labels 0..9; and, when `n_rows` is given (the number of
    test images), exactly that many rows.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    with open(path, encoding="utf-8", errors="replace") as stream:
        header = stream.readline().strip().split(",")
    if header != HEADER:
        raise UserError(f"{path}: line 1: expected the header 'ImageId,Label', found {','.join(header)!r}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as error:
        raise UserError(f"{path}: not a two-column CSV ({error})") from None
    if frame.empty:
        raise UserError(f"{path}: has a header but no rows")
    for column in HEADER:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() | (numbers != numbers.round())
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise UserError(
                f"{path}: line {row + 2}, column {column}: expected an integer, found {frame[column][row]!r}"
            )
        frame[column] = numbers.astype(np.int64)
    expected_ids = np.arange(1, len(frame) + 1)
    wrong_id = frame["ImageId"].to_numpy() != expected_ids
    if wrong_id.any():
        row = int(np.argmax(wrong_id))
        raise UserError(
            f"{path}: line {row + 2}, column ImageId: expected {expected_ids[row]} (ImageId runs 1..N), "
            f"found {frame['ImageId'][row]}"
        )
    wrong_label = (frame["Label"] < 0) | (frame["Label"] >= N_CLASSES)
    if wrong_label.any():
        row = int(np.argmax(wrong_label.to_numpy()))
        raise UserError(f"{path}: line {row + 2}, column Label: expected a digit 0..9, found {frame['Label'][row]}")
    if n_rows is not None and len(frame) != n_rows:
        raise UserError(f"{path}: has {len(frame)} rows, expected {n_rows} (one per test image)")
    return frame
