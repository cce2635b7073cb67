#!/usr/bin/env bash
# Stream benchmark: receive + journal throughput of tenantsync's receiver against the decode
# limit, `pg_recvlogical -f /dev/null`, on the same backlog (pgbench -n -t N), for pgoutput and
# wal2json. Every consumer has its own slot created before the workload, so all read exactly
# the same WAL from the same position.
#   bench/stream_bench.sh [TRANSACTIONS_PER_CLIENT=20000] [CLIENTS=4]
# Needs: build-cdc/cdc/cdc_stream_child (cmake --build build-cdc --target cdc_stream_child).
# Starts and removes a throwaway cluster in /tmp.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-20000}"
clients="${2:-4}"
child="${TENANTSYNC_STREAM_CHILD:-$root/build-cdc/cdc/cdc_stream_child}"
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
CONF
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
url="postgresql://postgres@127.0.0.1:$port/postgres"
psql() { as_pg "$bin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "$@"; }

as_pg "$bin/pgbench" -q -i -s 10 -h "$dir" -p "$port" -U postgres postgres >/dev/null 2>&1
psql -c "CREATE PUBLICATION pub FOR ALL TABLES" >/dev/null
for s in warm recv_p ts_p; do psql -c "SELECT pg_create_logical_replication_slot('$s', 'pgoutput')" >/dev/null; done
for s in recv_w ts_w; do psql -c "SELECT pg_create_logical_replication_slot('$s', 'wal2json')" >/dev/null; done
start=$(psql -c "SELECT pg_current_wal_lsn()")
as_pg "$bin/pgbench" -n -t "$n" -c "$clients" -j 2 -h "$dir" -p "$port" -U postgres postgres >/dev/null 2>&1
end=$(psql -c "SELECT pg_current_wal_lsn()")
wal_mb=$(psql -c "SELECT round(pg_wal_lsn_diff('$end', '$start') / 1048576.0, 1)")
txns=$((n * clients))
echo "backlog: $txns pgbench transactions, $wal_mb MB of WAL ($start .. $end)"

now() { date +%s.%N; }
w2j_opts=(-o format-version=2 -o include-transaction=1 -o include-xids=1 -o include-timestamp=1
          -o include-lsn=1 -o include-types=1 -o include-type-oids=1 -o include-typmod=1
          -o include-pk=1 -o add-tables=public.*)
run_recvlogical() {  # slot, plugin options...
  local slot=$1; shift
  local t0; t0=$(now)
  as_pg "$bin/pg_recvlogical" -h "$dir" -p "$port" -U postgres -d postgres -S "$slot" --start \
    --no-loop -E "$end" -f /dev/null "$@"
  echo "$(now) - $t0" | bc
}
run_tenantsync() {  # slot, plugin
  local state; state="$(mktemp -d "$dir/state.XXXXXX")"
  local t0; t0=$(now)
  "$child" --url "$url" --slot "$1" --plugin "$2" --publication pub --state "$state" \
    --until-lsn "$end" --status-ms 100 >"$dir/child.out" 2>&1 || { cat "$dir/child.out"; exit 1; }
  local t; t=$(echo "$(now) - $t0" | bc)
  echo "$t $(du -sm "$state" | cut -f1) $(grep -o 'transactions=[0-9]*' "$dir/child.out")"
}
# Warm-up read of the whole backlog, so no consumer pays for reading WAL from disk.
as_pg "$bin/pg_recvlogical" -h "$dir" -p "$port" -U postgres -d postgres -S warm --start \
  --no-loop -E "$end" -f /dev/null -o proto_version=1 -o publication_names=pub
printf '%-9s %-16s %10s %12s %8s\n' plugin consumer seconds txn/s ratio
for plugin in pgoutput wal2json; do
  if [[ $plugin == pgoutput ]]; then
    tr=$(run_recvlogical recv_p -o proto_version=1 -o publication_names=pub)
    read -r tt mb journaled <<<"$(run_tenantsync ts_p pgoutput)"
  else
    tr=$(run_recvlogical recv_w "${w2j_opts[@]}")
    read -r tt mb journaled <<<"$(run_tenantsync ts_w wal2json)"
  fi
  printf '%-9s %-16s %10.2f %12.0f\n' "$plugin" pg_recvlogical "$tr" "$(echo "$txns / $tr" | bc -l)"
  printf '%-9s %-16s %10.2f %12.0f %8.2f   (%s, journal %s MB)\n' "$plugin" tenantsync "$tt" \
    "$(echo "$txns / $tt" | bc -l)" "$(echo "$tr / $tt" | bc -l)" "$journaled" "$mb"
done
