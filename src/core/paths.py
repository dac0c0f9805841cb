"""File names and default folders: where a run writes and where the commands look by default.

They sit in a module of their own, importing nothing beyond the standard library, so
that the Kaggle commands can name a run's files without loading NumPy, pandas or
scikit-learn (`src/runs.py` and `src/data.py` need all three).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_DATA_DIR = Path("data")
DEFAULT_SUBMISSION = Path("submissions/submission.csv")
# A run folder sits in `runs/` beside its submission.
RUNS_FOLDER = "runs"
DEFAULT_RUNS_DIR = DEFAULT_SUBMISSION.parent / RUNS_FOLDER
RUN_RECORD_NAME = "record.json"
RUN_SUBMISSION_NAME = "submission.csv"
# What a kernel writes in its working folder, the name Kaggle's "submit from a kernel" expects.
KERNEL_SUBMISSION_NAME = "submission.csv"
RECORD_SUFFIX = ".json"


def record_path_for(submission_path: str | Path) -> Path:
    """The record sits beside the submission: `submission.csv` -> `submission.json`."""
    return Path(submission_path).with_suffix(RECORD_SUFFIX)
