// The RocksDB database behind a state directory: opening (lock, foreign-directory and format
// checks), column family handles, and the translation of RocksDB errors into Status.
//
// Lifetime: a Db owns the rocksdb::DB, its column family handles, the pid lock file and, for a
// read-only open, the secondary instance's scratch directory; everything is released by the
// destructor, which does no I/O beyond closing files and flushing nothing (RocksDB's WAL already
// holds every acknowledged write).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "state/internal/records.h"
#include "state/state_store.h"

namespace tenantsync::state::internal {

enum Cf : int {
  kCfDefault = 0,
  kCfMeta,
  kCfJournalTxn,
  kCfJournalChange,
  kCfRelations,
  kCfDeadLetters,
  kCfJournalMeta,
  kNumCfs,
};

// Name of the lock file inside the state directory; holds the owner's PID.
inline constexpr char kPidFileName[] = "tenantsync.pid";

// Turns a RocksDB status into ours. `dir` names the state directory, `what` the operation.
// NoSpace -> kResourceExhausted, Corruption -> kCorruption, anything else -> kFatal.
Status FromRocks(const rocksdb::Status& s, const std::string& dir, std::string_view what);

class Db {
 public:
  // Creates (0700) or opens the writer's database. See StateStore::Open.
  static StatusOr<std::unique_ptr<Db>> Open(const StateOptions& options);
  // Opens a secondary (read-only, no lock) instance beside a possible writer.
  static StatusOr<std::unique_ptr<Db>> OpenReadOnly(const std::string& dir);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  rocksdb::DB* db() const { return db_; }
  rocksdb::ColumnFamilyHandle* cf(Cf c) const { return handles_[c]; }
  bool read_only() const { return read_only_; }
  const std::string& dir() const { return dir_; }
  const FormatMarker& marker() const { return marker_; }

  // Read-only: catches up with the writer's newest durable state. No-op for the writer.
  Status CatchUp();

  // Writes `batch`. After a disk-full error RocksDB stops accepting writes; the next Write first
  // asks it to resume, so the pipeline continues once space is freed.
  Status Write(rocksdb::WriteBatch* batch, bool sync, std::string_view what);
  StatusOr<std::optional<std::string>> Get(Cf c, std::string_view key, std::string_view what) const;
  std::unique_ptr<rocksdb::Iterator> NewIterator(Cf c, const rocksdb::ReadOptions& ro = {}) const;

 private:
  Db() = default;
  Status OpenDb(bool fresh, bool read_only);
  Status CheckMarker(bool fresh, const std::string& pipeline);

  std::string dir_;
  bool read_only_ = false;
  rocksdb::DB* db_ = nullptr;                          // owned; deleted after the handles in ~Db
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // ours, indexed by Cf
  std::vector<rocksdb::ColumnFamilyHandle*> extra_handles_;  // unknown CFs (a newer version's)
  int lock_fd_ = -1;
  std::string secondary_dir_;  // read-only scratch dir, removed in ~Db
  FormatMarker marker_;
  std::atomic<bool> needs_resume_{false};
};

}  // namespace tenantsync::state::internal
