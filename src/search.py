"""Command line: search settings with Optuna; every trial an ordinary run with its run folder.

python -m src.search --preset wide --vary learning_rate=3e-4..3e-3:log --vary 'hidden_units=256,128|512,256' \\
    --epochs 10 --trials 8 --confirm 3
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from src.core.cli import ArgumentParser, RawDescriptionHelpFormatter, exit_process, import_tensorflow, run_command
from src.core.config import SETTINGS_BY_NAME, check_split
from src.core.errors import UserError
from src.core.files import made_folder
from src.core.flags import add_settings_arguments, check_data_source, config_from_args
from src.core.paths import DEFAULT_DATA_DIR
from src.core.space import check_space, parse_dimensions, parse_duration, trial_rows, varied_values

DEFAULT_FOLDER = Path("submissions/search")
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
VARY_HELP = """\
a setting to vary, as NAME=LOW..HIGH (a number from that range; an integer for an integer setting),
NAME=LOW..HIGH:log (drawn evenly on a log scale), or NAME=A|B|C (one of these; a list setting's value
with commas: 'hidden_units=256,128|512,256'); repeat for each setting. Every bound and choice is
checked against the settings table before anything trains"""
EPILOG = """\
Each trial is an ordinary run: its submission is DIR/STUDY/trial-N.csv and its run folder is under
DIR/STUDY/runs/ (python -m src.report --compare and python -m src.predict read it). The study lives in
DIR/STUDY.db unless --storage says otherwise; the same command again adds trials to it, and processes
given the same --storage and --study share it. A pruned trial stops after the epoch where Optuna's
median pruner finds it hopeless, and leaves no run folder. TensorBoard: tensorboard --logdir DIR/STUDY/runs"""


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m src.search",
        description="Search settings with Optuna: each trial trains a run; the best settings come out as a "
        "python -m src.submit line.",
        epilog=EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
    )
    space = parser.add_argument_group("search")
    space.add_argument("--vary", action="append", default=[], metavar="SPEC", help=VARY_HELP)
    space.add_argument("--trials", type=int, metavar="N", help="run at most N more trials in this process")
    space.add_argument("--budget", metavar="TIME", help="start no trial after TIME (90s, 45m, 2h) has passed")
    space.add_argument("--study", metavar="NAME", help="the study's name (default: the preset and varied names)")
    space.add_argument(
        "--storage", metavar="URL", help="any database URL Optuna takes (default: sqlite:///DIR/STUDY.db)"
    )
    space.add_argument(
        "--out-dir", type=Path, default=DEFAULT_FOLDER, metavar="DIR", help=f"outputs (default: {DEFAULT_FOLDER})"
    )
    space.add_argument(
        "--confirm", type=int, default=0, metavar="K", help="then train the best settings on K other seeds"
    )
    space.add_argument(
        "--startup-trials",
        type=int,
        default=4,
        metavar="N",
        help="trials that finish before the pruner may stop one (default: 4)",
    )
    space.add_argument("--no-prune", action="store_true", help="let every trial train all its epochs")
    space.add_argument("--sampler-seed", type=int, metavar="S", help="seed Optuna's sampler, for a repeatable search")
    files = parser.add_argument_group("data")
    files.add_argument("--data", type=Path, help="folder with train.csv and test.csv (default: data/)")
    files.add_argument("--sample", action="store_true", help="use the small embedded dataset instead of --data")
    files.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=0,
        help="0 a line per trial (default), 1 also progress bars, 2 also a line per epoch",
    )
    add_settings_arguments(parser, argv)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(search, argv)


def check_counts(args: argparse.Namespace) -> float | None:
    """The budget in seconds; refuse counts that cannot be met, before anything loads."""
    if args.trials is None and args.budget is None and not args.confirm:
        raise UserError("say how long to search: --trials N and/or --budget TIME (90s, 45m, 2h)")
    counts = {"--trials": args.trials, "--confirm": args.confirm, "--startup-trials": args.startup_trials}
    for flag, value in counts.items():
        if value is not None and value < 0:
            raise UserError(f"{flag} must be 0 or more, got {value}")
    if args.study is not None and not STUDY_NAME.fullmatch(args.study):
        raise UserError(f"--study {args.study!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
    return None if args.budget is None else parse_duration(args.budget)


def check_not_given(args: argparse.Namespace, space) -> None:
    """Refuse a setting both given as a flag and varied: the trials would silently drop the flag's value."""
    for dimension in space:
        if getattr(args, dimension.name, None) is not None:
            flag = SETTINGS_BY_NAME[dimension.name].flag
            raise UserError(f"{flag} is given and varied (--vary {dimension.describe()}): give one or the other")


def check_extremes(base, space, labels, labels_name) -> None:
    """Every bound and choice must fit the rows and the size limits, as a plain run checks its settings."""
    from src.data.loading import check_labels
    from src.models.registry import check_size

    for dimension in space:
        for value in dimension.extremes():
            config = base.replace(**{dimension.name: value})
            try:
                check_labels(labels, config.folds, labels_name)
                check_split(config, len(labels))
                check_size(config)
            except UserError as error:
                raise UserError(f"--vary {dimension.describe()}: with {value!r}: {error}") from None


def search(argv: Sequence[str] | None) -> int:
    args = build_parser(argv).parse_args(argv)
    started = time.perf_counter()
    seconds = check_counts(args)
    space = parse_dimensions(args.vary)
    check_not_given(args, space)
    check_data_source(args)
    base = config_from_args(args, varied=varied_values(space))
    check_space(space, base)
    study_name = args.study or "-".join([args.preset, *(dimension.name for dimension in space)])
    folder = args.out_dir / study_name
    storage = args.storage or f"sqlite:///{(args.out_dir / f'{study_name}.db').resolve()}"
    from src.data.loading import check_labels, load_datasets, train_file_name, write_sample

    with tempfile.TemporaryDirectory(prefix="digit-sample-") as sample_dir:
        data_dir = Path(write_sample(sample_dir) if args.sample else args.data or DEFAULT_DATA_DIR)
        datasets = load_datasets(data_dir)
        labels_name = train_file_name(data_dir, args.sample)
        check_labels(datasets.train_labels, base.folds, labels_name)
        check_split(base, len(datasets.train_labels))
        check_extremes(base, space, datasets.train_labels, labels_name)
        with made_folder(args.out_dir):
            import_tensorflow()
            from src.pipeline.search import Search

            plan = Search(
                base=base,
                space=space,
                study_name=study_name,
                storage=storage,
                folder=folder,
                data_dir=data_dir,
                datasets=datasets,
                sample=args.sample,
                prune=not args.no_prune,
                startup_trials=args.startup_trials,
                sampler_seed=args.sampler_seed,
                verbose=args.verbose,
            )
            run_search(plan, args, seconds)
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


def run_search(plan, args: argparse.Namespace, seconds: float | None) -> None:
    """Open the study, run the trials, then print the table, the best settings and any confirmation."""
    from src.pipeline.search import best_trial, open_study, optimize, summaries

    study = open_study(plan)
    names = [dimension.name for dimension in plan.space]
    print(
        f"study {plan.study_name} ({plan.storage}): {len(study.trials)} trials so far; "
        f"objective: validation accuracy on {trial_rows(plan.space, plan.base)}; varying "
        + " ".join(dimension.describe() for dimension in plan.space),
        flush=True,
    )

    def on_trial(trial):
        print(trial_line(trial, names), flush=True)

    try:
        if args.trials != 0 and (args.trials is not None or seconds is not None):
            if optimize(plan, study, args.trials, seconds, on_trial):
                print("every combination of --vary has been tried: nothing new is left to draw", flush=True)
    except KeyboardInterrupt as interruption:
        finished = [trial for trial in summaries(study, plan.space) if trial.state in ("complete", "pruned")]
        kept = type(interruption)(f"{len(finished)} finished trials kept in study {plan.study_name} ({plan.storage})")
        # The table for Ctrl-C; a closed output takes no table, and its line must still say what was kept.
        with contextlib.suppress(KeyboardInterrupt):
            show_results(plan, study, args)
        raise kept from None
    show_results(plan, study, args)
    best = best_trial(study)
    if args.confirm and best is not None:
        confirm_best(plan, best, args.confirm)


def trial_line(trial, names: list[str]) -> str:
    from src.runs.search_results import COMPLETE, PRUNED, format_value

    settings = " ".join(f"{name}={format_value(trial.params[name])}" for name in names if name in trial.params)
    took = "" if trial.seconds is None else f" in {trial.seconds:.1f} s"
    if trial.repeat_of is not None:
        outcome = "pruned" if trial.state == PRUNED else f"validation accuracy {trial.accuracy:.4f}"
        again = f"not trained again: the settings of trial {trial.repeat_of}"
        return f"trial {trial.number}: {outcome}, {again}  {settings}"
    if trial.state == COMPLETE:
        return f"trial {trial.number}: validation accuracy {trial.accuracy:.4f}{took}  {settings}"
    if trial.state == PRUNED:
        return f"trial {trial.number}: pruned after epoch {trial.epochs} ({trial.accuracy:.4f}){took}  {settings}"
    return f"trial {trial.number}: {trial.state}{took}  {settings}"


def show_results(plan, study, args: argparse.Namespace) -> None:
    """The table, best first; the figure; the best settings as a submit line, with the warning they call for."""
    from src.pipeline.search import best_config, best_trial, summaries
    from src.runs.record import low_accuracy_line
    from src.runs.search_results import (
        COMPLETE,
        FAILED,
        FIGURE_NAME,
        PRUNED,
        RUNNING,
        draw_search,
        format_table,
        submit_line,
    )

    trials = summaries(study, plan.space)
    if not trials:
        print("no trial has finished yet", flush=True)
        return
    names = [dimension.name for dimension in plan.space]
    log_names = {dimension.name for dimension in plan.space if dimension.log}
    plan.folder.mkdir(parents=True, exist_ok=True)
    figure = draw_search(trials, names, log_names, plan.folder / FIGURE_NAME)
    n_repeats = sum(trial.repeat_of is not None for trial in trials)
    trained = [trial for trial in trials if trial.repeat_of is None]
    counts = Counter(trial.state for trial in trained)
    n_complete = counts[COMPLETE]
    # Failed (stopped by Ctrl-C, or an error) and running (a process that died) only when there are some.
    others = "".join(f", {counts[state]} {state}" for state in (FAILED, RUNNING) if counts[state])
    repeats = f", {n_repeats} repeating one (not trained again)" if n_repeats else ""
    print(
        f"{len(trials)} trials: {n_complete} complete, {counts[PRUNED]} pruned{others}{repeats}; best first:",
        flush=True,
    )
    print(format_table(trials, names), flush=True)
    print(f"figure: {figure}", flush=True)
    best = best_trial(study)
    if best is None:
        return
    print(f"best: trial {best.number}, validation accuracy {best.value:.4f}; train it with:", flush=True)
    print(submit_line(args.preset, best_config(best), data_flags(args)), flush=True)
    warning = low_accuracy_line(best.value, best_config(best), len(plan.datasets.train_labels))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if n_complete > 1 and not args.confirm:
        print(
            f"note: the best of {n_complete} trials was picked on the rows it is scored on, so {best.value:.4f} "
            "flatters it; --confirm K trains it on K other seeds for an honest figure",
            flush=True,
        )


def data_flags(args: argparse.Namespace) -> list[str]:
    """The flags that read the search's rows, for the best trial's command line."""
    if args.sample:
        return ["--sample"]
    return ["--data", str(args.data)] if args.data else []


def confirm_best(plan, best, count: int) -> None:
    from src.pipeline.search import confirm

    seeds = "seed" if count == 1 else "seeds"
    print(f"confirming trial {best.number} on {count} other {seeds}", flush=True)

    def on_run(seed, result):
        accuracy = result.record.validation.accuracy
        print(f"seed {seed}: validation accuracy {accuracy:.4f} in {result.record.timings.total:.1f} s", flush=True)

    accuracies = confirm(plan, best, count, on_run)
    mean = statistics.fmean(accuracies)
    print(
        f"confirmed: mean {mean:.4f} over {count} {seeds} (range {min(accuracies):.4f}..{max(accuracies):.4f}), "
        f"against {best.value:.4f} found by the search ({mean - best.value:+.4f})",
        flush=True,
    )


if __name__ == "__main__":
    exit_process(main())
