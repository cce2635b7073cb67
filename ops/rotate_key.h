// rotate-key: re-encrypts, in the target, every value that is not under the current encryption
// key (`tenantsync rotate-key`): the encrypted columns of every mapped table (the config's
// `encrypt: true` rules) and the tenant's secrets in public.organizations.
//
// How a key is rotated: make a new key, make it encryption.key and move the old one to
// encryption.previous_keys, restart `run` with that config (from then on the stream writes
// under the new key), then run rotate-key; once it reports nothing left, the old key can go.
//
// What it does, per table: one keyset pass in primary key order (ctid order for a table
// without a key), `batch_rows` rows per target transaction. Each batch selects only rows holding
// a value under another key id, `FOR UPDATE SKIP LOCKED`, decrypts each such value with the key
// its id names, encrypts it with the current key, and updates the row where the column still
// holds the value it read (`WHERE col IS NOT DISTINCT FROM old`), then commits.
//
// Contracts:
//   - Idempotent and resumable: a value already under the current key is never selected, so a
//     rerun after a crash, kill -9 or Ctrl-C finishes the job and a run after that changes 0
//     rows. A crash leaves every value either as it was or re-encrypted (each batch is one
//     transaction); none is lost (the synthetic nonce makes re-encryption deterministic).
//   - Safe while `run` streams: a row the applier is writing is locked, so it is skipped (SKIP
//     LOCKED: rotate-key never waits on a row lock, so it can not deadlock with the applier) and
//     retried in a later pass; a row the applier changed after it was read is left alone (its new
//     value is the applier's, under the current key). The applier's own writes are under the
//     current key once `run` uses the new config.
//   - Refuses before changing anything when a value carries a key id no configured key has
//     (kNotFound naming the id and the column); a value that is not tenantsync ciphertext at all
//     is left alone and counted.
//   - No secret out (DESIGN.md invariant 9): output, errors and the report name tables, columns,
//     key ids and counts, never key bytes, plaintext or ciphertext.
//
// Kill points (core/kill_point.h): "rotate_key.before_batch_commit" (the batch's updates are
// rolled back by the server) and "rotate_key.after_batch_commit" (the batch is durable; the
// rerun starts after it).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace tenantsync::ops {

struct RotateKeyOptions {
  // Count what would be re-encrypted (per column and old key id) and change nothing.
  bool dry_run = false;
  // Rows per target transaction. Larger: fewer commits, longer row locks held against the
  // applier. Default 1000.
  int batch_rows = 1000;
  // Write the result as JSON here (also stored in the audit record). Empty: no file.
  std::string report_path;
  // Set from a signal handler: the current batch is finished, then RotateKey returns kCancelled
  // (a rerun continues). nullptr: never cancelled.
  const std::atomic<bool>* cancel = nullptr;
  // A progress line on `progress` at most this often while a table is being re-encrypted.
  double progress_seconds = 5;
  FILE* progress = stderr;
};

// One encrypted column (or the organization's secrets) and what happened to it.
struct RotatedColumn {
  std::string table;    // qualified target table, "tenant_rawdog.customers"
  std::string column;   // target column, or "secrets" for public.organizations
  std::string context;  // the encryption context, "customers.email"
  // Values found under another configured key before the run, by key id.
  std::map<std::string, int64_t> pending_by_key_id;
  int64_t not_ciphertext = 0;  // non-NULL values that are not tenantsync ciphertext (left alone)
  int64_t reencrypted = 0;     // values re-encrypted by this run
};

struct RotateKeyResult {
  bool dry_run = false;
  std::string key_id;                     // the current key's id
  std::vector<std::string> previous_ids;  // configured previous keys' ids
  std::vector<RotatedColumn> columns;
  int64_t rows_updated = 0;  // rows (and organization records) changed
  int64_t batches = 0;       // target transactions committed
  double seconds = 0;

  int64_t pending() const;      // values found under another key before the run
  int64_t reencrypted() const;  // values re-encrypted by this run
  std::string ToText() const;   // the summary printed on stdout
  nlohmann::json ToJson() const;
};

// Re-encrypts (or, with dry_run, counts) as described above. Errors: kInvalidArgument when the
// config has no encryption key; kNotFound naming the key id when a value's key is not
// configured; kFailedPrecondition when a target table or column of the config is missing or
// values stay under an old key after several passes (a `run` still on the old key writes them);
// kCancelled when options.cancel was set; connection and server errors as they come.
StatusOr<RotateKeyResult> RotateKey(const Config& config, const RotateKeyOptions& options);

}  // namespace tenantsync::ops
