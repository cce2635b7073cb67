// cutover, replay and rollback against real clusters: a RAWDOG source streamed by
// apply::RunPipeline (on a thread, as `run` would in another process) into a tenant schema.
//
//   - cutover after the workload stopped: barrier reached, sequences synced (a new insert on the
//     target gets the next id, no duplicate key), validation passes, the report is go; then
//     --finish refuses while streaming and drops slot and publication once stopped;
//   - cutover while the source still writes: a no-go naming the writes (the documented warning);
//   - the target restored from a pg_dump taken earlier, replay --from the checkpoint before it:
//     every table equals the transformed source row by row; replaying again over the (now ahead)
//     target converges to the same rows, the keyless table included;
//   - replay --from outside the retained window: kNotFound naming the window;
//   - rollback: refused while streaming, shows and then drops everything, second run a no-op;
//   - the runbook commands through the tenantsync binary.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "apply/pipeline.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/pg.h"
#include "cutover/cutover.h"
#include "cutover/replay.h"
#include "cutover/rollback.h"
#include "state/journal.h"
#include "state/state_store.h"
#include "tests/fixtures/rawdog.h"
#include "tests/fixtures/rawdog_config.h"
#include "tests/harness/bridge_roles.h"
#include "tests/harness/status_matchers.h"
#include "tests/harness/table_compare.h"
#include "tests/harness/test_env.h"

namespace tenantsync {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::StatusIs;
using Clock = std::chrono::steady_clock;

std::string PgBin(const std::string& tool) {
  const char* env = std::getenv("TENANTSYNC_PG_BIN");
  return std::string(env && *env ? env : "/usr/lib/postgresql/15/bin") + "/" + tool;
}

// Runs argv, stdout+stderr into *output; returns the exit code.
int RunProcess(const std::vector<std::string>& argv, std::string* output) {
  char tmpl[] = "/tmp/tenantsync-cutover-out-XXXXXX";
  int fd = mkstemp(tmpl);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  close(fd);
  std::ifstream in(tmpl);
  std::stringstream ss;
  ss << in.rdbuf();
  if (output) *output = ss.str();
  unlink(tmpl);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Captures what a function prints to a FILE*.
class Capture {
 public:
  Capture() : file_(std::tmpfile()) {}
  ~Capture() { std::fclose(file_); }
  FILE* get() { return file_; }
  std::string Text() {
    std::fflush(file_);
    std::rewind(file_);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) out.append(buf, n);
    return out;
  }

 private:
  FILE* file_;
};

class CutoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& env = testing::Clusters();
    ASSERT_OK_AND_ASSIGN(src_db_, env.source().CreateDatabase("cut_src"));
    ASSERT_OK_AND_ASSIGN(tgt_db_, env.target().CreateDatabase("cut_tgt"));
    ASSERT_OK(testing::LoadRawdog(SourceUrl(), 1));
    ASSERT_OK(env.source().Exec(src_db_, "CREATE TABLE cutover_marker (id serial PRIMARY KEY, "
                                         "at timestamptz DEFAULT now())"));
    char tmpl[] = "/tmp/tenantsync-cutover-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    slot_ = "ts_" + src_db_;
    // The pipeline runs as the least-privilege roles; the DBA's publication covers every table.
    ASSERT_OK(testing::GrantBridgeSource(env.source(), src_db_, /*publication=*/slot_));
    ASSERT_OK(testing::GrantBridgeTarget(env.target(), tgt_db_, "tenant_rawdog"));
    WriteConfig();
  }
  void TearDown() override {
    StopPipeline();
    testing::Clusters()
        .source()
        .Exec(src_db_, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       "WHERE slot_name = '" + slot_ + "'")
        .IgnoreError();  // cleanup: the slot may be gone already
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // The superuser's URLs (the application's workload, the checks, pg_dump and pg_restore).
  std::string SourceUrl() const { return testing::Clusters().source().Url(src_db_); }
  std::string TargetUrl() const { return testing::Clusters().target().Url(tgt_db_); }
  // The pipeline's: the least-privilege roles (tests/harness/bridge_roles.h), unless a test
  // switched to the superuser (RunAsSuperuser).
  std::string BridgeSourceUrl() const {
    return bridge_as_superuser_
               ? SourceUrl()
               : testing::Clusters().source().Url(src_db_, testing::kBridgeSourceRole);
  }
  std::string BridgeTargetUrl() const {
    return bridge_as_superuser_
               ? TargetUrl()
               : testing::Clusters().target().Url(tgt_db_, testing::kBridgeTargetRole);
  }
  // The pipeline as the superuser, without the DBA's publication: tenantsync then creates the
  // publication itself, and so drops it too (what cutover --finish and rollback do with a
  // publication the role owns; the roles' case, where it is left in place, is the default).
  void RunAsSuperuser() {
    ASSERT_OK(testing::Clusters().source().Exec(src_db_, "DROP PUBLICATION " + slot_));
    bridge_as_superuser_ = true;
    WriteConfig();
  }
  bool bridge_as_superuser_ = false;

  void WriteConfig() {
    std::string key = Base64Encode(std::string(32, '\x2a'));
    config_path_ = dir_ + "/rawdog.yaml";
    std::ofstream out(config_path_);
    out << "pipeline: rawdog\n"
        << "source: {url: \"" << BridgeSourceUrl() << "\", schema: public, plugin: pgoutput"
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
  }

  // `run` on a thread (snapshot, then stream) until StopPipeline().
  void StartPipeline() {
    stop_.store(false);
    pipeline_status_ = Status::Ok();
    pipeline_ = std::thread([this] {
      apply::PipelineOptions o;
      o.snapshot = true;
      o.progress_interval = std::chrono::milliseconds(0);
      o.handle_signals = false;
      o.stop = &stop_;
      pipeline_status_ = apply::RunPipeline(config_, o);
      pipeline_done_.store(true);
    });
  }
  void StopPipeline() {
    if (!pipeline_.joinable()) return;
    stop_.store(true);
    pipeline_.join();
    pipeline_done_.store(false);
    EXPECT_OK(pipeline_status_);
  }

  // A marker committed after everything so far, then waits until the target applied it.
  ::testing::AssertionResult WaitCaughtUp(int seconds = 240) {
    auto& src = testing::Clusters().source();
    auto before = src.QueryValue(src_db_, "SELECT pg_current_wal_lsn()::text");
    if (!before.ok()) return ::testing::AssertionFailure() << before.status().ToString();
    Status s = src.Exec(src_db_, "INSERT INTO cutover_marker DEFAULT VALUES");
    if (!s.ok()) return ::testing::AssertionFailure() << s.ToString();
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    auto next_marker = Clock::now() + std::chrono::seconds(2);
    while (Clock::now() < deadline) {
      // A marker committed before the slot existed went with the snapshot, not the stream (and
      // the progress row appears with the first streamed transaction): commit another now and
      // then until one is applied.
      if (Clock::now() > next_marker) {
        src.Exec(src_db_, "INSERT INTO cutover_marker DEFAULT VALUES").IgnoreError();
        next_marker = Clock::now() + std::chrono::seconds(2);
      }
      auto v = testing::Clusters().target().QueryValue(
          tgt_db_, "SELECT applied_lsn >= '" + *before +
                       "'::pg_lsn FROM _tenantsync.progress WHERE pipeline = 'rawdog'");
      if (v.ok() && *v == "t") return ::testing::AssertionSuccess();
      if (pipeline_done_.load()) {
        return ::testing::AssertionFailure() << "the pipeline stopped: "
                                             << pipeline_status_.ToString();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return ::testing::AssertionFailure() << "not caught up with " << *before;
  }

  StatusOr<testing::WorkloadResult> Workload(int per_client, uint64_t seed, double seconds = 0) {
    testing::WorkloadOptions o;
    o.clients = 2;
    o.transactions_per_client = per_client;
    o.seconds = seconds;
    o.seed = seed;
    return testing::RunRawdogWorkload(SourceUrl(), o);
  }

  cutover::CutoverOptions CutoverOpts(double quiet) {
    cutover::CutoverOptions o;
    o.quiet_for_seconds = quiet;
    o.barrier_timeout_seconds = 120;
    o.report_path = dir_ + "/cutover-report.json";
    o.progress_out = nullptr;
    return o;
  }

  // Every table equals the transformed source row by row (tests/harness/table_compare.h); one
  // line per difference.
  std::vector<std::string> CompareAll() {
    std::vector<std::string> tables = testing::RawdogTables();
    tables.push_back("cutover_marker");
    auto src = testing::Clusters().source().Connect(src_db_);
    auto tgt = testing::Clusters().target().Connect(tgt_db_);
    if (!src.ok() || !tgt.ok()) return {"cannot connect for the comparison"};
    return testing::CompareTables(&*src, &*tgt, config_, cipher_ ? &*cipher_ : nullptr, tables)
        .differences;
  }

  int64_t SourceInt(const std::string& sql) {
    auto v = testing::Clusters().source().QueryInt(src_db_, sql);
    EXPECT_TRUE(v.ok()) << sql << ": " << v.status().ToString();
    return v.ok() ? *v : -1;
  }
  int64_t TargetInt(const std::string& sql) {
    auto v = testing::Clusters().target().QueryInt(tgt_db_, sql);
    EXPECT_TRUE(v.ok()) << sql << ": " << v.status().ToString();
    return v.ok() ? *v : -1;
  }

  std::string BinaryPath() const {
    const char* env = std::getenv("TENANTSYNC_BINARY");
    return env && *env ? env : "";
  }
  // `tenantsync -c CONFIG args...`; the exit code, output in *out.
  int Cli(std::vector<std::string> args, std::string* out) {
    std::vector<std::string> argv = {BinaryPath(), "-c", config_path_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, out);
  }

  std::string src_db_, tgt_db_, dir_, slot_, config_path_;
  Config config_;
  std::optional<Cipher> cipher_;
  std::thread pipeline_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> pipeline_done_{false};
  Status pipeline_status_;
};

TEST_F(CutoverTest, AfterTheWorkloadStopsTheCutoverIsGoAndSequencesContinue) {
  StartPipeline();
  ASSERT_TRUE(WaitCaughtUp());
  ASSERT_OK(Workload(60, 11).status());  // the old application writes, then stops

  ASSERT_OK_AND_ASSIGN(cutover::CutoverReport report,
                       cutover::RunCutover(config_, CutoverOpts(2)));
  EXPECT_TRUE(report.go) << report.ToText();
  EXPECT_TRUE(report.barrier_reached);
  EXPECT_GE(report.applied_lsn, report.marker_lsn);
  EXPECT_GE(report.marker_lsn, report.barrier_lsn);
  EXPECT_LT(report.barrier_seconds, 60);
  EXPECT_EQ(report.quiet_violations, 0);
  // Every identity / serial column of the mapped tables (the marker table included) was synced.
  EXPECT_EQ(static_cast<int64_t>(report.sequences.size()),
            SourceInt("SELECT count(*) FROM pg_sequences WHERE schemaname = 'public'"))
      << report.ToText();
  bool saw_validation = false;
  for (const auto& c : report.checks) {
    EXPECT_TRUE(c.ok) << c.name << " " << c.subject << ": " << c.details;
    if (c.name.rfind("validate", 0) == 0) saw_validation = true;
  }
  EXPECT_TRUE(saw_validation);
  // The JSON report on disk says go.
  std::ifstream in(dir_ + "/cutover-report.json");
  auto json = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(json.is_discarded());
  EXPECT_EQ(json["go"], true);
  EXPECT_EQ(json["barrier_lsn"], report.barrier_lsn.ToString());

  // Sequences equal: the target's next id is the source's next id, and inserting there works.
  for (const auto& s : report.sequences) {
    if (s.table != "orders" && s.table != "line_items") continue;
    std::string src_seq = s.source_sequence;
    int64_t src_next = SourceInt("SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value "
                                 "END FROM " + src_seq);
    EXPECT_EQ(s.target_next_after, src_next) << s.table;
  }
  int64_t order_id = TargetInt(
      "INSERT INTO tenant_rawdog.orders (customer_id, status, total_cents, placed_at, "
      "migrated_at) SELECT customer_id, 'paid', 100, now(), now() FROM tenant_rawdog.orders "
      "LIMIT 1 RETURNING id");
  int64_t item_id = TargetInt(
      "INSERT INTO tenant_rawdog.line_items (order_id, product_id, quantity, unit_price_cents, "
      "created_at) SELECT order_id, product_id, 1, 1, now() FROM tenant_rawdog.line_items "
      "LIMIT 1 RETURNING id");
  EXPECT_GT(order_id, SourceInt("SELECT max(id) FROM public.orders"));
  for (const auto& s : report.sequences) {
    if (s.table == "orders") {
      EXPECT_EQ(order_id, s.target_next_after);
    }
    if (s.table == "line_items") {
      EXPECT_EQ(item_id, s.target_next_after);
    }
  }

  // --finish refuses while `run` streams, then drops the slot once it stopped; the DBA's
  // publication is not the role's: it stays, with a line saying how to drop it.
  cutover::FinishOptions fo;
  fo.confirm = true;
  Capture out;
  fo.out = out.get();
  EXPECT_THAT(cutover::FinishCutover(config_, fo),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("is still streaming")));
  StopPipeline();
  fo.confirm = false;  // no --confirm and no terminal: refused
  EXPECT_THAT(cutover::FinishCutover(config_, fo),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("--confirm")));
  fo.confirm = true;
  ASSERT_OK(cutover::FinishCutover(config_, fo));
  EXPECT_EQ(SourceInt("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + slot_ +
                      "'"),
            0);
  EXPECT_EQ(SourceInt("SELECT count(*) FROM pg_publication WHERE pubname = '" + slot_ + "'"), 1);
  EXPECT_THAT(out.Text(), HasSubstr("publication " + slot_ + " is owned by postgres"));
  EXPECT_THAT(out.Text(), HasSubstr("DROP PUBLICATION"));
  // Twice: the slot is gone, the publication still not the role's; fine, and says so again.
  Capture again;
  fo.out = again.get();
  ASSERT_OK(cutover::FinishCutover(config_, fo));
  EXPECT_THAT(again.Text(), HasSubstr("left in place"));
  EXPECT_THAT(again.Text(), ::testing::Not(HasSubstr("dropped replication slot")));
}

TEST_F(CutoverTest, WhileTheSourceStillWritesTheCutoverIsNoGo) {
  StartPipeline();
  ASSERT_TRUE(WaitCaughtUp());
  StatusOr<testing::WorkloadResult> writes = Status(StatusCode::kFatal, "not run");
  std::thread workload([&] { writes = Workload(0, 12, 12); });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto report = cutover::RunCutover(config_, CutoverOpts(3));
  workload.join();
  ASSERT_OK(writes.status());
  ASSERT_OK(report.status());
  EXPECT_FALSE(report->go);
  EXPECT_GT(report->quiet_violations, 0);
  bool quiet_failed = false;
  for (const auto& c : report->checks) {
    if (c.name == "quiet") {
      quiet_failed = !c.ok;
      EXPECT_THAT(c.details, HasSubstr("still writing"));
    }
  }
  EXPECT_TRUE(quiet_failed) << report->ToText();
  EXPECT_THAT(report->warnings, ::testing::Contains(HasSubstr("not quiet")));
  EXPECT_THAT(report->ToText(), HasSubstr("NO-GO"));
}

TEST_F(CutoverTest, RestoredFromAnEarlierDumpReplayFromTheCheckpointBeforeItEqualsTheSource) {
  StartPipeline();
  ASSERT_TRUE(WaitCaughtUp());
  ASSERT_OK(Workload(30, 21).status());
  ASSERT_TRUE(WaitCaughtUp());
  // The checkpoint before the dump (listed beside the running pipeline, as `checkpoints` does).
  ASSERT_OK_AND_ASSIGN(std::vector<state::Checkpoint> cps, cutover::ListCheckpoints(config_));
  ASSERT_FALSE(cps.empty());
  const state::Checkpoint checkpoint = cps.back();
  std::string dump = dir_ + "/target.dump";
  std::string out;
  ASSERT_EQ(RunProcess({PgBin("pg_dump"), "-Fc", "-n", "tenant_rawdog", "-n", "_tenantsync",
                        "-f", dump, TargetUrl()},
                       &out),
            0)
      << out;
  // More changes after the backup, the keyless table's inserts among them.
  ASSERT_OK(Workload(60, 22).status());
  ASSERT_TRUE(WaitCaughtUp());
  StopPipeline();
  ASSERT_THAT(CompareAll(), IsEmpty());

  // Disaster: the target is restored from the backup.
  ASSERT_OK(testing::Clusters().target().Exec(
      tgt_db_, "DROP SCHEMA tenant_rawdog CASCADE; DROP SCHEMA _tenantsync CASCADE"));
  ASSERT_EQ(RunProcess({PgBin("pg_restore"), "-d", TargetUrl(), dump}, &out), 0) << out;
  EXPECT_THAT(CompareAll(), ::testing::Not(IsEmpty()));  // behind the source now

  cutover::ReplayOptions ro;
  ro.from = std::to_string(checkpoint.id);
  Capture replay_out;
  ro.out = replay_out.get();
  ASSERT_OK_AND_ASSIGN(cutover::ReplayResult r, cutover::Replay(config_, ro));
  EXPECT_EQ(r.from, checkpoint.lsn);
  EXPECT_GT(r.transactions, 0u);
  EXPECT_THAT(CompareAll(), IsEmpty()) << replay_out.Text();

  // Replaying again over a target that is ahead converges to the same rows.
  ASSERT_OK_AND_ASSIGN(cutover::ReplayResult again, cutover::Replay(config_, ro));
  EXPECT_EQ(again.applied, r.applied);
  EXPECT_GT(again.filtered_changes, 0u);  // the keyless table's inserts were not duplicated
  EXPECT_THAT(CompareAll(), IsEmpty()) << replay_out.Text();

  // --to: only up to a position; the progress row says where.
  cutover::ReplayOptions partial = ro;
  partial.to = checkpoint.lsn.ToString();
  ASSERT_OK_AND_ASSIGN(cutover::ReplayResult upto, cutover::Replay(config_, partial));
  EXPECT_EQ(upto.transactions, 0u);
  // A target behind --from is refused (it would skip transactions).
  cutover::ReplayOptions ahead = ro;
  ahead.from = r.applied.ToString();
  ASSERT_OK(testing::Clusters().target().Exec(
      tgt_db_, "UPDATE _tenantsync.progress SET applied_lsn = '0/1'"));
  EXPECT_THAT(cutover::Replay(config_, ahead),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("would skip")));
}

TEST(CutoverReplayWindow, FromOutsideTheRetainedWindowNamesTheWindow) {
  char tmpl[] = "/tmp/tenantsync-window-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = std::string(tmpl) + "/state";
  {
    state::StateOptions so;
    so.dir = dir;
    so.pipeline = "rawdog";
    so.retention_hours = 1e-7;  // about a third of a millisecond
    so.trim_interval_seconds = 0;
    so.checkpoint_interval_seconds = 0;
    ASSERT_OK_AND_ASSIGN(auto store, state::StateStore::Open(so));
    state::Journal& j = store->journal();
    for (int i = 1; i <= 4; ++i) {
      TransactionInfo t{static_cast<uint32_t>(700 + i), Lsn(0x1000u * i), Lsn(0x1000u * i + 8),
                        NowMicros()};
      Change m;
      m.op = ChangeOp::kMessage;
      m.message_prefix = "test";
      m.message_transactional = true;
      ASSERT_OK(j.Begin(t));
      ASSERT_OK(j.Append(m));
      ASSERT_OK(j.Commit(t));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ASSERT_OK(j.RecordApplied(t.commit_lsn, t.commit_time_us));
    }
  }
  ASSERT_OK_AND_ASSIGN(Config config,
                       ConfigFromFlags("postgresql://nobody@127.0.0.1:1/none",
                                       "postgresql://nobody@127.0.0.1:1/none", "rawdog"));
  config.pipeline = "rawdog";
  config.state_dir = dir;
  cutover::ReplayOptions ro;
  ro.from = "0/800";
  EXPECT_THAT(cutover::Replay(config, ro),
              StatusIs(StatusCode::kNotFound, HasSubstr("retained window")));
  ro.from = "1";
  EXPECT_THAT(cutover::Replay(config, ro), StatusIs(StatusCode::kNotFound, HasSubstr("retained")));
  ro.from = "abc";
  EXPECT_THAT(cutover::Replay(config, ro),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("neither a checkpoint id")));
  config.state_dir = std::string(tmpl) + "/missing";
  EXPECT_THAT(cutover::Replay(config, ro), StatusIs(StatusCode::kNotFound, HasSubstr("does not exist")));
  std::filesystem::remove_all(tmpl);
}

TEST_F(CutoverTest, RollbackLeavesNoTraceAndASecondRunIsANoOp) {
  // As the superuser: rollback must also drop the publication tenantsync created (the roles
  // never create one; RunbookCommandsThroughTheBinary rolls back as the roles).
  ASSERT_NO_FATAL_FAILURE(RunAsSuperuser());
  StartPipeline();
  ASSERT_TRUE(WaitCaughtUp());
  cutover::RollbackOptions ro;
  Capture out;
  ro.out = out.get();
  ro.confirm = true;
  EXPECT_THAT(cutover::Rollback(config_, ro),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("is active")));
  EXPECT_EQ(TargetInt("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_rawdog'"), 1);
  StopPipeline();

  ro.confirm = false;  // shows, drops nothing
  ASSERT_OK(cutover::Rollback(config_, ro));
  EXPECT_THAT(out.Text(), HasSubstr("would drop"));
  EXPECT_THAT(out.Text(), HasSubstr("schema tenant_rawdog"));
  EXPECT_EQ(TargetInt("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_rawdog'"), 1);

  ro.confirm = true;
  ASSERT_OK(cutover::Rollback(config_, ro));
  EXPECT_EQ(SourceInt("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + slot_ +
                      "'"),
            0);
  EXPECT_EQ(SourceInt("SELECT count(*) FROM pg_publication WHERE pubname = '" + slot_ + "'"), 0);
  EXPECT_EQ(TargetInt("SELECT count(*) FROM pg_namespace WHERE nspname IN ('tenant_rawdog', "
                      "'_tenantsync')"),
            0);
  EXPECT_EQ(TargetInt("SELECT count(*) FROM public.organizations WHERE slug = 'rawdog'"), 0);
  EXPECT_FALSE(std::filesystem::exists(config_.state_dir));
  // The source's data is untouched.
  EXPECT_EQ(SourceInt("SELECT count(*) FROM public.customers"), 1000);

  Capture again;
  ro.out = again.get();
  ASSERT_OK(cutover::Rollback(config_, ro));
  EXPECT_THAT(again.Text(), HasSubstr("nothing to drop"));
}

// The runbooks' commands, through the binary.
TEST_F(CutoverTest, RunbookCommandsThroughTheBinary) {
  if (BinaryPath().empty()) GTEST_SKIP() << "TENANTSYNC_BINARY is not set";
  StartPipeline();
  ASSERT_TRUE(WaitCaughtUp());
  ASSERT_OK(Workload(20, 31).status());
  ASSERT_TRUE(WaitCaughtUp());
  std::string out;
  // ops/runbooks/cutover.md
  EXPECT_EQ(Cli({"cutover", "--quiet-for", "2", "--report", dir_ + "/report.json"}, &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("GO"));
  EXPECT_EQ(Cli({"cutover", "--finish", "--confirm"}, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("is still streaming"));
  // ops/runbooks/replaying-after-a-failure.md
  EXPECT_EQ(Cli({"checkpoints"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("transactions since previous"));
  EXPECT_EQ(Cli({"checkpoints", "--json"}, &out), 0) << out;
  auto cps = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(cps.is_array() && !cps.empty()) << out;
  std::string id = std::to_string(cps.back()["id"].get<uint64_t>());
  EXPECT_EQ(Cli({"replay", "--from", id}, &out), 1) << out;  // `run` holds the state directory
  EXPECT_THAT(out, HasSubstr("stop `tenantsync run` first"));
  StopPipeline();
  EXPECT_EQ(Cli({"replay", "--from", id}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("target now at"));
  EXPECT_THAT(CompareAll(), IsEmpty());
  EXPECT_EQ(Cli({"cutover", "--finish", "--confirm"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("dropped replication slot"));
  // ops/runbooks/rolling-back.md
  EXPECT_EQ(Cli({"rollback"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("would drop"));
  EXPECT_EQ(Cli({"rollback", "--confirm"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("done"));
  EXPECT_EQ(TargetInt("SELECT count(*) FROM pg_namespace WHERE nspname IN ('tenant_rawdog', "
                      "'_tenantsync')"),
            0);
  // Again: nothing of the pipeline is left to drop; the DBA's publication, not the role's, is
  // named again with the statement that drops it (as the superuser, "nothing to drop": see
  // RollbackLeavesNoTraceAndASecondRunIsANoOp).
  EXPECT_EQ(Cli({"rollback", "--confirm"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("publication " + slot_ + " is owned by postgres"));
  EXPECT_THAT(out, HasSubstr("nothing of the pipeline is left on either server"));
  EXPECT_EQ(TargetInt("SELECT count(*) FROM pg_namespace WHERE nspname = '_tenantsync'"), 0);
}

}  // namespace
}  // namespace tenantsync
