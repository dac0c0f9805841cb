"""Command line: send an existing submission file to Kaggle, without retraining.

python -m src.upload submissions/submission.csv -m "tutorial network, 50 epochs"

The file is validated first (header, ImageId 1..N, labels 0..9, and one row per
line of `test.csv` when `--data` holds it); an invalid file is never sent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# The Kaggle client and pandas load inside the command-line boundary (`main`).
from .cli import ArgumentParser, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m src.upload",
        description="Validate an ImageId,Label file and submit it to Kaggle's Digit Recognizer competition.",
    )
    parser.add_argument("file", type=Path, help="the submission to send, e.g. submissions/submission.csv")
    parser.add_argument("-m", "--message", required=True, help="the submission's description on Kaggle")
    parser.add_argument(
        "--data",
        type=Path,
        help="folder whose test.csv gives the expected row count (default: data/; skipped when absent)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(upload_file, argv)


def upload_file(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from .data import DEFAULT_DATA_DIR
    from .kaggle_io import count_rows, submit_file

    test_path = (args.data or DEFAULT_DATA_DIR) / "test.csv"
    n_rows = count_rows(test_path) if test_path.is_file() else None
    if n_rows is None:
        print(f"note: {test_path} not found, so the row count is not checked", file=sys.stderr)
    try:
        answer = submit_file(args.file, args.message, n_rows=n_rows)
    except KeyboardInterrupt as interruption:
        raise type(interruption)(f"check on Kaggle whether {args.file} arrived") from None
    print(f"submitted {args.file}; Kaggle says: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
