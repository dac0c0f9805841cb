#!/usr/bin/env bash
# Download the Digit Recognizer files with the official kaggle client, check them, and move
# them into DIR (default data/) only when all is well.
#
#   scripts/download.sh [DIR] [--force]
#
# Idempotent: when DIR already holds valid files it does nothing; --force downloads again.
# The work, its messages and exit codes are `python -m src.kaggle download`'s.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# DIR stays relative to where the user stands, so the package is found through PYTHONPATH.
export PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}"
# The Python that runs `python -m src...`; the tests point it at their interpreter.
exec "${PYTHON:-python3}" -m src.kaggle download "$@"
