"""Command line: send an existing submission file to Kaggle, without retraining.

python -m src.upload submissions/submission.csv -m "tutorial network, 50 epochs"

The file is validated first (header, ImageId 1..N, labels 0..9, and one row per
test image: the competition's 28,000, or as many as `--data`'s test.csv has);
an invalid file is never sent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import USER_ERRORS, user_error_message
from .data import DEFAULT_DATA_DIR
from .kaggle.competition import COMPETITION, TEST_ROWS, count_rows
from .kaggle.upload import interrupted_line, submitted_line, upload_submission


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
        help=f"folder whose test.csv gives the expected row count (default: data/; without it: {TEST_ROWS:,})",
    )
    return parser


def expected_rows(data_dir: Path) -> int:
    """Rows the submission must have: one per line of `data_dir`'s test.csv, else the competition's test set."""
    test_path = data_dir / "test.csv"
    return count_rows(test_path) if test_path.is_file() else TEST_ROWS


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = upload_submission(args.file, args.message, expected_rows(args.data))
    except USER_ERRORS as error:
        print(user_error_message(error), file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except KeyboardInterrupt:
        print(interrupted_line(args.file), file=sys.stderr)
        return 130
    print(submitted_line(args.file, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
