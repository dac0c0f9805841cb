"""`python -m src.report`: redraw run folders' figures and report.html, or compare runs.

The drawing is `src/runs/reporting.py`; this is its command line:

python -m src.report submissions/runs/<name>             # redraw figures and report.html
python -m src.report --compare RUN_DIR RUN_DIR ...        # runs side by side
python -m src.report --compare submissions/runs          # every finished run in the folder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.core.cli import ArgumentParser, exit_process, run_command
from src.runs.folders import find_run_dirs
from src.runs.reporting import compare_runs, make_report


def build_report_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m src.report",
        description="Redraw a run folder's figures and report.html without training, or compare runs.",
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="a folder under submissions/runs/, or a folder of them such as submissions/runs",
    )
    parser.add_argument("--compare", action="store_true", help="print the runs side by side instead of redrawing")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(redraw_or_compare, argv)


def redraw_or_compare(argv: list[str] | None) -> int:
    args = build_report_parser().parse_args(argv)
    run_dirs, incomplete = find_run_dirs(args.run_dirs)
    if incomplete:
        print(f"skipped {len(incomplete)} incomplete run folder(s): {incomplete[0]} ...", file=sys.stderr)
    if args.compare:
        print(compare_runs(run_dirs))
    else:
        for run_dir in run_dirs:
            print(f"wrote {make_report(run_dir)}")
    return 0


if __name__ == "__main__":
    exit_process(main())
