"""A search over settings on Optuna: every trial an ordinary run (`src.pipeline.run.run`), scored by its
validation accuracy, and stopped after an epoch when Optuna's median pruner finds it hopeless.

A study lives in a database (an SQLite file by default), so running the same command again adds
trials to it, and several processes given the same `--storage` and `--study` share its trials.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from src.core.config import SEED_LIMIT, SETTINGS_BY_NAME, Config, flag_with_value, read_differences, stored_settings
from src.core.errors import UserError, error_reason
from src.core.files import locked
from src.core.space import CHOICE_SEPARATOR, LOG_SUFFIX, RANGE_SEPARATOR, Dimension, varied_values
from src.data.loading import Datasets
from src.pipeline.run import RunResult, run
from src.runs.record import SearchTrial
from src.runs.search_results import COMPLETE, FAILED, PRUNED, RUNNING, TrialSummary
from src.training.hooks import TrainingCallbacks
from src.training.pruning import PruningCallback
from src.training.tensorboard import TENSORBOARD_FOLDER, write_hparams, write_hparams_config

# The settings a study was started with, besides the varied ones: a study continues only with the same.
BASE_ATTRIBUTE = "base_config"
CONFIG_ATTRIBUTE = "config"
RUN_DIR_ATTRIBUTE = "run_dir"
REPEAT_ATTRIBUTE = "repeat_of"
DATA_ATTRIBUTE = "data_sha256"
OBJECTIVE_METRIC = "validation_accuracy"
# Past this many combinations a space is not checked for being used up: it would take long, and never is.
MAX_COMBINATIONS = 10_000
# SQLite lets one process write at a time: the others wait up to this long rather than fail.
SQLITE_LOCK_SECONDS = 120
STORAGE_ATTEMPTS = 5  # two workers creating the database's tables at once: one retries
STATES = {
    TrialState.COMPLETE: COMPLETE,
    TrialState.PRUNED: PRUNED,
    TrialState.FAIL: FAILED,
    TrialState.RUNNING: RUNNING,
    TrialState.WAITING: RUNNING,
}


@dataclass(frozen=True)
class Search:
    """What a study searches, and where its trials read and write.

    Attributes:
        base: The settings every trial starts from (the preset and flags).
        space: The varied settings.
        folder: Where each trial writes `trial-<n>.csv`; its run folder goes into `folder/runs`.
        startup_trials: Trials that finish before the pruner stops any (Optuna's `n_startup_trials`).
        sampler_seed: Seed of Optuna's sampler, for a repeatable sequence of trials; None: fresh each time.
    """

    base: Config
    space: tuple[Dimension, ...]
    study_name: str
    storage: str
    folder: Path
    data_dir: Path
    datasets: Datasets
    sample: bool = False
    prune: bool = True
    startup_trials: int = 4
    sampler_seed: int | None = None
    verbose: int = 0


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO and a failed one's traceback at WARNING; the command prints its own lines."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)


def open_study(search: Search) -> optuna.Study:
    """The study `search` names, created on first use; one started with other base settings is refused."""
    quiet_optuna()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials) if search.prune else None
    study = optuna.create_study(
        study_name=search.study_name,
        storage=open_storage(search.storage),
        sampler=optuna.samplers.TPESampler(seed=search.sampler_seed),
        pruner=pruner or optuna.pruners.NopPruner(),
        direction="maximize",
        load_if_exists=True,
    )
    check_same_base(study, search.base, search.space)
    check_same_data(study, data_identity(search.datasets))
    check_same_space(study, search.space)
    return study


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's database at `url`; SQLite waits for another worker's write instead of failing.

    Workers started together on a new database would each create its tables and insert its
    schema version, and all but one fail. On a SQLite file the first holds a lock beside it
    while it creates them, and the others then open what it made; after a clash (on another
    database, or where the lock cannot be taken) the database is opened again.
    """
    engine = {"connect_args": {"timeout": SQLITE_LOCK_SECONDS}} if url.startswith("sqlite:") else {}
    with creation_lock(url):
        for attempt in range(STORAGE_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine)
            except Exception as error:  # SQLAlchemy's errors, an unknown driver, a malformed URL
                clash = isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in str(error)
                if attempt + 1 == STORAGE_ATTEMPTS or not clash:
                    raise UserError(f"--storage {url}: {error_reason(error)}") from None


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """An exclusive lock on `<file>.lock` beside a SQLite file, where one can be taken."""
    path = sqlite_file(url)
    with contextlib.ExitStack() as stack:
        # A folder or lock file this user may not write: no lock, and the retries still apply.
        if path is not None:
            with contextlib.suppress(OSError):
                stack.enter_context(locked(path))
        yield


def sqlite_file(url: str) -> Path | None:
    """The file a plain SQLite URL names, in a folder that exists; None for any other URL."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:  # a malformed URL: RDBStorage says what is wrong with it
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:") or parsed.query:
        return None
    path = Path(parsed.database)
    return path if path.parent.is_dir() else None


def check_same_base(study: optuna.Study, base: Config, space: tuple[Dimension, ...] = ()) -> None:
    """Record the study's base settings on first use; refuse to continue it with others that some trial reads."""
    stored = study.user_attrs.get(BASE_ATTRIBUTE)
    if stored is None:
        study.set_user_attr(BASE_ATTRIBUTE, base.to_dict())
        return
    # A varied setting's base value is never trained: a study begun with it also given as a flag (refused
    # since) continues without the flag.
    varied = varied_values(space)
    started = Config.from_dict(stored_settings(stored))
    changed = [name for name in read_differences(started, base, varied) if name not in varied]
    if changed:
        # A preset can change between two commands: the flags that give back its old settings say how to go on.
        flags = " ".join(flag_with_value(SETTINGS_BY_NAME[name], getattr(started, name)) for name in changed)
        raise UserError(
            f"study {study.study_name} was started with other settings ({', '.join(changed)} "
            f"{'differs' if len(changed) == 1 else 'differ'}); "
            f"add {flags} to continue it, or give --study NAME for a new one"
        )


def check_same_data(study: optuna.Study, data: list) -> None:
    """Record the study's data on first use; refuse to continue it on other data, where its trials would not
    compare (nor would its best trial's figure with a confirmation's)."""
    stored = study.user_attrs.get(DATA_ATTRIBUTE)
    if stored is None:
        # A study begun before studies recorded their data: its trials may say.
        trials = study.get_trials(deepcopy=False)
        trained_on = {tuple(trial.user_attrs[DATA_ATTRIBUTE]) for trial in trials if DATA_ATTRIBUTE in trial.user_attrs}
        stored = list(trained_on.pop()) if len(trained_on) == 1 else data
        study.set_user_attr(DATA_ATTRIBUTE, stored)
    if stored != data:
        raise UserError(
            f"study {study.study_name} was started on other data (its train.csv and test.csv differ from these); "
            "give the same --data or --sample to continue it, or --study NAME for a new one"
        )


def check_same_space(study: optuna.Study, space: tuple[Dimension, ...]) -> None:
    """Refuse a `--vary` that Optuna cannot mix with the study's trials: another kind of value for a setting,
    or other choices. A wider or narrower range it takes."""
    wanted = {dimension.name: (dimension, distribution(dimension)) for dimension in space}
    for trial in study.get_trials(deepcopy=False):
        for name, drawn in trial.distributions.items():
            if name not in wanted:
                continue
            dimension, asked = wanted[name]
            try:
                optuna.distributions.check_distribution_compatibility(drawn, asked)
            except ValueError:
                raise UserError(
                    f"study {study.study_name} drew {name} from {described(drawn)}, which --vary "
                    f"{dimension.describe()} cannot continue: give its space, or --study NAME for a new study"
                ) from None


def distribution(dimension: Dimension) -> optuna.distributions.BaseDistribution:
    """The distribution `Dimension.suggest` draws from."""
    if dimension.choices:
        return optuna.distributions.CategoricalDistribution(dimension.stored_choices())
    if dimension.kind is int:
        return optuna.distributions.IntDistribution(int(dimension.low), int(dimension.high), log=dimension.log)
    return optuna.distributions.FloatDistribution(dimension.low, dimension.high, log=dimension.log)


def described(drawn: optuna.distributions.BaseDistribution) -> str:
    """A distribution as `--vary` writes it."""
    if isinstance(drawn, optuna.distributions.CategoricalDistribution):
        return CHOICE_SEPARATOR.join(str(choice) for choice in drawn.choices)
    return f"{drawn.low:g}{RANGE_SEPARATOR}{drawn.high:g}{LOG_SUFFIX if drawn.log else ''}"


def finite_values(dimension: Dimension) -> list | None:
    """Every value a trial can draw for `dimension`, as Optuna stores it; None for a range of floats."""
    if dimension.choices:
        return dimension.stored_choices()
    if dimension.kind is int:
        return list(range(int(dimension.low), int(dimension.high) + 1))
    return None


def trial_config(search: Search, trial: optuna.Trial) -> Config:
    """The base settings with each varied one drawn for `trial`."""
    return search.base.replace(**{dimension.name: dimension.suggest(trial) for dimension in search.space})


def run_trial(search: Search, trial: optuna.Trial) -> float:
    """One trial: an ordinary run at `folder/trial-<n>.csv`, its accuracy returned to Optuna.

    Settings a complete or pruned trial already ran are not trained again: a run is repeatable to the
    byte, so the trial takes that one's accuracy and run folder, or is pruned as it was (Optuna's
    samplers draw a choice again readily).
    """
    config = trial_config(search, trial)
    data = data_identity(search.datasets)
    trial.set_user_attr(CONFIG_ATTRIBUTE, config.to_dict())
    trial.set_user_attr(DATA_ATTRIBUTE, data)
    earlier = trial_with_settings(trial.study, config, data)
    if earlier is not None:
        trial.set_user_attr(REPEAT_ATTRIBUTE, earlier.number)
        if earlier.state == TrialState.PRUNED:
            raise optuna.TrialPruned()
        trial.set_user_attr(RUN_DIR_ATTRIBUTE, earlier.user_attrs[RUN_DIR_ATTRIBUTE])
        return earlier.value
    callbacks = TrainingCallbacks(run=[PruningCallback(trial, config)]) if search.prune else None
    record_says = SearchTrial(search.study_name, trial.number)
    result = run_once(search, config, f"trial-{trial.number}.csv", callbacks, record_says)
    accuracy = result.record.validation.accuracy
    trial.set_user_attr(RUN_DIR_ATTRIBUTE, str(result.run_dir))
    write_hparams(
        result.run_dir / TENSORBOARD_FOLDER,
        f"{search.study_name}/trial-{trial.number}",
        dict(trial.params),
        {OBJECTIVE_METRIC: accuracy},
    )
    return accuracy


def data_identity(datasets: Datasets) -> list:
    """The train and test files' sha256: a study continued on other data must not take its old trials' runs."""
    return [datasets.inputs.get(name, {}).get("sha256") for name in ("train", "test")]


def trial_with_settings(study: optuna.Study, config: Config, data: list) -> optuna.trial.FrozenTrial | None:
    """The first complete or pruned trial of `study` that trained `config` (all that it reads) on `data`, or None."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        # A trial of an older version does not say which data it trained on: it is never taken, as its
        # study may have been continued on other data before studies recorded theirs.
        if trial.user_attrs.get(DATA_ATTRIBUTE) == data and not read_differences(best_config(trial), config):
            return trial
    return None


def run_once(search: Search, config: Config, name: str, callbacks, trial: SearchTrial) -> RunResult:
    return run(
        config,
        search.data_dir,
        search.folder / name,
        datasets_override=search.datasets,
        verbose=search.verbose,
        report=False,  # `python -m src.report RUN_DIR` draws it later, from the arrays the run folder keeps
        sample=search.sample,
        callbacks=callbacks,
        search=trial,
    )


def optimize(search: Search, study: optuna.Study, trials: int | None, seconds: float | None, on_trial) -> bool:
    """Run trials until `trials` more have ended, `seconds` have passed (no trial starts after that) or every
    combination of a finite space has been tried (see `exhausted`); returns whether the last stopped it.

    `on_trial(summary)` is called as each one ends. Ctrl-C ends the trial under way (Optuna records it
    as failed) and is raised again; every trial that ended before it stays in the study.
    """
    write_hparams_config(search.folder / "runs", [dimension.name for dimension in search.space], [OBJECTIVE_METRIC])
    if exhausted(study, search.space):
        return True

    def after_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        on_trial(summarize(frozen, search.space))
        if exhausted(study, search.space):
            study.stop()  # all that is left to draw are repeats

    study.optimize(
        lambda trial: run_trial(search, trial),
        n_trials=trials,
        timeout=seconds,
        callbacks=[after_trial],
        gc_after_trial=True,
    )
    return exhausted(study, search.space)


def exhausted(study: optuna.Study, space: tuple[Dimension, ...]) -> bool:
    """Whether every combination of a finite space has a complete or pruned trial: nothing new is left."""
    values = [finite_values(dimension) for dimension in space]
    if any(value is None for value in values) or math.prod(len(value) for value in values) > MAX_COMBINATIONS:
        return False
    tried = {
        tuple(sorted(trial.params.items()))
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    }
    names = [dimension.name for dimension in space]
    return all(
        tuple(sorted(zip(names, combination, strict=True))) in tried for combination in itertools.product(*values)
    )


def summarize(trial: optuna.trial.FrozenTrial, space: tuple[Dimension, ...]) -> TrialSummary:
    """What the table and figure show of one trial."""
    state = STATES[trial.state]
    accuracy = trial.value if state == COMPLETE else None
    epochs = None
    if state == PRUNED and trial.intermediate_values:
        epochs = trial.last_step + 1
        accuracy = trial.intermediate_values[trial.last_step]
    seconds = trial.duration.total_seconds() if trial.duration else None
    repeat_of = trial.user_attrs.get(REPEAT_ATTRIBUTE)
    return TrialSummary(trial.number, state, accuracy, seconds, dict(trial.params), epochs, repeat_of)


def summaries(study: optuna.Study, space: tuple[Dimension, ...]) -> list[TrialSummary]:
    return [summarize(trial, space) for trial in study.get_trials(deepcopy=False)]


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda trial: (trial.value, -trial.number)) if complete else None


def best_config(trial: optuna.trial.FrozenTrial) -> Config:
    return Config.from_dict(stored_settings(trial.user_attrs[CONFIG_ATTRIBUTE]))


def confirm(search: Search, trial: optuna.trial.FrozenTrial, count: int, on_run) -> list[float]:
    """Train the best trial's settings again on `count` other seeds; their validation accuracies.

    The best of many trials is picked on the very rows it is scored on, so its own figure flatters it;
    new seeds (new weights, and new folds or bags where they are drawn) give an honest one.
    """
    config = best_config(trial)
    accuracies = []
    for offset in range(1, count + 1):
        seed = (config.seed + offset) % SEED_LIMIT
        result = run_once(
            search,
            config.replace(seed=seed),
            f"confirm-trial-{trial.number}-seed-{seed}.csv",
            None,
            SearchTrial(search.study_name, trial.number, confirmation=True),
        )
        accuracies.append(result.record.validation.accuracy)
        on_run(seed, result)
    return accuracies
