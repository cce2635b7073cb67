// The snapshot plan: for every mapped source table, its transform, the copy column lists, the
// path (binary pass-through or text + transform) and the target DDL, split like pg_dump into
// pre-data (sequences, CREATE TABLE with columns, NOT NULL, defaults, identity) and post-data
// (primary keys, unique and check constraints, indexes, then foreign keys re-pointed into the
// tenant schema, then sequence positions). Built from catalogs only; writes nothing, so
// `--dry-run` and `check` print it.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/crypto.h"
#include "core/transform.h"
#include "snapshot/catalog.h"

namespace tenantsync::snapshot::internal {

struct PostDataItem {
  enum class Kind { kConstraint, kIndex, kForeignKey };
  Kind kind = Kind::kConstraint;
  std::string name;  // constraint or index name (skipped when it already exists in the target)
  std::string sql;
};

struct TablePlan {
  const CatalogTable* source = nullptr;   // points into PlanSet::source_catalog
  std::string target_table;
  std::vector<SourceColumn> source_columns;  // columns COPY reads (generated ones left out)
  std::unique_ptr<TableTransform> transform;
  // Binary pass-through: no value changes (only renames and drops) and identical types on both
  // sides. Then the source SELECT lists the kept columns in target order.
  bool binary = false;
  std::string source_select_list;         // quoted source columns, in COPY order
  // Binary pass-through: per COPY column, true for character(n), whose blank padding is not
  // sent (copy_binary.h: the target pads it back, the stored value is the same). Empty when no
  // column is character(n) or the path is text.
  std::vector<bool> trim_padding;
  std::string target_column_list;         // quoted target columns, in COPY order
  std::vector<int> key_source_indexes;    // source columns naming a row in dead letters
  bool target_exists = false;             // the target table existed before this plan
  std::vector<std::string> pre_data;      // DDL run before the copy (empty when target_exists)
  std::vector<PostDataItem> post_data;    // PK, unique, check, indexes
  std::vector<PostDataItem> foreign_keys; // after every table's post_data
  // For each target sequence: "schema.seq" on the target, target column, source sequence
  // (qualified, empty for identity columns whose sequence is implicit).
  struct Sequence {
    std::string target_column;
    std::string source_sequence;
  };
  std::vector<Sequence> sequences;
  std::vector<std::string> notes;         // transforms and skipped objects, for the plan output
};

struct PlanSet {
  Catalog source_catalog;
  Catalog target_catalog;                 // tables already in the tenant schema (maybe none)
  bool target_schema_exists = false;
  std::vector<std::string> order;         // FK order of mapped source tables
  std::map<std::string, std::set<std::string>> parents;
  std::map<std::string, TablePlan> tables;  // keyed by source table
  std::vector<std::string> pre_data;      // schema and enum types
  std::vector<std::string> errors;        // one line each (missing tables, bad rules)
};

// Builds the plan. `cipher` may be null when nothing is encrypted. Problems that make a table
// impossible to copy are appended to `errors` (all of them, not only the first).
std::unique_ptr<PlanSet> BuildPlan(const Config& config, Catalog source, Catalog target,
                                   bool target_schema_exists, const Cipher* cipher);

// Reads the source catalog and the tenant schema's catalog on the target, then BuildPlan.
// `target` may be null (preflight when the target is unreachable): then no target table exists.
StatusOr<std::unique_ptr<PlanSet>> LoadPlan(const Config& config, PgConn& source, PgConn* target,
                                            const Cipher* cipher);

// The cipher for encrypted columns and tenant secrets; null when the config needs none.
// kInvalidArgument when it needs one and the key is missing or malformed (never echoes the key).
StatusOr<std::unique_ptr<Cipher>> LoadCipher(const Config& config);

// Human-readable plan for --dry-run: tables in order with row estimates, transforms, DDL.
std::string FormatPlan(const Config& config, const PlanSet& plan);

// The SQL expression text with "<source_schema>." qualifiers re-pointed to the target schema.
std::string RepointExpr(const std::string& expr, const std::string& source_schema,
                        const std::string& target_schema);

}  // namespace tenantsync::snapshot::internal
