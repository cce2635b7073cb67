#include "validate/internal/catalog.h"

namespace tenantsync::validate::internal {

namespace {

// Splits a text[] printed by PostgreSQL's array_to_string with a separator no identifier holds.
std::vector<std::string> SplitUnit(std::string_view s) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find('\x1f', start);
    out.emplace_back(s.substr(start, pos == std::string_view::npos ? s.npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

}  // namespace

int TableInfo::ColumnIndex(const std::string& column) const {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i].name == column) return static_cast<int>(i);
  }
  return -1;
}

StatusOr<std::map<std::string, TableInfo>> ReadTables(Session& session, const std::string& schema) {
  TS_ASSIGN_OR_RETURN(PgResult ns,
                      session.Query("SELECT 1 FROM pg_namespace WHERE nspname = $1", {schema}));
  if (ns.rows() == 0) {
    return NotFound(session.side() + ": schema \"" + schema + "\" does not exist");
  }
  // search_path = the schema, so format_type() leaves its own types unqualified on both sides.
  TS_RETURN_IF_ERROR(session.Query("SELECT set_config('search_path', quote_ident($1), false)",
                                   {schema}).status());
  auto cols_or = session.Query(
      "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
      "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
      "ORDER BY c.relname, a.attnum",
      {schema});
  TS_RETURN_IF_ERROR(session.Query("RESET search_path").status());
  if (!cols_or.ok()) return cols_or.status();
  PgResult cols = std::move(cols_or).value();
  std::map<std::string, TableInfo> tables;
  for (int i = 0; i < cols.rows(); ++i) {
    std::string table(cols.Get(i, 0));
    TableInfo& t = tables[table];
    t.schema = schema;
    t.name = table;
    t.columns.push_back({std::string(cols.Get(i, 1)), std::string(cols.Get(i, 2))});
  }
  // Key: the primary key, else the replica identity index.
  TS_ASSIGN_OR_RETURN(
      PgResult keys,
      session.Query(
          "SELECT c.relname, array_to_string(array_agg(a.attname ORDER BY k.ord), chr(31)) "
          "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
          "JOIN LATERAL (SELECT i.indkey FROM pg_index i WHERE i.indrelid = c.oid "
          "  AND (i.indisprimary OR i.indisreplident) "
          "  ORDER BY i.indisprimary DESC LIMIT 1) ix ON true "
          "CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
          "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
          "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') "
          "GROUP BY c.relname",
          {schema}));
  for (int i = 0; i < keys.rows(); ++i) {
    auto it = tables.find(std::string(keys.Get(i, 0)));
    if (it != tables.end()) it->second.key = SplitUnit(keys.Get(i, 1));
  }
  return tables;
}

StatusOr<std::vector<ForeignKeyInfo>> ReadForeignKeys(Session& session,
                                                      const std::string& schema) {
  TS_ASSIGN_OR_RETURN(
      PgResult r,
      session.Query(
          "SELECT con.conname, c.relname, rn.nspname, rc.relname, "
          "  (SELECT array_to_string(array_agg(a.attname ORDER BY k.ord), chr(31)) "
          "   FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord) "
          "   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum), "
          "  (SELECT array_to_string(array_agg(a.attname ORDER BY k.ord), chr(31)) "
          "   FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord) "
          "   JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum) "
          "FROM pg_constraint con "
          "JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
          "JOIN pg_class rc ON rc.oid = con.confrelid "
          "JOIN pg_namespace rn ON rn.oid = rc.relnamespace "
          "WHERE con.contype = 'f' AND n.nspname = $1 ORDER BY c.relname, con.conname",
          {schema}));
  std::vector<ForeignKeyInfo> out;
  for (int i = 0; i < r.rows(); ++i) {
    ForeignKeyInfo fk;
    fk.name = std::string(r.Get(i, 0));
    fk.table = std::string(r.Get(i, 1));
    fk.ref_schema = std::string(r.Get(i, 2));
    fk.ref_table = std::string(r.Get(i, 3));
    fk.columns = SplitUnit(r.Get(i, 4));
    fk.ref_columns = SplitUnit(r.Get(i, 5));
    out.push_back(std::move(fk));
  }
  return out;
}

}  // namespace tenantsync::validate::internal
