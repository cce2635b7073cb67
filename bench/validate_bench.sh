#!/usr/bin/env bash
# validate --full against pulling both tables through the client, on pgbench_accounts.
#
#   bench/validate_bench.sh [SCALE]        default SCALE 30 (3 million accounts)
#
# Starts two throwaway PostgreSQL 15 clusters (source, target) under a temp directory (as the
# `postgres` user when run as root), loads `pgbench -i -s SCALE` into both and moves the target's
# pgbench_accounts into schema tenant_bench, so the two tables are equal. Then it times:
#   1. tenantsync validate --full (counts + in-server checksum diff; samples off), equal tables;
#   2. the same after 10 rows of the target were changed (O(differences) data);
#   3. the baseline: COPY (SELECT * ... ORDER BY aid) TO STDOUT from both servers at once,
#      compared with cmp (what a client-side comparison must at least move and read).
# Bytes moved to the client: validate's own count of result bytes (its JSON report), and the size
# of both COPY streams for the baseline. Needs a built tenantsync (BUILD=build by default).
# Not a test: prints the figures recorded in bench/RESULTS.md ("Validate").
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-30}
BUILD=${BUILD:-build}
BIN=${TENANTSYNC_BIN:-$BUILD/ops/tenantsync}
PGBIN=${TENANTSYNC_PG_BIN:-/usr/lib/postgresql/15/bin}
[[ -x "$BIN" ]] || { echo "validate_bench: no $BIN; build first (ops/setup.sh)" >&2; exit 2; }

SRC=""; TGT=""
WORK=$(mktemp -d /tmp/tenantsync-vbench-XXXXXX)
chmod 755 "$WORK"
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  if [[ -n "${KEEP:-}" ]]; then echo "kept: $WORK (source $SRC, target $TGT)"; return; fi
  for c in source target; do
    [[ -f "$WORK/$c/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$WORK/$c" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] && chown postgres "$WORK"

declare -A PORT
for c in source target; do
  PORT[$c]=$(free_port)
  as_pg "$PGBIN/initdb" -D "$WORK/$c" -U postgres --auth=trust >/dev/null
  cat >> "$WORK/$c/postgresql.conf" <<CONF
port = ${PORT[$c]}
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/$c'
fsync = off
shared_buffers = 512MB
wal_level = logical
CONF
  as_pg "$PGBIN/pg_ctl" -D "$WORK/$c" -l "$WORK/$c.log" -w start >/dev/null
done
SRC="postgresql://postgres@127.0.0.1:${PORT[source]}/postgres"
TGT="postgresql://postgres@127.0.0.1:${PORT[target]}/postgres"

echo "loading pgbench -s $SCALE into both servers..."
"$PGBIN/pgbench" -i -q -s "$SCALE" "$SRC" >/dev/null 2>&1 &
"$PGBIN/pgbench" -i -q -s "$SCALE" "$TGT" >/dev/null 2>&1
wait
psql -qX "$TGT" -c "CREATE SCHEMA tenant_bench" -c "ALTER TABLE pgbench_accounts SET SCHEMA tenant_bench" -c "VACUUM ANALYZE tenant_bench.pgbench_accounts" >/dev/null
psql -qX "$SRC" -c "VACUUM ANALYZE pgbench_accounts" >/dev/null
ROWS=$(psql -qAtX "$SRC" -c "SELECT count(*) FROM pgbench_accounts")

cat > "$WORK/bench.yaml" <<YAML
pipeline: bench
source: {url: "$SRC", schema: public}
target: {url: "$TGT", schema: tenant_bench}
tenant: {slug: bench}
YAML

now() { date +%s.%N; }
run_validate() {  # $1 = label
  local t0 t1 rc=0
  t0=$(now)
  "$BIN" -c "$WORK/bench.yaml" validate --full --sample 0 --tables pgbench_accounts \
    --json "$WORK/report.json" > "$WORK/validate.out" || rc=$?
  t1=$(now)
  local bytes
  bytes=$(python3 -c "import json; j=json.load(open('$WORK/report.json')); b=j['bytes_fetched']; print(b['source']+b['target'])")
  printf '%-44s %8.2f s  %12s bytes  exit %d\n' "$1" "$(echo "$t1 - $t0" | bc)" "$bytes" "$rc"
  echo "$t1 - $t0" | bc > "$WORK/last_seconds"
}

echo "pgbench_accounts: $ROWS rows on each side"
[[ -n "${SETUP_ONLY:-}" ]] && exit 0
# Baseline on equal tables: both servers stream the whole table, ordered by key, at the same
# time; cmp reads both to the end. A lower bound for any client-side comparison (which must also
# parse rows and report every difference, and cannot stop early).
t0=$(now)
cmp <(psql -qAtX "$SRC" -c "COPY (SELECT * FROM pgbench_accounts ORDER BY aid) TO STDOUT" | tee >(wc -c > "$WORK/src_bytes")) \
    <(psql -qAtX "$TGT" -c "COPY (SELECT * FROM tenant_bench.pgbench_accounts ORDER BY aid) TO STDOUT" | tee >(wc -c > "$WORK/tgt_bytes")) \
    > /dev/null
t1=$(now)
sleep 0.5
BASE_BYTES=$(( $(cat "$WORK/src_bytes") + $(cat "$WORK/tgt_bytes") ))
BASE=$(echo "$t1 - $t0" | bc)
printf '%-44s %8.2f s  %12s bytes\n' "client pull: COPY both + cmp (equal tables)" "$BASE" "$BASE_BYTES"

run_validate "validate --full (equal tables)"
V1=$(cat "$WORK/last_seconds")
run_validate "validate --full (equal tables, 2nd run)"
V2=$(cat "$WORK/last_seconds")
psql -qX "$TGT" -c "UPDATE tenant_bench.pgbench_accounts SET abalance = abalance + 1 WHERE aid % (($ROWS / 10)) = 7" >/dev/null
run_validate "validate --full (10 rows differ)"
grep -E "^ +different" "$WORK/validate.out" | head -3 | sed 's/^/    /'
VBEST=$(echo "if ($V1 < $V2) $V1 else $V2" | bc)
printf 'speed-up on equal tables (best of 2 runs): %.1fx\n' "$(echo "$BASE / $VBEST" | bc -l)"
