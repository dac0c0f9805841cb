"""Writing files atomically, holding Ctrl-C back while files are renamed, making folders that a failure takes back,
and fingerprinting files."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# What `signals_deferred` holds back: Ctrl-C and SIGTERM.
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary_path)`, then move the result onto `path`.

    The temporary file sits beside `path`, so the final rename is atomic: a
    reader sees the old file or the new one, never half of one. If `write`
    raises (a failed check, Ctrl-C), the temporary file is removed and `path`
    is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, payload: dict) -> Path:
    """Write `payload` as indented JSON, atomically."""
    text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda temporary: temporary.write_text(text))


LOCK_SUFFIX = ".lock"


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` for the block: a read-modify-write of `path` by another
    process that also takes it waits, so no process overwrites a change it never read.

    The lock file is left in place: removing it could let two processes lock two different files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + LOCK_SUFFIX), "a") as stream:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(stream.fileno(), fcntl.LOCK_UN)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them.

    Python runs signal handlers in the main thread only, so elsewhere there is nothing to defer.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def remember(number, frame):
        received.append(number)

    previous = {number: signal.signal(number, remember) for number in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in received:
            signal.raise_signal(number)


@contextmanager
def made_folder(folder: str | Path) -> Iterator[Path]:
    """`folder`, created with any missing parents for the block; if the block fails, the folders this
    made are removed again where they are still empty, so a refused command leaves nothing behind."""
    # Resolved first: `new/../x` would otherwise make `new`, and a link's `..` another folder than it reads.
    folder = Path(folder).resolve()
    made = []
    path = folder
    while not path.exists() and path != path.parent:
        made.append(path)
        path = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for path in made:  # the deepest first; one that holds something keeps its parents too
            try:
                path.rmdir()
            except OSError:
                break
        raise


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
