#include "validate/internal/rows.h"

#include "core/pg.h"

namespace tenantsync::validate::internal {

namespace {

constexpr size_t kMaxShownValue = 40;

std::string Shown(const std::optional<std::string>& v) {
  if (!v) return "NULL";
  if (v->size() <= kMaxShownValue) return "'" + *v + "'";
  return "'" + v->substr(0, kMaxShownValue) + "...'";
}

// `FROM unnest($1::text[], ...) AS k(k0, k1, ...)` joined to the table on its key columns.
std::string KeyJoin(const std::vector<std::string>& columns, const std::vector<std::string>& types,
                    std::string* unnest_from) {
  std::string un = "unnest(";
  std::string alias = "k(";
  std::string on;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i) {
      un += ", ";
      alias += ", ";
      on += " AND ";
    }
    un += "$" + std::to_string(i + 1) + "::text[]";
    alias += "k" + std::to_string(i);
    on += "t." + QuoteIdent(columns[i]) + " = k.k" + std::to_string(i) + "::" + types[i];
  }
  *unnest_from = un + ") AS " + alias + ")";
  return on;
}

Params KeyParams(const std::vector<Key>& keys, size_t width) {
  Params params;
  for (size_t i = 0; i < width; ++i) {
    std::vector<std::string> col;
    col.reserve(keys.size());
    for (const Key& k : keys) col.push_back(k[i]);
    params.push_back(TextArrayLiteral(col));
  }
  return params;
}

}  // namespace

std::string FormatKey(const TablePlan& plan, const Key& key) {
  std::string out;
  for (size_t i = 0; i < key.size() && i < plan.key_target.size(); ++i) {
    if (i) out += ",";
    out += plan.key_target[i] + "=" + key[i];
  }
  return out;
}

StatusOr<std::map<Key, SourceRow>> FetchSourceRows(Session& source, const TablePlan& plan,
                                                   const std::vector<Key>& keys) {
  std::map<Key, SourceRow> out;
  if (keys.empty()) return out;
  std::vector<std::string> kcols, ktypes;
  for (int i : plan.key_source) {
    kcols.push_back(plan.source.columns[i].name);
    ktypes.push_back(plan.source.columns[i].type);
  }
  std::string from;
  std::string on = KeyJoin(kcols, ktypes, &from);
  std::string sql = "SELECT t.xmin::text";
  for (const std::string& k : kcols) sql += ", t." + QuoteIdent(k) + "::text";
  for (const ColumnInfo& c : plan.source.columns) sql += ", t." + QuoteIdent(c.name);
  sql += " FROM " + from + " JOIN " + plan.SourceQualified() + " t ON " + on;
  TS_ASSIGN_OR_RETURN(PgResult r, source.Query(sql, KeyParams(keys, kcols.size())));
  const int nk = static_cast<int>(kcols.size());
  for (int row = 0; row < r.rows(); ++row) {
    Key key;
    for (int i = 0; i < nk; ++i) key.emplace_back(r.Get(row, 1 + i));
    SourceRow sr;
    sr.xmin = std::string(r.Get(row, 0));
    for (size_t c = 0; c < plan.source.columns.size(); ++c) {
      int col = 1 + nk + static_cast<int>(c);
      sr.values.push_back(r.IsNull(row, col) ? Datum::Null()
                                             : Datum::Text(std::string(r.Get(row, col))));
    }
    out[std::move(key)] = std::move(sr);
  }
  return out;
}

StatusOr<std::map<Key, TargetRow>> FetchTargetRows(Session& target, const TablePlan& plan,
                                                   const std::vector<Key>& keys) {
  std::map<Key, TargetRow> out;
  if (keys.empty() || !plan.target_exists) return out;
  std::vector<std::string> ktypes;
  for (int i : plan.key_source) ktypes.push_back(plan.source.columns[i].type);
  std::string from;
  std::string on = KeyJoin(plan.key_target, ktypes, &from);
  std::string sql = "SELECT 1";
  for (const std::string& k : plan.key_target) sql += ", t." + QuoteIdent(k) + "::text";
  for (const ColumnPlan& c : plan.columns) {
    sql += c.in_target ? ", t." + QuoteIdent(c.name) : std::string(", NULL");
  }
  sql += " FROM " + from + " JOIN " + plan.TargetQualified() + " t ON " + on;
  TS_ASSIGN_OR_RETURN(PgResult r, target.Query(sql, KeyParams(keys, plan.key_target.size())));
  const int nk = static_cast<int>(plan.key_target.size());
  for (int row = 0; row < r.rows(); ++row) {
    Key key;
    for (int i = 0; i < nk; ++i) key.emplace_back(r.Get(row, 1 + i));
    TargetRow tr;
    for (size_t c = 0; c < plan.columns.size(); ++c) {
      tr.values.push_back(r.GetOptional(row, 1 + nk + static_cast<int>(c)));
    }
    out[std::move(key)] = std::move(tr);
  }
  return out;
}

namespace {

std::string HashArray(const std::vector<std::string>& hashes) {
  std::string out = "{";
  for (size_t i = 0; i < hashes.size(); ++i) out += (i ? "," : "") + hashes[i];
  return out + "}";
}

}  // namespace

StatusOr<std::map<std::string, std::vector<SourceRow>>> FetchSourceRowsByHash(
    Session& source, const TablePlan& plan, const std::vector<std::string>& hashes) {
  std::map<std::string, std::vector<SourceRow>> out;
  if (hashes.empty()) return out;
  std::string sql = "SELECT x.h::text, x.xmin::text";
  for (size_t c = 0; c < plan.source.columns.size(); ++c) sql += ", x.c" + std::to_string(c);
  sql += " FROM (SELECT " + plan.SourceRowHash() + " AS h, t.xmin";
  for (size_t c = 0; c < plan.source.columns.size(); ++c) {
    sql += ", t." + QuoteIdent(plan.source.columns[c].name) + " AS c" + std::to_string(c);
  }
  sql += " FROM " + plan.SourceQualified() + " t) x WHERE x.h = ANY($1::bigint[])";
  TS_ASSIGN_OR_RETURN(PgResult r, source.Query(sql, {HashArray(hashes)}));
  for (int row = 0; row < r.rows(); ++row) {
    SourceRow sr;
    sr.xmin = std::string(r.Get(row, 1));
    for (size_t c = 0; c < plan.source.columns.size(); ++c) {
      int col = 2 + static_cast<int>(c);
      sr.values.push_back(r.IsNull(row, col) ? Datum::Null()
                                             : Datum::Text(std::string(r.Get(row, col))));
    }
    out[std::string(r.Get(row, 0))].push_back(std::move(sr));
  }
  return out;
}

StatusOr<std::map<std::string, std::vector<TargetRow>>> FetchTargetRowsByHash(
    Session& target, const TablePlan& plan, const std::vector<std::string>& hashes) {
  std::map<std::string, std::vector<TargetRow>> out;
  if (hashes.empty() || !plan.target_exists) return out;
  std::string sql = "SELECT x.h::text";
  for (size_t c = 0; c < plan.columns.size(); ++c) sql += ", x.c" + std::to_string(c);
  sql += " FROM (SELECT " + plan.TargetRowHash() + " AS h";
  for (size_t c = 0; c < plan.columns.size(); ++c) {
    sql += plan.columns[c].in_target ? ", t." + QuoteIdent(plan.columns[c].name) : ", NULL";
    sql += " AS c" + std::to_string(c);
  }
  sql += " FROM " + plan.TargetQualified() + " t) x WHERE x.h = ANY($1::bigint[])";
  TS_ASSIGN_OR_RETURN(PgResult r, target.Query(sql, {HashArray(hashes)}));
  for (int row = 0; row < r.rows(); ++row) {
    TargetRow tr;
    for (size_t c = 0; c < plan.columns.size(); ++c) {
      tr.values.push_back(r.GetOptional(row, 1 + static_cast<int>(c)));
    }
    out[std::string(r.Get(row, 0))].push_back(std::move(tr));
  }
  return out;
}

StatusOr<std::optional<RowDifference>> CompareRow(Session& target, const TablePlan& plan,
                                                  const Key& key, const SourceRow* source,
                                                  const TargetRow* target_row) {
  RowDifference diff;
  diff.key = FormatKey(plan, key);
  if (!source && !target_row) return std::optional<RowDifference>();
  if (!target_row) {
    diff.kind = RowDifference::Kind::kMissing;
    diff.details = "in the source, not in the target";
    return std::optional<RowDifference>(diff);
  }
  if (!source) {
    diff.kind = RowDifference::Kind::kExtra;
    diff.details = "in the target, not in the source";
    return std::optional<RowDifference>(diff);
  }
  Tuple expected;
  TransformContext ctx;
  ctx.now = "1970-01-01 00:00:00+00";  // `now` columns are not compared
  Status applied = plan.transform.Apply(source->values, &expected, ctx);
  if (!applied.ok()) {
    // The pipeline dead-letters (or aborts on) such a row; a target row for it is a difference.
    diff.kind = RowDifference::Kind::kDifferent;
    diff.details = "the source row fails the transform (" + applied.message() +
                   ") but the target has a row";
    return std::optional<RowDifference>(diff);
  }
  std::vector<std::string> details;
  for (size_t j = 0; j < plan.columns.size(); ++j) {
    const ColumnPlan& c = plan.columns[j];
    if (c.kind == ColumnKind::kNow || !c.in_target || j >= expected.size()) continue;
    const std::optional<std::string>& actual = target_row->values[j];
    const Datum& exp = expected[j];
    if (c.kind == ColumnKind::kEncrypted) {
      // Compare plaintexts: a value re-encrypted under a rotated key is still right.
      const Datum& plain = source->values[c.source_index];
      bool differs;
      std::string why;
      if (plain.is_null() || !actual) {
        differs = plain.is_null() != !actual;
        why = "NULL on one side only";
      } else {
        auto decrypted = plan.transform.DecryptTarget(static_cast<int>(j), *actual);
        if (!decrypted.ok()) {
          differs = true;
          why = "cannot be decrypted (" + std::string(StatusCodeName(decrypted.status().code())) +
                ")";
        } else {
          differs = *decrypted != plain.text;
          why = "decrypted value differs from the source plaintext";
        }
      }
      if (differs) {
        diff.columns.push_back(c.name);
        details.push_back(c.name + ": " + why);  // never a value (invariant 9)
      }
      continue;
    }
    std::optional<std::string> want =
        exp.is_null() ? std::nullopt : std::optional<std::string>(exp.text);
    if (want == actual) continue;
    bool differs = true;
    if (want && actual) {
      // Same value, other spelling? Ask the target's input function ("1.50" vs "1.5").
      std::string type = c.target_type.empty() ? c.type : c.target_type;
      auto same = target.Query("SELECT ($1::" + type + ")::text = ($2::" + type + ")::text",
                               {want, actual});
      if (same.ok() && same->rows() == 1 && same->Get(0, 0) == "t") differs = false;
    }
    if (differs) {
      diff.columns.push_back(c.name);
      details.push_back(c.name + ": source " + Shown(want) + ", target " + Shown(actual));
    }
  }
  if (diff.columns.empty()) return std::optional<RowDifference>();
  diff.kind = RowDifference::Kind::kDifferent;
  for (size_t i = 0; i < details.size(); ++i) {
    if (i) diff.details += "; ";
    diff.details += details[i];
  }
  return std::optional<RowDifference>(diff);
}

}  // namespace tenantsync::validate::internal
