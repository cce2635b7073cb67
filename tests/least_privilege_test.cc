// Least-privilege roles (issue 9, Security): the `tenantsync` binary runs as the roles of
// ops/runbooks/security.md ("Least-privilege roles"), never as a superuser.
//
// The SQL and the pg_hba.conf lines are read from the runbook and run exactly as written, with
// only the database names, the client address and the passwords replaced, so the runbook stays
// true: a statement that stops working, or a privilege tenantsync starts to need, fails here.
// Passwords are checked by the server (scram-sha-256 lines ahead of the harness's trust lines).
//
// Cases:
//   - check → run (snapshot + stream of the RAWDOG workload) → status → validate --full →
//     cutover (barrier, sequence sync, go) → cutover --finish (the slot dropped, the DBA's
//     publication left in place) → rollback --confirm, all as the two roles; after catch-up
//     every table equals the source (validate --full, plus counts and a content hash per table);
//     the roles' passwords appear in no output;
//   - without SELECT on one mapped table, `check` fails with one line naming it and the GRANT;
//   - without the publication (which the role may not create), `check` fails with one line
//     naming it and the CREATE PUBLICATION to run.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/pg.h"
#include "tests/fixtures/rawdog.h"
#include "tests/fixtures/rawdog_config.h"
#include "tests/harness/bridge_roles.h"
#include "tests/harness/shell.h"
#include "tests/harness/test_env.h"

namespace tenantsync::testing {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr const char* kSourcePassword = "Lp-Src-9f3K2qW";
constexpr const char* kTargetPassword = "Lp-Tgt-7hW4xZr";
constexpr const char* kSourceRole = "tenantsync_source";
constexpr const char* kTargetRole = "tenantsync_target";

std::string Binary() {
  const char* b = std::getenv("TENANTSYNC_BINARY");
  return b != nullptr && *b != '\0' ? b : TENANTSYNC_BINARY_PATH;
}

void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  for (size_t p = s->find(from); p != std::string::npos; p = s->find(from, p + to.size())) {
    s->replace(p, from.size(), to);
  }
}

// The statements of a block (split at ";" ending a line).
std::vector<std::string> Statements(const std::string& block) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(block);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.rfind("--", 0) == 0) continue;
    cur += line + "\n";
    if (line.back() == ';') {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (cur.find_first_not_of(" \n") != std::string::npos) out.push_back(cur);
  return out;
}

// Runs a documented block as the superuser in `db`: CREATE ROLE only when the role does not
// exist yet (roles belong to the cluster, shared by this binary's tests), everything else as is.
// `skip` leaves out statements containing it (a negative case's missing step).
Status RunDocumentedSql(PgCluster& cluster, const std::string& db, std::string block,
                        const std::string& doc_db, const std::string& password,
                        const std::string& skip = "") {
  if (block.empty()) return Status(StatusCode::kNotFound, "runbook block missing");
  ReplaceAll(&block, "DATABASE " + doc_db + " ", "DATABASE " + db + " ");
  ReplaceAll(&block, "'change-me'", "'" + password + "'");
  for (const std::string& sql : Statements(block)) {
    if (!skip.empty() && sql.find(skip) != std::string::npos) continue;
    if (sql.rfind("CREATE ROLE ", 0) == 0) {
      std::string role = sql.substr(12, sql.find(' ', 12) - 12);
      auto n = cluster.QueryInt(db, "SELECT count(*) FROM pg_roles WHERE rolname = '" + role + "'");
      TS_RETURN_IF_ERROR(n.status());
      if (*n > 0) continue;
    }
    TS_RETURN_IF_ERROR(cluster.Exec(db, sql).WithContext(sql));
  }
  return Status::Ok();
}

// Puts the documented pg_hba.conf line (for `db`, from 127.0.0.1) ahead of the harness's trust
// lines and reloads, so the server checks the role's password.
Status AdmitDocumented(PgCluster& cluster, const std::string& block_name, const std::string& doc_db,
                       const std::string& db) {
  std::string line = SecurityRunbookBlock(block_name);
  if (line.empty()) return Status(StatusCode::kNotFound, "runbook block " + block_name + " missing");
  ReplaceAll(&line, " " + doc_db + " ", " " + db + " ");
  ReplaceAll(&line, "10.0.4.17/32", "127.0.0.1/32");
  const std::string path = cluster.data_dir() + "/pg_hba.conf";
  std::string hba = ReadAll(path);
  std::ofstream(path, std::ios::trunc) << line << hba;
  return cluster.Exec("postgres", "SELECT pg_reload_conf()");
}

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// `tenantsync -c CONFIG ARGS...` in the foreground.
Result Tenantsync(const std::string& config, const std::string& args) {
  auto [rc, out] = Shell(Binary() + " -c " + config + " " + args + " </dev/null");
  return {rc, out};
}

// `tenantsync -c CONFIG run` in the background, output to a log file.
class Bridge {
 public:
  Bridge(std::string config, std::string log) : config_(std::move(config)), log_(std::move(log)) {}
  ~Bridge() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void Start() {
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      dup2(fd, 1);
      dup2(fd, 2);
      std::string bin = Binary();
      execl(bin.c_str(), bin.c_str(), "-c", config_.c_str(), "run", static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  bool Exited() {
    if (pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = -1;
    return pid_ <= 0;
  }
  // SIGINT; the exit code, or -1 when it had to be killed after 60 s.
  int Stop() {
    kill(pid_, SIGINT);
    for (int i = 0; i < 600; ++i) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return -1;
  }
  std::string Log() const { return ReadAll(log_); }

 private:
  std::string config_, log_;
  pid_t pid_ = -1;
};

class LeastPrivilegeTest : public ::testing::Test {
 protected:
  // The documented setup on fresh databases: RAWDOG loaded in the source (by the application,
  // here the superuser), the organizations table of the platform, then the runbook's SQL and
  // pg_hba.conf lines. `skip_source` leaves out the source statements containing it.
  void SetUpRoles(const std::string& skip_source = "") {
    auto& env = Clusters();
    auto src = env.source().CreateDatabase("lp_src");
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    src_db_ = *src;
    auto tgt = env.target().CreateDatabase("lp_tgt");
    ASSERT_TRUE(tgt.ok()) << tgt.status().ToString();
    tgt_db_ = *tgt;
    ASSERT_TRUE(LoadRawdog(env.source().Url(src_db_), 1).ok());
    Status s = RunDocumentedSql(env.source(), src_db_, SecurityRunbookBlock("source"), "rawdog",
                                kSourcePassword, skip_source);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = RunDocumentedSql(env.target(), tgt_db_, SecurityRunbookBlock("organizations"), "platform",
                         kTargetPassword);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = RunDocumentedSql(env.target(), tgt_db_, SecurityRunbookBlock("target"), "platform",
                         kTargetPassword);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = AdmitDocumented(env.source(), "source-hba", "rawdog", src_db_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = AdmitDocumented(env.target(), "target-hba", "platform", tgt_db_);
    ASSERT_TRUE(s.ok()) << s.ToString();

    char tmpl[] = "/tmp/tenantsync-lp-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_ = dir_ + "/rawdog.yaml";
    std::ofstream out(config_);
    out << "pipeline: rawdog\n"
        << "source: {url: \"postgresql://" << kSourceRole << ":" << kSourcePassword
        << "@127.0.0.1:" << env.source().port() << "/" << src_db_ << "\"}\n"
        << "target: {url: \"postgresql://" << kTargetRole << ":" << kTargetPassword
        << "@127.0.0.1:" << env.target().port() << "/" << tgt_db_
        << "\", schema: tenant_rawdog}\n"
        << "tenant: {slug: rawdog, name: RAWDOG Skincare, secrets: {shopify_access_token: tok}}\n"
        << "state_dir: " << dir_ << "/state\n"
        << "encryption: {key: \"KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=\"}\n"
        << "ops: {listen: \"127.0.0.1:0\"}\n"
        << "snapshot: {workers: 2}\n"
        << "apply: {batch_max_ms: 100}\n"
        << testing::kRawdogTablesYaml;
  }

  void TearDown() override {
    bridge_.reset();
    if (!src_db_.empty()) {
      Clusters()
          .source()
          .Exec(src_db_,
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = 'tenantsync_rawdog'")
          .IgnoreError();
    }
    if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_);
  }

  // Lines of `out` that are check failures ("check: ..." but not the summary line).
  static std::vector<std::string> CheckFailures(const std::string& out) {
    std::vector<std::string> lines;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) {
      if (l.rfind("check: ", 0) == 0 && l.find(" problem(s); nothing was changed") == std::string::npos) {
        lines.push_back(l);
      }
    }
    return lines;
  }

  void ExpectNoPassword(const std::string& what, const std::string& out) {
    EXPECT_EQ(out.find(kSourcePassword), std::string::npos) << what << " shows a password";
    EXPECT_EQ(out.find(kTargetPassword), std::string::npos) << what << " shows a password";
  }

  // A transactional logical message on the source (what the applier passes with a progress
  // update) and a wait until the target has applied it; messages before the slot existed are
  // not streamed, so one is sent every 2 s.
  ::testing::AssertionResult WaitCaughtUp(int seconds) {
    auto& src = Clusters().source();
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    std::string last;
    while (Clock::now() < deadline) {
      auto m = src.QueryValue(src_db_, "SELECT pg_logical_emit_message(true, 'lp_test', 'x')::text");
      if (!m.ok()) return ::testing::AssertionFailure() << m.status().ToString();
      for (int i = 0; i < 8; ++i) {
        auto v = Clusters().target().QueryValue(
            tgt_db_, "SELECT applied_lsn >= '" + *m +
                         "'::pg_lsn FROM _tenantsync.progress WHERE pipeline = 'rawdog'");
        if (v.ok() && *v == "t") return ::testing::AssertionSuccess();
        last = v.ok() ? *v : v.status().ToString();
        if (bridge_->Exited()) {
          return ::testing::AssertionFailure() << "run exited: " << bridge_->Log();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
    }
    return ::testing::AssertionFailure() << "not caught up (" << last << "): " << bridge_->Log();
  }

  std::string src_db_, tgt_db_, dir_, config_;
  std::unique_ptr<Bridge> bridge_;
};

TEST_F(LeastPrivilegeTest, DocumentedRolesRunEveryCommandAndTheTargetEqualsTheSource) {
  ASSERT_NO_FATAL_FAILURE(SetUpRoles());
  auto& env = Clusters();
  // Not superusers, and the source role owns no table.
  EXPECT_EQ(*env.source().QueryValue(src_db_, "SELECT rolsuper::text FROM pg_roles WHERE rolname = "
                                              "'tenantsync_source'"), "false");
  EXPECT_EQ(*env.target().QueryValue(tgt_db_, "SELECT rolsuper::text FROM pg_roles WHERE rolname = "
                                              "'tenantsync_target'"), "false");
  EXPECT_EQ(*env.source().QueryInt(src_db_, "SELECT count(*) FROM pg_tables WHERE tableowner = "
                                            "'tenantsync_source'"), 0);
  std::string all_output;

  Result check = Tenantsync(config_, "check");
  all_output += check.output;
  ASSERT_EQ(check.exit_code, 0) << check.output;
  EXPECT_THAT(check.output, HasSubstr("servers OK"));

  // run: snapshot, then the stream, while the RAWDOG workload writes (as the application).
  bridge_ = std::make_unique<Bridge>(config_, dir_ + "/run.log");
  bridge_->Start();
  WorkloadOptions wo;
  wo.clients = 2;
  wo.transactions_per_client = 0;
  wo.seconds = 12;
  wo.seed = 9;
  auto workload = RunRawdogWorkload(env.source().Url(src_db_), wo);
  ASSERT_TRUE(workload.ok()) << workload.status().ToString();
  EXPECT_GT(workload->committed, 20);
  ASSERT_TRUE(WaitCaughtUp(240));
  // The workload ran beside the snapshot and the stream: both carried rows.
  EXPECT_THAT(bridge_->Log(), HasSubstr("snapshot consistent at"));

  Result status = Tenantsync(config_, "status");
  all_output += status.output;
  EXPECT_EQ(status.exit_code, 0) << status.output;

  Result validate = Tenantsync(config_, "validate --full");
  all_output += validate.output;
  EXPECT_EQ(validate.exit_code, 0) << validate.output;

  // Independently of validate: counts of every table, and the content of every table without
  // transforms (same types on both sides, so the row text is identical).
  auto src = env.source().Connect(src_db_);
  auto tgt = env.target().Connect(tgt_db_);
  ASSERT_TRUE(src.ok() && tgt.ok());
  for (const std::string& t : RawdogTables()) {
    std::string count = "SELECT count(*) FROM " + QuoteQualified("public", t);
    auto a = src->Exec(count);
    auto b = tgt->Exec("SELECT count(*) FROM " + QuoteQualified("tenant_rawdog", t));
    ASSERT_TRUE(a.ok() && b.ok()) << t;
    EXPECT_EQ(a->Get(0, 0), b->Get(0, 0)) << t;
    if (t == "orders" || t == "creators" || t == "customers" || t == "withdrawal_requests" ||
        t == "esign_documents") {
      continue;  // transformed: validate --full compares them through the transform
    }
    auto ha = src->Exec("SELECT md5(string_agg(r::text, '|' ORDER BY r::text)) FROM " +
                        QuoteQualified("public", t) + " r");
    auto hb = tgt->Exec("SELECT md5(string_agg(r::text, '|' ORDER BY r::text)) FROM " +
                        QuoteQualified("tenant_rawdog", t) + " r");
    ASSERT_TRUE(ha.ok() && hb.ok()) << t;
    EXPECT_EQ(ha->Get(0, 0), hb->Get(0, 0)) << "content of " << t;
  }

  // cutover: the barrier, the sequences (read on the source through SELECT on them), validation.
  Result cutover = Tenantsync(config_, "cutover");
  all_output += cutover.output;
  EXPECT_EQ(cutover.exit_code, 0) << cutover.output;
  const std::string next =
      "SELECT (CASE WHEN is_called THEN last_value + 1 ELSE last_value END)::text FROM ";
  auto next_src = env.source().QueryValue(src_db_, next + "public.orders_id_seq");
  auto next_tgt = env.target().QueryValue(tgt_db_, next + "tenant_rawdog.orders_id_seq");
  ASSERT_TRUE(next_src.ok() && next_tgt.ok());
  EXPECT_EQ(*next_src, *next_tgt);

  EXPECT_EQ(bridge_->Stop(), 0) << bridge_->Log();
  all_output += bridge_->Log();

  // --finish drops the slot; the DBA's publication is not the role's and stays, with a line.
  Result finish = Tenantsync(config_, "cutover --finish --confirm");
  all_output += finish.output;
  EXPECT_EQ(finish.exit_code, 0) << finish.output;
  EXPECT_THAT(finish.output, HasSubstr("dropped replication slot tenantsync_rawdog"));
  EXPECT_THAT(finish.output, HasSubstr("publication tenantsync_rawdog is owned by postgres"));
  EXPECT_THAT(finish.output, HasSubstr("DROP PUBLICATION"));
  EXPECT_EQ(*env.source().QueryInt(src_db_, "SELECT count(*) FROM pg_replication_slots WHERE "
                                            "slot_name = 'tenantsync_rawdog'"), 0);

  // rollback, with the one extra grant the runbook names for it.
  ASSERT_TRUE(env.target()
                  .Exec(tgt_db_, "GRANT DELETE ON public.organizations TO tenantsync_target")
                  .ok());
  Result rollback = Tenantsync(config_, "rollback --confirm");
  all_output += rollback.output;
  EXPECT_EQ(rollback.exit_code, 0) << rollback.output;
  EXPECT_EQ(*env.target().QueryInt(tgt_db_, "SELECT count(*) FROM public.organizations "
                                            "WHERE slug = 'rawdog'"), 0);
  EXPECT_EQ(*env.target().QueryValue(tgt_db_, "SELECT to_regnamespace('tenant_rawdog') IS NULL"),
            "t");

  ExpectNoPassword("the commands' output", all_output);
}

TEST_F(LeastPrivilegeTest, CheckNamesAMappedTableTheRoleMayNotReadWithTheGrant) {
  ASSERT_NO_FATAL_FAILURE(SetUpRoles());
  ASSERT_TRUE(Clusters()
                  .source()
                  .Exec(src_db_, "REVOKE SELECT ON public.reviews FROM tenantsync_source")
                  .ok());
  Result check = Tenantsync(config_, "check");
  EXPECT_EQ(check.exit_code, 1) << check.output;
  std::vector<std::string> failures = CheckFailures(check.output);
  ASSERT_EQ(failures.size(), 1u) << check.output;
  EXPECT_THAT(failures[0], HasSubstr("table public.reviews is not readable by source role "
                                     "tenantsync_source"));
  EXPECT_THAT(failures[0], HasSubstr("GRANT SELECT ON \"public\".\"reviews\" TO tenantsync_source"));
  ExpectNoPassword("check", check.output);
  // Nothing was changed: no slot, no publication change, no schema content.
  EXPECT_EQ(*Clusters().source().QueryInt(src_db_, "SELECT count(*) FROM pg_replication_slots "
                                                   "WHERE slot_name = 'tenantsync_rawdog'"), 0);
  EXPECT_EQ(*Clusters().target().QueryInt(tgt_db_, "SELECT count(*) FROM pg_tables WHERE "
                                                   "schemaname IN ('tenant_rawdog', '_tenantsync')"),
            0);
}

TEST_F(LeastPrivilegeTest, CheckNamesAMissingPublicationTheRoleMayNotCreateWithTheStatement) {
  ASSERT_NO_FATAL_FAILURE(SetUpRoles(/*skip_source=*/"CREATE PUBLICATION"));
  Result check = Tenantsync(config_, "check");
  EXPECT_EQ(check.exit_code, 1) << check.output;
  std::vector<std::string> failures = CheckFailures(check.output);
  ASSERT_EQ(failures.size(), 1u) << check.output;
  EXPECT_THAT(failures[0], HasSubstr("source: publication tenantsync_rawdog does not exist and "
                                     "role tenantsync_source may not create it"));
  EXPECT_THAT(failures[0], HasSubstr("CREATE PUBLICATION \"tenantsync_rawdog\" FOR TABLE "
                                     "\"public\".\"ab_tests\""));
  ExpectNoPassword("check", check.output);
  // `snapshot` stops with the same line before writing anything.
  Result snap = Tenantsync(config_, "snapshot");
  EXPECT_NE(snap.exit_code, 0) << snap.output;
  EXPECT_THAT(snap.output, HasSubstr("publication tenantsync_rawdog does not exist"));
  EXPECT_EQ(*Clusters().source().QueryInt(src_db_, "SELECT count(*) FROM pg_replication_slots "
                                                   "WHERE slot_name = 'tenantsync_rawdog'"), 0);
}

}  // namespace
}  // namespace tenantsync::testing
