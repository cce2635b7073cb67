// TablePlan: how validate sees one mapped table: the transform the pipeline uses (built by the
// same engine, invariant 5), the key, and the SQL that reproduces the target's row hash on the
// source side for the checksum diff (see validate.h for the approach and its limits).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/crypto.h"
#include "core/transform.h"
#include "validate/internal/catalog.h"

namespace tenantsync::validate::internal {

enum class ColumnKind {
  kCopy,       // copied, maybe renamed
  kCast,       // cast to another type by a rule
  kConstant,   // added with a constant value
  kNow,        // added with `value: now`: never compared
  kEncrypted,  // encrypted: compared after DecryptTarget
};

struct ColumnPlan {
  std::string name;         // target column name
  std::string type;         // the mapping's type for it (TargetColumn::type)
  int source_index = -1;    // source column, -1 for an added column
  bool in_target = false;   // the target table has this column
  std::string target_type;  // its format_type() in the target ("" when absent)
  ColumnKind kind = ColumnKind::kCopy;
  std::optional<std::string> on_error;  // kCast
  std::optional<std::string> value;     // kConstant
  // Expressions whose ROW(...)::text is hashed by the full diff, one per side; both empty when the
  // column is left out of the hash.
  std::string source_hash_expr;
  std::string target_hash_expr;
  // The type both expressions have ("text" when the sides are compared as text): picks the
  // type's own 64-bit hash function (HashExpression).
  std::string hash_type;
  // kCast: SQL predicate over the source column that is true when the SQL cast is certain to
  // give what the engine gives (used by sums); empty when no SQL form exists.
  std::string certain_predicate;
};

enum class PositionMode {
  kIntegerKey,  // one smallint/integer/bigint key column: v is the key
  kHashedKey,   // any other key: v = hashtextextended(key text)
  kNoKey,       // no key: v = the row hash
};

struct TablePlan {
  std::string source_table;
  std::string target_table;
  std::string source_schema;
  std::string target_schema;
  TableInfo source;
  TableInfo target;             // columns empty when !target_exists
  bool target_exists = false;
  TableTransform transform;
  std::vector<ColumnPlan> columns;  // one per transform target column
  // Key: source column indexes and the matching target column names (empty: no key, or a key
  // column the mapping transforms, which validate then treats as no key).
  std::vector<int> key_source;
  std::vector<std::string> key_target;
  PositionMode mode = PositionMode::kNoKey;
  std::vector<std::string> unhashed;  // target columns left out of the full diff's hash

  std::string SourceQualified() const;
  std::string TargetQualified() const;
  bool has_key() const { return !key_source.empty(); }
  // Row hash and position expressions (bigint) over the source / target table's columns.
  std::string SourceRowHash() const;
  std::string TargetRowHash() const;
  std::string SourcePosition() const;
  std::string TargetPosition() const;
  // Key columns as text, comma separated, for select lists ("id"::text, ...).
  std::string SourceKeyList() const;
  std::string TargetKeyList() const;
};

// Builds the plan of `source_table`. `cipher` may be null when nothing is encrypted.
// kInvalidArgument from the engine when the rules do not fit the table.
StatusOr<TablePlan> BuildTablePlan(const Config& config, const TableInfo& source,
                                   const TableInfo* target, const std::string& target_schema,
                                   const Cipher* cipher);

// A bigint SQL expression hashing `expr` of type `type` with `seed`, never NULL: the type's own
// extended hash function (hashint8extended, hashtextextended, jsonb_hash_extended, ...) for the
// common types, hashtextextended of the text form for the others. Typed hashes are 2-4x cheaper
// than printing the row; equal values hash equal (1.50 and 1.5 as numeric), which is the
// comparison validate wants.
std::string HashExpression(const std::string& type, const std::string& expr, int seed);

// The SQL form of the engine's cast of `column_sql` (any type; compared as text) to `type`: the
// predicate under which PostgreSQL's cast of the trimmed text equals CastText's result, or
// nullopt when there is none for this type. Exposed for tests.
std::optional<std::string> CertainCastPredicate(const std::string& type,
                                                const std::string& column_text_sql);

}  // namespace tenantsync::validate::internal
