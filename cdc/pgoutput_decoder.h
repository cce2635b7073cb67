// PgoutputDecoder: pgoutput logical replication protocol version 1 or 2, bytes -> Event.
//
// One decoder per replication session history: it keeps the RelationCache (relation OID ->
// Relation) that Relation messages fill and Insert/Update/Delete/Truncate refer to. A change
// for a relation the cache does not hold is kCorruption (pgoutput always sends Relation first).
//
// Decode() is a pure function of (cache, bytes) apart from the TypeNameLookup it calls for
// type OIDs it has not seen: malformed bytes give kCorruption naming the message, field and
// offset, never a crash, and no allocation is larger than the message itself (counts read from
// the wire are checked against the bytes left before anything is reserved).
//
// Protocol 2 adds streamed in-progress transactions: Stream Start/Stop/Commit/Abort, and inside
// a Stream Start ... Stream Stop block every Relation, Type, Insert, Update, Delete, Truncate and
// Message carries the (sub)transaction's xid first, which stream_xid() then returns. Stream
// messages under protocol 1, or out of place (a block inside a block, Begin inside a block), are
// kCorruption.
//
// Thread safety: one thread. Relations handed out are immutable and may outlive the decoder.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <unordered_map>

#include "cdc/event.h"
#include "core/status.h"

namespace tenantsync::cdc {

class PgoutputDecoder {
 public:
  // `type_names` may be empty: type_name stays "" (unit tests of framing only).
  explicit PgoutputDecoder(TypeNameLookup type_names = {}, int protocol_version = 1)
      : type_names_(std::move(type_names)), protocol_version_(protocol_version) {}

  // Decodes one pgoutput message (the payload of one XLogData, without its 25-byte header).
  StatusOr<Event> Decode(std::span<const uint8_t> message);

  // Inside a stream block: true, and stream_xid() is the xid the last decoded message carried
  // (a subtransaction's own xid for its changes).
  bool in_stream() const { return in_stream_; }
  uint32_t stream_xid() const { return stream_xid_; }

  // The cached relation for `oid`, or nullptr.
  std::shared_ptr<const Relation> FindRelation(uint32_t oid) const;

 private:
  StatusOr<std::string> TypeName(uint32_t oid, int32_t typmod);

  StatusOr<Event> DecodeStreamControl(uint8_t type, std::span<const uint8_t> body);

  TypeNameLookup type_names_;
  int protocol_version_ = 1;
  bool in_stream_ = false;
  uint32_t stream_xid_ = 0;
  std::unordered_map<uint32_t, std::shared_ptr<const Relation>> relations_;
  std::map<std::pair<uint32_t, int32_t>, std::string> type_name_cache_;
};

}  // namespace tenantsync::cdc
