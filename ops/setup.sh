#!/usr/bin/env bash
# Installs every Debian package tenantsync's build, tests and benchmarks need, then builds.
# Idempotent and quiet: a second run installs nothing and rebuilds only what changed.
#   ops/setup.sh            install + configure + build (build/)
#   ops/setup.sh --deps     install packages only
#   ops/setup.sh --asan     install + build with ASan/UBSan into build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential cmake pkg-config ninja-build
  libpq-dev                 # libpq: replication protocol, COPY
  libboost-dev libboost-system-dev   # Boost.Asio (event loop) and Beast (HTTP)
  libsimdjson-dev           # wal2json parsing (on-demand API)
  librocksdb-dev            # durable journal and state store
  libssl-dev                # AES-256-GCM, TLS
  libgtest-dev libgmock-dev # unit and integration tests
  libyaml-cpp-dev           # config file
  libcli11-dev              # command line
  libspdlog-dev libfmt-dev  # logging and formatting
  nlohmann-json3-dev        # JSON reports and status output
  postgresql-15 postgresql-contrib postgresql-15-wal2json   # throwaway test clusters, pgbench
  pgcopydb                  # bench/snapshot_bench.sh compares against pgcopydb clone
  ccache sudo procps        # faster rebuilds; run test clusters as an unprivileged user; RSS checks
  clang libclang-rt-14-dev xxd bc   # cdc fuzzers (cdc/fuzz/run.sh); bench/stream_bench.sh
  prometheus                # promtool checks /metrics; a real Prometheus scrapes it in a test
  chromium                  # headless browser test of the status page
)

need=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[[ "${1:-}" == "--deps" ]] && exit 0

if [[ "${1:-}" == "--asan" ]]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTENANTSYNC_SANITIZE=ON >/dev/null
  cmake --build build-asan
else
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build
fi
