// Bad input: the `tenantsync` binary, run as an operator would, against configs and servers that
// are wrong in one way each. Every case must stop with a clear message on stderr that names the
// thing at fault (file and key, variable, role, table, slot, setting) and a non-zero exit code:
// 2 for a bad config (nothing touched), 1 for a server-side problem. Secrets never appear in
// the message.
//
// Cases: invalid YAML, an unknown key, an unset ${VAR}, a wrong password (a scram-sha-256 role on
// a server that really checks it), an unreachable server, a source without wal_level=logical, a
// role without REPLICATION, a table without a key, and a slot held by pg_recvlogical. Then the
// other kind of awkward input, which must simply work: a table and columns named with quotes,
// spaces, upper case and unicode, through `run` (snapshot and stream) end to end.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/harness/bridge_roles.h"
#include "tests/harness/captured_command.h"
#include "tests/harness/status_matchers.h"
#include "tests/harness/test_env.h"
#include "tests/harness/shell.h"

namespace tenantsync::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

std::string Binary() {
  const char* b = std::getenv("TENANTSYNC_BINARY");
  return b != nullptr && *b != '\0' ? b : "tenantsync";
}


// Runs `tenantsync ARGS...` with stdout and stderr captured separately; SIGKILL after `timeout`.
CommandResult RunTenantsync(const std::vector<std::string>& args, const std::string& dir,
                            std::chrono::seconds timeout = std::chrono::seconds(120)) {
  std::vector<std::string> argv = {Binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCaptured(argv, dir, {}, timeout);
}

// Lines of `text` that start with `prefix`.
std::vector<std::string> LinesStartingWith(const std::string& text, const std::string& prefix) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) lines.push_back(line);
  }
  return lines;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tenantsync-badinput-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // Writes `text` as a config file in the test directory; returns its path.
  std::string WriteConfig(const std::string& text, const std::string& name = "bad.yaml") {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // A config from source and target URLs; `extra` is appended (more keys, tables).
  std::string PipelineConfig(const std::string& source_url, const std::string& target_url,
                             const std::string& slot, const std::string& extra = "") {
    return WriteConfig(
        "pipeline: bad\n"
        "source: {url: \"" +
        source_url + "\", slot: " + slot + ", publication: " + slot +
        "}\n"
        "target: {url: \"" +
        target_url +
        "\", schema: tenant_bad}\n"
        "tenant: {slug: bad}\n"
        "state_dir: " +
        dir_ +
        "/state\n"
        "ops: {listen: \"127.0.0.1:0\"}\n" +
        extra);
  }

  // A fresh source database with one keyed table, and a fresh target database.
  void MakeDatabases() {
    ASSERT_OK_AND_ASSIGN(src_db_, Clusters().source().CreateDatabase("bad_src"));
    ASSERT_OK_AND_ASSIGN(tgt_db_, Clusters().target().CreateDatabase("bad_tgt"));
    ASSERT_OK(Clusters().source().Exec(
        src_db_,
        "CREATE TABLE items (id bigint PRIMARY KEY, name text); "
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g"));
  }

  // The target URL as the least-privilege target role, granted on tgt_db_.
  std::string TargetRoleUrl() {
    Status s = GrantBridgeTarget(Clusters().target(), tgt_db_, "tenant_bad");
    EXPECT_TRUE(s.ok()) << s.ToString();
    return Clusters().target().Url(tgt_db_, kBridgeTargetRole);
  }

  // The least-privilege roles on src_db_ and tgt_db_ (tests/harness/bridge_roles.h), with the
  // DBA's publication `slot` over every table that exists now; the config for them.
  std::string RolesConfig(const std::string& slot) {
    Status s = GrantBridgeSource(Clusters().source(), src_db_, /*publication=*/slot);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return PipelineConfig(Clusters().source().Url(src_db_, kBridgeSourceRole), TargetRoleUrl(),
                          slot);
  }

  std::string dir_, src_db_, tgt_db_;
};

// --- config problems: exit 2, one line naming the file and the key
// --------------------------------

TEST_F(BadInputTest, InvalidYamlNamesFileAndLine) {
  std::string path = WriteConfig(
      "pipeline: bad\nsource: {url: \"postgresql://x@127.0.0.1/x\"\n"
      "  slot: [\n");
  CommandResult r = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr("bad.yaml"), HasSubstr("line 3"), HasSubstr("invalid YAML")));
  EXPECT_EQ(LinesStartingWith(r.err, "").size(), 1u) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(BadInputTest, UnknownKeyIsNamedWithTheKeysExpected) {
  std::string path = WriteConfig(
      "pipeline: bad\nsource: {url: \"postgresql://x@127.0.0.1/x\", slott: s}\n"
      "target: {url: \"postgresql://x@127.0.0.1/y\"}\ntenant: {slug: bad}\n");
  CommandResult r = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr("bad.yaml"), HasSubstr("source"),
                           HasSubstr("unknown key 'slott'"), HasSubstr("slot")));
  EXPECT_EQ(LinesStartingWith(r.err, "").size(), 1u) << r.err;

  // Deeper in the tree too: a column rule with a typo.
  path = WriteConfig(
      "pipeline: bad\nsource: {url: \"postgresql://x@127.0.0.1/x\"}\n"
      "target: {url: \"postgresql://x@127.0.0.1/y\"}\ntenant: {slug: bad}\n"
      "tables:\n  orders:\n    columns:\n      total: {encrypt: true, tpye: text}\n");
  r = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr("tables.orders.columns.total"), HasSubstr("'tpye'")));
}

TEST_F(BadInputTest, UnsetVariableIsNamed) {
  unsetenv("TENANTSYNC_TEST_UNSET_URL");
  std::string path = WriteConfig(
      "pipeline: bad\nsource: {url: \"${TENANTSYNC_TEST_UNSET_URL}\"}\n"
      "target: {url: \"postgresql://x@127.0.0.1/y\"}\ntenant: {slug: bad}\n");
  CommandResult r = RunTenantsync({"-c", path, "snapshot"}, dir_);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr("source.url"), HasSubstr("TENANTSYNC_TEST_UNSET_URL"),
                           HasSubstr("not set")));
  EXPECT_EQ(LinesStartingWith(r.err, "").size(), 1u) << r.err;
  EXPECT_FALSE(fs::exists(dir_ + "/state")) << "a bad config must touch nothing";
}

// --- server problems: exit 1
// ------------------------------------------------------------------------

TEST_F(BadInputTest, UnreachableServerIsNamedMasked) {
  // A port nothing listens on (a fresh listener's port, closed again).
  int port = 0;
  {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    close(s);
  }
  MakeDatabases();
  std::string dead = "postgresql://someone:Unreach-Pw-99@127.0.0.1:" + std::to_string(port) + "/x";
  std::string path = PipelineConfig(dead, Clusters().target().Url(tgt_db_), "bad_unreach");
  CommandResult r = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto lines = LinesStartingWith(r.err, "check: source:");
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_THAT(lines[0], AllOf(HasSubstr("cannot connect"), HasSubstr(std::to_string(port)),
                              HasSubstr("Connection refused")));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("Unreach-Pw-99")));
  EXPECT_LT(r.seconds, 30);

  // snapshot stops before writing anything, with the same fact.
  r = RunTenantsync({"-c", path, "snapshot"}, dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr("cannot connect"), HasSubstr("Connection refused")));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("Unreach-Pw-99")));
}

TEST_F(BadInputTest, WrongPasswordIsRefusedAndNeverEchoed) {
  // A role whose password the server really checks: a scram-sha-256 line for it ahead of the
  // harness's trust lines, then a reload.
  PgCluster& source = Clusters().source();
  MakeDatabases();
  ASSERT_OK(
      source.Exec("postgres",
                  "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pwuser') "
                  "THEN CREATE ROLE pwuser LOGIN REPLICATION; END IF; END$$; "
                  "SET password_encryption = 'scram-sha-256'; "
                  "ALTER ROLE pwuser PASSWORD 'Right-Pw-1234'"));
  ASSERT_OK(source.Exec(src_db_, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO pwuser"));
  std::string hba_path = source.data_dir() + "/pg_hba.conf";
  std::string hba = ReadAll(hba_path);
  if (hba.find("pwuser") == std::string::npos) {
    std::ofstream(hba_path, std::ios::trunc)
        << "host all pwuser 127.0.0.1/32 scram-sha-256\n"
        << "host replication pwuser 127.0.0.1/32 scram-sha-256\n"
        << hba;
    ASSERT_OK(source.Exec("postgres", "SELECT pg_reload_conf()"));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  const std::string kWrong = "Wr0ng-Pw-Secret-77";
  std::string base = "127.0.0.1:" + std::to_string(source.port()) + "/" + src_db_;
  std::string path =
      PipelineConfig("postgresql://pwuser:" + kWrong + "@" + base, TargetRoleUrl(), "bad_pw");
  for (const char* log_format : {"text", "json"}) {
    CommandResult r = RunTenantsync({"-c", path, "--log-format", log_format, "check"}, dir_);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    auto lines = LinesStartingWith(r.err, "check: source:");
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_THAT(lines[0], AllOf(HasSubstr("pwuser"), HasSubstr("password authentication failed"),
                                HasSubstr("postgresql://pwuser:****@")));
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(kWrong))) << log_format;

    r = RunTenantsync({"-c", path, "--log-format", log_format, "snapshot"}, dir_);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("password authentication failed"));
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(kWrong))) << log_format;
  }

  // The right password gets through (so the line above really was the password's fault). The
  // role is not a table owner, so the DBA creates the publication, as the security runbook says.
  ASSERT_OK(source.Exec(src_db_, "DROP PUBLICATION IF EXISTS bad_pw; "
                                 "CREATE PUBLICATION bad_pw FOR TABLE public.items"));
  path = PipelineConfig("postgresql://pwuser:Right-Pw-1234@" + base, TargetRoleUrl(), "bad_pw");
  CommandResult ok = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out + ok.err, Not(HasSubstr("Right-Pw-1234")));
}

TEST_F(BadInputTest, SourceWithoutLogicalWalLevel) {
  ClusterOptions opts;
  opts.wal_level = "replica";
  ASSERT_OK_AND_ASSIGN(auto replica, PgCluster::Start("replica", opts));
  ASSERT_OK_AND_ASSIGN(std::string db, replica->CreateDatabase("bad_replica"));
  ASSERT_OK(replica->Exec(db, "CREATE TABLE items (id bigint PRIMARY KEY)"));
  ASSERT_OK_AND_ASSIGN(tgt_db_, Clusters().target().CreateDatabase("bad_tgt"));
  // The source role on the replica cluster too (with the DBA's publication): the wal_level line
  // is then check's only one.
  ASSERT_OK(GrantBridgeSource(*replica, db, /*publication=*/"bad_wal"));
  std::string path =
      PipelineConfig(replica->Url(db, kBridgeSourceRole), TargetRoleUrl(), "bad_wal");
  CommandResult r = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto lines = LinesStartingWith(r.err, "check: source:");
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_THAT(lines[0], AllOf(HasSubstr("wal_level is 'replica'"), HasSubstr("logical")));
  // check is read-only: no slot was made.
  ASSERT_OK_AND_ASSIGN(int64_t slots,
                       replica->QueryInt(db, "SELECT count(*) FROM pg_replication_slots"));
  EXPECT_EQ(slots, 0);

  // snapshot refuses too, before creating anything.
  r = RunTenantsync({"-c", path, "snapshot"}, dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("wal_level is 'replica'"));
}

TEST_F(BadInputTest, RoleWithoutReplication) {
  MakeDatabases();
  PgCluster& source = Clusters().source();
  ASSERT_OK(
      source.Exec("postgres",
                  "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'norepl') "
                  "THEN CREATE ROLE norepl LOGIN NOREPLICATION; END IF; END$$"));
  ASSERT_OK(source.Exec(src_db_, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO norepl"));
  std::string url =
      "postgresql://norepl@127.0.0.1:" + std::to_string(source.port()) + "/" + src_db_;
  std::string path = PipelineConfig(url, TargetRoleUrl(), "bad_norepl");
  CommandResult r = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto lines = LinesStartingWith(r.err, "check: source:");
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_THAT(lines[0], AllOf(HasSubstr("role norepl"), HasSubstr("REPLICATION"),
                              HasSubstr("ALTER ROLE \"norepl\" WITH REPLICATION")));
}

TEST_F(BadInputTest, TableWithoutKey) {
  MakeDatabases();
  ASSERT_OK(
      Clusters().source().Exec(src_db_,
                               "CREATE TABLE \"Keyless Log\" (at timestamptz, line text); "
                               "INSERT INTO \"Keyless Log\" VALUES (now(), 'a'), (now(), 'a')"));
  std::string path = RolesConfig("bad_nokey");
  CommandResult r = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto lines = LinesStartingWith(r.err, "check: table");
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_THAT(lines[0],
              AllOf(HasSubstr("public.Keyless Log"), HasSubstr("no primary key"),
                    HasSubstr("REPLICA IDENTITY FULL"), HasSubstr("\"public\".\"Keyless Log\"")));
  // The keyed table is not reported.
  EXPECT_THAT(r.err, Not(HasSubstr("public.items")));

  // The fix the message names makes check pass.
  ASSERT_OK(Clusters().source().Exec(src_db_, "ALTER TABLE \"Keyless Log\" REPLICA IDENTITY FULL"));
  r = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(BadInputTest, SlotHeldByAnotherProcess) {
  MakeDatabases();
  PgCluster& source = Clusters().source();
  const std::string slot = "bad_busy_" + src_db_;
  std::string path = RolesConfig(slot);
  // A snapshot makes the slot and the state directory (the publication is the DBA's).
  CommandResult snap = RunTenantsync({"-c", path, "snapshot"}, dir_, std::chrono::seconds(300));
  ASSERT_EQ(snap.exit_code, 0) << snap.err;

  // pg_recvlogical holds the slot.
  std::string recv_log = dir_ + "/pg_recvlogical.log";
  pid_t holder = fork();
  if (holder == 0) {
    int fd = open(recv_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    std::string bin = "/usr/lib/postgresql/15/bin/pg_recvlogical";
    if (const char* pg_bin = std::getenv("TENANTSYNC_PG_BIN"))
      bin = std::string(pg_bin) + "/pg_recvlogical";
    std::string dbname =
        "host=127.0.0.1 port=" + std::to_string(source.port()) + " user=postgres dbname=" + src_db_;
    execl(bin.c_str(), bin.c_str(), "-d", dbname.c_str(), "--slot", slot.c_str(), "--start", "-o",
          "proto_version=1", "-o", ("publication_names=" + slot).c_str(), "-f", "/dev/null",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  bool active = false;
  for (auto deadline = Clock::now() + std::chrono::seconds(60); Clock::now() < deadline;) {
    auto v = source.QueryValue(
        src_db_, "SELECT active FROM pg_replication_slots WHERE slot_name = '" + slot + "'");
    if (v.ok() && *v == "t") {
      active = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  auto stop_holder = [&] {
    kill(holder, SIGTERM);
    waitpid(holder, nullptr, 0);
  };
  if (!active) stop_holder();
  ASSERT_TRUE(active) << ReadAll(recv_log);
  ASSERT_OK_AND_ASSIGN(
      std::string pid,
      source.QueryValue(
          src_db_, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '" + slot + "'"));

  // check names the slot and the process.
  CommandResult r = RunTenantsync({"-c", path, "check"}, dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto lines = LinesStartingWith(r.err, "check: source:");
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_THAT(lines[0], AllOf(HasSubstr("slot " + slot), HasSubstr("in use by process " + pid)));

  // stream waits a bounded time for the slot, then stops with the same facts.
  r = RunTenantsync({"-c", path, "stream"}, dir_, std::chrono::seconds(120));
  stop_holder();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_LT(r.seconds, 60) << "stream waited too long for a busy slot";
  auto errors = LinesStartingWith(r.err, "tenantsync: ");
  ASSERT_FALSE(errors.empty()) << r.err;
  EXPECT_THAT(errors.back(), AllOf(HasSubstr("slot " + slot), HasSubstr("in use by PID " + pid)));

  source.Exec(src_db_, "SELECT pg_drop_replication_slot('" + slot + "')").IgnoreError();
}

// --- identifiers that need quoting everywhere
// --------------------------------------------------------

// The rows of `table` (schema-qualified, quoted) as one text, ordered by id.
std::string RowsText(PgCluster& cluster, const std::string& db, const std::string& table) {
  auto v = cluster.QueryValue(
      db,
      "SELECT coalesce(string_agg(format('%s|%s|%s|%s', id, \"Mixed Case \"\"Col\"\" ü\", "
      "\"UPPER\", \"naïve; DROP\"), E'\\n' ORDER BY id), '') FROM " +
          table);
  return v.ok() ? *v : "error: " + v.status().ToString();
}

TEST_F(BadInputTest, QuotedSpacedUpperCaseUnicodeIdentifiersEndToEnd) {
  MakeDatabases();
  PgCluster& source = Clusters().source();
  PgCluster& target = Clusters().target();
  const std::string kTable = "\"Odd \"\"Tåble\"\" 名前\"";
  ASSERT_OK(source.Exec(
      src_db_,
      "CREATE TABLE " + kTable +
          " (id bigint PRIMARY KEY, \"Mixed Case \"\"Col\"\" ü\" text, "
          "\"UPPER\" int, \"naïve; DROP\" text); "
          "INSERT INTO " +
          kTable +
          " SELECT g, 'wert ' || g || ' \"q\" ''s''', g * 10, "
          "CASE WHEN g % 3 = 0 THEN NULL ELSE 'ü' || g END FROM generate_series(1, 50) g"));
  const std::string slot = "bad_ident_" + src_db_;
  std::string path = RolesConfig(slot);
  std::string log = dir_ + "/run.log";
  pid_t run = fork();
  if (run == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    std::string bin = Binary();
    execl(bin.c_str(), bin.c_str(), "-c", path.c_str(), "run", static_cast<char*>(nullptr));
    _exit(127);
  }
  auto exited = [&] { return waitpid(run, nullptr, WNOHANG) == run; };
  const std::string target_table = "tenant_bad." + kTable;
  auto wait_equal = [&](const char* what) {
    std::string want = RowsText(source, src_db_, kTable), got;
    for (auto deadline = Clock::now() + std::chrono::seconds(180); Clock::now() < deadline;) {
      got = RowsText(target, tgt_db_, target_table);
      if (got == want) return ::testing::AssertionSuccess();
      if (run > 0 && exited()) {
        run = -1;
        return ::testing::AssertionFailure() << what << ": run exited: " << ReadAll(log);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    return ::testing::AssertionFailure() << what << ": target\n"
                                         << got << "\nwant\n"
                                         << want << "\nlog: " << ReadAll(log);
  };
  EXPECT_TRUE(wait_equal("snapshot"));
  // Streamed changes: insert, update of every column, delete.
  ASSERT_OK(
      source.Exec(src_db_, "INSERT INTO " + kTable +
                               " VALUES (1000, 'neu \"x\" ''y'' 名', -1, 'ß'); "
                               "UPDATE " +
                               kTable +
                               " SET \"Mixed Case \"\"Col\"\" ü\" = 'geändert', \"UPPER\" = 7, "
                               "\"naïve; DROP\" = NULL WHERE id % 5 = 0; "
                               "DELETE FROM " +
                               kTable +
                               " WHERE id IN (2, 3, 1000); "
                               "INSERT INTO " +
                               kTable + " VALUES (1001, NULL, NULL, 'last')"));
  EXPECT_TRUE(wait_equal("stream"));
  ASSERT_OK_AND_ASSIGN(int64_t rows,
                       target.QueryInt(tgt_db_, "SELECT count(*) FROM " + target_table));
  EXPECT_EQ(rows, 49);  // 50 - 2 deleted + 1001 (1000 inserted, then deleted)
  if (run > 0) {
    kill(run, SIGINT);
    int st = 0;
    waitpid(run, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << ReadAll(log);
  }
  source.Exec(src_db_, "SELECT pg_drop_replication_slot('" + slot + "')").IgnoreError();
}

}  // namespace
}  // namespace tenantsync::testing
