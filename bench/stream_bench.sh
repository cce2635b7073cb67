#!/usr/bin/env bash
# Stream benchmark: receive + journal throughput of tenantsync's receiver against the decode
# limit, `pg_recvlogical -f /dev/null`, on the same backlog (pgbench -n -t N), for pgoutput and
# wal2json. Every consumer has its own slot created before the workload, so all read exactly
# the same WAL from the same position.
#   bench/stream_bench.sh [TRANSACTIONS_PER_CLIENT=20000] [CLIENTS=4] [ROUNDS=1]
# With several rounds every consumer reads the backlog once per round (its own slot each time)
# and the order of the tenantsync builds alternates, so neither always runs second (the one
# after pays for the other's journal writeback); the summary gives each consumer's median.
# Needs: build-cdc/cdc/cdc_stream_child (cmake --build build-cdc --target cdc_stream_child).
# TENANTSYNC_STREAM_CHILD_BEFORE=PATH adds a row for another build of the child (e.g. the one
# before a change), on its own slots over the same backlog: before and after in one run.
# Each tenantsync row also gives the child's CPU time (user + sys, from /usr/bin/time): on a
# loaded machine a steadier measure of the receiver's cost than its wall time.
# Every consumer reaches the server the same way: over TCP to 127.0.0.1 by default (the source is
# on another host in production), or over the Unix socket with STREAM_BENCH_TRANSPORT=unix. (The
# transport alone moves the walsender's CPU by ~40% with wal2json: never compare across them.)
# Every row also gives the server's CPU while that consumer read (the postmaster's cutime + cstime
# after its walsender exited, autovacuum off) and that CPU over the wall time: how busy the
# walsender was. A consumer that keeps up leaves it ~100% busy: that is the decode limit itself,
# whatever the consumer. (pg_recvlogical over TCP makes the walsender do more work per byte than
# tenantsync does: compare the server CPU columns.)
# Starts and removes a throwaway cluster in /tmp.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-20000}"
clients="${2:-4}"
rounds="${3:-1}"
child="${TENANTSYNC_STREAM_CHILD:-$root/build-cdc/cdc/cdc_stream_child}"
before="${TENANTSYNC_STREAM_CHILD_BEFORE:-}"
bin=/usr/lib/postgresql/15/bin
dir="$(mktemp -d /tmp/tenantsync-bench.XXXXXX)"
chown postgres "$dir"
port=$((20000 + RANDOM % 20000))
while (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
as_pg() { runuser -u postgres -- "$@"; }
cleanup() { as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 >/dev/null
cat >>"$dir/data/postgresql.conf" <<CONF
wal_level = logical
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
max_wal_size = '4GB'
max_replication_slots = $((6 * rounds + 2))
max_wal_senders = $((6 * rounds + 2))
autovacuum = off
CONF
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
case "${STREAM_BENCH_TRANSPORT:-tcp}" in
  tcp) host=127.0.0.1; url="postgresql://postgres@127.0.0.1:$port/postgres" ;;
  unix) host=$dir; url="host=$dir port=$port user=postgres dbname=postgres" ;;
  *) echo "stream_bench: STREAM_BENCH_TRANSPORT must be tcp or unix" >&2; exit 2 ;;
esac
psql() { as_pg "$bin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "$@"; }

as_pg "$bin/pgbench" -q -i -s 10 -h "$dir" -p "$port" -U postgres postgres >/dev/null 2>&1
psql -c "CREATE PUBLICATION pub FOR ALL TABLES" >/dev/null
psql -c "SELECT pg_create_logical_replication_slot('warm', 'pgoutput')" >/dev/null
for ((r = 1; r <= rounds; r++)); do
  for s in recv_p$r ts_p$r ${before:+ts0_p$r}; do psql -c "SELECT pg_create_logical_replication_slot('$s', 'pgoutput')" >/dev/null; done
  for s in recv_w$r ts_w$r ${before:+ts0_w$r}; do psql -c "SELECT pg_create_logical_replication_slot('$s', 'wal2json')" >/dev/null; done
done
start=$(psql -c "SELECT pg_current_wal_lsn()")
as_pg "$bin/pgbench" -n -t "$n" -c "$clients" -j 2 -h "$dir" -p "$port" -U postgres postgres >/dev/null 2>&1
end=$(psql -c "SELECT pg_current_wal_lsn()")
wal_mb=$(psql -c "SELECT round(pg_wal_lsn_diff('$end', '$start') / 1048576.0, 1)")
txns=$((n * clients))
echo "transport: ${STREAM_BENCH_TRANSPORT:-tcp} (every consumer)"
echo "backlog: $txns pgbench transactions, $wal_mb MB of WAL ($start .. $end)"
echo "load average before the reads: $(cut -d' ' -f1-3 /proc/loadavg)"

now() { date +%s.%N; }
pm=$(head -1 "$dir/data/postmaster.pid")
tck=$(getconf CLK_TCK)
server_ticks() {  # CPU of the server's exited children (the walsender of the last consumer)
  while pgrep -P "$pm" -f 'walsender' >/dev/null; do sleep 0.05; done
  awk '{print $16 + $17}' "/proc/$pm/stat"
}
w2j_opts=(-o format-version=2 -o include-transaction=1 -o include-xids=1 -o include-timestamp=1
          -o include-lsn=1 -o include-types=1 -o include-type-oids=1 -o include-typmod=1
          -o include-pk=1 -o add-tables=public.*)
run_recvlogical() {  # slot, plugin options...  -> "seconds server_cpu_seconds"
  local slot=$1; shift
  local c0; c0=$(server_ticks)
  local t0; t0=$(now)
  as_pg "$bin/pg_recvlogical" -h "$host" -p "$port" -U postgres -d postgres -S "$slot" --start \
    --no-loop -E "$end" -f /dev/null "$@"
  local t; t=$(echo "$(now) - $t0" | bc)
  echo "$t $(echo "scale=2; ($(server_ticks) - $c0) / $tck" | bc)"
}
run_tenantsync() {  # slot, plugin[, child binary]
  local bin_child="${3:-$child}"
  local state; state="$(mktemp -d "$dir/state.XXXXXX")"
  local c0; c0=$(server_ticks)
  local t0; t0=$(now)
  /usr/bin/time -f '%U %S' -o "$dir/cpu" \
    "$bin_child" --url "$url" --slot "$1" --plugin "$2" --publication pub --state "$state" \
    --until-lsn "$end" --status-ms 100 >"$dir/child.out" 2>&1 || { cat "$dir/child.out"; exit 1; }
  local t; t=$(echo "$(now) - $t0" | bc)
  local cpu; cpu=$(awk '{printf "%.2f", $1 + $2}' "$dir/cpu")
  local server; server=$(echo "scale=2; ($(server_ticks) - $c0) / $tck" | bc)
  echo "$t $(du -sm "$state" | cut -f1) $cpu $server $(grep -o 'transactions=[0-9]*' "$dir/child.out")"
  rm -rf "$state"
}
# Warm-up read of the whole backlog, so no consumer pays for reading WAL from disk.
as_pg "$bin/pg_recvlogical" -h "$host" -p "$port" -U postgres -d postgres -S warm --start \
  --no-loop -E "$end" -f /dev/null -o proto_version=1 -o publication_names=pub
printf '%-9s %-18s %5s %10s %12s %10s %6s %8s %6s\n' plugin consumer round seconds txn/s \
  server_cpu busy ratio cpu_s
row() {  # plugin, consumer, round, seconds, server CPU, recvlogical seconds[, journaled, MB, CPU]
  local busy; busy=$(echo "100 * $5 / $4" | bc -l)
  printf '%-9s %-18s %5s %10.2f %12.0f %10.2f %5.0f%%' "$1" "$2" "$3" "$4" \
    "$(echo "$txns / $4" | bc -l)" "$5" "$busy"
  echo "$1|$2|$busy" >>"$dir/busy"
  if [[ $# -gt 6 ]]; then
    printf ' %8.2f %6.2f   (%s, journal %s MB)' "$(echo "$6 / $4" | bc -l)" "$9" "$7" "$8"
    echo "$1|$2|$9" >>"$dir/cpus"
  fi
  printf '\n'
  echo "$1|$2|$4" >>"$dir/times"
}
tenantsync_row() {  # plugin, consumer label, slot, round, recvlogical seconds[, child]
  local tt mb cpu server journaled
  read -r tt mb cpu server journaled <<<"$(run_tenantsync "$3" "$1" "${6:-}")"
  row "$1" "$2" "$4" "$tt" "$server" "$5" "$journaled" "$mb" "$cpu"
}
for ((r = 1; r <= rounds; r++)); do
  for plugin in pgoutput wal2json; do
    p=${plugin:0:1}
    if [[ $plugin == pgoutput ]]; then
      read -r tr sr <<<"$(run_recvlogical "recv_p$r" -o proto_version=1 -o publication_names=pub)"
    else
      read -r tr sr <<<"$(run_recvlogical "recv_w$r" "${w2j_opts[@]}")"
    fi
    row "$plugin" pg_recvlogical "$r" "$tr" "$sr" "$tr"
    if [[ -n $before && $((r % 2)) -eq 1 ]]; then
      tenantsync_row "$plugin" "tenantsync before" "ts0_$p$r" "$r" "$tr" "$before"
    fi
    tenantsync_row "$plugin" tenantsync "ts_$p$r" "$r" "$tr"
    if [[ -n $before && $((r % 2)) -eq 0 ]]; then
      tenantsync_row "$plugin" "tenantsync before" "ts0_$p$r" "$r" "$tr" "$before"
    fi
  done
done
echo "load average after the reads: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $rounds -gt 1 ]]; then
  echo "medians over $rounds rounds (ratio = median pg_recvlogical / median consumer; busy ="
  echo "the walsender's CPU over the consumer's wall time, median of the rounds):"
  median() {  # plugin, consumer[, file]
    grep -F "$1|$2|" "$dir/${3:-times}" | cut -d'|' -f3 | sort -n |
      awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
  }
  for plugin in pgoutput wal2json; do
    mr=$(median "$plugin" pg_recvlogical)
    for consumer in pg_recvlogical ${before:+"tenantsync before"} tenantsync; do
      m=$(median "$plugin" "$consumer")
      printf '%-9s %-18s %5s %10.2f %12.0f %10s %5.0f%% %8.2f' "$plugin" "$consumer" median "$m" \
        "$(echo "$txns / $m" | bc -l)" - "$(median "$plugin" "$consumer" busy)" \
        "$(echo "$mr / $m" | bc -l)"
      [[ $consumer == pg_recvlogical ]] || printf ' %6.2f' "$(median "$plugin" "$consumer" cpus)"
      printf '\n'
    done
  done
fi
