// The state store's mirror of the applied position (Journal::RecordApplied), written by a thread
// of its own so the applier never waits for it.
//
// RecordApplied is a RocksDB write into the journal's database, and RocksDB queues every write
// behind one in progress: while the receiver's group commit fsyncs the journal (1-5 ms, 100+ ms
// on a busy disk), the applier's RecordApplied after a target commit waited too, and the next
// batch with it. Measured in the bench's lag phase: RecordApplied p50 0.05 ms, p99 3.9 ms, max
// 96 ms. The mirror is for ops and retention only: the target's _tenantsync.progress row decides
// where applying resumes (invariant 3), so it may trail the target by a write.
//
// Post() hands over the newest position and returns at once; positions posted while a write is
// running are coalesced into one write of the newest. Flush() waits until everything posted is
// written. A failed write is returned by the next Post() or Flush() (the applier then stops, as
// it did when RecordApplied failed in line). The destructor writes what is pending, then joins.
//
// Kill point (core/kill_point.h): apply.after_record_applied, on the mirror's thread, right after
// a RecordApplied returned.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>

#include "core/lsn.h"
#include "core/status.h"
#include "state/journal.h"

namespace tenantsync::apply::internal {

class AppliedMirror {
 public:
  explicit AppliedMirror(state::Journal* journal) : journal_(journal) {}
  ~AppliedMirror();
  AppliedMirror(const AppliedMirror&) = delete;
  AppliedMirror& operator=(const AppliedMirror&) = delete;

  Status Post(Lsn commit_lsn, int64_t commit_time_us);
  Status Flush();

  // Writes done (each of the newest position posted at the time): for tests.
  uint64_t writes() const;

 private:
  struct Position {
    Lsn lsn;
    int64_t commit_time_us = 0;
  };
  void Loop();

  state::Journal* journal_;
  mutable std::mutex mu_;
  std::condition_variable wake_;  // Loop: a position was posted, or stop
  std::condition_variable idle_;  // Flush: nothing pending, no write running
  std::optional<Position> pending_;
  bool writing_ = false;
  bool stop_ = false;
  Status error_;
  uint64_t writes_ = 0;
  std::thread thread_;  // started by the first Post
};

}  // namespace tenantsync::apply::internal
