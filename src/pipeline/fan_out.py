"""A bag or k-fold trained on several Kaggle machines at once: plan the parts, push them, wait, fetch, check, blend.

A bag of N members (or a k-fold of K folds) is cut into parts of consecutive
models; each part is its own kernel (`<title> part i of P`), built with
`first_member`/`last_member`, so it trains exactly the models the whole
ensemble would (`src.data.splits`: a model's seed and rows depend on its index
alone). Blending the parts' saved test probabilities, weighted by their model
counts, gives the ensemble's; their held-out probabilities, weighted by how
many of each part's models held each row out, give its out-of-bag (or
out-of-fold) accuracy.

`<kernel dir>/fan-out.json` (written atomically after every change) keeps each
part's kernel, version, state and fetched output, so running the command again
after a time-out or Ctrl-C pushes nothing that was pushed already and fetches
only what is new. NumPy only: no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.core.config import (
    N_CLASSES,
    Config,
    ensemble_kind,
    ensemble_size,
    held_out_name,
    read_differences,
    stored_settings,
)
from src.core.errors import KaggleJobFailedError, UserError
from src.core.files import atomic_write, write_json
from src.core.readers import read_json
from src.data.splits import split_rows
from src.data.submission import check_predictions
from src.kaggle import client, kernel_build
from src.kaggle.kernel_run import check_metadata, fetch_output, log_tail
from src.kaggle.polling import poll_interval, wait_until
from src.runs.folders import find_run_dirs, load_run
from src.runs.outputs import plan_outputs, write_pair
from src.runs.record import InputFile, Submission, command_line, created_now, package_versions
from src.training.evaluation import accuracy, predicted_labels

STATE_FILE = "fan-out.json"
STATE_VERSION = 1
POLL_SECONDS = 60.0  # parts train for an hour or more
# What a part is, from planned to blended; a failed part can be pushed again.
PLANNED, QUEUED, RUNNING, COMPLETE, FAILED, FETCHED = "planned", "queued", "running", "complete", "failed", "fetched"
WAITING = (QUEUED, RUNNING)
RECORD_KIND = "fan-out"


@dataclass
class Part:
    """One kernel of the fan-out: the bag members (or folds) it trains and where it stands."""

    number: int
    first_member: int
    last_member: int
    kernel_id: str
    version: int | None = None
    state: str = PLANNED
    output: str | None = None  # the fetched output folder
    failure: str = ""  # Kaggle's message, when it failed

    @property
    def folder_name(self) -> str:
        return f"part-{self.number}"

    def members(self) -> range:
        return range(self.first_member - 1, self.last_member)


@dataclass
class FanOut:
    """The plan and its progress, as `fan-out.json` keeps it."""

    config: Config
    title: str
    gpu: bool
    parts: list[Part]

    def to_dict(self) -> dict:
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "title": self.title,
            "gpu": self.gpu,
            "parts": [dataclasses.asdict(part) for part in self.parts],
        }


@dataclass(frozen=True)
class PartSource:
    """A part as the blend's record names it: its kernel and version, its members, its run and machine."""

    kernel_id: str
    version: int | None
    first_member: int
    last_member: int
    run_dir: str
    validation_accuracy: float | None
    machine: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FanOutRecord:
    """The record of a fan-out's blend: the ensemble's settings, each part, the out-of-bag (or -fold) accuracy."""

    kind: str
    created: str
    command: str
    versions: dict[str, str]
    config: dict
    test: InputFile
    parts: list[PartSource]
    missing_parts: list[int]
    validation_accuracy: float | None
    validation_rows: int
    submission: Submission

    def to_json(self, path: str | Path) -> Path:
        return write_json(path, dataclasses.asdict(self))


@dataclass
class PartRun:
    """A fetched part's run folder, checked: its arrays, record and machine."""

    part: Part
    run_dir: Path
    arrays: object
    record: object
    machine: dict


def check_plan(config: Config, n_parts: int) -> None:
    """Only a bag or k-fold can be cut into parts, each of one model or more; the parts are the command's to pick."""
    size = ensemble_size(config)
    if size < 2:
        raise UserError(
            "fan-out splits a bag's members or a k-fold's folds: give --members N or --folds K with N, K >= 2 "
            "(or --preset cnn-ensemble)"
        )
    if config.first_member != 1 or config.last_member != 0:
        raise UserError("fan-out picks each part's members or folds itself: drop --first-member and --last-member")
    if config.pseudo_label:
        raise UserError(
            "--pseudo-label labels the test images with the whole bag's first run, which no part has: "
            "add --pseudo-label 0 to fan it out"
        )
    if not 1 <= n_parts <= size:
        kind = ensemble_kind(config)
        raise UserError(f"--parts must be in 1..{size} (one {kind} per part at most), got {n_parts}")


def member_ranges(members: int, n_parts: int) -> list[tuple[int, int]]:
    """Consecutive, 1-based (first, last) members of each part, as even as they go; the larger parts first."""
    size, extra = divmod(members, n_parts)
    ranges, first = [], 1
    for number in range(n_parts):
        last = first + size + (number < extra) - 1
        ranges.append((first, last))
        first = last + 1
    return ranges


def part_title(title: str, number: int, n_parts: int) -> str:
    return f"{title} part {number} of {n_parts}"


def new_fan_out(config: Config, n_parts: int, username: str, title: str, gpu: bool) -> FanOut:
    parts = [
        Part(number, first, last, f"{username}/{kernel_build.slugify(part_title(title, number, n_parts))}")
        for number, (first, last) in enumerate(member_ranges(ensemble_size(config), n_parts), start=1)
    ]
    return FanOut(config, title, gpu, parts)


def part_config(config: Config, part: Part) -> Config:
    return dataclasses.replace(config, first_member=part.first_member, last_member=part.last_member)


def load_state(kernel_dir: Path) -> FanOut | None:
    """The fan-out kept in `kernel_dir`, or None when there is none; a damaged state file is refused."""
    path = kernel_dir / STATE_FILE
    if not path.exists():
        return None
    values = read_json(path, "fan-out state")
    try:
        config = Config.from_dict(stored_settings({**values["config"], **_tuples(values["config"])}))
        parts = [Part(**part) for part in values["parts"]]
        return FanOut(config, str(values["title"]), bool(values["gpu"]), parts)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"{path}: unreadable fan-out state ({type(error).__name__}); move it away to start a new fan-out"
        ) from None


def _tuples(config: dict) -> dict:
    """JSON keeps tuples as lists; the settings that are tuples get theirs back."""
    return {name: tuple(value) for name, value in config.items() if isinstance(value, list)}


def save_state(kernel_dir: Path, fan_out: FanOut) -> None:
    write_json(kernel_dir / STATE_FILE, fan_out.to_dict())


def resume_or_start(kernel_dir: Path, planned: FanOut) -> FanOut:
    """The fan-out already in `kernel_dir` when it is this one; a new one when there is none; else a refusal."""
    kept = load_state(kernel_dir)
    # A plan of which nothing was pushed yet (refused for its quota, say) is simply replaced.
    if kept is None or all(part.state == PLANNED for part in kept.parts):
        kernel_dir.mkdir(parents=True, exist_ok=True)
        save_state(kernel_dir, planned)
        return planned
    # A setting neither config reads (a flag now refused as unread) is no difference; the kept one stays.
    parts = [[(p.first_member, p.last_member, p.kernel_id) for p in fan_out.parts] for fan_out in (kept, planned)]
    if read_differences(kept.config, planned.config) or parts[0] != parts[1]:
        raise UserError(
            f"{kernel_dir / STATE_FILE}: holds a fan-out of other settings or parts; run it with the same "
            "settings to resume it, or give another --kernel-dir"
        )
    return kept


def build_part(kernel_dir: Path, fan_out: FanOut, part: Part) -> Path:
    """Write the part's kernel (script and metadata) into `kernel_dir/part-<i>/`; the folder."""
    folder = kernel_dir / part.folder_name
    title = part_title(fan_out.title, part.number, len(fan_out.parts))
    username = part.kernel_id.split("/", 1)[0]
    metadata = kernel_build.kernel_metadata(username, title, fan_out.gpu)
    script = kernel_build.build_script(part_config(fan_out.config, part), title)
    atomic_write(folder / kernel_build.CODE_FILE, lambda temporary: temporary.write_text(script, encoding="utf-8"))
    write_json(folder / kernel_build.METADATA_FILE, metadata)
    check_metadata(folder)
    return folder


def push_parts(kernel_dir: Path, fan_out: FanOut, retry_failed: bool) -> None:
    """Push every part not pushed yet (and, with `retry_failed`, every failed one); the state is saved after each."""
    for part in fan_out.parts:
        if part.state == PLANNED or (retry_failed and part.state == FAILED):
            pushed = client.push_kernel(build_part(kernel_dir, fan_out, part))
            part.version, part.state, part.output, part.failure = pushed.version, QUEUED, None, ""
            save_state(kernel_dir, fan_out)
            print(f"part {part.number}: pushed {part.kernel_id} version {pushed.version} ({pushed.url})", flush=True)
        elif part.state != PLANNED:
            print(f"part {part.number}: {part.kernel_id} version {part.version} already pushed ({part.state})")


def poll_parts(kernel_dir: Path, fan_out: FanOut) -> list[Part]:
    """Read the status of every part still queued or running; keep it; the parts still waiting."""
    for part in fan_out.parts:
        if part.state in WAITING:
            status = client.kernel_status(part.kernel_id)
            if status.finished:
                part.state = COMPLETE
            elif status.failed:
                part.state, part.failure = FAILED, status.failure_message or f"Kaggle says {status.state}"
            else:
                part.state = RUNNING if status.state == "running" else QUEUED
    save_state(kernel_dir, fan_out)
    return [part for part in fan_out.parts if part.state in WAITING]


def states_line(fan_out: FanOut) -> str:
    return " | ".join(f"part {part.number}/{len(fan_out.parts)} {part.state}" for part in fan_out.parts)


def wait_for_parts(kernel_dir: Path, fan_out: FanOut, timeout: float, resume: str) -> None:
    """Poll until no part is queued or running, one line per poll with every part's state."""
    try:
        wait_until(
            read=lambda: poll_parts(kernel_dir, fan_out),
            finished=lambda waiting: not waiting,
            describe=lambda waiting: states_line(fan_out),
            timeout=timeout,
            interval=poll_interval(POLL_SECONDS),
            timeout_message=(
                f"not every part finished within {timeout:g} s ({states_line(fan_out)}); they keep running on "
                f"Kaggle: run again to resume ({resume}); finished parts are kept and nothing is pushed again"
            ),
        )
    except KeyboardInterrupt as interruption:  # its kind kept: SIGTERM, a closed output end with their own codes
        raise type(interruption)(f"the parts keep running on Kaggle; resume with: {resume}") from None
    print(states_line(fan_out), flush=True)


def fetch_parts(kernel_dir: Path, fan_out: FanOut) -> None:
    """Fetch the output of every finished part not fetched yet; say why each failed one failed."""
    for part in fan_out.parts:
        if part.state in (COMPLETE, FAILED) and part.output is None:
            part.output = str(fetch_output(part.kernel_id, kernel_dir / part.folder_name))
            if part.state == COMPLETE:
                part.state = FETCHED
            save_state(kernel_dir, fan_out)
        if part.state == FAILED:
            print(f"part {part.number}: {part.kernel_id} version {part.version} failed: {part.failure}")
            tail = log_tail(Path(part.output)) if part.output else []
            for line in tail:
                print(f"  {line}")


def check_part(fan_out: FanOut, part: Part) -> PartRun:
    """The part's run folder, refused in one line when missing, damaged or made by other settings."""
    output = Path(part.output or "")
    found, incomplete = find_run_dirs([output / "runs"]) if (output / "runs").is_dir() else ([], [])
    runs = [path for path in found if path != output / "runs"]
    if len(runs) != 1:
        raise UserError(
            f"part {part.number} ({part.kernel_id} version {part.version}): its output {output} holds "
            f"{len(runs)} finished run folders (and {len(incomplete)} incomplete), expected 1; "
            "push it again with --retry-failed"
        )
    try:
        arrays, record = load_run(runs[0])
    except UserError as error:
        raise UserError(f"part {part.number} ({part.kernel_id}): damaged output: {error}") from None
    expected = part_config(fan_out.config, part)
    if record.config != expected:
        changed = [name for name, value in expected.to_dict().items() if getattr(record.config, name) != value]
        raise UserError(
            f"part {part.number} ({part.kernel_id}): its run was made with other settings "
            f"({', '.join(changed)} differ from this fan-out's); it is not blended"
        )
    check_held_out_rows(part, runs[0], arrays, fan_out.config)
    return PartRun(part, runs[0], arrays, record, record.machine or {})


def check_held_out_rows(part: Part, run_dir: Path, arrays, config: Config) -> None:
    """The rows the part held out are those its models' seeds (or folds) give: the part is those models."""
    held_out = held_out_rows(config, arrays.train_labels)
    expected = np.unique(np.concatenate([held_out[index] for index in part.members()]))
    if not np.array_equal(expected, np.sort(arrays.validation_rows)):
        raise UserError(
            f"part {part.number} ({part.kernel_id}): {run_dir} held out other rows than {ensemble_kind(config)}s "
            f"{part.first_member}-{part.last_member} of this {ensemble_name(config)} would; it is not blended"
        )


def held_out_rows(config: Config, labels: np.ndarray) -> list[np.ndarray]:
    """The rows each model (0-based) of the whole bag or k-fold holds out."""
    return [rows for _, rows in split_rows(config, labels)]


def ensemble_name(config: Config) -> str:
    return "bag" if config.members > 1 else "k-fold"


def check_same_data(runs: list[PartRun]) -> None:
    """Every part trained on the same train.csv and predicted the same test.csv."""
    first = runs[0].record.inputs
    for run in runs[1:]:
        inputs = run.record.inputs
        if (inputs.train.sha256, inputs.test.sha256) != (first.train.sha256, first.test.sha256):
            raise UserError(
                f"part {run.part.number} ({run.part.kernel_id}) trained or predicted other files than "
                f"part {runs[0].part.number}; a fan-out's parts must share the data"
            )


def blend_parts(runs: list[PartRun], config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ensemble's test probabilities, and its out-of-bag (or out-of-fold) rows and probabilities, from its parts.

    A part's test probabilities are its models' mean: weighted by its model
    count they sum to the whole ensemble's mean. A part's held-out probability of
    a row is the mean over its models that held the row out: weighted by their
    number, the parts give the mean over every model that held it out (in a
    k-fold, the one fold that did).
    """
    sizes = np.asarray([len(run.part.members()) for run in runs], dtype=np.float64)
    stacked = np.stack([run.arrays.test_probabilities.astype(np.float64) for run in runs])
    test = np.tensordot(sizes / sizes.sum(), stacked, axes=1).astype(np.float32)
    labels = runs[0].arrays.train_labels
    held_out = held_out_rows(config, labels)
    n_rows = len(labels)
    sums = np.zeros((n_rows, N_CLASSES), np.float64)
    counts = np.zeros(n_rows, np.int64)
    for run in runs:
        holders = np.zeros(n_rows, np.int64)
        for index in run.part.members():
            holders[held_out[index]] += 1
        rows = run.arrays.validation_rows
        sums[rows] += holders[rows, None] * run.arrays.validation_probabilities.astype(np.float64)
        counts[rows] += holders[rows]
    rows = np.flatnonzero(counts)
    return test, rows, (sums[rows] / counts[rows, None]).astype(np.float32)


def blend_into(out: Path, fan_out: FanOut, runs: list[PartRun]) -> FanOutRecord:
    """Write the blended submission and its record to `out`, as one unit."""
    check_same_data(runs)
    records = [run.record for run in runs]
    plan = plan_outputs(out, [path for record in records for path in record.inputs.paths()])
    test, rows, held_out = blend_parts(runs, fan_out.config)
    check_predictions(test)
    labels = runs[0].arrays.train_labels
    oob = accuracy(labels[rows], held_out) if len(rows) else None
    present = {run.part.number for run in runs}
    sources = [
        PartSource(
            run.part.kernel_id,
            run.part.version,
            run.part.first_member,
            run.part.last_member,
            str(run.run_dir),
            run.record.validation.accuracy,
            run.machine,
        )
        for run in runs
    ]

    def make_record(submission: Submission) -> FanOutRecord:
        return FanOutRecord(
            kind=RECORD_KIND,
            created=created_now(),
            command=command_line(),
            versions=package_versions(),
            config=fan_out.config.to_dict(),
            test=records[0].inputs.test,
            parts=sources,
            missing_parts=[part.number for part in fan_out.parts if part.number not in present],
            validation_accuracy=oob,
            validation_rows=len(rows),
            submission=submission,
        )

    return write_pair(plan, predicted_labels(test), make_record)


def machine_lines(fan_out: FanOut, runs: list[PartRun]) -> list[str]:
    """Per part, what it ran on; a warning where that is not what its metadata asked for."""
    lines = []
    for run in runs:
        machine = run.machine
        if not machine:
            lines.append(f"part {run.part.number}: its kernel did not say what it ran on")
            continue
        gpus = machine.get("gpus") or []
        names = ", ".join(sorted({str(gpu) for gpu in gpus})) or "no GPU"
        lines.append(
            f"part {run.part.number}: {len(gpus)} GPU(s) ({names}), {machine.get('cpus')} CPUs, "
            f"TensorFlow {machine.get('versions', {}).get('tensorflow', '?')}"
        )
        if fan_out.gpu and not gpus:
            lines.append(f"warning: part {run.part.number} asked for a GPU (enable_gpu) but TensorFlow saw none")
        if not fan_out.gpu and gpus:
            lines.append(f"warning: part {run.part.number} ran on a GPU its metadata did not ask for")
    return lines


# Quota: what a GPU plan costs. Measured: one cnn-ensemble member took about 68 minutes on 2 CPU cores
# (docs/presets.md). Assumed, not measured: Kaggle's GPU trains it GPU_SPEEDUP times faster.
MEMBER_CPU_MINUTES = 68.0
GPU_SPEEDUP = 8.0
REFERENCE_PRESET_EPOCHS = 45  # the epochs of the measured member (cnn-ensemble's)
STARTUP_HOURS = 0.1  # a kernel's queue, start, data load and predictions, per part


def part_hours(config: Config, members: int) -> float:
    """Estimated GPU hours of a part training `members` members: the measured member, scaled by epochs."""
    minutes = MEMBER_CPU_MINUTES / GPU_SPEEDUP * config.epochs / REFERENCE_PRESET_EPOCHS
    return members * minutes / 60 + STARTUP_HOURS


def needs_line(fan_out: FanOut, to_push: list[Part]) -> str | None:
    """What the GPU parts about to be pushed need, in words; None when none needs a GPU."""
    if not fan_out.gpu or not to_push:
        return None
    hours = [part_hours(fan_out.config, len(part.members())) for part in to_push]
    return (
        f"GPU quota: {len(to_push)} part(s) x about {max(hours):.2f} h = about {sum(hours):.2f} GPU hours "
        f"(assumed: a member takes {MEMBER_CPU_MINUTES:g} CPU minutes at 45 epochs and a GPU is "
        f"{GPU_SPEEDUP:g}x faster; parts run at once, so each counts)"
    )


def quota_line(fan_out: FanOut, to_push: list[Part]) -> str:
    """The account's remaining GPU hours, in words.

    Raises:
        UserError: The plan needs more than is left, with what to change.
    """
    needed = sum(part_hours(fan_out.config, len(part.members())) for part in to_push)
    quota = client.gpu_quota()
    if quota is None:
        return "Kaggle did not say how much GPU quota is left: check https://www.kaggle.com/settings"
    if needed > quota.remaining_hours:
        raise UserError(
            f"the plan needs about {needed:.2f} GPU hours but {quota.remaining_hours:.2f} are left this week "
            f"(refreshed {quota.refresh}): use fewer --members or --epochs, --no-gpu, or wait for the refresh"
        )
    return f"GPU quota left this week: {quota.remaining_hours:.2f} of {quota.total_hours:.2f} h"


def run(
    config: Config,
    n_parts: int,
    username: str,
    title: str,
    gpu: bool,
    kernel_dir: Path,
    out: Path,
    timeout: float,
    retry_failed: bool,
    partial: bool,
    resume: str,
) -> tuple[Path | None, FanOutRecord | None]:
    """Push the parts not pushed yet, wait, fetch, check and blend; the submission and its record.

    Raises:
        KaggleJobFailedError: A part failed or its output was refused, and `partial` was not given.
        KaggleTimeoutError: Some part still ran after `timeout` seconds.
    """
    check_plan(config, n_parts)
    # Before any kernel is pushed: a refusal after hours of waiting would come late. Checked again, with
    # the parts' inputs, when the blend is written.
    plan_outputs(out)
    fan_out = resume_or_start(kernel_dir, new_fan_out(config, n_parts, username, title, gpu))
    to_push = [part for part in fan_out.parts if part.state == PLANNED or (retry_failed and part.state == FAILED)]
    needs = needs_line(fan_out, to_push)
    if needs is not None:
        print(needs, flush=True)
        print(quota_line(fan_out, to_push), flush=True)
    push_parts(kernel_dir, fan_out, retry_failed)
    wait_for_parts(kernel_dir, fan_out, timeout, resume)
    fetch_parts(kernel_dir, fan_out)
    runs, refused = [], []
    for part in fan_out.parts:
        if part.state != FETCHED:
            refused.append(f"part {part.number} failed: {part.failure}")
            continue
        try:
            runs.append(check_part(fan_out, part))
        except UserError as error:
            print(f"refused: {error}", flush=True)
            refused.append(str(error))
    for line in machine_lines(fan_out, runs):
        print(line)
    if refused and not (partial and runs):
        raise KaggleJobFailedError(
            f"{len(refused)} of {len(fan_out.parts)} parts cannot be blended ({refused[0]}); nothing was written: "
            "push them again with --retry-failed, or blend the others with --partial"
        )
    record = blend_into(out, fan_out, runs)
    return out, record


def summary_lines(record: FanOutRecord, out: Path) -> list[str]:
    config = Config.from_dict({**record.config, **_tuples(record.config)})
    kind = ensemble_kind(config)
    trained = sum(part.last_member - part.first_member + 1 for part in record.parts)
    accuracy_text = "none" if record.validation_accuracy is None else f"{record.validation_accuracy:.4f}"
    lines = [
        f"blend of {len(record.parts)} parts ({trained} of {ensemble_size(config)} {kind}s): "
        f"{held_out_name(config)} accuracy {accuracy_text} on {record.validation_rows} rows"
    ]
    lines += [
        f"  part {kind}s {part.first_member}-{part.last_member}: {part.kernel_id} version {part.version}"
        for part in record.parts
    ]
    if record.missing_parts:
        lines.append(f"warning: parts {', '.join(map(str, record.missing_parts))} are missing (--partial)")
    lines.append(f"wrote {out} (record: {out.with_suffix('.json')})")
    return lines
