"""Shared fixtures: tiny Kaggle-format datasets, and the real data where present."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.synthetic import write_dataset

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A suite started in the background by a script (`pytest &`) inherits Ctrl-C ignored, and so would every
# command it starts: Python then never raises KeyboardInterrupt and the Ctrl-C tests would hang. A handler
# here is reset to the default in each child, so the commands see Ctrl-C as a user's terminal sends it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_ZIP = REPO_ROOT.parent / "shared" / "data" / "digit-recognizer.zip"


def run_command(*args, env=None, cwd=REPO_ROOT, timeout=600, python=True) -> subprocess.CompletedProcess:
    """Run a command as a user would, in a subprocess; `python -m src.submit ...` when `python`.

    `args` are turned into strings; `env` is added to (not instead of) this
    process's environment. The output is text, captured.
    """
    command = [sys.executable, *map(str, args)] if python else list(map(str, args))
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


def start_command(*args, env=None, cwd=REPO_ROOT, **streams) -> subprocess.Popen:
    """`run_command` in the background: `python <args>`, unbuffered, for tests that signal a running command.

    Its output goes where `streams` say (text pipes by default; files where a
    full pipe could block a long run).
    """
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **streams}
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, env=environment, **streams)


def assert_one_line_error(result: subprocess.CompletedProcess, exit_code: int, *fragments: str) -> str:
    """The command failed with `exit_code` and one `error:` line naming every fragment; no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == exit_code, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot_files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` (links not followed) by relative path: its bytes and mode; a folder as None.

    Compare two snapshots to show that a failed or interrupted run left every file as it was.
    """
    snapshot = {}
    for path in sorted(Path(folder).rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            snapshot[name] = (os.readlink(path).encode(), path.lstat().st_mode)
        elif path.is_file():
            snapshot[name] = (path.read_bytes(), path.stat().st_mode)
        else:
            snapshot[name] = (None, path.stat().st_mode)
    return snapshot


def write_previous_pair(folder: Path, name: str = "submission.csv") -> Path:
    """A previous run's outputs in `folder`: a valid 20-row submission and a record naming its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    submission = folder / name
    submission.write_text("ImageId,Label\n" + "".join(f"{row},{row % 10}\n" for row in range(1, 21)))
    digest = hashlib.sha256(submission.read_bytes()).hexdigest()
    submission.with_suffix(".json").write_text(json.dumps({"submission": {"path": str(submission), "sha256": digest}}))
    return submission


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """A folder holding an 80-row train.csv and a 20-row test.csv."""
    return write_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def real_data(tmp_path_factory) -> Path:
    """The 42,000-row competition files, unzipped from ../shared, or a skip."""
    if not SHARED_ZIP.is_file():
        pytest.skip(f"real data not available: {SHARED_ZIP} is absent (it is only beside the team's checkouts)")
    directory = tmp_path_factory.mktemp("digit-recognizer")
    with zipfile.ZipFile(SHARED_ZIP) as archive:
        archive.extractall(directory)
    return directory


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep the parsed-CSV cache of every run (subprocesses too) out of the user's home."""
    previous = os.environ.get("DIGIT_RECOGNIZER_CACHE")
    os.environ["DIGIT_RECOGNIZER_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("DIGIT_RECOGNIZER_CACHE")
    else:
        os.environ["DIGIT_RECOGNIZER_CACHE"] = previous
