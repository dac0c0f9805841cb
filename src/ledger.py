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
import sys
from collections.abc import Sequence
from pathlib import Path

from .cli import ArgumentParser, run_command, shorten
from .files import atomic_write
from .kaggle import client
from .kaggle.ledger import (
    LEDGER_VARIABLE,
    Row,
    ledger_path,
    merge_submissions,
    read_ledger,
    records_of_row,
    write_ledger,
)
from .kaggle.scores import add_to_record, kaggle_section

FIGURE_NAME = "ledger.png"
TABLE_COLUMNS = ("ref", "submitted (UTC)", "settings", "local", "public", "status", "message")
MESSAGE_WIDTH = 40  # characters of a message shown in the table


def refresh(path: Path) -> list[Row]:
    """The ledger with Kaggle's current statuses and scores, saved when anything changed.

    A changed row's status and score also go into its run's records, as the upload's wait would have.
    """
    rows, changed, added = merge_submissions(read_ledger(path), client.submissions())
    if changed or added:
        write_ledger(path, rows)
    for row in changed:
        section = kaggle_section(int(row.kaggle_ref), row.message, row.status, _score(row.public_score))
        for record in records_of_row(row):
            add_to_record(record, section)
    print(f"refreshed {path} from Kaggle: {len(changed)} updated, {added} made elsewhere added")
    return rows


def _score(text: str) -> float | None:
    return float(text) if text else None


def format_table(rows: list[Row]) -> str:
    """The ledger as an aligned text table, oldest first."""
    cells = [TABLE_COLUMNS] + [
        (
            row.kaggle_ref or "-",
            row.time_utc.replace("T", " ")[:16] or "-",
            row.settings + ("" if not row.run_folder or Path(row.run_folder).is_dir() else " (run folder gone)"),
            f"{float(row.local_accuracy):.4f}" if row.local_accuracy else "-",
            row.public_score or "-",
            row.status or "-",
            shorten(row.message, MESSAGE_WIDTH),
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in cells) for column in range(len(TABLE_COLUMNS))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells)
    return "\n".join(line.rstrip() for line in lines)


def draw(rows: list[Row], figure_path: Path) -> int:
    """Plot local accuracy against public score, with y = x; the number of points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [row for row in rows if row.local_accuracy and row.public_score]
    local = [float(row.local_accuracy) for row in points]
    public = [float(row.public_score) for row in points]
    figure, axes = plt.subplots(figsize=(6, 6))
    low, high = min(local + public), max(local + public)
    margin = max(0.005, (high - low) * 0.08)  # room for the points at the edges and their labels
    low, high = low - margin, high + margin
    axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="public = local")
    axes.scatter(local, public, color="tab:blue", zorder=3, label="a submission")
    for row, x, y in zip(points, local, public, strict=True):
        axes.annotate(f"{row.kaggle_ref} {row.settings}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set(
        xlim=(low, high),
        ylim=(low, high),
        xlabel="local accuracy (validation or out-of-fold)",
        ylabel="Kaggle public score",
        title="Does validation track the leaderboard?",
    )
    axes.set_aspect("equal")
    axes.legend(loc="best")
    figure.tight_layout()
    atomic_write(figure_path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
    plt.close(figure)
    return len(points)


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
    sys.exit(main())
