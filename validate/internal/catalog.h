// The little of the catalogs validate needs: tables with columns, types and keys, and the
// foreign keys of a schema. Read with the pinned Session so format_type() is comparable.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "validate/internal/session.h"

namespace tenantsync::validate::internal {

struct ColumnInfo {
  std::string name;
  std::string type;  // format_type(), unqualified for types of the table's own schema
};

struct TableInfo {
  std::string schema;
  std::string name;
  std::vector<ColumnInfo> columns;  // attnum order, dropped columns left out
  // Primary key columns, else the replica identity index's, else empty (REPLICA IDENTITY FULL).
  std::vector<std::string> key;
  int ColumnIndex(const std::string& column) const;  // -1 when absent
};

struct ForeignKeyInfo {
  std::string name;
  std::string table;  // child table (in the schema read)
  std::vector<std::string> columns;
  std::string ref_schema;
  std::string ref_table;
  std::vector<std::string> ref_columns;
};

// Ordinary and partitioned tables of `schema` by name. Empty map when the schema has none;
// kNotFound when the schema does not exist.
StatusOr<std::map<std::string, TableInfo>> ReadTables(Session& session, const std::string& schema);
// Foreign keys declared on tables of `schema`, by constraint name order.
StatusOr<std::vector<ForeignKeyInfo>> ReadForeignKeys(Session& session, const std::string& schema);

}  // namespace tenantsync::validate::internal
