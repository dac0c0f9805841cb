"""A kernel's run on the fake Kaggle: push and wait, fetch the output, compare with a local run, submit; failures."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import pytest

from src.core.errors import EXIT_KAGGLE_FAILED, EXIT_TIMED_OUT, EXIT_USER
from src.runs.record import RunRecord
from tests.fake_kaggle import (
    FAKE_TOKEN,
    FAKE_USER,
    FakeKaggle,
    assert_no_secret_in_files,
    run_with_fake,
    write_stub_kernel,
)
from tests.fake_kaggle import (
    STUB_KERNEL_ID as KERNEL_ID,
)
from tests.helpers import REPO_ROOT, assert_one_line_error

LOG = [
    {"stream_name": "stdout", "time": 1.5, "data": "epoch 1/2\n"},
    {"stream_name": "stdout", "time": 2.5, "data": "epoch 2/2\n"},
    {"stream_name": "stderr", "time": 3.0, "data": "ValueError: the input is not what it should be\n"},
]


@pytest.fixture
def local_run(small_runs) -> dict:
    """A shared real local run on tiny data (a single model, held out): its data folder, runs folder, submission
    and record."""
    result = small_runs["single"]
    return {
        "data": small_runs.data["data"],
        "runs": result.run_dir.parent,
        "submission": result.submission_path.read_bytes(),
        "record": json.loads(result.record_path.read_text()),
    }


def kernel_files(local_run: dict, submission: bytes | None = None) -> dict[str, bytes]:
    """What the kernel's run on Kaggle leaves in /kaggle/working: the same code, settings and data as the local run."""
    name = Path(local_run["record"]["run_dir"]).name
    submission = local_run["submission"] if submission is None else submission
    written = {**local_run["record"]["submission"], "path": "/kaggle/working/submission.csv"}
    written["sha256"] = hashlib.sha256(submission).hexdigest()
    record = {**local_run["record"], "run_dir": f"/kaggle/working/runs/{name}", "submission": written}
    record_bytes = json.dumps(record, indent=2).encode()
    return {
        "submission.csv": submission,
        "submission.json": record_bytes,
        f"runs/{name}/record.json": record_bytes,
        f"runs/{name}/submission.csv": submission,
    }


def kernel_wait(url, tmp_path, *args):
    return run_with_fake(
        *("-m", "src.kaggle", "kernel-wait", KERNEL_ID, "--kernel-dir", tmp_path / "kernel", "--timeout", "30", *args),
        url=url,
        home=tmp_path / "home",
    )


@pytest.mark.slow
def test_push_wait_compare_and_submit_with_a_token_that_is_never_written(local_run, tmp_path):
    """scripts/push_kernel.sh --wait --submit: the whole loop, signed in with KAGGLE_API_TOKEN."""
    follow = ("--wait", "--timeout", "30", "--runs", local_run["runs"], "--data", local_run["data"])
    with FakeKaggle(
        kernel_states=["QUEUED", "RUNNING", "RUNNING", "COMPLETE"],
        kernel_files=kernel_files(local_run),
        kernel_log=json.dumps(LOG),
        accept_token=True,
    ) as fake:
        result = run_with_fake(
            *(
                REPO_ROOT / "scripts" / "push_kernel.sh",
                "--epochs",
                "2",
                *follow,
                "--submit",
                "--force",
                "-m",
                "kernel run",
            ),
            url=fake.url,
            home=tmp_path / "home",
            credentials=False,
            extra={
                "KAGGLE_API_TOKEN": FAKE_TOKEN,
                "KAGGLE_USERNAME": FAKE_USER,
                "KERNEL_DIR": str(tmp_path / "kernel"),
                "PYTHON": sys.executable,
            },
            python=False,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"pushed {KERNEL_ID} version 3: https://www.kaggle.com/code/{KERNEL_ID}" in lines
    polls = [line.split(",")[0] for line in lines if line.startswith(f"kernel {KERNEL_ID}: ") and line.endswith(" s")]
    assert polls == [f"kernel {KERNEL_ID}: queued", f"kernel {KERNEL_ID}: running", f"kernel {KERNEL_ID}: running"]
    [output] = (tmp_path / "kernel" / "output").iterdir()
    assert f"kernel {KERNEL_ID}: complete; its output is in {output}" in lines
    accuracy = local_run["record"]["validation"]["accuracy"]
    assert f"kernel's holdout accuracy: {accuracy:.4f}" in lines
    local = Path(local_run["record"]["run_dir"])
    assert f"against the local run {local}: identical bytes" in lines
    assert lines[-1] == "public score 0.91234 (submission 4242)"
    assert fake.uploads() == [local_run["submission"]]
    assert (output / "digit-recognizer-dense-network.log").read_text() == json.dumps(LOG)

    # The kernel's own record, in its output, carries Kaggle's answer; the ledger holds its accuracy.
    name = local.name
    for record_path in (output / "submission.json", output / "runs" / name / "record.json"):
        assert RunRecord.from_json(record_path).kaggle.public_score == 0.91234
    with open(tmp_path / "home" / "ledger.csv", newline="") as stream:
        [row] = list(csv.DictReader(stream))
    assert row["run_folder"] == str(output / "runs" / name) and float(row["local_accuracy"]) == pytest.approx(accuracy)
    assert row["file"] == str(output / "submission.csv") and row["message"] == "kernel run"

    # The token is nowhere: not in the output (run_with_fake checks), nor in any file written.
    assert_no_secret_in_files(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("state", "word"), [("ERROR", "error"), ("CANCEL_ACKNOWLEDGED", "cancel_acknowledged")])
def test_a_failed_run_shows_kaggles_message_and_the_log_tail(state, word, tmp_path):
    failure = "Your notebook tried to allocate more memory than is available"
    with FakeKaggle(kernel_states=["RUNNING", state], kernel_failure=failure, kernel_log=json.dumps(LOG)) as fake:
        result = kernel_wait(fake.url, tmp_path, "--submit", "-m", "x")
    assert_one_line_error(result, EXIT_KAGGLE_FAILED, f"kernel {KERNEL_ID} ended with {word}: {failure}")
    assert "last 3 lines of its log:\n  epoch 1/2\n  epoch 2/2\n  ValueError: the input" in result.stdout
    [output] = (tmp_path / "kernel" / "output").iterdir()
    assert (output / "digit-recognizer-dense-network.log").is_file()
    assert fake.uploads() == []


def test_submit_writes_only_into_the_fetched_output(local_run, tmp_path):
    """A kernel's record may name any run_dir; the `kaggle` section goes only into its output's records."""
    victim = tmp_path / "elsewhere" / "runs" / "victim"
    victim.mkdir(parents=True)
    (victim / "record.json").write_text('{"untouched": true}')
    files = kernel_files(local_run)
    record = json.loads(files["submission.json"])
    files["submission.json"] = json.dumps({**record, "run_dir": str(victim)}).encode()
    with FakeKaggle(kernel_files=files) as fake:
        result = kernel_wait(fake.url, tmp_path, "--submit", "--force", "-m", "x", "--data", local_run["data"])
    assert result.returncode == 0, result.stderr
    assert (victim / "record.json").read_text() == '{"untouched": true}'


def test_kaggles_failure_message_and_log_are_printed_with_escapes_shown(tmp_path):
    log = json.dumps([{"stream_name": "stderr", "time": 1.0, "data": "boom \x1b[2J\n"}])
    with FakeKaggle(kernel_states=["ERROR"], kernel_failure="\x1b[31mout of memory", kernel_log=log) as fake:
        result = kernel_wait(fake.url, tmp_path)
    assert_one_line_error(result, EXIT_KAGGLE_FAILED, "ended with error: \\x1b[31mout of memory")
    assert "  boom \\x1b[2J" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr


def test_a_run_that_outlasts_the_time_out(tmp_path):
    with FakeKaggle(kernel_states=["QUEUED", "RUNNING"]) as fake:
        result = run_with_fake(
            *("-m", "src.kaggle", "kernel-wait", KERNEL_ID, "--kernel-dir", tmp_path / "kernel", "--timeout", "0.3"),
            url=fake.url,
            home=tmp_path / "home",
        )
    assert_one_line_error(
        result,
        EXIT_TIMED_OUT,
        f"kernel {KERNEL_ID} did not finish within 0.3 s",
        f"wait again with python -m src.kaggle kernel-wait {KERNEL_ID}",
    )
    assert f"kernel {KERNEL_ID}: queued, " in result.stdout and not (tmp_path / "kernel" / "output").exists()


def test_a_different_kernel_output_is_measured_and_each_fetch_has_its_folder(local_run, tmp_path):
    rows = local_run["submission"].decode().splitlines(keepends=True)
    for position in (1, 2):  # change the label of the first two images
        image_id, label = rows[position].strip().split(",")
        rows[position] = f"{image_id},{(int(label) + 1) % 10}\n"
    with FakeKaggle(kernel_files=kernel_files(local_run, "".join(rows).encode())) as fake:
        first = kernel_wait(fake.url, tmp_path, "--runs", local_run["runs"])
        second = kernel_wait(fake.url, tmp_path, "--runs", tmp_path / "no-runs")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    n_rows = len(rows) - 1
    share = (n_rows - 2) / n_rows
    assert f": {n_rows - 2} of {n_rows} rows agree ({share:.2%})" in first.stdout
    assert f"no local run in {tmp_path / 'no-runs'} with the same settings and data to compare with" in second.stdout
    outputs = sorted((tmp_path / "kernel" / "output").iterdir())
    assert len(outputs) == 2 and all((folder / "submission.csv").is_file() for folder in outputs)
    assert f"submit it with:  python -m src.upload {outputs[0] / 'submission.csv'}" in first.stdout
    assert fake.uploads() == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"title": "Digit Recognizer Wide"}, "does not match its title 'Digit Recognizer Wide'"),
        ({"id": "digit-recognizer-dense-network"}, "the kernel id must be USER/SLUG"),
        ({"competition_sources": []}, "competition_sources must include digit-recognizer"),
        ({"machine_shape": "TpuV9000"}, "unknown machine_shape 'TpuV9000'"),
        ({"enable_gpu": "yes"}, "enable_gpu must be true or false, got 'yes'"),
        ({"code_file": "missing.py"}, "code_file must be digit_recognizer.py, the script the build writes"),
    ],
)
def test_metadata_is_checked_before_pushing(changes, problem, tmp_path):
    folder = write_stub_kernel(tmp_path / "kernel", **changes)
    with FakeKaggle() as fake:
        result = run_with_fake("-m", "src.kaggle", "push-kernel", folder, url=fake.url, home=tmp_path / "home")
    assert_one_line_error(result, EXIT_USER, f"{folder / 'kernel-metadata.json'}: ", problem)
    assert fake.requests == []


def test_gpu_and_public_reach_kaggle(tmp_path):
    folder = write_stub_kernel(tmp_path / "kernel", enable_gpu=True, is_private=False, machine_shape="NvidiaTeslaT4")
    with FakeKaggle() as fake:
        result = run_with_fake("-m", "src.kaggle", "push-kernel", folder, url=fake.url, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    sent = fake.calls("SaveKernel")[0].json()
    assert (sent["enableGpu"], sent["isPrivate"], sent["machineShape"]) == (True, False, "NvidiaTeslaT4")


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--submit", "-m", "x"], "--submit sends the kernel's output, so it needs --wait"),
        (["--wait", "--submit"], "--submit needs a message"),
        (["--wait", "-m", "x"], "add --submit"),
    ],
)
def test_follow_flags_are_checked_before_pushing(flags, problem, tmp_path):
    folder = write_stub_kernel(tmp_path / "kernel")
    with FakeKaggle() as fake:
        result = run_with_fake("-m", "src.kaggle", "push-kernel", folder, *flags, url=fake.url, home=tmp_path / "home")
    assert_one_line_error(result, EXIT_USER, problem)
    assert fake.requests == []
