"""Shared fixtures: tiny Kaggle-format datasets, and the real data where present."""

from __future__ import annotations

import os
import signal
import zipfile
from pathlib import Path

import pytest

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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """The files with the most slow tests first, so that no worker is left with a long file at the end;
    and every file that reads the shared small runs on one worker, so that they are trained once.

    pytest-xdist (`--dist loadgroup`) hands out whole groups in this order: each file is its own
    group, but for those; the order within a file is kept.
    """
    slow_tests, shared = {}, set()
    for item in items:
        slow_tests[item.path] = slow_tests.get(item.path, 0) + (item.get_closest_marker("slow") is not None)
        if "small_runs" in item.fixturenames:
            shared.add(item.path)
    items.sort(key=lambda item: -slow_tests[item.path])
    for item in items:
        item.add_marker(pytest.mark.xdist_group("small-runs" if item.path in shared else item.path.name))
