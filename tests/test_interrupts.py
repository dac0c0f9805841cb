"""A Ctrl-C that a library swallows is raised again: training stops after the epoch it landed in.
One that lands while TensorFlow runs is raised after it, never inside it.

Keras' callback list turns logs into floats inside a bare `except: pass`, so a Ctrl-C
that arrives while it does is lost, and training went on to its last epoch (seen as
a run that ignored Ctrl-C, `tests/test_signals.py`). Here the signal lands exactly
in such a place: a callback sends it to this process inside `except BaseException: pass`.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import time
import weakref

import pytest
from tensorflow import keras

from src.core.cli import run_command
from src.core.config import Config
from src.core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, UserError
from src.core.interrupts import deferred_interrupts, raise_if_interrupted
from src.training.hooks import TrainingCallbacks
from src.training.trainer import train
from tests import helpers
from tests.synthetic import make_arrays


def assert_ends(command, capsys, status: int = EXIT_INTERRUPTED) -> None:
    """`command`, run as a command line, ends with `status` and its one line, in seconds, not at its sleep's end."""
    started = time.monotonic()
    assert run_command(command) == status
    assert time.monotonic() - started < 5
    verb = "terminated" if status == EXIT_TERMINATED else "interrupted"
    assert capsys.readouterr().err == f"{verb}: nothing was finished\n"


class SwallowedCtrlC(keras.callbacks.Callback):
    """Ctrl-C at the end of epoch `at` (0-based), swallowed as Keras' `pythonify_logs` swallows it."""

    def __init__(self, at: int, epochs: list):
        super().__init__()
        self.at, self.epochs = at, epochs

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        if epoch == self.at:
            try:
                signal.raise_signal(signal.SIGINT)
            except BaseException:  # as the library does
                pass


def train_five_epochs(plain: bool, callback: keras.callbacks.Callback) -> int:
    """The exit status of a command that trains a small dense network for 5 epochs with `callback`."""
    images, labels, _ = make_arrays()
    config = Config(epochs=5, scaling="unit", hidden_units=(16,), plain=plain)
    hooks = TrainingCallbacks(run=[callback])
    return run_command(lambda argv: train(config, images, labels, verbose=0, callbacks=hooks) and 0)


@pytest.mark.parametrize("plain", [False, True], ids=["compiled-loop", "fit"])
def test_a_swallowed_ctrl_c_stops_training_after_that_epoch(plain, capsys):
    epochs = []
    assert train_five_epochs(plain, SwallowedCtrlC(1, epochs)) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted: nothing was finished\n"
    assert epochs == [0, 1]
    # Handled: the next command starts with nothing pending.
    assert run_command(lambda argv: 0) == 0


class CtrlCInsideACallback(keras.callbacks.Callback):
    """Ctrl-C at the end of epoch `at`, in code that TensorFlow's C++ code may be calling, as a TensorBoard
    scalar's conversion did when a run died of a segmentation fault instead of exiting 130."""

    def __init__(self, at: int, steps: list):
        super().__init__()
        self.at, self.steps = at, steps

    def on_epoch_end(self, epoch, logs=None):
        self.steps.append(f"epoch {epoch}")
        if epoch == self.at:
            signal.raise_signal(signal.SIGINT)
            self.steps.append("went on")  # nothing was raised through the caller


@pytest.mark.parametrize("plain", [False, True], ids=["compiled-loop", "fit"])
def test_a_ctrl_c_while_training_is_raised_between_steps_not_inside_them(plain, capsys):
    steps = []
    assert train_five_epochs(plain, CtrlCInsideACallback(1, steps)) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted: nothing was finished\n"
    assert steps == ["epoch 0", "epoch 1", "went on"]


def test_a_ctrl_c_in_a_deferred_block_is_raised_as_it_ends(capsys):
    steps = []

    def command(argv):
        with deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            steps.append("went on")
        steps.append("after the block")
        return 0

    assert_ends(command, capsys)
    assert steps == ["went on"]
    # Outside the block, the handler raises at once again.
    assert (
        run_command(lambda argv: signal.raise_signal(signal.SIGINT) or steps.append("not reached")) == EXIT_INTERRUPTED
    )
    assert steps == ["went on"]


def test_an_interruption_in_a_deferred_block_outlives_another_error_ending_it(capsys):
    # A search's pruned trial ends the block in the epoch the Ctrl-C came in: the Ctrl-C still ends the command.
    def command(argv):
        with deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            raise UserError("a pruned trial, an out-of-memory error")

    assert_ends(command, capsys)


def test_a_second_signal_in_a_deferred_block_raises_the_first_at_once(capsys):
    steps = []

    def command(argv):
        with deferred_interrupts():
            signal.raise_signal(signal.SIGTERM)
            steps.append("noted")
            signal.raise_signal(signal.SIGINT)
            steps.append("not reached")

    assert_ends(command, capsys, EXIT_TERMINATED)
    assert steps == ["noted"]


class Collected:
    """An object whose collection runs a weakref callback, as garbage collection may anywhere."""


def collect_with(callback) -> None:
    """Collect an object whose weakref callback is `callback`: Python drops what it raises."""
    doomed = Collected()
    watcher = weakref.ref(doomed, lambda _: callback())
    del doomed
    assert watcher() is None


def drop_signal(number: int = signal.SIGINT) -> None:
    """A signal whose handler runs in a weakref callback."""
    collect_with(lambda: signal.raise_signal(number))


@pytest.fixture
def unraisable(monkeypatch) -> list:
    """What reaches the hook a command found (Python's prints it; pytest's turns it into a warning)."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


@pytest.mark.parametrize(
    ("number", "status", "ctrl_c"),
    [
        (signal.SIGINT, EXIT_INTERRUPTED, "handled"),
        (signal.SIGTERM, EXIT_TERMINATED, "handled"),
        (signal.SIGTERM, EXIT_TERMINATED, "ignored"),  # a background job's: SIGTERM is sent again on its own
    ],
    ids=["ctrl-c", "sigterm", "sigterm-with-ctrl-c-ignored"],
)
def test_a_signal_python_drops_is_sent_again_and_wakes_a_sleep_without_a_traceback(
    number, status, ctrl_c, unraisable, capsys
):
    steps = []

    def command(argv):
        drop_signal(number)
        steps.append("dropped")
        time.sleep(10)
        steps.append("not reached")

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ctrl_c == "ignored" else None
    try:
        assert_ends(command, capsys, status)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    assert steps == ["dropped"]
    assert unraisable == []


def test_what_else_python_drops_still_reaches_the_hook_before(unraisable):
    assert run_command(lambda argv: collect_with(lambda: 1 / 0) or 0) == 0
    assert [type(each.exc_value) for each in unraisable] == [ZeroDivisionError]


class HalfMade:
    """An object whose making a Ctrl-C cut short: its `__del__` reads what `__init__` never set (a `ZipFile`'s)."""

    def __init__(self):
        signal.raise_signal(signal.SIGINT)
        self.made = True

    def __del__(self):
        assert self.made


def test_a_clean_up_that_fails_after_a_ctrl_c_prints_no_traceback(unraisable, capsys):
    assert_ends(lambda argv: HalfMade(), capsys, EXIT_INTERRUPTED)
    gc.collect()  # as at the process's exit
    assert unraisable == []  # the AttributeError its __del__ raised never reached Python's printing hook


def test_a_clean_ups_own_failure_after_a_ctrl_c_still_reaches_the_hook(unraisable, capsys):
    def command(argv):
        with contextlib.suppress(KeyboardInterrupt):  # swallowed, as Keras' callback list may
            signal.raise_signal(signal.SIGINT)
        collect_with(lambda: 1 / 0)  # nothing the interruption cut short: a failure the user must see
        raise_if_interrupted()

    assert_ends(command, capsys, EXIT_INTERRUPTED)
    assert [type(each.exc_value) for each in unraisable] == [ZeroDivisionError]


def test_a_dropped_signal_raised_by_a_check_first_is_not_raised_again_in_the_cleanups(unraisable, capsys):
    steps = []

    def command(argv):
        drop_signal()
        try:
            raise_if_interrupted()
        finally:
            time.sleep(0.2)  # the signal sent again arrives meanwhile
            steps.append("cleaned up")

    assert_ends(command, capsys)
    assert steps == ["cleaned up"]
    assert unraisable == []


def test_a_second_ctrl_c_before_the_dropped_one_is_sent_again_leaves_nothing_owed(unraisable, capsys):
    steps = []

    def command(argv):
        drop_signal()
        try:
            signal.raise_signal(signal.SIGINT)  # the user's second, within the moment before it is sent again
        finally:
            time.sleep(0.2)
            steps.append("cleaned up")

    assert_ends(command, capsys)
    assert steps == ["cleaned up"]


def test_nothing_is_raised_after_the_command_that_dropped_a_signal_ends(unraisable, capsys):
    # It finished its work: its status stands, and the signal owed to it does not reach its caller.
    assert run_command(lambda argv: drop_signal() or 0) == 0
    time.sleep(0.2)
    assert capsys.readouterr().err == ""
    assert unraisable == []


def test_a_dropped_signal_sent_again_in_a_deferred_block_waits_for_its_end(unraisable, capsys):
    steps = []

    def command(argv):
        drop_signal()
        with deferred_interrupts():
            time.sleep(0.2)  # the signal sent again arrives meanwhile, and is only noted
            steps.append("went on")
        steps.append("not reached")

    assert_ends(command, capsys)
    assert steps == ["went on"]


def test_a_dropped_second_signal_in_a_deferred_block_still_stops_it_at_once(unraisable, capsys):
    steps = []

    def command(argv):
        with deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            steps.append("noted")
            drop_signal()  # the second, which forces its way out
            steps.append("dropped")
            time.sleep(10)
            steps.append("not reached")

    assert_ends(command, capsys)
    assert steps == ["noted", "dropped"]
    assert unraisable == []


# A command ends, then the libraries' teardown runs; signals that come then (atexit stands in for it).
AFTER_THE_COMMAND = """
import atexit, os, signal
from src.core.cli import exit_process, run_command
atexit.register(lambda: [os.kill(os.getpid(), number) for number in (signal.SIGINT, signal.SIGTERM)])
exit_process(run_command(lambda argv: 3))
"""


def test_ctrl_c_or_sigterm_during_the_teardown_after_a_command_leaves_its_status_alone():
    ended = helpers.run_command("-c", AFTER_THE_COMMAND)
    assert (ended.returncode, ended.stdout, ended.stderr) == (3, "", "")


def test_ctrl_c_ignored_by_whoever_started_the_command_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        during = []
        assert run_command(lambda argv: during.append(signal.getsignal(signal.SIGINT)) or 0) == 0
        assert during == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_handlers_are_given_back_when_the_command_ends():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.unraisablehook
    during = []
    assert run_command(lambda argv: during.append(sys.unraisablehook) or 0) == 0
    assert during != [before[2]]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.unraisablehook) == before
