// Pure logic of validate: the SQL pieces of the checksum diff and the report formats. The SQL
// itself runs against real servers in tests/validate_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "validate/internal/session.h"
#include "validate/internal/table_plan.h"
#include "validate/validate.h"

namespace tenantsync::validate {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(TextArrayLiteral, QuotesAndEscapes) {
  EXPECT_EQ(internal::TextArrayLiteral({}), "{}");
  EXPECT_EQ(internal::TextArrayLiteral({"a", "b c"}), "{\"a\",\"b c\"}");
  EXPECT_EQ(internal::TextArrayLiteral({"x\"y", "back\\slash", "{,}"}),
            "{\"x\\\"y\",\"back\\\\slash\",\"{,}\"}");
}

TEST(CertainCastPredicate, IntegerWidthsFitTheType) {
  auto p = internal::CertainCastPredicate("bigint", "c");
  ASSERT_TRUE(p.has_value());
  EXPECT_THAT(*p, HasSubstr("{1,18}"));
  EXPECT_THAT(*internal::CertainCastPredicate("integer", "c"), HasSubstr("{1,9}"));
  EXPECT_THAT(*internal::CertainCastPredicate("smallint", "c"), HasSubstr("{1,4}"));
  EXPECT_THAT(*internal::CertainCastPredicate("numeric(10,2)", "c"), HasSubstr("{1,8}"));
  EXPECT_FALSE(internal::CertainCastPredicate("numeric(2,2)", "c").has_value());
  EXPECT_EQ(*internal::CertainCastPredicate("character varying(20)", "c"),
            "char_length(c) <= 20");
}

TEST(CertainCastPredicate, NoSqlFormForTypesTheServerValidates) {
  for (const char* t : {"jsonb", "json", "timestamp with time zone", "date", "interval"}) {
    EXPECT_FALSE(internal::CertainCastPredicate(t, "c").has_value()) << t;
  }
}

TEST(HashExpression, TypedHashesAndNullConstants) {
  EXPECT_THAT(internal::HashExpression("bigint", "x", 3), HasSubstr("hashint8extended(x, 3)"));
  EXPECT_THAT(internal::HashExpression("jsonb", "x", 1), HasSubstr("jsonb_hash_extended(x, 1)"));
  EXPECT_THAT(internal::HashExpression("timestamp with time zone", "x", 1),
              HasSubstr("::timestamp without time zone"));
  EXPECT_THAT(internal::HashExpression("json", "x", 1), HasSubstr("hashtextextended((x)::text"));
  // NULL must not make the whole row hash NULL, and differs per column.
  EXPECT_THAT(internal::HashExpression("text", "x", 1), HasSubstr("coalesce("));
  EXPECT_NE(internal::HashExpression("text", "x", 1), internal::HashExpression("text", "x", 2));
}

ValidationReport SampleReport() {
  ValidationReport r;
  r.pipeline = "rawdog";
  CheckResult ok;
  ok.check = "count";
  ok.table = "orders";
  ok.source = ok.target = "2000";
  r.checks.push_back(ok);
  CheckResult bad;
  bad.check = "full";
  bad.table = "customers";
  bad.status = CheckStatus::kFail;
  bad.details = "1 differs";
  bad.rows.push_back({RowDifference::Kind::kDifferent, "id=6", {"full_name"}, "full_name: x"});
  bad.rows_total = 3;
  r.checks.push_back(bad);
  return r;
}

TEST(ValidationReport, ExitCodeAndCounts) {
  ValidationReport r = SampleReport();
  EXPECT_EQ(r.failures(), 1);
  EXPECT_FALSE(r.passed());
  EXPECT_EQ(r.ExitCode(), 1);
  r.checks[1].status = CheckStatus::kUnverified;
  EXPECT_EQ(r.unverified(), 1);
  EXPECT_EQ(r.ExitCode(), 1);  // only an all-pass report exits 0
  r.checks.pop_back();
  EXPECT_EQ(r.ExitCode(), 0);
}

TEST(ValidationReport, TextNamesTableKeyAndColumn) {
  std::string text = SampleReport().ToText();
  EXPECT_THAT(text, HasSubstr("customers"));
  EXPECT_THAT(text, HasSubstr("different id=6: full_name: x"));
  EXPECT_THAT(text, HasSubstr("2 more rows not listed"));
  EXPECT_THAT(text, HasSubstr("2 checks: 1 passed, 1 failed"));
}

TEST(ValidationReport, JsonHasEverythingAndSurvivesBadUtf8) {
  ValidationReport r = SampleReport();
  r.checks[1].rows[0].details = "bad \xff byte";
  std::string json = r.ToJson();
  EXPECT_THAT(json, HasSubstr("\"status\": \"fail\""));
  EXPECT_THAT(json, HasSubstr("\"key\": \"id=6\""));
  EXPECT_THAT(json, HasSubstr("\"columns\": [\n"));
  EXPECT_THAT(json, HasSubstr("\"passed\": false"));
  EXPECT_THAT(json, Not(HasSubstr("\xff")));
}

TEST(ValidationReport, WriteJsonToABadPathIsAClearError) {
  Status s = SampleReport().WriteJson("/nonexistent-dir/report.json");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("/nonexistent-dir/report.json"));
}

}  // namespace
}  // namespace tenantsync::validate
