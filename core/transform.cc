#include "core/transform.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

namespace tenantsync {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Collapses runs of whitespace to one space and lower-cases: "Double  Precision" -> "double
// precision".
std::string Canonical(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : Trim(s)) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = true;
      continue;
    }
    if (space && !out.empty() && c != '(' && c != ')' && c != ',' && out.back() != '(' &&
        out.back() != ',') {
      out += ' ';
    }
    space = false;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "name(args)" -> name, args (without parentheses); no parentheses -> args empty.
bool SplitModifier(std::string_view type, std::string_view* name, std::string_view* args) {
  size_t open = type.find('(');
  if (open == std::string_view::npos) {
    *name = type;
    *args = {};
    return true;
  }
  if (type.back() != ')') return false;
  *name = Trim(type.substr(0, open));
  *args = type.substr(open + 1, type.size() - open - 2);
  return true;
}

constexpr const char* kKnownTypes =
    "smallint, integer, bigint, real, double precision, numeric[(p,s)], boolean, text, "
    "varchar(n), timestamptz, timestamp, date, json, jsonb, uuid";

Status CastInteger(std::string_view text, int64_t min, int64_t max, const char* type,
                   std::string* out) {
  std::string_view s = Trim(text);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (size_t dot = s.find('.'); dot != std::string_view::npos) {
    std::string_view frac = s.substr(dot + 1);
    if (!frac.empty() && !AllDigits(frac)) {
      return InvalidArgument(std::string("not an integer (") + type + ")");
    }
    if (!std::all_of(frac.begin(), frac.end(), [](char c) { return c == '0'; })) {
      return InvalidArgument(std::string("has a fraction, which ") + type + " can not hold");
    }
    s = s.substr(0, dot);
  }
  if (!AllDigits(s)) return InvalidArgument(std::string("not an integer (") + type + ")");
  while (s.size() > 1 && s[0] == '0') s.remove_prefix(1);
  // Parse the magnitude as unsigned so that the minimum (-9223372036854775808) fits.
  uint64_t magnitude = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), magnitude);
  uint64_t limit = negative ? static_cast<uint64_t>(-(min + 1)) + 1 : static_cast<uint64_t>(max);
  if (ec != std::errc() || ptr != s.data() + s.size() || magnitude > limit) {
    return InvalidArgument(std::string("out of range for type ") + type);
  }
  *out = (negative && magnitude != 0 ? "-" : "") + std::string(s);
  return Status::Ok();
}

// NaN / Infinity spellings PostgreSQL's float and numeric input accept, in PG's output form.
std::optional<std::string> SpecialFloat(std::string_view s) {
  std::string l = Lower(s);
  if (l == "nan" || l == "+nan" || l == "-nan") return "NaN";
  if (l == "infinity" || l == "+infinity" || l == "inf" || l == "+inf") return "Infinity";
  if (l == "-infinity" || l == "-inf") return "-Infinity";
  return std::nullopt;
}

Status CastFloat(std::string_view text, bool single, std::string* out) {
  std::string_view s = Trim(text);
  const char* type = single ? "real" : "double precision";
  if (auto special = SpecialFloat(s)) {
    *out = *special;
    return Status::Ok();
  }
  std::string_view digits = s;
  if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);
  // from_chars accepts no hex floats, "inf" or locale separators in general format: only
  // [-]digits[.digits][e[+-]digits], which PostgreSQL also accepts.
  if (digits.empty() || digits[0] == '+' ||
      (digits[0] == '-' && digits.size() > 1 && digits[1] == '+')) {
    return InvalidArgument(std::string("not a number (") + type + ")");
  }
  double v = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec == std::errc::result_out_of_range) {
    return InvalidArgument(std::string("out of range for type ") + type);
  }
  if (ec != std::errc() || ptr != digits.data() + digits.size()) {
    return InvalidArgument(std::string("not a number (") + type + ")");
  }
  if (single && std::isfinite(v) &&
      (std::fabs(v) > std::numeric_limits<float>::max() ||
       (v != 0 && std::fabs(v) < std::numeric_limits<float>::denorm_min()))) {
    return InvalidArgument("out of range for type real");
  }
  *out = std::string(s);
  return Status::Ok();
}

// args: "" or "p" or "p,s".
Status CastNumeric(std::string_view text, std::string_view args, std::string* out) {
  std::string_view s = Trim(text);
  if (auto special = SpecialFloat(s)) {
    if (!args.empty() && *special != "NaN") {
      return InvalidArgument("an infinite value does not fit a numeric with a precision");
    }
    *out = *special;
    return Status::Ok();
  }
  std::string_view body = s;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) body.remove_prefix(1);
  std::string_view mantissa = body;
  int64_t exponent = 0;
  if (size_t e = body.find_first_of("eE"); e != std::string_view::npos) {
    mantissa = body.substr(0, e);
    std::string_view exp = body.substr(e + 1);
    if (!exp.empty() && exp[0] == '+') exp.remove_prefix(1);
    auto [ptr, ec] = std::from_chars(exp.data(), exp.data() + exp.size(), exponent);
    if (exp.empty() || ec != std::errc() || ptr != exp.data() + exp.size() ||
        std::abs(exponent) > 1000) {
      return InvalidArgument("not a number (numeric)");
    }
  }
  std::string_view int_part = mantissa;
  std::string_view frac_part;
  if (size_t dot = mantissa.find('.'); dot != std::string_view::npos) {
    int_part = mantissa.substr(0, dot);
    frac_part = mantissa.substr(dot + 1);
  }
  if ((int_part.empty() && frac_part.empty()) || (!int_part.empty() && !AllDigits(int_part)) ||
      (!frac_part.empty() && !AllDigits(frac_part))) {
    return InvalidArgument("not a number (numeric)");
  }
  if (!args.empty()) {
    int precision = 0, scale = 0;
    std::string_view p = args, sc;
    if (size_t comma = args.find(','); comma != std::string_view::npos) {
      p = args.substr(0, comma);
      sc = args.substr(comma + 1);
      std::from_chars(sc.data(), sc.data() + sc.size(), scale);
    }
    std::from_chars(p.data(), p.data() + p.size(), precision);
    // Integer digits after applying the exponent, ignoring leading zeros.
    std::string digits = std::string(int_part) + std::string(frac_part);
    int64_t point = static_cast<int64_t>(int_part.size()) + exponent;
    size_t first = digits.find_first_not_of('0');
    int64_t int_digits = first == std::string::npos ? 0 : point - static_cast<int64_t>(first);
    if (int_digits > precision - scale) {
      return InvalidArgument("numeric field overflow (precision " + std::to_string(precision) +
                             ", scale " + std::to_string(scale) + ")");
    }
  }
  *out = std::string(s);
  return Status::Ok();
}

// PostgreSQL's parse_bool_with_len: unique prefixes of true/false/yes/no, "on"/"off" (at least
// two letters), and "1"/"0".
Status CastBool(std::string_view text, std::string* out) {
  std::string s = Lower(Trim(text));
  auto prefix_of = [&s](std::string_view word, size_t min_len) {
    return s.size() >= min_len && s.size() <= word.size() && word.substr(0, s.size()) == s;
  };
  if (prefix_of("true", 1) || prefix_of("yes", 1) || s == "on" || s == "1") {
    *out = "t";
  } else if (prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || s == "0") {
    *out = "f";
  } else {
    return InvalidArgument("not a boolean");
  }
  return Status::Ok();
}

Status CastUuid(std::string_view text, std::string* out) {
  std::string_view s = Trim(text);
  if (!s.empty() && s.front() == '{') {
    if (s.back() != '}') return InvalidArgument("not a uuid");
    s = s.substr(1, s.size() - 2);
  }
  std::string hex;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (std::isxdigit(static_cast<unsigned char>(c))) {
      hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (c == '-' && !hex.empty() && hex.size() % 4 == 0 && hex.size() < 32 &&
               i + 1 < s.size() && s[i + 1] != '-') {
      continue;  // PostgreSQL allows '-' after any group of four digits
    } else {
      return InvalidArgument("not a uuid");
    }
  }
  if (hex.size() != 32) return InvalidArgument("not a uuid (needs 32 hex digits)");
  *out = hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
  return Status::Ok();
}

size_t Utf8Length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

Status CastVarchar(std::string_view text, std::string_view args, std::string* out) {
  if (!args.empty()) {
    size_t limit = 0;
    std::from_chars(args.data(), args.data() + args.size(), limit);
    if (Utf8Length(text) > limit) {
      return InvalidArgument("longer than " + std::to_string(limit) + " characters");
    }
  }
  *out = std::string(text);
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> NormalizeCastType(std::string_view type) {
  std::string t = Canonical(type);
  static const std::map<std::string, std::string, std::less<>> kAliases = {
      {"smallint", "smallint"},
      {"int2", "smallint"},
      {"integer", "integer"},
      {"int", "integer"},
      {"int4", "integer"},
      {"bigint", "bigint"},
      {"int8", "bigint"},
      {"real", "real"},
      {"float4", "real"},
      {"double precision", "double precision"},
      {"float8", "double precision"},
      {"float", "double precision"},
      {"numeric", "numeric"},
      {"decimal", "numeric"},
      {"boolean", "boolean"},
      {"bool", "boolean"},
      {"text", "text"},
      {"varchar", "character varying"},
      {"character varying", "character varying"},
      {"timestamptz", "timestamp with time zone"},
      {"timestamp with time zone", "timestamp with time zone"},
      {"timestamp", "timestamp without time zone"},
      {"timestamp without time zone", "timestamp without time zone"},
      {"date", "date"},
      {"json", "json"},
      {"jsonb", "jsonb"},
      {"uuid", "uuid"},
  };
  std::string_view name, args;
  if (!SplitModifier(t, &name, &args)) {
    return InvalidArgument("unknown type '" + std::string(type.substr(0, 40)) + "'; use one of " +
                           kKnownTypes);
  }
  auto it = kAliases.find(name);
  if (it == kAliases.end()) {
    return InvalidArgument("unknown type '" + std::string(type.substr(0, 40)) + "'; use one of " +
                           kKnownTypes);
  }
  const std::string& base = it->second;
  if (args.empty() && t.find('(') == std::string::npos) return base;
  if (base == "character varying") {
    if (!AllDigits(args) || args.size() > 8 || std::stol(std::string(args)) < 1) {
      return InvalidArgument("varchar(n) needs a length n of at least 1");
    }
    return base + "(" + std::string(args) + ")";
  }
  if (base == "numeric") {
    std::string_view p = args, s;
    if (size_t comma = args.find(','); comma != std::string_view::npos) {
      p = args.substr(0, comma);
      s = args.substr(comma + 1);
      if (!AllDigits(s)) return InvalidArgument("numeric(p,s) needs whole numbers p and s");
    }
    if (!AllDigits(p) || p.size() > 4 || std::stoi(std::string(p)) < 1 ||
        std::stoi(std::string(p)) > 1000 ||
        (!s.empty() && (s.size() > 4 || std::stoi(std::string(s)) > std::stoi(std::string(p))))) {
      return InvalidArgument("numeric(p,s) needs 1 <= p <= 1000 and 0 <= s <= p");
    }
    return base + "(" + std::string(p) + "," + (s.empty() ? "0" : std::string(s)) + ")";
  }
  return InvalidArgument("type " + base + " takes no (modifier); write " + base);
}

StatusOr<std::string> CastText(std::string_view type, std::string_view text) {
  std::string_view name, args;
  if (!SplitModifier(type, &name, &args)) return InvalidArgument("unknown type");
  std::string out;
  Status s;
  if (name == "bigint") {
    s = CastInteger(text, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                    "bigint", &out);
  } else if (name == "integer") {
    s = CastInteger(text, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(),
                    "integer", &out);
  } else if (name == "smallint") {
    s = CastInteger(text, std::numeric_limits<int16_t>::min(), std::numeric_limits<int16_t>::max(),
                    "smallint", &out);
  } else if (name == "real") {
    s = CastFloat(text, true, &out);
  } else if (name == "double precision") {
    s = CastFloat(text, false, &out);
  } else if (name == "numeric") {
    s = CastNumeric(text, args, &out);
  } else if (name == "boolean") {
    s = CastBool(text, &out);
  } else if (name == "uuid") {
    s = CastUuid(text, &out);
  } else if (name == "text") {
    out = std::string(text);
  } else if (name == "character varying") {
    s = CastVarchar(text, args, &out);
  } else if (name == "json" || name == "jsonb") {
    if (!nlohmann::json::accept(text)) return InvalidArgument("not valid JSON");
    out = std::string(text);
  } else if (name == "timestamp with time zone" || name == "timestamp without time zone" ||
             name == "date") {
    // Validated by the server on insert; see the header.
    if (Trim(text).empty()) return InvalidArgument("empty text is not a " + std::string(name));
    out = std::string(text);
  } else {
    return InvalidArgument("unknown type '" + std::string(type.substr(0, 40)) + "'");
  }
  if (!s.ok()) return s;
  return out;
}

StatusOr<TableTransform> TableTransform::Build(const std::string& source_table,
                                               const TableConfig* table,
                                               const std::vector<SourceColumn>& source_columns,
                                               const Cipher* cipher) {
  const std::string where = "tables." + source_table;
  TableTransform t;
  t.source_table_ = source_table;
  t.cipher_ = cipher;
  t.target_index_of_source_.assign(source_columns.size(), -1);

  std::map<std::string, int> source_index;
  for (size_t i = 0; i < source_columns.size(); ++i) {
    source_index.emplace(source_columns[i].name, static_cast<int>(i));
  }
  static const ColumnRule kNoRule;
  auto rule_for = [table](const std::string& column) -> const ColumnRule* {
    if (table == nullptr) return nullptr;
    auto it = table->columns.find(column);
    return it == table->columns.end() ? nullptr : &it->second;
  };

  // Every rule must name a source column, except added (value:) columns, which must not.
  if (table != nullptr) {
    for (const auto& [name, rule] : table->columns) {
      bool exists = source_index.count(name) > 0;
      if (rule.value && exists) {
        return InvalidArgument(where + ".columns." + name + ": value adds a column, but " +
                               source_table + " already has a column " + name +
                               "; use type/on_error to convert it, or add it under another name");
      }
      if (!rule.value && !exists) {
        return InvalidArgument(where + ".columns." + name + ": source table " + source_table +
                               " has no column " + name + "; fix the name or remove the rule");
      }
    }
  }

  std::set<std::string> names;
  auto add_target = [&](TargetColumn col, ColumnRule rule, const std::string& context) -> Status {
    if (!names.insert(col.name).second) {
      return InvalidArgument(where + ": two columns map to target column " + col.name +
                             "; rename one of them");
    }
    t.target_columns_.push_back(std::move(col));
    t.rules_.push_back(std::move(rule));
    t.contexts_.push_back(context);
    return Status::Ok();
  };

  for (size_t i = 0; i < source_columns.size(); ++i) {
    const SourceColumn& sc = source_columns[i];
    const ColumnRule* r = rule_for(sc.name);
    ColumnRule rule = r != nullptr ? *r : ColumnRule{};
    std::string path = where + ".columns." + sc.name;
    if (rule.drop) {
      if (sc.is_key) {
        return InvalidArgument(path + ": is part of the key of " + source_table +
                               " and can not be dropped; the applier finds rows by it");
      }
      t.identity_ = false;
      continue;
    }
    if (!rule.type.empty()) {
      StatusOr<std::string> normal = NormalizeCastType(rule.type);
      if (!normal.ok()) return normal.status().WithContext(path + ".type");
      rule.type = *normal;
      if (rule.on_error) {
        StatusOr<std::string> def = CastText(rule.type, *rule.on_error);
        if (!def.ok()) {
          return InvalidArgument(path + ".on_error: is not a valid " + rule.type + " (" +
                                 def.status().message() + "); give a default the type accepts");
        }
        rule.on_error = *def;
      }
    } else if (rule.on_error) {
      return InvalidArgument(path + ".on_error: applies to a cast; add type: or remove on_error");
    }
    if (rule.encrypt) {
      if (cipher == nullptr) {
        return InvalidArgument(path +
                               ": encrypt: true needs an encryption key; set "
                               "encryption.key or encryption.key_file");
      }
      if (!rule.type.empty()) {
        return InvalidArgument(path + ": an encrypted column is stored as text; remove type");
      }
    }
    TargetColumn col;
    col.name = rule.rename.empty() ? sc.name : rule.rename;
    col.type = rule.encrypt ? "text" : (!rule.type.empty() ? rule.type : sc.type);
    col.source_index = static_cast<int>(i);
    col.encrypted = rule.encrypt;
    col.is_key = sc.is_key;
    if (r != nullptr) t.identity_ = false;
    t.target_index_of_source_[i] = static_cast<int>(t.target_columns_.size());
    TS_RETURN_IF_ERROR(add_target(std::move(col), std::move(rule), source_table + "." + sc.name));
  }

  if (table != nullptr) {
    for (const auto& [name, r] : table->columns) {
      if (!r.value) continue;
      ColumnRule rule = r;
      std::string path = where + ".columns." + name;
      if (rule.type.empty()) rule.type = *rule.value == "now" ? "timestamptz" : "text";
      StatusOr<std::string> normal = NormalizeCastType(rule.type);
      if (!normal.ok()) return normal.status().WithContext(path + ".type");
      rule.type = *normal;
      if (*rule.value != "now") {
        StatusOr<std::string> v = CastText(rule.type, *rule.value);
        if (!v.ok()) {
          return InvalidArgument(path + ".value: is not a valid " + rule.type + " (" +
                                 v.status().message() + "); fix the constant");
        }
        rule.value = *v;
      }
      TargetColumn col;
      col.name = name;
      col.type = rule.type;
      t.identity_ = false;
      TS_RETURN_IF_ERROR(add_target(std::move(col), std::move(rule), source_table + "." + name));
    }
  }
  if (t.target_columns_.empty()) {
    return InvalidArgument(where +
                           ": every column is dropped; keep at least the key, or set "
                           "skip: true");
  }
  return t;
}

int TableTransform::TargetIndexOf(int source_index) const {
  if (source_index < 0 || static_cast<size_t>(source_index) >= target_index_of_source_.size()) {
    return -1;
  }
  return target_index_of_source_[static_cast<size_t>(source_index)];
}

Status TableTransform::Apply(const Tuple& source, Tuple* target,
                             const TransformContext& ctx) const {
  if (source.size() != target_index_of_source_.size()) {
    return SchemaChanged(source_table_ + ": a row has " + std::to_string(source.size()) +
                         " columns, the mapping expects " +
                         std::to_string(target_index_of_source_.size()) +
                         "; the source table changed");
  }
  target->assign(target_columns_.size(), Datum::Null());
  for (size_t ti = 0; ti < target_columns_.size(); ++ti) {
    const TargetColumn& col = target_columns_[ti];
    const ColumnRule& rule = rules_[ti];
    Datum& out = (*target)[ti];
    if (col.source_index < 0) {  // added column
      if (ctx.for_update) {
        out = Datum::Unchanged();
      } else if (*rule.value == "now") {
        if (ctx.now.empty()) {
          return Fatal(source_table_ + "." + col.name +
                       ": value now needs TransformContext.now; this is a bug");
        }
        out = Datum::Text(ctx.now);
      } else {
        out = Datum::Text(*rule.value);
      }
      continue;
    }
    const Datum& in = source[static_cast<size_t>(col.source_index)];
    if (in.kind != Datum::Kind::kText) {
      out = in;  // NULL stays NULL; unchanged TOAST stays unchanged (invariant 8)
      continue;
    }
    if (col.encrypted) {
      StatusOr<std::string> enc = cipher_->Encrypt(in.text, contexts_[ti]);
      if (!enc.ok()) return enc.status().WithContext(contexts_[ti]);
      out = Datum::Text(std::move(enc).value());
    } else if (!rule.type.empty()) {
      StatusOr<std::string> cast = CastText(rule.type, in.text);
      if (cast.ok()) {
        out = Datum::Text(std::move(cast).value());
      } else if (rule.on_error) {
        out = Datum::Text(*rule.on_error);
      } else {
        // The cast's message describes the failure ("out of range for type bigint") and never
        // contains the value (invariant 9).
        return InvalidArgument(contexts_[ti] + ": value can not be cast to " + rule.type + " (" +
                               cast.status().message() +
                               ") and the column has no on_error default; add on_error: to its "
                               "rule or fix the row");
      }
    } else {
      out = in;
    }
  }
  return Status::Ok();
}

StatusOr<std::string> TableTransform::DecryptTarget(int target_index,
                                                    const std::string& value) const {
  if (target_index < 0 || static_cast<size_t>(target_index) >= target_columns_.size()) {
    return InvalidArgument(source_table_ + ": target column index " + std::to_string(target_index) +
                           " is out of range");
  }
  if (!target_columns_[static_cast<size_t>(target_index)].encrypted) return value;
  return cipher_->Decrypt(value, contexts_[static_cast<size_t>(target_index)]);
}

}  // namespace tenantsync
