"""A search space written on the command line, checked against the settings table before anything trains.

    --vary NAME=LOW..HIGH        a number drawn from [LOW, HIGH] (an integer for an integer setting)
    --vary NAME=LOW..HIGH:log    the same, drawn evenly on a log scale (LOW > 0)
    --vary NAME=A|B|C            one of the listed values; a list setting's value with commas: 256,128|512,256

Each dimension asks an Optuna trial for its value (`suggest`); this module needs no Optuna itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from src.core.config import (
    NO_SCORED_ROWS,
    SCORED_ROWS_SETTINGS,
    SETTINGS_BY_NAME,
    Config,
    check_read,
    flag_with_value,
    format_default,
    scored_rows,
    trial_settings,
)
from src.core.errors import UserError

RANGE_SEPARATOR = ".."
CHOICE_SEPARATOR = "|"
LOG_SUFFIX = ":log"
TRUE_WORDS = ("true", "on", "yes", "1")
FALSE_WORDS = ("false", "off", "no", "0")
KIND_WORDS = {bool: "true or false", tuple: "integers separated by commas", int: "an integer", str: "a word"}
DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)")
SECONDS_PER_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Dimension:
    """One varied setting: a range (`low`, `high`, `log`) or a list of `choices`, in the setting's own type."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    @property
    def kind(self) -> type:
        return SETTINGS_BY_NAME[self.name].kind

    def stored_choices(self) -> list:
        """The choices as Optuna stores them: only plain values, so a list setting's travels as its text."""
        if self.kind is tuple:
            return [format_default(choice) for choice in self.choices]
        return list(self.choices)

    def suggest(self, trial):
        """This dimension's value for an Optuna `trial`, in the setting's type."""
        if self.choices:
            stored = self.stored_choices()
            return self.choices[stored.index(trial.suggest_categorical(self.name, stored))]
        if self.kind is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        """As it was written: `learning_rate=0.0001..0.01:log`, `hidden_units=256,128|512,256`."""
        if self.choices:
            return f"{self.name}={CHOICE_SEPARATOR.join(format_default(choice) for choice in self.choices)}"
        return f"{self.name}={self.low:g}{RANGE_SEPARATOR}{self.high:g}{LOG_SUFFIX if self.log else ''}"

    def extremes(self) -> tuple:
        """The values that bound what a trial can get: both ends, or every choice."""
        return self.choices or (self.low, self.high)


def parse_dimension(text: str) -> Dimension:
    """`NAME=LOW..HIGH[:log]` or `NAME=A|B|...`, every value checked against the setting; else a `UserError`."""
    name, equals, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not equals or not name or not values.strip():
        raise UserError(f"--vary {text!r}: write NAME=LOW..HIGH[:log] or NAME=A|B|C")
    setting = SETTINGS_BY_NAME.get(name)
    if setting is None:
        raise UserError(f"--vary {text!r}: no setting named {name!r} (python -m src.submit --help lists them)")
    values = values.strip()
    if CHOICE_SEPARATOR in values or RANGE_SEPARATOR not in values:
        choices = tuple(checked(name, part) for part in values.split(CHOICE_SEPARATOR))
        if len(set(choices)) != len(choices):
            raise UserError(f"--vary {text!r}: a choice is listed twice")
        return Dimension(name, choices=choices)
    if setting.kind not in (int, float):
        raise UserError(f"--vary {text!r}: {name} is not a number; list its values as A|B|C")
    log = values.endswith(LOG_SUFFIX)
    low_text, _, high_text = values.removesuffix(LOG_SUFFIX).partition(RANGE_SEPARATOR)
    low, high = checked(name, low_text), checked(name, high_text)
    if low > high:
        raise UserError(f"--vary {text!r}: the low end {low:g} is above the high end {high:g}")
    if log and low <= 0:
        raise UserError(f"--vary {text!r}: a log range needs a low end above 0, got {low:g}")
    return Dimension(name, low=low, high=high, log=log)


def checked(name: str, text: str):
    """`text` as a value of setting `name`, checked by the settings table."""
    setting = SETTINGS_BY_NAME[name]
    text = text.strip()
    try:
        if setting.kind is bool:
            if text.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError
            value = text.lower() in TRUE_WORDS
        elif setting.kind is tuple:
            value = tuple(int(part) for part in text.split(","))
        elif setting.kind is str:
            value = text
        else:
            value = float(text)
            if setting.kind is int:
                if not value.is_integer():
                    raise ValueError
                value = int(value)
    except ValueError:
        raise UserError(f"--vary {name}: {text!r} is not {KIND_WORDS.get(setting.kind, 'a number')}") from None
    try:
        return setting.check(value)
    except UserError as error:
        raise UserError(f"--vary {name}: {error}") from None


def parse_dimensions(texts: list[str]) -> tuple[Dimension, ...]:
    """Every `--vary` of the command line, each checked against its setting alone."""
    if not texts:
        raise UserError("nothing to search: give at least one --vary NAME=LOW..HIGH or NAME=A|B")
    space = tuple(parse_dimension(text) for text in texts)
    names = [dimension.name for dimension in space]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"--vary {repeated[0]} is given twice; give one range or list per setting")
    return space


def varied_values(space: tuple[Dimension, ...]) -> dict[str, tuple]:
    """Each varied setting and the values that bound its trials' values (see `check_read`)."""
    return {dimension.name: dimension.extremes() for dimension in space}


def check_space(space: tuple[Dimension, ...], base: Config) -> None:
    """Refuse a `space` where a bound or choice makes no valid config with `base`, one that does not read
    it, or one whose trials would be scored on different rows or on none (`trial_rows`)."""
    names = [dimension.name for dimension in space]
    check_read(base, names, varied_values(space), labels={name: f"--vary {name}" for name in names})
    for dimension in space:
        for value in dimension.extremes():
            try:
                base.replace(**{dimension.name: value})
            except UserError as error:
                raise UserError(f"--vary {dimension.describe()}: with {value!r}: {error}") from None
    trial_rows(space, base)


def trial_rows(space: tuple[Dimension, ...], base: Config) -> str:
    """The rows every trial of `space` is scored on (see `scored_rows`), the same for all of them.

    A dimension that moves them is refused: the best trial would be picked by accuracies measured
    on different rows (a harder or easier holdout, other out-of-bag rows). So is a space whose
    trials hold out no row at all.
    """
    varied = varied_values(space)
    names = [name for name in SCORED_ROWS_SETTINGS if name in varied]
    for name in names:
        others = [other for other in names if other != name]
        for fixed in trial_settings(base.to_dict(), varied, others):
            trials = list(trial_settings(vars(fixed), varied, [name]))
            rows = list(dict.fromkeys(scored_rows(trial) for trial in trials))
            if len(rows) > 1:
                raise UserError(
                    f"--vary {name}: its trials would be scored on different rows ({'; '.join(rows)}), "
                    f"so their accuracies do not compare: {same_rows_advice(name, trials, varied)}"
                )
    rows = scored_rows(next(trial_settings(base.to_dict(), varied, names)))
    if rows == NO_SCORED_ROWS:
        label = "--vary validation_split=0" if "validation_split" in varied else "--validation-split 0"
        raise UserError(
            f"a search scores every trial on held-out rows, and {label} leaves none: "
            "hold some out (--validation-split 0.1), or use --folds K"
        )
    return rows


def same_rows_advice(name: str, trials: list, varied: dict) -> str:
    """What keeps the rows: `--bag-holdout` where a bag's draws move them and it can hold rows out,
    else the setting at one value that holds rows out."""
    out_of_bag = any(trial.members > 1 and not trial.bag_holdout for trial in trials)
    if out_of_bag and "bag_holdout" not in varied and all(trial.validation_split for trial in trials):
        return "add --bag-holdout, which scores every trial on the same last rows whatever the bag draws"
    value = next(getattr(trial, name) for trial in trials if scored_rows(trial) != NO_SCORED_ROWS)
    return f"give it one value as a flag ({flag_with_value(SETTINGS_BY_NAME[name], value)}) and search the rest"


def parse_duration(text: str) -> float:
    """`90s`, `45m`, `2h` or plain seconds, as seconds above 0; else a `UserError`."""
    match = DURATION.fullmatch(text.strip().lower())
    seconds = float(match[1]) * SECONDS_PER_UNIT[match[2]] if match else math.nan
    if not seconds > 0:
        raise UserError(f"--budget: expected a duration such as 90s, 45m or 2h, got {text!r}")
    return seconds
