#include "ops/live_publisher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "state/internal/test_util.h"
#include "state/state_store.h"

namespace tenantsync::ops {
namespace {

using state::StateStore;
using state::testing::TempDir;

std::unique_ptr<StateStore> OpenWriter(const std::string& dir) {
  state::StateOptions o;
  o.dir = dir;
  o.pipeline = "rawdog";
  auto s = StateStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

// What another process sees: a read-only secondary opened beside the writer.
std::optional<LiveFigures> ReadFromOutside(const std::string& dir) {
  auto reader = StateStore::OpenReadOnly(dir);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  if (!reader.ok()) return std::nullopt;
  auto v = (*reader)->GetMeta(kMetaLive);
  if (!v.ok() || !v->has_value()) return std::nullopt;
  return LiveFigures::Decode(**v);
}

TEST(LiveFigures, RoundTripsAndRejectsMalformedText) {
  LiveFigures f;
  f.at_us = 1'700'000'000'000'000;
  f.pid = 4242;
  f.phase = "streaming";
  f.transactions_applied = 12;
  f.rows_applied = 34;
  f.txn_per_second = 5.5;
  f.rows_per_second = 7.25;
  f.received_lsn = Lsn(0x1'0000'0010);
  f.journaled_lsn = Lsn(0x1'0000'0008);
  f.applied_lsn = Lsn(0x1'0000'0004);
  f.applied_commit_time_us = 99;
  f.caught_up_time_us = 98;
  f.dead_letters = 3;
  auto back = LiveFigures::Decode(f.Encode());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->Encode(), f.Encode());
  EXPECT_EQ(back->applied_lsn, f.applied_lsn);
  EXPECT_EQ(back->pid, 4242);
  EXPECT_FALSE(LiveFigures::Decode("").has_value());
  EXPECT_FALSE(LiveFigures::Decode("{\"at_us\": 1}").has_value());
  EXPECT_FALSE(LiveFigures::Decode("[1,2]").has_value());
  std::string bad_lsn = f.Encode();
  bad_lsn.replace(bad_lsn.find("1/4"), 3, "zz");
  EXPECT_FALSE(LiveFigures::Decode(bad_lsn).has_value());
}

TEST(LivePublisher, AnotherReaderSeesRatesWhileRunningAndStoppedAfterwards) {
  TempDir tmp;
  auto store = OpenWriter(tmp.path());
  ASSERT_NE(store, nullptr);
  PipelineStats live;
  live.SetPhase(PipelineStats::Phase::kStreaming);
  auto publisher = std::make_unique<LivePublisher>(store.get(), &live, std::chrono::milliseconds(100));

  // Apply 50 transactions of 2 rows each while it publishes.
  for (int i = 0; i < 50; ++i) {
    live.transactions_applied.fetch_add(1);
    live.AddRows("orders", "insert", 2);
    live.applied_lsn.store(0x1000 + i);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // >= 2 intervals after the last
  auto running = ReadFromOutside(tmp.path());
  ASSERT_TRUE(running.has_value());
  EXPECT_EQ(running->phase, "streaming");
  EXPECT_EQ(running->pid, static_cast<int64_t>(::getpid()));
  EXPECT_EQ(running->transactions_applied, 50u);
  EXPECT_EQ(running->rows_applied, 100u);
  EXPECT_EQ(running->applied_lsn, Lsn(0x1000 + 49));
  EXPECT_LE(NowMicros() - running->at_us, 1'000'000);

  // While applying, the rate over an interval is the work done in it.
  bool saw_rate = false;
  for (int i = 0; i < 40 && !saw_rate; ++i) {
    live.transactions_applied.fetch_add(10);
    live.AddRows("orders", "update", 10);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    auto f = ReadFromOutside(tmp.path());
    saw_rate = f.has_value() && f->txn_per_second > 0 && f->rows_per_second > 0;
  }
  EXPECT_TRUE(saw_rate);

  publisher->Stop();
  auto stopped = ReadFromOutside(tmp.path());
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(stopped->phase, "stopped");  // the process is leaving, whatever phase it was in
  EXPECT_EQ(stopped->txn_per_second, 0);
  EXPECT_EQ(stopped->transactions_applied, live.transactions_applied.load());
}

TEST(LivePublisher, AFailedPipelineIsPublishedAsFailed) {
  TempDir tmp;
  auto store = OpenWriter(tmp.path());
  ASSERT_NE(store, nullptr);
  PipelineStats live;
  LivePublisher publisher(store.get(), &live);
  live.SetPhase(PipelineStats::Phase::kFailed);
  publisher.Stop();
  auto f = ReadFromOutside(tmp.path());
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->phase, "failed");
}

}  // namespace
}  // namespace tenantsync::ops
