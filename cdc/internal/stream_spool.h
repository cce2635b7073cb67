// StreamSpool: the receiver's holding area for transactions the walsender streams while they
// are still running (pgoutput protocol 2, `streaming on`).
//
// Why: a streamed transaction arrives in blocks, interleaved with other transactions, and is
// only part of the journal once its Stream Commit arrives (the journal holds committed
// transactions in commit order, one open at a time). Until then its messages wait here, one
// append-only file per transaction under the state directory; Stream Commit replays the file
// into the journal, Stream Abort drops the file (whole transaction) or cuts it back to where
// the aborted subtransaction began.
//
// What is kept: the raw pgoutput messages of the transaction's blocks (a fresh decoder turns
// them back into changes at replay, so a spool never depends on the receiver's relation cache
// at the time of the commit), each tagged with the (sub)transaction xid it carried. Relation
// and Type messages are schema records: cutting an aborted subtransaction keeps them (pgoutput
// sends a relation once per streamed transaction, so the changes after the cut may still need
// it).
//
// Subtransaction aborts cut at the first record of that subtransaction: everything after it
// belongs to the subtransaction or to subtransactions begun inside it (savepoints nest), and
// those were rolled back with it. A subtransaction with no record here has nothing to cut.
//
// Durability: none needed. Nothing of a streamed transaction is acknowledged to the source
// before its commit is journaled, so after a crash the walsender streams it again from its
// first block; the spool directory is emptied when a StreamSpool is made and files are removed
// at commit or abort.
//
// Memory (invariant 7): at most kBufferBytes of unwritten records per open transaction.
//
// Thread safety: one thread (the receiver's).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/status.h"

namespace tenantsync::cdc::internal {

class StreamSpool {
 public:
  // Records waiting in memory per transaction before they are written to its file.
  static constexpr size_t kBufferBytes = 256 * 1024;

  // Creates `dir` if needed and removes any spool files left in it by an earlier process.
  static StatusOr<std::unique_ptr<StreamSpool>> Open(std::string dir);
  ~StreamSpool();
  StreamSpool(const StreamSpool&) = delete;
  StreamSpool& operator=(const StreamSpool&) = delete;

  // A block of transaction `xid` starts. `first_segment`: the server starts the transaction
  // over (its first block in this session): whatever was spooled for `xid` is dropped. A later
  // block of a transaction this spool does not hold is kCorruption.
  Status Start(uint32_t xid, bool first_segment);
  // Appends one message of transaction `xid` that carried `subxid`. `schema`: a Relation or
  // Type message (kept across subtransaction aborts).
  Status Append(uint32_t xid, uint32_t subxid, bool schema, std::span<const uint8_t> message);
  // Subtransaction `subxid` of `xid` rolled back (subxid == xid: the whole transaction, same as
  // Discard). Returns true when records were cut.
  StatusOr<bool> AbortSubtransaction(uint32_t xid, uint32_t subxid);
  // Calls `fn` with every message of `xid` in order (schema records included).
  Status Replay(uint32_t xid, const std::function<Status(std::span<const uint8_t>)>& fn);
  // Drops transaction `xid` (no-op when not held), or every transaction.
  void Discard(uint32_t xid);
  void DiscardAll();

  bool Holds(uint32_t xid) const { return txns_.contains(xid); }
  bool empty() const { return txns_.empty(); }
  size_t Count() const { return txns_.size(); }
  // Change (non-schema) records held for `xid`; 0 when not held.
  uint64_t Changes(uint32_t xid) const;
  const std::string& dir() const { return dir_; }

 private:
  struct Txn {
    std::string path;
    int fd = -1;
    uint64_t size = 0;           // bytes in the file, buffer not included
    std::string buffer;          // records not yet written
    uint64_t changes = 0;
    // Subtransactions in the order of their first record, with its offset.
    std::vector<std::pair<uint32_t, uint64_t>> first_record;
    std::unordered_set<uint32_t> known;  // the subxids in first_record
  };
  explicit StreamSpool(std::string dir) : dir_(std::move(dir)) {}
  Status Flush(Txn& t);
  Status ReadFrom(Txn& t, uint64_t offset,
                  const std::function<Status(uint8_t kind, uint32_t subxid,
                                             std::span<const uint8_t> message)>& fn);
  Status IoError(const std::string& what, const Txn& t, int err) const;

  std::string dir_;
  std::map<uint32_t, Txn> txns_;
};

}  // namespace tenantsync::cdc::internal
