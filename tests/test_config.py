"""The settings table: every setting validated (type, finite, range), flags, help and records derived from it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re

import pytest

from src.core.config import (
    PRESETS,
    SETTINGS,
    Config,
    Setting,
    check_split,
    format_default,
    unread_settings,
)
from src.core.errors import EXIT_CODES, UserError
from src.core.flags import add_settings_arguments, config_from_args
from src.submit import build_parser
from tests.helpers import REPO_ROOT

# One wrong value of each kind a user or a damaged record could give, per type of setting.
WRONG_VALUES = {
    int: ["3", 2.5, True, None, math.nan],
    float: ["x", True, None, math.nan, math.inf, -math.inf],
    str: [1, None, "NONE"],
    bool: [1, "yes", None],
    tuple: ["20,15", [], [20, 2.5], [20, True], [0], 20],
}


def parse(*flags: str) -> Config:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_settings_arguments(parser, list(flags))
    return config_from_args(parser.parse_args(list(flags)))


def help_text(*flags: str) -> str:
    parser = argparse.ArgumentParser(prog="x")
    add_settings_arguments(parser, list(flags))
    return " ".join(parser.format_help().split())


def test_the_defaults_are_the_tutorials_network():
    assert Config() == PRESETS["tutorial"]
    values = Config().to_dict()
    # Everything beyond the tutorial's network is off: no CNN, augmentation, schedule, smoothing, averaging,
    # pseudo-labels, stopping, bag, TTA.
    assert {entry.name: values.pop(entry.name) for entry in SETTINGS if entry.since > 1} == {
        "family": "dense",
        "filters": (16, 32, 64),
        "convs_per_block": 2,
        "kernel_size": 3,
        "first_kernel_size": 0,
        "padding": "same",
        "downsample": "stride",
        "downsample_kernel_size": 3,
        "batch_norm": True,
        "dropout": 0.4,
        "block_dropout": True,
        "head_units": 128,
        "augment_rotation": 0.0,
        "augment_zoom": 0.0,
        "augment_shift": 0.0,
        "augment_elastic": 0.0,
        "elastic_sigma": 4.0,
        "schedule": "constant",
        "decay": 0.95,
        "label_smoothing": 0.0,
        "ema": 0.0,
        "clean_epochs": 0,
        "pseudo_label": 0.0,
        "steps_per_execution": 1,
        "early_stopping": 0,
        "keep_best": False,
        "deskew": False,
        "members": 1,
        "bag_share": 0.9,
        "bag_holdout": False,
        "first_member": 1,
        "last_member": 0,
        "tta": False,
    }
    assert values == {
        "hidden_units": (20, 15),
        "l2": 1e-2,
        "learning_rate": 1e-3,
        "batch_size": 128,
        "epochs": 50,
        "validation_split": 0.2,
        "scaling": "none",
        "folds": 1,
        "seed": 42,
        "plain": False,
    }
    assert PRESETS["wide"].hidden_units == (256, 128) and PRESETS["wide-ensemble"].folds == 5


def test_config_fields_are_the_table():
    assert [field.name for field in dataclasses.fields(Config)] == [setting.name for setting in SETTINGS]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().epochs = 3


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.name)
def test_every_setting_refuses_wrong_types_and_non_finite_numbers(setting: Setting):
    for value in WRONG_VALUES[setting.kind]:
        with pytest.raises(UserError, match=f"^{setting.name}"):
            Config(**{setting.name: value})


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.low is not None], ids=lambda setting: setting.name)
def test_every_bounded_setting_refuses_values_outside_its_range(setting: Setting):
    below = setting.low if setting.low_open else setting.low - 1
    value = [int(below)] if setting.kind is tuple else setting.kind(below)
    with pytest.raises(UserError, match=re.escape(setting.allowed())):
        Config(**{setting.name: value})
    if setting.high is not None:
        above = setting.high if setting.high_open else setting.high + 1
        value = [int(above)] if setting.kind is tuple else setting.kind(above)
        with pytest.raises(UserError, match=re.escape(setting.allowed())):
            Config(**{setting.name: value})


def test_range_messages_read_as_before():
    for changes, message in [
        ({"epochs": 0}, "epochs must be in 1..10000, got 0"),
        ({"seed": 2**32}, "seed must be in 0..4294967295, got 4294967296"),
        ({"validation_split": 1.0}, "validation_split must be in [0, 1), got 1.0"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0, got 0.0"),
        ({"l2": -1e-3}, "l2 must be >= 0, got -0.001"),
        ({"l2": math.nan}, "l2 must be a finite number, got nan"),
        ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
        ({"folds": True}, "folds must be an integer, got True"),
        ({"l2": "x"}, "l2 must be a number, got 'x'"),
    ]:
        with pytest.raises(UserError) as raised:
            Config(**changes)
        assert str(raised.value) == message


def test_values_are_stored_in_their_canonical_type():
    config = Config(l2=0, hidden_units=[64, 32], learning_rate=1)
    assert config.l2 == 0.0 and type(config.l2) is float and type(config.learning_rate) is float
    assert config.hidden_units == (64, 32)
    assert hash(config) == hash(Config(l2=0.0, hidden_units=(64, 32), learning_rate=1.0))


def test_replace_ignores_none_and_validates():
    assert Config().replace(epochs=None, folds=3).folds == 3
    with pytest.raises(UserError, match="epochs must be in 1..10000"):
        Config().replace(epochs=0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_from_dict_round_trips_every_preset(name):
    config = PRESETS[name]
    assert Config.from_dict(config.to_dict()) == config
    # As a JSON record stores it: lists, not tuples.
    assert Config.from_dict({**config.to_dict(), "hidden_units": list(config.hidden_units)}) == config


def test_from_dict_refuses_unknown_missing_and_wrong_values():
    record = Config().to_dict()
    with pytest.raises(UserError, match="unknown settings colour"):
        Config.from_dict({**record, "colour": "red"})
    with pytest.raises(UserError, match="missing settings epochs"):
        Config.from_dict({key: value for key, value in record.items() if key != "epochs"})
    with pytest.raises(UserError, match="epochs must be an integer"):
        Config.from_dict({**record, "epochs": "50"})
    with pytest.raises(UserError, match="must be a mapping"):
        Config.from_dict(["epochs", 50])


def test_flags_are_derived_from_the_table():
    assert parse() == PRESETS["tutorial"]
    assert parse("--preset", "wide", "--epochs", "3") == PRESETS["wide"].replace(epochs=3)
    assert parse("--hidden-units", "64,32,16", "--plain").hidden_units == (64, 32, 16)
    assert parse("--plain").plain and not parse("--plain", "--no-plain").plain
    assert parse("--scaling", "unit", "--l2", "0").l2 == 0.0
    # An out-of-range value is the parser's error, naming the flag.
    with pytest.raises(
        argparse.ArgumentError, match="argument --learning-rate: value must be a finite number, got inf"
    ):
        parse("--learning-rate", "inf")
    with pytest.raises(
        argparse.ArgumentError, match="argument --elastic-sigma: value must be in \\[0.5, 10\\], got 0.1"
    ):
        parse("--elastic-sigma", "0.1")


def test_help_shows_the_chosen_presets_values():
    tutorial = help_text()
    assert "hidden layer widths, in order; in 1..65536; only with --family dense (default: 20,15)" in tutorial
    assert "passes over the training rows; in 1..10000 (default: 50)" in tutorial
    for flags in (["--preset", "wide", "--help"], ["--help", "--preset=wide"]):
        wide = help_text(*flags)
        assert "hidden layer widths, in order; in 1..65536; only with --family dense (default: 256,128)" in wide
        assert "passes over the training rows; in 1..10000 (default: 30)" in wide
        assert "(default: unit)" in wide and "values of --preset wide" in wide
    assert "K-fold ensemble; 1 a single model; in 1..1000 (default: 5)" in help_text("--preset", "wide-ensemble")
    # A misspelt preset is the real parser's error to report; help falls back to the default's values.
    assert "(default: 20,15)" in help_text("--preset", "wider")


def test_split_leaves_training_and_held_out_rows():
    check_split(Config(), 80)
    with pytest.raises(UserError, match="validation_split 1e-17 leaves no held-out row of 80"):
        check_split(Config(validation_split=1e-17), 80)
    with pytest.raises(UserError, match="validation_split 0.99 leaves no training row of 80"):
        check_split(Config(validation_split=0.99), 80)
    check_split(Config(folds=5), 5)
    with pytest.raises(UserError, match="6 folds need at least 6 training rows, found 5"):
        check_split(Config(folds=6), 5)


def test_readme_settings_table_lists_exactly_the_flags_with_the_tutorials_defaults():
    readme = (REPO_ROOT / "docs" / "settings.md").read_text()
    section = readme.split("# Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (?:`-\w`, )?`(--[a-z0-9-]+)[^`]*` \| ([^|]+?) \|", section, flags=re.MULTILINE))
    flags = {option for action in build_parser([])._actions for option in action.option_strings}
    negations = {"--no-" + setting.flag[2:] for setting in SETTINGS if setting.kind is bool}
    assert set(rows) == {flag for flag in flags if flag.startswith("--") and flag not in {"--help", *negations}}
    defaults = Config()
    for setting in SETTINGS:
        shown = rows[setting.flag].strip("`")
        value = getattr(defaults, setting.name)
        if setting.kind is float:
            assert float(shown) == value, setting.flag
        else:
            assert shown == format_default(value), setting.flag


def test_readme_exit_codes_table_is_the_errors_table():
    readme = (REPO_ROOT / "docs" / "safety.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme.split("## Exit codes", 1)[1], flags=re.MULTILINE))
    assert {int(code): meaning for code, meaning in rows.items()} == EXIT_CODES


def test_a_config_stored_before_a_setting_existed_loads_with_that_settings_default(tmp_path):
    from src.core.config import stored_settings
    from src.pipeline.fan_out import STATE_FILE, load_state

    config = Config(members=3, seed=7)
    older = {name: value for name, value in config.to_dict().items() if name != "bag_share"}  # before schema 5
    with pytest.raises(UserError, match="missing settings bag_share"):
        Config.from_dict(older)
    assert Config.from_dict(stored_settings(older)) == config
    assert Config.from_dict(stored_settings(older, schema=4)) == config
    # A setting every schema had is never filled in: its absence is damage.
    with pytest.raises(UserError, match="missing settings seed"):
        Config.from_dict(stored_settings({name: value for name, value in older.items() if name != "seed"}))
    # A fan-out started before the setting existed resumes with the bags it was started with.
    state = {"config": older, "title": "Digit Recognizer", "gpu": False, "parts": []}
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    assert load_state(tmp_path).config == config


def test_unread_settings_are_those_no_part_of_the_run_reads():
    bag = PRESETS["cnn-bag"]
    # A CNN has no hidden layers or L2; a bag scored out-of-bag holds no rows out by --validation-split.
    assert {"hidden_units", "l2", "validation_split"} <= set(unread_settings(bag))
    assert not {"filters", "bag_share", "deskew", "members"} & set(unread_settings(bag))
    # The tutorial's dense network reads no CNN setting, and a single model no bag share.
    assert {"filters", "head_units", "bag_share"} <= set(unread_settings(PRESETS["tutorial"]))
    assert "hidden_units" not in unread_settings(PRESETS["tutorial"])
