// Wal2jsonDecoder: wal2json format-version 2 objects -> Event, parsed with simdjson on-demand.
//
// Required plugin options (Wal2jsonDecoder::kPluginOptions; the receiver sends them):
//   format-version 2, include-transaction 1 (B/C objects), include-xids 1, include-timestamp 1,
//   include-lsn 1 (B/C lsn + nextlsn; M lsn), include-types 1, include-type-oids 1,
//   include-typmod 1, include-pk 1.
// v2 sends one object per action: B(egin), C(ommit), I, U, D, T(runcate, one per table),
// M(essage).
//
// Value text equals PostgreSQL's text output, byte for byte the same as pgoutput gives:
//   - numbers (int2/4/8, oid, float4/8, numeric) are printed unquoted: the raw JSON token is
//     kept (never converted through double, so numeric precision is exact);
//   - booleans are printed true/false: mapped back to "t"/"f";
//   - bytea is printed without its "\x" prefix: put back (type oid 17 only; a domain over
//     bytea is printed whole by wal2json);
//   - everything else is a JSON string of the output function's text: unescaped.
// Known loss in wal2json 2.5 (not ours to fix): NaN and +-Infinity of numeric/float4/float8 are
// printed as JSON null, indistinguishable from SQL NULL; use pgoutput for tables holding them.
// wal2json prints TRUNCATE per table without its CASCADE / RESTART IDENTITY options.
//
// Relations. wal2json has no Relation messages: it names a table and lists the columns it
// printed, with their names, types (format_type with typmod) and type OIDs; it omits unchanged
// TOAST columns from an UPDATE's "columns" (`VARATT_IS_EXTERNAL_ONDISK`, pg_decode_write_tuple)
// and prints only the identity for DELETE. So a relation can not be read off one message: the
// decoder keeps one per table and maps each message's columns onto it by name. Columns of the
// relation absent from an UPDATE's new tuple become Datum::Unchanged() (invariant 8); absent
// from an identity, kNull.
//
// The cached relation is used while messages fit it. When one does not (a column added or
// retyped since: pgoutput would have sent a Relation message), or the table is new, or an
// UPDATE leaves out a combination of columns not checked before (unchanged TOAST, or a column
// dropped since), the decoder reads the source catalog through `relations` (the receiver's
// lookup). The catalog may have moved on past the WAL being decoded (a column added, used and
// dropped again before the receiver got there), so the message's own names and types win:
// the relation is the message's columns, completed by the catalog's columns an UPDATE left out
// (see Resolve in the .cc). A relation that differs from the cached one is a new object with a
// new Fingerprint: a new version, on which the applier applies its schema-drift policy exactly
// as for a pgoutput Relation message. Known gaps (no catalog as of the WAL position exists
// outside the plugin): a DELETE after an ADD COLUMN keeps the older version (it prints only the
// identity; the next INSERT/UPDATE brings the new one); an UPDATE decoded after a later ADD
// COLUMN on a cold cache may list that column early (as unchanged). Without a lookup (unit
// tests, fuzzers), relations are built from the messages alone.
//
// UPDATE "identity": wal2json prints it even when the key did not change (taken from the new
// tuple); like pgoutput, the decoded old_tuple is empty then, unless REPLICA IDENTITY FULL.
//
// Malformed input is kCorruption; never a crash. Thread safety: one thread.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cdc/event.h"
#include "core/status.h"

namespace tenantsync::cdc {

// "YYYY-MM-DD HH:MM:SS[.ffffff](+|-)HH[:MM[:SS]]" (timestamptz_to_str) -> Unix epoch
// microseconds; anything else is kCorruption.
StatusOr<int64_t> ParseWal2jsonTimestamp(std::string_view text);

class Wal2jsonDecoder {
 public:
  // (name, value) pairs for START_REPLICATION / pg_logical_slot_*_changes.
  static const std::vector<std::pair<std::string, std::string>>& PluginOptions();

  explicit Wal2jsonDecoder(RelationLookup relations = {});
  ~Wal2jsonDecoder();
  Wal2jsonDecoder(const Wal2jsonDecoder&) = delete;
  Wal2jsonDecoder& operator=(const Wal2jsonDecoder&) = delete;

  // Decodes one wal2json object (the payload of one XLogData).
  StatusOr<Event> Decode(std::span<const uint8_t> message);

  // One column as a message printed it.
  struct PrintedColumn {
    std::string name;
    std::string type;
    uint32_t type_oid = 0;
    Datum value;
  };

 private:
  StatusOr<std::shared_ptr<const Relation>> Resolve(const std::string& schema,
                                                    const std::string& table, char action,
                                                    const std::vector<PrintedColumn>& columns,
                                                    const std::vector<PrintedColumn>& identity,
                                                    const std::vector<PrintedColumn>& pk);

  RelationLookup lookup_;
  struct Parser;  // simdjson's on-demand parser (its namespace is an alias: no forward decl)
  std::unique_ptr<Parser> parser_;
  std::vector<uint8_t> buffer_;  // message copy with simdjson's padding
  struct CachedRelation {
    std::shared_ptr<const Relation> relation;
    // OmissionKey()s of UPDATEs checked against the catalog with this relation: an UPDATE
    // leaving out the same columns again needs no catalog read.
    std::unordered_set<std::string> verified_omissions;
  };
  std::unordered_map<std::string, CachedRelation> relations_;  // key: schema '\0' table
};

}  // namespace tenantsync::cdc
