"""The evaluation report of a run: figures, the per-class table and one HTML page.

Everything here is drawn from a run folder (see `src/runs.py`), never from a
model, so it needs only NumPy, Matplotlib and scikit-learn. The pipeline calls
`make_report` after a run; `python -m src.report` (src/report.py) redraws or
compares run folders.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from src.core.config import IMAGE_SIDE, N_CLASSES, held_out_name, unread_settings
from src.core.files import atomic_write
from src.runs.folders import RunArrays, load_run, read_run_record
from src.runs.record import RunRecord
from src.training.evaluation import (
    AVERAGES,
    CLASS_NAMES,
    DIGITS,
    ClassScores,
    accuracy_text,
    confusion_counts,
    predicted_labels,
)

FIGURE_DPI = 100
LEARNING_CURVES_PNG = "learning_curves.png"
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
MISTAKES_PNG = "confident_mistakes.png"
GALLERY_PNG = "test_gallery.png"
REPORT_HTML = "report.html"
NOT_READ = "-"  # `--compare`'s value for a setting a run does not read
GRID_COLUMNS = 6
# A digit grid's white space, in the digits' own pixels: around each digit, and a line of its title.
TILE_GAP = 6
TITLE_LINE = 5
# From this many members on, the learning curves show their mean and range, not one line each.
BAND_MEMBERS = 4

# What each figure shows and how to read it; the HTML report prints these under them.
FIGURE_CAPTIONS = {
    LEARNING_CURVES_PNG: (
        "Loss (log scale, so the first epoch does not flatten the rest) and accuracy per epoch, on the "
        "training rows (solid) and the held-out rows (dashed): one colour per model (fold), or with "
        f"{BAND_MEMBERS} or more models their mean (training blue, validation orange) and, shaded, their "
        "range. Validation flattening while training keeps improving means more epochs will not help; "
        "validation getting worse means overfitting."
    ),
    CONFUSION_MATRIX_PNG: (
        "Rows are the true digit, columns the predicted one; each cell counts held-out rows. The "
        "diagonal (blue, shaded by recall) holds the correct predictions; off the diagonal, the "
        "darker the red, the more often that true digit was taken for that predicted one: the "
        "model's systematic confusions."
    ),
    MISTAKES_PNG: (
        "The held-out digits the model got wrong with the highest confidence: the row of train.csv "
        "(0-based, after the header; pandas' index), true label, predicted label and the predicted "
        "probability. Mislabelled or badly written digits show up here; "
        "confident mistakes on clean digits show what the model cannot yet see."
    ),
    GALLERY_PNG: (
        "A fixed random sample of test images with the predicted digit and its probability, and the "
        "share of each predicted digit over the whole test set next to the training labels' share. "
        "The two should be close; a digit far off its training share hints at a broken run."
    ),
}


def plot_learning_curves(histories: list[dict[str, list[float]]], path: Path) -> Path:
    """Training and validation loss and accuracy per epoch: a line per member, or their mean and range."""
    figure = Figure(figsize=(11, 4.2), dpi=FIGURE_DPI, layout="constrained")
    banded = len(histories) >= BAND_MEMBERS
    colors = [f"C{index % 10}" for index in range(len(histories))]
    # With bands, colour tells training from validation; with lines, it tells the members apart.
    series = (("", "-", "C0"), ("val_", "--", "C1"))
    for axes, metric, title in zip(figure.subplots(1, 2), ("loss", "accuracy"), ("Loss", "Accuracy"), strict=True):
        for prefix, linestyle, band_color in series:
            if not all(f"{prefix}{metric}" in history for history in histories):
                continue
            values = np.array([history[f"{prefix}{metric}"] for history in histories], dtype=float)
            epochs = np.arange(1, values.shape[1] + 1)
            if banded:
                axes.plot(epochs, values.mean(axis=0), color=band_color, linestyle=linestyle)
                axes.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=band_color, alpha=0.2)
            else:
                for member_values, color in zip(values, colors, strict=True):
                    axes.plot(epochs, member_values, color=color, linestyle=linestyle)
        # The first epoch's loss can be many times the last: a log scale keeps the rest readable.
        if metric == "loss" and all(value > 0 for history in histories for value in history[metric]):
            axes.set_yscale("log")
        axes.set(title=f"{title} per epoch", xlabel="epoch", ylabel=metric)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    names = ["training", "validation"]
    if banded:
        handles = [Line2D([], [], color=color, linestyle=linestyle) for _, linestyle, color in series]
        handles.append(Patch(color="grey", alpha=0.3))
        names.append(f"range over {len(histories)} folds")
    else:
        handles = [Line2D([], [], color="black", linestyle=linestyle) for _, linestyle, _ in series]
    if not banded and len(histories) > 1:
        handles += [Line2D([], [], color=color, linewidth=4) for color in colors]
        names += [f"fold {index}" for index in range(1, len(histories) + 1)]
    figure.legend(handles, names, loc="outside right center")
    suffix = f" ({len(histories)} folds{', mean and range' if banded else ''})" if len(histories) > 1 else ""
    figure.suptitle(f"Learning curves{suffix}")
    return save_figure(figure, path)


def plot_confusion_matrix(labels: np.ndarray, predicted: np.ndarray, path: Path) -> Path:
    """Counts of (true, predicted) digits; mistakes shaded on their own scale so they stand out."""
    counts = confusion_counts(labels, predicted)
    recall = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    is_diagonal = np.eye(N_CLASSES, dtype=bool)
    mistakes = np.where(is_diagonal, 0, counts)
    most_mistakes = max(int(mistakes.max()), 1)
    figure = Figure(figsize=(7.5, 6.5), dpi=FIGURE_DPI, layout="constrained")
    axes = figure.subplots()
    # Correct predictions dwarf the mistakes, so they get separate colour scales: one shared
    # scale would leave every off-diagonal cell white on a good model.
    shown = axes.imshow(np.ma.masked_where(is_diagonal, mistakes), cmap="Reds", vmin=0, vmax=most_mistakes)
    axes.imshow(np.ma.masked_where(~is_diagonal, np.diag(recall)), cmap="Blues", vmin=0, vmax=1)
    for true_digit in DIGITS:
        for predicted_digit in DIGITS:
            count = counts[true_digit, predicted_digit]
            if true_digit == predicted_digit:
                dark = recall[true_digit] > 0.5
            else:
                dark = count > 0.6 * most_mistakes
            if count:
                color = "white" if dark else "black"
                axes.text(predicted_digit, true_digit, str(count), ha="center", va="center", fontsize=9, color=color)
    axes.set(xticks=DIGITS, yticks=DIGITS, xlabel="predicted digit", ylabel="true digit")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    axes.set_title(f"Confusion matrix: {counts.sum()} held-out rows, accuracy {accuracy:.4f}")
    figure.colorbar(shown, ax=axes, label="wrong predictions (off-diagonal cells)")
    return save_figure(figure, path)


def plot_confident_mistakes(arrays: RunArrays, path: Path) -> Path:
    """The saved most-confident mistakes, each titled true / predicted / probability."""
    probabilities = arrays.validation_probabilities[arrays.mistake_positions]
    true_labels = arrays.validation_labels[arrays.mistake_positions]
    n_wrong = int(np.sum(predicted_labels(arrays.validation_probabilities) != arrays.validation_labels))
    titles = [
        f"row {row}: true {label}\npred {predicted} (p = {p.max():.3f})"
        for row, label, predicted, p in zip(
            arrays.mistake_rows, true_labels, predicted_labels(probabilities), probabilities, strict=True
        )
    ]
    figure = Figure(figsize=(9, 1.75 * _grid_rows(len(titles)) + 0.6), dpi=FIGURE_DPI, layout="constrained")
    _draw_digit_grid(figure, arrays.mistake_images, titles)
    figure.suptitle(
        f"Most confident mistakes: {len(titles)} of {n_wrong} wrong among {len(arrays.validation_labels)} held-out rows"
    )
    return save_figure(figure, path)


def plot_test_gallery(arrays: RunArrays, path: Path) -> Path:
    """A sample of test images with their predictions, and the predicted vs training class shares."""
    sample = arrays.test_probabilities[arrays.gallery_rows]
    titles = [
        f"#{row + 1}: {digit} ({p.max():.2f})"
        for row, digit, p in zip(arrays.gallery_rows, predicted_labels(sample), sample, strict=True)
    ]
    figure = Figure(figsize=(15, 1.6 * _grid_rows(len(titles)) + 0.8), dpi=FIGURE_DPI, layout="constrained")
    gallery, distribution = figure.subfigures(1, 2, width_ratios=[1.25, 1])
    _draw_digit_grid(gallery, arrays.gallery_images, titles)
    gallery.suptitle(f"{len(titles)} random test images, #ImageId: predicted digit (probability)")

    n_test = len(arrays.test_probabilities)
    predicted_share = np.bincount(predicted_labels(arrays.test_probabilities), minlength=N_CLASSES) / max(n_test, 1)
    train_share = np.bincount(arrays.train_labels, minlength=N_CLASSES) / max(len(arrays.train_labels), 1)
    axes = distribution.subplots()
    width = 0.4
    axes.bar(np.array(DIGITS) - width / 2, train_share, width, label=f"training labels ({len(arrays.train_labels)})")
    axes.bar(np.array(DIGITS) + width / 2, predicted_share, width, label=f"test predictions ({n_test})")
    axes.set(xticks=DIGITS, xlabel="digit", ylabel="share of rows", title="Predicted test digits vs training labels")
    axes.set_ylim(0, 1.25 * max(predicted_share.max(), train_share.max()))
    axes.legend(loc="upper center", ncols=2)
    axes.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


def make_report(run_dir: str | Path) -> Path:
    """Draw every figure of the run in `run_dir` and write its `report.html`; returns that path."""
    run_dir = Path(run_dir)
    arrays, record = load_run(run_dir)
    predicted = predicted_labels(arrays.validation_probabilities)
    figures = [plot_learning_curves(arrays.histories, run_dir / LEARNING_CURVES_PNG)]
    # After --validation-split 0 no row was held out: nothing to tell right from wrong on.
    if len(arrays.validation_labels):
        figures += [
            plot_confusion_matrix(arrays.validation_labels, predicted, run_dir / CONFUSION_MATRIX_PNG),
            plot_confident_mistakes(arrays, run_dir / MISTAKES_PNG),
        ]
    figures.append(plot_test_gallery(arrays, run_dir / GALLERY_PNG))
    page = report_html(run_dir.name, record, figures)
    return atomic_write(run_dir / REPORT_HTML, lambda temporary: temporary.write_text(page, encoding="utf-8"))


def report_html(title: str, record: RunRecord, figures: list[Path]) -> str:
    """One self-contained page: summary, config, timings, members, per-class table, figures."""
    validation = record.validation
    summary = {
        "created": record.created,
        "command": record.command,
        "data": record.inputs.describe(),
        "validation": validation.scheme,
        "validation accuracy": accuracy_text(validation.accuracy),
        "labelled rows": record.inputs.train.rows,
        "test rows": record.inputs.test.rows,
        "submission": record.submission.path,
        "submission sha256": record.submission.sha256,
    }
    # The network's cost, where the record keeps it (older records do not).
    cost = {"parameters per model": record.parameters, "multiply-adds per image": record.multiply_adds}
    summary.update({name: f"{value:,}" for name, value in cost.items() if value is not None})
    if record.pseudo_labels is not None:
        summary["pseudo-labelled test images in the training rows"] = f"{record.pseudo_labels:,}"
    if record.images_per_second:
        summary["training images per second (last epoch)"] = f"{record.images_per_second[-1]:,.0f}"
    sections = [
        f"<h1>Run {html.escape(title)}</h1>",
        _html_pairs(summary),
        "<h2>Config</h2>",
        _html_pairs(_read_config(record.config)),
        "<h2>Timings (seconds)</h2>",
        _html_pairs(dataclasses.asdict(record.timings)),
        "<h2>Models</h2>",
        _members_table(validation),
    ]
    if validation.per_class:
        sections += [
            f"<h2>Per class ({held_out_name(record.config)} rows)</h2>",
            _html_table(["digit", "precision", "recall", "f1-score", "support"], _per_class_rows(validation)),
        ]
    for path in figures:
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        sections += [
            f"<h2>{html.escape(path.stem.replace('_', ' ').capitalize())}</h2>",
            f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{encoded}">',
            f"<p>{html.escape(FIGURE_CAPTIONS.get(path.name, ''))}</p>",
        ]
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "th{background:#eee}img{max-width:100%}p{max-width:60em}"
    )
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{style}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _read_config(config) -> dict:
    """The settings the run read, then the names of those it held but did not read, so as not to mislead."""
    unread = unread_settings(config)
    values = {name: value for name, value in config.to_dict().items() if name not in unread}
    if unread:
        values["not read by this run"] = ", ".join(unread)
    return values


def compare_runs(run_dirs: list[str | Path]) -> str:
    """A text table of runs side by side: their data, every setting that differs, accuracy and seconds."""
    names = [Path(run_dir).name for run_dir in run_dirs]
    records = [read_run_record(run_dir) for run_dir in run_dirs]
    configs = [_compared_settings(record.config) for record in records]
    rows = [["data", *[record.inputs.describe() for record in records]]]
    if any(record.search for record in records):
        rows.append(["search", *[_search_text(record.search) for record in records]])
    rows += _differing_rows(configs) or [["config", *["same" for _ in records]]]
    rows += _differing_rows([record.versions for record in records])
    rows += [
        ["validation", *[record.validation.scheme for record in records]],
        ["validation accuracy", *[accuracy_text(record.validation.accuracy) for record in records]],
        ["train seconds", *[f"{record.timings.train:.1f}" for record in records]],
        ["total seconds", *[f"{record.timings.total:.1f}" for record in records]],
    ]
    return _text_table(["", *names], rows)


def _compared_settings(config) -> dict:
    """Its settings, each it does not read as "-": a dense run's `filters` differ from no CNN's."""
    unread = set(unread_settings(config))
    return {name: NOT_READ if name in unread else value for name, value in config.to_dict().items()}


def _search_text(search) -> str:
    """Which study and trial a run was, or that it was none: a study's run folders are named by time alone."""
    if search is None:
        return "-"
    confirmed = ", a confirmation" if search.confirmation else ""
    return f"{search.study} trial {search.trial}{confirmed}"


def _differing_rows(dictionaries: list[dict]) -> list[list[str]]:
    """A row per key whose value is not the same in every dictionary."""
    keys = list(dict.fromkeys(key for values in dictionaries for key in values))
    return [
        [key, *[_format_value(values.get(key)) for values in dictionaries]]
        for key in keys
        if len({repr(values.get(key)) for values in dictionaries}) > 1
    ]


def _members_table(validation) -> str:
    """One row per model; models trained together share one time, given once instead of split."""
    header = ["model", "held-out rows", "accuracy"]
    rows = [
        [str(index), str(member.validation_rows), accuracy_text(member.validation_accuracy)]
        for index, member in enumerate(validation.members, start=1)
    ]
    if validation.members_trained_together:
        seconds = validation.members[0].seconds
        note = f"<p>The {len(rows)} models were trained together, in one compiled loop: {seconds:.1f} s in all.</p>"
        return _html_table(header, rows) + note
    for row, member in zip(rows, validation.members, strict=True):
        row.append(f"{member.seconds:.1f}")
    return _html_table([*header, "seconds"], rows)


def _per_class_rows(validation) -> list[list[str]]:
    scores: dict[str, ClassScores] = validation.per_class
    rows = []
    for name in CLASS_NAMES:
        if name == next(iter(AVERAGES)):
            total = scores[name].support
            rows.append(["accuracy", "", "", f"{validation.accuracy:.4f}", str(total)])
        row = scores[name]
        rows.append([name, *[f"{value:.4f}" for value in (row.precision, row.recall, row.f1)], str(row.support)])
    return rows


def _grid_rows(count: int) -> int:
    return max(1, -(-count // GRID_COLUMNS))


def digit_montage(images: np.ndarray, title_lines: int) -> np.ndarray:
    """The 784-pixel `images` laid out as one picture, `GRID_COLUMNS` to a row, each tile with
    `TILE_GAP` pixels of white around it and `title_lines` bands of `TITLE_LINE` pixels above it."""
    tile_height, tile_width = _tile_size(title_lines)
    montage = np.zeros((_grid_rows(len(images)) * tile_height, GRID_COLUMNS * tile_width), dtype=np.uint8)
    for index, image in enumerate(images):
        top, left = _tile_corner(index, title_lines)
        montage[top : top + IMAGE_SIDE, left : left + IMAGE_SIDE] = image.reshape(IMAGE_SIDE, IMAGE_SIDE)
    return montage


def _tile_size(title_lines: int) -> tuple[int, int]:
    """A montage tile's height and width: the digit, its white space and its title's lines."""
    return IMAGE_SIDE + TILE_GAP + TITLE_LINE * title_lines, IMAGE_SIDE + TILE_GAP


def _tile_corner(index: int, title_lines: int) -> tuple[int, int]:
    """The montage's row and column of the top left pixel of digit `index`."""
    row, column = divmod(index, GRID_COLUMNS)
    tile_height, tile_width = _tile_size(title_lines)
    return row * tile_height + TITLE_LINE * title_lines + TILE_GAP // 2, column * tile_width + TILE_GAP // 2


def _draw_digit_grid(figure, images: np.ndarray, titles: list[str]) -> None:
    """Draw 28x28 digits in rows of `GRID_COLUMNS`, each with its title; a note if there are none.

    The digits are one image on one Axes: with an Axes per digit, laying out and drawing the two
    digit grids took most of the report's time (about a second on 2 CPU cores).
    """
    axes = figure.subplots()
    axes.set_axis_off()
    if not len(images):
        axes.text(0.5, 0.5, "none", ha="center", va="center", fontsize=14)
        return
    title_lines = max(title.count("\n") + 1 for title in titles)
    axes.imshow(digit_montage(images, title_lines), cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    for index, title in enumerate(titles):
        top, left = _tile_corner(index, title_lines)
        axes.text(left + IMAGE_SIDE / 2 - 0.5, top - 1.5, title, ha="center", va="bottom", fontsize=9)


def save_figure(figure: Figure, path: Path) -> Path:
    """Render `figure` with the Agg backend (headless) and write it as a PNG, atomically."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    return atomic_write(path, lambda temporary: temporary.write_bytes(data))


def _html_pairs(values: dict) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_format_value(value))}</td></tr>"
        for key, value in values.items()
    )
    return f"<table>{rows}</table>"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[column])) for row in [header, *rows]) for column in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _format_value(value) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)
