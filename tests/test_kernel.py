"""The kernel build (`python -m src.kernel`) and the script it builds, run alone as Kaggle runs it."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from src.core.config import Config
from src.core.errors import UserError
from src.core.files import sha256
from src.data.submission import validate_submission
from src.kaggle.kernel_build import CODE_FILE, METADATA_FILE, check_metadata, kernel_metadata
from src.pipeline import kernel_entry
from src.pipeline.kernel_entry import find_competition_dir
from src.pipeline.run import run
from src.runs.record import NO_VALIDATION
from tests.helpers import REPO_ROOT, assert_one_line_error, run_command, run_module, script_parts
from tests.synthetic import write_dataset

BUILD_FLAGS = ["--epochs", "2", "--hidden-units", "16,8", "--scaling", "unit", "--seed", "7"]
BUILD_CONFIG = Config(epochs=2, hidden_units=(16, 8), scaling="unit", seed=7)
LAYOUTS = ["digit-recognizer", "competitions/digit-recognizer"]
FAKE_KEY = "0123456789abcdef-fake-kernel-key"
# Runs the script as `python SCRIPT ARGS` would, then names every `src` module not imported from its zip.
PROBE = """
import runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    files = {name: getattr(module, "__file__", None) or "" for name, module in sys.modules.items()}
    ours = [name for name in files if name.split(".")[0] == "src"]
    print("outside the zip:", sorted(name for name in ours if "src.zip" not in files[name]))
"""


def build(out_dir, *flags, cwd=REPO_ROOT, env=None):
    """`python -m src.kernel`: in this process, unless it must build another tree's `src` (`cwd`)."""
    if cwd == REPO_ROOT:
        return run_module("src.kernel", "--out-dir", out_dir, *flags, env=env)
    return run_command("-m", "src.kernel", "--out-dir", out_dir, *flags, cwd=cwd, env=env, timeout=120)


def copy_of_src(directory: Path) -> Path:
    """A copy of the repository's `src` in `directory`, outside git, for builds of an edited package."""
    shutil.copytree(REPO_ROOT / "src", directory / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def run_alone(script: Path, *args, probe=False):
    """Run `script` from an empty folder of its own, so that only its zip can provide `src`."""
    alone = script.parent / "alone"
    alone.mkdir(exist_ok=True)
    shutil.copy(script, alone / CODE_FILE)
    command = ["-c", PROBE, CODE_FILE] if probe else [CODE_FILE]
    return run_command(*command, *args, cwd=alone, env={"PYTHONPATH": ""}, timeout=300)


@pytest.fixture(scope="module")
def built_script(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("kernel")
    result = build(out_dir, "--username", "tester", *BUILD_FLAGS)
    assert result.returncode == 0, result.stderr
    return out_dir / CODE_FILE


@pytest.fixture(scope="module")
def local_submission(tmp_path_factory) -> Path:
    """What a local run (`python -m src.submit`'s pipeline, here in the test's process) writes with the same
    settings on the same tiny data."""
    data = write_dataset(tmp_path_factory.mktemp("local") / "data")
    out = data.parent / "submission.csv"
    run(BUILD_CONFIG, data, out, verbose=0, report=False)
    return out


@pytest.mark.slow
def test_script_runs_alone_on_kaggles_input_layout(built_script, local_submission, tmp_path):
    # The deepest of Kaggle's layouts; `test_find_competition_dir` finds the data in each of them, and the fake
    # Kaggle's kernels run the script on a plain folder.
    write_dataset(tmp_path / "input" / LAYOUTS[-1])
    result = run_alone(built_script, "--input", tmp_path / "input", "--output", tmp_path / "working", probe=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "outside the zip: []" in result.stdout, result.stdout
    submission = tmp_path / "working" / "submission.csv"
    validate_submission(submission, n_rows=20)
    record = json.loads((tmp_path / "working" / "submission.json").read_text())
    assert record["config"]["epochs"] == 2 and record["config"]["hidden_units"] == [16, 8]
    # The same settings as the local run: the same seed gives the same bytes.
    assert sha256(submission) == sha256(local_submission)


def command_line_modules() -> set[str]:
    """The `src` files a user runs: a `__main__.py`, or a module ending in `if __name__ == "__main__":`."""
    found = set()
    for path in (REPO_ROOT / "src").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)
        if guarded or path.name == "__main__.py":
            found.add(path.relative_to(REPO_ROOT).as_posix())
    return found


def test_header_shows_settings_and_commit(built_script):
    text = built_script.read_text()
    settings, archive = script_parts(text)
    assert Config(**settings) == BUILD_CONFIG
    assert '"hidden_units": (16, 8),' in text and '"scaling": "unit",' in text
    head = run_command("git", "rev-parse", "HEAD", python=False)
    commit = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert f"Built from commit {commit}" in text.split('"""')[1]
    # Only the modules the kernel runs: not the command lines, the build, or the Kaggle client.
    names = archive.namelist()
    assert {
        "src/__init__.py",
        "src/pipeline/__init__.py",
        "src/pipeline/kernel_entry.py",
        "src/pipeline/run.py",
    } <= set(names)
    assert not {"src/kernel.py", "src/submit.py", "src/kaggle/kernel_build.py", "src/kaggle_io.py"} & set(names)
    command_lines = command_line_modules()
    assert {"src/report.py", "src/submit.py", "src/kaggle/__main__.py"} <= command_lines
    assert not command_lines & set(names), sorted(command_lines & set(names))
    assert all(name.endswith(".py") for name in names)


@pytest.mark.slow
def test_build_is_deterministic(tmp_path):
    tree = copy_of_src(tmp_path / "tree")
    first = build(tmp_path / "first", "--username", "tester", cwd=tree)
    for path in (tree / "src").rglob("*.py"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = build(tmp_path / "second", "--username", "tester", cwd=tree)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    script = (tmp_path / "first" / CODE_FILE).read_bytes()
    assert script == (tmp_path / "second" / CODE_FILE).read_bytes()
    assert b"Built from commit unknown." in script  # outside git
    _, archive = script_parts(script.decode())
    assert archive.namelist() == sorted(archive.namelist())


@pytest.mark.parametrize(
    ("addition", "refused"),
    [
        ("import requests\n", True),
        ("from requests.adapters import HTTPAdapter\n", True),
        ("\n\ndef later():\n    import kaggle\n\n    return kaggle\n", False),  # runs only if called
    ],
)
def test_imports_beyond_kaggles_image_are_refused(addition, refused, tmp_path):
    tree = copy_of_src(tmp_path / "tree")
    model = tree / "src" / "models" / "dense.py"
    line = len(model.read_text().splitlines()) + 1
    model.write_text(model.read_text() + addition)
    result = build(tmp_path / "out", "--username", "tester", cwd=tree)
    if refused:
        assert_one_line_error(result, 2, f"src/models/dense.py line {line} imports requests", "Kaggle's Python image")
        assert not (tmp_path / "out").exists()
    else:
        assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_sub_packages_import_from_the_zip_and_tracebacks_name_their_files(tmp_path):
    tree = copy_of_src(tmp_path / "tree")
    extra = tree / "src" / "pipeline" / "extra"
    extra.mkdir()
    (extra / "__init__.py").write_text("")
    (extra / "where.py").write_text("def where():\n    return __file__\n")
    (tree / "src" / "pipeline" / "kernel_entry.py").write_text(
        "import src.core.errors\n"
        "from ..core import config\n"
        "from .extra.where import where\n\n\n"
        "def main(settings):\n"
        "    print('probe', where(), config.__file__, src.core.errors.__file__, settings.epochs)\n"
        "    raise RuntimeError('probe failure')\n"
    )
    assert build(tmp_path / "out", "--username", "tester", "--epochs", "3", cwd=tree).returncode == 0
    result = run_alone(tmp_path / "out" / CODE_FILE)
    assert result.returncode == 1
    printed = result.stdout.split()
    assert printed[0] == "probe" and printed[-1] == "3"
    assert [path.split("src.zip/")[1] for path in printed[1:4]] == [
        "src/pipeline/extra/where.py",
        "src/core/config.py",
        "src/core/errors.py",
    ]
    assert 'src.zip/src/pipeline/kernel_entry.py", line 8, in main' in result.stderr
    assert "raise RuntimeError('probe failure')" in result.stderr


@pytest.mark.slow
def test_bad_data_on_kaggle_is_a_one_line_error(built_script, tmp_path):
    competition = tmp_path / "input" / "digit-recognizer"
    write_dataset(competition)
    (competition / "train.csv").write_text("label,pixel0\n1,2\n")
    result = run_alone(built_script, "--input", tmp_path / "input", "--output", tmp_path / "working")
    assert_one_line_error(result, 2, "train.csv")
    assert not (tmp_path / "working" / "submission.csv").exists()


def test_script_without_data_is_a_one_line_error(built_script, tmp_path):
    (tmp_path / "input").mkdir()
    result = run_alone(built_script, "--input", tmp_path / "input", "--output", tmp_path / "working")
    assert_one_line_error(result, 2, "no train.csv in", "digit-recognizer")


@pytest.mark.parametrize("accuracy, words", [(None, NO_VALIDATION), (0.9875, "validation accuracy 0.9875")])
def test_closing_line_with_and_without_validation(accuracy, words, monkeypatch, tmp_path, capsys):
    # The pipeline and TensorFlow stand in as fakes: this checks only the line printed after the run.
    written = tmp_path / "working" / "submission.csv"
    result = SimpleNamespace(
        record=SimpleNamespace(validation=SimpleNamespace(accuracy=accuracy)), submission_path=written
    )
    monkeypatch.setitem(sys.modules, "src.pipeline.run", SimpleNamespace(run=lambda *arguments, **options: result))
    monkeypatch.setattr(kernel_entry, "import_tensorflow", lambda: None)
    write_dataset(tmp_path / "input" / "digit-recognizer")
    status = kernel_entry.main(Config(validation_split=0.0), ["--input", str(tmp_path / "input")])
    output = capsys.readouterr()
    assert status == 0, output.err
    assert output.out.splitlines()[-1] == f"{words}; wrote {written}"


@pytest.mark.parametrize("layout", [*LAYOUTS, "."])
def test_find_competition_dir(layout, tmp_path):
    write_dataset(tmp_path / layout)
    assert find_competition_dir(tmp_path) == tmp_path / layout


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_built_script_has_no_undefined_names_or_syntax_errors(built_script):
    result = run_command(
        "ruff", "check", "--no-cache", "--isolated", "--select", "F,E9", built_script, python=False, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_metadata(tmp_path):
    result = build(tmp_path, "--username", "tester", "--gpu")
    assert result.returncode == 0, result.stderr
    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    assert metadata["id"] == "tester/digit-recognizer-dense-network"
    assert metadata["code_file"] == CODE_FILE and (tmp_path / CODE_FILE).is_file()
    assert metadata["language"] == "python" and metadata["kernel_type"] == "script"
    assert metadata["competition_sources"] == ["digit-recognizer"]
    assert metadata["enable_internet"] is False and metadata["is_private"] is True
    assert metadata["enable_gpu"] is True and metadata["machine_shape"] == "NvidiaTeslaT4"


@pytest.mark.slow
def test_machine_shape_implies_a_gpu_and_cpu_has_none(tmp_path):
    assert build(tmp_path / "gpu", "--username", "tester", "--machine-shape", "NvidiaTeslaT4").returncode == 0
    metadata = json.loads((tmp_path / "gpu" / METADATA_FILE).read_text())
    assert metadata["enable_gpu"] is True and metadata["machine_shape"] == "NvidiaTeslaT4"
    assert build(tmp_path / "cpu", "--username", "tester").returncode == 0
    metadata = json.loads((tmp_path / "cpu" / METADATA_FILE).read_text())
    assert metadata["enable_gpu"] is False and "machine_shape" not in metadata


@pytest.mark.slow
def test_a_gpu_preset_turns_the_gpu_on_unless_told_not_to(tmp_path):
    assert build(tmp_path / "gpu", "--username", "tester", "--preset", "cnn-ensemble").returncode == 0
    metadata = json.loads((tmp_path / "gpu" / METADATA_FILE).read_text())
    assert metadata["enable_gpu"] is True and metadata["machine_shape"] == "NvidiaTeslaT4"
    assert build(tmp_path / "cpu", "--username", "tester", "--preset", "cnn-ensemble", "--no-gpu").returncode == 0
    metadata = json.loads((tmp_path / "cpu" / METADATA_FILE).read_text())
    assert metadata["enable_gpu"] is False and "machine_shape" not in metadata
    result = build(tmp_path / "both", "--username", "tester", "--no-gpu", "--machine-shape", "NvidiaTeslaT4")
    assert_one_line_error(result, 2, "--machine-shape names a GPU")


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--username", "tester", "--title", "Mine"], "the kernel title needs at least 5 characters"),
        (["--username", "tester", "--title=-----"], "the kernel title needs at least 5 characters"),
        (["--username", "two words"], "the kernel id must be USER/SLUG"),
    ],
)
def test_bad_metadata_is_refused_before_writing(flags, problem, tmp_path):
    result = build(tmp_path / "out", *flags)
    assert_one_line_error(result, 2, problem)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_username_comes_from_the_kaggle_configuration(tmp_path):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    env = {name: "" for name in os.environ if name.startswith("KAGGLE_")}
    env.update(HOME=str(home), KAGGLE_CONFIG_DIR=str(home / ".kaggle"))
    missing = build(tmp_path / "a", env=env)
    assert_one_line_error(missing, 2, "--username")

    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "from-file", "key": FAKE_KEY}))
    assert build(tmp_path / "b", env=env).returncode == 0
    assert json.loads((tmp_path / "b" / METADATA_FILE).read_text())["id"].startswith("from-file/")

    env["KAGGLE_USERNAME"] = "from-env"
    assert build(tmp_path / "c", "--title", "My Digits", "--public", env=env).returncode == 0
    metadata = json.loads((tmp_path / "c" / METADATA_FILE).read_text())
    assert metadata["id"] == "from-env/my-digits" and metadata["is_private"] is False
    assert FAKE_KEY not in (tmp_path / "c" / CODE_FILE).read_text()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"id": "tester/another-name"}, "does not match its title"),
        ({"id": "digit-recognizer-dense-network"}, "the kernel id must be USER/SLUG"),
        ({"competition_sources": []}, "competition_sources must include digit-recognizer"),
        ({"machine_shape": "NvidiaTeslaK80"}, "unknown machine_shape 'NvidiaTeslaK80'"),
    ],
)
def test_metadata_check_refuses_what_kaggle_would_not_push_as_named(change, problem):
    metadata = kernel_metadata("tester")
    check_metadata(metadata)
    with pytest.raises(UserError, match=re.escape(problem)):
        check_metadata({**metadata, **change})
