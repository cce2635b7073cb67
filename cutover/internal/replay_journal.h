// ReplayJournal: what `tenantsync replay` hands the Applier instead of a copy of the backlog. A
// read-only view of the state store's journal that shows the transactions (from, to] and leaves
// out, from those at or before the target's position, the changes a consistently restored target
// already holds and that can not be re-applied idempotently: changes of tables without a key
// (REPLICA IDENTITY FULL, where an insert can not be an upsert) and TRUNCATEs. Keyed changes of
// them stay (re-applying converges, and repairs rows a manual change damaged). A transaction
// left without changes is still shown, empty, so the progress row still reaches its commit LSN.
//
// The view never writes the journal: the writer calls return kFailedPrecondition, and
// RecordApplied is a no-op, so the Applier's per-batch mirror of the applied position does not
// move the store's applied position and checkpoints backwards while it replays (checkpoints are
// kept in LSN order); replay records the final position itself once the Applier is done.
//
// Thread safety: as the underlying journal's readers; the filtered-change count is not
// synchronized (the Applier reads from one thread).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/change.h"
#include "core/lsn.h"
#include "core/status.h"
#include "state/journal.h"

namespace tenantsync::cutover::internal {

// A change the target already holds when it is at or before the target's position and that
// re-applying would apply twice.
bool NotReplayable(const Change& c);

class ReplayJournal final : public state::Journal {
 public:
  // Shows the transactions of `base` with commit LSN in (reader's `after`, `to`] (`to` invalid:
  // through the end), filtering those at or before `target_at` as above. REQUIRES: `base`
  // outlives this view and every reader it made.
  ReplayJournal(const state::Journal* base, Lsn to, Lsn target_at)
      : base_(base), to_(to), target_at_(target_at) {}

  Status Begin(const TransactionInfo& info) override;
  Status Append(const Change& change) override;
  Status Commit(const TransactionInfo& info) override;
  Status Abort() override;
  bool IsSkipping() const override { return false; }
  Status AdvanceIdle(Lsn lsn) override;
  void NoteReceived(Lsn) override {}
  Lsn JournaledLsn() const override { return base_->JournaledLsn(); }
  bool WaitForNewer(Lsn lsn, std::chrono::milliseconds timeout) const override {
    return base_->WaitForNewer(lsn, timeout);
  }
  Lsn VisibleCommitLsn() const override { return base_->VisibleCommitLsn(); }
  bool WaitForVisible(Lsn commit_lsn, std::chrono::milliseconds timeout) const override {
    return base_->WaitForVisible(commit_lsn, timeout);
  }
  StatusOr<std::unique_ptr<state::JournalReader>> NewReader(Lsn after) const override;
  Status RecordApplied(Lsn, int64_t) override { return Status::Ok(); }
  StatusOr<std::vector<state::Checkpoint>> Checkpoints() const override {
    return base_->Checkpoints();
  }
  state::JournalStats Stats() const override { return base_->Stats(); }

  // Changes left out so far, each counted once even when a failed batch is read again.
  uint64_t filtered_changes() const { return filtered_; }

 private:
  class Reader;
  const state::Journal* base_;
  Lsn to_;
  Lsn target_at_;
  // Mutable: readers are made by the const NewReader and count through the view.
  mutable uint64_t filtered_ = 0;
  mutable Lsn counted_through_;  // transactions up to here had their filtered changes counted
};

}  // namespace tenantsync::cutover::internal
