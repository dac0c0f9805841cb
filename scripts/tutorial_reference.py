"""The Keras tutorial's code as written, for `scripts/benchmark.py` to time in its own process.

python scripts/tutorial_reference.py DATA_DIR EPOCHS RESULT_JSON

Reads the CSVs with pandas, fits the plain Sequential model with
`validation_split=0.2, batch_size=128`, predicts the test set and writes a
submission beside RESULT_JSON; the JSON holds the fit time and the last
epoch's validation accuracy.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tensorflow import keras
from tensorflow.keras import layers, regularizers

data_dir, epochs, result_path = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
keras.utils.set_random_seed(42)

train = pd.read_csv(data_dir / "train.csv")
test = pd.read_csv(data_dir / "test.csv")
X = train.drop(columns="label").values.astype("float32")
y = keras.utils.to_categorical(train["label"].values, 10)

model = keras.Sequential(
    [
        keras.Input(shape=(784,)),
        layers.Dense(20, activation="relu", kernel_regularizer=regularizers.l2(1e-2)),
        layers.Dense(15, activation="relu", kernel_regularizer=regularizers.l2(1e-2)),
        layers.Dense(10, activation="softmax", kernel_regularizer=regularizers.l2(1e-2)),
    ]
)
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
started = time.perf_counter()
history = model.fit(X, y, validation_split=0.2, batch_size=128, epochs=epochs)
fit_seconds = time.perf_counter() - started

predictions = model.predict(test.values.astype("float32")).argmax(axis=1)
submission = pd.DataFrame({"ImageId": np.arange(1, len(predictions) + 1), "Label": predictions})
submission.to_csv(result_path.with_suffix(".csv"), index=False)
result = {"train_seconds": fit_seconds, "accuracy": history.history["val_accuracy"][-1], "rows": len(X)}
result_path.write_text(json.dumps(result))
