#include "snapshot/internal/plan.h"

#include <algorithm>
#include <cctype>

#include "core/pg.h"
#include "snapshot/internal/copy_binary.h"

namespace tenantsync::snapshot::internal {

namespace {

// How one source column appears in the target.
struct ColumnFate {
  std::string target_name;  // empty: dropped
  bool modified = false;    // type changed or encrypted
};

using ColumnMap = std::map<std::string, ColumnFate>;

ColumnMap MapColumns(const CatalogTable& t, const std::vector<SourceColumn>& source_columns,
                     const TableTransform* transform) {
  ColumnMap m;
  for (const auto& c : t.columns) m[c.name] = {c.name, false};  // generated: kept as is
  if (!transform) return m;
  for (size_t i = 0; i < source_columns.size(); ++i) {
    int ti = transform->TargetIndexOf(static_cast<int>(i));
    if (ti < 0) {
      m[source_columns[i].name] = {"", false};
      continue;
    }
    const TargetColumn& tc = transform->target_columns()[ti];
    m[source_columns[i].name] = {tc.name, tc.encrypted || tc.type != source_columns[i].type};
  }
  return m;
}

bool IsIdentChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || c == '"' || u >= 0x80;
}

// Splits "schema.name" (either part possibly double-quoted) and returns the unquoted name.
std::string RelName(const std::string& qualified) {
  size_t dot = std::string::npos;
  bool in_quotes = false;
  for (size_t i = 0; i < qualified.size(); ++i) {
    if (qualified[i] == '"') in_quotes = !in_quotes;
    if (qualified[i] == '.' && !in_quotes) {
      dot = i;
      break;
    }
  }
  std::string name = dot == std::string::npos ? qualified : qualified.substr(dot + 1);
  if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
    std::string out;
    for (size_t i = 1; i + 1 < name.size(); ++i) {
      out += name[i];
      if (name[i] == '"') ++i;  // "" → "
    }
    return out;
  }
  return name;
}

const char* FkAction(char c) {
  switch (c) {
    case 'r': return "RESTRICT";
    case 'c': return "CASCADE";
    case 'n': return "SET NULL";
    case 'd': return "SET DEFAULT";
    default: return "NO ACTION";
  }
}

std::string JoinQuoted(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ", ";
    out += QuoteIdent(n);
  }
  return out;
}

// Maps constraint/index columns; false when one of them is dropped. `renamed` / `modified` tell
// whether any of them changes name or value.
bool MapNames(const ColumnMap& m, const std::vector<std::string>& in, std::vector<std::string>* out,
              bool* renamed, bool* modified) {
  for (const auto& n : in) {
    auto it = m.find(n);
    if (it == m.end() || it->second.target_name.empty()) return false;
    if (it->second.target_name != n) *renamed = true;
    if (it->second.modified) *modified = true;
    out->push_back(it->second.target_name);
  }
  return true;
}

std::string ReplaceFirst(std::string s, const std::string& from, const std::string& to) {
  size_t pos = s.find(from);
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

}  // namespace

std::string RepointExpr(const std::string& expr, const std::string& source_schema,
                        const std::string& target_schema) {
  const std::string from = QuoteIdentIfNeeded(source_schema) + ".";
  const std::string to = QuoteIdentIfNeeded(target_schema) + ".";
  std::string out;
  size_t i = 0;
  while (i < expr.size()) {
    if (expr.compare(i, from.size(), from) == 0 && (i == 0 || !IsIdentChar(expr[i - 1]))) {
      out += to;
      i += from.size();
    } else {
      out += expr[i++];
    }
  }
  return out;
}

std::unique_ptr<PlanSet> BuildPlan(const Config& config, Catalog source, Catalog target,
                                   bool target_schema_exists, const Cipher* cipher) {
  auto plan = std::make_unique<PlanSet>();
  plan->source_catalog = std::move(source);
  plan->target_catalog = std::move(target);
  plan->target_schema_exists = target_schema_exists;
  const Catalog& src = plan->source_catalog;
  const std::string& sschema = src.schema;
  const std::string& tschema = config.target.schema;
  const std::string tq = QuoteIdent(tschema);

  // Configured tables must exist (a skipped one may be gone already).
  for (const auto& [name, tc] : config.tables) {
    if (!tc.skip && !src.FindTable(name)) {
      plan->errors.push_back("table " + sschema + "." + name +
                             " is configured under tables: but does not exist in the source; " +
                             "fix the name or remove it from the config");
    }
  }

  // Only when missing: CREATE SCHEMA checks the database's CREATE privilege before IF NOT EXISTS,
  // and the least-privilege target role owns a schema the DBA created but may not create one.
  if (!target_schema_exists) plan->pre_data.push_back("CREATE SCHEMA IF NOT EXISTS " + tq);
  for (const auto& e : src.enums) {
    std::string labels;
    for (const auto& l : e.labels) labels += (labels.empty() ? "" : ", ") + QuoteLiteral(l);
    plan->pre_data.push_back("DO $ts$ BEGIN CREATE TYPE " + QuoteQualified(tschema, e.name) +
                             " AS ENUM (" + labels +
                             "); EXCEPTION WHEN duplicate_object THEN NULL; END $ts$");
  }

  // Pass 1: transforms and column maps of every mapped table.
  std::map<std::string, ColumnMap> maps;
  std::set<std::string> mapped;
  for (const auto& t : src.tables) {
    const TableConfig* tc = config.FindTable(t.name);
    if (tc && tc->skip) continue;
    TablePlan tp;
    tp.source = &t;
    tp.target_table = config.TargetTable(t.name);
    std::vector<std::string> keys = t.KeyColumns();
    for (const auto& c : t.columns) {
      if (c.generated) continue;
      bool is_key = std::find(keys.begin(), keys.end(), c.name) != keys.end();
      if (is_key) tp.key_source_indexes.push_back(static_cast<int>(tp.source_columns.size()));
      tp.source_columns.push_back({c.name, c.type, is_key});
    }
    auto tr = TableTransform::Build(t.name, tc, tp.source_columns, cipher);
    if (!tr.ok()) {
      plan->errors.push_back(tr.status().message());
      continue;
    }
    tp.transform = std::make_unique<TableTransform>(std::move(tr).value());
    maps[t.name] = MapColumns(t, tp.source_columns, tp.transform.get());
    mapped.insert(t.name);
    plan->tables.emplace(t.name, std::move(tp));
  }
  FkOrder order = ComputeFkOrder(src, mapped);
  plan->order = order.order;
  plan->parents = order.parents;

  // Pass 2: copy lists and DDL.
  for (auto& [name, tp] : plan->tables) {
    const CatalogTable& t = *tp.source;
    const TableTransform& tr = *tp.transform;
    const ColumnMap& cmap = maps[name];
    const std::string tgt = QuoteQualified(tschema, tp.target_table);
    const CatalogTable* existing = plan->target_catalog.FindTable(tp.target_table);
    tp.target_exists = existing != nullptr;
    if (!tp.target_exists && !config.target.create_tables) {
      plan->errors.push_back("target table " + tschema + "." + tp.target_table +
                             " does not exist and target.create_tables is false; create it or " +
                             "set target.create_tables: true");
    }

    // Binary pass-through when no value changes.
    bool binary = true;
    for (const auto& tc : tr.target_columns()) {
      if (tc.source_index < 0 || tc.encrypted ||
          tc.type != tp.source_columns[tc.source_index].type) {
        binary = false;
        break;
      }
      if (existing) {
        const CatalogColumn* ec = existing->FindColumn(tc.name);
        if (!ec || RepointType(tc.type, sschema, tschema) != ec->type) binary = false;
      }
    }
    tp.binary = binary;
    tp.target_column_list.clear();
    tp.source_select_list.clear();
    tp.trim_padding.clear();
    for (const auto& tc : tr.target_columns()) {
      if (!tp.target_column_list.empty()) tp.target_column_list += ", ";
      tp.target_column_list += QuoteIdent(tc.name);
      if (binary) {
        if (!tp.source_select_list.empty()) tp.source_select_list += ", ";
        tp.source_select_list += QuoteIdent(tp.source_columns[tc.source_index].name);
        // Same type on both sides (checked above), so the target's character(n) pads it back.
        tp.trim_padding.push_back(IsPaddedCharType(tc.type));
      }
    }
    if (std::find(tp.trim_padding.begin(), tp.trim_padding.end(), true) ==
        tp.trim_padding.end()) {
      tp.trim_padding.clear();
    }
    if (!binary) {
      for (const auto& sc : tp.source_columns) {
        if (!tp.source_select_list.empty()) tp.source_select_list += ", ";
        tp.source_select_list += QuoteIdent(sc.name);
      }
    }

    // Notes on transforms.
    for (size_t i = 0; i < tp.source_columns.size(); ++i) {
      const auto& sc = tp.source_columns[i];
      const ColumnFate& f = cmap.at(sc.name);
      if (f.target_name.empty()) {
        tp.notes.push_back("drop " + sc.name);
        continue;
      }
      const TargetColumn& tc = tr.target_columns()[tr.TargetIndexOf(static_cast<int>(i))];
      if (f.target_name != sc.name) tp.notes.push_back("rename " + sc.name + " -> " + tc.name);
      if (tc.encrypted) {
        tp.notes.push_back("encrypt " + sc.name + " (AES-256-GCM, stored as text)");
      } else if (tc.type != sc.type) {
        tp.notes.push_back("cast " + sc.name + " " + sc.type + " -> " + tc.type);
      }
    }
    for (const auto& tc : tr.target_columns()) {
      if (tc.source_index < 0) tp.notes.push_back("add " + tc.name + " " + tc.type);
    }
    if (tp.target_table != name) tp.notes.push_back("table renamed to " + tp.target_table);
    if (tp.target_exists) {
      tp.notes.push_back("target table exists: loaded as is, in foreign-key order");
      continue;
    }
    if (!config.target.create_tables) continue;

    // Pre-data: sequences and CREATE TABLE.
    std::vector<std::string> cols;
    std::vector<std::string> owned;
    for (const auto& tc : tr.target_columns()) {
      std::string line = QuoteIdent(tc.name) + " ";
      if (tc.source_index < 0) {
        cols.push_back(line + RepointType(tc.type, sschema, tschema));
        continue;
      }
      const CatalogColumn& sc = *t.FindColumn(tp.source_columns[tc.source_index].name);
      bool modified = tc.encrypted || tc.type != sc.type;
      line += tc.encrypted ? std::string("text") : RepointType(tc.type, sschema, tschema);
      if (!modified) {
        if (sc.identity) {
          line += sc.identity == 'a' ? " GENERATED ALWAYS AS IDENTITY"
                                     : " GENERATED BY DEFAULT AS IDENTITY";
          tp.sequences.push_back({tc.name, sc.sequence});
        } else if (!sc.sequence.empty() && sc.default_expr &&
                   sc.default_expr->find("nextval(") != std::string::npos) {
          std::string seq = QuoteQualified(tschema, RelName(sc.sequence));
          tp.pre_data.push_back("CREATE SEQUENCE IF NOT EXISTS " + seq);
          line += " DEFAULT nextval(" + QuoteLiteral(seq) + "::regclass)";
          owned.push_back("ALTER SEQUENCE " + seq + " OWNED BY " + tgt + "." + QuoteIdent(tc.name));
          tp.sequences.push_back({tc.name, sc.sequence});
        } else if (sc.default_expr) {
          line += " DEFAULT " + RepointExpr(*sc.default_expr, sschema, tschema);
        }
      } else if (sc.default_expr) {
        tp.notes.push_back("default of " + sc.name + " not carried over (value transformed)");
      }
      if (sc.not_null) line += " NOT NULL";
      cols.push_back(line);
    }
    for (const auto& sc : t.columns) {
      if (!sc.generated || !sc.default_expr) continue;
      cols.push_back(QuoteIdent(sc.name) + " " + RepointType(sc.type, sschema, tschema) +
                     " GENERATED ALWAYS AS (" + RepointExpr(*sc.default_expr, sschema, tschema) +
                     ") STORED");
    }
    std::string create = "CREATE TABLE IF NOT EXISTS " + tgt + " (\n";
    for (size_t i = 0; i < cols.size(); ++i) create += "  " + cols[i] + (i + 1 < cols.size() ? ",\n" : "\n");
    create += ")";
    tp.pre_data.push_back(create);
    for (auto& o : owned) tp.pre_data.push_back(std::move(o));
    if (t.replica_identity == 'f') {
      tp.pre_data.push_back("ALTER TABLE " + tgt + " REPLICA IDENTITY FULL");
    }

    // Post-data: keys and checks.
    for (const auto& c : t.constraints) {
      if (c.kind == 'f') continue;
      std::vector<std::string> names;
      bool renamed = false, modified = false;
      if (!MapNames(cmap, c.columns, &names, &renamed, &modified)) {
        tp.notes.push_back("constraint " + c.name + " not created: it uses a dropped column");
        continue;
      }
      std::string body;
      if (c.kind == 'c') {
        if (renamed || modified) {
          tp.notes.push_back("check " + c.name + " not created: it uses a transformed column");
          continue;
        }
        body = RepointExpr(c.definition, sschema, tschema);
      } else if (renamed) {
        body = std::string(c.kind == 'p' ? "PRIMARY KEY (" : "UNIQUE (") + JoinQuoted(names) + ")";
        if (c.deferrable) body += c.deferred ? " DEFERRABLE INITIALLY DEFERRED" : " DEFERRABLE";
      } else {
        body = c.definition;
      }
      tp.post_data.push_back({PostDataItem::Kind::kConstraint, c.name,
                              "ALTER TABLE " + tgt + " ADD CONSTRAINT " + QuoteIdent(c.name) + " " +
                                  body});
    }
    // Replica identity by index, re-pointed after the index exists.
    std::string replident_index;
    const std::string src_on = " ON " + QuoteIdentIfNeeded(sschema) + "." +
                               QuoteIdentIfNeeded(name) + " ";
    for (const auto& i : t.indexes) {
      if (i.backs_constraint) continue;
      bool renamed = false, modified = false;
      std::vector<std::string> names;
      bool expr = i.has_expressions || i.has_predicate;
      bool table_changed = std::any_of(cmap.begin(), cmap.end(), [](const auto& kv) {
        return kv.second.target_name != kv.first || kv.second.modified;
      });
      std::vector<std::string> plain;
      for (const auto& c : i.columns) {
        if (!c.empty()) plain.push_back(c);
      }
      if (!MapNames(cmap, plain, &names, &renamed, &modified) || (expr && table_changed)) {
        tp.notes.push_back("index " + i.name + " not created: it uses a dropped or transformed " +
                           "column");
        continue;
      }
      std::string sql;
      if (!renamed && !modified) {
        sql = ReplaceFirst(i.definition, src_on, " ON " + tgt + " ");
        sql = ReplaceFirst(sql, "CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ");
        sql = ReplaceFirst(sql, "CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ");
      } else {
        sql = std::string("CREATE ") + (i.unique ? "UNIQUE " : "") + "INDEX IF NOT EXISTS " +
              QuoteIdent(i.name) + " ON " + tgt + " USING " + i.method + " (" + JoinQuoted(names) +
              ")";
      }
      tp.post_data.push_back({PostDataItem::Kind::kIndex, i.name, sql});
      if (i.replica_identity) replident_index = i.name;
    }
    if (!replident_index.empty()) {
      tp.post_data.push_back({PostDataItem::Kind::kIndex, "",
                              "ALTER TABLE " + tgt + " REPLICA IDENTITY USING INDEX " +
                                  QuoteIdent(replident_index)});
    }

    // Foreign keys, re-pointed into the tenant schema.
    for (const auto& c : t.constraints) {
      if (c.kind != 'f') continue;
      if (c.ref_schema != sschema || !maps.count(c.ref_table)) {
        tp.notes.push_back("foreign key " + c.name + " not created: " + c.ref_schema + "." +
                           c.ref_table + " is not migrated");
        continue;
      }
      std::vector<std::string> names, ref_names;
      bool renamed = false, modified = false;
      if (!MapNames(cmap, c.columns, &names, &renamed, &modified) ||
          !MapNames(maps[c.ref_table], c.ref_columns, &ref_names, &renamed, &modified)) {
        tp.notes.push_back("foreign key " + c.name + " not created: it uses a dropped column");
        continue;
      }
      std::string sql = "ALTER TABLE " + tgt + " ADD CONSTRAINT " + QuoteIdent(c.name) +
                        " FOREIGN KEY (" + JoinQuoted(names) + ") REFERENCES " +
                        QuoteQualified(tschema, config.TargetTable(c.ref_table)) + " (" +
                        JoinQuoted(ref_names) + ")";
      if (c.match == 'f') sql += " MATCH FULL";
      sql += std::string(" ON UPDATE ") + FkAction(c.on_update) + " ON DELETE " +
             FkAction(c.on_delete);
      if (c.deferrable) sql += c.deferred ? " DEFERRABLE INITIALLY DEFERRED" : " DEFERRABLE";
      tp.foreign_keys.push_back({PostDataItem::Kind::kForeignKey, c.name, sql});
    }
  }
  return plan;
}

StatusOr<std::unique_ptr<PlanSet>> LoadPlan(const Config& config, PgConn& source, PgConn* target,
                                            const Cipher* cipher) {
  TS_ASSIGN_OR_RETURN(Catalog src, ReadCatalog(source, config.source.schema));
  Catalog dst;
  dst.schema = config.target.schema;
  bool exists = false;
  if (target) {
    auto t = ReadCatalog(*target, config.target.schema);
    if (t.ok()) {
      dst = std::move(t).value();
      exists = true;
    } else if (t.status().code() != StatusCode::kNotFound) {
      return t.status().WithContext("reading the target catalog");
    }
  }
  return BuildPlan(config, std::move(src), std::move(dst), exists, cipher);
}

StatusOr<std::unique_ptr<Cipher>> LoadCipher(const Config& config) {
  if (!config.NeedsEncryptionKey()) return std::unique_ptr<Cipher>();
  if (config.encryption.key.empty() && config.encryption.key_file.empty()) {
    return InvalidArgument(
        "encryption.key is not set but the config encrypts a column or a tenant secret; set "
        "encryption.key (or key_file) to the base64 of 32 random bytes: openssl rand -base64 32");
  }
  auto c = config.encryption.key.empty() ? Cipher::FromKeyFile(config.encryption.key_file)
                                         : Cipher::FromBase64Key(config.encryption.key);
  if (!c.ok()) return c.status().WithContext("encryption");
  return std::make_unique<Cipher>(std::move(c).value());
}

std::string FormatPlan(const Config& config, const PlanSet& plan) {
  std::string out;
  out += "Plan for pipeline " + config.pipeline + ": " + plan.source_catalog.schema + " -> " +
         config.target.schema + " (" + std::to_string(plan.order.size()) + " tables)\n";
  for (const auto& e : plan.errors) out += "ERROR: " + e + "\n";
  out += "\nTables in foreign-key order:\n";
  for (const auto& name : plan.order) {
    const TablePlan& tp = plan.tables.at(name);
    out += "  " + name;
    if (tp.target_table != name) out += " -> " + tp.target_table;
    out += ": ~" + std::to_string(static_cast<int64_t>(tp.source->estimated_rows)) + " rows, " +
           std::to_string(tp.source->bytes / (1 << 20)) + " MB, " +
           (tp.binary ? "binary pass-through" : "text + transform");
    if (!tp.trim_padding.empty()) out += " (character(n) sent without its padding)";
    const auto& ps = plan.parents.at(name);
    if (!ps.empty()) {
      out += ", after";
      for (const auto& p : ps) out += " " + p;
    }
    out += "\n";
    for (const auto& n : tp.notes) out += "      " + n + "\n";
  }
  out += "\nDDL before the copy:\n";
  for (const auto& s : plan.pre_data) out += "  " + s + ";\n";
  for (const auto& name : plan.order) {
    for (const auto& s : plan.tables.at(name).pre_data) out += "  " + s + ";\n";
  }
  out += "\nDDL after the copy:\n";
  for (const auto& name : plan.order) {
    for (const auto& p : plan.tables.at(name).post_data) out += "  " + p.sql + ";\n";
  }
  for (const auto& name : plan.order) {
    for (const auto& p : plan.tables.at(name).foreign_keys) out += "  " + p.sql + ";\n";
  }
  return out;
}

}  // namespace tenantsync::snapshot::internal
