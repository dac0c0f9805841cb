"""Command line: send an existing submission file to Kaggle, without retraining.

python -m src.upload submissions/submission.csv -m "tutorial network, 50 epochs"

The file is validated first (header, ImageId 1..N, labels 0..9, and one row per
line of `test.csv` when `--data` holds it); an invalid file is never sent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import USER_ERRORS, user_error_message
from .data import DEFAULT_DATA_DIR
from .kaggle_io import COMPETITION, count_rows, submit_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m src.upload",
        description=f"Validate an ImageId,Label file and submit it to Kaggle's {COMPETITION} competition.",
    )
    parser.add_argument("file", type=Path, help="the submission to send, e.g. submissions/submission.csv")
    parser.add_argument("-m", "--message", required=True, help="the submission's description on Kaggle")
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder whose test.csv gives the expected row count (default: data/; skipped when absent)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    test_path = args.data / "test.csv"
    try:
        n_rows = count_rows(test_path) if test_path.is_file() else None
        if n_rows is None:
            print(f"note: {test_path} not found, so the row count is not checked", file=sys.stderr)
        answer = submit_file(args.file, args.message, n_rows=n_rows)
    except USER_ERRORS as error:
        print(user_error_message(error), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: check on Kaggle whether {args.file} arrived", file=sys.stderr)
        return 130
    print(f"submitted {args.file}; Kaggle says: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
