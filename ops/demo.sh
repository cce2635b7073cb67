#!/usr/bin/env bash
# The README's main-job command. On a fresh Debian 12 machine it:
#   1. installs the packages and builds tenantsync (ops/setup.sh);
#   2. starts two throwaway PostgreSQL 15 clusters under .demo/ (source: the old RAWDOG database,
#      target: the new multi-tenant one), wal_level=logical, on free ports of 127.0.0.1;
#   3. loads the sample RAWDOG data into the source (scale $SCALE, default 1);
#   4. runs `tenantsync -c examples/rawdog.yaml run`: preflight, snapshot with progress, then live
#      streaming of a RAWDOG change workload with the lag shown, until Ctrl-C (or --seconds N);
#   5. stops everything and removes the clusters (--keep leaves them running, and prints how to
#      connect and how to stop them).
# Options: --seconds N (stop by itself after N seconds of streaming), --scale N, --keep.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=0 scale=${SCALE:-1} keep=0
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "demo: unknown option '$1'; see --help" >&2; exit 2 ;;
  esac
done

ops/setup.sh
bin=$root/build/ops/tenantsync
rawdog=$root/build/tests/rawdog
pgbin=/usr/lib/postgresql/15/bin
demo=$root/.demo

as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

start_cluster() {  # name port
  local dir=$demo/$1
  as_pg "$pgbin/initdb" -D "$dir" -U postgres -A trust --no-sync >/dev/null
  cat >>"$dir/postgresql.conf" <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
CONF
  as_pg "$pgbin/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null
}

stop_all() {
  for c in source target; do
    [[ -f $demo/$c/postmaster.pid ]] && as_pg "$pgbin/pg_ctl" -D "$demo/$c" -m fast -w stop >/dev/null 2>&1 || true
  done
}

cleanup() {
  local rc=$?
  [[ -n ${workload_pid:-} ]] && kill "$workload_pid" 2>/dev/null && wait "$workload_pid" 2>/dev/null
  if ((keep)); then
    echo "demo: clusters left running ($POSTGRES_URL, $NEW_POSTGRES_URL); stop them with:"
    echo "  runuser -u postgres -- $pgbin/pg_ctl -D $demo/source stop; runuser -u postgres -- $pgbin/pg_ctl -D $demo/target stop"
  else
    stop_all
    rm -rf "$demo"
  fi
  exit $rc
}

stop_all; rm -rf "$demo"; mkdir -p "$demo"
[[ $(id -u) == 0 ]] && chown postgres "$demo"
trap cleanup EXIT
trap 'exit 130' INT TERM

src_port=$(free_port); start_cluster source "$src_port"
tgt_port=$(free_port); start_cluster target "$tgt_port"
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$src_port" -U postgres rawdog
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$tgt_port" -U postgres platform
export POSTGRES_URL="postgresql://postgres@127.0.0.1:$src_port/rawdog"
export NEW_POSTGRES_URL="postgresql://postgres@127.0.0.1:$tgt_port/platform"
export SHOPIFY_ACCESS_TOKEN="shpat_demo_$(openssl rand -hex 8)"
export TENANTSYNC_KEY="$(openssl rand -base64 32)"
# For a second terminal: `. .demo/env && build/ops/tenantsync -c .demo/rawdog.yaml status`.
(umask 077; printf 'export POSTGRES_URL=%q NEW_POSTGRES_URL=%q SHOPIFY_ACCESS_TOKEN=%q TENANTSYNC_KEY=%q\n' \
  "$POSTGRES_URL" "$NEW_POSTGRES_URL" "$SHOPIFY_ACCESS_TOKEN" "$TENANTSYNC_KEY" >"$demo/env")
echo "demo: source $POSTGRES_URL"
echo "demo: target $NEW_POSTGRES_URL"

echo "demo: loading sample RAWDOG data (scale $scale)"
"$rawdog" load --url "$POSTGRES_URL" --scale "$scale"

cfg=$demo/rawdog.yaml
sed "s#^state_dir:.*#state_dir: $demo/state#" examples/rawdog.yaml >"$cfg"
"$bin" -c "$cfg" check

if ! "$bin" run --help >/dev/null 2>&1; then
  echo "demo: this build has no 'run' command yet; stopping after loading the sample data."
  exit 0
fi

# A steady change workload on the source while tenantsync snapshots and streams.
"$rawdog" workload --url "$POSTGRES_URL" --clients 2 --transactions 0 --seconds $(( seconds > 0 ? seconds + 30 : 86400 )) \
  >"$demo/workload.log" 2>&1 &
workload_pid=$!

echo "demo: running tenantsync (Ctrl-C stops it cleanly)"
if ((seconds > 0)); then
  "$bin" -c "$cfg" run &
  run_pid=$!
  sleep "$seconds"
  kill "$workload_pid" 2>/dev/null || true
  wait "$workload_pid" 2>/dev/null || true
  workload_pid=
  sleep 3
  kill -INT "$run_pid"
  wait "$run_pid"
  "$bin" -c "$cfg" status || true
else
  "$bin" -c "$cfg" run
fi
