"""A submission's public score: wait for Kaggle to score it, and keep the answer in the run's records."""

from __future__ import annotations

from pathlib import Path

from src.core.errors import KaggleJobFailedError
from src.core.files import locked, write_json
from src.core.flags import DEFAULT_SCORE_TIMEOUT
from src.core.readers import read_json
from src.kaggle import client
from src.kaggle.polling import poll_interval, wait_until

SCORE_POLL_SECONDS = 5.0  # Digit Recognizer scores a file in seconds; a poll every 5 s is polite
LOOK_UP_LATER = "python -m src.ledger (or python -m src.kaggle submissions)"


def wait_for_score(ref: int, timeout: float = DEFAULT_SCORE_TIMEOUT) -> client.Submission:
    """Poll submission `ref` until Kaggle has scored it; return it, complete.

    Raises:
        KaggleJobFailedError: Kaggle could not score it (status ERROR); its reason is in the message.
        KaggleTimeoutError: Still pending after `timeout` seconds; the message says how to look it up later.
    """
    submission = wait_until(
        read=lambda: client.submission(ref),
        finished=lambda found: found is not None and found.status != "pending",
        describe=lambda found: f"waiting for Kaggle to score submission {ref}: pending",
        timeout=timeout,
        interval=poll_interval(SCORE_POLL_SECONDS),
        timeout_message=(
            f"submission {ref} was not scored within {timeout:g} s; Kaggle may still score it: "
            f"look its score up later with {LOOK_UP_LATER}"
        ),
    )
    if submission.status != "complete":
        reason = submission.error_description or "Kaggle gave no reason"
        raise KaggleJobFailedError(f"Kaggle could not score submission {ref} ({submission.status}): {reason}")
    return submission


def score_line(submission: client.Submission) -> str:
    score = "not published" if submission.public_score is None else f"{submission.public_score:.5f}"
    return f"public score {score} (submission {submission.ref})"


def kaggle_section(ref: int | None, message: str, status: str, public_score: float | None, error: str = "") -> dict:
    """What a record keeps of a submission: Kaggle's ref, the message, its status and public score."""
    section = {"ref": ref, "message": message, "status": status, "public_score": public_score}
    if error:
        section["error"] = error
    return section


def add_to_record(record_path: str | Path, section: dict) -> None:
    """Store `section` as the record's `kaggle` entry, rewriting the JSON file atomically."""
    with locked(record_path):
        record = read_json(record_path, "run record")
        record["kaggle"] = section
        write_json(record_path, record)
