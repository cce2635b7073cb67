#include "cutover/internal/replay_journal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "state/state_store.h"

namespace tenantsync::cutover::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::shared_ptr<const Relation> Rel(const std::string& name, char identity) {
  auto r = std::make_shared<Relation>();
  r->oid = identity == 'f' ? 16401 : 16400;
  r->schema = "public";
  r->name = name;
  r->replica_identity = identity;
  r->columns = {{"id", "bigint", 20, -1, identity != 'f'}, {"v", "text", 25, -1, identity == 'f'}};
  return r;
}

Change Insert(const std::shared_ptr<const Relation>& rel, int id) {
  Change c;
  c.op = ChangeOp::kInsert;
  c.relation = rel;
  c.new_tuple = {Datum::Text(std::to_string(id)), Datum::Text("v")};
  return c;
}

Change Truncate(const std::shared_ptr<const Relation>& rel) {
  Change c;
  c.op = ChangeOp::kTruncate;
  c.relation = rel;
  c.truncated = {rel};
  return c;
}

TransactionInfo Txn(uint64_t commit) {
  return TransactionInfo{static_cast<uint32_t>(commit), Lsn(commit), Lsn(commit + 8),
                         1700000000000000 + static_cast<int64_t>(commit)};
}

// A state store in a fresh directory holding, at commit LSNs 0x100, 0x200, 0x300, 0x400, one
// keyed insert and one keyless insert each, and a truncate in 0x200.
class ReplayJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "replay-journal-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    state::StateOptions so;
    so.dir = dir_ + "/state";
    so.pipeline = "rawdog";
    so.checkpoint_interval_seconds = 0;
    auto opened = state::StateStore::Open(so);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
    state::Journal& j = store_->journal();
    for (uint64_t commit : {0x100, 0x200, 0x300, 0x400}) {
      ASSERT_TRUE(j.Begin(Txn(commit)).ok());
      ASSERT_TRUE(j.Append(Insert(keyed_, static_cast<int>(commit))).ok());
      ASSERT_TRUE(j.Append(Insert(keyless_, static_cast<int>(commit))).ok());
      if (commit == 0x200) {
        ASSERT_TRUE(j.Append(Truncate(keyed_)).ok());
      }
      ASSERT_TRUE(j.Commit(Txn(commit)).ok());
    }
    ASSERT_TRUE(j.RecordApplied(Lsn(0x400), 0).ok());
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // "commit:op/table" for every change a reader of `view` after `after` shows.
  std::vector<std::string> Read(ReplayJournal& view, Lsn after) {
    std::vector<std::string> out;
    auto r = view.NewReader(after);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return out;
    TransactionInfo info;
    for (;;) {
      auto have = (*r)->NextTransaction(&info);
      EXPECT_TRUE(have.ok());
      if (!have.ok() || !*have) break;
      out.push_back(info.commit_lsn.ToString());
      Change c;
      for (;;) {
        auto more = (*r)->NextChange(&c);
        EXPECT_TRUE(more.ok());
        if (!more.ok() || !*more) break;
        out.back() += std::string(":") + static_cast<char>(c.op) + "/" + c.relation->name;
      }
    }
    return out;
  }

  std::string dir_;
  std::unique_ptr<state::StateStore> store_;
  std::shared_ptr<const Relation> keyed_ = Rel("orders", 'd');
  std::shared_ptr<const Relation> keyless_ = Rel("attribution_touchpoints", 'f');
};

TEST_F(ReplayJournalTest, TargetAtFromShowsEveryChangeUnfiltered) {
  ReplayJournal view(&store_->journal(), Lsn(), Lsn(0x100));
  EXPECT_THAT(Read(view, Lsn(0x100)),
              ElementsAre("0/200:I/orders:I/attribution_touchpoints:T/orders",
                          "0/300:I/orders:I/attribution_touchpoints",
                          "0/400:I/orders:I/attribution_touchpoints"));
  EXPECT_EQ(view.filtered_changes(), 0u);
}

TEST_F(ReplayJournalTest, AtOrBeforeTheTargetKeylessChangesAndTruncatesAreLeftOutOnce) {
  ReplayJournal view(&store_->journal(), Lsn(), Lsn(0x300));
  const std::vector<std::string> expected = {"0/200:I/orders", "0/300:I/orders",
                                             "0/400:I/orders:I/attribution_touchpoints"};
  EXPECT_EQ(Read(view, Lsn(0x100)), expected);
  EXPECT_EQ(view.filtered_changes(), 3u);  // two keyless inserts and the truncate
  // A failed batch is read again (Applier::Isolate): the same view, counted once.
  EXPECT_EQ(Read(view, Lsn(0x100)), expected);
  EXPECT_EQ(view.filtered_changes(), 3u);
}

TEST_F(ReplayJournalTest, ATransactionLeftEmptyIsStillShown) {
  ReplayJournal view(&store_->journal(), Lsn(), Lsn(0x400));
  auto r = view.NewReader(Lsn(0x100));
  ASSERT_TRUE(r.ok());
  TransactionInfo info;
  ASSERT_TRUE(*(*r)->NextTransaction(&info));
  EXPECT_EQ(info.commit_lsn, Lsn(0x200));
  EXPECT_EQ(info.end_lsn, Lsn(0x208));
  Change c;
  ASSERT_TRUE(*(*r)->NextChange(&c));
  EXPECT_EQ(c.relation->name, "orders");
  EXPECT_FALSE(*(*r)->NextChange(&c));  // the keyless insert and the truncate are left out
}

TEST_F(ReplayJournalTest, ToEndsTheJournalAfterItsCommit) {
  ReplayJournal view(&store_->journal(), Lsn(0x300), Lsn(0x100));
  EXPECT_THAT(Read(view, Lsn(0x100)),
              ElementsAre("0/200:I/orders:I/attribution_touchpoints:T/orders",
                          "0/300:I/orders:I/attribution_touchpoints"));
  ReplayJournal none(&store_->journal(), Lsn(0x100), Lsn(0x100));
  EXPECT_THAT(Read(none, Lsn(0x100)), ElementsAre());
}

TEST_F(ReplayJournalTest, NeverWritesTheJournal) {
  ReplayJournal view(&store_->journal(), Lsn(), Lsn(0x100));
  EXPECT_THAT(view.Begin(Txn(0x500)).ToString(), HasSubstr("never writes"));
  EXPECT_EQ(view.Begin(Txn(0x500)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(view.Append(Insert(keyed_, 1)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(view.Commit(Txn(0x500)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(view.Abort().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(view.AdvanceIdle(Lsn(0x500)).code(), StatusCode::kFailedPrecondition);
  // The applier's per-batch mirror goes nowhere: the store's applied position and checkpoints
  // stay where `run` left them until replay records the final position itself.
  auto before = store_->journal().Checkpoints();
  ASSERT_TRUE(before.ok());
  EXPECT_TRUE(view.RecordApplied(Lsn(0x200), 0).ok());
  EXPECT_EQ(store_->journal().Stats().applied_lsn, Lsn(0x400));
  auto after = store_->journal().Checkpoints();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size(), before->size());
  EXPECT_EQ(view.JournaledLsn(), store_->journal().JournaledLsn());
  EXPECT_EQ(view.Stats().journaled_commit_lsn, Lsn(0x400));
}

}  // namespace
}  // namespace tenantsync::cutover::internal
