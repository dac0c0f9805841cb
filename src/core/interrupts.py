"""Ctrl-C and SIGTERM that no library can swallow.

Python raises `KeyboardInterrupt` wherever the main thread is when the signal
arrives. Keras turns each batch's and epoch's logs into floats inside a bare
`except: pass` (`keras.src.utils.python_utils.pythonify_logs`, Keras 3.15), so a
Ctrl-C that lands there is lost: training goes on to its last epoch and writes
its files. The command line's handlers (`src.core.cli.run_command`) remember the
interruption as they raise it; training calls `raise_if_interrupted` after each
epoch's and batch's callbacks, and a run once more before it saves anything, so
a swallowed one is raised again where nothing catches it.

While TensorFlow runs (`deferred_interrupts`: training and prediction), the
handlers only remember the signal. Python runs a handler wherever the main
thread next runs Python code, and that may be a call from TensorFlow's C++
code back into Python (converting a value for a TensorBoard scalar, say),
which does not survive an exception raised through it: the process died of a
segmentation fault instead of exiting 130. The interruption is raised at the
next check instead, which comes within a batch or an epoch, or as the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_pending: KeyboardInterrupt | None = None
_deferring = 0  # how many `deferred_interrupts` blocks the main thread is in


def interrupt(interruption: KeyboardInterrupt) -> None:
    """Raise `interruption` (or, inside `deferred_interrupts`, only note it), and remember it until
    `forget_interruption`."""
    global _pending
    _pending = interruption
    if not _deferring:
        raise interruption


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Run the block with Ctrl-C and SIGTERM noted, not raised; one that came is raised as it ends."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    raise_if_interrupted()


def raise_if_interrupted() -> None:
    """Raise again the interruption remembered, if any: it was swallowed on its way out."""
    if _pending is not None:
        raise _pending


def forget_interruption() -> None:
    global _pending
    _pending = None
