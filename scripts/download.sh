#!/usr/bin/env bash
# Download the Digit Recognizer files with the official kaggle CLI, check them, and move
# them into DIR (default data/) only when all is well.
#
#   scripts/download.sh [DIR] [--force]
#
# Idempotent: when DIR already holds valid files it does nothing; --force downloads again.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=kaggle_cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/kaggle_cli.sh"

readonly COMPETITION="digit-recognizer"
readonly USAGE="usage: scripts/download.sh [DIR] [--force]  (DIR defaults to data/)"

directory=""
force=0
for argument in "$@"; do
  case "$argument" in
    --force) force=1 ;;
    -h | --help)
      echo "$USAGE"
      exit 0
      ;;
    -*) fail "unknown option $argument; $USAGE" ;;
    *)
      [[ -z "$directory" ]] || fail "more than one DIR given; $USAGE"
      directory="$argument"
      ;;
  esac
done
directory="$(absolute_path "${directory:-data}")"
cd "$REPO_ROOT"

if [[ "$force" == 0 ]]; then
  if problem="$("$PYTHON" -m src.kaggle_io check "$directory" 2>&1)"; then
    echo "$directory already holds train.csv, test.csv and sample_submission.csv; nothing to do (--force downloads again)"
    exit 0
  elif [[ -d "$directory" ]]; then
    echo "${problem#error: }: downloading the files again"
  fi
fi

require_kaggle
workspace="$(mktemp -d)"
trap 'rm -rf "$workspace" "$KAGGLE_LOG"' EXIT

echo "downloading the $COMPETITION files with the kaggle CLI ..."
run_kaggle "download the competition's files" competitions download -c "$COMPETITION" -p "$workspace"
"$PYTHON" -m src.kaggle_io install "$workspace/$COMPETITION.zip" "$directory" || exit 2
echo "done: the competition's files are in $directory"
