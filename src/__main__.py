"""`python -m src`: the commands, one line each."""

from __future__ import annotations

import sys

COMMANDS = (
    ("python -m src.submit", "train a network and write the ImageId,Label submission (and --submit it)"),
    ("python -m src.upload FILE -m TEXT", "validate an existing submission file and send it to Kaggle"),
    ("python -m src.predict RUN_DIR", "predict again with a run folder's saved models"),
    ("python -m src.blend RUN_DIR... --out FILE", "average runs' test probabilities into a new submission"),
    ("python -m src.search --vary NAME=LOW..HIGH", "search settings with Optuna, each trial a run"),
    ("python -m src.report RUN_DIR", "redraw a run's report, or --compare runs side by side"),
    ("python -m src.ledger", "your submissions: local accuracy against Kaggle's public score"),
    ("python -m src.kernel", "build the Kaggle kernel's script and metadata"),
    ("python -m src.kaggle SUBCOMMAND", "download, push-kernel, kernel-wait, kernel-output, submissions, ..."),
)


def main() -> int:
    width = max(len(command) for command, _ in COMMANDS)
    print("Digit Recognizer submission package. Commands (each takes --help):")
    for command, job in COMMANDS:
        print(f"  {command.ljust(width)}  {job}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
