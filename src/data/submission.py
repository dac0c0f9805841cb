"""The `ImageId,Label` submission file: writing it safely and checking it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from src.core.config import N_CLASSES
from src.core.errors import UserError
from src.core.files import atomic_write
from src.data.csv_format import BYTE_ORDER_MARK, read_integer_table

HEADER = ["ImageId", "Label"]
# Fewer test images than this may honestly all be one digit (tiny test files); a real test set never is.
MIN_ROWS_FOR_ONE_CLASS_CHECK = 1000


def starts_as_a_submission(first_line: bytes) -> bool:
    """Whether a file's first line is a submission's header, as any tool writes it: with a byte order mark,
    quotes, spaces, a line end of either kind, or the empty name of a pandas index before it.

    Not whether the file is a valid submission (`validate_submission` says that): whether it is one.
    """
    text = first_line.removeprefix(BYTE_ORDER_MARK).decode("utf-8", errors="replace").rstrip("\r\n")
    names = [name.strip().strip('"').strip() for name in text.split(",")]
    return names in (HEADER, ["", *HEADER])


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

    Checks: the CSV format every input shares (`src.csv_format`: a regular
    UTF-8 file, the exact header `ImageId,Label`, data rows of plain decimal
    integers); ImageId running 1..N without gaps; labels 0..9; not every row
    the same label; and, when `n_rows` is given (the number of test images),
    exactly that many rows.
    """
    path = Path(path)
    values = read_integer_table(path, HEADER, expected_submission_cell)
    frame = pd.DataFrame(values, columns=HEADER)
    expected_ids = np.arange(1, len(frame) + 1)
    wrong_id = frame["ImageId"].to_numpy() != expected_ids
    if wrong_id.any():
        row = int(np.argmax(wrong_id))
        raise UserError(
            f"{path}: line {row + 2}, column ImageId: expected {expected_ids[row]} (ImageId runs 1..N), "
            f"found {frame['ImageId'][row]}"
        )
    wrong_label = frame["Label"] >= N_CLASSES
    if wrong_label.any():
        row = int(np.argmax(wrong_label.to_numpy()))
        raise UserError(f"{path}: line {row + 2}, column Label: expected a digit 0..9, found {frame['Label'][row]}")
    if n_rows is not None and len(frame) != n_rows:
        raise UserError(f"{path}: has {len(frame)} rows, expected {n_rows} (one per test image)")
    check_not_one_class(frame["Label"].to_numpy(), f"{path}: every one of the {len(frame):,} rows has Label")
    return frame


def expected_submission_cell(column: str) -> str:
    return "a digit 0..9" if column == "Label" else "an integer ImageId 1..N"


def check_predictions(probabilities: np.ndarray) -> None:
    """Refuse test probabilities that no submission should be made from.

    The last line of defence before writing: non-finite values (training
    diverged) or every image in one class (training collapsed) would give a
    worthless submission, so they are a `UserError` with the reason.

    Args:
        probabilities: The test images' class probabilities, (n, 10).
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != N_CLASSES:
        raise ValueError(f"probabilities must have shape (n, {N_CLASSES}), got {probabilities.shape}")
    not_finite = ~np.isfinite(probabilities).all(axis=1)
    if not_finite.any():
        kind = "NaN" if np.isnan(probabilities).any() else "infinity"
        raise UserError(
            f"probabilities are not finite ({kind} in {int(not_finite.sum()):,} of {len(probabilities):,} rows): "
            "training diverged; lower --learning-rate"
        )
    check_not_one_class(
        probabilities.argmax(axis=1), f"every one of the {len(probabilities):,} test images is predicted as digit"
    )


def check_not_one_class(labels: np.ndarray, saying: str) -> None:
    """Refuse labels that are all one digit, when there are enough for that to mean a broken model."""
    if len(labels) >= MIN_ROWS_FOR_ONE_CLASS_CHECK and (labels == labels[0]).all():
        raise UserError(
            f"{saying} {labels[0]}: a worthless submission (training diverged or collapsed); "
            "check the settings and the validation accuracy"
        )
