"""Command line: blend earlier runs into a new submission, without training.

python -m src.blend RUN_DIR RUN_DIR ... --out submissions/blend.csv
python -m src.blend RUN_A RUN_B --weights 2,1 --out submissions/blend.csv

The runs' saved test probabilities (`test_probabilities.npy`) are averaged,
weighted by `--weights` (default: equal), and the most probable digit of each
row is written as a validated submission, with a record beside it (`.json`)
listing the runs, their validation accuracies and the test file's sha256.
Runs made on different test files are refused.

Where the runs held out some of the same rows of the same `train.csv` (the
same split, or folds of any kind, which hold out every row), their
probabilities on those rows are averaged the same way, and the blend's
accuracy there is printed beside each run's on the same rows: the blend's
measured gain. Otherwise the gain cannot be measured, and it says so.
NumPy, pandas and scikit-learn only: no TensorFlow.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src.core.cli import ArgumentParser, exit_process, run_command
from src.core.errors import UserError

MIN_RUNS = 2


def parse_weights(text: str) -> tuple[float, ...]:
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 2,1, got {text!r}") from None
    # max, not sum: the sum of large finite weights can overflow (normalized_weights divides by the max first).
    if not all(math.isfinite(weight) and weight >= 0 for weight in weights) or max(weights) <= 0:
        raise argparse.ArgumentTypeError(f"weights must be finite, >= 0 and not all 0, got {text!r}")
    return weights


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m src.blend",
        description="Average earlier runs' test probabilities into a new ImageId,Label submission.",
    )
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="finished run folders, 2 or more")
    parser.add_argument(
        "--out", type=Path, required=True, help="the submission to write; its record goes beside it as .json"
    )
    parser.add_argument(
        "--weights", type=parse_weights, metavar="W,W,...", help="one weight per run, in order (default: equal)"
    )
    return parser


def check_runs(run_dirs: list[Path], weights: tuple[float, ...] | None) -> None:
    """At least two distinct runs, and one weight per run."""
    if len(run_dirs) < MIN_RUNS:
        raise UserError(f"a blend needs at least {MIN_RUNS} run folders, got {len(run_dirs)}")
    seen = {}
    for run_dir in run_dirs:
        earlier = seen.setdefault(run_dir.resolve(), run_dir)
        if earlier is not run_dir:
            raise UserError(f"{run_dir}: named twice; give a run more weight with --weights instead")
    if weights is not None and len(weights) != len(run_dirs):
        raise UserError(f"--weights gives {len(weights)} weight(s) for {len(run_dirs)} runs; give one per run")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(blend, argv)


def blend(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from src.data.submission import check_predictions
    from src.runs.blending import check_same_test_file, normalized_weights, shared_validation, weighted_mean
    from src.runs.folders import load_run
    from src.runs.outputs import plan_outputs, telling_what_it_left, write_pair
    from src.runs.record import (
        DERIVED_BLEND,
        DerivedRecord,
        SourceRun,
        command_line,
        created_now,
        package_versions,
    )
    from src.training.evaluation import accuracy, predicted_labels

    check_runs(args.run_dirs, args.weights)
    loaded = [load_run(run_dir) for run_dir in args.run_dirs]
    records = [record for _, record in loaded]
    check_same_test_file(args.run_dirs, records)
    plan = plan_outputs(args.out, [path for record in records for path in record.inputs.paths()])
    weights = np.asarray(args.weights or [1.0] * len(loaded), dtype=np.float64)

    probabilities = weighted_mean([arrays.test_probabilities for arrays, _ in loaded], weights)
    check_predictions(probabilities)
    shared = shared_validation(loaded)
    if shared is None:
        blend_accuracy, run_accuracies = None, [None] * len(loaded)
    else:
        blend_accuracy = accuracy(shared.labels, weighted_mean(shared.probabilities, weights))
        run_accuracies = [accuracy(shared.labels, values) for values in shared.probabilities]

    sources = [
        SourceRun(str(run_dir), record.validation.accuracy, float(weight), run_accuracy)
        for run_dir, record, weight, run_accuracy in zip(
            args.run_dirs, records, normalized_weights(weights), run_accuracies, strict=True
        )
    ]

    def make_record(submission):
        return DerivedRecord(
            kind=DERIVED_BLEND,
            created=created_now(),
            command=command_line(),
            versions=package_versions(),
            test=records[0].inputs.test,
            sources=sources,
            submission=submission,
            validation_accuracy=blend_accuracy,
            validation_rows=0 if shared is None else len(shared.rows),
        )

    with telling_what_it_left(plan.submission):
        record = write_pair(plan, predicted_labels(probabilities), make_record)
        print(gain_lines(record), f"wrote {plan.submission} (record: {plan.record})", sep="\n", flush=True)
    return 0


def gain_lines(record) -> str:
    """Each run's accuracy and, where measurable, the blend's on the held-out rows they share."""
    from src.training.evaluation import accuracy_text

    lines = [f"blend of {len(record.sources)} runs of the same test file ({record.test.rows} rows):"]
    for source in record.sources:
        shared = (
            "" if source.shared_rows_accuracy is None else f", {source.shared_rows_accuracy:.4f} on the shared rows"
        )
        measured = accuracy_text(source.validation_accuracy, missing="none")
        lines.append(f"  weight {source.weight:.3f}  validation accuracy {measured}{shared}  {source.run_dir}")
    if record.validation_accuracy is None:
        lines.append(
            "blend gain cannot be measured: the runs share no held-out rows of one train.csv "
            "(use the same --seed and --validation-split, or folds)"
        )
    else:
        best = max(source.shared_rows_accuracy for source in record.sources)
        gain = record.validation_accuracy - best
        against = f"{abs(gain):.4f} {'above' if gain > 0 else 'below'}" if gain else "level with"
        lines.append(
            f"blend accuracy on the {record.validation_rows} shared held-out rows: "
            f"{record.validation_accuracy:.4f} ({against} the best run there)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    exit_process(main())
