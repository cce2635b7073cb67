#include "apply/internal/sql_builder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

#include "apply/internal/target_catalog.h"

namespace tenantsync::apply::internal {
namespace {

// items(id, name, "Qty ""x""", migrated_at) with key (id); migrated_at is an added column.
TableShape Items() {
  TableShape t;
  t.qualified = "\"tenant_rawdog\".\"items\"";
  t.columns = {"id", "name", "Qty \"x\"", "migrated_at"};
  t.types = {"bigint", "json", "integer", "timestamp with time zone"};
  t.base_types = t.types;
  t.key = {0};
  t.added = {false, false, false, true};
  return t;
}

TEST(SqlBuilder, InsertUpsertsNonKeyNonAddedColumns) {
  EXPECT_EQ(InsertSql(Items(), {0, 1, 2, 3}),
            "INSERT INTO \"tenant_rawdog\".\"items\" (\"id\", \"name\", \"Qty \"\"x\"\"\", "
            "\"migrated_at\") VALUES ($1, $2, $3, $4) ON CONFLICT (\"id\") DO UPDATE SET "
            "\"name\" = EXCLUDED.\"name\", \"Qty \"\"x\"\"\" = EXCLUDED.\"Qty \"\"x\"\"\"");
}

TEST(SqlBuilder, InsertOfOnlyKeyColumnsDoesNothingOnConflict) {
  EXPECT_EQ(InsertSql(Items(), {0}),
            "INSERT INTO \"tenant_rawdog\".\"items\" (\"id\") VALUES ($1) ON CONFLICT (\"id\") "
            "DO NOTHING");
}

TEST(SqlBuilder, InsertWithoutKeyHasNoConflictClause) {
  TableShape t = Items();
  t.key.clear();
  EXPECT_EQ(InsertSql(t, {0, 1}),
            "INSERT INTO \"tenant_rawdog\".\"items\" (\"id\", \"name\") VALUES ($1, $2)");
}

TEST(SqlBuilder, UpdateByKeyPutsKeyParametersLast) {
  EXPECT_EQ(UpdateByKeySql(Items(), {0, 2}),
            "UPDATE \"tenant_rawdog\".\"items\" SET \"id\" = $1, \"Qty \"\"x\"\"\" = $2 "
            "WHERE \"id\" = $3");
}

// NULL values are matched by IS NULL and the others by `=`, which an index on the column serves.
TEST(SqlBuilder, MatchWithoutKeyUsesEqualityAndIsNullAndComparesJsonAsJsonb) {
  EXPECT_EQ(UpdateByMatchSql(Items(), {2}, {1, 2}, {0}),
            "UPDATE \"tenant_rawdog\".\"items\" SET \"Qty \"\"x\"\"\" = $1 WHERE ctid = (SELECT "
            "ctid FROM \"tenant_rawdog\".\"items\" WHERE \"name\"::jsonb = $2::jsonb AND "
            "\"Qty \"\"x\"\"\" = $3 AND \"id\" IS NULL LIMIT 1)");
  EXPECT_EQ(DeleteByMatchSql(Items(), {}, {2}),
            "DELETE FROM \"tenant_rawdog\".\"items\" WHERE ctid = (SELECT ctid FROM "
            "\"tenant_rawdog\".\"items\" WHERE \"Qty \"\"x\"\"\" IS NULL LIMIT 1)");
  EXPECT_EQ(DeleteByMatchSql(Items(), {}, {}),
            "DELETE FROM \"tenant_rawdog\".\"items\" WHERE ctid = (SELECT ctid FROM "
            "\"tenant_rawdog\".\"items\" WHERE true LIMIT 1)");
}

TEST(SqlBuilder, DeleteByKey) {
  TableShape t = Items();
  t.key = {0, 2};
  EXPECT_EQ(DeleteByKeySql(t),
            "DELETE FROM \"tenant_rawdog\".\"items\" WHERE \"id\" = $1 AND \"Qty \"\"x\"\"\" = $2");
}

TEST(SqlBuilder, TruncateNeverCascades) {
  EXPECT_EQ(TruncateSql({"\"s\".\"a\"", "\"s\".\"b\""}, false), "TRUNCATE \"s\".\"a\", \"s\".\"b\"");
  EXPECT_EQ(TruncateSql({"\"s\".\"a\""}, true), "TRUNCATE \"s\".\"a\" RESTART IDENTITY");
}

TEST(SqlBuilder, BulkStatementsUseTheLastStagedRowPerKey) {
  TableShape t = Items();
  EXPECT_EQ(CreateStageSql(t, "\"ts_stage_3\""),
            "CREATE TEMP TABLE IF NOT EXISTS \"ts_stage_3\" (ts_seq bigint, \"id\" bigint, "
            "\"name\" json, \"Qty \"\"x\"\"\" integer, \"migrated_at\" timestamp with time zone) "
            "ON COMMIT DELETE ROWS");
  EXPECT_EQ(CopyIntoStageSql(t, "\"ts_stage_3\"", {0, 2}),
            "COPY \"ts_stage_3\" (ts_seq, \"id\", \"Qty \"\"x\"\"\") FROM STDIN");
  EXPECT_EQ(BulkUpdateSql(t, "\"ts_stage_3\"", {0, 2}),
            "UPDATE \"tenant_rawdog\".\"items\" t SET \"Qty \"\"x\"\"\" = s.\"Qty \"\"x\"\"\" FROM "
            "(SELECT DISTINCT ON (\"id\") * FROM \"ts_stage_3\" ORDER BY \"id\", ts_seq DESC) s "
            "WHERE t.\"id\" = s.\"id\"");
  EXPECT_EQ(BulkDeleteSql(t, "\"ts_stage_3\""),
            "DELETE FROM \"tenant_rawdog\".\"items\" t USING \"ts_stage_3\" s WHERE t.\"id\" = "
            "s.\"id\"");
  EXPECT_EQ(BulkInsertSql(t, "\"ts_stage_3\"", {0, 2}),
            "INSERT INTO \"tenant_rawdog\".\"items\" (\"id\", \"Qty \"\"x\"\"\") SELECT \"id\", "
            "\"Qty \"\"x\"\"\" FROM (SELECT DISTINCT ON (\"id\") * FROM \"ts_stage_3\" ORDER BY "
            "\"id\", ts_seq DESC) s ON CONFLICT (\"id\") DO UPDATE SET \"Qty \"\"x\"\"\" = "
            "EXCLUDED.\"Qty \"\"x\"\"\"");
}

// A live transaction's parallel staging: committed UNLOGGED tables named after the pipeline, so
// a restart drops exactly its own pipeline's leftovers.
TEST(SqlBuilder, SharedStagesAreUnloggedAndNamedAfterThePipeline) {
  TableShape t = Items();
  EXPECT_EQ(CreateSharedStageSql(t, "_tenantsync.\"stage_x_1\""),
            "CREATE UNLOGGED TABLE _tenantsync.\"stage_x_1\" (ts_seq bigint, \"id\" bigint, "
            "\"name\" json, \"Qty \"\"x\"\"\" integer, \"migrated_at\" timestamp with time zone) "
            "WITH (autovacuum_enabled = false)");
  const std::string a = SharedStagePrefix("rawdog");
  EXPECT_TRUE(std::regex_match(a, std::regex("stage_[0-9a-f]{16}_"))) << a;
  EXPECT_EQ(a, SharedStagePrefix("rawdog"));
  EXPECT_NE(a, SharedStagePrefix("rawdog2"));
  EXPECT_NE(a, SharedStagePrefix(""));
}

TEST(SqlBuilder, BulkStatementsSkipThePerKeySortForUniqueKeys) {
  TableShape t = Items();
  EXPECT_EQ(BulkUpdateSql(t, "\"ts_stage_3\"", {0, 2}, /*unique_keys=*/true),
            "UPDATE \"tenant_rawdog\".\"items\" t SET \"Qty \"\"x\"\"\" = s.\"Qty \"\"x\"\"\" FROM "
            "\"ts_stage_3\" s WHERE t.\"id\" = s.\"id\"");
  EXPECT_EQ(BulkInsertSql(t, "\"ts_stage_3\"", {0, 2}, /*unique_keys=*/true),
            "INSERT INTO \"tenant_rawdog\".\"items\" (\"id\", \"Qty \"\"x\"\"\") SELECT \"id\", "
            "\"Qty \"\"x\"\"\" FROM \"ts_stage_3\" s ON CONFLICT (\"id\") DO UPDATE SET "
            "\"Qty \"\"x\"\"\" = EXCLUDED.\"Qty \"\"x\"\"\"");
}

TEST(SqlBuilder, ArrayStageUnnestsOneTypedArrayPerColumnWithItsOrder) {
  TableShape t = Items();
  const std::string stage = ArrayStageSql(t, {0, 2});
  EXPECT_EQ(stage,
            "(SELECT * FROM unnest($1::bigint[], $2::integer[]) WITH ORDINALITY AS u(\"id\", "
            "\"Qty \"\"x\"\"\", ts_seq))");
  EXPECT_EQ(BulkDeleteSql(t, ArrayStageSql(t, {0})),
            "DELETE FROM \"tenant_rawdog\".\"items\" t USING (SELECT * FROM unnest($1::bigint[]) "
            "WITH ORDINALITY AS u(\"id\", ts_seq)) s WHERE t.\"id\" = s.\"id\"");
  // An array-typed column is unnested from text[] and cast per row: unnest() would flatten it.
  // Casts leave the type modifier out (an explicit cast to varchar(3) cuts a longer value).
  t.types[1] = "character varying(3)";
  t.base_types[1] = "character varying";
  t.types[2] = "numeric(4,1)[]";
  t.base_types[2] = "numeric[]";
  EXPECT_TRUE(IsArrayType(t.types[2]));
  EXPECT_FALSE(IsArrayType(t.types[0]));
  EXPECT_EQ(ArrayStageSql(t, {0, 1, 2}),
            "(SELECT u.\"id\", u.\"name\", u.\"Qty \"\"x\"\"\"::numeric[] AS \"Qty \"\"x\"\"\", "
            "u.ts_seq FROM unnest($1::bigint[], $2::character varying[], $3::text[]) WITH "
            "ORDINALITY AS u(\"id\", \"name\", \"Qty \"\"x\"\"\", ts_seq))");
}

TEST(SqlBuilder, KeylessDeletesGroupEqualRowsAndDeleteEachMatchOnce) {
  TableShape t = Items();
  t.key.clear();
  t.types[1] = t.base_types[1] = "json";
  EXPECT_EQ(KeylessDeleteSql(t, {0, 1}, {3}),
            "DELETE FROM \"tenant_rawdog\".\"items\" t USING (SELECT r.ctid AS ts_ctid, "
            "u.ts_count, row_number() OVER (PARTITION BY u.ts_group ORDER BY r.ctid) AS ts_rank "
            "FROM (SELECT a.\"id\" AS \"id\", a.\"name\"::jsonb AS \"name\", count(*) AS "
            "ts_count, row_number() OVER () AS ts_group FROM unnest($1::bigint[], $2::json[]) AS "
            "a(\"id\", \"name\") GROUP BY 1, 2) u JOIN \"tenant_rawdog\".\"items\" r ON "
            "r.\"id\" = u.\"id\" AND r.\"name\"::jsonb = u.\"name\" AND "
            "r.\"migrated_at\" IS NULL) d WHERE t.ctid = d.ts_ctid AND d.ts_rank <= d.ts_count");
  // An array-typed column travels as text[] and is cast per row, as on the array path.
  t.types[2] = t.base_types[2] = "integer[]";
  EXPECT_THAT(KeylessDeleteSql(t, {2}, {}),
              ::testing::HasSubstr("SELECT a.\"Qty \"\"x\"\"\"::integer[] AS \"Qty "
                                   "\"\"x\"\"\", count(*)"));
  EXPECT_THAT(KeylessDeleteSql(t, {2}, {}), ::testing::HasSubstr("unnest($1::text[])"));
  EXPECT_TRUE(KeylessGroupable("integer[]"));
  EXPECT_TRUE(KeylessGroupable("json"));
  EXPECT_TRUE(KeylessGroupable("point"));
  EXPECT_FALSE(KeylessGroupable("json[]"));
  EXPECT_FALSE(KeylessGroupable("point[]"));
}

TEST(SqlBuilder, KeylessUpdatesPairTheNthUpdateOfAValueWithItsNthRow) {
  TableShape t = Items();
  t.key.clear();
  t.types[1] = t.base_types[1] = "json";
  EXPECT_EQ(
      KeylessUpdateSql(t, {0, 1}, {3}, {1, 2}),
      "WITH g AS (SELECT x.o1 AS o1, x.o2::jsonb AS o2, array_agg(x.n1 ORDER BY x.ts_ord) AS n1, "
      "array_agg(x.n2 ORDER BY x.ts_ord) AS n2, row_number() OVER () AS ts_group FROM "
      "unnest($1::bigint[], $2::json[], $3::json[], $4::integer[]) WITH ORDINALITY AS x(o1, o2, "
      "n1, n2, ts_ord) GROUP BY 1, 2), m AS (SELECT r.ctid AS ts_ctid, g.n1, g.n2, row_number() "
      "OVER (PARTITION BY g.ts_group ORDER BY r.ctid) AS ts_rank FROM g JOIN "
      "\"tenant_rawdog\".\"items\" r ON r.\"id\" = g.o1 AND r.\"name\"::jsonb = g.o2 AND "
      "r.\"migrated_at\" IS NULL) UPDATE \"tenant_rawdog\".\"items\" t SET \"name\" = "
      "m.n1[m.ts_rank], \"Qty \"\"x\"\"\" = m.n2[m.ts_rank] FROM m WHERE t.ctid = m.ts_ctid "
      "AND m.ts_rank <= cardinality(m.n1)");
  // An array-typed new value travels as text and is cast as it is set.
  t.types[2] = t.base_types[2] = "integer[]";
  EXPECT_THAT(KeylessUpdateSql(t, {0}, {}, {2}),
              ::testing::HasSubstr("= m.n1[m.ts_rank]::integer[] FROM m"));
}

TEST(SqlBuilder, ArrayElementsAreQuotedWithBackslashEscapes) {
  std::string out;
  for (const Datum& d : {Datum::Text("a\"b"), Datum::Text("c\\d"), Datum::Text("{x},y"),
                         Datum::Text(""), Datum::Text("NULL"), Datum::Null()}) {
    AppendArrayElement(d, &out);
    out += '|';
  }
  AppendArrayElement(Datum::Text(" a  "), &out, /*trim_trailing_blanks=*/true);
  out += '|';
  AppendArrayElement(Datum::Text("   "), &out, true);
  EXPECT_EQ(out, "\"a\\\"b\"|\"c\\\\d\"|\"{x},y\"|\"\"|\"NULL\"|NULL|\" a\"|\"\"");
}

TEST(SqlBuilder, CopyTextEscapesSeparatorsAndNull) {
  std::string out;
  AppendCopyText(Datum::Text("a\tb\nc\\d\re"), &out);
  out += '|';
  AppendCopyText(Datum::Null(), &out);
  out += '|';
  AppendCopyText(Datum::Text(""), &out);
  EXPECT_EQ(out, "a\\tb\\nc\\\\d\\re|\\N|");
}

TEST(SqlBuilder, CopyTextLeavesOutTrailingBlanksOnlyWhenAsked) {
  std::string out;
  AppendCopyText(Datum::Text(" a b\t  "), &out, /*trim_trailing_blanks=*/true);
  out += '|';
  AppendCopyText(Datum::Text("    "), &out, true);  // all blanks: empty, not NULL
  out += '|';
  AppendCopyText(Datum::Text("\xc3\xa9\\ "), &out, true);
  out += '|';
  AppendCopyText(Datum::Null(), &out, true);
  out += '|';
  AppendCopyText(Datum::Text(" a  "), &out);  // not asked: kept
  EXPECT_EQ(out, " a b\\t||\xc3\xa9\\\\|\\N| a  ");
}

TEST(TargetCatalog, CanonicalTypeMatchesAliasesAndQualifiedNames) {
  EXPECT_EQ(CanonicalType("int8"), CanonicalType("bigint"));
  EXPECT_EQ(CanonicalType("timestamptz"), CanonicalType("timestamp with time zone"));
  EXPECT_EQ(CanonicalType("varchar(20)"), CanonicalType("character varying(20)"));
  EXPECT_EQ(CanonicalType("tenant_rawdog.mood"), CanonicalType("mood"));
  EXPECT_EQ(CanonicalType("\"public\".\"Mood\""), CanonicalType("mood"));
  EXPECT_EQ(CanonicalType("numeric(20,6)"), "numeric(20,6)");
  EXPECT_NE(CanonicalType("varchar(20)"), CanonicalType("varchar(30)"));
  EXPECT_NE(CanonicalType("integer"), CanonicalType("bigint"));
  EXPECT_EQ(CanonicalType("int4[]"), "integer[]");
}

}  // namespace
}  // namespace tenantsync::apply::internal
