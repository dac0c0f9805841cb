#!/usr/bin/env bash
# Build the Kaggle kernel (python -m src.kernel) and push it with the official kaggle client.
#
#   scripts/push_kernel.sh [python -m src.kernel flags, e.g. --folds 5]
#
# The kernel is written into $KERNEL_DIR (default kernel/); the push prints how to follow
# its run and fetch its output. Messages and exit codes are the Python commands' own.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The Python that runs `python -m src...`; the tests point it at their interpreter.
python="${PYTHON:-python3}"

for argument in "$@"; do
  case "$argument" in
    -h | --help)
      echo "usage: scripts/push_kernel.sh [python -m src.kernel flags]  (KERNEL_DIR sets the folder, default kernel/)"
      cd "$repo_root" && exec "$python" -m src.kernel --help
      ;;
    --out-dir*)
      echo "error: set KERNEL_DIR=DIR instead of passing --out-dir" >&2
      exit 2
      ;;
  esac
done
kernel_dir="${KERNEL_DIR:-kernel}"
[[ "$kernel_dir" == /* ]] || kernel_dir="$PWD/$kernel_dir"

cd "$repo_root"
# Credentials first: a build that cannot be pushed is not worth waiting for.
"$python" -m src.kaggle credentials >/dev/null
"$python" -m src.kernel --out-dir "$kernel_dir" "$@"
exec "$python" -m src.kaggle push-kernel "$kernel_dir"
