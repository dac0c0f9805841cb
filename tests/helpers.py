"""What the tests share besides fixtures: running the package's commands, and checking what they leave."""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_ZIP = REPO_ROOT.parent / "shared" / "data" / "digit-recognizer.zip"

# A valid submission's rows for the 20 test rows of the tiny data sets.
GOOD_ROWS = "".join(f"{image_id},{image_id % 10}\n" for image_id in range(1, 21))

# Added to every command a test starts. A crash (a segmentation fault in a library) prints the Python stack
# of every thread on stderr, so the failing test shows where it happened; a run that does not crash prints nothing.
TEST_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONFAULTHANDLER": "1"}


def run_command(*args, env=None, cwd=REPO_ROOT, timeout=600, python=True) -> subprocess.CompletedProcess:
    """Run a command as a user would, in a subprocess; `python -m src.submit ...` when `python`.

    `args` are turned into strings; `env` is added to (not instead of) this
    process's environment. The output is text, captured.
    """
    command = [sys.executable, *map(str, args)] if python else list(map(str, args))
    environment = {**os.environ, **TEST_ENVIRONMENT, **(env or {})}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


def start_command(*args, env=None, cwd=REPO_ROOT, **streams) -> subprocess.Popen:
    """`run_command` in the background: `python <args>`, unbuffered, for tests that signal a running command.

    Its output goes where `streams` say (text pipes by default; files where a
    full pipe could block a long run).
    """
    environment = {**os.environ, **TEST_ENVIRONMENT, "PYTHONUNBUFFERED": "1", **(env or {})}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **streams}
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, env=environment, **streams)


def run_main(capsys, main, *args) -> subprocess.CompletedProcess:
    """A command line's `main(argv)` in this process: `call_main`, after what the test printed before is let go.

    It answers as `run_command` does, so `assert_one_line_error` reads it the same;
    a traceback cannot be printed here, it fails the test instead. Use it where
    the process boundary adds nothing to what a test checks.
    """
    capsys.readouterr()  # only this command's output
    return call_main(main, *args)


def call_main(main, *args) -> subprocess.CompletedProcess:
    """`main(argv)` in this process, its output caught in memory; also for fixtures, which have no `capsys`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(arg) for arg in args])
    return subprocess.CompletedProcess([main.__module__, *map(str, args)], status, out.getvalue(), err.getvalue())


IN_PROCESS_TIMEOUT = 300  # seconds, as `run_with_fake`'s processes had


def run_module(module: str, *args, env: dict | None = None, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` as `run_command` runs it, but in this process, through the module's `main(argv)`.

    For the many short commands (the Kaggle steps, kernel builds, one-line errors)
    whose process would mostly import the same libraries again, while the process
    boundary is not what the test checks. The command sees what a process would:
    exactly `env` (this process's environment, plus `TEST_ENVIRONMENT`, plus
    `env`), `cwd`, its own `sys.argv`, and a kaggle client that signs in and
    finds its configuration folder afresh; all are put back afterwards, whatever
    the command changed. After `IN_PROCESS_TIMEOUT` seconds it is stopped with an
    error, as `run_command`'s time-out stops a process. A traceback cannot be
    printed here: it fails the test instead.
    """
    from src.kaggle import client

    command = importlib.import_module(module)
    main = getattr(command, "main", None) or importlib.import_module(f"{module}.__main__").main  # a package
    environment, working_folder, argv = dict(os.environ), os.getcwd(), sys.argv
    os.environ.clear()
    os.environ.update({**environment, **TEST_ENVIRONMENT, **(env or {})})
    os.chdir(cwd)
    sys.argv = [sys.modules[main.__module__].__file__, *map(str, args)]
    _kaggle_reads_this_environment()
    client.forget_sign_in()  # the client signs in once per process; here each command is a process of its own
    previous_alarm = signal.signal(signal.SIGALRM, _timed_out)
    signal.alarm(IN_PROCESS_TIMEOUT)
    try:
        return call_main(main, *args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_alarm)
        client.forget_sign_in()
        os.environ.clear()
        os.environ.update(environment)
        os.chdir(working_folder)
        sys.argv = argv
        _kaggle_reads_this_environment()


def _timed_out(signum, frame):
    raise TimeoutError(f"the command ran longer than {IN_PROCESS_TIMEOUT} s")


def _kaggle_reads_this_environment() -> None:
    """The kaggle package reads its configuration folder (kaggle.json) and `--local` once, when first
    imported: read them again from this environment, as a new process would."""
    extended = sys.modules.get("kaggle.api.kaggle_api_extended")
    if extended is None:
        return  # not imported yet: its import will read them
    from src.kaggle.credentials import config_dir

    api = extended.KaggleApi
    api.config_dir = str(config_dir())
    api.config = os.path.join(api.config_dir, api.config_file)
    api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []


LOW_ACCURACY_WARNING = "warning: validation accuracy"


def without_low_accuracy_warning(stderr: str) -> list[str]:
    """stderr's lines but the warning a run on a few synthetic rows may earn (it barely learned)."""
    return [line for line in stderr.splitlines() if not line.startswith(LOW_ACCURACY_WARNING)]


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


def script_parts(script_text: str) -> tuple[dict, zipfile.ZipFile]:
    """The script's SETTINGS and its embedded zip."""
    assignments = {
        node.targets[0].id: node.value for node in ast.parse(script_text).body if isinstance(node, ast.Assign)
    }
    settings = ast.literal_eval(assignments["SETTINGS"])
    archive = base64.b64decode(ast.literal_eval(assignments["PACKAGE"]))
    return settings, zipfile.ZipFile(io.BytesIO(archive))
