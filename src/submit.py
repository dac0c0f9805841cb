"""Command line: train and write a Digit Recognizer submission.

python -m src.submit                       # the tutorial's network on data/
python -m src.submit --sample              # no download, no Kaggle account
python -m src.submit --folds 5 --seed 1    # a 5-fold ensemble
python -m src.submit --no-report           # skip the figures and report.html
python -m src.submit --submit -m "tutorial" # train, then upload to Kaggle
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# Only light modules here: pandas, scikit-learn and TensorFlow load inside the
# command-line boundary (`main`), so Ctrl-C while they load exits cleanly too.
from src.core.cli import ArgumentParser, exit_process, import_tensorflow, run_command
from src.core.config import check_split, held_out_name
from src.core.errors import UserError
from src.core.flags import (
    add_settings_arguments,
    add_wait_arguments,
    check_data_source,
    config_from_args,
    wait_timeout,
)
from src.core.paths import DEFAULT_DATA_DIR, DEFAULT_SUBMISSION

SAMPLE_OUT = Path("submissions/sample-submission.csv")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; `argv` names the preset whose values `--help` shows."""
    parser = ArgumentParser(
        prog="python -m src.submit",
        description="Train the tutorial's dense network, a CNN or an ensemble of either; write the submission.",
        epilog="Settings left unset come from the preset (default: the tutorial's network).",
    )
    files = parser.add_argument_group("data and output")
    files.add_argument("--data", type=Path, help="folder with train.csv and test.csv (default: data/)")
    files.add_argument(
        "--out", type=Path, help=f"submission file (default: {DEFAULT_SUBMISSION}; with --sample: {SAMPLE_OUT})"
    )
    files.add_argument(
        "--sample",
        action="store_true",
        help="use a small embedded dataset (scikit-learn's digits at 28x28) instead of --data",
    )
    files.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=2,
        help="training progress: 0 none, 1 progress bars, 2 a line per epoch (default); the summary always prints",
    )
    files.add_argument(
        "--no-report",
        action="store_true",
        help="skip the figures and report.html (the run folder still keeps the arrays to draw them later)",
    )

    kaggle = parser.add_argument_group("Kaggle")
    kaggle.add_argument(
        "--submit", action="store_true", help="after the run, upload the submission to the competition (needs -m)"
    )
    kaggle.add_argument("-m", "--message", help="the submission's description on Kaggle (with --submit)")
    add_wait_arguments(kaggle)
    add_settings_arguments(parser, argv)
    return parser


def check_submit_flags(args: argparse.Namespace) -> None:
    """Refuse a `--submit` that cannot succeed before any training starts."""
    from src.kaggle.credentials import require_credentials

    if not args.submit:
        raise UserError("-m/--message is the Kaggle submission's description: add --submit to send the file")
    if not (args.message or "").strip():
        raise UserError("--submit needs a message for Kaggle: add -m/--message TEXT")
    if args.sample:
        raise UserError("--submit with --sample would send predictions for the embedded sample, not the test set")
    require_credentials()


def upload(path: Path, message: str, n_rows: int, timeout: float | None, force: bool) -> int:
    """Send the submission just written, then wait for its score; a failed upload says the file is kept."""
    from src.pipeline.upload import follow_and_print, kept_line, unknown_arrival, upload_submission

    try:
        result = upload_submission(path, message, expected_rows=n_rows, force=force)
    except UserError:
        # A line of its own: the error line is cut at 300 characters, and this one must not be.
        print(kept_line(path), file=sys.stderr, flush=True)
        raise
    except KeyboardInterrupt as interruption:
        raise type(interruption)(unknown_arrival(path)) from None
    follow_and_print(path, result, message, timeout)
    return 0


def summarize(result, config) -> str:
    """The closing lines: the per-class table, the scores, and the record's total time."""
    # Imported here, as the pipeline is: scikit-learn takes seconds to load, which --help need not wait for.
    from src.runs.record import NO_VALIDATION
    from src.training.evaluation import format_per_class

    record = result.record
    validation = record.validation
    rows = f"{record.inputs.train.rows} labelled rows, {record.inputs.test.rows} test rows"
    if record.pseudo_labels is not None:
        rows += f" ({record.pseudo_labels} of them pseudo-labelled into the second run's training rows)"
    kind = "single model"
    if config.folds > 1:
        kind = f"{config.folds}-fold ensemble"
    if config.members > 1:
        kind = f"bag of {config.members}"
    accuracy_name = f"{held_out_name(config)} accuracy"
    scored_rows = "held-out" if held_out_name(config) == "validation" else held_out_name(config)
    report = f"report: {result.report_path}" if result.report_path else f"run folder: {result.run_dir}"
    if validation.accuracy is None:
        return (
            f"done: {rows}; {kind}; {NO_VALIDATION}; {record.timings.total:.1f} s\n"
            f"wrote {result.submission_path} (record: {result.record_path})\n"
            f"{report}"
        )
    tta = validation.tta_accuracy
    with_tta = "" if tta is None else f", with TTA {tta:.4f} ({tta - validation.accuracy:+.4f})"
    return (
        f"per class, on the {scored_rows} rows:\n{format_per_class(validation.per_class, validation.accuracy)}\n"
        f"done: {rows}; {kind}; {accuracy_name} {validation.accuracy:.4f}{with_tta}; {record.timings.total:.1f} s\n"
        f"wrote {result.submission_path} (record: {result.record_path})\n"
        f"{report}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(train_and_write, argv)


def train_and_write(argv: Sequence[str] | None) -> int:
    args = build_parser(argv).parse_args(argv)
    started = time.perf_counter()
    out = args.out or (SAMPLE_OUT if args.sample else DEFAULT_SUBMISSION)
    from src.runs.outputs import telling_what_it_left
    from src.runs.record import low_accuracy_line, previous_submission, replaced_line

    # Read before the run replaces it: the summary says what the new submission replaced.
    replaced = previous_submission(out)
    with telling_what_it_left(out):
        config = config_from_args(args)
        if args.submit or args.message:
            check_submit_flags(args)
        check_data_source(args)
        from src.data.competition import data_folder
        from src.data.loading import check_labels, load_datasets, train_file_name, write_sample
        from src.models.registry import check_size
        from src.runs.outputs import plan_outputs

        with tempfile.TemporaryDirectory(prefix="digit-sample-") as sample_dir:
            data_dir = write_sample(sample_dir) if args.sample else data_folder(args.data or DEFAULT_DATA_DIR)
            # Bad files, settings and output paths are reported before TensorFlow loads (and takes seconds).
            datasets = load_datasets(data_dir)
            inputs = [file["path"] for file in datasets.inputs.values()]
            plan_outputs(out, inputs, test_rows=len(datasets.test_images))
            check_labels(datasets.train_labels, config.folds, train_file_name(data_dir, args.sample))
            check_split(config, len(datasets.train_labels))
            check_size(config)
            import_tensorflow()
            from src.pipeline.run import run

            result = run(
                config,
                data_dir,
                out,
                datasets_override=datasets,
                verbose=args.verbose,
                report=not args.no_report,
                sample=args.sample,
                started=started,
            )
        # Inside: Ctrl-C while the summary prints still says the submission was written.
        print(summarize(result, config), flush=True)
        record = result.record
        replaced_note = replaced_line(out, replaced, record.validation.accuracy)
        if replaced_note:
            print(replaced_note, flush=True)
        warning = low_accuracy_line(record.validation.accuracy, record.config, record.inputs.train.rows)
        if warning:
            print(warning, file=sys.stderr, flush=True)
    if args.submit:
        rows = len(result.test_probabilities)
        return upload(result.submission_path, args.message, rows, wait_timeout(args), args.force)
    return 0


if __name__ == "__main__":
    exit_process(main())
