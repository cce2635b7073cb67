#!/usr/bin/env bash
# Catch-up throughput of the apply side, in one run on one machine (compare only inside a run):
#   decode   pg_recvlogical -f /dev/null over the backlog (pgoutput): the walsender's decode limit
#   native   a subscription (copy_data = false, over a pg_dump of the source) created before the
#            backlog, enabled after it
#   tenant   tenantsync stream started after the backlog (snapshot taken before it)
# over (1) a pgbench -n -t N backlog, (2) a RAWDOG backlog (`rawdog workload`, R transactions of
# the shop's change mix over 14 tables, in a second database; tenantsync applies the transforms of
# examples/rawdog.yaml: types, added and renamed columns, AES-256-GCM of 6 columns) and (3) one huge
# transaction: an UPDATE of every row of pgbench_accounts (scale 10 = 1,000,000 rows), which
# tenantsync applies through its bulk path, and (3b, phase keyless) one transaction inserting
# 20,000 rows into pgbench_history (no key, REPLICA IDENTITY FULL, every row there 4 times), then
# one deleting half of them and one updating a third of the rest, which native PostgreSQL 15
# applies with a scan of the table per row.
# Each catch-up row also gives transactions/s and
# changes/s (rows inserted + updated + deleted on the source, from pg_stat_user_tables).
# Every timed window (decode, native, tenantsync; replay; lag) starts on quiet clusters:
# VACUUM (ANALYZE) of every database, a CHECKPOINT, no autovacuum worker running (settle).
# pgcopydb (if installed): its follow mode over both backlogs too (`pgcopydb stream setup`
# before the backlog, `pgcopydb follow --endpos` after it, into a third database with the same
# start), with a 300 s limit, and whether its target then equals the source. pgcopydb 0.10 splits
# a transaction that crosses a WAL segment boundary and then fails ("BUG: logical message xid");
# `--wal-segsize 1024` (both clusters) keeps the backlog in one segment. Its apply step looks for
# work every 10 s, which is part of its time.
# Then (4) end-to-end lag under a steady load and (5) replay of a backlog from the journal alone:
#
#   lag     `pgbench -R RATE -T SECONDS` (tpcb-like, plus ~1 in 51 transactions an INSERT into
#           lag_probe) while a running tenantsync stream and the enabled native subscription
#           apply it, both at the same time. A probe's source commit time is
#           pg_xact_commit_timestamp(xmin) on the source (track_commit_timestamp = on). Its
#           target time is when it became visible there: one psql per target database polls
#           `SELECT clock_timestamp(), max(id) FROM lag_probe` every 20 ms (\watch), and a probe
#           is visible at the first poll whose max(id) reaches it (both consumers keep commit
#           order; ids inverted against commit order by concurrent clients are rare at ~10
#           probes/s). One machine, one clock. Lag = visible - source commit: the whole path
#           (decode, send, journal, batching, apply, commit) plus up to one poll interval, the
#           same for both. (The target's own commit timestamp can not serve: native's apply
#           worker records the source's commit time as its commit timestamp.) For tenantsync
#           the script also prints target commit time - source commit time, exact, and for
#           native the time its apply worker inserted the probe (a trigger, ENABLE ALWAYS, stamps
#           it; the worker commits right after): exact too, and without the pollers' phase
#           difference (two \watch loops started apart see the same commit up to 20 ms apart).
#           The exact pair is the one the goal is judged by; it slightly favours native.
#   replay  a pgbench -n -t N backlog is journaled by `tenantsync stream` whose target URL
#           points at a closed port (the applier waits; the receiver journals and acknowledges),
#           then the source is STOPPED and `tenantsync replay --from <the target's position>`
#           applies the journal (time includes the process start; replay reads the journal in place);
#           native's catch-up of the same backlog (subscription disabled during it) is timed
#           before the source stops.
#
#   bench/apply_bench.sh [--scale 10] [--transactions 20000] [--clients 4] [--rate 500]
#                        [--lag-seconds 60] [--phases catchup,rawdog,huge,keyless,lag,replay]
#                        [--keep]
#                        [--rawdog-scale 5] [--rawdog-transactions 100000] [--wal-segsize MB]
#                        [--yaml 'LINES'] [--lag-log-level debug] [--catchup-log-level debug]
#                        [--clusters-dir DIR] [--statements N]
# --rawdog-transactions R: the RAWDOG backlog (default 100,000: ~4 s of decode here). At 20,000
# (~1 s) the bridge's start and its last batch are ~10-25% of the time, and two runs of the same
# build differed by up to 1.5x: the rate that a long catch-up runs at is what R = 100,000 shows.
# --yaml appends lines to the pipeline's config (experiments: 'journal: {group_commit: false}');
# --lag-log-level debug logs every batch of the lag phase's stream and prints their sizes and times.
# --catchup-log-level debug does the same for each catch-up's stream (bench/.run/stream-*.log, --keep).
# --statements N loads pg_stat_statements on the target and prints, after each tenantsync window
# (catch-ups and lag), the N statements it spent most time in (executing + planning; wall time,
# so it includes waiting for a core): calls, ms, rows. Off by default (it costs the target a
# little on every statement).
# --clusters-dir DIR puts the two throwaway clusters (fsync = off) in DIR, e.g. /dev/shm: their
# dirty pages are then not written back to the disk that holds the journal, whose fsyncs they
# otherwise stall by 50-150 ms every few seconds. The journal (state_dir) stays in bench/.run.
# The binary: $TENANTSYNC_BINARY, else build/ops/tenantsync.
# Needs a built tenantsync and RAWDOG fixture (ops/setup.sh) and PostgreSQL 15 (initdb, pg_ctl,
# pgbench, pg_recvlogical). Prints one table; writes nothing outside bench/.run/ (removed unless --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scale=10 transactions=20000 clients=4 keep=0 rate=500 lag_seconds=60 phases=catchup,rawdog,huge,keyless,lag,replay
extra_yaml= lag_log_level=info catchup_log_level=info cdir= rawdog_scale=5 walseg= statements=0
rawdog_transactions=100000
while (($#)); do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --transactions) transactions=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --lag-seconds) lag_seconds=$2; shift 2 ;;
    --phases) phases=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --yaml) extra_yaml=$2; shift 2 ;;
    --lag-log-level) lag_log_level=$2; shift 2 ;;
    --catchup-log-level) catchup_log_level=$2; shift 2 ;;
    --clusters-dir) cdir=$2; shift 2 ;;
    --rawdog-scale) rawdog_scale=$2; shift 2 ;;
    --rawdog-transactions) rawdog_transactions=$2; shift 2 ;;
    --wal-segsize) walseg=$2; shift 2 ;;
    --statements) statements=$2; shift 2 ;;
    -h|--help) sed -n '2,72p' "$0"; exit 0 ;;
    *) echo "apply_bench: unknown option '$1'" >&2; exit 2 ;;
  esac
done

bin=${TENANTSYNC_BINARY:-$root/build/ops/tenantsync}
[[ -x $bin ]] || { echo "apply_bench: $bin not found; run ops/setup.sh first" >&2; exit 2; }
rawdog=$root/build/tests/rawdog
if [[ ",$phases," == *,rawdog,* && ! -x $rawdog ]]; then
  echo "apply_bench: $rawdog not found (the rawdog phase loads and changes the RAWDOG data with it); run ops/setup.sh first" >&2
  exit 2
fi
pgbin=/usr/lib/postgresql/15/bin
run=$root/bench/.run
cdir=${cdir:-$run}
has_phase() { [[ ",$phases," == *",$1,"* ]]; }
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

start_cluster() {  # name port
  local dir=$cdir/$1
  as_pg "$pgbin/initdb" -D "$dir" -U postgres -A trust --no-sync ${walseg:+--wal-segsize=$walseg} >/dev/null
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
track_commit_timestamp = on
CONF
  if ((statements > 0)); then
    printf '%s\n' "shared_preload_libraries = 'pg_stat_statements'" \
      'pg_stat_statements.track_planning = on' >>"$dir/postgresql.conf"
  fi
  as_pg "$pgbin/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null
}
cleanup() {
  [[ -n ${bridge_pid:-} ]] && kill "$bridge_pid" 2>/dev/null && wait "$bridge_pid" 2>/dev/null
  for c in source target; do
    [[ -f $cdir/$c/postmaster.pid ]] && as_pg "$pgbin/pg_ctl" -D "$cdir/$c" -m immediate -w stop >/dev/null 2>&1 || true
  done
  ((keep)) || rm -rf "$run" "$cdir/source" "$cdir/target"
}
rm -rf "$run" "$cdir/source" "$cdir/target"; mkdir -p "$run" "$cdir"
[[ $(id -u) == 0 ]] && chown postgres "$run" "$cdir"
trap cleanup EXIT

sp=$(free_port); start_cluster source "$sp"
tp=$(free_port); start_cluster target "$tp"
S="postgresql://postgres@127.0.0.1:$sp/bench"
T="postgresql://postgres@127.0.0.1:$tp/tenant"
N="postgresql://postgres@127.0.0.1:$tp/native"
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }
q() { psql -At -d "$1" -c "$2"; }
# --statements: forget the target database's statement statistics, then print its top ones.
statements_reset() {
  ((statements > 0)) || return 0
  q "$1" "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()" >/dev/null
}
statements_top() {
  ((statements > 0)) || return 0
  echo "  target statements by time (--statements $statements):"
  psql -d "$1" -c "SELECT calls, round(total_exec_time::numeric, 1) AS exec_ms, round(total_plan_time::numeric, 1) AS plan_ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS statement FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%clock_timestamp()%' ORDER BY total_exec_time + total_plan_time DESC LIMIT $statements" | sed 's/^/    /'
}

as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$sp" -U postgres bench
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$tp" -U postgres tenant
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$tp" -U postgres native
pgbench -q -i -s "$scale" "$S" >/dev/null 2>&1
q "$S" "ALTER TABLE pgbench_history REPLICA IDENTITY FULL" >/dev/null
q "$S" "CREATE TABLE lag_probe (id bigserial PRIMARY KEY, t timestamptz NOT NULL)" >/dev/null
# pgcopydb's slot, replication origin and sentinel table (in the source: so before the dumps below,
# which every subscriber starts from) exist before the backlog. Its setup writes to $TMPDIR.
pgcopydb_setup() {  # source URL, target URL (a new database)
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$tp" -U postgres "${2##*/}"
  mkdir -p "$run/pgcopydb-tmp"
  TMPDIR=$run/pgcopydb-tmp pgcopydb stream setup --source "$1" --target "$2" >>"$run/pgcopydb-setup.log" 2>&1
  # The publications FOR ALL TABLES below include it; a table they publish needs an identity.
  q "$1" "ALTER TABLE pgcopydb.sentinel REPLICA IDENTITY FULL" >/dev/null
  pg_dump -d "$1" | psql -d "$2" >/dev/null
}
P="postgresql://postgres@127.0.0.1:$tp/pgcopydb"
use_pgcopydb=0
command -v pgcopydb >/dev/null && use_pgcopydb=1
if has_phase catchup && ((use_pgcopydb)); then pgcopydb_setup "$S" "$P"; fi
# The native subscriber starts from the same rows as tenantsync's snapshot (schema and data, taken
# before the backlog): an UPDATE must find its row on both sides, or native would be timed
# skipping updates of missing rows instead of applying them.
pg_dump -d "$S" | psql -d "$N" >/dev/null
# Native's apply time of each lag probe: a trigger that fires under the apply worker
# (ENABLE ALWAYS) stamps the row as the worker inserts it, just before that transaction commits
# (the worker commits each source transaction right after its changes).
psql -d "$N" >/dev/null <<'SQL'
ALTER TABLE lag_probe ADD COLUMN applied_at timestamptz;
CREATE FUNCTION lag_probe_stamp() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.applied_at := clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER lag_probe_stamp BEFORE INSERT ON lag_probe FOR EACH ROW EXECUTE FUNCTION lag_probe_stamp();
ALTER TABLE lag_probe ENABLE ALWAYS TRIGGER lag_probe_stamp;
SQL

cat >"$run/bench.yaml" <<YAML
pipeline: bench
source: {url: "$S", schema: public, plugin: pgoutput, publication: ts_bench, slot: ts_bench}
target: {url: "$T", schema: tenant_bench}
tenant: {slug: bench}
state_dir: $run/state
ops: {listen: "127.0.0.1:0"}
snapshot: {workers: 2}
$extra_yaml
YAML

# Reference slots and the native subscription exist before the backlog, so all three see it.
q "$S" "CREATE PUBLICATION native_pub FOR ALL TABLES" >/dev/null
q "$S" "SELECT pg_create_logical_replication_slot('decode_slot', 'pgoutput')" >/dev/null
q "$N" "CREATE SUBSCRIPTION native_sub CONNECTION 'host=127.0.0.1 port=$sp dbname=bench user=postgres' PUBLICATION native_pub WITH (copy_data = false, enabled = false)" >/dev/null 2>&1
# tenantsync: snapshot now (slot + initial copy), stream later.
"$bin" -c "$run/bench.yaml" snapshot >"$run/snapshot.log" 2>&1

# Waits until the target has applied everything up to $2 (tenantsync: progress row; native:
# the subscription's slot confirmed position). One psql session polls every 20 ms (\watch):
# a finish is seen ~10 ms late on average, the same for both (every 50 ms made it ~25 ms, a
# tenth of the shortest catch-up). A new psql (and server backend) per poll cost the 2-core
# machine ~10% of its CPU while both consumers were being timed. It ends at the first 't' (grep
# exits, psql gets SIGPIPE); an error (the progress table not there yet) ends it too, and it
# starts again.
poll_until() {  # url query
  local f; f=$(mktemp "$run/poll.XXXXXX.sql")
  printf '%s\n\\watch 0.02\n' "$2" >"$f"
  until { command psql -X -At -d "$1" -f "$f" 2>/dev/null || true; } | grep -q -m1 '^t$'; do sleep 0.05; done
  rm -f "$f"
}
# The dataset the catch-up measure and the waits below work on: bench (pgbench) or rawdog.
use_dataset() {
  if [[ $1 == bench ]]; then
    DS=$S DT=$T DN=$N dslot=decode_slot dpub=native_pub dsub=native_sub dyaml=$run/bench.yaml dpipe=bench
    dmarker="UPDATE pgbench_branches SET filler = filler WHERE bid = 1"
  else
    DS=$RS DT=$RT DN=$RN dslot=decode_rawdog dpub=native_rawdog_pub dsub=native_rawdog_sub
    dyaml=$run/rawdog.yaml dpipe=rawdog dmarker="UPDATE bench_marker SET n = n + 1"
  fi
}
use_dataset bench
wait_tenant() { poll_until "$DT" "SELECT coalesce(applied_lsn >= '$1'::pg_lsn, false) FROM _tenantsync.progress WHERE pipeline = '$dpipe'"; }
wait_slot() { poll_until "$DS" "SELECT confirmed_flush_lsn >= '$1'::pg_lsn FROM pg_replication_slots WHERE slot_name = '$2'"; }
wait_native() { wait_slot "$1" "$dsub"; }
# Rows inserted, updated and deleted so far in the dataset's source database (the backends of a
# finished load have flushed their counts when they exited).
changes_now() { q "$DS" "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables WHERE relname <> 'bench_marker'"; }

# CPU seconds (user + system, all threads) a running process has used so far.
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# CPU seconds of the server processes whose pids a query returns (one per line), summed.
pids_cpu() {
  local p files=(); for p in $(q "$1" "$2"); do [[ -r /proc/$p/stat ]] && files+=("/proc/$p/stat"); done
  awk -v hz="$(getconf CLK_TCK)" '{ s += $14 + $15 } END { printf "%.2f", s / hz }' "${files[@]}" </dev/null
}
# Peak resident memory (MB) of a running process so far.
peak_rss_mb() { awk '/^VmHWM:/ { printf "%d", $2 / 1024 }' "/proc/$1/status"; }

# Each consumer is timed on quiet clusters. Without this, autovacuum's work on what an earlier
# consumer or workload left (native's 1,000,000 dead rows after the huge UPDATE, the source's,
# a dumped copy's first ANALYZE) ran inside a later consumer's window, seen at 0.25 s samples
# in 2 of 3 runs: tenantsync is timed after native, so it was the one charged. Each window
# now starts after VACUUM (ANALYZE) of every database and a CHECKPOINT (so both pay the same
# full-page images, not whichever a timed checkpoint happened to land in), with no autovacuum
# worker running.
settle() {  # port...
  local p i
  for p in "$@"; do
    as_pg "$pgbin/vacuumdb" -h 127.0.0.1 -p "$p" -U postgres --all --analyze -q
    q "postgresql://postgres@127.0.0.1:$p/postgres" "CHECKPOINT" >/dev/null
  done
  for p in "$@"; do
    for ((i = 0; i < 600; i++)); do
      [[ $(q "postgresql://postgres@127.0.0.1:$p/postgres" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'") == 0 ]] && break
      sleep 0.1
    done
  done
}

measure() {  # label transactions changes; the backlog is in the dataset's source now
  local label=$1 txns=$2 changes=$3 end t0 t1 decode native tenant cpu rss w0 w1 w2 wal nws nap tws tap
  # pgcopydb's --endpos (pgcopydb_follow): the backlog's end. pgcopydb 0.10's follow never ends
  # at an endpos past the last transaction it decodes (the settle's WAL has none it publishes).
  last_end=$(q "$DS" "SELECT pg_current_wal_insert_lsn()")
  settle "$sp" "$tp"
  end=$(q "$DS" "SELECT pg_current_wal_insert_lsn()")
  q "$DS" "SELECT pg_switch_wal()" >/dev/null
  t0=$(now); pg_recvlogical -d "$DS" --slot "$dslot" --start --endpos="$end" -o proto_version=1 -o publication_names="$dpub" -f /dev/null; t1=$(now)
  decode=$(secs "$t0" "$t1")
  w0=$(q "$DT" "SELECT pg_current_wal_lsn()")
  t0=$(now); q "$DN" "ALTER SUBSCRIPTION $dsub ENABLE" >/dev/null; wait_native "$end"; t1=$(now)
  # CPU of each consumer's server processes (both started for this catch-up): its walsender on
  # the source and its apply backend(s) on the target.
  nws=$(pids_cpu "$DS" "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$dsub' AND active_pid IS NOT NULL")
  nap=$(pids_cpu "$DN" "SELECT pid FROM pg_stat_subscription WHERE subname = '$dsub' AND pid IS NOT NULL")
  q "$DN" "ALTER SUBSCRIPTION $dsub DISABLE" >/dev/null
  native=$(secs "$t0" "$t1")
  settle "$tp"
  w1=$(q "$DT" "SELECT pg_current_wal_lsn()")
  # A marker transaction after `end`: the applier's last commit LSN passes `end` once it has
  # applied the whole backlog.
  q "$DS" "$dmarker" >/dev/null
  statements_reset "$DT"
  t0=$(now); "$bin" --log-level "$catchup_log_level" -c "$dyaml" stream >"$run/stream-$label.log" 2>&1 & bridge_pid=$!
  wait_tenant "$end"
  t1=$(now)
  cpu=$(cpu_secs "$bridge_pid") rss=$(peak_rss_mb "$bridge_pid")
  tws=$(pids_cpu "$DS" "SELECT pid FROM pg_stat_replication WHERE application_name LIKE 'tenantsync%'")
  tap=$(pids_cpu "$DT" "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'tenantsync-apply-%' OR application_name LIKE 'tenantsync-stage-%'")
  kill -INT "$bridge_pid"; wait "$bridge_pid" || true; bridge_pid=
  tenant=$(secs "$t0" "$t1")
  w2=$(q "$DT" "SELECT pg_current_wal_lsn()")
  wal="target WAL MB native $(q "$DT" "SELECT round(('$w1'::pg_lsn - '$w0'::pg_lsn) / 1048576)") tenantsync $(q "$DT" "SELECT round(('$w2'::pg_lsn - '$w1'::pg_lsn) / 1048576)")"
  printf '%-22s %10s %10s %10s   tenantsync/native %s   tenantsync/decode %s   tenantsync CPU %s s, peak RSS %s MB, %s\n' "$label" "$decode" "$native" "$tenant" \
    "$(python3 -c "print(f'{$native/$tenant:.2f}x faster')")" "$(python3 -c "print(f'{$decode/$tenant:.2f}x of the decode rate')")" "$cpu" "$rss" "$wal"
  python3 -c "
n, c = $txns, $changes
print(f'  {n} transactions, {c} changes; per second: ' + ', '.join(
    f'{w} {n / t:,.0f} txn/s {c / t:,.0f} changes/s' for w, t in
    (('decode', $decode), ('native', $native), ('tenantsync', $tenant))))
ws, ap, br, t = $tws, $tap, $cpu, $tenant
print(f'  CPU seconds: native walsender $nws + apply worker $nap; tenantsync walsender {ws} + '
      f'target backend(s) {ap} + bridge {br} = {ws + ap + br:.2f}, which 2 cores need at least '
      f'{(ws + ap + br) / 2:.2f} s for ({(ws + ap + br) / 2 / t:.0%} of its {t} s)')"
  statements_top "$DT"
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

# Lag: a running stream and the enabled subscription, both caught up, then a steady load.
lag_phase() {
  local end marker lsn
  settle "$sp" "$tp"
  "$bin" --log-level "$lag_log_level" -c "$run/bench.yaml" stream >"$run/stream-lag.log" 2>&1 & bridge_pid=$!
  q "$N" "ALTER SUBSCRIPTION native_sub ENABLE" >/dev/null
  q "$S" "UPDATE pgbench_branches SET filler = filler WHERE bid = 1" >/dev/null
  lsn=$(q "$S" "SELECT pg_current_wal_lsn()")
  wait_native "$lsn"
  until [[ $(q "$T" "SELECT coalesce(applied_lsn >= '$lsn'::pg_lsn, false) FROM _tenantsync.progress WHERE pipeline = 'bench'" 2>/dev/null) == t ]]; do
    q "$S" "UPDATE pgbench_branches SET filler = filler WHERE bid = 1" >/dev/null; sleep 0.2
  done
  q "$S" "TRUNCATE lag_probe" >/dev/null
  echo 'INSERT INTO lag_probe (t) VALUES (clock_timestamp());' >"$run/probe.sql"
  local l0 p1 p2; l0=$(load)
  statements_reset "$T"
  local poll="SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint, coalesce(max(id), 0) FROM"
  printf '%s tenant_bench.lag_probe \\watch 0.02\n' "$poll" >"$run/poll-tenant.sql"
  printf '%s lag_probe \\watch 0.02\n' "$poll" >"$run/poll-native.sql"
  stdbuf -oL psql -X -At -f "$run/poll-tenant.sql" -d "$T" >"$run/poll-tenant.txt" 2>&1 & p1=$!
  stdbuf -oL psql -X -At -f "$run/poll-native.sql" -d "$N" >"$run/poll-native.txt" 2>&1 & p2=$!
  pgbench -n -R "$rate" -T "$lag_seconds" -c "$clients" -j 2 -b tpcb-like@50 -f "$run/probe.sql@1" \
    "$S" >"$run/pgbench-lag.log" 2>&1
  end=$(q "$S" "SELECT pg_current_wal_lsn()")
  q "$S" "UPDATE pgbench_branches SET filler = filler WHERE bid = 1" >/dev/null
  wait_native "$end"; wait_tenant "$end"
  sleep 0.2; kill -INT "$p1" "$p2"; wait "$p1" "$p2" || true
  local l1; l1=$(load)
  kill -INT "$bridge_pid"; wait "$bridge_pid" || true; bridge_pid=
  q "$N" "ALTER SUBSCRIPTION native_sub DISABLE" >/dev/null
  local ts="(extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6)::bigint"
  q "$S" "SELECT id, $ts FROM lag_probe" >"$run/lag-source.txt"
  q "$T" "SELECT id, $ts FROM tenant_bench.lag_probe" >"$run/lag-tenant.txt"
  q "$N" "SELECT id, (extract(epoch FROM applied_at) * 1e6)::bigint FROM lag_probe" >"$run/lag-native.txt"
  echo "lag under pgbench -R $rate for ${lag_seconds} s ($(grep -E '^number of transactions actually processed|^latency average' "$run/pgbench-lag.log" | tr '\n' ' '))"
  echo "  load average before: $l0, after: $l1"
  python3 - "$run" <<'PY'
import bisect, sys
run = sys.argv[1]
def pairs(path):
    out = []
    for line in open(path):
        parts = line.strip().split("|")
        if len(parts) == 2 and parts[0].isdigit():
            out.append((int(parts[0]), int(parts[1])))
    return out
src = dict(pairs(f"{run}/lag-source.txt"))
def pct(v, p):
    v = sorted(v); k = min(len(v) - 1, max(0, round(p / 100 * (len(v) - 1))))
    return v[k]
res = {}
for name, label in (("native", "native"), ("tenant", "tenantsync")):
    polls = pairs(f"{run}/poll-{name}.txt")  # (time, max id), in time order
    maxes, running = [], 0
    for t, m in polls:
        running = max(running, m); maxes.append(running)
    lags = []
    for i, t in src.items():
        k = bisect.bisect_left(maxes, i)
        if k < len(polls):
            lags.append((polls[k][0] - t) / 1000)
    res[name] = lags
    gaps = [b[0] - a[0] for a, b in zip(polls, polls[1:])]
    print(f"  {label:10s} visible: probes {len(lags):4d} of {len(src)}  p50 {pct(lags, 50):8.1f} ms"
          f"  p99 {pct(lags, 99):8.1f} ms  max {max(lags):8.1f} ms   (polls {len(polls)}, median"
          f" interval {pct(gaps, 50) / 1000:.0f} ms)")
n, t = res["native"], res["tenant"]
print(f"  visible, tenantsync/native: p50 {pct(t, 50) / pct(n, 50):.2f}x  p99"
      f" {pct(t, 99) / pct(n, 99):.2f}x (each poller's phase biases this by up to one interval)")
exact = {}
for name, label in (("native", "native"), ("tenant", "tenantsync")):
    dst = dict(pairs(f"{run}/lag-{name}.txt"))
    exact[name] = [(dst[i] - src[i]) / 1000 for i in src if i in dst]
    what = "stamped by the apply worker" if name == "native" else "target commit"
    e = exact[name]
    print(f"  {label:10s} exact:   probes {len(e):4d} of {len(src)}  p50 {pct(e, 50):8.1f} ms  p99"
          f" {pct(e, 99):8.1f} ms  max {max(e):8.1f} ms   ({what} - source commit)")
n, t = exact["native"], exact["tenant"]
print(f"  exact, tenantsync/native: p50 {pct(t, 50) / pct(n, 50):.2f}x  p99 {pct(t, 99) / pct(n, 99):.2f}x"
      " (below 1: tenantsync lags less; native's stamp comes just before its commit)")
dn, dt = dict(pairs(f"{run}/lag-native.txt")), dict(pairs(f"{run}/lag-tenant.txt"))
per = [(dt[i] - dn[i]) / 1000 for i in src if i in dt and i in dn]
print(f"  per probe, tenantsync - native: p10 {pct(per, 10):.1f} ms  p50 {pct(per, 50):.1f} ms"
      f"  p90 {pct(per, 90):.1f} ms  p99 {pct(per, 99):.1f} ms")
import re
txns, ms, waited, seen = [], [], [], []
for line in open(f"{run}/stream-lag.log"):
    m = re.search(r"apply: batch of (\d+) txn, \d+ changes through \S+ in ([0-9.]+) ms", line)
    if m:
        txns.append(int(m.group(1))); ms.append(float(m.group(2)))
    m = re.search(r"first (-?[0-9.]+) ms before it began, of the last (-?[0-9.]+) ms", line)
    if m:
        waited.append(float(m.group(1))); seen.append(float(m.group(2)))
if txns:
    print(f"  tenantsync batches: {len(txns)}, transactions per batch p50 {pct(txns, 50)} p99"
          f" {pct(txns, 99)}, batch time p50 {pct(ms, 50):.1f} ms p99 {pct(ms, 99):.1f} ms")
if waited:
    print(f"  tenantsync batches: source commit of the first transaction to batch start p50"
          f" {pct(waited, 50):.1f} ms p99 {pct(waited, 99):.1f} ms; of the last to batch commit"
          f" p50 {pct(seen, 50):.1f} ms p99 {pct(seen, 99):.1f} ms")
PY
  statements_top "$T"
}

# Replay: journal a backlog with the target unreachable, stop the source, replay the journal.
replay_phase() {
  local from end t0 t1 native tenant lines l0 l1
  from=$(q "$T" "SELECT applied_lsn FROM _tenantsync.progress WHERE pipeline = 'bench'")
  if [[ -z $from ]]; then
    # No earlier phase streamed (--phases replay): a short stream gives the target a position.
    "$bin" -c "$run/bench.yaml" stream >"$run/stream-prepare.log" 2>&1 & bridge_pid=$!
    end=$(q "$S" "SELECT pg_current_wal_lsn()")
    q "$S" "UPDATE pgbench_branches SET filler = filler WHERE bid = 1" >/dev/null
    wait_tenant "$end"
    kill -INT "$bridge_pid"; wait "$bridge_pid" || true; bridge_pid=
    from=$(q "$T" "SELECT applied_lsn FROM _tenantsync.progress WHERE pipeline = 'bench'")
  fi
  sed "s|url: \"$T\"|url: \"postgresql://postgres@127.0.0.1:1/tenant?connect_timeout=1\"|" "$run/bench.yaml" >"$run/journal-only.yaml"
  pgbench -n -t "$((transactions / clients))" -c "$clients" -j "$clients" "$S" >/dev/null 2>&1
  end=$(q "$S" "SELECT pg_current_wal_lsn()")
  q "$S" "SELECT pg_switch_wal()" >/dev/null
  "$bin" -c "$run/journal-only.yaml" stream >"$run/stream-journal-only.log" 2>&1 & bridge_pid=$!
  wait_slot "$end" ts_bench
  kill -INT "$bridge_pid"; wait "$bridge_pid" || true; bridge_pid=
  settle "$sp" "$tp"
  l0=$(load)
  t0=$(now); q "$N" "ALTER SUBSCRIPTION native_sub ENABLE" >/dev/null; wait_native "$end"; t1=$(now)
  q "$N" "ALTER SUBSCRIPTION native_sub DISABLE" >/dev/null
  native=$(secs "$t0" "$t1")
  settle "$tp"
  as_pg "$pgbin/pg_ctl" -D "$cdir/source" -m fast -w stop >/dev/null
  t0=$(now); "$bin" --log-level debug -c "$run/bench.yaml" replay --from "$from" >"$run/replay.log" 2>&1; t1=$(now)
  echo "  replay started $(date -d "@$t0" '+%H:%M:%S.%N' | cut -c1-12), ended $(date -d "@$t1" '+%H:%M:%S.%N' | cut -c1-12)"
  tenant=$(secs "$t0" "$t1")
  l1=$(load)
  printf '%-22s %10s %10s %10s   tenantsync replay/native catch-up %s   (load %s -> %s; source stopped during replay)\n' \
    "replay x$transactions" "-" "$native" "$tenant" "$(python3 -c "print(f'{$native/$tenant:.2f}x faster')")" "$l0" "$l1"
  sed 's/^/  /' "$run/replay.log"
  as_pg "$pgbin/pg_ctl" -D "$cdir/source" -l "$cdir/source/server.log" -w start >/dev/null
}

# pgcopydb follow over a backlog up to $3 (measure's marker transaction follows it, so a commit
# ends at or past the end position, where follow stops). Then the target is compared, by query
# $4, with $5 (the source's answer at the backlog's end), or else with the source now.
pgcopydb_follow() {  # source URL, target URL, end, comparison query[, expected answer]
  local src=$1 dst=$2 t0 t1 rc=0 took verdict same log=$run/pgcopydb-follow-${2##*/}.log
  if ! TMPDIR=$run/pgcopydb-tmp pgcopydb stream sentinel set apply --source "$src" >>"$run/pgcopydb-setup.log" 2>&1; then
    echo "  pgcopydb follow: failed to set its apply sentinel (see $run/pgcopydb-setup.log)"
    return 0
  fi
  t0=$(now)
  TMPDIR=$run/pgcopydb-tmp timeout 300 pgcopydb follow --source "$src" --target "$dst" --dir "$run/pgcopydb-${dst##*/}" \
    --resume --not-consistent --endpos "$3" >"$log" 2>&1 & local pid=$!
  # On an ERROR it does not exit, it waits: stopped 10 s after the first one.
  local erred=
  while kill -0 "$pid" 2>/dev/null; do
    if [[ -z $erred ]] && grep -q ' ERROR ' "$log"; then erred=$(now); fi
    if [[ -n $erred ]] && python3 -c "import sys; sys.exit(0 if $(now) - $erred > 10 else 1)"; then
      kill "$pid" 2>/dev/null; rc=124
    fi
    sleep 0.5
  done
  wait "$pid" || { ((rc)) || rc=$?; }
  t1=$(now)
  took=$(secs "$t0" "$t1")
  local want=${5:-$(q "$src" "$4")}
  same=no; [[ $want == "$(q "$dst" "$4")" ]] && same=yes
  local why; why=$({ grep -m1 -E 'ERROR|FATAL' "$log" || true; } | sed -E 's/^[0-9:. ]+[0-9]+ //' | cut -c1-120)
  if ((rc == 0)); then
    verdict="$took s, exit 0, target equals source: $same"
  elif ((rc == 124)); then
    verdict="failed: stopped after $took s, target equals source: $same ($why)"
  else
    verdict="failed: exit $rc after $took s, target equals source: $same ($why)"
  fi
  echo "  pgcopydb follow (wal2json): $verdict"
  # Gone before the next phases: its slot would hold WAL, and autovacuum would work on its
  # tables' 20,000 transactions of changes while they are timed. (Its tables, not its database:
  # DROP DATABASE checkpoints, and the next phase would then write full-page images.)
  TMPDIR=$run/pgcopydb-tmp pgcopydb stream cleanup --source "$src" --target "$dst" >>"$run/pgcopydb-setup.log" 2>&1 || true
  q "$dst" "DROP SCHEMA public CASCADE; DROP SCHEMA IF EXISTS pgcopydb CASCADE" >/dev/null 2>&1
}
pgbench_sums="SELECT (SELECT sum(abalance) || '/' || count(*) FROM pgbench_accounts) || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || (SELECT count(*) FROM pgbench_history)"
# RAWDOG: rows per table, and its money.
rawdog_sums="SELECT concat_ws(' ', (SELECT count(*) FROM customers), (SELECT count(*) FROM products), (SELECT count(*) || '/' || sum(total_cents) FROM orders), (SELECT count(*) FROM line_items), (SELECT count(*) FROM reviews), (SELECT count(*) FROM creators), (SELECT count(*) FROM creator_projects), (SELECT count(*) || '/' || sum(amount_cents) FROM balance_transactions), (SELECT count(*) FROM withdrawal_requests), (SELECT count(*) FROM landing_pages), (SELECT count(*) FROM blog_posts), (SELECT count(*) FROM ab_tests), (SELECT count(*) FROM attribution_touchpoints), (SELECT count(*) FROM esign_documents))"

# RAWDOG: its own databases (source rawdog; target platform for tenantsync, native_rawdog for
# native), decode slot, publication and subscription, all made before its backlog.
rawdog_phase() {
  local c0 c1
  RS="postgresql://postgres@127.0.0.1:$sp/rawdog"
  RT="postgresql://postgres@127.0.0.1:$tp/platform"
  RN="postgresql://postgres@127.0.0.1:$tp/native_rawdog"
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$sp" -U postgres rawdog
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$tp" -U postgres platform
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$tp" -U postgres native_rawdog
  "$rawdog" load --url "$RS" --scale "$rawdog_scale" >/dev/null
  q "$RS" "CREATE TABLE bench_marker (id int PRIMARY KEY, n int NOT NULL); INSERT INTO bench_marker VALUES (1, 0)" >/dev/null
  local RP="postgresql://postgres@127.0.0.1:$tp/pgcopydb_rawdog"
  if ((use_pgcopydb)); then pgcopydb_setup "$RS" "$RP"; fi
  pg_dump -d "$RS" | psql -d "$RN" >/dev/null
  q "$RS" "CREATE PUBLICATION native_rawdog_pub FOR ALL TABLES" >/dev/null
  q "$RS" "SELECT pg_create_logical_replication_slot('decode_rawdog', 'pgoutput')" >/dev/null
  q "$RN" "CREATE SUBSCRIPTION native_rawdog_sub CONNECTION 'host=127.0.0.1 port=$sp dbname=rawdog user=postgres' PUBLICATION native_rawdog_pub WITH (copy_data = false, enabled = false)" >/dev/null 2>&1
  # The shop's own pipeline (examples/rawdog.yaml: its transforms and encryption), on these servers.
  { sed -e "s#^state_dir:.*#state_dir: $run/state-rawdog#" -e 's#^ops:.*#ops: {listen: "127.0.0.1:0"}#' \
      "$root/examples/rawdog.yaml"; printf '%s\n' "$extra_yaml"; } >"$run/rawdog.yaml"
  export POSTGRES_URL=$RS NEW_POSTGRES_URL=$RT
  SHOPIFY_ACCESS_TOKEN="shpat_bench_$(openssl rand -hex 8)" TENANTSYNC_KEY=$(openssl rand -base64 32)
  export SHOPIFY_ACCESS_TOKEN TENANTSYNC_KEY
  "$bin" -c "$run/rawdog.yaml" snapshot >"$run/snapshot-rawdog.log" 2>&1
  use_dataset rawdog
  c0=$(changes_now)
  "$rawdog" workload --url "$RS" --clients "$clients" --transactions "$((rawdog_transactions / clients))" \
    --seed 1 >"$run/rawdog-workload.log" 2>&1
  c1=$(changes_now)
  echo "  load $(load)"; measure "rawdog x$rawdog_transactions" "$rawdog_transactions" "$((c1 - c0))"; echo "  load $(load)"
  if ((use_pgcopydb)); then pgcopydb_follow "$RS" "$RP" "$last_end" "$rawdog_sums"; fi
  grep -h "dead letter" "$run/stream-rawdog"*.log | sed 's/^/  /' || true
  use_dataset bench
}

printf '%-22s %10s %10s %10s   (seconds to catch up; smaller is better)\n' backlog decode native tenantsync
if has_phase catchup; then
  c0=$(changes_now)
  pgbench -n -t "$((transactions / clients))" -c "$clients" -j "$clients" "$S" >/dev/null 2>&1
  c1=$(changes_now)
  echo "  load $(load)"; measure "pgbench x$transactions" "$transactions" "$((c1 - c0))"; echo "  load $(load)"
  # pgcopydb's turn comes after the other phases (below): its 30 s of work on the target would
  # otherwise still be checkpointed and vacuumed while they are timed.
  pgbench_end=$last_end pgbench_want=$(q "$S" "$pgbench_sums")
fi
if has_phase huge; then
  q "$S" "UPDATE pgbench_accounts SET abalance = abalance + 1" >/dev/null
  echo "  load $(load)"; measure "UPDATE $((scale * 100000)) rows" 1 "$((scale * 100000))"; echo "  load $(load)"
  grep -h "bulk" "$run/stream-UPDATE"*.log | sed 's/^/  /' || true
fi
if has_phase keyless; then
  q "$S" "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT g % 100 + 1, g % 10 + 1, g % 5000 + 1, g % 5000, '2026-01-01' FROM generate_series(1, 20000) g" >/dev/null
  echo "  load $(load)"; measure "keyless INSERT 20000" 1 20000; echo "  load $(load)"
  n=$(q "$S" "WITH d AS (DELETE FROM pgbench_history WHERE mtime = '2026-01-01' AND aid % 2 = 0 RETURNING 1) SELECT count(*) FROM d")
  echo "  load $(load)"; measure "keyless DELETE $n" 1 "$n"; echo "  load $(load)"
  n=$(q "$S" "WITH u AS (UPDATE pgbench_history SET delta = delta + 1 WHERE mtime = '2026-01-01' AND aid % 3 = 0 RETURNING 1) SELECT count(*) FROM u")
  echo "  load $(load)"; measure "keyless UPDATE $n" 1 "$n"; echo "  load $(load)"
  hist="SELECT count(*) || ' ' || sum(aid) || ' ' || sum(delta) FROM pgbench_history"
  echo "  pgbench_history rows, sum(aid), sum(delta): source $(q "$S" "$hist"), native $(q "$N" "$hist"), tenantsync $(q "$T" "${hist/pgbench_history/tenant_bench.pgbench_history}")"
fi
if has_phase replay; then replay_phase; fi
if has_phase lag; then lag_phase; fi
if has_phase catchup && ((use_pgcopydb)); then
  echo "pgbench x$transactions, pgcopydb (its slot was made before the backlog; run after the phases above):"
  pgcopydb_follow "$S" "$P" "$pgbench_end" "$pgbench_sums" "$pgbench_want"
fi
# Last: its slots are made in it, and its WAL (another database) is not in the way of the others.
if has_phase rawdog; then rawdog_phase; fi
