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
drops it. The command line's hook for those hides the traceback and sends the
signal again (`send_again`), to be raised in the code that was running, as it
would have been there; once the interruption is raised by other means, or the
command ends, the signal sent again does nothing.
"""

from __future__ import annotations

import _thread
import gc
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# How soon a dropped interruption is sent again; dropped again (a long collection), it is sent once more.
SEND_AGAIN_SECONDS = 0.01

_pending: KeyboardInterrupt | None = None
_deferring = 0  # how many `deferred_interrupts` blocks the main thread, where handlers run, is in
_owed: str | None = None  # a dropped interruption not raised since: "forced" through a deferred block, or "first"
_sent_again = False  # the next signal is the one `send_again` sends, not the user's
_sender: threading.Timer | None = None
_collecting = False  # `collect_what_it_cut_short` is running


def interrupt(interruption: KeyboardInterrupt) -> None:
    """Remember `interruption` (the first, if one is pending) and raise it, unless deferred and the first.

    The signal `send_again` sends raises the dropped interruption as it was raised before, and
    nothing once it has been raised since (the command is already on its way out)."""
    global _pending, _sent_again, _owed
    if _sent_again:
        _sent_again = False
        owed, _owed = _owed, None
        if owed == "forced" or (owed == "first" and not _deferring):
            raise _pending
        return
    first = _pending is None
    if first:
        _pending = interruption
    if not (first and _deferring):
        _owed = None
        raise _pending


def is_pending(exception: BaseException) -> bool:
    """Whether `exception` is the pending interruption."""
    return _pending is not None and exception is _pending


def send_again(number: int) -> None:
    """Send signal `number` to the main thread again, soon, for the pending interruption that Python dropped.

    Garbage collection runs `__del__` methods and weakref callbacks anywhere, so a handler may run in one.
    Sent from another thread: sent from here, it would be raised in the same place and dropped again.
    """
    global _owed, _sender

    def send() -> None:
        global _sent_again
        if _owed is not None:
            _sent_again = True
            if hasattr(signal, "pthread_kill"):
                signal.pthread_kill(threading.main_thread().ident, number)  # wakes a sleep, as the user's signal does
            else:  # Windows: the handler runs once the main thread runs Python again
                _thread.interrupt_main(number)

    stop_sending_again()
    _owed = "forced" if _deferring else "first"
    _sender = threading.Timer(SEND_AGAIN_SECONDS, send)
    _sender.daemon = True
    _sender.start()


def stop_sending_again() -> None:
    """From now on nothing is sent again, and a signal already sent raises nothing (a command's end)."""
    global _owed, _sender
    _owed = None
    # Taken first: a collection during the join may drop another interruption and start a timer of its own.
    sender, _sender = _sender, None
    if sender is not None:
        sender.cancel()
        sender.join()


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
    global _owed
    if _pending is not None:
        _owed = None
        raise _pending


def collect_what_it_cut_short() -> None:
    """Free, now, the objects whose making the interruption cut short, which its traceback keeps alive.

    Their clean-ups may fail (a `ZipFile` half made: `__del__` reads what `__init__` never set); run
    here, while the command's hook drops what they raise (`collecting_what_it_cut_short`), rather than
    at the process's exit, where Python would print it after the command's one line.
    """
    global _collecting
    if _pending is None:
        return
    _collecting = True
    try:
        _pending.__traceback__ = None  # frees at once what only the traceback held; the collection, cycles
        gc.collect()
    finally:
        _collecting = False


def interruption_pending() -> bool:
    """Whether the command was interrupted (Ctrl-C or SIGTERM), the interruption raised or not yet."""
    return _pending is not None


def collecting_what_it_cut_short() -> bool:
    return _collecting


def forget_interruption() -> None:
    global _pending, _sent_again
    stop_sending_again()
    _pending = None
    _sent_again = False
