#!/usr/bin/env bash
# Catch-up throughput of the apply side, in one run on one machine (compare only inside a run):
#   decode   pg_recvlogical -f /dev/null over the backlog (pgoutput): the walsender's decode limit
#   native   a subscription (copy_data = false, over a pg_dump of the source) created before the
#            backlog, enabled after it
#   tenant   tenantsync stream started after the backlog (snapshot taken before it)
# over (1) a pgbench -n -t N backlog and (2) one huge transaction: an UPDATE of every row of
# pgbench_accounts (scale 10 = 1,000,000 rows), which tenantsync applies through its bulk path.
#
#   bench/apply_bench.sh [--scale 10] [--transactions 20000] [--clients 4] [--keep]
# Needs a built tenantsync (ops/setup.sh) and PostgreSQL 15 (initdb, pg_ctl, pgbench,
# pg_recvlogical). Prints one table; writes nothing outside bench/.run/ (removed unless --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scale=10 transactions=20000 clients=4 keep=0
while (($#)); do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --transactions) transactions=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "apply_bench: unknown option '$1'" >&2; exit 2 ;;
  esac
done

bin=${TENANTSYNC_BINARY:-$root/build/ops/tenantsync}
[[ -x $bin ]] || { echo "apply_bench: $bin not found; run ops/setup.sh first" >&2; exit 2; }
pgbin=/usr/lib/postgresql/15/bin
run=$root/bench/.run
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

start_cluster() {  # name port
  local dir=$run/$1
  as_pg "$pgbin/initdb" -D "$dir" -U postgres -A trust --no-sync >/dev/null
  cat >>"$dir/postgresql.conf" <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_worker_processes = 16
shared_buffers = 256MB
max_wal_size = 4GB
fsync = off
synchronous_commit = off
CONF
  as_pg "$pgbin/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null
}
cleanup() {
  [[ -n ${bridge_pid:-} ]] && kill "$bridge_pid" 2>/dev/null && wait "$bridge_pid" 2>/dev/null
  for c in source target; do
    [[ -f $run/$c/postmaster.pid ]] && as_pg "$pgbin/pg_ctl" -D "$run/$c" -m immediate -w stop >/dev/null 2>&1 || true
  done
  ((keep)) || rm -rf "$run"
}
rm -rf "$run"; mkdir -p "$run"; [[ $(id -u) == 0 ]] && chown postgres "$run"
trap cleanup EXIT

sp=$(free_port); start_cluster source "$sp"
tp=$(free_port); start_cluster target "$tp"
S="postgresql://postgres@127.0.0.1:$sp/bench"
T="postgresql://postgres@127.0.0.1:$tp/tenant"
N="postgresql://postgres@127.0.0.1:$tp/native"
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
q() { psql -At -d "$1" -c "$2"; }

as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$sp" -U postgres bench
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$tp" -U postgres tenant
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$tp" -U postgres native
pgbench -q -i -s "$scale" "$S" >/dev/null 2>&1
q "$S" "ALTER TABLE pgbench_history REPLICA IDENTITY FULL" >/dev/null
# The native subscriber starts from the same rows as tenantsync's snapshot (schema and data, taken
# before the backlog): an UPDATE must find its row on both sides, or native would be timed
# skipping updates of missing rows instead of applying them.
pg_dump -d "$S" | psql -d "$N" >/dev/null

cat >"$run/bench.yaml" <<YAML
pipeline: bench
source: {url: "$S", schema: public, plugin: pgoutput, publication: ts_bench, slot: ts_bench}
target: {url: "$T", schema: tenant_bench}
tenant: {slug: bench}
state_dir: $run/state
ops: {listen: "127.0.0.1:0"}
snapshot: {workers: 2}
YAML

# Reference slots and the native subscription exist before the backlog, so all three see it.
q "$S" "CREATE PUBLICATION native_pub FOR ALL TABLES" >/dev/null
q "$S" "SELECT pg_create_logical_replication_slot('decode_slot', 'pgoutput')" >/dev/null
q "$N" "CREATE SUBSCRIPTION native_sub CONNECTION 'host=127.0.0.1 port=$sp dbname=bench user=postgres' PUBLICATION native_pub WITH (copy_data = false, enabled = false)" >/dev/null 2>&1
# tenantsync: snapshot now (slot + initial copy), stream later.
"$bin" -c "$run/bench.yaml" snapshot >"$run/snapshot.log" 2>&1

# Waits until the target has applied everything up to $2 (tenantsync: progress row; native:
# the subscription's slot confirmed position).
wait_tenant() { until [[ $(q "$T" "SELECT coalesce(applied_lsn >= '$1'::pg_lsn, false) FROM _tenantsync.progress WHERE pipeline = 'bench'" 2>/dev/null) == t ]]; do sleep 0.05; done; }
wait_native() { until [[ $(q "$S" "SELECT confirmed_flush_lsn >= '$1'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'native_sub'") == t ]]; do sleep 0.05; done; }

measure() {  # label; the backlog is in the source now
  local label=$1 end t0 t1 decode native tenant
  end=$(q "$S" "SELECT pg_current_wal_lsn()")
  q "$S" "SELECT pg_switch_wal()" >/dev/null
  t0=$(now); pg_recvlogical -d "$S" --slot decode_slot --start --endpos="$end" -o proto_version=1 -o publication_names=native_pub -f /dev/null; t1=$(now)
  decode=$(secs "$t0" "$t1")
  t0=$(now); q "$N" "ALTER SUBSCRIPTION native_sub ENABLE" >/dev/null; wait_native "$end"; t1=$(now)
  q "$N" "ALTER SUBSCRIPTION native_sub DISABLE" >/dev/null
  native=$(secs "$t0" "$t1")
  # A marker transaction after `end`: the applier's last commit LSN passes `end` once it has
  # applied the whole backlog.
  q "$S" "UPDATE pgbench_branches SET filler = filler WHERE bid = 1" >/dev/null
  t0=$(now); "$bin" -c "$run/bench.yaml" stream >"$run/stream-$label.log" 2>&1 & bridge_pid=$!
  wait_tenant "$end"
  t1=$(now)
  kill -INT "$bridge_pid"; wait "$bridge_pid" || true; bridge_pid=
  tenant=$(secs "$t0" "$t1")
  printf '%-22s %10s %10s %10s   tenantsync/native %s   tenantsync/decode %s\n' "$label" "$decode" "$native" "$tenant" \
    "$(python3 -c "print(f'{$native/$tenant:.2f}x faster')")" "$(python3 -c "print(f'{$decode/$tenant:.2f}x of the decode rate')")"
}

printf '%-22s %10s %10s %10s   (seconds to catch up; smaller is better)\n' backlog decode native tenantsync
pgbench -n -t "$((transactions / clients))" -c "$clients" -j "$clients" "$S" >/dev/null 2>&1
measure "pgbench x$transactions"
q "$S" "UPDATE pgbench_accounts SET abalance = abalance + 1" >/dev/null
measure "UPDATE $((scale * 100000)) rows"
