"""A cache of the parsed CSVs, keyed by the files' content hash.

Parsing and validating the 42,000-row `train.csv` takes seconds; loading the
arrays it gave last time takes a fraction of one. An entry is named after the
sha256 of the file it came from, so a changed file is never served stale
arrays: it simply misses and is parsed (and validated) again.

A name is not trusted: an entry also stores the kind, sha256 and size of its
source file and the cache version, and is used only when all of them match and
the caller accepts its arrays (shapes, dtypes, values). A damaged, truncated or
foreign entry is passed over and the file parsed again; it is never an error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.core.files import atomic_write
from src.core.readers import UnreadableFile, read_npz

CACHE_ENV = "DIGIT_RECOGNIZER_CACHE"
CACHE_DISABLED = ("", "off")
# Bump when the parsed arrays change meaning, so old entries are ignored.
CACHE_VERSION = 1
MAX_CACHE_ENTRIES = 8
# The entry's own fields, beside the arrays: what it claims to have been parsed from.
SOURCE_FIELDS = ("source_kind", "source_sha256", "source_size", "cache_version")


@dataclass(frozen=True)
class CacheSource:
    """The file an entry is parsed from: its kind ("train", "test"), sha256 and size in bytes."""

    kind: str
    sha256: str
    size: int

    def fields(self) -> dict[str, np.ndarray]:
        return {
            "source_kind": np.array(self.kind),
            "source_sha256": np.array(self.sha256),
            "source_size": np.array(self.size, dtype=np.int64),
            "cache_version": np.array(CACHE_VERSION, dtype=np.int64),
        }


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
    cache_dir: str | Path | None,
    source: CacheSource,
    parse: Callable[[], dict[str, np.ndarray]],
    accept: Callable[[dict[str, np.ndarray]], bool],
) -> dict[str, np.ndarray]:
    """The arrays `parse()` gives for the `source` file, from the cache if a trusted entry is there.

    An entry is used only when the source it records is `source` and
    `accept(arrays)` is true. On a miss the arrays are parsed and stored,
    atomically. A cache that cannot be read or written (read-only, full,
    damaged) is passed over: the file is parsed as if there were no cache, and
    the run goes on.
    """
    if cache_dir is None:
        return parse()
    entry = cache_entry(cache_dir, source.kind, source.sha256)
    stored = load_entry(entry, source)
    if stored is not None and accept(stored):
        return stored
    arrays = parse()
    # A cache we cannot write only costs time.
    with contextlib.suppress(OSError):
        atomic_write(entry, lambda temporary: save_arrays(temporary, {**arrays, **source.fields()}))
        prune_cache(Path(cache_dir))
    return arrays


def load_entry(entry: Path, source: CacheSource) -> dict[str, np.ndarray] | None:
    """The arrays of `entry` if it reads whole and records `source`; else None."""
    if not entry.is_file():
        return None
    try:
        arrays = read_npz(entry, "cache entry")
    except UnreadableFile:
        return None  # a damaged entry is parsed again, and rewritten
    if not records_source(arrays, source):
        return None
    return {name: values for name, values in arrays.items() if name not in SOURCE_FIELDS}


def records_source(arrays: dict[str, np.ndarray], source: CacheSource) -> bool:
    expected = source.fields()
    return all(
        name in arrays and arrays[name].shape == () and arrays[name].item() == expected[name].item()
        for name in SOURCE_FIELDS
    )


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
