"""Ctrl-C and SIGTERM sent to a real `python -m src.submit` run at each stage: while libraries
import, while training, with the new pair written to temporary files and the run folder being
saved, and between the two renames that put the pair in place.

A stage inside the write is reached without racing: `DIGIT_RECOGNIZER_PAUSE_AT=<point>` makes
the run stop itself (SIGSTOP) there; the test sees it stopped (`waitpid`), sends the signal and
lets it continue, so the signal lands exactly at that point. Those four runs are commands run one
after another in one process (`tests/signal_runs.py`), which a signal ends as it ends a command's
own process: each one's exit status is `main`'s return value, not a process's, and all but the
first start with TensorFlow already loaded. What a process's end adds is checked by the others,
which each run in a process of their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from src.data.submission import validate_submission
from src.runs.folders import INCOMPLETE_MARKER
from src.runs.outputs import check_pair
from tests.helpers import (
    assert_one_line_error,
    run_module,
    snapshot_files,
    start_command,
    write_previous_pair,
)
from tests.synthetic import write_dataset

# Every test here signals a real `python -m src.submit` in a process of its own.
pytestmark = pytest.mark.slow

FLAGS = ["--verbose", "2", "--no-report"]
WORDS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}


@pytest.fixture
def previous(tmp_path):
    """The previous run's submission and record, alone in `tmp_path/out`."""
    return write_previous_pair(tmp_path / "out")


def start(tmp_path: Path, *args, env: dict | None = None) -> subprocess.Popen:
    """`python -m src.submit` in the background, its output into files (a full pipe cannot block it)."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        return start_command("-m", "src.submit", *args, env=env, stdout=stdout, stderr=stderr, text=False)


def finish(process: subprocess.Popen, tmp_path: Path) -> subprocess.CompletedProcess:
    process.wait(timeout=120)
    logs = tmp_path / "logs"
    stdout, stderr = ((logs / name).read_text() for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_until(condition, process: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"the run ended or timed out before {what}")
        time.sleep(0.01)


def assert_stopped_cleanly(result, signal_number: int, detail: str) -> None:
    """Its exit code, one `interrupted:`/`terminated:` line and nothing else on stderr, no traceback."""
    word, exit_code = WORDS[signal_number]
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr == f"{word}: {detail}\n"


def temporary_files(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*.tmp")]


def cache_folder() -> Path:
    return Path(os.environ["DIGIT_RECOGNIZER_CACHE"])


def test_sigterm_while_tensorflow_imports(tiny_data, tmp_path, previous):
    before = snapshot_files(previous.parent)
    process = start(tmp_path, "--data", tiny_data, "--out", previous, "--epochs", "1", *FLAGS)
    maps = Path(f"/proc/{process.pid}/maps")
    # TensorFlow's shared library is mapped as soon as its import starts, seconds before it ends.
    wait_until(lambda: "tensorflow" in maps.read_text(), process, "TensorFlow started loading")
    process.send_signal(signal.SIGTERM)
    result = finish(process, tmp_path)
    assert_stopped_cleanly(result, signal.SIGTERM, f"{previous} was left as it was")
    assert result.stdout == ""
    assert snapshot_files(previous.parent) == before


def test_ctrl_c_between_two_epochs(tiny_data, tmp_path, previous):
    before = snapshot_files(previous.parent)
    process = start(tmp_path, "--data", tiny_data, "--out", previous, "--epochs", "10000", *FLAGS)
    wait_until(lambda: "Epoch 2/" in (tmp_path / "logs" / "stdout").read_text(), process, "the second epoch")
    process.send_signal(signal.SIGINT)
    assert_stopped_cleanly(finish(process, tmp_path), signal.SIGINT, f"{previous} was left as it was")
    # No run folder, no temporary file: the outputs are planned before training, made after it.
    assert snapshot_files(previous.parent) == before
    assert temporary_files(cache_folder()) == []


def test_sigterm_in_the_middle_of_a_training_step(tiny_data, tmp_path, previous):
    """A step of about half a second: one batch of all 64 training rows through 37 M weights, so the signal lands
    inside it.

    Python runs the handler once TensorFlow's step returns; from there it ends as any SIGTERM does.
    """
    before = snapshot_files(previous.parent)
    wide = ("--hidden-units", "4096,4096,4096", "--batch-size", "64", "--epochs", "10000")
    process = start(tmp_path, "--data", tiny_data, "--out", previous, *wide, *FLAGS)
    # "Epoch 2/" is printed as the second epoch, one step, starts: the first one traced and compiled the step.
    wait_until(lambda: "Epoch 2/" in (tmp_path / "logs" / "stdout").read_text(), process, "the second step")
    process.send_signal(signal.SIGTERM)
    result = finish(process, tmp_path)
    assert_stopped_cleanly(result, signal.SIGTERM, f"{previous} was left as it was")
    assert "Epoch 3/" not in result.stdout  # stopped in that step, not one later
    # The previous pair byte for byte; no run folder, curves or temporary file.
    assert snapshot_files(previous.parent) == before
    assert temporary_files(previous.parent, cache_folder()) == []


# Each run signalled as it writes its outputs: its pause point and its signal. One process runs them all, one after
# another (`tests/signal_runs.py`), stopping itself at each point until the fixture has looked and signalled it.
WHILE_WRITING = {
    "saving-ctrl-c": ("run-folder", signal.SIGINT),
    "saving-sigterm": ("run-folder", signal.SIGTERM),
    # At "report" the run folder is saved and the report about to be drawn.
    "report-ctrl-c": ("report", signal.SIGINT),
    # After the record's rename and before the submission's: the one moment the pair differs.
    "swap-sigterm": ("swap", signal.SIGTERM),
}


@dataclass
class Signalled:
    """A run of WHILE_WRITING: its previous pair, what the fixture saw while it was stopped, and how it ended."""

    signal_number: int
    previous: Path
    before: dict
    temporary_while_stopped: list[Path] = field(default_factory=list)
    pair_while_stopped: str = ""
    result: subprocess.CompletedProcess | None = None


@pytest.fixture(scope="module")
def signalled_while_writing(tmp_path_factory) -> dict[str, Signalled]:
    base = tmp_path_factory.mktemp("while-writing")
    data = write_dataset(base / "data")
    logs = base / "logs"
    logs.mkdir()
    runs, signalled = [], {}
    for name, (point, signal_number) in WHILE_WRITING.items():
        previous = write_previous_pair(base / name)
        flags = [flag for flag in FLAGS if flag != "--no-report"] if point == "report" else FLAGS
        runs.append(json.dumps([point, "--data", str(data), "--out", str(previous), "--epochs", "1", *flags]))
        signalled[name] = Signalled(signal_number, previous, snapshot_files(previous.parent))
    with open(logs / "driver", "w") as output:
        driver = start_command("-m", "tests.signal_runs", logs, *runs, stdout=output, stderr=output, text=False)
    try:
        for index, (name, run) in enumerate(signalled.items()):
            _, status = os.waitpid(driver.pid, os.WUNTRACED)
            # Stopped, and by this run: one that ended without reaching its point has its status written.
            if not os.WIFSTOPPED(status) or (logs / f"{index}.status").exists():
                pytest.fail(f"{name} ended before its point: {(logs / 'driver').read_text()}")
            run.temporary_while_stopped = temporary_files(run.previous.parent)
            try:
                check_pair(run.previous)
            except Exception as error:  # what a reader of the pair would be told at that moment
                run.pair_while_stopped = str(error)
            # Sent while stopped, the signal is handled the moment the run continues: exactly at the point.
            os.kill(driver.pid, run.signal_number)
            os.kill(driver.pid, signal.SIGCONT)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:  # a failure above: a stopped driver would wait for ever
            driver.kill()
    assert driver.returncode == 0, (logs / "driver").read_text()
    for index, run in enumerate(signalled.values()):
        status, stdout, stderr = ((logs / f"{index}.{part}").read_text() for part in ("status", "stdout", "stderr"))
        run.result = subprocess.CompletedProcess(runs[index], int(status), stdout, stderr)
    return signalled


@pytest.mark.parametrize("name", ["saving-ctrl-c", "saving-sigterm", "report-ctrl-c"])
def test_a_signal_while_the_run_folder_is_saved_keeps_the_previous_pair(signalled_while_writing, name):
    run = signalled_while_writing[name]
    # Stopped with the new pair in temporary files beside the old one, and the new run folder made.
    assert len(run.temporary_while_stopped) == 2
    assert_stopped_cleanly(run.result, run.signal_number, f"{run.previous} was left as it was")
    after = snapshot_files(run.previous.parent)
    assert {name: after[name] for name in run.before} == run.before
    assert temporary_files(run.previous.parent, cache_folder()) == []
    # The unfinished run folder says so, and the report refuses it.
    (run_dir,) = (run.previous.parent / "runs").iterdir()
    assert (run_dir / INCOMPLETE_MARKER).exists()
    assert_one_line_error(run_module("src.report", run_dir), 2, "incomplete")


def test_sigterm_between_the_two_renames_finishes_the_pair_first(signalled_while_writing):
    run = signalled_while_writing["swap-sigterm"]
    assert "does not match its record" in run.pair_while_stopped
    assert_stopped_cleanly(run.result, signal.SIGTERM, f"after writing {run.previous} and its record")
    # The signal waited for the second rename: the new submission, beside the record naming it.
    validate_submission(run.previous, n_rows=20)
    check_pair(run.previous)
    assert temporary_files(run.previous.parent, cache_folder()) == []
