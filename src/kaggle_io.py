"""Talking to Kaggle: credentials, the competition's files, and submitting.

Every failure (no credentials, rules not accepted, network down, an HTTP error)
becomes a one-line `UserError`; no secret is ever printed. The `kaggle` package
is imported only when needed, because importing it tries to authenticate.

`python -m src.kaggle_io check|install|credentials` are the steps that
`scripts/download.sh` runs around the kaggle CLI.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

from .config import USER_ERRORS, UserError, user_error_message
from .data import TEST_HEADER, TRAIN_HEADER
from .submission import HEADER as SUBMISSION_HEADER
from .submission import validate_submission

COMPETITION = "digit-recognizer"
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TOKEN_URL = "https://www.kaggle.com/settings/api"
COMPETITION_FILES = {
    "train.csv": TRAIN_HEADER,
    "test.csv": TEST_HEADER,
    "sample_submission.csv": SUBMISSION_HEADER,
}
NO_CREDENTIALS = (
    f"no Kaggle credentials found: create an API token at {TOKEN_URL}, then either save the downloaded "
    "kaggle.json as ~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY, "
    "or set KAGGLE_API_TOKEN"
)


def config_dir() -> Path:
    """Where the kaggle client looks for `kaggle.json` (same rule as kaggle 2.x)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy = Path.home() / ".kaggle"
    if legacy.exists() or not sys.platform.startswith("linux"):
        return legacy
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def _kaggle_json() -> dict:
    path = config_dir() / "kaggle.json"
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def find_credentials() -> str | None:
    """Name the credentials the kaggle client will use (never their value), or None."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt", "credentials.json"):
        path = Path.home() / ".kaggle" / name
        if path.is_file() and path.read_text().strip():
            return str(path)
    stored = _kaggle_json()
    has_user = bool(os.environ.get("KAGGLE_USERNAME") or stored.get("username"))
    has_key = bool(os.environ.get("KAGGLE_KEY") or stored.get("key"))
    if has_user and has_key:
        return "KAGGLE_USERNAME/KAGGLE_KEY" if os.environ.get("KAGGLE_KEY") else str(config_dir() / "kaggle.json")
    return None


def require_credentials() -> str:
    """The credentials' source; a `UserError` saying what to set when there are none."""
    source = find_credentials()
    if source is None:
        raise UserError(NO_CREDENTIALS)
    return source


def kaggle_username() -> str | None:
    """The Kaggle user name from KAGGLE_USERNAME or `kaggle.json`, if set."""
    return os.environ.get("KAGGLE_USERNAME") or _kaggle_json().get("username") or None


def check_competition_files(directory: str | Path) -> None:
    """Raise `UserError` unless `directory` holds the three competition files.

    Each must exist, start with its exact header and have at least one data row.
    """
    directory = Path(directory)
    for name, header in COMPETITION_FILES.items():
        path = directory / name
        if not path.is_file():
            raise UserError(f"{path}: not found")
        with open(path, "rb") as stream:
            first, second = stream.readline(), stream.readline()
        found = first.decode("utf-8", errors="replace").strip()
        if found != ",".join(header):
            raise UserError(
                f"{path}: line 1: expected the header {_shorten(','.join(header))}, found {_shorten(found)}"
            )
        if not second.strip():
            raise UserError(f"{path}: has a header but no data rows")


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
        raise UserError(f"{zip_path}: not found; the kaggle CLI did not save the competition's zip")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".download-", dir=directory) as temporary:
            _unpack(zip_path, Path(temporary))
            check_competition_files(temporary)
            for name in COMPETITION_FILES:
                os.replace(Path(temporary) / name, directory / name)
    except BaseException:
        if created:
            directory.rmdir()  # a folder made for a failed download goes too
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


def count_rows(path: str | Path) -> int:
    """Data rows of a CSV file (non-empty lines after the header)."""
    with open(path, "rb") as stream:
        return max(sum(1 for line in stream if line.strip()) - 1, 0)


def submit_file(path: str | Path, message: str, n_rows: int | None = None) -> str:
    """Validate a submission, then upload it to the competition.

    Args:
        path: The `ImageId,Label` file.
        message: The submission's description on Kaggle.
        n_rows: Test images expected (from `test.csv`), when known.

    Returns:
        The service's answer, e.g. "Successfully submitted to Digit Recognizer".
    """
    if not message.strip():
        raise UserError("a submission needs a message: pass -m/--message TEXT")
    validate_submission(path, n_rows=n_rows)
    api = _authenticated_api()
    noise = io.StringIO()
    try:
        # The client prints progress and some errors on stdout; keep them out of ours.
        with contextlib.redirect_stdout(noise):
            response = api.competition_submit(str(path), message, COMPETITION, quiet=True)
    except Exception as error:  # every failure of the client becomes one line
        raise explain_error(error, "submit") from None
    answer = getattr(response, "message", "") or ""
    if answer == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        printed = noise.getvalue().strip().splitlines()
        reason = f" ({printed[-1][:200]})" if printed else ""
        raise UserError(f"Kaggle did not accept the upload of {path}: {answer}{reason}; try again later")
    reference = getattr(response, "ref", None)
    return f"{answer} (submission {reference})" if reference else answer


def _authenticated_api():
    """A `KaggleApi` ready to call, or a `UserError` when credentials are missing."""
    source = require_credentials()
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            # Importing `kaggle` authenticates and prints help when it cannot.
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError:
            raise UserError("the kaggle package is not installed; run: pip install kaggle") from None
        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:
            raise UserError(
                f"Kaggle did not accept the credentials in {source}; create a new token at {TOKEN_URL}"
            ) from None
        except Exception as error:  # a token is checked online, which can fail
            raise explain_error(error, "sign in") from None
    return api


def explain_error(error: Exception, action: str) -> UserError:
    """Turn an exception from the kaggle client into a one-line `UserError`."""
    import requests

    if isinstance(error, requests.HTTPError):
        status = error.response.status_code if error.response is not None else None
        detail = str(error).splitlines()[0] if str(error) else f"HTTP {status}"
        if status == 401:
            return UserError(
                f"Kaggle did not accept your credentials (HTTP 401: {detail}); check ~/.kaggle/kaggle.json, "
                f"KAGGLE_USERNAME/KAGGLE_KEY or KAGGLE_API_TOKEN, or create a new token at {TOKEN_URL}"
            )
        if status == 403:
            return UserError(
                f"Kaggle refused to {action} (HTTP 403: {detail}); accept the competition's rules at {RULES_URL} "
                "with the account your token belongs to, then try again"
            )
        if status is not None and status >= 500:
            return UserError(f"Kaggle's service failed (HTTP {status}: {detail}); this is on Kaggle's side, try later")
        return UserError(f"Kaggle refused to {action} (HTTP {status}: {detail})")
    if isinstance(error, requests.ConnectionError | requests.Timeout):
        return UserError(
            f"could not reach Kaggle to {action} ({type(error).__name__}): the network or the service is down; "
            "check your internet connection and try again"
        )
    return UserError(f"could not {action}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def main(argv: list[str] | None = None) -> int:
    """Steps for `scripts/download.sh`: exit 0 when good, 2 with one line when not."""
    argv = sys.argv[1:] if argv is None else argv
    commands = {"check": 1, "install": 2, "credentials": 0}
    if not argv or argv[0] not in commands or len(argv) != commands[argv[0]] + 1:
        print("usage: python -m src.kaggle_io check DIR | install ZIP DIR | credentials", file=sys.stderr)
        return 2
    try:
        if argv[0] == "check":
            check_competition_files(argv[1])
        elif argv[0] == "install":
            for path in install_competition_zip(argv[1], argv[2]):
                print(f"{path}: {count_rows(path)} rows")
        else:
            require_credentials()
    except USER_ERRORS as error:
        print(user_error_message(error), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
