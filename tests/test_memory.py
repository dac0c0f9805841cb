"""The one available-memory figure: the machine's free memory, or its container's limit when lower."""

from __future__ import annotations

import pytest

from src.core import memory
from src.core.config import PRESETS
from src.core.errors import UserError
from src.models.registry import check_size

GIB = 2**30


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A fake /proc/meminfo and cgroup folder; returns a function that sets their figures."""
    meminfo, cgroup = tmp_path / "meminfo", tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    monkeypatch.setattr(memory, "CGROUP_MEMORY", cgroup)

    def set_figures(free_kib: int, limit: str | None = None, used: int = 0) -> None:
        meminfo.write_text(f"MemTotal:       99999999 kB\nMemAvailable:   {free_kib} kB\n")
        if limit is not None:
            (cgroup / "memory.max").write_text(f"{limit}\n")
            (cgroup / "memory.current").write_text(f"{used}\n")

    return set_figures


def test_without_a_container_limit_the_machines_free_memory_counts(machine):
    machine(4 * 1024 * 1024, limit="max")
    assert memory.available_memory() == 4 * GIB


def test_a_container_limit_below_the_machines_free_memory_counts(machine):
    machine(16 * 1024 * 1024, limit=str(3 * GIB), used=GIB)
    assert memory.available_memory() == 2 * GIB


def test_the_training_memory_check_sees_the_container_limit(machine):
    # Plenty free on the machine, but a container allowing 1 MiB more: a wide network is refused.
    machine(64 * 1024 * 1024, limit=str(GIB + 2**20), used=GIB)
    with pytest.raises(UserError, match="GiB of memory is available"):
        check_size(PRESETS["wide"].replace(hidden_units=(4096, 4096)))
