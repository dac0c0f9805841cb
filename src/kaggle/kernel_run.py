"""A kernel's run on Kaggle: check it before the push, wait for it, fetch its output, hold it against a local run.

The output of each finished run goes into its own `<kernel dir>/output/<UTC
timestamp>/`, written in a hidden folder first and renamed when complete, so an
earlier run's output is never touched and a failed fetch leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from src.core.errors import KaggleJobFailedError, UserError
from src.core.files import sha256
from src.core.paths import KERNEL_SUBMISSION_NAME, RUN_RECORD_NAME, RUN_SUBMISSION_NAME, record_path_for
from src.core.readers import UnreadableFile, read_json, read_text
from src.core.safe_text import printable
from src.kaggle import client, kernel_build
from src.kaggle.kernel_build import METADATA_FILE
from src.kaggle.polling import poll_interval, wait_until

KERNEL_POLL_SECONDS = 30.0  # a kernel queues and trains for minutes
DEFAULT_KERNEL_TIMEOUT = 3600.0
OUTPUT_FOLDER = "output"
LOG_TAIL_LINES = 20
MAX_LOG_TAIL_BYTES = 1 << 20  # of a log that is not Kaggle's JSON: its end holds the error
SWITCHES = ("enable_gpu", "enable_tpu", "is_private", "enable_internet")


def check_metadata(folder: str | Path) -> dict:
    """`folder`'s kernel-metadata.json, checked as the build checks it, and its code file present.

    Raises:
        UserError: One line naming the file and what is wrong; nothing has been sent.
    """
    path = Path(folder) / METADATA_FILE
    if not path.exists():
        raise UserError(f"{path}: not found; build the kernel first: python -m src.kernel --out-dir {folder}")
    try:
        metadata = read_json(path, "kernel metadata file")
    except UnreadableFile as error:
        raise UserError(f"{error}; build the kernel again") from None
    try:
        kernel_build.check_metadata(metadata)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    check_code_file(Path(folder), metadata, path)
    for name in SWITCHES:
        if name in metadata and not isinstance(metadata[name], bool):
            raise UserError(f"{path}: {name} must be true or false, got {metadata[name]!r}")
    return metadata


def check_code_file(folder: Path, metadata: dict, path: Path) -> None:
    """The code file must be the built script itself, inside `folder`: the client sends whatever file it names.

    A metadata file edited to name another file (`../../.kaggle/kaggle.json`), or a
    script that is a link out of the folder, would publish that file as a kernel.
    """
    name = metadata.get("code_file")
    if name != kernel_build.CODE_FILE:
        raise UserError(
            f"{path}: code_file must be {kernel_build.CODE_FILE}, the script the build writes, got {name!r}; "
            "build the kernel again"
        )
    script = folder / kernel_build.CODE_FILE
    if script.is_symlink() or not script.is_file():
        raise UserError(f"{path}: its code_file {script} is missing or a link; build the kernel again")
    if Path(os.path.realpath(script)).parent != Path(os.path.realpath(folder)):
        raise UserError(f"{path}: its code_file {script} lies outside {folder}; build the kernel again")
    with open(script, "rb") as stream:
        start = stream.read(len(kernel_build.SCRIPT_MARK) + 1024)
    if kernel_build.SCRIPT_MARK.encode() not in start:
        raise UserError(f"{script}: not a script built by python -m src.kernel; build the kernel again")


def wait_for_kernel(kernel_id: str, timeout: float = DEFAULT_KERNEL_TIMEOUT) -> client.KernelStatus:
    """Poll the kernel's latest run until it completes or fails; return its last status.

    Raises:
        KaggleTimeoutError: Still queued or running after `timeout` seconds.
    """
    return wait_until(
        read=lambda: client.kernel_status(kernel_id),
        finished=lambda status: status.finished or status.failed,
        describe=lambda status: f"kernel {kernel_id}: {status.state}",
        timeout=timeout,
        interval=poll_interval(KERNEL_POLL_SECONDS),
        timeout_message=(
            f"kernel {kernel_id} did not finish within {timeout:g} s; it may still be running: "
            f"wait again with python -m src.kaggle kernel-wait {kernel_id}"
        ),
    )


def fetch_output(kernel_id: str, kernel_dir: str | Path) -> Path:
    """Download the kernel's output files and log into a new `kernel_dir/output/<UTC timestamp>/`."""
    parent = Path(kernel_dir) / OUTPUT_FOLDER
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    temporary = Path(tempfile.mkdtemp(prefix=f".{stamp}-", dir=parent))
    try:
        client.kernel_output(kernel_id, temporary)
        folder = next(parent / name for name in _names(stamp) if not (parent / name).exists())
        temporary.rename(folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return folder


def _names(stamp: str):
    """`stamp`, then `stamp-2`, `stamp-3`, ...: two fetches in one second get different folders."""
    yield stamp
    attempt = 2
    while True:
        yield f"{stamp}-{attempt}"
        attempt += 1


def log_tail(folder: Path, count: int = LOG_TAIL_LINES) -> list[str]:
    """The last `count` lines of the kernel's log in `folder` (Kaggle's JSON list of streams, or plain text)."""
    logs = sorted(folder.glob("*.log"))
    if not logs:
        return []
    try:
        entries = read_json(logs[0], "kernel log", expect=list)
        text = "".join(str(entry.get("data", "")) for entry in entries if isinstance(entry, dict))
    except UnreadableFile:
        text = _plain_tail(logs[0])  # not Kaggle's JSON (or too large to parse): the log's end as it is
    return [printable(line) for line in text.splitlines() if line.strip()][-count:]


def _plain_tail(path: Path) -> str:
    """The last `MAX_LOG_TAIL_BYTES` of a log, as text (undecodable bytes replaced)."""
    with open(path, "rb") as stream:
        stream.seek(max(0, path.stat().st_size - MAX_LOG_TAIL_BYTES))
        return stream.read().decode("utf-8", errors="replace")


def read_record(path: Path) -> dict | None:
    """The run record at `path`, or None when there is none; a damaged one is a `UserError`."""
    if not path.exists():
        return None
    return read_json(path, "run record")


def find_local_run(kernel_record: dict, runs_dir: str | Path) -> Path | None:
    """The newest local run folder with the kernel's settings and the same train.csv and test.csv."""
    matches = []
    for path in sorted(Path(runs_dir).glob(f"*/{RUN_RECORD_NAME}")):
        # A damaged local record is not the kernel's problem: it only cannot match.
        try:
            record = read_record(path)
        except UserError:
            continue
        if record is not None and _same_run(record, kernel_record) and (path.parent / RUN_SUBMISSION_NAME).is_file():
            matches.append(path.parent)
    return matches[-1] if matches else None


def compare_submissions(kernel_file: Path, local_file: Path) -> str:
    """How far two submissions agree: identical bytes, or the share of rows with the same label."""
    if sha256(kernel_file) == sha256(local_file):
        return "identical bytes"
    kernel_labels, local_labels = _labels(kernel_file), _labels(local_file)
    if len(kernel_labels) != len(local_labels):
        return f"different row counts ({len(kernel_labels)} on Kaggle, {len(local_labels)} here)"
    agree = sum(a == b for a, b in zip(kernel_labels, local_labels, strict=True))
    return f"{agree} of {len(local_labels)} rows agree ({agree / len(local_labels):.2%})"


def follow_kernel(kernel_id: str, kernel_dir: str | Path, timeout: float, runs_dir: str | Path) -> Path:
    """Wait for the kernel's run, fetch its output and say what it gives; the output folder.

    Raises:
        KaggleJobFailedError: The run failed or was cancelled (its message and log tail are printed first),
            or it completed without a submission.
        KaggleTimeoutError: It did not finish within `timeout` seconds.
    """
    status = wait_for_kernel(kernel_id, timeout)
    folder = fetch_output(kernel_id, kernel_dir)
    print(f"kernel {kernel_id}: {status.state}; its output is in {folder}", flush=True)
    if status.failed:
        tail = log_tail(folder)
        if tail:
            print(f"last {len(tail)} lines of its log:\n" + "\n".join(f"  {line}" for line in tail))
        reason = status.failure_message or "Kaggle gave no reason"
        raise KaggleJobFailedError(f"kernel {kernel_id} ended with {status.state}: {reason} (its log: {folder})")
    submission = folder / KERNEL_SUBMISSION_NAME
    if not submission.is_file():
        raise KaggleJobFailedError(f"kernel {kernel_id} completed but wrote no {KERNEL_SUBMISSION_NAME} (see {folder})")
    record_path = record_path_for(submission)
    record = read_record(record_path)
    if record is None:
        print(f"no run record ({record_path.name}) in its output: no validation accuracy to show")
        return folder
    validation = record.get("validation")
    accuracy = validation.get("accuracy") if isinstance(validation, dict) else None
    if isinstance(accuracy, float):
        print(f"kernel's {validation.get('scheme', 'validation')} accuracy: {accuracy:.4f}")
    else:
        print(f"its run record ({record_path.name}) has no validation accuracy")
    local = find_local_run(record, runs_dir)
    if local is None:
        print(f"no local run in {runs_dir} with the same settings and data to compare with")
    else:
        print(f"against the local run {local}: {compare_submissions(submission, local / RUN_SUBMISSION_NAME)}")
    return folder


def _same_run(record: dict, other: dict) -> bool:
    """Same settings, and the same input files where both records name them by sha256."""
    if record.get("config") != other.get("config"):
        return False
    for name in ("train", "test"):
        ours = (record.get("inputs") or {}).get(name) or {}
        theirs = (other.get("inputs") or {}).get(name) or {}
        if ours.get("sha256") and theirs.get("sha256") and ours["sha256"] != theirs["sha256"]:
            return False
    return True


def _labels(path: Path) -> list[str]:
    lines = read_text(path, "submission").splitlines()
    return [line.strip().rsplit(",", 1)[-1] for line in lines[1:] if line.strip()]
