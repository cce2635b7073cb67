#include "state/state_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "state/internal/codec.h"
#include "state/internal/records.h"
#include "state/internal/test_util.h"
#include "state/journal.h"

namespace tenantsync::state {
namespace {

using ::testing::HasSubstr;
using testing::MakeInsert;
using testing::MakeRelation;
using testing::MakeTxn;
using testing::RawDb;
using testing::TempDir;

StateOptions Options(const std::string& dir, const std::string& pipeline = "rawdog") {
  StateOptions o;
  o.dir = dir;
  o.pipeline = pipeline;
  return o;
}

std::unique_ptr<StateStore> MustOpen(const StateOptions& o) {
  auto s = StateStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

void CommitOne(Journal& j, uint64_t commit, int changes = 1) {
  auto rel = MakeRelation("customers");
  ASSERT_TRUE(j.Begin(MakeTxn(commit)).ok());
  for (int i = 0; i < changes; ++i) {
    ASSERT_TRUE(
        j.Append(MakeInsert(rel, {Datum::Text(std::to_string(i)), Datum::Null(), Datum::Text("x")}))
            .ok());
  }
  Status s = j.Commit(MakeTxn(commit));
  ASSERT_TRUE(s.ok()) << s.ToString();
}

TEST(StateStoreTest, CreatesMissingDirectoriesWithMode0700) {
  TempDir tmp;
  std::string dir = tmp.Sub("a/b/state");
  auto store = MustOpen(Options(dir));
  ASSERT_NE(store, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(tmp.Sub("a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(store->dir(), dir);
  EXPECT_GT(store->DiskBytes(), 0u);
}

TEST(StateStoreTest, SecondOpenFailsNamingTheHolderPid) {
  TempDir tmp;
  auto first = MustOpen(Options(tmp.path()));
  ASSERT_NE(first, nullptr);
  auto second = StateStore::Open(Options(tmp.path()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr("is in use by another tenantsync process (pid " +
                        std::to_string(::getpid()) + "); stop it or use another state_dir"));
  first.reset();
  EXPECT_NE(MustOpen(Options(tmp.path())), nullptr);  // free again after close
}

TEST(StateStoreTest, PipelineMismatchIsFailedPrecondition) {
  TempDir tmp;
  MustOpen(Options(tmp.path(), "rawdog")).reset();
  auto other = StateStore::Open(Options(tmp.path(), "acme"));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("belongs to pipeline 'rawdog', not 'acme'"));
}

TEST(StateStoreTest, ForeignDirectoryWithFilesIsRefused) {
  TempDir tmp;
  { std::ofstream(tmp.Sub("notes.txt")) << "my thesis"; }
  auto s = StateStore::Open(Options(tmp.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(s.status().message(), HasSubstr("is not a tenantsync state directory"));
  EXPECT_THAT(s.status().message(), HasSubstr("notes.txt"));
  // Nothing was created or removed there.
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("CURRENT")));
  EXPECT_TRUE(std::filesystem::exists(tmp.Sub("notes.txt")));
}

TEST(StateStoreTest, ForeignRocksDbIsRefused) {
  TempDir tmp;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, tmp.path(), &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "k", "v").ok());
    delete db;
  }
  auto s = StateStore::Open(Options(tmp.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(s.status().message(),
              HasSubstr("holds a RocksDB database that tenantsync did not write"));
  auto ro = StateStore::OpenReadOnly(tmp.path());
  ASSERT_FALSE(ro.ok());
  EXPECT_EQ(ro.status().code(), StatusCode::kCorruption);
}

// kill -9 while RocksDB creates the column families one by one (found by tests/faults_test.cc):
// some of ours, all empty, no marker. The next open finishes the creation.
TEST(StateStoreTest, CreationKilledBetweenColumnFamiliesIsFinished) {
  TempDir tmp;
  {
    rocksdb::DBOptions o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"meta", {}}, {"journal_txn", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, tmp.path(), cfs, &handles, &db).ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }
  auto s = StateStore::Open(Options(tmp.path()));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  s->reset();
  auto again = StateStore::Open(Options(tmp.path()));
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

// The same, killed before RocksDB wrote CURRENT.
TEST(StateStoreTest, CreationKilledBeforeCurrentIsFinished) {
  TempDir tmp;
  for (const char* name : {"LOCK", "IDENTITY", "MANIFEST-000001", "000001.dbtmp"}) {
    std::ofstream(tmp.Sub(name)) << "";
  }
  auto s = StateStore::Open(Options(tmp.path()));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(std::filesystem::exists(tmp.Sub("CURRENT")));
}

TEST(StateStoreTest, MissingFormatMarkerWithDataIsRefused) {
  TempDir tmp;
  {
    auto store = MustOpen(Options(tmp.path()));
    ASSERT_TRUE(store->PutMeta("phase", "stream").ok());
  }
  {
    RawDb raw(tmp.path());
    ASSERT_TRUE(
        raw.db()->Delete(rocksdb::WriteOptions(), raw.cf("default"), internal::kFormatKey).ok());
  }
  auto s = StateStore::Open(Options(tmp.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(s.status().message(), HasSubstr("without a tenantsync format marker"));
}

TEST(StateStoreTest, NewerFormatIsRefused) {
  TempDir tmp;
  MustOpen(Options(tmp.path())).reset();
  {
    RawDb raw(tmp.path());
    internal::FormatMarker m;
    m.format_version = internal::kFormatVersion + 1;
    m.pipeline = "rawdog";
    raw.Put("default", internal::kFormatKey, internal::EncodeFormatMarker(m));
  }
  auto s = StateStore::Open(Options(tmp.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(s.status().message(), HasSubstr("written by a newer tenantsync"));
}

TEST(StateStoreTest, GarbageMarkerIsCorruption) {
  TempDir tmp;
  MustOpen(Options(tmp.path())).reset();
  { RawDb(tmp.path()).Put("default", internal::kFormatKey, "\x01\x03xyz"); }
  auto s = StateStore::Open(Options(tmp.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(s.status().message(), HasSubstr("unreadable format marker"));
}

TEST(StateStoreTest, DamagedManifestIsCorruptionNotCrash) {
  TempDir tmp;
  {
    auto store = MustOpen(Options(tmp.path()));
    CommitOne(store->journal(), 100);
  }
  // CURRENT names a MANIFEST that does not exist.
  { std::ofstream(tmp.Sub("CURRENT"), std::ios::trunc) << "MANIFEST-999999\n"; }
  auto s = StateStore::Open(Options(tmp.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption) << s.status().ToString();
  EXPECT_THAT(s.status().message(), HasSubstr(tmp.path()));
}

TEST(StateStoreTest, TruncatedSstIsCorruptionNotCrash) {
  TempDir tmp;
  {
    auto store = MustOpen(Options(tmp.path()));
    for (int i = 1; i <= 50; ++i) CommitOne(store->journal(), 100 * i, 20);
  }
  {
    // Push everything into SST files, then cut every SST in half.
    RawDb raw(tmp.path());
    for (const char* cf : {"journal_txn", "journal_change"}) {
      ASSERT_TRUE(raw.db()->Flush(rocksdb::FlushOptions(), raw.cf(cf)).ok());
    }
  }
  int cut = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
    if (e.path().extension() == ".sst") {
      std::filesystem::resize_file(e.path(), std::filesystem::file_size(e.path()) / 2);
      ++cut;
    }
  }
  ASSERT_GT(cut, 0);
  auto s = StateStore::Open(Options(tmp.path()));
  Status st = s.status();
  if (s.ok()) {
    // RocksDB may open lazily; then reading must report it.
    auto r = (*s)->journal().NewReader(Lsn());
    ASSERT_TRUE(r.ok());
    TransactionInfo info;
    StatusOr<bool> n = (*r)->NextTransaction(&info);
    st = n.status();
  }
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
}

TEST(StateStoreTest, MetaPutGetDeleteScanSurviveReopen) {
  TempDir tmp;
  {
    auto store = MustOpen(Options(tmp.path()));
    ASSERT_TRUE(store->PutMeta("snapshot/chunk/orders/1", "done").ok());
    ASSERT_TRUE(store->PutMeta("snapshot/chunk/orders/2", "done", /*sync=*/false).ok());
    ASSERT_TRUE(store->PutMeta("snapshot/chunk/reviews/1", "done").ok());
    ASSERT_TRUE(store->PutMeta("slot", "tenantsync_rawdog").ok());
    ASSERT_TRUE(store->PutMeta("gone", "x").ok());
    ASSERT_TRUE(store->DeleteMeta("gone").ok());
  }
  auto store = MustOpen(Options(tmp.path()));
  auto v = store->GetMeta("slot");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->value_or(""), "tenantsync_rawdog");
  auto gone = store->GetMeta("gone");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  auto scan = store->ScanMeta("snapshot/chunk/orders/");
  ASSERT_TRUE(scan.ok());
  ASSERT_EQ(scan->size(), 2u);
  EXPECT_EQ((*scan)[0].first, "snapshot/chunk/orders/1");
  EXPECT_EQ((*scan)[1].first, "snapshot/chunk/orders/2");
  EXPECT_EQ((*scan)[1].second, "done");
}

TEST(StateStoreTest, DeadLettersGetIdsTimesAndSurviveReopen) {
  TempDir tmp;
  {
    auto store = MustOpen(Options(tmp.path()));
    auto n = store->DeadLetterCount();
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 0u);
    DeadLetter d;
    d.table = "orders";
    d.key = "id=42";
    d.reason = "gross_sales_cents: invalid input syntax for type bigint";
    d.phase = "snapshot";
    d.lsn = Lsn(0x16B374D848);
    ASSERT_TRUE(store->AddDeadLetter(d).ok());
    d.key = "id=43";
    d.phase = "apply";
    ASSERT_TRUE(store->AddDeadLetter(d).ok());
  }
  auto store = MustOpen(Options(tmp.path()));
  DeadLetter d;
  d.table = "creators";
  ASSERT_TRUE(store->AddDeadLetter(d).ok());
  auto all = store->DeadLetters();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, 1u);
  EXPECT_EQ((*all)[0].key, "id=42");
  EXPECT_EQ((*all)[0].reason, "gross_sales_cents: invalid input syntax for type bigint");
  EXPECT_EQ((*all)[0].phase, "snapshot");
  EXPECT_EQ((*all)[0].lsn, Lsn(0x16B374D848));
  EXPECT_GT((*all)[0].time_us, 1600000000000000);
  EXPECT_EQ((*all)[1].phase, "apply");
  EXPECT_EQ((*all)[2].id, 3u);
  EXPECT_EQ((*all)[2].table, "creators");
  auto n = store->DeadLetterCount();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  auto page = store->DeadLetters(/*after_id=*/1, /*limit=*/1);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].id, 2u);
}

TEST(StateStoreTest, LeftoverLogOfAFailedCreationIsNotForeign) {
  TempDir tmp;
  { std::ofstream(tmp.Sub("LOG")) << "2026-01-01 creation failed: disk full\n"; }
  EXPECT_NE(MustOpen(Options(tmp.path())), nullptr);
}

TEST(StateStoreTest, ReadOnlyOpenOfAStoppedPipelineWorks) {
  TempDir tmp;
  {
    auto store = MustOpen(Options(tmp.path()));
    CommitOne(store->journal(), 100, 2);
    ASSERT_TRUE(store->journal().AdvanceIdle(Lsn(5000)).ok());
  }
  auto ro = StateStore::OpenReadOnly(tmp.path());
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  EXPECT_EQ((*ro)->journal().JournaledLsn(), Lsn(5000));
  EXPECT_EQ((*ro)->journal().Stats().changes, 2u);
  // A read-only store does not lock: the pipeline can start meanwhile.
  EXPECT_NE(MustOpen(Options(tmp.path())), nullptr);
}

TEST(StateStoreTest, ReaderMayOutliveItsStore) {
  TempDir tmp;
  auto store = MustOpen(Options(tmp.path()));
  CommitOne(store->journal(), 100, 2);
  CommitOne(store->journal(), 200, 1);
  auto reader = store->journal().NewReader(Lsn());
  ASSERT_TRUE(reader.ok());
  store.reset();
  TransactionInfo info;
  ASSERT_TRUE((*reader)->NextTransaction(&info).value());
  ASSERT_TRUE((*reader)->NextTransaction(&info).value());
  EXPECT_EQ(info.commit_lsn, Lsn(200));
  Change c;
  ASSERT_TRUE((*reader)->NextChange(&c).value());
  EXPECT_FALSE((*reader)->NextTransaction(&info).value());
  // The directory stays locked until the reader goes.
  EXPECT_EQ(StateStore::Open(Options(tmp.path())).status().code(), StatusCode::kFailedPrecondition);
  reader->reset();
  EXPECT_NE(MustOpen(Options(tmp.path())), nullptr);
}

TEST(StateStoreTest, ReadOnlyOpenBesideWriterSeesDurableStateAndCatchesUp) {
  TempDir tmp;
  auto writer = MustOpen(Options(tmp.path()));
  ASSERT_TRUE(writer->PutMeta("phase", "stream").ok());
  CommitOne(writer->journal(), 100, 3);
  CommitOne(writer->journal(), 200, 2);
  DeadLetter d;
  d.table = "orders";
  ASSERT_TRUE(writer->AddDeadLetter(d).ok());

  auto ro_or = StateStore::OpenReadOnly(tmp.path());
  ASSERT_TRUE(ro_or.ok()) << ro_or.status().ToString();
  auto& ro = *ro_or;
  EXPECT_TRUE(ro->read_only());
  auto phase = ro->GetMeta("phase");
  ASSERT_TRUE(phase.ok());
  EXPECT_EQ(phase->value_or(""), "stream");
  JournalStats st = ro->journal().Stats();
  EXPECT_EQ(st.transactions, 2u);
  EXPECT_EQ(st.changes, 5u);
  EXPECT_EQ(st.journaled_commit_lsn, Lsn(200));
  EXPECT_EQ(ro->DeadLetterCount().value(), 1u);

  // The writer moves on; the read-only store sees it after Refresh.
  CommitOne(writer->journal(), 300, 4);
  ASSERT_TRUE(writer->journal().RecordApplied(Lsn(200), 5).ok());
  ASSERT_TRUE(ro->Refresh().ok());
  st = ro->journal().Stats();
  EXPECT_EQ(st.transactions, 3u);
  EXPECT_EQ(st.journaled_commit_lsn, Lsn(300));
  EXPECT_EQ(st.applied_lsn, Lsn(200));
  auto checkpoints = ro->journal().Checkpoints();
  ASSERT_TRUE(checkpoints.ok());
  EXPECT_EQ(checkpoints->size(), 1u);

  auto reader = ro->journal().NewReader(Lsn(100));
  ASSERT_TRUE(reader.ok());
  TransactionInfo info;
  std::vector<uint64_t> seen;
  while ((*reader)->NextTransaction(&info).value()) seen.push_back(info.commit_lsn.value());
  EXPECT_EQ(seen, (std::vector<uint64_t>{200, 300}));

  // Writes are refused, clearly.
  Status w = ro->PutMeta("phase", "x");
  EXPECT_EQ(w.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(w.message(), HasSubstr("read-only"));
  EXPECT_EQ(ro->journal().Begin(MakeTxn(400)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ro->AddDeadLetter(d).code(), StatusCode::kFailedPrecondition);
  // And the writer still works while the reader is open.
  CommitOne(writer->journal(), 400);
}

TEST(StateStoreTest, ReadOnlyOfMissingDirectoryIsNotFound) {
  TempDir tmp;
  auto s = StateStore::OpenReadOnly(tmp.Sub("nope"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr("does not exist"));
}

}  // namespace
}  // namespace tenantsync::state
