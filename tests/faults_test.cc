// Faults (the CI-sized run of issue 9's fault suite): the `tenantsync run` binary under the RAWDOG
// change workload takes kill -9 at random moments (during the snapshot, while streaming, mid-batch)
// and an immediate restart of the target server (`pg_ctl restart -m immediate`: no checkpoint,
// crash recovery), is restarted each time, and after catch-up every table of the tenant schema
// must equal the transformed source row by row (the comparison of tests/e2e_test.cc). Prints the
// counts: faults injected, bridge restarts, rows compared, differences.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
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
#include "tests/harness/tcp_proxy.h"
#include "tests/harness/test_env.h"

namespace tenantsync {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

using Bridge = testing::BridgeProcess;

class FaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& env = testing::Clusters();
    auto src = env.source().CreateDatabase("faults_src");
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    src_db_ = *src;
    auto tgt = env.target().CreateDatabase("faults_tgt");
    ASSERT_TRUE(tgt.ok()) << tgt.status().ToString();
    tgt_db_ = *tgt;
    ASSERT_TRUE(testing::LoadRawdog(SourceUrl(), 1).ok());
    // The catch-up marker: a change committed after everything else the test wrote.
    ASSERT_TRUE(env.source()
                    .Exec(src_db_,
                          "CREATE TABLE e2e_marker (id serial PRIMARY KEY, "
                          "at timestamptz DEFAULT now())")
                    .ok());
    char tmpl[] = "/tmp/tenantsync-faults-XXXXXX";
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
    src.Exec(src_db_,
             "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
             "WHERE slot_name = '" +
                 slot_ + "'")
        .IgnoreError();
    if (!tmpfs_.empty() && std::system(("umount -l " + tmpfs_ + " 2>/dev/null").c_str()) != 0) {
      std::cout << "could not unmount " << tmpfs_ << "\n";
    }
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // The superuser's URLs (the application's workload, the checks).
  std::string SourceUrl() const { return testing::Clusters().source().Url(src_db_); }
  std::string TargetUrl() const { return testing::Clusters().target().Url(tgt_db_); }
  // The URLs the bridge is given: the least-privilege roles (tests/harness/bridge_roles.h),
  // through a TcpProxy when a test sets its port.
  std::string BridgeSourceUrl() const {
    return bridge_source_port_
               ? std::string("postgresql://") + testing::kBridgeSourceRole + "@127.0.0.1:" +
                     std::to_string(bridge_source_port_) + "/" + src_db_
               : testing::Clusters().source().Url(src_db_, testing::kBridgeSourceRole);
  }
  std::string BridgeTargetUrl() const {
    return bridge_target_port_
               ? std::string("postgresql://") + testing::kBridgeTargetRole + "@127.0.0.1:" +
                     std::to_string(bridge_target_port_) + "/" + tgt_db_
               : testing::Clusters().target().Url(tgt_db_, testing::kBridgeTargetRole);
  }
  int bridge_source_port_ = 0, bridge_target_port_ = 0;

  // Writes the RAWDOG pipeline config (examples/rawdog.yaml's rules) and loads it.
  void WriteConfig(const std::string& plugin) {
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
        << "apply: {batch_max_ms: 100}\n"
        << testing::kRawdogTablesYaml;
    out.close();
    auto cfg = LoadConfig(config_path_);
    ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
    config_ = *cfg;
    auto cipher = Cipher::FromConfig(config_.encryption);
    ASSERT_TRUE(cipher.ok()) << cipher.status().ToString();
    cipher_.emplace(std::move(cipher).value());
    bridge_ = std::make_unique<Bridge>(Binary(), config_path_, dir_ + "/bridge.log");
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
    return ::testing::AssertionFailure() << "not caught up with " << *before << " after " << seconds
                                         << " s (" << last << "): " << bridge_->LogTail();
  }

  static std::string Binary() { return testing::TenantsyncBinary(TENANTSYNC_BINARY_PATH); }

  // Every table equals the transformed source row by row (tests/harness/table_compare.h).
  // Returns one line per difference; adds the rows compared to rows_compared_.
  std::vector<std::string> CompareAll() {
    std::vector<std::string> tables = testing::RawdogTables();
    tables.push_back("e2e_marker");
    auto src = testing::Clusters().source().Connect(src_db_);
    auto tgt = testing::Clusters().target().Connect(tgt_db_);
    if (!src.ok() || !tgt.ok()) return {"cannot connect for the comparison"};
    testing::TableComparison c =
        testing::CompareTables(&*src, &*tgt, config_, cipher_ ? &*cipher_ : nullptr, tables);
    rows_compared_ += c.rows_compared;
    return c.differences;
  }
  int64_t rows_compared_ = 0;

  std::string SlotConfirmed() {
    auto v = testing::Clusters().source().QueryValue(
        src_db_,
        "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots "
        "WHERE slot_name = '" +
            slot_ + "'");
    return v.ok() ? *v : "0/0";
  }

  // Bytes of WAL the slot holds back on the source (pg_current_wal_lsn - restart_lsn).
  int64_t SlotRetainedBytes() {
    auto v = testing::Clusters().source().QueryInt(
        src_db_, "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), -1)::bigint "
                 "FROM pg_replication_slots WHERE slot_name = '" + slot_ + "'");
    return v.ok() ? *v : -1;
  }
  int64_t WalBytesSince(const std::string& lsn) {
    auto v = testing::Clusters().source().QueryInt(
        src_db_, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '" + lsn + "')::bigint");
    return v.ok() ? *v : -1;
  }

  std::string src_db_, tgt_db_, dir_, slot_, config_path_, tmpfs_;
  Config config_;
  std::optional<Cipher> cipher_;
  std::unique_ptr<Bridge> bridge_;
};

TEST_F(FaultsTest, KillNineAndImmediateRestartsUnderWorkloadLoseNothing) {
  WriteConfig("pgoutput");
  // kill -9 count: 5 in CI; TENANTSYNC_FAULT_KILLS=20 (bench/faults_long.sh) for the long run.
  const char* kills_env = std::getenv("TENANTSYNC_FAULT_KILLS");
  const int kill_count = kills_env ? std::max(1, std::atoi(kills_env)) : 5;
  // Phase 1: a workload for the whole fault phase (bounded by time, not count).
  StatusOr<testing::WorkloadResult> result = Status(StatusCode::kFatal, "not run");
  std::thread workload([&] {
    testing::WorkloadOptions o;
    o.clients = 2;
    o.transactions_per_client = 0;
    o.seconds = 5 * kill_count;
    o.seed = 11;
    result = testing::RunRawdogWorkload(SourceUrl(), o);
  });
  // Random moments, reproducible: TENANTSYNC_FAULT_SEED=N replays a printed run.
  const char* seed_env = std::getenv("TENANTSYNC_FAULT_SEED");
  const unsigned seed = seed_env ? static_cast<unsigned>(std::strtoul(seed_env, nullptr, 10))
                                 : std::random_device{}();
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pause_ms(200, 3500);
  int kills = 0, target_restarts = 0, source_restarts = 0, bridge_starts = 0;
  auto start_bridge = [&] {
    bridge_->Start();
    ++bridge_starts;
  };
  // kill -9 at random moments: the first ones usually land in the snapshot, later ones in the
  // stream (mid-batch or mid-commit, wherever the moment falls).
  for (int i = 0; i < kill_count; ++i) {
    start_bridge();
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    bridge_->Kill9();
    ++kills;
  }
  // The target crashes and recovers under a running bridge, which must reconnect (or stop, and
  // then be started again as a supervisor would).
  start_bridge();
  std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
  ASSERT_TRUE(testing::Clusters().target().Restart(/*immediate=*/true).ok());
  ++target_restarts;
  workload.join();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  int64_t committed = result->committed;

  // Phase 2: the source crashes and recovers under the bridge (the workload's connections would
  // not survive it, so it runs after), then more changes.
  int exits_after_restart = 0;
  if (bridge_->Exited()) {
    ++exits_after_restart;
    std::cout << "the bridge stopped after the target restart:\n" << bridge_->LogTail() << "\n";
    start_bridge();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
  ASSERT_TRUE(testing::Clusters().source().Restart(/*immediate=*/true).ok());
  ++source_restarts;
  auto more = Workload(100, testing::WorkloadMix::kBalanced, 12);
  ASSERT_TRUE(more.ok()) << more.status().ToString();
  committed += more->committed;
  if (bridge_->Exited()) {
    ++exits_after_restart;
    std::cout << "the bridge stopped after the source restart:\n" << bridge_->LogTail() << "\n";
    start_bridge();
  }
  ASSERT_TRUE(WaitCaughtUp(240));
  auto diffs = CompareAll();
  std::cout << "faults: seed " << seed << ", " << kills + target_restarts + source_restarts
            << " injected and survived (" << kills << " kill -9, " << target_restarts
            << " target and " << source_restarts << " source immediate restarts), " << bridge_starts
            << " bridge starts (" << exits_after_restart << " after a server restart), "
            << committed << " workload transactions, " << rows_compared_ << " rows compared, "
            << diffs.size() << " tables with differences" << std::endl;
  EXPECT_THAT(diffs, ::testing::IsEmpty()) << bridge_->LogTail();
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}


// The network between the bridge and each server is cut (every connection dropped, new ones
// refused) and stalled (connections open, no byte moving) by a TCP proxy, under the workload.
// The bridge must ride it out (or stop with a clear error, and then be restarted as a supervisor
// would), and after catch-up every table equals the source.
TEST_F(FaultsTest, NetworkCutsAndStallsToEachServerLoseNothing) {
  auto source_proxy = testing::TcpProxy::Start(testing::Clusters().source().port());
  auto target_proxy = testing::TcpProxy::Start(testing::Clusters().target().port());
  ASSERT_TRUE(source_proxy.ok() && target_proxy.ok());
  bridge_source_port_ = (*source_proxy)->port();
  bridge_target_port_ = (*target_proxy)->port();
  WriteConfig("pgoutput");
  StatusOr<testing::WorkloadResult> result = Status(StatusCode::kFatal, "not run");
  std::thread workload([&] {
    testing::WorkloadOptions o;
    o.clients = 2;
    o.transactions_per_client = 0;
    o.seconds = 32;
    o.seed = 21;
    result = testing::RunRawdogWorkload(SourceUrl(), o);
  });
  int bridge_starts = 1, bridge_exits = 0;
  bridge_->Start();
  std::this_thread::sleep_for(std::chrono::seconds(4));
  struct Fault {
    testing::TcpProxy* proxy;
    bool cut;  // else stall
    int seconds;
    const char* what;
  };
  const Fault faults[] = {
      {source_proxy->get(), true, 3, "source link cut"},
      {target_proxy->get(), true, 3, "target link cut"},
      {source_proxy->get(), false, 8, "source link stalled"},
      {target_proxy->get(), false, 8, "target link stalled"},
  };
  for (const Fault& f : faults) {
    if (f.cut) {
      f.proxy->Cut();
    } else {
      f.proxy->Stall();
    }
    std::this_thread::sleep_for(std::chrono::seconds(f.seconds));
    f.proxy->Restore();
    std::this_thread::sleep_for(std::chrono::seconds(3));
    if (bridge_->Exited()) {
      // Stopping is allowed, but only clearly: the log's last line names what failed.
      ++bridge_exits;
      std::cout << "the bridge stopped after the " << f.what << ":\n" << bridge_->LogTail() << "\n";
      EXPECT_THAT(bridge_->LogTail(), HasSubstr("tenantsync: "));
      bridge_->Start();
      ++bridge_starts;
    }
  }
  workload.join();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_TRUE(WaitCaughtUp(240));
  auto diffs = CompareAll();
  // The faults hit live connections: each proxy dropped some.
  EXPECT_GT((*source_proxy)->connections_cut(), 0);
  EXPECT_GT((*target_proxy)->connections_cut(), 0);
  std::cout << "network faults: 4 injected (2 cuts, 2 stalls), " << bridge_starts
            << " bridge starts (" << bridge_exits << " stops), " << result->committed
            << " workload transactions, " << rows_compared_ << " rows compared, " << diffs.size()
            << " tables with differences" << std::endl;
  EXPECT_THAT(diffs, ::testing::IsEmpty()) << bridge_->LogTail();
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

// The target is down for a long time while the source keeps writing: the bridge journals what
// it receives and acknowledges it, so the slot advances and the source keeps little WAL; when
// the target is back, the applier catches up from the journal. The outage lasts
// TENANTSYNC_FAULT_TARGET_DOWN_SECONDS (default 40 s in CI; the long run uses minutes).
TEST_F(FaultsTest, TargetDownForLongSourceRetainsLittleWalThenCatchesUp) {
  const char* env = std::getenv("TENANTSYNC_FAULT_TARGET_DOWN_SECONDS");
#if defined(__SANITIZE_ADDRESS__)
  // The bridge under AddressSanitizer receives more slowly, so the source's restart point trails
  // by more than its 15 s running-transactions interval; a longer outage keeps the bound below
  // meaningful (40 s retained 20.6 of 25.6 MB there).
  constexpr int kDefaultDownSeconds = 75;
#else
  constexpr int kDefaultDownSeconds = 40;
#endif
  const int down_seconds = env ? std::atoi(env) : kDefaultDownSeconds;
  WriteConfig("pgoutput");
  bridge_->Start();
  ASSERT_TRUE(WaitCaughtUp(180));
  auto lsn0 = testing::Clusters().source().QueryValue(src_db_, "SELECT pg_current_wal_lsn()::text");
  ASSERT_TRUE(lsn0.ok());
  ASSERT_TRUE(testing::Clusters().target().Stop().ok());
  StatusOr<testing::WorkloadResult> result = Status(StatusCode::kFatal, "not run");
  std::thread workload([&] {
    testing::WorkloadOptions o;
    o.clients = 2;
    o.transactions_per_client = 0;
    o.seconds = down_seconds;
    o.seed = 31;
    result = testing::RunRawdogWorkload(SourceUrl(), o);
  });
  int64_t max_retained = 0, samples = 0;
  auto until = Clock::now() + std::chrono::seconds(down_seconds);
  while (Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    int64_t r = SlotRetainedBytes();
    // Skip the first seconds: the slot's restart point trails its confirmed point a little.
    if (r >= 0 && samples++ >= 2) max_retained = std::max(max_retained, r);
  }
  workload.join();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  // Give the receiver a moment to journal and acknowledge the tail, then measure.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  int64_t written = WalBytesSince(*lsn0);
  int64_t retained_end = SlotRetainedBytes();
  auto unconfirmed = testing::Clusters().source().QueryInt(
      src_db_, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
               "FROM pg_replication_slots WHERE slot_name = '" + slot_ + "'");
  ASSERT_TRUE(unconfirmed.ok()) << unconfirmed.status().ToString();
  const bool bridge_alive = !bridge_->Exited();
  std::cout << "target down " << down_seconds << " s: " << result->committed
            << " transactions, " << written << " bytes of WAL written, slot retained at most "
            << max_retained << " bytes during it and " << retained_end << " at the end ("
            << *unconfirmed << " not yet confirmed); bridge "
            << (bridge_alive ? "kept running" : "stopped") << std::endl;
  EXPECT_TRUE(bridge_alive) << bridge_->LogTail();
  ASSERT_GT(written, 8 << 20) << "the outage wrote too little WAL to show anything";
  // The journal took the changes and the bridge acknowledged them: the slot's confirmed point
  // is (nearly) at the source's WAL position, so the source may recycle the outage's WAL. Its
  // restart point follows only at the running-transactions records the source logs every 15 s
  // (PostgreSQL's LOG_SNAPSHOT_INTERVAL_MS), so what the slot retains is bounded by about that
  // much WAL, however long the outage: less than what the outage wrote.
  EXPECT_LT(*unconfirmed, written / 20);
  EXPECT_LT(retained_end, written * 3 / 4);
  ASSERT_TRUE(testing::Clusters().target().StartServer().ok());
  if (!bridge_alive) bridge_->Start();
  ASSERT_TRUE(WaitCaughtUp(240));
  auto diffs = CompareAll();
  std::cout << rows_compared_ << " rows compared, " << diffs.size() << " tables with differences"
            << std::endl;
  EXPECT_THAT(diffs, ::testing::IsEmpty()) << bridge_->LogTail();
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

// The state directory's disk fills up (a small tmpfs): the bridge stops with a clear error and
// without acknowledging what it could not journal; once space is freed it continues, and nothing
// is lost or doubled.
TEST_F(FaultsTest, StateDiskFullStopsClearlyAndContinuesAfterSpaceIsFreed) {
  tmpfs_ = dir_ + "/state";
  std::filesystem::create_directories(tmpfs_);
  if (std::system(("mount -t tmpfs -o size=6m,mode=0700 tmpfs " + tmpfs_ + " 2>/dev/null").c_str()) != 0) {
    tmpfs_.clear();
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)";
  }
  WriteConfig("pgoutput");
  bridge_->Start();
  ASSERT_TRUE(WaitCaughtUp(180));
  int64_t committed = 0;
  // Write until the bridge stops (the disk fills within seconds at the workload's rate).
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (!bridge_->Exited() && Clock::now() < deadline) {
    auto r = Workload(200, testing::WorkloadMix::kToastHeavy, 41 + committed);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    committed += r->committed;
  }
  ASSERT_TRUE(bridge_->Exited()) << "the bridge kept running with a full state disk: "
                                 << bridge_->LogTail();
  std::string log = bridge_->LogTail();
  std::cout << "disk full after " << committed << " transactions; the bridge said:\n"
            << log.substr(log.rfind("tenantsync:") == std::string::npos ? 0 : log.rfind("tenantsync:"))
            << std::endl;
  EXPECT_THAT(log, ::testing::ContainsRegex("[Nn]o space left on device|disk is full"));
  EXPECT_THAT(log, HasSubstr("tenantsync: "));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("Segmentation")));
  // Free space, restart: it continues from its journal and the slot.
  ASSERT_EQ(std::system(("mount -o remount,size=512m " + tmpfs_).c_str()), 0);
  auto more = Workload(50, testing::WorkloadMix::kBalanced, 49);
  ASSERT_TRUE(more.ok()) << more.status().ToString();
  bridge_->Start();
  ASSERT_TRUE(WaitCaughtUp(240));
  auto diffs = CompareAll();
  std::cout << rows_compared_ << " rows compared, " << diffs.size() << " tables with differences"
            << std::endl;
  EXPECT_THAT(diffs, ::testing::IsEmpty()) << bridge_->LogTail();
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}


// A damaged state directory (an operator's mistake, a bad disk, a restore of the wrong backup)
// stops the bridge with a clear error naming it: never a crash, and never a silent restart from
// zero that would snapshot again over the tenant schema or skip acknowledged changes.
TEST_F(FaultsTest, CorruptOrTruncatedStateDirectoryStopsClearly) {
  namespace fs = std::filesystem;
  WriteConfig("pgoutput");
  bridge_->Start();
  ASSERT_TRUE(WaitCaughtUp(180));
  auto w = Workload(300, testing::WorkloadMix::kBalanced, 51);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE(WaitCaughtUp(120));
  ASSERT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
  const fs::path state = dir_ + "/state", good = dir_ + "/state.good";
  fs::copy(state, good, fs::copy_options::recursive);
  auto applied_before = testing::Clusters().target().QueryValue(
      tgt_db_, "SELECT applied_lsn::text FROM _tenantsync.progress");
  ASSERT_TRUE(applied_before.ok());

  auto newest = [&](const std::string& ext) {
    fs::path best;
    for (const auto& e : fs::directory_iterator(state)) {
      if (e.path().extension() == ext && (best.empty() || e.path().filename() > best.filename())) {
        best = e.path();
      }
    }
    return best;
  };
  auto manifest = [&] {
    for (const auto& e : fs::directory_iterator(state)) {
      if (e.path().filename().string().rfind("MANIFEST-", 0) == 0) return e.path();
    }
    return fs::path();
  };
  struct Damage {
    const char* what;
    std::function<void()> apply;
  };
  // The last one may leave a usable journal (RocksDB recovers to a consistent point of its log);
  // then running on is right if nothing acknowledged was lost, which the comparison proves.
  const std::vector<Damage> damages = {
      {"CURRENT emptied", [&] { fs::resize_file(state / "CURRENT", 0); }},
      {"MANIFEST overwritten with garbage",
       [&] {
         fs::path m = manifest();
         std::ofstream(m, std::ios::binary | std::ios::in) << std::string(64, '\x5a');
       }},
      {"every file removed but the lock",
       [&] {
         for (const auto& e : fs::directory_iterator(state)) {
           if (e.path().filename() != "LOCK") fs::remove_all(e.path());
         }
       }},
      {"newest write-ahead log truncated to half", [&] {
         fs::path log = newest(".log");
         ASSERT_FALSE(log.empty());
         fs::resize_file(log, fs::file_size(log) / 2);
       }},
  };
  int clear_stops = 0, continued = 0;
  for (size_t n = 0; n < damages.size(); ++n) {
    const Damage& d = damages[n];
    SCOPED_TRACE(d.what);
    fs::remove_all(state);
    fs::copy(good, state, fs::copy_options::recursive);
    d.apply();
    bridge_ = std::make_unique<Bridge>(Binary(), config_path_, dir_ + "/damaged-" + std::to_string(n) + ".log");
    bridge_->Start();
    bool exited = false;
    for (int i = 0; i < 200 && !exited; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      exited = bridge_->Exited();
    }
    std::string log = bridge_->Log();
    size_t last = log.rfind("tenantsync: ");
    std::cout << d.what << ": "
              << (exited && last != std::string::npos ? log.substr(last, log.find('\n', last) - last)
                                                      : "kept running")
              << std::endl;
    if (!exited) {
      ASSERT_EQ(n + 1, damages.size()) << "the bridge kept running on a damaged state directory:\n" << log;
      ++continued;
      break;  // the convergence check below runs on this bridge and its recovered journal
    }
    EXPECT_NE(last, std::string::npos) << log;
    EXPECT_THAT(log, HasSubstr(state.string()));
    EXPECT_THAT(log, ::testing::Not(::testing::ContainsRegex("Segmentation|Aborted|terminate called")));
    ++clear_stops;
    // Nothing was redone over the tenant schema.
    auto applied = testing::Clusters().target().QueryValue(
        tgt_db_, "SELECT applied_lsn::text FROM _tenantsync.progress");
    ASSERT_TRUE(applied.ok());
    EXPECT_EQ(*applied, *applied_before);
  }
  std::cout << "damaged state directories: " << damages.size() << " injected, " << clear_stops
            << " clear stops, " << continued << " continued from a recovered journal" << std::endl;
  // Either the bridge runs on its recovered journal, or (all stopped) with the good copy back:
  // it continues and, after more changes, the tenant schema equals the source.
  if (continued == 0) {
    fs::remove_all(state);
    fs::copy(good, state, fs::copy_options::recursive);
    bridge_ = std::make_unique<Bridge>(Binary(), config_path_, dir_ + "/bridge-after.log");
    bridge_->Start();
  }
  auto more = Workload(100, testing::WorkloadMix::kBalanced, 52);
  ASSERT_TRUE(more.ok()) << more.status().ToString();
  ASSERT_TRUE(WaitCaughtUp(120));
  EXPECT_THAT(CompareAll(), ::testing::IsEmpty()) << bridge_->LogTail();
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

}  // namespace
}  // namespace tenantsync
