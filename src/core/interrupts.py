"""Ctrl-C and SIGTERM that no library can swallow.

Python raises `KeyboardInterrupt` wherever the main thread is when the signal
arrives. Keras turns each batch's and epoch's logs into floats inside a bare
`except: pass` (`keras.src.utils.python_utils.pythonify_logs`, Keras 3.15), so a
Ctrl-C that lands there is lost: training goes on to its last epoch and writes
its files. The command line's handlers (`src.core.cli.run_command`) remember the
interruption as they raise it; training calls `raise_if_interrupted` after each
epoch's and batch's callbacks, and a run once more before it saves anything, so
a swallowed one is raised again where nothing catches it.
"""

from __future__ import annotations

from typing import NoReturn

_pending: KeyboardInterrupt | None = None


def interrupt(interruption: KeyboardInterrupt) -> NoReturn:
    """Raise `interruption`, and remember it until `forget_interruption`."""
    global _pending
    _pending = interruption
    raise interruption


def raise_if_interrupted() -> None:
    """Raise again the interruption remembered, if any: it was swallowed on its way out."""
    if _pending is not None:
        raise _pending


def forget_interruption() -> None:
    global _pending
    _pending = None
