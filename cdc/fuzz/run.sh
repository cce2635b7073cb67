#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/), seeds their corpora from the captured
# fixtures and runs each for SECONDS (default 30: the CI short run).
#   cdc/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-30}"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTENANTSYNC_FUZZ=ON >/dev/null
cmake --build build-fuzz --target pgoutput_fuzz wal2json_fuzz
corpus=build-fuzz/cdc/corpus
mkdir -p "$corpus/pgoutput" "$corpus/wal2json"
i=0
while read -r _lsn hex; do
  printf '%s' "$hex" | xxd -r -p >"$corpus/pgoutput/seed$i"; i=$((i + 1))
done <cdc/testdata/zoo.pgoutput.hex
# Protocol 2 (0xFE): a stream block with a streamed Insert, then a subtransaction abort and a
# stream commit.
printf '%s' "fe" "0006" "53000002bc01" "000c" "49000002bd00004000" "4e0000" "0001" "45" \
  "0009" "41000002bc000002bd" "001e" "63000002bc00" "0000000001000000" "0000000001000040" \
  "0000000000000000" | xxd -r -p >"$corpus/pgoutput/seed-v2"
i=0
while read -r _lsn json; do
  printf '%s' "$json" >"$corpus/wal2json/seed$i"; i=$((i + 1))
done <cdc/testdata/zoo.wal2json.jsonl
cut -d' ' -f2- cdc/testdata/zoo.wal2json.jsonl >"$corpus/wal2json/all"
failed=0
for f in pgoutput wal2json; do
  echo "== ${f}_fuzz for ${secs}s"
  # -rss_limit_mb / -malloc_limit_mb: an allocation larger than 64 MB from inputs of at most
  # 64 KB is a finding (unbounded allocation from a count read off the wire). A finding (crash,
  # sanitizer report, leak, timeout, OOM) makes the fuzzer exit non-zero, and so this script;
  # the reproducer is left in build-fuzz/cdc/ (crash-*, leak-*, oom-*, timeout-*).
  log=build-fuzz/cdc/${f}_fuzz.log
  if build-fuzz/cdc/${f}_fuzz "$corpus/$f" -max_total_time="$secs" -max_len=65536 \
      -rss_limit_mb=1024 -malloc_limit_mb=64 -print_final_stats=1 \
      -artifact_prefix=build-fuzz/cdc/ >"$log" 2>&1; then
    grep -E "stat::number_of_executed_units|stat::peak_rss|Done" "$log" || true
  else
    echo "${f}_fuzz found a problem:" >&2
    grep -E -A30 "ERROR|SUMMARY|Test unit written" "$log" | head -60 >&2 || tail -40 "$log" >&2
    failed=1
  fi
done
exit "$failed"
