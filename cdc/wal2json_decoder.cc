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
#include <functional>
#include <optional>

#include "core/pg_text.h"

namespace tenantsync::cdc {

namespace {

namespace od = simdjson::ondemand;

constexpr uint32_t kByteaOid = 17;
constexpr size_t kMaxCachedRelations = 100000;  // against hostile input only
// Combinations of left-out columns remembered per relation; beyond, they are checked again.
constexpr size_t kMaxVerifiedOmissions = 64;

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

}  // namespace

// "YYYY-MM-DD HH:MM:SS[.ffffff](+|-)HH[:MM[:SS]]" -> Unix epoch microseconds.
StatusOr<int64_t> ParseWal2jsonTimestamp(std::string_view text) {
  int64_t us;
  if (!ParseIsoTimestamp(text, /*with_offset=*/true, &us)) {
    return Corruption("wal2json message: timestamp '" + std::string(text.substr(0, 64)) +
                      "' is not YYYY-MM-DD HH:MM:SS[.ffffff]+TZ");
  }
  return us;
}

const std::vector<std::pair<std::string, std::string>>& Wal2jsonDecoder::PluginOptions() {
  static const std::vector<std::pair<std::string, std::string>> kOptions = {
      {"format-version", "2"},   {"include-transaction", "1"}, {"include-xids", "1"},
      {"include-timestamp", "1"}, {"include-lsn", "1"},        {"include-types", "1"},
      {"include-type-oids", "1"}, {"include-typmod", "1"},      {"include-pk", "1"},
  };
  return kOptions;
}

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
  bool has_pk = false;
  // One Parsed is reused from message to message, so these vectors and the strings in them
  // keep their capacity (ReadColumns overwrites entries in place, then trims).
  std::vector<Wal2jsonDecoder::PrintedColumn> columns;
  std::vector<Wal2jsonDecoder::PrintedColumn> identity;
  std::vector<Wal2jsonDecoder::PrintedColumn> pk;
  bool transactional = false;
  std::string prefix;
  std::string content;

  void Reset() {
    action = 0;
    xid = 0;
    has_timestamp = false;
    time_us = 0;
    lsn = Lsn();
    next_lsn = Lsn();
    has_lsn = has_next_lsn = has_columns = has_identity = transactional = false;
    has_pk = false;
    schema.clear();
    table.clear();
    prefix.clear();
    content.clear();
  }
};

}  // namespace

struct Wal2jsonDecoder::Parser {
  od::parser parser;
  Parsed parsed;
  std::string key;                // schema '\0' table of the message being resolved
  std::vector<size_t> positions;  // of the message's columns in its relation (Resolve)
  std::vector<size_t> identity_positions;
};

Wal2jsonDecoder::Wal2jsonDecoder(RelationLookup relations)
    : lookup_(std::move(relations)), parser_(std::make_unique<Parser>()) {}

Wal2jsonDecoder::~Wal2jsonDecoder() = default;

namespace {

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
  size_t n = 0;
  for (auto elem : arr) {
    od::object obj;
    if ((e = elem.get_object().get(obj))) return JsonError(what, e);
    if (n == out->size()) out->emplace_back();
    Wal2jsonDecoder::PrintedColumn& col = (*out)[n++];
    col.name.clear();
    col.type.clear();
    col.type_oid = 0;
    col.value = Datum::Null();
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
  }
  out->resize(n);
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
      std::string_view a;
      if ((e = v.get_string().get(a))) return JsonError("action", e);
      if (a.size() != 1) {
        return Corruption("wal2json message: action '" + std::string(a.substr(0, 16)) + "'");
      }
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
      // Only Begin, Commit and messages use their time ("action" comes first): a change's own
      // timestamp (the commit's again) is skipped, which saves a parse per change.
      if (p->action == 'I' || p->action == 'U' || p->action == 'D' || p->action == 'T') continue;
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
      TS_RETURN_IF_ERROR(ReadColumns(v, "pk", false, &p->pk));
      p->has_pk = true;
    } else if (key == "transactional") {
      if ((e = v.get_bool().get(p->transactional))) return JsonError("transactional", e);
    } else if (key == "prefix") {
      TS_RETURN_IF_ERROR(ReadString(v, "prefix", &p->prefix));
    } else if (key == "content") {
      TS_RETURN_IF_ERROR(ReadString(v, "content", &p->content));
    }
    // "origin" and unknown keys are ignored: on-demand skips their values.
  }
  if (!p->has_columns) p->columns.clear();
  if (!p->has_identity) p->identity.clear();
  if (!p->has_pk) p->pk.clear();
  // At the end of the document current_location() is OUT_OF_BOUNDS; anything else means
  // bytes follow the object.
  const char* loc = nullptr;
  if (doc.current_location().get(loc) != simdjson::OUT_OF_BOUNDS) {
    return Corruption("wal2json message: trailing bytes after the object");
  }
  return Status::Ok();
}

// Positions of `cols` in `rel` (both in attnum order), or false when some column is not in
// `rel` (or its type OID differs). `cols` empty -> empty, true.
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

// Whether a message's columns can be decoded with `rel`: every printed column is in it, an
// INSERT prints all of them, and the identity's columns are in it. `positions` and
// `identity_positions` receive the positions of `cols` and `identity` in `rel`.
bool Fits(const Relation& rel, char action, const std::vector<Wal2jsonDecoder::PrintedColumn>& cols,
          const std::vector<Wal2jsonDecoder::PrintedColumn>& identity,
          std::vector<size_t>* positions, std::vector<size_t>* identity_positions) {
  if (!MapColumns(rel, cols, positions)) return false;
  if (action == 'I' && positions->size() != rel.columns.size()) return false;  // complete
  return MapColumns(rel, identity, identity_positions);
}

// The columns of `rel` an UPDATE's new tuple left out (positions not in `printed`), one byte
// per column: the key of RelationEntry::verified_omissions.
std::string OmissionKey(const Relation& rel, const std::vector<size_t>& printed) {
  std::string key(rel.columns.size(), '\1');
  for (size_t p : printed) key[p] = '\0';
  return key;
}

const Relation::Column* FindColumn(const Relation* rel, std::string_view name) {
  if (!rel) return nullptr;
  for (const auto& c : rel->columns) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// The relation a message was written against, when neither the cache nor the catalog fits it:
// the message's columns (names, types and type OIDs as wal2json printed them; a column the
// catalog has with the same type keeps the catalog's modifier and key flag), in the message's
// (attnum) order, merged with the columns of `base` that the message left out when
// `keep_omitted` says they are there (an UPDATE's unchanged TOAST columns). `base` is the
// catalog's relation, else the cached one, else null. `printed` is the new tuple's columns
// (INSERT, UPDATE) or the identity's (DELETE, TRUNCATE).
std::shared_ptr<const Relation> MergeRelation(
    const std::string& schema, const std::string& table, const Relation* base,
    const std::vector<Wal2jsonDecoder::PrintedColumn>& printed,
    const std::vector<Wal2jsonDecoder::PrintedColumn>& identity,
    const std::vector<Wal2jsonDecoder::PrintedColumn>& pk,
    const std::function<bool(const Relation::Column&)>& keep_omitted) {
  auto rel = std::make_shared<Relation>();
  rel->schema = schema;
  rel->name = table;
  if (base) {
    rel->oid = base->oid;
    rel->replica_identity = base->replica_identity;
  }
  auto is_key = [&](const std::string& name) {
    if (rel->replica_identity == 'f') return true;
    for (const auto& k : pk) {
      if (k.name == name) return true;
    }
    // REPLICA IDENTITY USING INDEX: pk names the primary key, the identity the index.
    if (rel->replica_identity == 'i') {
      for (const auto& k : identity) {
        if (k.name == name) return true;
      }
    }
    return false;
  };
  auto from_message = [&](const Wal2jsonDecoder::PrintedColumn& c) {
    Relation::Column col;
    col.name = c.name;
    col.type_name = c.type;
    col.type_oid = c.type_oid;
    col.is_key = is_key(c.name);
    return col;
  };
  // Columns the base lacks wait until the base's left-out columns before the next common one
  // are placed: their relative attnum order is unknown, and a column the catalog no longer has
  // is most often a recent addition dropped again, so after them is the better guess.
  std::vector<Relation::Column> pending;
  size_t j = 0;  // next column of base not yet placed
  const size_t nbase = base ? base->columns.size() : 0;
  auto place_base_until = [&](size_t p) {
    for (; j < p; ++j) {
      if (keep_omitted(base->columns[j])) rel->columns.push_back(base->columns[j]);
    }
    for (auto& col : pending) rel->columns.push_back(std::move(col));
    pending.clear();
  };
  for (const auto& c : printed) {
    size_t p = j;
    while (p < nbase && base->columns[p].name != c.name) ++p;
    if (p == nbase) {
      pending.push_back(from_message(c));
      continue;
    }
    place_base_until(p);
    ++j;
    // Same name, another type: retyped since; the message's type is this change's.
    rel->columns.push_back(c.type_oid == 0 || base->columns[p].type_oid == c.type_oid
                               ? base->columns[p]
                               : from_message(c));
  }
  place_base_until(nbase);
  return rel;
}

}  // namespace

// Resolution (see the header for why):
//   1. the cached relation, when the message fits it and, for an UPDATE leaving columns out,
//      that combination of left-out columns was checked against the catalog before;
//   2. otherwise the catalog is read now, and the relation is the message's columns merged
//      with the catalog's (MergeRelation): the catalog itself when it matches the message,
//      the message's names and types where the catalog has moved on past this change.
//      DELETE/TRUNCATE print too little to merge: the catalog when it fits the identity.
// A result equal to the cached relation keeps the cached object, so the journal and the
// applier see no new version; a different one is a new version (a new Fingerprint), which is
// what makes the applier's drift policy act as it does on a pgoutput Relation message.
StatusOr<std::shared_ptr<const Relation>> Wal2jsonDecoder::Resolve(
    const std::string& schema, const std::string& table, char action,
    const std::vector<PrintedColumn>& columns, const std::vector<PrintedColumn>& identity,
    const std::vector<PrintedColumn>& pk) {
  std::string& key = parser_->key;  // reused: no allocation per change
  key.assign(schema);
  key.push_back('\0');
  key.append(table);
  CachedRelation* entry = nullptr;
  if (auto it = relations_.find(key); it != relations_.end()) entry = &it->second;
  const Relation* cached = entry ? entry->relation.get() : nullptr;

  std::vector<size_t>& positions = parser_->positions;
  std::vector<size_t>& identity_positions = parser_->identity_positions;
  std::string omission;
  if (cached && Fits(*cached, action, columns, identity, &positions, &identity_positions)) {
    if (action != 'U' || !lookup_ || positions.size() == cached->columns.size()) {
      return entry->relation;
    }
    omission = OmissionKey(*cached, positions);
    if (entry->verified_omissions.count(omission)) return entry->relation;
  }

  // The slow path: a table seen for the first time, a message the cache does not fit, or an
  // UPDATE leaving out columns in a new combination (unchanged TOAST, or a column dropped).
  std::optional<Relation> catalog;
  if (lookup_) {
    auto rel = lookup_(schema, table);
    if (rel.ok()) {
      catalog = std::move(rel).value();
    } else if (rel.status().code() != StatusCode::kNotFound) {
      return rel.status().WithContext("looking up " + schema + "." + table + " for wal2json");
    }
  }
  const bool has_tuple = action == 'I' || action == 'U';
  const auto& printed = has_tuple ? columns : identity;
  const Relation* base = catalog ? &*catalog : cached;
  std::shared_ptr<const Relation> result;
  if (action == 'D' || action == 'T') {
    // Only the identity (or nothing) is printed, and the cache did not fit it.
    if (catalog && Fits(*catalog, action, columns, identity, &positions, &identity_positions)) {
      result = std::make_shared<const Relation>(std::move(*catalog));
    } else {
      result = MergeRelation(schema, table, base, printed, identity, pk,
                             [](const Relation::Column&) { return true; });
    }
  } else {
    // An INSERT prints every column. An UPDATE leaves out unchanged TOAST columns: a column
    // it leaves out stays in the relation when the catalog still has it and (if a relation is
    // cached) the cache had it too. A column the catalog has but the cache lacks was added
    // after this change: had it existed with a stored value, an earlier change would have
    // named it. A column the cache has but the catalog lacks is gone; were it an unchanged
    // TOAST value of a column dropped only later, leaving it out of this change leaves the
    // target's value alone all the same.
    auto keep = [&](const Relation::Column& c) {
      if (action != 'U') return false;
      if (!cached || base == cached) return true;
      const Relation::Column* known = FindColumn(cached, c.name);
      return known && known->type_oid == c.type_oid;
    };
    result = MergeRelation(schema, table, base, printed, identity, pk, keep);
  }
  if (cached && *result == *cached) result = entry->relation;
  if (!Fits(*result, action, columns, identity, &positions, &identity_positions)) {
    return SchemaChanged("wal2json " + std::string(1, action) + " of " + schema + "." + table +
                         " names identity columns that neither the message nor the source "
                         "catalog has");
  }
  if (!entry || entry->relation != result) {
    if (relations_.size() >= kMaxCachedRelations) relations_.clear();
    entry = &relations_[key];
    entry->relation = result;
    entry->verified_omissions.clear();
  }
  if (action == 'U' && positions.size() != result->columns.size()) {
    if (entry->verified_omissions.size() >= kMaxVerifiedOmissions) {
      entry->verified_omissions.clear();
    }
    entry->verified_omissions.insert(OmissionKey(*result, positions));
  }
  return result;
}

StatusOr<Event> Wal2jsonDecoder::Decode(std::span<const uint8_t> message) {
  buffer_.resize(message.size() + simdjson::SIMDJSON_PADDING);
  if (!message.empty()) std::memcpy(buffer_.data(), message.data(), message.size());
  od::document doc;
  auto e = parser_->parser.iterate(buffer_.data(), message.size(), buffer_.size()).get(doc);
  if (e) return JsonError("document", e);
  Parsed& p = parser_->parsed;
  p.Reset();
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
  // Resolve left the positions of the message's columns and identity in `rel`.
  if (p.action != 'D') {
    const std::vector<size_t>& pos = parser_->positions;
    c.new_tuple.assign(rel->columns.size(), Datum::Unchanged());
    for (size_t i = 0; i < pos.size(); ++i) c.new_tuple[pos[i]] = std::move(p.columns[i].value);
  }
  if (p.action != 'I' && !p.identity.empty()) {
    const std::vector<size_t>& pos = parser_->identity_positions;
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
