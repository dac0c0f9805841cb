"""Wall-clock time at each epoch's end, kept in the training History as `seconds`.

With it, a run folder's `histories.json` pairs every epoch's validation
accuracy with the seconds since training started, which is what the
benchmark's time-to-accuracy table is drawn from.
"""

from __future__ import annotations

import time

from tensorflow import keras

SECONDS_KEY = "seconds"


class EpochTimer(keras.callbacks.Callback):
    """Records, per epoch, the seconds from the start of training to the end of that epoch.

    The times go into the model's History when training ends, not into each
    epoch's logs, so Keras' progress line stays as it was.
    """

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.seconds = []

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(round(time.perf_counter() - self.started, 3))

    def on_train_end(self, logs=None):
        history = getattr(self.model, "history", None)
        # No epoch ended (interrupted at once): there is no History to add to.
        if history is not None and self.seconds:
            history.history[SECONDS_KEY] = list(self.seconds)
