"""The run record: to JSON and back unchanged, and loading is checking."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from src.core.config import Config
from src.core.errors import UserError
from src.runs.record import (
    SOURCE_FILES,
    SOURCE_SAMPLE,
    InputFile,
    Inputs,
    MemberScore,
    RunRecord,
    SearchTrial,
    Submission,
    Timings,
    Validation,
    command_line,
)
from src.training.evaluation import CLASS_NAMES, ClassScores
from tests.helpers import REPO_ROOT


def a_record(**changes) -> RunRecord:
    """A hand-made record of a 2-fold run on the sample."""
    values = dict(
        created="2026-01-01T00:00:00+00:00",
        command="python -m src.submit --sample --folds 2",
        config=Config(hidden_units=(32, 16), folds=2, epochs=3),
        versions={"python": "3.12.0", "tensorflow": "2.21.0"},
        inputs=Inputs(SOURCE_SAMPLE, InputFile(1500, "a" * 64), InputFile(297, "b" * 64), sample_seed=0),
        validation=Validation(
            scheme="stratified 2-fold",
            accuracy=0.875,
            members=[MemberScore(750, 0.87, 4.5), MemberScore(750, 0.88, 4.5)],
            members_trained_together=True,
            per_class={name: ClassScores(0.5, 0.25, 1 / 3, 150) for name in CLASS_NAMES},
        ),
        timings=Timings(load=0.1, train=4.5, predict=0.2, write=0.01, total=7.25),
        submission=Submission("submissions/sample-submission.csv", "c" * 64, 297),
        run_dir="submissions/runs/x",
    )
    return RunRecord(**{**values, **changes})


def test_a_search_record_round_trips_and_one_without_search_still_loads(tmp_path):
    written = json.loads(a_record().to_json(tmp_path / "record.json").read_text())
    assert "search" not in written  # an ordinary run's record is as before
    assert RunRecord.from_dict(written).search is None
    with_search = {**written, "search": {"study": "wide-epochs", "trial": 3, "confirmation": False}}
    assert RunRecord.from_dict(with_search).search == SearchTrial("wide-epochs", 3)
    assert RunRecord.from_dict(with_search).to_dict()["search"] == with_search["search"]


def written(tmp_path, payload) -> str:
    path = tmp_path / "record.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_a_record_comes_back_from_json_unchanged(tmp_path):
    record = a_record()
    path = record.to_json(tmp_path / "record.json")
    loaded = RunRecord.from_json(path)
    assert loaded == record
    assert loaded.config.hidden_units == (32, 16)
    # The file is plain JSON, with the settings as Config.to_dict() gives them.
    assert json.loads(path.read_text())["config"] == json.loads(json.dumps(record.config.to_dict()))


def test_the_sample_is_named_by_its_seed_not_by_a_temporary_folder():
    inputs = a_record().inputs
    assert inputs.train.path is None
    assert inputs.describe() == "sample seed 0 (1500+297 rows)"
    assert inputs.short_name() == "sample1500"
    files = Inputs(SOURCE_FILES, InputFile(42000, None, "data/train.csv"), InputFile(28000, None, "data/test.csv"))
    assert files.describe() == "files data/ (42000+28000 rows)"


def edited(record: RunRecord, edit) -> dict:
    values = json.loads(json.dumps(record.to_dict()))
    edit(values)
    return values


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda v: v.pop("timings"), "timings is missing"),
        (lambda v: v["validation"].pop("accuracy"), "validation.accuracy is missing"),
        (lambda v: v["config"].pop("epochs"), "config.epochs is missing"),
        (lambda v: v["validation"].update(accuracy="0.9"), 'validation.accuracy should be a finite number, not "0.9"'),
        (lambda v: v["config"].update(folds=True), "config.folds should be an integer, not true"),
        (lambda v: v["validation"]["members"][1].update(validation_rows=7.5), "members[1].validation_rows"),
        (lambda v: v["validation"].update(members={}), "validation.members should be a list"),
        (lambda v: v["validation"]["per_class"].pop("macro avg"), "per_class lacks macro avg"),
        (lambda v: v["inputs"].update(source="elsewhere"), "source must be one of"),
        (lambda v: v["config"].update(epochs=0), "epochs must be in 1..10000"),
        (lambda v: v.update(surprise=1), "unknown key surprise"),
    ],
)
def test_a_damaged_record_is_one_line_naming_the_file_and_the_key(tmp_path, edit, fragment):
    path = written(tmp_path, edited(a_record(), edit))
    with pytest.raises(UserError) as caught:
        RunRecord.from_json(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


@pytest.mark.parametrize("payload", ["", "{not json", "[1, 2]", "null"])
def test_a_file_that_is_not_a_record_is_one_line(tmp_path, payload):
    path = written(tmp_path, payload)
    with pytest.raises(UserError, match=f"^{path}: ") as caught:
        RunRecord.from_json(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("program", "command"),
    [
        (REPO_ROOT / "src" / "submit.py", "python -m src.submit --folds 5"),
        (REPO_ROOT / "src" / "kaggle" / "__main__.py", "python -m src.kaggle --folds 5"),
        (Path("script.py"), "python script.py --folds 5"),  # the kernel's script
        (REPO_ROOT / "scripts" / "benchmark.py", "python benchmark.py --folds 5"),
    ],
)
def test_the_command_is_named_as_it_was_typed(program, command, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(program), "--folds", "5"])
    assert command_line() == command
