#include "snapshot/catalog.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace tenantsync::snapshot {

namespace {

// One query answers everything as JSON, so no text-array parsing is needed and the catalog is
// read in one round trip. $1 = schema name.
constexpr const char* kCatalogSql = R"SQL(
SELECT coalesce(json_agg(t ORDER BY t.name), '[]')::text FROM (
 SELECT c.oid::int8 AS oid, c.relname AS name, c.relreplident::text AS replica_identity,
   c.reltuples::float8 AS reltuples,
   pg_relation_size(c.oid) AS bytes,
   (SELECT json_agg(json_build_object(
        'name', a.attname, 'attnum', a.attnum, 'type', format_type(a.atttypid, a.atttypmod),
        'not_null', a.attnotnull, 'default', pg_get_expr(d.adbin, d.adrelid),
        'identity', a.attidentity::text, 'generated', a.attgenerated::text,
        'type_schema', tn.nspname, 'type_name', et.typname, 'type_kind', et.typtype::text,
        'sequence', pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                                           a.attname))
        ORDER BY a.attnum)
    FROM pg_attribute a
    JOIN pg_type ty ON ty.oid = a.atttypid
    JOIN pg_type et ON et.oid = CASE WHEN ty.typelem <> 0 AND ty.typlen = -1 AND ty.typcategory = 'A'
                                     THEN ty.typelem ELSE ty.oid END
    JOIN pg_namespace tn ON tn.oid = et.typnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
   (SELECT json_agg(json_build_object(
        'name', co.conname, 'kind', co.contype::text,
        'columns', (SELECT json_agg(a.attname ORDER BY k.o)
                    FROM unnest(co.conkey) WITH ORDINALITY k(n, o)
                    JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.n),
        'ref_schema', rn.nspname, 'ref_table', rc.relname,
        'ref_columns', (SELECT json_agg(a.attname ORDER BY k.o)
                        FROM unnest(co.confkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = co.confrelid AND a.attnum = k.n),
        'on_update', co.confupdtype::text, 'on_delete', co.confdeltype::text,
        'match', co.confmatchtype::text, 'deferrable', co.condeferrable,
        'deferred', co.condeferred, 'definition', pg_get_constraintdef(co.oid))
        ORDER BY co.conname)
    FROM pg_constraint co
    LEFT JOIN pg_class rc ON rc.oid = co.confrelid
    LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
    WHERE co.conrelid = c.oid AND co.contype IN ('p', 'u', 'f', 'c')) AS constraints,
   (SELECT json_agg(json_build_object(
        'name', ic.relname, 'definition', pg_get_indexdef(i.indexrelid),
        'unique', i.indisunique, 'primary', i.indisprimary, 'replident', i.indisreplident,
        'method', am.amname, 'has_predicate', i.indpred IS NOT NULL,
        'has_expressions', i.indexprs IS NOT NULL,
        'columns', (SELECT json_agg(coalesce(a.attname::text, '') ORDER BY k.o)
                    FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                    LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                    WHERE k.o <= i.indnkeyatts),
        'constraint', EXISTS (SELECT 1 FROM pg_constraint x
                              WHERE x.conindid = i.indexrelid AND x.conrelid = c.oid
                                AND x.contype IN ('p', 'u', 'x')))
        ORDER BY ic.relname)
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam
    WHERE i.indrelid = c.oid) AS indexes
 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT c.relispartition) t
)SQL";

constexpr const char* kEnumSql = R"SQL(
SELECT coalesce(json_agg(json_build_object('name', t.typname, 'labels',
         (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
          WHERE e.enumtypid = t.oid)) ORDER BY t.typname), '[]')::text
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = $1 AND t.typtype = 'e'
)SQL";

std::string Str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  return it->get<std::string>();
}

char Char(const nlohmann::json& j, const char* key, char fallback) {
  std::string s = Str(j, key);
  return s.empty() ? fallback : s[0];
}

bool Bool(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::vector<std::string> Strings(const nlohmann::json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& v : *it) out.push_back(v.is_null() ? std::string() : v.get<std::string>());
  return out;
}

StatusOr<std::vector<CatalogTable>> ParseTables(const std::string& text, const std::string& schema,
                                                int block_size) {
  std::vector<CatalogTable> tables;
  try {
    auto all = nlohmann::json::parse(text);
    for (const auto& jt : all) {
      CatalogTable t;
      t.schema = schema;
      t.name = Str(jt, "name");
      t.oid = jt.at("oid").get<uint32_t>();
      t.replica_identity = Char(jt, "replica_identity", 'd');
      t.estimated_rows = std::max(0.0, jt.at("reltuples").get<double>());
      t.bytes = jt.at("bytes").get<int64_t>();
      t.pages = t.bytes / block_size;
      if (jt.contains("columns") && jt["columns"].is_array()) {
        for (const auto& jc : jt["columns"]) {
          CatalogColumn c;
          c.name = Str(jc, "name");
          c.attnum = jc.at("attnum").get<int>();
          c.type = Str(jc, "type");
          c.type_schema = Str(jc, "type_schema");
          c.type_name = Str(jc, "type_name");
          c.type_kind = Char(jc, "type_kind", 'b');
          c.not_null = Bool(jc, "not_null");
          if (jc.contains("default") && !jc["default"].is_null()) {
            c.default_expr = jc["default"].get<std::string>();
          }
          c.identity = Char(jc, "identity", '\0');
          c.generated = Char(jc, "generated", '\0');
          c.sequence = Str(jc, "sequence");
          t.columns.push_back(std::move(c));
        }
      }
      if (jt.contains("constraints") && jt["constraints"].is_array()) {
        for (const auto& jc : jt["constraints"]) {
          CatalogConstraint c;
          c.name = Str(jc, "name");
          c.kind = Char(jc, "kind", 'c');
          c.columns = Strings(jc, "columns");
          c.ref_schema = Str(jc, "ref_schema");
          c.ref_table = Str(jc, "ref_table");
          c.ref_columns = Strings(jc, "ref_columns");
          c.on_update = Char(jc, "on_update", 'a');
          c.on_delete = Char(jc, "on_delete", 'a');
          c.match = Char(jc, "match", 's');
          c.deferrable = Bool(jc, "deferrable");
          c.deferred = Bool(jc, "deferred");
          c.definition = Str(jc, "definition");
          t.constraints.push_back(std::move(c));
        }
      }
      if (jt.contains("indexes") && jt["indexes"].is_array()) {
        for (const auto& ji : jt["indexes"]) {
          CatalogIndex i;
          i.name = Str(ji, "name");
          i.definition = Str(ji, "definition");
          i.columns = Strings(ji, "columns");
          i.method = Str(ji, "method");
          i.unique = Bool(ji, "unique");
          i.primary = Bool(ji, "primary");
          i.replica_identity = Bool(ji, "replident");
          i.has_predicate = Bool(ji, "has_predicate");
          i.has_expressions = Bool(ji, "has_expressions");
          i.backs_constraint = Bool(ji, "constraint");
          t.indexes.push_back(std::move(i));
        }
      }
      tables.push_back(std::move(t));
    }
  } catch (const std::exception& e) {
    return Fatal(std::string("unexpected catalog answer for schema ") + schema + ": " + e.what());
  }
  return tables;
}

}  // namespace

const CatalogColumn* CatalogTable::FindColumn(const std::string& n) const {
  for (const auto& c : columns) {
    if (c.name == n) return &c;
  }
  return nullptr;
}

const CatalogConstraint* CatalogTable::PrimaryKey() const {
  for (const auto& c : constraints) {
    if (c.kind == 'p') return &c;
  }
  return nullptr;
}

std::vector<std::string> CatalogTable::KeyColumns() const {
  if (const auto* pk = PrimaryKey()) return pk->columns;
  if (replica_identity == 'i') {
    for (const auto& i : indexes) {
      if (i.replica_identity) return i.columns;
    }
  }
  return {};
}

bool CatalogTable::HasReplicaIdentity() const {
  switch (replica_identity) {
    case 'f': return true;
    case 'n': return false;
    case 'i':
      return std::any_of(indexes.begin(), indexes.end(),
                         [](const CatalogIndex& i) { return i.replica_identity; });
    default: return PrimaryKey() != nullptr;
  }
}

const CatalogTable* Catalog::FindTable(const std::string& n) const {
  for (const auto& t : tables) {
    if (t.name == n) return &t;
  }
  return nullptr;
}

StatusOr<Catalog> ReadCatalog(PgConn& conn, const std::string& schema) {
  Catalog cat;
  cat.schema = schema;
  TS_ASSIGN_OR_RETURN(PgResult exists,
                      conn.ExecParams("SELECT 1 FROM pg_namespace WHERE nspname = $1", {schema}));
  if (exists.rows() == 0) {
    return NotFound("schema " + QuoteIdent(schema) + " does not exist in the source database; " +
                    "set source.schema to the schema that holds the tables");
  }
  TS_ASSIGN_OR_RETURN(PgResult bs, conn.Exec("SELECT current_setting('block_size')::int"));
  TS_ASSIGN_OR_RETURN(int64_t block_size, bs.GetInt(0, 0));
  cat.block_size = static_cast<int>(block_size);
  // search_path = '' makes format_type/pg_get_expr/pg_get_*def qualify every non-catalog name.
  TS_RETURN_IF_ERROR(conn.Run("BEGIN READ ONLY; SET LOCAL search_path = ''"));
  auto tables = conn.ExecParams(kCatalogSql, {schema});
  if (!tables.ok()) {
    conn.Run("ROLLBACK").IgnoreError();  // reported below; the transaction is aborted anyway
    return tables.status().WithContext("reading the catalog of " + schema);
  }
  auto enums = conn.ExecParams(kEnumSql, {schema});
  Status end = conn.Run("COMMIT");
  if (!enums.ok()) return enums.status().WithContext("reading enum types of " + schema);
  TS_RETURN_IF_ERROR(end);
  TS_ASSIGN_OR_RETURN(cat.tables, ParseTables(std::string(tables->Get(0, 0)), schema,
                                              cat.block_size));
  try {
    for (const auto& je : nlohmann::json::parse(std::string(enums->Get(0, 0)))) {
      cat.enums.push_back(EnumType{Str(je, "name"), Strings(je, "labels")});
    }
  } catch (const std::exception& e) {
    return Fatal(std::string("unexpected enum catalog answer: ") + e.what());
  }
  return cat;
}

FkOrder ComputeFkOrder(const Catalog& catalog, const std::set<std::string>& tables) {
  FkOrder out;
  for (const auto& name : tables) out.parents[name];
  for (const auto& t : catalog.tables) {
    if (!tables.count(t.name)) continue;
    for (const auto& c : t.constraints) {
      if (c.kind != 'f' || c.ref_schema != catalog.schema || c.ref_table == t.name) continue;
      if (!tables.count(c.ref_table)) continue;
      out.parents[t.name].insert(c.ref_table);
    }
  }
  // Kahn's algorithm; the ready set is ordered by name so the order is deterministic.
  std::map<std::string, std::set<std::string>> pending = out.parents;
  std::set<std::string> done;
  while (done.size() < pending.size()) {
    std::string next;
    for (const auto& [name, ps] : pending) {
      if (done.count(name)) continue;
      bool ready = std::all_of(ps.begin(), ps.end(),
                               [&](const std::string& p) { return done.count(p) > 0; });
      if (ready) {
        next = name;
        break;
      }
    }
    if (next.empty()) {
      // A cycle: break it at the first remaining table by dropping its unfinished parents.
      for (auto& [name, ps] : pending) {
        if (done.count(name)) continue;
        for (const auto& p : ps) {
          if (!done.count(p)) out.cycle_edges.push_back(name + " -> " + p);
        }
        next = name;
        break;
      }
    }
    done.insert(next);
    out.order.push_back(next);
  }
  return out;
}

std::string QuoteIdentIfNeeded(const std::string& ident) {
  bool plain = !ident.empty() && (std::islower(static_cast<unsigned char>(ident[0])) ||
                                  ident[0] == '_');
  for (char c : ident) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!(std::islower(u) || std::isdigit(u) || c == '_')) plain = false;
  }
  return plain ? ident : QuoteIdent(ident);
}

std::string RepointType(const std::string& type, const std::string& source_schema,
                        const std::string& target_schema) {
  std::string prefix = QuoteIdentIfNeeded(source_schema) + ".";
  if (type.rfind(prefix, 0) == 0) {
    return QuoteIdent(target_schema) + "." + type.substr(prefix.size());
  }
  return type;
}

}  // namespace tenantsync::snapshot
