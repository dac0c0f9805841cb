"""Command line: the submissions ledger, local accuracy against Kaggle's public score.

python -m src.ledger              # refresh pending rows from Kaggle, print the table, draw ledger.png
python -m src.ledger --offline    # the table and the figure from the ledger alone

Kaggle submissions made elsewhere (the website, another machine) are added as
unknown runs. The figure `ledger.png`, beside the ledger, has one point per
scored submission with a local accuracy, and the line y = x: points under it
are runs whose validation promised more than the leaderboard gave.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from src.core.cli import ArgumentParser, exit_process, run_command
from src.runs.ledger import (
    FIGURE_NAME,
    LEDGER_VARIABLE,
    draw,
    format_table,
    ledger_path,
    read_ledger,
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m src.ledger",
        description="Your submissions: local accuracy against Kaggle's public score, as a table and ledger.png.",
    )
    parser.add_argument(
        "--ledger", type=Path, help=f"the ledger CSV (default: ${LEDGER_VARIABLE}, else submissions/ledger.csv)"
    )
    parser.add_argument("--offline", action="store_true", help="do not ask Kaggle; show the ledger as it is")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(show_ledger, argv)


def refresh(path: Path) -> list:
    """The ledger refreshed from Kaggle; the upload pipeline (and pandas with it) loaded only for this."""
    from src.pipeline.upload import refresh_ledger

    return refresh_ledger(path)


def show_ledger(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    path = args.ledger or ledger_path()
    rows = read_ledger(path) if args.offline else refresh(path)
    if not rows:
        print(f"{path}: no submissions yet; python -m src.upload FILE -m TEXT adds the first")
        return 0
    print(format_table(rows))
    figure_path = path.with_name(FIGURE_NAME)
    if any(row.local_accuracy and row.public_score for row in rows):
        drawn = draw(rows, figure_path)
        print(f"wrote {figure_path}: {drawn} submissions with both a local accuracy and a public score")
    else:
        print(f"no submission has both a local accuracy and a public score yet; {figure_path} not drawn")
    return 0


if __name__ == "__main__":
    exit_process(main())
