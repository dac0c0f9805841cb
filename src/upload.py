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
from .kaggle.competition import COMPETITION, TEST_ROWS
from .kaggle.upload import (
    add_wait_arguments,
    expected_row_count,
    follow_and_report,
    interrupted_line,
    submitted_line,
    upload_submission,
    wait_timeout,
)


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
    add_wait_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = upload_submission(args.file, args.message, expected_row_count(args.data))
    except USER_ERRORS as error:
        print(user_error_message(error), file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except KeyboardInterrupt:
        print(interrupted_line(args.file), file=sys.stderr)
        return 130
    print(submitted_line(args.file, result), flush=True)
    return follow_and_report(args.file, result, args.message, wait_timeout(args))


if __name__ == "__main__":
    sys.exit(main())
