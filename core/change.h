// The internal change model: what both decoders (pgoutput, wal2json) produce, what the journal
// stores and what the applier consumes. One model, so the plugin is a config choice only.
//
// Values are kept in PostgreSQL's text output format (what pgoutput v1 sends and what wal2json
// prints), so the transform engine sees the same bytes whichever path carried a row
// (DESIGN.md invariant 5).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/lsn.h"

namespace tenantsync {

// One column of a tuple.
struct Datum {
  enum class Kind : uint8_t {
    kNull = 'n',
    kUnchanged = 'u',  // unchanged TOAST: the target's value must stay (invariant 8)
    kText = 't',
  };
  Kind kind = Kind::kNull;
  std::string text;  // set only for kText

  static Datum Null() { return {}; }
  static Datum Unchanged() { return {Kind::kUnchanged, {}}; }
  static Datum Text(std::string v) { return {Kind::kText, std::move(v)}; }
  bool is_null() const { return kind == Kind::kNull; }
  bool is_unchanged() const { return kind == Kind::kUnchanged; }
  bool operator==(const Datum&) const = default;
};

using Tuple = std::vector<Datum>;

// A source table as the decoder saw it. Immutable once built; shared by every change of it.
struct Relation {
  struct Column {
    std::string name;
    std::string type_name;  // format_type() text, e.g. "bigint", "character varying(20)"
    uint32_t type_oid = 0;  // 0 when the plugin does not say (wal2json without include-type-oids)
    int32_t type_modifier = -1;
    bool is_key = false;    // part of the replica identity
    bool operator==(const Column&) const = default;
  };
  uint32_t oid = 0;          // source relation OID (pgoutput); 0 when unknown (wal2json)
  std::string schema;
  std::string name;
  char replica_identity = 'd';  // 'd' default (pk), 'f' full, 'i' index, 'n' nothing
  std::vector<Column> columns;

  bool operator==(const Relation&) const = default;
  // Stable 64-bit identity of this exact definition (schema, name, identity, columns).
  // The journal stores it with every change instead of repeating the definition.
  uint64_t Fingerprint() const;
};

enum class ChangeOp : char {
  kInsert = 'I',
  kUpdate = 'U',
  kDelete = 'D',
  kTruncate = 'T',
  kMessage = 'M',  // pg_logical_emit_message; journaled, not applied
};

struct Change {
  ChangeOp op = ChangeOp::kInsert;
  std::shared_ptr<const Relation> relation;  // null for kMessage; first relation for kTruncate
  Tuple new_tuple;                           // insert, update
  // Old values for update/delete: the replica-identity key columns (others kNull), or every
  // column under REPLICA IDENTITY FULL. Empty when the update did not change the key.
  Tuple old_tuple;
  // kTruncate: every truncated relation, and the option bits (1 = CASCADE, 2 = RESTART IDENTITY).
  std::vector<std::shared_ptr<const Relation>> truncated;
  uint8_t truncate_options = 0;
  // kMessage
  std::string message_prefix;
  std::string message_content;
  bool message_transactional = false;
};

// One committed source transaction.
struct TransactionInfo {
  uint32_t xid = 0;
  Lsn commit_lsn;   // LSN of the commit record: the transaction's position in commit order
  Lsn end_lsn;      // end of the commit record: what is acknowledged as flushed once journaled
  int64_t commit_time_us = 0;  // microseconds since the Unix epoch (source clock)
};

}  // namespace tenantsync
