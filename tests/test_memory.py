"""The one available-memory figure: the machine's free memory, or its container's limit when lower."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.core import memory
from src.core.config import PRESETS
from src.core.errors import EXIT_USER, UserError
from src.models.registry import check_size
from tests.helpers import assert_one_line_error, run_command, snapshot_files, write_previous_pair

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


# A real run out of memory: the child's address space is capped at what it holds once TensorFlow is
# loaded plus a margin (tests/limited_memory.py), which check_size cannot see, so the estimate lets it start.
# Where each runs out, measured on a 2-core machine: TensorFlow's allocator while the weights are initialised
# (ResourceExhaustedError), NumPy while the members' weights are stacked (MemoryError).
# oneDNN's allocator waits 10 s for memory to be freed before it gives up (TensorFlow's AllocatorRetry); its
# plain CPU allocator raises the same error at once, so the TensorFlow run uses that one.
OUT_OF_MEMORY_RUNS = {
    "tensorflow": (512, ["--hidden-units", "8192,8192,8192"], "1 member(s)", "or fewer or narrower --hidden-units"),
    "numpy": (768, ["--hidden-units", "4096,4096", "--folds", "3"], "3 member(s)", "or --plain (one member at a time)"),
}
ALLOCATOR = {"tensorflow": {"TF_ENABLE_ONEDNN_OPTS": "0"}, "numpy": {}}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="the cap is measured from /proc (Linux)")
@pytest.mark.parametrize("where", OUT_OF_MEMORY_RUNS)
def test_running_out_of_memory_while_training_is_one_line_and_writes_nothing(where, tiny_data, tmp_path):
    margin_mib, flags, members, hint = OUT_OF_MEMORY_RUNS[where]
    previous = write_previous_pair(tmp_path / "out")
    before = snapshot_files(previous.parent)
    result = run_command(
        *("-m", "tests.limited_memory", margin_mib, "src.submit", "--data", tiny_data, "--out", previous),
        *("--epochs", "1", "--verbose", "0", "--no-report", *flags),
        env=ALLOCATOR[where],
    )
    line = assert_one_line_error(result, EXIT_USER, "out of memory: training hidden_units", members, hint)
    assert line.startswith("error: out of memory: ") and "did not fit (estimated at" in line
    assert result.stderr == line + "\n" and result.stdout == ""
    # The previous pair byte for byte, and no run folder, curves or temporary file.
    assert snapshot_files(previous.parent) == before
