// The RocksDB implementation of Journal (state/journal.h). Layout in state/internal/records.h.
//
// Crash semantics, relied on by invariant 2:
//  - Changes are written (unsynced) before their transaction's commit record; the commit record
//    and the writer state go in one batch with sync=true. RocksDB recovers a prefix of the WAL
//    (kPointInTimeRecovery), so after any crash every commit record has all its changes, and
//    JournaledLsn() after reopening is at least what any Commit/AdvanceIdle returned OK for.
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
  StatusOr<std::unique_ptr<JournalReader>> NewReader(Lsn after) const override;
  Status RecordApplied(Lsn commit_lsn, int64_t commit_time_us) override;
  StatusOr<std::vector<Checkpoint>> Checkpoints() const override;
  JournalStats Stats() const override;

  ~JournalImpl() override;

  // Stops the group-commit syncer after a last fsync of pending commits. Idempotent.
  void Shutdown();

  // Read-only stores: re-reads positions after Db::CatchUp().
  Status Reload();
  // Commit LSN of the newest durable transaction: readers show nothing beyond it.
  Lsn DurableCommitLsn() const;
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
  void DiscardSpool();  // drops the unflushed batch and forgets relations it would have written
  Status CheckLimit(uint64_t extra_bytes);
  Status Trim(bool size_pressure);
  Status LoadOldest();
  Lsn JournaledLsnLocked() const;
  void SyncLoop();  // group commit: fsyncs the WAL whenever commits are pending

  std::shared_ptr<Db> db_;
  StateOptions options_;

  // --- writer thread only ---
  bool in_txn_ = false;
  bool skipping_ = false;
  bool flushed_any_ = false;  // some of the open transaction's changes reached RocksDB
  uint64_t seq_ = 0;          // the open transaction's seq
  uint64_t next_seq_ = 1;
  uint64_t change_index_ = 0;
  uint64_t spool_bytes_ = 0;
  rocksdb::WriteBatch batch_;
  std::string key_buf_;
  std::string value_buf_;
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
  WriterState writer_;        // guarded by mu_; what is written (durable too in sync mode)
  WriterState durable_;       // guarded by mu_; what is fsynced: JournaledLsn, reader visibility
  bool unsynced_ = false;     // guarded by mu_; group commit: writes await an fsync
  bool stop_syncer_ = false;  // guarded by mu_
  Status sync_error_;         // guarded by mu_; the group fsync's last error, returned by Commit
  std::condition_variable sync_wanted_;
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
