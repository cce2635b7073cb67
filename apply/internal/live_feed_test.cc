#include "apply/internal/live_feed.h"

#include <gtest/gtest.h>

#include <thread>

namespace tenantsync::apply::internal {
namespace {

using namespace std::chrono_literals;
using Event = LiveFeed::Event;

TransactionInfo Txn(uint64_t commit) {
  TransactionInfo t;
  t.xid = static_cast<uint32_t>(commit);
  t.commit_lsn = Lsn(commit);
  t.end_lsn = Lsn(commit + 8);
  return t;
}

Change Row(int i) {
  Change c;
  c.op = ChangeOp::kUpdate;
  c.new_tuple = {Datum::Text(std::to_string(i)), Datum::Text("some value")};
  return c;
}

LiveFeedOptions Small() {
  LiveFeedOptions o;
  o.offer_min_changes = 3;
  return o;
}

// Feeds a whole transaction of `n` changes through the writer hooks.
void Write(LiveFeed* f, uint64_t commit, int n, bool do_commit = true) {
  f->OnBegin(Txn(commit), true);
  for (int i = 0; i < n; ++i) f->OnAppend(Row(i));
  if (do_commit) f->OnCommit(Txn(commit));
}

TEST(LiveFeedTest, SmallTransactionIsNeverOffered) {
  LiveFeed f(Small(), Lsn(100));
  Write(&f, 200, 2);
  TransactionInfo b;
  EXPECT_FALSE(f.TryClaim(Lsn(100), &b));
  EXPECT_FALSE(f.TryClaim(Lsn(200), &b));
  EXPECT_EQ(f.offered(), 0u);
}

TEST(LiveFeedTest, LargeTransactionYieldsItsChangesInOrderThenItsCommit) {
  LiveFeed f(Small(), Lsn(100));
  Write(&f, 200, 2);  // small, committed: the applier must apply it first
  Write(&f, 300, 5, /*do_commit=*/false);
  TransactionInfo b;
  EXPECT_FALSE(f.TryClaim(Lsn(100), &b)) << "200 is not applied yet";
  EXPECT_TRUE(f.HasOffer(Lsn(100)));
  ASSERT_TRUE(f.TryClaim(Lsn(200), &b));
  EXPECT_EQ(b.commit_lsn, Lsn(300));
  Change c;
  TransactionInfo commit;
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(f.Next(&c, &commit, 0ms), Event::kChange);
    EXPECT_EQ(c.new_tuple[0].text, std::to_string(i));
  }
  EXPECT_EQ(f.Next(&c, &commit, 0ms), Event::kIdle);
  f.OnCommit(Txn(300));
  ASSERT_EQ(f.Next(&c, &commit, 0ms), Event::kCommit);
  EXPECT_EQ(commit.end_lsn, Lsn(308));
  f.Release();
  // The feed is free for the next one, which follows 300.
  Write(&f, 400, 4, /*do_commit=*/false);
  EXPECT_FALSE(f.TryClaim(Lsn(200), &b));
  EXPECT_TRUE(f.TryClaim(Lsn(300), &b));
}

TEST(LiveFeedTest, WriterAbortIsSeenAsAborted) {
  LiveFeed f(Small(), Lsn(100));
  Write(&f, 200, 4, /*do_commit=*/false);
  TransactionInfo b;
  ASSERT_TRUE(f.TryClaim(Lsn(100), &b));
  f.OnAbort();
  Change c;
  TransactionInfo commit;
  EXPECT_EQ(f.Next(&c, &commit, 0ms), Event::kAborted);
  EXPECT_EQ(f.dropped(), 1u);
  f.Release();
  // The resend after a reconnect is offered again (the aborted one did not count as committed).
  Write(&f, 200, 4, /*do_commit=*/false);
  EXPECT_TRUE(f.TryClaim(Lsn(100), &b));
}

TEST(LiveFeedTest, AbandonStopsTheWriterFeedingAndFreesTheFeed) {
  LiveFeed f(Small(), Lsn(100));
  Write(&f, 200, 4, /*do_commit=*/false);
  TransactionInfo b;
  ASSERT_TRUE(f.TryClaim(Lsn(100), &b));
  f.Abandon();
  for (int i = 0; i < 10; ++i) f.OnAppend(Row(i));  // ignored
  f.OnCommit(Txn(200));
  EXPECT_FALSE(f.TryClaim(Lsn(100), &b));
  Write(&f, 300, 4, /*do_commit=*/false);
  ASSERT_TRUE(f.TryClaim(Lsn(200), &b));
  Change c;
  TransactionInfo commit;
  ASSERT_EQ(f.Next(&c, &commit, 0ms), Event::kChange);
  EXPECT_EQ(c.new_tuple[0].text, "0");
}

TEST(LiveFeedTest, NextTransactionIsNotTrackedWhileTheApplierHoldsOne) {
  LiveFeed f(Small(), Lsn(100));
  Write(&f, 200, 4);
  TransactionInfo b;
  ASSERT_TRUE(f.TryClaim(Lsn(100), &b));
  // The writer moves on before the applier has consumed 200.
  Write(&f, 300, 6, /*do_commit=*/false);
  Change c;
  TransactionInfo commit;
  int n = 0;
  Event ev;
  while ((ev = f.Next(&c, &commit, 0ms)) == Event::kChange) ++n;
  EXPECT_EQ(n, 4) << "no change of 300 may be mixed into 200";
  ASSERT_EQ(ev, Event::kCommit);
  EXPECT_EQ(commit.commit_lsn, Lsn(200));
  f.Release();
  EXPECT_FALSE(f.TryClaim(Lsn(200), &b)) << "300 was not tracked: the journal path applies it";
}

TEST(LiveFeedTest, DuplicatesAreNotTracked) {
  LiveFeed f(Small(), Lsn(100));
  TransactionInfo b;
  f.OnBegin(Txn(200), /*tracked=*/false);
  for (int i = 0; i < 5; ++i) f.OnAppend(Row(i));
  EXPECT_FALSE(f.TryClaim(Lsn(100), &b));
  f.OnAbort();
  Write(&f, 50, 5, /*do_commit=*/false);  // not after the last commit
  EXPECT_FALSE(f.TryClaim(Lsn(100), &b));
  f.OnAbort();
}

// A transaction streamed while it runs: no commit LSN in its Begin. It is claimable after the
// last commit; the commit item tells the LSN. A resend (its commit not after the last one) is
// dropped at its commit, and the last commit stays where it was.
TEST(LiveFeedTest, UnknownCommitLsnIsLearnedAtCommitAndAResendIsDropped) {
  LiveFeed f(Small(), Lsn(100));
  TransactionInfo b;
  TransactionInfo streamed{77, Lsn(), Lsn(), 0};
  f.OnBegin(streamed, true);
  for (int i = 0; i < 5; ++i) f.OnAppend(Row(i));
  EXPECT_FALSE(f.TryClaim(Lsn(90), &b)) << "only right after the last commit";
  ASSERT_TRUE(f.TryClaim(Lsn(100), &b));
  EXPECT_FALSE(b.commit_lsn.valid());
  EXPECT_EQ(b.xid, 77u);
  f.OnCommit(Txn(300));
  Change c;
  TransactionInfo commit;
  int n = 0;
  Event ev;
  while ((ev = f.Next(&c, &commit, 0ms)) == Event::kChange) ++n;
  EXPECT_EQ(n, 5);
  ASSERT_EQ(ev, Event::kCommit);
  EXPECT_EQ(commit.commit_lsn, Lsn(300));
  f.Release();

  f.OnBegin(streamed, true);  // a resend of 300, recognised only at its commit
  for (int i = 0; i < 5; ++i) f.OnAppend(Row(i));
  ASSERT_TRUE(f.TryClaim(Lsn(300), &b));
  f.OnCommit(Txn(300));
  while ((ev = f.Next(&c, &commit, 0ms)) == Event::kChange) {
  }
  EXPECT_EQ(ev, Event::kAborted);
  f.Release();
  Write(&f, 400, 5, /*do_commit=*/false);  // the next one follows 300, not the resend
  EXPECT_TRUE(f.TryClaim(Lsn(300), &b));
}

TEST(LiveFeedTest, FullQueueDropsTheTransactionAfterMaxWait) {
  LiveFeedOptions o = Small();
  o.max_queued_bytes = 1;  // full after the first queued change
  o.max_wait = 100ms;
  LiveFeed f(o, Lsn(100));
  TransactionInfo b;
  auto t0 = std::chrono::steady_clock::now();
  Write(&f, 200, 10, /*do_commit=*/false);  // claimed by nobody: the writer waits, then drops
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(f.dropped(), 1u);
  EXPECT_FALSE(f.TryClaim(Lsn(100), &b));
}

TEST(LiveFeedTest, UnclaimedFullQueueWaitsOnlyMaxWaitUnclaimed) {
  LiveFeedOptions o = Small();
  o.max_queued_bytes = 1;
  o.max_wait = std::chrono::milliseconds(60000);
  o.max_wait_unclaimed = 100ms;
  LiveFeed f(o, Lsn(100));
  auto t0 = std::chrono::steady_clock::now();
  Write(&f, 200, 10, /*do_commit=*/false);  // the applier is busy elsewhere: nobody claims
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(f.dropped(), 1u);
  TransactionInfo b;
  EXPECT_FALSE(f.TryClaim(Lsn(100), &b));
}

TEST(LiveFeedTest, WriterWaitsForAConsumingApplier) {
  LiveFeedOptions o = Small();
  o.max_queued_bytes = 2000;  // a few changes
  LiveFeed f(o, Lsn(100));
  constexpr int kRows = 5000;
  std::thread writer([&] { Write(&f, 200, kRows); });
  TransactionInfo b;
  while (!f.TryClaim(Lsn(100), &b)) std::this_thread::sleep_for(1ms);
  Change c;
  TransactionInfo commit;
  int n = 0;
  for (;;) {
    Event ev = f.Next(&c, &commit, 1000ms);
    if (ev == Event::kChange) {
      EXPECT_EQ(c.new_tuple[0].text, std::to_string(n));
      ++n;
      continue;
    }
    EXPECT_EQ(ev, Event::kCommit);
    break;
  }
  writer.join();
  EXPECT_EQ(n, kRows);
  EXPECT_EQ(f.dropped(), 0u);
  f.Release();
}

}  // namespace
}  // namespace tenantsync::apply::internal
