"""How much memory this process may still use: the one figure every memory check compares with."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
CGROUP_MEMORY = Path("/sys/fs/cgroup")


def available_memory() -> int | None:
    """Bytes this process may still use (the machine's, or its container's if lower); None if unknown.

    A container (Docker, a Kaggle kernel) may allow less than the machine has free,
    and going past its cgroup limit kills the process: so the lower figure counts.
    """
    known = []
    # Either figure may be absent (another system, no cgroup v2): then it is not known.
    with contextlib.suppress(OSError, KeyError, ValueError, IndexError):
        fields = dict(line.split(":", 1) for line in MEMINFO.read_text().splitlines() if ":" in line)
        known.append(int(fields["MemAvailable"].split()[0]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = (CGROUP_MEMORY / "memory.max").read_text().strip()
        if limit != "max":
            known.append(int(limit) - int((CGROUP_MEMORY / "memory.current").read_text()))
    if not known:
        # Not Linux: what the system reports as free, where it reports it.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            known.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return min(known) if known else None
