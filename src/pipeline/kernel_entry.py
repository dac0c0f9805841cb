"""What the Kaggle kernel runs: find the competition's files, train, write submission.csv.

The script that `python -m src.kernel` builds carries the `src` package as a
zip, imports it from there, and calls `main(Config(**SETTINGS))`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from src.core.cli import ArgumentParser, import_tensorflow, run_command
from src.core.config import Config
from src.core.errors import UserError
from src.core.paths import KERNEL_SUBMISSION_NAME

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
# Kaggle mounts a competition's files under either name; a plain folder also works.
COMPETITION_DIRS = ("digit-recognizer", "competitions/digit-recognizer", ".")


def find_competition_dir(input_dir: Path) -> Path:
    """The folder under `input_dir` that holds `train.csv`."""
    for relative in COMPETITION_DIRS:
        candidate = input_dir / relative
        if (candidate / "train.csv").is_file():
            return candidate
    places = ", ".join(str(input_dir / relative / "train.csv") for relative in COMPETITION_DIRS)
    raise UserError(f"no train.csv in {places}; add the digit-recognizer competition's data to the kernel")


def main(config: Config, argv: Sequence[str] | None = None) -> int:
    """Train as `config` says on the competition's files; write `submission.csv`."""
    return run_command(lambda arguments: train_on_kaggle(config, arguments), argv)


def train_on_kaggle(config: Config, argv: Sequence[str] | None) -> int:
    started = time.perf_counter()  # the record's total counts reading the data and TensorFlow's start too
    parser = ArgumentParser(description="Train and write the Digit Recognizer submission.")
    parser.add_argument(
        "--input", type=Path, default=KAGGLE_INPUT, help=f"where the data is mounted (default: {KAGGLE_INPUT})"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=KAGGLE_WORKING,
        help=f"where to write {KERNEL_SUBMISSION_NAME} (default: {KAGGLE_WORKING})",
    )
    args = parser.parse_args(argv)
    data_dir = find_competition_dir(args.input)
    print(f"settings: {config.to_dict()}; data: {data_dir}", flush=True)
    from src.data.loading import load_datasets

    # Bad files are reported before TensorFlow loads (and takes seconds of the kernel's time), as locally.
    datasets = load_datasets(data_dir)
    import_tensorflow()
    machine = describe_machine()
    print(f"running on: {machine_words(machine)}", flush=True)
    from src.pipeline.run import run

    out = args.output / KERNEL_SUBMISSION_NAME
    result = run(config, data_dir, out, datasets_override=datasets, started=started, machine=machine)
    print(f"{score_words(result.record.validation.accuracy)}; wrote {result.submission_path}", flush=True)
    return 0


def describe_machine() -> dict:
    """What this kernel actually got: TensorFlow's devices, the GPUs' names, the CPU count, the versions."""
    import tensorflow as tf

    from src.runs.record import package_versions

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(str(details.get("device_name") or device.name))
    return {
        "devices": [device.name for device in tf.config.list_logical_devices()],
        "gpus": gpus,
        "cpus": os.cpu_count(),
        "versions": package_versions(),
    }


def machine_words(machine: dict) -> str:
    gpus = machine["gpus"]
    names = ", ".join(sorted(set(gpus))) if gpus else "no GPU"
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return f"{len(gpus)} GPU(s) ({names}), {machine['cpus']} CPUs, devices {', '.join(machine['devices'])}; {versions}"


def score_words(accuracy: float | None) -> str:
    """`validation accuracy 0.9712`, or the no-validation words when no row was held out."""
    # Here, as the pipeline is: the record module loads scikit-learn, inside the command-line boundary.
    from src.runs.record import NO_VALIDATION

    return NO_VALIDATION if accuracy is None else f"validation accuracy {accuracy:.4f}"
