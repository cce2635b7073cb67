// Live transactions (apply/applier.h): a large source transaction is applied into an open target
// transaction while the receiver still journals it, and committed only once the journal holds
// its commit durably. These tests run the `tenantsync` binary (`run`) against a source whose
// one transaction updates 120,000 keyed rows (more than live_min_changes = 10,000 and one
// live_chunk_rows = 100,000 chunk, so a set-based statement runs before the source commit even
// arrives) and inserts rows into a keyless table (REPLICA IDENTITY FULL: applying the
// transaction twice would duplicate them, losing it would miss them). They prove:
//   - the transaction takes the live path (the log says so) and the target equals the source;
//   - a crash at apply.live_chunk_applied (chunks applied, source commit not yet durable) and at
//     apply.live_before_commit (journal durable, target COMMIT not sent) leaves the target
//     without the transaction, and a restart applies it exactly once;
//   - kill -9 at random moments during such transactions, then a restart: exactly once;
//   - the chunks are staged by a second connection into committed tables in _tenantsync (read by
//     the live transaction under READ COMMITTED even when the target database defaults to
//     REPEATABLE READ); they are dropped after the transaction, and after a crash at the next
//     start.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "tests/harness/bridge_process.h"
#include "tests/harness/test_env.h"

namespace tenantsync {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using Bridge = testing::BridgeProcess;

constexpr int kRows = 120000;
constexpr int kKeylessPerTxn = 5;

class ApplyLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& env = testing::Clusters();
    auto src = env.source().CreateDatabase("live_src");
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    src_db_ = *src;
    auto tgt = env.target().CreateDatabase("live_tgt");
    ASSERT_TRUE(tgt.ok()) << tgt.status().ToString();
    tgt_db_ = *tgt;
    Status s = env.source().Exec(
        src_db_,
        "CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL); "
        "INSERT INTO big SELECT g, 0, repeat('x', 40) FROM generate_series(1, " +
            std::to_string(kRows) +
            ") g; "
            "CREATE TABLE log_nokey (txn int, n int, note text); "
            "ALTER TABLE log_nokey REPLICA IDENTITY FULL; "
            "CREATE TABLE marker (id serial PRIMARY KEY); "
            "CREATE PUBLICATION live_pub FOR ALL TABLES");
    ASSERT_TRUE(s.ok()) << s.ToString();
    char tmpl[] = "/tmp/tenantsync-live-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    slot_ = "ts_" + src_db_;
    std::string config = dir_ + "/live.yaml";
    std::ofstream out(config);
    out << "pipeline: live\n"
        << "source: {url: \"" << env.source().Url(src_db_) << "\", schema: public, plugin: "
        << "pgoutput, publication: live_pub, slot: " << slot_
        // The database's setting decides whether a transaction is streamed (SetStreamingThreshold).
        << ", logical_decoding_work_mem: ''}\n"
        << "target: {url: \"" << env.target().Url(tgt_db_) << "\", schema: tenant_live}\n"
        << "tenant: {slug: live}\n"
        << "state_dir: " << dir_ << "/state\n"
        << "ops: {listen: \"127.0.0.1:0\"}\n"
        << "snapshot: {workers: 1}\n";
    out.close();
    bridge_ = std::make_unique<Bridge>(testing::TenantsyncBinary(TENANTSYNC_BINARY_PATH), config,
                                       dir_ + "/bridge.log");
  }
  void TearDown() override {
    unsetenv("TENANTSYNC_KILL_POINT");
    bridge_.reset();
    testing::Clusters()
        .source()
        .Exec(src_db_,
              "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
              "WHERE slot_name = '" +
                  slot_ + "'")
        .IgnoreError();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // One large source transaction: every row of `big` +1, and kKeylessPerTxn keyless rows.
  Status BigTransaction(int txn) {
    return testing::Clusters().source().Exec(
        src_db_, "BEGIN; UPDATE big SET v = v + 1; INSERT INTO log_nokey SELECT " +
                     std::to_string(txn) + ", g, 'live' FROM generate_series(1, " +
                     std::to_string(kKeylessPerTxn) + ") g; COMMIT");
  }

  // How much decoded change the source's walsender holds for a transaction before it streams
  // it while it runs (pgoutput protocol 2): "1MB" streams these transactions, "64MB" (the
  // default) sends each whole at its commit. Taken by the next walsender of the database.
  void SetStreamingThreshold(const std::string& work_mem) {
    ASSERT_TRUE(testing::Clusters()
                    .source()
                    .Exec("postgres", "ALTER DATABASE " + src_db_ +
                                          " SET logical_decoding_work_mem = '" + work_mem + "'")
                    .ok());
  }
  int64_t StreamedTransactions() {
    auto v = testing::Clusters().source().QueryValue(
        "postgres", "SELECT coalesce(sum(stream_txns), 0) FROM pg_stat_replication_slots "
                    "WHERE slot_name = '" + slot_ + "'");
    return v.ok() ? std::stoll(*v) : -1;
  }

  StatusOr<std::string> SourceLsn() {
    return testing::Clusters().source().QueryValue(src_db_, "SELECT pg_current_wal_lsn()::text");
  }
  // Staging tables of the live transactions' parallel staging left in the target.
  int64_t StagingTables() {
    auto v = testing::Clusters().target().QueryValue(
        tgt_db_, "SELECT count(*) FROM pg_class WHERE relnamespace = '_tenantsync'::regnamespace "
                 "AND relname LIKE 'stage\\_%'");
    return v.ok() ? std::stoll(*v) : -1;
  }
  std::string TargetProgress() {
    auto v = testing::Clusters().target().QueryValue(
        tgt_db_,
        "SELECT coalesce((SELECT applied_lsn::text FROM _tenantsync.progress WHERE "
        "pipeline = 'live'), 'none')");
    return v.ok() ? *v : v.status().ToString();
  }

  // Commits a marker after everything so far and waits until the target has applied it. One
  // marker at a time: success means the newest one is applied, so none is left pending for the
  // next bridge to apply (a marker the snapshot copied is never streamed: after 2 s another
  // one follows).
  ::testing::AssertionResult WaitCaughtUp(int seconds) {
    auto& src = testing::Clusters().source();
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (Clock::now() < deadline) {
      auto before = SourceLsn();
      if (!before.ok()) return ::testing::AssertionFailure() << before.status().ToString();
      src.Exec(src_db_, "INSERT INTO marker DEFAULT VALUES").IgnoreError();
      auto marker_deadline = std::min(deadline, Clock::now() + std::chrono::seconds(2));
      while (Clock::now() < marker_deadline) {
        auto v = testing::Clusters().target().QueryValue(
            tgt_db_, "SELECT applied_lsn > '" + *before +
                         "'::pg_lsn FROM _tenantsync.progress WHERE pipeline = 'live'");
        if (v.ok() && *v == "t") return ::testing::AssertionSuccess();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    return ::testing::AssertionFailure()
           << "not caught up after " << seconds << " s; target at " << TargetProgress() << "\n"
           << bridge_->LogTail();
  }

  // big: count, sum and a digest of every (id, v); log_nokey: every row with its multiplicity.
  std::string Digest(bool target) {
    auto& c = target ? testing::Clusters().target() : testing::Clusters().source();
    const std::string& db = target ? tgt_db_ : src_db_;
    const std::string schema = target ? "tenant_live." : "public.";
    auto v = c.QueryValue(
        db,
        "SELECT (SELECT count(*) || ' ' || sum(v) || ' ' || md5(string_agg(id || ':' || v, "
        "',' ORDER BY id)) FROM " +
            schema +
            "big) || ' | ' || (SELECT count(*) || ' ' || "
            "coalesce(md5(string_agg(txn || ':' || n || ':' || note, ',' ORDER BY txn, n)), '-') "
            "FROM " +
            schema + "log_nokey)");
    return v.ok() ? *v : v.status().ToString();
  }

  std::string src_db_, tgt_db_, dir_, slot_;
  std::unique_ptr<Bridge> bridge_;
};

TEST_F(ApplyLiveTest, LargeTransactionIsAppliedWhileReceivedAndEqualsTheSource) {
  // Under REPEATABLE READ the live transaction's first snapshot would not show the chunks staged
  // (and committed) after it: their UPDATEs would find no rows.
  ASSERT_TRUE(testing::Clusters()
                  .target()
                  .Exec("postgres", "ALTER DATABASE " + tgt_db_ +
                                        " SET default_transaction_isolation = 'repeatable read'")
                  .ok());
  bridge_->Start("run");
  ASSERT_TRUE(WaitCaughtUp(240));
  ASSERT_TRUE(BigTransaction(1).ok());
  ASSERT_TRUE(BigTransaction(2).ok());
  ASSERT_TRUE(WaitCaughtUp(240));
  EXPECT_EQ(Digest(true), Digest(false)) << bridge_->LogTail();
  EXPECT_THAT(bridge_->Log(), HasSubstr("applied while received: 120005 changes"));
  EXPECT_THAT(bridge_->Log(), HasSubstr("in parallel with the previous chunk's"));
  // The keyless table's deletes and updates inside a live transaction (held as sets of rows).
  ASSERT_TRUE(testing::Clusters()
                  .source()
                  .Exec(src_db_,
                        "BEGIN; UPDATE big SET v = v + 1; DELETE FROM log_nokey WHERE n = 2; "
                        "UPDATE log_nokey SET note = 'kept' WHERE n > 2; COMMIT")
                  .ok());
  ASSERT_TRUE(WaitCaughtUp(240));
  EXPECT_EQ(Digest(true), Digest(false)) << bridge_->LogTail();
  EXPECT_EQ(StagingTables(), 0);
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

// The planner settings each set-based statement of a live transaction runs under, recorded by
// statement triggers (ENABLE ALWAYS: they fire under session_replication_role = replica too) on
// the target's tables: the keyed chunks' UPDATE without hash and merge joins (index probes), the
// keyless table's DELETE and UPDATE (no index there) without nested loops but with hash joins.
// With every join method off, such a DELETE ran as a nested loop over every pair of rows.
TEST_F(ApplyLiveTest, KeylessSetStatementsInALiveTransactionMayHashJoin) {
  auto& tgt = testing::Clusters().target();
  auto& src = testing::Clusters().source();
  ASSERT_TRUE(src.Exec(src_db_,
                       "INSERT INTO log_nokey SELECT 0, g, 'seed' FROM "
                       "generate_series(1, 60) g")
                  .ok());
  bridge_->Start("run");
  ASSERT_TRUE(WaitCaughtUp(240));
  ASSERT_TRUE(tgt.Exec(tgt_db_,
                       "CREATE TABLE public.plan_seen (tbl text, op text, nestloop text, "
                       "hashjoin text, mergejoin text); "
                       "CREATE FUNCTION public.record_plan() RETURNS trigger LANGUAGE plpgsql AS "
                       "$$ BEGIN INSERT INTO public.plan_seen VALUES (TG_TABLE_NAME, TG_OP, "
                       "current_setting('enable_nestloop'), current_setting('enable_hashjoin'), "
                       "current_setting('enable_mergejoin')); RETURN NULL; END $$; "
                       "CREATE TRIGGER plan_seen AFTER UPDATE OR DELETE ON tenant_live.big "
                       "FOR EACH STATEMENT EXECUTE FUNCTION public.record_plan(); "
                       "ALTER TABLE tenant_live.big ENABLE ALWAYS TRIGGER plan_seen; "
                       "CREATE TRIGGER plan_seen AFTER UPDATE OR DELETE ON tenant_live.log_nokey "
                       "FOR EACH STATEMENT EXECUTE FUNCTION public.record_plan(); "
                       "ALTER TABLE tenant_live.log_nokey ENABLE ALWAYS TRIGGER plan_seen")
                  .ok());
  ASSERT_TRUE(src.Exec(src_db_,
                       "BEGIN; UPDATE big SET v = v + 1; DELETE FROM log_nokey WHERE n <= 30; "
                       "UPDATE log_nokey SET note = 'kept' WHERE n > 30; COMMIT")
                  .ok());
  ASSERT_TRUE(WaitCaughtUp(240));
  EXPECT_EQ(Digest(true), Digest(false)) << bridge_->LogTail();
  ASSERT_THAT(bridge_->Log(), HasSubstr("applied while received: 120060 changes"));
  auto seen = [&](const std::string& where) {
    auto v = tgt.QueryValue(tgt_db_,
                            "SELECT coalesce(string_agg(DISTINCT nestloop || ' ' || "
                            "hashjoin || ' ' || mergejoin, ', '), 'none') FROM "
                            "public.plan_seen WHERE " +
                                where);
    return v.ok() ? *v : v.status().ToString();
  };
  EXPECT_EQ(seen("tbl = 'big' AND op = 'UPDATE'"), "on off off");
  EXPECT_EQ(seen("tbl = 'log_nokey' AND op = 'DELETE'"), "off on on");
  EXPECT_EQ(seen("tbl = 'log_nokey' AND op = 'UPDATE'"), "off on on");
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

// Streamed by the walsender while it runs (protocol 2): the bridge applies it into an open target
// transaction before the source commits; a source ROLLBACK leaves the target as it was, and the
// same transaction committed afterwards arrives exactly once.
TEST_F(ApplyLiveTest, StreamedTransactionIsAppliedBeforeTheSourceCommitsAndARollbackLeavesNothing) {
  SetStreamingThreshold("1MB");
  bridge_->Start("run");
  ASSERT_TRUE(WaitCaughtUp(240));
  const std::string before = Digest(true);
  auto conn = testing::Clusters().source().Connect(src_db_);
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  ASSERT_TRUE(conn->Exec("BEGIN").ok());
  ASSERT_TRUE(conn->Exec("UPDATE big SET v = v + 1").ok());
  // Still running on the source, and already being applied.
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline &&
         bridge_->Log().find("applying it while it is received") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_THAT(bridge_->Log(), HasSubstr("applying it while it is received"));
  EXPECT_GT(StreamedTransactions(), 0);
  EXPECT_EQ(Digest(true), before) << "nothing is visible before the source commits";
  ASSERT_TRUE(conn->Exec("ROLLBACK").ok());
  ASSERT_TRUE(WaitCaughtUp(240));
  EXPECT_EQ(Digest(true), before);
  EXPECT_EQ(Digest(true), Digest(false));
  ASSERT_TRUE(BigTransaction(1).ok());
  ASSERT_TRUE(WaitCaughtUp(240));
  EXPECT_EQ(Digest(true), Digest(false)) << bridge_->LogTail();
  EXPECT_NE(Digest(true), before);
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

// A crash at each live kill point, with the transaction sent whole at its commit and streamed
// while it runs: the target does not show the transaction; after a restart it shows it exactly
// once.
TEST_F(ApplyLiveTest, CrashAtLiveKillPointsLosesNothingAndAppliesOnce) {
  bridge_->Start("run");
  ASSERT_TRUE(WaitCaughtUp(240));
  ASSERT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
  int txn = 0;
  for (const auto& [point, work_mem] :
       std::vector<std::pair<const char*, const char*>>{
           {"apply.live_chunk_applied", "64MB"}, {"apply.live_before_commit", "64MB"},
           {"apply.live_chunk_applied", "1MB"}, {"apply.live_before_commit", "1MB"}}) {
    SCOPED_TRACE(std::string(point) + " with logical_decoding_work_mem " + work_mem);
    SetStreamingThreshold(work_mem);
    const std::string before = Digest(true);
    const std::string progress = TargetProgress();
    setenv("TENANTSYNC_KILL_POINT", point, 1);
    bridge_->Start("stream");
    unsetenv("TENANTSYNC_KILL_POINT");
    ASSERT_TRUE(BigTransaction(++txn).ok());
    int code = bridge_->WaitExit(240);
    ASSERT_EQ(code, -SIGABRT) << bridge_->LogTail();
    ASSERT_THAT(bridge_->LogTail(), HasSubstr(std::string("kill point ") + point));
    // Nothing of the transaction is visible in the target, and its position did not move.
    EXPECT_EQ(Digest(true), before);
    EXPECT_EQ(TargetProgress(), progress);
    // A chunk was staged and sent: its committed staging table is left behind.
    if (std::string(point) == "apply.live_chunk_applied") {
      EXPECT_GT(StagingTables(), 0);
    }
    bridge_->Start("stream");
    ASSERT_TRUE(WaitCaughtUp(240));
    EXPECT_EQ(Digest(true), Digest(false)) << bridge_->LogTail();
    EXPECT_EQ(StagingTables(), 0);
    EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
  }
}

// A chunk's set-based statement, sent without waiting on the parallel-staging path, fails in the
// target (a CHECK the source does not have): the live transaction is rolled back, its staging
// tables dropped, and the journal path applies the transaction after its commit, the failing row
// as a dead letter and every other row.
TEST_F(ApplyLiveTest, FailingChunkRollsBackAndTheJournalPathAppliesTheRest) {
  auto& tgt = testing::Clusters().target();
  auto& src = testing::Clusters().source();
  bridge_->Start("run");
  ASSERT_TRUE(WaitCaughtUp(240));
  ASSERT_TRUE(tgt.Exec(tgt_db_, "ALTER TABLE tenant_live.big ADD CONSTRAINT not_777 CHECK "
                                "(id <> 777 OR v = 0)")
                  .ok());
  // 60,000 changes: live (over 10,000; the applier looks for an offered transaction every 20 ms,
  // and this one is received over longer than that after it is offered), one chunk, sent at the
  // source commit.
  ASSERT_TRUE(src.Exec(src_db_, "UPDATE big SET v = v + 1 WHERE id <= 60000").ok());
  ASSERT_TRUE(WaitCaughtUp(240));
  EXPECT_THAT(bridge_->Log(), HasSubstr("applying it while it is received"));
  EXPECT_THAT(bridge_->Log(), HasSubstr("rolled back after"));
  EXPECT_THAT(bridge_->Log(), HasSubstr("not_777"));
  auto q = [](testing::PgCluster& c, const std::string& db, const std::string& sql) {
    auto v = c.QueryValue(db, sql);
    return v.ok() ? *v : v.status().ToString();
  };
  EXPECT_EQ(q(src, src_db_, "SELECT count(*) || ' ' || sum(v) FROM public.big"), "120000 60000");
  EXPECT_EQ(q(tgt, tgt_db_, "SELECT count(*) || ' ' || sum(v) FROM tenant_live.big"),
            "120000 59999");
  EXPECT_EQ(q(tgt, tgt_db_, "SELECT v FROM tenant_live.big WHERE id = 777"), "0");
  EXPECT_EQ(StagingTables(), 0);
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

TEST_F(ApplyLiveTest, KillNineDuringLargeTransactionsThenRestartAppliesEachOnce) {
  bridge_->Start("run");
  ASSERT_TRUE(WaitCaughtUp(240));
  std::mt19937 rng(20261122);
  std::uniform_int_distribution<int> pause_ms(200, 5000);
  int txn = 100;
  for (int round = 0; round < 5; ++round) {
    // Odd rounds: streamed while the source runs it (the bridge that starts next streams).
    SetStreamingThreshold(round % 2 == 0 ? "64MB" : "1MB");
    std::thread writer([&, n = ++txn] { ASSERT_TRUE(BigTransaction(n).ok()); });
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    bridge_->Kill9();
    writer.join();
    bridge_->Start("stream");
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
  }
  ASSERT_TRUE(WaitCaughtUp(300));
  EXPECT_EQ(Digest(true), Digest(false)) << bridge_->LogTail();
  EXPECT_GT(StreamedTransactions(), 0);
  // The kills hit live transactions (the log is appended across restarts).
  EXPECT_THAT(bridge_->Log(), HasSubstr("applying it while it is received"));
  // Their staging tables go: at a restart, or (one a killed bridge's backend still held then)
  // between later batches.
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (StagingTables() != 0 && Clock::now() < deadline) {
    testing::Clusters().source().Exec(src_db_, "INSERT INTO marker DEFAULT VALUES").IgnoreError();
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  EXPECT_EQ(StagingTables(), 0);
  EXPECT_EQ(bridge_->Interrupt(), 0) << bridge_->LogTail();
}

}  // namespace
}  // namespace tenantsync
