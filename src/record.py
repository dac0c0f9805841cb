"""The run record: a JSON file that says what a submission came from."""

from __future__ import annotations

import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn")


def command_line() -> str:
    """How this process was started, e.g. `python -m src.submit --folds 5`."""
    program = Path(sys.argv[0])
    if program.parent.name == "src" and program.suffix == ".py":
        start = f"python -m src.{program.stem}"
    else:
        start = f"python {program.name}"
    return " ".join([start, *map(shlex.quote, sys.argv[1:])])


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_record(config, inputs, training, labels, timings, submission_path) -> dict:
    """Collect everything needed to tell how a submission was made.

    Args:
        config: The run's `Config`.
        inputs: `{"train": {"path": ..., "sha256": ..., "rows": ...}, "test": {...}}`.
        training: The `TrainingResult`.
        labels: The training labels, to score the held-out rows.
        timings: Seconds per stage, e.g. `{"load": 1.2, "train": 30.5}`.
        submission_path: Where the submission was written.
    """
    members = [
        {
            "validation_rows": int(len(member.validation_rows)),
            "validation_accuracy": member.validation_accuracy(labels),
            "seconds": round(member.seconds, 3),
        }
        for member in training.members
    ]
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "config": config.to_dict(),
        "versions": package_versions(),
        "inputs": inputs,
        "validation": {
            "scheme": "holdout" if config.folds == 1 else f"stratified {config.folds}-fold",
            "accuracy": training.validation_accuracy(labels),
            "members": members,
        },
        "timings": {stage: round(seconds, 3) for stage, seconds in timings.items()},
        "submission": str(submission_path),
    }
