"""Every setting of a run, declared once in `SETTINGS`, and the named presets.

Each `Setting` states its default, type, allowed values and help. The `Config`
dataclass, its validation, the command-line flags and their help text are all
derived from that table, so a new setting is one line in it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from src.core.errors import UserError

IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10
SCALINGS = ("none", "unit")
FAMILIES = ("dense", "cnn")
PADDINGS = ("same", "valid")
DOWNSAMPLINGS = ("stride", "pool")
SCHEDULES = ("constant", "exponential", "one-cycle", "cosine")
MAX_MEMBERS = 100
VALIDATION_SPLIT_HELP = (
    "share of rows (the last ones, as Keras takes them) held out by a single model, or by a whole bag with "
    "--bag-holdout; 0 trains on every row"
)
SEED_LIMIT = 2**32  # NumPy's seeds are 0..2**32 - 1
AUGMENTATIONS = ("augment_rotation", "augment_zoom", "augment_shift", "augment_elastic")


@dataclass(frozen=True)
class Setting:
    """One field of `Config`: its default, type, allowed values and help.

    Attributes:
        name: The field's name; its flag is `--name` with dashes.
        default: The tutorial's value.
        kind: `int`, `float`, `str`, `bool`, or `tuple` (a non-empty tuple of ints).
        help: What the setting does, as `--help` shows it.
        low, high: Bounds of an int, float or tuple item (`None`: unbounded).
        low_open, high_open: Whether the bound itself is excluded.
        choices: The allowed values of a `str` setting.
        metavar: The placeholder `--help` shows for the value.
        needs: Names of `CONDITIONS` under which a run reads it at all (none: always); a flag
            given where one fails would change nothing, and is refused.
        since: The run-record schema that first stored it; records of older schemas lack it,
            and their runs trained with its default.
    """

    name: str
    default: object
    kind: type
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    needs: tuple[str, ...] = ()
    since: int = 1

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """The allowed values in words, as error messages end: `>= 1`, `in (0, 1)`, `one of none, unit`."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.low is not None and self.high is not None:
            if self.kind is float:
                return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
            return f"in {self.low}..{self.high - 1 if self.high_open else self.high}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"

    def in_range(self, number: float) -> bool:
        above = self.low is None or (number > self.low if self.low_open else number >= self.low)
        below = self.high is None or (number < self.high if self.high_open else number <= self.high)
        return above and below

    def check(self, value, label: str | None = None):
        """`value` in this setting's canonical type (a float for an int given as `l2=0`), or a `UserError`.

        The error names the setting as `label` (default: its name; a command line passes its flag).
        """
        name = label or self.name
        if self.kind is bool:
            if not isinstance(value, bool):
                raise UserError(f"{name} must be true or false, got {value!r}")
            return value
        if self.kind is str:
            if value not in self.choices:
                raise UserError(f"{name} must be {self.allowed()}, got {value!r}")
            return value
        if self.kind is tuple:
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
                raise UserError(f"{name} must be a non-empty list of integers, got {value!r}")
            return tuple(self._check_number(item, int, f"{name} items") for item in value)
        return self._check_number(value, self.kind, name)

    def _check_number(self, value, kind: type, name: str):
        # bool is an int to Python, never to a user: folds=True is a mistake.
        wanted = numbers.Integral if kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise UserError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
        value = kind(value)
        if not math.isfinite(value):
            raise UserError(f"{name} must be a finite number, got {value}")
        if not self.in_range(value):
            raise UserError(f"{name} must be {self.allowed()}, got {value}")
        return value


def fused_trainer_fits(config) -> bool:
    """Whether the fused dense trainer (`src.training.stacked`) can train `config`'s models, all at once.

    It mirrors a dense network under Adam at a constant rate and plain cross-entropy; anything
    else trains with Keras' `fit`, one model after another.
    """
    return (
        config.family == "dense"
        and config.schedule == "constant"
        and not config.label_smoothing
        and not any(getattr(config, name) for name in AUGMENTATIONS)
        and not config.early_stopping
        and not config.ema
    )


def trains_together(config) -> bool:
    """Whether `config`'s models train in the fused loop (unless `--plain` asks for `fit`)."""
    return fused_trainer_fits(config) and not config.plain


@dataclass(frozen=True)
class Condition:
    """What a setting is read under: a test on other settings, and how a command line meets it.

    An error reads `FLAG is read only with {wants} ({why}), and this run has {setting} {value}:
    {fix}, or leave FLAG out`, naming the first of `settings` that is off the tutorial's value (else
    the first); `--help` says `only with {wants}`. `holds` takes a `Config`, or a search trial's
    settings as a namespace of the same names.
    """

    settings: tuple[str, ...]
    holds: Callable[[Any], bool]
    wants: str
    fix: str = ""
    why: str = ""


# A setting's `needs` name these; a flag given where one fails would train exactly what leaving it out does.
CONDITIONS = {
    "cnn": Condition(
        ("family",),
        lambda config: config.family == "cnn",
        "--family cnn",
        "use a cnn preset (--preset cnn-fast) or --family cnn --scaling unit",
    ),
    "dense": Condition(("family",), lambda config: config.family == "dense", "--family dense", "use --family dense"),
    "stride": Condition(
        ("downsample",), lambda config: config.downsample == "stride", "--downsample stride", "use --downsample stride"
    ),
    "dropout": Condition(("dropout",), lambda config: config.dropout > 0, "--dropout above 0", "raise --dropout"),
    "elastic": Condition(
        ("augment_elastic",),
        lambda config: config.augment_elastic > 0,
        "--augment-elastic above 0",
        "give --augment-elastic PIXELS",
    ),
    "exponential": Condition(
        ("schedule",),
        lambda config: config.schedule == "exponential",
        "--schedule exponential",
        "use --schedule exponential",
    ),
    "bag": Condition(("members",), lambda config: config.members > 1, "--members 2 or more", "use --members N"),
    "no-folds": Condition(
        ("folds",), lambda config: config.folds == 1, "--folds 1", "use --folds 1", "a fold is scored on its own rows"
    ),
    "holdout": Condition(
        ("members", "bag_holdout"),
        lambda config: config.members == 1 or config.bag_holdout,
        "a single model or a bag with --bag-holdout",
        "use --bag-holdout",
        "without it each member is scored on the rows it left out",
    ),
    "no-early-stopping": Condition(
        ("early_stopping",),
        lambda config: not config.early_stopping,
        "--early-stopping 0",
        "use --early-stopping 0",
        "early stopping keeps the best epoch itself",
    ),
    "fused": Condition(
        ("family", "schedule", "label_smoothing", *AUGMENTATIONS, "early_stopping", "ema"),
        fused_trainer_fits,
        "a dense network at a constant rate without label smoothing, augmentation, early stopping or --ema",
        why="the runs the fused trainer takes; every other run trains with Keras' fit already",
    ),
}

MAX_UNITS = 65_536  # widest dense layer or head: keeps every weight count inside int32
MAX_FILTERS = 4_096
MAX_BATCH_SIZE = 65_536
MAX_EPOCHS = 10_000
MAX_FOLDS = 1_000
MAX_STEPS_PER_EXECUTION = 1_000


def setting(default, kind: type, help: str, **limits) -> dataclasses.Field:
    """A `Config` field whose metadata holds its `Setting`; the setting's name is the field's."""
    return dataclasses.field(default=default, metadata={"setting": Setting("", default, kind, help, **limits)})


@dataclass(frozen=True)
class Config:
    """Settings of one run; the defaults are the Keras tutorial's dense network exactly.

    Each field's `Setting` (its metadata, listed in `SETTINGS`) gives its type,
    allowed values and help; validation, the flags, `--help` and the settings
    page of the docs are derived from them. `needs` names what a setting is read
    under (the model family, or another setting turned on).
    """

    family: str = setting("dense", str, "model: dense (the tutorial's network) or cnn", choices=FAMILIES, since=2)
    hidden_units: tuple[int, ...] = setting(
        (20, 15), tuple, "hidden layer widths, in order", low=1, high=MAX_UNITS, needs=("dense",)
    )
    l2: float = setting(1e-2, float, "L2 factor on every kernel", low=0, needs=("dense",))
    filters: tuple[int, ...] = setting(
        (16, 32, 64), tuple, "filters of each block, in order", low=1, high=MAX_FILTERS, needs=("cnn",), since=2
    )
    convs_per_block: int = setting(
        2, int, "convolutions per block before it halves the image", low=1, high=8, needs=("cnn",), since=2
    )
    kernel_size: int = setting(
        3, int, "kernel side of the blocks' convolutions", low=1, high=7, needs=("cnn",), since=2
    )
    first_kernel_size: int = setting(
        0, int, "kernel side of the first convolution (0: --kernel-size)", low=0, high=7, needs=("cnn",), since=4
    )
    padding: str = setting(
        "same", str, "padding of the blocks' convolutions", choices=PADDINGS, needs=("cnn",), since=2
    )
    downsample: str = setting(
        "stride",
        str,
        "halve by a stride-2 convolution or a max-pool",
        choices=DOWNSAMPLINGS,
        needs=("cnn",),
        since=2,
    )
    downsample_kernel_size: int = setting(
        3, int, "kernel side of the stride-2 convolution", low=1, high=7, needs=("cnn", "stride"), since=2
    )
    batch_norm: bool = setting(
        True, bool, "batch normalization after every convolution and the head", needs=("cnn",), since=2
    )
    dropout: float = setting(
        0.4,
        float,
        "dropout after the head, and after every block with --block-dropout",
        low=0,
        high=1,
        high_open=True,
        needs=("cnn",),
        since=2,
    )
    block_dropout: bool = setting(
        True, bool, "dropout after every block too, not only the head", needs=("cnn", "dropout"), since=4
    )
    head_units: int = setting(
        128,
        int,
        "units of the dense layer before the output (0: none)",
        low=0,
        high=MAX_UNITS,
        needs=("cnn",),
        since=2,
    )
    augment_rotation: float = setting(
        0.0, float, "training-only random rotation, degrees (0: none)", low=0, high=180, since=2
    )
    augment_zoom: float = setting(
        0.0, float, "training-only random zoom, share of side", low=0, high=1, high_open=True, since=2
    )
    augment_shift: float = setting(
        0.0, float, "training-only random shift, share of side", low=0, high=1, high_open=True, since=2
    )
    augment_elastic: float = setting(
        0.0,
        float,
        "training-only elastic distortion: a smoothed random displacement field scaled by this many pixels "
        "(Simard et al.'s alpha; 0: none)",
        low=0,
        high=100,
        metavar="PIXELS",
        since=7,
    )
    elastic_sigma: float = setting(
        4.0,
        float,
        "smoothness of the elastic field: its Gaussian's standard deviation, pixels",
        low=0.5,
        high=10,
        metavar="PIXELS",
        needs=("elastic",),
        since=7,
    )
    learning_rate: float = setting(1e-3, float, "Adam's (peak) learning rate", low=0, low_open=True)
    schedule: str = setting("constant", str, "learning-rate schedule over the epochs", choices=SCHEDULES, since=2)
    decay: float = setting(
        0.95,
        float,
        "the learning rate's factor per epoch",
        low=0,
        high=1,
        low_open=True,
        needs=("exponential",),
        since=2,
    )
    label_smoothing: float = setting(
        0.0, float, "label smoothing of the cross-entropy", low=0, high=1, high_open=True, since=2
    )
    ema: float = setting(
        0.0,
        float,
        "decay per step of a moving average of the weights, which are then evaluated, saved and predicted with "
        "(0: off)",
        low=0,
        high=1,
        high_open=True,
        metavar="DECAY",
        since=4,
    )
    clean_epochs: int = setting(
        0, int, "the last N epochs train on undistorted images (needs augmentation)", low=0, high=MAX_EPOCHS, since=4
    )
    pseudo_label: float = setting(
        0.0,
        float,
        "train a second time with the test images the first run predicts with at least this probability, "
        "under their predicted labels, added to the training rows, never to the held-out ones (0: off)",
        low=0,
        high=1,
        metavar="THRESHOLD",
        since=4,
    )
    batch_size: int = setting(128, int, "rows per training step", low=1, high=MAX_BATCH_SIZE)
    steps_per_execution: int = setting(
        1,
        int,
        "training steps per compiled call: fewer round trips through Python, the same results",
        low=1,
        high=MAX_STEPS_PER_EXECUTION,
        since=4,
    )
    epochs: int = setting(50, int, "passes over the training rows", low=1, high=MAX_EPOCHS)
    early_stopping: int = setting(
        0, int, "patience in epochs on val_loss, best weights kept (0: off)", low=0, high=MAX_EPOCHS, since=2
    )
    keep_best: bool = setting(
        False,
        bool,
        "keep each model's weights from its epoch of lowest validation loss, not its last (needs held-out rows)",
        needs=("no-early-stopping",),
        since=3,
    )
    validation_split: float = setting(
        0.2, float, VALIDATION_SPLIT_HELP, low=0, high=1, high_open=True, needs=("no-folds", "holdout")
    )
    scaling: str = setting("none", str, "pixel scaling: none (raw 0..255) or unit (divided by 255)", choices=SCALINGS)
    deskew: bool = setting(
        False,
        bool,
        "shear every image upright by its second moments and centre it, in training and prediction alike",
        since=8,
    )
    folds: int = setting(
        1, int, "K >= 2 trains a stratified K-fold ensemble; 1 a single model", low=1, high=MAX_FOLDS, metavar="K"
    )
    members: int = setting(
        1, int, "N >= 2 bags N models, each on its own random --bag-share of the rows", low=1, high=MAX_MEMBERS, since=2
    )
    bag_share: float = setting(
        0.9,
        float,
        "share of the rows each bagged member trains on, drawn at random; the rest are its out-of-bag rows "
        "(1, with --bag-holdout: every row before the holdout, the members differing by their seeds alone)",
        low=0,
        high=1,
        low_open=True,
        needs=("bag",),
        since=5,
    )
    bag_holdout: bool = setting(
        False,
        bool,
        "a bag holds the last --validation-split of the rows out of every member and is scored on them as a "
        "whole, instead of each row by the members that left it out",
        needs=("bag",),
        since=6,
    )
    first_member: int = setting(
        1,
        int,
        "train only members (or folds) FIRST.. of the bag or k-fold (a part of a fan-out)",
        low=1,
        high=max(MAX_MEMBERS, MAX_FOLDS),
        since=3,
    )
    last_member: int = setting(
        0,
        int,
        "train only members (or folds) ..LAST of the bag or k-fold (0: through the last)",
        low=0,
        high=max(MAX_MEMBERS, MAX_FOLDS),
        since=3,
    )
    tta: bool = setting(False, bool, "test-time augmentation: average predictions over one-pixel shifts", since=2)
    seed: int = setting(
        42, int, "seed for weights, shuffling and folds", low=0, high=SEED_LIMIT, high_open=True, metavar="S"
    )
    plain: bool = setting(
        False, bool, "train with Keras' plain model.fit, one model after another (slower)", needs=("fused",)
    )

    def __post_init__(self):
        # Loading is validation: every field is checked, and stored in its canonical type.
        for field_setting in SETTINGS:
            object.__setattr__(self, field_setting.name, field_setting.check(getattr(self, field_setting.name)))
        check_combination(self)

    def replace(self, **changes) -> Config:
        """A copy with `changes` applied; `None` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """The config a run record stored (`to_dict`'s output), validated; unknown or missing keys are errors.

        A record older than a setting lacks it; it trained with the setting's default,
        which `src.runs.record` fills in by the record's schema version.
        """
        if not isinstance(values, dict):
            raise UserError(f"a config must be a mapping of settings, got {type(values).__name__}")
        unknown = sorted(set(values) - set(SETTINGS_BY_NAME))
        missing = sorted(set(SETTINGS_BY_NAME) - set(values))
        if unknown or missing:
            problems = [f"unknown settings {', '.join(unknown)}"] * bool(unknown)
            problems += [f"missing settings {', '.join(missing)}"] * bool(missing)
            raise UserError(f"config: {'; '.join(problems)}")
        return cls(**values)

    @property
    def augmented(self) -> bool:
        return any(getattr(self, name) for name in AUGMENTATIONS)


SETTINGS = tuple(
    dataclasses.replace(field.metadata["setting"], name=field.name) for field in dataclasses.fields(Config)
)
SETTINGS_BY_NAME = {entry.name: entry for entry in SETTINGS}


def stored_settings(values: dict, schema: int = 1) -> dict:
    """A config stored by the package at record `schema` (1: it said none), with the settings added since then
    filled in with their defaults: that is how it trained. Any other missing setting stays missing, an error."""
    if not isinstance(values, dict):
        return values  # `Config.from_dict` refuses it in words
    return {**{entry.name: entry.default for entry in SETTINGS if entry.since > schema}, **values}


def unmet_condition(config: Config, name: str, varied: Mapping[str, Sequence] | None = None) -> Condition | None:
    """The first condition that setting `name` is read under and `config` fails; None if `config` reads it.

    `varied` maps a search's varied settings to the values that bound its trials': a condition
    that some trial can meet (any combination of those values) is left to the trials.
    """
    for need in SETTINGS_BY_NAME[name].needs:
        condition = CONDITIONS[need]
        if condition.holds(config):
            continue
        names = [setting for setting in condition.settings if setting in (varied or {})]
        if not names or not any(condition.holds(trial) for trial in trial_settings(config.to_dict(), varied, names)):
            return condition
    return None


def trial_settings(values: Mapping, varied: Mapping[str, Sequence], names: Sequence[str]) -> Iterator[SimpleNamespace]:
    """`values` (settings by name) with each combination of the `varied` values of `names` put in.

    Unchecked, unlike a `Config`: a search's bounds combine into settings that no single run was
    given, and only the conditions or rows they decide are asked of them.
    """
    for choice in itertools.product(*(varied[name] for name in names)):
        yield SimpleNamespace(**{**values, **dict(zip(names, choice, strict=True))})


def check_read(
    config: Config,
    given: Sequence[str],
    varied: Mapping[str, Sequence] | None = None,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Refuse a setting the user `given` that `config` would not read: it would change nothing.

    `varied` is a search's (see `unmet_condition`); `labels` maps a setting's name to what the
    error calls it (default: its flag as given).
    """
    tutorial = Config()
    for name in given:
        condition = unmet_condition(config, name, varied)
        if condition is None:
            continue
        label = (labels or {}).get(name) or flag_as_given(SETTINGS_BY_NAME[name], getattr(config, name))
        off = [setting for setting in condition.settings if getattr(config, setting) != getattr(tutorial, setting)]
        shown = (off or condition.settings)[0]
        value = getattr(config, shown)
        has = flag_with_value(SETTINGS_BY_NAME[shown], value)
        why = f" ({condition.why})" if condition.why else ""
        fix = f"{condition.fix}, or " if condition.fix else ""
        raise UserError(
            f"{label} is read only with {condition.wants}{why}, and this run has {has}: {fix}leave {label} out"
        )


def unread_settings(config: Config) -> list[str]:
    """The settings `config` holds but does not read (a CNN's `hidden_units`, a single model's `bag_share`)."""
    return [name for name in config.to_dict() if unmet_condition(config, name)]


def read_differences(before: Config, after: Config, varied: Mapping[str, Sequence] | None = None) -> list[str]:
    """The settings whose values differ between two configs and that either one reads (`unmet_condition`).

    What neither reads is no difference: a study or a fan-out begun with a flag that the command
    line now refuses as unread goes on without it.
    """
    return [
        name
        for name, value in after.to_dict().items()
        if getattr(before, name) != value
        and not (unmet_condition(before, name, varied) and unmet_condition(after, name, varied))
    ]


def flag_as_given(setting: Setting, value) -> str:
    """`--no-tta` for a switch turned off, else the setting's flag."""
    return setting.flag.replace("--", "--no-", 1) if setting.kind is bool and value is False else setting.flag


def flag_with_value(setting: Setting, value) -> str:
    """The setting at `value` as a command line writes it: `--no-tta`, `--validation-split 0.1`."""
    flag = flag_as_given(setting, value)
    return flag if setting.kind is bool else f"{flag} {format_default(value)}"


def check_combination(config) -> None:
    """Refuse settings that are each valid but cannot go together, with what to change."""
    if config.members > 1 and config.folds > 1:
        raise UserError(
            f"--members {config.members} and --folds {config.folds} are two ways to ensemble: "
            "bagging validates each member on the rows left out of its bag, folds on its fold; choose one"
        )
    check_member_range(config)
    # Without a bag, --bag-holdout is what a single model does anyway: held out like --bag-share, it changes nothing.
    if config.bag_holdout and config.members > 1 and not config.validation_split:
        raise UserError(
            "--bag-holdout holds out the last --validation-split of the rows from the bag: 0 leaves none; "
            "to train the bag on every row, use --no-bag-holdout --bag-share 0.9 in place of --validation-split 0 "
            "(scored out-of-bag)"
        )
    if config.members > 1 and not config.bag_holdout and config.bag_share == 1:
        raise UserError(
            "--bag-share 1 trains every member on every row and leaves none out of the bag to score it on: "
            "give a share below 1 (e.g. 0.9), or add --bag-holdout"
        )
    if config.family == "cnn" and config.scaling != "unit":
        raise UserError("--family cnn takes pixels scaled to 0..1: add --scaling unit")
    single_without_rows = config.members == 1 and config.folds == 1 and config.validation_split == 0
    if config.early_stopping and single_without_rows:
        raise UserError("--early-stopping watches the held-out rows: --validation-split 0 leaves none")
    if config.keep_best and single_without_rows:
        raise UserError("--keep-best picks the epoch by the held-out rows: --validation-split 0 leaves none")
    check_new_pieces(config)


def check_new_pieces(config) -> None:
    """The moving average, clean epochs, head-only dropout and pseudo-labels each need something of the rest."""
    if config.ema and (config.keep_best or config.early_stopping):
        raise UserError(
            "--ema averages the weights over the last steps, while --keep-best and --early-stopping "
            "keep one epoch's own weights: choose one"
        )
    if config.clean_epochs and not config.augmented:
        raise UserError(
            "--clean-epochs turns augmentation off for the last epochs, but there is none: add "
            "--augment-rotation, --augment-zoom, --augment-shift or --augment-elastic, or --clean-epochs 0"
        )
    if config.clean_epochs >= config.epochs and config.clean_epochs:
        raise UserError(
            f"--clean-epochs {config.clean_epochs} must leave at least one of the {config.epochs} --epochs augmented "
            f"(the CNN presets end with a clean epoch): use more --epochs, or --clean-epochs 0"
        )
    if config.family == "cnn" and config.dropout and not (config.block_dropout or config.head_units):
        raise UserError(
            f"--dropout {config.dropout} has nowhere to go: --no-block-dropout keeps it for the head, "
            "and --head-units 0 leaves no head"
        )
    if config.pseudo_label and (config.first_member != 1 or config.last_member != 0):
        raise UserError(
            "--pseudo-label labels the test images with the whole bag's first run: it cannot train "
            "a part of a bag (--first-member, --last-member)"
        )


def check_member_range(config) -> None:
    """A part of a bag or k-fold trains its models FIRST..LAST of N: each exactly as the whole ensemble would."""
    if config.first_member == 1 and config.last_member == 0:
        return
    if ensemble_size(config) < 2:
        raise UserError(
            "--first-member and --last-member pick members of a bag or folds of a k-fold: "
            "they need --members N >= 2 or --folds K >= 2"
        )
    last = config.last_member or ensemble_size(config)
    if not config.first_member <= last <= ensemble_size(config):
        raise UserError(
            f"--first-member {config.first_member} and --last-member {config.last_member} must pick "
            f"{ensemble_kind(config)}s within 1..{ensemble_size(config)}, first <= last"
        )


def ensemble_size(config) -> int:
    """How many models the whole run trains: a bag's members, a k-fold's folds, or 1."""
    return config.members if config.members > 1 else config.folds


def held_out_name(config) -> str:
    """What the run's held-out score is called: `out-of-bag`, `out-of-fold`, or `validation` on a holdout."""
    if config.members > 1 and not config.bag_holdout:
        return "out-of-bag"
    if config.folds > 1:
        return "out-of-fold"
    return "validation"


# What decides the rows a run is scored on (`scored_rows`), in the order a search blames them: a
# change of scheme before what moves the rows within one.
SCORED_ROWS_SETTINGS = (
    "bag_holdout",
    "folds",
    "members",
    "validation_split",
    "bag_share",
    "seed",
    "first_member",
    "last_member",
)
NO_SCORED_ROWS = "no rows"


def scored_rows(config) -> str:
    """Which rows the run's held-out accuracy is measured on, in words; two runs compare only where this agrees.

    Folds score every row once (a part, only its folds' rows); a bag without `--bag-holdout` the
    rows its members' draws left out, which its members, share and seed decide; anything else the
    last `validation_split` of the rows. Values are written in full: a split of 0.2000001 holds
    out other rows than 0.2.
    """
    part = member_indices(config)
    span = f"{part.start + 1}..{part.stop}"
    if config.members > 1 and not config.bag_holdout:
        return f"the rows members {span} left out at --bag-share {config.bag_share!r} and --seed {config.seed}"
    if config.folds > 1 and len(part) == config.folds:
        return "every row, each by its own fold"
    if config.folds > 1:
        return f"the rows of folds {span} of {config.folds} at --seed {config.seed}"
    if not config.validation_split:
        return NO_SCORED_ROWS
    return f"the last {config.validation_split!r} of the rows"


def ensemble_kind(config) -> str:
    """What one of the run's models is called: `member` of a bag, `fold` of a k-fold (or a single model)."""
    return "member" if config.members > 1 else "fold"


def member_indices(config) -> range:
    """The 0-based indices of the bag members or folds this run trains: all of them, or one part's."""
    return range(config.first_member - 1, config.last_member or ensemble_size(config))


# The large convolutional network (Deotte's Kaggle design), [32C3-32C3-32C5S2]-[64C3-64C3-64C5S2]-128-10 with
# batch norm and dropout 0.4, trained with augmentation and Adam at 1e-3 * 0.95**epoch, batch 64, 45 epochs
# (about 0.9964 alone). `cnn-fast` is its blocks at half their width, trained the fast way.
LARGE_CNN = dict(
    family="cnn",
    scaling="unit",
    filters=(32, 64),
    padding="valid",
    downsample_kernel_size=5,
    head_units=128,
    dropout=0.4,
    augment_rotation=10.0,
    augment_zoom=0.1,
    augment_shift=0.1,
    schedule="exponential",
    decay=0.95,
    batch_size=64,
    epochs=45,
)
# Named once, so that its ensemble is the same network by construction, not by copying its settings.
# The tutorial's 20-15 units cap its accuracy: 256-128 measured 0.9747 against 0.9476 (means over
# seeds 0-4, README's Presets). The penalty is light for the same reason as tutorial-scaled's.
# Its best epoch is kept: its last one measured up to 0.009 below its best (0.9661 against 0.9748).
WIDE = Config(hidden_units=(256, 128), l2=1e-4, scaling="unit", epochs=30, keep_best=True)

FAST_CNN = Config(
    family="cnn",
    scaling="unit",
    filters=(16, 32),
    padding="valid",
    downsample_kernel_size=5,
    dropout=0.2,
    block_dropout=False,
    head_units=256,
    augment_rotation=10.0,
    augment_zoom=0.1,
    augment_shift=0.1,
    schedule="one-cycle",
    learning_rate=5e-3,
    label_smoothing=0.1,
    epochs=8,
    clean_epochs=1,
    validation_split=0.1,
    steps_per_execution=8,
    deskew=True,
)
# cnn-fast with its second block twice as wide, 7.5 M multiply-adds per image, trained 11 epochs: 0.9938 to
# 0.9955 over six seeds in 1.72 times the keras-io example's time (nine runs). At twice the width in both
# blocks (15.3 M) and 8 epochs on raw images it scored the same in more time; a twelfth epoch moved 5-fold
# cross-validation on all 42,000 rows by 0.0002 at most.
CNN = FAST_CNN.replace(filters=(16, 64), epochs=11)

PRESETS = {
    # The baseline every other preset is measured against, and the default.
    "tutorial": Config(),
    # Scaling alone, to measure what it is worth. The tutorial's L2(1e-2) would then weigh
    # ~255 times heavier against the (now larger) weights, so it is lightened too.
    "tutorial-scaled": Config(scaling="unit", l2=1e-4),
    "wide": WIDE,
    # Averaging five models evens out their separate mistakes; folds also score every row once.
    "wide-ensemble": WIDE.replace(folds=5),
    "cnn": CNN,
    # The large network's blocks at half their width with a 256-unit head, 3.9 M multiply-adds per image,
    # trained to fit the time of the keras-io example on a CPU: one-cycle at a high peak, label smoothing,
    # dropout on the head only, a last epoch on undistorted images, deskewed images (+0.0004 over six
    # seeds, for 3 s of a 95 s run). Channels in sixteens: oneDNN's kernels work in blocks of 8 or 16
    # (20-40 filters measured half the images per second of 16-32).
    # Eight steps per compiled call save a few per cent, same results.
    "cnn-fast": FAST_CNN,
    # Ten cnn models, each on its own random 90% of the rows, so that the bag learns from every row. Each row
    # some member left out is scored by the members that did: 0.9960 to 0.9964 (seeds 42, 7, 0), 36 minutes
    # on 2 quiet CPU cores, measured with 12 epochs a member, which it keeps. Scored as a whole on the last
    # 4,200 rows (--bag-holdout), which are harder than most, bags of this family stop near 0.9952 whatever
    # their members.
    "cnn-bag": CNN.replace(members=10, epochs=12),
    # The large CNN bagged, for the most accuracy when time is no object: fifteen members at
    # about 68 CPU minutes each (one epoch measured) make it a job for a GPU kernel.
    "cnn-ensemble": Config(**LARGE_CNN, members=15),
}
DEFAULT_PRESET = "tutorial"
# Presets too big for a CPU: `python -m src.kernel` turns the kernel's GPU on for them.
GPU_PRESETS = ("cnn-ensemble",)


def bag_size(n_rows: int, share: float) -> int:
    """How many of `n_rows` rows a bagged member trains on, at `bag_share` `share`; the rest validate it."""
    return math.floor(n_rows * share)


def check_split(config: Config, n_rows: int) -> None:
    """Refuse settings that leave no training or no held-out row on `n_rows` rows.

    `validation_split` 0 holds out nothing on purpose: a final fit on every row.
    """
    if config.folds > 1:
        if config.folds > n_rows:
            raise UserError(f"{config.folds} folds need at least {config.folds} training rows, found {n_rows}")
        return
    n_training = math.floor(n_rows * (1.0 - config.validation_split))
    if config.members > 1 and not config.bag_holdout:
        # A share below 1 always leaves a row out of the bag; a small one may leave none in it.
        if bag_size(n_rows, config.bag_share) < 1:
            raise UserError(f"--bag-share {config.bag_share} leaves no training row of {n_rows}")
        return
    if n_training < 1:
        raise UserError(f"validation_split {config.validation_split} leaves no training row of {n_rows}")
    if n_training == n_rows and config.validation_split > 0:
        raise UserError(
            f"validation_split {config.validation_split} leaves no held-out row of {n_rows} "
            "(0 trains on every row on purpose)"
        )
    if config.members > 1 and bag_size(n_training, config.bag_share) < 1:
        raise UserError(
            f"--bag-share {config.bag_share} of the {n_training} rows before the holdout leaves no training row"
        )


def format_default(value) -> str:
    """A value as `--help` and the README show it: `20,15`, `on`, `0.2`."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
