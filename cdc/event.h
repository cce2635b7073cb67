// What a decoder makes of one logical-replication message: the events both plugins decode into.
//
// A committed transaction arrives as BeginTxn, then its changes (Change, in WAL order), then
// CommitTxn. With pgoutput protocol 2 streaming, a large transaction may instead arrive while it
// is still running, in blocks (StreamStart, its changes, StreamStop) interleaved with other
// transactions, and end with StreamCommit or StreamAbort (of the whole or of a subtransaction). RelationUpdate/TypeInfo/OriginInfo are informational (the decoder has already
// applied them to its caches). A non-transactional pg_logical_emit_message arrives on its own,
// outside any transaction, as StandaloneMessage.
#pragma once

#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>

#include "core/change.h"
#include "core/lsn.h"
#include "core/status.h"

namespace tenantsync::cdc {

struct BeginTxn {
  uint32_t xid = 0;
  Lsn final_lsn;               // LSN of the commit record (= CommitTxn::commit_lsn)
  int64_t commit_time_us = 0;  // Unix epoch microseconds
};

struct CommitTxn {
  uint32_t xid = 0;            // 0 when the plugin does not say (pgoutput Commit)
  Lsn commit_lsn;
  Lsn end_lsn;                 // end of the commit record: what may be acknowledged once durable
  int64_t commit_time_us = 0;
};

// pgoutput protocol 2: a block of changes of in-progress transaction `xid` follows, up to
// StreamStop. `first_segment`: the first block of that transaction in this session.
struct StreamStart {
  uint32_t xid = 0;
  bool first_segment = false;
};

struct StreamStop {};

// The streamed transaction `xid` committed: every change of it received in its blocks (less
// those of aborted subtransactions) is the transaction.
struct StreamCommit {
  uint32_t xid = 0;
  Lsn commit_lsn;
  Lsn end_lsn;
  int64_t commit_time_us = 0;
};

// Subtransaction `subxid` of streamed transaction `xid` rolled back (subxid == xid: the whole
// transaction did): its changes and those of its subtransactions are not part of it.
struct StreamAbort {
  uint32_t xid = 0;
  uint32_t subxid = 0;
};

struct RelationUpdate {
  std::shared_ptr<const Relation> relation;
};

struct TypeInfo {
  uint32_t oid = 0;
  std::string schema;
  std::string name;
};

struct OriginInfo {
  Lsn commit_lsn;
  std::string name;
};

struct StandaloneMessage {
  Lsn lsn;        // LSN of the message record
  Change change;  // op == kMessage, message_transactional == false
};

using Event = std::variant<BeginTxn, CommitTxn, Change, RelationUpdate, TypeInfo, OriginInfo,
                           StandaloneMessage, StreamStart, StreamStop, StreamCommit, StreamAbort>;

// Resolves a type OID and modifier to format_type(oid, typmod) text ("character varying(20)").
// Supplied by the receiver from the source catalogs; tests use a fixed map. May do I/O.
using TypeNameLookup = std::function<StatusOr<std::string>(uint32_t oid, int32_t typmod)>;

// Reads a table's current definition (live columns in attnum order, types, key flags, replica
// identity) from the source catalogs. kNotFound when the table does not exist.
using RelationLookup =
    std::function<StatusOr<Relation>(const std::string& schema, const std::string& table)>;

// Microseconds between the PostgreSQL epoch (2000-01-01) and the Unix epoch.
inline constexpr int64_t kPgEpochOffsetUs = 946684800LL * 1000000LL;

// A PostgreSQL timestamp read off the wire (microseconds since 2000-01-01) as Unix microseconds.
// The value comes from the network, so an out-of-range one (e.g. infinity) is clamped rather than
// overflowed: timestamps only feed lag figures and the journal's commit time.
inline int64_t PgToUnixMicros(int64_t pg_us) {
  int64_t unix_us = 0;
  if (__builtin_add_overflow(pg_us, kPgEpochOffsetUs, &unix_us)) {
    return pg_us > 0 ? INT64_MAX : INT64_MIN;
  }
  return unix_us;
}

}  // namespace tenantsync::cdc
