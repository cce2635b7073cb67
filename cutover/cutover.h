// cutover: the final catch-up and the handover to the new database (`tenantsync cutover`).
//
// Run while `tenantsync run` streams in another process, after the old application stopped
// writing (maintenance mode, or writes revoked: ops/runbooks/cutover.md). RunCutover:
//
//   1. quiet window (CutoverOptions::quiet_for_seconds > 0): reads the source's WAL position W,
//      waits the window, and later (step 2 done) counts the data transactions the journal holds
//      with commit LSN in (W, barrier]. Any such transaction is a "quiet" no-go item naming the
//      tables and the count; this never stops the run. Counting in the journal is exact: it holds
//      every committed change of the mapped tables and nothing else of interest (autovacuum,
//      other databases and read-only sessions do not count), and our own barrier markers are
//      messages, which are skipped.
//   2. barrier: B = source pg_current_wal_lsn(), then a transactional logical message
//      (pg_logical_emit_message(true, 'tenantsync_barrier', ...)) whose record LSN M >= B.
//      Waits until the target's _tenantsync.progress.applied_lsn >= M, printing progress and the
//      remaining lag. Why the marker: applied_lsn is the commit LSN of the last applied source
//      transaction, so on an idle source it would stay below B forever; the marker is a
//      transaction of its own that the receiver journals and the applier passes (it applies
//      nothing but moves the progress row to its commit LSN > M). Every transaction committed
//      before B has a commit LSN < M, so applied >= M proves all of them are in the target
//      (DESIGN.md invariant 4: the target holds a prefix of the commit order). The time from
//      reading B to seeing applied >= M is the write pause the switch needs.
//   3. sequences: for every column of a mapped table that owns a sequence (serial or identity,
//      found through pg_depend on both servers, never by name), the target sequence is set so
//      that its next value is the source's next value plus `sequence_margin`. A target sequence
//      already past that (the new application used it) is left alone: a sequence never moves
//      back. Each one is then checked against max(column) of the target table.
//   4. validation: validate::Validate with counts, sums and FK orphans (plus the full checksum
//      diff with `full`). Live rechecks are on only when the source was not proven quiet.
//   5. writes during the cutover: a second marker after validation; data transactions between
//      the two markers mean the source kept writing while we validated: a no-go item.
//   6. the report (CutoverReport) printed and written as JSON; go = every check passed.
//
// FinishCutover (`cutover --finish`) is the last step: it refuses while the slot is active (the
// operator stops `run` first), then drops the slot and the publication on the source. Nothing
// else is dropped: the tenant schema is the new home of the data.
//
// Thread safety: the functions open their own connections; they may run beside `run`.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/lsn.h"
#include "core/status.h"

namespace tenantsync::cutover {

struct CutoverOptions {
  // Seconds of source quiet to verify before the barrier; 0 (default) skips the quiet check (the
  // writes-during-cutover check still runs). Not quiet is a no-go item, never an error.
  double quiet_for_seconds = 0;
  // Longest wait for the applier to pass the barrier. Default 600 s; past it the barrier check
  // fails (is `run` streaming?) and the report is no-go.
  double barrier_timeout_seconds = 600;
  // Added to every source sequence position before it is set in the target. Default 0: the
  // target's next id is exactly the source's next id. A margin leaves a gap of ids for writes
  // that reach the old database after the cutover by mistake.
  int64_t sequence_margin = 0;
  // Also run the full checksum diff of every row (validate --full). Default false.
  bool full = false;
  // Where the JSON report goes. Default (empty): <state_dir>/cutover-report.json.
  std::string report_path;
  // Progress lines while waiting for the barrier; nullptr: none.
  FILE* progress_out = stderr;
  std::chrono::milliseconds progress_interval{1000};
};

struct CutoverCheck {
  std::string name;     // "quiet", "barrier", "sequence", "validate", "writes during cutover"
  std::string subject;  // table, "tenant_rawdog.orders.id", ... ; empty when not per object
  bool ok = false;
  std::string details;  // one line, no secrets
};

struct SequenceSync {
  std::string table;            // target table
  std::string column;           // target column
  std::string source_sequence;  // qualified
  std::string target_sequence;  // qualified
  int64_t source_next = 0;      // next value the source sequence would hand out
  int64_t target_next_before = 0;
  int64_t target_next_after = 0;
  bool target_was_ahead = false;  // left alone: it was already past source_next + margin
};

struct CutoverReport {
  std::string pipeline;
  std::string target_schema;
  bool go = false;
  Lsn barrier_lsn;            // source pg_current_wal_lsn() at the barrier
  Lsn marker_lsn;             // LSN of the barrier message (>= barrier_lsn)
  Lsn applied_lsn;            // target's applied LSN when the barrier was seen passed
  bool barrier_reached = false;
  double barrier_seconds = 0; // barrier read -> applied seen past it: the write pause needed
  double quiet_for_seconds = 0;
  int64_t quiet_violations = -1;  // data transactions in the quiet window; -1: not checked
  double seconds = 0;             // the whole run
  std::vector<SequenceSync> sequences;
  std::vector<CutoverCheck> checks;
  std::vector<std::string> warnings;
  std::string report_path;

  std::string ToText() const;
  std::string ToJson() const;  // pretty-printed
};

// Runs steps 1-6 above. Errors (not no-go items) are returned as Status: unreachable servers,
// a missing tenant schema. The report is written to options.report_path (or the default) before
// returning, whatever the outcome.
StatusOr<CutoverReport> RunCutover(const Config& config, const CutoverOptions& options);

struct FinishOptions {
  // Drop without asking. Without it, `confirm_prompt` is asked; no prompt (non-interactive):
  // kFailedPrecondition asking for --confirm.
  bool confirm = false;
  std::function<bool(const std::string& question)> confirm_prompt;
  FILE* out = stdout;
};

// `cutover --finish`: kFailedPrecondition naming the PID when the slot is active (`run` still
// streams); otherwise drops the slot and the publication (each only if it exists, so running it
// twice is fine) and prints what it did.
Status FinishCutover(const Config& config, const FinishOptions& options);

// The default report path: <state_dir>/cutover-report.json.
std::string DefaultReportPath(const Config& config);

}  // namespace tenantsync::cutover
