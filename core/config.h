// The pipeline configuration: parsed once from YAML (or from --source/--target/--tenant flags)
// into these plain structs, which every stage reads. Nothing else parses YAML.
//
// Secrets (URLs' passwords, tenant secrets, the encryption key) live here in plain text after
// ${VAR} expansion; code that prints any of them must go through MaskUrl / MaskedSummary.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace tenantsync {

// A rule for one column of one table (`tables.<t>.columns.<c>`).
struct ColumnRule {
  // Target type to cast the source value to ("bigint", "double precision", "timestamptz", ...).
  // Empty: keep the source column's type.
  std::string type;
  // Text of the value to use when the cast fails (on_error: 0). Unset: the row is a dead letter
  // (or aborts the run) under the table's on_error policy.
  std::optional<std::string> on_error;
  // The column is added in the target and filled with this constant; the special value "now"
  // means the time of the snapshot transaction / apply batch. Unset for source columns.
  std::optional<std::string> value;
  std::string rename;    // target column name; empty: same name
  bool drop = false;     // leave the column out of the target
  bool encrypt = false;  // AES-256-GCM, see core/crypto.h; target type is text
};

enum class ErrorPolicy { kDeadLetter, kAbort };

// A relation the tenant schema has no constraint for (`tables.<t>.relations.<name>`): every row
// of the table whose `columns` are all non-NULL must match a row of `references` on `ref_columns`.
// `validate` checks its orphans in the target like a foreign key's. Table and column names are
// source names, like every key under `tables:`; validate maps them through the mapping.
struct LogicalRelation {
  std::string name;                      // the key under relations:, names the check
  std::vector<std::string> columns;      // this table's columns, at least one
  std::string references;                // the referenced (parent) source table
  std::vector<std::string> ref_columns;  // one per column; empty: the parent's primary key
};

struct TableConfig {
  std::string rename;  // target table name; empty: same name
  bool skip = false;   // not copied, not published, not validated
  // Keyed by source column name, or by the new column's name for added (`value:`) columns.
  std::map<std::string, ColumnRule> columns;
  // Money columns whose sums `validate` compares; empty: the table's bigint *_cents columns.
  std::vector<std::string> sum_columns;
  // Relations validate checks for orphans, in the file's order. Checked against the catalogs by
  // validate (the config parser knows no tables): an unknown table or column is its error.
  std::vector<LogicalRelation> relations;
};

struct SourceConfig {
  std::string url;                 // required; ${VAR} expanded; never printed unmasked
  std::string schema = "public";   // schema whose tables are migrated
  std::string plugin = "pgoutput"; // "pgoutput" or "wal2json"
  std::string publication;         // default: tenantsync_<pipeline>
  std::string slot;                // default: tenantsync_<pipeline>
  // pgoutput on PostgreSQL 14+: ask the walsender to stream large in-progress transactions
  // (protocol version 2, `streaming on`) instead of decoding each whole before sending it.
  bool stream_in_progress = true;
  // With stream_in_progress: the source's logical_decoding_work_mem for this pipeline's own
  // walsender (SET on its replication connection), i.e. how much of a transaction it decodes
  // before it starts streaming it. Smaller: the bridge starts applying a large transaction
  // sooner, and the walsender holds less memory. Empty: the server's setting.
  std::string logical_decoding_work_mem = "4MB";
};

struct TargetConfig {
  std::string url;                 // required
  std::string schema;              // default: tenant_<tenant.slug>
  bool create_tables = true;       // create missing tables from the source catalogs
};

struct TenantConfig {
  std::string slug;                // required, [a-z0-9_]+
  std::string name;                // default: slug
  std::string domain;
  std::string store_domain;
  std::map<std::string, std::string> secrets;  // stored encrypted in public.organizations
};

// One older key under `encryption.previous_keys`: used to decrypt values that still carry its key
// id (until `rotate-key` has re-encrypted them), never to encrypt.
struct EncryptionKeyConfig {
  std::string key_id;    // optional: the key's id (8 hex digits); checked against the key
  std::string key;       // base64 of 32 bytes
  std::string key_file;  // alternative to key, mode 0600 or stricter
};

struct EncryptionConfig {
  std::string key;       // base64 of 32 bytes; empty when no column/secret needs encryption
  std::string key_file;  // alternative to key: a file holding the base64 key, mode 0600 or stricter
  // Optional: the current key's id (first 8 hex digits of its SHA-256); when set, a key with
  // another id is refused, so a swapped key can not start writing under a new id unnoticed.
  std::string key_id;
  // Older keys, for decryption only; rotate-key re-encrypts their values with the current key.
  std::vector<EncryptionKeyConfig> previous_keys;
};

struct OpsConfig {
  std::string listen = "127.0.0.1:9753";  // HTTP /metrics /status /healthz /; loopback by default
  std::string token;                      // optional bearer token for every path but /healthz
  double max_healthy_lag_seconds = 300;   // /healthz answers 503 above this lag
};

struct SnapshotConfig {
  int workers = 0;                        // copy workers; 0 = number of cores
  ErrorPolicy on_error = ErrorPolicy::kDeadLetter;  // rows that fail a transform or insert
  // Tables larger than this are split into ctid ranges (parallel, resumable per range). Up to it a
  // table is one transaction, copied with COPY FREEZE when tenantsync created it: at 2.6 GB on
  // 2 cores that was 1.27x faster than 256 MB ranges (no hint-bit pass in the key build, one
  // inserter), see bench/RESULTS.md.
  int64_t chunk_bytes = 4096ll << 20;
};

enum class TruncatePolicy { kApply, kIgnore, kStop };
enum class DriftPolicy { kAdd, kStop };

struct ApplyConfig {
  int batch_max_transactions = 1000;      // source transactions grouped into one target transaction
  int64_t batch_max_bytes = 16ll << 20;
  int batch_max_ms = 200;                 // latency bound: a batch commits at least this often
  TruncatePolicy truncate = TruncatePolicy::kApply;
  DriftPolicy schema_drift = DriftPolicy::kAdd;
  ErrorPolicy on_error = ErrorPolicy::kDeadLetter;
  std::string session_replication_role = "replica";  // "replica" or "origin"
  // How the target compresses the large values the applier writes: "lz4" (when the server has
  // it) or "server" (the target's default_toast_compression).
  std::string toast_compression = "lz4";
};

struct JournalConfig {
  double retention_hours = 168;           // applied transactions kept this long for replay
  int64_t max_bytes = 20ll << 30;         // the receiver stops with a clear error beyond this
  // Group commit: many received transactions share one fsync of the journal (a background thread
  // syncs back to back). Safe: the flush LSN acknowledged to the source, and what the applier
  // reads, only ever cover transactions whose fsync has finished (invariant 2). false: one fsync
  // per source transaction (about 160 txn/s on a slow disk instead of tens of thousands).
  bool group_commit = true;
};

struct Config {
  std::string pipeline;                   // required, [a-z0-9_]+; names slot/publication defaults
  SourceConfig source;
  TargetConfig target;
  TenantConfig tenant;
  std::string state_dir;                  // default: ./state/<pipeline>
  EncryptionConfig encryption;
  OpsConfig ops;
  SnapshotConfig snapshot;
  ApplyConfig apply;
  JournalConfig journal;
  std::map<std::string, TableConfig> tables;  // keyed by source table name; absent = as is
  std::string path;                       // file it was read from; empty for flags

  // The table's config, or nullptr when it has none (copied as is).
  const TableConfig* FindTable(const std::string& source_table) const;
  // Target table name for a source table.
  std::string TargetTable(const std::string& source_table) const;
  // True when any column rule encrypts or the tenant has secrets.
  bool NeedsEncryptionKey() const;
};

// Reads and validates a YAML config. Every problem is kInvalidArgument with one line naming the
// file, the key path and the fix, e.g.
//   "rawdog.yaml: tables.orders.columns.total: unknown key 'typo'; expected one of type, on_error, ..."
//   "rawdog.yaml: source.url: environment variable POSTGRES_URL is not set; export it or write the URL"
StatusOr<Config> LoadConfig(const std::string& path);
// Same, from text (for tests); `origin` names it in messages.
StatusOr<Config> ParseConfig(const std::string& yaml_text, const std::string& origin);
// The zero-config path: all tables of `public`, same names in tenant_<slug>.
StatusOr<Config> ConfigFromFlags(const std::string& source_url, const std::string& target_url,
                                 const std::string& tenant_slug);

}  // namespace tenantsync
