#include "apply/internal/target_catalog.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace tenantsync::apply::internal {

int TargetTableInfo::IndexOf(const std::string& column) const {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == column) return static_cast<int>(i);
  }
  return -1;
}

StatusOr<TargetTableInfo> LoadTargetTable(PgConn* conn, const std::string& schema,
                                          const std::string& table) {
  static const std::string kSql =
      "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
      "       coalesce((SELECT k.n FROM unnest(i.indkey) WITH ORDINALITY k(att, n) "
      "                 WHERE k.att = a.attnum), 0), format_type(a.atttypid, -1), c.relhasindex "
      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
      "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
      "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') "
      "ORDER BY a.attnum";
  TS_ASSIGN_OR_RETURN(PgResult r, conn->ExecParams(kSql, {schema, table}));
  TargetTableInfo info;
  info.exists = r.rows() > 0;
  info.has_index = info.exists && r.Get(0, 4) == "t";  // a table's, on each of its rows
  std::map<int64_t, std::string> key;
  for (int i = 0; i < r.rows(); ++i) {
    info.columns.emplace_back(r.Get(i, 0));
    info.types.emplace_back(r.Get(i, 1));
    info.base_types.emplace_back(r.Get(i, 3));
    TS_ASSIGN_OR_RETURN(int64_t pos, r.GetInt(i, 2));
    if (pos > 0) key[pos] = info.columns.back();
  }
  for (auto& [pos, name] : key) info.primary_key.push_back(name);
  return info;
}

std::string CanonicalType(const std::string& type) {
  std::string t;
  for (char c : type) t += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  // A schema-qualified name ("tenant_rawdog.mood", as format_type prints a type outside the
  // search_path) compares by its last part; quotes do not matter.
  t.erase(std::remove(t.begin(), t.end(), '"'), t.end());
  size_t paren = t.find('(');
  size_t dot = t.rfind('.', paren == std::string::npos ? t.size() : paren);
  if (dot != std::string::npos) t = t.substr(dot + 1);
  std::string suffix;  // "(20)" or "[]"
  size_t cut = t.find_first_of("([");
  if (cut != std::string::npos) {
    suffix = t.substr(cut);
    t = t.substr(0, cut);
    while (!t.empty() && t.back() == ' ') t.pop_back();
  }
  static const std::map<std::string, std::string> kAliases = {
      {"int8", "bigint"},
      {"int4", "integer"},
      {"int", "integer"},
      {"int2", "smallint"},
      {"float8", "double precision"},
      {"float4", "real"},
      {"bool", "boolean"},
      {"varchar", "character varying"},
      {"char", "character"},
      {"bpchar", "character"},
      {"decimal", "numeric"},
      {"timestamptz", "timestamp with time zone"},
      {"timestamp", "timestamp without time zone"},
      {"timetz", "time with time zone"},
      {"time", "time without time zone"},
  };
  // "timestamp(3) with time zone": the modifier sits inside the name; such spellings are
  // compared as they are.
  size_t close = suffix.find(')');
  if (close != std::string::npos && suffix.find_first_not_of("[]", close + 1) != std::string::npos) {
    return t + suffix;
  }
  auto it = kAliases.find(t);
  if (it != kAliases.end()) t = it->second;
  return t + suffix;
}

}  // namespace tenantsync::apply::internal
