"""Command line: `python -m src.kaggle <subcommand>`, the Kaggle steps that scripts/*.sh run.

python -m src.kaggle credentials                # which credentials the client will use (never their value)
python -m src.kaggle download [DIR] [--force]   # the competition's files into DIR (default data/)
python -m src.kaggle push-kernel DIR [--wait [--timeout S] [--submit -m MSG]]
                                                # push a kernel built by python -m src.kernel; then follow its run
python -m src.kaggle kernel-wait USER/SLUG [--kernel-dir DIR] [--timeout S] [--submit -m MSG]
                                                # wait for its run, fetch its output, compare, submit
python -m src.kaggle submissions                # your submissions and their public scores
python -m src.kaggle kernel-status USER/SLUG    # where the kernel's latest run stands
python -m src.kaggle kernel-output USER/SLUG DIR
python -m src.kaggle fan-out --parts N [settings of src.submit] [--out FILE] [--timeout S] [--submit -m MSG]
                                                # a bag's members on N kernels at once, blended into one submission

Each failure is one line on stderr and its kind's exit code (see src/core/errors.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from src.core.cli import ArgumentParser, exit_process, run_command
from src.core.config import GPU_PRESETS
from src.core.errors import UserError
from src.core.files import signals_deferred
from src.core.flags import add_settings_arguments, add_wait_arguments, config_from_args, seconds_argument, wait_timeout
from src.core.paths import DEFAULT_DATA_DIR, DEFAULT_RUNS_DIR, KERNEL_SUBMISSION_NAME
from src.data.competition import COMPETITION, check_competition_files, count_rows, install_competition_zip
from src.kaggle import client
from src.kaggle.credentials import kaggle_username, require_credentials
from src.kaggle.kernel_build import DEFAULT_KERNEL_DIR, DEFAULT_TITLE
from src.kaggle.kernel_run import DEFAULT_KERNEL_TIMEOUT, check_metadata, follow_kernel
from src.pipeline.upload import expected_row_count, follow_and_print, upload_submission
from src.runs.outputs import check_outside_run_folders


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


def push_kernel(folder: Path, args: argparse.Namespace) -> int:
    check_metadata(folder)
    pushed = client.push_kernel(folder)
    print(f"pushed {pushed.kernel_id} version {pushed.version}: {pushed.url}", flush=True)
    if args.wait:
        return wait_for_kernel(pushed.kernel_id, folder, args)
    print(f"when it has run: python -m src.kaggle kernel-status {pushed.kernel_id}")
    print(f"then:            python -m src.kaggle kernel-output {pushed.kernel_id} submissions/kernel")
    print(f'and submit it:   python -m src.upload submissions/kernel/submission.csv -m "kernel {pushed.kernel_id}"')
    print(f"or all in one:   python -m src.kaggle kernel-wait {pushed.kernel_id} --kernel-dir {folder}")
    return 0


def wait_for_kernel(kernel_id: str, kernel_dir: Path, args: argparse.Namespace) -> int:
    """Follow the kernel's run to its output; with --submit, send its submission.csv."""
    try:
        folder = follow_kernel(kernel_id, kernel_dir, args.timeout, args.runs)
    except KeyboardInterrupt as interruption:
        resume = f"python -m src.kaggle kernel-wait {kernel_id}"
        raise type(interruption)(f"the kernel keeps running on Kaggle; wait again with {resume}") from None
    if not args.submit:
        print(f'submit it with:  python -m src.upload {folder / KERNEL_SUBMISSION_NAME} -m "kernel {kernel_id}"')
        return 0
    path = folder / KERNEL_SUBMISSION_NAME
    result = upload_submission(path, args.message, expected_row_count(args.data), force=args.force)
    follow_and_print(path, result, args.message, wait_timeout(args))
    return 0


def fan_out(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Train a bag's members on `--parts` kernels at once and blend them; with --submit, send the blend."""
    from src.pipeline import fan_out as fanning

    config = config_from_args(args)
    username = args.username or kaggle_username()
    if not username:
        raise UserError("no Kaggle user name: pass --username NAME, or set KAGGLE_USERNAME or ~/.kaggle/kaggle.json")
    gpu = args.preset in GPU_PRESETS if args.gpu is None else args.gpu
    resume = "python -m src.kaggle " + " ".join(arg for arg in (argv if argv is not None else sys.argv[1:]))
    out, record = fanning.run(
        config,
        args.parts,
        username,
        args.title,
        gpu,
        args.kernel_dir,
        args.out,
        args.timeout,
        args.retry_failed,
        args.partial,
        resume,
    )
    print("\n".join(fanning.summary_lines(record, out)), flush=True)
    if args.submit:
        result = upload_submission(out, args.message, expected_row_count(args.data))
        follow_and_print(out, result, args.message, wait_timeout(args))
    return 0


def add_fan_out_parser(commands, argv: Sequence[str] | None) -> None:
    parser = commands.add_parser(
        "fan-out", help="train a bag's members on several kernels at once, then blend them into one submission"
    )
    parser.add_argument("--parts", type=int, required=True, help="how many kernels to share the members among")
    parser.add_argument("--username", help="your Kaggle user name (default: KAGGLE_USERNAME or kaggle.json)")
    parser.add_argument("--title", default=DEFAULT_TITLE, help="the kernels' title; each adds 'part I of N'")
    parser.add_argument(
        "--gpu",
        action=argparse.BooleanOptionalAction,
        help=f"run the parts on GPUs, or not (default: a GPU for the presets {', '.join(GPU_PRESETS)})",
    )
    parser.add_argument(
        "--kernel-dir",
        type=Path,
        default=DEFAULT_KERNEL_DIR / "fan-out",
        help="the parts' kernels, their outputs and the resumable state fan-out.json (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("submissions/submission.csv"), help="the blend (default: %(default)s)"
    )
    parser.add_argument("--retry-failed", action="store_true", help="push the parts that failed again")
    parser.add_argument("--partial", action="store_true", help="blend the parts that finished even if some did not")
    add_kernel_wait_arguments(parser)
    add_settings_arguments(parser, argv)


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
    """Download into a new or empty `directory`, through a temporary folder: the files replace nothing."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UserError(
            f"{directory}: not a new or empty folder; kernel-output writes only there, so that the kernel's "
            "files replace nothing: choose another folder"
        )
    check_outside_run_folders(directory / KERNEL_SUBMISSION_NAME, "the kernel's output")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{directory.name}-", dir=directory.parent) as workspace:
        files = client.kernel_output(kernel_id, workspace)
        with signals_deferred():
            directory.mkdir(exist_ok=True)
            for path in Path(workspace).iterdir():
                path.rename(directory / path.name)
    for path in files:
        print(f"wrote {directory / Path(path).name}")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m src.kaggle", description="Kaggle steps for Digit Recognizer.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("credentials", help="say which Kaggle credentials will be used, or what to set")
    fetch = commands.add_parser("download", help="download, check and install the competition's files")
    fetch.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DATA_DIR, help="default: data/")
    fetch.add_argument("--force", action="store_true", help="download again even when the files are valid")
    push = commands.add_parser("push-kernel", help="push a kernel folder (kernel-metadata.json and its code)")
    push.add_argument("folder", type=Path)
    push.add_argument("--wait", action="store_true", help="then wait for the run and fetch its output")
    add_kernel_wait_arguments(push)
    commands.add_parser("submissions", help="list your submissions to the competition")
    status = commands.add_parser("kernel-status", help="the state of a kernel's latest run")
    status.add_argument("kernel_id", metavar="USER/SLUG")
    output = commands.add_parser("kernel-output", help="download a kernel's output files and log")
    output.add_argument("kernel_id", metavar="USER/SLUG")
    output.add_argument("directory", type=Path)
    follow = commands.add_parser("kernel-wait", help="wait for a kernel's run, fetch its output, compare, submit")
    follow.add_argument("kernel_id", metavar="USER/SLUG")
    follow.add_argument(
        "--kernel-dir", type=Path, default=DEFAULT_KERNEL_DIR, help="its output goes in DIR/output/ (default: kernel/)"
    )
    add_kernel_wait_arguments(follow)
    add_fan_out_parser(commands, argv)
    return parser


def add_kernel_wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=seconds_argument,
        default=DEFAULT_KERNEL_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the kernel's run (default: {DEFAULT_KERNEL_TIMEOUT:g})",
    )
    parser.add_argument(
        "--runs", type=Path, default=DEFAULT_RUNS_DIR, help="local run folders to compare with (default: %(default)s)"
    )
    parser.add_argument("--submit", action="store_true", help="then submit the kernel's submission.csv (needs -m)")
    parser.add_argument("-m", "--message", help="the submission's description on Kaggle (with --submit)")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA_DIR, help="folder whose test.csv gives the expected row count"
    )
    add_wait_arguments(parser)


def check_follow_flags(args: argparse.Namespace) -> None:
    """Refuse a --submit that cannot succeed before pushing or waiting."""
    if args.message and not args.submit:
        raise UserError("-m/--message is the Kaggle submission's description: add --submit to send the output")
    if args.submit and not (args.message or "").strip():
        raise UserError("--submit needs a message for Kaggle: add -m/--message TEXT")
    if args.command == "push-kernel" and args.submit and not args.wait:
        raise UserError("--submit sends the kernel's output, so it needs --wait")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(run, argv)


def run(argv: Sequence[str] | None) -> int:
    """Run one subcommand; failures and Ctrl-C end at the command-line boundary (`src.core.cli`)."""
    args = build_parser(argv).parse_args(argv)
    if args.command == "credentials":
        print(f"Kaggle credentials: {require_credentials()}")
    elif args.command == "download":
        download(args.directory, args.force)
    elif args.command == "push-kernel":
        check_follow_flags(args)
        return push_kernel(args.folder, args)
    elif args.command == "kernel-wait":
        check_follow_flags(args)
        return wait_for_kernel(args.kernel_id, args.kernel_dir, args)
    elif args.command == "fan-out":
        check_follow_flags(args)
        return fan_out(args, argv)
    elif args.command == "submissions":
        list_submissions()
    elif args.command == "kernel-status":
        show_kernel_status(args.kernel_id)
    else:
        fetch_kernel_output(args.kernel_id, args.directory)
    return 0


if __name__ == "__main__":
    exit_process(main())
