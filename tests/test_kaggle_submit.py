"""Submitting, listing submissions and following kernels with the real kaggle client against the fake Kaggle."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from src.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_KAGGLE_CREDENTIALS,
    EXIT_KAGGLE_FAILED,
    EXIT_KAGGLE_REFUSED,
    EXIT_KAGGLE_UNAVAILABLE,
    EXIT_OUTPUT_CLOSED,
    EXIT_TIMED_OUT,
    EXIT_USER,
)
from src.core.files import sha256
from src.data.competition import RULES_URL
from src.kaggle.client import state_name
from src.kaggle.polling import Progress
from src.runs.record import KaggleSubmission, RunRecord
from tests.fake_kaggle import (
    FAKE_KEY,
    FAKE_TOKEN,
    FAKE_USER,
    STUB_SCRIPT,
    FakeKaggle,
    closed_port_url,
    kaggle_env,
    run_with_fake,
    write_stub_kernel,
)
from tests.fake_kaggle import (
    STUB_KERNEL_ID as KERNEL_ID,
)
from tests.helpers import GOOD_ROWS, REPO_ROOT, assert_one_line_error, start_command


def upload(url, tmp_path, *args, **options):
    return run_with_fake("-m", "src.upload", *args, url=url, home=tmp_path / "home", **options)


def ledger_rows(tmp_path) -> list[dict]:
    """The ledger the commands wrote (kaggle_env puts it beside the fake home)."""
    with open(tmp_path / "home" / "ledger.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_upload_sends_the_file_and_prints_the_answer(good_file, tiny_data, tmp_path):
    with FakeKaggle() as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "first try", "--data", tiny_data)
    assert result.returncode == 0, result.stderr
    assert "Kaggle says: Successfully submitted to Digit Recognizer (submission 4242)" in result.stdout
    assert result.stdout.splitlines()[-1] == "public score 0.91234 (submission 4242)"
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


def test_upload_waits_for_the_score_and_keeps_it_in_the_ledger(good_file, tiny_data, tmp_path):
    with FakeKaggle(scoring=["PENDING", "PENDING", "COMPLETE"], public_score="0.87650") as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "pending twice", "--data", tiny_data)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(",")[0] for line in lines[1:3]] == ["waiting for Kaggle to score submission 4242: pending"] * 2
    assert lines[1].endswith(" s") and lines[-1] == "public score 0.87650 (submission 4242)"
    assert [call.json() for call in fake.calls("GetSubmission")] == [{"ref": 4242}] * 3
    [row] = ledger_rows(tmp_path)
    assert (row["kaggle_ref"], row["status"], row["public_score"]) == ("4242", "complete", "0.87650")
    assert (row["file"], row["sha256"], row["message"]) == (str(good_file), sha256(good_file), "pending twice")
    # A file without a record beside it came from elsewhere: no run, no local accuracy.
    assert (row["settings"], row["run_folder"], row["local_accuracy"]) == ("unknown", "", "")


def test_a_scoring_error_exits_6_with_kaggles_reason(good_file, tiny_data, tmp_path):
    reason = "Submission has 20 rows, expected 28000"
    with FakeKaggle(scoring=["PENDING", "ERROR"], scoring_error=reason) as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "x", "--data", tiny_data)
    assert_one_line_error(result, EXIT_KAGGLE_FAILED, "Kaggle could not score submission 4242 (error)", reason)
    assert "submitted" in result.stdout  # the file did arrive
    assert [(row["status"], row["public_score"]) for row in ledger_rows(tmp_path)] == [("error", "")]


def test_a_time_out_says_how_to_look_the_score_up_later(good_file, tiny_data, tmp_path):
    with FakeKaggle(scoring=["PENDING"]) as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "x", "--data", tiny_data, "--wait-timeout", "0.3")
    assert_one_line_error(result, EXIT_TIMED_OUT, "submission 4242 was not scored within 0.3 s", "python -m src.ledger")
    assert len(fake.calls("GetSubmission")) >= 2
    assert [(row["kaggle_ref"], row["status"]) for row in ledger_rows(tmp_path)] == [("4242", "pending")]


def test_no_wait_leaves_the_row_pending(good_file, tiny_data, tmp_path):
    with FakeKaggle() as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "x", "--data", tiny_data, "--no-wait")
    assert result.returncode == 0, result.stderr
    assert "not waiting for the score: python -m src.ledger" in result.stdout
    assert fake.calls("GetSubmission") == []
    assert [row["status"] for row in ledger_rows(tmp_path)] == ["pending"]


@pytest.mark.slow
def test_ctrl_c_while_waiting_says_the_file_is_on_kaggle(good_file, tiny_data, tmp_path):
    with FakeKaggle(scoring=["PENDING"]) as fake:
        env = kaggle_env(os.environ, fake.url, tmp_path / "home")
        process = start_command("-m", "src.upload", good_file, "-m", "x", "--data", tiny_data, env=env)
        deadline = time.monotonic() + 120
        while len(fake.calls("GetSubmission")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stdout + stderr
    assert stderr.splitlines()[-1].startswith(
        "interrupted: submission 4242 is on Kaggle; its score later: python -m src.ledger"
    )
    assert [(row["kaggle_ref"], row["status"]) for row in ledger_rows(tmp_path)] == [("4242", "pending")]


@pytest.mark.slow
def test_a_closed_output_after_the_upload_keeps_its_ledger_row_and_says_the_file_is_on_kaggle(
    good_file, tiny_data, tmp_path
):
    with FakeKaggle(scoring=["PENDING"]) as fake:
        env = kaggle_env(os.environ, fake.url, tmp_path / "home")
        process = start_command("-m", "src.upload", good_file, "-m", "x", "--data", tiny_data, env=env)
        process.stdout.close()  # `| head -0`: gone before the first line
        stderr = process.stderr.read()
        process.wait(timeout=120)
    assert process.returncode == EXIT_OUTPUT_CLOSED, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("stopped (output closed): submission 4242 is on Kaggle; its score later: python -m")
    assert [(row["kaggle_ref"], row["status"]) for row in ledger_rows(tmp_path)] == [("4242", "pending")]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal_and_adds_lines_elsewhere():
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = Progress(stream)
        progress.show("pending, 10 s")
        progress.show("pending, 5 s")
        progress.close()
    assert terminal.getvalue() == "\rpending, 10 s\rpending, 5 s \n"
    assert log.getvalue() == "pending, 10 s\npending, 5 s\n"


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon"])
def test_wait_timeout_must_be_a_positive_number(value, good_file, tiny_data, tmp_path):
    with FakeKaggle() as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "x", "--data", tiny_data, "--wait-timeout", value)
    assert_one_line_error(result, EXIT_USER, "argument --wait-timeout: expected a number of seconds")
    assert fake.requests == []


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
        result = upload(fake.url, tmp_path, path, "-m", "x", "--data", tiny_data)
    assert_one_line_error(result, EXIT_USER, problem)
    assert fake.requests == []


def test_upload_without_test_csv_expects_the_competitions_28000_rows(good_file, tmp_path):
    with FakeKaggle() as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "x", "--data", tmp_path / "none")
    assert_one_line_error(result, EXIT_USER, "has 20 rows, expected 28000")
    assert fake.requests == []


def test_upload_without_credentials(good_file, tiny_data, tmp_path):
    with FakeKaggle() as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "x", "--data", tiny_data, credentials=False)
    assert_one_line_error(result, EXIT_KAGGLE_CREDENTIALS, "no Kaggle credentials found", "KAGGLE_API_TOKEN")
    assert fake.requests == []


def test_upload_with_a_rejected_token(good_file, tiny_data, tmp_path):
    with FakeKaggle() as fake:
        result = upload(
            fake.url,
            tmp_path,
            *(good_file, "-m", "x", "--data", tiny_data),
            credentials=False,
            extra={"KAGGLE_API_TOKEN": FAKE_TOKEN},
        )
    assert_one_line_error(result, EXIT_KAGGLE_CREDENTIALS, "Kaggle did not accept the credentials in KAGGLE_API_TOKEN")
    # The token is checked online (by `import kaggle` and by our sign-in); nothing is submitted.
    assert {request.path.rsplit("/", 1)[-1] for request in fake.requests} == {"IntrospectToken"}


def test_upload_with_a_rejected_key_is_one_line(good_file, tiny_data, tmp_path):
    with FakeKaggle(mode="unauthorized") as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "x", "--data", tiny_data)
    line = assert_one_line_error(result, EXIT_KAGGLE_CREDENTIALS, "did not accept your credentials", "HTTP 401")
    assert result.stderr.splitlines()[0] == line
    assert fake.uploads() == []


@pytest.mark.parametrize(
    ("mode", "exit_code", "problem"),
    [
        ("rules", EXIT_KAGGLE_REFUSED, "HTTP 403: You must accept this competition's rules"),
        ("error", EXIT_KAGGLE_UNAVAILABLE, "Kaggle's service failed to submit (HTTP 500"),
        ("upload-error", EXIT_KAGGLE_UNAVAILABLE, "Kaggle did not accept the upload of"),
    ],
)
def test_upload_refused_or_failed_by_the_service(mode, exit_code, problem, good_file, tiny_data, tmp_path):
    with FakeKaggle(mode=mode) as fake:
        result = upload(fake.url, tmp_path, good_file, "-m", "x", "--data", tiny_data)
    line = assert_one_line_error(result, exit_code, problem)
    if mode == "rules":
        assert RULES_URL in line
    assert fake.calls("CreateSubmission") == []


def test_upload_with_the_network_down(good_file, tiny_data, tmp_path):
    result = upload(closed_port_url(), tmp_path, good_file, "-m", "x", "--data", tiny_data)
    assert_one_line_error(result, EXIT_KAGGLE_UNAVAILABLE, "could not reach Kaggle to submit")


@pytest.mark.slow
def test_a_403_exits_the_same_from_every_command(good_file, tiny_data, tmp_path):
    """download.sh, src.upload and src.submit --submit: one kind of failure, one exit code."""
    out = tmp_path / "out" / "submission.csv"
    train = ("--data", tiny_data, "--out", out, "--epochs", "1", "--verbose", "0", "--no-report")
    with FakeKaggle(mode="rules") as fake:
        results = [
            run_with_fake(
                REPO_ROOT / "scripts" / "download.sh",
                tmp_path / "data",
                url=fake.url,
                home=tmp_path / "home",
                extra={"PYTHON": sys.executable},
                python=False,
            ),
            upload(fake.url, tmp_path, good_file, "-m", "x", "--data", tiny_data),
            run_with_fake(
                "-m", "src.submit", *train, "--submit", "--force", "-m", "x", url=fake.url, home=tmp_path / "home"
            ),
        ]
    for result in results:
        assert_one_line_error(result, EXIT_KAGGLE_REFUSED, "HTTP 403", RULES_URL)
    # The trained file is kept, unsent, and the line says how to send it later.
    assert f"{out} is kept: send it later with python -m src.upload {out}" in results[-1].stderr
    assert out.is_file() and fake.uploads() == []


@pytest.mark.slow
def test_submit_flag_trains_then_uploads_the_new_file(tiny_data, tmp_path):
    out = tmp_path / "out" / "submission.csv"
    args = [
        "--data",
        tiny_data,
        "--out",
        out,
        "--epochs",
        "2",
        "--verbose",
        "0",
        "--submit",
        "--force",
        "-m",
        "2 epochs",
    ]
    with FakeKaggle() as fake:
        result = run_with_fake("-m", "src.submit", *args, url=fake.url, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert f"submitted {out}; Kaggle says: Successfully submitted" in result.stdout
    assert result.stdout.splitlines()[-1] == "public score 0.91234 (submission 4242)"
    assert fake.uploads() == [out.read_bytes()]
    assert fake.calls("CreateSubmission")[0].json()["submissionDescription"] == "2 epochs"
    # Kaggle's answer is in both records of the run, and in the ledger beside its local accuracy.
    record = json.loads(out.with_suffix(".json").read_text())
    run_record = json.loads((Path(record["run_dir"]) / "record.json").read_text())
    expected = {"ref": 4242, "message": "2 epochs", "status": "complete", "public_score": 0.91234}
    assert record["kaggle"] == run_record["kaggle"] == expected
    # The typed record reads it back: the report and --compare still open the run.
    assert RunRecord.from_json(out.with_suffix(".json")).kaggle == KaggleSubmission(**expected)
    [row] = ledger_rows(tmp_path)
    assert row["run_folder"] == record["run_dir"] and row["settings"] == "h20-15_e2_f1_s42_train80"
    assert float(row["local_accuracy"]) == pytest.approx(record["validation"]["accuracy"], abs=1e-6)
    assert (row["validation"], row["public_score"], row["sha256"]) == ("holdout", "0.91234", sha256(out))


@pytest.mark.parametrize(
    ("flags", "credentials", "exit_code", "problem"),
    [
        (["--submit"], True, EXIT_USER, "--submit needs a message"),
        (["-m", "x"], True, EXIT_USER, "add --submit"),
        (["--submit", "-m", "x", "--sample"], True, EXIT_USER, "not the test set"),
        (["--submit", "-m", "x"], False, EXIT_KAGGLE_CREDENTIALS, "no Kaggle credentials found"),
    ],
)
def test_submit_flag_problems_stop_before_training(flags, credentials, exit_code, problem, tiny_data, tmp_path):
    out = tmp_path / "submission.csv"
    with FakeKaggle() as fake:
        result = run_with_fake(
            *("-m", "src.submit", "--data", tiny_data, "--out", out, *flags),
            url=fake.url,
            home=tmp_path / "home",
            credentials=credentials,
        )
    assert_one_line_error(result, exit_code, problem)
    assert not out.exists() and fake.requests == []


def kaggle_command(url, tmp_path, *args):
    return run_with_fake("-m", "src.kaggle", *args, url=url, home=tmp_path / "home")


def test_submissions_list(tmp_path):
    listed = [
        {
            "ref": 4243,
            "date": "2026-11-30T01:02:03.456Z",
            "description": "wide, 5 folds",
            "status": "COMPLETE",
            "publicScore": "0.97400",
        },
        {"ref": 4242, "date": "2026-11-29T08:00:00Z", "description": "tutorial", "status": "PENDING"},
    ]
    with FakeKaggle(submissions=listed) as fake:
        result = kaggle_command(fake.url, tmp_path, "submissions")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "4243\t2026-11-30 01:02\tcomplete\t0.97400\twide, 5 folds",
        "4242\t2026-11-29 08:00\tpending\t-\ttutorial",
    ]
    assert fake.calls("ListSubmissions")[0].json()["competitionName"] == "digit-recognizer"


def test_kernel_status_follows_the_run_and_reports_a_failure(tmp_path):
    with FakeKaggle(kernel_states=["QUEUED", "RUNNING", "ERROR"], kernel_failure="Your notebook hit an error") as fake:
        states = [kaggle_command(fake.url, tmp_path, "kernel-status", KERNEL_ID) for _ in range(3)]
    assert [result.stdout.strip() for result in states] == [
        f"{KERNEL_ID}: queued: Your notebook hit an error",
        f"{KERNEL_ID}: running: Your notebook hit an error",
        f"{KERNEL_ID}: error: Your notebook hit an error",
    ]
    sent = fake.calls("GetKernelSessionStatus")[0].json()
    assert sent == {"userName": "fake-user", "kernelSlug": "digit-recognizer-dense-network"}


@pytest.mark.parametrize(
    ("printed", "state"),
    [
        ("KernelWorkerStatus.COMPLETE", "complete"),
        ("complete", "complete"),
        ("cancelAcknowledged", "cancel_acknowledged"),
    ],
)
def test_kernel_states_from_kaggle_2_and_1_6_read_the_same(printed, state):
    assert state_name(printed) == state


def test_kernel_output_downloads_files_and_log(tmp_path):
    files = {"submission.csv": ("ImageId,Label\n" + GOOD_ROWS).encode(), "submission.json": b'{"seed": 7}'}
    with FakeKaggle(kernel_files=files, kernel_log="epoch 1/2\nepoch 2/2\n") as fake:
        result = kaggle_command(fake.url, tmp_path, "kernel-output", KERNEL_ID, tmp_path / "output")
    assert result.returncode == 0, result.stderr
    for name, content in files.items():
        assert (tmp_path / "output" / name).read_bytes() == content
    assert (tmp_path / "output" / "digit-recognizer-dense-network.log").read_text() == "epoch 1/2\nepoch 2/2\n"
    assert len(result.stdout.splitlines()) == 3


@pytest.mark.parametrize("where", ["submissions", "data", "a run folder"])
def test_kernel_output_never_replaces_local_files(where, tmp_path):
    folder = tmp_path / where
    folder.mkdir()
    if where == "a run folder":
        (folder / "record.json").write_text("{}")
        target = folder / "kernel"
    else:
        (folder / "submission.csv" if where == "submissions" else folder / "train.csv").write_text("kept\n")
        target = folder
    before = {path: path.read_bytes() for path in folder.rglob("*")}
    files = {"submission.csv": ("ImageId,Label\n" + GOOD_ROWS).encode(), "train.csv": b"label\n"}
    with FakeKaggle(kernel_files=files) as fake:
        result = kaggle_command(fake.url, tmp_path, "kernel-output", KERNEL_ID, target)
    fragment = "is inside the run folder" if where == "a run folder" else "not a new or empty folder"
    assert_one_line_error(result, EXIT_USER, fragment)
    assert {path: path.read_bytes() for path in folder.rglob("*")} == before
    assert fake.calls("ListKernelSessionOutput") == []


def test_kernel_of_another_account_is_refused(tmp_path):
    with FakeKaggle(mode="rules") as fake:
        result = kaggle_command(fake.url, tmp_path, "kernel-status", KERNEL_ID)
    assert_one_line_error(result, EXIT_KAGGLE_REFUSED, "no such kernel, or it is private")


def test_push_kernel(tmp_path):
    folder = write_stub_kernel(tmp_path / "kernel")
    with FakeKaggle() as fake:
        result = kaggle_command(fake.url, tmp_path, "push-kernel", folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"pushed {KERNEL_ID} version 3: https://www.kaggle.com/code/{KERNEL_ID}"
    sent = fake.calls("SaveKernel")[0].json()
    assert sent["slug"] == KERNEL_ID and sent["text"] == STUB_SCRIPT


@pytest.mark.parametrize(
    ("mode", "title", "exit_code", "problem"),
    [
        ("rules", "Digit Recognizer Dense Network", EXIT_KAGGLE_REFUSED, "Kaggle refused to push the kernel (HTTP 403"),
        ("kernel-error", "Digit Recognizer Dense Network", EXIT_KAGGLE_REFUSED, "Notebook title is already in use"),
        ("ok", "Dig", EXIT_USER, "the kernel title needs at least 5 characters"),
    ],
)
def test_push_kernel_refused(mode, title, exit_code, problem, tmp_path):
    folder = write_stub_kernel(tmp_path / "kernel", title=title)
    with FakeKaggle(mode=mode) as fake:
        result = kaggle_command(fake.url, tmp_path, "push-kernel", folder)
    assert_one_line_error(result, exit_code, problem)


def test_credentials_are_named_never_shown(tmp_path):
    with FakeKaggle() as fake:
        result = kaggle_command(fake.url, tmp_path, "credentials")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Kaggle credentials: KAGGLE_USERNAME/KAGGLE_KEY\n"
    assert fake.requests == []


def test_each_command_in_a_test_reads_its_own_kaggle_json(tmp_path):
    # The kaggle package finds its configuration folder once, when first imported; a command run in the test's
    # process must still read the kaggle.json of its own HOME, as a process of its own would.
    with FakeKaggle() as fake:
        first = kaggle_command(fake.url, tmp_path / "first", "submissions")
        home = tmp_path / "second" / "home"
        (home / ".kaggle").mkdir(parents=True)
        (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": FAKE_USER, "key": FAKE_KEY}))
        second = run_with_fake("-m", "src.kaggle", "submissions", url=fake.url, home=home, credentials=False)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
