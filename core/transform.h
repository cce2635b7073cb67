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
};

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
  std::vector<ColumnRule> rules_;  // per target column (empty rule = copy)
  const Cipher* cipher_ = nullptr;
  bool identity_ = true;
};

}  // namespace tenantsync
