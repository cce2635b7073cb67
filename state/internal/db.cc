#include "state/internal/db.h"

#include <fcntl.h>
#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

namespace tenantsync::state::internal {

namespace {

namespace fs = std::filesystem;

const char* const kCfNames[kNumCfs] = {
    "default",  // rocksdb::kDefaultColumnFamilyName, spelled out: no static-init order issue
    "meta",    "journal_txn", "journal_change", "relations", "dead_letters", "journal_meta",
};

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Errno(int e) { return std::strerror(e); }

// mkdir -p, each created level with mode 0700 (the state holds source data: DESIGN.md, issue 9).
Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  fs::path p(dir);
  std::vector<fs::path> missing;
  for (fs::path q = p; !q.empty() && !fs::exists(q, ec); q = q.parent_path()) {
    missing.push_back(q);
    if (q == q.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST) {
      int e = errno;
      if (e == ENOSPC) {
        return ResourceExhausted("cannot create state directory " + it->string() +
                                 ": no space left on device");
      }
      return FailedPrecondition("cannot create state directory " + it->string() + ": " + Errno(e) +
                                "; check the path and permissions of state_dir");
    }
  }
  if (!fs::is_directory(p, ec)) {
    return FailedPrecondition("state_dir " + dir + " exists but is not a directory");
  }
  return Status::Ok();
}

// Takes the exclusive flock on <dir>/tenantsync.pid and writes our PID into it.
StatusOr<int> LockDir(const std::string& dir) {
  std::string path = dir + "/" + kPidFileName;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return FailedPrecondition("cannot open lock file " + path + ": " + Errno(errno) +
                              "; check the permissions of state_dir");
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    if (e != EWOULDBLOCK) return FailedPrecondition("cannot lock " + path + ": " + Errno(e));
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    if (pid.empty()) pid = "unknown";
    return FailedPrecondition("state directory " + dir +
                              " is in use by another tenantsync process (pid " + pid +
                              "); stop it or use another state_dir");
  }
  std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    // The lock is what matters; the PID is only for the message above.
  }
  return fd;
}

// Entries of `dir` that tenantsync did not put there before RocksDB's CURRENT exists.
std::vector<std::string> ForeignEntries(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    // Our lock file, our diagnostics LOG (written before RocksDB creates CURRENT, so a creation
    // that failed leaves it behind) and a mount point's lost+found are not foreign.
    if (name == kPidFileName || name == "LOG" || name == "LOG.old" || name == "lost+found") {
      continue;
    }
    // What RocksDB writes before CURRENT when it creates a database: left by a creation killed
    // midway (kill -9 in tests/faults_test.cc), and rewritten by the next creation.
    if (!fs::exists(dir + "/CURRENT", ec) &&
        (name == "LOCK" || name == "IDENTITY" || name.rfind("MANIFEST-", 0) == 0 ||
         (name.size() > 6 && name.compare(name.size() - 6, 6, ".dbtmp") == 0))) {
      continue;
    }
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// RocksDB's diagnostic LOG, written with stdio and every error ignored. RocksDB's own file logger
// goes through a WritableFileWriter that, in assert-enabled builds of librocksdb (Debian's),
// aborts the process on the next message after a failed write, i.e. as soon as the state
// directory's disk is full (issue 9 wants a clear stop there, not an abort). Rotates at 8 MB.
class StateLogger final : public rocksdb::Logger {
 public:
  explicit StateLogger(std::string path)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL), path_(std::move(path)) {
    file_ = std::fopen(path_.c_str(), "ae");
  }
  ~StateLogger() override {
    if (file_ != nullptr) std::fclose(file_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char buf[2048];
    int n = std::vsnprintf(buf, sizeof(buf), format, ap);
    if (n < 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (file_ == nullptr) return;
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ ", &tm);
    std::fputs(stamp, file_);
    std::fputs(buf, file_);
    std::fputc('\n', file_);
    std::fflush(file_);  // errors (disk full) ignored: this is diagnostics only
    written_ += static_cast<size_t>(n) + 22;
    if (written_ > (8u << 20)) {
      std::fclose(file_);
      std::rename(path_.c_str(), (path_ + ".old").c_str());
      file_ = std::fopen(path_.c_str(), "ae");
      written_ = 0;
    }
  }

 private:
  std::string path_;
  std::mutex mu_;
  std::FILE* file_ = nullptr;  // guarded by mu_
  size_t written_ = 0;         // guarded by mu_
};

std::shared_ptr<rocksdb::Cache> SharedBlockCache() {
  static std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(32 << 20);
  return cache;
}

rocksdb::CompressionType BestCompression() {
  auto supported = rocksdb::GetSupportedCompressions();
  for (auto c : {rocksdb::kLZ4Compression, rocksdb::kSnappyCompression}) {
    if (std::find(supported.begin(), supported.end(), c) != supported.end()) return c;
  }
  return rocksdb::kNoCompression;
}

rocksdb::ColumnFamilyOptions CfOptions(int cf) {
  rocksdb::ColumnFamilyOptions o;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = SharedBlockCache();
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  o.compression = BestCompression();
  // Memory (invariant 7): the change spool is the only big writer; its memtables are bounded
  // here and by db_write_buffer_size below, whatever the size of a transaction.
  if (cf == kCfJournalChange) {
    o.write_buffer_size = 32 << 20;
    o.max_write_buffer_number = 3;
  } else {
    o.write_buffer_size = 4 << 20;
    o.max_write_buffer_number = 2;
  }
  return o;
}

rocksdb::DBOptions MakeDbOptions(bool create) {
  rocksdb::DBOptions o;
  o.create_if_missing = create;
  o.create_missing_column_families = create;
  o.max_background_jobs = 2;
  o.keep_log_file_num = 3;
  o.max_log_file_size = 8 << 20;
  o.db_write_buffer_size = 128 << 20;
  // A WAL can only go once every CF it holds is flushed; this bounds the WAL kept for small CFs.
  o.max_total_wal_size = 256 << 20;
  // After a crash, recover the WAL up to the first damaged record: a prefix of the writes,
  // which keeps "changes before their commit record" true (see journal.cc).
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  o.paranoid_checks = true;
  // No preallocation of WAL files (1.1 x the largest write buffer, ~35 MB each): on a nearly
  // full disk it is what fails first, also right after a restart that should make progress.
  o.allow_fallocate = false;
  // Opening: the table files one after another on this thread (the default starts up to 16
  // threads per column family to open a handful of files), and without reading every file's
  // statistics, which only tune compaction. Both cut the time before the stream can start.
  o.max_file_opening_threads = 1;
  o.skip_stats_update_on_db_open = true;
  return o;
}

// True when the database in `dir` holds only (some of) our column families and nothing in them:
// a creation killed between RocksDB's CreateColumnFamily calls (the format marker is written only
// once every column family exists). Opened read-only, so a foreign database is never changed.
bool InterruptedCreation(const std::string& dir, const std::vector<std::string>& existing) {
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : existing) {
    int cf = -1;
    for (int c = 0; c < kNumCfs; ++c) cf = name == kCfNames[c] ? c : cf;
    if (cf < 0) return false;
    descriptors.emplace_back(name, CfOptions(cf));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, descriptors, &handles, &raw).ok()) {
    return false;
  }
  bool empty = true;
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    std::unique_ptr<rocksdb::Iterator> it(raw->NewIterator(rocksdb::ReadOptions(), h));
    it->SeekToFirst();
    empty = empty && !it->Valid() && it->status().ok();
  }
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    raw->DestroyColumnFamilyHandle(h).PermitUncheckedError();  // read-only handles: nothing lost
  }
  delete raw;
  return empty;
}

}  // namespace

Status FromRocks(const rocksdb::Status& s, const std::string& dir, std::string_view what) {
  if (s.ok()) return Status::Ok();
  std::string detail = std::string(what) + ": " + s.ToString();
  if (s.IsNoSpace() || s.ToString().find("No space left") != std::string::npos) {
    return ResourceExhausted("state directory " + dir + " is out of disk space (" + detail +
                             "); free space on that file system or move state_dir; nothing "
                             "acknowledged is lost, tenantsync continues once there is space");
  }
  if (s.IsCorruption()) {
    return Corruption("state directory " + dir + " is corrupt (" + detail +
                      "); restore it from a backup, or move it away and start the pipeline "
                      "again from a new snapshot");
  }
  return Fatal("state directory " + dir + ": " + detail);
}

StatusOr<std::unique_ptr<Db>> Db::Open(const StateOptions& options) {
  if (options.dir.empty())
    return InvalidArgument("state_dir is empty; set state_dir in the config");
  std::unique_ptr<Db> db(new Db());
  db->dir_ = options.dir;
  while (db->dir_.size() > 1 && db->dir_.back() == '/') db->dir_.pop_back();
  TS_RETURN_IF_ERROR(MakeDirs(db->dir_));
  TS_ASSIGN_OR_RETURN(db->lock_fd_, LockDir(db->dir_));

  std::vector<std::string> entries = ForeignEntries(db->dir_);
  bool fresh = entries.empty();
  if (!fresh && !fs::exists(db->dir_ + "/CURRENT")) {
    return Corruption("state directory " + db->dir_ +
                      " is not a tenantsync state directory: it holds other files (e.g. '" +
                      entries.front() +
                      "') and no database; point state_dir at an empty or new directory");
  }
  TS_RETURN_IF_ERROR(db->OpenDb(fresh, /*read_only=*/false));
  TS_RETURN_IF_ERROR(db->CheckMarker(fresh, options.pipeline));
  return db;
}

StatusOr<std::unique_ptr<Db>> Db::OpenReadOnly(const std::string& dir) {
  std::unique_ptr<Db> db(new Db());
  db->dir_ = dir;
  while (db->dir_.size() > 1 && db->dir_.back() == '/') db->dir_.pop_back();
  db->read_only_ = true;
  std::error_code ec;
  if (!fs::is_directory(db->dir_, ec)) {
    return NotFound("state directory " + db->dir_ + " does not exist; check state_dir");
  }
  if (!fs::exists(db->dir_ + "/CURRENT", ec)) {
    std::vector<std::string> entries = ForeignEntries(db->dir_);
    if (entries.empty()) {
      return NotFound("state directory " + db->dir_ +
                      " holds no tenantsync state yet; run the pipeline first");
    }
    return Corruption("state directory " + db->dir_ +
                      " is not a tenantsync state directory: it holds other files (e.g. '" +
                      entries.front() + "') and no database; check state_dir");
  }
  std::string tmpl = (fs::temp_directory_path(ec) / "tenantsync-ro-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    return Fatal("cannot create a scratch directory for reading " + db->dir_ + ": " + Errno(errno));
  }
  db->secondary_dir_ = buf.data();
  TS_RETURN_IF_ERROR(db->OpenDb(/*fresh=*/false, /*read_only=*/true));
  TS_RETURN_IF_ERROR(db->CheckMarker(/*fresh=*/false, /*pipeline=*/""));
  return db;
}

Status Db::OpenDb(bool fresh, bool read_only) {
  rocksdb::DBOptions db_options = MakeDbOptions(fresh);
  if (read_only) db_options.max_open_files = -1;  // required by secondary instances
  db_options.info_log = std::make_shared<StateLogger>((read_only ? secondary_dir_ : dir_) + "/LOG");
  std::vector<std::string> existing;
  if (!fresh) {
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir_, &existing);
    if (!s.ok()) {
      if (s.IsCorruption() || s.IsIOError() || s.IsInvalidArgument()) {
        return Corruption("state directory " + dir_ +
                          " is corrupt or not a tenantsync state directory (" + s.ToString() +
                          "); restore it from a backup or point state_dir elsewhere");
      }
      return FromRocks(s, dir_, "listing column families");
    }
    for (int c = 1; c < kNumCfs; ++c) {
      if (std::find(existing.begin(), existing.end(), kCfNames[c]) == existing.end()) {
        // A creation killed midway: finish it (CheckMarker then writes the marker).
        if (!read_only && InterruptedCreation(dir_, existing)) {
          db_options.create_missing_column_families = true;
          break;
        }
        return Corruption("state directory " + dir_ +
                          " holds a RocksDB database that tenantsync did not write (no column "
                          "family '" +
                          std::string(kCfNames[c]) +
                          "'); point state_dir at an empty or new directory");
      }
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (int c = 0; c < kNumCfs; ++c) descriptors.emplace_back(kCfNames[c], CfOptions(c));
  for (const std::string& name : existing) {
    bool ours = false;
    for (int c = 0; c < kNumCfs; ++c) ours = ours || name == kCfNames[c];
    if (!ours) descriptors.emplace_back(name, CfOptions(kCfMeta));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s;
  if (read_only) {
    s = rocksdb::DB::OpenAsSecondary(db_options, dir_, secondary_dir_, descriptors, &handles, &db_);
  } else {
    s = rocksdb::DB::Open(db_options, dir_, descriptors, &handles, &db_);
  }
  if (!s.ok()) {
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return FailedPrecondition("state directory " + dir_ + " is in use by another process (" +
                                s.ToString() + "); stop it or use another state_dir");
    }
    return FromRocks(s, dir_, read_only ? "opening read-only" : "opening");
  }
  handles_.assign(handles.begin(), handles.begin() + kNumCfs);
  extra_handles_.assign(handles.begin() + kNumCfs, handles.end());
  return Status::Ok();
}

Status Db::CheckMarker(bool fresh, const std::string& pipeline) {
  TS_ASSIGN_OR_RETURN(auto value, Get(kCfDefault, kFormatKey, "reading the format marker"));
  if (!value.has_value()) {
    // A database with our column families but no marker is either a creation that crashed
    // before the marker was written (every CF empty: finish it) or not ours.
    bool empty = true;
    for (int c = 0; c < kNumCfs && empty; ++c) {
      auto it = NewIterator(static_cast<Cf>(c));
      it->SeekToFirst();
      empty = !it->Valid();
      if (!it->status().ok()) return FromRocks(it->status(), dir_, "checking an empty database");
    }
    if (!empty) {
      return Corruption("state directory " + dir_ +
                        " holds a database without a tenantsync format marker; it was not "
                        "written by tenantsync: point state_dir at an empty or new directory");
    }
    if (read_only_) {
      return NotFound("state directory " + dir_ + " holds no tenantsync state yet");
    }
    fresh = true;
  }
  if (fresh && !value.has_value()) {
    marker_.format_version = kFormatVersion;
    marker_.pipeline = pipeline;
    marker_.created_us = NowUs();
    rocksdb::WriteBatch b;
    b.Put(handles_[kCfDefault], kFormatKey, EncodeFormatMarker(marker_));
    return Write(&b, /*sync=*/true, "writing the format marker");
  }
  Status st = DecodeFormatMarker(*value, &marker_);
  if (!st.ok()) {
    return Corruption("state directory " + dir_ + " has an unreadable format marker (" +
                      st.message() + "); it was not written by this tenantsync");
  }
  if (marker_.format_version > kFormatVersion) {
    return Corruption("state directory " + dir_ +
                      " was written by a newer tenantsync (state "
                      "format " +
                      std::to_string(marker_.format_version) + "; this binary reads format " +
                      std::to_string(kFormatVersion) + "); run the newer tenantsync");
  }
  if (!pipeline.empty() && !marker_.pipeline.empty() && pipeline != marker_.pipeline) {
    return FailedPrecondition("state directory " + dir_ + " belongs to pipeline '" +
                              marker_.pipeline + "', not '" + pipeline +
                              "'; use that pipeline's config or another state_dir");
  }
  if (marker_.format_version < kFormatVersion && !read_only_) {
    // This binary reads the older format and writes the current one: mark the directory so
    // that an older binary refuses it with a clear message instead of meeting records it can
    // not read (records.h).
    marker_.format_version = kFormatVersion;
    rocksdb::WriteBatch b;
    b.Put(handles_[kCfDefault], kFormatKey, EncodeFormatMarker(marker_));
    return Write(&b, /*sync=*/true, "upgrading the format marker");
  }
  return Status::Ok();
}

Db::~Db() {
  if (db_ != nullptr) {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    for (auto* h : extra_handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    // Close() only reports background errors already reported to writers.
    db_->Close().PermitUncheckedError();
    delete db_;
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
  if (!secondary_dir_.empty()) {
    std::error_code ec;
    fs::remove_all(secondary_dir_, ec);
  }
}

Status Db::CatchUp() {
  if (!read_only_) return Status::Ok();
  return FromRocks(db_->TryCatchUpWithPrimary(), dir_, "catching up with the writer");
}

Status Db::Write(rocksdb::WriteBatch* batch, bool sync, std::string_view what) {
  if (read_only_) {
    return FailedPrecondition("state directory " + dir_ + " is open read-only");
  }
  if (needs_resume_.load(std::memory_order_relaxed)) {
    // Clears RocksDB's background error (e.g. disk full) by flushing what is pending; fails
    // again, as disk full, while there is still no space. Busy: RocksDB's own recovery from
    // disk full is running (its SstFileManager polls for free space every few seconds); the
    // write below then either succeeds (recovered) or returns the disk-full error again.
    rocksdb::Status r = db_->Resume();
    if (!r.ok() && !r.IsBusy()) {
      return FromRocks(r, dir_, std::string(what) + " (resuming after an error)");
    }
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  rocksdb::Status s = db_->Write(wo, batch);
  if (!s.ok()) {
    needs_resume_.store(true, std::memory_order_relaxed);
    return FromRocks(s, dir_, what);
  }
  needs_resume_.store(false, std::memory_order_relaxed);
  return Status::Ok();
}

StatusOr<std::optional<std::string>> Db::Get(Cf c, std::string_view key,
                                             std::string_view what) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), handles_[c], rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, dir_, what);
  return std::optional<std::string>(std::move(value));
}

std::unique_ptr<rocksdb::Iterator> Db::NewIterator(Cf c, const rocksdb::ReadOptions& ro) const {
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(ro, handles_[c]));
}

}  // namespace tenantsync::state::internal
