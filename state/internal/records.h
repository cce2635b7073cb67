// The record layouts of the state directory. Every value starts with a format version byte
// (kRecordVersion); a decoder meets a newer version or any malformed byte with kCorruption naming
// the column family and key, never a crash or a partial value.
//
// Column families and keys (all integers big-endian, so bytewise order is numeric order):
//   default         "tenantsync.format"            -> FormatMarker
//   meta            user key                        -> user value (StateStore::PutMeta)
//   journal_txn     commit_lsn (8)                  -> TxnRecord
//   journal_change  txn seq (8) + change index (8)  -> change (relations by fingerprint)
//   relations       fingerprint (8)                 -> Relation
//   dead_letters    id (8)                          -> DeadLetter
//   journal_meta    "writer" / "trim" / "applied" / "idle"  -> the records below
//                   "ckpt/" + id (8)                -> Checkpoint
// Change keys use a local transaction sequence, not the commit LSN, because wal2json only tells
// the commit LSN at commit; the TxnRecord maps commit LSN -> seq.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/change.h"
#include "core/lsn.h"
#include "core/status.h"
#include "state/journal.h"
#include "state/state_store.h"

namespace tenantsync::state::internal {

inline constexpr uint8_t kRecordVersion = 1;
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr char kFormatMagic[] = "tenantsync-state";
inline constexpr char kFormatKey[] = "tenantsync.format";

struct FormatMarker {
  uint32_t format_version = kFormatVersion;
  std::string pipeline;
  int64_t created_us = 0;
};

struct TxnRecord {
  uint32_t xid = 0;
  Lsn commit_lsn;
  Lsn end_lsn;
  int64_t commit_time_us = 0;
  uint64_t seq = 0;  // key prefix of its changes in journal_change
  uint64_t changes = 0;
  uint64_t bytes = 0;           // encoded bytes of its changes and this record (size accounting)
  int64_t journaled_at_us = 0;  // local wall time of Commit; retention age counts from here
};

// The writer's durable position, rewritten in every Commit's batch.
struct WriterState {
  Lsn last_commit_lsn;
  Lsn last_end_lsn;
  int64_t last_commit_time_us = 0;
  uint64_t last_seq = 0;       // seq of the last committed transaction
  uint64_t appended_txns = 0;  // totals ever committed (held = appended - trimmed)
  uint64_t appended_changes = 0;
  uint64_t appended_bytes = 0;
  Lsn received_lsn;
};

// What retention has deleted so far, rewritten in every trim's batch.
struct TrimState {
  Lsn trimmed_through;  // commit LSN of the newest trimmed transaction
  uint64_t trimmed_seq_through = 0;
  uint64_t trimmed_txns = 0;
  uint64_t trimmed_changes = 0;
  uint64_t trimmed_bytes = 0;
};

struct AppliedState {
  Lsn lsn;
  int64_t commit_time_us = 0;
};

// Looks relations up by fingerprint for change decoding.
class RelationSource {
 public:
  virtual ~RelationSource() = default;
  virtual StatusOr<std::shared_ptr<const Relation>> Get(uint64_t fingerprint) = 0;
};

std::string EncodeFormatMarker(const FormatMarker& m);
Status DecodeFormatMarker(std::string_view value, FormatMarker* m);

std::string EncodeTxn(const TxnRecord& r);
Status DecodeTxn(std::string_view key, std::string_view value, TxnRecord* r);

std::string EncodeWriterState(const WriterState& s);
Status DecodeWriterState(std::string_view value, WriterState* s);
std::string EncodeTrimState(const TrimState& s);
Status DecodeTrimState(std::string_view value, TrimState* s);
std::string EncodeApplied(const AppliedState& s);
Status DecodeApplied(std::string_view value, AppliedState* s);
std::string EncodeLsnRecord(Lsn lsn);
Status DecodeLsnRecord(std::string_view value, Lsn* lsn);

// `fingerprint` / `truncated` are the fingerprints of change.relation / change.truncated.
void EncodeChange(const Change& change, uint64_t fingerprint,
                  const std::vector<uint64_t>& truncated, std::string* out);
// Decodes into `change`, reusing its buffers. `key` only names the record in errors.
Status DecodeChange(std::string_view key, std::string_view value, RelationSource* relations,
                    Change* change);

std::string EncodeRelation(const Relation& r);
// Also checks that the decoded definition has the fingerprint of its key.
Status DecodeRelation(std::string_view key, std::string_view value, Relation* r);

std::string EncodeDeadLetter(const DeadLetter& d);
Status DecodeDeadLetter(std::string_view key, std::string_view value, DeadLetter* d);

std::string EncodeCheckpoint(const Checkpoint& c);
Status DecodeCheckpoint(std::string_view key, std::string_view value, Checkpoint* c);

}  // namespace tenantsync::state::internal
