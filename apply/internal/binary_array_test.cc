#include "apply/internal/binary_array.h"

#include <gtest/gtest.h>

namespace tenantsync::apply::internal {
namespace {

std::string Be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string Header(uint32_t type, int32_t n, bool nulls) {
  return Be32(1) + Be32(nulls ? 1 : 0) + Be32(type) + Be32(static_cast<uint32_t>(n)) + Be32(1);
}

// The array of `values` as a text-typed BinaryArrayBuilder of `type` makes it, or "(text)" when a
// value is not converted.
std::string Build(const std::string& type, const std::vector<Datum>& values) {
  BinaryArrayBuilder b(BinaryArrayElementType(type), static_cast<int32_t>(values.size()));
  for (const Datum& d : values) {
    if (!b.Append(d)) return "(text)";
  }
  return std::move(b).Finish();
}

TEST(BinaryArray, ElementTypesByTargetTypeName) {
  EXPECT_EQ(BinaryArrayElementType("text"), 25u);
  EXPECT_EQ(BinaryArrayElementType("character varying(40)"), 1043u);
  EXPECT_EQ(BinaryArrayElementType("character varying"), 1043u);
  EXPECT_EQ(BinaryArrayElementType("bigint"), 20u);
  EXPECT_EQ(BinaryArrayElementType("timestamp with time zone"), 1184u);
  EXPECT_EQ(BinaryArrayElementType("jsonb"), 3802u);
  // Left to text arrays: types whose binary form the client does not build, typmods that the
  // receive function would apply differently, padded characters.
  for (const char* t : {"numeric", "numeric(12,2)", "character(8)", "uuid", "text[]",
                        "timestamp(3) with time zone", "interval", "mood", "double precision"}) {
    EXPECT_EQ(BinaryArrayElementType(t), 0u) << t;
  }
}

TEST(BinaryArray, LayoutIsArrayRecvs) {
  EXPECT_EQ(Build("bigint", {Datum::Text("1"), Datum::Text("-2")}),
            Header(20, 2, false) + Be32(8) + Be32(0) + Be32(1) + Be32(8) + Be32(0xFFFFFFFF) +
                Be32(0xFFFFFFFE));
  EXPECT_EQ(Build("integer", {Datum::Null(), Datum::Text("2147483647")}),
            Header(23, 2, true) + Be32(0xFFFFFFFF) + Be32(4) + Be32(0x7FFFFFFF));
  EXPECT_EQ(Build("smallint", {Datum::Text("-32768")}),
            Header(21, 1, false) + Be32(2) + std::string("\x80\x00", 2));
  EXPECT_EQ(Build("text", {Datum::Text("a\"b\\c,{}"), Datum::Text("")}),
            Header(25, 2, false) + Be32(8) + "a\"b\\c,{}" + Be32(0));
  EXPECT_EQ(Build("jsonb", {Datum::Text("{\"a\": 1}")}),
            Header(3802, 1, false) + Be32(9) + "\x01{\"a\": 1}");
  EXPECT_EQ(Build("bytea", {Datum::Text("\\x00fFa0"), Datum::Text("\\x")}),
            Header(17, 2, false) + Be32(3) + std::string("\x00\xff\xa0", 3) + Be32(0));
  EXPECT_EQ(
      Build("boolean", {Datum::Text("t"), Datum::Text("false")}),
      Header(16, 2, false) + Be32(1) + std::string("\x01", 1) + Be32(1) + std::string("\x00", 1));
  // 2000-01-02 is day 1 of PostgreSQL's epoch; 2000-01-01 00:00:01+01 is 3599 s before it.
  EXPECT_EQ(Build("date", {Datum::Text("2000-01-02"), Datum::Text("1999-12-31")}),
            Header(1082, 2, false) + Be32(4) + Be32(1) + Be32(4) + Be32(0xFFFFFFFF));
  EXPECT_EQ(Build("timestamp with time zone", {Datum::Text("2000-01-01 00:00:01+01")}),
            Header(1184, 1, false) + Be32(8) + Be32(0xFFFFFFFF) +
                Be32(static_cast<uint32_t>(-3599000000LL)));
  EXPECT_EQ(Build("timestamp without time zone", {Datum::Text("2000-01-01 00:00:00.000002")}),
            Header(1114, 1, false) + Be32(8) + Be32(0) + Be32(2));
}

TEST(BinaryArray, ValuesNotInTheServersOutputFormAreLeftToText) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"smallint", "32768"},
      {"integer", "2147483648"},
      {"bigint", " 1"},
      {"bigint", "+1"},
      {"bigint", "1.0"},
      {"bigint", ""},
      {"boolean", "yes"},
      {"bytea", "\\001abc"},
      {"bytea", "\\x0"},
      {"bytea", "\\x0g"},
      {"date", "infinity"},
      {"date", "0044-03-15 BC"},
      {"timestamp with time zone", "2024-01-01 00:00:00"},  // no offset: the session's zone
      {"timestamp without time zone", "2024-01-01 00:00:00+00"},
  };
  for (const auto& [type, text] : cases) {
    EXPECT_EQ(Build(type, {Datum::Text("1"), Datum::Text(text)}).substr(0, 6), "(text)")
        << type << " '" << text << "'";
  }
}

TEST(BinaryArray, DecodesOnlyBytesHexFormat) {
  std::string out = "k";
  ASSERT_TRUE(DecodeByteaHex("\\xDEADbeef", &out));
  EXPECT_EQ(out, "k\xde\xad\xbe\xef");
  for (const char* bad : {"", "\\", "x00", "\\x0", "\\x 00", "\\X00", "\\000"}) {
    std::string o;
    EXPECT_FALSE(DecodeByteaHex(bad, &o)) << bad;
  }
}

}  // namespace
}  // namespace tenantsync::apply::internal
