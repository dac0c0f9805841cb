"""The package's errors and the exit code of each kind of failure.

Every command line ends the same way (see `src.cli`): success exits 0; a
`UserError` prints its one line and exits with its kind's code; Ctrl-C exits
130, SIGTERM 143, and a closed output 141. The exit-code table of docs/safety.md is this one.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1  # a bug: Python's own traceback and exit status
EXIT_USER = 2  # bad input file, flag, setting or output path
EXIT_KAGGLE_CREDENTIALS = 3  # no Kaggle credentials, or Kaggle rejected them (HTTP 401)
EXIT_KAGGLE_REFUSED = 4  # Kaggle refused the request (rules not accepted, HTTP 403 or another 4xx)
EXIT_KAGGLE_UNAVAILABLE = 5  # Kaggle unreachable or failing (network down, HTTP 5xx)
EXIT_KAGGLE_FAILED = 6  # Kaggle accepted the job, then it failed (a scoring or kernel error)
EXIT_TIMED_OUT = 7  # waited for Kaggle longer than the time-out allows
EXIT_NOT_RECORDED = 8  # Kaggle took the submission, then the ledger or a record could not be updated
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_OUTPUT_CLOSED = 141  # stdout's reader went away (`| head`): SIGPIPE's code, as a shell tool ends
EXIT_TERMINATED = 143  # SIGTERM

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_UNEXPECTED: "unexpected error (a bug: please report the traceback)",
    EXIT_USER: "bad input file, flag, setting or output path",
    EXIT_KAGGLE_CREDENTIALS: "no Kaggle credentials, or Kaggle rejected them (HTTP 401)",
    EXIT_KAGGLE_REFUSED: "Kaggle refused the request (competition rules not accepted, HTTP 403 or another 4xx)",
    EXIT_KAGGLE_UNAVAILABLE: "Kaggle unreachable or failing (network down, HTTP 5xx)",
    EXIT_KAGGLE_FAILED: "Kaggle accepted the job, then it failed (a scoring error, a kernel error)",
    EXIT_TIMED_OUT: "waited for Kaggle longer than the time-out",
    EXIT_NOT_RECORDED: "submitted, but recording it (ledger, run record) failed",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (SIGINT)",
    EXIT_OUTPUT_CLOSED: "stopped: its output was closed (piped into a command that ended, such as head)",
    EXIT_TERMINATED: "terminated (SIGTERM)",
}


# How much of a library's own error message a one-line error quotes.
REASON_CHARS = 80


def error_reason(error: BaseException) -> str:
    """The first line of `error`'s message, cut to `REASON_CHARS`; its type's name when it has none."""
    text = str(error)
    return text.splitlines()[0][:REASON_CHARS] if text else type(error).__name__


class UserError(ValueError):
    """A problem the user can fix (bad input file, flag, output path); shown as one line."""

    exit_code = EXIT_USER


class KaggleCredentialsError(UserError):
    """No Kaggle credentials, or Kaggle rejected them."""

    exit_code = EXIT_KAGGLE_CREDENTIALS


class KaggleRefusedError(UserError):
    """Kaggle answered, and said no."""

    exit_code = EXIT_KAGGLE_REFUSED


class KaggleUnavailableError(UserError):
    """Kaggle could not be reached, or failed on its side."""

    exit_code = EXIT_KAGGLE_UNAVAILABLE


class KaggleJobFailedError(UserError):
    """Kaggle took the submission or kernel, then it failed there."""

    exit_code = EXIT_KAGGLE_FAILED


class KaggleTimeoutError(UserError):
    """Kaggle did not finish within the time-out."""

    exit_code = EXIT_TIMED_OUT


class NotRecordedError(UserError):
    """Kaggle took the submission, but the ledger or a run record could not be updated."""

    exit_code = EXIT_NOT_RECORDED
