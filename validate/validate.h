// validate: proves that the tenant schema holds what the source holds, through the same transform
// engine that copied it (DESIGN.md invariant 5), and does so while changes keep flowing.
//
// Checks, per mapped source table (tables with `skip: true` are left out; renamed tables are
// compared under their target name):
//   count    row counts, source vs target.
//   sum      exact sums of the money columns (TableConfig::sum_columns, default: the target's
//            bigint *_cents columns). A column the mapping casts (orders.gross_sales_cents, text in
//            the source) is summed in SQL for the values whose cast is certain and through the
//            engine's CastText in the client for the others, so the expected sum is the engine's.
//   sample   N random source rows (by key), fetched by key on both sides as text, the source row run
//            through TableTransform::Apply and compared column by column; `value: now` columns are
//            not compared; encrypted columns are decrypted with DecryptTarget and compared with the
//            source plaintext. Values are canonicalised through the target's type input function
//            when their text differs ("5" vs "5.0" for a double), so only real differences count.
//            Tables without a key: N random source rows (exact duplicates are one sample); for
//            each, the source rows equal to it and the target rows equal to its transform are
//            counted and must be as many. Both sides find candidates by the full diff's row hash
//            (one scan of the table per server and observation) and the engine judges them, so
//            unhashed columns count too. A difference is named by the ctid of a source copy, and
//            by its columns when a target row with the same hash differs only in unhashed ones.
//   fk       orphans of every foreign key of the tenant schema (anti-join in the target), and of
//            every relation declared in the config (TableConfig::relations) that no constraint
//            of the target already checks (that constraint's result then says it covers it).
//            Relations are resolved before any check: an unknown table or column, or one the
//            mapping drops or encrypts, is kInvalidArgument naming the config key.
//   schema   every mapped column exists in the target with the type the mapping says.
//   full     (ValidateOptions::full) an in-server checksum diff of every row, see below.
//
// Full diff. Each server computes, for ranges of a 64-bit "position" v of each row, the row count
// and the sum of a 64-bit hash of the row's canonical text (session settings are pinned: UTC,
// ISO dates, extra_float_digits, hex bytea, so both servers print values the same way):
//   - v is the key itself for a single smallint/integer/bigint key (ranges use the primary-key
//     index), hashtextextended(key text) for other keys, and the row hash for tables without a key;
//   - ranges are aligned power-of-two intervals of v; the first pass covers the table in at most
//     2^full_first_bits ranges (one aggregate query per server, run concurrently), every range whose (count, hash sum) differs is split into
//     2^full_fanout_bits sub-ranges and compared again, until a range holds at most
//     `full_leaf_rows` rows; then (key, row hash) pairs of the leaf ranges are fetched and keys are
//     classified missing / extra / different; only those rows are fetched whole and compared
//     through the transform engine (which names the differing columns and is the authority: a
//     range that differs only because the SQL approximation below was wrong ends with no row
//     reported). Data moved to the client is O(first-pass buckets + differences x leaf size),
//     never O(rows); with no difference it is one aggregate query per table and server.
//   - Transformed columns in the source-side hash: a copied (or renamed) column hashes as itself; a
//     cast to an integer, floating point, numeric, boolean, uuid or text type hashes as a SQL CASE
//     that casts values matching a conservative pattern (one every engine rule accepts the same
//     way, e.g. '^\s*[+-]?[0-9]{1,18}\s*$' for bigint) and substitutes on_error for the rest; an
//     added constant column hashes as the constant. Columns whose target value SQL cannot
//     reproduce are LEFT OUT of both sides' hash and listed in the check's details: `value: now`
//     columns, encrypted columns (the key never goes to a server, invariant 9), and casts to
//     json/jsonb/timestamps/dates. Those are verified by the samples and by the engine comparison of
//     every row that the diff fetches; a divergence confined to them is not found by `full` alone.
//   - Tables without a key: rows are identified by their hash, differing rows are reported by ctid
//     as missing (source only) or extra (target only), compared by the SQL hash only.
//
// Live-safe (LiveOptions). While the pipeline streams, the target trails the source. When any check
// sees a difference, it reads the source's pg_current_wal_lsn() L, waits (polling with backoff)
// until the target's _tenantsync.progress.applied_lsn for this pipeline is >= L, reads the target
// again and the source again: the difference is confirmed only when the source did not change in
// that window (its xmin fingerprint is the same) and the target still differs; if the source moved
// it tries again, up to `max_attempts`. A row or range that keeps changing for every attempt, or an
// applier that does not reach L within `timeout_seconds`, ends as kUnverified, never as kFail: no
// false alarms under load, while a divergence on rows the workload does not touch is reported.
// Without a progress row for the pipeline (nothing streams) the first observation is final.
// REQUIRES of the pipeline: applied_lsn must be able to pass pg_current_wal_lsn() of a quiet source
// (advanced on keepalives), else every difference found on a quiet source ends kUnverified; set
// live.enabled = false when the source is known to be quiet and caught up (cutover).
//
// Secrets (invariant 9): reports hold key values, column names and, for columns that are not
// encrypted, the differing values (truncated); never an encrypted column's value or plaintext.
//
// Thread safety: Validate() opens its own connections; calls may run concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace tenantsync::validate {

struct LiveOptions {
  // Re-check differences after the applier passed the source LSN observed when they were found.
  // Default true. False: the first observation is final (right for a quiet, caught-up source).
  bool enabled = true;
  // Longest wait for applied_lsn to reach one observed source LSN. Default 60 s; past it the
  // difference is kUnverified.
  double timeout_seconds = 60;
  // Observations of one difference before it is kUnverified because the source keeps changing.
  int max_attempts = 6;
  // Poll interval of applied_lsn: starts here, doubles up to max_backoff_seconds.
  double initial_backoff_seconds = 0.05;
  double max_backoff_seconds = 1.0;
};

struct ValidateOptions {
  // Source table names to validate; empty = every mapped table. A name that is not a table of the
  // source schema is kInvalidArgument.
  std::vector<std::string> tables;
  // Which checks run. Cutover runs counts, sums and fks by default.
  bool counts = true;
  bool sums = true;
  bool samples = true;
  bool fks = true;
  bool schema = true;
  // Random rows per table for the sample check. Default 100; 0 turns samples off.
  int sample_size = 100;
  // The in-server checksum diff of every row. Default false (it reads every row on both servers).
  bool full = false;
  // First pass: at most 2^full_first_bits ranges per table. Default 12 (4096 aggregate rows).
  int full_first_bits = 12;
  // Every differing range is split into 2^full_fanout_bits sub-ranges. Default 6.
  int full_fanout_bits = 6;
  // A range of at most this many rows on either side is resolved row by row. Default 64.
  int full_leaf_rows = 64;
  // Rows reported per table and check; differences beyond are counted, not listed. Default 50.
  int max_rows_reported = 50;
  LiveOptions live;
  // Where to write the JSON report; empty = not written. Written even when checks fail.
  std::string json_path;
};

enum class CheckStatus {
  kPass,
  kFail,        // a confirmed difference
  kUnverified,  // a difference that could not be confirmed or cleared (source kept changing)
};
const char* CheckStatusName(CheckStatus s);  // "pass", "fail", "unverified"

// One differing row found by the sample, fk or full check.
struct RowDifference {
  enum class Kind { kMissing, kExtra, kDifferent, kOrphan, kUnverified };
  Kind kind = Kind::kDifferent;
  std::string key;                   // "id=42", "order_id=7,line=2", or "ctid=(0,5)" without a key
  std::vector<std::string> columns;  // differing target columns (kDifferent)
  std::string details;               // "total_cents: source 1200, target 1300"; no secrets
};
const char* RowDifferenceKindName(RowDifference::Kind k);  // "missing", "extra", ...

struct CheckResult {
  std::string check;         // "count", "sum", "sample", "fk", "schema", "full"
  std::string table;         // target table name (the source name is in source_table)
  std::string source_table;  // empty for target-only checks (fk)
  std::string column;        // sum column, foreign key name; empty otherwise
  std::string source;        // source-side value: a count, a sum, "100 rows"
  std::string target;        // target-side value
  CheckStatus status = CheckStatus::kPass;
  std::string details;       // one line, no secrets
  std::vector<RowDifference> rows;  // at most max_rows_reported
  int64_t rows_total = 0;           // differing rows found, including those not listed
};

struct ValidationReport {
  std::string pipeline;
  std::string source_url;  // masked
  std::string target_url;  // masked
  std::string target_schema;
  bool full = false;
  bool live = false;  // rechecks were possible (a progress row exists)
  double seconds = 0;
  int64_t source_bytes = 0;  // bytes of query results moved from each server to the client
  int64_t target_bytes = 0;
  std::vector<CheckResult> checks;

  int failures() const;
  int unverified() const;
  bool passed() const { return failures() == 0 && unverified() == 0; }
  // The process exit code: 0 when every check passed, else 1 (failed or unverified checks; the
  // report says which).
  int ExitCode() const;

  // Human summary: a table of check, table, source, target, status, then the differing rows.
  std::string ToText() const;
  // Everything, as pretty-printed JSON.
  std::string ToJson() const;
  Status WriteJson(const std::string& path) const;
};

// Runs the checks. Errors (not differences) are returned as Status: unreachable servers,
// a bad table filter or declared relation (kInvalidArgument), a missing tenant schema
// (kNotFound), transform build failures. Differences are never errors: they are failed checks in the report.
StatusOr<ValidationReport> Validate(const Config& config, const ValidateOptions& options);

}  // namespace tenantsync::validate
