"""A search's trials as a table and a figure, and the best settings as a `python -m src.submit` line.

Plain data in (`TrialSummary`), text and a PNG out: no Optuna and no TensorFlow here.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from src.core.config import PRESETS, SETTINGS, Config, flag_as_given, format_default, unmet_condition
from src.runs.reporting import save_figure

COMPLETE, PRUNED, FAILED, RUNNING = "complete", "pruned", "failed", "running"
FIGURE_NAME = "search.png"


@dataclass(frozen=True)
class TrialSummary:
    """One trial of a study, as the table and figure show it.

    Attributes:
        accuracy: A complete trial's validation accuracy; a pruned one's last reported epoch's.
        epochs: Epochs a pruned trial ran before it was stopped.
        params: The varied settings' values, as the trial drew them (a list setting's as its text).
        repeat_of: The earlier trial whose settings it drew again, and whose run or pruning it took without training.
    """

    number: int
    state: str
    accuracy: float | None
    seconds: float | None
    params: dict
    epochs: int | None = None
    repeat_of: int | None = None


def best_first(trials: list[TrialSummary]) -> list[TrialSummary]:
    """Complete trials by accuracy (ties: the earlier first), then pruned, failed and running ones by number."""
    order = {COMPLETE: 0, PRUNED: 1, FAILED: 2, RUNNING: 3}
    return sorted(trials, key=lambda t: (order[t.state], -(t.accuracy or 0) if t.state == COMPLETE else 0, t.number))


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return format_default(value)


def state_text(trial: TrialSummary) -> str:
    if trial.repeat_of is not None:
        return f"repeats {trial.repeat_of}"
    if trial.state == PRUNED:
        return f"pruned at epoch {trial.epochs}"
    return trial.state


def format_table(trials: list[TrialSummary], names: list[str]) -> str:
    """The trials, best first: number, accuracy, seconds, state and each varied setting."""
    header = ["trial", "accuracy", "seconds", "state", *names]
    rows = [
        [
            str(trial.number),
            "" if trial.accuracy is None else f"{trial.accuracy:.4f}",
            "" if trial.seconds is None else f"{trial.seconds:.1f}",
            state_text(trial),
            *(format_value(trial.params.get(name, "")) for name in names),
        ]
        for trial in best_first(trials)
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]]
    return "\n".join(lines)


def submit_line(preset: str, config: Config, data: Sequence[str] = ()) -> str:
    """`python -m src.submit --preset P` and the `data` flags the search read its rows with (`--sample`,
    `--data DIR`), with a flag for every setting where `config` differs from the preset.

    A setting `config` does not read (`--decay` where the best trial's schedule is constant) is left
    out: it changes nothing, and the command line would refuse it.
    """
    preset_config = PRESETS[preset]
    words = ["python", "-m", "src.submit", "--preset", preset, *data]
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        if value == getattr(preset_config, setting.name) or unmet_condition(config, setting.name):
            continue
        if setting.kind is bool:
            words.append(flag_as_given(setting, value))
        else:
            words += [setting.flag, format_value(value) if not isinstance(value, float) else repr(value)]
    return " ".join(shlex.quote(word) for word in words)


def draw_search(trials: list[TrialSummary], names: list[str], log_names: set[str], path: str | Path) -> Path:
    """`search.png`: accuracy per trial, and against each varied setting; pruned trials as crosses."""
    figure = Figure(figsize=(4.5 * (1 + len(names)), 3.6), layout="constrained")
    axes = figure.subplots(1, 1 + len(names), squeeze=False)[0]
    shown = [trial for trial in trials if trial.accuracy is not None]
    styles = {COMPLETE: dict(marker="o", color="tab:blue"), PRUNED: dict(marker="x", color="tab:gray")}
    for state, style in styles.items():
        points = [trial for trial in shown if trial.state == state]
        label = state if state == COMPLETE else "pruned (last epoch scored)"
        axes[0].scatter([t.number for t in points], [t.accuracy for t in points], label=label, **style)
        for ax, name in zip(axes[1:], names, strict=True):
            ax.scatter([axis_value(t.params.get(name)) for t in points], [t.accuracy for t in points], **style)
    axes[0].set(xlabel="trial", ylabel="validation accuracy", title="accuracy per trial")
    axes[0].legend(loc="best", fontsize=8)
    for ax, name in zip(axes[1:], names, strict=True):
        ax.set(xlabel=name, title=f"accuracy against {name}")
        # A log axis needs a point to place: none before a trial has finished.
        if name in log_names and shown:
            ax.set_xscale("log")
            # Matplotlib labels every minor tick of a range under a decade, and the labels run together.
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _, ax=ax: minor_log_label(value, ax.get_xlim())))
            ax.tick_params(axis="x", which="both", labelrotation=45, labelsize=8)
    return save_figure(figure, Path(path))


def minor_log_label(value: float, limits: tuple[float, float]) -> str:
    """A log axis's minor tick, labelled at 2 and 5 times a power of ten where the axis spans two decades or
    less; past that the decades' own labels say enough."""
    if math.log10(max(limits) / min(limits)) > 2:
        return ""
    leading = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(leading) in (2, 5) and math.isclose(leading, round(leading)) else ""


def axis_value(value):
    """A number stays a number; a choice (text) is placed by its text, as matplotlib places categories."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return str(value)
    return value
