// The journal: every committed source transaction, durable in RocksDB, in commit-LSN order.
//
// Why (DESIGN.md): the slot can not be rewound and an unacknowledged slot makes the source keep
// WAL, so the receiver journals and acknowledges only what is durable here (invariant 2); the
// applier consumes the journal; replay needs no source.
//
// Writer protocol (one thread, the receiver):
//   Begin(info) -> Append(change)* -> Commit(info)     or   Begin -> Append* -> Abort()
// Append spools changes to RocksDB in bounded write batches, so memory does not grow with the
// transaction (invariant 7). Nothing of a transaction is visible to readers until Commit returns;
// Commit writes the transaction's commit record with sync=true, so when it returns OK the whole
// transaction is durable and JournaledLsn() covers it. (With StateOptions::sync_each_commit =
// false, group commit: a small transaction (one block, see StateOptions::memory_tail_bytes)
// becomes visible to readers when Commit returns, from memory; a larger one shortly after, when
// the background write that includes it completes. Either becomes durable, covered by
// JournaledLsn(), after the fsync that follows that write. Readers may thus see a transaction
// that a crash before that fsync takes away again; it was never acknowledged, so the source
// resends it. A
// failed write or fsync is returned by the next Begin, Commit or AdvanceIdle, and the journal
// stays stopped until it is reopened.) A
// transaction whose commit_lsn is not greater than the last committed one is a duplicate (a resend
// after reconnect): Begin returns OK and the journal ignores it through Commit (IsSkipping() is
// true), so the journal never holds a transaction twice. Spooled changes of a transaction that was
// never committed (crash, Abort) are deleted on the next Open/Begin.
//
// Reader protocol (any thread, e.g. the applier; several readers may coexist with the writer):
//   auto r = journal.NewReader(after);
//   while (r->NextTransaction(&info)) while (r->NextChange(&c)) ...
//
// Thread safety: writer calls from one thread; readers from any; the Lsn getters from any.
// Lifetime: a JournalReader may outlive its StateStore; it then keeps the database open (and the
// state directory locked) until it is destroyed.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/change.h"
#include "core/lsn.h"
#include "core/status.h"

namespace tenantsync::state {

struct Checkpoint {
  uint64_t id = 0;            // increasing
  Lsn lsn;                    // applied commit LSN at the checkpoint
  int64_t time_us = 0;        // wall time it was taken
  uint64_t transactions = 0;  // transactions journaled since the previous checkpoint
};

struct JournalStats {
  Lsn received_lsn;          // highest LSN seen from the server (may be ahead of journaled)
  Lsn journaled_lsn;         // end LSN of the last durable transaction: what may be acked
  Lsn journaled_commit_lsn;  // commit LSN of the last durable transaction
  Lsn applied_lsn;           // commit LSN of the last transaction applied in the target
  int64_t last_journaled_commit_time_us = 0;
  int64_t last_applied_commit_time_us = 0;
  uint64_t transactions = 0;  // transactions currently held
  uint64_t changes = 0;
  Lsn oldest_lsn;      // commit LSN of the oldest retained transaction
  uint64_t bytes = 0;  // encoded bytes held: what StateOptions::max_journal_bytes limits
};

class JournalReader {
 public:
  virtual ~JournalReader() = default;
  // Advances to the next committed transaction; false at the current end of the journal
  // (call again later: new transactions become visible). Skips any unread changes of the
  // current transaction.
  virtual StatusOr<bool> NextTransaction(TransactionInfo* info) = 0;
  // Next change of the current transaction; false after its last change.
  virtual StatusOr<bool> NextChange(Change* change) = 0;
};

class Journal {
 public:
  virtual ~Journal() = default;

  // --- writer ---
  virtual Status Begin(const TransactionInfo& info) = 0;
  virtual Status Append(const Change& change) = 0;
  // `info` carries the final commit LSN, end LSN and commit time. Durable on OK.
  virtual Status Commit(const TransactionInfo& info) = 0;
  virtual Status Abort() = 0;
  virtual bool IsSkipping() const = 0;
  // Records a position seen in a keepalive with nothing pending: acknowledging it is safe
  // because every transaction before it is durable (see cdc/receiver). Durable on OK.
  virtual Status AdvanceIdle(Lsn lsn) = 0;
  virtual void NoteReceived(Lsn lsn) = 0;

  // The LSN the receiver may report as flushed (invariant 2): end of the last durable
  // transaction, or a later idle position recorded by AdvanceIdle.
  virtual Lsn JournaledLsn() const = 0;
  // Blocks until JournaledLsn() > `lsn` or the timeout; true when it advanced.
  virtual bool WaitForNewer(Lsn lsn, std::chrono::milliseconds timeout) const = 0;
  // Commit LSN of the newest transaction readers see. Under group commit it may be ahead of the
  // durable end: a transaction is visible at Commit (in memory) or once written to RocksDB,
  // before its fsync (see the header comment). Blocks until VisibleCommitLsn() > `commit_lsn` or
  // the timeout; true when it advanced.
  virtual Lsn VisibleCommitLsn() const = 0;
  virtual bool WaitForVisible(Lsn commit_lsn, std::chrono::milliseconds timeout) const = 0;

  // --- reader ---
  // Transactions with commit_lsn > `after`, in commit order. kNotFound (naming the retained
  // window) when `after` is older than the oldest retained transaction minus one.
  virtual StatusOr<std::unique_ptr<JournalReader>> NewReader(Lsn after) const = 0;

  // --- applied position, checkpoints, retention ---
  // Mirrors the target's _tenantsync.progress for ops; trims transactions applied longer than
  // the retention window; takes a checkpoint at most every `checkpoint_interval`.
  virtual Status RecordApplied(Lsn commit_lsn, int64_t commit_time_us) = 0;
  virtual StatusOr<std::vector<Checkpoint>> Checkpoints() const = 0;
  virtual JournalStats Stats() const = 0;
};

}  // namespace tenantsync::state
