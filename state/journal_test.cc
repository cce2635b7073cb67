#include "state/journal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "state/internal/codec.h"
#include "state/internal/test_util.h"
#include "state/state_store.h"

namespace tenantsync::state {
namespace {

using ::testing::HasSubstr;
using testing::MakeInsert;
using testing::MakeRelation;
using testing::MakeTxn;
using testing::RawDb;
using testing::TempDir;

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    auto s = StateStore::Open(options_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  void Close() { store_.reset(); }
  Journal& j() { return store_->journal(); }

  void Commit(uint64_t commit, int changes = 1, const std::string& table = "customers") {
    auto rel = MakeRelation(table);
    Status s = j().Begin(MakeTxn(commit));
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (int i = 0; i < changes; ++i) {
      s = j().Append(MakeInsert(rel, {Datum::Text(std::to_string(commit)),
                                      Datum::Text(std::to_string(i)), Datum::Null()}));
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    s = j().Commit(MakeTxn(commit));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Commit LSNs of every transaction after `after`, checking each one's changes.
  std::vector<uint64_t> ReadAll(Lsn after = Lsn()) {
    std::vector<uint64_t> out;
    auto r = j().NewReader(after);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (r.ok()) ReadVisible(r->get(), &out);
    return out;
  }

  // Appends the commit LSN of each transaction `r` returns until it has no more, checking that
  // every change names its transaction (Commit's first column); returns the changes read.
  static int ReadVisible(JournalReader* r, std::vector<uint64_t>* out) {
    int changes = 0;
    TransactionInfo info;
    while (true) {
      auto more = r->NextTransaction(&info);
      EXPECT_TRUE(more.ok()) << more.status().ToString();
      if (!more.ok() || !*more) break;
      out->push_back(info.commit_lsn.value());
      Change c;
      while (true) {
        auto ch = r->NextChange(&c);
        EXPECT_TRUE(ch.ok()) << ch.status().ToString();
        if (!ch.ok() || !*ch) break;
        EXPECT_EQ(c.new_tuple.at(0).text, std::to_string(info.commit_lsn.value()));
        ++changes;
      }
    }
    return changes;
  }

  TempDir tmp_;
  StateOptions options_{.dir = tmp_.path(), .pipeline = "rawdog"};
  std::unique_ptr<StateStore> store_;
};

TEST_F(JournalTest, RoundTripsEveryChangeKindAndDatumKind) {
  auto customers = MakeRelation("customers", 4);
  auto orders = std::make_shared<Relation>(*MakeRelation("orders", 2));
  {
    auto o = std::make_shared<Relation>(*orders);
    o->replica_identity = 'f';
    o->oid = 0;  // wal2json without type oids
    o->columns[1].type_oid = 0;
    o->columns[1].type_modifier = 12;
    orders = o;
  }
  std::string big(1 << 20, 'z');
  std::string binary("a\0b\xff\x01", 5);
  std::vector<Change> in;
  in.push_back(MakeInsert(
      customers, {Datum::Text("1"), Datum::Text("Zoë 🦊 ü"), Datum::Null(), Datum::Text("")}));
  {
    Change c;
    c.op = ChangeOp::kUpdate;
    c.relation = customers;
    c.new_tuple = {Datum::Text("1"), Datum::Unchanged(), Datum::Text(big), Datum::Text(binary)};
    c.old_tuple = {Datum::Text("1"), Datum::Null(), Datum::Null(), Datum::Null()};
    in.push_back(c);
  }
  {
    Change c;
    c.op = ChangeOp::kDelete;
    c.relation = orders;
    c.old_tuple = {Datum::Text("7"), Datum::Text("full identity")};
    in.push_back(c);
  }
  {
    Change c;
    c.op = ChangeOp::kTruncate;
    c.relation = customers;
    c.truncated = {customers, orders};
    c.truncate_options = 3;
    in.push_back(c);
  }
  {
    Change c;
    c.op = ChangeOp::kMessage;
    c.message_prefix = "tenantsync";
    c.message_content = binary;
    c.message_transactional = true;
    in.push_back(c);
  }
  {
    Change c;
    c.op = ChangeOp::kMessage;
    c.message_prefix = "";
    c.message_transactional = false;
    in.push_back(c);
  }
  TransactionInfo txn{.xid = 4242,
                      .commit_lsn = Lsn(0x16B374D848),
                      .end_lsn = Lsn(0x16B374D878),
                      .commit_time_us = 1712345678901234};
  ASSERT_TRUE(j().Begin(txn).ok());
  for (const Change& c : in) ASSERT_TRUE(j().Append(c).ok());
  ASSERT_TRUE(j().Commit(txn).ok());
  Reopen();  // decode from disk, not from any cache

  auto r = j().NewReader(Lsn());
  ASSERT_TRUE(r.ok());
  TransactionInfo info;
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  EXPECT_EQ(info.xid, 4242u);
  EXPECT_EQ(info.commit_lsn, txn.commit_lsn);
  EXPECT_EQ(info.end_lsn, txn.end_lsn);
  EXPECT_EQ(info.commit_time_us, txn.commit_time_us);
  Change out;
  for (size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE((*r)->NextChange(&out).value());
    EXPECT_EQ(out.op, in[i].op);
    ASSERT_EQ(out.relation == nullptr, in[i].relation == nullptr);
    if (out.relation) {
      EXPECT_EQ(*out.relation, *in[i].relation);
    }
    EXPECT_EQ(out.new_tuple, in[i].new_tuple);
    EXPECT_EQ(out.old_tuple, in[i].old_tuple);
    ASSERT_EQ(out.truncated.size(), in[i].truncated.size());
    for (size_t k = 0; k < out.truncated.size(); ++k) {
      EXPECT_EQ(*out.truncated[k], *in[i].truncated[k]);
    }
    EXPECT_EQ(out.truncate_options, in[i].truncate_options);
    EXPECT_EQ(out.message_prefix, in[i].message_prefix);
    EXPECT_EQ(out.message_content, in[i].message_content);
    EXPECT_EQ(out.message_transactional, in[i].message_transactional);
  }
  EXPECT_FALSE((*r)->NextChange(&out).value());
  EXPECT_FALSE((*r)->NextTransaction(&info).value());
}

TEST_F(JournalTest, ChangesShareOneRelationObject) {
  Commit(100, 3);
  auto r = j().NewReader(Lsn());
  TransactionInfo info;
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  Change a, b;
  ASSERT_TRUE((*r)->NextChange(&a).value());
  ASSERT_TRUE((*r)->NextChange(&b).value());
  EXPECT_EQ(a.relation.get(), b.relation.get());
}

TEST_F(JournalTest, ReaderSeesOnlyCommittedTransactionsInOrderAndLaterOnes) {
  Commit(100);
  Commit(300);
  ASSERT_TRUE(j().Begin(MakeTxn(500)).ok());
  ASSERT_TRUE(j().Append(MakeInsert(MakeRelation("customers"), {Datum::Text("500")})).ok());

  auto r = j().NewReader(Lsn());
  ASSERT_TRUE(r.ok());
  TransactionInfo info;
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  EXPECT_EQ(info.commit_lsn, Lsn(100));
  ASSERT_TRUE((*r)->NextTransaction(&info).value());  // skips 100's unread change
  EXPECT_EQ(info.commit_lsn, Lsn(300));
  EXPECT_FALSE((*r)->NextTransaction(&info).value());  // 500 is not committed

  ASSERT_TRUE(j().Commit(MakeTxn(500)).ok());
  Commit(700, 2);
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  EXPECT_EQ(info.commit_lsn, Lsn(500));
  Change c;
  ASSERT_TRUE((*r)->NextChange(&c).value());
  EXPECT_EQ(c.new_tuple[0].text, "500");
  EXPECT_FALSE((*r)->NextChange(&c).value());
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  EXPECT_EQ(info.commit_lsn, Lsn(700));
  EXPECT_FALSE((*r)->NextTransaction(&info).value());
  EXPECT_FALSE((*r)->NextTransaction(&info).value());

  EXPECT_EQ(ReadAll(Lsn(300)), (std::vector<uint64_t>{500, 700}));
  EXPECT_EQ(ReadAll(Lsn(299)), (std::vector<uint64_t>{300, 500, 700}));
}

TEST_F(JournalTest, ResentTransactionsAreSkippedExactlyOnce) {
  Commit(100, 2);
  Commit(200, 2);
  // pgoutput: the commit LSN is known at Begin.
  ASSERT_TRUE(j().Begin(MakeTxn(200)).ok());
  EXPECT_TRUE(j().IsSkipping());
  ASSERT_TRUE(j().Append(MakeInsert(MakeRelation("customers"), {Datum::Text("dup")})).ok());
  ASSERT_TRUE(j().Commit(MakeTxn(200)).ok());
  EXPECT_FALSE(j().IsSkipping());
  ASSERT_TRUE(j().Begin(MakeTxn(150)).ok());
  EXPECT_TRUE(j().IsSkipping());
  ASSERT_TRUE(j().Commit(MakeTxn(150)).ok());
  // wal2json: the commit LSN arrives with the commit.
  TransactionInfo unknown;
  unknown.xid = 7;
  ASSERT_TRUE(j().Begin(unknown).ok());
  EXPECT_FALSE(j().IsSkipping());
  ASSERT_TRUE(j().Append(MakeInsert(MakeRelation("customers"), {Datum::Text("dup")})).ok());
  ASSERT_TRUE(j().Commit(MakeTxn(100)).ok());

  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{100, 200}));
  JournalStats st = j().Stats();
  EXPECT_EQ(st.transactions, 2u);
  EXPECT_EQ(st.changes, 4u);
  EXPECT_EQ(j().JournaledLsn(), Lsn(208));
  Reopen();  // the check survives a restart
  ASSERT_TRUE(j().Begin(MakeTxn(200)).ok());
  EXPECT_TRUE(j().IsSkipping());
  ASSERT_TRUE(j().Commit(MakeTxn(200)).ok());
  Commit(300);
  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{100, 200, 300}));
}

TEST_F(JournalTest, WriterProtocolMisuseIsAnError) {
  EXPECT_EQ(j().Append(MakeInsert(MakeRelation("t"), {})).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(j().Commit(MakeTxn(100)).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(j().Begin(TransactionInfo{}).ok());
  EXPECT_EQ(j().Commit(TransactionInfo{}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(j().AdvanceIdle(Lsn(5000)).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(j().Abort().ok());
  EXPECT_TRUE(j().AdvanceIdle(Lsn(5000)).ok());
}

// The reader steps from one transaction's last change to the next one's first instead of seeking
// when they are neighbours; after a partly read transaction, an aborted one in between or an
// unread one it must still find each transaction's own changes, in order.
TEST_F(JournalTest, ReaderFindsEachTransactionsChangesAfterPartReadsAndGaps) {
  Commit(100, 3);
  ASSERT_TRUE(j().Begin(MakeTxn(200)).ok());
  ASSERT_TRUE(j().Append(MakeInsert(MakeRelation("customers"), {Datum::Text("200")})).ok());
  ASSERT_TRUE(j().Abort().ok());
  Commit(300, 2);
  Commit(400, 3);
  Commit(500, 2);
  Commit(600, 2);

  auto r = j().NewReader(Lsn());
  ASSERT_TRUE(r.ok());
  TransactionInfo info;
  Change c;
  auto expect_change = [&](const std::string& txn, const std::string& index) {
    auto more = (*r)->NextChange(&c);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    ASSERT_TRUE(*more) << txn << "/" << index;
    EXPECT_EQ(c.new_tuple.at(0).text, txn);
    EXPECT_EQ(c.new_tuple.at(1).text, index);
  };
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  expect_change("100", "0");  // 2 of its 3 changes stay unread
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  EXPECT_EQ(info.commit_lsn, Lsn(300));  // 200 was aborted
  expect_change("300", "0");
  expect_change("300", "1");
  EXPECT_FALSE((*r)->NextChange(&c).value());
  ASSERT_TRUE((*r)->NextTransaction(&info).value());  // 400 follows 300's last change read
  expect_change("400", "0");
  expect_change("400", "1");
  expect_change("400", "2");
  ASSERT_TRUE((*r)->NextTransaction(&info).value());  // 500: none read
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  EXPECT_EQ(info.commit_lsn, Lsn(600));
  expect_change("600", "0");
  expect_change("600", "1");
  EXPECT_FALSE((*r)->NextChange(&c).value());
  EXPECT_FALSE((*r)->NextTransaction(&info).value());
}

TEST_F(JournalTest, AbortedAndOrphanedTransactionsLeaveNothing) {
  // Big enough to flush spool batches to RocksDB before the end.
  auto rel = MakeRelation("orders");
  std::string payload(200, 'p');
  ASSERT_TRUE(j().Begin(MakeTxn(100)).ok());
  for (int i = 0; i < 30000; ++i) {
    ASSERT_TRUE(j().Append(MakeInsert(rel, {Datum::Text("100"), Datum::Text(payload)})).ok());
  }
  ASSERT_TRUE(j().Abort().ok());
  Commit(200, 2);
  // Begin without Commit/Abort, then a new Begin: the first is discarded.
  ASSERT_TRUE(j().Begin(MakeTxn(300)).ok());
  for (int i = 0; i < 30000; ++i) {
    ASSERT_TRUE(j().Append(MakeInsert(rel, {Datum::Text("300"), Datum::Text(payload)})).ok());
  }
  Commit(400, 1);
  // And a crash mid-transaction: the store goes away without Commit.
  ASSERT_TRUE(j().Begin(MakeTxn(500)).ok());
  for (int i = 0; i < 30000; ++i) {
    ASSERT_TRUE(j().Append(MakeInsert(rel, {Datum::Text("500"), Datum::Text(payload)})).ok());
  }
  Close();
  {
    RawDb raw(tmp_.path());
    EXPECT_GT(raw.Count("journal_change"), 3u);  // the orphan's flushed batches are there
  }
  Reopen();
  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{200, 400}));
  EXPECT_EQ(j().Stats().changes, 3u);
  Close();
  RawDb raw(tmp_.path());
  // Only the two committed transactions' changes are left: one block each, 2 and 1 changes.
  ASSERT_EQ(raw.Count("journal_change"), 2u);
  EXPECT_EQ(testing::BlockRecords(raw.Get("journal_change", internal::Key64x2(2, 0))).size(), 2u);
  EXPECT_EQ(testing::BlockRecords(raw.Get("journal_change", internal::Key64x2(4, 0))).size(), 1u);
  EXPECT_EQ(raw.Count("journal_txn"), 2u);
}

// A large transaction's changes go into blocks of ~64 KB, one RocksDB entry each, keyed by their
// first change; a reader gets every change once, in order, also when it leaves a transaction
// in the middle of a block.
TEST_F(JournalTest, LargeTransactionIsStoredInBlocksAndReadBackInOrder) {
  auto rel = MakeRelation("orders");
  const std::string payload(100, 'p');
  constexpr int kChanges = 5000;
  ASSERT_TRUE(j().Begin(MakeTxn(100)).ok());
  for (int i = 0; i < kChanges; ++i) {
    ASSERT_TRUE(j().Append(MakeInsert(rel, {Datum::Text("100"), Datum::Text(std::to_string(i)),
                                            Datum::Text(payload)}))
                    .ok());
  }
  ASSERT_TRUE(j().Commit(MakeTxn(100)).ok());
  Commit(200, 3);
  Commit(300, 1);
  EXPECT_EQ(j().Stats().changes, kChanges + 4u);

  auto r = j().NewReader(Lsn());
  ASSERT_TRUE(r.ok());
  TransactionInfo info;
  Change c;
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  for (int i = 0; i < kChanges; ++i) {
    auto got = (*r)->NextChange(&c);
    ASSERT_TRUE(got.ok() && *got) << "change " << i << ": " << got.status().ToString();
    ASSERT_EQ(c.new_tuple.at(1).text, std::to_string(i));
  }
  EXPECT_FALSE((*r)->NextChange(&c).value());
  // Leaves 200 after its first change (mid-block): 300 comes next, whole.
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  ASSERT_TRUE((*r)->NextChange(&c).value());
  EXPECT_EQ(c.new_tuple.at(1).text, "0");
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  EXPECT_EQ(info.commit_lsn, Lsn(300));
  ASSERT_TRUE((*r)->NextChange(&c).value());
  EXPECT_EQ(c.new_tuple.at(0).text, "300");
  EXPECT_FALSE((*r)->NextChange(&c).value());
  EXPECT_FALSE((*r)->NextTransaction(&info).value());
  r->reset();

  Close();
  RawDb raw(tmp_.path());
  // ~125 bytes a change: about 8 blocks of 64 KB for the first transaction, 1 for each other.
  const uint64_t blocks = raw.Count("journal_change");
  EXPECT_GE(blocks, 2u + 6);
  EXPECT_LE(blocks, 2u + 12);
  // The second block starts where the first ends.
  const size_t first =
      testing::BlockRecords(raw.Get("journal_change", internal::Key64x2(1, 0))).size();
  EXPECT_GT(first, 100u);
  EXPECT_FALSE(
      testing::BlockRecords(raw.Get("journal_change", internal::Key64x2(1, first))).empty());
}

// A state directory of format 1 (one change per key) is read whole by this binary, which marks
// it format 2 when it opens it for writing, and appends blocks after the old records.
TEST_F(JournalTest, StateFormat1IsReadAndMarkedFormat2) {
  auto rel = MakeRelation("orders");
  ASSERT_TRUE(j().Begin(MakeTxn(100)).ok());
  for (int i = 0; i < 3000; ++i) {  // several blocks
    ASSERT_TRUE(j().Append(MakeInsert(rel, {Datum::Text("100"), Datum::Text(std::to_string(i)),
                                            Datum::Text(std::string(60, 'v'))}))
                    .ok());
  }
  ASSERT_TRUE(j().Commit(MakeTxn(100)).ok());
  Commit(200, 2);
  Close();
  {
    // Rewrite it the way format 1 stored it.
    RawDb raw(tmp_.path());
    std::vector<std::pair<std::string, std::string>> blocks;
    {
      std::unique_ptr<rocksdb::Iterator> it(
          raw.db()->NewIterator(rocksdb::ReadOptions(), raw.cf("journal_change")));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        blocks.emplace_back(it->key().ToString(), it->value().ToString());
      }
    }
    ASSERT_GT(blocks.size(), 2u);
    size_t records = 0;
    for (const auto& [key, value] : blocks) {
      ASSERT_TRUE(raw.db()->Delete(rocksdb::WriteOptions(), raw.cf("journal_change"), key).ok());
      const uint64_t seq = internal::DecodeFixed64BE(key.data());
      const uint64_t first = internal::DecodeFixed64BE(key.data() + 8);
      std::vector<std::string> recs = testing::BlockRecords(value);
      for (size_t i = 0; i < recs.size(); ++i) {
        raw.Put("journal_change", internal::Key64x2(seq, first + i), recs[i]);
      }
      records += recs.size();
    }
    ASSERT_EQ(records, 3002u);
    internal::FormatMarker m;
    ASSERT_TRUE(internal::DecodeFormatMarker(raw.Get("default", internal::kFormatKey), &m).ok());
    m.format_version = 1;
    raw.Put("default", internal::kFormatKey, internal::EncodeFormatMarker(m));
  }
  Reopen();
  {
    auto r = j().NewReader(Lsn());
    ASSERT_TRUE(r.ok());
    TransactionInfo info;
    Change c;
    ASSERT_TRUE((*r)->NextTransaction(&info).value());
    for (int i = 0; i < 3000; ++i) {
      auto got = (*r)->NextChange(&c);
      ASSERT_TRUE(got.ok() && *got) << "change " << i << ": " << got.status().ToString();
      ASSERT_EQ(c.new_tuple.at(1).text, std::to_string(i));
    }
    EXPECT_FALSE((*r)->NextChange(&c).value());
  }
  Commit(300, 2);
  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{100, 200, 300}));
  Close();
  RawDb raw(tmp_.path());
  internal::FormatMarker m;
  ASSERT_TRUE(internal::DecodeFormatMarker(raw.Get("default", internal::kFormatKey), &m).ok());
  EXPECT_EQ(m.format_version, 2u);
  EXPECT_EQ(m.pipeline, "rawdog");
  // 300's two changes are one block.
  EXPECT_EQ(testing::BlockRecords(raw.Get("journal_change", internal::Key64x2(3, 0))).size(), 2u);
}

TEST_F(JournalTest, JournaledLsnAdvancesWithCommitAndIdleAndWakesWaiters) {
  EXPECT_EQ(j().JournaledLsn(), Lsn());
  EXPECT_FALSE(j().WaitForNewer(Lsn(), std::chrono::milliseconds(10)));
  std::thread waiter([this] {
    EXPECT_TRUE(j().WaitForNewer(Lsn(), std::chrono::seconds(20)));
    EXPECT_GE(j().JournaledLsn(), Lsn(108));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  Commit(100);
  waiter.join();
  EXPECT_EQ(j().JournaledLsn(), Lsn(108));
  j().NoteReceived(Lsn(9000));
  EXPECT_EQ(j().JournaledLsn(), Lsn(108));  // received is not journaled
  EXPECT_EQ(j().Stats().received_lsn, Lsn(9000));
  ASSERT_TRUE(j().AdvanceIdle(Lsn(5000)).ok());
  EXPECT_EQ(j().JournaledLsn(), Lsn(5000));
  ASSERT_TRUE(j().AdvanceIdle(Lsn(4000)).ok());  // never backwards
  EXPECT_EQ(j().JournaledLsn(), Lsn(5000));
  EXPECT_TRUE(j().WaitForNewer(Lsn(4999), std::chrono::milliseconds(1)));
  EXPECT_FALSE(j().WaitForNewer(Lsn(5000), std::chrono::milliseconds(10)));
  Reopen();
  EXPECT_EQ(j().JournaledLsn(), Lsn(5000));
  JournalStats st = j().Stats();
  EXPECT_EQ(st.journaled_commit_lsn, Lsn(100));
  EXPECT_EQ(st.last_journaled_commit_time_us, MakeTxn(100).commit_time_us);
}

TEST_F(JournalTest, GroupCommitMakesTransactionsDurableAndVisibleShortlyAfter) {
  options_.sync_each_commit = false;
  Reopen();
  std::vector<uint64_t> want;
  for (uint64_t lsn = 100; lsn <= 5000; lsn += 100) {
    Commit(lsn, 2);
    want.push_back(lsn);
    EXPECT_LE(j().JournaledLsn(), Lsn(lsn + 8));  // never ahead of what is written
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (j().JournaledLsn() < Lsn(5008) && std::chrono::steady_clock::now() < deadline) {
    j().WaitForNewer(j().JournaledLsn(), std::chrono::milliseconds(100));
  }
  EXPECT_EQ(j().JournaledLsn(), Lsn(5008));
  EXPECT_EQ(j().Stats().journaled_commit_lsn, Lsn(5000));
  EXPECT_EQ(ReadAll(), want);
  // A resend is still recognised by what was written, durable or not.
  ASSERT_TRUE(j().Begin(MakeTxn(5000)).ok());
  EXPECT_TRUE(j().IsSkipping());
  ASSERT_TRUE(j().Commit(MakeTxn(5000)).ok());
  Commit(5100);
  Reopen();  // the close syncs what is pending
  EXPECT_EQ(j().JournaledLsn(), Lsn(5108));
  want.push_back(5100);
  EXPECT_EQ(ReadAll(), want);
}

// Group commit: readers see a transaction once it is written, and a reader that waits for one
// (the applier, caught up) cuts the syncer's interval short instead of idling through it.
TEST_F(JournalTest, GroupCommitWriteIsVisibleAtOnceToAWaitingReader) {
  options_.sync_each_commit = false;
  options_.group_commit_interval_ms = 3000;
  options_.memory_tail_bytes = 0;  // readers see only what is written (the tail: tests below)
  Reopen();
  Commit(100);  // the first group goes out at once (no sync yet): the interval starts here
  ASSERT_TRUE(j().WaitForVisible(Lsn(), std::chrono::seconds(10)));
  EXPECT_EQ(j().VisibleCommitLsn(), Lsn(100));
  auto started = std::chrono::steady_clock::now();
  Commit(200);  // waits in the writer's batch for the interval, unless a reader waits
  EXPECT_TRUE(j().WaitForVisible(Lsn(100), std::chrono::milliseconds(2000)));
  auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_LT(waited, std::chrono::milliseconds(2000));
  EXPECT_EQ(j().VisibleCommitLsn(), Lsn(200));
  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{100, 200}));
  // Durable follows (the same group's fsync), and never runs ahead of what readers see.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (j().JournaledLsn() < Lsn(208) && std::chrono::steady_clock::now() < deadline) {
    j().WaitForNewer(j().JournaledLsn(), std::chrono::milliseconds(100));
  }
  EXPECT_EQ(j().JournaledLsn(), Lsn(208));
  EXPECT_GE(j().VisibleCommitLsn(), j().Stats().journaled_commit_lsn);
  // Nobody waiting: the next group waits out the interval (a backlog keeps its large groups).
  Commit(300);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(j().VisibleCommitLsn(), Lsn(200));
  EXPECT_TRUE(j().WaitForVisible(Lsn(200), std::chrono::seconds(10)));
  EXPECT_EQ(j().VisibleCommitLsn(), Lsn(300));
}

// The tail: a small committed transaction reaches readers from memory at Commit, long before the
// syncer writes it (its interval here is a minute), with the same changes as from RocksDB.
TEST_F(JournalTest, GroupCommitTailGivesReadersATransactionBeforeItIsWritten) {
  options_.sync_each_commit = false;
  options_.group_commit_interval_ms = 60000;
  Reopen();
  // The first one defines its relation, so it is not in the tail: a waiting reader gets the
  // syncer to write it.
  Commit(100);
  ASSERT_TRUE(j().WaitForVisible(Lsn(), std::chrono::seconds(10)));
  ASSERT_EQ(j().VisibleCommitLsn(), Lsn(100));
  Commit(200);
  Commit(300, 5);
  Commit(400, 0);  // no changes
  EXPECT_EQ(j().VisibleCommitLsn(), Lsn(400));
  EXPECT_TRUE(j().WaitForVisible(Lsn(300), std::chrono::milliseconds(0)));
  EXPECT_LT(j().Stats().journaled_commit_lsn, Lsn(200));  // not durable: not acknowledgeable
  EXPECT_EQ(ReadAll(Lsn(100)), (std::vector<uint64_t>{200, 300, 400}));
  // From RocksDB, then from memory, each once and in order.
  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{100, 200, 300, 400}));
  {
    auto r = j().NewReader(Lsn(200));
    ASSERT_TRUE(r.ok());
    TransactionInfo info;
    ASSERT_TRUE(*(*r)->NextTransaction(&info));
    EXPECT_EQ(info.commit_lsn, Lsn(300));
    EXPECT_EQ(info.end_lsn, MakeTxn(300).end_lsn);
    EXPECT_EQ(info.commit_time_us, MakeTxn(300).commit_time_us);
    Change c;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(*(*r)->NextChange(&c));
      EXPECT_EQ(c.op, ChangeOp::kInsert);
      ASSERT_TRUE(c.relation);
      EXPECT_EQ(*c.relation, *MakeRelation("customers"));
      EXPECT_EQ(c.new_tuple,
                (Tuple{Datum::Text("300"), Datum::Text(std::to_string(i)), Datum::Null()}));
    }
    EXPECT_FALSE(*(*r)->NextChange(&c));
  }
  // They are in RocksDB too once the journal is closed (Shutdown writes and syncs them).
  Reopen();
  EXPECT_EQ(j().JournaledLsn(), MakeTxn(400).end_lsn);
  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{100, 200, 300, 400}));
}

// A transaction the tail can not take (full, a new relation, more than one block) is read from
// RocksDB, and nothing after it comes from the tail before it: no transaction is skipped.
TEST_F(JournalTest, GroupCommitTailSkipsNothingPastATransactionItLeftOut) {
  options_.sync_each_commit = false;
  options_.group_commit_interval_ms = 60000;
  options_.memory_tail_bytes = 600;  // two small transactions
  Reopen();
  Commit(100);
  ASSERT_TRUE(j().WaitForVisible(Lsn(), std::chrono::seconds(10)));
  auto r = j().NewReader(Lsn(100));
  ASSERT_TRUE(r.ok());
  std::vector<uint64_t> seen;
  auto read = [&] {
    const size_t before = seen.size();
    const int changes = ReadVisible(r->get(), &seen);
    EXPECT_GE(changes, static_cast<int>(seen.size() - before));  // one or more each
  };
  auto wait_and_read = [&](uint64_t after) {
    EXPECT_TRUE(j().WaitForVisible(Lsn(after), std::chrono::seconds(10))) << after;
    read();
  };
  for (uint64_t lsn : {200, 300, 400, 500}) Commit(lsn);
  EXPECT_EQ(j().VisibleCommitLsn(), Lsn(300));  // 400 did not fit; 500 is behind it
  read();
  EXPECT_EQ(seen, (std::vector<uint64_t>{200, 300}));
  wait_and_read(300);  // the syncer writes 400 and 500 for the waiting reader
  EXPECT_EQ(seen, (std::vector<uint64_t>{200, 300, 400, 500}));
  Commit(600);  // everything before it is written: the tail takes it again
  EXPECT_EQ(j().VisibleCommitLsn(), Lsn(600));
  // A reader further behind gets 400 and 500 from RocksDB before 600 from the tail.
  EXPECT_EQ(ReadAll(Lsn(300)), (std::vector<uint64_t>{400, 500, 600}));
  read();
  Commit(700, 1, "orders");  // defines a relation
  Commit(800);
  EXPECT_EQ(j().VisibleCommitLsn(), Lsn(600));
  wait_and_read(600);
  Commit(900, 3000);  // several blocks
  Commit(1000);
  EXPECT_EQ(j().VisibleCommitLsn(), Lsn(800));
  wait_and_read(800);
  Commit(1100);
  read();
  EXPECT_EQ(seen, (std::vector<uint64_t>{200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100}));
}

// Group commit keeps committed transactions in the writer's batch until the syncer takes it; an
// aborted transaction after them (small, or spooled to RocksDB past the spool size) must take
// only its own changes away.
TEST_F(JournalTest, GroupCommitAbortKeepsTheTransactionsCommittedBeforeIt) {
  options_.sync_each_commit = false;
  options_.group_commit_interval_ms = 50;  // the first commits are still in the batch at Abort
  Reopen();
  auto rel = MakeRelation("customers");
  auto abort_after = [&](uint64_t commit, int changes) {
    ASSERT_TRUE(j().Begin(MakeTxn(commit)).ok());
    for (int i = 0; i < changes; ++i) {
      Status s = j().Append(MakeInsert(rel, {Datum::Text("aborted"), Datum::Text(std::string(200, 'a')),
                                             Datum::Null()}));
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    ASSERT_TRUE(j().Abort().ok());
  };
  Commit(100, 2);
  abort_after(200, 3);
  Commit(300, 2);
  abort_after(400, 20000);  // ~5 MB: spooled to RocksDB with the committed ones before it
  Commit(500, 2);
  // A resend of the aborted transaction is journaled (it was never committed).
  Commit(600, 1);
  ASSERT_TRUE(j().AdvanceIdle(Lsn(700)).ok());  // synced with everything committed before it
  EXPECT_EQ(j().JournaledLsn(), Lsn(700));
  EXPECT_EQ(j().Stats().journaled_commit_lsn, Lsn(600));
  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{100, 300, 500, 600}));
  Reopen();
  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{100, 300, 500, 600}));
  EXPECT_EQ(j().JournaledLsn(), Lsn(700));
}

TEST_F(JournalTest, ConcurrentReaderSeesEveryTransactionOnceInOrder) {
  options_.sync_each_commit = false;
  Reopen();
  constexpr uint64_t kTxns = 400;
  std::thread writer([this] {
    for (uint64_t i = 1; i <= kTxns; ++i) Commit(i * 100, i % 50 == 0 ? 20000 : 3);
  });
  auto r = j().NewReader(Lsn());
  ASSERT_TRUE(r.ok());
  uint64_t expect = 1;
  TransactionInfo info;
  Change c;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (expect <= kTxns && std::chrono::steady_clock::now() < deadline) {
    auto more = (*r)->NextTransaction(&info);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (!*more) {
      j().WaitForNewer(info.end_lsn, std::chrono::milliseconds(50));
      continue;
    }
    ASSERT_EQ(info.commit_lsn, Lsn(expect * 100));
    uint64_t n = 0;
    while ((*r)->NextChange(&c).value()) {
      ASSERT_EQ(c.new_tuple[0].text, std::to_string(expect * 100));
      ++n;
    }
    ASSERT_EQ(n, expect % 50 == 0 ? 20000u : 3u);
    ++expect;
  }
  writer.join();
  EXPECT_EQ(expect, kTxns + 1);
}

TEST_F(JournalTest, RetentionTrimsAppliedOldTransactionsAndReaderNamesTheWindow) {
  options_.retention_hours = 0;
  options_.trim_interval_seconds = 0;
  options_.checkpoint_interval_seconds = 0;
  Reopen();
  for (uint64_t lsn : {100, 200, 300, 400, 500}) Commit(lsn, 2);
  ASSERT_TRUE(j().RecordApplied(Lsn(100), 1).ok());
  ASSERT_TRUE(j().RecordApplied(Lsn(300), 3).ok());
  JournalStats st = j().Stats();
  EXPECT_EQ(st.applied_lsn, Lsn(300));
  EXPECT_EQ(st.last_applied_commit_time_us, 3);
  EXPECT_EQ(st.transactions, 2u);
  EXPECT_EQ(st.changes, 4u);
  EXPECT_EQ(st.oldest_lsn, Lsn(400));
  EXPECT_EQ(ReadAll(Lsn(300)), (std::vector<uint64_t>{400, 500}));
  auto r = j().NewReader(Lsn(200));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("retained window: after 0/12C through 0/1F4"));
  // Checkpoints that can no longer be replayed from are gone.
  auto cps = j().Checkpoints();
  ASSERT_TRUE(cps.ok());
  ASSERT_EQ(cps->size(), 1u);
  EXPECT_EQ((*cps)[0].lsn, Lsn(300));
  EXPECT_EQ((*cps)[0].id, 2u);

  Reopen();
  st = j().Stats();
  EXPECT_EQ(st.transactions, 2u);
  EXPECT_EQ(st.oldest_lsn, Lsn(400));
  EXPECT_EQ(j().NewReader(Lsn(100)).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ReadAll(Lsn(300)), (std::vector<uint64_t>{400, 500}));
  ASSERT_TRUE(j().RecordApplied(Lsn(500), 5).ok());
  st = j().Stats();
  EXPECT_EQ(st.transactions, 0u);
  EXPECT_EQ(st.oldest_lsn, Lsn());
  Commit(600);
  EXPECT_EQ(j().Stats().oldest_lsn, Lsn(600));
  EXPECT_EQ(ReadAll(Lsn(500)), (std::vector<uint64_t>{600}));
  Close();
  RawDb raw(tmp_.path());
  EXPECT_EQ(raw.Count("journal_txn"), 1u);
  EXPECT_EQ(raw.Count("journal_change"), 1u);
}

TEST_F(JournalTest, RetentionKeepsYoungTransactionsAndUnappliedOnes) {
  options_.trim_interval_seconds = 0;
  Reopen();  // 168 h
  for (uint64_t lsn : {100, 200, 300}) Commit(lsn);
  ASSERT_TRUE(j().RecordApplied(Lsn(300), 3).ok());
  EXPECT_EQ(j().Stats().transactions, 3u);
  EXPECT_EQ(ReadAll(), (std::vector<uint64_t>{100, 200, 300}));

  options_.retention_hours = 0;
  Reopen();
  ASSERT_TRUE(j().RecordApplied(Lsn(200), 2).ok());  // 300 is not applied: kept
  EXPECT_EQ(ReadAll(Lsn(200)), (std::vector<uint64_t>{300}));
}

TEST_F(JournalTest, ReaderOvertakenByRetentionGetsNotFound) {
  options_.retention_hours = 0;
  options_.trim_interval_seconds = 0;
  Reopen();
  for (uint64_t lsn : {100, 200, 300}) Commit(lsn);
  auto r = j().NewReader(Lsn());
  ASSERT_TRUE(r.ok());
  TransactionInfo info;
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  EXPECT_EQ(info.commit_lsn, Lsn(100));
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  ASSERT_FALSE((*r)->NextTransaction(&info).value());
  // Meanwhile nothing is lost: the reader is past what retention removes.
  ASSERT_TRUE(j().RecordApplied(Lsn(300), 3).ok());
  Commit(400);
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  EXPECT_EQ(info.commit_lsn, Lsn(400));

  auto slow = j().NewReader(Lsn(300));
  ASSERT_TRUE(slow.ok());
  Commit(500);
  ASSERT_TRUE(j().RecordApplied(Lsn(500), 5).ok());
  auto next = (*slow)->NextTransaction(&info);
  EXPECT_EQ(next.status().code(), StatusCode::kNotFound);
}

TEST_F(JournalTest, CheckpointsEveryIntervalCountTransactions) {
  options_.checkpoint_interval_seconds = 3600;
  Reopen();
  Commit(100);
  Commit(200);
  ASSERT_TRUE(j().RecordApplied(Lsn(100), 1).ok());
  ASSERT_TRUE(j().RecordApplied(Lsn(200), 2).ok());  // within the interval: no new checkpoint
  auto cps = j().Checkpoints();
  ASSERT_TRUE(cps.ok());
  ASSERT_EQ(cps->size(), 1u);
  EXPECT_EQ((*cps)[0].id, 1u);
  EXPECT_EQ((*cps)[0].lsn, Lsn(100));
  EXPECT_EQ((*cps)[0].transactions, 2u);
  EXPECT_GT((*cps)[0].time_us, 0);

  options_.checkpoint_interval_seconds = 0;
  Reopen();
  Commit(300);
  ASSERT_TRUE(j().RecordApplied(Lsn(300), 3).ok());
  cps = j().Checkpoints();
  ASSERT_EQ(cps->size(), 2u);
  EXPECT_EQ((*cps)[1].id, 2u);
  EXPECT_EQ((*cps)[1].lsn, Lsn(300));
  EXPECT_EQ((*cps)[1].transactions, 1u);
  EXPECT_EQ(j().Stats().applied_lsn, Lsn(300));
}

TEST_F(JournalTest, JournalOverItsLimitStopsTheWriterClearly) {
  options_.max_journal_bytes = 256 << 10;
  options_.trim_interval_seconds = 0;
  Reopen();
  auto rel = MakeRelation("orders");
  std::string payload(1000, 'x');
  Status s;
  uint64_t lsn = 100;
  for (; lsn < 100000 && s.ok(); lsn += 100) {
    ASSERT_TRUE(j().Begin(MakeTxn(lsn)).ok());
    for (int i = 0; i < 10 && s.ok(); ++i) {
      s = j().Append(MakeInsert(rel, {Datum::Text(std::to_string(lsn)), Datum::Text(payload)}));
    }
    if (s.ok()) s = j().Commit(MakeTxn(lsn));
  }
  ASSERT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("exceeds journal.max_bytes=256"));
  EXPECT_THAT(s.message(), HasSubstr("the target is probably not applying"));
  EXPECT_THAT(s.message(), HasSubstr(tmp_.path()));
  ASSERT_TRUE(j().Abort().ok());
  uint64_t last = j().Stats().journaled_commit_lsn.value();
  EXPECT_LE(j().Stats().bytes, static_cast<uint64_t>(options_.max_journal_bytes));

  // Once the target applies, retention makes room even inside the 168 h window.
  ASSERT_TRUE(j().RecordApplied(Lsn(last), 1).ok());
  EXPECT_LT(j().Stats().bytes, static_cast<uint64_t>(options_.max_journal_bytes) * 9 / 10);
  ASSERT_TRUE(j().Begin(MakeTxn(last + 100)).ok());
  ASSERT_TRUE(j().Append(MakeInsert(rel, {Datum::Text(std::to_string(last + 100))})).ok());
  ASSERT_TRUE(j().Commit(MakeTxn(last + 100)).ok());
  // What is left is a suffix of the applied ones, then the new one.
  std::vector<uint64_t> left = ReadAll(Lsn(j().Stats().oldest_lsn.value() - 1));
  ASSERT_FALSE(left.empty());
  EXPECT_EQ(left.back(), last + 100);
}

TEST_F(JournalTest, CorruptChangeRecordIsCorruptionNamingTheKey) {
  Commit(100, 3);
  Commit(200, 1);
  Close();
  std::string key = internal::Key64x2(1, 0);  // the block of the first transaction's 3 changes
  {
    RawDb raw(tmp_.path());
    std::string v = raw.Get("journal_change", key);
    ASSERT_EQ(testing::BlockRecords(v).size(), 3u);
    raw.Put("journal_change", key, v.substr(0, v.size() / 2));  // cuts its second change
  }
  Reopen();
  auto r = j().NewReader(Lsn());
  TransactionInfo info;
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  Change c;
  ASSERT_TRUE((*r)->NextChange(&c).value());
  auto bad = (*r)->NextChange(&c);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(bad.status().message(), HasSubstr(internal::HexKey(key)));
}

TEST_F(JournalTest, CorruptOrMissingRecordsAreCorruption) {
  Commit(100, 2);
  Commit(200, 2, "orders");
  Close();
  {
    RawDb raw(tmp_.path());
    raw.Put("journal_txn", internal::Key64(100), "\x01garbage");
    // Drop the second change of 200 from its block.
    const std::string key = internal::Key64x2(2, 0);
    std::vector<std::string> records = testing::BlockRecords(raw.Get("journal_change", key));
    ASSERT_EQ(records.size(), 2u);
    raw.Put("journal_change", key, testing::MakeBlock({records[0]}));
  }
  Reopen();
  auto r = j().NewReader(Lsn());
  TransactionInfo info;
  auto t = (*r)->NextTransaction(&info);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(t.status().message(),
              HasSubstr("journal_txn " + internal::HexKey(internal::Key64(100))));

  r = j().NewReader(Lsn(100));
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  Change c;
  ASSERT_TRUE((*r)->NextChange(&c).value());
  auto missing = (*r)->NextChange(&c);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(missing.status().message(), HasSubstr("is missing change 2 of 2"));
}

TEST_F(JournalTest, DamagedRelationIsCorruption) {
  Commit(100, 1, "orders");
  Close();
  {
    RawDb raw(tmp_.path());
    std::string key = raw.FirstKey("relations");
    std::string v = raw.Get("relations", key);
    v[v.size() - 1] ^= 1;  // is_key of the last column: the fingerprint no longer matches
    raw.Put("relations", key, v);
  }
  Reopen();
  auto r = j().NewReader(Lsn());
  TransactionInfo info;
  ASSERT_TRUE((*r)->NextTransaction(&info).value());
  Change c;
  auto bad = (*r)->NextChange(&c);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(bad.status().message(), HasSubstr("does not match its fingerprint"));
}

TEST_F(JournalTest, CorruptWriterStateFailsOpen) {
  Commit(100);
  Close();
  { RawDb(tmp_.path()).Put("journal_meta", "writer", std::string("\x01\x00", 2)); }
  auto s = StateStore::Open(options_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(s.status().message(), HasSubstr("journal_meta/writer"));
}

}  // namespace
}  // namespace tenantsync::state
