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

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using validate::CheckResult;
using validate::CheckStatus;
using validate::RowDifference;
using validate::ValidateOptions;
using validate::ValidationReport;

constexpr char kKey[] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";  // 32 bytes, base64

// `extra_tables`: more entries under `tables:` (indented two spaces), e.g. relations.
std::string ConfigYaml(const std::string& source_url, const std::string& target_url,
                       const std::string& extra_tables = "") {
  // clang-format off
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
         "  esign_documents: {skip: true}\n" +
         extra_tables;
  // clang-format on
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

// The config of `m` with `extra_tables` added under `tables:`.
StatusOr<Config> ConfigWith(const Migration& m, const std::string& extra_tables) {
  return ParseConfig(ConfigYaml(Clusters().source().Url(m.source_db),
                                Clusters().target().Url(m.target_db), extra_tables),
                     "validate_test.yaml");
}

StatusOr<Migration> Migrate(std::string_view prefix, int scale = 1,
                            const std::string& extra_tables = "") {
  Migration m;
  TS_ASSIGN_OR_RETURN(m.source_db, Clusters().source().CreateDatabase(prefix));
  TS_ASSIGN_OR_RETURN(m.target_db, Clusters().target().CreateDatabase(prefix));
  TS_RETURN_IF_ERROR(LoadRawdog(Clusters().source().Url(m.source_db), scale, 7));
  TS_ASSIGN_OR_RETURN(m.config, ConfigWith(m, extra_tables));
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

// Rows of the keyless table attribution_touchpoints that have no exact duplicate in the source,
// chosen by content (never by physical position, which the loader and the target build are free
// to change): the source ctid of each and a predicate that matches exactly that row in the
// source and in its (untransformed) target copy.
struct KeylessRow {
  std::string source_ctid;
  std::string match;                  // SQL predicate over the table's columns
  std::string order_id, customer_id;  // as text; empty when NULL
};

StatusOr<std::vector<KeylessRow>> UniqueTouchpoints(const Migration& m, const std::string& where,
                                                    int n) {
  static const std::vector<std::pair<std::string, std::string>> kColumns = {
      {"customer_id", "bigint"},
      {"order_id", "bigint"},
      {"channel", "text"},
      {"utm", "jsonb"},
      {"weight", "double precision"},
      {"session_id", "uuid"},
      {"touched_at", "timestamptz"}};
  std::string cols, texts;
  for (const auto& [c, type] : kColumns) {
    cols += (cols.empty() ? "" : ", ") + c;
    texts += ", " + c + "::text";
  }
  TS_ASSIGN_OR_RETURN(PgConn src, Clusters().source().Connect(m.source_db));
  TS_RETURN_IF_ERROR(src.Run("SET TimeZone = 'UTC'; SET extra_float_digits = 3"));
  // Ordered by content, so the same rows are picked on every run.
  TS_ASSIGN_OR_RETURN(PgResult r, src.Exec("SELECT (array_agg(ctid))[1]::text" + texts +
                                           " FROM attribution_touchpoints GROUP BY " + cols +
                                           " HAVING count(*) = 1 AND " + where + " ORDER BY " +
                                           cols + " LIMIT " + std::to_string(n)));
  if (r.rows() < n) return NotFound("fewer than " + std::to_string(n) + " unique touchpoints");
  std::vector<KeylessRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    KeylessRow row;
    row.source_ctid = std::string(r.Get(i, 0));
    for (size_t c = 0; c < kColumns.size(); ++c) {
      const auto& [name, type] = kColumns[c];
      int col = 1 + static_cast<int>(c);
      std::string value = r.IsNull(i, col) ? "NULL" : QuoteLiteral(std::string(r.Get(i, col)));
      row.match += (c ? " AND " : "") + name + " IS NOT DISTINCT FROM " + value + "::" + type;
      if (name == "order_id" && !r.IsNull(i, col)) row.order_id = std::string(r.Get(i, col));
      if (name == "customer_id" && !r.IsNull(i, col)) row.customer_id = std::string(r.Get(i, col));
    }
    out.push_back(std::move(row));
  }
  return out;
}

// Runs `sql` (an UPDATE/INSERT ... RETURNING ctid::text) in the target with FK triggers off and
// returns the ctids it touched.
StatusOr<std::vector<std::string>> ReturningCtids(const Migration& m, const std::string& sql) {
  TS_ASSIGN_OR_RETURN(PgConn tgt, Clusters().target().Connect(m.target_db));
  TS_RETURN_IF_ERROR(tgt.Run("SET session_replication_role = replica"));
  TS_ASSIGN_OR_RETURN(PgResult r, tgt.Exec(sql));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Get(i, 0));
  return out;
}

// Was dependent on the physical layout: it changed the row at ctid (0,2) and duplicated (0,1),
// which is only the intended divergence while the fixture loads in one ordered COPY, the target
// is built in source scan order, and those two rows are distinct, unique and not already at the
// new value. Now the rows are picked by content, and the outcome is asserted exactly.
TEST(Validate, KeylessTableDifferencesAreFoundByCtid) {
  ASSERT_OK_AND_ASSIGN(Migration m, Migrate("vkeyless"));
  ASSERT_OK_AND_ASSIGN(auto rows, UniqueTouchpoints(m, "weight <> 0.123", 2));
  const KeylessRow& changed = rows[0];
  const KeylessRow& doubled = rows[1];
  // One row changed, and a duplicate of another unique row more in the target.
  ASSERT_OK_AND_ASSIGN(auto changed_ctids,
                       ReturningCtids(m,
                                      "UPDATE tenant_rawdog.attribution_touchpoints SET "
                                      "weight = 0.123 WHERE " +
                                          changed.match + " RETURNING ctid::text"));
  ASSERT_EQ(changed_ctids.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto copy_ctids,
                       ReturningCtids(m,
                                      "INSERT INTO tenant_rawdog.attribution_touchpoints "
                                      "SELECT * FROM tenant_rawdog.attribution_touchpoints "
                                      "WHERE " +
                                          doubled.match + " RETURNING ctid::text"));
  ASSERT_EQ(copy_ctids.size(), 1u);
  ASSERT_OK_AND_ASSIGN(
      std::string original_ctid,
      Clusters().target().QueryValue(m.target_db,
                                     "SELECT ctid::text FROM tenant_rawdog."
                                     "attribution_touchpoints WHERE " +
                                         doubled.match + " AND ctid <> '" + copy_ctids[0] + "'"));

  ValidateOptions opt;
  opt.full = true;
  opt.samples = false;  // KeylessSamplesFindAChangedValue covers them
  opt.tables = {"attribution_touchpoints"};
  ASSERT_OK_AND_ASSIGN(ValidationReport report, validate::Validate(m.config, opt));
  const CheckResult* full = Find(report, "full", "attribution_touchpoints");
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(full->status, CheckStatus::kFail) << Dump(report);
  // Exactly three row hashes differ: the changed row's old version (missing, named by its source
  // ctid), its new version (extra, named by its target ctid), and the doubled row (extra, named
  // by either target copy).
  ASSERT_EQ(full->rows.size(), 3u) << Dump(report);
  EXPECT_EQ(full->rows_total, 3);
  int missing = 0, extra_new = 0, extra_copy = 0;
  for (const RowDifference& d : full->rows) {
    if (d.kind == RowDifference::Kind::kMissing) {
      ++missing;
      EXPECT_EQ(d.key, "ctid=" + changed.source_ctid);
      EXPECT_THAT(d.details, HasSubstr("1 copies in the source, 0 in the target"));
    } else if (d.key == "ctid=" + changed_ctids[0]) {
      ++extra_new;
      EXPECT_EQ(d.kind, RowDifference::Kind::kExtra);
      EXPECT_THAT(d.details, HasSubstr("0 copies in the source, 1 in the target"));
    } else {
      ++extra_copy;
      EXPECT_EQ(d.kind, RowDifference::Kind::kExtra);
      EXPECT_THAT(d.key, ::testing::AnyOf("ctid=" + copy_ctids[0], "ctid=" + original_ctid));
      EXPECT_THAT(d.details, HasSubstr("1 copies in the source, 2 in the target"));
    }
  }
  EXPECT_EQ(missing, 1) << Dump(report);
  EXPECT_EQ(extra_new, 1) << Dump(report);
  EXPECT_EQ(extra_copy, 1) << Dump(report);
  const CheckResult* count = Find(report, "count", "attribution_touchpoints");
  ASSERT_NE(count, nullptr);
  EXPECT_EQ(count->status, CheckStatus::kFail);
  EXPECT_EQ(std::stoll(count->target) - std::stoll(count->source), 1);
}

TEST(Validate, KeylessSamplesFindAChangedValue) {
  ASSERT_OK_AND_ASSIGN(Migration m, Migrate("vksample"));
  ValidateOptions opt;
  opt.tables = {"attribution_touchpoints"};
  opt.sample_size = 5000;  // more than the table: every row is sampled, so the change is too
  opt.counts = opt.sums = opt.fks = opt.schema = false;

  // Clean: every distinct row has as many copies on both sides (the fixture's exact duplicates
  // included).
  ASSERT_OK_AND_ASSIGN(ValidationReport clean, validate::Validate(m.config, opt));
  const CheckResult* sample = Find(clean, "sample", "attribution_touchpoints");
  ASSERT_NE(sample, nullptr) << Dump(clean);
  EXPECT_EQ(sample->status, CheckStatus::kPass) << Dump(clean);
  ASSERT_OK_AND_ASSIGN(int64_t distinct,
                       Clusters().source().QueryInt(m.source_db,
                                                    "SELECT count(*) FROM (SELECT DISTINCT * FROM "
                                                    "attribution_touchpoints) d"));
  ASSERT_OK_AND_ASSIGN(int64_t total, Clusters().source().QueryInt(m.source_db,
                                                                   "SELECT count(*) FROM "
                                                                   "attribution_touchpoints"));
  ASSERT_LT(distinct, total);  // the fixture holds exact duplicates
  EXPECT_EQ(sample->source, std::to_string(distinct) + " rows");
  EXPECT_EQ(sample->target, std::to_string(distinct) + " match");
  EXPECT_TRUE(clean.passed()) << Dump(clean);

  // One value of one row changed in the target.
  ASSERT_OK_AND_ASSIGN(auto rows, UniqueTouchpoints(m, "weight <> 0.123", 1));
  ASSERT_OK_AND_ASSIGN(auto ctids, ReturningCtids(m,
                                                  "UPDATE tenant_rawdog.attribution_touchpoints "
                                                  "SET weight = 0.123 WHERE " +
                                                      rows[0].match + " RETURNING ctid::text"));
  ASSERT_EQ(ctids.size(), 1u);
  ASSERT_OK_AND_ASSIGN(ValidationReport found, validate::Validate(m.config, opt));
  EXPECT_EQ(found.ExitCode(), 1) << Dump(found);
  sample = Find(found, "sample", "attribution_touchpoints");
  ASSERT_NE(sample, nullptr);
  EXPECT_EQ(sample->status, CheckStatus::kFail) << Dump(found);
  ASSERT_EQ(sample->rows.size(), 1u) << Dump(found);
  EXPECT_EQ(sample->rows[0].kind, RowDifference::Kind::kMissing);
  EXPECT_EQ(sample->rows[0].key, "ctid=" + rows[0].source_ctid);
  EXPECT_THAT(sample->rows[0].details, HasSubstr("1 copies in the source, 0 in the target"));
  EXPECT_EQ(sample->target, std::to_string(distinct - 1) + " match");
}

// A keyless table with an encrypted column: a change confined to the ciphertext is outside the
// row hash, so the sample finds the row by hash and the engine names the column.
TEST(Validate, KeylessSamplesNameAnUnhashedColumn) {
  ASSERT_OK_AND_ASSIGN(
      Migration m,
      Migrate("vksenc", 1,
              "  attribution_touchpoints:\n    columns: {channel: {encrypt: true}}\n"));
  ValidateOptions opt;
  opt.tables = {"attribution_touchpoints"};
  opt.sample_size = 5000;
  opt.counts = opt.sums = opt.fks = opt.schema = false;
  ASSERT_OK_AND_ASSIGN(ValidationReport clean, validate::Validate(m.config, opt));
  EXPECT_TRUE(clean.passed()) << Dump(clean);

  ASSERT_OK_AND_ASSIGN(auto rows, UniqueTouchpoints(m, "true", 1));
  ASSERT_OK_AND_ASSIGN(Cipher cipher, Cipher::FromBase64Key(kKey));
  ASSERT_OK_AND_ASSIGN(std::string wrong,
                       cipher.Encrypt("carrier_pigeon", "attribution_touchpoints.channel"));
  // The target's channel is ciphertext: match the row on the other columns.
  std::string match = rows[0].match;
  size_t at = match.find(" AND channel IS NOT DISTINCT FROM ");
  ASSERT_NE(at, std::string::npos);
  size_t next = match.find(" AND ", at + 5);
  match.erase(at, next - at);
  ASSERT_OK_AND_ASSIGN(auto ctids, ReturningCtids(m,
                                                  "UPDATE tenant_rawdog.attribution_touchpoints "
                                                  "SET channel = " +
                                                      QuoteLiteral(wrong) + " WHERE " + match +
                                                      " RETURNING ctid::text"));
  ASSERT_EQ(ctids.size(), 1u);
  ASSERT_OK_AND_ASSIGN(ValidationReport found, validate::Validate(m.config, opt));
  const CheckResult* sample = Find(found, "sample", "attribution_touchpoints");
  ASSERT_NE(sample, nullptr);
  ASSERT_EQ(sample->rows.size(), 1u) << Dump(found);
  EXPECT_EQ(sample->rows[0].kind, RowDifference::Kind::kDifferent);
  EXPECT_EQ(sample->rows[0].key, "ctid=" + rows[0].source_ctid);
  EXPECT_THAT(sample->rows[0].columns, ::testing::ElementsAre("channel"));
  EXPECT_THAT(found.ToJson(), ::testing::Not(HasSubstr("carrier_pigeon")));
}

// ---- Declared logical relations (tables.<t>.relations) ----------------------------------------

constexpr char kRelations[] =
    "  attribution_touchpoints:\n"
    "    relations:\n"
    "      touchpoint_order_customer: {columns: [order_id, customer_id], references: orders,\n"
    "                                  ref_columns: [id, customer_id]}\n"
    "  line_items:\n"
    "    relations:\n"
    "      item_order: {columns: [order_id], references: \"${VALIDATE_TEST_PARENT:-orders}\"}\n"
    "  reviews:\n"
    "    relations:\n"
    "      review_product: {columns: [product_id], references: products}\n";

TEST(Validate, DeclaredRelationsAreCheckedForOrphans) {
  ASSERT_OK_AND_ASSIGN(Migration m, Migrate("vrel", 1, kRelations));
  // The new platform has no constraint for line_items.order_id (nor ever one for a touchpoint's
  // order and customer together: orders has no unique (id, customer_id)).
  ASSERT_OK(InTarget(m,
                     "ALTER TABLE tenant_rawdog.line_items DROP CONSTRAINT "
                     "line_items_order_id_fkey"));
  ValidateOptions opt;
  opt.counts = opt.sums = opt.samples = opt.schema = false;
  ASSERT_OK_AND_ASSIGN(ValidationReport clean, validate::Validate(m.config, opt));
  EXPECT_EQ(clean.ExitCode(), 0) << Dump(clean);
  const CheckResult* pair =
      Find(clean, "fk", "attribution_touchpoints", "touchpoint_order_customer");
  ASSERT_NE(pair, nullptr) << Dump(clean);
  EXPECT_EQ(pair->status, CheckStatus::kPass);
  EXPECT_EQ(pair->target, "0 orphans");
  EXPECT_THAT(pair->details,
              AllOf(HasSubstr("attribution_touchpoints(order_id,customer_id) -> orders"),
                    HasSubstr("declared as tables.attribution_touchpoints.relations."
                              "touchpoint_order_customer")));
  const CheckResult* item = Find(clean, "fk", "line_items", "item_order");
  ASSERT_NE(item, nullptr) << Dump(clean);
  EXPECT_EQ(item->status, CheckStatus::kPass);
  EXPECT_EQ(Find(clean, "fk", "line_items", "line_items_order_id_fkey"), nullptr);
  // A relation the target has a constraint for is checked once, as the constraint.
  EXPECT_EQ(Find(clean, "fk", "reviews", "review_product"), nullptr) << Dump(clean);
  const CheckResult* constraint = Find(clean, "fk", "reviews", "reviews_product_id_fkey");
  ASSERT_NE(constraint, nullptr);
  EXPECT_THAT(constraint->details, HasSubstr("also declared as tables.reviews.relations."
                                             "review_product"));

  // Orphans: a line item whose order is gone, a touchpoint whose customer is not its order's.
  ASSERT_OK_AND_ASSIGN(int64_t item_id, Clusters().source().QueryInt(
                                            m.source_db, "SELECT min(id) + 11 FROM line_items"));
  ASSERT_OK(InTarget(m, "UPDATE tenant_rawdog.line_items SET order_id = 999999999 WHERE id = " +
                            std::to_string(item_id)));
  ASSERT_OK_AND_ASSIGN(auto touch, UniqueTouchpoints(m,
                                                     "order_id IS NOT NULL AND customer_id "
                                                     "IS NOT NULL",
                                                     1));
  ASSERT_OK_AND_ASSIGN(auto ctids, ReturningCtids(m,
                                                  "UPDATE tenant_rawdog.attribution_touchpoints "
                                                  "SET customer_id = customer_id + 1 WHERE " +
                                                      touch[0].match + " RETURNING ctid::text"));
  ASSERT_EQ(ctids.size(), 1u);
  ASSERT_OK_AND_ASSIGN(ValidationReport found, validate::Validate(m.config, opt));
  EXPECT_EQ(found.ExitCode(), 1) << Dump(found);
  item = Find(found, "fk", "line_items", "item_order");
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(item->status, CheckStatus::kFail);
  EXPECT_EQ(item->target, "1 orphans");
  ASSERT_EQ(item->rows.size(), 1u);
  EXPECT_EQ(item->rows[0].kind, RowDifference::Kind::kOrphan);
  EXPECT_EQ(item->rows[0].key, "id=" + std::to_string(item_id) + ",order_id=999999999");
  pair = Find(found, "fk", "attribution_touchpoints", "touchpoint_order_customer");
  ASSERT_NE(pair, nullptr);
  EXPECT_EQ(pair->status, CheckStatus::kFail);
  ASSERT_EQ(pair->rows.size(), 1u) << Dump(found);
  EXPECT_EQ(pair->rows[0].key, "order_id=" + touch[0].order_id + ",customer_id=" +
                                   std::to_string(std::stoll(touch[0].customer_id) + 1));
  EXPECT_THAT(Dump(found), HasSubstr("item_order"));
  // The relation that duplicates a constraint is still checked once, and passes.
  EXPECT_EQ(Find(found, "fk", "reviews", "reviews_product_id_fkey")->status, CheckStatus::kPass);
}

TEST(Validate, DeclaredRelationsWithUnknownNamesAreOneLineErrors) {
  ASSERT_OK_AND_ASSIGN(Migration m, Migrate("vrelbad"));
  ValidateOptions opt;
  auto error = [&](const std::string& extra) -> Status {
    StatusOr<Config> c = ConfigWith(m, extra);
    if (!c.ok()) return c.status();
    StatusOr<ValidationReport> r = validate::Validate(*c, opt);
    if (r.ok()) return Fatal("validate accepted the relation:\n" + r->ToText());
    EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("\n")));
    EXPECT_THAT(r.status().message(), ::testing::StartsWith("validate_test.yaml: tables."));
    return r.status();
  };
  EXPECT_THAT(error("  line_items: {relations: {r: {columns: [order_id], references: nope}}}\n"),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("tables.line_items.relations.r.references: 'nope' is not a table "
                                 "of public in the source")));
  EXPECT_THAT(
      error("  line_items: {relations: {r: {columns: [order_id], references: articles}}}\n"),
      StatusIs(StatusCode::kInvalidArgument,
               HasSubstr("articles is the target name of blog_posts")));
  EXPECT_THAT(error("  line_items: {relations: {r: {columns: [order_nr], references: orders}}}\n"),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("tables.line_items.relations.r.columns: line_items has no "
                                 "column 'order_nr' in the source")));
  EXPECT_THAT(error("  line_items: {relations: {r: {columns: [order_id], references: orders, "
                    "ref_columns: [order_id]}}}\n"),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("relations.r.ref_columns: orders has no column 'order_id'")));
  EXPECT_THAT(error("  nope_table: {relations: {r: {columns: [a], references: orders}}}\n"),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("tables.nope_table: 'nope_table' is not a table of public")));
  EXPECT_THAT(error("  reviews: {relations: {r: {columns: [customer_id], references: "
                    "attribution_touchpoints}}}\n"),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("attribution_touchpoints has no primary key in the source; give "
                                 "ref_columns")));
  EXPECT_THAT(error("  creator_projects: {relations: {r: {columns: [creator_id, title], "
                    "references: creators}}}\n"),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("has 2 columns but creators's primary key has 1 (id)")));
  // Encrypted columns: ciphertexts of two columns never match.
  EXPECT_THAT(error("  withdrawal_requests: {relations: {r: {columns: [creator_id], references: "
                    "creators, ref_columns: [payout_email]}}}\n"),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("creators.payout_email is encrypted in the target")));
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
