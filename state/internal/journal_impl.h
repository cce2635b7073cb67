// The RocksDB implementation of Journal (state/journal.h). Layout in state/internal/records.h.
//
// Crash semantics, relied on by invariant 2:
//  - Changes are written before their transaction's commit record; the commit record and the
//    writer state go in the same batch as (or a later batch than) the transaction's last changes.
//    RocksDB recovers a prefix of the WAL (kPointInTimeRecovery), so after any crash every commit
//    record has all its changes, and JournaledLsn() after reopening is at least what it ever
//    reported before the crash.
//  - Sync mode (sync_each_commit): Commit writes with sync=true. Group commit: Commit leaves the
//    transaction in the writer's batch; the syncer thread writes the batch of all transactions
//    committed meanwhile unsynced (one WAL write per group), which makes them visible to readers
//    (written_), then fsyncs the WAL with an empty sync=true write, and only then advances
//    JournaledLsn() (durable_). Batches reach RocksDB in commit order: a write that carries
//    commit records waits for the one before it (writing_).
//  - The tail: a committed transaction of one block, naming only relations already in RocksDB,
//    is also kept in memory until written_ covers it, and readers get it from there at once
//    (VisibleCommitLsn), without waiting for the syncer's write and the fsync it may queue
//    behind. The tail is a gapless run after written_: once a transaction is left out, none
//    joins until written_ has caught up with writer_, and a reader takes a tail transaction
//    only when its predecessor is the last one it read.
//  - So a reader (the applier) may see, and apply, a transaction that a crash then takes out of
//    the journal. That is safe: it was never acknowledged (invariant 2), so the source sends it
//    again and the journal holds it again; the target's progress row (invariant 3) makes the
//    applier skip it there.
//  - Only WriteOptions::sync writes make anything durable; DB::SyncWAL / FlushWAL(true) are never
//    called. After a failed WAL write RocksDB (paranoid_checks) stops accepting writes and a sync
//    write returns that error, whereas SyncWAL would sync a WAL writer that has seen an error
//    (RocksDB 7.8 asserts on that). A failed journal write or sync is sticky (sync_error_).
//  - Changes of a transaction without a commit record (seq > writer state's last_seq) are
//    orphans; Open deletes them. Readers never see them: they walk commit records only.
//  - Retention deletes (DeleteRange) whole transactions and rewrites the trim state in one batch.
#pragma once

#include <rocksdb/write_batch.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "state/internal/db.h"
#include "state/internal/records.h"
#include "state/journal.h"
#include "state/state_store.h"

namespace tenantsync::state::internal {

class JournalImpl final : public Journal, public std::enable_shared_from_this<JournalImpl> {
 public:
  // Loads the journal's positions from `db`; for a writer also deletes orphaned spooled changes.
  // Readers share ownership of the journal and its Db, so a reader that outlives its StateStore
  // keeps the database open (and locked) until it is destroyed.
  static StatusOr<std::shared_ptr<JournalImpl>> Open(std::shared_ptr<Db> db,
                                                     const StateOptions& options);

  Status Begin(const TransactionInfo& info) override;
  Status Append(const Change& change) override;
  Status Commit(const TransactionInfo& info) override;
  Status Abort() override;
  bool IsSkipping() const override { return skipping_; }
  Status AdvanceIdle(Lsn lsn) override;
  void NoteReceived(Lsn lsn) override;
  Lsn JournaledLsn() const override;
  bool WaitForNewer(Lsn lsn, std::chrono::milliseconds timeout) const override;
  Lsn VisibleCommitLsn() const override;
  bool WaitForVisible(Lsn commit_lsn, std::chrono::milliseconds timeout) const override;
  StatusOr<std::unique_ptr<JournalReader>> NewReader(Lsn after) const override;
  // Group commit: a committed transaction held in memory until it is in RocksDB (the tail).
  struct TailTxn {
    TxnRecord rec;
    Lsn prev_commit_lsn;  // the committed transaction before it
    std::string block;    // its changes, as the one journal_change block it is stored as
  };
  // The transaction right after the one committed at `after`, while it is in the tail; null
  // otherwise (then it is in RocksDB, or not committed yet).
  std::shared_ptr<const TailTxn> TailNext(Lsn after) const;
  Status RecordApplied(Lsn commit_lsn, int64_t commit_time_us) override;
  StatusOr<std::vector<Checkpoint>> Checkpoints() const override;
  JournalStats Stats() const override;

  ~JournalImpl() override;

  // Stops the group-commit syncer after a last fsync of pending commits. Idempotent.
  void Shutdown();

  // Read-only stores: re-reads positions after Db::CatchUp().
  Status Reload();
  // Runs retention now (what RecordApplied does on its interval).
  Status TrimNow() { return Trim(/*size_pressure=*/false); }

  // For readers: kNotFound when transactions after `after` were trimmed.
  Status CheckRetained(Lsn after) const;
  const Db* db() const { return db_.get(); }

 private:
  JournalImpl(std::shared_ptr<Db> db, const StateOptions& options)
      : db_(std::move(db)), options_(options) {}
  Status LoadPositions();
  Status DeleteOrphans();
  StatusOr<uint64_t> RelationFingerprint(const std::shared_ptr<const Relation>& rel);
  Status FlushSpool();
  // Puts the open transaction's block of changes into batch_ (then FlushSpool when it is big).
  // `copy`: also gets the block's bytes.
  Status PutBlock(std::string* copy = nullptr);
  Lsn VisibleLocked() const;
  // Drops the tail's transactions that written_ covers.
  void TrimTailLocked();
  // What a transaction in the tail counts against StateOptions::memory_tail_bytes.
  static size_t TailCost(size_t block_bytes);
  // Committed transactions may be missing from the tail (a gap, or no tail): a waiting reader
  // needs the syncer's write to see them.
  bool ReadersNeedWriteLocked() const;
  void DiscardSpool();  // drops the unflushed batch and forgets relations it would have written
  Status CheckLimit(uint64_t extra_bytes);
  Status Trim(bool size_pressure);
  Status LoadOldest();
  Lsn JournaledLsnLocked() const;
  // Group commit: writes the committed transactions of the writer's batch with sync=true, at
  // most once per StateOptions::group_commit_interval_ms (sooner past kGroupBytes, or at
  // Shutdown).
  void SyncLoop();
  // Writer thread, group commit: writes batch_ (committed transactions not yet taken by the
  // syncer, then the open transaction's spooled changes) unsynced, after any group write in
  // progress, so commit records reach RocksDB in commit order. A failure is sticky.
  // `sync`: also fsyncs, so everything committed so far becomes durable (AdvanceIdle).
  // `idle`: an idle position written in the same batch.
  Status WriteOwnBatch(std::string_view what, bool sync, const Lsn* idle = nullptr);
  void EndTxnLocked();  // in_txn_ = false; wakes a waiting syncer if commits are pending
  // Moves the committed transactions of batch_ into group_ for the syncer, with the writer state
  // they bring the journal to, which it returns. REQUIRES: mu_ held, no transaction open.
  WriterState TakeBatchLocked();
  void PutWriterState(rocksdb::WriteBatch* batch, const WriterState& state);

  std::shared_ptr<Db> db_;
  StateOptions options_;

  // --- writer thread only (batch_: see below) ---
  // Written by the writer thread under mu_; read by it without the lock, by the syncer with it.
  bool in_txn_ = false;
  bool skipping_ = false;
  bool flushed_any_ = false;  // some of the open transaction's changes reached RocksDB
  uint64_t seq_ = 0;          // the open transaction's seq
  uint64_t next_seq_ = 1;
  uint64_t change_index_ = 0;
  uint64_t spool_bytes_ = 0;
  // Group commit: the transactions committed since the syncer last took the batch, then the open
  // transaction's changes since its save point (set at Begin, again after each spool flush).
  // Owned by the writer thread while in_txn_ or writing_ is its own; otherwise guarded by mu_ (the
  // syncer swaps it out under mu_). Sync mode: only the open transaction.
  rocksdb::WriteBatch batch_;
  std::string key_buf_;
  // The open transaction's changes not yet in batch_: one journal_change entry per block.
  ChangeBlockBuilder block_;
  uint64_t block_first_ = 0;  // change index of the block's first change
  std::vector<uint64_t> truncated_fps_;
  std::unordered_set<uint64_t> known_relations_;  // fingerprints present in RocksDB
  std::vector<uint64_t> pending_relations_;       // in batch_, not yet written
  struct FingerprintMemo {
    std::weak_ptr<const Relation> relation;
    uint64_t fingerprint = 0;
  };
  std::unordered_map<const Relation*, FingerprintMemo> fingerprints_;

  // --- shared ---
  mutable std::mutex mu_;
  mutable std::condition_variable advanced_;
  WriterState writer_;   // guarded by mu_; what is committed (durable too in sync mode)
  WriterState durable_;  // guarded by mu_; what is fsynced: JournaledLsn
  // Group commit, all guarded by mu_:
  WriterState written_;             // committed and in RocksDB (unsynced unless also durable_):
                                    // what readers see (VisibleCommitLsn)
  bool batch_has_commits_ = false;  // batch_ holds committed transactions not yet written
  bool group_full_ = false;         // batch_ passed kGroupBytes: the syncer cuts its wait short
  bool writing_ = false;            // a write carrying commit records (or a sync) is under way
  bool syncer_waiting_ = false;     // the syncer waits for work: Commit wakes it
  bool handover_wanted_ = false;    // the syncer waits for the open transaction to end
  bool handed_over_ = false;        // EndTxnLocked moved batch_ into group_ for the syncer
  WriterState handed_target_;       // what group_ holds once handed over
  bool stop_syncer_ = false;
  // The tail (StateOptions::memory_tail_bytes): the committed transactions after written_, in
  // commit order, while each was small enough and none was left out since written_ last caught
  // up with writer_ (tail_gap_); with what written_ holds, a gapless prefix of the committed
  // ones. Every relation they name is in RocksDB: a transaction that defines one stays out.
  std::deque<std::shared_ptr<const TailTxn>> tail_;
  size_t tail_bytes_ = 0;
  bool tail_gap_ = false;
  mutable int readers_waiting_ = 0;  // in WaitForVisible: the syncer's interval wait ends early
  // A failed journal write or sync: sticky, returned by Begin, Commit and AdvanceIdle. RocksDB may
  // have lost writes with it, so nothing after the last good sync may be reported durable.
  Status sync_error_;
  mutable std::condition_variable sync_wanted_;  // wakes the syncer
  std::condition_variable write_done_;   // writing_ went false
  rocksdb::WriteBatch group_;            // syncer thread: the batch it took from batch_
  std::thread syncer_;
  TrimState trim_;                        // guarded by mu_
  AppliedState applied_;                  // guarded by mu_
  Lsn idle_lsn_;                          // guarded by mu_
  Lsn received_lsn_;                      // guarded by mu_
  Lsn oldest_lsn_;                        // guarded by mu_
  std::deque<Checkpoint> checkpoints_;    // guarded by mu_
  uint64_t next_checkpoint_id_ = 1;       // guarded by mu_
  uint64_t txns_at_last_checkpoint_ = 0;  // guarded by mu_
  int64_t last_trim_us_ = 0;              // applier thread
  std::mutex trim_mu_;  // one retention pass at a time (applier, or writer near the size limit)
};

}  // namespace tenantsync::state::internal
