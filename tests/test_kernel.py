"""The kernel build (`python -m src.kernel`), the built script itself, and the push."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from src.config import UserError
from src.files import sha256
from src.kernel import CODE_FILE, METADATA_FILE, inline_modules
from src.kernel_entry import find_competition_dir
from src.submission import validate_submission
from tests.conftest import REPO_ROOT
from tests.fake_kaggle import FAKE_KEY, FakeKaggle, error_line, kaggle_env
from tests.synthetic import write_dataset

BUILD_FLAGS = ["--epochs", "2", "--hidden-units", "16,8", "--scaling", "unit", "--seed", "7"]


def build_kernel(out_dir, *flags, env=None):
    return subprocess.run(
        [sys.executable, "-m", "src.kernel", "--out-dir", str(out_dir), *flags],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def built_script(tmp_path_factory) -> Path:
    """The built script, copied alone into an empty folder so that it cannot import `src`."""
    out_dir = tmp_path_factory.mktemp("kernel")
    result = build_kernel(out_dir, "--username", "tester", *BUILD_FLAGS)
    assert result.returncode == 0, result.stderr
    alone = tmp_path_factory.mktemp("alone") / CODE_FILE
    shutil.copy(out_dir / CODE_FILE, alone)
    return alone


def run_script(script, cwd, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def local_submission(tmp_path_factory) -> Path:
    """What `python -m src.submit` writes with the same flags on the same tiny data."""
    data = write_dataset(tmp_path_factory.mktemp("local") / "data")
    out = data.parent / "submission.csv"
    command = [sys.executable, "-m", "src.submit", "--data", data, "--out", out, "--verbose", "0", *BUILD_FLAGS]
    result = subprocess.run(list(map(str, command)), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("layout", ["digit-recognizer", "competitions/digit-recognizer"])
def test_built_script_runs_on_kaggles_input_layouts(built_script, local_submission, layout, tmp_path):
    write_dataset(tmp_path / "input" / layout)
    result = run_script(built_script, tmp_path, "--input", tmp_path / "input", "--output", tmp_path / "working")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "Traceback" not in result.stderr
    submission = tmp_path / "working" / "submission.csv"
    validate_submission(submission, n_rows=20)
    record = json.loads((tmp_path / "working" / "submission.json").read_text())
    assert record["config"]["epochs"] == 2 and record["config"]["hidden_units"] == [16, 8]
    # The same settings as the local run: the same seed gives the same bytes.
    assert sha256(submission) == sha256(local_submission)


@pytest.mark.parametrize("layout", ["digit-recognizer", "competitions/digit-recognizer", "."])
def test_find_competition_dir(layout, tmp_path):
    write_dataset(tmp_path / layout)
    assert find_competition_dir(tmp_path) == tmp_path / layout


def test_built_script_without_data_is_a_one_line_error(built_script, tmp_path):
    (tmp_path / "input").mkdir()
    result = run_script(built_script, tmp_path, "--input", tmp_path / "input", "--output", tmp_path / "out")
    assert result.returncode == 2
    assert "no train.csv in" in error_line(result) and "digit-recognizer" in error_line(result)
    assert not (tmp_path / "out" / "submission.csv").exists()


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_built_script_has_no_undefined_or_redefined_names(built_script):
    result = subprocess.run(
        ["ruff", "check", "--no-cache", "--isolated", "--select", "F,E9", str(built_script)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_metadata(tmp_path):
    result = build_kernel(tmp_path, "--username", "tester", "--gpu")
    assert result.returncode == 0, result.stderr
    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    assert metadata["id"] == "tester/digit-recognizer-dense-network"
    assert metadata["code_file"] == CODE_FILE and (tmp_path / CODE_FILE).is_file()
    assert metadata["language"] == "python" and metadata["kernel_type"] == "script"
    assert metadata["competition_sources"] == ["digit-recognizer"]
    assert metadata["enable_internet"] is False and metadata["enable_gpu"] is True and metadata["is_private"] is True


def test_username_comes_from_the_kaggle_configuration(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(home), KAGGLE_CONFIG_DIR=str(home / ".kaggle"))
    (home / ".kaggle").mkdir(parents=True)
    missing = build_kernel(tmp_path / "a", env=env)
    assert missing.returncode == 2 and "--username" in error_line(missing)

    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "from-file", "key": FAKE_KEY}))
    assert build_kernel(tmp_path / "b", env=env).returncode == 0
    assert json.loads((tmp_path / "b" / METADATA_FILE).read_text())["id"].startswith("from-file/")

    env["KAGGLE_USERNAME"] = "from-env"
    assert build_kernel(tmp_path / "c", "--title", "My Digits", "--public", env=env).returncode == 0
    metadata = json.loads((tmp_path / "c" / METADATA_FILE).read_text())
    assert metadata["id"] == "from-env/my-digits" and metadata["is_private"] is False


def write_package(directory: Path, modules: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in modules.items():
        (directory / f"{name}.py").write_text(text)
    return directory


def test_modules_come_after_what_they_import_and_lazy_imports_are_inlined(tmp_path):
    package = write_package(
        tmp_path / "pkg",
        {
            "entry": "from .middle import double\n\ndef main():\n    from .late import LATE\n    return double(LATE)\n",
            "middle": '"""Doubling."""\nfrom .base import BASE\n\ndef double(x):\n    return 2 * x + BASE\n',
            "base": "import math\n\nBASE = int(math.sqrt(100))\n",
            "late": "from .base import BASE\n\nLATE = BASE + 1\n\nif __name__ == '__main__':\n    LATE = 0\n",
        },
    )
    code, names = inline_modules(package, "entry", trailer="\nRESULT = main()\n")
    assert names == ["base", "middle", "entry", "late"]
    assert "from ." not in code and "    pass" in code and "__main__" not in code
    namespace: dict = {}
    exec(compile(code, "kernel", "exec"), namespace)
    assert namespace["RESULT"] == 2 * 11 + 10


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("from . import helper\n", "`from . import ...` cannot be inlined"),
        ("import pkg.helper\n", "`import pkg.helper` cannot be inlined"),
        ("from pkg.helper import VALUE\n", "`from pkg.helper import ...` cannot be inlined"),
        ("from .helper import VALUE as OTHER\n", "`from .helper import VALUE as OTHER` cannot be inlined"),
        ("from .helper import VALUE\n\nVALUE = 2\n", "`VALUE` is defined at top level in both"),
        ("from .helper import VALUE\nfrom json import loads\n", "`loads` is defined at top level in both"),
        ("import requests\n", "imports requests, which Kaggle's Python image may lack"),
        ("from .helper import VALUE\n", "circular imports entry -> helper -> entry"),
    ],
)
def test_what_the_builder_cannot_inline_fails_loudly(entry, problem, tmp_path):
    helper = "VALUE = 1\n\n\ndef loads(text):\n    return text\n"
    if "circular" in problem:
        helper = "from .entry import X\n\nVALUE = 1\n"
    package = write_package(tmp_path / "pkg", {"entry": entry, "helper": helper})
    with pytest.raises(UserError, match=problem.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        inline_modules(package, "entry")


def test_the_trailer_may_not_shadow_a_module_name(tmp_path):
    package = write_package(tmp_path / "pkg", {"entry": "CONFIG = 1\n"})
    with pytest.raises(UserError, match="`CONFIG` is defined at top level in both .*entry.py:1 and the generated"):
        inline_modules(package, "entry", trailer="CONFIG = 2\n")


def push(proxy_url, tmp_path, *flags, credentials=True):
    env = kaggle_env(os.environ, proxy_url, tmp_path / "home", credentials=credentials)
    env.update(PYTHON=sys.executable, KERNEL_DIR=str(tmp_path / "kernel"))
    script = REPO_ROOT / "scripts" / "push_kernel.sh"
    result = subprocess.run([str(script), *flags], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stdout + result.stderr and FAKE_KEY not in result.stdout + result.stderr
    return result


def test_push_kernel_sends_the_built_script(tmp_path):
    with FakeKaggle() as fake:
        result = push(fake.url, tmp_path, "--epochs", "3")
    assert result.returncode == 0, result.stderr
    assert "pushed fake-user/digit-recognizer-dense-network version 3" in result.stdout
    assert "does not resolve to the specified id" not in result.stdout
    assert "kernel-output fake-user/digit-recognizer-dense-network submissions/kernel" in result.stdout
    sent = fake.calls("SaveKernel")[0].json()
    assert sent["slug"] == "fake-user/digit-recognizer-dense-network"
    assert sent["newTitle"] == "Digit Recognizer Dense Network"
    assert sent["text"] == (tmp_path / "kernel" / CODE_FILE).read_text()
    assert "epochs=3" in sent["text"]
    assert sent["language"] == "python" and sent["kernelType"] == "script"
    assert sent["competitionDataSources"] == ["digit-recognizer"]
    assert sent["isPrivate"] is True and sent.get("enableInternet", False) is False


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        ("rules", "Kaggle refused to push the kernel (HTTP 403"),
        ("kernel-error", "Kaggle refused the kernel in"),
    ],
)
def test_push_kernel_refused(mode, problem, tmp_path):
    with FakeKaggle(mode=mode) as fake:
        result = push(fake.url, tmp_path)
    assert result.returncode == 4
    assert problem in error_line(result)


def test_push_kernel_without_credentials(tmp_path):
    with FakeKaggle() as fake:
        result = push(fake.url, tmp_path, credentials=False)
    assert result.returncode == 3 and "no Kaggle credentials found" in error_line(result)
    assert fake.requests == [] and not (tmp_path / "kernel").exists()


def test_push_kernel_help_needs_no_credentials(tmp_path):
    with FakeKaggle() as fake:
        result = push(fake.url, tmp_path, "--help", credentials=False)
    assert result.returncode == 0
    assert "usage: scripts/push_kernel.sh" in result.stdout and "--folds" in result.stdout
    assert fake.requests == [] and not (tmp_path / "kernel").exists()
