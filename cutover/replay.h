// replay: re-applies the journal from an earlier point into the target (`tenantsync replay`),
// after the target was restored from a backup or damaged by a bad manual change, and lists the
// points one can replay from (`tenantsync checkpoints`). Needs no source connection: the journal
// holds every transaction of the retention window (DESIGN.md, "Why a journal").
//
// How Replay works (the Applier does the applying, so replayed rows go through the same
// transform as streamed ones, DESIGN.md invariant 5):
//   1. Opens the state store (exclusively: `run` must be stopped, else kFailedPrecondition naming
//      its PID) and resolves --from: a checkpoint id, or an LSN. A position outside the retained
//      window is kNotFound naming the window.
//   2. Reads the target's progress row P. A target behind --from (P < from) would skip the
//      transactions (P, from]: kFailedPrecondition asking for an earlier checkpoint. No row:
//      kFailedPrecondition (restore _tenantsync together with the tenant schema).
//   3. Reads the journal's transactions (from, to] in place, through a read-only view
//      (cutover/internal/replay_journal.h; nothing is copied, the journal is never written).
//      Transactions at or before P are already in a consistently restored target; keyed changes
//      of them are kept (re-applying them converges, and repairs rows a manual change damaged)
//      but changes of tables without a key (REPLICA IDENTITY FULL, where an insert can not be an
//      upsert) and TRUNCATEs are left out of them, so replaying over a target that is ahead
//      converges exactly. With P == from (the usual case) nothing is left out.
//   4. Sets the target's progress row back to `from` and runs the Applier over that view until
//      it is drained; dead letters go to the state store with phase "replay".
//   5. Mirrors the new applied position in the state store. A later `run` continues after it.
// A crash in step 4 leaves the target at a batch boundary with its progress row saying where:
// running the same replay again converges.
//
// Thread safety: one replay per state directory (the store's lock enforces it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/lsn.h"
#include "core/status.h"
#include "state/journal.h"

namespace tenantsync::cutover {

// `checkpoints`: the retained checkpoints, oldest first, from a read-only view of the state
// directory (works beside `run`). kNotFound when the state directory does not exist.
StatusOr<std::vector<state::Checkpoint>> ListCheckpoints(const Config& config);
std::string CheckpointsText(const std::vector<state::Checkpoint>& checkpoints);
std::string CheckpointsJson(const std::vector<state::Checkpoint>& checkpoints);

struct ReplayOptions {
  // Checkpoint id ("3") or LSN ("0/16B3748"). Required.
  std::string from;
  // Last commit LSN to apply; empty = the end of the journal.
  std::string to;
  FILE* out = stdout;  // progress and summary
};

struct ReplayResult {
  Lsn from;                    // resolved start position (transactions after it are applied)
  Lsn to;                      // requested end (invalid = end of the journal)
  Lsn target_before;           // the target's applied LSN before the replay
  Lsn applied;                 // the target's applied LSN after it
  uint64_t transactions = 0;   // transactions replayed
  uint64_t changes = 0;        // changes applied
  uint64_t filtered_changes = 0;  // keyless-table changes and truncates at or before
                                  // target_before left out (already in the target)
  uint64_t dead_letters = 0;
  double seconds = 0;
};

StatusOr<ReplayResult> Replay(const Config& config, const ReplayOptions& options);

}  // namespace tenantsync::cutover
