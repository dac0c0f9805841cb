# shellcheck shell=bash
# Shared by scripts/download.sh and scripts/push_kernel.sh (sourced, not run):
# find the repository, check the kaggle CLI and credentials, run the CLI and turn
# its failures into one clear line. Needs `set -euo pipefail` in the caller.

readonly RULES_URL="https://www.kaggle.com/competitions/digit-recognizer/rules"
readonly TOKEN_URL="https://www.kaggle.com/settings/api"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
# The Python that runs `python -m src...`; the tests point it at their interpreter.
PYTHON="${PYTHON:-python3}"
# Where run_kaggle leaves the CLI's output (stdout and stderr together).
KAGGLE_LOG=""

fail() {
  echo "error: $*" >&2
  exit 1
}

# An absolute path for $1, so it survives the `cd` into the repository.
absolute_path() {
  case "$1" in
    /*) echo "$1" ;;
    *) echo "$PWD/$1" ;;
  esac
}

# The kaggle CLI is installed and some credentials are configured.
require_kaggle() {
  command -v kaggle >/dev/null 2>&1 \
    || fail "the kaggle CLI is not installed (or not on PATH); install it with: pip install kaggle"
  (cd "$REPO_ROOT" && "$PYTHON" -m src.kaggle_io credentials) || exit 2
}

# run_kaggle ACTION ARGS...: run `kaggle ARGS...`; on failure explain it and exit 1.
run_kaggle() {
  local action="$1"
  shift
  KAGGLE_LOG="$(mktemp)"
  if ! kaggle "$@" >"$KAGGLE_LOG" 2>&1; then
    explain_kaggle_failure "$action" "$KAGGLE_LOG"
  fi
}

# explain_kaggle_failure ACTION LOG: one line saying what went wrong and what to do; exits 1.
explain_kaggle_failure() {
  local action="$1" log="$2" detail
  detail="$(grep -m 1 -v '^[[:space:]]*$' "$log" | cut -c 1-200 || true)"
  if grep -q "Authentication required\|401 Client Error" "$log"; then
    fail "Kaggle did not accept your credentials to $action (HTTP 401); check ~/.kaggle/kaggle.json," \
      "KAGGLE_USERNAME/KAGGLE_KEY or KAGGLE_API_TOKEN, or create a new token at $TOKEN_URL"
  elif grep -q "accept this competition's rules\|403 Client Error\|You don't have access" "$log"; then
    fail "Kaggle refused to $action (HTTP 403: $detail); accept the competition's rules at $RULES_URL" \
      "with the account your token belongs to, then run this again"
  elif grep -q "Max retries exceeded\|Failed to establish\|Failed to resolve\|NameResolution\|Connection refused\|Network is unreachable\|timed out\|ConnectionError\|ProxyError" "$log"; then
    fail "could not reach Kaggle to $action: the network or the service is down;" \
      "check your internet connection and try again"
  elif grep -q "problem on Kaggle's side\|50[0-9] Server Error" "$log"; then
    fail "Kaggle's service failed to $action ($detail); this is on Kaggle's side, try again later"
  fi
  fail "kaggle could not $action: $detail"
}
