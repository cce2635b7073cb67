#include "core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "core/crypto.h"
#include "core/transform.h"

namespace tenantsync {
namespace {

bool IsSlug(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// yaml-cpp throws on Type() of a missing (zombie) node, so check IsDefined first.
bool IsMapping(const YAML::Node& n) { return n.IsDefined() && n.IsMap(); }

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

// A short, printable rendering of a raw YAML scalar for "got '...'" in messages. Only used for
// values of non-secret keys (booleans, numbers, enums), and only the text as written in the file,
// before ${VAR} expansion, so an expanded secret never reaches a message.
std::string Quote(std::string_view raw) {
  std::string s(raw.substr(0, 40));
  if (raw.size() > 40) s += "...";
  return "'" + s + "'";
}

// Messages are one line (DESIGN.md invariant 10): control characters that came from the file (a
// quoted key with a newline, yaml-cpp quoting a bad escape) are shown as '?'.
std::string OneLine(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return s;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A PostgreSQL memory setting: digits, optionally a unit (kB, MB, GB, TB; the server checks
// the range). Empty is accepted (the server's own setting).
bool IsMemorySize(std::string_view v) {
  if (v.empty()) return true;
  size_t digits = 0;
  while (digits < v.size() && std::isdigit(static_cast<unsigned char>(v[digits]))) ++digits;
  if (digits == 0) return false;
  std::string_view unit = v.substr(digits);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  return unit.empty() || unit == "kB" || unit == "MB" || unit == "GB" || unit == "TB";
}

// Walks the YAML tree, keeping the origin (file name) for messages. Every error is one line:
// "ORIGIN: key.path: what is wrong; how to fix".
class Parser {
 public:
  explicit Parser(std::string origin) : origin_(std::move(origin)) {}

  Status Error(const std::string& path, const std::string& what) const {
    return InvalidArgument(OneLine(origin_ + ": " + (path.empty() ? "" : path + ": ") + what));
  }

  // The node must be a mapping (or null/absent, meaning empty) whose keys are all in `allowed`.
  Status CheckMap(const YAML::Node& node, const std::string& path,
                  const std::vector<std::string>& allowed) const {
    if (!node.IsDefined() || node.IsNull()) return Status::Ok();
    if (!node.IsMap()) {
      return Error(path, "expected a mapping of keys (" + JoinList(allowed) + ")");
    }
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar()) return Error(path, "keys must be plain names");
      const std::string& key = it->first.Scalar();
      if (!seen.insert(key).second) {
        return Error(Join(path, key), "key appears twice; keep one");
      }
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        return Error(path, "unknown key '" + key + "'; expected one of " + JoinList(allowed));
      }
    }
    return Status::Ok();
  }

  // Keys of a mapping whose keys are names chosen by the user (tables, columns, secrets).
  StatusOr<std::vector<std::string>> Keys(const YAML::Node& node, const std::string& path,
                                          const std::string& what) const {
    std::vector<std::string> keys;
    if (!node.IsDefined() || node.IsNull()) return keys;
    if (!node.IsMap()) return Error(path, "expected a mapping of " + what);
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar() || it->first.Scalar().empty()) {
        return Error(path, "every " + what + " needs a plain, non-empty name");
      }
      if (!seen.insert(it->first.Scalar()).second) {
        return Error(Join(path, it->first.Scalar()), "appears twice; keep one");
      }
      keys.push_back(it->first.Scalar());
    }
    return keys;
  }

  // ${VAR} and ${VAR:-default} from the environment; $${ is a literal ${.
  StatusOr<std::string> Expand(std::string_view in, const std::string& path) const {
    std::string out;
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i] != '$') {
        out += in[i];
        continue;
      }
      if (in.substr(i, 3) == "$${") {
        out += "${";
        i += 2;
        continue;
      }
      if (in.substr(i, 2) != "${") {
        out += '$';
        continue;
      }
      size_t close = in.find('}', i + 2);
      if (close == std::string_view::npos) {
        return Error(path, "'${' without a closing '}'; write ${NAME}, or $${ for a literal ${");
      }
      std::string_view inner = in.substr(i + 2, close - i - 2);
      std::optional<std::string_view> fallback;
      if (size_t d = inner.find(":-"); d != std::string_view::npos) {
        fallback = inner.substr(d + 2);
        inner = inner.substr(0, d);
      }
      bool valid = !inner.empty() && !std::isdigit(static_cast<unsigned char>(inner[0]));
      for (char c : inner) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) valid = false;
      }
      if (!valid) {
        return Error(path, "'${" + std::string(inner.substr(0, 40)) +
                               "}' is not a variable name; use letters, digits and _");
      }
      const char* value = std::getenv(std::string(inner).c_str());
      if (value != nullptr) {
        out += value;
      } else if (fallback) {
        out += *fallback;
      } else {
        return Error(path, "environment variable " + std::string(inner) +
                               " is not set; export it or write the value in the file");
      }
      i = close;
    }
    return out;
  }

  // A scalar, expanded. Absent: returns nullopt. Null or a collection: error.
  StatusOr<std::optional<std::string>> Scalar(const YAML::Node& map, const std::string& key,
                                              const std::string& path) const {
    const YAML::Node n = map[key];
    std::string p = Join(path, key);
    if (!n.IsDefined()) return std::optional<std::string>();
    if (n.IsNull()) return Error(p, "has no value; give one or remove the key");
    if (!n.IsScalar()) return Error(p, "expected a single value, not a list or mapping");
    TS_ASSIGN_OR_RETURN(std::string v, Expand(n.Scalar(), p));
    return std::optional<std::string>(std::move(v));
  }

  Status String(const YAML::Node& map, const std::string& key, const std::string& path,
                std::string* out) const {
    TS_ASSIGN_OR_RETURN(auto v, Scalar(map, key, path));
    if (v) *out = std::move(*v);
    return Status::Ok();
  }

  Status Bool(const YAML::Node& map, const std::string& key, const std::string& path,
              bool* out) const {
    TS_ASSIGN_OR_RETURN(auto v, Scalar(map, key, path));
    if (!v) return Status::Ok();
    std::string s = ToLower(*v);
    if (s == "true" || s == "yes" || s == "on") {
      *out = true;
    } else if (s == "false" || s == "no" || s == "off") {
      *out = false;
    } else {
      return Error(Join(path, key), "expected true or false, got " + Quote(map[key].Scalar()));
    }
    return Status::Ok();
  }

  template <typename Int>
  Status Integer(const YAML::Node& map, const std::string& key, const std::string& path, Int min,
                 Int max, Int* out) const {
    TS_ASSIGN_OR_RETURN(auto v, Scalar(map, key, path));
    if (!v) return Status::Ok();
    Int value{};
    const char* b = v->data();
    const char* e = b + v->size();
    if (b != e && *b == '+') ++b;
    auto [ptr, ec] = std::from_chars(b, e, value);
    if (v->empty() || ec != std::errc() || ptr != e) {
      return Error(Join(path, key), "expected a whole number, got " + Quote(map[key].Scalar()));
    }
    if (value < min || value > max) {
      return Error(Join(path, key), "must be between " + std::to_string(min) + " and " +
                                        std::to_string(max) + ", got " + Quote(map[key].Scalar()));
    }
    *out = value;
    return Status::Ok();
  }

  Status Number(const YAML::Node& map, const std::string& key, const std::string& path, double min,
                double* out) const {
    TS_ASSIGN_OR_RETURN(auto v, Scalar(map, key, path));
    if (!v) return Status::Ok();
    double value = 0;
    const char* b = v->data();
    const char* e = b + v->size();
    if (b != e && *b == '+') ++b;
    auto [ptr, ec] = std::from_chars(b, e, value);
    if (v->empty() || ec != std::errc() || ptr != e || !std::isfinite(value)) {
      return Error(Join(path, key), "expected a number, got " + Quote(map[key].Scalar()));
    }
    if (value < min) {
      return Error(Join(path, key),
                   "must be at least " + FormatNumber(min) + ", got " + Quote(map[key].Scalar()));
    }
    *out = value;
    return Status::Ok();
  }

  // One of `choices`; returns its index.
  Status Choice(const YAML::Node& map, const std::string& key, const std::string& path,
                const std::vector<std::string>& choices, int* index) const {
    TS_ASSIGN_OR_RETURN(auto v, Scalar(map, key, path));
    if (!v) return Status::Ok();
    for (size_t i = 0; i < choices.size(); ++i) {
      if (*v == choices[i]) {
        *index = static_cast<int>(i);
        return Status::Ok();
      }
    }
    return Error(Join(path, key),
                 "expected one of " + JoinList(choices) + ", got " + Quote(map[key].Scalar()));
  }

  static std::string JoinList(const std::vector<std::string>& items) {
    std::string s;
    for (const auto& i : items) s += (s.empty() ? "" : ", ") + i;
    return s;
  }

 private:
  static std::string FormatNumber(double d) {
    std::ostringstream o;
    o << d;
    return o.str();
  }

  std::string origin_;
};

Status ParseErrorPolicy(const Parser& p, const YAML::Node& map, const std::string& path,
                        ErrorPolicy* out) {
  int i = *out == ErrorPolicy::kDeadLetter ? 0 : 1;
  TS_RETURN_IF_ERROR(p.Choice(map, "on_error", path, {"dead_letter", "abort"}, &i));
  *out = i == 0 ? ErrorPolicy::kDeadLetter : ErrorPolicy::kAbort;
  return Status::Ok();
}

Status ParseColumn(const Parser& p, const YAML::Node& node, const std::string& path,
                   ColumnRule* rule) {
  TS_RETURN_IF_ERROR(
      p.CheckMap(node, path, {"type", "on_error", "value", "rename", "drop", "encrypt"}));
  if (!node.IsDefined() || node.IsNull()) {
    return p.Error(path,
                   "has no rule; give one of type, value, rename, drop, encrypt or remove it");
  }
  std::string type;
  TS_RETURN_IF_ERROR(p.String(node, "type", path, &type));
  TS_ASSIGN_OR_RETURN(rule->on_error, p.Scalar(node, "on_error", path));
  TS_ASSIGN_OR_RETURN(rule->value, p.Scalar(node, "value", path));
  TS_RETURN_IF_ERROR(p.String(node, "rename", path, &rule->rename));
  TS_RETURN_IF_ERROR(p.Bool(node, "drop", path, &rule->drop));
  TS_RETURN_IF_ERROR(p.Bool(node, "encrypt", path, &rule->encrypt));

  if (node["rename"].IsDefined() && rule->rename.empty()) {
    return p.Error(Join(path, "rename"), "is empty; give the target column name");
  }
  if (!type.empty()) {
    StatusOr<std::string> normal = NormalizeCastType(type);
    if (!normal.ok()) return p.Error(Join(path, "type"), normal.status().message());
    rule->type = *normal;
  } else if (node["type"].IsDefined()) {
    return p.Error(Join(path, "type"), "is empty; give a type such as bigint or remove the key");
  }

  if (rule->value) {
    std::vector<std::string> bad;
    if (!rule->rename.empty()) bad.push_back("rename");
    if (rule->drop) bad.push_back("drop");
    if (rule->encrypt) bad.push_back("encrypt");
    if (rule->on_error) bad.push_back("on_error");
    if (!bad.empty()) {
      return p.Error(path, "value adds a new column and can not be combined with " +
                               Parser::JoinList(bad) + "; remove " + Parser::JoinList(bad));
    }
    if (*rule->value == "now") {
      if (rule->type.empty()) rule->type = "timestamp with time zone";
      if (rule->type != "timestamp with time zone" && rule->type != "timestamp without time zone" &&
          rule->type != "date" && rule->type != "text") {
        return p.Error(Join(path, "value"),
                       "now needs type timestamptz, timestamp, date or text, "
                       "not " +
                           rule->type);
      }
    } else {
      if (rule->type.empty()) rule->type = "text";
      StatusOr<std::string> cast = CastText(rule->type, *rule->value);
      if (!cast.ok()) {
        return p.Error(Join(path, "value"), "is not a valid " + rule->type + " (" +
                                                cast.status().message() + "); fix the constant");
      }
      rule->value = *cast;
    }
    return Status::Ok();
  }
  if (rule->drop) {
    std::vector<std::string> bad;
    if (!rule->type.empty()) bad.push_back("type");
    if (!rule->rename.empty()) bad.push_back("rename");
    if (rule->encrypt) bad.push_back("encrypt");
    if (rule->on_error) bad.push_back("on_error");
    if (!bad.empty()) {
      return p.Error(path, "drop leaves the column out and can not be combined with " +
                               Parser::JoinList(bad) + "; remove " + Parser::JoinList(bad));
    }
    return Status::Ok();
  }
  if (rule->encrypt && (!rule->type.empty() || rule->on_error)) {
    return p.Error(path, "an encrypted column is stored as text; remove type and on_error");
  }
  if (rule->on_error) {
    if (rule->type.empty()) {
      return p.Error(Join(path, "on_error"), "applies to a cast; add type: or remove on_error");
    }
    StatusOr<std::string> cast = CastText(rule->type, *rule->on_error);
    if (!cast.ok()) {
      return p.Error(Join(path, "on_error"), "is not a valid " + rule->type + " (" +
                                                 cast.status().message() +
                                                 "); give a default the type accepts");
    }
    rule->on_error = *cast;
  }
  return Status::Ok();
}

// A required list of distinct, non-empty column names (each ${VAR}-expanded).
StatusOr<std::vector<std::string>> ColumnList(const Parser& p, const YAML::Node& map,
                                              const std::string& key, const std::string& path,
                                              const std::string& example) {
  const std::string lp = Join(path, key);
  const YAML::Node list = map[key];
  if (!list.IsDefined() || list.IsNull()) {
    return p.Error(lp, "is required; list column names, e.g. " + example);
  }
  if (!list.IsSequence() || list.size() == 0) {
    return p.Error(lp, "expected a non-empty list of column names, e.g. " + example);
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].IsScalar() || list[i].Scalar().empty()) {
      return p.Error(lp, "expected a non-empty list of column names, e.g. " + example);
    }
    TS_ASSIGN_OR_RETURN(std::string col, p.Expand(list[i].Scalar(), lp));
    if (col.empty()) return p.Error(lp, "item " + std::to_string(i + 1) + " is empty");
    if (std::find(out.begin(), out.end(), col) != out.end()) {
      return p.Error(lp, "names " + col + " twice; list each column once");
    }
    out.push_back(std::move(col));
  }
  return out;
}

Status ParseRelation(const Parser& p, const YAML::Node& node, const std::string& path,
                     LogicalRelation* rel) {
  TS_RETURN_IF_ERROR(p.CheckMap(node, path, {"columns", "references", "ref_columns"}));
  if (!node.IsDefined() || node.IsNull()) {
    return p.Error(path,
                   "is empty; give columns and references, e.g. "
                   "{columns: [order_id], references: orders}");
  }
  TS_ASSIGN_OR_RETURN(rel->columns, ColumnList(p, node, "columns", path, "[order_id]"));
  TS_RETURN_IF_ERROR(p.String(node, "references", path, &rel->references));
  if (rel->references.empty()) {
    return p.Error(Join(path, "references"),
                   "is required; name the referenced source table, e.g. references: orders");
  }
  if (node["ref_columns"].IsDefined()) {
    TS_ASSIGN_OR_RETURN(rel->ref_columns, ColumnList(p, node, "ref_columns", path, "[id]"));
    if (rel->ref_columns.size() != rel->columns.size()) {
      return p.Error(Join(path, "ref_columns"),
                     "has " + std::to_string(rel->ref_columns.size()) +
                         " columns but columns has " + std::to_string(rel->columns.size()) +
                         "; give one referenced column per column, in the same order");
    }
  }
  return Status::Ok();
}

Status ParseTable(const Parser& p, const YAML::Node& node, const std::string& path,
                  TableConfig* table) {
  TS_RETURN_IF_ERROR(
      p.CheckMap(node, path, {"rename", "skip", "sum_columns", "columns", "relations"}));
  if (!node.IsDefined() || node.IsNull()) return Status::Ok();
  TS_RETURN_IF_ERROR(p.String(node, "rename", path, &table->rename));
  if (node["rename"].IsDefined() && table->rename.empty()) {
    return p.Error(Join(path, "rename"), "is empty; give the target table name");
  }
  TS_RETURN_IF_ERROR(p.Bool(node, "skip", path, &table->skip));
  const YAML::Node sums = node["sum_columns"];
  if (sums.IsDefined() && !sums.IsNull()) {
    std::string sp = Join(path, "sum_columns");
    if (!sums.IsSequence())
      return p.Error(sp, "expected a list of column names, e.g. [total_cents]");
    for (size_t i = 0; i < sums.size(); ++i) {
      if (!sums[i].IsScalar() || sums[i].Scalar().empty()) {
        return p.Error(sp, "expected a list of column names, e.g. [total_cents]");
      }
      TS_ASSIGN_OR_RETURN(std::string col, p.Expand(sums[i].Scalar(), sp));
      table->sum_columns.push_back(std::move(col));
    }
  }
  std::string cp = Join(path, "columns");
  const YAML::Node cols = node["columns"];
  TS_ASSIGN_OR_RETURN(std::vector<std::string> names, p.Keys(cols, cp, "columns"));
  std::map<std::string, std::string> target_names;  // target name -> config key
  for (const std::string& name : names) {
    ColumnRule rule;
    TS_RETURN_IF_ERROR(ParseColumn(p, cols[name], Join(cp, name), &rule));
    table->columns.emplace(name, std::move(rule));
  }
  std::string rp = Join(path, "relations");
  const YAML::Node rels = node["relations"];
  TS_ASSIGN_OR_RETURN(std::vector<std::string> rel_names, p.Keys(rels, rp, "relations"));
  for (const std::string& name : rel_names) {
    LogicalRelation rel;
    rel.name = name;
    TS_RETURN_IF_ERROR(ParseRelation(p, rels[name], Join(rp, name), &rel));
    table->relations.push_back(std::move(rel));
  }
  if (table->skip && !table->relations.empty()) {
    return p.Error(rp,
                   "the table has skip: true, so its relations are never checked; "
                   "remove relations or skip");
  }
  // Two rules renaming onto one name, or a rename onto an added column's name. (A rename onto a
  // source column without a rule is found by TableTransform::Build, which knows the columns.)
  for (const auto& [name, rule] : table->columns) {
    if (rule.drop) continue;
    std::string target = rule.rename.empty() ? name : rule.rename;
    auto [it, inserted] = target_names.emplace(target, name);
    if (!inserted) {
      return p.Error(cp, "columns " + it->second + " and " + name + " both map to target column " +
                             target + "; rename one of them");
    }
  }
  return Status::Ok();
}

// encryption.previous_keys: a list of {key_id, key | key_file}. The keys themselves are loaded
// and checked in Validate (Cipher::FromConfig), after the current key.
Status ParsePreviousKeys(const Parser& p, const YAML::Node& list,
                         std::vector<EncryptionKeyConfig>* out) {
  const std::string path = "encryption.previous_keys";
  if (!list.IsDefined() || list.IsNull()) return Status::Ok();
  const std::string example = "[{key_id: 1a2b3c4d, key_file: /etc/tenantsync/old.key}]";
  if (!list.IsSequence()) {
    return p.Error(path, "expected a list of older keys, e.g. " + example);
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string ip = path + "[" + std::to_string(i + 1) + "]";
    if (!IsMapping(list[i])) {
      return p.Error(ip, "expected a mapping with key or key_file (and key_id), e.g. " + example);
    }
    TS_RETURN_IF_ERROR(p.CheckMap(list[i], ip, {"key_id", "key", "key_file"}));
    EncryptionKeyConfig k;
    TS_RETURN_IF_ERROR(p.String(list[i], "key_id", ip, &k.key_id));
    TS_RETURN_IF_ERROR(p.String(list[i], "key", ip, &k.key));
    TS_RETURN_IF_ERROR(p.String(list[i], "key_file", ip, &k.key_file));
    if (k.key.empty() && k.key_file.empty()) {
      return p.Error(ip, "needs key or key_file: the older key, so values still under it can be "
                         "decrypted");
    }
    out->push_back(std::move(k));
  }
  return Status::Ok();
}

Status Validate(const Parser& p, Config* c) {
  if (c->pipeline.empty()) {
    return p.Error("pipeline", "is required; name the pipeline, e.g. pipeline: rawdog");
  }
  if (!IsSlug(c->pipeline)) {
    return p.Error("pipeline", "must match [a-z0-9_]+ (it names the slot and publication)");
  }
  if (c->source.url.empty()) {
    return p.Error("source.url", "is required; e.g. url: \"${POSTGRES_URL}\"");
  }
  if (c->source.schema.empty()) return p.Error("source.schema", "is empty; e.g. public");
  if (c->target.url.empty()) {
    return p.Error("target.url", "is required; e.g. url: \"${NEW_POSTGRES_URL}\"");
  }
  if (c->tenant.slug.empty()) {
    return p.Error("tenant.slug", "is required; e.g. slug: rawdog");
  }
  if (!IsSlug(c->tenant.slug)) {
    return p.Error("tenant.slug", "must match [a-z0-9_]+; e.g. slug: rawdog");
  }
  if (c->source.publication.empty()) c->source.publication = "tenantsync_" + c->pipeline;
  if (c->source.slot.empty()) c->source.slot = "tenantsync_" + c->pipeline;
  if (!IsSlug(c->source.slot) || c->source.slot.size() > 63) {
    return p.Error("source.slot",
                   "a replication slot name must match [a-z0-9_]+ and have at "
                   "most 63 characters; shorten the pipeline name or set source.slot");
  }
  if (c->source.publication.size() > 63) {
    return p.Error("source.publication", "has more than 63 characters; shorten it");
  }
  if (c->target.schema.empty()) c->target.schema = "tenant_" + c->tenant.slug;
  if (c->target.schema.size() > 63) {
    return p.Error("target.schema", "has more than 63 characters; shorten it");
  }
  if (c->tenant.name.empty()) c->tenant.name = c->tenant.slug;
  if (c->state_dir.empty()) c->state_dir = "./state/" + c->pipeline;

  // ops.listen: HOST:PORT.
  size_t colon = c->ops.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      std::from_chars(c->ops.listen.data() + colon + 1, c->ops.listen.data() + c->ops.listen.size(),
                      port)
              .ptr != c->ops.listen.data() + c->ops.listen.size() ||
      colon + 1 == c->ops.listen.size() || port < 0 || port > 65535) {
    return p.Error("ops.listen",
                   "expected HOST:PORT, e.g. 127.0.0.1:9753 (port 0 picks a free one)");
  }

  // Target table names must be unique.
  std::map<std::string, std::string> targets;
  for (const auto& [name, table] : c->tables) {
    if (table.skip) continue;
    std::string target = table.rename.empty() ? name : table.rename;
    auto [it, inserted] = targets.emplace(target, name);
    if (!inserted) {
      return p.Error("tables", "tables " + it->second + " and " + name +
                                   " both map to target table " + target + "; rename one of them");
    }
  }

  // A relation may not reference a table that is left behind.
  for (const auto& [name, table] : c->tables) {
    for (const LogicalRelation& rel : table.relations) {
      const TableConfig* parent = c->FindTable(rel.references);
      if (parent && parent->skip) {
        return p.Error("tables." + name + ".relations." + rel.name + ".references",
                       "table " + rel.references +
                           " has skip: true, so the target has none of its rows; remove the "
                           "relation or the skip");
      }
    }
  }

  if (!c->encryption.key.empty() && !c->encryption.key_file.empty()) {
    return p.Error("encryption", "set key or key_file, not both");
  }
  if (!c->encryption.key.empty()) {
    StatusOr<Cipher> cipher = Cipher::FromBase64Key(c->encryption.key);
    if (!cipher.ok()) {
      std::string why = cipher.status().message();
      constexpr std::string_view kPrefix = "encryption key: ";
      if (why.rfind(kPrefix, 0) == 0) why = why.substr(kPrefix.size());
      return p.Error("encryption.key", why);
    }
  } else if (!c->encryption.key_file.empty()) {
    StatusOr<Cipher> cipher = Cipher::FromKeyFile(c->encryption.key_file);
    if (!cipher.ok()) return p.Error("encryption.key_file", cipher.status().message());
  } else if (c->NeedsEncryptionKey()) {
    std::string who = "tenant.secrets";
    for (const auto& [tname, table] : c->tables) {
      for (const auto& [cname, rule] : table.columns) {
        if (rule.encrypt && !table.skip) {
          who = "tables." + tname + ".columns." + cname + " (encrypt: true)";
          break;
        }
      }
      if (who != "tenant.secrets") break;
    }
    return p.Error("encryption.key", who +
                                         " needs a key; set encryption.key: \"${TENANTSYNC_KEY}\" "
                                         "with TENANTSYNC_KEY=$(openssl rand -base64 32), or "
                                         "encryption.key_file");
  }
  const bool has_current = !c->encryption.key.empty() || !c->encryption.key_file.empty();
  if (!has_current && (!c->encryption.key_id.empty() || !c->encryption.previous_keys.empty())) {
    return p.Error("encryption",
                   "key_id and previous_keys need the current key; set encryption.key or "
                   "encryption.key_file");
  }
  if (!c->encryption.key_id.empty() || !c->encryption.previous_keys.empty()) {
    // The current key loaded above; this checks key_id and loads every previous key. Messages
    // name the entry (encryption.previous_keys[2].key_file) and key ids, never key bytes.
    StatusOr<Cipher> keyring = Cipher::FromConfig(c->encryption);
    if (!keyring.ok()) return p.Error("", keyring.status().message());
  }
  return Status::Ok();
}

StatusOr<Config> Parse(const Parser& p, const YAML::Node& root, Config c) {
  if (!root.IsDefined() || root.IsNull()) {
    return p.Error("", "the file is empty; start from examples/rawdog.yaml");
  }
  TS_RETURN_IF_ERROR(p.CheckMap(root, "",
                                {"pipeline", "source", "target", "tenant", "state_dir",
                                 "encryption", "ops", "snapshot", "apply", "journal", "tables"}));
  TS_RETURN_IF_ERROR(p.String(root, "pipeline", "", &c.pipeline));
  TS_RETURN_IF_ERROR(p.String(root, "state_dir", "", &c.state_dir));

  const YAML::Node source = root["source"];
  TS_RETURN_IF_ERROR(
      p.CheckMap(source, "source", {"url", "schema", "plugin", "publication", "slot",
                                      "stream_in_progress", "logical_decoding_work_mem"}));
  if (IsMapping(source)) {
    TS_RETURN_IF_ERROR(p.String(source, "url", "source", &c.source.url));
    TS_RETURN_IF_ERROR(p.String(source, "schema", "source", &c.source.schema));
    int plugin = c.source.plugin == "wal2json" ? 1 : 0;
    TS_RETURN_IF_ERROR(p.Choice(source, "plugin", "source", {"pgoutput", "wal2json"}, &plugin));
    c.source.plugin = plugin == 0 ? "pgoutput" : "wal2json";
    TS_RETURN_IF_ERROR(p.String(source, "publication", "source", &c.source.publication));
    TS_RETURN_IF_ERROR(p.String(source, "slot", "source", &c.source.slot));
    TS_RETURN_IF_ERROR(
        p.Bool(source, "stream_in_progress", "source", &c.source.stream_in_progress));
    TS_RETURN_IF_ERROR(p.String(source, "logical_decoding_work_mem", "source",
                                &c.source.logical_decoding_work_mem));
    if (!IsMemorySize(c.source.logical_decoding_work_mem)) {
      return p.Error("source.logical_decoding_work_mem",
                     "'" + c.source.logical_decoding_work_mem +
                         "' is not a memory size; write it as PostgreSQL does (4MB, 512kB, 1GB), "
                         "or '' for the source server's own setting");
    }
  }

  const YAML::Node target = root["target"];
  TS_RETURN_IF_ERROR(p.CheckMap(target, "target", {"url", "schema", "create_tables"}));
  if (IsMapping(target)) {
    TS_RETURN_IF_ERROR(p.String(target, "url", "target", &c.target.url));
    TS_RETURN_IF_ERROR(p.String(target, "schema", "target", &c.target.schema));
    TS_RETURN_IF_ERROR(p.Bool(target, "create_tables", "target", &c.target.create_tables));
  }

  const YAML::Node tenant = root["tenant"];
  TS_RETURN_IF_ERROR(
      p.CheckMap(tenant, "tenant", {"slug", "name", "domain", "store_domain", "secrets"}));
  if (IsMapping(tenant)) {
    TS_RETURN_IF_ERROR(p.String(tenant, "slug", "tenant", &c.tenant.slug));
    TS_RETURN_IF_ERROR(p.String(tenant, "name", "tenant", &c.tenant.name));
    TS_RETURN_IF_ERROR(p.String(tenant, "domain", "tenant", &c.tenant.domain));
    TS_RETURN_IF_ERROR(p.String(tenant, "store_domain", "tenant", &c.tenant.store_domain));
    const YAML::Node secrets = tenant["secrets"];
    TS_ASSIGN_OR_RETURN(std::vector<std::string> names,
                        p.Keys(secrets, "tenant.secrets", "secrets"));
    for (const std::string& name : names) {
      std::string value;
      TS_RETURN_IF_ERROR(p.String(secrets, name, "tenant.secrets", &value));
      c.tenant.secrets[name] = std::move(value);
    }
  }

  const YAML::Node enc = root["encryption"];
  TS_RETURN_IF_ERROR(
      p.CheckMap(enc, "encryption", {"key", "key_file", "key_id", "previous_keys"}));
  if (IsMapping(enc)) {
    TS_RETURN_IF_ERROR(p.String(enc, "key", "encryption", &c.encryption.key));
    TS_RETURN_IF_ERROR(p.String(enc, "key_file", "encryption", &c.encryption.key_file));
    TS_RETURN_IF_ERROR(p.String(enc, "key_id", "encryption", &c.encryption.key_id));
    TS_RETURN_IF_ERROR(ParsePreviousKeys(p, enc["previous_keys"], &c.encryption.previous_keys));
  }

  const YAML::Node ops = root["ops"];
  TS_RETURN_IF_ERROR(p.CheckMap(ops, "ops", {"listen", "token", "max_healthy_lag_seconds"}));
  if (IsMapping(ops)) {
    TS_RETURN_IF_ERROR(p.String(ops, "listen", "ops", &c.ops.listen));
    TS_RETURN_IF_ERROR(p.String(ops, "token", "ops", &c.ops.token));
    TS_RETURN_IF_ERROR(
        p.Number(ops, "max_healthy_lag_seconds", "ops", 0, &c.ops.max_healthy_lag_seconds));
  }

  const YAML::Node snap = root["snapshot"];
  TS_RETURN_IF_ERROR(p.CheckMap(snap, "snapshot", {"workers", "on_error", "chunk_mb"}));
  if (IsMapping(snap)) {
    TS_RETURN_IF_ERROR(p.Integer<int>(snap, "workers", "snapshot", 0, 256, &c.snapshot.workers));
    TS_RETURN_IF_ERROR(ParseErrorPolicy(p, snap, "snapshot", &c.snapshot.on_error));
    int64_t chunk_mb = c.snapshot.chunk_bytes >> 20;
    TS_RETURN_IF_ERROR(
        p.Integer<int64_t>(snap, "chunk_mb", "snapshot", 1, int64_t{1} << 30, &chunk_mb));
    c.snapshot.chunk_bytes = chunk_mb << 20;
  }

  const YAML::Node apply = root["apply"];
  TS_RETURN_IF_ERROR(
      p.CheckMap(apply, "apply",
                 {"batch_max_transactions", "batch_max_bytes", "batch_max_ms", "truncate",
                  "schema_drift", "on_error", "session_replication_role", "toast_compression"}));
  if (IsMapping(apply)) {
    TS_RETURN_IF_ERROR(p.Integer<int>(apply, "batch_max_transactions", "apply", 1, 10'000'000,
                                      &c.apply.batch_max_transactions));
    TS_RETURN_IF_ERROR(p.Integer<int64_t>(apply, "batch_max_bytes", "apply", 1, int64_t{1} << 40,
                                          &c.apply.batch_max_bytes));
    TS_RETURN_IF_ERROR(
        p.Integer<int>(apply, "batch_max_ms", "apply", 1, 3'600'000, &c.apply.batch_max_ms));
    int truncate = static_cast<int>(c.apply.truncate);
    TS_RETURN_IF_ERROR(
        p.Choice(apply, "truncate", "apply", {"apply", "ignore", "stop"}, &truncate));
    c.apply.truncate = static_cast<TruncatePolicy>(truncate);
    int drift = static_cast<int>(c.apply.schema_drift);
    TS_RETURN_IF_ERROR(p.Choice(apply, "schema_drift", "apply", {"add", "stop"}, &drift));
    c.apply.schema_drift = static_cast<DriftPolicy>(drift);
    TS_RETURN_IF_ERROR(ParseErrorPolicy(p, apply, "apply", &c.apply.on_error));
    int role = c.apply.session_replication_role == "origin" ? 1 : 0;
    TS_RETURN_IF_ERROR(
        p.Choice(apply, "session_replication_role", "apply", {"replica", "origin"}, &role));
    c.apply.session_replication_role = role == 0 ? "replica" : "origin";
    int compression = c.apply.toast_compression == "server" ? 1 : 0;
    TS_RETURN_IF_ERROR(
        p.Choice(apply, "toast_compression", "apply", {"lz4", "server"}, &compression));
    c.apply.toast_compression = compression == 0 ? "lz4" : "server";
  }

  const YAML::Node journal = root["journal"];
  TS_RETURN_IF_ERROR(
      p.CheckMap(journal, "journal", {"retention_hours", "max_gb", "group_commit"}));
  if (IsMapping(journal)) {
    TS_RETURN_IF_ERROR(p.Bool(journal, "group_commit", "journal", &c.journal.group_commit));
    TS_RETURN_IF_ERROR(
        p.Number(journal, "retention_hours", "journal", 0, &c.journal.retention_hours));
    double max_gb = static_cast<double>(c.journal.max_bytes) / (1 << 30);
    TS_RETURN_IF_ERROR(p.Number(journal, "max_gb", "journal", 0, &max_gb));
    if (max_gb <= 0 || max_gb > 1 << 20) {
      return p.Error("journal.max_gb", "must be above 0 (fractions allowed, e.g. 0.5)");
    }
    c.journal.max_bytes = static_cast<int64_t>(max_gb * (1 << 30));
  }

  const YAML::Node tables = root["tables"];
  TS_ASSIGN_OR_RETURN(std::vector<std::string> names, p.Keys(tables, "tables", "tables"));
  for (const std::string& name : names) {
    TableConfig table;
    TS_RETURN_IF_ERROR(ParseTable(p, tables[name], "tables." + name, &table));
    c.tables.emplace(name, std::move(table));
  }

  TS_RETURN_IF_ERROR(Validate(p, &c));
  return c;
}

}  // namespace

const TableConfig* Config::FindTable(const std::string& source_table) const {
  auto it = tables.find(source_table);
  return it == tables.end() ? nullptr : &it->second;
}

std::string Config::TargetTable(const std::string& source_table) const {
  const TableConfig* t = FindTable(source_table);
  return t == nullptr || t->rename.empty() ? source_table : t->rename;
}

bool Config::NeedsEncryptionKey() const {
  if (!tenant.secrets.empty()) return true;
  for (const auto& [name, table] : tables) {
    if (table.skip) continue;
    for (const auto& [col, rule] : table.columns) {
      if (rule.encrypt) return true;
    }
  }
  return false;
}

StatusOr<Config> ParseConfig(const std::string& yaml_text, const std::string& origin) {
  Parser p(origin);
  try {
    YAML::Node root = YAML::Load(yaml_text);
    Config c;
    c.path = origin;
    return Parse(p, root, std::move(c));
  } catch (const YAML::Exception& e) {
    // e.msg is yaml-cpp's description of the syntax error; it quotes no values.
    return InvalidArgument(OneLine(origin + ": line " + std::to_string(e.mark.line + 1) +
                                   ", column " + std::to_string(e.mark.column + 1) +
                                   ": invalid YAML: " + e.msg + "; fix the syntax"));
  }
}

StatusOr<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return InvalidArgument(path + ": can not read the config file: " + std::strerror(errno) +
                           "; check the -c path");
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) {
    return InvalidArgument(path + ": can not read the config file; check the -c path");
  }
  return ParseConfig(buf.str(), path);
}

StatusOr<Config> ConfigFromFlags(const std::string& source_url, const std::string& target_url,
                                 const std::string& tenant_slug) {
  if (source_url.empty()) {
    return InvalidArgument(
        "--source: is required with --target and --tenant; give the old "
        "database's URL, or use -c FILE");
  }
  if (target_url.empty()) {
    return InvalidArgument(
        "--target: is required with --source and --tenant; give the new "
        "database's URL, or use -c FILE");
  }
  if (tenant_slug.empty()) {
    return InvalidArgument(
        "--tenant: is required with --source and --target; e.g. --tenant rawdog");
  }
  if (!IsSlug(tenant_slug)) {
    return InvalidArgument("--tenant: must match [a-z0-9_]+; e.g. --tenant rawdog");
  }
  Config c;
  c.pipeline = tenant_slug;
  c.source.url = source_url;
  c.target.url = target_url;
  c.tenant.slug = tenant_slug;
  Parser p("flags");
  TS_RETURN_IF_ERROR(Validate(p, &c));
  return c;
}

}  // namespace tenantsync
