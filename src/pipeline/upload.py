"""The one way a submission reaches Kaggle, behind `python -m src.submit --submit` and `python -m src.upload`.

The file is validated first, so an invalid file is never sent. Once Kaggle has
it, `record_submission` adds its ledger row and `follow_submission` waits for the public score.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from src.core.cli import user_error_message
from src.core.errors import KaggleJobFailedError, NotRecordedError, UserError
from src.core.paths import record_path_for
from src.core.readers import read_json
from src.data.competition import TEST_ROWS, count_rows, data_folder
from src.data.submission import validate_submission
from src.kaggle import client, scores
from src.kaggle.polling import poll_interval
from src.runs import ledger
from src.runs.record import recorded_accuracy

ACCURACY_FLOOR = 0.90  # below it, a Digit Recognizer submission is a mistake (a dense network reaches 0.97)
FORCE_HINT = "add --force to send it anyway"


def upload_submission(path: str | Path, message: str, expected_rows: int, force: bool = False) -> client.SubmitResult:
    """Validate the `ImageId,Label` file at `path` and all that follows its upload, then submit it with `message`.

    Args:
        path: The submission file.
        message: Its description on Kaggle.
        expected_rows: Test images the file must have one row for.
        force: Send it even when its local accuracy is below `ACCURACY_FLOOR` or the best submission's.

    Raises:
        UserError: The message is empty, the file invalid, its record or the ledger
            unreadable, or its accuracy too low (nothing is sent); or one of the Kaggle errors.
    """
    if not message.strip():
        raise UserError("a submission needs a message: pass -m/--message TEXT")
    validate_submission(path, n_rows=expected_rows)
    rows = check_before_sending(path)
    if not force:
        check_accuracy(path, rows)
    return client.submit(path, message)


def check_before_sending(path: str | Path) -> list[ledger.Row]:
    """What recording the upload needs, checked while nothing is sent; the ledger's rows.

    Once Kaggle has the file, a record or ledger that cannot be written would leave it unrecorded.
    """
    record = record_path_for(Path(path))
    if record.exists():
        read_json(record, "run record")
    ledger_file = ledger.ledger_path()
    rows = ledger.read_ledger(ledger_file)
    check_writable(ledger_file)
    poll_interval(scores.SCORE_POLL_SECONDS)
    return rows


def check_writable(path: Path) -> None:
    """`path` can be replaced atomically: its folder (or the nearest existing one) writable, and itself if there."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder, so the ledger {path} cannot be written there; nothing was sent")
    for where in (folder, path) if path.exists() else (folder,):
        if not os.access(where, os.W_OK):
            raise UserError(f"{where}: not writable, so the upload could not be added to the ledger; nothing was sent")


def local_accuracy(path: str | Path) -> float | None:
    """The local accuracy the record beside `path` gives: a run's validation, or a blend's; None without one."""
    record = record_path_for(Path(path))
    if not record.exists():
        return None
    return recorded_accuracy(read_json(record, "run record"))


def check_accuracy(path: str | Path, rows: list[ledger.Row]) -> None:
    """Refuse a file whose local accuracy is below `ACCURACY_FLOOR`, or below that of the best-scored submission."""
    accuracy = local_accuracy(path)
    if accuracy is None:
        return
    if accuracy < ACCURACY_FLOOR:
        raise UserError(
            f"{path}: local accuracy {accuracy:.4f} is below the floor {ACCURACY_FLOOR:.2f}, so it was not sent; "
            f"{FORCE_HINT}"
        )
    best = ledger.best_row(rows)
    if best is not None and accuracy < float(best.local_accuracy):
        raise UserError(
            f"{path}: local accuracy {accuracy:.4f} is below {float(best.local_accuracy):.4f}, that of your best "
            f"public score {best.public_score} (submission {best.kaggle_ref}), so it was not sent; {FORCE_HINT}"
        )


def expected_row_count(data_dir: str | Path) -> int:
    """Rows a submission must have: one per line of `data_dir`'s test.csv, else the competition's test set."""
    test_path = data_folder(data_dir) / "test.csv"
    return count_rows(test_path) if test_path.is_file() else TEST_ROWS


def record_submission(path: str | Path, result: client.SubmitResult, message: str) -> list[Path]:
    """After Kaggle took the file: its ledger row and its runs' `kaggle` sections (status pending), first of all,
    so that whatever stops the command then leaves a row that `python -m src.ledger` completes later.

    Returns:
        The run records the row's outcome goes into (see `follow_submission`).
    """
    records = ledger.records_of(path)
    with recording(result):
        ledger.append_row(ledger.new_row(path, result, message))
        pending = scores.kaggle_section(result.ref, message, "pending", None)
        for record in records:
            scores.add_to_record(record, pending)
    return records


def follow_submission(
    result: client.SubmitResult, message: str, wait_timeout: float | None, records: list[Path]
) -> client.Submission | None:
    """Unless `wait_timeout` is None, wait for the score of a recorded upload; the outcome goes into the
    ledger and into `records` (`kaggle` section).

    Raises:
        KaggleJobFailedError: Kaggle could not score the file.
        KaggleTimeoutError: Not scored within `wait_timeout` seconds.
    """
    if wait_timeout is None or result.ref is None:
        return None
    try:
        scored = scores.wait_for_score(result.ref, wait_timeout)
    except KaggleJobFailedError as error:
        with recording(result):
            outcome = scores.kaggle_section(result.ref, message, "error", None, error=str(error))
            ledger.update_row(result.ref, "error", None)
            for record in records:
                scores.add_to_record(record, outcome)
        raise
    with recording(result):
        ledger.update_row(result.ref, scored.status, scored.public_score)
        for record in records:
            section = scores.kaggle_section(result.ref, message, scored.status, scored.public_score)
            scores.add_to_record(record, section)
    return scored


@contextmanager
def recording(result: client.SubmitResult) -> Iterator[None]:
    """After Kaggle took the file: a failure to record it says the file is on Kaggle, with its own exit code."""
    try:
        yield
    except (UserError, OSError) as error:
        reason = user_error_message(error).removeprefix("error: ")
        raise NotRecordedError(
            f"submitted as {result.ref}; could not update the ledger or its record: {reason}; "
            f"{scores.LOOK_UP_LATER} adds it later"
        ) from None


def follow_and_print(path: str | Path, result: client.SubmitResult, message: str, timeout: float | None) -> None:
    """Once Kaggle took the file: record it, say so, then wait for the score and print it.

    Stopped on the way (Ctrl-C, SIGTERM, an output closed by its reader), it says the file is on Kaggle;
    the ledger row is written before the first line, which a closed output would stop at.
    """
    try:
        records = record_submission(path, result, message)
        print(submitted_line(path, result), flush=True)
        scored = follow_submission(result, message, timeout, records)
        if scored is not None:
            print(scores.score_line(scored), flush=True)
        else:
            print(f"not waiting for the score: {scores.LOOK_UP_LATER} fetches it later", flush=True)
    except KeyboardInterrupt as interruption:
        # The boundary prints it as `interrupted: ...` (130), `terminated: ...` (143) or `stopped ...` (141).
        on_kaggle = f"submission {result.ref} is on Kaggle; its score later: {scores.LOOK_UP_LATER}"
        raise type(interruption)(on_kaggle) from None


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
    rows, changed, added = ledger.merge_into_ledger(path, client.submissions())
    for row in changed:
        section = scores.kaggle_section(int(row.kaggle_ref), row.message, row.status, _score(row.public_score))
        for record in ledger.records_of_row(row):
            scores.add_to_record(record, section)
    print(f"refreshed {path} from Kaggle: {len(changed)} updated, {added} made elsewhere added")
    return rows


def _score(text: str) -> float | None:
    return float(text) if text else None
