"""`python -m src.search` and TensorBoard's curves: the space and its refusals, pruning on both trainers,
a study that prunes and resumes, two workers on one study, trials as ordinary run folders, Ctrl-C."""

from __future__ import annotations

import itertools
import json
import re
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from src.core.config import PRESETS, SETTINGS_BY_NAME, Config, check_read, flag_with_value
from src.core.errors import UserError
from src.core.space import (
    Dimension,
    check_space,
    parse_dimension,
    parse_dimensions,
    parse_duration,
)
from src.data.splits import split_rows
from src.pipeline import search as search_pipeline
from src.pipeline.search import open_storage
from src.predict import main as predict_main
from src.report import main as report_main
from src.runs.record import RunRecord
from src.runs.search_results import (
    TrialSummary,
    best_first,
    draw_search,
    format_table,
    minor_log_label,
    submit_line,
)
from src.search import main as search_main
from src.submit import main as submit_main
from tests.helpers import assert_one_line_error, run_main, run_module, start_command, without_low_accuracy_warning
from tests.synthetic import write_dataset

# A hopeless learning rate beside a good one: after one epoch the first cannot beat the second,
# whose trial finished before, so the median pruner (one start-up trial) must stop it.
HOPELESS, GOOD = 1e-9, 3e-2
STUDY_FLAGS = ["--preset", "tutorial-scaled", "--batch-size", "8", "--epochs", "2", "--startup-trials", "1"]
SCALARS = ("epoch_loss", "epoch_accuracy", "epoch_val_loss", "epoch_val_accuracy", "epoch_learning_rate")


def parse_space(texts: list[str], base: Config) -> tuple[Dimension, ...]:
    """The `--vary` texts parsed and checked against `base`, as `python -m src.search` does."""
    space = parse_dimensions(texts)
    check_space(space, base)
    return space


def search_here(capsys, tiny_data: Path, out: Path, *flags) -> subprocess.CompletedProcess:
    """`python -m src.search` in this process (what reaches the terminal is checked with two workers, below)."""
    return run_main(capsys, search_main, "--data", tiny_data, "--out-dir", out, *STUDY_FLAGS, *flags)


def load_study(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / name}.db")


def trial_records(folder: Path) -> list[RunRecord]:
    """The records of the run folders a study's trials left, in `folder/runs`."""
    return [RunRecord.from_json(path) for path in sorted((folder / "runs").glob("*/record.json"))]


def scalar_events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in `folder`: tag -> [(step, value), ...]."""
    import tensorflow as tf

    found = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    found.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
                else:  # HParams' summaries: their tag, and no value
                    found.setdefault(value.tag, []).append((event.step, None))
    return found


# The space and its refusals.


def test_a_range_a_log_range_and_choices_parse_into_the_settings_types():
    assert parse_dimension("learning_rate=1e-4..1e-2:log") == Dimension("learning_rate", 1e-4, 1e-2, log=True)
    assert parse_dimension("epochs=2..8") == Dimension("epochs", 2, 8)
    assert isinstance(parse_dimension("epochs=2..8").low, int)
    hidden = parse_dimension("hidden_units=256,128|512,256")
    assert hidden.choices == ((256, 128), (512, 256))
    assert hidden.describe() == "hidden_units=256,128|512,256"
    assert parse_dimension("plain=true|false").choices == (True, False)
    assert parse_dimension("schedule=constant|cosine").choices == ("constant", "cosine")


@pytest.mark.parametrize(
    "vary, fragment",
    [
        ("speed=1..2", "no setting named 'speed'"),
        ("learning_rate=0..1e-2:log", "learning_rate must be > 0"),
        ("l2=0..1e-2:log", "a log range needs a low end above 0"),
        ("learning_rate=1e-2..1e-3", "the low end 0.01 is above the high end 0.001"),
        ("validation_split=0.1..1", "validation_split must be in [0, 1)"),
        ("epochs=1.5..3", "'1.5' is not an integer"),
        ("hidden_units=1..3", "list its values as A|B|C"),
        ("hidden_units=256,128|0,1", "hidden_units items must be in 1..65536"),
        ("schedule=constant|daily", "schedule must be one of"),
        ("dropout=0..0.5", "--vary dropout is read only with --family cnn, and this run has --family dense"),
        ("decay=0.5..0.9", "--vary decay is read only with --schedule exponential"),
        ("learning_rate", "write NAME=LOW..HIGH[:log] or NAME=A|B|C"),
    ],
)
def test_a_bad_range_is_refused_naming_the_problem(vary, fragment):
    with pytest.raises(UserError, match=None) as refused:
        parse_space([vary], PRESETS["wide"])
    assert fragment in str(refused.value)


def test_a_setting_varied_twice_or_nothing_varied_is_refused():
    with pytest.raises(UserError, match="given twice"):
        parse_space(["epochs=1..2", "epochs=3..4"], Config())
    with pytest.raises(UserError, match="nothing to search"):
        parse_space([], Config())
    # A setting read only with another is searched with it, or where the base run has it.
    cnn = PRESETS["cnn-fast"]
    with pytest.raises(UserError, match="--vary elastic_sigma is read only with --augment-elastic above 0"):
        parse_space(["elastic_sigma=2..6"], cnn)
    assert len(parse_space(["augment_elastic=0..20", "elastic_sigma=2..6"], cnn)) == 2
    assert len(parse_space(["elastic_sigma=2..6"], cnn.replace(augment_elastic=10.0))) == 1
    # A base flag is taken if some trial can read it: `--decay` with a varied schedule that can be exponential.
    decay = PRESETS["wide"].replace(decay=0.5)
    check_read(decay, ["decay"], {"schedule": ("constant", "exponential")})
    with pytest.raises(UserError, match="--decay is read only with --schedule exponential"):
        check_read(decay, ["decay"], {"schedule": ("constant", "one-cycle")})
    # A condition on several settings, varied together: some trial draws a constant rate and no smoothing.
    fit = PRESETS["wide"].replace(schedule="exponential", label_smoothing=0.1, plain=True)
    check_read(fit, ["plain"], {"schedule": ("constant", "exponential"), "label_smoothing": (0.0, 0.1)})
    with pytest.raises(UserError, match="--plain is read only with a dense network at a constant rate"):
        check_read(fit, ["plain"], {"schedule": ("constant", "exponential")})
    # Each bound must make a valid config with the rest: a CNN needs pixels scaled to 0..1.
    with pytest.raises(UserError, match="add --scaling unit"):
        parse_space(["family=dense|cnn"], Config())


BAG = Config(members=4)


@pytest.mark.parametrize(
    "base, vary",
    [
        (Config(), ["validation_split=0.1..0.2"]),
        (Config(), ["folds=1|5"]),
        (Config(), ["folds=5|10"]),
        (Config(), ["seed=1..5"]),
        (Config(), ["members=1|4"]),
        (BAG, ["seed=1..5"]),
        (BAG, ["bag_share=0.5..0.9"]),
        (BAG, ["bag_holdout=true|false"]),
        (BAG, ["members=2..6", "bag_holdout=true"]),
        (BAG.replace(bag_holdout=True), ["bag_share=0.5..1"]),
        (BAG.replace(bag_holdout=True), ["members=1|4", "seed=1..5"]),
        (Config(), ["validation_split=0.2..0.2000001"]),  # 40 rows or 39
        (Config(folds=5, last_member=2), ["folds=3|5"]),  # a part of a k-fold: only its folds' rows
        (Config(folds=5, last_member=2), ["seed=1..5"]),
        (BAG.replace(first_member=2), ["members=3|4"]),  # members 2..3 or 2..4 of a bag
        (BAG.replace(first_member=2, last_member=3), ["members=3|4"]),  # members 2..3 either way
        (Config(), ["validation_split=0.1..0.2", "seed=1..5"]),
        (Config(), ["validation_split=0|0.2"]),  # the advice must name the value that holds rows out
        (Config(validation_split=0.0), ["members=1|3"]),  # no --bag-holdout without a holdout
        (BAG, ["seed=1..3", "bag_holdout=true|false"]),  # the switch is blamed, not the seed
    ],
)
def test_a_space_is_refused_exactly_where_its_trials_are_scored_on_different_rows(base, vary):
    # The rows each trial is scored on, from the splits the trainer itself draws, at every combination of the ends.
    space = parse_dimensions(vary)
    labels = np.tile(np.arange(10), 20)  # 200 rows
    scored = set()
    for values in itertools.product(*(dimension.extremes() for dimension in space)):
        trial = base.replace(**{dimension.name: value for dimension, value in zip(space, values, strict=True)})
        scored.add(frozenset(np.concatenate([rows for _, rows in split_rows(trial, labels)]).tolist()))
    if len(scored) == 1:
        check_space(space, base)
    else:
        with pytest.raises(UserError, match=r"would be scored on different rows \(.+; .+\), so their accuracies") as e:
            check_space(space, base)
        # The advice, followed, is taken: --bag-holdout where a bag's draws move the rows, else one value as a flag.
        message = str(e.value)
        name = message.split(":")[0].removeprefix("--vary ")
        if "add --bag-holdout" in message:
            check_space(space, base.replace(bag_holdout=True))
        else:
            values = next(dimension.extremes() for dimension in space if dimension.name == name)
            value = next(value for value in values if f"({flag_with_value(SETTINGS_BY_NAME[name], value)})" in message)
            rest = tuple(dimension for dimension in space if dimension.name != name)
            check_space(rest, base.replace(**{name: value}))  # with rows held out, the same for every trial


def test_budgets_read_seconds_minutes_and_hours():
    assert [parse_duration(text) for text in ("90s", "45m", "2h", "30", "1.5h")] == [90, 2700, 7200, 30, 5400]
    for bad in ("0s", "-1m", "ten minutes", "5d"):
        with pytest.raises(UserError, match="--budget"):
            parse_duration(bad)


def test_the_command_refuses_a_bad_range_in_one_line_before_training(tiny_data, tmp_path, capsys):
    result = search_here(capsys, tiny_data, tmp_path / "out", "--vary", "learning_rate=0..1:log", "--trials", "1")
    assert_one_line_error(result, 2, "--vary learning_rate", "> 0")
    assert not (tmp_path / "out").exists()  # nothing was created, nothing trained
    result = search_here(capsys, tiny_data, tmp_path / "out", "--vary", "validation_split=0", "--trials", "1")
    assert_one_line_error(result, 2, "--vary validation_split=0 leaves none")
    vary = ("--vary", "learning_rate=1e-3..1e-2", "--trials", "1")
    result = search_here(capsys, tiny_data, tmp_path / "out", "--validation-split", "0", *vary)
    assert_one_line_error(result, 2, "and --validation-split 0 leaves none: hold some out")
    result = search_here(capsys, tiny_data, tmp_path / "out", "--learning-rate", "0.01", *vary)
    assert_one_line_error(result, 2, "--learning-rate is given and varied (--vary learning_rate=0.001..0.01)")
    # A refusal past the data (a storage Optuna cannot open) takes back the folder it made.
    result = search_here(capsys, tiny_data, tmp_path / "out" / "deeper", "--storage", "bogus://x", *vary)
    assert_one_line_error(result, 2, "--storage bogus://x")
    assert not (tmp_path / "out").exists()
    result = search_here(capsys, tiny_data, tmp_path / "out", "--vary", "validation_split=0.1..0.2", "--trials", "1")
    assert_one_line_error(result, 2, "--vary validation_split: its trials would be scored on different rows")
    result = search_here(capsys, tiny_data, tmp_path / "out", "--vary", "learning_rate=1e-3..1e-2")
    assert_one_line_error(result, 2, "--trials N and/or --budget")
    result = search_here(capsys, tiny_data, tmp_path / "out", "--sample", *vary)
    assert_one_line_error(result, 2, "--sample trains on the embedded sample, so --data")
    sample = ("--sample", "--out-dir", tmp_path / "out", *STUDY_FLAGS, "--folds", "1000", *vary)
    result = run_main(capsys, search_main, *sample)
    assert_one_line_error(result, 2, "the --sample data's train.csv: 1000 folds need at least 1000 rows")
    # A varied fold count too, before any trial trains.
    sample = ("--sample", "--out-dir", tmp_path / "out", *STUDY_FLAGS, "--vary", "folds=2|500", "--trials", "1")
    result = run_main(capsys, search_main, *sample)
    assert_one_line_error(result, 2, "--vary folds=2|500: with 500: the --sample data's train.csv: 500 folds need")
    assert not (tmp_path / "out").exists()
    # A base flag the trials would not read, unless a --vary may turn on what it needs.
    flags = ("--decay", "0.5", "--trials", "1", "--vary")
    result = search_here(capsys, tiny_data, tmp_path / "out", *flags, "learning_rate=1e-3..1e-2")
    assert_one_line_error(result, 2, "--decay is read only with --schedule exponential")
    # Past the settings' checks, it stops at the data: nothing refused the flag.
    missing, schedules = tmp_path / "missing", "schedule=constant|exponential"
    result = search_here(capsys, tiny_data, tmp_path / "out", *flags, schedules, "--data", missing)
    assert_one_line_error(result, 2, str(missing))


# Results: table order, submit line, the record's search section.


def test_trials_are_listed_best_first_and_the_best_becomes_a_submit_line():
    trials = [
        TrialSummary(0, "complete", 0.91, 3.0, {}),
        TrialSummary(1, "pruned", 0.2, 1.0, {}, epochs=1),
        TrialSummary(2, "complete", 0.95, 3.0, {}),
        TrialSummary(3, "complete", 0.95, 0.1, {}, repeat_of=2),
    ]
    # A repeat ties with the trial it repeats, which ran first.
    assert [trial.number for trial in best_first(trials)] == [2, 3, 0, 1]
    table = format_table(trials, []).splitlines()
    assert table[2].split() == ["3", "0.9500", "0.1", "repeats", "2"]
    config = PRESETS["wide"].replace(learning_rate=0.002, hidden_units=(512, 256), epochs=10)
    line = submit_line("wide", config)
    assert line == "python -m src.submit --preset wide --hidden-units 512,256 --learning-rate 0.002 --epochs 10"


def test_a_study_of_an_older_version_is_checked_against_its_trials():
    study = optuna.create_study(direction="maximize")
    choice = optuna.distributions.CategoricalDistribution((0.001, 0.01))
    attributes = {"data_sha256": ["train-sha", "test-sha"]}
    study.add_trial(
        optuna.trial.create_trial(value=0.9, params={"learning_rate": 0.01}, distributions={"learning_rate": choice})
    )
    study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs=attributes))
    with pytest.raises(UserError, match="study .* was started on other data"):
        search_pipeline.check_same_data(study, ["other", "test-sha"])
    search_pipeline.check_same_data(study, ["train-sha", "test-sha"])
    assert study.user_attrs["data_sha256"] == ["train-sha", "test-sha"]
    with pytest.raises(UserError, match=r"drew learning_rate from 0.001\|0.01, which --vary learning_rate=0.001..0.1"):
        search_pipeline.check_same_space(study, parse_dimensions(["learning_rate=0.001..0.1"]))
    search_pipeline.check_same_space(study, parse_dimensions(["learning_rate=0.001|0.01", "epochs=1..3"]))


def test_a_repeat_is_found_only_on_the_same_data_and_the_settings_a_run_reads():
    study = optuna.create_study(direction="maximize")
    base = PRESETS["tutorial-scaled"].replace(learning_rate=0.01)
    data = ["train-sha", "test-sha"]
    for config, trained_on in ((base.replace(epochs=3), data), (base, ["other", "test-sha"]), (base, data)):
        attributes = {"config": config.to_dict(), "data_sha256": trained_on, "run_dir": "runs/x"}
        study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs=attributes))
    # The third trial, not the second: that one trained on other rows.
    assert search_pipeline.trial_with_settings(study, base, data).number == 2
    # --decay is not read at a constant rate: no difference.
    assert search_pipeline.trial_with_settings(study, base.replace(decay=0.5), data).number == 2
    assert search_pipeline.trial_with_settings(study, base.replace(l2=0.0), data) is None
    assert search_pipeline.trial_with_settings(study, base, ["train-sha", "other"]) is None


@pytest.mark.parametrize(
    "preset, changes, left_out",
    [
        ("wide", dict(decay=0.5), "--decay"),  # `--decay 0.5 --vary schedule=...`, won by the constant schedule
        ("wide", dict(decay=0.5, schedule="exponential"), None),
        ("tutorial", dict(filters=(32,)), "--filters"),  # `--filters 32 --vary family=...`, won by dense
        ("wide", dict(validation_split=0.1, folds=5), "--validation-split"),
        ("cnn-fast", dict(plain=True, epochs=3), "--plain"),
    ],
)
def test_the_submit_line_leaves_out_what_the_best_trial_does_not_read(preset, changes, left_out):
    from src.core.config import unmet_condition
    from src.core.flags import config_from_args
    from src.submit import build_parser

    config = PRESETS[preset].replace(**changes)
    line = submit_line(preset, config)
    if left_out:
        assert left_out not in line.split()
    argv = shlex.split(line)[3:]
    again = config_from_args(build_parser(argv).parse_args(argv))  # the command line takes it back
    read = [name for name in config.to_dict() if unmet_condition(config, name) is None]
    assert {name: getattr(again, name) for name in read} == {name: getattr(config, name) for name in read}


# Pruning, on both trainers.


@pytest.mark.slow
@pytest.mark.parametrize("plain", [False, True], ids=["fused", "fit"])
def test_a_hopeless_trial_is_pruned_after_its_first_epoch(plain):
    from src.training.hooks import TrainingCallbacks
    from src.training.pruning import PruningCallback
    from src.training.trainer import train
    from tests.synthetic import make_arrays

    images, labels, _ = make_arrays()
    base = Config(scaling="unit", batch_size=8, epochs=3, folds=2, plain=plain)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    epochs_run = []
    for learning_rate in (GOOD, HOPELESS):
        trial = study.ask()
        callback = PruningCallback(trial, base.replace(learning_rate=learning_rate))
        try:
            result = train(
                base.replace(learning_rate=learning_rate), images, labels, 0, TrainingCallbacks(run=[callback])
            )
            study.tell(trial, result.validation_accuracy(labels))
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        epochs_run.append(len(study.trials[-1].intermediate_values))
    states = [trial.state.name for trial in study.trials]
    assert states == ["COMPLETE", "PRUNED"]
    assert epochs_run == [3, 1]  # stopped after its first epoch, not after all three


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, last_state",
    [
        (dict(), "COMPLETE"),
        (dict(folds=2), "COMPLETE"),  # the folds train together: their last epoch is the run's
        (dict(folds=2, plain=True), "PRUNED"),  # one after another: pruning the first still saves the second
    ],
    ids=["single", "folds-together", "folds-one-after-another"],
)
def test_a_trial_is_not_pruned_after_the_last_epoch_of_its_run(settings, last_state):
    """With one epoch, pruning would save no training and throw the trained run away."""
    from src.training.hooks import TrainingCallbacks
    from src.training.pruning import PruningCallback
    from src.training.trainer import train
    from tests.synthetic import make_arrays

    images, labels, _ = make_arrays()
    base = Config(scaling="unit", batch_size=8, epochs=1, **settings)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    would_prune = []
    for learning_rate in (GOOD, HOPELESS):
        config = base.replace(learning_rate=learning_rate)
        trial = study.ask()
        try:
            result = train(config, images, labels, 0, TrainingCallbacks(run=[PruningCallback(trial, config)]))
            would_prune.append(trial.should_prune())
            study.tell(trial, result.validation_accuracy(labels))
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", last_state]
    if last_state == "COMPLETE":
        assert would_prune == [False, True]  # the pruner did want the hopeless one stopped


def test_a_log_axis_labels_minor_ticks_at_2_and_5_only_and_none_past_two_decades():
    narrow = (3e-4, 7e-3)  # under two decades: the decade 1e-3 alone would be the only label
    assert [minor_log_label(value, narrow) for value in (2e-4, 3e-4, 5e-4, 2e-3, 4e-3, 5e-3)] == [
        "0.0002", "", "0.0005", "0.002", "", "0.005",
    ]  # fmt: skip
    assert minor_log_label(2e-3, (1e-5, 0.3)) == ""


def test_the_figure_of_a_study_with_no_finished_trial_draws_its_log_axis_empty(tmp_path):
    assert draw_search([], ["learning_rate"], {"learning_rate"}, tmp_path / "search.png").is_file()


class PrunesFrom(optuna.pruners.BasePruner):
    """Wants a trial stopped once it has reported step `step`: a pruner that asks at a chosen epoch."""

    def __init__(self, step: int):
        self.step = step

    def prune(self, study, trial) -> bool:
        return trial.last_step is not None and trial.last_step >= self.step


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, pruned",
    [
        (dict(), False),
        (dict(folds=2), True),  # the first fold's stopping epoch is not the run's: pruning still saves the second
    ],
    ids=["single", "folds-one-after-another"],
)
def test_a_trial_is_not_pruned_at_the_epoch_early_stopping_ends_it(settings, pruned):
    from src.training.hooks import TrainingCallbacks
    from src.training.pruning import PruningCallback
    from src.training.trainer import train
    from tests.synthetic import make_arrays

    images, labels, _ = make_arrays()
    # At this rate the loss diverges, so one epoch's patience ends the run before its 5 epochs (asserted below).
    config = Config(scaling="unit", batch_size=8, epochs=5, early_stopping=1, learning_rate=50.0, **settings)
    unpruned = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner()).ask()
    ran = train(config, images, labels, 0, TrainingCallbacks(run=[PruningCallback(unpruned, config)]))
    last_epoch = len(ran.members[0].history["loss"]) - 1
    assert last_epoch < config.epochs - 1  # stopped early, which this test is about

    study = optuna.create_study(direction="maximize", pruner=PrunesFrom(last_epoch))
    trial = study.ask()
    try:
        train(config, images, labels, 0, TrainingCallbacks(run=[PruningCallback(trial, config)]))
        was_pruned = False
    except optuna.TrialPruned:
        was_pruned = True
    assert was_pruned == pruned
    assert trial.should_prune()  # the pruner asked for it either way
    assert sorted(study.trials[0].intermediate_values) == list(range(last_epoch + 1))


# A whole study: it runs, prunes, resumes; its trials are run folders; TensorBoard reads them.


@pytest.mark.slow
def test_a_study_prunes_resumes_and_leaves_ordinary_run_folders(tiny_data, tmp_path, capsys):
    out = tmp_path / "search"
    # A third choice, never drawn in these five trials, so that the two drawn do not use the space up.
    vary = ["--vary", f"learning_rate={GOOD}|{HOPELESS}|0.01", "--sampler-seed", "25"]
    first = search_here(capsys, tiny_data, out, *vary, "--trials", "4")
    assert first.returncode == 0, first.stdout + first.stderr
    name = "tutorial-scaled-learning_rate"
    study = load_study(out, name)
    trials = study.trials
    assert [trial.number for trial in trials] == [0, 1, 2, 3]
    # Every hopeless trial that started after a good one had finished is pruned; no good one is. A trial that
    # repeats another's settings ends as that one did, without training (below).
    for trial in (trial for trial in trials if "repeat_of" not in trial.user_attrs):
        after_good = any(
            other.number < trial.number and other.params["learning_rate"] == GOOD and other.state.name == "COMPLETE"
            for other in trials
        )
        hopeless = trial.params["learning_rate"] == HOPELESS
        assert trial.state.name == ("PRUNED" if hopeless and after_good else "COMPLETE"), trial
    pruned = [trial for trial in trials if trial.state.name == "PRUNED" and "repeat_of" not in trial.user_attrs]
    assert pruned, "the seed must draw a hopeless trial after a good one: choose another --sampler-seed"
    assert all(len(trial.intermediate_values) == 1 for trial in pruned)
    assert "objective: validation accuracy on the last 0.2 of the rows;" in first.stdout
    assert "pruned after epoch 1" in first.stdout
    assert (out / name / "search.png").stat().st_size > 0
    # The best trial's line, run as printed (it names the data the search read), scores what the trial did.
    line = next(text for text in first.stdout.splitlines() if text.startswith("python -m src.submit"))
    assert line.startswith(f"python -m src.submit --preset tutorial-scaled --data {tiny_data} ")
    best = run_main(capsys, submit_main, *shlex.split(line)[3:], "--out", tmp_path / "best.csv")
    assert best.returncode == 0, best.stderr
    assert RunRecord.from_json(tmp_path / "best.json").validation.accuracy == pytest.approx(study.best_value)

    # Settings drawn again are not trained again: the trial takes the earlier one's accuracy and run folder,
    # or is pruned as it was.
    repeats = [trial for trial in trials if "repeat_of" in trial.user_attrs]
    assert {trial.state.name for trial in repeats} == {"COMPLETE", "PRUNED"}, "choose another --sampler-seed"
    for trial in repeats:
        earlier = trials[trial.user_attrs["repeat_of"]]
        assert earlier.params == trial.params and earlier.state == trial.state
        assert earlier.user_attrs.get("run_dir") == trial.user_attrs.get("run_dir")
        outcome = "pruned"
        if trial.state.name == "COMPLETE":
            assert earlier.value == trial.value
            outcome = f"validation accuracy {trial.value:.4f}"
        assert f"trial {trial.number}: {outcome}, not trained again" in first.stdout
    assert not any(trial.intermediate_values for trial in repeats)
    assert f", {len(repeats)} repeating one (not trained again); best first:" in first.stdout

    # Only the finished trials left run folders and submissions, and each record names its study and trial.
    records = trial_records(out / name)
    complete = {trial.number for trial in trials if trial.state.name == "COMPLETE"} - {t.number for t in repeats}
    assert {record.search.trial for record in records} == complete and len(records) == len(complete)
    assert all(record.search.study == name for record in records)
    assert sorted(path.name for path in (out / name).glob("trial-*.csv")) == sorted(f"trial-{n}.csv" for n in complete)
    assert not list((out / name / "runs").glob("training-*"))  # no pruned trial's curves left behind

    # TensorBoard: one value per epoch for every scalar, the same as the run's history, and the HParams.
    record = records[0]
    events = scalar_events(Path(record.run_dir) / "tensorboard" / "member-1")
    assert set(SCALARS) <= set(events)
    assert all([step for step, _ in events[tag]] == [0, 1] for tag in SCALARS)
    history = json.loads((Path(record.run_dir) / "histories.json").read_text())[0]
    np.testing.assert_allclose([value for _, value in events["epoch_val_accuracy"]], history["val_accuracy"], rtol=1e-6)
    learning_rate = record.config.learning_rate
    np.testing.assert_allclose([value for _, value in events["epoch_learning_rate"]], [learning_rate] * 2, rtol=1e-6)
    session = scalar_events(Path(record.run_dir) / "tensorboard")
    assert session["validation_accuracy"] == [(0, pytest.approx(record.validation.accuracy))]
    assert "_hparams_/session_start_info" in session

    # The trial run folders are ordinary: report --compare and predict read them.
    compare = run_main(capsys, report_main, "--compare", out / name / "runs")
    assert compare.returncode == 0, compare.stderr
    assert all(Path(record.run_dir).name in compare.stdout for record in records)
    # Named by time, they say which trial they were.
    search_row = next(line for line in compare.stdout.splitlines() if line.startswith("search"))
    assert all(f"{name} trial {record.search.trial}" in search_row for record in records)
    again = run_main(capsys, predict_main, record.run_dir, "--data", tiny_data, "--out", tmp_path / "again.csv")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.csv").read_bytes() == (Path(record.run_dir) / "submission.csv").read_bytes()

    # The same command again continues the study: new trials get new numbers.
    second = search_here(capsys, tiny_data, out, *vary, "--trials", "1")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "4 trials so far" in second.stdout
    assert [trial.number for trial in load_study(out, name).trials] == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_a_study_with_other_base_settings_is_not_continued(tiny_data, tmp_path, capsys):
    out = tmp_path / "search"
    vary = ["--vary", "learning_rate=1e-3|1e-2", "--study", "mine", "--no-prune"]
    assert search_here(capsys, tiny_data, out, *vary, "--trials", "1", "--epochs", "1", "--l2", "0.001").returncode == 0
    result = search_here(capsys, tiny_data, out, *vary, "--trials", "1", "--epochs", "1", "--l2", "0")
    # The flag that gives back the study's own setting, as when a preset changed between the two commands.
    assert_one_line_error(result, 2, "study mine was started with other settings (l2 differs)", "add --l2 0.001 to")


@pytest.mark.slow
def test_a_study_on_other_data_is_not_continued(tiny_data, tmp_path, capsys):
    out = tmp_path / "search"
    vary = ["--vary", "learning_rate=1e-3|1e-2", "--study", "mine", "--no-prune", "--trials", "1", "--epochs", "1"]
    assert search_here(capsys, tiny_data, out, *vary).returncode == 0
    other = write_dataset(tmp_path / "other", seed=1)
    result = run_main(capsys, search_main, "--data", other, "--out-dir", out, *STUDY_FLAGS, *vary)
    assert_one_line_error(result, 2, "study mine was started on other data", "--study NAME for a new one")
    assert len(load_study(out, "mine").trials) == 1


@pytest.mark.slow
def test_a_search_whose_best_barely_learned_says_so(tiny_data, tmp_path, capsys):
    vary = ["--vary", f"learning_rate={HOPELESS}|2e-9", "--trials", "1", "--epochs", "1"]
    result = search_here(capsys, tiny_data, tmp_path / "out", *vary)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is below 0.5: the network barely learned; check the data, --learning-rate and --epochs" in result.stderr
    assert "warning" not in result.stdout


@pytest.mark.slow
def test_a_study_of_choices_stops_once_each_has_trained_and_keeps_its_space(tiny_data, tmp_path, capsys):
    out = tmp_path / "search"
    vary = ["--vary", "learning_rate=1e-3|1e-2", "--study", "mine", "--no-prune", "--epochs", "1"]
    first = search_here(capsys, tiny_data, out, *vary, "--trials", "10")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "every combination of --vary has been tried: nothing new is left to draw" in first.stdout
    trials = load_study(out, "mine").trials
    trained = [trial.params["learning_rate"] for trial in trials if "repeat_of" not in trial.user_attrs]
    assert sorted(trained) == [1e-3, 1e-2] and len(trials) < 10
    # Continued, it draws nothing more.
    again = search_here(capsys, tiny_data, out, *vary, "--trials", "3")
    assert "every combination of --vary has been tried" in again.stdout
    assert len(load_study(out, "mine").trials) == len(trials)
    # --confirm trains the best settings on the next seed, and its record says it is a confirmation.
    best = load_study(out, "mine").best_trial
    confirmed = search_here(capsys, tiny_data, out, *vary, "--trials", "0", "--confirm", "1")
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert f"confirming trial {best.number} on 1 other seed\n" in confirmed.stdout
    assert "note: the best" not in confirmed.stdout  # it says to confirm, which this run does
    (record,) = [record for record in trial_records(out / "mine") if record.search.confirmation]
    assert record.config.seed == 43 and record.config.learning_rate == best.params["learning_rate"]
    assert f"confirmed: mean {record.validation.accuracy:.4f} over 1 seed (range" in confirmed.stdout
    # Other choices under the same study name would mix distributions Optuna refuses to mix; a range too.
    for space in ("learning_rate=1e-3|3e-3", "learning_rate=1e-3..1e-2"):
        other = search_here(capsys, tiny_data, out, "--vary", space, *vary[2:], "--trials", "1")
        assert_one_line_error(other, 2, "study mine drew learning_rate from 0.001|0.01, which --vary learning_rate=")
    # An integer range holds as many trials as integers.
    patience = ["--vary", "early_stopping=0..1", "--study", "ints", "--no-prune", "--trials", "9"]
    ints = search_here(capsys, tiny_data, out, *patience)
    assert "every combination of --vary has been tried" in ints.stdout, ints.stdout + ints.stderr
    trained = [trial for trial in load_study(out, "ints").trials if "repeat_of" not in trial.user_attrs]
    assert sorted(trial.params["early_stopping"] for trial in trained) == [0, 1]


@pytest.mark.slow
def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(tiny_data, tmp_path):
    out = tmp_path / "search"
    flags = ["--vary", "learning_rate=1e-3..3e-2:log", "--study", "shared", "--no-prune", "--trials", "2"]
    args = ["--data", tiny_data, "--out-dir", out, *STUDY_FLAGS, *flags]
    # At once: a worker in a process of its own, and one in this process.
    worker = start_command("-m", "src.search", *args)
    here = run_module("src.search", *args)
    stdout, stderr = worker.communicate(timeout=600)
    there = subprocess.CompletedProcess(worker.args, worker.returncode, stdout, stderr)
    for result in (there, here):
        assert result.returncode == 0, result.stdout + result.stderr
        assert without_low_accuracy_warning(result.stderr) == []  # Optuna's own log lines are silenced
    trials = load_study(out, "shared").trials
    assert sorted(trial.number for trial in trials) == [0, 1, 2, 3]
    assert all(trial.state.name == "COMPLETE" for trial in trials)
    records = trial_records(out / "shared")
    assert sorted(record.search.trial for record in records) == [0, 1, 2, 3]
    # Each trial's record holds the learning rate that trial drew: no run was written for another's.
    drawn = {trial.number: trial.params["learning_rate"] for trial in trials}
    assert all(record.config.learning_rate == pytest.approx(drawn[record.search.trial]) for record in records)


def test_workers_opening_a_new_database_at_once_all_open_it(tmp_path, monkeypatch):
    # Each would create the tables and insert the schema version; without the lock all but one
    # failed ("UNIQUE constraint failed: alembic_version.version_num"), in 20 rounds of 20 tried.
    # One attempt each, so that only the lock can make them all succeed.
    monkeypatch.setattr(search_pipeline, "STORAGE_ATTEMPTS", 1)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    start, failures = threading.Barrier(6), []

    def open_it():
        start.wait()
        try:
            open_storage(url)
        except UserError as error:
            failures.append(str(error))

    workers = [threading.Thread(target=open_it) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    assert optuna.create_study(storage=url, study_name="s", load_if_exists=True).trials == []


@pytest.mark.slow
def test_ctrl_c_keeps_the_finished_trials_and_exits_130(tiny_data, tmp_path):
    out = tmp_path / "search"
    logs = tmp_path / "logs"
    logs.mkdir()
    flags = ["--vary", "learning_rate=1e-3..3e-2:log", "--study", "stopped", "--no-prune", "--trials", "50"]
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        process = start_command(
            "-m",
            "src.search",
            "--data",
            tiny_data,
            "--out-dir",
            out,
            *STUDY_FLAGS,
            *flags,
            stdout=stdout,
            stderr=stderr,
        )
    deadline = time.monotonic() + 300
    while "trial 0:" not in (logs / "stdout").read_text():
        assert process.poll() is None and time.monotonic() < deadline, (logs / "stderr").read_text()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    stdout, stderr = ((logs / name).read_text() for name in ("stdout", "stderr"))
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    # One line, beside the warning its best trial may earn if it barely learned.
    (line,) = without_low_accuracy_warning(stderr)
    assert line.startswith("interrupted: ") and "finished trials kept in study stopped" in line
    # The heading counts every trial the table shows, the one Ctrl-C stopped ("failed") too.
    shown, counted = re.search(r"^(\d+) trials: (.*); best first:$", stdout, flags=re.MULTILINE).groups()
    assert int(shown) == sum(int(count) for count in re.findall(r"(\d+) \w+", counted))
    complete = [trial for trial in load_study(out, "stopped").trials if trial.state.name == "COMPLETE"]
    assert complete
    records = trial_records(out / "stopped")
    assert {record.search.trial for record in records} == {trial.number for trial in complete}
    assert not list((out / "stopped" / "runs").glob("*/.incomplete"))
    assert not list((out / "stopped" / "runs").glob("training-*"))


@pytest.mark.slow
def test_the_fit_path_writes_each_members_curves(tiny_data, tmp_path, capsys):
    # A schedule other than constant trains with fit, one model after another.
    result = run_main(
        capsys, submit_main, "--data", tiny_data, "--out", tmp_path / "s.csv", "--folds", "2",
        "--epochs", "2", "--schedule", "exponential", "--decay", "0.5", "--verbose", "0", "--no-report",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    histories = json.loads((run_dir / "histories.json").read_text())
    for index, history in enumerate(histories, start=1):
        events = scalar_events(run_dir / "tensorboard" / f"member-{index}")
        assert all([step for step, _ in events[tag]] == [0, 1] for tag in SCALARS)
        np.testing.assert_allclose([value for _, value in events["epoch_loss"]], history["loss"], rtol=1e-6)
        rates = [value for _, value in events["epoch_learning_rate"]]
        assert rates[1] < rates[0]  # the exponential schedule's rate, as it was at each epoch's end


def test_a_study_started_before_a_setting_existed_continues_and_its_best_trial_loads():
    from src.pipeline.search import BASE_ATTRIBUTE, CONFIG_ATTRIBUTE, best_config, check_same_base

    base = Config(members=2, seed=3)
    older = {name: value for name, value in base.to_dict().items() if name != "bag_share"}  # before schema 5
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(BASE_ATTRIBUTE, older)
    check_same_base(study, base)  # the same flags continue it
    with pytest.raises(UserError, match="members differ"):
        check_same_base(study, base.replace(members=3))
    trial = study.ask()
    trial.set_user_attr(CONFIG_ATTRIBUTE, older)
    study.tell(trial, 0.5)
    assert best_config(study.best_trial) == base


def test_a_study_begun_with_a_flag_now_refused_as_unread_continues_without_it():
    from src.pipeline.search import check_same_base

    study = optuna.create_study(direction="maximize")
    stopping = PRESETS["tutorial"].replace(scaling="unit", early_stopping=2)
    check_same_base(study, stopping.replace(keep_best=True))  # `--keep-best` beside early stopping, once taken
    check_same_base(study, stopping)
    # Unless a trial could read it: one without early stopping keeps its best epoch only with --keep-best.
    with pytest.raises(UserError, match="keep_best differ"):
        check_same_base(study, stopping, parse_dimensions(["early_stopping=0|2"]))


def test_a_study_begun_with_a_varied_setting_also_given_continues_without_the_flag():
    from src.pipeline.search import check_same_base

    study = optuna.create_study(direction="maximize")
    space = parse_dimensions(["learning_rate=1e-3..1e-2"])
    check_same_base(study, PRESETS["wide"].replace(learning_rate=0.01), space)  # `--learning-rate 0.01`, once taken
    check_same_base(study, PRESETS["wide"], space)
    with pytest.raises(UserError, match="learning_rate differ"):
        check_same_base(study, PRESETS["wide"], parse_dimensions(["epochs=2..4"]))
