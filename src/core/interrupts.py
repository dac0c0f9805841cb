"""Ctrl-C and SIGTERM that no library can swallow.

Python raises `KeyboardInterrupt` wherever the main thread is when the signal
arrives. Keras turns each batch's and epoch's logs into floats inside a bare
`except: pass` (`keras.src.utils.python_utils.pythonify_logs`, Keras 3.15), so a
Ctrl-C that lands there is lost: training goes on to its last epoch and writes
its files. The command line's handlers (`src.core.cli.run_command`) remember the
interruption as they raise it; training calls `raise_if_interrupted` after each
epoch's and batch's callbacks, and a run once more before it saves anything, so
a swallowed one is raised again where nothing catches it.

While TensorFlow runs (`deferred_interrupts`: training, prediction, TensorBoard's
files), the handlers only remember the signal. Python runs a handler wherever the
main thread next runs Python code, and that may be a call from TensorFlow's C++
code back into Python (converting a value for a TensorBoard scalar, say), which
does not survive an exception raised through it: the process died of a
segmentation fault instead of exiting 130. The interruption is raised at the next
check instead (a batch's start, an epoch's end, a model built) or as the block ends,
whichever way it ends. A second signal while one is pending raises the first at
once, wherever the main thread is: a way out of a wait that has no check.

A handler may also run inside a `__del__` or a weakref callback that garbage
collection called; Python prints a traceback for an exception raised there and
drops it. The command line sends such a signal again (`dropped`), to be raised in
the code that was running.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pending: KeyboardInterrupt | None = None
_deferring = 0  # how many `deferred_interrupts` blocks the main thread, where handlers run, is in
_sent_again = False  # the next signal is the pending interruption sent again (`dropped`), not a second one


def interrupt(interruption: KeyboardInterrupt) -> None:
    """Remember `interruption` (the first, if one is pending) and raise it, unless deferred and the first."""
    global _pending, _sent_again
    first = _pending is None
    if first:
        _pending = interruption
    again, _sent_again = _sent_again, False
    if not ((first or again) and _deferring):
        raise _pending


def dropped(exception: BaseException) -> bool:
    """Whether `exception` is the pending interruption, which Python dropped: raised in a `__del__` or a weakref
    callback, which garbage collection runs anywhere, it cannot reach the command. If so, the caller sends the
    signal again; it then only raises the same interruption, as the first would have (noted while deferred)."""
    global _sent_again
    if _pending is None or exception is not _pending:
        return False
    _sent_again = True
    return True


def still_pending(interruption: KeyboardInterrupt) -> bool:
    return _pending is interruption


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Run the block with a Ctrl-C or SIGTERM noted, not raised; one that came is raised as the block ends."""
    global _deferring
    in_main_thread = threading.current_thread() is threading.main_thread()
    _deferring += in_main_thread
    try:
        yield
    finally:
        _deferring -= in_main_thread
        # Also when the block ends in another error (a pruned trial, say): the interruption is what ends the command.
        raise_if_interrupted()


def raise_if_interrupted() -> None:
    """Raise again the interruption remembered, if any: it was swallowed on its way out."""
    if _pending is not None:
        raise _pending


def forget_interruption() -> None:
    global _pending, _sent_again
    _pending = None
    _sent_again = False
