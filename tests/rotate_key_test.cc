// rotate-key through the binary against real clusters: a tenant snapshotted under key A, the
// config switched to key B with A as a previous key, then `tenantsync rotate-key`.
//
// Each test checks the target itself, not rotate-key's own summary: every encrypted value and
// organization secret carries key id B and decrypts, with key B alone, to the source plaintext.
// The kill tests stop rotate-key mid-way (a kill point after a committed batch, one before a
// commit, and a real SIGKILL while it runs over 20,000 rows) and check that a rerun finishes with
// nothing lost. The source has a table with a primary key (keyset by key) and one without
// (keyset by ctid), and the tenant has a secret in public.organizations.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/crypto.h"
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

// Two different 32-byte keys (base64); never to appear in any output.
constexpr const char* kKeyA = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
constexpr const char* kKeyB = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
constexpr const char* kTenantSecret = "shpat_ROTATE_SECRET_93c1";

std::string Binary() {
  const char* b = std::getenv("TENANTSYNC_BINARY");
  return b != nullptr && *b != '\0' ? b : "tenantsync";
}

std::string KeyId(const char* key) { return Cipher::FromBase64Key(key).value().key_id(); }

// `tenantsync ARGS...` as an argv.
std::vector<std::string> TenantsyncArgv(std::vector<std::string> args) {
  args.insert(args.begin(), Binary());
  return args;
}

class RotateKeyTest : public ::testing::Test {
 protected:
  // `accounts` (primary key; two encrypted columns, one renamed) and `touches` (no key, REPLICA
  // IDENTITY FULL; one encrypted column). Plaintexts are unique per row and derived from the id.
  void SetUpSource(int accounts, int touches) {
    char tmpl[] = "/tmp/tenantsync-rotate-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_OK_AND_ASSIGN(src_db_, Clusters().source().CreateDatabase("rot_src"));
    ASSERT_OK_AND_ASSIGN(tgt_db_, Clusters().target().CreateDatabase("rot_tgt"));
    slot_ = "rot_" + src_db_;
    ASSERT_OK(Clusters().source().Exec(
        src_db_,
        "CREATE TABLE accounts (id bigint PRIMARY KEY, email text, phone text, note text); "
        "INSERT INTO accounts SELECT g, 'user' || g || '@example.com', "
        "  CASE WHEN g % 7 = 0 THEN NULL ELSE '+1-555-' || g END, 'note ' || g "
        "  FROM generate_series(1, " +
            std::to_string(accounts) +
            ") g; "
            "CREATE TABLE touches (account_id bigint, token text); "
            "ALTER TABLE touches REPLICA IDENTITY FULL; "
            "INSERT INTO touches SELECT g % 50, 'tok-' || g FROM generate_series(1, " +
            std::to_string(touches) + ") g"));
    // Every command runs as the least-privilege roles; the DBA's publication covers both tables.
    ASSERT_OK(GrantBridgeSource(Clusters().source(), src_db_, /*publication=*/slot_));
    ASSERT_OK(GrantBridgeTarget(Clusters().target(), tgt_db_, "tenant_rot"));
  }
  void TearDown() override {
    if (!src_db_.empty()) {
      Clusters()
          .source()
          .Exec(src_db_,
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE "
                "slot_name = '" +
                    slot_ + "' AND NOT active")
          .IgnoreError();
    }
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }

  // The pipeline config with `encryption` as given (a YAML flow mapping).
  std::string WriteConfig(const std::string& name, const std::string& encryption) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << "pipeline: rot\n"
                        << "source: {url: \""
                        << Clusters().source().Url(src_db_, kBridgeSourceRole)
                        << "\", slot: " << slot_ << ", publication: " << slot_ << "}\n"
                        << "target: {url: \""
                        << Clusters().target().Url(tgt_db_, kBridgeTargetRole)
                        << "\", schema: tenant_rot}\n"
                        << "tenant: {slug: rot, secrets: {api_token: \"${TS_TENANT_SECRET}\"}}\n"
                        << "state_dir: " << dir_ << "/state\n"
                        << "encryption: " << encryption << "\n"
                        << "ops: {listen: \"127.0.0.1:0\"}\n"
                        << "tables:\n"
                        << "  accounts:\n"
                        << "    columns:\n"
                        << "      email: {encrypt: true}\n"
                        << "      phone: {rename: phone_number, encrypt: true}\n"
                        << "  touches:\n"
                        << "    columns:\n"
                        << "      token: {encrypt: true}\n";
    return path;
  }
  std::string ConfigA() { return WriteConfig("a.yaml", "{key: \"${TS_KEY_A}\"}"); }
  std::string ConfigB() {
    return WriteConfig("b.yaml", "{key: \"${TS_KEY_B}\", key_id: " + KeyId(kKeyB) +
                                     ", previous_keys: [{key_id: " + KeyId(kKeyA) +
                                     ", key: \"${TS_KEY_A}\"}]}");
  }
  std::vector<std::string> Env() const {
    return {std::string("TS_TENANT_SECRET=") + kTenantSecret, std::string("TS_KEY_A=") + kKeyA,
            std::string("TS_KEY_B=") + kKeyB};
  }

  CommandResult Tenantsync(const std::vector<std::string>& args,
                       const std::vector<std::string>& extra_env = {}) {
    std::vector<std::string> env = Env();
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    CommandResult r = RunCaptured(TenantsyncArgv(args), dir_, env);
    outputs_.push_back(r.out);
    outputs_.push_back(r.err);
    return r;
  }

  void Snapshot() {
    CommandResult r = Tenantsync({"-c", ConfigA(), "snapshot"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  // Every encrypted value in the target, with the key to compare it against the source by.
  struct Value {
    std::string where;  // "accounts.email", ...
    std::string row;    // id, or the touches row's account_id|token plaintext pair
    std::optional<std::string> ciphertext;
  };
  std::vector<Value> TargetValues() {
    std::vector<Value> out;
    auto conn = Clusters().target().Connect(tgt_db_);
    EXPECT_OK(conn);
    if (!conn.ok()) return out;
    auto a =
        conn->Exec("SELECT id::text, email, phone_number FROM tenant_rot.accounts ORDER BY id");
    EXPECT_OK(a);
    if (a.ok()) {
      for (int i = 0; i < a->rows(); ++i) {
        out.push_back({"accounts.email", std::string(a->Get(i, 0)), a->GetOptional(i, 1)});
        out.push_back({"accounts.phone", std::string(a->Get(i, 0)), a->GetOptional(i, 2)});
      }
    }
    auto t = conn->Exec("SELECT account_id::text, token FROM tenant_rot.touches");
    EXPECT_OK(t);
    if (t.ok()) {
      for (int i = 0; i < t->rows(); ++i) {
        out.push_back({"touches.token", std::string(t->Get(i, 0)), t->GetOptional(i, 1)});
      }
    }
    auto s =
        conn->Exec("SELECT secrets->>'api_token' FROM public.organizations WHERE slug = 'rot'");
    EXPECT_OK(s);
    if (s.ok() && s->rows() == 1) {
      out.push_back({"organizations.secrets.api_token", "rot", s->GetOptional(0, 0)});
    }
    return out;
  }

  // Counts values by key id (NULL values under "null").
  std::map<std::string, int64_t> CountByKeyId() {
    std::map<std::string, int64_t> counts;
    for (const Value& v : TargetValues()) {
      ++counts[v.ciphertext ? std::string(Cipher::KeyIdOf(*v.ciphertext)) : "null"];
    }
    return counts;
  }

  // Every value is under key B, decrypts with key B alone, and equals the source plaintext;
  // no row is missing or extra.
  void ExpectAllUnderBAndCorrect() {
    Cipher b = Cipher::FromBase64Key(kKeyB).value();
    std::map<std::string, std::optional<std::string>> email, phone;  // by id, from the source
    std::vector<std::string> touches_src, touches_tgt;               // "account_id|token"
    {
      auto conn = Clusters().source().Connect(src_db_);
      ASSERT_OK(conn);
      ASSERT_OK_AND_ASSIGN(PgResult a, conn->Exec("SELECT id::text, email, phone FROM accounts"));
      for (int i = 0; i < a.rows(); ++i) {
        email[std::string(a.Get(i, 0))] = a.GetOptional(i, 1);
        phone[std::string(a.Get(i, 0))] = a.GetOptional(i, 2);
      }
      ASSERT_OK_AND_ASSIGN(PgResult t, conn->Exec("SELECT account_id::text, token FROM touches"));
      for (int i = 0; i < t.rows(); ++i) {
        touches_src.push_back(std::string(t.Get(i, 0)) + "|" + std::string(t.Get(i, 1)));
      }
    }
    size_t accounts_seen = 0, wrong = 0, not_b = 0, secrets = 0;
    for (const Value& v : TargetValues()) {
      std::optional<std::string> want;
      std::string context = v.where;
      if (v.where == "accounts.email") {
        ++accounts_seen;
        want = email.at(v.row);
      } else if (v.where == "accounts.phone") {
        want = phone.at(v.row);
      } else if (v.where == "organizations.secrets.api_token") {
        ++secrets;
        want = kTenantSecret;
      }
      if (!v.ciphertext) {
        if (want) ++wrong;
        continue;
      }
      if (Cipher::KeyIdOf(*v.ciphertext) != b.key_id()) {
        ++not_b;
        continue;
      }
      StatusOr<std::string> plain = b.Decrypt(*v.ciphertext, context);
      if (!plain.ok()) {
        ++wrong;
        ADD_FAILURE() << v.where << " row " << v.row << ": " << plain.status().ToString();
        continue;
      }
      if (v.where == "touches.token") {
        touches_tgt.push_back(v.row + "|" + *plain);
      } else if (!want || *want != *plain) {
        ++wrong;
      }
    }
    EXPECT_EQ(not_b, 0u) << "values not under key B";
    EXPECT_EQ(wrong, 0u) << "values that do not match the source";
    EXPECT_EQ(accounts_seen, email.size()) << "accounts rows lost or added";
    EXPECT_EQ(secrets, 1u);
    std::sort(touches_src.begin(), touches_src.end());
    std::sort(touches_tgt.begin(), touches_tgt.end());
    EXPECT_EQ(touches_tgt, touches_src) << "touches rows lost, added or wrong";
  }

  // Key material never appears in anything the tests captured, nor in the audit trail.
  void ExpectNoKeyMaterialAnywhere() {
    auto runs = Clusters().target().QueryValue(
        tgt_db_, "SELECT coalesce(string_agg(r::text, E'\\n'), '') FROM _tenantsync.runs r");
    ASSERT_OK(runs);
    std::vector<std::string> all = outputs_;
    all.push_back(*runs);
    for (const std::string& text : all) {
      EXPECT_THAT(text, AllOf(Not(HasSubstr(kKeyA)), Not(HasSubstr(kKeyB)),
                              Not(HasSubstr(kTenantSecret)), Not(HasSubstr("user1@example"))));
    }
  }

  std::string dir_, src_db_, tgt_db_, slot_;
  std::vector<std::string> outputs_;  // stdout and stderr of every command run
};

TEST_F(RotateKeyTest, RotatesEveryValueThenASecondRunChangesNothing) {
  SetUpSource(700, 300);
  Snapshot();
  if (HasFatalFailure()) return;
  const std::string a = KeyId(kKeyA), b = KeyId(kKeyB);
  // 700 emails + 600 phones (every 7th is NULL) + 300 tokens + 1 secret under A.
  const int64_t total = 700 + 600 + 300 + 1;
  EXPECT_EQ(CountByKeyId(), (std::map<std::string, int64_t>{{a, total}, {"null", 100}}));
  const std::string config = ConfigB();

  // --dry-run counts and changes nothing.
  CommandResult r = Tenantsync({"-c", config, "rotate-key", "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("tenant_rot.accounts.email: 700 to re-encrypt (under key id " + a +
                               ": 700)"));
  EXPECT_THAT(r.out, HasSubstr("tenant_rot.accounts.phone_number: 600 to re-encrypt"));
  EXPECT_THAT(r.out, HasSubstr("tenant_rot.touches.token: 300 to re-encrypt"));
  EXPECT_THAT(r.out, HasSubstr("public.organizations.secrets: 1 to re-encrypt"));
  EXPECT_THAT(r.out, HasSubstr(std::to_string(total) + " value(s) would be re-encrypted"));
  EXPECT_EQ(CountByKeyId()[a], total);

  // The rotation, in small batches so both keyset paths (key and ctid) take several.
  const std::string report = dir_ + "/rotate.json";
  r = Tenantsync({"-c", config, "rotate-key", "--batch-rows", "64", "--report", report});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("tenant_rot.accounts.email: 700 re-encrypted"));
  EXPECT_THAT(r.out, HasSubstr("tenant_rot.touches.token: 300 re-encrypted"));
  EXPECT_THAT(r.out, HasSubstr(std::to_string(total) + " value(s) re-encrypted in 1001 row(s)"));
  EXPECT_THAT(r.out, HasSubstr("every encrypted value is under key id " + b));
  ExpectAllUnderBAndCorrect();
  auto json = nlohmann::json::parse(ReadAll(report), nullptr, false);
  ASSERT_FALSE(json.is_discarded());
  EXPECT_EQ(json["reencrypted"], total);
  EXPECT_EQ(json["key_id"], b);

  // validate (samples decrypt the target and compare with the source) passes under key B.
  r = Tenantsync({"-c", config, "validate", "--sample", "1000"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;

  // A second run changes nothing: the target's bytes are the same.
  auto fingerprint = [&] {
    return Clusters().target().QueryValue(
        tgt_db_,
        "SELECT md5(string_agg(id || coalesce(email, '-') || coalesce(phone_number, '-'), ',' "
        "ORDER BY id)) || (SELECT md5(string_agg(token, ',' ORDER BY token)) FROM "
        "tenant_rot.touches) || (SELECT xmin::text || secrets::text FROM public.organizations "
        "WHERE slug = 'rot') FROM tenant_rot.accounts");
  };
  ASSERT_OK_AND_ASSIGN(std::string before, fingerprint());
  r = Tenantsync({"-c", config, "rotate-key"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("0 value(s) re-encrypted in 0 row(s)"));
  ASSERT_OK_AND_ASSIGN(std::string after, fingerprint());
  EXPECT_EQ(before, after);

  // The audit trail has both runs, ok (the dry run is not recorded, like snapshot's).
  ASSERT_OK_AND_ASSIGN(int64_t audited,
                       Clusters().target().QueryInt(tgt_db_,
                                                    "SELECT count(*) FROM _tenantsync.runs WHERE "
                                                    "command = 'rotate-key' AND outcome = 'ok'"));
  EXPECT_EQ(audited, 2);
  ASSERT_OK_AND_ASSIGN(std::string audited_report,
                       Clusters().target().QueryValue(
                           tgt_db_,
                           "SELECT report->>'reencrypted' FROM _tenantsync.runs WHERE command = "
                           "'rotate-key' ORDER BY started_at LIMIT 1"));
  EXPECT_EQ(audited_report, std::to_string(total));
  ExpectNoKeyMaterialAnywhere();
}

TEST_F(RotateKeyTest, WithoutTheOldKeyItFailsNamingTheKeyIdAndChangesNothing) {
  SetUpSource(50, 10);
  Snapshot();
  if (HasFatalFailure()) return;
  const std::string a = KeyId(kKeyA);
  auto before = CountByKeyId();
  std::string only_b = WriteConfig("only-b.yaml", "{key: \"${TS_KEY_B}\"}");
  CommandResult r = Tenantsync({"-c", only_b, "rotate-key"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  std::vector<std::string> lines;
  std::istringstream in(r.err);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_THAT(lines[0],
              AllOf(HasSubstr("key id " + a), HasSubstr("not configured"),
                    HasSubstr("encryption.previous_keys"), HasSubstr("nothing was changed")));
  EXPECT_EQ(CountByKeyId(), before);
  // The audit records the failure with the same one line.
  ASSERT_OK_AND_ASSIGN(std::string error, Clusters().target().QueryValue(
                                              tgt_db_,
                                              "SELECT error FROM _tenantsync.runs WHERE command = "
                                              "'rotate-key' AND outcome = 'failed'"));
  EXPECT_THAT(error, HasSubstr("key id " + a));
  ExpectNoKeyMaterialAnywhere();
}

TEST_F(RotateKeyTest, KillPointsMidRotationThenARerunFinishes) {
  SetUpSource(500, 200);
  Snapshot();
  if (HasFatalFailure()) return;
  const std::string a = KeyId(kKeyA), b = KeyId(kKeyB);
  const std::string config = ConfigB();
  // Killed before the first batch commits: the server rolls it back, nothing is under B.
  CommandResult r = Tenantsync({"-c", config, "rotate-key", "--batch-rows", "50"},
                           {"TENANTSYNC_KILL_POINT=rotate_key.before_batch_commit"});
  EXPECT_EQ(r.exit_code, 128 + SIGABRT) << r.out << r.err;
  EXPECT_EQ(CountByKeyId()[b], 0);
  // Killed right after the first batch commits: exactly that batch (50 rows of accounts, in
  // key order, each with an email and, unless NULL, a phone) is under B.
  r = Tenantsync({"-c", config, "rotate-key", "--batch-rows", "50"},
                 {"TENANTSYNC_KILL_POINT=rotate_key.after_batch_commit"});
  EXPECT_EQ(r.exit_code, 128 + SIGABRT) << r.out << r.err;
  ASSERT_OK_AND_ASSIGN(
      int64_t first_batch,
      Clusters().target().QueryInt(tgt_db_,
                                   "SELECT count(*) FROM tenant_rot.accounts WHERE id <= 50 AND "
                                   "email LIKE 'tsenc1:" +
                                       b + ":%'"));
  EXPECT_EQ(first_batch, 50);
  EXPECT_EQ(CountByKeyId()[b], 50 + 43);  // ids 7, 14, ..., 49 have no phone
  r = Tenantsync({"-c", config, "rotate-key", "--batch-rows", "50"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("tenant_rot.accounts.email: 450 re-encrypted"));
  ExpectAllUnderBAndCorrect();
  ExpectNoKeyMaterialAnywhere();
}

TEST_F(RotateKeyTest, KillMinus9WhileRotatingThenARerunFinishes) {
  SetUpSource(20000, 2000);
  Snapshot();
  if (HasFatalFailure()) return;
  const std::string b = KeyId(kKeyB);
  const std::string config = ConfigB();
  pid_t pid =
      StartCaptured(TenantsyncArgv({"-c", config, "rotate-key", "--batch-rows", "100"}), dir_, Env());
  // Wait until some but not all rows are under B, then kill -9.
  int64_t under_b = 0;
  auto conn = Clusters().target().Connect(tgt_db_);
  ASSERT_OK(conn);
  for (auto deadline = Clock::now() + std::chrono::seconds(120);
       Clock::now() < deadline && under_b < 2000;) {
    auto n = conn->Exec("SELECT count(*) FROM tenant_rot.accounts WHERE email LIKE 'tsenc1:" + b +
                        ":%'");
    if (n.ok()) {
      StatusOr<int64_t> v = n->GetInt(0, 0);
      if (v.ok()) under_b = *v;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, SIGKILL);
  CommandResult killed = WaitCaptured(pid, dir_);
  EXPECT_EQ(killed.exit_code, 128 + SIGKILL) << killed.out << killed.err;
  auto counts = CountByKeyId();
  EXPECT_GT(counts[b], 0);
  EXPECT_GT(counts[KeyId(kKeyA)], 0) << "the kill came too late to test anything";
  CommandResult r = Tenantsync({"-c", config, "rotate-key", "--batch-rows", "500"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ExpectAllUnderBAndCorrect();
  r = Tenantsync({"-c", config, "rotate-key"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("0 value(s) re-encrypted"));
}

// rotate-key while `run` (already on key B) streams a workload that updates and inserts the very
// rows being rotated: nothing the applier writes is overwritten, and after catch-up every value
// is under B and equal to the source.
TEST_F(RotateKeyTest, WhileRunStreamsUpdatesTheAppliersValuesAreKept) {
  SetUpSource(3000, 500);
  Snapshot();
  if (HasFatalFailure()) return;
  const std::string config = ConfigB();
  const std::string run_dir = dir_ + "/run";
  fs::create_directories(run_dir);
  pid_t run = StartCaptured(TenantsyncArgv({"-c", config, "run"}), run_dir, Env());

  std::atomic<bool> stop{false};
  std::atomic<int64_t> writes{0};
  std::thread workload([&] {
    auto conn = Clusters().source().Connect(src_db_);
    if (!conn.ok()) return;
    for (int64_t i = 0; !stop.load(); ++i) {
      int64_t id = 1 + (i * 7919) % 3000;
      std::string sql =
          "UPDATE accounts SET email = 'w" + std::to_string(i) + "-' || id || '@example.com', " +
          "phone = CASE WHEN phone IS NULL THEN NULL ELSE '+2-' || " + std::to_string(i) +
          " END WHERE id = " + std::to_string(id) + "; INSERT INTO touches VALUES (" +
          std::to_string(i % 50) + ", 'wtok-" + std::to_string(i) + "')";
      if (conn->Run(sql).ok()) ++writes;
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  CommandResult r = Tenantsync({"-c", config, "rotate-key", "--batch-rows", "20"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop.store(true);
  workload.join();
  EXPECT_GT(writes.load(), 100) << "the workload did not run beside rotate-key";

  // Catch-up: the applier goes in commit order, so once the marker is there, everything is.
  ASSERT_OK(Clusters().source().Exec(
      src_db_, "INSERT INTO accounts VALUES (999999, 'marker@example.com', NULL, 'marker')"));
  bool caught_up = false;
  for (auto deadline = Clock::now() + std::chrono::seconds(180);
       Clock::now() < deadline && !caught_up;) {
    auto n = Clusters().target().QueryValue(
        tgt_db_, "SELECT count(*) FROM tenant_rot.accounts WHERE id = 999999");
    caught_up = n.ok() && *n == "1";
    if (!caught_up) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  kill(run, SIGINT);
  CommandResult stopped = WaitCaptured(run, run_dir, std::chrono::seconds(60));
  ASSERT_TRUE(caught_up) << stopped.err.substr(0, 2000);
  ExpectAllUnderBAndCorrect();
  r = Tenantsync({"-c", config, "rotate-key"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("0 value(s) re-encrypted"));
  r = Tenantsync({"-c", config, "validate", "--sample", "5000"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  outputs_.push_back(stopped.err);
  ExpectNoKeyMaterialAnywhere();
}

}  // namespace
}  // namespace tenantsync::testing
