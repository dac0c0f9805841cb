"""Reading and validating the competition's CSV files, and the embedded sample."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from src.core.config import N_CLASSES, N_PIXELS, Config
from src.core.errors import UserError
from src.core.files import sha256
from src.data.cache import CacheSource, cached_arrays, default_cache_dir
from src.data.csv_format import check_csv_start, check_memory, read_integer_table
from src.data.deskew import deskew

PIXEL_COLUMNS = [f"pixel{index}" for index in range(N_PIXELS)]
TRAIN_HEADER = ["label", *PIXEL_COLUMNS]
TEST_HEADER = PIXEL_COLUMNS
# Where scripts/download.sh puts the competition's files.
# The other file's header, by its name: found in this file, the two were swapped.
SWAPPED_WITH_TRAIN = {"test.csv": TEST_HEADER}
SWAPPED_WITH_TEST = {"train.csv": TRAIN_HEADER}
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
    # Both files are checked (kind, header, size) before the slow hashing and parsing.
    train_size = check_csv_start(train_path, TRAIN_HEADER, DOWNLOAD_HINT, SWAPPED_WITH_TRAIN)
    test_size = check_csv_start(test_path, TEST_HEADER, DOWNLOAD_HINT, SWAPPED_WITH_TEST)
    check_memory(train_path, train_size)
    check_memory(test_path, test_size)
    train_source = CacheSource("train", sha256(train_path), train_size)
    test_source = CacheSource("test", sha256(test_path), test_size)

    def parse_train():
        images, labels = read_train(train_path)
        return {"images": images, "labels": labels}

    train_arrays = cached_arrays(cache_dir, train_source, parse_train, valid_train_arrays)
    test_arrays = cached_arrays(cache_dir, test_source, lambda: {"images": read_test(test_path)}, valid_test_arrays)
    inputs = {
        "train": {"path": str(train_path), "sha256": train_source.sha256, "rows": len(train_arrays["labels"])},
        "test": {"path": str(test_path), "sha256": test_source.sha256, "rows": len(test_arrays["images"])},
    }
    images, labels, test_images = train_arrays["images"], train_arrays["labels"], test_arrays["images"]
    return Datasets(images, labels, test_images, inputs, load_seconds=time.perf_counter() - started)


def read_train(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read `train.csv`: returns `(images, labels)`, uint8 (n, 784) and int64 (n,)."""
    values = read_integer_table(path, TRAIN_HEADER, expected_data_cell, DOWNLOAD_HINT, SWAPPED_WITH_TRAIN)
    labels, images = values[:, 0], values[:, 1:]
    _check_range(Path(path), images, TRAIN_HEADER[1:], high=255, what="a pixel")
    _check_range(Path(path), labels[:, None], TRAIN_HEADER[:1], high=N_CLASSES - 1, what="a label")
    return images.astype(np.uint8), labels.astype(np.int64)


def read_test(path: str | Path) -> np.ndarray:
    """Read `test.csv`: returns uint8 images of shape (n, 784)."""
    images = read_integer_table(path, TEST_HEADER, expected_data_cell, DOWNLOAD_HINT, SWAPPED_WITH_TEST)
    _check_range(Path(path), images, TEST_HEADER, high=255, what="a pixel")
    return images.astype(np.uint8)


def expected_data_cell(column: str) -> str:
    return "a label 0..9" if column == "label" else "an integer pixel 0..255"


def valid_train_arrays(arrays: dict[str, np.ndarray]) -> bool:
    """Whether cached arrays are what `read_train` gives: a stored entry is trusted only then."""
    images, labels = arrays.get("images"), arrays.get("labels")
    return (
        valid_images(images)
        and isinstance(labels, np.ndarray)
        and labels.dtype == np.int64
        and labels.shape == (len(images),)
        and bool(((labels >= 0) & (labels < N_CLASSES)).all())
    )


def valid_test_arrays(arrays: dict[str, np.ndarray]) -> bool:
    return valid_images(arrays.get("images"))


def valid_images(images: np.ndarray | None) -> bool:
    return (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.ndim == 2
        and images.shape[0] > 0
        and images.shape[1] == N_PIXELS
    )


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


def train_file_name(data_dir: str | Path, sample: bool = False) -> str | Path:
    """How errors name the labels file: the sample's lies in a temporary folder the user never sees."""
    return "the --sample data's train.csv" if sample else Path(data_dir) / "train.csv"


def as_features(images: np.ndarray, config: Config) -> np.ndarray:
    """The network's float32 input as `config` says: deskewed if asked, then raw 0..255 pixels or divided by 255.

    Every place a network meets images (training, scoring, prediction, pseudo-labels) goes through here with
    the run's own settings, so that a model never sees images prepared another way than it was trained on.
    """
    features = (deskew(images) if config.deskew else images).astype(np.float32)
    return features / 255.0 if config.scaling == "unit" else features


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


def _check_range(path: Path, values: np.ndarray, names: list[str], high: int, what: str) -> None:
    bad = (values < 0) | (values > high)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise UserError(
            f"{path}: line {row + 2}, column {names[column]}: expected {what} 0..{high}, found {values[row, column]}"
        )


def read_test_file(path: Path, hint: str) -> tuple[np.ndarray, str]:
    """`test.csv`'s images, through the parsed-CSV cache, and the file's sha256; `hint` says how to fix a bad path."""
    size = check_csv_start(path, TEST_HEADER, hint, SWAPPED_WITH_TEST)
    check_memory(path, size)
    source = CacheSource("test", sha256(path), size)
    arrays = cached_arrays(default_cache_dir(), source, lambda: {"images": read_test(path)}, valid_test_arrays)
    return arrays["images"], source.sha256
