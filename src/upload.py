"""Command line: send an existing submission file to Kaggle, without retraining.

python -m src.upload submissions/submission.csv -m "tutorial network, 50 epochs"

The file is validated first (header, ImageId 1..N, labels 0..9, and one row per
test image: the competition's 28,000, or as many as `--data`'s test.csv has);
an invalid file is never sent, nor one whose record (`.json` beside it) names
another file's sha256.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

# The Kaggle client and pandas load inside the command-line boundary (`main`).
from src.core.cli import ArgumentParser, exit_process, run_command
from src.core.flags import add_wait_arguments, wait_timeout


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
        help="folder whose test.csv gives the expected row count (default: data/; without it: 28,000)",
    )
    add_wait_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(upload_file, argv)


def upload_file(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from src.core.paths import DEFAULT_DATA_DIR
    from src.pipeline.upload import (
        expected_row_count,
        follow_and_print,
        unknown_arrival,
        upload_submission,
    )
    from src.runs.outputs import check_pair

    # A submission beside a record of another file is a cut-short or edited run: never sent.
    check_pair(args.file)
    try:
        rows = expected_row_count(args.data or DEFAULT_DATA_DIR)
        result = upload_submission(args.file, args.message, rows, force=args.force)
    except KeyboardInterrupt as interruption:
        raise type(interruption)(unknown_arrival(args.file)) from None
    follow_and_print(args.file, result, args.message, wait_timeout(args))
    return 0


if __name__ == "__main__":
    exit_process(main())
