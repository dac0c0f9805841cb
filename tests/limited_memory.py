"""Run a command line with its address space capped at what it holds once its libraries are loaded, plus a margin.

    python -m tests.limited_memory MARGIN_MIB MODULE [ARGS...]

The cap (`RLIMIT_AS`) is set only after TensorFlow, its thread pools and the
pipeline are loaded, so that the margin is what the run itself may allocate:
a training that needs more runs out of memory for real, while the estimate
the run makes first (the machine's free memory) still lets it start.
"""

from __future__ import annotations

import re
import resource
import runpy
import sys
from pathlib import Path


def address_space() -> int:
    """This process's virtual memory size in bytes, which `RLIMIT_AS` caps."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024


def main() -> None:
    margin_mib, module, *args = sys.argv[1:]
    from src.core.cli import import_tensorflow

    tensorflow = import_tensorflow()
    # TensorFlow starts its thread pools with its first operation; their stacks are counted before the cap.
    tensorflow.add(tensorflow.zeros((2, 2)), 1)
    import src.pipeline.run  # noqa: F401  (the rest of what a run loads)

    limit = address_space() + int(margin_mib) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
