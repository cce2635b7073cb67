// LiveFeed: hands the changes of a large source transaction to the applier while the receiver is
// still journaling it, so the applier can apply them into an open target transaction instead of
// starting only after the whole transaction is journaled (bench/RESULTS.md, Apply: a 1M-row UPDATE
// spent ~10 s receiving before apply could start).
//
//   Receiver ──▶ TeeJournal ──▶ real Journal (unchanged: spool, commit, durability, readers)
//                    │
//                    └──▶ LiveFeed (bounded queue of copied changes) ──▶ Applier
//
// A transaction the source streams while it runs (pgoutput protocol 2) is fed the same way; its
// Begin has no commit LSN, so the applier learns it from the commit item (and a resend that the
// journal drops at its commit is dropped from the feed too).
//
// Why this keeps exactly-once and commit order (DESIGN.md invariants 3 and 4): the applier takes
// a live transaction only when every transaction the receiver committed before it is applied in
// the target (LiveFeed::TryClaim compares the applier's applied LSN with the last commit LSN the
// writer passed through before Begin), applies its changes inside one open target transaction,
// and sends COMMIT (with the progress row naming its commit LSN) only once the journal reports
// the source commit durable (JournaledLsn() >= end LSN). Before that nothing is committed: a crash
// of either side, a receiver Abort (reconnect), a statement error or a full queue rolls the target
// transaction back, and the transaction is applied again from the journal by the ordinary path.
// The journal itself is unchanged: it still holds every transaction (invariant 2, replay).
//
// Memory (invariant 7): at most LiveFeedOptions::max_queued_bytes of copied changes wait in the
// queue (plus the first offer_min_changes changes of the transaction being received, bounded by
// offer_max_buffered_bytes). When the queue is full the receiver waits for the applier; when the
// applier takes nothing for max_wait the transaction is dropped from the feed (the applier rolls
// back, and the journal path applies it after its commit), so a stuck target never stops the
// receiver for longer than that.
//
// Thread safety: the writer hooks (OnBegin/OnAppend/OnCommit/OnAbort, i.e. TeeJournal's writer
// calls) from the receiver thread only; TryClaim/Next/Release/Abandon from the applier thread
// only. Everything shared is guarded by mu_.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "core/change.h"
#include "core/lsn.h"
#include "core/status.h"
#include "state/journal.h"

namespace tenantsync::apply::internal {

struct LiveFeedOptions {
  // A transaction is offered to the applier once it has this many changes (default 10,000);
  // smaller ones take the journal path only (their copies are dropped at commit). 0 disables.
  int64_t offer_min_changes = 10000;
  // ... or once its buffered copies reach this many bytes (default 8 MiB).
  uint64_t offer_max_buffered_bytes = 8u << 20;
  // Bytes of copied changes the queue holds before the receiver waits (default 64 MiB: more
  // than one 100,000-row chunk of pgbench_accounts, so the receiver and the walsender go on
  // while the applier runs a chunk's UPDATE; 32 MiB made a 1M-row UPDATE ~9% slower).
  uint64_t max_queued_bytes = 64u << 20;
  // Longest the receiver waits on a full queue without the applier taking anything from it
  // (default 30 s, half the walsender's default timeout, since the receiver does not read the
  // socket meanwhile); then the transaction is dropped from the feed. A slow target only slows
  // the receiver down (back-pressure, as native replication's apply worker does); a stuck one
  // costs at most this.
  std::chrono::milliseconds max_wait{30000};
  // The same while the applier has not claimed the transaction (it is still applying earlier
  // ones, e.g. catching up a backlog): default 1 s, so a catch-up never holds the receiver long.
  std::chrono::milliseconds max_wait_unclaimed{1000};
};

class LiveFeed {
 public:
  // `last_commit`: commit LSN of the last transaction in the journal when the feed is made
  // (nothing may be open in the writer then).
  LiveFeed(LiveFeedOptions options, Lsn last_commit);
  LiveFeed(const LiveFeed&) = delete;
  LiveFeed& operator=(const LiveFeed&) = delete;

  // --- writer (receiver thread), called after the real journal's call returned OK ---
  // `tracked` = false for a duplicate the journal skips.
  void OnBegin(const TransactionInfo& info, bool tracked);
  void OnAppend(const Change& change);
  void OnCommit(const TransactionInfo& info);
  // The real journal's Abort, or one of its writer calls failed: the open transaction is gone.
  void OnAbort();

  // --- applier thread ---
  // Claims the transaction being received when it is offered and `applied` is the commit LSN of
  // the last transaction committed before it (everything before it is applied). On true,
  // `begin` holds its Begin info and Next() yields its changes.
  bool TryClaim(Lsn applied, TransactionInfo* begin);
  // True when a transaction is offered that becomes claimable once the applier has applied the
  // transactions before it (the applier should look again soon rather than after idle_poll).
  bool HasOffer(Lsn applied) const;

  enum class Event { kChange, kCommit, kAborted, kIdle };
  // The claimed transaction's next change (kChange, into *change), its commit (kCommit, final
  // info into *commit: the journal has Commit'ed it, durability still to be awaited), kAborted
  // (the writer aborted it or it was dropped: roll back), or kIdle after `wait` with nothing new.
  Event Next(Change* change, TransactionInfo* commit, std::chrono::milliseconds wait);
  // The claimed transaction is finished (committed by the applier), or given up (rolled back:
  // the journal path takes it over; the writer stops feeding it). Either way the feed is free
  // for a later transaction.
  void Release();
  void Abandon();

  // Counters, for logs and tests.
  uint64_t offered() const;
  uint64_t dropped() const;

 private:
  enum class State {
    kIdle,       // no transaction open in the writer, or one not tracked
    kBuffering,  // open, small so far: copies kept in buffer_
    kOffered,    // open and offered: copies go to queue_; claimable
    kClaimed,    // the applier consumes it
    kCommitted,  // the writer committed it; the applier has not released it yet
    kDropped,    // given up (queue stall, abandon, abort): the writer ignores its changes
  };
  struct Item {
    bool is_commit = false;
    Change change;
    TransactionInfo commit;
  };
  static uint64_t ChangeBytes(const Change& c);
  void DropLocked();

  const LiveFeedOptions options_;
  mutable std::mutex mu_;
  std::condition_variable to_applier_;
  std::condition_variable to_writer_;
  State state_ = State::kIdle;   // guarded by mu_
  TransactionInfo begin_;        // guarded by mu_
  Lsn last_commit_;              // guarded by mu_: last commit the writer passed
  Lsn prev_commit_;              // guarded by mu_: last_commit_ at begin_
  bool aborted_ = false;         // guarded by mu_: the claimed txn is gone
  bool applier_holds_ = false;   // guarded by mu_: between TryClaim and Release
  bool feeding_ = false;         // writer only: its open txn is the feed's
  std::deque<Item> queue_;       // guarded by mu_
  uint64_t queued_bytes_ = 0;    // guarded by mu_
  std::vector<Change> buffer_;   // writer only while kBuffering
  uint64_t buffered_bytes_ = 0;  // writer only
  uint64_t offered_ = 0;         // guarded by mu_
  uint64_t dropped_ = 0;         // guarded by mu_
};

// A Journal that forwards every call to `inner` and feeds the writer calls to `feed`. The
// receiver writes through it; everything else (readers, stats) may use either.
class TeeJournal final : public state::Journal {
 public:
  TeeJournal(state::Journal* inner, LiveFeed* feed) : inner_(inner), feed_(feed) {}

  Status Begin(const TransactionInfo& info) override;
  Status Append(const Change& change) override;
  Status Commit(const TransactionInfo& info) override;
  Status Abort() override;
  bool IsSkipping() const override { return inner_->IsSkipping(); }
  Status AdvanceIdle(Lsn lsn) override { return inner_->AdvanceIdle(lsn); }
  void NoteReceived(Lsn lsn) override { inner_->NoteReceived(lsn); }
  Lsn JournaledLsn() const override { return inner_->JournaledLsn(); }
  bool WaitForNewer(Lsn lsn, std::chrono::milliseconds timeout) const override {
    return inner_->WaitForNewer(lsn, timeout);
  }
  Lsn VisibleCommitLsn() const override { return inner_->VisibleCommitLsn(); }
  bool WaitForVisible(Lsn commit_lsn, std::chrono::milliseconds timeout) const override {
    return inner_->WaitForVisible(commit_lsn, timeout);
  }
  StatusOr<std::unique_ptr<state::JournalReader>> NewReader(Lsn after) const override {
    return inner_->NewReader(after);
  }
  Status RecordApplied(Lsn commit_lsn, int64_t commit_time_us) override {
    return inner_->RecordApplied(commit_lsn, commit_time_us);
  }
  StatusOr<std::vector<state::Checkpoint>> Checkpoints() const override {
    return inner_->Checkpoints();
  }
  state::JournalStats Stats() const override { return inner_->Stats(); }

 private:
  state::Journal* inner_;
  LiveFeed* feed_;
};

}  // namespace tenantsync::apply::internal
