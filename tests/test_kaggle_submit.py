"""Submitting through the kaggle client against the loopback fake Kaggle."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from src.kaggle_io import RULES_URL
from tests.conftest import REPO_ROOT
from tests.fake_kaggle import FakeKaggle, kaggle_env
from tests.test_download import FAKE_KEY, closed_port_url, error_line

GOOD_ROWS = "".join(f"{image_id},{image_id % 10}\n" for image_id in range(1, 21))


def python_module(module, proxy_url, tmp_path, *args, credentials=True, extra=None):
    env = kaggle_env(os.environ, proxy_url, tmp_path / "home", credentials=credentials)
    env.update(extra or {})
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output and FAKE_KEY not in output
    return result


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("ImageId,Label\n" + GOOD_ROWS)
    return path


def test_upload_sends_the_file_and_prints_the_answer(good_file, tiny_data, tmp_path):
    with FakeKaggle() as fake:
        result = python_module("src.upload", fake.url, tmp_path, good_file, "-m", "first try", "--data", tiny_data)
    assert result.returncode == 0, result.stderr
    assert "Kaggle says: Successfully submitted to Digit Recognizer (submission 4242)" in result.stdout
    assert fake.uploads() == [good_file.read_bytes()]
    start = fake.calls("StartSubmissionUpload")[0].json()
    assert start["competitionName"] == "digit-recognizer" and start["fileName"] == "submission.csv"
    assert start["contentLength"] == good_file.stat().st_size
    create = fake.calls("CreateSubmission")[0].json()
    assert create == {
        "competitionName": "digit-recognizer",
        "blobFileTokens": "submission-token",
        "submissionDescription": "first try",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Id,Label\n" + GOOD_ROWS, "line 1: expected the header 'ImageId,Label'"),
        ("ImageId,Label\n" + GOOD_ROWS.replace("7,7\n", "7,10\n"), "line 8, column Label: expected a digit 0..9"),
        ("ImageId,Label\n" + GOOD_ROWS.replace("3,3\n", "4,3\n", 1), "line 4, column ImageId: expected 3"),
        ("ImageId,Label\n" + GOOD_ROWS[: GOOD_ROWS.index("20,")], "has 19 rows, expected 20"),
    ],
)
def test_upload_refuses_an_invalid_file_before_sending(text, problem, tiny_data, tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text(text)
    with FakeKaggle() as fake:
        result = python_module("src.upload", fake.url, tmp_path, path, "-m", "x", "--data", tiny_data)
    assert result.returncode == 2
    assert problem in error_line(result)
    assert fake.requests == []


def test_upload_without_test_csv_checks_the_format_only(good_file, tmp_path):
    with FakeKaggle() as fake:
        result = python_module("src.upload", fake.url, tmp_path, good_file, "-m", "x", "--data", tmp_path / "none")
    assert result.returncode == 0, result.stderr
    assert "row count is not checked" in result.stderr
    assert fake.uploads() == [good_file.read_bytes()]


def test_upload_without_credentials(good_file, tmp_path):
    with FakeKaggle() as fake:
        result = python_module("src.upload", fake.url, tmp_path, good_file, "-m", "x", credentials=False)
    assert result.returncode == 2
    assert "no Kaggle credentials found" in error_line(result) and "KAGGLE_API_TOKEN" in error_line(result)
    assert fake.requests == []


def test_upload_with_a_rejected_token(good_file, tmp_path):
    with FakeKaggle() as fake:
        env_token = {"KAGGLE_API_TOKEN": "fake-token-0123"}
        result = python_module(
            "src.upload", fake.url, tmp_path, good_file, "-m", "x", credentials=False, extra=env_token
        )
    assert result.returncode == 2
    assert "Kaggle did not accept the credentials in KAGGLE_API_TOKEN" in error_line(result)
    assert "fake-token-0123" not in result.stderr
    # The token is checked online (by `import kaggle` and by our sign-in); nothing is submitted.
    assert {request.path.rsplit("/", 1)[-1] for request in fake.requests} == {"IntrospectToken"}


@pytest.mark.parametrize(
    ("mode", "problem"),
    [("rules", "HTTP 403: You must accept this competition's rules"), ("error", "Kaggle's service failed (HTTP 500")],
)
def test_upload_refused_by_the_service(mode, problem, good_file, tmp_path):
    with FakeKaggle(mode=mode) as fake:
        result = python_module("src.upload", fake.url, tmp_path, good_file, "-m", "x")
    assert result.returncode == 2
    assert problem in error_line(result)
    if mode == "rules":
        assert RULES_URL in error_line(result)


def test_upload_whose_bytes_are_refused(good_file, tmp_path):
    with FakeKaggle(mode="upload-error") as fake:
        result = python_module("src.upload", fake.url, tmp_path, good_file, "-m", "x")
    assert result.returncode == 2
    assert "Kaggle did not accept the upload of" in error_line(result)
    assert len(fake.uploads()) == 1 and fake.calls("CreateSubmission") == []


def test_upload_with_the_network_down(good_file, tmp_path):
    result = python_module("src.upload", closed_port_url(), tmp_path, good_file, "-m", "x")
    assert result.returncode == 2
    assert "could not reach Kaggle to submit" in error_line(result)


def test_submit_flag_trains_then_uploads_the_new_file(tiny_data, tmp_path):
    out = tmp_path / "out" / "submission.csv"
    args = ["--data", tiny_data, "--out", out, "--epochs", "2", "--verbose", "0", "--submit", "-m", "2 epochs"]
    with FakeKaggle() as fake:
        result = python_module("src.submit", fake.url, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert f"submitted {out}; Kaggle says: Successfully submitted" in result.stdout
    assert fake.uploads() == [out.read_bytes()]
    assert fake.calls("CreateSubmission")[0].json()["submissionDescription"] == "2 epochs"


@pytest.mark.parametrize(
    ("flags", "credentials", "problem"),
    [
        (["--submit"], True, "--submit needs a message"),
        (["-m", "x"], True, "add --submit"),
        (["--submit", "-m", "x", "--sample"], True, "not the test set"),
        (["--submit", "-m", "x"], False, "no Kaggle credentials found"),
    ],
)
def test_submit_flag_problems_stop_before_training(flags, credentials, problem, tiny_data, tmp_path):
    out = tmp_path / "submission.csv"
    with FakeKaggle() as fake:
        result = python_module(
            "src.submit", fake.url, tmp_path, "--data", tiny_data, "--out", out, *flags, credentials=credentials
        )
    assert result.returncode == 2
    assert problem in error_line(result)
    assert not out.exists() and fake.requests == []


def test_failed_upload_keeps_the_new_file(tiny_data, tmp_path):
    out = tmp_path / "submission.csv"
    args = ["--data", tiny_data, "--out", out, "--epochs", "2", "--verbose", "0", "--submit", "-m", "x"]
    with FakeKaggle(mode="rules") as fake:
        result = python_module("src.submit", fake.url, tmp_path, *args)
    assert result.returncode == 2
    assert "HTTP 403" in error_line(result) and f"python -m src.upload {out}" in error_line(result)
    assert out.is_file() and fake.uploads() == []
