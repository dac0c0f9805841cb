"""Command line: predict a test file again with a finished run's saved models, without training.

python -m src.predict submissions/runs/<name> --out submissions/again.csv
python -m src.predict submissions/runs/<name> --data other/ --out other.csv

A run on the embedded sample (`--sample`) predicts the sample's test images again, made afresh
from its recorded seed and checked against the recorded sha256. The run folder's models
(`members/*.keras`, checked against `members.json`)
predict `--data`'s `test.csv` with the run's own pixel scaling, their softmax
outputs averaged (over the test-time shifts too, when the run used them).
The submission is validated and written atomically, with a record beside it
(`.json`) naming the run and the test file's sha256.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Only light modules here: NumPy, pandas and TensorFlow load inside the boundary (`predict_again`).
from src.core.cli import ArgumentParser, exit_process, import_tensorflow, run_command
from src.core.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m src.predict",
        description="Predict a test.csv again with a run folder's saved models and write an ImageId,Label submission.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run folder (submissions/runs/<name>)")
    parser.add_argument("--data", type=Path, help="folder with test.csv (default: the run's own test file)")
    parser.add_argument(
        "--out",
        type=Path,
        help="the submission to write; its record goes beside it as .json "
        "(default: predict-<run name>.csv beside the runs folder)",
    )
    return parser


def recorded_test_file(run, run_dir: Path, sample_dir: str) -> Path:
    """The test file the run predicted, as its record names it; the embedded sample's, made again in `sample_dir`."""
    from src.data.loading import write_sample
    from src.runs.record import SOURCE_SAMPLE

    if run.inputs.source == SOURCE_SAMPLE and run.inputs.sample_seed is not None:
        return write_sample(sample_dir, seed=run.inputs.sample_seed) / "test.csv"
    if not run.inputs.test.path:
        raise UserError(f"{run_dir}: its record names no test file (the run used {run.inputs.source}); give --data")
    return Path(run.inputs.test.path)


def default_out(run_dir: Path) -> Path:
    """`submissions/runs/<name>` gives `submissions/predict-<name>.csv`: beside the runs folder, never inside it."""
    run_dir = Path(run_dir).resolve()  # `.` or `runs/x/` name their folder too
    return Path(os.path.relpath(run_dir.parent.parent)) / f"predict-{run_dir.name}.csv"


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(predict_again, argv)


def predict_again(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from src.data.competition import data_folder
    from src.data.loading import read_test_file
    from src.runs.folders import member_files, read_run_record
    from src.runs.outputs import plan_outputs, telling_what_it_left
    from src.runs.record import InputFile

    # The run folder and its model files are checked before the test file is read and TensorFlow loads.
    run = read_run_record(args.run_dir)
    paths = member_files(args.run_dir)
    with tempfile.TemporaryDirectory(prefix="digit-sample-") as sample_dir:
        if args.data:
            test_path = data_folder(args.data) / "test.csv"
        else:
            test_path = recorded_test_file(run, args.run_dir, sample_dir)
        out = args.out or default_out(args.run_dir)
        plan = plan_outputs(out, [test_path, *run.inputs.paths(), *paths])
        images, test_sha256 = read_test_file(test_path, "give --data the folder holding test.csv")
    # The sample's folder is gone: the record names its test file by its sha256 alone, as the run's record does.
    remade = not args.data and not run.inputs.test.path
    test_file = InputFile(len(images), test_sha256, None if remade else str(test_path))
    if remade and test_sha256 != run.inputs.test.sha256:
        raise UserError(
            f"{args.run_dir}: the embedded sample made again is not the one the run predicted (sha256 "
            f"{test_sha256[:12]}..., the record says {str(run.inputs.test.sha256)[:12]}...): other library "
            "versions than the run's (its record lists them); give --data to predict another test file"
        )

    with telling_what_it_left(plan.submission):
        write_prediction(args, run, paths, plan, images, test_file)
    return 0


def write_prediction(args, run, paths, plan, images, test_file) -> None:
    """Predict `images` with the run's saved models and write the submission and its record as one unit."""
    from src.runs.outputs import write_pair
    from src.runs.record import DERIVED_PREDICT, DerivedRecord, SourceRun, command_line, created_now, package_versions
    from src.training.evaluation import predicted_labels

    import_tensorflow()
    from src.data.loading import as_features
    from src.data.submission import check_predictions
    from src.training.prediction import check_input_width, load_models, predict_probabilities, uses_tta

    models = load_models(paths)
    check_input_width(models, paths, images.shape[1])
    tta = uses_tta(run.config)
    probabilities = predict_probabilities(models, as_features(images, run.config), tta)
    check_predictions(probabilities)
    write_pair(
        plan,
        predicted_labels(probabilities),
        lambda submission: DerivedRecord(
            kind=DERIVED_PREDICT,
            created=created_now(),
            command=command_line(),
            versions=package_versions(),
            test=test_file,
            sources=[SourceRun(str(args.run_dir), run.validation.accuracy)],
            submission=submission,
            tta=tta,
        ),
    )
    with_tta = " with test-time augmentation" if tta else ""
    same_test = "the run's own test file" if test_file.sha256 == run.inputs.test.sha256 else "a new test file"
    scored = "" if run.validation.accuracy is None else f" (its validation accuracy {run.validation.accuracy:.4f})"
    print(
        f"predicted {test_file.rows} rows of {same_test} with {len(models)} saved model(s){with_tta} "
        f"of {args.run_dir}{scored}\n"
        f"wrote {plan.submission} (record: {plan.record})",
        flush=True,
    )


if __name__ == "__main__":
    exit_process(main())
