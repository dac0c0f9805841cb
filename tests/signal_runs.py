"""The runs `tests/test_signals.py` signals as they write their outputs, one after another in one process.

    python -m tests.signal_runs LOG_FOLDER RUN [RUN ...]

Each RUN is a JSON list, `[POINT, ARG, ...]`: `python -m src.submit ARG ...` as its command
line runs it, with `DIGIT_RECOGNIZER_PAUSE_AT=POINT`, so that it stops itself there
(SIGSTOP) until the test has looked at its files, signalled it and let it continue. A
signal ends the command it lands in, not the process: `main` returns its exit status, as
the command's process would exit with it, and the next run starts. One process for them
all spares TensorFlow's start-up (seconds) for each. Run `i` writes its standard output and
error (the file descriptors, so a library's C++ lines are caught too) to
`LOG_FOLDER/i.stdout` and `i.stderr`, and its exit status to `i.status`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from src.core.cli import import_tensorflow
from src.runs.outputs import PAUSE_VARIABLE


@contextlib.contextmanager
def output_to(stdout: Path, stderr: Path):
    """File descriptors 1 and 2 into these files for the block; then back."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {descriptor: os.dup(descriptor) for descriptor in (1, 2)}
    try:
        for descriptor, path in ((1, stdout), (2, stderr)):
            with open(path, "wb") as file:
                os.dup2(file.fileno(), descriptor)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for descriptor, copy in saved.items():
            os.dup2(copy, descriptor)
            os.close(copy)


def main() -> None:
    logs, *runs = sys.argv[1:]
    import_tensorflow()
    from src.submit import main as submit_main

    for index, run in enumerate(runs):
        point, *args = json.loads(run)
        os.environ[PAUSE_VARIABLE] = point
        sys.argv = [sys.modules[submit_main.__module__].__file__, *args]
        with output_to(Path(logs) / f"{index}.stdout", Path(logs) / f"{index}.stderr"):
            status = submit_main(args)
        (Path(logs) / f"{index}.status").write_text(str(status))


if __name__ == "__main__":
    main()
