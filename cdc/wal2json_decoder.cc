// wal2json format-version 2 object layouts (wal2json 2.5, wal2json.c *_v2 functions), with the
// options of PluginOptions(). Keys appear in this order; optional ones in [brackets].
//
//   {"action":"B","xid":N,"timestamp":"2024-01-01 10:00:00.123456+00","lsn":"0/16","nextlsn":"0/17"}
//   {"action":"C","xid":N,"timestamp":"...","lsn":"<commit lsn>","nextlsn":"<end lsn>"}
//   {"action":"I"|"U"|"D","xid":N,"timestamp":"...","lsn":"<change lsn>","schema":"s","table":"t",
//    ["columns":[{"name":"c","type":"integer","typeoid":23,"value":V},...],]    I, U
//    ["identity":[{"name":"c","type":"integer","typeoid":23,"value":V},...],]   U, D
//    "pk":[{"name":"c","type":"integer","typeoid":23},...]}
//   {"action":"T","xid":N,"timestamp":"...","lsn":"...","schema":"s","table":"t"}
//   {"action":"M","xid":N|null,"timestamp":"..."|null,"lsn":"...","transactional":B,
//    "prefix":"p","content":"c"}
// V is null | true | false | a JSON number (printed unquoted) | a JSON string.
// Timestamps are timestamptz_to_str(): ISO, the walsender's time zone, e.g. "+05:30" offsets.
#include "cdc/wal2json_decoder.h"

#include <simdjson.h>

#include <charconv>
#include <cstring>

namespace tenantsync::cdc {

namespace {

namespace od = simdjson::ondemand;

constexpr uint32_t kByteaOid = 17;
constexpr size_t kMaxCachedRelations = 100000;  // against hostile input only

Status JsonError(std::string_view where, simdjson::error_code e) {
  return Corruption("wal2json message: " + std::string(where) + ": " +
                    simdjson::error_message(e));
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t' ||
                        s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool ReadDigits(std::string_view& s, size_t n, int64_t* out) {
  if (s.size() < n) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  s.remove_prefix(n);
  return true;
}

bool Expect(std::string_view& s, char c) {
  if (s.empty() || s.front() != c) return false;
  s.remove_prefix(1);
  return true;
}

}  // namespace

// "YYYY-MM-DD HH:MM:SS[.ffffff](+|-)HH[:MM[:SS]]" -> Unix epoch microseconds.
StatusOr<int64_t> ParseWal2jsonTimestamp(std::string_view text) {
  std::string_view s = text;
  int64_t y, mo, d, h, mi, sec, frac = 0;
  auto bad = [&] {
    return Corruption("wal2json message: timestamp '" + std::string(text.substr(0, 64)) +
                      "' is not YYYY-MM-DD HH:MM:SS[.ffffff]+TZ");
  };
  if (!ReadDigits(s, 4, &y) || !Expect(s, '-') || !ReadDigits(s, 2, &mo) || !Expect(s, '-') ||
      !ReadDigits(s, 2, &d) || !Expect(s, ' ') || !ReadDigits(s, 2, &h) || !Expect(s, ':') ||
      !ReadDigits(s, 2, &mi) || !Expect(s, ':') || !ReadDigits(s, 2, &sec)) {
    return bad();
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return bad();
  if (!s.empty() && s.front() == '.') {
    s.remove_prefix(1);
    int digits = 0;
    while (!s.empty() && s.front() >= '0' && s.front() <= '9') {
      if (digits < 6) {
        frac = frac * 10 + (s.front() - '0');
        ++digits;
      }
      s.remove_prefix(1);
    }
    if (digits == 0) return bad();
    for (; digits < 6; ++digits) frac *= 10;
  }
  if (s.empty() || (s.front() != '+' && s.front() != '-')) return bad();
  int sign = s.front() == '-' ? -1 : 1;
  s.remove_prefix(1);
  int64_t oh = 0, om = 0, os = 0;
  if (!ReadDigits(s, 2, &oh)) return bad();
  if (!s.empty() && (!Expect(s, ':') || !ReadDigits(s, 2, &om))) return bad();
  if (!s.empty() && (!Expect(s, ':') || !ReadDigits(s, 2, &os))) return bad();
  if (!s.empty()) return bad();
  int64_t local_seconds = DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) *
                              86400 + h * 3600 + mi * 60 + sec;
  int64_t offset = sign * (oh * 3600 + om * 60 + os);
  return (local_seconds - offset) * 1000000 + frac;
}

const std::vector<std::pair<std::string, std::string>>& Wal2jsonDecoder::PluginOptions() {
  static const std::vector<std::pair<std::string, std::string>> kOptions = {
      {"format-version", "2"},   {"include-transaction", "1"}, {"include-xids", "1"},
      {"include-timestamp", "1"}, {"include-lsn", "1"},        {"include-types", "1"},
      {"include-type-oids", "1"}, {"include-typmod", "1"},      {"include-pk", "1"},
  };
  return kOptions;
}

struct Wal2jsonDecoder::Parser {
  od::parser parser;
};

Wal2jsonDecoder::Wal2jsonDecoder(RelationLookup relations)
    : lookup_(std::move(relations)), parser_(std::make_unique<Parser>()) {}

Wal2jsonDecoder::~Wal2jsonDecoder() = default;

namespace {

struct Parsed {
  char action = 0;
  uint32_t xid = 0;
  bool has_timestamp = false;
  int64_t time_us = 0;
  Lsn lsn;
  Lsn next_lsn;
  bool has_lsn = false;
  bool has_next_lsn = false;
  std::string schema;
  std::string table;
  bool has_columns = false;
  bool has_identity = false;
  std::vector<Wal2jsonDecoder::PrintedColumn> columns;
  std::vector<Wal2jsonDecoder::PrintedColumn> identity;
  std::vector<std::string> pk;
  bool transactional = false;
  std::string prefix;
  std::string content;
};

Status ReadString(od::value v, std::string_view what, std::string* out) {
  std::string_view s;
  auto e = v.get_string().get(s);
  if (e) return JsonError(what, e);
  out->assign(s);
  return Status::Ok();
}

Status ReadLsn(od::value v, std::string_view what, Lsn* out) {
  std::string_view s;
  auto e = v.get_string().get(s);
  if (e) return JsonError(what, e);
  auto lsn = Lsn::Parse(s);
  if (!lsn.ok()) return Corruption("wal2json message: " + std::string(what) + " is not an LSN");
  *out = *lsn;
  return Status::Ok();
}

Status ReadValue(od::value v, uint32_t type_oid, const std::string& type, Datum* out) {
  od::json_type t;
  auto e = v.type().get(t);
  if (e) return JsonError("column value", e);
  switch (t) {
    case od::json_type::null: {
      bool is_null = false;
      if ((e = v.is_null().get(is_null)) || !is_null) {
        return Corruption("wal2json message: column value is not a valid null");
      }
      *out = Datum::Null();
      return Status::Ok();
    }
    case od::json_type::boolean: {
      bool b = false;
      if ((e = v.get_bool().get(b))) return JsonError("column value", e);
      *out = Datum::Text(b ? "t" : "f");
      return Status::Ok();
    }
    case od::json_type::number: {
      // The raw token: exact, whatever its precision. Validate it is a JSON number.
      std::string_view raw = Trim(v.raw_json_token());
      if (raw.empty() || raw.find_first_not_of("0123456789+-eE.") != std::string_view::npos) {
        return Corruption("wal2json message: column value is not a number");
      }
      *out = Datum::Text(std::string(raw));
      return Status::Ok();
    }
    case od::json_type::string: {
      std::string_view s;
      if ((e = v.get_string().get(s))) return JsonError("column value", e);
      if (type_oid == kByteaOid || (type_oid == 0 && type == "bytea")) {
        std::string text;
        text.reserve(s.size() + 2);
        text.append("\\x").append(s);
        *out = Datum::Text(std::move(text));
      } else {
        *out = Datum::Text(std::string(s));
      }
      return Status::Ok();
    }
    default:
      return Corruption("wal2json message: column value is an array or object");
  }
}

Status ReadColumns(od::value v, std::string_view what, bool with_values,
                   std::vector<Wal2jsonDecoder::PrintedColumn>* out) {
  od::array arr;
  auto e = v.get_array().get(arr);
  if (e) return JsonError(what, e);
  for (auto elem : arr) {
    od::object obj;
    if ((e = elem.get_object().get(obj))) return JsonError(what, e);
    Wal2jsonDecoder::PrintedColumn col;
    bool has_name = false, has_value = false;
    for (auto field : obj) {
      std::string_view key;
      if ((e = field.unescaped_key().get(key))) return JsonError(what, e);
      od::value fv;
      if ((e = field.value().get(fv))) return JsonError(what, e);
      if (key == "name") {
        TS_RETURN_IF_ERROR(ReadString(fv, "column name", &col.name));
        has_name = true;
      } else if (key == "type") {
        TS_RETURN_IF_ERROR(ReadString(fv, "column type", &col.type));
      } else if (key == "typeoid") {
        uint64_t oid = 0;
        if ((e = fv.get_uint64().get(oid)) || oid > UINT32_MAX) {
          return Corruption("wal2json message: typeoid is not an OID");
        }
        col.type_oid = static_cast<uint32_t>(oid);
      } else if (key == "value") {
        // "type" and "typeoid" come before "value" in wal2json's output.
        TS_RETURN_IF_ERROR(ReadValue(fv, col.type_oid, col.type, &col.value));
        has_value = true;
      }
      // Other keys (optional, position, default) are not requested; ignored if present.
    }
    if (!has_name || (with_values && !has_value)) {
      return Corruption("wal2json message: " + std::string(what) +
                        " entry without name or value");
    }
    out->push_back(std::move(col));
  }
  return Status::Ok();
}

Status ParseObject(od::document& doc, Parsed* p) {
  od::object obj;
  auto e = doc.get_object().get(obj);
  if (e) return JsonError("top level", e);
  for (auto field : obj) {
    std::string_view key;
    if ((e = field.unescaped_key().get(key))) return JsonError("key", e);
    od::value v;
    if ((e = field.value().get(v))) return JsonError(key, e);
    if (key == "action") {
      std::string a;
      TS_RETURN_IF_ERROR(ReadString(v, "action", &a));
      if (a.size() != 1) return Corruption("wal2json message: action '" + a.substr(0, 16) + "'");
      p->action = a[0];
    } else if (key == "xid") {
      bool is_null = false;
      if (!v.is_null().get(is_null) && is_null) continue;
      uint64_t xid = 0;
      if ((e = v.get_uint64().get(xid)) || xid > UINT32_MAX) {
        return Corruption("wal2json message: xid is not a transaction id");
      }
      p->xid = static_cast<uint32_t>(xid);
    } else if (key == "timestamp") {
      bool is_null = false;
      if (!v.is_null().get(is_null) && is_null) continue;
      std::string_view s;
      if ((e = v.get_string().get(s))) return JsonError("timestamp", e);
      TS_ASSIGN_OR_RETURN(p->time_us, ParseWal2jsonTimestamp(s));
      p->has_timestamp = true;
    } else if (key == "lsn") {
      TS_RETURN_IF_ERROR(ReadLsn(v, "lsn", &p->lsn));
      p->has_lsn = true;
    } else if (key == "nextlsn") {
      TS_RETURN_IF_ERROR(ReadLsn(v, "nextlsn", &p->next_lsn));
      p->has_next_lsn = true;
    } else if (key == "schema") {
      TS_RETURN_IF_ERROR(ReadString(v, "schema", &p->schema));
    } else if (key == "table") {
      TS_RETURN_IF_ERROR(ReadString(v, "table", &p->table));
    } else if (key == "columns") {
      TS_RETURN_IF_ERROR(ReadColumns(v, "columns", true, &p->columns));
      p->has_columns = true;
    } else if (key == "identity") {
      TS_RETURN_IF_ERROR(ReadColumns(v, "identity", true, &p->identity));
      p->has_identity = true;
    } else if (key == "pk") {
      std::vector<Wal2jsonDecoder::PrintedColumn> pk;
      TS_RETURN_IF_ERROR(ReadColumns(v, "pk", false, &pk));
      for (auto& c : pk) p->pk.push_back(std::move(c.name));
    } else if (key == "transactional") {
      if ((e = v.get_bool().get(p->transactional))) return JsonError("transactional", e);
    } else if (key == "prefix") {
      TS_RETURN_IF_ERROR(ReadString(v, "prefix", &p->prefix));
    } else if (key == "content") {
      TS_RETURN_IF_ERROR(ReadString(v, "content", &p->content));
    }
    // "origin" and unknown keys are ignored: on-demand skips their values.
  }
  // At the end of the document current_location() is OUT_OF_BOUNDS; anything else means
  // bytes follow the object.
  const char* loc = nullptr;
  if (doc.current_location().get(loc) != simdjson::OUT_OF_BOUNDS) {
    return Corruption("wal2json message: trailing bytes after the object");
  }
  return Status::Ok();
}

// Positions of `cols` in `rel` (both in attnum order), or an empty vector when some column is
// not in `rel` (or its type OID differs). `cols` empty -> empty, true.
bool MapColumns(const Relation& rel, const std::vector<Wal2jsonDecoder::PrintedColumn>& cols,
                std::vector<size_t>* positions) {
  positions->clear();
  size_t j = 0;
  for (const auto& c : cols) {
    while (j < rel.columns.size() && rel.columns[j].name != c.name) ++j;
    if (j == rel.columns.size()) return false;
    if (c.type_oid != 0 && rel.columns[j].type_oid != 0 && c.type_oid != rel.columns[j].type_oid) {
      return false;
    }
    positions->push_back(j++);
  }
  return true;
}

bool Fits(const Relation& rel, char action, const std::vector<Wal2jsonDecoder::PrintedColumn>& cols,
          const std::vector<Wal2jsonDecoder::PrintedColumn>& identity) {
  std::vector<size_t> pos;
  if (!MapColumns(rel, cols, &pos)) return false;
  if (action == 'I' && pos.size() != rel.columns.size()) return false;  // inserts are complete
  return MapColumns(rel, identity, &pos);
}

}  // namespace

StatusOr<std::shared_ptr<const Relation>> Wal2jsonDecoder::Resolve(
    const std::string& schema, const std::string& table, char action,
    const std::vector<PrintedColumn>& columns, const std::vector<PrintedColumn>& identity,
    const std::vector<std::string>& pk) {
  std::string key = schema;
  key.push_back('\0');
  key.append(table);
  std::shared_ptr<const Relation> cached;
  if (auto it = relations_.find(key); it != relations_.end()) cached = it->second;
  bool looked_up = false;
  auto lookup = [&]() -> Status {
    looked_up = true;
    auto rel = lookup_(schema, table);
    if (!rel.ok()) {
      if (rel.status().code() == StatusCode::kNotFound) return Status::Ok();
      return rel.status().WithContext("looking up " + schema + "." + table + " for wal2json");
    }
    cached = std::make_shared<const Relation>(std::move(rel).value());
    return Status::Ok();
  };
  if (!cached && lookup_) TS_RETURN_IF_ERROR(lookup());
  if (cached && !Fits(*cached, action, columns, identity) && lookup_ && !looked_up) {
    TS_RETURN_IF_ERROR(lookup());
  }
  if (!cached || !Fits(*cached, action, columns, identity)) {
    if (action == 'U' && lookup_ && cached) {
      return SchemaChanged("wal2json UPDATE of " + schema + "." + table +
                           " names columns the source catalog does not have (changed since?)");
    }
    // Build from the message: INSERT (complete), T, or no catalog at hand.
    const auto& printed = columns.empty() ? identity : columns;
    auto rel = std::make_shared<Relation>();
    rel->schema = schema;
    rel->name = table;
    if (cached) {
      rel->oid = cached->oid;
      rel->replica_identity = cached->replica_identity;
    }
    for (const auto& c : printed) {
      Relation::Column col;
      const Relation::Column* known = nullptr;
      if (cached) {
        for (const auto& k : cached->columns) {
          if (k.name == c.name && (c.type_oid == 0 || k.type_oid == c.type_oid)) known = &k;
        }
      }
      if (known) {
        col = *known;
      } else {
        col.name = c.name;
        col.type_name = c.type;
        col.type_oid = c.type_oid;
        for (const auto& k : pk) col.is_key |= (k == c.name);
      }
      rel->columns.push_back(std::move(col));
    }
    if (!Fits(*rel, action, columns, identity)) {
      return SchemaChanged("wal2json " + std::string(1, action) + " of " + schema + "." + table +
                           " does not match the source catalog");
    }
    cached = std::move(rel);
  }
  if (relations_.size() >= kMaxCachedRelations) relations_.clear();
  relations_[key] = cached;
  return cached;
}

StatusOr<Event> Wal2jsonDecoder::Decode(std::span<const uint8_t> message) {
  buffer_.resize(message.size() + simdjson::SIMDJSON_PADDING);
  if (!message.empty()) std::memcpy(buffer_.data(), message.data(), message.size());
  od::document doc;
  auto e = parser_->parser.iterate(buffer_.data(), message.size(), buffer_.size()).get(doc);
  if (e) return JsonError("document", e);
  Parsed p;
  TS_RETURN_IF_ERROR(ParseObject(doc, &p));

  auto need_lsn = [&](bool next) -> Status {
    if (!p.has_lsn || (next && !p.has_next_lsn)) {
      return Corruption(std::string("wal2json message: action ") + p.action +
                        " without lsn/nextlsn (include-lsn must be on)");
    }
    return Status::Ok();
  };
  switch (p.action) {
    case 'B': {
      TS_RETURN_IF_ERROR(need_lsn(false));
      return Event(BeginTxn{p.xid, p.lsn, p.time_us});
    }
    case 'C': {
      TS_RETURN_IF_ERROR(need_lsn(true));
      return Event(CommitTxn{p.xid, p.lsn, p.next_lsn, p.time_us});
    }
    case 'M': {
      Change c;
      c.op = ChangeOp::kMessage;
      c.message_transactional = p.transactional;
      c.message_prefix = std::move(p.prefix);
      c.message_content = std::move(p.content);
      if (!p.transactional) {
        TS_RETURN_IF_ERROR(need_lsn(false));
        return Event(StandaloneMessage{p.lsn, std::move(c)});
      }
      return Event(std::move(c));
    }
    case 'I':
    case 'U':
    case 'D':
    case 'T':
      break;
    default:
      return Corruption(std::string("wal2json message: unknown action '") + p.action + "'");
  }
  if (p.table.empty()) {
    return Corruption(std::string("wal2json message: action ") + p.action + " without table");
  }
  if ((p.action == 'I' || p.action == 'U') && !p.has_columns) {
    return Corruption(std::string("wal2json message: action ") + p.action + " without columns");
  }
  if (p.action == 'D' && !p.has_identity) {
    return Corruption("wal2json message: action D without identity");
  }
  if (p.action == 'T' || p.action == 'I') p.identity.clear();
  TS_ASSIGN_OR_RETURN(auto rel, Resolve(p.schema, p.table, p.action, p.columns, p.identity, p.pk));

  Change c;
  c.relation = rel;
  if (p.action == 'T') {
    c.op = ChangeOp::kTruncate;
    c.truncated.push_back(rel);
    return Event(std::move(c));
  }
  c.op = p.action == 'I' ? ChangeOp::kInsert : p.action == 'U' ? ChangeOp::kUpdate
                                                               : ChangeOp::kDelete;
  std::vector<size_t> pos;
  if (p.action != 'D') {
    MapColumns(*rel, p.columns, &pos);
    c.new_tuple.assign(rel->columns.size(), Datum::Unchanged());
    for (size_t i = 0; i < pos.size(); ++i) c.new_tuple[pos[i]] = std::move(p.columns[i].value);
  }
  if (p.action != 'I' && !p.identity.empty()) {
    MapColumns(*rel, p.identity, &pos);
    bool key_unchanged = p.action == 'U' && rel->replica_identity != 'f';
    if (key_unchanged) {
      for (size_t i = 0; i < pos.size(); ++i) {
        key_unchanged &= c.new_tuple[pos[i]] == p.identity[i].value;
      }
    }
    if (!key_unchanged) {
      c.old_tuple.assign(rel->columns.size(), Datum::Null());
      for (size_t i = 0; i < pos.size(); ++i) c.old_tuple[pos[i]] = std::move(p.identity[i].value);
    }
  }
  return Event(std::move(c));
}

}  // namespace tenantsync::cdc
