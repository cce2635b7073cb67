// The snapshot phase: a consistent, parallel, resumable backfill of the tenant schema.
//
// State machine (meta keys in the state store, all written with sync = true):
//
//   (none) ──create slot──▶ copying ──all chunks + post-data──▶ done
//     │                       │ crash / Ctrl-C: run again; chunks whose marker is committed in
//     │                       │ the target are skipped, the others are copied in the exported
//     │                       │ snapshot of a temporary slot (the first one died with the
//     │                       │ process; see "Resume" below)
//
//  1. Preflight (snapshot/preflight.h). Nothing is written when it fails.
//  2. Target pre-data: schema `_tenantsync` with its control tables, the tenant schema, enum types,
//     sequences, tables (columns, NOT NULL, defaults, identity; no keys yet: they are built after
//     the data like pg_dump does), and the organization record in public.organizations.
//  3. Publication FOR TABLE the mapped tables, then the logical slot over a replication connection
//     with CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export'). The slot's consistent point, name and
//     exported snapshot name go to meta "snapshot/consistent_lsn", "snapshot/slot",
//     "snapshot/snapshot_name" durably BEFORE any row is copied (DESIGN.md invariant 1): the
//     stream starts at consistent_lsn.
//  4. The chunk plan (tables split into ctid ranges of chunk_bytes) is recorded in meta
//     "snapshot/plan/<table>" so a resumed run uses the same chunk boundaries.
//  5. N workers each open a source transaction (REPEATABLE READ, SET TRANSACTION SNAPSHOT) and a
//     target connection. Once every worker has imported the snapshot, the replication connection
//     (whose open transaction holds the snapshot and blocks the source's vacuum) is closed.
//     Each chunk is one target transaction holding its rows AND its marker row in
//     _tenantsync.snapshot_chunks, so a chunk is either entirely in the target or not at all; a
//     crash leaves no half chunk to clear. After commit the chunk is mirrored in meta
//     "snapshot/chunk/<table>/<n>" (for ops; the target marker is the truth).
//  6. Post-data: primary keys, unique and check constraints, indexes (in parallel), then foreign
//     keys, then sequence positions. Every statement is skipped when its object exists.
//  7. meta "snapshot/state" = "done".
//
// Resume after the exported snapshot is gone (DESIGN.md invariant 1, second sentence). The
// remaining chunks can not be read as of the slot's consistent point L1 any more, so they are read
// in a NEWER snapshot, and that snapshot is taken so that its own consistent point L2 is exact: a
// TEMPORARY logical slot created with SNAPSHOT 'export' (dropped when its connection closes, right
// after every worker imported it). Logical decoding defines both slots' snapshots the same way: a
// transaction is in the snapshot iff its commit record starts before the consistent point, and
// our stream's commit LSN is exactly that commit record position (pgoutput and wal2json alike).
// So for a table copied in the newer snapshot, the source transactions with commit LSN < L2 are
// already in its rows, and those >= L2 are not.
//
// Every table with a chunk left is recorded, durably and before any of its chunks is copied, in
// meta "snapshot/resumed_lsn/<source table>" = L2 (a later resume overwrites it with its own
// point). The stream still starts at L1 (tables finished before the crash need everything after
// L1), and the applier skips a change to a table whose recorded point is above the change's
// commit LSN. Each table therefore sees exactly the source's history after the snapshot it was
// copied in: no change lost, none applied twice, so no conflict on primary or secondary unique
// keys, and it also holds for tables without a key (REPLICA IDENTITY FULL), where a replayed
// INSERT would otherwise duplicate a row (an upsert can not make that idempotent). A table only
// partly copied before the crash is emptied and copied whole in the new snapshot (one point per
// table; rows moved by an UPDATE between the two snapshots would otherwise be copied twice).
//
// Until the applier has passed L2 the tables copied in the two snapshots may disagree on foreign
// keys (the applier writes with session_replication_role = replica, so nothing checks them
// meanwhile); the snapshot adds them NOT VALID and records L2 in kMetaMixedSnapshots. The
// pipeline (apply/pipeline.h) calls ValidateDeferredForeignKeys once the stream has caught up
// past that point; from then on the target is a prefix of the source's commit order, whole.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/lsn.h"
#include "core/pipeline_stats.h"
#include "core/status.h"
#include "state/state_store.h"

namespace tenantsync::snapshot {

// Meta keys this phase writes (other stages read the first three).
inline constexpr const char* kMetaConsistentLsn = "snapshot/consistent_lsn";  // "X/X"
inline constexpr const char* kMetaSlot = "snapshot/slot";
inline constexpr const char* kMetaSnapshotName = "snapshot/snapshot_name";
inline constexpr const char* kMetaState = "snapshot/state";          // "copying" | "done"
inline constexpr const char* kMetaNow = "snapshot/now";              // `value: now` of the run
inline constexpr const char* kMetaPlanPrefix = "snapshot/plan/";     // + table: chunk count
inline constexpr const char* kMetaChunkPrefix = "snapshot/chunk/";   // + table/n: rows
// Set when a resumed run mixed chunks of the lost exported snapshot with a newer one: foreign
// keys were added NOT VALID and wait for ValidateDeferredForeignKeys. The value is the newest
// resumed snapshot's consistent point ("X/X"): the target is consistent once the stream has
// applied everything committed before it.
inline constexpr const char* kMetaMixedSnapshots = "snapshot/mixed_snapshots";
// + source table: "X/X", the consistent point of the resumed snapshot the table was copied in.
// The applier skips the table's changes committed before it (they are in the copy already).
// Absent for tables copied in the slot's own exported snapshot.
inline constexpr const char* kMetaResumedLsnPrefix = "snapshot/resumed_lsn/";

struct SnapshotOptions {
  // Copy workers; 0 = config.snapshot.workers, and when that is 0 too, hardware concurrency.
  int workers = 0;
  // Print the plan (tables in order, row estimates, transforms, DDL) to `plan_out` and write
  // nothing anywhere: no slot, no publication, no target DDL, no state.
  bool dry_run = false;
  // Write the JSON report here when not empty (rows, bytes, seconds, dead letters per table,
  // snapshot LSN). Never contains values.
  std::string report_path;
  // Progress display: kAuto = live display when stderr is a terminal, plain lines otherwise.
  enum class Progress { kAuto, kLive, kPlain, kNone };
  Progress progress = Progress::kAuto;
  // Skip the preflight checks (the caller ran them already, e.g. `run`).
  bool skip_preflight = false;
  // Set by a signal handler to stop: workers finish or roll back their current chunk and the
  // call returns kCancelled; running again resumes.
  const std::atomic<bool>* cancel = nullptr;
  // Live counters for ops (may be null).
  PipelineStats* stats = nullptr;
  // Where the dry-run plan and the summary table go (stdout by default).
  FILE* out = stdout;
  // Test seam (SyncPoint-style): called once a new slot exists and its exported snapshot is
  // still importable, before any worker starts. Tests read the source "as of the consistent
  // point" through the snapshot name here, then write to the source to prove those writes do not
  // reach the copy. Not called when resuming. Empty in production.
  std::function<void(const std::string& snapshot_name, Lsn consistent_lsn)> after_slot_created;
};

struct TableResult {
  std::string table;          // source table
  int64_t rows = 0;           // rows written to the target by this run
  int64_t bytes = 0;          // COPY bytes read from the source by this run
  int64_t dead_letters = 0;   // rows stored as dead letters by this run
  int chunks = 0;
  int chunks_skipped = 0;     // already done by an earlier run
  double seconds = 0;         // wall time from its first chunk start to its last chunk end
};

struct SnapshotResult {
  Lsn consistent_lsn;
  std::string slot;
  bool resumed = false;          // the slot existed: the exported snapshot was not available
  Lsn resumed_lsn;               // resumed with chunks left: their newer snapshot's point
  bool already_done = false;     // every chunk was done before this run
  double seconds = 0;
  std::vector<TableResult> tables;  // in FK order
  int64_t rows = 0;
  int64_t dead_letters = 0;
  // Wall seconds of each phase, in order ("setup": preflight, catalogs, target schema and the
  // organization record; "slot": publication, slot and exported snapshot; "copy"; "keys": primary
  // keys, unique and check constraints, indexes; "foreign_keys"; "sequences"). For the report.
  std::vector<std::pair<std::string, double>> phases;
};

// Runs the snapshot phase described above. On success the slot exists and the stream can start
// at result->consistent_lsn. Errors name the table/chunk; a failure leaves the target with only
// whole chunks and the slot in place, so running again resumes.
Status RunSnapshot(const Config& config, const SnapshotOptions& options, state::StateStore& state,
                   SnapshotResult* result);

// After a resume in a fresh snapshot, tables finished in the lost snapshot and tables copied in
// the new one may disagree on foreign keys until the stream has replayed the changes after the
// consistent point, so the snapshot adds them NOT VALID. Call this once the stream has applied
// everything committed before the LSN in kMetaMixedSnapshots (RunPipeline does, once caught up;
// the applier writes with session_replication_role = replica, so FK triggers do not fire while
// it converges): it runs ALTER TABLE ... VALIDATE CONSTRAINT for every not-yet-valid foreign key
// of the tenant schema and clears kMetaMixedSnapshots. A violation then is a real one: the error
// names the constraint.
Status ValidateDeferredForeignKeys(const Config& config, state::StateStore& state);

// Dry run without a state store: prints the plan to options.out, writes nothing.
Status PrintSnapshotPlan(const Config& config, FILE* out);

}  // namespace tenantsync::snapshot
