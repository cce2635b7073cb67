// End to end: the `tenantsync run` binary snapshots and streams a RAWDOG source into a tenant
// schema while the change workload runs; after catch-up every table of the tenant schema equals
// the transformed source, row by row (a multiset comparison of full rows in the target's own
// types, so duplicates in the keyless table count). Under pgoutput and wal2json, across kill -9
// at random points, with a TOAST-heavy workload, and with the target down for a while.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/crypto.h"
#include "core/pg.h"
#include "tests/fixtures/rawdog.h"
#include "tests/fixtures/rawdog_config.h"
#include "tests/harness/bridge_process.h"
#include "tests/harness/bridge_roles.h"
#include "tests/harness/table_compare.h"
#include "tests/harness/test_env.h"

namespace tenantsync {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

using Bridge = testing::BridgeProcess;

class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& env = testing::Clusters();
    auto src = env.source().CreateDatabase("e2e_src");
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    src_db_ = *src;
    auto tgt = env.target().CreateDatabase("e2e_tgt");
    ASSERT_TRUE(tgt.ok()) << tgt.status().ToString();
    tgt_db_ = *tgt;
    ASSERT_TRUE(testing::LoadRawdog(SourceUrl(), 1).ok());
    // The catch-up marker: a change committed after everything else the test wrote.
    ASSERT_TRUE(env.source().Exec(src_db_, "CREATE TABLE e2e_marker (id serial PRIMARY KEY, "
                                           "at timestamptz DEFAULT now())").ok());
    char tmpl[] = "/tmp/tenantsync-e2e-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    slot_ = "ts_" + src_db_;
    // The bridge runs as the least-privilege roles; the DBA's publication covers every table.
    Status s = testing::GrantBridgeSource(env.source(), src_db_, /*publication=*/slot_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = testing::GrantBridgeTarget(env.target(), tgt_db_, "tenant_rawdog");
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void TearDown() override {
    bridge_.reset();
    auto& src = testing::Clusters().source();
    src.Exec(src_db_, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name = '" + slot_ + "'").IgnoreError();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // The superuser's URLs (the application's workload, the checks).
  std::string SourceUrl() const { return testing::Clusters().source().Url(src_db_); }
  std::string TargetUrl() const { return testing::Clusters().target().Url(tgt_db_); }
  // The bridge's: the least-privilege roles (tests/harness/bridge_roles.h).
  std::string BridgeSourceUrl() const {
    return testing::Clusters().source().Url(src_db_, testing::kBridgeSourceRole);
  }
  std::string BridgeTargetUrl() const {
    return testing::Clusters().target().Url(tgt_db_, testing::kBridgeTargetRole);
  }

  // Writes the RAWDOG pipeline config (examples/rawdog.yaml's rules) and loads it.
  void WriteConfig(const std::string& plugin, const std::string& schema_drift = "add") {
    std::string key = Base64Encode(std::string(32, '\x2a'));
    config_path_ = dir_ + "/rawdog.yaml";
    std::ofstream out(config_path_);
    out << "pipeline: rawdog\n"
        << "source: {url: \"" << BridgeSourceUrl() << "\", schema: public, plugin: " << plugin
        << ", publication: " << slot_ << ", slot: " << slot_ << "}\n"
        << "target: {url: \"" << BridgeTargetUrl() << "\", schema: tenant_rawdog}\n"
        << "tenant: {slug: rawdog, name: RAWDOG Skincare, secrets: {shopify_access_token: tok}}\n"
        << "state_dir: " << dir_ << "/state\n"
        << "encryption: {key: \"" << key << "\"}\n"
        << "ops: {listen: \"127.0.0.1:0\"}\n"
        << "snapshot: {workers: 2}\n"
        << "apply: {batch_max_ms: 100, schema_drift: " << schema_drift << "}\n"
        << testing::kRawdogTablesYaml;
    out.close();
    auto cfg = LoadConfig(config_path_);
    ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
    config_ = *cfg;
    auto cipher = Cipher::FromConfig(config_.encryption);
    ASSERT_TRUE(cipher.ok()) << cipher.status().ToString();
    cipher_.emplace(std::move(cipher).value());
    bridge_ = std::make_unique<Bridge>(testing::TenantsyncBinary(TENANTSYNC_BINARY_PATH), config_path_,
                                      dir_ + "/bridge.log");
  }

  StatusOr<testing::WorkloadResult> Workload(int per_client, testing::WorkloadMix mix,
                                             uint64_t seed = 1) {
    testing::WorkloadOptions o;
    o.clients = 2;
    o.transactions_per_client = per_client;
    o.mix = mix;
    o.seed = seed;
    return testing::RunRawdogWorkload(SourceUrl(), o);
  }

  // Commits a marker after everything written so far and waits until the target has applied it.
  ::testing::AssertionResult WaitCaughtUp(int seconds) {
    auto& src = testing::Clusters().source();
    auto before = src.QueryValue(src_db_, "SELECT pg_current_wal_lsn()::text");
    if (!before.ok()) return ::testing::AssertionFailure() << before.status().ToString();
    Status s = src.Exec(src_db_, "INSERT INTO e2e_marker DEFAULT VALUES");
    if (!s.ok()) return ::testing::AssertionFailure() << s.ToString();
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    auto next_marker = Clock::now() + std::chrono::seconds(2);
    std::string last;
    while (Clock::now() < deadline) {
      // A marker committed before the slot existed went with the snapshot, not the stream:
      // commit another now and then until one is applied.
      if (Clock::now() > next_marker) {
        src.Exec(src_db_, "INSERT INTO e2e_marker DEFAULT VALUES").IgnoreError();
        next_marker = Clock::now() + std::chrono::seconds(2);
      }
      auto v = testing::Clusters().target().QueryValue(
          tgt_db_, "SELECT applied_lsn >= '" + *before +
                       "'::pg_lsn FROM _tenantsync.progress WHERE pipeline = 'rawdog'");
      if (v.ok() && *v == "t") return ::testing::AssertionSuccess();
      last = v.ok() ? *v : v.status().ToString();
      if (bridge_->Exited()) {
        return ::testing::AssertionFailure() << "the bridge exited: " << bridge_->LogTail();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return ::testing::AssertionFailure() << "not caught up with " << *before << " after "
                                         << seconds << " s (" << last << "): "
                                         << bridge_->LogTail();
  }

  // Every table: the transformed source rows and the target rows are equal as multisets of full
  // rows (compared by the target server in the target's types). Returns one line per difference.
  // Every table equals the transformed source row by row (tests/harness/table_compare.h); one
  // line per difference.
  std::vector<std::string> CompareAll() {
    std::vector<std::string> tables = testing::RawdogTables();
    tables.push_back("e2e_marker");
    auto src = testing::Clusters().source().Connect(src_db_);
    auto tgt = testing::Clusters().target().Connect(tgt_db_);
    if (!src.ok() || !tgt.ok()) return {"cannot connect for the comparison"};
    return testing::CompareTables(&*src, &*tgt, config_, cipher_ ? &*cipher_ : nullptr, tables)
        .differences;
  }

  std::string SlotConfirmed() {
    auto v = testing::Clusters().source().QueryValue(
        src_db_, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots "
                 "WHERE slot_name = '" + slot_ + "'");
    return v.ok() ? *v : "0/0";
  }

  std::string src_db_, tgt_db_, dir_, slot_, config_path_;
  Config config_;
  std::optional<Cipher> cipher_;
  std::unique_ptr<Bridge> bridge_;
};

class E2ePluginTest : public E2eTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(E2ePluginTest, RunSnapshotsAndStreamsAWorkloadIntoEqualTables) {
  WriteConfig(GetParam());
  bridge_->Start();
  auto result = Workload(150, testing::WorkloadMix::kBalanced);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_TRUE(WaitCaughtUp(240));
  // A source column added mid-stream (schema_drift: add): the next changes carry it over. (After
  // the catch-up, so that the snapshot is done: a column added before the slot exists is the
  // snapshot's business.) Under wal2json, which has no Relation messages, the decoder learns
  // the column from the change itself.
  ASSERT_TRUE(testing::Clusters()
                  .source()
                  .Exec(src_db_,
                        "ALTER TABLE products ADD COLUMN e2e_badge text; "
                        "UPDATE products SET e2e_badge = 'new-' || id WHERE id % 7 = 0")
                  .ok());
  ASSERT_TRUE(WaitCaughtUp(240));
  auto diffs = CompareAll();
  EXPECT_THAT(diffs, ::testing::IsEmpty()) << bridge_->LogTail();
  // Idle and caught up: the progress line shows no lag.
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline && bridge_->Log().find("lag 0 B 0.0 s") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_THAT(bridge_->Log(), HasSubstr("lag 0 B 0.0 s"));
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

// The same drift under `apply.schema_drift: stop`: the bridge stops with a message naming the
// table and the column and leaves the target as it was; once the column is added to the target
// by hand, a restart applies the journaled changes and the tables are equal.
TEST_P(E2ePluginTest, MidStreamColumnUnderStopPolicyStopsAndContinuesAfterTheFix) {
  WriteConfig(GetParam(), "stop");
  bridge_->Start();
  auto result = Workload(40, testing::WorkloadMix::kBalanced, 3);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_TRUE(WaitCaughtUp(240));
  auto& src = testing::Clusters().source();
  auto& tgt = testing::Clusters().target();
  ASSERT_TRUE(src.Exec(src_db_,
                       "ALTER TABLE products ADD COLUMN e2e_badge text; "
                       "UPDATE products SET e2e_badge = 'new-' || id WHERE id % 7 = 0")
                  .ok());
  ASSERT_TRUE(src.Exec(src_db_, "INSERT INTO e2e_marker DEFAULT VALUES").ok());
  int code = bridge_->WaitExit(240);
  ASSERT_NE(code, -1000) << "the bridge did not stop on the new column: " << bridge_->LogTail();
  EXPECT_NE(code, 0);
  std::string log = bridge_->Log();
  EXPECT_THAT(log, HasSubstr("tenant_rawdog.products has no column e2e_badge"));
  EXPECT_THAT(log, HasSubstr("apply.schema_drift: add"));
  auto has_column =
      tgt.QueryValue(tgt_db_,
                     "SELECT count(*) FROM information_schema.columns WHERE table_schema = "
                     "'tenant_rawdog' AND table_name = 'products' AND column_name = 'e2e_badge'");
  ASSERT_TRUE(has_column.ok()) << has_column.status().ToString();
  EXPECT_EQ(*has_column, "0") << "stop must not alter the target";
  // The operator's fix, then a restart: the journal still holds the stopped changes.
  ASSERT_TRUE(
      tgt.Exec(tgt_db_, "ALTER TABLE tenant_rawdog.products ADD COLUMN e2e_badge text").ok());
  bridge_->Start();
  ASSERT_TRUE(WaitCaughtUp(240));
  auto diffs = CompareAll();
  EXPECT_THAT(diffs, ::testing::IsEmpty()) << bridge_->LogTail();
  auto badges = tgt.QueryValue(tgt_db_, "SELECT count(e2e_badge) FROM tenant_rawdog.products");
  auto want = src.QueryValue(src_db_, "SELECT count(e2e_badge) FROM products");
  ASSERT_TRUE(badges.ok() && want.ok());
  EXPECT_EQ(*badges, *want);
  EXPECT_NE(*want, "0");
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

INSTANTIATE_TEST_SUITE_P(Plugins, E2ePluginTest, ::testing::Values("pgoutput", "wal2json"));

TEST_F(E2eTest, KillNineAtRandomPointsAndRestartStillEqual) {
  WriteConfig("pgoutput");
  std::atomic<bool> workload_done{false};
  StatusOr<testing::WorkloadResult> result = Status(StatusCode::kFatal, "not run");
  std::thread workload([&] {
    result = Workload(400, testing::WorkloadMix::kBalanced, 7);
    workload_done.store(true);
  });
  std::mt19937 rng(20261121);
  std::uniform_int_distribution<int> pause_ms(300, 2500);
  for (int kill = 0; kill < 10; ++kill) {
    bridge_->Start();
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    bridge_->Kill9();
  }
  workload.join();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  bridge_->Start();
  ASSERT_TRUE(WaitCaughtUp(300));
  auto diffs = CompareAll();
  EXPECT_THAT(diffs, ::testing::IsEmpty()) << bridge_->LogTail();
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

TEST_F(E2eTest, ToastHeavyUpdatesKeepTheLargeValues) {
  WriteConfig("pgoutput");
  bridge_->Start();
  ASSERT_TRUE(WaitCaughtUp(240));
  auto result = Workload(150, testing::WorkloadMix::kToastHeavy, 3);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_TRUE(WaitCaughtUp(240));
  auto diffs = CompareAll();
  EXPECT_THAT(diffs, ::testing::IsEmpty()) << bridge_->LogTail();
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

TEST_F(E2eTest, TargetDownTheSlotStillAdvancesAndTheApplierCatchesUp) {
  WriteConfig("pgoutput");
  bridge_->Start();
  ASSERT_TRUE(WaitCaughtUp(240));
  auto& target = testing::Clusters().target();
  ASSERT_TRUE(target.Stop(testing::StopMode::kFast).ok());
  auto result = Workload(100, testing::WorkloadMix::kBalanced, 5);
  auto after = testing::Clusters().source().QueryValue(src_db_, "SELECT pg_current_wal_lsn()::text");
  bool advanced = false;
  if (result.ok() && after.ok()) {
    auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline && !advanced) {
      auto v = testing::Clusters().source().QueryValue(
          src_db_, "SELECT confirmed_flush_lsn >= '" + *after + "'::pg_lsn FROM "
                   "pg_replication_slots WHERE slot_name = '" + slot_ + "'");
      advanced = v.ok() && *v == "t";
      if (!advanced) std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }
  ASSERT_TRUE(target.StartServer().ok());  // before any assertion can leave it down
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_TRUE(advanced) << "slot at " << SlotConfirmed() << ", source at " << *after;
  ASSERT_TRUE(WaitCaughtUp(240));
  auto diffs = CompareAll();
  EXPECT_THAT(diffs, ::testing::IsEmpty()) << bridge_->LogTail();
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

}  // namespace
}  // namespace tenantsync
