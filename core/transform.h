// The transform engine: the one place where a source row becomes a target row
// (DESIGN.md invariant 5). Snapshot, stream apply, validation and replay all call it.
//
// Rules (core/config.h ColumnRule): cast to a type with an on_error default, a constant or `now`
// value for added columns, rename, drop, encrypt. Values are PostgreSQL text format.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/change.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/status.h"

namespace tenantsync {

// A source column as the catalogs (snapshot, validate) or a Relation message (stream) describe it.
struct SourceColumn {
  std::string name;
  std::string type;  // format_type() text, e.g. "text", "bigint", "numeric(10,2)"
  bool is_key = false;
};

// A column of the target table.
struct TargetColumn {
  std::string name;
  std::string type;       // format_type() text of the target column
  int source_index = -1;  // the source column it comes from; -1 for an added (value:) column
  bool encrypted = false;
  bool is_key = false;
};

// Values that stay fixed for a whole snapshot transaction or apply batch.
struct TransformContext {
  std::string now;  // timestamptz text used for `value: now`, e.g. "2026-11-21 17:40:00.123+00"
  // True when transforming an UPDATE's new tuple: added (`value:`) columns come out kUnchanged,
  // so the value the row got when it was first copied or inserted stays (migrated_at is the
  // time the row was migrated, not the time of its last update). Default false (insert, COPY).
  bool for_update = false;
};

// Cast types the engine knows, by their format_type() spelling. Aliases accepted by
// NormalizeCastType: int2, int4, int, int8, float4, float8, decimal, bool, varchar(n),
// character varying(n), numeric(p[,s]), timestamptz, timestamp with(out) time zone.
//
// What CastText checks, per type (a failure sends the value to on_error):
//   smallint, integer, bigint: optional sign and digits, surrounding whitespace allowed,
//     range-checked. A decimal whose fraction is all zeros ("12.00") is accepted as 12, a
//     fraction that is not ("12.50") fails: that is lossless, where PostgreSQL 15 rejects both.
//     Output: canonical digits ("+007" -> "7").
//   real, double precision: a complete decimal number (from_chars, locale-free) within range, or
//     NaN / Infinity / -Infinity / inf in any case. Output: the trimmed input, or PG's spelling.
//   numeric[(p,s)]: sign, digits, optional point and exponent, or NaN / Infinity; with a
//     precision, the integer digits must fit p - s (the server rounds the fraction).
//   boolean: PostgreSQL's spellings (t, true, yes, on, 1, unique prefixes, any case) -> t / f.
//   text: anything. character varying(n): at most n characters (UTF-8 code points).
//   uuid: 32 hex digits, optional braces, '-' after any group of four -> canonical lower case.
//   json, jsonb: must be valid JSON (RFC 8259); passed through unchanged.
//   timestamp with time zone, timestamp without time zone, date: passed through; PostgreSQL
//     accepts too many spellings to mirror here, so the server validates them on insert, and a
//     value it rejects is handled by the apply/snapshot on_error policy (dead letter or abort).
StatusOr<std::string> NormalizeCastType(std::string_view type);
// `text` cast to `type` (a NormalizeCastType result). kInvalidArgument saying why, never
// containing the value.
StatusOr<std::string> CastText(std::string_view type, std::string_view text);

// How one source table maps to one target table. Immutable after Build; thread-safe to share.
class TableTransform {
 public:
  // `table` may be nullptr (no rules: identity). `cipher` may be nullptr when no rule encrypts.
  // Errors (kInvalidArgument, one line): a rule names a column the source lacks, two columns map
  // to one name, encrypt without a key, a cast type the engine does not know.
  static StatusOr<TableTransform> Build(const std::string& source_table, const TableConfig* table,
                                        const std::vector<SourceColumn>& source_columns,
                                        const Cipher* cipher);

  const std::string& source_table() const { return source_table_; }
  const std::vector<TargetColumn>& target_columns() const { return target_columns_; }
  // Target column index fed by source column `source_index`, or -1 when dropped.
  int TargetIndexOf(int source_index) const;
  // True when no rule changes any value, name or column (rows can be copied byte for byte).
  bool IsIdentity() const { return identity_; }

  // One source row (one Datum per source column) -> one target row (one per target column).
  // kUnchanged source datums stay kUnchanged (invariant 8); added columns get their value.
  // A failed cast without on_error is kInvalidArgument naming table and column, never the value.
  Status Apply(const Tuple& source, Tuple* target, const TransformContext& ctx) const;

  // Inverse for validation: the plaintext of an encrypted target value (other columns as is).
  StatusOr<std::string> DecryptTarget(int target_index, const std::string& value) const;

 private:
  struct Rule;
  std::string source_table_;
  std::vector<TargetColumn> target_columns_;
  std::vector<int> target_index_of_source_;
  std::vector<ColumnRule> rules_;      // per target column (empty rule = copy); types normalised
  std::vector<std::string> contexts_;  // per target column: "<source_table>.<source_column>"
  const Cipher* cipher_ = nullptr;
  bool identity_ = true;
};

}  // namespace tenantsync
