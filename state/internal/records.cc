#include "state/internal/records.h"

#include "state/internal/codec.h"

namespace tenantsync::state::internal {

namespace {

Status Bad(std::string_view what, std::string_view key, std::string_view problem) {
  std::string m = "state record ";
  m += what;
  if (!key.empty()) {
    m += " ";
    m += HexKey(key);
  }
  m += " is malformed: ";
  m += problem;
  return Corruption(std::move(m));
}

// Reads the version byte every record starts with.
Status ReadVersion(ByteReader* r, std::string_view what, std::string_view key) {
  uint8_t v = 0;
  if (!r->ReadU8(&v)) return Bad(what, key, "empty");
  if (v != kRecordVersion) {
    return Bad(what, key,
               "record version " + std::to_string(v) + " is not " + std::to_string(kRecordVersion) +
                   " (written by another tenantsync version?)");
  }
  return Status::Ok();
}

Status CheckDone(const ByteReader& r, std::string_view what, std::string_view key) {
  if (!r.done()) return Bad(what, key, std::to_string(r.remaining()) + " trailing bytes");
  return Status::Ok();
}

void PutLsn(std::string* out, Lsn l) { PutFixed64BE(out, l.value()); }
void PutI64(std::string* out, int64_t v) { PutFixed64BE(out, static_cast<uint64_t>(v)); }

bool ReadLsn(ByteReader* r, Lsn* l) {
  uint64_t v = 0;
  if (!r->ReadFixed64BE(&v)) return false;
  *l = Lsn(v);
  return true;
}
bool ReadI64(ByteReader* r, int64_t* v) {
  uint64_t u = 0;
  if (!r->ReadFixed64BE(&u)) return false;
  *v = static_cast<int64_t>(u);
  return true;
}
bool ReadString(ByteReader* r, std::string* s) {
  std::string_view v;
  if (!r->ReadLengthPrefixed(&v)) return false;
  s->assign(v.data(), v.size());
  return true;
}

void PutTuple(std::string* out, const Tuple& t) {
  PutVarint64(out, t.size());
  for (const Datum& d : t) {
    out->push_back(static_cast<char>(d.kind));
    if (d.kind == Datum::Kind::kText) PutLengthPrefixed(out, d.text);
  }
}

bool ReadTuple(ByteReader* r, Tuple* t, std::string* problem) {
  uint64_t n = 0;
  if (!r->ReadVarint64(&n)) {
    *problem = "truncated tuple length";
    return false;
  }
  if (n > r->remaining()) {  // every datum takes at least one byte
    *problem = "tuple of " + std::to_string(n) + " columns is longer than the record";
    return false;
  }
  t->resize(n);
  for (Datum& d : *t) {
    uint8_t k = 0;
    if (!r->ReadU8(&k)) {
      *problem = "truncated datum";
      return false;
    }
    switch (static_cast<Datum::Kind>(k)) {
      case Datum::Kind::kNull:
      case Datum::Kind::kUnchanged:
        d.kind = static_cast<Datum::Kind>(k);
        d.text.clear();
        break;
      case Datum::Kind::kText:
        d.kind = Datum::Kind::kText;
        if (!ReadString(r, &d.text)) {
          *problem = "truncated datum text";
          return false;
        }
        break;
      default:
        *problem = "unknown datum kind " + std::to_string(k);
        return false;
    }
  }
  return true;
}

}  // namespace

std::string EncodeFormatMarker(const FormatMarker& m) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutLengthPrefixed(&out, kFormatMagic);
  PutVarint64(&out, m.format_version);
  PutLengthPrefixed(&out, m.pipeline);
  PutI64(&out, m.created_us);
  return out;
}

Status DecodeFormatMarker(std::string_view value, FormatMarker* m) {
  constexpr std::string_view kWhat = "format marker";
  ByteReader r(value);
  uint8_t v = 0;
  std::string_view magic;
  if (!r.ReadU8(&v) || !r.ReadLengthPrefixed(&magic) || magic != kFormatMagic) {
    return Bad(kWhat, {}, "not a tenantsync format marker");
  }
  uint64_t format = 0;
  if (!r.ReadVarint64(&format) || format > UINT32_MAX) return Bad(kWhat, {}, "bad format version");
  m->format_version = static_cast<uint32_t>(format);
  // A newer format may have a longer marker: the caller reports the version, not the layout.
  // Formats 1 and 2 have the same marker.
  if (format > kFormatVersion) return Status::Ok();
  if (!ReadString(&r, &m->pipeline) || !ReadI64(&r, &m->created_us)) {
    return Bad(kWhat, {}, "truncated");
  }
  return CheckDone(r, kWhat, {});
}

std::string EncodeTxn(const TxnRecord& t) {
  std::string out;
  out.reserve(64);
  out.push_back(static_cast<char>(kRecordVersion));
  PutVarint64(&out, t.xid);
  PutLsn(&out, t.commit_lsn);
  PutLsn(&out, t.end_lsn);
  PutI64(&out, t.commit_time_us);
  PutVarint64(&out, t.seq);
  PutVarint64(&out, t.changes);
  PutVarint64(&out, t.bytes);
  PutI64(&out, t.journaled_at_us);
  return out;
}

Status DecodeTxn(std::string_view key, std::string_view value, TxnRecord* t) {
  constexpr std::string_view kWhat = "journal_txn";
  if (key.size() != 8) return Bad(kWhat, key, "key is not 8 bytes");
  ByteReader r(value);
  TS_RETURN_IF_ERROR(ReadVersion(&r, kWhat, key));
  uint64_t xid = 0;
  if (!r.ReadVarint64(&xid) || xid > UINT32_MAX || !ReadLsn(&r, &t->commit_lsn) ||
      !ReadLsn(&r, &t->end_lsn) || !ReadI64(&r, &t->commit_time_us) || !r.ReadVarint64(&t->seq) ||
      !r.ReadVarint64(&t->changes) || !r.ReadVarint64(&t->bytes) ||
      !ReadI64(&r, &t->journaled_at_us)) {
    return Bad(kWhat, key, "truncated");
  }
  t->xid = static_cast<uint32_t>(xid);
  TS_RETURN_IF_ERROR(CheckDone(r, kWhat, key));
  if (t->commit_lsn.value() != DecodeFixed64BE(key.data())) {
    return Bad(kWhat, key, "commit LSN " + t->commit_lsn.ToString() + " does not match its key");
  }
  return Status::Ok();
}

std::string EncodeWriterState(const WriterState& s) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutLsn(&out, s.last_commit_lsn);
  PutLsn(&out, s.last_end_lsn);
  PutI64(&out, s.last_commit_time_us);
  PutVarint64(&out, s.last_seq);
  PutVarint64(&out, s.appended_txns);
  PutVarint64(&out, s.appended_changes);
  PutVarint64(&out, s.appended_bytes);
  PutLsn(&out, s.received_lsn);
  return out;
}

Status DecodeWriterState(std::string_view value, WriterState* s) {
  constexpr std::string_view kWhat = "journal_meta/writer";
  ByteReader r(value);
  TS_RETURN_IF_ERROR(ReadVersion(&r, kWhat, {}));
  if (!ReadLsn(&r, &s->last_commit_lsn) || !ReadLsn(&r, &s->last_end_lsn) ||
      !ReadI64(&r, &s->last_commit_time_us) || !r.ReadVarint64(&s->last_seq) ||
      !r.ReadVarint64(&s->appended_txns) || !r.ReadVarint64(&s->appended_changes) ||
      !r.ReadVarint64(&s->appended_bytes) || !ReadLsn(&r, &s->received_lsn)) {
    return Bad(kWhat, {}, "truncated");
  }
  return CheckDone(r, kWhat, {});
}

std::string EncodeTrimState(const TrimState& s) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutLsn(&out, s.trimmed_through);
  PutVarint64(&out, s.trimmed_seq_through);
  PutVarint64(&out, s.trimmed_txns);
  PutVarint64(&out, s.trimmed_changes);
  PutVarint64(&out, s.trimmed_bytes);
  return out;
}

Status DecodeTrimState(std::string_view value, TrimState* s) {
  constexpr std::string_view kWhat = "journal_meta/trim";
  ByteReader r(value);
  TS_RETURN_IF_ERROR(ReadVersion(&r, kWhat, {}));
  if (!ReadLsn(&r, &s->trimmed_through) || !r.ReadVarint64(&s->trimmed_seq_through) ||
      !r.ReadVarint64(&s->trimmed_txns) || !r.ReadVarint64(&s->trimmed_changes) ||
      !r.ReadVarint64(&s->trimmed_bytes)) {
    return Bad(kWhat, {}, "truncated");
  }
  return CheckDone(r, kWhat, {});
}

std::string EncodeApplied(const AppliedState& s) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutLsn(&out, s.lsn);
  PutI64(&out, s.commit_time_us);
  return out;
}

Status DecodeApplied(std::string_view value, AppliedState* s) {
  constexpr std::string_view kWhat = "journal_meta/applied";
  ByteReader r(value);
  TS_RETURN_IF_ERROR(ReadVersion(&r, kWhat, {}));
  if (!ReadLsn(&r, &s->lsn) || !ReadI64(&r, &s->commit_time_us)) {
    return Bad(kWhat, {}, "truncated");
  }
  return CheckDone(r, kWhat, {});
}

std::string EncodeLsnRecord(Lsn lsn) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutLsn(&out, lsn);
  return out;
}

Status DecodeLsnRecord(std::string_view value, Lsn* lsn) {
  constexpr std::string_view kWhat = "journal_meta/idle";
  ByteReader r(value);
  TS_RETURN_IF_ERROR(ReadVersion(&r, kWhat, {}));
  if (!ReadLsn(&r, lsn)) return Bad(kWhat, {}, "truncated");
  return CheckDone(r, kWhat, {});
}

void EncodeChange(const Change& c, uint64_t fingerprint, const std::vector<uint64_t>& truncated,
                  std::string* out) {
  out->clear();
  AppendChange(c, fingerprint, truncated, out);
}

void AppendChange(const Change& c, uint64_t fingerprint, const std::vector<uint64_t>& truncated,
                  std::string* out) {
  out->push_back(static_cast<char>(kRecordVersion));
  out->push_back(static_cast<char>(c.op));
  PutFixed64BE(out, fingerprint);
  PutTuple(out, c.new_tuple);
  PutTuple(out, c.old_tuple);
  PutVarint64(out, truncated.size());
  for (uint64_t fp : truncated) PutFixed64BE(out, fp);
  out->push_back(static_cast<char>(c.truncate_options));
  out->push_back(c.message_transactional ? 1 : 0);
  PutLengthPrefixed(out, c.message_prefix);
  PutLengthPrefixed(out, c.message_content);
}

Status DecodeChange(std::string_view key, std::string_view value, RelationSource* relations,
                    Change* c) {
  constexpr std::string_view kWhat = "journal_change";
  ByteReader r(value);
  TS_RETURN_IF_ERROR(ReadVersion(&r, kWhat, key));
  uint8_t op = 0;
  if (!r.ReadU8(&op)) return Bad(kWhat, key, "truncated");
  switch (static_cast<ChangeOp>(op)) {
    case ChangeOp::kInsert:
    case ChangeOp::kUpdate:
    case ChangeOp::kDelete:
    case ChangeOp::kTruncate:
    case ChangeOp::kMessage:
      c->op = static_cast<ChangeOp>(op);
      break;
    default:
      return Bad(kWhat, key, "unknown change op " + std::to_string(op));
  }
  uint64_t fp = 0;
  if (!r.ReadFixed64BE(&fp)) return Bad(kWhat, key, "truncated");
  std::string problem;
  if (!ReadTuple(&r, &c->new_tuple, &problem) || !ReadTuple(&r, &c->old_tuple, &problem)) {
    return Bad(kWhat, key, problem);
  }
  uint64_t ntrunc = 0;
  if (!r.ReadVarint64(&ntrunc) || ntrunc > r.remaining() / 8) {
    return Bad(kWhat, key, "bad truncated relation count");
  }
  c->truncated.clear();
  for (uint64_t i = 0; i < ntrunc; ++i) {
    uint64_t tfp = 0;
    if (!r.ReadFixed64BE(&tfp)) return Bad(kWhat, key, "truncated");
    auto rel = relations->Get(tfp);
    if (!rel.ok()) return rel.status().WithContext("journal_change " + HexKey(key));
    c->truncated.push_back(std::move(rel).value());
  }
  uint8_t topts = 0;
  uint8_t transactional = 0;
  if (!r.ReadU8(&topts) || !r.ReadU8(&transactional) || transactional > 1 ||
      !ReadString(&r, &c->message_prefix) || !ReadString(&r, &c->message_content)) {
    return Bad(kWhat, key, "truncated or bad message fields");
  }
  c->truncate_options = topts;
  c->message_transactional = transactional == 1;
  TS_RETURN_IF_ERROR(CheckDone(r, kWhat, key));
  if (fp == 0) {
    c->relation.reset();
  } else {
    auto rel = relations->Get(fp);
    if (!rel.ok()) return rel.status().WithContext("journal_change " + HexKey(key));
    c->relation = std::move(rel).value();
  }
  return Status::Ok();
}

namespace {

// Writes `v` big-endian over the 4 bytes at `p` (a length or count reserved before it was known).
void StoreFixed32BE(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (24 - 8 * i));
}

}  // namespace

void ChangeBlockBuilder::Add(const Change& change, uint64_t fingerprint,
                             const std::vector<uint64_t>& truncated) {
  const size_t at = buf_.size();
  buf_.append(4, '\0');  // the record's length, known once it is written
  AppendChange(change, fingerprint, truncated, &buf_);
  StoreFixed32BE(&buf_[at], static_cast<uint32_t>(buf_.size() - at - 4));
  ++count_;
}

std::string_view ChangeBlockBuilder::Finish() {
  StoreFixed32BE(&buf_[1], count_);
  return buf_;
}

void ChangeBlockBuilder::Clear() {
  buf_.clear();
  buf_.push_back(static_cast<char>(kChangeBlockVersion));
  buf_.append(4, '\0');
  count_ = 0;
}

Status ChangeBlockReader::Reset(std::string_view key, std::string_view value) {
  constexpr std::string_view kWhat = "journal_change";
  key_ = key;
  value_ = value;
  read_ = 0;
  if (value.empty()) return Bad(kWhat, key, "empty");
  const auto version = static_cast<uint8_t>(value[0]);
  if (version == kRecordVersion) {  // one change (state format 1)
    single_ = true;
    count_ = 1;
    pos_ = 0;
    return Status::Ok();
  }
  if (version != kChangeBlockVersion) {
    return Bad(kWhat, key,
               "record version " + std::to_string(version) +
                   " is not a change or a block of changes (written by another tenantsync "
                   "version?)");
  }
  single_ = false;
  ByteReader r(value.substr(1));
  uint32_t count = 0;
  if (!r.ReadFixed32BE(&count)) return Bad(kWhat, key, "truncated block header");
  if (count == 0) return Bad(kWhat, key, "a block of 0 changes");
  count_ = count;
  pos_ = 5;
  return Status::Ok();
}

StatusOr<bool> ChangeBlockReader::Next(RelationSource* relations, Change* change) {
  constexpr std::string_view kWhat = "journal_change";
  if (done()) return false;
  std::string_view record;
  if (single_) {
    record = value_;
    pos_ = value_.size();
  } else {
    ByteReader r(value_.substr(pos_));
    uint32_t len = 0;
    if (!r.ReadFixed32BE(&len) || len > r.remaining()) {
      return Bad(kWhat, key_,
                 "change " + std::to_string(read_ + 1) + " of " + std::to_string(count_) +
                     " runs past the end of its block");
    }
    record = value_.substr(pos_ + 4, len);
    pos_ += 4 + len;
  }
  TS_RETURN_IF_ERROR(DecodeChange(key_, record, relations, change));
  ++read_;
  if (done() && pos_ != value_.size()) {
    return Bad(kWhat, key_, std::to_string(value_.size() - pos_) + " trailing bytes");
  }
  return true;
}

std::string EncodeRelation(const Relation& rel) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutFixed32BE(&out, rel.oid);
  PutLengthPrefixed(&out, rel.schema);
  PutLengthPrefixed(&out, rel.name);
  out.push_back(rel.replica_identity);
  PutVarint64(&out, rel.columns.size());
  for (const auto& col : rel.columns) {
    PutLengthPrefixed(&out, col.name);
    PutLengthPrefixed(&out, col.type_name);
    PutFixed32BE(&out, col.type_oid);
    PutFixed32BE(&out, static_cast<uint32_t>(col.type_modifier));
    out.push_back(col.is_key ? 1 : 0);
  }
  return out;
}

Status DecodeRelation(std::string_view key, std::string_view value, Relation* rel) {
  constexpr std::string_view kWhat = "relations";
  if (key.size() != 8) return Bad(kWhat, key, "key is not 8 bytes");
  ByteReader r(value);
  TS_RETURN_IF_ERROR(ReadVersion(&r, kWhat, key));
  uint8_t ident = 0;
  uint64_t ncols = 0;
  if (!r.ReadFixed32BE(&rel->oid) || !ReadString(&r, &rel->schema) || !ReadString(&r, &rel->name) ||
      !r.ReadU8(&ident) || !r.ReadVarint64(&ncols) || ncols > r.remaining()) {
    return Bad(kWhat, key, "truncated");
  }
  rel->replica_identity = static_cast<char>(ident);
  rel->columns.resize(ncols);
  for (auto& col : rel->columns) {
    uint32_t typmod = 0;
    uint8_t is_key = 0;
    if (!ReadString(&r, &col.name) || !ReadString(&r, &col.type_name) ||
        !r.ReadFixed32BE(&col.type_oid) || !r.ReadFixed32BE(&typmod) || !r.ReadU8(&is_key) ||
        is_key > 1) {
      return Bad(kWhat, key, "truncated column");
    }
    col.type_modifier = static_cast<int32_t>(typmod);
    col.is_key = is_key == 1;
  }
  TS_RETURN_IF_ERROR(CheckDone(r, kWhat, key));
  if (rel->Fingerprint() != DecodeFixed64BE(key.data())) {
    return Bad(
        kWhat, key,
        "definition of " + rel->schema + "." + rel->name + " does not match its fingerprint");
  }
  return Status::Ok();
}

std::string EncodeDeadLetter(const DeadLetter& d) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutLengthPrefixed(&out, d.table);
  PutLengthPrefixed(&out, d.key);
  PutLengthPrefixed(&out, d.reason);
  PutLengthPrefixed(&out, d.phase);
  PutLsn(&out, d.lsn);
  PutI64(&out, d.time_us);
  return out;
}

Status DecodeDeadLetter(std::string_view key, std::string_view value, DeadLetter* d) {
  constexpr std::string_view kWhat = "dead_letters";
  if (key.size() != 8) return Bad(kWhat, key, "key is not 8 bytes");
  ByteReader r(value);
  TS_RETURN_IF_ERROR(ReadVersion(&r, kWhat, key));
  if (!ReadString(&r, &d->table) || !ReadString(&r, &d->key) || !ReadString(&r, &d->reason) ||
      !ReadString(&r, &d->phase) || !ReadLsn(&r, &d->lsn) || !ReadI64(&r, &d->time_us)) {
    return Bad(kWhat, key, "truncated");
  }
  d->id = DecodeFixed64BE(key.data());
  return CheckDone(r, kWhat, key);
}

std::string EncodeCheckpoint(const Checkpoint& c) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutVarint64(&out, c.id);
  PutLsn(&out, c.lsn);
  PutI64(&out, c.time_us);
  PutVarint64(&out, c.transactions);
  return out;
}

Status DecodeCheckpoint(std::string_view key, std::string_view value, Checkpoint* c) {
  constexpr std::string_view kWhat = "journal_meta checkpoint";
  ByteReader r(value);
  TS_RETURN_IF_ERROR(ReadVersion(&r, kWhat, key));
  if (!r.ReadVarint64(&c->id) || !ReadLsn(&r, &c->lsn) || !ReadI64(&r, &c->time_us) ||
      !r.ReadVarint64(&c->transactions)) {
    return Bad(kWhat, key, "truncated");
  }
  return CheckDone(r, kWhat, key);
}

}  // namespace tenantsync::state::internal
