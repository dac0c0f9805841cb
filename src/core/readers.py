"""One reader per kind of file the package reads back: JSON, `.npy` and `.npz` arrays and plain text.

Every file read here may have been damaged, edited or swapped by hand, so each
reader bounds what it will take (size, nesting, digits, shape) before parsing,
and every failure is one `UnreadableFile` (a `UserError`) naming the file:
`<path>: not a <what>: <reason>`. The reason never quotes the file's content
(a kaggle.json holds a key).
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from src.core.errors import UserError

MAX_JSON_BYTES = 16 << 20  # a run record is a few kB; Kaggle's kernel log a few MB
MAX_JSON_DEPTH = 64  # a record nests 4 levels; Python's parser overflows its stack at ~10**5
MAX_INT_DIGITS = 30  # a ref, a row count or a seed; Python refuses 4,300 only after seconds of work
MAX_NPY_BYTES = 4 << 30  # test probabilities of 28,000 rows are 1 MB; a saved image array far less
# numpy's `.npy` header readers, by format version (3.0 only adds UTF-8 field names, which no array here has).
NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
BRACKETS = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class UnreadableFile(UserError):
    """A file that is not what it should be; `reason` alone is safe to show for any file."""

    def __init__(self, path: str | Path, what: str, reason: str):
        super().__init__(f"{path}: not a {what}: {reason}")
        self.path, self.what, self.reason = Path(path), what, reason


def read_bytes(path: str | Path, what: str, max_bytes: int) -> bytes:
    """The whole of `path`, refused when it is larger than `max_bytes` (checked before reading)."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise UnreadableFile(path, what, error.strerror or type(error).__name__) from None
    if len(data) > max_bytes:
        raise UnreadableFile(path, what, f"larger than {_size(max_bytes)}")
    return data


def read_text(path: str | Path, what: str, max_bytes: int = MAX_JSON_BYTES) -> str:
    """`path` as UTF-8 text (a leading byte-order mark skipped)."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableFile(path, what, f"not UTF-8 text (byte {error.start})") from None


def read_json(path: str | Path, what: str, expect: type = dict, max_bytes: int = MAX_JSON_BYTES):
    """`path` parsed as JSON within the module's bounds, checked to be an `expect` (dict, list; object: any)."""
    text = read_text(path, what, max_bytes)
    # Fewer brackets than the cap cannot nest deeper: the common case skips the counting pass.
    depth = json_depth(text) if text.count("[") + text.count("{") > MAX_JSON_DEPTH else 0
    if depth > MAX_JSON_DEPTH:
        raise UnreadableFile(path, what, f"nested {depth} levels deep (at most {MAX_JSON_DEPTH})")
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as error:
        # The position only: the message must never quote the file.
        raise UnreadableFile(path, what, f"not JSON: line {error.lineno} column {error.colno}") from None
    except (ValueError, RecursionError) as error:
        raise UnreadableFile(path, what, str(error) if isinstance(error, IntegerTooLong) else "not JSON") from None
    if not isinstance(value, expect):
        wanted = {dict: "an object", list: "a list"}[expect]
        raise UnreadableFile(path, what, f"expected {wanted}, found {type(value).__name__}")
    return value


class IntegerTooLong(ValueError):
    pass


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise IntegerTooLong(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def json_depth(text: str) -> int:
    """How deep `text`'s brackets nest, brackets inside strings not counted (linear, no recursion)."""
    # UTF-8 bytes: brackets, quotes and backslashes are ASCII, never part of a longer character.
    codes = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    quotes = codes == ord('"')
    if quotes.any():
        # A quote escaped by an odd number of backslashes does not end a string.
        escaped = np.zeros_like(quotes)
        backslash = np.flatnonzero(codes == ord("\\"))
        if backslash.size:
            escaped[_escaped_positions(codes, backslash)] = True
        quotes &= ~escaped
        inside = (np.cumsum(quotes, dtype=np.int32) - quotes) % 2 == 1
    else:
        inside = np.zeros(codes.shape, dtype=bool)
    steps = np.zeros(codes.shape, dtype=np.int8)
    for code, step in BRACKETS.items():
        steps[(codes == code) & ~inside] = step
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def _escaped_positions(codes: np.ndarray, backslash: np.ndarray) -> np.ndarray:
    """The positions just after an odd run of backslashes: the characters they escape."""
    breaks = np.flatnonzero(np.diff(backslash) != 1)
    starts = backslash[np.concatenate(([0], breaks + 1))]
    ends = backslash[np.concatenate((breaks, [backslash.size - 1]))] + 1
    odd = (ends - starts) % 2 == 1
    return ends[odd & (ends < codes.size)]


def read_npy(
    path: str | Path,
    shape: tuple[int | None, ...] | None,
    kinds: str | None = "f",
    what: str = "array",
    max_bytes: int = MAX_NPY_BYTES,
) -> np.ndarray:
    """A `.npy` array whose header is checked before its data is read.

    `shape` has a size or None (any) per axis, or is None for any shape; `kinds` the
    dtype kinds allowed (`"f"` floats, `"iu"` integers; None: any but objects). The
    header's shape must fit, and its data size must be the file's rest, so a header
    claiming 10**13 values allocates nothing.
    """
    try:
        with open(path, "rb") as stream:
            header = _npy_header(stream)
            _check_npy(header, shape, kinds, max_bytes, Path(path).stat().st_size - stream.tell())
            stream.seek(0)
            return np.lib.format.read_array(stream, allow_pickle=False)
    except UnreadableFile as error:
        raise UnreadableFile(path, what, error.reason) from None
    except (OSError, ValueError, EOFError) as error:
        raise UnreadableFile(path, what, _first_line(error)) from None


def _npy_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version not in NPY_HEADER_READERS:
        raise UnreadableFile("", "", f".npy format {version[0]}.{version[1]} is not read here")
    return NPY_HEADER_READERS[version](stream)


def read_npz(path: str | Path, what: str = "array archive", max_bytes: int = MAX_NPY_BYTES) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` archive (as `np.savez` writes it), each header checked before its data is read.

    No array may hold objects, claim more data than its entry holds, or take the
    archive past `max_bytes` in all; the caller checks the names and shapes it needs.
    """
    arrays, total = {}, 0
    try:
        with zipfile.ZipFile(path) as archive:
            for entry in archive.infolist():
                total += entry.file_size
                if total > max_bytes:
                    raise UnreadableFile("", "", f"its entries claim over {_size(max_bytes)}")
                arrays[entry.filename.removesuffix(".npy")] = _read_entry(archive, entry, max_bytes)
    except UnreadableFile as error:
        raise UnreadableFile(path, what, error.reason) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise UnreadableFile(path, what, _first_line(error)) from None
    return arrays


def _read_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, max_bytes: int) -> np.ndarray:
    with archive.open(entry) as stream:
        header = _npy_header(stream)
        _check_npy(header, None, None, max_bytes, entry.file_size - stream.tell())
    with archive.open(entry) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _check_npy(header, shape, kinds: str, max_bytes: int, rest: int) -> None:
    found, _, dtype = header
    if dtype.hasobject or (kinds is not None and dtype.kind not in kinds):
        raise UnreadableFile("", "", f"holds {dtype}, expected {_kind_names(kinds or 'biufc')}")
    if shape is not None and _misfits(found, shape):
        wanted = ", ".join("any" if size is None else str(size) for size in shape)
        raise UnreadableFile("", "", f"shape {list(found)}, expected ({wanted})")
    size = math.prod(found) * dtype.itemsize
    if size > max_bytes:
        raise UnreadableFile("", "", f"its header claims {_size(size)} (at most {_size(max_bytes)})")
    if size != rest:
        raise UnreadableFile("", "", f"its header claims {_size(size)} of data, the file holds {_size(rest)}")


def _misfits(found: tuple[int, ...], shape: tuple[int | None, ...]) -> bool:
    return len(found) != len(shape) or any(
        want is not None and want != got for want, got in zip(shape, found, strict=True)
    )


def _kind_names(kinds: str) -> str:
    return "floats" if kinds == "f" else "integers" if set(kinds) <= set("iu") else f"kinds {kinds}"


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0][:80] if text else type(error).__name__


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:g} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"
