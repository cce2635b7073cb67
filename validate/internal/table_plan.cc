#include "validate/internal/table_plan.h"

#include <regex>

#include "core/pg.h"

namespace tenantsync::validate::internal {

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const ColumnRule* FindRule(const TableConfig* cfg, const std::string& key) {
  if (!cfg) return nullptr;
  auto it = cfg->columns.find(key);
  return it == cfg->columns.end() ? nullptr : &it->second;
}

}  // namespace

std::optional<std::string> CertainCastPredicate(const std::string& type,
                                                const std::string& column_text_sql) {
  std::string t = Lower(type);
  auto match = [&](const std::string& pattern) {
    return "(" + column_text_sql + ") ~ " + QuoteLiteral(pattern);
  };
  // Patterns every reading of the engine's rules (core/transform.h CastText) accepts with the
  // value PostgreSQL's input function gives; anything else is uncertain, never wrong.
  if (t == "smallint") return match(R"(^\s*[+-]?[0-9]{1,4}\s*$)");
  if (t == "integer") return match(R"(^\s*[+-]?[0-9]{1,9}\s*$)");
  if (t == "bigint") return match(R"(^\s*[+-]?[0-9]{1,18}\s*$)");
  if (t == "real" || t == "double precision") {
    return match(R"(^\s*[+-]?[0-9]{1,15}(\.[0-9]{1,15})?\s*$)");
  }
  if (t == "numeric") return match(R"(^\s*[+-]?[0-9]{1,30}(\.[0-9]{1,30})?\s*$)");
  static const std::regex kNumericTypmod(R"(numeric\((\d+)(,(\d+))?\))");
  std::smatch m;
  if (std::regex_match(t, m, kNumericTypmod)) {
    int p = std::stoi(m[1]);
    int s = m[3].matched ? std::stoi(m[3]) : 0;
    if (p - s < 1) return std::nullopt;
    return match(R"(^\s*[+-]?[0-9]{1,)" + std::to_string(p - s) + R"(}(\.[0-9]{1,30})?\s*$)");
  }
  if (t == "boolean") {
    return "(" + column_text_sql + ") ~* " +
           QuoteLiteral(R"(^\s*(t|f|true|false|yes|no|on|off|1|0)\s*$)");
  }
  if (t == "uuid") {
    return match(R"(^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$)");
  }
  if (t == "text") return "true";
  static const std::regex kVarchar(R"(character varying\((\d+)\))");
  if (std::regex_match(t, m, kVarchar)) {
    return "char_length(" + column_text_sql + ") <= " + std::string(m[1]);
  }
  return std::nullopt;
}

std::string TablePlan::SourceQualified() const {
  return QuoteQualified(source_schema, source_table);
}
std::string TablePlan::TargetQualified() const {
  return QuoteQualified(target_schema, target_table);
}

namespace {

// XOR of per-column hashes with distinct seeds: a value moved to another column or another row
// changes the row's hash, and the bucket sum of row hashes.
std::string RowHash(const std::vector<ColumnPlan>& columns, bool source) {
  std::string row;
  int seed = 0;
  for (const ColumnPlan& c : columns) {
    ++seed;
    const std::string& e = source ? c.source_hash_expr : c.target_hash_expr;
    if (e.empty()) continue;
    if (!row.empty()) row += " # ";
    row += HashExpression(c.hash_type, e, seed);
  }
  if (row.empty()) return "0::bigint";
  return "(" + row + ")";
}

}  // namespace

std::string HashExpression(const std::string& type, const std::string& expr, int seed) {
  std::string t = Lower(type);
  std::string s = std::to_string(seed);
  std::string fn;
  std::string arg = expr;
  if (t == "smallint") {
    fn = "hashint2extended";
  } else if (t == "integer") {
    fn = "hashint4extended";
  } else if (t == "bigint") {
    fn = "hashint8extended";
  } else if (t == "text") {
    fn = "hashtextextended";
  } else if (t.rfind("character varying", 0) == 0) {
    fn = "hashtextextended";
    arg = "(" + expr + ")::text";
  } else if (t.rfind("character", 0) == 0) {
    fn = "hashbpcharextended";
  } else if (t == "boolean") {
    fn = "hashint4extended";
    arg = "(" + expr + ")::integer";
  } else if (t == "uuid") {
    fn = "uuid_hash_extended";
  } else if (t.rfind("numeric", 0) == 0) {
    fn = "hash_numeric_extended";
  } else if (t == "double precision") {
    fn = "hashfloat8extended";
  } else if (t == "real") {
    fn = "hashfloat4extended";
  } else if (t == "timestamp with time zone" || t == "timestamp without time zone") {
    // timestamptz converts to timestamp at the pinned UTC: one to one.
    fn = "timestamp_hash_extended";
    if (t == "timestamp with time zone") arg = "(" + expr + ")::timestamp without time zone";
  } else if (t == "date") {
    fn = "hashint4extended";
    arg = "((" + expr + ") - DATE '2000-01-01')";
  } else if (t == "jsonb") {
    fn = "jsonb_hash_extended";
  } else if (t == "bytea") {
    // hashvarlenaextended takes `internal` and can not be called from SQL; the hex text is one
    // to one with the bytes.
    fn = "hashtextextended";
    arg = "encode(" + expr + ", 'hex')";
  } else if (t == "text[]" || t == "integer[]" || t == "bigint[]" || t == "uuid[]") {
    fn = "hash_array_extended";
  } else {
    fn = "hashtextextended";
    arg = "(" + expr + ")::text";
  }
  // NULL hashes to a seed-specific constant, so NULL vs a value still differs.
  return "coalesce(" + fn + "(" + arg + ", " + s + "), " + std::to_string(0x5bd1e995LL * seed) +
         ")";
}

std::string TablePlan::SourceRowHash() const { return RowHash(columns, true); }
std::string TablePlan::TargetRowHash() const { return RowHash(columns, false); }

std::string TablePlan::SourceKeyList() const {
  std::string out;
  for (int i : key_source) {
    if (!out.empty()) out += ", ";
    out += QuoteIdent(source.columns[i].name) + "::text";
  }
  return out;
}

std::string TablePlan::TargetKeyList() const {
  std::string out;
  for (const std::string& k : key_target) {
    if (!out.empty()) out += ", ";
    out += QuoteIdent(k) + "::text";
  }
  return out;
}

std::string TablePlan::SourcePosition() const {
  switch (mode) {
    case PositionMode::kIntegerKey:
      return QuoteIdent(source.columns[key_source[0]].name) + "::bigint";
    case PositionMode::kHashedKey: {
      std::string row;
      int seed = 100;
      for (int i : key_source) {
        if (!row.empty()) row += " # ";
        const ColumnPlan& c = columns[transform.TargetIndexOf(i)];
        row += HashExpression(c.hash_type, c.source_hash_expr, ++seed);
      }
      return "(" + row + ")";
    }
    case PositionMode::kNoKey:
      return SourceRowHash();
  }
  return "0";
}

std::string TablePlan::TargetPosition() const {
  switch (mode) {
    case PositionMode::kIntegerKey:
      return QuoteIdent(key_target[0]) + "::bigint";
    case PositionMode::kHashedKey: {
      std::string row;
      int seed = 100;
      for (int i : key_source) {
        if (!row.empty()) row += " # ";
        const ColumnPlan& c = columns[transform.TargetIndexOf(i)];
        row += HashExpression(c.hash_type, c.target_hash_expr, ++seed);
      }
      return "(" + row + ")";
    }
    case PositionMode::kNoKey:
      return TargetRowHash();
  }
  return "0";
}

StatusOr<TablePlan> BuildTablePlan(const Config& config, const TableInfo& source,
                                   const TableInfo* target, const std::string& target_schema,
                                   const Cipher* cipher) {
  TablePlan plan;
  plan.source_table = source.name;
  plan.target_table = config.TargetTable(source.name);
  plan.source_schema = source.schema;
  plan.target_schema = target_schema;
  plan.source = source;
  if (target) {
    plan.target = *target;
    plan.target_exists = true;
  }
  const TableConfig* cfg = config.FindTable(source.name);

  std::vector<SourceColumn> source_columns;
  for (const ColumnInfo& c : source.columns) {
    bool is_key = false;
    for (const std::string& k : source.key) is_key |= (k == c.name);
    source_columns.push_back({c.name, c.type, is_key});
  }
  auto transform = TableTransform::Build(source.name, cfg, source_columns, cipher);
  if (!transform.ok()) return transform.status().WithContext("validate " + source.name);
  plan.transform = std::move(transform).value();

  const auto& tcols = plan.transform.target_columns();
  for (size_t j = 0; j < tcols.size(); ++j) {
    const TargetColumn& tc = tcols[j];
    ColumnPlan c;
    c.name = tc.name;
    c.type = tc.type;
    c.source_index = tc.source_index;
    int ti = plan.target.ColumnIndex(tc.name);
    c.in_target = ti >= 0;
    if (ti >= 0) c.target_type = plan.target.columns[ti].type;
    const ColumnRule* rule =
        tc.source_index >= 0 ? FindRule(cfg, source.columns[tc.source_index].name)
                             : FindRule(cfg, tc.name);
    std::string tq = QuoteIdent(tc.name);
    // Types line up when the target column has the mapping's type; otherwise both sides hash
    // their text (the schema check reports the type difference).
    bool same_type = c.in_target && Lower(c.target_type) == Lower(tc.type);
    std::string target_expr = same_type ? tq : tq + "::text";
    if (tc.encrypted) {
      c.kind = ColumnKind::kEncrypted;
    } else if (tc.source_index < 0) {
      if (rule && rule->value && *rule->value == "now") {
        c.kind = ColumnKind::kNow;
      } else {
        c.kind = ColumnKind::kConstant;
        if (rule) c.value = rule->value;
        if (c.in_target) {
          c.source_hash_expr =
              c.value ? QuoteLiteral(*c.value) + "::" + tc.type : "NULL::" + tc.type;
          if (!same_type) c.source_hash_expr += "::text";
          c.target_hash_expr = target_expr;
          c.hash_type = same_type ? tc.type : "text";
        }
      }
    } else {
      std::string sq = QuoteIdent(source.columns[tc.source_index].name);
      const std::string& stype = source.columns[tc.source_index].type;
      bool cast = rule && !rule->type.empty() && Lower(tc.type) != Lower(stype);
      if (!cast) {
        c.kind = ColumnKind::kCopy;
        if (c.in_target) {
          bool copy_same = Lower(c.target_type) == Lower(stype);
          c.source_hash_expr = copy_same ? sq : sq + "::text";
          c.target_hash_expr = copy_same ? tq : tq + "::text";
          c.hash_type = copy_same ? stype : "text";
        }
      } else {
        c.kind = ColumnKind::kCast;
        c.on_error = rule->on_error;
        std::string text = sq + "::text";
        auto pred = CertainCastPredicate(tc.type, text);
        if (pred) c.certain_predicate = *pred;
        if (pred && c.in_target) {
          std::string fallback =
              c.on_error ? QuoteLiteral(*c.on_error) + "::" + tc.type : "NULL::" + tc.type;
          std::string cast_expr = Lower(tc.type) == "text" ? text : "btrim(" + text + ")::" + tc.type;
          c.source_hash_expr = "(CASE WHEN " + sq + " IS NULL THEN NULL::" + tc.type + " WHEN " +
                               *pred + " THEN " + cast_expr + " ELSE " + fallback + " END)";
          if (!same_type) c.source_hash_expr += "::text";
          c.target_hash_expr = target_expr;
          c.hash_type = same_type ? tc.type : "text";
        }
      }
    }
    if (c.source_hash_expr.empty() && c.in_target) plan.unhashed.push_back(c.name);
    plan.columns.push_back(std::move(c));
  }

  // The key: every key column must be copied as is, else the table is compared without a key.
  for (const std::string& k : source.key) {
    int si = source.ColumnIndex(k);
    int ti = si >= 0 ? plan.transform.TargetIndexOf(si) : -1;
    if (ti < 0 || plan.columns[ti].kind != ColumnKind::kCopy) {
      plan.key_source.clear();
      plan.key_target.clear();
      break;
    }
    plan.key_source.push_back(si);
    plan.key_target.push_back(plan.columns[ti].name);
  }
  if (plan.key_source.size() == 1) {
    std::string t = Lower(source.columns[plan.key_source[0]].type);
    plan.mode = (t == "smallint" || t == "integer" || t == "bigint") ? PositionMode::kIntegerKey
                                                                      : PositionMode::kHashedKey;
  } else {
    plan.mode = plan.key_source.empty() ? PositionMode::kNoKey : PositionMode::kHashedKey;
  }
  return plan;
}

}  // namespace tenantsync::validate::internal
