// The record layouts of the state directory. Every value starts with a format version byte
// (kRecordVersion); a decoder meets a newer version or any malformed byte with kCorruption naming
// the column family and key, never a crash or a partial value.
//
// Column families and keys (all integers big-endian, so bytewise order is numeric order):
//   default         "tenantsync.format"            -> FormatMarker
//   meta            user key                        -> user value (StateStore::PutMeta)
//   journal_txn     commit_lsn (8)                  -> TxnRecord
//   journal_change  txn seq (8) + change index (8)  -> block of changes (relations by
//                                                      fingerprint), keyed by its first change
//   relations       fingerprint (8)                 -> Relation
//   dead_letters    id (8)                          -> DeadLetter
//   journal_meta    "writer" / "trim" / "applied" / "idle"  -> the records below
//                   "ckpt/" + id (8)                -> Checkpoint
// Change keys use a local transaction sequence, not the commit LSN, because wal2json only tells
// the commit LSN at commit; the TxnRecord maps commit LSN -> seq.
//
// Format versions (FormatMarker): 1 kept one change per journal_change key; 2 keeps blocks of
// consecutive changes of one transaction (ChangeBlockBuilder: one RocksDB entry per ~64 KB
// instead of one per change). Format 2 reads both; a format-1 directory is marked 2 when opened
// for writing, so an older binary then says it was written by a newer one.
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
// The first byte of a journal_change value that holds a block of changes (format 2).
inline constexpr uint8_t kChangeBlockVersion = 2;
inline constexpr uint32_t kFormatVersion = 2;
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
// The same record appended to `out`.
void AppendChange(const Change& change, uint64_t fingerprint,
                  const std::vector<uint64_t>& truncated, std::string* out);
// Decodes into `change`, reusing its buffers. `key` only names the record in errors.
Status DecodeChange(std::string_view key, std::string_view value, RelationSource* relations,
                    Change* change);

// A journal_change block: kChangeBlockVersion, the change count (fixed32), then per change its
// record's length (fixed32) and the record (EncodeChange). Built in place, one copy per change.
class ChangeBlockBuilder {
 public:
  ChangeBlockBuilder() { Clear(); }
  void Add(const Change& change, uint64_t fingerprint, const std::vector<uint64_t>& truncated);
  uint32_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  size_t size() const { return buf_.size(); }
  // The value to store; valid until the next Add or Clear.
  std::string_view Finish();
  void Clear();

 private:
  std::string buf_;
  uint32_t count_ = 0;
};

// Reads the changes of one journal_change value: a block, or a single change record (format 1).
// The value is not copied: it must outlive the reads.
class ChangeBlockReader {
 public:
  // Checks the header; `key` names the record in errors. The count is at least 1.
  Status Reset(std::string_view key, std::string_view value);
  uint64_t count() const { return count_; }
  // Every change read (also true before the first Reset).
  bool done() const { return read_ == count_; }
  // The next change into `change` (reusing its buffers); false when done(). Reading the last
  // change also checks that the value ends with it.
  StatusOr<bool> Next(RelationSource* relations, Change* change);

 private:
  std::string_view key_;
  std::string_view value_;
  size_t pos_ = 0;
  uint64_t count_ = 0;
  uint64_t read_ = 0;
  bool single_ = false;
};

std::string EncodeRelation(const Relation& r);
// Also checks that the decoded definition has the fingerprint of its key.
Status DecodeRelation(std::string_view key, std::string_view value, Relation* r);

std::string EncodeDeadLetter(const DeadLetter& d);
Status DecodeDeadLetter(std::string_view key, std::string_view value, DeadLetter* d);

std::string EncodeCheckpoint(const Checkpoint& c);
Status DecodeCheckpoint(std::string_view key, std::string_view value, Checkpoint* c);

}  // namespace tenantsync::state::internal
