// validate end to end: a RAWDOG source, a tenant schema built through the transform engine, then
// the checks: a clean migration passes every one; each injected divergence is found and named;
// under a running change workload with a lagging target nothing false is reported while a real
// divergence still is.
//
// The target is built here (tables from the mapping, rows through TableTransform::Apply, the
// source's keys and foreign keys), independent of the snapshot stage, so these tests judge
// validate alone. The live test simulates the pipeline: a writer changes the source, and a
// delayed "applier" thread replays the same statements on the target in the same order, each
// with its _tenantsync.progress update in the same transaction, a second or so behind.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "core/config.h"
#include "core/crypto.h"
#include "core/pg.h"
#include "core/transform.h"
#include "tests/fixtures/rawdog.h"
#include "tests/harness/status_matchers.h"
#include "tests/harness/test_env.h"
#include "validate/internal/catalog.h"
#include "validate/internal/session.h"
#include "validate/internal/table_plan.h"
#include "validate/validate.h"

namespace tenantsync::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using validate::CheckResult;
using validate::CheckStatus;
using validate::RowDifference;
using validate::ValidateOptions;
using validate::ValidationReport;

constexpr char kKey[] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";  // 32 bytes, base64

std::string ConfigYaml(const std::string& source_url, const std::string& target_url) {
  return "pipeline: rawdog\n"
         "source: {url: \"" + source_url + "\", schema: public}\n"
         "target: {url: \"" + target_url + "\", schema: tenant_rawdog}\n"
         "tenant: {slug: rawdog}\n"
         "encryption: {key: \"" + std::string(kKey) + "\"}\n"
         "tables:\n"
         "  orders:\n"
         "    sum_columns: [total_cents, gross_sales_cents]\n"
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
         "  blog_posts: {rename: articles}\n"
         "  esign_documents: {skip: true}\n";
}

// COPY text format of one value.
void AppendCopyValue(const Datum& d, std::string* out) {
  if (d.is_null()) {
    *out += "\\N";
    return;
  }
  for (char c : d.text) {
    switch (c) {
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default: *out += c;
    }
  }
}

// Builds tenant_rawdog in the target the way a snapshot would: mapped tables, every row through
// the transform engine, the source's primary and foreign keys.
Status BuildTarget(const Config& config, const Cipher& cipher) {
  using namespace validate::internal;
  TS_ASSIGN_OR_RETURN(Session src, Session::Open(config.source.url, "source"));
  TS_ASSIGN_OR_RETURN(PgConn tgt, PgConn::Connect(config.target.url, "validate-test"));
  TS_RETURN_IF_ERROR(tgt.Run("CREATE SCHEMA tenant_rawdog"));
  TS_ASSIGN_OR_RETURN(auto tables, ReadTables(src, "public"));
  TransformContext ctx{"2026-01-01 00:00:00+00"};
  for (const auto& [name, info] : tables) {
    const TableConfig* cfg = config.FindTable(name);
    if (cfg && cfg->skip) continue;
    TS_ASSIGN_OR_RETURN(TablePlan plan,
                        BuildTablePlan(config, info, nullptr, "tenant_rawdog", &cipher));
    std::string ddl = "CREATE TABLE " + plan.TargetQualified() + " (";
    for (size_t j = 0; j < plan.columns.size(); ++j) {
      ddl += (j ? ", " : "") + QuoteIdent(plan.columns[j].name) + " " + plan.columns[j].type;
    }
    if (plan.has_key()) {
      ddl += ", PRIMARY KEY (";
      for (size_t k = 0; k < plan.key_target.size(); ++k) {
        ddl += (k ? ", " : "") + QuoteIdent(plan.key_target[k]);
      }
      ddl += ")";
    }
    TS_RETURN_IF_ERROR(tgt.Run(ddl + ")"));
    TS_ASSIGN_OR_RETURN(PgResult rows, src.Query("SELECT * FROM " + plan.SourceQualified()));
    std::string copy;
    for (int i = 0; i < rows.rows(); ++i) {
      Tuple in, out;
      for (int c = 0; c < rows.columns(); ++c) {
        in.push_back(rows.IsNull(i, c) ? Datum::Null() : Datum::Text(std::string(rows.Get(i, c))));
      }
      TS_RETURN_IF_ERROR(plan.transform.Apply(in, &out, ctx));
      for (size_t c = 0; c < out.size(); ++c) {
        if (c) copy += '\t';
        AppendCopyValue(out[c], &copy);
      }
      copy += '\n';
    }
    TS_RETURN_IF_ERROR(tgt.Run("COPY " + plan.TargetQualified() + " FROM STDIN"));
    if (PQputCopyData(tgt.get(), copy.data(), static_cast<int>(copy.size())) != 1 ||
        PQputCopyEnd(tgt.get(), nullptr) != 1) {
      return Fatal("COPY into " + plan.target_table + ": " + tgt.LastError());
    }
    PgResult done(PQgetResult(tgt.get()));
    if (PQresultStatus(done.get()) != PGRES_COMMAND_OK) {
      return Fatal("COPY into " + plan.target_table + ": " + tgt.LastError());
    }
    while (PGresult* extra = PQgetResult(tgt.get())) PQclear(extra);
  }
  TS_ASSIGN_OR_RETURN(auto fks, ReadForeignKeys(src, "public"));
  for (const auto& fk : fks) {
    if (config.FindTable(fk.table) && config.FindTable(fk.table)->skip) continue;
    std::string cols, refs;
    for (size_t i = 0; i < fk.columns.size(); ++i) {
      cols += (i ? ", " : "") + QuoteIdent(fk.columns[i]);
      refs += (i ? ", " : "") + QuoteIdent(fk.ref_columns[i]);
    }
    TS_RETURN_IF_ERROR(tgt.Run("ALTER TABLE " + QuoteQualified("tenant_rawdog",
                                                               config.TargetTable(fk.table)) +
                               " ADD CONSTRAINT " + QuoteIdent(fk.name) + " FOREIGN KEY (" + cols +
                               ") REFERENCES " +
                               QuoteQualified("tenant_rawdog", config.TargetTable(fk.ref_table)) +
                               " (" + refs + ")"));
  }
  return tgt.Run("ANALYZE");
}

struct Migration {
  std::string source_db;
  std::string target_db;
  Config config;
};

StatusOr<Migration> Migrate(std::string_view prefix, int scale = 1) {
  Migration m;
  TS_ASSIGN_OR_RETURN(m.source_db, Clusters().source().CreateDatabase(prefix));
  TS_ASSIGN_OR_RETURN(m.target_db, Clusters().target().CreateDatabase(prefix));
  TS_RETURN_IF_ERROR(LoadRawdog(Clusters().source().Url(m.source_db), scale, 7));
  TS_ASSIGN_OR_RETURN(m.config, ParseConfig(ConfigYaml(Clusters().source().Url(m.source_db),
                                                       Clusters().target().Url(m.target_db)),
                                            "validate_test.yaml"));
  TS_ASSIGN_OR_RETURN(Cipher cipher, Cipher::FromBase64Key(kKey));
  TS_RETURN_IF_ERROR(BuildTarget(m.config, cipher));
  return m;
}

const CheckResult* Find(const ValidationReport& r, std::string_view check, std::string_view table,
                        std::string_view column = "") {
  for (const CheckResult& c : r.checks) {
    if (c.check == check && c.table == table && (column.empty() || c.column == column)) return &c;
  }
  return nullptr;
}

const RowDifference* FindRow(const CheckResult* c, std::string_view key) {
  if (!c) return nullptr;
  for (const RowDifference& d : c->rows) {
    if (d.key == key) return &d;
  }
  return nullptr;
}

std::string Dump(const ValidationReport& r) { return r.ToText(); }

// Runs SQL in the target database with FK triggers off, as the applier's replica role does.
Status InTarget(const Migration& m, const std::string& sql) {
  return Clusters().target().Exec(m.target_db,
                                  "SET session_replication_role = replica; " + sql);
}

// ---- A clean migration -------------------------------------------------------------------

TEST(Validate, CleanMigrationPassesEveryCheck) {
  ASSERT_OK_AND_ASSIGN(Migration m, Migrate("vclean"));
  ValidateOptions opt;
  opt.full = true;
  opt.json_path = std::filesystem::temp_directory_path() / "validate_clean.json";
  ASSERT_OK_AND_ASSIGN(ValidationReport report, validate::Validate(m.config, opt));
  EXPECT_EQ(report.ExitCode(), 0) << Dump(report);
  EXPECT_TRUE(report.passed()) << Dump(report);
  EXPECT_FALSE(report.live);  // no progress row: nothing streams

  // Every mapped table has its checks, under its target name; skipped tables have none.
  for (const std::string& t : RawdogTables()) {
    if (t == "esign_documents") continue;
    std::string target = t == "blog_posts" ? "articles" : t;
    SCOPED_TRACE(target);
    for (const char* check : {"schema", "count", "sample", "full"}) {
      const CheckResult* c = Find(report, check, target);
      ASSERT_NE(c, nullptr) << check << "\n" << Dump(report);
      EXPECT_EQ(c->status, CheckStatus::kPass) << check;
    }
  }
  EXPECT_EQ(Find(report, "count", "esign_documents"), nullptr);
  EXPECT_EQ(Find(report, "count", "blog_posts"), nullptr);

  // Counts are real numbers; sums exact; the cast column's sum is the engine's.
  const CheckResult* orders = Find(report, "count", "orders");
  ASSERT_NE(orders, nullptr);
  EXPECT_EQ(orders->source, orders->target);
  EXPECT_GT(std::stoll(orders->source), 1000);
  for (auto [table, column] : {std::pair{"orders", "total_cents"},
                               std::pair{"orders", "gross_sales_cents"},
                               std::pair{"balance_transactions", "amount_cents"}}) {
    const CheckResult* sum = Find(report, "sum", table, column);
    ASSERT_NE(sum, nullptr) << table << "." << column;
    EXPECT_EQ(sum->status, CheckStatus::kPass);
    EXPECT_NE(sum->source, "0");
  }
  // The FK of every child table was checked.
  const CheckResult* fk = Find(report, "fk", "line_items", "line_items_order_id_fkey");
  ASSERT_NE(fk, nullptr) << Dump(report);
  EXPECT_EQ(fk->target, "0 orphans");
  // The full diff says what it could not hash.
  const CheckResult* full = Find(report, "full", "customers");
  ASSERT_NE(full, nullptr);
  EXPECT_THAT(full->details, HasSubstr("email"));
  EXPECT_THAT(Find(report, "full", "orders")->details, HasSubstr("migrated_at"));
  // Without differences the data moved is aggregates, far less than the tables.
  EXPECT_LT(report.source_bytes + report.target_bytes, 4 << 20);

  std::ifstream json(opt.json_path);
  std::string text((std::istreambuf_iterator<char>(json)), {});
  EXPECT_THAT(text, HasSubstr("\"passed\": true"));
  EXPECT_THAT(text, HasSubstr("\"check\": \"full\""));
  std::filesystem::remove(opt.json_path);
}

TEST(Validate, TablesFilterAndBadNames) {
  ASSERT_OK_AND_ASSIGN(Migration m, Migrate("vfilter"));
  ValidateOptions opt;
  opt.tables = {"orders", "line_items"};
  ASSERT_OK_AND_ASSIGN(ValidationReport report, validate::Validate(m.config, opt));
  EXPECT_TRUE(report.passed()) << Dump(report);
  for (const CheckResult& c : report.checks) {
    EXPECT_THAT(c.table, ::testing::AnyOf("orders", "line_items")) << c.check;
  }
  EXPECT_NE(Find(report, "fk", "line_items", "line_items_order_id_fkey"), nullptr);

  opt.tables = {"nope"};
  EXPECT_THAT(validate::Validate(m.config, opt),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("'nope'")));

  Config bad = m.config;
  bad.target.schema = "tenant_missing";
  opt.tables = {};
  EXPECT_THAT(validate::Validate(bad, opt),
              StatusIs(StatusCode::kNotFound, HasSubstr("tenant_missing")));
}

// ---- Each injected divergence is found and named -------------------------------------------

TEST(Validate, FindsAndNamesEachInjectedDivergence) {
  ASSERT_OK_AND_ASSIGN(Migration m, Migrate("vdiv"));
  PgCluster& src = Clusters().source();
  // Pick rows to damage.
  ASSERT_OK_AND_ASSIGN(int64_t bt, src.QueryInt(m.source_db,
                                                "SELECT min(id) + 17 FROM balance_transactions"));
  ASSERT_OK_AND_ASSIGN(int64_t review, src.QueryInt(m.source_db, "SELECT max(id) - 3 FROM reviews"));
  ASSERT_OK_AND_ASSIGN(int64_t product, src.QueryInt(m.source_db, "SELECT max(id) FROM products"));
  ASSERT_OK_AND_ASSIGN(int64_t customer,
                       src.QueryInt(m.source_db, "SELECT min(id) + 5 FROM customers"));
  ASSERT_OK_AND_ASSIGN(int64_t item, src.QueryInt(m.source_db, "SELECT min(id) + 11 FROM line_items"));
  ASSERT_OK_AND_ASSIGN(int64_t creator, src.QueryInt(m.source_db,
                                                     "SELECT min(id) + 2 FROM creators WHERE "
                                                     "payout_email IS NOT NULL"));
  ASSERT_OK_AND_ASSIGN(int64_t order, src.QueryInt(m.source_db,
                                                   "SELECT min(id) FROM orders WHERE "
                                                   "gross_sales_cents ~ '^[0-9]+$'"));
  ASSERT_OK_AND_ASSIGN(Cipher cipher, Cipher::FromBase64Key(kKey));
  ASSERT_OK_AND_ASSIGN(std::string wrong_email,
                       cipher.Encrypt("mallory@example.com", "creators.payout_email"));

  // A changed amount, a missing row, an extra row, a changed text column, an orphaned line
  // item, a wrong encrypted value, a wrong cast value.
  ASSERT_OK(InTarget(m, "UPDATE tenant_rawdog.balance_transactions SET amount_cents = "
                        "amount_cents + 7 WHERE id = " + std::to_string(bt)));
  ASSERT_OK(InTarget(m, "DELETE FROM tenant_rawdog.reviews WHERE id = " + std::to_string(review)));
  ASSERT_OK(InTarget(m, "INSERT INTO tenant_rawdog.products SELECT id + 1000000, sku || '-x', "
                        "name, description, price_cents, currency, attributes, tags, "
                        "is_published, released_on, created_at, updated_at FROM "
                        "tenant_rawdog.products WHERE id = " + std::to_string(product)));
  ASSERT_OK(InTarget(m, "UPDATE tenant_rawdog.customers SET full_name = 'Eve Changed' WHERE id = " +
                            std::to_string(customer)));
  ASSERT_OK(InTarget(m, "UPDATE tenant_rawdog.line_items SET order_id = 999999999 WHERE id = " +
                            std::to_string(item)));
  ASSERT_OK(InTarget(m, "UPDATE tenant_rawdog.creators SET payout_email = " +
                            QuoteLiteral(wrong_email) + " WHERE id = " + std::to_string(creator)));
  ASSERT_OK(InTarget(m, "UPDATE tenant_rawdog.orders SET gross_sales_cents = gross_sales_cents "
                        "+ 1 WHERE id = " + std::to_string(order)));

  ValidateOptions opt;
  opt.full = true;
  opt.sample_size = 5000;  // samples cover the small tables whole (the encrypted column)
  ASSERT_OK_AND_ASSIGN(ValidationReport report, validate::Validate(m.config, opt));
  EXPECT_EQ(report.ExitCode(), 1) << Dump(report);
  if (getenv("VALIDATE_TEST_PRINT")) std::cout << Dump(report);

  // Changed amount: the sum check and the full diff, with the key and the column.
  const CheckResult* sum = Find(report, "sum", "balance_transactions", "amount_cents");
  ASSERT_NE(sum, nullptr);
  EXPECT_EQ(sum->status, CheckStatus::kFail);
  EXPECT_EQ(std::stoll(sum->target) - std::stoll(sum->source), 7);
  const RowDifference* d =
      FindRow(Find(report, "full", "balance_transactions"), "id=" + std::to_string(bt));
  ASSERT_NE(d, nullptr) << Dump(report);
  EXPECT_EQ(d->kind, RowDifference::Kind::kDifferent);
  EXPECT_THAT(d->columns, ::testing::ElementsAre("amount_cents"));

  // Missing row.
  EXPECT_EQ(Find(report, "count", "reviews")->status, CheckStatus::kFail);
  d = FindRow(Find(report, "full", "reviews"), "id=" + std::to_string(review));
  ASSERT_NE(d, nullptr) << Dump(report);
  EXPECT_EQ(d->kind, RowDifference::Kind::kMissing);

  // Extra row.
  EXPECT_EQ(Find(report, "count", "products")->status, CheckStatus::kFail);
  d = FindRow(Find(report, "full", "products"), "id=" + std::to_string(product + 1000000));
  ASSERT_NE(d, nullptr) << Dump(report);
  EXPECT_EQ(d->kind, RowDifference::Kind::kExtra);

  // Changed text column, with both values (not a secret column).
  d = FindRow(Find(report, "full", "customers"), "id=" + std::to_string(customer));
  ASSERT_NE(d, nullptr) << Dump(report);
  EXPECT_THAT(d->columns, ::testing::ElementsAre("full_name"));
  EXPECT_THAT(d->details, HasSubstr("Eve Changed"));
  EXPECT_EQ(Find(report, "count", "customers")->status, CheckStatus::kPass);

  // Orphaned line item: the FK check names it; the full diff names the column.
  const CheckResult* fk = Find(report, "fk", "line_items", "line_items_order_id_fkey");
  ASSERT_NE(fk, nullptr);
  EXPECT_EQ(fk->status, CheckStatus::kFail);
  EXPECT_EQ(fk->target, "1 orphans");
  ASSERT_EQ(fk->rows.size(), 1u);
  EXPECT_EQ(fk->rows[0].key, "id=" + std::to_string(item) + ",order_id=999999999");
  d = FindRow(Find(report, "full", "line_items"), "id=" + std::to_string(item));
  ASSERT_NE(d, nullptr);
  EXPECT_THAT(d->columns, ::testing::ElementsAre("order_id"));

  // Wrong encrypted value: found by the samples (decrypted and compared), and the report holds
  // neither plaintext.
  d = FindRow(Find(report, "sample", "creators"), "id=" + std::to_string(creator));
  ASSERT_NE(d, nullptr) << Dump(report);
  EXPECT_THAT(d->columns, ::testing::ElementsAre("payout_email"));
  EXPECT_THAT(report.ToJson(), ::testing::Not(HasSubstr("mallory")));
  ASSERT_OK_AND_ASSIGN(std::string real_email,
                       src.QueryValue(m.source_db, "SELECT payout_email FROM creators WHERE id = " +
                                                       std::to_string(creator)));
  EXPECT_THAT(report.ToJson(), ::testing::Not(HasSubstr(real_email)));
  EXPECT_THAT(report.ToText(), ::testing::Not(HasSubstr(real_email)));

  // Wrong value of a cast column: the full diff hashes the SQL form of the cast.
  d = FindRow(Find(report, "full", "orders"), "id=" + std::to_string(order));
  ASSERT_NE(d, nullptr) << Dump(report);
  EXPECT_THAT(d->columns, ::testing::ElementsAre("gross_sales_cents"));
  EXPECT_EQ(Find(report, "sum", "orders", "gross_sales_cents")->status, CheckStatus::kFail);

  // Untouched tables still pass.
  EXPECT_EQ(Find(report, "full", "ab_tests")->status, CheckStatus::kPass);
  EXPECT_EQ(Find(report, "full", "articles")->status, CheckStatus::kPass);
  EXPECT_EQ(Find(report, "full", "attribution_touchpoints")->status, CheckStatus::kPass);
}

TEST(Validate, KeylessTableDifferencesAreFoundByCtid) {
  ASSERT_OK_AND_ASSIGN(Migration m, Migrate("vkeyless"));
  // One row changed, and a duplicate row more in the target.
  ASSERT_OK(InTarget(m, "UPDATE tenant_rawdog.attribution_touchpoints SET weight = 0.123 WHERE "
                        "ctid = '(0,2)'"));
  ASSERT_OK(InTarget(m, "INSERT INTO tenant_rawdog.attribution_touchpoints SELECT * FROM "
                        "tenant_rawdog.attribution_touchpoints WHERE ctid = '(0,1)'"));
  ValidateOptions opt;
  opt.full = true;
  opt.tables = {"attribution_touchpoints"};
  ASSERT_OK_AND_ASSIGN(ValidationReport report, validate::Validate(m.config, opt));
  const CheckResult* full = Find(report, "full", "attribution_touchpoints");
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(full->status, CheckStatus::kFail) << Dump(report);
  int extra = 0;
  for (const RowDifference& d : full->rows) {
    EXPECT_THAT(d.key, ::testing::StartsWith("ctid=("));
    EXPECT_THAT(d.details, HasSubstr("copies in the source"));
    extra += d.kind == RowDifference::Kind::kExtra;
  }
  // The duplicate and the changed row's new version (the old version is missing, unless the
  // fixture made it an exact duplicate of another row).
  EXPECT_GE(extra, 1) << Dump(report);
  EXPECT_GE(full->rows.size(), 2u) << Dump(report);
  EXPECT_EQ(Find(report, "count", "attribution_touchpoints")->status, CheckStatus::kFail);
}


// ---- Live-safe: a lagging target under a running workload -------------------------------------

// A stand-in for the pipeline: Writer runs small transactions on the source, one at a time, and
// queues each with the source LSN read after its commit; Replayer applies each one `lag` later to
// the target, with the progress row update in the same transaction (invariant 3), in order.
class LaggingPipeline {
 public:
  LaggingPipeline(const Migration& m, std::chrono::milliseconds lag) : m_(m), lag_(lag) {}
  ~LaggingPipeline() { Stop(); }

  Status Start() {
    PgCluster& src = Clusters().source();
    TS_ASSIGN_OR_RETURN(order_min_, src.QueryInt(m_.source_db, "SELECT min(id) FROM orders"));
    TS_ASSIGN_OR_RETURN(customer_min_, src.QueryInt(m_.source_db, "SELECT min(id) FROM customers"));
    TS_ASSIGN_OR_RETURN(creator_min_, src.QueryInt(m_.source_db, "SELECT min(id) FROM creators"));
    TS_ASSIGN_OR_RETURN(item_min_, src.QueryInt(m_.source_db, "SELECT min(id) FROM line_items"));
    TS_ASSIGN_OR_RETURN(next_bt_, src.QueryInt(m_.source_db,
                                               "SELECT max(id) + 1000 FROM balance_transactions"));
    TS_ASSIGN_OR_RETURN(std::string lsn, src.QueryValue(m_.source_db, "SELECT pg_current_wal_lsn()"));
    TS_RETURN_IF_ERROR(Clusters().target().Exec(
        m_.target_db,
        "CREATE SCHEMA _tenantsync; CREATE TABLE _tenantsync.progress (pipeline text PRIMARY KEY, "
        "applied_lsn pg_lsn NOT NULL, commit_time timestamptz, updated_at timestamptz); "
        "INSERT INTO _tenantsync.progress VALUES ('rawdog', '" + lsn + "', now(), now())"));
    TS_ASSIGN_OR_RETURN(source_, Clusters().source().Connect(m_.source_db));
    TS_ASSIGN_OR_RETURN(target_, Clusters().target().Connect(m_.target_db));
    writer_ = std::thread([this] { Record(WriterLoop()); });
    replayer_ = std::thread([this] { Record(ReplayerLoop()); });
    return Status::Ok();
  }

  void Stop() {
    stop_ = true;
    if (writer_.joinable()) writer_.join();
    if (replayer_.joinable()) replayer_.join();
  }
  Status status() {
    std::lock_guard<std::mutex> l(mu_);
    return status_;
  }
  int64_t committed() const { return committed_; }

 private:
  struct Txn {
    std::string sql;  // with {S} for the schema
    std::string lsn;
    std::chrono::steady_clock::time_point at;
  };

  static std::string ForSchema(std::string sql, const std::string& schema) {
    for (size_t p; (p = sql.find("{S}")) != std::string::npos;) sql.replace(p, 3, schema);
    return sql;
  }

  void Record(Status s) {
    if (s.ok()) return;
    std::lock_guard<std::mutex> l(mu_);
    if (status_.ok()) status_ = s;
  }

  Status WriterLoop() {
    std::mt19937_64 rng(99);
    while (!stop_) {
      std::string sql;
      int n = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < n; ++i) {
        switch (rng() % 4) {
          case 0:  // hot orders: the first 300
            sql += "UPDATE {S}.orders SET total_cents = total_cents + 1 WHERE id = " +
                   std::to_string(order_min_ + static_cast<int64_t>(rng() % 300)) + ";";
            break;
          case 1:
            sql += "INSERT INTO {S}.balance_transactions (id, creator_id, kind, amount_cents, "
                   "currency, occurred_at) VALUES (" + std::to_string(next_bt_++) + ", " +
                   std::to_string(creator_min_ + static_cast<int64_t>(rng() % 50)) +
                   ", 'sale', " + std::to_string(rng() % 10000) +
                   ", 'USD', '2026-01-02 03:04:05+00');";
            break;
          case 2:
            sql += "DELETE FROM {S}.line_items WHERE id = " +
                   std::to_string(item_min_ + static_cast<int64_t>(rng() % 6000)) + ";";
            break;
          default:
            sql += "UPDATE {S}.customers SET full_name = 'Live " + std::to_string(rng() % 1000) +
                   "' WHERE id = " + std::to_string(customer_min_ + static_cast<int64_t>(rng() % 100)) +
                   ";";
        }
      }
      TS_RETURN_IF_ERROR(source_.Run("BEGIN;" + ForSchema(sql, "public") + "COMMIT"));
      TS_ASSIGN_OR_RETURN(PgResult r, source_.Exec("SELECT pg_current_wal_lsn()::text"));
      {
        std::lock_guard<std::mutex> l(mu_);
        queue_.push_back({sql, std::string(r.Get(0, 0)), std::chrono::steady_clock::now()});
      }
      ++committed_;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return Status::Ok();
  }

  Status ReplayerLoop() {
    while (true) {
      std::optional<Txn> next;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (!queue_.empty() && queue_.front().at + lag_ <= std::chrono::steady_clock::now()) {
          next = queue_.front();
          queue_.pop_front();
        } else if (stop_ && queue_.empty()) {
          return Status::Ok();
        }
      }
      if (!next) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      TS_RETURN_IF_ERROR(target_.Run(
          "BEGIN;" + ForSchema(next->sql, "tenant_rawdog") +
          "UPDATE _tenantsync.progress SET applied_lsn = '" + next->lsn +
          "', updated_at = now() WHERE pipeline = 'rawdog'; COMMIT"));
    }
  }

  const Migration& m_;
  std::chrono::milliseconds lag_;
  int64_t order_min_ = 0, customer_min_ = 0, creator_min_ = 0, item_min_ = 0, next_bt_ = 0;
  PgConn source_, target_;
  std::mutex mu_;
  std::deque<Txn> queue_;
  Status status_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> committed_{0};
  std::thread writer_, replayer_;
};

TEST(ValidateLive, NoFalseAlarmsUnderLoadAndARealDivergenceIsFound) {
  ASSERT_OK_AND_ASSIGN(Migration m, Migrate("vlive"));
  LaggingPipeline pipeline(m, std::chrono::milliseconds(700));
  ASSERT_OK(pipeline.Start());
  std::this_thread::sleep_for(std::chrono::seconds(2));

  // Without rechecks the lag shows up as differences: the load and the lag are real.
  ValidateOptions naive;
  naive.tables = {"balance_transactions", "orders", "customers", "line_items"};
  naive.samples = false;
  naive.live.enabled = false;
  ASSERT_OK_AND_ASSIGN(ValidationReport lagging, validate::Validate(m.config, naive));
  EXPECT_GT(lagging.failures(), 0) << Dump(lagging);

  // With rechecks: the full diff under the same load reports nothing false.
  ValidateOptions opt;
  opt.full = true;
  opt.sample_size = 300;
  opt.live.timeout_seconds = 30;
  ASSERT_OK_AND_ASSIGN(ValidationReport clean, validate::Validate(m.config, opt));
  EXPECT_TRUE(clean.live);
  EXPECT_EQ(clean.failures(), 0) << Dump(clean);
  if (getenv("VALIDATE_TEST_PRINT")) std::cout << Dump(clean);
  for (const char* t : {"orders", "line_items", "customers", "balance_transactions"}) {
    EXPECT_NE(Find(clean, "full", t)->status, CheckStatus::kFail) << t;
  }

  // A real divergence, written straight into the target on a row the workload does not touch
  // (in a table it does touch), is found and named while the load goes on.
  ASSERT_OK_AND_ASSIGN(int64_t cold, Clusters().source().QueryInt(
                                         m.source_db, "SELECT min(id) + 1500 FROM orders"));
  ASSERT_OK(InTarget(m, "UPDATE tenant_rawdog.orders SET total_cents = total_cents + 100 "
                        "WHERE id = " + std::to_string(cold)));
  ASSERT_OK_AND_ASSIGN(ValidationReport found, validate::Validate(m.config, opt));
  if (getenv("VALIDATE_TEST_PRINT")) std::cout << Dump(found);
  const CheckResult* full = Find(found, "full", "orders");
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(full->status, CheckStatus::kFail) << Dump(found);
  const RowDifference* d = FindRow(full, "id=" + std::to_string(cold));
  ASSERT_NE(d, nullptr) << Dump(found);
  EXPECT_EQ(d->kind, RowDifference::Kind::kDifferent);
  EXPECT_THAT(d->columns, ::testing::ElementsAre("total_cents"));
  // Nothing else is reported as failed: only checks that see that row or its table's sum.
  for (const CheckResult& c : found.checks) {
    if (c.status != CheckStatus::kFail) continue;
    EXPECT_EQ(c.table, "orders") << c.check << " " << c.details;
    EXPECT_THAT(c.check, ::testing::AnyOf("full", "sum", "sample")) << c.details;
    for (const RowDifference& r : c.rows) EXPECT_EQ(r.key, "id=" + std::to_string(cold));
  }

  pipeline.Stop();
  ASSERT_OK(pipeline.status());
  EXPECT_GT(pipeline.committed(), 100);
}

}  // namespace
}  // namespace tenantsync::testing
