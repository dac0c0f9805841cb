"""Small real runs, each trained once per test session and shared read-only by every module that reads one.

Training is what costs in these tests, so the runs are few and tiny (80 rows, 1 or 2 epochs).
A test that changes a run folder works on a copy (`shutil.copytree` into its `tmp_path`);
at the end of the session every shared folder must be byte for byte as it was made.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from src.core.config import Config
from tests.helpers import snapshot_files
from tests.synthetic import write_dataset

if TYPE_CHECKING:
    from src.pipeline.run import RunResult

UNIT = {"scaling": "unit", "l2": 1e-4}
DISTORTED = {"augment_rotation": 10.0, "clean_epochs": 1}
# name: (settings, data folder, with the figures and report.html)
PLAN = {
    # A single model and a 2-fold ensemble on the compiled path, on one dataset: blended, reported, predicted again.
    "single": (Config(epochs=1, seed=1, **UNIT), "data", True),
    "folds": (Config(epochs=2, folds=2, seed=1, **UNIT), "data", True),
    # Keras' own `fit`, for saved models of the other training path.
    "plain": (Config(epochs=1, seed=1, plain=True), "data", False),
    # A CNN whose saved model holds the package's own batch norm layer, which a fresh process must register
    # before it can load it; trained with distortions and a clean last epoch.
    "cnn": (Config(family="cnn", filters=(4,), head_units=8, epochs=2, seed=1, **UNIT, **DISTORTED), "data", False),
    # Other training rows with the same test.csv: a blend is allowed, its gain cannot be measured.
    "other train": (Config(epochs=1, seed=3, **UNIT), "other-train", False),
    # Another test.csv: no blend with the others.
    "other test": (Config(epochs=1, seed=1, **UNIT), "other", False),
}


@dataclass(frozen=True)
class SmallRuns:
    """The data folders (`data`, `other-train`, `other`) and the runs by name (see PLAN), all read-only."""

    data: dict[str, Path]
    results: dict[str, RunResult]

    def __getitem__(self, name: str) -> RunResult:
        return self.results[name]


def write_data_folders(base: Path) -> dict[str, Path]:
    data = write_dataset(base / "data")
    other = write_dataset(base / "other", seed=1)
    other_train = base / "other-train"
    other_train.mkdir()
    shutil.copyfile(other / "train.csv", other_train / "train.csv")
    shutil.copyfile(data / "test.csv", other_train / "test.csv")
    return {"data": data, "other": other, "other-train": other_train}


@pytest.fixture(scope="session")
def small_runs(tmp_path_factory) -> SmallRuns:
    """Every run in PLAN, trained once; each writes its own submission, `submissions/<name>.csv`, beside `runs/`."""
    from src.pipeline.run import run  # TensorFlow's: the test processes load it, xdist's controller need not

    base = tmp_path_factory.mktemp("small-runs")
    data = write_data_folders(base)
    results = {}
    for name, (config, folder, report) in PLAN.items():
        out = base / "submissions" / f"{name.replace(' ', '-')}.csv"
        results[name] = run(config, data[folder], out, verbose=0, report=report)
    before = snapshot_files(base)
    yield SmallRuns(data, results)
    # A test that wrote into a shared folder would change what the tests after it see.
    assert snapshot_files(base) == before, "a test changed a shared run folder; copy it into tmp_path first"
