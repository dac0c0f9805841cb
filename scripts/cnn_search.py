"""Train one CNN candidate on the real 42,000 rows and time every epoch: which CNN is the CPU `cnn` preset.

python scripts/cnn_search.py --candidate small --epochs 15
python scripts/cnn_search.py --candidate deotte --epochs 2 --schedule exponential --batch-size 64

The last 20% of train.csv's rows are held out (as Keras' validation_split 0.2
does), pixels scaled to 0..1. After each epoch it prints and records the
validation accuracy, the wall seconds and this process's CPU seconds; the
quiet-machine wall time is ESTIMATED as CPU seconds / threads TensorFlow uses
(at most the cores this process may run on), which holds when the machine is
shared with other work and TensorFlow keeps its threads busy. Writes one JSON
line per run to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "digit-recognizer.zip"
VALIDATION_SHARE = 0.2
PIXEL_MAXIMUM = 255.0

# Each candidate: the keyword arguments of src.model.build_cnn.
CANDIDATES = {
    # 3x3 stacks 16/32/64, stride-2 downsampling, a small dense head (~75k parameters).
    "small": {"filters": (16, 32, 64), "dense_units": 64, "dropout": 0.25},
    # The same without the dense layer: 10 outputs straight from the 4x4x64 map (~70k).
    "small-nohead": {"filters": (16, 32, 64), "dense_units": 0, "dropout": 0.25},
    # One 3x3 conv per block before the stride-2 one, 16/32/64 filters (~80k).
    "small-single": {"filters": (16, 32, 64), "convs_per_block": 1, "dense_units": 0, "dropout": 0.2},
    # Fewer filters, one conv per block before the stride-2 one (~20k).
    "tiny": {"filters": (16, 32, 32), "convs_per_block": 1, "dense_units": 0, "dropout": 0.2},
    # The issue's [32C3-32C3-32C5S2]-[64C3-64C3-64C5S2]-128C4-10 (~327k).
    "deotte": {
        "filters": (32, 64),
        "padding": "valid",
        "downsample_kernel_size": 5,
        "dense_units": 128,
        "dropout": 0.4,
    },
}


def load_real_rows(zip_path: Path):
    """Pixels scaled to 0..1 (float32) and one-hot labels of train.csv inside the competition's zip."""
    import numpy as np
    import pandas as pd

    with zipfile.ZipFile(zip_path) as archive, archive.open("train.csv") as handle:
        frame = pd.read_csv(handle, dtype="int64")
    labels = frame.pop("label").to_numpy()
    pixels = (frame.to_numpy(dtype="float32") / PIXEL_MAXIMUM).astype("float32")
    return pixels, np.eye(10, dtype="float32")[labels]


def threads_in_use(tf) -> int:
    """Threads TensorFlow's intra-op pool runs (0 means one per usable core)."""
    cores = len(os.sched_getaffinity(0))
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    return min(configured or cores, cores)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", choices=sorted(CANDIDATES), default="small")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--schedule-epochs", type=int, help="epochs the schedule spans (default --epochs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="peak (one-cycle) or starting rate")
    parser.add_argument("--schedule", default="one-cycle")
    parser.add_argument("--augment", action="store_true", help="random rotation, zoom and shift in training")
    parser.add_argument("--rotation", type=float, default=10.0, help="degrees, with --augment")
    parser.add_argument("--zoom", type=float, default=0.1, help="share of the side, with --augment")
    parser.add_argument("--shift", type=float, default=0.1, help="share of the side, with --augment")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--onednn", action="store_true", help="leave oneDNN on (off by default: measured faster)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tta", action="store_true", help="also score test-time augmentation at the end")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "cnn_search.jsonl")
    args = parser.parse_args(argv)
    if not args.onednn:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

    import numpy as np
    import tensorflow as tf
    from tensorflow import keras

    sys.path.insert(0, str(REPO_ROOT))
    from src.augmentation import build_augmentation, predict_with_tta
    from src.model import build_cnn
    from src.schedules import learning_rate_schedule

    keras.utils.set_random_seed(args.seed)
    pixels, labels = load_real_rows(args.data)
    split = int(len(pixels) * (1 - VALIDATION_SHARE))
    train_x, train_y, valid_x, valid_y = pixels[:split], labels[:split], pixels[split:], labels[split:]
    steps_per_epoch = -(-len(train_x) // args.batch_size)
    schedule = learning_rate_schedule(
        args.schedule, args.learning_rate, steps_per_epoch, args.schedule_epochs or args.epochs
    )
    jit_compile = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    model = build_cnn(
        **CANDIDATES[args.candidate],
        learning_rate=schedule,
        label_smoothing=args.label_smoothing,
        augmentation=build_augmentation(args.rotation, args.zoom, args.shift, args.seed) if args.augment else None,
        jit_compile=jit_compile,
    )
    threads = threads_in_use(tf)
    run = {
        "candidate": args.candidate,
        "architecture": CANDIDATES[args.candidate],
        "parameters": model.count_params(),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "schedule": args.schedule,
        "learning_rate": args.learning_rate,
        "augment": [args.rotation, args.zoom, args.shift] if args.augment else None,
        "label_smoothing": args.label_smoothing,
        "jit_compile": args.jit_compile,
        "onednn": args.onednn,
        "seed": args.seed,
        "train_rows": len(train_x),
        "validation_rows": len(valid_x),
        "threads": threads,
        "epochs_run": [],
    }
    print(f"{args.candidate}: {run['parameters']:,} parameters, {threads} threads, {len(train_x):,} training rows")

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
            figures = {
                "epoch": epoch + 1,
                "val_accuracy": round(float(logs["val_accuracy"]), 5),
                "accuracy": round(float(logs["accuracy"]), 5),
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
                "quiet_wall_estimate_s": round(cpu / threads, 1),
            }
            run["epochs_run"].append(figures)
            print(json.dumps(figures), flush=True)

    started_wall, started_cpu = time.perf_counter(), time.process_time()
    model.fit(
        train_x,
        train_y,
        validation_data=(valid_x, valid_y),
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[EpochClock()],
    )
    run["total_wall_s"] = round(time.perf_counter() - started_wall, 1)
    run["total_cpu_s"] = round(time.process_time() - started_cpu, 1)
    run["quiet_total_estimate_s"] = round(run["total_cpu_s"] / threads, 1)
    if args.tta:
        plain = model.predict(valid_x, batch_size=512, verbose=0).argmax(axis=1)
        shifted = predict_with_tta(model, valid_x).argmax(axis=1)
        truth = valid_y.argmax(axis=1)
        run["val_accuracy_plain"] = round(float(np.mean(plain == truth)), 5)
        run["val_accuracy_tta"] = round(float(np.mean(shifted == truth)), 5)
    summary = {key: value for key, value in run.items() if key != "epochs_run"}
    print(json.dumps(summary))
    with args.out.open("a") as handle:
        handle.write(json.dumps(run) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
