"""The one Kaggle client: the official `kaggle` package's `KaggleApi`, and one translator of its failures.

Every call returns data (dataclasses, paths), never printed text: the client's
own prints are captured. Every failure becomes one of `src.core.errors`' Kaggle
errors, one line long, so a kind of failure has one exit code in every command:
no or rejected credentials 3, a refusal (HTTP 403, another 4xx) 4, Kaggle
unreachable or failing (network down, HTTP 5xx) 5. No secret is ever printed.

The `kaggle` package is imported only when a call needs it, because importing
it signs in (and, with a token, goes online).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from src.core.errors import (
    KaggleCredentialsError,
    KaggleRefusedError,
    KaggleUnavailableError,
    UserError,
)
from src.core.readers import read_json
from src.core.safe_text import printable, redact
from src.data.competition import COMPETITION, RULES_URL
from src.kaggle.credentials import TOKEN_URL, require_credentials, secret_values

RULES_HINT = f"accept the competition's rules at {RULES_URL} with the account your token belongs to, then try again"
CREDENTIALS_HINT = (
    f"check ~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY or KAGGLE_API_TOKEN, or create a new token at {TOKEN_URL}"
)
DETAIL_LIMIT = 200  # characters of Kaggle's own message kept in ours
# Kernel states, as kaggle 2.x's `KernelWorkerStatus` names them, lower-cased.
KERNEL_FINISHED = frozenset({"complete"})
KERNEL_FAILED = frozenset({"error", "cancel_requested", "cancel_acknowledged"})


@dataclass(frozen=True)
class SubmitResult:
    """Kaggle's answer to a submission: its message and the new submission's ref."""

    message: str
    ref: int | None


@dataclass(frozen=True)
class Submission:
    """One row of the competition's submissions list."""

    ref: int
    status: str  # "pending", "complete" or "error"
    public_score: float | None
    description: str
    date: datetime | None
    file_name: str = ""
    error_description: str = ""  # Kaggle's reason when the status is "error"


@dataclass(frozen=True)
class PushedKernel:
    """A kernel version Kaggle accepted and queued."""

    kernel_id: str  # "user/slug"
    version: int | None
    url: str


@dataclass(frozen=True)
class KernelStatus:
    """Where a kernel's latest run stands."""

    state: str  # "queued", "running", "complete", "error", ...
    failure_message: str

    @property
    def finished(self) -> bool:
        return self.state in KERNEL_FINISHED

    @property
    def failed(self) -> bool:
        return self.state in KERNEL_FAILED


def state_name(status) -> str:
    """A status as a lower-case word, from kaggle 2.x enums (`KernelWorkerStatus.COMPLETE`) or 1.6 words."""
    text = getattr(status, "name", None) or str(status)
    text = text.strip().rsplit(".", 1)[-1]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", text).lower()  # "cancelAcknowledged" -> "cancel_acknowledged"


def download_competition(directory: str | Path) -> Path:
    """Download the competition's zip into `directory`; return its path."""
    api = _signed_in_api()
    with _translated("download the competition's files", RULES_HINT):
        api.competition_download_files(COMPETITION, path=str(directory), force=True, quiet=True)
    return Path(directory) / f"{COMPETITION}.zip"


def submit(path: str | Path, message: str) -> SubmitResult:
    """Upload a submission file with its description; no checks of the file here."""
    api = _signed_in_api()
    with _translated("submit", RULES_HINT) as printed:
        response = api.competition_submit(str(path), message, COMPETITION, quiet=True)
    if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        # The client prints the failed upload's reason instead of raising it.
        lines = printed.getvalue().strip().splitlines()
        reason = f" ({_first_line(lines[-1])})" if lines else ""
        raise KaggleUnavailableError(f"Kaggle did not accept the upload of {path}: {response.message}{reason}")
    return SubmitResult(message=_from_kaggle(response.message), ref=response.ref or None)


def submissions() -> list[Submission]:
    """The competition's submissions made with these credentials, newest first."""
    api = _signed_in_api()
    with _translated("list your submissions", RULES_HINT):
        found = api.competition_submissions(COMPETITION) or []
    return [_submission(item) for item in found if item is not None]


def submission(ref: int) -> Submission | None:
    """One submission, by its ref; None while Kaggle cannot read it yet (HTTP 404 just after submitting)."""
    import requests

    api = _signed_in_api()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return _submission(api.get_submission(ref))
    except requests.HTTPError as error:
        if _status_code(error) == 404:
            return None
        raise translate_error(error, f"read submission {ref}", RULES_HINT) from None
    except (Exception, SystemExit) as error:
        raise translate_error(error, f"read submission {ref}", RULES_HINT) from None


def _submission(item) -> Submission:
    return Submission(
        ref=item.ref,
        status=state_name(item.status),
        public_score=_finite_score(item.public_score),
        description=_from_kaggle(item.description),
        date=item.date,
        file_name=_from_kaggle(item.file_name),
        error_description=_from_kaggle(item.error_description),
    )


def _finite_score(text: str | None) -> float | None:
    """Kaggle's public score as a number; None when it has none, or sends NaN or an overflowing one."""
    try:
        score = float(text) if text else None
    except ValueError:
        return None
    return score if score is not None and math.isfinite(score) else None


def push_kernel(folder: str | Path) -> PushedKernel:
    """Push the kernel in `folder` (its `kernel-metadata.json` and code file) and start a run."""
    api = _signed_in_api()
    with _translated("push the kernel"):
        response = api.kernels_push(str(folder))
    if response.error:
        raise KaggleRefusedError(f"Kaggle refused the kernel in {folder}: {_first_line(response.error)}")
    metadata = read_json(Path(folder) / api.KERNEL_METADATA_FILE, "kernel metadata file")
    kernel_id = metadata.get("id") or str(metadata.get("id_no"))  # the client accepts either
    return PushedKernel(kernel_id=kernel_id, version=response.version_number, url=response.url)


def kernel_status(kernel_id: str) -> KernelStatus:
    """The state of the kernel's latest run, and Kaggle's failure message when it failed."""
    api = _signed_in_api()
    with _translated(f"read the status of kernel {kernel_id}"):
        response = api.kernels_status(kernel_id)
    return KernelStatus(state=state_name(response.status), failure_message=_from_kaggle(response.failure_message))


def kernel_output(kernel_id: str, directory: str | Path) -> list[Path]:
    """Download the kernel's latest output files and its log into `directory`."""
    api = _signed_in_api()
    with _translated(f"download the output of kernel {kernel_id}"):
        files, _ = api.kernels_output(kernel_id, str(directory), force=True, quiet=True)
    return [Path(name) for name in files]


@dataclass(frozen=True)
class AcceleratorQuota:
    """An account's weekly GPU hours: used, allowed, and when they refresh."""

    used_hours: float
    total_hours: float
    refresh: str

    @property
    def remaining_hours(self) -> float:
        return max(0.0, self.total_hours - self.used_hours)


def gpu_quota() -> AcceleratorQuota | None:
    """The account's GPU quota (kaggle 2.2.5's `quota_view`), or None when Kaggle sends none."""
    api = _signed_in_api()
    with _translated("read your GPU quota"):
        response = api.quota_view()
    quota = getattr(response, "gpu_quota", None)
    if quota is None or quota.total_time_allowed is None:
        return None
    used = quota.time_used.total_seconds() / 3600 if quota.time_used is not None else 0.0
    refresh = response.quota_refresh_time.isoformat() if response.quota_refresh_time else "at an unknown time"
    return AcceleratorQuota(used, quota.total_time_allowed.total_seconds() / 3600, refresh)


def translate_error(error: BaseException, action: str, hint: str = "") -> UserError:
    """The one-line error, with its exit code, for a failure of the kaggle client while doing `action`."""
    import requests
    from urllib3 import exceptions as urllib3_errors

    if isinstance(error, UserError):
        return error
    if isinstance(error, SystemExit):
        return KaggleCredentialsError(f"Kaggle did not accept the credentials to {action}; {CREDENTIALS_HINT}")
    if isinstance(error, requests.HTTPError):
        return _translate_http(error, action, hint)
    network_errors = (requests.ConnectionError, requests.Timeout, urllib3_errors.HTTPError, ConnectionError)
    if isinstance(error, network_errors):
        return KaggleUnavailableError(
            f"could not reach Kaggle to {action} ({type(error).__name__}): the network or the service is down; "
            "check your internet connection and try again"
        )
    if isinstance(error, ValueError) and "Cannot access kernel" in str(error):
        # kaggle 2.x turns a 401/403 on a kernel into this ValueError.
        return KaggleRefusedError(
            f"Kaggle refused to {action}: no such kernel, or it is private to another account; check the id user/slug"
        )
    if isinstance(error, ValueError):  # the client's own checks of what it was given
        return UserError(f"could not {action}: {_first_line(error)}")
    return KaggleUnavailableError(f"could not {action}: Kaggle's answer was not understood ({type(error).__name__})")


def _translate_http(error, action: str, hint: str) -> UserError:
    status = _status_code(error)
    detail = f"HTTP {status}: {_first_line(error)}" if str(error) else f"HTTP {status}"
    if status == 401:
        return KaggleCredentialsError(
            f"Kaggle did not accept your credentials to {action} ({detail}); {CREDENTIALS_HINT}"
        )
    if status == 429:
        return KaggleRefusedError(f"Kaggle refused to {action}: too many requests ({detail}); wait a while, try again")
    if status is not None and status >= 500:
        return KaggleUnavailableError(
            f"Kaggle's service failed to {action} ({detail}); this is on Kaggle's side, try again later"
        )
    if status == 403 and hint:
        return KaggleRefusedError(f"Kaggle refused to {action} ({detail}); {hint}")
    return KaggleRefusedError(f"Kaggle refused to {action} ({detail})")


def _status_code(error) -> int | None:
    """The HTTP status, or the error code Kaggle's JSON answer carries (kagglesdk raises on it)."""
    response = error.response
    if response is None:
        return None
    with contextlib.suppress(ValueError, AttributeError):
        code = response.json().get("code")
        if isinstance(code, int) and code >= 400:
            return code
    return response.status_code


def _first_line(error) -> str:
    """The start of a library's message, with any credential in it masked."""
    text = redact(str(error), secret_values()).strip()
    return printable(text.splitlines()[0][:DETAIL_LIMIT]) if text else type(error).__name__


def _from_kaggle(text) -> str:
    """Text Kaggle sent (a reason, a description): control characters escaped before anyone prints it."""
    return printable(str(text or "").strip())


@contextlib.contextmanager
def _translated(action: str, hint: str = "") -> Iterator[io.StringIO]:
    """Capture what the client prints, and turn what it raises into one of our errors."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            yield printed
    except (Exception, SystemExit) as error:
        raise translate_error(error, action, hint) from None


@functools.cache
def _signed_in_api():
    """A `KaggleApi` signed in with the user's credentials, once per process (a wait polls many times)."""
    source = require_credentials()
    with _translated("sign in"):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError:
            raise UserError("the kaggle package is not installed; run: pip install kaggle") from None
        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:
            raise KaggleCredentialsError(
                f"Kaggle did not accept the credentials in {source}; create a new token at {TOKEN_URL}"
            ) from None
    return api


def forget_sign_in() -> None:
    """Sign in afresh at the next call: for a process that runs several commands, each with its own credentials."""
    _signed_in_api.cache_clear()
