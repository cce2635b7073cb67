// What the applier needs to know about a target table, read from the target's catalogs, and the
// schema-drift decisions made against it (ApplyOptions::schema_drift).
#pragma once

#include <string>
#include <vector>

#include "core/pg.h"
#include "core/status.h"

namespace tenantsync::apply::internal {

struct TargetTableInfo {
  bool exists = false;
  std::vector<std::string> columns;      // attnum order, dropped columns left out
  std::vector<std::string> types;        // format_type() of each column
  // format_type(type, -1): the type without its modifier, spelled so that it parses as such
  // ("bpchar", not "character", which is character(1))
  std::vector<std::string> base_types;
  std::vector<std::string> primary_key;  // key column names in key order; empty: no primary key
  // pg_class.relhasindex: false means the table has no index at all (true may be stale after a
  // DROP INDEX until the next VACUUM).
  bool has_index = false;
  int IndexOf(const std::string& column) const;
};

// Reads schema.table's columns and primary key. A missing table is `exists = false`, not an error.
StatusOr<TargetTableInfo> LoadTargetTable(PgConn* conn, const std::string& schema,
                                          const std::string& table);

// A type name in one canonical spelling ("int8" -> "bigint", "timestamptz" -> "timestamp with
// time zone", "varchar(20)" -> "character varying(20)"), so a source type and the target's
// format_type() compare equal when they name the same type.
std::string CanonicalType(const std::string& type);

}  // namespace tenantsync::apply::internal
