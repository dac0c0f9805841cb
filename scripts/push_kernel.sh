#!/usr/bin/env bash
# Build the Kaggle kernel (python -m src.kernel) and push it with the kaggle CLI.
#
#   scripts/push_kernel.sh [python -m src.kernel flags, e.g. --folds 5 --gpu]
#
# The kernel is written into $KERNEL_DIR (default kernel/). When it has run on Kaggle:
#   kaggle kernels output USER/SLUG -p submissions/kernel
#   python -m src.upload submissions/kernel/submission.csv -m "kernel run"
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=kaggle_cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/kaggle_cli.sh"

for argument in "$@"; do
  case "$argument" in
    -h | --help)
      echo "usage: scripts/push_kernel.sh [python -m src.kernel flags]  (KERNEL_DIR sets the folder, default kernel/)"
      cd "$REPO_ROOT" && exec "$PYTHON" -m src.kernel --help
      ;;
    --out-dir*) fail "set KERNEL_DIR=DIR instead of passing --out-dir" ;;
  esac
done
kernel_dir="$(absolute_path "${KERNEL_DIR:-kernel}")"
cd "$REPO_ROOT"
require_kaggle
"$PYTHON" -m src.kernel --out-dir "$kernel_dir" "$@" || exit 2
trap 'rm -f "$KAGGLE_LOG"' EXIT

echo "pushing $kernel_dir with the kaggle CLI ..."
run_kaggle "push the kernel" kernels push -p "$kernel_dir"
if grep -q "Kernel push error" "$KAGGLE_LOG"; then
  fail "kaggle could not push the kernel: $(grep -m 1 "Kernel push error" "$KAGGLE_LOG")"
fi
cat "$KAGGLE_LOG"
kernel_id="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$kernel_dir/kernel-metadata.json")"
echo "when it has finished: kaggle kernels output $kernel_id -p submissions/kernel"
echo "then submit it:       python -m src.upload submissions/kernel/submission.csv -m \"kernel $kernel_id\""
