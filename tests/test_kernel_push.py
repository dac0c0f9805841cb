"""`scripts/push_kernel.sh`: build the kernel and push it through the real kaggle client to the fake API."""

from __future__ import annotations

import sys

import pytest

from src.kaggle.kernel_build import CODE_FILE
from tests.fake_kaggle import FakeKaggle, error_line, run_with_fake
from tests.helpers import REPO_ROOT, assert_one_line_error, run_command

# Every test here runs the script, in its own process.
pytestmark = pytest.mark.slow
SCRIPT = REPO_ROOT / "scripts" / "push_kernel.sh"


def push(url, tmp_path, *flags, credentials=True):
    extra = {"PYTHON": sys.executable, "KERNEL_DIR": str(tmp_path / "kernel")}
    return run_with_fake(
        SCRIPT,
        *flags,
        url=url,
        home=tmp_path / "home",
        credentials=credentials,
        extra=extra,
        python=False,
        cwd=tmp_path,
    )


def test_push_kernel_sends_the_built_script(tmp_path):
    with FakeKaggle() as fake:
        result = push(fake.url, tmp_path, "--epochs", "3")
    assert result.returncode == 0, result.stderr
    assert "pushed fake-user/digit-recognizer-dense-network version 3" in result.stdout
    assert "kernel-output fake-user/digit-recognizer-dense-network submissions/kernel" in result.stdout
    sent = fake.calls("SaveKernel")[0].json()
    assert sent["slug"] == "fake-user/digit-recognizer-dense-network"
    assert sent["newTitle"] == "Digit Recognizer Dense Network"
    assert sent["text"] == (tmp_path / "kernel" / CODE_FILE).read_text()
    assert '"epochs": 3,' in sent["text"]
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


def test_a_network_that_cannot_build_is_never_pushed(tmp_path):
    impossible = ("--family", "cnn", "--scaling", "unit", "--downsample", "pool", "--filters", "1,1,1,1,1,1")
    with FakeKaggle() as fake:
        result = push(fake.url, tmp_path, *impossible)
    assert result.returncode == 2 and "the image shrinks to nothing at block5_pool" in error_line(result)
    assert fake.requests == [] and not (tmp_path / "kernel").exists()


@pytest.mark.parametrize("title", ["Digit \udcff Recognizer", "Digit \x1b[31m Recognizer"], ids=["surrogate", "escape"])
def test_a_title_that_is_not_printable_text_is_refused_in_one_line(title, tmp_path):
    result = run_command(
        "-m", "src.kernel", "--username", "fake-user", "--title", title, "--out-dir", tmp_path / "kernel"
    )
    line = assert_one_line_error(result, 2, "the kernel title holds a character that is not printable text")
    assert "\x1b" not in line and not (tmp_path / "kernel").exists()
