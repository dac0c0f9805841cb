"""Waiting on Kaggle: poll until a job is done, with a progress line and a time-out.

The interval between polls is each caller's default, or the value of
DIGIT_RECOGNIZER_POLL_SECONDS (the tests set a fraction of a second).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from src.core.errors import KaggleTimeoutError, UserError
from src.core.flags import positive_seconds

POLL_SECONDS_VARIABLE = "DIGIT_RECOGNIZER_POLL_SECONDS"
State = TypeVar("State")


def poll_interval(default: float) -> float:
    """Seconds between polls: DIGIT_RECOGNIZER_POLL_SECONDS when set, else `default`."""
    text = os.environ.get(POLL_SECONDS_VARIABLE, "").strip()
    if not text:
        return default
    try:
        return positive_seconds(text)
    except UserError as error:
        raise UserError(f"{POLL_SECONDS_VARIABLE}: {error}") from None


def wait_until(
    read: Callable[[], State],
    finished: Callable[[State], bool],
    describe: Callable[[State], str],
    timeout: float,
    interval: float,
    timeout_message: str,
) -> State:
    """Call `read()` every `interval` seconds until `finished` holds for its answer; return that answer.

    Each poll that is not finished prints `describe(answer)` with the elapsed
    time: a line per poll, or one line updated in place on a terminal.

    Raises:
        KaggleTimeoutError: `timeout` seconds passed first; its message is `timeout_message`.
    """
    progress = Progress(sys.stdout)
    started = time.monotonic()
    try:
        while True:
            answer = read()
            elapsed = time.monotonic() - started
            if finished(answer):
                return answer
            progress.show(f"{describe(answer)}, {elapsed:.0f} s")
            if elapsed >= timeout:
                raise KaggleTimeoutError(timeout_message)
            time.sleep(min(interval, timeout - elapsed))
    finally:
        progress.close()


class Progress:
    """One progress line: rewritten in place on a terminal, a new line per update elsewhere (logs, pipes)."""

    def __init__(self, stream):
        self.stream = stream
        self.in_place = stream.isatty()
        self.width = 0

    def show(self, text: str) -> None:
        if self.in_place:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.in_place and self.width:
            self.stream.write("\n")
            self.stream.flush()
