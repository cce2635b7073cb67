// PgoutputDecoder: pgoutput logical replication protocol version 1, bytes -> Event.
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
  explicit PgoutputDecoder(TypeNameLookup type_names = {}) : type_names_(std::move(type_names)) {}

  // Decodes one pgoutput message (the payload of one XLogData, without its 25-byte header).
  StatusOr<Event> Decode(std::span<const uint8_t> message);

  // The cached relation for `oid`, or nullptr.
  std::shared_ptr<const Relation> FindRelation(uint32_t oid) const;

 private:
  StatusOr<std::string> TypeName(uint32_t oid, int32_t typmod);

  TypeNameLookup type_names_;
  std::unordered_map<uint32_t, std::shared_ptr<const Relation>> relations_;
  std::map<std::pair<uint32_t, int32_t>, std::string> type_name_cache_;
};

}  // namespace tenantsync::cdc
