"""The CSV format of every file the package reads, declared once.

`train.csv`, `test.csv`, a submission, and the download's check of the
competition's files all use these functions, so they accept and refuse the
same files. A good file is:

- a regular file (not a folder, FIFO or device), readable, that fits in memory;
- UTF-8 text; a byte-order mark at the start is skipped (Excel writes one);
- lines end in LF or CRLF (the last line's end is optional); no empty lines;
- line 1: exactly the expected names, comma-separated, without quotes or spaces;
- at least one data row, each with one field per header name;
- every cell a plain decimal integer, `[0-9]+`: no sign, space, decimal point
  or exponent (`-1`, `+1`, ` 1`, `3.0`, `1e0` are refused; `01` reads as 1).

Every refusal is one `UserError` naming the file and the line, with quoted
values cut to `LONGEST_QUOTE` characters.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from src.core.errors import UserError
from src.core.memory import available_memory

BYTE_ORDER_MARK = b"\xef\xbb\xbf"
PLAIN_INTEGER = re.compile(r"[0-9]+")
# An int64 holds every number of 18 digits; from 19 on, some do not fit.
LONG_NUMBER = re.compile(rb"[0-9]{19,}")
# A data line of plain integers holds only these bytes (besides its line end); empty cells are found by parsing.
DATA_LINE_BYTES = b"0123456789,"
OTHER_SEPARATORS = (";", "\t", "|")
LONGEST_QUOTE = 40
# Bytes read when looking for a line; a header is far shorter (train.csv's is 7 kB).
LONGEST_HEADER_LINE = 1 << 20
# Peak memory per byte of file while parsing: the text, its lines, and two int64
# copies of the cells (a cell takes at least two bytes, "0,", and becomes eight).
MEMORY_PER_FILE_BYTE = 10
SIZE_UNITS = ("bytes", "kB", "MB", "GB", "TB")
FILE_KINDS = {
    stat.S_ISFIFO: "a FIFO",
    stat.S_ISSOCK: "a socket",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
}


def check_csv_start(
    path: str | Path,
    header: list[str],
    missing_hint: str = "",
    other_headers: dict[str, list[str]] | None = None,
) -> int:
    """Raise `UserError` unless `path` is a readable file starting with exactly `header` and a data row.

    Reads two lines at most, so it is cheap on any file.

    Args:
        path: The CSV file.
        header: The names line 1 must hold, in order.
        missing_hint: Said after "file not found" (how to get the file).
        other_headers: Headers of sibling files by file name; a match is
            reported as swapped files.

    Returns:
        The file's size in bytes.
    """
    size = check_regular_file(path, missing_hint)
    with open_for_reading(path) as stream:
        first, second = stream.readline(LONGEST_HEADER_LINE), stream.readline(LONGEST_HEADER_LINE)
    if not first.strip() and not second:
        raise UserError(f"{path}: file is empty; expected a header line and data rows")
    check_header(path, first, header, other_headers or {})
    if not second:
        raise UserError(f"{path}: has a header but no data rows")
    if not second.rstrip(b"\r\n"):
        raise UserError(f"{path}: line 2: empty line; every line after the header must be a data row")
    return size


def read_integer_table(
    path: str | Path,
    header: list[str],
    expected_cell: Callable[[str], str],
    missing_hint: str = "",
    other_headers: dict[str, list[str]] | None = None,
) -> np.ndarray:
    """Read a CSV of plain integers with exactly `header`: returns int64 (rows, columns).

    Args:
        expected_cell: Says, for a column name, what its cells hold ("a label
            0..9"); used in the message about a bad cell.
        missing_hint, other_headers: As for `check_csv_start`.
    """
    size = check_csv_start(path, header, missing_hint, other_headers)
    check_memory(path, size)
    try:
        with open_for_reading(path) as stream:
            text = stream.read().removeprefix(BYTE_ORDER_MARK)
        lines = text.split(b"\n")
        if lines[-1] == b"":  # the last line's end
            lines.pop()
        check_rows(path, lines, header, expected_cell)
        return parse_integers(path, text, lines, header, expected_cell)
    except MemoryError:
        raise UserError(f"{path}: ran out of memory reading this {format_size(size)} file") from None


def check_regular_file(path: str | Path, missing_hint: str = "") -> int:
    """Raise `UserError` unless `path` is a regular file; returns its size. Never opens it (a FIFO would block)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found" + (f"; {missing_hint}" if missing_hint else "")) from None
    except OSError as error:
        raise UserError(f"{path}: cannot be read: {error.strerror}") from None
    if stat.S_ISDIR(status.st_mode):
        raise UserError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for is_kind, name in FILE_KINDS.items() if is_kind(status.st_mode)), "an unusual file")
        raise UserError(f"{path}: is not a regular file ({kind})")
    return status.st_size


def open_for_reading(path: str | Path) -> io.BufferedReader:
    try:
        return open(path, "rb")
    except OSError as error:
        raise UserError(f"{path}: cannot be read: {error.strerror}") from None


def check_header(path: str | Path, line: bytes, header: list[str], other_headers: dict[str, list[str]]) -> None:
    """Line 1 must be exactly `header`; otherwise say how it differs."""
    text = decode_line(path, 1, line.removeprefix(BYTE_ORDER_MARK)).removesuffix("\n").removesuffix("\r")
    found = text.split(",")
    if found == header:
        return
    for name, other in other_headers.items():
        if found == other:
            raise UserError(
                f"{path}: line 1: this header belongs to {name}, not {Path(path).name}; were the two files swapped?"
            )
    message_start = f"{path}: line 1: expected the header {describe_header(header)!r}"
    if len(found) == 1 and any(separator in text for separator in OTHER_SEPARATORS):
        raise UserError(f"{message_start}, comma-separated; found {quoted(text)}")
    for column, (expected, actual) in enumerate(zip(header, found, strict=False), start=1):
        if actual == expected:
            continue
        if actual.strip().strip('"').strip() == expected:
            raise UserError(
                f"{message_start}; column {column} is {quoted(actual)}: write names without quotes or spaces"
            )
        raise UserError(f"{message_start}; column {column} is {quoted(actual)}, not {expected!r}")
    extra = f": extra {quoted(','.join(found[len(header) :]))}" if len(found) > len(header) else ""
    raise UserError(f"{message_start} ({len(header)} fields), found {len(found)} fields{extra}")


def check_rows(path: str | Path, lines: list[bytes], header: list[str], expected_cell: Callable[[str], str]) -> None:
    """Every line after the header holds one plain integer per header name."""
    for number, line_with_end in enumerate(lines[1:], start=2):
        line = line_with_end.removesuffix(b"\r")
        if not line:
            raise UserError(f"{path}: line {number}: empty line; every line after the header must be a data row")
        fields = line.count(b",") + 1
        if fields != len(header):
            raise UserError(f"{path}: line {number}: expected {len(header)} comma-separated fields, found {fields}")
        # Fast in C for the 42,000 good lines; the slow search runs on a bad one only.
        if line.translate(None, DATA_LINE_BYTES):
            raise_bad_cell(path, number, line, header, expected_cell)


def raise_bad_cell(
    path: str | Path, number: int, line: bytes, header: list[str], expected_cell: Callable[[str], str]
) -> None:
    for name, cell in zip(header, decode_line(path, number, line).split(","), strict=True):
        if not PLAIN_INTEGER.fullmatch(cell):
            found = quoted(cell) if cell else "an empty value"
            raise UserError(f"{path}: line {number}, column {name}: expected {expected_cell(name)}, found {found}")


def parse_integers(
    path: str | Path, text: bytes, lines: list[bytes], header: list[str], expected_cell: Callable[[str], str]
) -> np.ndarray:
    """Parse text whose rows hold only digits and commas; an empty cell or a huge number fails here."""
    try:
        return pd.read_csv(io.BytesIO(text), dtype=np.int64).to_numpy()
    except (ValueError, OverflowError) as error:
        failure = error
    # Rare, so searched for only now: an empty cell, a number beyond 64 bits, or the parser out of memory.
    for number, line_with_end in enumerate(lines[1:], start=2):
        line = line_with_end.removesuffix(b"\r")
        if b",," in line or line.startswith(b",") or line.endswith(b","):
            raise_bad_cell(path, number, line, header, expected_cell)
    for long_number in LONG_NUMBER.finditer(text):
        if int(long_number.group()) > np.iinfo(np.int64).max:
            start = long_number.start()
            number, column = text.count(b"\n", 0, start) + 1, text.count(b",", text.rfind(b"\n", 0, start) + 1, start)
            value = quoted(long_number.group().decode())
            raise UserError(f"{path}: line {number}, column {header[column]}: {value} is beyond 64-bit integers")
    if "out of memory" in str(failure):
        raise MemoryError(str(failure))
    raise UserError(f"{path}: cannot be parsed: {quoted(str(failure), LONGEST_QUOTE * 2)}")


def decode_line(path: str | Path, number: int, line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: line {number}: not UTF-8 text; expected comma-separated integers") from None


def check_memory(path: str | Path, size: int) -> None:
    """Refuse, before reading, a file whose parsing would not fit in the memory available."""
    needed, available = size * MEMORY_PER_FILE_BYTE, available_memory()
    if available is not None and needed > available:
        raise UserError(
            f"{path}: file is {format_size(size)}; reading it needs about {format_size(needed)} of memory, "
            f"more than the {format_size(available)} available"
        )


def format_size(size: int) -> str:
    """Decimal units, as disks and file managers show sizes: "31.2 GB"."""
    power = min(len(str(max(size, 1))) - 1, 3 * (len(SIZE_UNITS) - 1)) // 3
    return f"{size} bytes" if power == 0 else f"{size / 1000**power:.1f} {SIZE_UNITS[power]}"


def quoted(text: str, limit: int = LONGEST_QUOTE) -> str:
    """`text` in quotes, cut to `limit` characters so that a message stays one short line."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def describe_header(header: list[str]) -> str:
    return ",".join(header) if len(header) <= 4 else ",".join(header[:3]) + ",...," + header[-1]
