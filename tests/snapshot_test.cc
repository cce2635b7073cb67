// End-to-end tests of the snapshot phase against real throwaway clusters (tests/harness):
// the RAWDOG fixture with every transform rule of examples/rawdog.yaml, consistency at the slot's
// consistent point, kill and resume, idempotent reruns, dry run, dead letters, preflight failures.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "core/config.h"
#include "core/crypto.h"
#include "core/transform.h"
#include "snapshot/catalog.h"
#include "snapshot/preflight.h"
#include "snapshot/snapshot.h"
#include "state/state_store.h"
#include "tests/fixtures/rawdog.h"
#include "tests/harness/bridge_roles.h"
#include "tests/harness/captured_command.h"
#include "tests/harness/test_env.h"

namespace tenantsync::snapshot {
namespace {

using ::testing::HasSubstr;
using tenantsync::testing::Clusters;
using tenantsync::testing::CommandResult;
using tenantsync::testing::PgCluster;
using tenantsync::testing::RunCaptured;
using tenantsync::testing::WhileRunning;

// A fixed test key (base64 of 32 bytes) and a tenant secret.
const char* kKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const char* kShopifyToken = "shpat_test_0123456789";
constexpr int kScale = 10;

// Every directory made by TempDir, removed at exit unless a test failed (kept to look at).
std::vector<std::string>& MadeTempDirs() {
  static std::vector<std::string> dirs;
  return dirs;
}

std::string TempDir(const std::string& name) {
  std::string tmpl = "/tmp/tenantsync-snaptest-" + name + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const char* d = mkdtemp(buf.data());
  if (d == nullptr) return std::string();
  if (MadeTempDirs().empty()) {
    std::atexit([] {
      if (::testing::UnitTest::GetInstance()->Failed()) return;
      std::error_code ignored;
      for (const auto& dir : MadeTempDirs()) std::filesystem::remove_all(dir, ignored);
    });
  }
  MadeTempDirs().push_back(d);
  return std::string(d);
}

// The rules of examples/rawdog.yaml, for one pipeline of the test.
std::string RawdogYaml(const std::string& pipeline, const std::string& source_url,
                       const std::string& target_url, const std::string& state_dir,
                       const std::string& extra_snapshot = "") {
  return "pipeline: " + pipeline + "\n"
         "source: {url: \"" + source_url + "\", schema: public, plugin: pgoutput, publication: pub_" +
         pipeline + ", slot: slot_" + pipeline + "}\n"
         "target: {url: \"" + target_url + "\", schema: tenant_rawdog, create_tables: true}\n"
         "tenant: {slug: rawdog, name: RAWDOG Skincare, domain: www.justrawdogit.com,\n"
         "         secrets: {shopify_access_token: \"" + kShopifyToken + "\"}}\n"
         "state_dir: " + state_dir + "\n"
         "encryption: {key: \"" + kKey + "\"}\n"
         "snapshot: {workers: 2, on_error: dead_letter" + extra_snapshot + "}\n"
         "tables:\n"
         "  orders:\n"
         "    columns:\n"
         "      gross_sales_cents: {type: bigint, on_error: 0}\n"
         "      migrated_at: {type: timestamptz, value: now}\n"
         "  creators:\n"
         "    columns:\n"
         "      commission_percent: {type: double precision, on_error: 10}\n"
         "      payout_email: {encrypt: true}\n"
         "      access_token: {encrypt: true}\n"
         "  customers:\n"
         "    columns:\n"
         "      phone: {rename: phone_number, encrypt: true}\n"
         "      email: {encrypt: true}\n"
         "  withdrawal_requests:\n"
         "    columns:\n"
         "      bank_account: {encrypt: true}\n"
         "  esign_documents:\n"
         "    columns:\n"
         "      signer_email: {encrypt: true}\n";
}

// RawdogYaml with the bridge as the least-privilege roles (tests/harness/bridge_roles.h),
// granted on the databases of the superuser URLs given (which the checks keep using), with the
// DBA's publication pub_<pipeline> over every table that exists now. The cases below that
// create tables in the target before the snapshot (dead letters), assert that nothing exists
// there after a dry run, or test check's own messages keep the superuser.
std::string RolesYaml(const std::string& pipeline, const std::string& source_url,
                      const std::string& target_url, const std::string& state_dir,
                      const std::string& extra_snapshot = "") {
  const std::string src_db = source_url.substr(source_url.rfind('/') + 1);
  const std::string tgt_db = target_url.substr(target_url.rfind('/') + 1);
  Status s = testing::GrantBridgeSource(Clusters().source(), src_db, "pub_" + pipeline);
  EXPECT_TRUE(s.ok()) << s.ToString();
  s = testing::GrantBridgeTarget(Clusters().target(), tgt_db, "tenant_rawdog");
  EXPECT_TRUE(s.ok()) << s.ToString();
  return RawdogYaml(pipeline, Clusters().source().Url(src_db, testing::kBridgeSourceRole),
                    Clusters().target().Url(tgt_db, testing::kBridgeTargetRole), state_dir,
                    extra_snapshot);
}

Config MustParse(const std::string& yaml) {
  auto c = ParseConfig(yaml, "test.yaml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : Config();
}

std::unique_ptr<state::StateStore> MustOpenState(const Config& config) {
  state::StateOptions so;
  so.dir = config.state_dir;
  so.pipeline = config.pipeline;
  auto s = state::StateStore::Open(so);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

// Opens the config's state store and runs a snapshot without progress output.
StatusOr<SnapshotResult> QuietSnapshot(const Config& config) {
  auto state = MustOpenState(config);
  if (state == nullptr) return FailedPrecondition("the state store did not open");
  SnapshotOptions opts;
  opts.progress = SnapshotOptions::Progress::kNone;
  SnapshotResult result;
  TS_RETURN_IF_ERROR(RunSnapshot(config, opts, *state, &result));
  return result;
}

PgConn MustConnect(const std::string& url) {
  auto c = PgConn::Connect(url, "snapshot-test");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  PgConn conn = c.ok() ? std::move(c).value() : PgConn();
  if (conn.connected()) {
    EXPECT_TRUE(conn.Run("SET TimeZone = 'UTC'; SET extra_float_digits = 3").ok());
  }
  return conn;
}

std::vector<std::vector<std::optional<std::string>>> Rows(PgConn& conn, const std::string& sql) {
  auto r = conn.Exec(sql);
  EXPECT_TRUE(r.ok()) << sql << ": " << r.status().ToString();
  std::vector<std::vector<std::optional<std::string>>> out;
  if (!r.ok()) return out;
  for (int i = 0; i < r->rows(); ++i) {
    std::vector<std::optional<std::string>> row;
    for (int j = 0; j < r->columns(); ++j) row.push_back(r->GetOptional(i, j));
    out.push_back(std::move(row));
  }
  return out;
}

std::string Value(PgConn& conn, const std::string& sql) {
  auto rows = Rows(conn, sql);
  if (rows.empty() || rows[0].empty() || !rows[0][0]) return "";
  return *rows[0][0];
}

int64_t Count(PgConn& conn, const std::string& sql) { return std::atoll(Value(conn, sql).c_str()); }

// count and md5 of every row's text, order-independent; `except` columns left out.
std::string TableChecksum(PgConn& conn, const std::string& schema, const std::string& table,
                          const std::vector<std::string>& except = {}) {
  std::string cols = Value(
      conn, "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
            "WHERE attrelid = '" + QuoteQualified(schema, table) + "'::regclass AND attnum > 0 "
            "AND NOT attisdropped" +
                [&] {
                  std::string s;
                  for (const auto& e : except) s += " AND attname <> " + QuoteLiteral(e);
                  return s;
                }());
  return Value(conn, "SELECT count(*) || ':' || coalesce(md5(string_agg(x, E'\\n' ORDER BY x)), '') "
                     "FROM (SELECT ROW(" + cols + ")::text AS x FROM " +
                     QuoteQualified(schema, table) + ") s");
}

// Tables the transforms do not touch: the target copy must be byte-for-byte the source.
const std::vector<std::string> kIdentityTables = {
    "products", "line_items", "reviews", "creator_projects", "balance_transactions",
    "landing_pages", "blog_posts", "ab_tests", "attribution_touchpoints"};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs the tenantsync binary (stdout and stderr captured separately). `while_running` is
// polled with the child's pid and may kill it.
CommandResult RunTenantsync(const std::vector<std::string>& args, const std::string& dir,
                            const std::vector<std::string>& env = {},
                            const WhileRunning& while_running = nullptr) {
  const char* bin = std::getenv("TENANTSYNC_BINARY");
  if (!bin) {
    ADD_FAILURE() << "TENANTSYNC_BINARY is not set (run the test through ctest)";
    return {};
  }
  std::vector<std::string> argv = {bin};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCaptured(argv, dir, env, std::chrono::seconds(600), while_running);
}

void DropSlot(PgConn& src, const std::string& slot) {
  src.Run("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
          "WHERE slot_name = " + QuoteLiteral(slot)).IgnoreError();  // absent is fine
}

// Source URL of a database loaded once with RAWDOG at kScale and never written to (shared by
// the tests that do not write to their source).
const std::string& SharedSourceDb() {
  static std::string db;
  if (db.empty()) {
    auto name = Clusters().source().CreateDatabase("snap_shared");
    EXPECT_TRUE(name.ok()) << name.status().ToString();
    Status st = testing::LoadRawdog(Clusters().source().Url(*name), kScale);
    EXPECT_TRUE(st.ok()) << st.ToString();
    db = *name;
  }
  return db;
}

std::string FreshTargetDb(const std::string& prefix) {
  auto name = Clusters().target().CreateDatabase(prefix);
  EXPECT_TRUE(name.ok()) << name.status().ToString();
  return Clusters().target().Url(name.ok() ? *name : "postgres");
}

// Checks every transformed value of `target` against `source` (same rows: no writes between).
void ExpectTransformsHold(const Config& config, PgConn& src, PgConn& dst) {
  // orders.gross_sales_cents: text -> bigint, unparsable -> 0; migrated_at set.
  auto s = Rows(src, "SELECT id, gross_sales_cents FROM public.orders ORDER BY id");
  auto t = Rows(dst, "SELECT id, gross_sales_cents, migrated_at FROM tenant_rawdog.orders ORDER BY id");
  ASSERT_EQ(s.size(), t.size());
  std::regex integer("^\\s*[+-]?[0-9]+\\s*$");
  int parsed = 0, defaulted = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    ASSERT_EQ(s[i][0], t[i][0]);
    ASSERT_TRUE(t[i][2].has_value()) << "orders.migrated_at not set for id " << *t[i][0];
    if (!s[i][1]) {
      EXPECT_FALSE(t[i][1].has_value()) << "id " << *s[i][0];
    } else if (std::regex_match(*s[i][1], integer)) {
      EXPECT_EQ(std::stoll(*s[i][1]), std::stoll(t[i][1].value_or("x0"))) << "id " << *s[i][0];
      ++parsed;
    } else {
      EXPECT_EQ(t[i][1].value_or(""), "0") << "id " << *s[i][0] << " source '" << *s[i][1] << "'";
      ++defaulted;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(defaulted, 0);
  EXPECT_EQ(Value(dst, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                       "'tenant_rawdog.orders'::regclass AND attname = 'gross_sales_cents'"),
            "bigint");

  // creators.commission_percent: text -> double precision, unparsable -> 10.
  s = Rows(src, "SELECT id, commission_percent FROM public.creators ORDER BY id");
  t = Rows(dst, "SELECT id, commission_percent FROM tenant_rawdog.creators ORDER BY id");
  ASSERT_EQ(s.size(), t.size());
  int tens = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    ASSERT_EQ(s[i][0], t[i][0]);
    if (!s[i][1]) {
      EXPECT_FALSE(t[i][1].has_value());
      continue;
    }
    // float8in semantics: surrounding blanks are allowed.
    std::string text = std::regex_replace(*s[i][1], std::regex("^\\s+|\\s+$"), "");
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    bool ok = !text.empty() && end && *end == '\0';
    double want = ok ? v : 10.0;
    if (!ok) ++tens;
    EXPECT_DOUBLE_EQ(std::strtod(t[i][1].value_or("nan").c_str(), nullptr), want)
        << "creator " << *s[i][0] << " source '" << *s[i][1] << "'";
  }
  EXPECT_GT(tens, 0);

  // Encrypted columns decrypt to the source plaintext.
  auto cipher = Cipher::FromBase64Key(kKey);
  ASSERT_TRUE(cipher.ok());
  auto catalog = ReadCatalog(src, "public");
  ASSERT_TRUE(catalog.ok()) << catalog.status().ToString();
  struct Enc {
    std::string table, source_col, target_col;
  };
  std::vector<Enc> encs = {{"customers", "email", "email"},
                           {"customers", "phone", "phone_number"},
                           {"creators", "payout_email", "payout_email"},
                           {"creators", "access_token", "access_token"},
                           {"withdrawal_requests", "bank_account", "bank_account"},
                           {"esign_documents", "signer_email", "signer_email"}};
  for (const auto& e : encs) {
    const CatalogTable* ct = catalog->FindTable(e.table);
    ASSERT_NE(ct, nullptr);
    std::vector<SourceColumn> cols;
    for (const auto& c : ct->columns) cols.push_back({c.name, c.type, false});
    auto tr = TableTransform::Build(e.table, config.FindTable(e.table), cols, &*cipher);
    ASSERT_TRUE(tr.ok()) << tr.status().ToString();
    int ti = -1;
    for (size_t i = 0; i < tr->target_columns().size(); ++i) {
      if (tr->target_columns()[i].name == e.target_col) ti = static_cast<int>(i);
    }
    ASSERT_GE(ti, 0) << e.table << "." << e.target_col;
    std::string key = ct->KeyColumns().at(0);
    s = Rows(src, "SELECT " + key + "::text, " + e.source_col + " FROM public." + e.table +
                      " ORDER BY 1");
    t = Rows(dst, "SELECT " + key + "::text, " + e.target_col + " FROM tenant_rawdog." + e.table +
                      " ORDER BY 1");
    ASSERT_EQ(s.size(), t.size()) << e.table;
    int checked = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      ASSERT_EQ(s[i][0], t[i][0]);
      if (!s[i][1]) {
        EXPECT_FALSE(t[i][1].has_value());
        continue;
      }
      ASSERT_TRUE(t[i][1].has_value());
      ASSERT_TRUE(Cipher::LooksEncrypted(*t[i][1])) << e.table << "." << e.target_col;
      ASSERT_NE(*t[i][1], *s[i][1]);
      auto plain = tr->DecryptTarget(ti, *t[i][1]);
      ASSERT_TRUE(plain.ok()) << plain.status().ToString();
      ASSERT_EQ(*plain, *s[i][1]) << e.table << "." << e.target_col;
      ++checked;
    }
    EXPECT_GT(checked, 0) << e.table << "." << e.source_col;
  }
  EXPECT_EQ(Value(dst, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                       "'tenant_rawdog.customers'::regclass AND attname = 'phone_number'"),
            "text");
  EXPECT_EQ(Count(dst, "SELECT count(*) FROM pg_attribute WHERE attrelid = "
                       "'tenant_rawdog.customers'::regclass AND attname = 'phone'"),
            0);

  // The organization record, its secret decrypting to the configured value.
  auto org = Rows(dst, "SELECT name, domain, secrets->>'shopify_access_token' FROM "
                       "public.organizations WHERE slug = 'rawdog'");
  ASSERT_EQ(org.size(), 1u);
  EXPECT_EQ(org[0][0].value_or(""), "RAWDOG Skincare");
  EXPECT_EQ(org[0][1].value_or(""), "www.justrawdogit.com");
  ASSERT_TRUE(org[0][2].has_value());
  EXPECT_EQ(org[0][2]->find(kShopifyToken), std::string::npos);
  auto secret = cipher->Decrypt(*org[0][2], "organizations.secrets.shopify_access_token");
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  EXPECT_EQ(*secret, kShopifyToken);
}

// Same foreign keys, all validated, re-pointed into the tenant schema, and no orphan rows.
void ExpectForeignKeysValid(PgConn& src, PgConn& dst) {
  std::string q =
      "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
      "WHERE c.contype = 'f' AND n.nspname = ";
  int64_t source_fks = Count(src, q + "'public' AND conrelid::regclass::text NOT LIKE '%organizations%'");
  EXPECT_GT(source_fks, 0);
  EXPECT_EQ(Count(dst, q + "'tenant_rawdog' AND c.convalidated"), source_fks);
  EXPECT_EQ(Count(dst, q + "'tenant_rawdog' AND c.confrelid::regclass::text NOT LIKE 'tenant_rawdog.%'"),
            0);
  // The PKs and indexes came along too.
  EXPECT_EQ(Count(dst, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'tenant_rawdog'"),
            Count(src, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' "
                       "AND tablename <> 'organizations'"));
}

void ExpectCountsEqual(PgConn& src, PgConn& dst) {
  for (const auto& t : testing::RawdogTables()) {
    EXPECT_EQ(Count(dst, "SELECT count(*) FROM tenant_rawdog." + t),
              Count(src, "SELECT count(*) FROM public." + t))
        << t;
  }
}

// The main scenario: a full snapshot while the source keeps changing.
TEST(Snapshot, CopiesConsistentPointWithEveryTransform) {
  auto& env = Clusters();
  auto db = env.source().CreateDatabase("snap_consistent");
  ASSERT_TRUE(db.ok());
  const std::string source_url = env.source().Url(*db);
  ASSERT_TRUE(testing::LoadRawdog(source_url, kScale).ok());
  const std::string target_url = FreshTargetDb("snap_consistent");
  std::string dir = TempDir("consistent");
  Config config = MustParse(RolesYaml("consistent", source_url, target_url, dir + "/state",
                                       ", chunk_mb: 1"));
  auto state = MustOpenState(config);
  ASSERT_NE(state, nullptr);
  PgConn src = MustConnect(source_url);
  PgConn dst = MustConnect(target_url);

  // Inside the exported snapshot: checksums of the source as of the consistent point. Then
  // writes that must not reach the copy, and a workload running during the whole copy.
  std::map<std::string, std::string> at_consistent_point;
  std::map<std::string, int64_t> counts_at_consistent_point;
  std::atomic<bool> stop{false};
  std::thread workload;
  SnapshotOptions opts;
  opts.progress = SnapshotOptions::Progress::kPlain;
  opts.report_path = dir + "/report.json";
  opts.after_slot_created = [&](const std::string& snapshot_name, Lsn lsn) {
    PgConn in_snapshot = MustConnect(source_url);
    ASSERT_TRUE(in_snapshot.Run("BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION "
                                "SNAPSHOT " + QuoteLiteral(snapshot_name)).ok());
    for (const auto& t : testing::RawdogTables()) {
      counts_at_consistent_point[t] = Count(in_snapshot, "SELECT count(*) FROM public." + t);
    }
    for (const auto& t : kIdentityTables) at_consistent_point[t] = TableChecksum(in_snapshot, "public", t);
    ASSERT_TRUE(in_snapshot.Run("COMMIT").ok());
    // Writes committed after the consistent point, before any worker started.
    ASSERT_TRUE(src.Run("INSERT INTO public.ab_tests (landing_page_id, name, variants) "
                        "SELECT (SELECT min(id) FROM public.landing_pages), 'after-slot-' || g, "
                        "'{}' FROM generate_series(1, 50) g")
                    .ok());
    ASSERT_TRUE(src.Run("DELETE FROM public.reviews WHERE id IN (SELECT id FROM public.reviews "
                        "ORDER BY id LIMIT 20)").ok());
    testing::WorkloadOptions wo;
    wo.clients = 1;
    wo.transactions_per_client = 1000000;
    // `wo` is a local of this callback: the thread takes its own copy (it outlives the callback).
    workload = std::thread([&stop, source_url, wo] {
      // Runs until the copy ends (the thread is detached from the result: conflicts are fine).
      while (!stop.load()) {
        testing::WorkloadOptions one = wo;
        one.seconds = 0.5;
        auto r = testing::RunRawdogWorkload(source_url, one);
        if (!r.ok()) break;
      }
    });
  };
  SnapshotResult result;
  Status st = RunSnapshot(config, opts, *state, &result);
  stop = true;
  if (workload.joinable()) workload.join();
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_FALSE(at_consistent_point.empty()) << "the after_slot_created seam was not called";

  // The copy equals the source as of the consistent point.
  for (const auto& [t, n] : counts_at_consistent_point) {
    EXPECT_EQ(Count(dst, "SELECT count(*) FROM tenant_rawdog." + t), n) << t;
  }
  for (const auto& [t, sum] : at_consistent_point) {
    EXPECT_EQ(TableChecksum(dst, "tenant_rawdog", t), sum) << t;
  }
  EXPECT_EQ(Count(dst, "SELECT count(*) FROM tenant_rawdog.ab_tests WHERE name LIKE 'after-slot-%'"), 0);
  // They were written on the source (the concurrent workload may have deleted a few since).
  EXPECT_GT(Count(src, "SELECT count(*) FROM public.ab_tests WHERE name LIKE 'after-slot-%'"), 0);

  // State: the consistent point is recorded for the stream.
  auto lsn = state->GetMeta(kMetaConsistentLsn);
  ASSERT_TRUE(lsn.ok() && lsn->has_value());
  EXPECT_EQ(**lsn, result.consistent_lsn.ToString());
  EXPECT_EQ(state->GetMeta(kMetaState)->value_or(""), "done");
  EXPECT_EQ(Value(src, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = "
                       "'slot_consistent'"),
            result.consistent_lsn.ToString());
  // Several chunks per big table, all recorded in the target.
  EXPECT_GT(Count(dst, "SELECT count(*) FROM _tenantsync.snapshot_chunks WHERE chunk_count > 1"), 1);
  EXPECT_TRUE(Value(dst, "SELECT to_regclass('_tenantsync.progress')::text") != "");
  // The replication connection that held the snapshot is gone.
  EXPECT_EQ(Count(src, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                       "'tenantsync-snapshot%'"),
            0);
  // Report.
  auto report = nlohmann::json::parse(ReadFile(opts.report_path));
  EXPECT_EQ(report["snapshot_lsn"], result.consistent_lsn.ToString());
  EXPECT_EQ(report["tables"].size(), testing::RawdogTables().size());
  EXPECT_EQ(report["rows"].get<int64_t>(), result.rows);
  EXPECT_EQ(ReadFile(opts.report_path).find(kShopifyToken), std::string::npos);
  DropSlot(src, "slot_consistent");
}

// Transforms, FKs and counts on an unchanging source, then a second run that changes nothing.
TEST(Snapshot, TransformsHoldAndSecondRunChangesNothing) {
  const std::string source_url = Clusters().source().Url(SharedSourceDb());
  const std::string target_url = FreshTargetDb("snap_transforms");
  std::string dir = TempDir("transforms");
  Config config = MustParse(RolesYaml("transforms", source_url, target_url, dir + "/state"));
  PgConn src = MustConnect(source_url);
  PgConn dst = MustConnect(target_url);
  {
    auto result = QuietSnapshot(config);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->rows, testing::RawdogTotalRows(kScale));
    EXPECT_EQ(result->dead_letters, 0);
  }
  ExpectCountsEqual(src, dst);
  ExpectTransformsHold(config, src, dst);
  ExpectForeignKeysValid(src, dst);
  // Every table was analyzed: the applier's first statements are planned with statistics.
  for (const auto& t : testing::RawdogTables()) {
    EXPECT_GT(Count(dst,
                    "SELECT count(*) FROM pg_stats WHERE schemaname = 'tenant_rawdog' AND "
                    "tablename = '" +
                        t + "'"),
              0)
        << t;
  }
  for (const auto& t : kIdentityTables) {
    EXPECT_EQ(TableChecksum(dst, "tenant_rawdog", t), TableChecksum(src, "public", t)) << t;
  }

  // Second run: nothing copied, nothing changed (not even the organization's updated_at).
  std::map<std::string, std::string> before;
  for (const auto& t : testing::RawdogTables()) before[t] = TableChecksum(dst, "tenant_rawdog", t);
  std::string org_before = Value(dst, "SELECT updated_at::text FROM public.organizations");
  int64_t markers = Count(dst, "SELECT count(*) FROM _tenantsync.snapshot_chunks");
  {
    auto result = QuietSnapshot(config);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_TRUE(result->already_done);
    EXPECT_EQ(result->rows, 0);
  }
  for (const auto& t : testing::RawdogTables()) {
    EXPECT_EQ(TableChecksum(dst, "tenant_rawdog", t), before[t]) << t;
  }
  EXPECT_EQ(Value(dst, "SELECT updated_at::text FROM public.organizations"), org_before);
  EXPECT_EQ(Count(dst, "SELECT count(*) FROM _tenantsync.snapshot_chunks"), markers);
  DropSlot(src, "slot_transforms");
}

// SIGKILL mid-copy, run again: the result equals an uninterrupted run.
TEST(Snapshot, KillMidCopyThenResumeEqualsUninterruptedRun) {
  const std::string source_url = Clusters().source().Url(SharedSourceDb());
  std::string dir = TempDir("kill");
  // Uninterrupted reference run.
  const std::string ref_url = FreshTargetDb("snap_ref");
  Config ref = MustParse(RolesYaml("reference", source_url, ref_url, dir + "/ref-state"));
  {
    auto state = MustOpenState(ref);
    SnapshotOptions opts;
    opts.progress = SnapshotOptions::Progress::kNone;
    SnapshotResult result;
    ASSERT_TRUE(RunSnapshot(ref, opts, *state, &result).ok());
  }
  // Interrupted run through the binary, killed once some chunks are committed.
  const std::string target_url = FreshTargetDb("snap_kill");
  std::string yaml = RolesYaml("killed", source_url, target_url, dir + "/state", ", chunk_mb: 1");
  std::ofstream(dir + "/killed.yaml") << yaml;
  PgConn dst = MustConnect(target_url);
  bool killed = false;
  CommandResult first = RunTenantsync({"-c", dir + "/killed.yaml", "snapshot"}, dir, {},
                                    [&](pid_t pid) {
    if (killed) return;
    PgConn probe = MustConnect(target_url);
    auto r = probe.Exec("SELECT count(*) FROM _tenantsync.snapshot_chunks");
    if (r.ok() && r->rows() == 1 && std::atoi(std::string(r->Get(0, 0)).c_str()) >= 3) {
      kill(pid, SIGKILL);
      killed = true;
    }
  });
  ASSERT_TRUE(killed) << "the snapshot finished before it could be killed; stderr: " << first.err;
  ASSERT_EQ(first.exit_code, 128 + SIGKILL);
  int64_t total_chunks = 0;
  {
    Config c = MustParse(yaml);
    auto state = MustOpenState(c);
    auto plan = state->ScanMeta(kMetaPlanPrefix);
    ASSERT_TRUE(plan.ok());
    for (const auto& [k, v] : *plan) total_chunks += std::atoll(v.c_str());
  }
  int64_t done_before = Count(dst, "SELECT count(*) FROM _tenantsync.snapshot_chunks");
  ASSERT_LT(done_before, total_chunks) << "the kill came too late to leave work undone";

  CommandResult second = RunTenantsync({"-c", dir + "/killed.yaml", "snapshot", "--report",
                                      dir + "/resume.json"},
                                     dir);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.err, HasSubstr("resuming the snapshot"));
  auto report = nlohmann::json::parse(ReadFile(dir + "/resume.json"));
  EXPECT_TRUE(report["resumed"].get<bool>());
  // Finished tables are skipped; a partly copied one is copied again whole (fresh snapshot).
  int64_t skipped = 0;
  for (const auto& t : report["tables"]) skipped += t["chunks_skipped"].get<int64_t>();
  EXPECT_LE(skipped, done_before);

  PgConn refc = MustConnect(ref_url);
  for (const auto& t : testing::RawdogTables()) {
    std::vector<std::string> except;
    if (t == "orders") except = {"migrated_at"};  // `value: now` is the time of each run
    EXPECT_EQ(TableChecksum(dst, "tenant_rawdog", t, except),
              TableChecksum(refc, "tenant_rawdog", t, except))
        << t;
  }
  PgConn src = MustConnect(source_url);
  {
    // The source did not change, so the deferred (NOT VALID) foreign keys validate at once.
    Config c = MustParse(yaml);
    auto state = MustOpenState(c);
    Status st = ValidateDeferredForeignKeys(c, *state);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  ExpectForeignKeysValid(src, dst);
  DropSlot(src, "slot_reference");
  DropSlot(src, "slot_killed");
}

// DESIGN.md invariant 1, second sentence: the process dies after the first chunk commits, the
// source keeps changing, and the resumed snapshot reads the remaining chunks in a NEWER snapshot
// (the exported one died with the process). `tenantsync run` then streams from the recorded
// consistent point, and must converge to exactly the source: the resumed copy is read in the
// exported snapshot of a temporary slot, whose consistent point each table copied in it records,
// and the applier skips those tables' changes committed before it (snapshot/snapshot.h,
// "Resume"). Without that, the keyless attribution_touchpoints got every replayed INSERT twice
// (seen: 8998 rows against the source's 8984). Once caught up past that point, `run` validates
// the foreign keys the resumed snapshot added NOT VALID.
TEST(Snapshot, ResumedInFreshSnapshotConvergesUnderTheStream) {
  auto& env = Clusters();
  auto db = env.source().CreateDatabase("snap_converge");
  ASSERT_TRUE(db.ok());
  const std::string source_url = env.source().Url(*db);
  ASSERT_TRUE(testing::LoadRawdog(source_url, 3).ok());
  std::string dir = TempDir("converge");
  const std::string target_url = FreshTargetDb("snap_converge");
  std::string yaml = RolesYaml("converge", source_url, target_url, dir + "/state", ", chunk_mb: 1");
  std::ofstream(dir + "/c.yaml") << yaml;

  CommandResult first = RunTenantsync({"-c", dir + "/c.yaml", "snapshot"}, dir,
                                    {"TENANTSYNC_KILL_POINT=snapshot.after_chunk_commit"});
  ASSERT_EQ(first.exit_code, 128 + SIGABRT) << first.err;
  PgConn dst = MustConnect(target_url);
  // The kill comes right after the first chunk commit; the other worker may have committed one
  // in the same instant.
  const int64_t committed = Count(dst, "SELECT count(*) FROM _tenantsync.snapshot_chunks");
  ASSERT_GE(committed, 1);
  ASSERT_LE(committed, 2);
  // The tables finished in the lost snapshot (all of their chunks committed).
  std::set<std::string> finished_first;
  for (const auto& row : Rows(dst, "SELECT table_name FROM _tenantsync.snapshot_chunks GROUP BY "
                                  "table_name, chunk_count HAVING count(*) = chunk_count")) {
    finished_first.insert(*row[0]);
  }

  // Changes after the consistent point, touching every table.
  testing::WorkloadOptions wo;
  wo.clients = 2;
  wo.transactions_per_client = 150;
  auto w = testing::RunRawdogWorkload(source_url, wo);
  ASSERT_TRUE(w.ok()) << w.status().ToString();

  // Resume + stream until the target equals the source (it must, within the time limit).
  PgConn src = MustConnect(source_url);
  auto converged = [&] {
    for (const auto& t : testing::RawdogTables()) {
      if (Count(dst, "SELECT count(*) FROM tenant_rawdog." + t) !=
          Count(src, "SELECT count(*) FROM public." + t)) {
        return false;
      }
    }
    for (const auto& t : kIdentityTables) {
      if (TableChecksum(dst, "tenant_rawdog", t) != TableChecksum(src, "public", t)) return false;
    }
    return true;
  };
  // `run` itself validates the deferred foreign keys once it has caught up.
  auto foreign_keys_validated = [&] {
    return Count(dst, "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON "
                      "n.oid = c.connamespace WHERE n.nspname = 'tenant_rawdog' AND "
                      "c.contype = 'f' AND NOT c.convalidated") == 0;
  };
  bool ok = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  auto last_check = std::chrono::steady_clock::now();
  CommandResult run = RunTenantsync({"-c", dir + "/c.yaml", "run"}, dir, {}, [&](pid_t pid) {
    auto now = std::chrono::steady_clock::now();
    if (ok || now - last_check < std::chrono::seconds(1)) return;
    last_check = now;
    if (Value(dst, "SELECT to_regclass('tenant_rawdog.orders_pkey')::text").empty()) return;
    ok = converged() && foreign_keys_validated();
    if (ok || now > deadline) kill(pid, SIGTERM);
  });
  if (!ok) {
    for (const auto& t : testing::RawdogTables()) {
      std::cerr << t << ": target " << Count(dst, "SELECT count(*) FROM tenant_rawdog." + t)
                << " source " << Count(src, "SELECT count(*) FROM public." + t) << "\n";
    }
    std::cerr << "progress: " << Value(dst, "SELECT string_agg(pipeline || ' ' || applied_lsn, ', ') "
                                            "FROM _tenantsync.progress") << "\n";
  }
  ASSERT_TRUE(ok) << "target did not converge (or its foreign keys were not validated); run "
                     "stdout:\n" << run.out << "\nstderr:\n" << run.err;
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr("resuming the snapshot"));
  EXPECT_THAT(run.err, HasSubstr("foreign keys were added NOT VALID"));
  EXPECT_THAT(run.err, HasSubstr("the foreign keys added NOT VALID are validated"));
  ExpectForeignKeysValid(src, dst);
  {
    Config c = MustParse(yaml);
    auto state = MustOpenState(c);
    // Validated by `run`: nothing deferred is left.
    EXPECT_FALSE(state->GetMeta(kMetaMixedSnapshots)->has_value());
    // Every table copied after the resume records its snapshot's point, the one finished before
    // the kill does not (the stream's start is its point).
    auto resumed = state->ScanMeta(kMetaResumedLsnPrefix);
    ASSERT_TRUE(resumed.ok());
    size_t expected = testing::RawdogTables().size() - finished_first.size();
    EXPECT_EQ(resumed->size(), expected);
    for (const auto& [k, v] : *resumed) {
      EXPECT_FALSE(finished_first.contains(k.substr(std::string(kMetaResumedLsnPrefix).size())))
          << k;
      EXPECT_TRUE(Lsn::Parse(v).ok()) << k << " = " << v;
    }
    // Converged without any change refused on the way (no unique-key conflict, no duplicate).
    auto letters = state->DeadLetters();
    ASSERT_TRUE(letters.ok());
    EXPECT_TRUE(letters->empty()) << letters->front().table << ": " << letters->front().reason;
  }
  // Transformed tables too: equal to a fresh snapshot of the final source state.
  const std::string ref_url = FreshTargetDb("snap_converge_ref");
  Config ref = MustParse(RolesYaml("convergeref", source_url, ref_url, dir + "/ref-state"));
  {
    auto state = MustOpenState(ref);
    SnapshotOptions opts;
    opts.progress = SnapshotOptions::Progress::kNone;
    SnapshotResult result;
    ASSERT_TRUE(RunSnapshot(ref, opts, *state, &result).ok());
  }
  PgConn refc = MustConnect(ref_url);
  for (const auto& t : {"customers", "orders", "creators", "withdrawal_requests", "esign_documents"}) {
    std::vector<std::string> except;
    if (std::string(t) == "orders") except = {"migrated_at"};
    EXPECT_EQ(TableChecksum(dst, "tenant_rawdog", t, except),
              TableChecksum(refc, "tenant_rawdog", t, except))
        << t;
  }
  DropSlot(src, "slot_converge");
  DropSlot(src, "slot_convergeref");
}

TEST(Snapshot, DryRunPrintsPlanAndWritesNothing) {
  const std::string source_url = Clusters().source().Url(SharedSourceDb());
  const std::string target_url = FreshTargetDb("snap_dry");
  std::string dir = TempDir("dry");
  std::ofstream(dir + "/dry.yaml") << RawdogYaml("dry", source_url, target_url, dir + "/state");
  PgConn src = MustConnect(source_url);
  PgConn dst = MustConnect(target_url);
  CommandResult r = RunTenantsync({"-c", dir + "/dry.yaml", "snapshot", "--dry-run"}, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Tables in FK order with transforms and DDL.
  EXPECT_THAT(r.out, HasSubstr("CREATE TABLE IF NOT EXISTS \"tenant_rawdog\".\"orders\""));
  EXPECT_THAT(r.out, HasSubstr("cast gross_sales_cents text -> bigint"));
  EXPECT_THAT(r.out, HasSubstr("rename phone -> phone_number"));
  EXPECT_THAT(r.out, HasSubstr("FOREIGN KEY"));
  EXPECT_LT(r.out.find("  customers"), r.out.find("  orders"));
  EXPECT_LT(r.out.find("  orders"), r.out.find("  line_items"));
  EXPECT_EQ(r.out.find(kShopifyToken), std::string::npos);
  EXPECT_EQ(r.out.find(kKey), std::string::npos);
  // Nothing written anywhere.
  EXPECT_EQ(Count(src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slot_dry'"), 0);
  EXPECT_EQ(Count(src, "SELECT count(*) FROM pg_publication WHERE pubname = 'pub_dry'"), 0);
  EXPECT_EQ(Count(dst, "SELECT count(*) FROM pg_namespace WHERE nspname IN "
                       "('tenant_rawdog', '_tenantsync')"),
            0);
  EXPECT_EQ(Count(dst, "SELECT count(*) FROM pg_class WHERE relname = 'organizations'"), 0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/state"));
}

// A pre-existing target table whose CHECK rejects some rows: the chunk falls back to row by
// row, the bad rows become dead letters naming table and key, the others land.
TEST(Snapshot, RowsTheTargetRejectsBecomeDeadLetters) {
  const std::string source_url = Clusters().source().Url(SharedSourceDb());
  const std::string target_url = FreshTargetDb("snap_dead");
  std::string dir = TempDir("dead");
  Config config = MustParse(RawdogYaml("dead", source_url, target_url, dir + "/state"));
  PgConn src = MustConnect(source_url);
  PgConn dst = MustConnect(target_url);
  // Same columns as the source, plus a CHECK that rejects some ids.
  std::string ddl = Value(src, "SELECT 'CREATE TABLE tenant_rawdog.ab_tests (' || string_agg("
                               "quote_ident(attname) || ' ' || format_type(atttypid, atttypmod), "
                               "', ' ORDER BY attnum) || ', CHECK (id % 7 <> 3))' FROM pg_attribute "
                               "WHERE attrelid = 'public.ab_tests'::regclass AND attnum > 0 AND "
                               "NOT attisdropped");
  ASSERT_TRUE(dst.Run("CREATE SCHEMA IF NOT EXISTS tenant_rawdog").ok());
  ASSERT_TRUE(dst.Run(ddl).ok()) << ddl;
  int64_t rejected = Count(src, "SELECT count(*) FROM public.ab_tests WHERE id % 7 = 3");
  ASSERT_GT(rejected, 0);
  auto state = MustOpenState(config);
  SnapshotOptions opts;
  opts.progress = SnapshotOptions::Progress::kNone;
  SnapshotResult result;
  Status st = RunSnapshot(config, opts, *state, &result);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(result.dead_letters, rejected);
  EXPECT_EQ(Count(dst, "SELECT count(*) FROM tenant_rawdog.ab_tests"),
            Count(src, "SELECT count(*) FROM public.ab_tests") - rejected);
  auto letters = state->DeadLetters();
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(static_cast<int64_t>(letters->size()), rejected);
  for (const auto& l : *letters) {
    EXPECT_EQ(l.table, "ab_tests");
    EXPECT_EQ(l.phase, "snapshot");
    EXPECT_THAT(l.key, ::testing::StartsWith("id="));
    EXPECT_EQ(std::atoll(l.key.substr(3).c_str()) % 7, 3);
    EXPECT_THAT(l.reason, HasSubstr("check constraint"));
  }
  DropSlot(src, "slot_dead");
}

// character(n) values travel without their blank padding (snapshot/internal/copy_binary.h);
// the target must still hold exactly what the source stores: every value byte for byte (the
// padded output text, the stored size), in a table copied in ctid chunks and in one copied
// whole with FREEZE, next to columns whose trailing blanks are data (varchar, text, bpchar
// without a length) and must keep them.
TEST(Snapshot, PaddedCharColumnsArriveExactlyAsStored) {
  auto db = Clusters().source().CreateDatabase("snap_padded");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  const std::string source_url = Clusters().source().Url(*db);
  const std::string target_url = FreshTargetDb("snap_padded");
  std::string dir = TempDir("padded");
  std::string yaml = RawdogYaml("padded", source_url, target_url, dir + "/state", ", chunk_mb: 1");
  yaml = yaml.substr(0, yaml.find("tables:\n"));  // no RAWDOG tables here: no transforms
  Config config = MustParse(yaml);
  PgConn src = MustConnect(source_url);
  PgConn dst = MustConnect(target_url);
  const std::string columns =
      "(id int PRIMARY KEY, c1 char(1), c5 character(5), c84 char(84), code char(3) NOT NULL, "
      "bare bpchar, v varchar(10), t text)";
  const std::string values =
      "(g, CASE WHEN g % 5 = 0 THEN NULL WHEN g % 5 = 1 THEN ' ' ELSE chr(97 + g % 26) END, "
      " CASE g % 6 WHEN 0 THEN 'abcde' WHEN 1 THEN ' a b ' WHEN 2 THEN '   ' WHEN 3 THEN 'äöü' "
      "            WHEN 4 THEN NULL ELSE 'x' || repeat(' ', 3) END, "
      " CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('é', g % 84) END, "
      " lpad((g % 1000)::text, 3), 'b' || repeat(' ', g % 4), 'v' || repeat(' ', g % 4), "
      " 't' || repeat(' ', g % 4))";
  ASSERT_TRUE(src.Run("CREATE TABLE public.codes " + columns + "; INSERT INTO public.codes "
                      "SELECT " + values.substr(1, values.size() - 2) +
                      " FROM generate_series(1, 30000) g")
                  .ok());
  ASSERT_TRUE(src.Run("CREATE TABLE public.codes_small " + columns + "; INSERT INTO "
                      "public.codes_small SELECT * FROM public.codes WHERE id <= 500")
                  .ok());
  // The plan says which path the table takes.
  std::ofstream(dir + "/padded.yaml") << yaml;
  CommandResult plan = RunTenantsync({"-c", dir + "/padded.yaml", "snapshot", "--dry-run"}, dir);
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_THAT(plan.out, HasSubstr("binary pass-through (character(n) sent without its padding)"));
  {
    auto result = QuietSnapshot(config);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->rows, 30500);
  }
  // The big table was copied in several chunks, the small one whole.
  EXPECT_GT(Count(dst, "SELECT count(*) FROM _tenantsync.snapshot_chunks WHERE table_name = "
                       "'codes'"), 1);
  for (const std::string t : {"codes", "codes_small"}) {
    EXPECT_EQ(TableChecksum(dst, "tenant_rawdog", t), TableChecksum(src, "public", t)) << t;
    const std::string sizes =
        "SELECT sum(pg_column_size(c1)) || ',' || sum(pg_column_size(c5)) || ',' || "
        "sum(pg_column_size(c84)) || ',' || sum(octet_length(c84)) || ',' || "
        "sum(pg_column_size(code)) || ',' || sum(octet_length(bare)) || ',' || "
        "sum(octet_length(v)) || ',' || sum(octet_length(t)) FROM ";
    EXPECT_EQ(Value(dst, sizes + "tenant_rawdog." + t), Value(src, sizes + "public." + t)) << t;
  }
  // Spot values: padding back to n characters, multibyte, blanks inside, blanks that are data.
  EXPECT_EQ(Value(dst, "SELECT c5 || '|' FROM tenant_rawdog.codes WHERE id = 7"), " a b|");
  EXPECT_EQ(Value(dst, "SELECT format('[%s][%s][%s]', c5, bare, v) FROM tenant_rawdog.codes "
                       "WHERE id = 3"),
            Value(src, "SELECT format('[%s][%s][%s]', c5, bare, v) FROM public.codes "
                       "WHERE id = 3"));
  EXPECT_EQ(Value(dst, "SELECT octet_length(c5) FROM tenant_rawdog.codes WHERE id = 9"), "8");  // äöü + 2 blanks
  DropSlot(src, "slot_padded");
}

// --- preflight: each failure produced, its message asserted, nothing written -----------------

std::vector<std::string> MustPreflight(const Config& config) {
  auto f = Preflight(config);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? *f : std::vector<std::string>{};
}

std::string JoinLines(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& l : v) s += l + "\n";
  return s;
}

TEST(SnapshotPreflight, HealthyPipelinePassesAndWritesNothing) {
  const std::string source_url = Clusters().source().Url(SharedSourceDb());
  const std::string target_url = FreshTargetDb("pre_ok");
  Config config = MustParse(RawdogYaml("preok", source_url, target_url, "/tmp/unused"));
  auto f = MustPreflight(config);
  EXPECT_TRUE(f.empty()) << JoinLines(f);
  PgConn src = MustConnect(source_url);
  EXPECT_EQ(Count(src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slot_preok'"), 0);
  EXPECT_EQ(Count(src, "SELECT count(*) FROM pg_publication WHERE pubname = 'pub_preok'"), 0);
}

TEST(SnapshotPreflight, WalLevelReplicaIsReported) {
  testing::ClusterOptions o;
  o.wal_level = "replica";
  auto replica = PgCluster::Start("walreplica", o);
  ASSERT_TRUE(replica.ok()) << replica.status().ToString();
  auto db = (*replica)->CreateDatabase("rawdog");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(testing::LoadRawdog((*replica)->Url(*db), 1).ok());
  Config config = MustParse(RawdogYaml("walrep", (*replica)->Url(*db), FreshTargetDb("pre_wal"),
                                       "/tmp/unused"));
  auto f = MustPreflight(config);
  ASSERT_EQ(f.size(), 1u) << JoinLines(f);
  EXPECT_THAT(f[0], HasSubstr("wal_level is 'replica'"));
  EXPECT_THAT(f[0], HasSubstr("ALTER SYSTEM SET wal_level = logical"));
}

TEST(SnapshotPreflight, RoleWithoutReplicationIsReported) {
  auto& src_cluster = Clusters().source();
  ASSERT_TRUE(src_cluster.Exec(SharedSourceDb(),
                               "DO $$ BEGIN CREATE ROLE plain_reader LOGIN; EXCEPTION WHEN "
                               "duplicate_object THEN NULL; END $$; GRANT SELECT ON ALL TABLES IN "
                               "SCHEMA public TO plain_reader").ok());
  std::string url = "postgresql://plain_reader@127.0.0.1:" + std::to_string(src_cluster.port()) +
                    "/" + SharedSourceDb();
  Config config = MustParse(RawdogYaml("norepl", url, FreshTargetDb("pre_role"), "/tmp/unused"));
  auto f = MustPreflight(config);
  ASSERT_EQ(f.size(), 1u) << JoinLines(f);
  EXPECT_THAT(f[0], HasSubstr("role plain_reader may not replicate"));
  EXPECT_THAT(f[0], HasSubstr("WITH REPLICATION"));
}

TEST(SnapshotPreflight, TableWithoutKeyMissingTableMissingKeyAndBadTargetTypeAreAllReported) {
  auto& env = Clusters();
  auto db = env.source().CreateDatabase("pre_tables");
  ASSERT_TRUE(db.ok());
  const std::string source_url = env.source().Url(*db);
  ASSERT_TRUE(testing::LoadRawdog(source_url, 1).ok());
  ASSERT_TRUE(env.source().Exec(*db, "CREATE TABLE public.audit_log (at timestamptz, what text)").ok());
  const std::string target_url = FreshTargetDb("pre_tables");
  PgConn dst = MustConnect(target_url);
  ASSERT_TRUE(dst.Run("CREATE SCHEMA tenant_rawdog; CREATE TABLE tenant_rawdog.orders "
                      "(id bigint, gross_sales_cents integer)").ok());
  Config config = MustParse(RawdogYaml("pretables", source_url, target_url, "/tmp/unused") +
                            "  legacy_notes: {columns: {body: {encrypt: true}}}\n");
  config.encryption.key.clear();
  auto f = MustPreflight(config);
  std::string all = JoinLines(f);
  EXPECT_THAT(all, HasSubstr("table public.audit_log has no primary key or replica identity"));
  EXPECT_THAT(all, HasSubstr("ALTER TABLE \"public\".\"audit_log\" REPLICA IDENTITY FULL"));
  EXPECT_THAT(all, HasSubstr("table public.legacy_notes is configured under tables: but does not "
                             "exist in the source"));
  EXPECT_THAT(all, HasSubstr("encryption.key is not set"));
  EXPECT_THAT(all, HasSubstr("openssl rand -base64 32"));
  EXPECT_THAT(all, HasSubstr("target column tenant_rawdog.orders.gross_sales_cents is integer but "
                             "the mapping produces bigint"));
  EXPECT_THAT(all, HasSubstr("target table tenant_rawdog.orders has no column customer_id"));
  // One line each.
  for (const auto& l : f) EXPECT_EQ(l.find('\n'), std::string::npos) << l;
  // The snapshot refuses to start and writes nothing.
  std::string dir = TempDir("pretables");
  config.state_dir = dir + "/state";
  Status st = QuietSnapshot(config).status();
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("audit_log"));
  PgConn src = MustConnect(source_url);
  EXPECT_EQ(Count(src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slot_pretables'"), 0);
  EXPECT_EQ(Count(dst, "SELECT count(*) FROM pg_namespace WHERE nspname = '_tenantsync'"), 0);
}

TEST(SnapshotPreflight, CheckCommandPrintsEachFailureAndExitsNonZero) {
  auto& env = Clusters();
  auto db = env.source().CreateDatabase("pre_cli");
  ASSERT_TRUE(db.ok());
  const std::string source_url = env.source().Url(*db);
  ASSERT_TRUE(testing::LoadRawdog(source_url, 1).ok());
  ASSERT_TRUE(env.source().Exec(*db, "ALTER TABLE public.ab_tests REPLICA IDENTITY NOTHING").ok());
  std::string dir = TempDir("precli");
  std::ofstream(dir + "/c.yaml") << RawdogYaml("precli", source_url, FreshTargetDb("pre_cli"),
                                               dir + "/state");
  CommandResult r = RunTenantsync({"-c", dir + "/c.yaml", "check"}, dir);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("table public.ab_tests has no primary key or replica identity"));
  CommandResult down = RunTenantsync(
      {"--source", "postgresql://u:secretpw@127.0.0.1:1/x", "--target", "postgresql://127.0.0.1:1/y",
       "--tenant", "rawdog", "check"},
      dir);
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_THAT(down.err, HasSubstr("source: cannot connect"));
  EXPECT_THAT(down.err, HasSubstr("target: cannot connect"));
  EXPECT_EQ(down.err.find("secretpw"), std::string::npos);
}

}  // namespace
}  // namespace tenantsync::snapshot
