"""Shared fixtures: tiny Kaggle-format datasets, and the real data where present."""

from __future__ import annotations

import json
import os
import signal
import zipfile
from pathlib import Path

import pytest

from src.core.cli import import_tensorflow
from tests.helpers import GOOD_ROWS, SHARED_ZIP
from tests.runs_fixtures import small_runs  # noqa: F401  (a session fixture every module may use)
from tests.synthetic import write_dataset

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A suite started in the background by a script (`pytest &`) inherits Ctrl-C ignored, and so would every
# command it starts: Python then never raises KeyboardInterrupt and the Ctrl-C tests would hang. A handler
# here is reset to the default in each child, so the commands see Ctrl-C as a user's terminal sends it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """A folder holding an 80-row train.csv and a 20-row test.csv."""
    return write_dataset(tmp_path / "data")


@pytest.fixture
def good_file(tmp_path) -> Path:
    """A valid submission for the 20 test rows of `tiny_data`."""
    path = tmp_path / "submission.csv"
    path.write_text("ImageId,Label\n" + GOOD_ROWS)
    return path


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


# Each test group's seconds in a whole run, to hand out the longest first. Only the order of the groups
# depends on it: a stale or missing file makes a run slower, never different. `--store-durations` rewrites it.
DURATIONS = Path(__file__).with_name("durations.json")
SMALL_RUNS_GROUP = "small-runs"
_measured_seconds: dict[str, float] = {}  # by group, as this run's reports arrive


def pytest_addoption(parser):
    parser.addoption(
        "--store-durations",
        action="store_true",
        help=f"write each test group's measured seconds to {DURATIONS.name}, which orders the groups longest first",
    )


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """The longest groups first, so that no worker is left alone with a long one at the end; and every file
    that reads the shared small runs in one group, on one worker, so that they are trained once.

    pytest-xdist (`--dist loadgroup`) hands out whole groups in this order: each file is its own group,
    but for those; the order within a file is kept. A group not yet in `durations.json` counts a second
    for each of its tests marked slow.
    """
    shared = {item.path for item in items if "small_runs" in item.fixturenames}
    groups = {item: SMALL_RUNS_GROUP if item.path in shared else item.path.name for item in items}
    known = measured_durations()
    estimate = {}
    for item, group in groups.items():
        estimate[group] = estimate.get(group, 0) + (item.get_closest_marker("slow") is not None)
    seconds = {group: known.get(group, guess) for group, guess in estimate.items()}
    items.sort(key=lambda item: -seconds[groups[item]])
    for item, group in groups.items():
        item.add_marker(pytest.mark.xdist_group(group))


def measured_durations() -> dict[str, float]:
    """`durations.json`, or nothing where it is missing or unreadable (a merge left it broken, say)."""
    try:
        known = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def pytest_configure(config):
    # Not in xdist's controller, which only hands the tests out (it collects them itself for --collect-only).
    if hasattr(config, "workerinput") or config.getoption("dist", "no") == "no" or config.getoption("collectonly"):
        import_tensorflow()
    if config.getoption("store_durations") and not hasattr(config, "workerinput"):
        # A group's seconds are those of all its tests, on a worker of the usual run; a part would understate it.
        whole = config.args == config.getini("testpaths") and not config.option.keyword
        whole = whole and not config.option.markexpr and config.getoption("dist") == "loadgroup"
        if not whole:
            raise pytest.UsageError("--store-durations measures the whole suite: python -m pytest --store-durations")


def pytest_runtest_logreport(report):
    # A worker's report (the default: `-n auto`) reaches the controller with its group after the last "@" of its id.
    from_worker = getattr(report, "node", None) is not None
    group = report.nodeid.rpartition("@")[2] if from_worker else Path(report.nodeid.partition("::")[0]).name
    _measured_seconds[group] = _measured_seconds.get(group, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    finished = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and _measured_seconds
    if finished and session.config.getoption("store_durations") and not hasattr(session.config, "workerinput"):
        rounded = {group: round(seconds, 1) for group, seconds in sorted(_measured_seconds.items())}
        DURATIONS.write_text(json.dumps(rounded, indent=1) + "\n")
