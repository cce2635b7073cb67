// pgoutput protocol version 1 wire layout (PostgreSQL docs, "Logical Replication Message
// Formats"; src/backend/replication/logical/proto.c). All integers big-endian; String is
// NUL-terminated; LSNs are Int64; timestamps are Int64 microseconds since 2000-01-01.
//
//   Begin     'B' Int64 final_lsn  Int64 commit_time  Int32 xid
//   Commit    'C' Int8 flags(0)  Int64 commit_lsn  Int64 end_lsn  Int64 commit_time
//   Origin    'O' Int64 commit_lsn  String name
//   Relation  'R' Int32 relid  String namespace ("" = pg_catalog)  String relname
//                 Int8 replica_identity ('d','n','f','i')  Int16 ncols
//                 ncols x { Int8 flags (1 = part of the key)  String name  Int32 type_oid
//                           Int32 typmod }
//   Type      'Y' Int32 type_oid  String namespace  String name
//   Insert    'I' Int32 relid  'N' TupleData
//   Update    'U' Int32 relid  [ 'K' TupleData (old key) | 'O' TupleData (old row, FULL) ]
//                 'N' TupleData
//   Delete    'D' Int32 relid  ( 'K' TupleData | 'O' TupleData )
//   Truncate  'T' Int32 nrels  Int8 options (1 = CASCADE, 2 = RESTART IDENTITY)
//                 nrels x Int32 relid
//   Message   'M' Int8 flags (1 = transactional)  Int64 lsn  String prefix  Int32 length
//                 length x Byte content            (only with the `messages` option)
//   TupleData     Int16 ncols, ncols x one of
//                   'n'                      NULL
//                   'u'                      unchanged TOASTed value (not sent)
//                   't' Int32 len  len bytes value in text output format
//                 ('b' binary values exist only with the `binary` option, which we never set.)
//
// Protocol 2 (PostgreSQL 14+, asked for with `streaming 'on'`) adds in-progress transactions:
//
//   Stream Start  'S' Int32 xid  Int8 first_segment (1 = the transaction's first block)
//   Stream Stop   'E'
//   Stream Commit 'c' Int32 xid  Int8 flags(0)  Int64 commit_lsn  Int64 end_lsn  Int64 commit_time
//   Stream Abort  'A' Int32 xid  Int32 subxid
//
// and between Stream Start and Stream Stop, Relation, Type, Insert, Update, Delete, Truncate and
// Message carry an Int32 xid right after the type byte. Stream Commit/Abort come outside blocks.
// Under protocol 1 every one of these is kCorruption.
#include "cdc/pgoutput_decoder.h"

#include <utility>

#include "cdc/byte_reader.h"

namespace tenantsync::cdc {

namespace {

// Type names are resolved once per (oid, typmod); a schema has few distinct ones. The bound
// only matters against hostile input.
constexpr size_t kMaxCachedTypeNames = 100000;

Lsn ToLsn(uint64_t v) { return Lsn(v); }

// The end of Commit and Stream Commit: Int8 flags (unused, 0), Int64 commit_lsn, Int64 end_lsn,
// Int64 commit_time, and nothing after.
Status ReadCommitFields(ByteReader& r, Lsn* commit_lsn, Lsn* end_lsn, int64_t* commit_time_us) {
  TS_ASSIGN_OR_RETURN(uint8_t flags, r.ReadU8("flags"));
  (void)flags;
  TS_ASSIGN_OR_RETURN(uint64_t commit, r.ReadU64("commit_lsn"));
  TS_ASSIGN_OR_RETURN(uint64_t end, r.ReadU64("end_lsn"));
  TS_ASSIGN_OR_RETURN(int64_t ts, r.ReadI64("commit_time"));
  TS_RETURN_IF_ERROR(r.ExpectEnd());
  *commit_lsn = ToLsn(commit);
  *end_lsn = ToLsn(end);
  *commit_time_us = PgToUnixMicros(ts);
  return Status::Ok();
}

StatusOr<Tuple> ReadTuple(ByteReader& r, const Relation& rel) {
  TS_ASSIGN_OR_RETURN(uint16_t ncols, r.ReadU16("tuple column count"));
  if (ncols != rel.columns.size()) {
    return r.Error("tuple column count",
                   "is " + std::to_string(ncols) + " but relation " + rel.schema + "." +
                       rel.name + " has " + std::to_string(rel.columns.size()) + " columns");
  }
  // Every column takes at least its 1-byte kind: checked before reserving.
  TS_RETURN_IF_ERROR(r.Need(ncols, "tuple columns"));
  Tuple tuple;
  tuple.reserve(ncols);
  for (uint16_t i = 0; i < ncols; ++i) {
    TS_ASSIGN_OR_RETURN(uint8_t kind, r.ReadU8("tuple column kind"));
    switch (kind) {
      case 'n':
        tuple.push_back(Datum::Null());
        break;
      case 'u':
        tuple.push_back(Datum::Unchanged());
        break;
      case 't': {
        TS_ASSIGN_OR_RETURN(uint32_t len, r.ReadU32("tuple column length"));
        TS_ASSIGN_OR_RETURN(std::string_view v, r.ReadBytesView(len, "tuple column value"));
        tuple.push_back(Datum::Text(std::string(v)));
        break;
      }
      default:
        return r.Error("tuple column kind", "is " + std::to_string(kind) +
                                                "; expected 'n', 'u' or 't' (binary is never "
                                                "requested)");
    }
  }
  return tuple;
}

}  // namespace

std::shared_ptr<const Relation> PgoutputDecoder::FindRelation(uint32_t oid) const {
  auto it = relations_.find(oid);
  return it == relations_.end() ? nullptr : it->second;
}

StatusOr<std::string> PgoutputDecoder::TypeName(uint32_t oid, int32_t typmod) {
  if (!type_names_) return std::string();
  auto key = std::make_pair(oid, typmod);
  auto it = type_name_cache_.find(key);
  if (it != type_name_cache_.end()) return it->second;
  TS_ASSIGN_OR_RETURN(std::string name, type_names_(oid, typmod));
  if (type_name_cache_.size() >= kMaxCachedTypeNames) type_name_cache_.clear();
  type_name_cache_.emplace(key, name);
  return name;
}

StatusOr<Event> PgoutputDecoder::DecodeStreamControl(uint8_t type,
                                                     std::span<const uint8_t> body) {
  const char* what = type == 'S'   ? "pgoutput Stream Start"
                     : type == 'E' ? "pgoutput Stream Stop"
                     : type == 'c' ? "pgoutput Stream Commit"
                                   : "pgoutput Stream Abort";
  ByteReader r(body, what);
  if (protocol_version_ < 2) {
    return Corruption(std::string(what) + ": streaming message under protocol version 1");
  }
  if ((type == 'E') != in_stream_) {
    return Corruption(std::string(what) +
                      (in_stream_ ? ": inside a stream block" : ": outside a stream block"));
  }
  switch (type) {
    case 'S': {
      StreamStart st;
      TS_ASSIGN_OR_RETURN(st.xid, r.ReadU32("xid"));
      TS_ASSIGN_OR_RETURN(uint8_t first, r.ReadU8("first_segment"));
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      if (st.xid == 0) return r.Error("xid", "is 0");
      if (first > 1) return r.Error("first_segment", "is " + std::to_string(first));
      st.first_segment = first == 1;
      in_stream_ = true;
      stream_xid_ = st.xid;
      return Event(st);
    }
    case 'E':
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      in_stream_ = false;
      return Event(StreamStop{});
    case 'c': {
      StreamCommit c;
      TS_ASSIGN_OR_RETURN(c.xid, r.ReadU32("xid"));
      TS_RETURN_IF_ERROR(ReadCommitFields(r, &c.commit_lsn, &c.end_lsn, &c.commit_time_us));
      if (!c.commit_lsn.valid() || c.end_lsn < c.commit_lsn) {
        return r.Error("end_lsn", "is " + c.end_lsn.ToString() + " for commit_lsn " +
                                      c.commit_lsn.ToString());
      }
      return Event(c);
    }
    default: {
      StreamAbort a;
      TS_ASSIGN_OR_RETURN(a.xid, r.ReadU32("xid"));
      TS_ASSIGN_OR_RETURN(a.subxid, r.ReadU32("subxid"));
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      return Event(a);
    }
  }
}

StatusOr<Event> PgoutputDecoder::Decode(std::span<const uint8_t> message) {
  ByteReader head(message, "pgoutput message");
  TS_ASSIGN_OR_RETURN(uint8_t type, head.ReadU8("message type"));
  std::span<const uint8_t> body = message.subspan(1);
  if (type == 'S' || type == 'E' || type == 'c' || type == 'A') {
    return DecodeStreamControl(type, body);
  }
  if (in_stream_) {
    // Inside a block every message but Origin names its (sub)transaction first.
    if (type == 'B' || type == 'C') {
      return Corruption(std::string("pgoutput ") + (type == 'B' ? "Begin" : "Commit") +
                        " inside a stream block");
    }
    if (type != 'O') {
      ByteReader r(body, "pgoutput streamed message");
      TS_ASSIGN_OR_RETURN(stream_xid_, r.ReadU32("xid"));
      body = body.subspan(4);
    }
  }

  switch (type) {
    case 'B': {
      ByteReader r(body, "pgoutput Begin");
      BeginTxn b;
      TS_ASSIGN_OR_RETURN(uint64_t final_lsn, r.ReadU64("final_lsn"));
      TS_ASSIGN_OR_RETURN(int64_t ts, r.ReadI64("commit_time"));
      TS_ASSIGN_OR_RETURN(b.xid, r.ReadU32("xid"));
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      b.final_lsn = ToLsn(final_lsn);
      b.commit_time_us = PgToUnixMicros(ts);
      return Event(b);
    }
    case 'C': {
      ByteReader r(body, "pgoutput Commit");
      CommitTxn c;
      TS_RETURN_IF_ERROR(ReadCommitFields(r, &c.commit_lsn, &c.end_lsn, &c.commit_time_us));
      return Event(c);
    }
    case 'O': {
      ByteReader r(body, "pgoutput Origin");
      OriginInfo o;
      TS_ASSIGN_OR_RETURN(uint64_t lsn, r.ReadU64("commit_lsn"));
      TS_ASSIGN_OR_RETURN(o.name, r.ReadCString("origin name"));
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      o.commit_lsn = ToLsn(lsn);
      return Event(std::move(o));
    }
    case 'R': {
      ByteReader r(body, "pgoutput Relation");
      auto rel = std::make_shared<Relation>();
      TS_ASSIGN_OR_RETURN(rel->oid, r.ReadU32("relation oid"));
      TS_ASSIGN_OR_RETURN(rel->schema, r.ReadCString("namespace"));
      if (rel->schema.empty()) rel->schema = "pg_catalog";
      TS_ASSIGN_OR_RETURN(rel->name, r.ReadCString("relation name"));
      TS_ASSIGN_OR_RETURN(uint8_t ident, r.ReadU8("replica identity"));
      if (ident != 'd' && ident != 'n' && ident != 'f' && ident != 'i') {
        return r.Error("replica identity", "is " + std::to_string(ident) +
                                               "; expected 'd', 'n', 'f' or 'i'");
      }
      rel->replica_identity = static_cast<char>(ident);
      TS_ASSIGN_OR_RETURN(uint16_t ncols, r.ReadU16("column count"));
      // Each column needs at least flags(1) + name NUL(1) + oid(4) + typmod(4) bytes.
      TS_RETURN_IF_ERROR(r.Need(size_t{ncols} * 10, "columns"));
      rel->columns.reserve(ncols);
      for (uint16_t i = 0; i < ncols; ++i) {
        Relation::Column col;
        TS_ASSIGN_OR_RETURN(uint8_t flags, r.ReadU8("column flags"));
        col.is_key = (flags & 1) != 0;
        TS_ASSIGN_OR_RETURN(col.name, r.ReadCString("column name"));
        TS_ASSIGN_OR_RETURN(col.type_oid, r.ReadU32("column type oid"));
        TS_ASSIGN_OR_RETURN(col.type_modifier, r.ReadI32("column typmod"));
        rel->columns.push_back(std::move(col));
      }
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      for (auto& col : rel->columns) {
        TS_ASSIGN_OR_RETURN(col.type_name, TypeName(col.type_oid, col.type_modifier));
      }
      std::shared_ptr<const Relation> frozen = std::move(rel);
      relations_[frozen->oid] = frozen;
      return Event(RelationUpdate{frozen});
    }
    case 'Y': {
      ByteReader r(body, "pgoutput Type");
      TypeInfo t;
      TS_ASSIGN_OR_RETURN(t.oid, r.ReadU32("type oid"));
      TS_ASSIGN_OR_RETURN(t.schema, r.ReadCString("type namespace"));
      TS_ASSIGN_OR_RETURN(t.name, r.ReadCString("type name"));
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      return Event(std::move(t));
    }
    case 'I':
    case 'U':
    case 'D': {
      const char* what = type == 'I' ? "pgoutput Insert" : type == 'U' ? "pgoutput Update"
                                                                       : "pgoutput Delete";
      ByteReader r(body, what);
      TS_ASSIGN_OR_RETURN(uint32_t oid, r.ReadU32("relation oid"));
      auto rel = FindRelation(oid);
      if (!rel) {
        return r.Error("relation oid", "names relation " + std::to_string(oid) +
                                           " for which no Relation message was received");
      }
      Change c;
      c.op = type == 'I' ? ChangeOp::kInsert : type == 'U' ? ChangeOp::kUpdate : ChangeOp::kDelete;
      c.relation = rel;
      TS_ASSIGN_OR_RETURN(uint8_t marker, r.ReadU8("tuple marker"));
      if (type != 'I' && (marker == 'K' || marker == 'O')) {
        TS_ASSIGN_OR_RETURN(c.old_tuple, ReadTuple(r, *rel));
        if (type == 'U') {
          TS_ASSIGN_OR_RETURN(marker, r.ReadU8("new tuple marker"));
        }
      } else if (type == 'D') {
        return r.Error("tuple marker", "is " + std::to_string(marker) + "; expected 'K' or 'O'");
      }
      if (type != 'D') {
        if (marker != 'N') {
          return r.Error("tuple marker", "is " + std::to_string(marker) + "; expected 'N'");
        }
        TS_ASSIGN_OR_RETURN(c.new_tuple, ReadTuple(r, *rel));
      }
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      return Event(std::move(c));
    }
    case 'T': {
      ByteReader r(body, "pgoutput Truncate");
      TS_ASSIGN_OR_RETURN(uint32_t nrels, r.ReadU32("relation count"));
      TS_ASSIGN_OR_RETURN(uint8_t options, r.ReadU8("options"));
      TS_RETURN_IF_ERROR(r.Need(size_t{nrels} * 4, "relation oids"));
      if (nrels == 0) return r.Error("relation count", "is 0");
      Change c;
      c.op = ChangeOp::kTruncate;
      c.truncate_options = options;
      c.truncated.reserve(nrels);
      for (uint32_t i = 0; i < nrels; ++i) {
        TS_ASSIGN_OR_RETURN(uint32_t oid, r.ReadU32("relation oid"));
        auto rel = FindRelation(oid);
        if (!rel) {
          return r.Error("relation oid", "names relation " + std::to_string(oid) +
                                             " for which no Relation message was received");
        }
        c.truncated.push_back(std::move(rel));
      }
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      c.relation = c.truncated.front();
      return Event(std::move(c));
    }
    case 'M': {
      ByteReader r(body, "pgoutput Message");
      TS_ASSIGN_OR_RETURN(uint8_t flags, r.ReadU8("flags"));
      TS_ASSIGN_OR_RETURN(uint64_t lsn, r.ReadU64("lsn"));
      Change c;
      c.op = ChangeOp::kMessage;
      c.message_transactional = (flags & 1) != 0;
      TS_ASSIGN_OR_RETURN(c.message_prefix, r.ReadCString("prefix"));
      TS_ASSIGN_OR_RETURN(uint32_t len, r.ReadU32("content length"));
      TS_ASSIGN_OR_RETURN(c.message_content, r.ReadBytes(len, "content"));
      TS_RETURN_IF_ERROR(r.ExpectEnd());
      if (!c.message_transactional) return Event(StandaloneMessage{ToLsn(lsn), std::move(c)});
      return Event(std::move(c));
    }
    default:
      return Corruption("pgoutput message: unknown message type " + std::to_string(type) +
                        " at offset 0 (protocol version " + std::to_string(protocol_version_) +
                        " was requested)");
  }
}

}  // namespace tenantsync::cdc
