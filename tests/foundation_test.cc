// The ground every end-to-end test stands on: the throwaway clusters (logical decoding with
// wal2json on the source, a replica-level server on request, restart and crash) and the RAWDOG
// fixture (exact row counts, valid constraints, TOASTed values, determinism, the workload).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "tests/fixtures/rawdog.h"
#include "tests/harness/status_matchers.h"
#include "tests/harness/test_env.h"

namespace tenantsync::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kSeed = 20240601;

// ---- Harness -----------------------------------------------------------------------------

TEST(Harness, SharedClustersAreLogicalAndReachable) {
  for (PgCluster* c : {&Clusters().source(), &Clusters().target()}) {
    SCOPED_TRACE(c->name());
    ASSERT_OK_AND_ASSIGN(std::string level, c->QueryValue("postgres", "SHOW wal_level"));
    EXPECT_EQ(level, "logical");
    ASSERT_OK_AND_ASSIGN(int64_t slots, c->QueryInt("postgres", "SHOW max_replication_slots"));
    EXPECT_EQ(slots, 20);
    ASSERT_OK_AND_ASSIGN(std::string fsync, c->QueryValue("postgres", "SHOW fsync"));
    EXPECT_EQ(fsync, "off");
    ASSERT_OK_AND_ASSIGN(std::string sync_commit,
                         c->QueryValue("postgres", "SHOW synchronous_commit"));
    EXPECT_EQ(sync_commit, "on");
    ASSERT_OK_AND_ASSIGN(int64_t port, c->QueryInt("postgres", "SHOW port"));
    EXPECT_EQ(port, c->port());
    EXPECT_EQ(c->Url("x"), "postgresql://postgres@127.0.0.1:" + std::to_string(c->port()) + "/x");
    EXPECT_TRUE(std::filesystem::exists(c->data_dir() + "/PG_VERSION"));
  }
  EXPECT_NE(Clusters().source().port(), Clusters().target().port());
}

TEST(Harness, CreateDatabaseGivesFreshUniqueNames) {
  PgCluster& src = Clusters().source();
  ASSERT_OK_AND_ASSIGN(std::string a, src.CreateDatabase("uniq"));
  ASSERT_OK_AND_ASSIGN(std::string b, src.CreateDatabase("uniq"));
  EXPECT_NE(a, b);
  EXPECT_THAT(a, ::testing::StartsWith("uniq_"));
  ASSERT_OK(src.Exec(a, "CREATE TABLE t (id int)"));
  EXPECT_THAT(src.QueryValue(b, "SELECT 1 FROM t"),
              StatusIs(StatusCode::kFatal, HasSubstr("does not exist")));
  EXPECT_THAT(src.QueryValue(a, "SELECT 1 FROM t"),
              StatusIs(StatusCode::kNotFound, HasSubstr("no rows")));
  EXPECT_THAT(src.CreateDatabase("Bad-Name"),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("must match")));
  ASSERT_OK(src.DropDatabase(a));
  ASSERT_OK(src.DropDatabase(b));
}

TEST(Harness, Wal2jsonDecodesSourceChanges) {
  PgCluster& src = Clusters().source();
  ASSERT_OK_AND_ASSIGN(std::string db, src.CreateDatabase("wal2json"));
  ASSERT_OK(src.Exec(db, "CREATE TABLE gadgets (id int PRIMARY KEY, name text)"));
  ASSERT_OK(src.Exec(db, "SELECT * FROM pg_create_logical_replication_slot('x', 'wal2json')"));
  ASSERT_OK(src.Exec(db, "INSERT INTO gadgets VALUES (1, 'Straße 🔥')"));
  ASSERT_OK_AND_ASSIGN(
      std::string changes,
      src.QueryValue(db,
                     "SELECT string_agg(data, E'\\n') FROM "
                     "pg_logical_slot_get_changes('x', NULL, NULL, 'format-version', '2')"));
  EXPECT_THAT(changes, HasSubstr("\"action\":\"I\""));
  EXPECT_THAT(changes, HasSubstr("\"table\":\"gadgets\""));
  EXPECT_THAT(changes, HasSubstr("Straße"));
  ASSERT_OK(src.Exec(db, "SELECT pg_drop_replication_slot('x')"));
}

// A cluster of the test's own, beyond the shared two: replica-level (for the wal_level
// precondition error), with extra configuration, restarted, crashed and destroyed. One cluster
// serves the suite's tests, in declaration order, to keep the binary fast.
class ExtraCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ClusterOptions opts;
    opts.wal_level = "replica";
    opts.extra_conf = {"shared_buffers = '16MB'"};
    auto c = PgCluster::Start("replica", opts);
    if (c.ok()) {
      cluster_ = std::move(c).value().release();
    } else {
      *start_status_ = c.status();
    }
  }
  static void TearDownTestSuite() { delete cluster_; }
  void SetUp() override {
    ASSERT_OK(*start_status_);
    ASSERT_NE(cluster_, nullptr) << "destroyed by an earlier test";
  }

  static inline PgCluster* cluster_ = nullptr;
  static inline Status* start_status_ = new Status;
};

TEST_F(ExtraCluster, IsReplicaLevelWhenAsked) {
  ASSERT_OK_AND_ASSIGN(std::string level, cluster_->QueryValue("postgres", "SHOW wal_level"));
  EXPECT_EQ(level, "replica");
  ASSERT_OK_AND_ASSIGN(std::string buffers,
                       cluster_->QueryValue("postgres", "SHOW shared_buffers"));
  EXPECT_EQ(buffers, "16MB");  // extra_conf wins over the harness defaults
  Status slot = cluster_->Exec("postgres",
                               "SELECT * FROM pg_create_logical_replication_slot('x', 'wal2json')");
  EXPECT_THAT(slot, StatusIs(StatusCode::kFatal, HasSubstr("wal_level")));
  EXPECT_EQ(slot.sqlstate(), "55000");  // object_not_in_prerequisite_state
}

TEST_F(ExtraCluster, RestartAndKillKeepCommittedData) {
  PgCluster& c = *cluster_;
  const int port = c.port();
  ASSERT_OK(c.Exec("postgres", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"));

  ASSERT_OK(c.Restart(/*immediate=*/true));  // crash recovery on the way up
  EXPECT_EQ(c.port(), port);
  ASSERT_OK(c.Exec("postgres", "INSERT INTO t VALUES (2)"));

  ASSERT_OK(c.Kill());
  EXPECT_FALSE(c.running());
  EXPECT_THAT(c.QueryValue("postgres", "SELECT 1"),
              StatusIs(StatusCode::kConnection, HasSubstr("cannot connect")));
  ASSERT_OK(c.StartServer());
  ASSERT_OK_AND_ASSIGN(int64_t rows, c.QueryInt("postgres", "SELECT count(*) FROM t"));
  EXPECT_EQ(rows, 2);

  ASSERT_OK(c.Stop());
  EXPECT_FALSE(c.running());
  ASSERT_OK(c.Restart(/*immediate=*/false));
  ASSERT_OK_AND_ASSIGN(rows, c.QueryInt("postgres", "SELECT count(*) FROM t"));
  EXPECT_EQ(rows, 2);
}

TEST_F(ExtraCluster, DestructorStopsServerAndRemovesDirectory) {
  std::ifstream pidfile(cluster_->data_dir() + "/postmaster.pid");
  pid_t pm = 0;
  ASSERT_TRUE(pidfile >> pm);
  const std::string dir = cluster_->data_dir();
  delete cluster_;
  cluster_ = nullptr;
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_NE(kill(pm, 0), 0) << "postmaster " << pm << " still exists";
}

// ---- RAWDOG ------------------------------------------------------------------------------

// Every table's contents as one md5, independent of physical order.
std::map<std::string, std::string> TableDigests(PgCluster& c, const std::string& db) {
  std::map<std::string, std::string> out;
  for (const auto& t : RawdogTables()) {
    auto v = c.QueryValue(db,
                          "SELECT md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), "
                          "'')) FROM " +
                              QuoteIdent(t) + " x");
    out[t] = v.ok() ? *v : "error: " + v.status().ToString();
  }
  return out;
}

// Rows that reference a missing parent, summed over every foreign key of the database.
StatusOr<int64_t> CountOrphans(PgCluster& c, const std::string& db, int* foreign_keys) {
  TS_ASSIGN_OR_RETURN(PgConn conn, c.Connect(db));
  TS_ASSIGN_OR_RETURN(
      PgResult fks,
      conn.Exec("SELECT conrelid::regclass, a.attname, confrelid::regclass, pa.attname, conname "
                "FROM pg_constraint k "
                "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1] "
                "JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = k.confkey[1] "
                "WHERE k.contype = 'f' AND cardinality(k.conkey) = 1 ORDER BY conname"));
  *foreign_keys = fks.rows();
  int64_t orphans = 0;
  for (int i = 0; i < fks.rows(); ++i) {
    std::string child(fks.Get(i, 0)), col(fks.Get(i, 1)), parent(fks.Get(i, 2)),
        pcol(fks.Get(i, 3)), name(fks.Get(i, 4));
    TS_ASSIGN_OR_RETURN(
        PgResult r, conn.Exec("SELECT count(*) FROM " + child + " c WHERE c." + QuoteIdent(col) +
                              " IS NOT NULL AND NOT EXISTS (SELECT 1 FROM " + parent +
                              " p WHERE p." + QuoteIdent(pcol) + " = c." + QuoteIdent(col) + ")"));
    TS_ASSIGN_OR_RETURN(int64_t n, r.GetInt(0, 0));
    orphans += n;
    TS_RETURN_IF_ERROR(
        conn.Run("ALTER TABLE " + child + " VALIDATE CONSTRAINT " + QuoteIdent(name)));
  }
  return orphans;
}

// Rows violating some CHECK constraint, summed over all of them.
StatusOr<int64_t> CountCheckViolations(PgCluster& c, const std::string& db, int* checks) {
  TS_ASSIGN_OR_RETURN(PgConn conn, c.Connect(db));
  TS_ASSIGN_OR_RETURN(PgResult defs,
                      conn.Exec("SELECT conrelid::regclass, pg_get_constraintdef(oid) FROM "
                                "pg_constraint WHERE contype = 'c' AND connamespace = "
                                "'public'::regnamespace"));
  *checks = defs.rows();
  int64_t bad = 0;
  for (int i = 0; i < defs.rows(); ++i) {
    std::string def(defs.Get(i, 1));  // "CHECK (expr)"
    std::string expr = def.substr(def.find('('));
    TS_ASSIGN_OR_RETURN(PgResult r, conn.Exec("SELECT count(*) FROM " +
                                              std::string(defs.Get(i, 0)) + " WHERE NOT " + expr));
    TS_ASSIGN_OR_RETURN(int64_t n, r.GetInt(0, 0));
    bad += n;
  }
  return bad;
}

class RawdogTest : public ::testing::Test {
 protected:
  // One loaded database shared by the read-only tests of this suite.
  static void SetUpTestSuite() {
    auto db = Clusters().source().CreateDatabase("rawdog");
    if (!db.ok()) {
      *load_status_ = db.status();
      return;
    }
    *db_ = *db;
    *load_status_ = LoadRawdog(Clusters().source().Url(*db_), 1, kSeed);
  }
  void SetUp() override { ASSERT_OK(*load_status_); }

  static PgCluster& src() { return Clusters().source(); }
  static const std::string& db() { return *db_; }

  static inline std::string* db_ = new std::string;
  static inline Status* load_status_ = new Status;
};

TEST_F(RawdogTest, RowCountsMatchThePlan) {
  const auto counts = RawdogRowCounts(1);
  ASSERT_EQ(counts.size(), 14u);
  for (const auto& t : counts) {
    ASSERT_OK_AND_ASSIGN(int64_t n,
                         src().QueryInt(db(), "SELECT count(*) FROM " + QuoteIdent(t.table)));
    EXPECT_EQ(n, t.rows) << t.table;
    EXPECT_GT(t.rows, 0) << t.table;
  }
  // The plan is linear in the scale and about 17k rows at scale 1.
  EXPECT_GT(RawdogTotalRows(1), 10000);
  EXPECT_LT(RawdogTotalRows(1), 30000);
  const auto big = RawdogRowCounts(1000);
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i].table == "line_items") continue;  // 1..5 per order, so only roughly linear
    EXPECT_EQ(big[i].rows, 1000 * counts[i].rows) << counts[i].table;
  }
  // Sequences continue after the loaded ids.
  ASSERT_OK_AND_ASSIGN(std::string next_order,
                       src().QueryValue(db(),
                                        "SELECT nextval(pg_get_serial_sequence('orders', "
                                        "'id')) > (SELECT max(id) FROM orders)"));
  EXPECT_EQ(next_order, "t");
}

TEST_F(RawdogTest, ForeignKeysAndChecksHold) {
  int fks = 0, checks = 0;
  ASSERT_OK_AND_ASSIGN(int64_t orphans, CountOrphans(src(), db(), &fks));
  EXPECT_EQ(fks, 16);
  EXPECT_EQ(orphans, 0);
  ASSERT_OK_AND_ASSIGN(int64_t bad, CountCheckViolations(src(), db(), &checks));
  EXPECT_GE(checks, 20);
  EXPECT_EQ(bad, 0);
  ASSERT_OK_AND_ASSIGN(int64_t invalid,
                       src().QueryInt(db(),
                                      "SELECT count(*) FROM pg_constraint WHERE NOT "
                                      "convalidated AND connamespace = 'public'::regnamespace"));
  EXPECT_EQ(invalid, 0);
  // Order totals agree with their line items (the generator derives both from one plan).
  ASSERT_OK_AND_ASSIGN(
      int64_t mismatched,
      src().QueryInt(db(),
                     "SELECT count(*) FROM orders o WHERE total_cents <> (SELECT "
                     "sum(quantity * unit_price_cents - discount_cents) FROM line_items l "
                     "WHERE l.order_id = o.id)"));
  EXPECT_EQ(mismatched, 0);
}

TEST_F(RawdogTest, KeysAndReplicaIdentities) {
  ASSERT_OK_AND_ASSIGN(int64_t with_pk,
                       src().QueryInt(db(),
                                      "SELECT count(*) FROM pg_constraint WHERE contype = "
                                      "'p' AND connamespace = 'public'::regnamespace"));
  EXPECT_EQ(with_pk, 13);
  ASSERT_OK_AND_ASSIGN(std::string ident,
                       src().QueryValue(db(),
                                        "SELECT relreplident FROM pg_class WHERE oid = "
                                        "'attribution_touchpoints'::regclass"));
  EXPECT_EQ(ident, "f");
  ASSERT_OK_AND_ASSIGN(std::string uuid_pk,
                       src().QueryValue(db(),
                                        "SELECT format_type(atttypid, atttypmod) FROM "
                                        "pg_attribute WHERE attrelid = "
                                        "'esign_documents'::regclass AND attname = 'id'"));
  EXPECT_EQ(uuid_pk, "uuid");
  // Exact duplicate rows exist in the table without a key.
  ASSERT_OK_AND_ASSIGN(int64_t dup_groups,
                       src().QueryInt(db(),
                                      "SELECT count(*) FROM (SELECT x::text FROM "
                                      "attribution_touchpoints x GROUP BY 1 HAVING "
                                      "count(*) > 1) d"));
  EXPECT_GE(dup_groups, 50);
}

TEST_F(RawdogTest, MessyValuesArePresent) {
  struct Probe {
    const char* what;
    const char* sql;
  };
  const Probe probes[] = {
      {"unparsable legacy gross",
       "SELECT count(*) FROM orders WHERE gross_sales_cents !~ '^[0-9]+$'"},
      {"NULL legacy gross", "SELECT count(*) FROM orders WHERE gross_sales_cents IS NULL"},
      {"unparsable commission",
       "SELECT count(*) FROM creators WHERE commission_percent !~ '^[0-9]+(\\.[0-9]+)?$'"},
      {"non-ASCII names",
       "SELECT count(*) FROM customers WHERE octet_length(full_name) > length(full_name)"},
      {"4-byte emoji",
       "SELECT count(*) FROM creators WHERE display_name ~ '[\\U0001F300-\\U0001FAFF]'"},
      {"ß",
       "SELECT count(*) FROM customers WHERE full_name LIKE '%ß%' OR address::text LIKE '%ß%'"},
      {"CJK", "SELECT count(*) FROM customers WHERE full_name ~ '[\\u4e00-\\u9fff]'"},
      {"tab/newline/backslash", "SELECT count(*) FROM orders WHERE notes ~ '[\\t\\n\\\\]'"},
      {"NULL phones", "SELECT count(*) FROM customers WHERE phone IS NULL"},
      {"tokens", "SELECT count(*) FROM creators WHERE access_token LIKE 'rdg_live_%'"},
      {"jsonb null member",
       "SELECT count(*) FROM customers WHERE address ? 'line2' AND address->'line2' = 'null'"},
      {"quoted array element",
       "SELECT count(*) FROM customers WHERE 'limited \"edition\"' = ANY(tags)"},
      {"bytea signatures",
       "SELECT count(*) FROM esign_documents WHERE octet_length(signature) >= 32"},
  };
  for (const Probe& p : probes) {
    ASSERT_OK_AND_ASSIGN(int64_t n, src().QueryInt(db(), p.sql));
    EXPECT_GT(n, 0) << p.what;
  }
}

TEST_F(RawdogTest, LongValuesAreToastedOutOfLine) {
  struct Long {
    const char* table;
    const char* column;
    int64_t expected_long_rows;  // > 8 KB by the plan at scale 1
  };
  for (const Long& l : {Long{"products", "description", 20}, Long{"landing_pages", "html", 25},
                        Long{"blog_posts", "body", 50 + 17}}) {
    SCOPED_TRACE(l.table);
    ASSERT_OK_AND_ASSIGN(int64_t long_rows,
                         src().QueryInt(db(), std::string("SELECT count(*) FROM ") + l.table +
                                                  " WHERE octet_length(" + l.column + ") > 8192"));
    EXPECT_EQ(long_rows, l.expected_long_rows);
    ASSERT_OK_AND_ASSIGN(std::string toast,
                         src().QueryValue(db(), std::string("SELECT reltoastrelid::regclass FROM "
                                                            "pg_class WHERE oid = '") +
                                                    l.table + "'::regclass"));
    // Every out-of-line value is one chunk_id in the TOAST table.
    ASSERT_OK_AND_ASSIGN(int64_t external,
                         src().QueryInt(db(), "SELECT count(DISTINCT chunk_id) FROM " + toast));
    EXPECT_GE(external, long_rows);
  }
  // The long prose bodies are compressed (stored smaller than their text).
  ASSERT_OK_AND_ASSIGN(int64_t compressed,
                       src().QueryInt(db(),
                                      "SELECT count(*) FROM blog_posts WHERE "
                                      "pg_column_size(body) < octet_length(body) / 2"));
  EXPECT_GE(compressed, 17);
}

TEST_F(RawdogTest, SameSeedSameDataAnyJobs) {
  // In process: the COPY bytes of a table are a pure function of (table, scale, seed), and
  // another seed changes every table.
  auto bytes = [](const std::string& table, uint64_t seed) {
    std::string out;
    EXPECT_OK(GenerateRawdogTable(table, 1, seed, [&out](std::string_view chunk) {
      out.append(chunk);
      return Status();
    }));
    return out;
  };
  EXPECT_EQ(bytes("attribution_touchpoints", kSeed), bytes("attribution_touchpoints", kSeed));
  for (const auto& t : RawdogTables()) EXPECT_NE(bytes(t, kSeed), bytes(t, kSeed + 1)) << t;
  EXPECT_THAT(GenerateRawdogTable("nope", 1, kSeed, nullptr),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("unknown RAWDOG table 'nope'")));

  // In the server: the same seed loaded with one job instead of two gives the same tables.
  ASSERT_OK_AND_ASSIGN(std::string same, src().CreateDatabase("rawdog_same"));
  LoadOptions one_job;
  one_job.seed = kSeed;
  one_job.jobs = 1;
  ASSERT_OK(LoadRawdog(src().Url(same), one_job));
  const auto base = TableDigests(src(), db());
  const auto again = TableDigests(src(), same);
  for (const auto& t : RawdogTables()) {
    EXPECT_EQ(base.at(t), again.at(t)) << t;
    EXPECT_EQ(base.at(t).size(), 32u) << t << ": " << base.at(t);
  }
  ASSERT_OK(src().DropDatabase(same));
}

TEST_F(RawdogTest, LoadRefusesAPopulatedDatabase) {
  EXPECT_THAT(LoadRawdog(src().Url(db()), 1, kSeed),
              StatusIs(StatusCode::kFailedPrecondition,
                       HasSubstr("already has RAWDOG table public.ab_tests")));
  EXPECT_THAT(LoadRawdog(src().Url(db()), 0, kSeed),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("scale 0 is out of range")));
  EXPECT_THAT(LoadRawdog("postgresql://postgres@127.0.0.1:1/none", 1, kSeed),
              StatusIs(StatusCode::kConnection, HasSubstr("cannot connect")));
}

TEST_F(RawdogTest, WorkloadRejectsBadOptions) {
  WorkloadOptions o;
  o.clients = 0;
  EXPECT_THAT(RunRawdogWorkload(src().Url(db()), o),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("clients 0")));
  o = WorkloadOptions();
  o.transactions_per_client = 0;
  EXPECT_THAT(RunRawdogWorkload(src().Url(db()), o),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("needs a limit")));
  o = WorkloadOptions();
  o.isolation = "chaos";
  EXPECT_THAT(RunRawdogWorkload(src().Url(db()), o),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("isolation level 'chaos'")));
  EXPECT_THAT(ParseWorkloadMix("everything"),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("unknown workload mix")));
}

TEST_F(RawdogTest, WorkloadKeepsForeignKeysAndChangesEveryTable) {
  ASSERT_OK_AND_ASSIGN(std::string w, src().CreateDatabase("rawdog_work"));
  ASSERT_OK(LoadRawdog(src().Url(w), 1, kSeed));
  const auto before = TableDigests(src(), w);
  // A decoding slot sees what CDC will see: test_decoding marks unchanged TOAST explicitly.
  ASSERT_OK(src().Exec(w, "SELECT pg_create_logical_replication_slot('work', 'test_decoding')"));

  WorkloadOptions o;
  o.clients = 2;
  o.transactions_per_client = 100;
  o.seed = 7;
  ASSERT_OK_AND_ASSIGN(WorkloadResult r, RunRawdogWorkload(src().Url(w), o));
  EXPECT_EQ(r.committed, 200);
  EXPECT_GT(r.committed_by_op["reprice_product"], 0);    // TOAST left unchanged
  EXPECT_GT(r.committed_by_op["view_landing_page"], 0);  // TOAST left unchanged
  EXPECT_GT(r.committed_by_op["delete_order"], 0);
  EXPECT_GT(r.committed_by_op["edit_touchpoint"], 0);

  const auto after = TableDigests(src(), w);
  for (const auto& t : RawdogTables()) {
    EXPECT_GT(r.rows_changed[t], 0) << t;
    EXPECT_NE(before.at(t), after.at(t)) << t << " unchanged by the workload";
  }
  int fks = 0, checks = 0;
  ASSERT_OK_AND_ASSIGN(int64_t orphans, CountOrphans(src(), w, &fks));
  EXPECT_EQ(orphans, 0);
  ASSERT_OK_AND_ASSIGN(int64_t bad, CountCheckViolations(src(), w, &checks));
  EXPECT_EQ(bad, 0);
  // Out-of-line values are still there after updates that did not touch them.
  ASSERT_OK_AND_ASSIGN(int64_t long_products, src().QueryInt(w,
                                                             "SELECT count(*) FROM products WHERE "
                                                             "octet_length(description) > 8192"));
  EXPECT_GT(long_products, 0);
  // The stream carries UPDATEs that leave an out-of-line value unchanged (DESIGN.md inv. 8),
  // and old-row images of the table without a key.
  ASSERT_OK_AND_ASSIGN(
      int64_t unchanged_toast,
      src().QueryInt(w,
                     "SELECT count(*) FROM pg_logical_slot_peek_changes('work', NULL, NULL) "
                     "WHERE data LIKE 'table public.products: UPDATE:%' AND data LIKE "
                     "'%description[text]:unchanged-toast-datum%'"));
  EXPECT_GT(unchanged_toast, 0);
  ASSERT_OK_AND_ASSIGN(
      int64_t full_old_rows,
      src().QueryInt(w,
                     "SELECT count(*) FROM pg_logical_slot_peek_changes('work', NULL, NULL) "
                     "WHERE data LIKE 'table public.attribution_touchpoints: UPDATE: "
                     "old-key: customer_id[bigint]:%new-tuple:%'"));
  EXPECT_GT(full_old_rows, 0);
  ASSERT_OK(src().Exec(w, "SELECT pg_drop_replication_slot('work')"));
  ASSERT_OK(src().DropDatabase(w));
}

}  // namespace
}  // namespace tenantsync::testing
