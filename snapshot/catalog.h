// Reading a schema's tables from the PostgreSQL catalogs: columns, keys, constraints, indexes,
// replica identity and size estimates, plus the foreign-key dependency order between tables.
//
// Used by snapshot (target DDL, copy plan, preflight) and reusable by apply and validate.
// The catalog query runs with search_path = '' so every user type, sequence and referenced
// table in the answer is schema-qualified; RepointType() moves such names into the tenant schema.
//
// Thread safety: the functions are pure or use only the connection passed in (one thread).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/pg.h"
#include "core/status.h"

namespace tenantsync::snapshot {

struct CatalogColumn {
  std::string name;
  int attnum = 0;
  std::string type;                   // format_type(), user types qualified ("public.mood")
  std::string type_schema;            // schema of the type (or of its element for arrays)
  std::string type_name;              // pg_type.typname of the type
  char type_kind = 'b';               // pg_type.typtype of the (element) type: b, e (enum), d, c, ...
  bool not_null = false;
  std::optional<std::string> default_expr;  // pg_get_expr() of the default, qualified
  char identity = '\0';               // 'a' GENERATED ALWAYS, 'd' BY DEFAULT, '\0' none
  char generated = '\0';              // 's' GENERATED ALWAYS AS (...) STORED, '\0' none
  std::string sequence;               // "schema.seq" owned by this column (serial/identity), or ""
};

struct CatalogConstraint {
  std::string name;
  char kind = 'p';                    // 'p' primary key, 'u' unique, 'f' foreign key, 'c' check
  std::vector<std::string> columns;   // conkey, in key order
  std::string ref_schema;             // foreign keys: referenced table
  std::string ref_table;
  std::vector<std::string> ref_columns;
  char on_update = 'a';               // confupdtype / confdeltype: a, r, c, n, d
  char on_delete = 'a';
  char match = 's';                   // confmatchtype: s simple, f full
  bool deferrable = false;
  bool deferred = false;
  std::string definition;             // pg_get_constraintdef(), qualified
};

struct CatalogIndex {
  std::string name;
  std::string definition;             // pg_get_indexdef(), qualified
  std::vector<std::string> columns;   // key columns; "" for an expression column
  std::string method;                 // btree, gin, ...
  bool unique = false;
  bool primary = false;
  bool replica_identity = false;      // indisreplident
  bool has_predicate = false;
  bool has_expressions = false;
  bool backs_constraint = false;      // the index of a PK/unique/exclusion constraint
};

struct CatalogTable {
  std::string schema;
  std::string name;
  uint32_t oid = 0;
  char replica_identity = 'd';        // d default (PK), f full, i index, n nothing
  double estimated_rows = 0;          // reltuples (-1 → never analyzed, reported as 0)
  int64_t pages = 0;                  // pg_relation_size / block_size at read time
  int64_t bytes = 0;                  // pg_relation_size (main fork)
  std::vector<CatalogColumn> columns;       // attnum order, dropped columns left out
  std::vector<CatalogConstraint> constraints;
  std::vector<CatalogIndex> indexes;

  const CatalogColumn* FindColumn(const std::string& name) const;
  const CatalogConstraint* PrimaryKey() const;  // nullptr when the table has none
  // Columns that identify a row for dead letters and upserts: the PK, else the replica identity
  // index, else empty (REPLICA IDENTITY FULL or nothing).
  std::vector<std::string> KeyColumns() const;
  // Whether logical replication can carry UPDATE/DELETE of this table (PK, identity index or FULL).
  bool HasReplicaIdentity() const;
};

struct EnumType {
  std::string name;
  std::vector<std::string> labels;    // in sort order
};

struct Catalog {
  std::string schema;
  std::vector<CatalogTable> tables;   // ordinary, non-partition tables, by name
  std::vector<EnumType> enums;        // enum types defined in the schema
  int block_size = 8192;

  const CatalogTable* FindTable(const std::string& name) const;
};

// Reads every ordinary table of `schema`. Opens and closes its own transaction on `conn`, which
// must be idle (not in a transaction). kNotFound when the schema does not exist.
StatusOr<Catalog> ReadCatalog(PgConn& conn, const std::string& schema);

// Foreign-key dependency order among `tables` (names): parents before children, ties broken by
// name. Self-references and references to tables outside the set are ignored; a cycle is broken
// at the edge whose child sorts first and reported in `cycle_edges` ("a -> b") when non-null.
struct FkOrder {
  std::vector<std::string> order;
  std::map<std::string, std::set<std::string>> parents;  // child -> its parents within the set
  std::vector<std::string> cycle_edges;
};
FkOrder ComputeFkOrder(const Catalog& catalog, const std::set<std::string>& tables);

// `type` as written for the target: a leading "<source_schema>." (quoted as format_type would)
// becomes "<target_schema>." so enum columns use the tenant schema's copy of the type.
std::string RepointType(const std::string& type, const std::string& source_schema,
                        const std::string& target_schema);

// quote_ident() semantics: the identifier as is when it needs no quotes, else QuoteIdent().
std::string QuoteIdentIfNeeded(const std::string& ident);

}  // namespace tenantsync::snapshot
