#include "tests/harness/table_compare.h"

#include <libpq-fe.h>

#include <cstdlib>

#include "apply/internal/sql_builder.h"
#include "core/transform.h"

namespace tenantsync::testing {

namespace {

// "" when equal, else what differs.
std::string CompareTable(PgConn* src, PgConn* tgt, const Config& config, const Cipher* cipher,
                         const std::string& table, int64_t* rows_compared) {
  auto cols = src->ExecParams(
      "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
      "coalesce(a.attnum = ANY (i.indkey), false) FROM pg_attribute a "
      "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
      "WHERE a.attrelid = (quote_ident($2) || '.' || quote_ident($1))::regclass "
      "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
      {table, config.source.schema});
  if (!cols.ok()) return cols.status().ToString();
  std::vector<SourceColumn> source_columns;
  std::string select;
  for (int i = 0; i < cols->rows(); ++i) {
    source_columns.push_back(
        {std::string(cols->Get(i, 0)), std::string(cols->Get(i, 1)), cols->Get(i, 2) == "t"});
    select += (i ? ", " : "") + QuoteIdent(cols->Get(i, 0));
  }
  auto transform = TableTransform::Build(table, config.FindTable(table), source_columns, cipher);
  if (!transform.ok()) return transform.status().ToString();
  std::vector<int> compared;  // target columns fed by the source (`value: now` is not compared)
  std::string target_cols;
  for (size_t i = 0; i < transform->target_columns().size(); ++i) {
    if (transform->target_columns()[i].source_index < 0) continue;
    compared.push_back(static_cast<int>(i));
    target_cols +=
        (target_cols.empty() ? "" : ", ") + QuoteIdent(transform->target_columns()[i].name);
  }
  std::string qualified = QuoteQualified(config.target.schema, config.TargetTable(table));
  auto rows = src->Exec("SELECT " + select + " FROM " + QuoteQualified(config.source.schema, table));
  if (!rows.ok()) return rows.status().ToString();
  Status s = tgt->Run(
      "SET client_min_messages = warning; DROP TABLE IF EXISTS pg_temp.expected; "
      "CREATE TEMP TABLE expected AS SELECT " +
      target_cols + " FROM " + qualified + " WITH NO DATA");
  if (!s.ok()) return s.ToString();
  auto copy = tgt->Exec("COPY expected FROM STDIN");
  if (!copy.ok()) return copy.status().ToString();
  TransformContext ctx;
  ctx.now = "2000-01-01 00:00:00+00";
  std::string buf;
  for (int r = 0; r < rows->rows(); ++r) {
    Tuple in, out;
    for (int c = 0; c < rows->columns(); ++c) {
      in.push_back(rows->IsNull(r, c) ? Datum::Null() : Datum::Text(std::string(rows->Get(r, c))));
    }
    Status ts = transform->Apply(in, &out, ctx);
    if (!ts.ok()) return "transform: " + ts.ToString();
    for (size_t k = 0; k < compared.size(); ++k) {
      if (k) buf += '\t';
      apply::internal::AppendCopyText(out[compared[k]], &buf);
    }
    buf += '\n';
  }
  if (PQputCopyData(tgt->get(), buf.data(), static_cast<int>(buf.size())) != 1 ||
      PQputCopyEnd(tgt->get(), nullptr) != 1) {
    return "COPY failed: " + tgt->LastError();
  }
  for (;;) {
    PgResult r(PQgetResult(tgt->get()));
    if (!r.get()) break;
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return "COPY failed: " + tgt->LastError();
  }
  auto diff = tgt->Exec(
      "SELECT (SELECT count(*) FROM (SELECT * FROM expected EXCEPT ALL SELECT " + target_cols +
      " FROM " + qualified + ") a), (SELECT count(*) FROM (SELECT " + target_cols + " FROM " +
      qualified + " EXCEPT ALL SELECT * FROM expected) b), (SELECT count(*) FROM expected)");
  if (!diff.ok()) return diff.status().ToString();
  std::string missing(diff->Get(0, 0)), extra(diff->Get(0, 1));
  *rows_compared += std::atoll(std::string(diff->Get(0, 2)).c_str());
  if (missing == "0" && extra == "0") return "";
  return missing + " of " + std::string(diff->Get(0, 2)) +
         " source rows missing or different in the target, " + extra + " extra target rows";
}

}  // namespace

TableComparison CompareTables(PgConn* source, PgConn* target, const Config& config,
                              const Cipher* cipher, const std::vector<std::string>& tables) {
  TableComparison result;
  for (const std::string& t : tables) {
    std::string d = CompareTable(source, target, config, cipher, t, &result.rows_compared);
    if (!d.empty()) result.differences.push_back(t + ": " + d);
  }
  return result;
}

}  // namespace tenantsync::testing
