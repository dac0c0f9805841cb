"""A cache of the parsed CSVs, keyed by the files' content hash.

Parsing and validating the 42,000-row `train.csv` takes seconds; loading the
arrays it gave last time takes a fraction of one. An entry is named after the
sha256 of the file it came from, so a changed file is never served stale
arrays: it simply misses and is parsed (and validated) again.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .files import atomic_write

CACHE_ENV = "DIGIT_RECOGNIZER_CACHE"
CACHE_DISABLED = ("", "off")
# Bump when the parsed arrays change meaning, so old entries are ignored.
CACHE_VERSION = 1
MAX_CACHE_ENTRIES = 8
# What np.load raises for an absent, truncated or damaged entry.
UNREADABLE_ENTRY = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def default_cache_dir() -> Path | None:
    """`$DIGIT_RECOGNIZER_CACHE` ("" or "off": no cache), else the user's cache folder.

    The cache lives outside the data folder, which may be read-only (a Kaggle
    input, a shared mount).
    """
    if CACHE_ENV in os.environ:
        chosen = os.environ[CACHE_ENV]
        return None if chosen.strip().lower() in CACHE_DISABLED else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digit-recognizer"


def cache_entry(cache_dir: str | Path, kind: str, digest: str) -> Path:
    return Path(cache_dir) / f"{kind}-v{CACHE_VERSION}-{digest}.npz"


def cached_arrays(
    cache_dir: str | Path | None, kind: str, digest: str, parse: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays `parse()` gives for a `kind` file whose sha256 is `digest`, from the cache if there.

    On a miss the arrays are parsed and stored, atomically. A cache that cannot
    be read or written (read-only, full, damaged) is passed over: the file is
    parsed as if there were no cache, and the run goes on.
    """
    if cache_dir is None:
        return parse()
    entry = cache_entry(cache_dir, kind, digest)
    # An absent or damaged entry is parsed again.
    with contextlib.suppress(*UNREADABLE_ENTRY), np.load(entry, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}
    arrays = parse()
    # A cache we cannot write only costs time.
    with contextlib.suppress(OSError):
        atomic_write(entry, lambda temporary: save_arrays(temporary, arrays))
        prune_cache(Path(cache_dir))
    return arrays


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # Through an open file, as np.savez would otherwise add ".npz" to the temporary name.
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)


def prune_cache(cache_dir: Path, keep: int = MAX_CACHE_ENTRIES) -> None:
    """Remove all but the `keep` most recently written entries."""
    # Only this cache's own entries: the folder may be shared with other files.
    own_entries = cache_dir.glob(cache_entry(cache_dir, "*", "*").name)
    entries = sorted(own_entries, key=lambda path: path.stat().st_mtime, reverse=True)
    for stale in entries[keep:]:
        stale.unlink(missing_ok=True)
