"""The Digit Recognizer competition's files: what they are, checking them, installing a download."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from src.core.errors import UserError
from src.core.files import sha256, signals_deferred
from src.data.cache import CACHE_ENV, default_cache_dir
from src.data.csv_format import check_csv_start
from src.data.loading import TEST_HEADER, TRAIN_HEADER
from src.data.submission import HEADER as SUBMISSION_HEADER

COMPETITION = "digit-recognizer"
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TEST_ROWS = 28_000  # images in the competition's test.csv, so rows in every submission
COMPETITION_FILES = {
    "train.csv": TRAIN_HEADER,
    "test.csv": TEST_HEADER,
    "sample_submission.csv": SUBMISSION_HEADER,
}


def check_competition_files(directory: str | Path) -> None:
    """Raise `UserError` unless `directory` holds the three competition files.

    Each must be a regular file starting with its exact header and a data row,
    checked as data loading and submission validation check them.
    """
    for name, header in COMPETITION_FILES.items():
        check_csv_start(Path(directory) / name, header)


def install_competition_zip(zip_path: str | Path, directory: str | Path) -> list[Path]:
    """Check the downloaded zip, then move its three files into `directory`.

    The zip is tested (CRC of every member) and unpacked into a temporary folder
    inside `directory`; only when every file is present with the right header
    are they moved into place, each with an atomic rename. On any failure
    `directory` is left as it was.

    Returns:
        The installed files' paths.
    """
    zip_path, directory = Path(zip_path), Path(directory)
    if not zip_path.is_file():
        raise UserError(f"{zip_path}: not found; Kaggle did not send the competition's zip")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".download-", dir=directory) as temporary:
            _unpack(zip_path, Path(temporary))
            check_competition_files(temporary)
            # All three or none: Ctrl-C or SIGTERM takes effect before the first rename or after the last.
            with signals_deferred():
                for name in COMPETITION_FILES:
                    os.replace(Path(temporary) / name, directory / name)
    except BaseException:
        if created:
            # A folder made for a failed download goes too; if it cannot, the first error is the one to show.
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    return [directory / name for name in COMPETITION_FILES]


def _unpack(zip_path: Path, destination: Path) -> None:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            broken = archive.testzip()
            if broken is not None:
                raise UserError(f"{zip_path}: corrupt zip ({broken} fails its CRC check); download it again")
            missing = [name for name in COMPETITION_FILES if name not in archive.namelist()]
            if missing:
                raise UserError(f"{zip_path}: the zip lacks {', '.join(missing)}; is this the {COMPETITION} zip?")
            for name in COMPETITION_FILES:
                with archive.open(name) as source, open(destination / name, "wb") as target:
                    shutil.copyfileobj(source, target)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise UserError(f"{zip_path}: corrupt or truncated zip ({error}); download it again") from None


def data_folder(path: str | Path, cache_dir: Path | None = None) -> Path:
    """The folder `--data` names: a folder as it is, a competition file's folder, or the competition's zip unpacked.

    The zip (`digit-recognizer.zip` as Kaggle hands it out) is checked as a download is,
    and unpacked once into the parsed-CSV cache folder, keyed by its sha256.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        # Another name's rows would not be read: the folder's train.csv would, unseen.
        if path.name not in COMPETITION_FILES:
            raise UserError(
                f"{path}: --data takes the folder holding train.csv and test.csv, one of those files, or the "
                "competition's zip; a CSV of another name is not read: put it in a folder as train.csv"
            )
        return path.parent
    if not (path.is_file() and path.suffix.lower() == ".zip"):
        return path
    cache_dir = cache_dir or default_cache_dir()
    if cache_dir is None:
        raise UserError(f"{path}: a zip needs the cache folder to unpack into ({CACHE_ENV} is off); unzip it yourself")
    folder = Path(cache_dir) / f"zip-{sha256(path)}"
    try:
        check_competition_files(folder)
    except (UserError, OSError):
        install_competition_zip(path, folder)
    return folder


def count_rows(path: str | Path) -> int:
    """Data rows of a CSV file (non-empty lines after the header)."""
    with open(path, "rb") as stream:
        return max(sum(1 for line in stream if line.strip()) - 1, 0)
