"""Command line: `python -m src.kaggle <subcommand>`, the Kaggle steps that scripts/*.sh run.

python -m src.kaggle credentials                # which credentials the client will use (never their value)
python -m src.kaggle download [DIR] [--force]   # the competition's files into DIR (default data/)
python -m src.kaggle push-kernel DIR            # push a kernel built by python -m src.kernel
python -m src.kaggle submissions                # your submissions and their public scores
python -m src.kaggle kernel-status USER/SLUG    # where the kernel's latest run stands
python -m src.kaggle kernel-output USER/SLUG DIR

Each failure is one line on stderr and its kind's exit code (see src/errors.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ..cli import user_error_message
from ..errors import EXIT_INTERRUPTED, EXIT_USER, UserError
from . import client
from .competition import COMPETITION, check_competition_files, count_rows, install_competition_zip
from .credentials import require_credentials

DEFAULT_DATA_DIR = Path("data")


def download(directory: Path, force: bool) -> None:
    """Put the competition's three files in `directory`, unless valid ones are there already."""
    if not force:
        try:
            check_competition_files(directory)
        except UserError as problem:
            if directory.exists():
                print(f"{problem}: downloading the files again")
        else:
            print(f"{directory} already holds the competition's files; nothing to do (--force downloads again)")
            return
    print(f"downloading the {COMPETITION} files from Kaggle ...", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"{COMPETITION}-") as workspace:
        installed = install_competition_zip(client.download_competition(workspace), directory)
    for path in installed:
        print(f"{path}: {count_rows(path)} rows")
    print(f"done: the competition's files are in {directory}")


def push_kernel(folder: Path) -> None:
    pushed = client.push_kernel(folder)
    print(f"pushed {pushed.kernel_id} version {pushed.version}: {pushed.url}")
    print(f"when it has run: python -m src.kaggle kernel-status {pushed.kernel_id}")
    print(f"then:            python -m src.kaggle kernel-output {pushed.kernel_id} submissions/kernel")
    print(f'and submit it:   python -m src.upload submissions/kernel/submission.csv -m "kernel {pushed.kernel_id}"')


def list_submissions() -> None:
    for item in client.submissions():
        score = "-" if item.public_score is None else f"{item.public_score:.5f}"
        date = item.date.strftime("%Y-%m-%d %H:%M") if item.date else "-"
        print(f"{item.ref}\t{date}\t{item.status}\t{score}\t{item.description}")


def show_kernel_status(kernel_id: str) -> None:
    status = client.kernel_status(kernel_id)
    failure = f": {status.failure_message}" if status.failure_message else ""
    print(f"{kernel_id}: {status.state}{failure}")


def fetch_kernel_output(kernel_id: str, directory: Path) -> None:
    for path in client.kernel_output(kernel_id, directory):
        print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m src.kaggle", description="Kaggle steps for Digit Recognizer.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("credentials", help="say which Kaggle credentials will be used, or what to set")
    fetch = commands.add_parser("download", help="download, check and install the competition's files")
    fetch.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DATA_DIR, help="default: data/")
    fetch.add_argument("--force", action="store_true", help="download again even when the files are valid")
    push = commands.add_parser("push-kernel", help="push a kernel folder (kernel-metadata.json and its code)")
    push.add_argument("folder", type=Path)
    commands.add_parser("submissions", help="list your submissions to the competition")
    status = commands.add_parser("kernel-status", help="the state of a kernel's latest run")
    status.add_argument("kernel_id", metavar="USER/SLUG")
    output = commands.add_parser("kernel-output", help="download a kernel's output files and log")
    output.add_argument("kernel_id", metavar="USER/SLUG")
    output.add_argument("directory", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "credentials":
            print(f"Kaggle credentials: {require_credentials()}")
        elif args.command == "download":
            download(args.directory, args.force)
        elif args.command == "push-kernel":
            push_kernel(args.folder)
        elif args.command == "submissions":
            list_submissions()
        elif args.command == "kernel-status":
            show_kernel_status(args.kernel_id)
        else:
            fetch_kernel_output(args.kernel_id, args.directory)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(user_error_message(error), file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
