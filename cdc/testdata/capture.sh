#!/usr/bin/env bash
# Recaptures the decoder fixtures byte-exact from a real PostgreSQL 15 server:
#   zoo.pgoutput.hex    one pgoutput v1 message per line: "<lsn> <hex bytes>"
#   zoo.wal2json.jsonl  one wal2json format-version 2 object per line: "<lsn> <json>"
#   zoo.catalog.tsv     the source catalog the receiver would look up (type names, relations)
# Usage: cdc/testdata/capture.sh   (as root; starts and removes a throwaway cluster in /tmp)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin=/usr/lib/postgresql/15/bin
dir="$(mktemp -d /tmp/tscdc-capture.XXXXXX)"
chown postgres "$dir"
port=$((20000 + RANDOM % 20000))
while (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
as_pg() { runuser -u postgres -- "$@"; }
cleanup() { as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$dir/data/postgresql.conf" <<CONF
wal_level = logical
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
timezone = 'UTC'
datestyle = 'ISO, MDY'
CONF
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
psql=(as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres)

sed -n '/^--@@schema/,/^--@@workload/p' "$here/zoo.sql" | "${psql[@]}" >/dev/null
"${psql[@]}" -c "CREATE PUBLICATION p FOR ALL TABLES" \
  -c "SELECT pg_create_logical_replication_slot('s_pgoutput', 'pgoutput')" \
  -c "SELECT pg_create_logical_replication_slot('s_wal2json', 'wal2json')" >/dev/null
sed -n '/^--@@workload/,$p' "$here/zoo.sql" | "${psql[@]}" >/dev/null

"${psql[@]}" -At -F ' ' -c "SELECT lsn, encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes(
  's_pgoutput', NULL, NULL, 'proto_version', '1', 'publication_names', 'p', 'messages', 'true')" \
  >"$here/zoo.pgoutput.hex"
"${psql[@]}" -At -F ' ' -c "SELECT lsn, data FROM pg_logical_slot_peek_changes('s_wal2json', NULL, NULL,
  'format-version', '2', 'include-xids', '1', 'include-timestamp', '1', 'include-lsn', '1',
  'include-types', '1', 'include-type-oids', '1', 'include-typmod', '1', 'include-pk', '1',
  'include-transaction', '1')" >"$here/zoo.wal2json.jsonl"
# Catalog: "type <oid> <typmod> <format_type>" and "column <schema> <table> <relid> <identity>
# <attname> <format_type> <typoid> <typmod> <is_key>" (tab-separated, attnum order).
"${psql[@]}" -At -F $'\t' -c "
  SELECT 'type', a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
   WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0
   GROUP BY 2, 3 ORDER BY 2, 3" >"$here/zoo.catalog.tsv"
"${psql[@]}" -At -F $'\t' -c "
  SELECT 'column', n.nspname, c.relname, c.oid, c.relreplident, a.attname,
         format_type(a.atttypid, a.atttypmod), a.atttypid, a.atttypmod,
         (c.relreplident = 'f' OR coalesce(a.attnum = ANY(i.indkey), false))::int
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_index i ON i.indrelid = c.oid AND CASE c.relreplident WHEN 'i' THEN i.indisreplident
                                                   WHEN 'd' THEN i.indisprimary ELSE false END
   WHERE n.nspname = 'public' AND c.relkind = 'r'
   ORDER BY c.relname, a.attnum" >>"$here/zoo.catalog.tsv"
echo "captured $(wc -l <"$here/zoo.pgoutput.hex") pgoutput and $(wc -l <"$here/zoo.wal2json.jsonl") wal2json messages"
