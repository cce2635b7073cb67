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
// Relations. wal2json names a table and lists the columns it printed; it omits unchanged TOAST
// columns from an UPDATE's "columns" (`VARATT_IS_EXTERNAL_ONDISK`, pg_decode_write_tuple) and
// prints only the identity for DELETE. So a relation can not be read off one message: the
// decoder keeps one per table, filled from the source catalog through `relations` (the
// receiver's lookup), and maps each message's columns onto it by name. Columns of the relation
// absent from an UPDATE's new tuple become Datum::Unchanged() (invariant 8); absent from an
// identity, kNull. A message naming a column the cached relation lacks re-reads the catalog;
// an INSERT still not matching (a column dropped since) gets a relation built from the message
// itself; an UPDATE/DELETE not matching is kSchemaChanged. Without a lookup (unit tests), a
// relation is built from each message (then unchanged TOAST can not be told from absence).
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
                                                    const std::vector<std::string>& pk);

  RelationLookup lookup_;
  struct Parser;  // simdjson's on-demand parser (its namespace is an alias: no forward decl)
  std::unique_ptr<Parser> parser_;
  std::vector<uint8_t> buffer_;  // message copy with simdjson's padding
  std::unordered_map<std::string, std::shared_ptr<const Relation>> relations_;
};

}  // namespace tenantsync::cdc
