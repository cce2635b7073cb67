// The state directory: one RocksDB database per pipeline holding the journal, checkpoints,
// snapshot progress, dead letters and the audit trail.
//
// Contract:
//  - Open() creates the directory with mode 0700, takes an exclusive lock (a second process on
//    the same directory fails with kFailedPrecondition naming the holder's PID), and checks a
//    format marker: a directory written by something else, or a newer format, is kCorruption
//    with a clear message, never a silent reset.
//  - OpenReadOnly() does not lock and may run beside a writer (status, history).
//  - Writes with `sync = true` are durable (WAL fsynced) when the call returns OK.
//  - Disk full is kResourceExhausted; RocksDB errors are turned into Status at this boundary.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/lsn.h"
#include "core/status.h"

namespace tenantsync::state {

class Journal;

struct StateOptions {
  std::string dir;               // created 0700 if missing
  std::string pipeline;          // recorded at creation; a mismatch later is kFailedPrecondition
                                 // (empty on either side: not checked)
  double retention_hours = 168;  // applied journal kept this long (replay window), counted from
                                 // when a transaction was journaled
  // Receiver stops with kResourceExhausted beyond (journal.max_bytes). Counts the encoded bytes
  // of held transactions plus the open one. Applied transactions younger than the retention are
  // trimmed early (oldest first) when the journal nears this limit, so only unapplied data can
  // reach it.
  int64_t max_journal_bytes = 20ll << 30;
  // Journal::RecordApplied takes a checkpoint at most this often. 0: at every call.
  double checkpoint_interval_seconds = 60;
  // Journal::RecordApplied runs retention at most this often. 0: at every call (tests).
  double trim_interval_seconds = 1;
  // true (default): every Journal::Commit fsyncs before it returns, so JournaledLsn() covers the
  // transaction on return (~1 fsync per source transaction: a few hundred per second on slow
  // disks). false: group commit. Commit returns with the transaction in memory (bounded: a few
  // MB); a background thread writes all transactions committed meanwhile in one RocksDB write
  // (one WAL write per group), which makes them visible to readers, then fsyncs it, and only
  // then advances JournaledLsn(). Invariant 2 holds either way because the
  // receiver acks JournaledLsn(); a crash loses at most unacknowledged transactions, which the
  // source resends. A failed write or fsync stops group commit for good: Begin, Commit and
  // AdvanceIdle return the error until the journal is reopened.
  bool sync_each_commit = true;
  // Group commit only: the background write + fsync runs at most once per this many
  // milliseconds (sooner once ~2 MB of transactions are pending, or at Shutdown), so a stream of
  // small transactions shares one fsync per interval. The price is latency, not safety: a
  // transaction becomes visible to readers up to this much later, and durable and
  // acknowledgeable up to this much plus one fsync later; nothing unsynced is ever
  // acknowledged (invariant 2). 0: back to back.
  double group_commit_interval_ms = 5;
  // Group commit only: committed transactions of one block (~64 KB) or less are also kept in
  // memory, up to this many bytes, until the background write has put them in RocksDB, so that
  // readers get them at once (Journal::VisibleCommitLsn) rather than after that write and the
  // fsync it may queue behind. 0: off (readers see a transaction once it is written).
  size_t memory_tail_bytes = 8 << 20;
};

struct DeadLetter {
  uint64_t id = 0;
  std::string table;   // source table
  std::string key;     // the row's key columns as text, "id=42"; never secret columns' values
  std::string reason;  // one line, never the secret values
  std::string phase;   // "snapshot" or "apply"
  Lsn lsn;             // source commit LSN for apply; the slot LSN for snapshot
  int64_t time_us = 0;
};

class StateStore {
 public:
  static StatusOr<std::unique_ptr<StateStore>> Open(const StateOptions& options);
  static StatusOr<std::unique_ptr<StateStore>> OpenReadOnly(const std::string& dir);
  ~StateStore();

  Journal& journal();

  // Small named values (snapshot LSN, slot name, phase, last error). `sync` = durable on return.
  Status PutMeta(const std::string& key, const std::string& value, bool sync = true);
  StatusOr<std::optional<std::string>> GetMeta(const std::string& key) const;
  Status DeleteMeta(const std::string& key, bool sync = true);
  // Every meta key starting with `prefix`, in key order (snapshot chunk progress, audit runs).
  StatusOr<std::vector<std::pair<std::string, std::string>>> ScanMeta(
      const std::string& prefix) const;

  Status AddDeadLetter(DeadLetter letter);  // assigns id and time; durable on return
  StatusOr<std::vector<DeadLetter>> DeadLetters() const;
  // At most `limit` dead letters with id > `after_id`, in id order (paging for ops).
  StatusOr<std::vector<DeadLetter>> DeadLetters(uint64_t after_id, size_t limit) const;
  StatusOr<uint64_t> DeadLetterCount() const;

  // Read-only stores: catches up with the writer (RocksDB secondary) and re-reads the journal's
  // positions and checkpoints, so Stats()/Checkpoints()/readers see its newest durable state.
  // No-op for the writer.
  Status Refresh();
  bool read_only() const;

  const std::string& dir() const;
  // Bytes on disk (SST + WAL) for ops.
  uint64_t DiskBytes() const;

  class Impl;

 private:
  explicit StateStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tenantsync::state
