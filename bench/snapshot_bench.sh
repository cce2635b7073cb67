#!/usr/bin/env bash
# Snapshot benchmark: times, on the same data and the same two throwaway clusters,
#   1. tenantsync snapshot (transforms included for RAWDOG; identity for pgbench)
#   2. the raw COPY pipe, binary and text, one table at a time and two at a time, schema first,
#      indexes and keys built afterwards (pg_dump --section=pre-data / post-data)
#   3. pgcopydb clone (if installed: apt-get install pgcopydb)
#   4. a native subscription's initial sync (then post-data)
# and reports wall time and peak RSS (/usr/bin/time -v) of each.
#
#   bench/snapshot_bench.sh [--pgbench-scale N] [--rawdog-scale N] [--workers N] [--only pgbench|rawdog]
#                           [--before BINARY] [--rounds N]
# Defaults: pgbench scale 50 (~5M accounts), RAWDOG scale 50 (~850k rows), workers: tenantsync's own
# default (snapshot.workers: 0). --before times a second tenantsync binary (an older build) right
# after this one on the same data, for before/after figures from one run; --rounds runs every
# method N times, alternating the order between rounds, and prints each method's mean and
# tenantsync's ratios to the fastest pipe and to pgcopydb.
# Needs a built tree (BUILD=build by default, or TENANTSYNC_BINARY=path) and runs clusters as user
# postgres when root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD:-build}
bin=${TENANTSYNC_BINARY:-$root/$build/ops/tenantsync}
rawdog=$root/$build/tests/rawdog
pgbin=/usr/lib/postgresql/15/bin
pgscale=50 rdscale=50 workers=0 only="" before="" rounds=1
while (($#)); do
  case "$1" in
    --pgbench-scale) pgscale=$2; shift 2 ;;
    --rawdog-scale) rdscale=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --before) before=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "snapshot_bench: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -z $before || -x $before ]] || { echo "snapshot_bench: --before $before is not executable" >&2; exit 2; }
[[ -x $bin && -x $rawdog ]] || { echo "build first: cmake --build $build --target tenantsync rawdog" >&2; exit 2; }

work=$(mktemp -d /tmp/tenantsync-bench-XXXXXX)
chmod 755 "$work"
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cleanup() {
  for c in source target; do
    [[ -d $work/$c ]] && as_pg "$pgbin/pg_ctl" -D "$work/$c" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

start_cluster() {  # name port
  mkdir -p "$work/$1"; chown postgres "$work/$1" 2>/dev/null || true
  as_pg "$pgbin/initdb" -D "$work/$1" -U postgres -A trust --no-sync >/dev/null
  cat >>"$work/$1/postgresql.conf" <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/$1'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
fsync = off
max_wal_size = '4GB'
shared_buffers = '256MB'
maintenance_work_mem = '256MB'
CONF
  mkdir -p "$work/logs"; chown postgres "$work/logs" 2>/dev/null || true
  as_pg "$pgbin/pg_ctl" -D "$work/$1" -l "$work/logs/$1.log" -w start >/dev/null
}
sport=$(free_port); start_cluster source "$sport"
tport=$(free_port); start_cluster target "$tport"
S="postgresql://postgres@127.0.0.1:$sport"
T="postgresql://postgres@127.0.0.1:$tport"
psql() { "$pgbin/../bin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
PSQL=/usr/lib/postgresql/15/bin/psql
[[ -x $PSQL ]] || PSQL=psql
psql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 "$@"; }

results=$work/results.txt
: >"$results"
# measure LABEL CMD...: wall seconds and peak RSS of CMD (and its children, max of them)
# Every method starts with both servers checkpointed and the OS's dirty pages written (the
# clusters run with fsync=off, so without this the previous method's, or the data load's,
# writeback lands on whichever method runs next: measured up to 1.3x on the first one).
measure() {
  local label=$1; shift
  local t0 t1
  psql "$S/postgres" -c "CHECKPOINT" >/dev/null; psql "$T/postgres" -c "CHECKPOINT" >/dev/null
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$work/time.txt" "$@" >"$work/out.txt" 2>&1 || { echo "FAILED: $label"; tail -20 "$work/out.txt"; return 1; }
  t1=$(date +%s.%N)
  local rss; rss=$(awk '/Maximum resident/ {print $6}' "$work/time.txt")
  printf "%-52s %8.1f s %8.0f MB\n" "$label" "$(echo "$t1 - $t0" | bc)" "$(echo "$rss / 1024" | bc)" | tee -a "$results"
}
# The phase times the last measured command printed (a line starting "phases:"), indented.
phases() { grep -h '^phases:' "$work/out.txt" | sed 's/^/    /' | tee -a "$results" || true; }
fresh_target() { psql "$T/postgres" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }

pipe_tables() {  # srcdb dstdb format parallel tables...
  local sdb=$1 ddb=$2 fmt=$3 par=$4; shift 4
  printf '%s\n' "$@" | xargs -P "$par" -I{} bash -c \
    "'$PSQL' -X -q -v ON_ERROR_STOP=1 '$S/$sdb' -c 'COPY {} TO STDOUT (FORMAT $fmt)' | '$PSQL' -X -q -v ON_ERROR_STOP=1 '$T/$ddb' -c 'COPY {} FROM STDIN (FORMAT $fmt)'"
}
pipe_run() {  # srcdb dstdb format parallel
  local sdb=$1 ddb=$2 fmt=$3 par=$4
  local tables; tables=$(psql "$S/$sdb" -At -c "SELECT string_agg(quote_ident(tablename), ' ') FROM pg_tables WHERE schemaname = 'public'")
  local t0 t1 t2 t3
  t0=$(date +%s.%N)
  /usr/lib/postgresql/15/bin/pg_dump --section=pre-data "$S/$sdb" | psql "$T/$ddb" >/dev/null
  t1=$(date +%s.%N)
  # shellcheck disable=SC2086
  pipe_tables "$sdb" "$ddb" "$fmt" "$par" $tables
  t2=$(date +%s.%N)
  /usr/lib/postgresql/15/bin/pg_dump --section=post-data "$S/$sdb" | psql "$T/$ddb" >/dev/null
  t3=$(date +%s.%N)
  printf 'phases: pre-data %.1f s, copy %.1f s, post-data %.1f s\n' "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)"
}
export -f pipe_tables pipe_run psql 2>/dev/null || true
export S T PSQL
export PGOPTIONS='-c client_min_messages=warning' 

subscription_run() {  # srcdb dstdb
  local sdb=$1 ddb=$2
  /usr/lib/postgresql/15/bin/pg_dump --section=pre-data "$S/$sdb" | psql "$T/$ddb" >/dev/null
  psql "$S/$sdb" -c "DROP PUBLICATION IF EXISTS bench_pub" -c "CREATE PUBLICATION bench_pub FOR ALL TABLES"
  psql "$T/$ddb" -c "CREATE SUBSCRIPTION bench_sub CONNECTION '$S/$sdb' PUBLICATION bench_pub"
  until [[ $(psql "$T/$ddb" -At -c "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')") == 0 ]]; do
    sleep 0.2
  done
  /usr/lib/postgresql/15/bin/pg_dump --section=post-data "$S/$sdb" | psql "$T/$ddb" >/dev/null
  psql "$T/$ddb" -c "ALTER SUBSCRIPTION bench_sub DISABLE" -c "ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION bench_sub"
  psql "$S/$sdb" -c "SELECT pg_drop_replication_slot('bench_sub')" >/dev/null
}
export -f subscription_run

tenantsync_run() {  # srcdb dstdb pipeline [binary]
  local dir=$work/ts-$3 exe=${4:-$bin}
  rm -rf "$dir"
  mkdir -p "$dir"
  {
    echo "pipeline: $3"
    echo "source: {url: \"$S/$1\", schema: public}"
    echo "target: {url: \"$T/$2\", schema: tenant_$3}"
    echo "tenant: {slug: $3, name: Bench}"
    echo "state_dir: $dir/state"
    echo "encryption: {key: \"$(head -c 32 /dev/urandom | base64)\"}"
    echo "snapshot: {workers: $workers}"  # 0: tenantsync's default
    # RAWDOG: every rule of examples/rawdog.yaml (pgbench has none of these tables).
    if [[ $1 == rawdog ]]; then sed -n '/^tables:/,$p' "$root/examples/rawdog.yaml"; fi
  } >"$dir/config.yaml"
  "$exe" -c "$dir/config.yaml" snapshot --report "$dir/report.json"
}
export -f tenantsync_run
export bin work root workers before

ts_label() { if ((workers > 0)); then echo "$workers workers"; else echo "default workers"; fi; }
bench_dataset() {  # name srcdb
  local name=$1 sdb=$2 round t
  # Warm-up: one untimed read of every table, so the first method does not pay for pages the
  # load left cold.
  for t in $(psql "$S/$sdb" -At -c "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"); do
    psql "$S/$sdb" -c "COPY $t TO STDOUT (FORMAT binary)" >/dev/null
  done
  # And one untimed copy into the target: the target cluster's first load creates (zero-fills)
  # its WAL segments, later ones recycle them, so without this the first method wrote the
  # data's WAL twice (it was the slowest of every run, whichever method it was).
  fresh_target warm_$name
  pipe_run "$sdb" "warm_$name" binary 2 >/dev/null
  psql "$T/postgres" -c "DROP DATABASE warm_$name"
  echo "== $name: $(psql "$S/$sdb" -At -c "SELECT pg_size_pretty(pg_database_size(current_database()))")" | tee -a "$results"
  # The methods, each a function that times one run on fresh target database(s). Rounds alternate
  # the order (odd rounds as listed, even rounds reversed): whichever method runs first after a
  # load or a big drop measured 10-20% slower, so a single fixed order favours the later ones.
  m_tenantsync() {  # label [binary]
    fresh_target ts_$name
    measure "$name: tenantsync $1 ($(ts_label))" bash -c "tenantsync_run $sdb ts_$name b$name ${2:-}"
    phases
    psql "$S/$sdb" -c "SELECT pg_drop_replication_slot('tenantsync_b$name')" >/dev/null
    psql "$T/postgres" -c "DROP DATABASE ts_$name"
  }
  m_pipe() {  # format parallel
    fresh_target p_$1_$2_$name
    measure "$name: COPY pipe $1, $2 table(s) at a time" bash -c "pipe_run $sdb p_$1_$2_$name $1 $2"
    phases
    psql "$T/postgres" -c "DROP DATABASE p_$1_$2_$name"
  }
  m_pgcopydb() {
    fresh_target cp_$name
    rm -rf "$work/pgcopydb-$name"
    measure "$name: pgcopydb clone (2 table jobs, 2 index jobs)" pgcopydb clone --source "$S/$sdb" --target "$T/cp_$name" --table-jobs 2 --index-jobs 2 --dir "$work/pgcopydb-$name" --no-owner --no-acl
    psql "$T/postgres" -c "DROP DATABASE cp_$name"
  }
  m_sub() {
    fresh_target sub_$name
    measure "$name: native subscription initial sync (+ post-data)" bash -c "subscription_run $sdb sub_$name"
    psql "$T/postgres" -c "DROP DATABASE sub_$name"
  }
  local methods=("m_tenantsync snapshot")
  [[ -n $before ]] && methods+=("m_tenantsync before $before")
  methods+=("m_pipe binary 1" "m_pipe binary 2" "m_pipe text 1" "m_pipe text 2")
  if command -v pgcopydb >/dev/null; then
    methods+=(m_pgcopydb)
  else
    echo "$name: pgcopydb not installed (apt-get install pgcopydb)" | tee -a "$results"
  fi
  methods+=(m_sub)
  local i n=${#methods[@]}
  for ((round = 1; round <= rounds; round++)); do
    echo "-- $name round $round ($( ((round % 2)) && echo "listed order" || echo "reversed order"))" | tee -a "$results"
    for ((i = 0; i < n; i++)); do
      if ((round % 2)); then ${methods[i]}; else ${methods[n - 1 - i]}; fi
    done
  done
  summarize "$name"
}

# The mean of each method over the rounds, and the two ratios the snapshot goal is about.
summarize() {
  awk -v name="$1" '
    index($0, name ": ") == 1 && / s +[0-9]+ MB$/ {
      t = $(NF - 3); label = $0; sub(/ +[0-9.]+ s +[0-9]+ MB$/, "", label)
      if (!(label in sum)) order[++n] = label
      sum[label] += t; cnt[label]++
    }
    END {
      print "-- " name ": mean of " cnt[order[1]] " round(s)"
      for (i = 1; i <= n; i++) {
        l = order[i]; m = sum[l] / cnt[l]; printf "%-52s %8.1f s\n", l, m
        if (l ~ /tenantsync snapshot/) ts = m
        if (l ~ /COPY pipe/ && (pipe == 0 || m < pipe)) { pipe = m; pipel = l }
        if (l ~ /pgcopydb/) cp = m
      }
      if (ts > 0 && pipe > 0) printf "%s: tenantsync is %.2fx the speed of the fastest pipe (%s)\n", name, pipe / ts, substr(pipel, length(name) + 3)
      if (ts > 0 && cp > 0) printf "%s: tenantsync is %.2fx the speed of pgcopydb clone\n", name, cp / ts
    }' "$results" | tee -a "$results.summary"
}

if [[ $only != rawdog ]]; then
  echo "loading pgbench scale $pgscale ..."
  psql "$S/postgres" -c "CREATE DATABASE pgb"
  t0=$(date +%s)
  "$pgbin/pgbench" -i -q -s "$pgscale" --foreign-keys "$S/pgb" >/dev/null 2>&1
  echo "pgbench -i -s $pgscale took $(( $(date +%s) - t0 )) s" | tee -a "$results"
  # pgbench_history has no key; tenantsync's preflight insists on a replica identity.
  psql "$S/pgb" -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
  bench_dataset pgbench pgb
fi

if [[ $only != pgbench ]]; then
  echo "loading RAWDOG scale $rdscale ..."
  psql "$S/postgres" -c "CREATE DATABASE rawdog"
  "$rawdog" load --url "$S/rawdog" --scale "$rdscale" >/dev/null
  bench_dataset rawdog rawdog
fi

echo
echo "Results (machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo); load average $(cut -d' ' -f1-3 /proc/loadavg)):"
cat "$results"
cat "$results.summary"
