"""Reading and validating the competition's CSV files, and the embedded sample."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import cached_arrays, default_cache_dir
from .config import N_CLASSES, N_PIXELS, UserError
from .files import sha256

PIXEL_COLUMNS = [f"pixel{index}" for index in range(N_PIXELS)]
TRAIN_HEADER = ["label", *PIXEL_COLUMNS]
TEST_HEADER = PIXEL_COLUMNS
# Where scripts/download.sh puts the competition's files.
DEFAULT_DATA_DIR = Path("data")
INTEGER_PATTERN = r"\s*[+-]?\d+\s*"
DOWNLOAD_HINT = "run scripts/download.sh, or try the embedded data with --sample"


# Stands for "the default cache folder" (None means no cache).
CACHE_DEFAULT = object()


@dataclass
class Datasets:
    """The arrays of `train.csv` and `test.csv`, and where they came from.

    `inputs` describes the files (path, sha256, rows) for the run record and
    `load_seconds` how long reading them took; for arrays built in memory they
    are empty and 0.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    inputs: dict = field(default_factory=dict)
    load_seconds: float = 0.0


def load_datasets(data_dir: str | Path, cache_dir: str | Path | None = CACHE_DEFAULT) -> Datasets:
    """Read and validate `train.csv` and `test.csv`, through the parsed-array cache.

    Args:
        data_dir: Folder holding the two files.
        cache_dir: Where parsed arrays are cached by the files' sha256 (see
            `src.cache`); None reads the CSVs every time. Default:
            `default_cache_dir()`.
    """
    started = time.perf_counter()
    cache_dir = default_cache_dir() if cache_dir is CACHE_DEFAULT else cache_dir
    train_path, test_path = Path(data_dir) / "train.csv", Path(data_dir) / "test.csv"
    train_digest, test_digest = file_digest(train_path), file_digest(test_path)

    def parse_train():
        images, labels = read_train(train_path)
        return {"images": images, "labels": labels}

    train_arrays = cached_arrays(cache_dir, "train", train_digest, parse_train)
    test_arrays = cached_arrays(cache_dir, "test", test_digest, lambda: {"images": read_test(test_path)})
    inputs = {
        "train": {"path": str(train_path), "sha256": train_digest, "rows": len(train_arrays["labels"])},
        "test": {"path": str(test_path), "sha256": test_digest, "rows": len(test_arrays["images"])},
    }
    images, labels, test_images = train_arrays["images"], train_arrays["labels"], test_arrays["images"]
    return Datasets(images, labels, test_images, inputs, load_seconds=time.perf_counter() - started)


def file_digest(path: Path) -> str:
    """The file's sha256; a missing file is reported as the parser reports it."""
    if not path.is_file():
        raise UserError(f"{path}: file not found; {DOWNLOAD_HINT}")
    return sha256(path)


def read_train(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read `train.csv`: returns `(images, labels)`, uint8 (n, 784) and int64 (n,)."""
    values = _read_table(Path(path), TRAIN_HEADER, other_header=TEST_HEADER)
    labels, images = values[:, 0], values[:, 1:]
    _check_range(Path(path), images, TRAIN_HEADER[1:], high=255, what="a pixel")
    _check_range(Path(path), labels[:, None], TRAIN_HEADER[:1], high=N_CLASSES - 1, what="a label")
    return images.astype(np.uint8), labels.astype(np.int64)


def read_test(path: str | Path) -> np.ndarray:
    """Read `test.csv`: returns uint8 images of shape (n, 784)."""
    images = _read_table(Path(path), TEST_HEADER, other_header=TRAIN_HEADER)
    _check_range(Path(path), images, TEST_HEADER, high=255, what="a pixel")
    return images.astype(np.uint8)


def check_labels(labels: np.ndarray, folds: int, path: str | Path = "train.csv") -> None:
    """Every digit must be present, and often enough to give each fold one."""
    counts = np.bincount(labels, minlength=N_CLASSES)
    missing = [str(digit) for digit in range(N_CLASSES) if counts[digit] == 0]
    if missing:
        raise UserError(f"{path}: no training rows for digit(s) {', '.join(missing)}; every class 0-9 is needed")
    if folds > 1 and counts.min() < folds:
        rarest = int(counts.argmin())
        raise UserError(
            f"{path}: {folds} folds need at least {folds} rows of every digit, but digit {rarest} has {counts[rarest]}"
        )


def as_features(images: np.ndarray, scaling: str) -> np.ndarray:
    """The network's float32 input: raw 0..255 pixels, or divided by 255."""
    features = images.astype(np.float32)
    return features / 255.0 if scaling == "unit" else features


# The embedded sample is shuffled with this seed; run records name it.
SAMPLE_SEED = 0


def write_sample(directory: str | Path, n_test: int = 297, seed: int = SAMPLE_SEED) -> Path:
    """Write a small Kaggle-format dataset built from scikit-learn's digits.

    The 1,797 8x8 digits (0..16) are enlarged to 20x20 and centred in a 28x28
    frame (as MNIST centres its digits), scaled to 0..255, shuffled and split.

    Returns:
        The directory, holding `train.csv`, `test.csv` and `sample_submission.csv`.
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    enlarged = zoom(digits.images, (1, 20 / 8, 20 / 8), order=1)
    framed = np.pad(enlarged, ((0, 0), (4, 4), (4, 4)))
    pixels = np.clip(np.rint(framed * 255 / 16), 0, 255).astype(np.int64).reshape(len(framed), N_PIXELS)
    order = np.random.default_rng(seed).permutation(len(pixels))
    pixels, labels = pixels[order], digits.target[order]

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train = pd.DataFrame(pixels[n_test:], columns=PIXEL_COLUMNS)
    train.insert(0, "label", labels[n_test:])
    train.to_csv(directory / "train.csv", index=False)
    pd.DataFrame(pixels[:n_test], columns=PIXEL_COLUMNS).to_csv(directory / "test.csv", index=False)
    sample = pd.DataFrame({"ImageId": np.arange(1, n_test + 1), "Label": 0})
    sample.to_csv(directory / "sample_submission.csv", index=False)
    return directory


def _read_table(path: Path, header: list[str], other_header: list[str]) -> np.ndarray:
    """Parse a CSV of integers with exactly `header`, naming the first bad cell."""
    if not path.is_file():
        raise UserError(f"{path}: file not found; {DOWNLOAD_HINT}")
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError(f"{path}: file is empty; expected a header line and data rows")
    lines = raw.splitlines()
    _check_header(path, lines[0].decode("utf-8", errors="replace"), header, other_header)
    if len(lines) < 2:
        raise UserError(f"{path}: has a header but no data rows")
    _check_field_counts(path, lines, len(header))

    try:
        table = pd.read_csv(io.BytesIO(raw))
    except UnicodeDecodeError:
        _raise_first_undecodable_line(path, lines)
    bad_columns = [name for name, dtype in table.dtypes.items() if not pd.api.types.is_integer_dtype(dtype)]
    if bad_columns:
        _raise_first_bad_cell(path, raw, bad_columns, header)
    return table.to_numpy(dtype=np.int64)


def _check_header(path: Path, line: str, header: list[str], other_header: list[str]) -> None:
    found = [name.strip().strip('"') for name in line.strip().split(",")]
    if found == header:
        return
    if found == other_header:
        this, other = ("train.csv", "test.csv") if header[0] == "label" else ("test.csv", "train.csv")
        raise UserError(f"{path}: line 1: this header belongs to {other}, not {this}; were the two files swapped?")
    for column, (expected, actual) in enumerate(zip(header, found, strict=False), start=1):
        if expected != actual:
            raise UserError(
                f"{path}: line 1, column {column}: expected header {expected!r}, found {actual!r} "
                f"(the header must be {_describe(header)})"
            )
    raise UserError(f"{path}: line 1: expected {len(header)} header fields ({_describe(header)}), found {len(found)}")


def _check_field_counts(path: Path, lines: list[bytes], n_fields: int) -> None:
    for number, line in enumerate(lines[1:], start=2):
        found = line.count(b",") + 1
        if found != n_fields:
            raise UserError(f"{path}: line {number}: expected {n_fields} comma-separated fields, found {found}")


def _raise_first_undecodable_line(path: Path, lines: list[bytes]) -> None:
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}: line {number}: not UTF-8 text; expected comma-separated integers") from None


def _raise_first_bad_cell(path: Path, raw: bytes, bad_columns: list[str], header: list[str]) -> None:
    """Find, in the text itself, the first cell of `bad_columns` that is not an integer."""
    text = pd.read_csv(io.BytesIO(raw), usecols=bad_columns, dtype=str, keep_default_na=False)
    first = None
    for name in bad_columns:
        bad = ~text[name].str.fullmatch(INTEGER_PATTERN).to_numpy()
        if bad.any():
            candidate = (int(np.argmax(bad)), header.index(name))
            first = candidate if first is None else min(first, candidate)
    if first is None:  # integers, but too large for pandas to read as int64
        raise UserError(f"{path}: column {bad_columns[0]}: expected integers 0..255, found values beyond int64")
    row, column = first
    value = text[header[column]][row].strip()
    found = f"{value!r}" if value else "an empty value"
    expected = "a label 0..9" if header[column] == "label" else "an integer pixel 0..255"
    raise UserError(f"{path}: line {row + 2}, column {header[column]}: expected {expected}, found {found}")


def _check_range(path: Path, values: np.ndarray, names: list[str], high: int, what: str) -> None:
    bad = (values < 0) | (values > high)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise UserError(
            f"{path}: line {row + 2}, column {names[column]}: expected {what} 0..{high}, found {values[row, column]}"
        )


def _describe(header: list[str]) -> str:
    return ",".join(header[:3]) + ",...," + header[-1]
