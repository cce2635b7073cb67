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

#include "apply/internal/sql_builder.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/pg.h"
#include "core/transform.h"
#include "tests/fixtures/rawdog.h"
#include "tests/harness/test_env.h"

namespace tenantsync {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

std::string BinaryPath() {
  const char* env = std::getenv("TENANTSYNC_BINARY");
  return env && *env ? env : TENANTSYNC_BINARY_PATH;
}

// The bridge process: `tenantsync -c CONFIG run`, stdout and stderr appended to a log file.
class Bridge {
 public:
  Bridge(std::string config, std::string log) : config_(std::move(config)), log_(std::move(log)) {}
  ~Bridge() {
    if (pid_ > 0) Kill9();
  }
  void Start(const char* command = "run") {
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::string bin = BinaryPath();
      execl(bin.c_str(), bin.c_str(), "-c", config_.c_str(), command, static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  void Kill9() {
    kill(pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  // SIGINT, then the exit code (or -signal); -1000 when it did not exit within 60 s.
  int Interrupt() {
    kill(pid_, SIGINT);
    for (int i = 0; i < 600; ++i) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    Kill9();
    return -1000;
  }
  // Waits for the process to exit by itself: its exit code (or -signal); -1000 after `seconds`.
  int WaitExit(int seconds) {
    for (int i = 0; i < seconds * 10; ++i) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1000;
  }
  bool Exited() {
    int st;
    if (pid_ > 0 && waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return pid_ <= 0;
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string LogTail() const {
    std::string l = Log();
    return l.size() > 3000 ? l.substr(l.size() - 3000) : l;
  }

 private:
  std::string config_;
  std::string log_;
  pid_t pid_ = -1;
};

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
  }
  void TearDown() override {
    bridge_.reset();
    auto& src = testing::Clusters().source();
    src.Exec(src_db_, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name = '" + slot_ + "'").IgnoreError();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  std::string SourceUrl() const { return testing::Clusters().source().Url(src_db_); }
  std::string TargetUrl() const { return testing::Clusters().target().Url(tgt_db_); }

  // Writes the RAWDOG pipeline config (examples/rawdog.yaml's rules) and loads it.
  void WriteConfig(const std::string& plugin, const std::string& schema_drift = "add") {
    std::string key = Base64Encode(std::string(32, '\x2a'));
    config_path_ = dir_ + "/rawdog.yaml";
    std::ofstream out(config_path_);
    out << "pipeline: rawdog\n"
        << "source: {url: \"" << SourceUrl() << "\", schema: public, plugin: " << plugin
        << ", publication: " << slot_ << ", slot: " << slot_ << "}\n"
        << "target: {url: \"" << TargetUrl() << "\", schema: tenant_rawdog}\n"
        << "tenant: {slug: rawdog, name: RAWDOG Skincare, secrets: {shopify_access_token: tok}}\n"
        << "state_dir: " << dir_ << "/state\n"
        << "encryption: {key: \"" << key << "\"}\n"
        << "ops: {listen: \"127.0.0.1:0\"}\n"
        << "snapshot: {workers: 2}\n"
        << "apply: {batch_max_ms: 100, schema_drift: " << schema_drift << "}\n"
        << R"(tables:
  orders:
    columns:
      gross_sales_cents: {type: bigint, on_error: 0}
      migrated_at: {type: timestamptz, value: now}
  creators:
    columns:
      commission_percent: {type: double precision, on_error: 10}
      payout_email: {encrypt: true}
      access_token: {encrypt: true}
  customers:
    columns:
      phone: {rename: phone_number, encrypt: true}
      email: {encrypt: true}
  withdrawal_requests:
    columns:
      bank_account: {encrypt: true}
  esign_documents:
    columns:
      signer_email: {encrypt: true}
)";
    out.close();
    auto cfg = LoadConfig(config_path_);
    ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
    config_ = *cfg;
    auto cipher = Cipher::FromConfig(config_.encryption);
    ASSERT_TRUE(cipher.ok()) << cipher.status().ToString();
    cipher_.emplace(std::move(cipher).value());
    bridge_ = std::make_unique<Bridge>(config_path_, dir_ + "/bridge.log");
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
  std::vector<std::string> CompareAll() {
    std::vector<std::string> diffs;
    std::vector<std::string> tables = testing::RawdogTables();
    tables.push_back("e2e_marker");
    auto src = testing::Clusters().source().Connect(src_db_);
    auto tgt = testing::Clusters().target().Connect(tgt_db_);
    if (!src.ok() || !tgt.ok()) return {"cannot connect for the comparison"};
    for (const std::string& t : tables) {
      std::string d = CompareTable(&*src, &*tgt, t);
      if (!d.empty()) diffs.push_back(t + ": " + d);
    }
    return diffs;
  }

  std::string CompareTable(PgConn* src, PgConn* tgt, const std::string& table) {
    auto cols = src->ExecParams(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
        "coalesce(a.attnum = ANY (i.indkey), false) FROM pg_attribute a "
        "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
        "WHERE a.attrelid = ('public.' || quote_ident($1))::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum",
        {table});
    if (!cols.ok()) return cols.status().ToString();
    std::vector<SourceColumn> source_columns;
    std::string select;
    for (int i = 0; i < cols->rows(); ++i) {
      source_columns.push_back({std::string(cols->Get(i, 0)), std::string(cols->Get(i, 1)),
                                cols->Get(i, 2) == "t"});
      select += (i ? ", " : "") + QuoteIdent(cols->Get(i, 0));
    }
    auto transform = TableTransform::Build(table, config_.FindTable(table), source_columns,
                                           &*cipher_);
    if (!transform.ok()) return transform.status().ToString();
    std::vector<int> compared;  // target columns fed by the source (`value: now` is not compared)
    std::string target_cols;
    for (size_t i = 0; i < transform->target_columns().size(); ++i) {
      if (transform->target_columns()[i].source_index < 0) continue;
      compared.push_back(static_cast<int>(i));
      target_cols += (target_cols.empty() ? "" : ", ") +
                     QuoteIdent(transform->target_columns()[i].name);
    }
    std::string qualified = QuoteQualified("tenant_rawdog", config_.TargetTable(table));
    auto rows = src->Exec("SELECT " + select + " FROM " + QuoteQualified("public", table));
    if (!rows.ok()) return rows.status().ToString();
    Status s = tgt->Run("SET client_min_messages = warning; DROP TABLE IF EXISTS pg_temp.expected; "
                        "CREATE TEMP TABLE expected AS "
                        "SELECT " + target_cols + " FROM " + qualified + " WITH NO DATA");
    if (!s.ok()) return s.ToString();
    auto copy = tgt->Exec("COPY expected FROM STDIN");
    if (!copy.ok()) return copy.status().ToString();
    TransformContext ctx;
    ctx.now = "2000-01-01 00:00:00+00";
    std::string buf;
    for (int r = 0; r < rows->rows(); ++r) {
      Tuple in, out;
      for (int c = 0; c < rows->columns(); ++c) {
        in.push_back(rows->IsNull(r, c) ? Datum::Null() : Datum::Text(std::string(rows->Get(r, c))));
      }
      Status ts = transform->Apply(in, &out, ctx);
      if (!ts.ok()) return "transform: " + ts.ToString();
      for (size_t k = 0; k < compared.size(); ++k) {
        if (k) buf += '\t';
        apply::internal::AppendCopyText(out[compared[k]], &buf);
      }
      buf += '\n';
    }
    if (PQputCopyData(tgt->get(), buf.data(), static_cast<int>(buf.size())) != 1 ||
        PQputCopyEnd(tgt->get(), nullptr) != 1) {
      return "COPY failed: " + tgt->LastError();
    }
    for (;;) {
      PgResult r(PQgetResult(tgt->get()));
      if (!r.get()) break;
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return "COPY failed: " + tgt->LastError();
    }
    auto diff = tgt->Exec(
        "SELECT (SELECT count(*) FROM (SELECT * FROM expected EXCEPT ALL SELECT " + target_cols +
        " FROM " + qualified + ") a), (SELECT count(*) FROM (SELECT " + target_cols + " FROM " +
        qualified + " EXCEPT ALL SELECT * FROM expected) b), (SELECT count(*) FROM expected)");
    if (!diff.ok()) return diff.status().ToString();
    std::string missing(diff->Get(0, 0)), extra(diff->Get(0, 1));
    if (missing == "0" && extra == "0") return "";
    return missing + " of " + std::string(diff->Get(0, 2)) +
           " source rows missing or different in the target, " + extra + " extra target rows";
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
