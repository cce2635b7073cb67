// Security: TLS with certificate verification to both servers, the encryption key file's
// permissions, and no plaintext secret in anything tenantsync prints, writes or stores for an
// operator.
//
// TLS: the test makes a CA and a server certificate (localhost, 127.0.0.1) with the openssl CLI,
// turns ssl on in this binary's own source and target clusters and allows only TLS connections
// from 127.0.0.1 (hostssl), so a command that succeeds must have used TLS; `check` and `snapshot`
// with sslmode=verify-full then work, and a root certificate from another CA fails clearly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/harness/bridge_roles.h"
#include "tests/harness/captured_command.h"
#include "tests/harness/shell.h"
#include "tests/harness/status_matchers.h"
#include "tests/harness/test_env.h"

namespace tenantsync::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

constexpr const char* kPassword = "Src-Pa55word-Qx81";
constexpr const char* kTargetPassword = "Tgt-Pa55word-Zr27";
constexpr const char* kKey = "q4n0c3Zc2V5yYF3yQ1b2d3h4Zm9vYmFyYmF6cXV4MTI=";  // 32 bytes
constexpr const char* kTenantSecret = "shpat_TENANT_SECRET_5e4d";
constexpr const char* kPlainMail = "PlainMail-7731";  // in every encrypted column value

std::string Binary() {
  const char* b = std::getenv("TENANTSYNC_BINARY");
  return b != nullptr && *b != '\0' ? b : "tenantsync";
}



// Runs `tenantsync ARGS...` with `env` added; stdout and stderr captured separately.
CommandResult RunTenantsync(const std::vector<std::string>& args, const std::string& dir,
                            const std::vector<std::string>& env = {},
                            std::chrono::seconds timeout = std::chrono::seconds(180)) {
  std::vector<std::string> argv = {Binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCaptured(argv, dir, env, timeout);
}

std::vector<std::string> LinesStartingWith(const std::string& text, const std::string& prefix) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) lines.push_back(line);
  }
  return lines;
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tenantsync-security-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_OK_AND_ASSIGN(src_db_, Clusters().source().CreateDatabase("sec_src"));
    ASSERT_OK_AND_ASSIGN(tgt_db_, Clusters().target().CreateDatabase("sec_tgt"));
    ASSERT_OK(Clusters().source().Exec(
        src_db_,
        "CREATE TABLE accounts (id bigint PRIMARY KEY, email text, amount text); "
        "INSERT INTO accounts SELECT g, 'user' || g || '-" +
            std::string(kPlainMail) +
            "@example.com', (g * 100)::text FROM generate_series(1, 200) g; "
            // One row whose amount does not cast: a dead letter.
            "UPDATE accounts SET amount = 'not-a-number' WHERE id = 7"));
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // postgresql://USER[:PASSWORD]@HOST:PORT/DB[?QUERY]
  static std::string Url(const PgCluster& c, const std::string& user, const std::string& db,
                         const std::string& host, const std::string& password,
                         const std::string& query = "") {
    return "postgresql://" + user + (password.empty() ? "" : ":" + password) + "@" + host + ":" +
           std::to_string(c.port()) + "/" + db + (query.empty() ? "" : "?" + query);
  }

  // Every command runs as the least-privilege roles (tests/harness/bridge_roles.h): granted on
  // this test's databases, with the DBA's publication `slot` (the configs name it so).
  void GrantRoles(const std::string& slot) {
    ASSERT_OK(GrantBridgeSource(Clusters().source(), src_db_, /*publication=*/slot));
    ASSERT_OK(GrantBridgeTarget(Clusters().target(), tgt_db_, "tenant_sec"));
  }

  // The commands' URLs: this test's databases as those roles.
  std::string SourceUrl(const std::string& host, const std::string& password,
                        const std::string& query = "") const {
    return Url(Clusters().source(), kBridgeSourceRole, src_db_, host, password, query);
  }
  std::string TargetUrl(const std::string& host, const std::string& password,
                        const std::string& query = "") const {
    return Url(Clusters().target(), kBridgeTargetRole, tgt_db_, host, password, query);
  }

  // A pipeline config; `source_url`/`target_url` are written as they are (they may be ${VAR}).
  std::string WriteConfig(const std::string& name, const std::string& source_url,
                          const std::string& target_url, const std::string& encryption,
                          const std::string& slot) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << "pipeline: sec\n"
                        << "source: {url: \"" << source_url << "\", slot: " << slot
                        << ", publication: " << slot << "}\n"
                        << "target: {url: \"" << target_url << "\", schema: tenant_sec}\n"
                        << "tenant: {slug: sec, secrets: {api_token: \"${TS_TENANT_SECRET}\"}}\n"
                        << "state_dir: " << dir_ << "/state-" << slot << "\n"
                        << "encryption: " << encryption << "\n"
                        << "ops: {listen: \"127.0.0.1:0\"}\n"
                        << "tables:\n"
                        << "  accounts:\n"
                        << "    columns:\n"
                        << "      email: {encrypt: true}\n"
                        << "      amount: {type: bigint}\n";
    return path;
  }

  std::vector<std::string> Env() const {
    return {std::string("TS_TENANT_SECRET=") + kTenantSecret, std::string("TS_KEY=") + kKey};
  }

  void DropSlot(const std::string& slot) {
    Clusters()
        .source()
        .Exec(src_db_,
              "SELECT pg_drop_replication_slot(slot_name) FROM "
              "pg_replication_slots WHERE slot_name = '" +
                  slot + "'")
        .IgnoreError();
  }

  std::string dir_, src_db_, tgt_db_;
};

// --- TLS
// ------------------------------------------------------------------------------------------

// Turns on TLS in `cluster` with the given certificate and key and allows only TLS from TCP.
Status EnableTls(PgCluster& cluster, const std::string& crt, const std::string& key) {
  std::string data = cluster.data_dir();
  std::error_code ec;
  fs::copy_file(crt, data + "/tls-server.crt", fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::copy_file(key, data + "/tls-server.key", fs::copy_options::overwrite_existing, ec);
  if (ec) return Status(StatusCode::kFatal, "copying the certificate: " + ec.message());
  // The server refuses a key readable by others; as root the files must belong to postgres.
  chmod((data + "/tls-server.key").c_str(), 0600);
  if (getuid() == 0) {
    auto [rc, out] =
        Shell("chown postgres:postgres " + data + "/tls-server.crt " + data + "/tls-server.key");
    if (rc != 0) return Status(StatusCode::kFatal, "chown: " + out);
  }
  std::ofstream(data + "/pg_hba.conf", std::ios::trunc)
      << "# security_test: TLS only over TCP\n"
      << "local all all trust\n"
      << "hostssl all all 127.0.0.1/32 trust\n"
      << "local replication all trust\n"
      << "hostssl replication all 127.0.0.1/32 trust\n";
  for (const char* sql :
       {"ALTER SYSTEM SET ssl = on", "ALTER SYSTEM SET ssl_cert_file = 'tls-server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'tls-server.key'"}) {
    TS_RETURN_IF_ERROR(cluster.Exec("postgres", sql));  // one by one: not in a transaction
  }
  TS_RETURN_IF_ERROR(cluster.Exec("postgres", "SELECT pg_reload_conf()"));
  // A reload is asynchronous: wait until a new connection is encrypted.
  for (int i = 0; i < 100; ++i) {
    auto v =
        cluster.QueryValue("postgres", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    if (v.ok() && *v == "t") return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status(StatusCode::kFatal, "ssl did not turn on: " + cluster.LogTail());
}

TEST_F(SecurityTest, TlsVerifyFullWorksAndAWrongCaFailsClearly) {
  const std::string tls = dir_ + "/tls";
  fs::create_directories(tls);
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  for (const std::string& cmd :
       {"openssl req -x509 " + ec +
            " -keyout ca.key -out ca.pem -days 2 -subj '/CN=tenantsync test CA'",
        "openssl req " + ec + " -keyout server.key -out server.csr -subj '/CN=localhost'",
        std::string(
            "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
            "extendedKeyUsage=serverAuth\\n' > ext.cnf"),
        std::string("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                    "-out server.crt -days 2 -extfile ext.cnf"),
        "openssl req -x509 " + ec +
            " -keyout other.key -out other-ca.pem -days 2 -subj '/CN=some other CA'"}) {
    auto [rc, out] = Shell("cd " + tls + " && " + cmd);
    ASSERT_EQ(rc, 0) << cmd << "\n" << out;
  }
  ASSERT_OK(EnableTls(Clusters().source(), tls + "/server.crt", tls + "/server.key"));
  ASSERT_OK(EnableTls(Clusters().target(), tls + "/server.crt", tls + "/server.key"));

  // verify-full by host name (source) and by IP address (target): both in the certificate.
  const std::string verify = "sslmode=verify-full&sslrootcert=" + tls + "/ca.pem";
  const std::string slot = "sec_tls_" + src_db_;
  ASSERT_NO_FATAL_FAILURE(GrantRoles(slot));
  std::string good =
      WriteConfig("tls.yaml", SourceUrl("localhost", kPassword, verify),
                  TargetUrl("127.0.0.1", kTargetPassword, verify), "{key: \"${TS_KEY}\"}", slot);
  CommandResult r = RunTenantsync({"-c", good, "check"}, dir_, Env());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("servers OK"));
  // The replication connection and the copy go over TLS too (hostssl only: nothing else gets in).
  r = RunTenantsync({"-c", good, "snapshot"}, dir_, Env(), std::chrono::seconds(300));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_OK_AND_ASSIGN(int64_t rows, Clusters().target().QueryInt(
                                         tgt_db_, "SELECT count(*) FROM tenant_sec.accounts"));
  EXPECT_EQ(rows, 199);  // one dead letter
  for (const std::string& text : {r.out, r.err}) {
    EXPECT_THAT(text, AllOf(Not(HasSubstr(kPassword)), Not(HasSubstr(kTargetPassword))));
  }
  DropSlot(slot);

  // A root certificate from another CA: one line per server naming the verification failure.
  const std::string wrong = "sslmode=verify-full&sslrootcert=" + tls + "/other-ca.pem";
  std::string bad = WriteConfig("wrong-ca.yaml", SourceUrl("localhost", kPassword, wrong),
                                TargetUrl("127.0.0.1", kTargetPassword, wrong),
                                "{key: \"${TS_KEY}\"}", "sec_wrongca");
  r = RunTenantsync({"-c", bad, "check"}, dir_, Env());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto source_lines = LinesStartingWith(r.err, "check: source:");
  auto target_lines = LinesStartingWith(r.err, "check: target:");
  ASSERT_EQ(source_lines.size(), 1u) << r.err;
  ASSERT_EQ(target_lines.size(), 1u) << r.err;
  EXPECT_THAT(source_lines[0],
              AllOf(HasSubstr("cannot connect"), HasSubstr("certificate verify failed")));
  EXPECT_THAT(target_lines[0],
              AllOf(HasSubstr("cannot connect"), HasSubstr("certificate verify failed")));
  EXPECT_THAT(r.out + r.err, AllOf(Not(HasSubstr(kPassword)), Not(HasSubstr(kTargetPassword))));
  r = RunTenantsync({"-c", bad, "snapshot"}, dir_, Env());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("certificate verify failed"));

  // The host name must match too: the right server reached under a name not in its certificate.
  std::string mismatch =
      WriteConfig("mismatch.yaml", SourceUrl("wrong.example", "", "hostaddr=127.0.0.1&" + verify),
                  TargetUrl("127.0.0.1", "", verify), "{key: \"${TS_KEY}\"}", "sec_mismatch");
  r = RunTenantsync({"-c", mismatch, "check"}, dir_, Env());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto mismatch_lines = LinesStartingWith(r.err, "check: source:");
  ASSERT_EQ(mismatch_lines.size(), 1u) << r.err;
  EXPECT_THAT(mismatch_lines[0], AllOf(HasSubstr("cannot connect"),
                                       HasSubstr("does not match host name \"wrong.example\"")));
}

// --- the encryption key file ---------------------------------------------------------------------

TEST_F(SecurityTest, WorldReadableKeyFileIsRefused) {
  const std::string key_file = dir_ + "/tenant.key";
  std::ofstream(key_file) << kKey << "\n";
  ASSERT_NO_FATAL_FAILURE(GrantRoles("sec_keyfile"));
  std::string path =
      WriteConfig("keyfile.yaml", SourceUrl("127.0.0.1", ""), TargetUrl("127.0.0.1", ""),
                  "{key_file: \"" + key_file + "\"}", "sec_keyfile");
  for (mode_t mode : {0644, 0640, 0604}) {
    ASSERT_EQ(chmod(key_file.c_str(), mode), 0);
    CommandResult r = RunTenantsync({"-c", path, "check"}, dir_, Env());
    EXPECT_NE(r.exit_code, 0) << std::oct << mode;
    EXPECT_EQ(r.exit_code, 2) << r.err;
    auto lines = LinesStartingWith(r.err, "tenantsync: ");
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_THAT(lines[0], AllOf(HasSubstr("encryption.key_file"), HasSubstr(key_file),
                                HasSubstr("group or others"), HasSubstr("chmod 600")));
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(kKey)));
    // snapshot refuses it before touching a server.
    r = RunTenantsync({"-c", path, "snapshot"}, dir_, Env());
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.err, HasSubstr("encryption.key_file"));
  }
  ASSERT_EQ(chmod(key_file.c_str(), 0600), 0);
  CommandResult r = RunTenantsync({"-c", path, "check"}, dir_, Env());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out + r.err, Not(HasSubstr(kKey)));
  ASSERT_EQ(chmod(key_file.c_str(), 0400), 0);
  r = RunTenantsync({"-c", path, "check"}, dir_, Env());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

// --- no plaintext secret anywhere
// -----------------------------------------------------------------

TEST_F(SecurityTest, NoPlaintextSecretInLogsStatusHistoryReportsDeadLettersOrTarget) {
  const std::string slot = "sec_leak_" + src_db_;
  ASSERT_NO_FATAL_FAILURE(GrantRoles(slot));
  std::string path =
      WriteConfig("leak.yaml", SourceUrl("127.0.0.1", kPassword),
                  TargetUrl("127.0.0.1", kTargetPassword), "{key: \"${TS_KEY}\"}", slot);
  std::vector<std::pair<std::string, std::string>> outputs;  // what, text
  auto record = [&](const std::string& what, const CommandResult& r) {
    outputs.emplace_back(what + " (stdout)", r.out);
    outputs.emplace_back(what + " (stderr)", r.err);
  };
  const std::string report = dir_ + "/snapshot-report.json";
  bool dead_letters_listed = false;
  for (const char* format : {"json", "text"}) {
    std::vector<std::string> global = {"-c", path, "--log-format", format, "--log-level", "debug"};
    auto cmd = [&](std::vector<std::string> args) {
      args.insert(args.begin(), global.begin(), global.end());
      return args;
    };
    CommandResult r = RunTenantsync(cmd({"check"}), dir_, Env());
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    record(std::string("check --log-format ") + format, r);
    if (std::string(format) == "json") {
      r = RunTenantsync(cmd({"snapshot", "--report", report}), dir_, Env(),
                        std::chrono::seconds(300));
      EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
      record("snapshot", r);
      outputs.emplace_back("snapshot report", ReadAll(report));
      // A streamed row with a secret, and one that becomes a dead letter in the applier.
      const std::string run_dir = dir_ + "/run";
      fs::create_directories(run_dir);
      std::vector<std::string> run_argv = {Binary()};
      for (const auto& a : cmd({"run"})) run_argv.push_back(a);
      pid_t run = StartCaptured(run_argv, run_dir, Env());
      ASSERT_OK(Clusters().source().Exec(
          src_db_, "INSERT INTO accounts VALUES (1001, 'streamed-" + std::string(kPlainMail) +
                       "@example.com', '5'), (1002, 'bad-" + std::string(kPlainMail) +
                       "@example.com', 'garbage')"));
      bool applied = false;
      for (auto deadline = Clock::now() + std::chrono::seconds(120);
           Clock::now() < deadline && !applied;) {
        auto v = Clusters().target().QueryValue(
            tgt_db_, "SELECT count(*) FROM tenant_sec.accounts WHERE id = 1001");
        applied = v.ok() && *v == "1";
        if (!applied) std::this_thread::sleep_for(std::chrono::milliseconds(300));
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
      kill(run, SIGINT);
      CommandResult stopped = WaitCaptured(run, run_dir, std::chrono::seconds(60));
      EXPECT_TRUE(applied) << stopped.out << stopped.err;
      outputs.emplace_back("run log (json, debug)", stopped.out + stopped.err);
    }
    for (const char* what : {"status", "history", "dead-letters"}) {
      r = RunTenantsync(cmd({what}), dir_, Env());
      record(std::string(what) + " " + format, r);
      r = RunTenantsync(cmd({what, "--json"}), dir_, Env());
      record(std::string(what) + " --json " + format, r);
      if (std::string(what) == "dead-letters") {
        // 3: not in this build yet; then the dead letters are only counted in status.
        EXPECT_THAT(r.exit_code, ::testing::AnyOf(0, 3)) << r.err;
        if (r.exit_code == 0) {
          EXPECT_THAT(r.out, HasSubstr("accounts")) << "the dead letters should be listed";
        }
        dead_letters_listed = r.exit_code == 0;
      }
    }
  }
  // The target: the encrypted column holds ciphertext and nothing in the database (tenant
  // schema, organizations, _tenantsync's progress, history and audit) holds a plaintext secret.
  ASSERT_OK_AND_ASSIGN(std::string sample,
                       Clusters().target().QueryValue(
                           tgt_db_, "SELECT email FROM tenant_sec.accounts WHERE id = 1"));
  EXPECT_THAT(sample, HasSubstr("tsenc1:"));
  auto [dump_rc, dump] =
      Shell("pg_dump --data-only -h 127.0.0.1 -p " + std::to_string(Clusters().target().port()) +
            " -U postgres " + tgt_db_);
  EXPECT_EQ(dump_rc, 0) << dump.substr(0, 500);
  EXPECT_THAT(dump, HasSubstr("tsenc1:"));
  outputs.emplace_back("pg_dump of the target", dump);

  ASSERT_GT(outputs.size(), 20u);
  size_t bytes = 0;
  for (const auto& [what, text] : outputs) bytes += text.size();
  std::cout << "secret scan: " << outputs.size() << " outputs, " << bytes
            << " bytes, dead letters listed: " << (dead_letters_listed ? "yes" : "no") << "\n";
  for (const auto& [what, text] : outputs) {
    EXPECT_THAT(text, Not(HasSubstr(kPassword))) << what << ":\n" << text.substr(0, 3000);
    EXPECT_THAT(text, Not(HasSubstr(kTargetPassword))) << what;
    EXPECT_THAT(text, Not(HasSubstr(kKey))) << what;
    EXPECT_THAT(text, Not(HasSubstr(kTenantSecret))) << what;
    EXPECT_THAT(text, Not(HasSubstr(kPlainMail))) << what << ":\n" << text.substr(0, 3000);
  }
  DropSlot(slot);
}

}  // namespace
}  // namespace tenantsync::testing
