"""Where a run writes, checked before training, and the submission and its record written as one unit.

A run writes three things beside each other: the submission (`--out`), its
record (the same name with `.json`) and a new run folder under `runs/`.
`plan_outputs` checks them all before training starts and refuses, as a
`UserError`, any that would replace an input file (by name, through a symbolic
link or as a hard link: the same device and inode), replace a file that is not
a submission (or a record that is not a run's record), land on a folder or a
device, replace a read-only file, or go where nothing can be written or too
little room is left. A `--out` that is a symbolic link is followed: the link is
kept and the file it points to is replaced; the record and the run folder go
beside that file.

`prepared_pair` then writes the pair as one unit. Both files are first written
to temporary files beside their targets and checked (the record names the
submission's sha256), and only then renamed into place, record first:

    (old submission, old record)  ->  (old submission, new record)  ->  (new submission, new record)

The two renames run with SIGINT and SIGTERM deferred, so Ctrl-C or SIGTERM
takes effect before the first rename or after the second. If the second rename
fails, the old record is put back. Only a hard kill or a power cut between the
two renames can leave the middle state, an old submission beside a new record,
and `check_pair` tells it (the record's sha256 is not the submission's). A new
submission beside an old record never exists. Whatever ends the run before
the renames, the temporary files are removed and the previous pair is as it was.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from src.core.errors import UserError
from src.core.files import current_umask, sha256, signals_deferred
from src.core.paths import DEFAULT_DATA_DIR, RECORD_SUFFIX, RUN_RECORD_NAME, RUNS_FOLDER, record_path_for
from src.core.readers import read_json
from src.data.competition import COMPETITION_FILES, SUBMISSION_HEADER
from src.data.submission import starts_as_a_submission

# A record is a few kilobytes; this is room to spare.
RECORD_BYTES = 64 * 1024
# `ImageId,Label` plus a line end; each row holds the id, a comma, one digit and a line end.
HEADER_BYTES = 14
ROW_OVERHEAD_BYTES = 3
SUBMISSION_HEADER_LINE = ",".join(SUBMISSION_HEADER)
# A header line, however quoted or spaced, is far shorter; what is longer is no submission's.
FIRST_LINE_BYTES = 256
# Tests only: `DIGIT_RECOGNIZER_PAUSE_AT=<point>` stops the process (SIGSTOP) at that point of a run,
# so a test can send it a signal exactly there; see `pause_point`.
PAUSE_VARIABLE = "DIGIT_RECOGNIZER_PAUSE_AT"


@dataclass(frozen=True)
class OutputPlan:
    """Where a run writes: the submission, its record beside it, and the run folders' parent."""

    submission: Path
    record: Path
    runs: Path


def plan_outputs(out: str | Path, inputs: Iterable[str | Path] = (), test_rows: int | None = None) -> OutputPlan:
    """Check every place a run writes to, before training; raise `UserError` naming the first problem.

    Args:
        out: The submission path the user gave (`--out`).
        inputs: The files the run reads (train.csv, test.csv): no output may be one of them, nor one of
            the competition's files beside them or in the default data folder (sample_submission.csv is
            Kaggle's, read or not; a `--sample` run reads none of `data/`, which still holds the user's).
        test_rows: Rows the submission will have; when given, the free room is checked too.
    """
    out = Path(out)
    if out.suffix.lower() == RECORD_SUFFIX:
        raise UserError(f"{out}: a submission must not be a .json file; its record is written beside it as one")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give --out a file name such as {out / 'submission.csv'}")
    # A symbolic link is followed: its target is the file replaced, and the record goes beside it.
    submission = Path(os.path.realpath(out)) if out.is_symlink() else out
    plan = OutputPlan(submission, record_path_for(submission), submission.parent / RUNS_FOLDER)
    inputs = [Path(path) for path in inputs]
    # Each input's folder as named and as its links lead, and the default one.
    folders = [folder for path in inputs for folder in (path.parent, Path(os.path.realpath(path)).parent)]
    data_folders = dict.fromkeys([*folders, DEFAULT_DATA_DIR])
    beside = [folder / name for folder in data_folders for name in COMPETITION_FILES]
    input_files = {file_identity(path): (path, "one of the competition's files") for path in beside}
    input_files.update({file_identity(path): (path, "an input file") for path in inputs})
    input_files.pop(None, None)
    for target, what in ((out, "the submission"), (plan.record, "its record")):
        check_outside_run_folders(target, what)
        check_file_target(
            target, what, input_files, folder=target.parent if target is plan.record else plan.submission.parent
        )
    # Absent now, but the data folder's own name for it (in any case, for disks that ignore it): a later
    # download or check would take ours for Kaggle's.
    name = plan.submission.name.lower()
    real_data_folders = {os.path.realpath(folder) for folder in data_folders}
    if name in COMPETITION_FILES and os.path.realpath(plan.submission.parent) in real_data_folders:
        raise UserError(
            f"{out}: is where the competition's {name} belongs; the submission must never take a competition "
            "file's place: choose another --out"
        )
    check_record_is_its_own(plan)
    check_replaces_only_a_submission(plan)
    check_folder_target(plan.runs)
    if test_rows is not None:
        check_room(plan.submission.parent, submission_bytes(test_rows) + RECORD_BYTES)
    return plan


def check_record_is_its_own(plan: OutputPlan) -> None:
    """An existing record may be replaced only if it is a run's record (a JSON object naming a submission),
    and not another submission's: `foo` and `foo.csv` share the record `foo.json`."""
    if not (plan.record.is_file() and plan.record.stat().st_size):
        return
    try:
        record = read_json(plan.record, "run record")
    except UserError as error:
        raise UserError(
            f"{error}; the submission's record would replace it: choose another --out, or move the file away"
        ) from None
    if "submission" not in record:
        raise UserError(
            f"{plan.record}: is not a run record (it names no submission), and the submission's record would "
            "replace it: choose another --out, or move the file away"
        )
    recorded = record["submission"]
    if not (isinstance(recorded, dict) and "path" in recorded):
        return  # an older record, which names no file: nothing of another submission to lose
    owner = plan.record.parent / Path(str(recorded["path"])).name
    if owner.name != plan.submission.name and owner.is_file():
        raise UserError(
            f"{plan.record}: is the record of {owner}, which would lose it to {plan.submission}: choose another --out"
        )


def check_replaces_only_a_submission(plan: OutputPlan) -> None:
    """A run replaces a submission, never another file that happens to have its name."""
    if not (plan.submission.is_file() and plan.submission.stat().st_size):
        return
    try:
        with plan.submission.open("rb") as stream:
            first = stream.readline(FIRST_LINE_BYTES)
    except OSError as error:
        raise UserError(
            f"{plan.submission}: cannot be read to check it is a submission ({error.strerror}); a run replaces "
            "only a submission: choose another --out"
        ) from None
    if not starts_as_a_submission(first):
        raise UserError(
            f"{plan.submission}: is not a submission (its first line is not {SUBMISSION_HEADER_LINE}), "
            "and a run replaces only a submission: choose another --out, or move the file away"
        )


def enclosing_run_folder(path: str | Path) -> Path | None:
    """The run folder `path` lies in (a folder holding a run's `record.json`, links followed), or None."""
    for folder in Path(os.path.realpath(path)).parents:
        if (folder / RUN_RECORD_NAME).is_file():
            return folder
    return None


def check_outside_run_folders(path: Path, what: str) -> None:
    """A run folder's files are the run's evidence (saved models, probabilities, its record): never replaced."""
    run_folder = enclosing_run_folder(path)
    if run_folder is not None:
        raise UserError(
            f"{path}: is inside the run folder {run_folder}; {what} must go elsewhere: choose another --out"
        )


def file_identity(path: str | Path) -> tuple[int, int] | None:
    """The device and inode `path` leads to (links followed), or None if there is nothing there."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def check_file_target(path: Path, what: str, input_files: dict, folder: Path) -> None:
    """`path` (links followed) may be created or replaced, as a file in `folder`; `what` names it."""
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        # Nothing there yet (or a file stands where a folder should: the folder check says so).
        status = None
    except OSError as error:
        raise UserError(f"{path}: cannot be {what}: {error.strerror}") from None
    if status is not None:
        same_input, kind = input_files.get((status.st_dev, status.st_ino), (None, ""))
        if same_input is not None:
            which = _how_it_leads(path, same_input, kind)
            raise UserError(f"{path}: {which}; {what} must never replace an input: choose another --out")
        if stat.S_ISDIR(status.st_mode):
            raise UserError(f"{path}: is a folder, where {what} goes; move it away or choose another --out")
        if not stat.S_ISREG(status.st_mode):
            raise UserError(f"{path}: is not a regular file (a device, FIFO or socket); choose another --out")
        # Checked on the mode bits: root may write anything, but a file made read-only was meant to stay.
        if not status.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise UserError(
                f"{path}: is read-only (mode {stat.filemode(status.st_mode)}), so {what} was not replaced; "
                "make it writable (chmod u+w) or choose another --out"
            )
    check_writable_folder(folder)


def _how_it_leads(path: Path, same_input: str, kind: str) -> str:
    """How `path` comes to be `same_input`, the run's `kind` of file: by its name, or which kind of link."""
    real = os.path.realpath(path)
    if real == os.path.realpath(same_input):
        if os.path.abspath(path) == os.path.abspath(same_input):
            return f"is {kind}"
        if os.path.islink(path):
            return f"leads to {same_input}, {kind} (a symbolic link)"
        if real != os.path.abspath(path):
            return f"leads to {same_input}, {kind} (through a linked folder)"
        return f"is {kind}, which the run reads through a link as {same_input}"
    if os.stat(path).st_nlink > 1:
        return f"leads to {same_input}, {kind} (a hard link)"
    # A bind mount, or another spelling on a disk that ignores case.
    return f"is {same_input}, {kind}, under another name"


def check_folder_target(path: Path) -> None:
    """`path` is, or may be created as, a folder."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is not a folder; the run folders go there: move it away or choose another --out")
    check_writable_folder(path if path.is_dir() else path.parent)


def check_writable_folder(folder: Path) -> None:
    """New files can be made in `folder`, or in the folders that will be created up to it."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise UserError(f"{existing}: is a file, not a folder, so nothing can be written in it: choose another --out")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise UserError(f"{existing}: read-only file system; cannot write there: choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{existing}: permission denied; cannot write there: choose another --out")


def nearest_existing(folder: Path) -> Path:
    """`folder`, or its nearest ancestor that exists."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def submission_bytes(rows: int) -> int:
    """The size of a submission of `rows` rows, at most."""
    return HEADER_BYTES + rows * (len(str(rows)) + ROW_OVERHEAD_BYTES)


def check_room(folder: Path, needed: int) -> None:
    existing = nearest_existing(folder)
    status = os.statvfs(existing)
    if status.f_blocks == 0:
        # No size at all: /proc and /sys, which keep no files, or ramfs, which keeps them in memory.
        check_keeps_files(existing)
        return
    free = status.f_bavail * status.f_frsize
    if free < needed:
        raise UserError(
            f"{existing}: only {free / 1024:,.0f} KB free; the submission and its record need about "
            f"{needed / 1024:,.0f} KB: free some room or choose another --out"
        )


def check_keeps_files(folder: Path) -> None:
    """A file can be made in `folder`: tried with an empty one, removed at once."""
    try:
        tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-").close()  # closed, it is removed
    except OSError as error:
        raise UserError(
            f"{folder}: cannot hold files (an empty test file could not be made there: {error.strerror}): "
            "choose another --out"
        ) from None


@dataclass
class PreparedPair:
    """Temporary files beside the submission and its record; `swap` puts both in place."""

    plan: OutputPlan
    submission: Path
    record: Path

    def swap(self) -> None:
        """Rename the record, then the submission, into place; see the module docstring."""
        for temporary in (self.submission, self.record):
            prepare_for_rename(temporary)
        with signals_deferred():
            backup = keep_a_copy(self.plan.record)
            try:
                os.replace(self.record, self.plan.record)
                try:
                    pause_point("swap")
                    os.replace(self.submission, self.plan.submission)
                except BaseException:
                    restore(backup, self.plan.record)
                    raise
            finally:
                if backup is not None:
                    backup.unlink(missing_ok=True)
            sync_folder(self.plan.submission.parent)


@contextmanager
def prepared_pair(plan: OutputPlan) -> Iterator[PreparedPair]:
    """Temporary names for the submission and its record, removed at the end whatever happens.

    Write both files to them, check them, then call `swap`.
    """
    temporaries = []
    try:
        # Deferred, so that a signal cannot fall between making a temporary file and remembering it.
        with signals_deferred():
            plan.submission.parent.mkdir(parents=True, exist_ok=True)
            for target in (plan.submission, plan.record):
                temporaries.append(new_temporary(target))
        yield PreparedPair(plan, *temporaries)
    except OSError as error:
        # A full disk or a folder in the way: say so, and that the previous pair is untouched.
        # A failed rename names its target second: the file the user knows.
        filename = error.filename2 or error.filename
        where = f"{filename}: " if filename else ""
        raise UserError(
            f"{where}{error.strerror or error}; {plan.submission} and its record were left as they were"
        ) from None
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def new_temporary(target: Path) -> Path:
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    return Path(name)


def prepare_for_rename(temporary: Path) -> None:
    """On disk before it is renamed, with the mode a plain open() would give (mkstemp's is private)."""
    os.chmod(temporary, 0o666 & ~current_umask())
    with open(temporary, "rb") as stream:
        os.fsync(stream.fileno())


def keep_a_copy(path: Path) -> Path | None:
    """A hard link to the existing `path` (a copy where links are not allowed), to put back on failure."""
    if not path.exists():
        return None
    backup = new_temporary(path)
    try:
        backup.unlink()
        try:
            os.link(path, backup)
        except OSError:
            shutil.copy2(path, backup)
    except BaseException:
        backup.unlink(missing_ok=True)
        raise
    return backup


def restore(backup: Path | None, path: Path) -> None:
    """Put the kept copy back onto `path`, or remove `path` if there was none."""
    if backup is None:
        path.unlink(missing_ok=True)
    else:
        os.replace(backup, path)


def sync_folder(folder: Path) -> None:
    """Make the renames durable: a folder's entries reach the disk when the folder is synced."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # Some file systems cannot sync a folder; the renames are done all the same.
    finally:
        os.close(descriptor)


def pause_point(name: str) -> None:
    """Tests only: stop here when `DIGIT_RECOGNIZER_PAUSE_AT` names this point (see `tests/test_signals.py`)."""
    if os.environ.get(PAUSE_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGSTOP)


def file_state(path: str | Path) -> tuple[int, int] | None:
    """What tells whether `path` was replaced: its size and modification time."""
    try:
        status = Path(path).stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


@contextmanager
def telling_what_it_left(out: str | Path) -> Iterator[None]:
    """Ctrl-C, SIGTERM or a closed output inside says whether the submission `out` was replaced; the command
    line's boundary prints it (`interrupted: submissions/submission.csv was left as it was`)."""
    previous = file_state(out)
    try:
        yield
    except KeyboardInterrupt as interruption:
        if file_state(out) == previous:
            raise type(interruption)(f"{out} was left as it was") from None
        raise type(interruption)(f"after writing {out} and its record") from None


def check_pair(submission: str | Path, record: str | Path | None = None) -> None:
    """Refuse a submission whose record (beside it, by default) names another file's sha256.

    A submission without a record passes; a record without a sha256 (older
    records) is reported on stderr and passes.
    """
    submission = Path(submission)
    record = record_path_for(submission) if record is None else Path(record)
    # Without a record there is nothing to match; a missing submission is the validation's to report.
    if not record.exists() or not submission.is_file():
        return
    try:
        recorded = read_json(record, "run record")["submission"]["sha256"]
    except (KeyError, TypeError):
        print(f"warning: {record} names no submission sha256; cannot check it belongs to {submission}", file=sys.stderr)
        return
    actual = sha256(submission)
    if recorded != actual:
        raise UserError(
            f"{submission}: does not match its record {record} (sha256 {actual[:12]}..., the record says "
            f"{str(recorded)[:12]}...): a run was cut short or the file was edited; run python -m src.submit again"
        )


def write_pair(plan: OutputPlan, labels, make_record):
    """Write a submission of `labels` and the record `make_record(submission)` gives for it, as one unit.

    For commands that save no run folder (`src.predict`, `src.blend`); the
    pipeline uses `prepared_pair` itself, to save its run folder in between.

    Returns:
        The record written.
    """
    from src.data.submission import write_submission
    from src.runs.record import Submission

    with prepared_pair(plan) as pair:
        write_submission(labels, pair.submission)
        record = make_record(Submission(str(plan.submission), sha256(pair.submission), len(labels)))
        record.to_json(pair.record)
        pair.swap()
    return record
