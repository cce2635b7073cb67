#include "validate/internal/relations.h"

#include <algorithm>
#include <set>
#include <utility>

#include "validate/internal/table_plan.h"

namespace tenantsync::validate::internal {

namespace {

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// "blog_posts" when `name` is the target name some configured table is renamed to.
std::string RenamedFrom(const Config& config, const std::string& name) {
  for (const auto& [source, table] : config.tables) {
    if (table.rename == name) return source;
  }
  return "";
}

class Resolver {
 public:
  Resolver(const Config& config, const std::map<std::string, TableInfo>& source_tables,
           const std::map<std::string, TableInfo>& target_tables, const std::string& target_schema,
           const Cipher* cipher)
      : config_(config),
        source_tables_(source_tables),
        target_tables_(target_tables),
        target_schema_(target_schema),
        cipher_(cipher) {}

  Status Error(const std::string& path, const std::string& what) const {
    std::string origin = config_.path.empty() ? "" : config_.path + ": ";
    return InvalidArgument(origin + path + ": " + what);
  }

  // The plan of a source table (cached), or an error naming `path` when it is not a table.
  StatusOr<const TablePlan*> Plan(const std::string& table, const std::string& path) {
    auto cached = plans_.find(table);
    if (cached != plans_.end()) return &cached->second;
    auto info = source_tables_.find(table);
    if (info == source_tables_.end()) {
      std::string hint = "; relations name source tables";
      if (std::string from = RenamedFrom(config_, table); !from.empty()) {
        hint += " (" + table + " is the target name of " + from + ")";
      }
      return Error(path, "'" + table + "' is not a table of " + config_.source.schema +
                             " in the source" + hint);
    }
    auto target = target_tables_.find(config_.TargetTable(table));
    TS_ASSIGN_OR_RETURN(TablePlan plan,
                        BuildTablePlan(config_, info->second,
                                       target == target_tables_.end() ? nullptr : &target->second,
                                       target_schema_, cipher_));
    return &plans_.emplace(table, std::move(plan)).first->second;
  }

  // The target column of source column `column` of `plan`'s table.
  StatusOr<std::string> TargetColumn(const TablePlan& plan, const std::string& column,
                                     const std::string& path, std::vector<std::string>* missing) {
    int si = plan.source.ColumnIndex(column);
    if (si < 0) {
      return Error(path, plan.source_table + " has no column '" + column +
                             "' in the source (its columns: " + ColumnNames(plan) +
                             "); relations name source columns");
    }
    int ti = plan.transform.TargetIndexOf(si);
    if (ti < 0) {
      return Error(path, plan.source_table + "." + column +
                             " is dropped by the mapping, so the target can not be checked on it; "
                             "remove it from the relation");
    }
    const ColumnPlan& c = plan.columns[ti];
    if (c.kind == ColumnKind::kEncrypted) {
      return Error(path, plan.source_table + "." + column +
                             " is encrypted in the target and ciphertexts of two columns never "
                             "match; remove it from the relation");
    }
    if (plan.target_exists && !c.in_target) {
      missing->push_back("no column " + plan.target_table + "." + c.name);
    }
    return c.name;
  }

  StatusOr<ResolvedRelation> Resolve(const std::string& child_name, const LogicalRelation& rel) {
    ResolvedRelation out;
    out.source_table = child_name;
    out.path = "tables." + child_name + ".relations." + rel.name;
    TS_ASSIGN_OR_RETURN(const TablePlan* child, Plan(child_name, "tables." + child_name));
    TS_ASSIGN_OR_RETURN(const TablePlan* parent, Plan(rel.references, out.path + ".references"));
    std::vector<std::string> ref_columns = rel.ref_columns;
    if (ref_columns.empty()) {
      ref_columns = parent->source.key;
      if (ref_columns.empty()) {
        return Error(out.path, rel.references +
                                   " has no primary key in the source; give ref_columns, e.g. "
                                   "ref_columns: [id]");
      }
      if (ref_columns.size() != rel.columns.size()) {
        return Error(out.path, "has " + std::to_string(rel.columns.size()) + " columns but " +
                                   rel.references + "'s primary key has " +
                                   std::to_string(ref_columns.size()) + " (" +
                                   JoinNames(ref_columns) + "); give ref_columns");
      }
    }
    out.fk.name = rel.name;
    out.fk.table = child->target_table;
    out.fk.ref_schema = target_schema_;
    out.fk.ref_table = parent->target_table;
    if (!child->target_exists) out.missing.push_back("no table " + child->target_table);
    if (!parent->target_exists) out.missing.push_back("no table " + parent->target_table);
    for (const std::string& c : rel.columns) {
      TS_ASSIGN_OR_RETURN(std::string t,
                          TargetColumn(*child, c, out.path + ".columns", &out.missing));
      out.fk.columns.push_back(std::move(t));
    }
    const std::string ref_path = out.path + (rel.ref_columns.empty() ? "" : ".ref_columns");
    for (const std::string& c : ref_columns) {
      TS_ASSIGN_OR_RETURN(std::string t, TargetColumn(*parent, c, ref_path, &out.missing));
      out.fk.ref_columns.push_back(std::move(t));
    }
    return out;
  }

 private:
  static std::string ColumnNames(const TablePlan& plan) {
    std::vector<std::string> names;
    for (const ColumnInfo& c : plan.source.columns) names.push_back(c.name);
    std::string all = JoinNames(names);
    if (all.size() > 120) all = all.substr(0, 120) + "...";
    return all;
  }

  const Config& config_;
  const std::map<std::string, TableInfo>& source_tables_;
  const std::map<std::string, TableInfo>& target_tables_;
  const std::string& target_schema_;
  const Cipher* cipher_;
  std::map<std::string, TablePlan> plans_;  // by source table name
};

}  // namespace

StatusOr<std::vector<ResolvedRelation>> ResolveRelations(
    const Config& config, const std::map<std::string, TableInfo>& source_tables,
    const std::map<std::string, TableInfo>& target_tables, const std::string& target_schema,
    const Cipher* cipher) {
  Resolver resolver(config, source_tables, target_tables, target_schema, cipher);
  std::vector<ResolvedRelation> out;
  for (const auto& [name, table] : config.tables) {
    if (table.skip) continue;
    for (const LogicalRelation& rel : table.relations) {
      TS_ASSIGN_OR_RETURN(ResolvedRelation r, resolver.Resolve(name, rel));
      out.push_back(std::move(r));
    }
  }
  return out;
}

const ForeignKeyInfo* SameConstraint(const ResolvedRelation& rel,
                                     const std::vector<ForeignKeyInfo>& fks) {
  using Pairs = std::set<std::pair<std::string, std::string>>;
  Pairs want;
  for (size_t i = 0; i < rel.fk.columns.size(); ++i) {
    want.emplace(rel.fk.columns[i], rel.fk.ref_columns[i]);
  }
  for (const ForeignKeyInfo& fk : fks) {
    if (fk.table != rel.fk.table || fk.ref_schema != rel.fk.ref_schema ||
        fk.ref_table != rel.fk.ref_table || fk.columns.size() != rel.fk.columns.size()) {
      continue;
    }
    Pairs have;
    for (size_t i = 0; i < fk.columns.size() && i < fk.ref_columns.size(); ++i) {
      have.emplace(fk.columns[i], fk.ref_columns[i]);
    }
    if (have == want) return &fk;
  }
  return nullptr;
}

}  // namespace tenantsync::validate::internal
