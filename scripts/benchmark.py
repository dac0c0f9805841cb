"""Time the tutorial's code against `python -m src.submit`, side by side, and print a table.

python scripts/benchmark.py                                    # data/, 50 epochs, once
python scripts/benchmark.py --data ../shared/data/digit-recognizer.zip --repeats 3
python scripts/benchmark.py --epochs 5                         # a quick look
python scripts/benchmark.py --time-to-accuracy tutorial wide   # accuracy after each epoch vs wall seconds
python scripts/benchmark.py --versus-peer cnn-fast --seeds 0 1 2  # CNN presets against the keras-io recipe
python scripts/benchmark.py --profile cnn                      # where an epoch's time goes

Each run is its own process, timed from start to exit:
  reference       the tutorial's code as written (scripts/tutorial_reference.py)
  single model    python -m src.submit --no-report
  K-fold          python -m src.submit --no-report --folds K
For each: wall time, peak resident memory, training steps per second,
validation (out-of-fold for the ensemble) accuracy and the wall-time ratio to
the reference; the median over --repeats. The package's runs find their CSVs
in the parse cache (warmed first); loading with and without it is timed
separately. `--no-report` leaves out the figures and report.html (about 2 s),
which the reference does not make either. Writes OUT.md and OUT.json.

With `--time-to-accuracy PRESET ...`, each preset instead runs once as
`python -m src.submit --preset P --no-report` (its own epochs unless --epochs
is given), and the table gives, per epoch, the seconds since training started
(the `seconds` that `src.training.epoch_timer` keeps in the run folder's histories) and
the validation accuracy then: how soon each preset gets how good. Members
trained one after another (`--plain`, bagged CNNs) each keep their own clock;
for those the table gives the members' mean, and says so.

With `--versus-peer PRESET ...`, the keras-io example `mnist_convnet.py` as
published (scripts/keras_io_reference.py: 15 epochs, 10% held out) runs first,
then each preset, in the same benchmark run: for each, the wall time of the
whole command, the final validation accuracy, the seconds of training until
the validation accuracy first reached 0.99, 0.994 and 0.995, and the wall time
as a ratio to the recipe's run just before it. With `--seeds S ...`, the
recipe and the presets run once per seed, and a second table gives each
one's accuracy range and mean ratio. Machines of one kind differ in pace by
up to half, so only ratios taken in one run compare across machines.

With `--profile PRESET ...`, each preset's training step is taken apart
(scripts/epoch_profile.py): seconds per epoch of Keras' whole fit step, the
input pipeline, the augmentation, the forward pass, the backward pass, and
the optimizer's update with Keras' overhead, each timed alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Read the records with this checkout's own `src`, the one the timed runs use.
sys.path.insert(0, str(REPO_ROOT))
from src.core.cli import ArgumentParser, run_command  # noqa: E402
from src.core.errors import UserError  # noqa: E402
from src.core.files import atomic_write, signals_deferred, write_json  # noqa: E402
from src.core.paths import record_path_for  # noqa: E402
from src.runs.folders import load_run  # noqa: E402
from src.runs.record import RunRecord  # noqa: E402

REFERENCE_SCRIPT = REPO_ROOT / "scripts" / "tutorial_reference.py"
PEER_SCRIPT = REPO_ROOT / "scripts" / "keras_io_reference.py"
PROFILE_SCRIPT = REPO_ROOT / "scripts" / "epoch_profile.py"
PROFILE_STEPS = 40
PROFILE_PARTS = ("fit_step", "input_pipeline", "augmentation", "forward", "backward", "optimizer_and_overhead")
PEER_EPOCHS = 15  # as published
PEER_NAME = "keras-io mnist_convnet (as published)"
MILESTONES = (0.99, 0.994, 0.995)
BATCH_SIZE = 128
DEFAULT_EPOCHS = 50
DATA_FILES = ("train.csv", "test.csv")
CACHE_TIMING = """
import json, sys, time
from src.data.loading import load_datasets
seconds = []
for _ in range(2):
    started = time.perf_counter()
    load_datasets(sys.argv[1], cache_dir=sys.argv[2])
    seconds.append(time.perf_counter() - started)
print(json.dumps({"first": seconds[0], "cached": seconds[1]}))
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python scripts/benchmark.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path("data"), help="folder with train.csv and test.csv, or a zip of them"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"epochs of every run (default {DEFAULT_EPOCHS}; with --time-to-accuracy: each preset's)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each kind; the table gives medians")
    parser.add_argument("--folds", type=int, default=5, help="K of the ensemble run (default 5)")
    parser.add_argument(
        "--out",
        type=Path,
        help="writes OUT.md and OUT.json (default: benchmarks/benchmark, or benchmarks/time-to-accuracy)",
    )
    parser.add_argument(
        "--versus-peer",
        nargs="+",
        metavar="PRESET",
        help="instead: each preset against the keras-io recipe, timed in the same run (--repeats times each)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[42],
        metavar="S",
        help="with --versus-peer: the recipe and every preset run once per seed (default 42)",
    )
    parser.add_argument(
        "--profile", nargs="+", metavar="PRESET", help="instead: where one epoch of each preset's training goes"
    )
    parser.add_argument(
        "--time-to-accuracy",
        nargs="+",
        metavar="PRESET",
        help="instead: validation accuracy after each epoch against wall seconds, for each preset",
    )
    return parser


def data_folder(path: Path, scratch: Path) -> Path:
    """`path` itself, or the zip's CSVs extracted into `scratch`."""
    if path.is_dir():
        missing = [name for name in DATA_FILES if not (path / name).is_file()]
        if missing:
            raise UserError(f"{path}: no {', '.join(missing)} there")
        return path
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: expected a folder with train.csv and test.csv, or a zip of them")
    with zipfile.ZipFile(path) as archive:
        for name in DATA_FILES:
            if name not in archive.namelist():
                raise UserError(f"{path}: the zip holds no {name}")
            archive.extract(name, scratch)
    return scratch


@contextlib.contextmanager
def workspace(data_path: Path):
    """A scratch folder, the data in it (a zip extracted), and the environment every timed run gets."""
    with tempfile.TemporaryDirectory(prefix="digit-benchmark-") as scratch_name:
        scratch = Path(scratch_name)
        data = data_folder(data_path.resolve(), scratch / "data")
        yield (
            scratch,
            data,
            {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "DIGIT_RECOGNIZER_CACHE": str(scratch / "cache")},
        )


def about_the_run(args) -> dict:
    """When, on what machine and on which data a report was measured."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "data": str(args.data),
    }


def timed_process(command: list[str], env: dict) -> dict:
    """Run `command` to completion; its wall time and peak resident memory."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        said = stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        raise UserError(f"a timed run exited with {process.returncode} ({said[-1]}): {' '.join(command)}")
    # ru_maxrss is in kilobytes on Linux.
    return {"wall_seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


def reference_run(data: Path, epochs: int, scratch: Path, env: dict) -> dict:
    result_path = scratch / "reference.json"
    measured = timed_process([sys.executable, str(REFERENCE_SCRIPT), str(data), str(epochs), str(result_path)], env)
    result = json.loads(result_path.read_text())
    n_train = math.floor(result["rows"] * 0.8)
    steps = epochs * math.ceil(n_train / BATCH_SIZE)
    return {**measured, "train_seconds": result["train_seconds"], "steps": steps, "accuracy": result["accuracy"]}


def package_run(data: Path, epochs: int, folds: int, scratch: Path, env: dict) -> dict:
    out = scratch / f"submission-f{folds}.csv"
    command = [sys.executable, "-m", "src.submit", "--no-report", "--data", str(data), "--out", str(out)]
    command += ["--epochs", str(epochs)]
    measured = timed_process([*command, "--folds", str(folds)], env)
    record = RunRecord.from_json(record_path_for(out))
    n_rows = record.inputs.train.rows
    members = record.validation.members
    steps = sum(epochs * math.ceil((n_rows - member.validation_rows) / BATCH_SIZE) for member in members)
    return {**measured, "train_seconds": record.timings.train, "steps": steps, "accuracy": record.validation.accuracy}


def cache_timing(data: Path, cache_dir: Path, env: dict) -> dict:
    command = [sys.executable, "-c", CACHE_TIMING, str(data), str(cache_dir)]
    output = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if output.returncode != 0:
        said = output.stderr.strip().splitlines() or ["no output"]
        raise UserError(f"timing the CSV loading exited with {output.returncode} ({said[-1]})")
    return json.loads(output.stdout.strip().splitlines()[-1])


def median_row(name: str, runs: list[dict]) -> dict:
    train_seconds = statistics.median(run["train_seconds"] for run in runs)
    return {
        "run": name,
        "wall_seconds": statistics.median(run["wall_seconds"] for run in runs),
        "peak_rss_mb": statistics.median(run["peak_rss_mb"] for run in runs),
        "train_seconds": train_seconds,
        "steps_per_second": statistics.median(run["steps"] / run["train_seconds"] for run in runs),
        "accuracy": statistics.median(run["accuracy"] for run in runs),
        "runs": runs,
    }


def markdown(report: dict) -> str:
    lines = [
        "| run | wall s | x reference | peak RSS MB | training s | steps/s | accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['run']} | {row['wall_seconds']:.1f} | {row['ratio_to_reference']:.2f} | "
            f"{row['peak_rss_mb']:.0f} | {row['train_seconds']:.1f} | {row['steps_per_second']:.0f} | "
            f"{row['accuracy']:.4f} |"
        )
    load = report["load"]
    lines += [
        "",
        f"Loading train.csv and test.csv: {load['first']:.2f} s parsed, {load['cached']:.2f} s from the cache "
        f"({load['cached'] / load['first']:.2f} x).",
        f"{report['rows_in_train']} labelled rows, {report['epochs']} epochs, median of {report['repeats']} run(s); "
        f"{report['machine']}; {report['created']}.",
    ]
    return "\n".join(lines) + "\n"


def preset_curve(preset: str, data: Path, epochs: int | None, scratch: Path, env: dict, extra: list[str] = ()) -> dict:
    """Run `preset` once; its process wall time and, per epoch, seconds since training began and validation accuracy."""
    out = scratch / f"submission-{preset}.csv"
    command = [sys.executable, "-m", "src.submit", "--preset", preset, "--no-report", "--verbose", "0"]
    command += ["--data", str(data), "--out", str(out), *extra] + (["--epochs", str(epochs)] if epochs else [])
    measured = timed_process(command, env)
    record = RunRecord.from_json(record_path_for(out))
    histories = load_run(record.run_dir)[0].histories
    missing = [name for name in ("seconds", "val_accuracy") if not all(name in history for history in histories)]
    if missing:
        raise UserError(f"{record.run_dir}: the histories hold no {' or '.join(missing)} per epoch")
    seconds = [sum(values) / len(values) for values in zip(*(h["seconds"] for h in histories), strict=True)]
    accuracies = [sum(values) / len(values) for values in zip(*(h["val_accuracy"] for h in histories), strict=True)]
    return {
        "preset": preset,
        "members": len(histories),
        "members_trained_together": record.validation.members_trained_together or len(histories) == 1,
        "wall_seconds": measured["wall_seconds"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "train_seconds": record.timings.train,
        "accuracy": record.validation.accuracy,
        "epochs": [
            {"epoch": epoch, "seconds": second, "val_accuracy": value}
            for epoch, (second, value) in enumerate(zip(seconds, accuracies, strict=True), start=1)
        ],
    }


def curves_markdown(report: dict) -> str:
    lines = ["| preset | epoch | seconds | validation accuracy |", "| --- | ---: | ---: | ---: |"]
    for curve in report["presets"]:
        for row in curve["epochs"]:
            lines.append(f"| {curve['preset']} | {row['epoch']} | {row['seconds']:.1f} | {row['val_accuracy']:.4f} |")
    lines.append("")
    for curve in report["presets"]:
        clock = "" if curve["members_trained_together"] else " (members trained one after another: their mean clock)"
        lines.append(
            f"- `{curve['preset']}`: {curve['members']} member(s){clock}; {curve['wall_seconds']:.1f} s wall for the "
            f"whole command, {curve['train_seconds']:.1f} s training, peak RSS {curve['peak_rss_mb']:.0f} MB, "
            f"final validation accuracy {curve['accuracy']:.4f}"
        )
    lines.append(f"\n{report['rows_in_train']} labelled rows; {report['machine']}; {report['created']}.")
    return "\n".join(lines) + "\n"


def time_to_accuracy(args) -> dict:
    with workspace(args.data) as (scratch, data, env):
        curves = []
        for preset in args.time_to_accuracy:
            print(f"python -m src.submit --preset {preset} ...", flush=True)
            curves.append(preset_curve(preset, data, args.epochs, scratch, env))
        rows_in_train = RunRecord.from_json(scratch / f"submission-{args.time_to_accuracy[0]}.json").inputs.train.rows
    return {
        **about_the_run(args),
        "rows_in_train": rows_in_train,
        "presets": curves,
    }


def peer_curve(data: Path, scratch: Path, env: dict, seed: int) -> dict:
    """Run the keras-io recipe once: the same fields as `preset_curve`'s."""
    result_path = scratch / "peer.json"
    command = [sys.executable, str(PEER_SCRIPT), str(data), str(PEER_EPOCHS), str(result_path), str(seed)]
    measured = timed_process(command, env)
    result = json.loads(result_path.read_text())
    return {"preset": PEER_NAME, "members": 1, "members_trained_together": True, **measured, **result}


def first_reaching(curve: dict, level: float) -> float | None:
    """Seconds of training until the validation accuracy first reached `level`; None if it never did."""
    return next((row["seconds"] for row in curve["epochs"] if row["val_accuracy"] >= level), None)


def versus_peer(args) -> dict:
    """For each seed (and repeat): the recipe, then each preset, back to back, so each ratio is of neighbours."""
    with workspace(args.data) as (scratch, data, env):
        curves = []
        blocks = [seed for seed in args.seeds for _ in range(args.repeats)]
        for block, seed in enumerate(blocks, start=1):
            print(f"{block}/{len(blocks)}, seed {seed}: {PEER_NAME} ...", flush=True)
            peer = peer_curve(data, scratch, env, seed)
            curves.append({**peer, "seed": seed, "ratio": 1.0})
            for preset in args.versus_peer:
                print(f"{block}/{len(blocks)}, seed {seed}: python -m src.submit --preset {preset} ...", flush=True)
                curve = preset_curve(preset, data, args.epochs, scratch, env, ["--seed", str(seed)])
                curves.append({**curve, "seed": seed, "ratio": curve["wall_seconds"] / peer["wall_seconds"]})
    return {**about_the_run(args), "seeds": args.seeds, "runs": curves}


def versus_peer_markdown(report: dict) -> str:
    heads = " | ".join(f"to {level}" for level in MILESTONES)
    lines = [
        f"| run | seed | wall s | x recipe | validation accuracy | {heads} |",
        "| --- | ---: | ---: | ---: | ---: |" + " ---: |" * len(MILESTONES),
    ]
    for curve in report["runs"]:
        reached = " | ".join(
            "not reached" if seconds is None else f"{seconds:.0f} s"
            for seconds in (first_reaching(curve, level) for level in MILESTONES)
        )
        lines.append(
            f"| {run_label(curve['preset'])} | {curve['seed']} | {curve['wall_seconds']:.1f} | {curve['ratio']:.2f} | "
            f"{curve['accuracy']:.4f} | {reached} |"
        )
    lines += [
        "",
        "| run | runs | validation accuracy, lowest..highest (mean) | x recipe, mean |",
        "| --- | ---: | --- | ---: |",
    ]
    for name in dict.fromkeys(curve["preset"] for curve in report["runs"]):
        runs = [curve for curve in report["runs"] if curve["preset"] == name]
        accuracies = [curve["accuracy"] for curve in runs]
        lines.append(
            f"| {run_label(name)} | {len(runs)} | {min(accuracies):.4f}..{max(accuracies):.4f} "
            f"({statistics.mean(accuracies):.4f}) | {statistics.mean(curve['ratio'] for curve in runs):.2f} |"
        )
    lines.append(f"\nSeeds {', '.join(map(str, report['seeds']))}; {report['machine']}; {report['created']}.")
    return "\n".join(lines) + "\n"


def run_label(preset: str) -> str:
    return preset if preset == PEER_NAME else f"`--preset {preset}`"


def profile(args) -> dict:
    with workspace(args.data) as (scratch, data, env):
        profiles = []
        for preset in args.profile:
            print(f"profiling one epoch of --preset {preset} ...", flush=True)
            result_path = scratch / f"profile-{preset}.json"
            command = [sys.executable, str(PROFILE_SCRIPT), preset, str(data), str(PROFILE_STEPS), str(result_path)]
            timed_process(command, env)
            profiles.append(json.loads(result_path.read_text()))
    return {**about_the_run(args), "profiles": profiles}


def profile_markdown(report: dict) -> str:
    lines = [
        "| preset | " + " | ".join(part.replace("_", " ") for part in PROFILE_PARTS) + " |",
        "| --- |" + " ---: |" * len(PROFILE_PARTS),
    ]
    for row in report["profiles"]:
        cells = [f"{row[part]:.1f} s ({row[part] / row['fit_step']:.0%})" for part in PROFILE_PARTS]
        lines.append(f"| `{row['preset']}` | " + " | ".join(cells) + " |")
    lines.append(
        f"\nSeconds per epoch, each part timed alone over {PROFILE_STEPS} batches and scaled to an epoch; "
        f"{report['machine']}; {report['created']}."
    )
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict, table: str) -> None:
    """Write OUT.json, then OUT.md, each atomically, with Ctrl-C held until both are in.

    A report that cannot be written as JSON fails before either file changes.
    """
    with signals_deferred():
        write_json(out.with_suffix(".json"), report)
        atomic_write(out.with_suffix(".md"), lambda temporary: temporary.write_text(table))
    print(table, end="")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


def main(argv: list[str] | None = None) -> int:
    return run_command(benchmark, argv)


def benchmark(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.profile:
        report = profile(args)
        write_report(args.out or Path("benchmarks/profile"), report, profile_markdown(report))
        return 0
    if args.versus_peer:
        if (args.epochs is not None and args.epochs < 1) or args.repeats < 1:
            raise UserError("--epochs and --repeats must be >= 1")
        report = versus_peer(args)
        write_report(args.out or Path("benchmarks/versus-peer"), report, versus_peer_markdown(report))
        return 0
    if args.time_to_accuracy:
        if args.epochs is not None and args.epochs < 1:
            raise UserError("--epochs must be >= 1")
        report = time_to_accuracy(args)
        write_report(args.out or Path("benchmarks/time-to-accuracy"), report, curves_markdown(report))
        return 0
    args.epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    args.out = args.out or Path("benchmarks/benchmark")
    if args.epochs < 1 or args.repeats < 1 or args.folds < 2:
        raise UserError("--epochs and --repeats must be >= 1, --folds >= 2")
    with workspace(args.data) as (scratch, data, env):
        load = cache_timing(data, scratch / "cache", env)
        runs = {"reference": [], "single": [], "folds": []}
        for repeat in range(1, args.repeats + 1):
            print(f"repeat {repeat}/{args.repeats}: reference ...", flush=True)
            runs["reference"].append(reference_run(data, args.epochs, scratch, env))
            print(f"repeat {repeat}/{args.repeats}: python -m src.submit ...", flush=True)
            runs["single"].append(package_run(data, args.epochs, 1, scratch, env))
            print(f"repeat {repeat}/{args.repeats}: python -m src.submit --folds {args.folds} ...", flush=True)
            runs["folds"].append(package_run(data, args.epochs, args.folds, scratch, env))
        rows_in_train = RunRecord.from_json(scratch / "submission-f1.json").inputs.train.rows

    rows = [
        median_row("reference: tutorial code, `model.fit`", runs["reference"]),
        median_row("`python -m src.submit --no-report`", runs["single"]),
        median_row(f"`python -m src.submit --no-report --folds {args.folds}` (out-of-fold)", runs["folds"]),
    ]
    for row in rows:
        row["ratio_to_reference"] = row["wall_seconds"] / rows[0]["wall_seconds"]
    report = {
        **about_the_run(args),
        "rows_in_train": rows_in_train,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "load": load,
        "rows": rows,
    }
    write_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
