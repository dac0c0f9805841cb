"""The keras-io example `examples/vision/mnist_convnet.py` as published, for `scripts/benchmark.py` to time.

python scripts/keras_io_reference.py DATA_DIR EPOCHS RESULT_JSON [SEED]

The published recipe, reading Kaggle's train.csv instead of `keras.datasets`
(which holds the competition's test digits): two 3x3 convolutions of 32 and 64
filters, each followed by a 2x2 max-pool, dropout 0.5, a softmax; Adam,
batch 128, 15 epochs, `validation_split=0.1`. The one addition is a seed, so
that a benchmark can be repeated. The JSON holds the fit time and, per epoch,
the seconds since training started and the validation accuracy; a
submission is written beside it.
"""

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import layers

data_dir, epochs, result_path = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
keras.utils.set_random_seed(int(sys.argv[4]) if len(sys.argv) > 4 else 42)
num_classes = 10
input_shape = (28, 28, 1)

train = pd.read_csv(data_dir / "train.csv")
x_train = train.drop(columns="label").to_numpy().reshape(-1, 28, 28, 1).astype("float32") / 255
y_train = keras.utils.to_categorical(train["label"].to_numpy(), num_classes)

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
)
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])


class EpochClock(keras.callbacks.Callback):
    """Seconds since training began at each epoch's end, as the package's histories keep them."""

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.seconds = []

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


clock = EpochClock()
history = model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_split=0.1, callbacks=[clock], verbose=0)
fit_seconds = time.perf_counter() - clock.started

test = pd.read_csv(data_dir / "test.csv").to_numpy().reshape(-1, 28, 28, 1).astype("float32") / 255
predictions = model.predict(test, verbose=0).argmax(axis=1)
submission = pd.DataFrame({"ImageId": np.arange(1, len(predictions) + 1), "Label": predictions})
submission.to_csv(result_path.with_suffix(".csv"), index=False)
curve = zip(clock.seconds, history.history["val_accuracy"], strict=True)
result = {
    "train_seconds": fit_seconds,
    "accuracy": history.history["val_accuracy"][-1],
    "rows": len(x_train),
    "epochs": [
        {"epoch": epoch, "seconds": seconds, "val_accuracy": accuracy}
        for epoch, (seconds, accuracy) in enumerate(
            zip(clock.seconds, history.history["val_accuracy"], strict=True), start=1
        )
    ],
}
result_path.write_text(json.dumps(result))
