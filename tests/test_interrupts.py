"""A Ctrl-C that a library swallows is raised again: training stops after the epoch it landed in.

Keras' callback list turns logs into floats inside a bare `except: pass`, so a Ctrl-C
that arrives while it does is lost, and training went on to its last epoch (seen as
a run that ignored Ctrl-C, `tests/test_signals.py`). Here the signal lands exactly
in such a place: a callback sends it to this process inside `except BaseException: pass`.
"""

from __future__ import annotations

import signal

import pytest
from tensorflow import keras

from src.core.cli import run_command
from src.core.config import Config
from src.core.errors import EXIT_INTERRUPTED
from src.training.hooks import TrainingCallbacks
from src.training.trainer import train
from tests.synthetic import make_arrays


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


@pytest.mark.parametrize("plain", [False, True], ids=["compiled-loop", "fit"])
def test_a_swallowed_ctrl_c_stops_training_after_that_epoch(plain, capsys):
    images, labels, _ = make_arrays()
    config = Config(epochs=5, scaling="unit", hidden_units=(16,), plain=plain)
    epochs = []
    hooks = TrainingCallbacks(run=[SwallowedCtrlC(1, epochs)])
    status = run_command(lambda argv: train(config, images, labels, verbose=0, callbacks=hooks) and 0)
    assert status == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted: nothing was finished\n"
    assert epochs == [0, 1]
    # Handled: the next command starts with nothing pending.
    assert run_command(lambda argv: 0) == 0


def test_ctrl_c_ignored_by_whoever_started_the_command_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        during = []
        assert run_command(lambda argv: during.append(signal.getsignal(signal.SIGINT)) or 0) == 0
        assert during == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_handlers_are_given_back_when_the_command_ends():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert run_command(lambda argv: 0) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
