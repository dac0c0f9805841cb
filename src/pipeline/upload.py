"""The one way a submission reaches Kaggle, behind `python -m src.submit --submit` and `python -m src.upload`.

The file is validated first, so an invalid file is never sent. Once Kaggle has
it, `follow_submission` adds its ledger row and waits for the public score.
"""

from __future__ import annotations

from pathlib import Path

from src.core.errors import KaggleJobFailedError, UserError
from src.data.competition import TEST_ROWS, count_rows
from src.data.submission import validate_submission
from src.kaggle import client, scores
from src.runs import ledger


def upload_submission(path: str | Path, message: str, expected_rows: int) -> client.SubmitResult:
    """Validate the `ImageId,Label` file at `path`, then submit it with `message`.

    Args:
        path: The submission file.
        message: Its description on Kaggle.
        expected_rows: Test images the file must have one row for.

    Raises:
        UserError: The message is empty or the file invalid (nothing is sent), or
            one of the Kaggle errors.
    """
    if not message.strip():
        raise UserError("a submission needs a message: pass -m/--message TEXT")
    validate_submission(path, n_rows=expected_rows)
    return client.submit(path, message)


def expected_row_count(data_dir: str | Path) -> int:
    """Rows a submission must have: one per line of `data_dir`'s test.csv, else the competition's test set."""
    test_path = Path(data_dir) / "test.csv"
    return count_rows(test_path) if test_path.is_file() else TEST_ROWS


def follow_submission(
    path: str | Path, result: client.SubmitResult, message: str, wait_timeout: float | None
) -> client.Submission | None:
    """After Kaggle took the file: a ledger row, then (unless `wait_timeout` is None) wait for its score.

    The ledger row (status pending) is written first, so a time-out or Ctrl-C
    still leaves a row that `python -m src.ledger` completes later. The outcome
    goes into the ledger and into the run's records (`kaggle` section).

    Raises:
        KaggleJobFailedError: Kaggle could not score the file.
        KaggleTimeoutError: Not scored within `wait_timeout` seconds.
    """
    records = ledger.records_of(path)
    ledger.append_row(ledger.new_row(path, result, message))
    pending = scores.kaggle_section(result.ref, message, "pending", None)
    for record in records:
        scores.add_to_record(record, pending)
    if wait_timeout is None or result.ref is None:
        return None
    try:
        scored = scores.wait_for_score(result.ref, wait_timeout)
    except KaggleJobFailedError as error:
        outcome = scores.kaggle_section(result.ref, message, "error", None, error=str(error))
        ledger.update_row(result.ref, "error", None)
        for record in records:
            scores.add_to_record(record, outcome)
        raise
    ledger.update_row(result.ref, scored.status, scored.public_score)
    for record in records:
        scores.add_to_record(record, scores.kaggle_section(result.ref, message, scored.status, scored.public_score))
    return scored


def follow_and_print(path: str | Path, result: client.SubmitResult, message: str, timeout: float | None) -> None:
    """`follow_submission`, printing the score; Ctrl-C while waiting says the file is on Kaggle."""
    try:
        scored = follow_submission(path, result, message, timeout)
    except KeyboardInterrupt as interruption:
        # The command-line boundary prints it as `interrupted: ...` and exits 130 (143 for SIGTERM).
        on_kaggle = f"submission {result.ref} is on Kaggle; its score later: {scores.LOOK_UP_LATER}"
        raise type(interruption)(on_kaggle) from None
    if scored is not None:
        print(scores.score_line(scored), flush=True)
    else:
        print(f"not waiting for the score: {scores.LOOK_UP_LATER} fetches it later", flush=True)


def submitted_line(path: str | Path, result: client.SubmitResult) -> str:
    """What a command prints when Kaggle has taken the file."""
    reference = f" (submission {result.ref})" if result.ref else ""
    return f"submitted {path}; Kaggle says: {result.message}{reference}"


def kept_line(path: str | Path) -> str:
    """What follows a failed upload of a file just trained: it is kept, and how to send it later."""
    return f"{path} is kept: send it later with python -m src.upload {path} -m TEXT"


def unknown_arrival(path: str | Path) -> str:
    """What an interrupted upload leaves: the file may or may not have arrived."""
    return f"check on Kaggle whether {path} arrived (python -m src.kaggle submissions)"


def refresh_ledger(path: Path) -> list[ledger.Row]:
    """The ledger with Kaggle's current statuses and scores, saved when anything changed.

    A changed row's status and score also go into its run's records, as the upload's wait would have.
    """
    rows, changed, added = ledger.merge_submissions(ledger.read_ledger(path), client.submissions())
    if changed or added:
        ledger.write_ledger(path, rows)
    for row in changed:
        section = scores.kaggle_section(int(row.kaggle_ref), row.message, row.status, _score(row.public_score))
        for record in ledger.records_of_row(row):
            scores.add_to_record(record, section)
    print(f"refreshed {path} from Kaggle: {len(changed)} updated, {added} made elsewhere added")
    return rows


def _score(text: str) -> float | None:
    return float(text) if text else None
