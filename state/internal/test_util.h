// Helpers for state/ tests only (not part of the library).
#pragma once

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/change.h"
#include "state/internal/codec.h"
#include "state/internal/db.h"
#include "state/internal/records.h"

namespace tenantsync::state::testing {

// A fresh directory under TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "state-test-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    path_ = ::mkdtemp(buf.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A raw RocksDB handle on a closed state directory, for tests that damage records.
class RawDb {
 public:
  explicit RawDb(const std::string& dir) {
    std::vector<std::string> names;
    EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descs;
    for (const auto& n : names) descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(), dir, descs, &handles_, &db_);
    EXPECT_TRUE(s.ok()) << s.ToString();
    names_ = names;
  }
  ~RawDb() {
    if (db_ == nullptr) return;
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
    delete db_;
  }
  rocksdb::ColumnFamilyHandle* cf(const std::string& name) {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) return handles_[i];
    }
    ADD_FAILURE() << "no column family " << name;
    return nullptr;
  }
  rocksdb::DB* db() { return db_; }
  // Number of keys in a column family.
  uint64_t Count(const std::string& name) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(name)));
    uint64_t n = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
    return n;
  }
  // Number of changes held in journal_change (blocks of changes, records.h).
  uint64_t CountJournaledChanges();
  // First key of a column family ("" when empty).
  std::string FirstKey(const std::string& name) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(name)));
    it->SeekToFirst();
    return it->Valid() ? it->key().ToString() : std::string();
  }
  void Put(const std::string& name, const std::string& key, const std::string& value) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db_->Put(wo, cf(name), key, value).ok());
  }
  std::string Get(const std::string& name, const std::string& key) {
    std::string v;
    EXPECT_TRUE(db_->Get(rocksdb::ReadOptions(), cf(name), key, &v).ok());
    return v;
  }

 private:
  rocksdb::DB* db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::vector<std::string> names_;
};

// The change records of a journal_change block (records.h), for tests that rewrite the journal's
// raw layout. Fails the test on a malformed block.
inline std::vector<std::string> BlockRecords(const std::string& block) {
  std::vector<std::string> out;
  internal::ByteReader r(block);
  uint8_t version = 0;
  uint32_t count = 0;
  EXPECT_TRUE(r.ReadU8(&version) && version == internal::kChangeBlockVersion);
  EXPECT_TRUE(r.ReadFixed32BE(&count));
  size_t pos = 5;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t len = 0;
    EXPECT_TRUE(r.ReadFixed32BE(&len) && len <= r.remaining());
    out.push_back(block.substr(pos + 4, len));
    pos += 4 + len;
    r = internal::ByteReader(std::string_view(block).substr(pos));
  }
  EXPECT_TRUE(r.done());
  return out;
}

// A block holding `records` (as ChangeBlockBuilder lays it out).
inline std::string MakeBlock(const std::vector<std::string>& records) {
  std::string out(1, static_cast<char>(internal::kChangeBlockVersion));
  internal::PutFixed32BE(&out, static_cast<uint32_t>(records.size()));
  for (const std::string& rec : records) {
    internal::PutFixed32BE(&out, static_cast<uint32_t>(rec.size()));
    out += rec;
  }
  return out;
}

inline uint64_t RawDb::CountJournaledChanges() {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf("journal_change")));
  uint64_t n = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    n += BlockRecords(it->value().ToString()).size();
  }
  return n;
}

inline std::shared_ptr<const Relation> MakeRelation(const std::string& name, int columns = 3) {
  auto r = std::make_shared<Relation>();
  r->oid = 16384 + static_cast<uint32_t>(name.size());
  r->schema = "public";
  r->name = name;
  r->replica_identity = 'd';
  for (int i = 0; i < columns; ++i) {
    Relation::Column c;
    c.name = i == 0 ? "id" : "c" + std::to_string(i);
    c.type_name = i == 0 ? "bigint" : "text";
    c.type_oid = i == 0 ? 20 : 25;
    c.type_modifier = -1;
    c.is_key = i == 0;
    r->columns.push_back(c);
  }
  return r;
}

inline Change MakeInsert(std::shared_ptr<const Relation> rel, Tuple values) {
  Change c;
  c.op = ChangeOp::kInsert;
  c.relation = std::move(rel);
  c.new_tuple = std::move(values);
  return c;
}

inline TransactionInfo MakeTxn(uint64_t commit, uint32_t xid = 0) {
  TransactionInfo t;
  t.xid = xid == 0 ? static_cast<uint32_t>(commit & 0xffffff) : xid;
  t.commit_lsn = Lsn(commit);
  t.end_lsn = Lsn(commit + 8);
  t.commit_time_us = 1700000000000000 + static_cast<int64_t>(commit);
  return t;
}

// VmRSS of this process in bytes.
inline uint64_t RssBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

}  // namespace tenantsync::state::testing
