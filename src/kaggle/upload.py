"""The one way a submission reaches Kaggle, behind `python -m src.submit --submit` and `python -m src.upload`.

The file is validated first, so an invalid file is never sent.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..submission import validate_submission
from . import client


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
