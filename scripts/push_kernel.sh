#!/usr/bin/env bash
# Build the Kaggle kernel (python -m src.kernel) and push it with the official kaggle client.
#
#   scripts/push_kernel.sh [python -m src.kernel flags, e.g. --folds 5]
#   scripts/push_kernel.sh --wait [--timeout S] [--runs DIR] [--submit -m MSG [--data DIR]] [src.kernel flags]
#
# The kernel is written into $KERNEL_DIR (default kernel/). Without --wait the push prints how
# to follow its run; with it, the script waits for the run, fetches its output into
# $KERNEL_DIR/output/<timestamp>/ and compares it with a local run (python -m src.kaggle
# kernel-wait); --submit -m MSG then submits it. Messages and exit codes are the Python commands' own.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The Python that runs `python -m src...`; the tests point it at their interpreter.
python="${PYTHON:-python3}"

# The flags that follow the run go to `python -m src.kaggle push-kernel`; the rest build the kernel.
follow=()
build=()
while (($#)); do
  case "$1" in
    -h | --help)
      echo "usage: scripts/push_kernel.sh [--wait [--timeout S] [--submit [--force] -m MSG]] [python -m src.kernel flags]"
      echo "  (KERNEL_DIR sets the folder, default kernel/; python -m src.kaggle push-kernel --help explains --wait)"
      cd "$repo_root" && exec "$python" -m src.kernel --help
      ;;
    --out-dir*)
      echo "error: set KERNEL_DIR=DIR instead of passing --out-dir" >&2
      exit 2
      ;;
    --wait | --submit | --no-wait | --force)
      follow+=("$1")
      ;;
    --timeout | --wait-timeout | -m | --message | --runs | --data)
      if (($# < 2)); then
        echo "error: $1 needs a value" >&2
        exit 2
      fi
      value="$2"
      # Folders are relative to where the user is, not to the checkout the commands run in.
      if [[ "$1" == --runs || "$1" == --data ]] && [[ "$value" != /* ]]; then
        value="$PWD/$value"
      fi
      follow+=("$1" "$value")
      shift
      ;;
    *)
      build+=("$1")
      ;;
  esac
  shift
done
kernel_dir="${KERNEL_DIR:-kernel}"
[[ "$kernel_dir" == /* ]] || kernel_dir="$PWD/$kernel_dir"

cd "$repo_root"
# Credentials first: a build that cannot be pushed is not worth waiting for.
"$python" -m src.kaggle credentials >/dev/null
"$python" -m src.kernel --out-dir "$kernel_dir" ${build[@]+"${build[@]}"}
exec "$python" -m src.kaggle push-kernel "$kernel_dir" ${follow[@]+"${follow[@]}"}
