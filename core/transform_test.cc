#include "core/transform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tenantsync {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// --- CastText: one test per type and malformed input ---------------------------------------

std::string CastOk(std::string_view type, std::string_view text) {
  StatusOr<std::string> normal = NormalizeCastType(type);
  EXPECT_TRUE(normal.ok()) << type;
  StatusOr<std::string> r = CastText(*normal, text);
  EXPECT_TRUE(r.ok()) << type << " '" << text << "': " << r.status().ToString();
  return r.ok() ? *r : "<error>";
}

Status CastFails(std::string_view type, std::string_view text) {
  StatusOr<std::string> normal = NormalizeCastType(type);
  EXPECT_TRUE(normal.ok()) << type;
  StatusOr<std::string> r = CastText(*normal, text);
  EXPECT_FALSE(r.ok()) << type << " '" << text << "' gave '" << (r.ok() ? *r : "") << "'";
  if (r.ok()) return Status::Ok();
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  if (text.size() >= 3) {
    EXPECT_THAT(r.status().message(), Not(HasSubstr(std::string(text))));
  }
  return r.status();
}

TEST(NormalizeCastTypeTest, KnownTypesAndAliases) {
  EXPECT_EQ(*NormalizeCastType("bigint"), "bigint");
  EXPECT_EQ(*NormalizeCastType("INT8"), "bigint");
  EXPECT_EQ(*NormalizeCastType("int"), "integer");
  EXPECT_EQ(*NormalizeCastType("int4"), "integer");
  EXPECT_EQ(*NormalizeCastType("int2"), "smallint");
  EXPECT_EQ(*NormalizeCastType("float4"), "real");
  EXPECT_EQ(*NormalizeCastType("Double   Precision"), "double precision");
  EXPECT_EQ(*NormalizeCastType("float8"), "double precision");
  EXPECT_EQ(*NormalizeCastType("decimal"), "numeric");
  EXPECT_EQ(*NormalizeCastType("numeric(10, 2)"), "numeric(10,2)");
  EXPECT_EQ(*NormalizeCastType("numeric(5)"), "numeric(5,0)");
  EXPECT_EQ(*NormalizeCastType("bool"), "boolean");
  EXPECT_EQ(*NormalizeCastType("varchar(20)"), "character varying(20)");
  EXPECT_EQ(*NormalizeCastType("varchar"), "character varying");
  EXPECT_EQ(*NormalizeCastType("timestamptz"), "timestamp with time zone");
  EXPECT_EQ(*NormalizeCastType("timestamp"), "timestamp without time zone");
  EXPECT_EQ(*NormalizeCastType("date"), "date");
  EXPECT_EQ(*NormalizeCastType("jsonb"), "jsonb");
  EXPECT_EQ(*NormalizeCastType("json"), "json");
  EXPECT_EQ(*NormalizeCastType("uuid"), "uuid");
  EXPECT_EQ(*NormalizeCastType("text"), "text");
}

TEST(NormalizeCastTypeTest, UnknownTypeListsKnownOnes) {
  StatusOr<std::string> t = NormalizeCastType("money");
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr("unknown type 'money'"), HasSubstr("bigint")));
}

TEST(NormalizeCastTypeTest, ModifierOnTypeWithoutOne) {
  EXPECT_THAT(NormalizeCastType("bigint(4)").status().message(), HasSubstr("takes no"));
}

TEST(NormalizeCastTypeTest, BadVarcharLength) {
  EXPECT_THAT(NormalizeCastType("varchar(x)").status().message(), HasSubstr("length"));
  EXPECT_THAT(NormalizeCastType("varchar(0)").status().message(), HasSubstr("length"));
}

TEST(NormalizeCastTypeTest, BadNumericModifier) {
  EXPECT_THAT(NormalizeCastType("numeric(2,5)").status().message(), HasSubstr("s <= p"));
  EXPECT_THAT(NormalizeCastType("numeric(a)").status().message(), HasSubstr("numeric(p,s)"));
}

TEST(NormalizeCastTypeTest, UnbalancedParenthesis) {
  EXPECT_EQ(NormalizeCastType("numeric(10").status().code(), StatusCode::kInvalidArgument);
}

TEST(CastTextTest, BigintCanonical) {
  EXPECT_EQ(CastOk("bigint", "12345"), "12345");
  EXPECT_EQ(CastOk("bigint", "  -42 "), "-42");
  EXPECT_EQ(CastOk("bigint", "+007"), "7");
  EXPECT_EQ(CastOk("bigint", "-0"), "0");
  EXPECT_EQ(CastOk("bigint", "9223372036854775807"), "9223372036854775807");
  EXPECT_EQ(CastOk("bigint", "-9223372036854775808"), "-9223372036854775808");
}

TEST(CastTextTest, BigintWithZeroFractionIsAccepted) {
  EXPECT_EQ(CastOk("bigint", "12.00"), "12");
  EXPECT_EQ(CastOk("bigint", "12."), "12");
}

TEST(CastTextTest, BigintWithFractionFails) {
  EXPECT_THAT(CastFails("bigint", "12.50").message(), HasSubstr("fraction"));
}

TEST(CastTextTest, BigintGarbageFails) {
  EXPECT_THAT(CastFails("bigint", "N/A").message(), HasSubstr("not an integer"));
  EXPECT_THAT(CastFails("bigint", "12.5x").message(), HasSubstr("not an integer"));
  CastFails("bigint", "").IgnoreError();
  CastFails("bigint", "-").IgnoreError();
  CastFails("bigint", "1 2").IgnoreError();
  CastFails("bigint", "0x10").IgnoreError();
  CastFails("bigint", "1e3").IgnoreError();
}

TEST(CastTextTest, BigintOverflowFails) {
  EXPECT_THAT(CastFails("bigint", "9223372036854775808").message(), HasSubstr("out of range"));
  EXPECT_THAT(CastFails("bigint", "-9223372036854775809").message(), HasSubstr("out of range"));
  CastFails("bigint", "99999999999999999999999999").IgnoreError();
}

TEST(CastTextTest, IntegerAndSmallintRanges) {
  EXPECT_EQ(CastOk("integer", "2147483647"), "2147483647");
  EXPECT_EQ(CastOk("integer", "-2147483648"), "-2147483648");
  EXPECT_THAT(CastFails("integer", "2147483648").message(),
              HasSubstr("out of range for type integer"));
  EXPECT_EQ(CastOk("smallint", "-32768"), "-32768");
  EXPECT_THAT(CastFails("smallint", "32768").message(), HasSubstr("smallint"));
}

TEST(CastTextTest, DoubleAcceptsDecimalAndExponent) {
  EXPECT_EQ(CastOk("double precision", "12.5"), "12.5");
  EXPECT_EQ(CastOk("double precision", " -1.5e-3 "), "-1.5e-3");
  EXPECT_EQ(CastOk("double precision", "+3"), "+3");
  EXPECT_EQ(CastOk("double precision", ".5"), ".5");
}

TEST(CastTextTest, DoubleSpecialValuesInPgSpelling) {
  EXPECT_EQ(CastOk("double precision", "NaN"), "NaN");
  EXPECT_EQ(CastOk("double precision", "nan"), "NaN");
  EXPECT_EQ(CastOk("double precision", "Infinity"), "Infinity");
  EXPECT_EQ(CastOk("double precision", "-inf"), "-Infinity");
  EXPECT_EQ(CastOk("real", "INF"), "Infinity");
}

TEST(CastTextTest, DoubleGarbageFails) {
  EXPECT_THAT(CastFails("double precision", "ten").message(), HasSubstr("not a number"));
  CastFails("double precision", "").IgnoreError();
  CastFails("double precision", "12,5").IgnoreError();
  CastFails("double precision", "12.5%").IgnoreError();
  CastFails("double precision", "0x1p3").IgnoreError();
  CastFails("double precision", "++1").IgnoreError();
  CastFails("double precision", "1e").IgnoreError();
}

TEST(CastTextTest, DoubleOverflowFails) {
  EXPECT_THAT(CastFails("double precision", "1e400").message(), HasSubstr("out of range"));
}

TEST(CastTextTest, RealOverflowFails) {
  EXPECT_EQ(CastOk("real", "3.4e38"), "3.4e38");
  EXPECT_THAT(CastFails("real", "1e39").message(), HasSubstr("out of range for type real"));
}

TEST(CastTextTest, Numeric) {
  EXPECT_EQ(CastOk("numeric", "12.345"), "12.345");
  EXPECT_EQ(CastOk("numeric", "-1e10"), "-1e10");
  EXPECT_EQ(CastOk("numeric", "NaN"), "NaN");
  EXPECT_EQ(CastOk("numeric(10,2)", "12345678.999"), "12345678.999");  // server rounds
  EXPECT_EQ(CastOk("numeric(4,2)", "0.001"), "0.001");
  EXPECT_THAT(CastFails("numeric", "1.2.3").message(), HasSubstr("not a number (numeric)"));
  CastFails("numeric", "abc").IgnoreError();
  CastFails("numeric", "1e").IgnoreError();
}

TEST(CastTextTest, NumericPrecisionOverflowFails) {
  EXPECT_THAT(CastFails("numeric(4,2)", "123.4").message(), HasSubstr("overflow"));
  CastFails("numeric(4,2)", "1.5e2").IgnoreError();
  CastFails("numeric(4,2)", "Infinity").IgnoreError();
}

TEST(CastTextTest, BooleanSpellings) {
  for (const char* t : {"t", "TRUE", "true", "tr", "y", "yes", "on", "1", " On "}) {
    EXPECT_EQ(CastOk("boolean", t), "t") << t;
  }
  for (const char* f : {"f", "false", "FALSE", "fa", "n", "no", "off", "of", "0"}) {
    EXPECT_EQ(CastOk("boolean", f), "f") << f;
  }
}

TEST(CastTextTest, BooleanGarbageFails) {
  EXPECT_THAT(CastFails("boolean", "maybe").message(), HasSubstr("not a boolean"));
  CastFails("boolean", "o").IgnoreError();  // ambiguous: on or off
  CastFails("boolean", "2").IgnoreError();
  CastFails("boolean", "truee").IgnoreError();
  CastFails("boolean", "").IgnoreError();
}

TEST(CastTextTest, UuidCanonical) {
  EXPECT_EQ(CastOk("uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  EXPECT_EQ(CastOk("uuid", "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}"),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  EXPECT_EQ(CastOk("uuid", "a0eebc999c0b4ef8bb6d6bb9bd380a11"),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
}

TEST(CastTextTest, UuidMalformedFails) {
  EXPECT_THAT(CastFails("uuid", "a0eebc99-9c0b-4ef8-bb6d").message(), HasSubstr("uuid"));
  CastFails("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g").IgnoreError();
  CastFails("uuid", "a0eeb-c999c0b4ef8bb6d6bb9bd380a11").IgnoreError();
  CastFails("uuid", "{a0eebc999c0b4ef8bb6d6bb9bd380a11").IgnoreError();
  CastFails("uuid", "a0eebc99--9c0b4ef8bb6d6bb9bd380a11").IgnoreError();
}

TEST(CastTextTest, TextPassesAnything) {
  EXPECT_EQ(CastOk("text", ""), "");
  EXPECT_EQ(CastOk("text", "ünï ✓ \t x"), "ünï ✓ \t x");
}

TEST(CastTextTest, VarcharLengthInCharacters) {
  EXPECT_EQ(CastOk("varchar(3)", "äöü"), "äöü");  // 3 characters, 6 bytes
  EXPECT_THAT(CastFails("varchar(3)", "abcd").message(), HasSubstr("longer than 3"));
  EXPECT_EQ(CastOk("varchar", std::string(10000, 'x')), std::string(10000, 'x'));
}

TEST(CastTextTest, JsonMustBeValid) {
  EXPECT_EQ(CastOk("jsonb", R"({"a": [1, 2, "ü"]})"), R"({"a": [1, 2, "ü"]})");
  EXPECT_EQ(CastOk("json", "3"), "3");
  EXPECT_THAT(CastFails("jsonb", "{a: 1}").message(), HasSubstr("not valid JSON"));
  CastFails("jsonb", "").IgnoreError();
  CastFails("json", "[1,").IgnoreError();
}

TEST(CastTextTest, TimesArePassedToTheServer) {
  EXPECT_EQ(CastOk("timestamptz", "2024-01-02 03:04:05+00"), "2024-01-02 03:04:05+00");
  EXPECT_EQ(CastOk("timestamp", "yesterday"), "yesterday");
  EXPECT_EQ(CastOk("date", "2024-02-30"), "2024-02-30");  // the server rejects it on insert
  EXPECT_THAT(CastFails("date", " ").message(), HasSubstr("empty"));
}

// --- TableTransform -------------------------------------------------------------------------

std::string Key() {
  std::string k(32, '\0');
  for (int i = 0; i < 32; ++i) k[i] = static_cast<char>(i * 3 + 1);
  return Base64Encode(k);
}

class TransformTest : public ::testing::Test {
 protected:
  TransformTest() : cipher_(*Cipher::FromBase64Key(Key())) {}

  static std::vector<SourceColumn> OrderColumns() {
    return {{"id", "bigint", true},
            {"total_cents", "bigint", false},
            {"gross_sales_cents", "text", false},
            {"note", "text", false},
            {"email", "text", false}};
  }

  StatusOr<TableTransform> Build(const TableConfig* table,
                                 std::vector<SourceColumn> cols = OrderColumns()) {
    return TableTransform::Build("orders", table, cols, &cipher_);
  }

  static ColumnRule Cast(std::string type, std::optional<std::string> on_error = std::nullopt) {
    ColumnRule r;
    r.type = std::move(type);
    r.on_error = std::move(on_error);
    return r;
  }

  static Tuple Row(std::string gross) {
    return {Datum::Text("1"), Datum::Text("500"), Datum::Text(std::move(gross)),
            Datum::Text("hello"), Datum::Text("ada@example.com")};
  }

  TransformContext ctx_{"2026-11-21 17:40:00.123+00"};
  Cipher cipher_;
};

TEST_F(TransformTest, NoRulesIsIdentity) {
  StatusOr<TableTransform> t = Build(nullptr);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_TRUE(t->IsIdentity());
  ASSERT_EQ(t->target_columns().size(), 5u);
  EXPECT_EQ(t->target_columns()[2].name, "gross_sales_cents");
  EXPECT_EQ(t->target_columns()[2].type, "text");
  EXPECT_EQ(t->target_columns()[2].source_index, 2);
  EXPECT_TRUE(t->target_columns()[0].is_key);
  Tuple out;
  Tuple in = Row("x");
  ASSERT_TRUE(t->Apply(in, &out, ctx_).ok());
  EXPECT_EQ(out, in);
  EXPECT_EQ(t->source_table(), "orders");
}

TEST_F(TransformTest, EmptyTableConfigIsIdentity) {
  TableConfig tc;
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->IsIdentity());
}

TEST_F(TransformTest, CastNormalisesValue) {
  TableConfig tc;
  tc.columns["gross_sales_cents"] = Cast("bigint", "0");
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_FALSE(t->IsIdentity());
  EXPECT_EQ(t->target_columns()[2].type, "bigint");
  Tuple out;
  ASSERT_TRUE(t->Apply(Row(" 0012 "), &out, ctx_).ok());
  EXPECT_EQ(out[2], Datum::Text("12"));
  EXPECT_EQ(out[0], Datum::Text("1"));
}

TEST_F(TransformTest, FailedCastUsesOnError) {
  TableConfig tc;
  tc.columns["gross_sales_cents"] = Cast("bigint", "0");
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  for (std::string bad : {"N/A", "12.5x", ""}) {
    Tuple out;
    ASSERT_TRUE(t->Apply(Row(bad), &out, ctx_).ok()) << bad;
    EXPECT_EQ(out[2], Datum::Text("0")) << bad;
  }
}

TEST_F(TransformTest, FailedCastWithoutOnErrorNamesColumnNotValue) {
  TableConfig tc;
  tc.columns["gross_sales_cents"] = Cast("bigint");
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  Tuple out;
  Status s = t->Apply(Row("secret-ish 12.5x"), &out, ctx_);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("orders.gross_sales_cents"), HasSubstr("bigint"),
                                 HasSubstr("on_error"), Not(HasSubstr("12.5x"))));
}

TEST_F(TransformTest, CommissionPercentToDoubleWithDefault) {
  std::vector<SourceColumn> cols = {{"id", "bigint", true}, {"commission_percent", "text", false}};
  TableConfig tc;
  tc.columns["commission_percent"] = Cast("double precision", "10");
  StatusOr<TableTransform> t = TableTransform::Build("creators", &tc, cols, nullptr);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->target_columns()[1].type, "double precision");
  Tuple out;
  ASSERT_TRUE(t->Apply({Datum::Text("1"), Datum::Text("12.5")}, &out, ctx_).ok());
  EXPECT_EQ(out[1], Datum::Text("12.5"));
  ASSERT_TRUE(t->Apply({Datum::Text("1"), Datum::Text("ten")}, &out, ctx_).ok());
  EXPECT_EQ(out[1], Datum::Text("10"));
}

TEST_F(TransformTest, NullStaysNullThroughEveryRule) {
  TableConfig tc;
  tc.columns["gross_sales_cents"] = Cast("bigint", "0");
  tc.columns["email"].encrypt = true;
  tc.columns["note"].rename = "comment";
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  Tuple in = {Datum::Text("1"), Datum::Null(), Datum::Null(), Datum::Null(), Datum::Null()};
  Tuple out;
  ASSERT_TRUE(t->Apply(in, &out, ctx_).ok());
  for (size_t i = 1; i < out.size(); ++i) EXPECT_TRUE(out[i].is_null()) << i;
}

TEST_F(TransformTest, UnchangedStaysUnchangedThroughEveryRule) {
  TableConfig tc;
  tc.columns["gross_sales_cents"] = Cast("bigint", "0");
  tc.columns["email"].encrypt = true;
  tc.columns["note"].rename = "comment";
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  Tuple in = {Datum::Text("1"), Datum::Unchanged(), Datum::Unchanged(), Datum::Unchanged(),
              Datum::Unchanged()};
  Tuple out;
  ASSERT_TRUE(t->Apply(in, &out, ctx_).ok());
  for (size_t i = 1; i < out.size(); ++i) EXPECT_TRUE(out[i].is_unchanged()) << i;
}

TEST_F(TransformTest, ValueNowAddsColumnFromContext) {
  TableConfig tc;
  ColumnRule r;
  r.type = "timestamptz";
  r.value = "now";
  tc.columns["migrated_at"] = r;
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->target_columns().size(), 6u);
  const TargetColumn& added = t->target_columns()[5];
  EXPECT_EQ(added.name, "migrated_at");
  EXPECT_EQ(added.type, "timestamp with time zone");
  EXPECT_EQ(added.source_index, -1);
  Tuple out;
  ASSERT_TRUE(t->Apply(Row("1"), &out, ctx_).ok());
  EXPECT_EQ(out[5], Datum::Text(ctx_.now));
}

TEST_F(TransformTest, ValueConstantIsNormalised) {
  TableConfig tc;
  ColumnRule r;
  r.type = "boolean";
  r.value = "yes";
  tc.columns["migrated"] = r;
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  Tuple out;
  ASSERT_TRUE(t->Apply(Row("1"), &out, ctx_).ok());
  EXPECT_EQ(out.back(), Datum::Text("t"));
}

TEST_F(TransformTest, ValueWithoutTypeIsText) {
  TableConfig tc;
  tc.columns["origin"].value = "rawdog";
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->target_columns().back().type, "text");
}

TEST_F(TransformTest, AddedColumnsAreUnchangedOnUpdate) {
  TableConfig tc;
  ColumnRule r;
  r.type = "timestamptz";
  r.value = "now";
  tc.columns["migrated_at"] = r;
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  TransformContext update = ctx_;
  update.for_update = true;
  Tuple out;
  ASSERT_TRUE(t->Apply(Row("1"), &out, update).ok());
  EXPECT_TRUE(out[5].is_unchanged());
}

TEST_F(TransformTest, ValueNowWithoutContextIsABug) {
  TableConfig tc;
  tc.columns["migrated_at"].value = "now";
  tc.columns["migrated_at"].type = "timestamptz";
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  Tuple out;
  EXPECT_EQ(t->Apply(Row("1"), &out, TransformContext{}).code(), StatusCode::kFatal);
}

TEST_F(TransformTest, ValueOnExistingColumnIsRejected) {
  TableConfig tc;
  tc.columns["note"].value = "x";
  StatusOr<TableTransform> t = Build(&tc);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr("tables.orders.columns.note"),
                                          HasSubstr("already has a column note")));
}

TEST_F(TransformTest, InvalidValueConstantIsRejected) {
  TableConfig tc;
  tc.columns["flag"].value = "perhaps";
  tc.columns["flag"].type = "boolean";
  StatusOr<TableTransform> t = Build(&tc);
  EXPECT_THAT(t.status().message(), HasSubstr("tables.orders.columns.flag.value"));
}

TEST_F(TransformTest, RenameChangesTargetName) {
  TableConfig tc;
  tc.columns["note"].rename = "comment";
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->IsIdentity());
  EXPECT_EQ(t->target_columns()[3].name, "comment");
  EXPECT_EQ(t->target_columns()[3].type, "text");
  Tuple out;
  ASSERT_TRUE(t->Apply(Row("1"), &out, ctx_).ok());
  EXPECT_EQ(out[3], Datum::Text("hello"));
}

TEST_F(TransformTest, DropRemovesColumnAndShiftsIndexes) {
  TableConfig tc;
  tc.columns["note"].drop = true;
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->target_columns().size(), 4u);
  EXPECT_EQ(t->TargetIndexOf(3), -1);
  EXPECT_EQ(t->TargetIndexOf(4), 3);
  EXPECT_EQ(t->TargetIndexOf(0), 0);
  EXPECT_EQ(t->TargetIndexOf(99), -1);
  EXPECT_EQ(t->TargetIndexOf(-1), -1);
  Tuple out;
  ASSERT_TRUE(t->Apply(Row("1"), &out, ctx_).ok());
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[3], Datum::Text("ada@example.com"));
}

TEST_F(TransformTest, DroppingAKeyColumnIsRejected) {
  TableConfig tc;
  tc.columns["id"].drop = true;
  StatusOr<TableTransform> t = Build(&tc);
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr("tables.orders.columns.id"), HasSubstr("key")));
}

TEST_F(TransformTest, DroppingEveryColumnIsRejected) {
  std::vector<SourceColumn> cols = {{"a", "text", false}};
  TableConfig tc;
  tc.columns["a"].drop = true;
  StatusOr<TableTransform> t = TableTransform::Build("notes", &tc, cols, nullptr);
  EXPECT_THAT(t.status().message(), HasSubstr("every column is dropped"));
}

TEST_F(TransformTest, EncryptIsDeterministicAndDecrypts) {
  TableConfig tc;
  tc.columns["email"].encrypt = true;
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  const TargetColumn& col = t->target_columns()[4];
  EXPECT_TRUE(col.encrypted);
  EXPECT_EQ(col.type, "text");
  Tuple a, b;
  ASSERT_TRUE(t->Apply(Row("1"), &a, ctx_).ok());
  ASSERT_TRUE(t->Apply(Row("1"), &b, ctx_).ok());
  EXPECT_EQ(a[4], b[4]);
  EXPECT_TRUE(Cipher::LooksEncrypted(a[4].text));
  EXPECT_THAT(a[4].text, Not(HasSubstr("ada")));
  // The context is "<source_table>.<source_column>".
  EXPECT_EQ(*cipher_.Decrypt(a[4].text, "orders.email"), "ada@example.com");
  EXPECT_EQ(*t->DecryptTarget(4, a[4].text), "ada@example.com");
  EXPECT_EQ(*t->DecryptTarget(3, "hello"), "hello");  // not encrypted: as is
}

TEST_F(TransformTest, EncryptContextUsesSourceNameAfterRename) {
  TableConfig tc;
  tc.columns["email"].encrypt = true;
  tc.columns["email"].rename = "email_enc";
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  Tuple out;
  ASSERT_TRUE(t->Apply(Row("1"), &out, ctx_).ok());
  EXPECT_EQ(t->target_columns()[4].name, "email_enc");
  EXPECT_EQ(*cipher_.Decrypt(out[4].text, "orders.email"), "ada@example.com");
}

TEST_F(TransformTest, DecryptTargetOfTamperedValueIsCorruption) {
  TableConfig tc;
  tc.columns["email"].encrypt = true;
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->DecryptTarget(4, "not ciphertext").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(t->DecryptTarget(42, "x").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(TransformTest, EncryptWithoutCipherIsRejected) {
  TableConfig tc;
  tc.columns["email"].encrypt = true;
  StatusOr<TableTransform> t = TableTransform::Build("orders", &tc, OrderColumns(), nullptr);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(),
              AllOf(HasSubstr("tables.orders.columns.email"), HasSubstr("encryption key")));
}

TEST_F(TransformTest, EncryptWithTypeIsRejected) {
  TableConfig tc;
  tc.columns["email"].encrypt = true;
  tc.columns["email"].type = "bigint";
  EXPECT_THAT(Build(&tc).status().message(), HasSubstr("stored as text"));
}

TEST_F(TransformTest, RuleForMissingColumnIsRejected) {
  TableConfig tc;
  tc.columns["gross_sales"] = Cast("bigint");
  StatusOr<TableTransform> t = Build(&tc);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr("tables.orders.columns.gross_sales"),
                                          HasSubstr("has no column gross_sales")));
}

TEST_F(TransformTest, RenameOntoExistingColumnIsRejected) {
  TableConfig tc;
  tc.columns["note"].rename = "email";
  EXPECT_THAT(Build(&tc).status().message(), HasSubstr("two columns map to target column email"));
}

TEST_F(TransformTest, AddedColumnCollidingWithRenameIsRejected) {
  TableConfig tc;
  tc.columns["note"].rename = "migrated_at";
  tc.columns["migrated_at"].value = "now";
  EXPECT_THAT(Build(&tc).status().message(),
              HasSubstr("two columns map to target column migrated_at"));
}

TEST_F(TransformTest, UnknownCastTypeIsRejected) {
  TableConfig tc;
  tc.columns["gross_sales_cents"] = Cast("money");
  StatusOr<TableTransform> t = Build(&tc);
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr("tables.orders.columns.gross_sales_cents.type"),
                                          HasSubstr("unknown type 'money'")));
}

TEST_F(TransformTest, InvalidOnErrorIsRejectedAtBuild) {
  TableConfig tc;
  tc.columns["gross_sales_cents"] = Cast("bigint", "zero");
  StatusOr<TableTransform> t = Build(&tc);
  EXPECT_THAT(t.status().message(),
              AllOf(HasSubstr("tables.orders.columns.gross_sales_cents.on_error"),
                    HasSubstr("not a valid bigint")));
}

TEST_F(TransformTest, OnErrorWithoutTypeIsRejected) {
  TableConfig tc;
  tc.columns["gross_sales_cents"].on_error = "0";
  EXPECT_THAT(Build(&tc).status().message(), HasSubstr("applies to a cast"));
}

TEST_F(TransformTest, CastTypeAliasIsNormalisedInTargetColumn) {
  TableConfig tc;
  tc.columns["gross_sales_cents"] = Cast("int8", "+0");
  StatusOr<TableTransform> t = Build(&tc);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->target_columns()[2].type, "bigint");
  Tuple out;
  ASSERT_TRUE(t->Apply(Row("bad"), &out, ctx_).ok());
  EXPECT_EQ(out[2], Datum::Text("0"));
}

TEST_F(TransformTest, WrongTupleWidthIsSchemaChanged) {
  StatusOr<TableTransform> t = Build(nullptr);
  ASSERT_TRUE(t.ok());
  Tuple out;
  Status s = t->Apply({Datum::Text("1")}, &out, ctx_);
  EXPECT_EQ(s.code(), StatusCode::kSchemaChanged);
  EXPECT_THAT(s.message(), HasSubstr("orders"));
}

TEST_F(TransformTest, SameRowSameOutputWhicheverCopyOfTheTransform) {
  // Invariant 5: snapshot and apply build their own transforms; the rows they write agree.
  TableConfig tc;
  tc.columns["gross_sales_cents"] = Cast("bigint", "0");
  tc.columns["email"].encrypt = true;
  StatusOr<TableTransform> a = Build(&tc);
  Cipher other_copy = *Cipher::FromBase64Key(Key());
  StatusOr<TableTransform> b = TableTransform::Build("orders", &tc, OrderColumns(), &other_copy);
  ASSERT_TRUE(a.ok() && b.ok());
  Tuple ra, rb;
  ASSERT_TRUE(a->Apply(Row("007"), &ra, ctx_).ok());
  ASSERT_TRUE(b->Apply(Row("007"), &rb, ctx_).ok());
  EXPECT_EQ(ra, rb);
}

}  // namespace
}  // namespace tenantsync
