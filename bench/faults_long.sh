#!/usr/bin/env bash
# The long run of the fault suite (issue 9): the CI-sized tests/faults_test with more faults and a
# longer outage. Prints each test's counts (faults injected and survived, rows compared,
# differences) and exits non-zero if any test failed.
#   bench/faults_long.sh [--kills 20] [--target-down-seconds 180] [--repeat 1]
# Needs a built tree (ops/setup.sh); starts its own throwaway PostgreSQL clusters.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=20 down=180 repeat=1
while (($#)); do
  case "$1" in
    --kills) kills=$2; shift 2 ;;
    --target-down-seconds) down=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "faults_long: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bin=${BUILD:-build}/tests/faults_test
[[ -x $bin ]] || { echo "faults_long: $bin not found; run ops/setup.sh first" >&2; exit 2; }
export TENANTSYNC_FAULT_KILLS=$kills TENANTSYNC_FAULT_TARGET_DOWN_SECONDS=$down
"$bin" --gtest_repeat="$repeat" 2>&1 | grep -E '^\[ +(RUN|OK|FAILED|PASSED) +\]|^faults:|^network faults:|^target down|^disk full|^damaged state|rows compared|Failure' 
exit "${PIPESTATUS[0]}"
