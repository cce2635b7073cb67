#!/usr/bin/env bash
# The README's test command: installs what is missing, builds (warnings are errors) and runs the
# whole test suite with ctest (unit tests and integration tests against throwaway PostgreSQL
# clusters that the tests start and stop themselves).
#   ops/test.sh                 all tests
#   ops/test.sh -L unit         only unit tests (ctest arguments pass through)
#   TENANTSYNC_ASAN=1 ops/test.sh   the same under AddressSanitizer + UndefinedBehaviorSanitizer
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${TENANTSYNC_ASAN:-0}" == 1 ]]; then
  ops/setup.sh --asan
  build=build-asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
else
  ops/setup.sh
  build=build
fi
exec ctest --test-dir "$build" --output-on-failure --timeout 900 -j2 "$@"
