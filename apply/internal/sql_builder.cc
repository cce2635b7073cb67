#include "apply/internal/sql_builder.h"

#include <algorithm>
#include <cstdio>

#include "core/hash.h"
#include "core/pg.h"
#include "snapshot/internal/copy_text.h"

namespace tenantsync::apply::internal {

namespace {

bool Contains(const std::vector<int>& v, int x) { return std::find(v.begin(), v.end(), x) != v.end(); }

std::string Param(int n) { return "$" + std::to_string(n); }

std::string ColumnList(const TableShape& t, const std::vector<int>& cols, const char* prefix = "") {
  std::string out;
  for (size_t i = 0; i < cols.size(); ++i) {
    if (i) out += ", ";
    out += prefix;
    out += QuoteIdent(t.columns[cols[i]]);
  }
  return out;
}

std::string KeyList(const TableShape& t, const char* prefix = "") {
  return ColumnList(t, t.key, prefix);
}

// "ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c ..." for the staged or inserted `cols`.
std::string OnConflict(const TableShape& t, const std::vector<int>& cols) {
  if (t.key.empty()) return "";
  std::string set;
  for (int c : cols) {
    if (Contains(t.key, c) || t.added[c]) continue;
    if (!set.empty()) set += ", ";
    set += QuoteIdent(t.columns[c]) + " = EXCLUDED." + QuoteIdent(t.columns[c]);
  }
  std::string out = " ON CONFLICT (" + KeyList(t) + ") DO ";
  out += set.empty() ? "NOTHING" : "UPDATE SET " + set;
  return out;
}

// The last staged row per key: "(SELECT DISTINCT ON (key) * FROM stage ORDER BY key, ts_seq DESC)".
std::string LastPerKey(const TableShape& t, const std::string& stage) {
  return "(SELECT DISTINCT ON (" + KeyList(t) + ") * FROM " + stage + " ORDER BY " +
         KeyList(t) + ", ts_seq DESC)";
}

bool NoEquality(const std::string& type) {
  static const char* kTypes[] = {"xml", "point", "line", "lseg", "box", "path", "polygon", "circle"};
  for (const char* k : kTypes) {
    if (type == k) return true;
  }
  return false;
}

}  // namespace

std::string MatchExpr(const std::string& column_sql, const std::string& type, int param,
                      bool null_safe) {
  std::string lhs = column_sql;
  std::string rhs = Param(param);
  if (type == "json") {
    lhs += "::jsonb";
    rhs += "::jsonb";
  } else if (NoEquality(type)) {
    lhs += "::text";
    rhs += "::text";
  }
  return lhs + (null_safe ? " IS NOT DISTINCT FROM " : " = ") + rhs;
}

std::string InsertSql(const TableShape& t, const std::vector<int>& cols) {
  std::string values;
  for (size_t i = 0; i < cols.size(); ++i) {
    if (i) values += ", ";
    values += Param(static_cast<int>(i) + 1);
  }
  return "INSERT INTO " + t.qualified + " (" + ColumnList(t, cols) + ") VALUES (" + values + ")" +
         OnConflict(t, cols);
}

std::string UpdateByKeySql(const TableShape& t, const std::vector<int>& set_cols) {
  std::string sql = "UPDATE " + t.qualified + " SET ";
  int n = 0;
  for (size_t i = 0; i < set_cols.size(); ++i) {
    if (i) sql += ", ";
    sql += QuoteIdent(t.columns[set_cols[i]]) + " = " + Param(++n);
  }
  sql += " WHERE ";
  for (size_t i = 0; i < t.key.size(); ++i) {
    if (i) sql += " AND ";
    sql += MatchExpr(QuoteIdent(t.columns[t.key[i]]), t.types[t.key[i]], ++n, false);
  }
  return sql;
}

namespace {

std::string OneRowMatch(const TableShape& t, const std::vector<int>& match_cols,
                        const std::vector<int>& null_cols, int first_param) {
  std::string where;
  int n = first_param;
  for (int c : match_cols) {
    if (!where.empty()) where += " AND ";
    where += MatchExpr(QuoteIdent(t.columns[c]), t.types[c], n++, false);
  }
  for (int c : null_cols) {
    if (!where.empty()) where += " AND ";
    where += QuoteIdent(t.columns[c]) + " IS NULL";
  }
  if (where.empty()) where = "true";
  return "ctid = (SELECT ctid FROM " + t.qualified + " WHERE " + where + " LIMIT 1)";
}

}  // namespace

std::string UpdateByMatchSql(const TableShape& t, const std::vector<int>& set_cols,
                             const std::vector<int>& match_cols,
                             const std::vector<int>& null_cols) {
  std::string sql = "UPDATE " + t.qualified + " SET ";
  for (size_t i = 0; i < set_cols.size(); ++i) {
    if (i) sql += ", ";
    sql += QuoteIdent(t.columns[set_cols[i]]) + " = " + Param(static_cast<int>(i) + 1);
  }
  return sql + " WHERE " +
         OneRowMatch(t, match_cols, null_cols, static_cast<int>(set_cols.size()) + 1);
}

std::string DeleteByKeySql(const TableShape& t) {
  std::string sql = "DELETE FROM " + t.qualified + " WHERE ";
  for (size_t i = 0; i < t.key.size(); ++i) {
    if (i) sql += " AND ";
    sql += MatchExpr(QuoteIdent(t.columns[t.key[i]]), t.types[t.key[i]], static_cast<int>(i) + 1,
                     false);
  }
  return sql;
}

std::string DeleteByMatchSql(const TableShape& t, const std::vector<int>& match_cols,
                             const std::vector<int>& null_cols) {
  return "DELETE FROM " + t.qualified + " WHERE " + OneRowMatch(t, match_cols, null_cols, 1);
}

std::string TruncateSql(const std::vector<std::string>& qualified_tables, bool restart_identity) {
  std::string sql = "TRUNCATE ";
  for (size_t i = 0; i < qualified_tables.size(); ++i) {
    if (i) sql += ", ";
    sql += qualified_tables[i];
  }
  if (restart_identity) sql += " RESTART IDENTITY";
  return sql;
}

std::string StageTableName(int id) { return "ts_stage_" + std::to_string(id); }

namespace {
std::string StageColumns(const TableShape& t) {
  std::string sql = " (ts_seq bigint";
  for (size_t i = 0; i < t.columns.size(); ++i) {
    sql += ", " + QuoteIdent(t.columns[i]) + " " + t.types[i];
  }
  return sql + ")";
}
}  // namespace

std::string CreateStageSql(const TableShape& t, const std::string& stage) {
  return "CREATE TEMP TABLE IF NOT EXISTS " + stage + StageColumns(t) + " ON COMMIT DELETE ROWS";
}

std::string CreateSharedStageSql(const TableShape& t, const std::string& stage) {
  return "CREATE UNLOGGED TABLE " + stage + StageColumns(t) + " WITH (autovacuum_enabled = false)";
}

std::string SharedStagePrefix(const std::string& pipeline) {
  Fnv1a f;
  f.Bytes(pipeline.data(), pipeline.size());
  char buf[40];
  std::snprintf(buf, sizeof(buf), "stage_%016llx_", static_cast<unsigned long long>(f.h));
  return buf;
}

std::string CopyIntoStageSql(const TableShape& t, const std::string& stage,
                             const std::vector<int>& cols) {
  std::string sql = "COPY " + stage + " (ts_seq";
  if (!cols.empty()) sql += ", " + ColumnList(t, cols);
  return sql + ") FROM STDIN";
}

std::string CopyIntoTableSql(const TableShape& t, const std::vector<int>& cols) {
  return "COPY " + t.qualified + " (" + ColumnList(t, cols) + ") FROM STDIN";
}

std::string BulkInsertSql(const TableShape& t, const std::string& stage,
                          const std::vector<int>& cols, bool unique_keys) {
  std::string list = ColumnList(t, cols);
  std::string sql = "INSERT INTO " + t.qualified + " (" + list + ") SELECT " + list + " FROM ";
  if (t.key.empty()) return sql + stage + " ORDER BY ts_seq";
  return sql + (unique_keys ? stage : LastPerKey(t, stage)) + " s" +
         OnConflict(t, cols);
}

std::string BulkUpdateSql(const TableShape& t, const std::string& stage,
                          const std::vector<int>& set_cols, bool unique_keys) {
  std::string set;
  for (int c : set_cols) {
    if (Contains(t.key, c)) continue;
    if (!set.empty()) set += ", ";
    set += QuoteIdent(t.columns[c]) + " = s." + QuoteIdent(t.columns[c]);
  }
  if (set.empty()) {
    // Only key columns: the row already has these values; a no-op update keeps the statement valid.
    set = QuoteIdent(t.columns[t.key[0]]) + " = s." + QuoteIdent(t.columns[t.key[0]]);
  }
  std::string where;
  for (size_t i = 0; i < t.key.size(); ++i) {
    if (i) where += " AND ";
    const std::string& k = QuoteIdent(t.columns[t.key[i]]);
    where += "t." + k + " = s." + k;
  }
  return "UPDATE " + t.qualified + " t SET " + set + " FROM " +
         (unique_keys ? stage : LastPerKey(t, stage)) + " s WHERE " + where;
}

std::string BulkDeleteSql(const TableShape& t, const std::string& stage) {
  std::string where;
  for (size_t i = 0; i < t.key.size(); ++i) {
    if (i) where += " AND ";
    const std::string& k = QuoteIdent(t.columns[t.key[i]]);
    where += "t." + k + " = s." + k;
  }
  return "DELETE FROM " + t.qualified + " t USING " + stage + " s WHERE " + where;
}

std::string TruncateStageSql(const std::string& stage) { return "TRUNCATE " + stage; }

bool IsArrayType(const std::string& type) { return type.ends_with("]"); }

std::string ArrayStageSql(const TableShape& t, const std::vector<int>& cols) {
  // An array-typed column travels as a text[] of its values' text and each value is cast on its
  // own: unnest() of an array of arrays would flatten them (and they need not be of one shape).
  std::string args, casts;
  bool nested = false;
  for (size_t i = 0; i < cols.size(); ++i) {
    const std::string& type = t.base_types[cols[i]];
    const std::string& name = QuoteIdent(t.columns[cols[i]]);
    const bool is_array = IsArrayType(type);
    nested |= is_array;
    if (i) args += ", ";
    args += Param(static_cast<int>(i) + 1) + "::" + (is_array ? "text" : type) + "[]";
    casts += is_array ? "u." + name + "::" + type + " AS " + name + ", " : "u." + name + ", ";
  }
  return "(SELECT " + (nested ? casts + "u.ts_seq" : std::string("*")) + " FROM unnest(" + args +
         ") WITH ORDINALITY AS u(" + ColumnList(t, cols) + ", ts_seq))";
}

namespace {
// The value of column `c` of `t` as KeylessDeleteSql groups and compares it; `expr` has the
// column's base type.
std::string Comparable(const TableShape& t, int c, const std::string& expr) {
  const std::string& type = t.base_types[c];
  if (type == "json") return expr + "::jsonb";
  if (NoEquality(type)) return expr + "::text";
  return expr;
}
}  // namespace

bool KeylessGroupable(const std::string& type) {
  if (!IsArrayType(type)) return true;
  const std::string element = type.substr(0, type.find('['));
  return element != "json" && !NoEquality(element);
}

std::string KeylessDeleteSql(const TableShape& t, const std::vector<int>& match_cols,
                             const std::vector<int>& null_cols) {
  std::string args, values, groups, join;
  for (size_t i = 0; i < match_cols.size(); ++i) {
    const int c = match_cols[i];
    const std::string& type = t.base_types[c];
    const std::string name = QuoteIdent(t.columns[c]);
    const bool is_array = IsArrayType(type);
    if (i) {
      args += ", ";
      values += ", ";
      groups += ", ";
      join += " AND ";
    }
    args += Param(static_cast<int>(i) + 1) + "::" + (is_array ? "text" : type) + "[]";
    values += Comparable(t, c, is_array ? "a." + name + "::" + type : "a." + name) + " AS " + name;
    groups += std::to_string(i + 1);
    join += Comparable(t, c, "r." + name) + " = u." + name;
  }
  for (int c : null_cols) join += " AND r." + QuoteIdent(t.columns[c]) + " IS NULL";
  return "DELETE FROM " + t.qualified + " t USING (SELECT r.ctid AS ts_ctid, u.ts_count, " +
         "row_number() OVER (PARTITION BY u.ts_group ORDER BY r.ctid) AS ts_rank FROM (SELECT " +
         values + ", count(*) AS ts_count, row_number() OVER () AS ts_group FROM unnest(" + args +
         ") AS a(" + ColumnList(t, match_cols) + ") GROUP BY " + groups + ") u JOIN " +
         t.qualified + " r ON " + join + ") d WHERE t.ctid = d.ts_ctid AND d.ts_rank <= d.ts_count";
}

std::string KeylessUpdateSql(const TableShape& t, const std::vector<int>& match_cols,
                             const std::vector<int>& null_cols, const std::vector<int>& set_cols) {
  // Grouped by old value, each group's new values in the source's order (array_agg), and each
  // row matching the group numbered in ctid order: row i takes the group's update i. One hash
  // join of the groups with the table, then one ctid lookup per row updated.
  std::string args, names, values, groups, join, news, set;
  int n = 0;
  auto arg = [&](int c, const std::string& alias) {
    const bool is_array = IsArrayType(t.base_types[c]);
    if (n) {
      args += ", ";
      names += ", ";
    }
    args += Param(++n) + "::" + (is_array ? "text" : t.base_types[c]) + "[]";
    names += alias;
  };
  for (size_t i = 0; i < match_cols.size(); ++i) {
    const int c = match_cols[i];
    const std::string o = "o" + std::to_string(i + 1);
    arg(c, o);
    const std::string& type = t.base_types[c];
    values +=
        Comparable(t, c, IsArrayType(type) ? "x." + o + "::" + type : "x." + o) + " AS " + o + ", ";
    groups += (i ? ", " : "") + std::to_string(i + 1);
    join += (i ? " AND " : "") + Comparable(t, c, "r." + QuoteIdent(t.columns[c])) + " = g." + o;
  }
  for (int c : null_cols) join += " AND r." + QuoteIdent(t.columns[c]) + " IS NULL";
  for (size_t j = 0; j < set_cols.size(); ++j) {
    const int c = set_cols[j];
    const std::string nj = "n" + std::to_string(j + 1);
    arg(c, nj);
    values += "array_agg(x." + nj + " ORDER BY x.ts_ord) AS " + nj + ", ";
    news += ", g." + nj;
    const std::string& type = t.base_types[c];
    set += (j ? ", " : "") + QuoteIdent(t.columns[c]) + " = m." + nj + "[m.ts_rank]" +
           (IsArrayType(type) ? "::" + type : "");
  }
  return "WITH g AS (SELECT " + values + "row_number() OVER () AS ts_group FROM unnest(" + args +
         ") WITH ORDINALITY AS x(" + names + ", ts_ord) GROUP BY " + groups +
         "), m AS (SELECT r.ctid AS ts_ctid" + news +
         ", row_number() OVER (PARTITION BY g.ts_group ORDER BY r.ctid) AS ts_rank FROM g JOIN " +
         t.qualified + " r ON " + join + ") UPDATE " + t.qualified + " t SET " + set +
         " FROM m WHERE t.ctid = m.ts_ctid AND m.ts_rank <= cardinality(m.n1)";
}

namespace {
// A datum's text, without its trailing blanks when asked (character(n) pads them back).
std::string_view ValueText(const Datum& d, bool trim_trailing_blanks) {
  std::string_view v = d.text;
  if (!trim_trailing_blanks) return v;
  size_t last = v.find_last_not_of(' ');
  return v.substr(0, last == std::string_view::npos ? 0 : last + 1);
}
}  // namespace

void AppendArrayElement(const Datum& d, std::string* out, bool trim_trailing_blanks) {
  if (d.kind != Datum::Kind::kText) {
    *out += "NULL";
    return;
  }
  out->push_back('"');
  for (char ch : ValueText(d, trim_trailing_blanks)) {
    if (ch == '"' || ch == '\\') out->push_back('\\');
    out->push_back(ch);
  }
  out->push_back('"');
}

void AppendCopyText(const Datum& d, std::string* out, bool trim_trailing_blanks) {
  if (d.kind != Datum::Kind::kText) {
    *out += "\\N";
    return;
  }
  snapshot::internal::AppendCopyTextValue(ValueText(d, trim_trailing_blanks), out);
}

}  // namespace tenantsync::apply::internal
