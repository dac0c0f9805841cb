"""Command-line flags declared once: a flag for every setting of the settings table, and the waiting flags.

`python -m src.submit` and `python -m src.kernel` take the settings flags;
the commands that upload take the waiting flags.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence

from src.core.config import (
    CONDITIONS,
    DEFAULT_PRESET,
    PRESETS,
    SETTINGS,
    SETTINGS_BY_NAME,
    Config,
    Setting,
    check_read,
    format_default,
)
from src.core.errors import UserError

# What `--help` shows for a setting's value, unless the setting names its own.
METAVARS = {int: "N", float: "X", tuple: "A,B,..."}
DEFAULT_SCORE_TIMEOUT = 300.0  # seconds to wait for a public score: Digit Recognizer scores in seconds


def parse_hidden_units(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 20,15, got {text!r}") from None


def chosen_preset(argv: Sequence[str] | None = None) -> str:
    """The `--preset` that `argv` names (so that `--help` can show its values), else the default."""
    scout = argparse.ArgumentParser(add_help=False, exit_on_error=False, allow_abbrev=False)
    scout.add_argument("--preset", default=DEFAULT_PRESET)
    try:
        preset = scout.parse_known_args(argv)[0].preset
    except argparse.ArgumentError:
        return DEFAULT_PRESET  # the real parser reports the mistake
    return preset if preset in PRESETS else DEFAULT_PRESET


def add_settings_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    """Add `--preset` and a flag for every setting to `parser`.

    Unset flags stay `None` (the preset's value is used); `--help` shows the
    values of the preset that `argv` (default: `sys.argv[1:]`) names.
    `python -m src.submit` and `python -m src.kernel` take the same ones.
    """
    preset_name = chosen_preset(argv)
    preset = PRESETS[preset_name]
    settings = parser.add_argument_group("model and training", f"unset flags take the values of --preset {preset_name}")
    settings.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=DEFAULT_PRESET,
        help=f"named starting settings (default: {DEFAULT_PRESET})",
    )
    for setting in SETTINGS:
        # Numbers say their range, so that an upper bound (kept for int32/float32 arithmetic) is no surprise.
        limits = f"; {setting.allowed()}" if setting.kind in (int, float, tuple) and setting.high is not None else ""
        wants = " and ".join(CONDITIONS[need].wants for need in setting.needs)
        only = f"; only with {wants}" if wants else ""
        help_text = f"{setting.help}{limits}{only} (default: {format_default(getattr(preset, setting.name))})"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        if setting.kind is bool:
            settings.add_argument(setting.flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        metavar = setting.metavar or METAVARS.get(setting.kind)
        if setting.kind is tuple:
            settings.add_argument(setting.flag, nargs="+", action=CommaList, metavar=metavar, help=help_text)
            continue
        if setting.kind is str:
            settings.add_argument(setting.flag, choices=setting.choices, metavar=metavar, help=help_text)
            continue
        settings.add_argument(setting.flag, type=number_type(setting), metavar=metavar, help=help_text)


def number_type(setting: Setting):
    """An argparse `type` for a number setting: out of its range is an error that names the flag."""

    def parse(text: str):
        value = setting.kind(text)  # a ValueError: argparse's own "invalid int value"
        try:
            return setting.check(value, label="value")
        except UserError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = setting.kind.__name__
    return parse


class CommaList(argparse.Action):
    """A list setting, given as one comma-separated value.

    It takes several values only to say how to write them: `--hidden-units 256 128`
    would otherwise be "unrecognized arguments: 128", which hides the fix.
    """

    one_word = True  # its usage shows `--hidden-units A,B,...`, not an invitation to several words

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) > 1:
            parser.error(f"use commas: {option_string} {','.join(values)}")
        try:
            setattr(namespace, self.dest, SETTINGS_BY_NAME[self.dest].check(parse_hidden_units(values[0]), "value"))
        except (argparse.ArgumentTypeError, UserError) as error:
            parser.error(f"argument {option_string}: {error}")


def config_from_args(args: argparse.Namespace, varied: Mapping[str, Sequence] | None = None) -> Config:
    """The preset named by `args.preset`, with every flag that was given applied.

    A flag the run would not read (`--filters` for the dense network) is an error, unless a
    value of a search's `varied` settings turns on what it needs.
    """
    flags = {setting.name: getattr(args, setting.name) for setting in SETTINGS}
    given = {name: value for name, value in flags.items() if value is not None}
    config = PRESETS[args.preset].replace(**given)
    check_read(config, list(given), varied)
    return config


def check_data_source(args: argparse.Namespace) -> None:
    """Refuse `--data` beside `--sample`: the run would train on the sample and ignore the folder."""
    if args.sample and args.data is not None:
        raise UserError(f"--sample trains on the embedded sample, so --data {args.data} would be ignored: give one")


def positive_seconds(text: str) -> float:
    """A number of seconds, finite and above zero, from a flag or a variable."""
    try:
        seconds = float(text)
    except ValueError:
        raise UserError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"expected a number of seconds above 0, got {text!r}")
    return seconds


def seconds_argument(text: str) -> float:
    """`positive_seconds` as an argparse type: a bad value is argparse's usage error (exit 2)."""
    try:
        return positive_seconds(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_wait_arguments(parser) -> None:
    """The flags that say whether, and how long, a command waits for the public score."""
    parser.add_argument(
        "--wait-timeout",
        type=seconds_argument,
        default=DEFAULT_SCORE_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for Kaggle's score (default: {DEFAULT_SCORE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for the score (python -m src.ledger fetches it later)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="send it even when its local accuracy is below 0.90 or below that of your best-scored submission",
    )


def wait_timeout(args: argparse.Namespace) -> float | None:
    """The time-out the flags ask for; None with --no-wait."""
    return None if args.no_wait else args.wait_timeout
