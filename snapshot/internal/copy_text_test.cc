#include "snapshot/internal/copy_text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tenantsync::snapshot::internal {
namespace {

using ::testing::HasSubstr;

Tuple Parse(std::string_view line, size_t n) {
  Tuple t;
  Status st = ParseCopyTextRow(line, n, &t);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return t;
}

TEST(CopyText, PlainFieldsAndNull) {
  Tuple t = Parse("1\tabc\t\\N\t\n", 4);
  EXPECT_EQ(t[0], Datum::Text("1"));
  EXPECT_EQ(t[1], Datum::Text("abc"));
  EXPECT_TRUE(t[2].is_null());
  EXPECT_EQ(t[3], Datum::Text(""));  // empty string is not NULL
}

TEST(CopyText, EveryEscape) {
  Tuple t = Parse("a\\tb\\nc\\rd\\\\e\\bf\\fg\\vh\t\\101\\x41\\x4a\\q\n", 2);
  EXPECT_EQ(t[0].text, "a\tb\nc\rd\\e\bf\fg\vh");
  EXPECT_EQ(t[1].text, "AAJq");  // octal, hex (1-2 digits), unknown escape = the character
}

TEST(CopyText, BackslashNInsideTextIsNotNull) {
  Tuple t = Parse("\\\\N\tx\\N", 2);
  EXPECT_EQ(t[0], Datum::Text("\\N"));
  EXPECT_EQ(t[1], Datum::Text("xN"));
}

TEST(CopyText, Utf8PassesThrough) {
  Tuple t = Parse("caf\xc3\xa9 \xe2\x9c\x93\n", 1);
  EXPECT_EQ(t[0].text, "caf\xc3\xa9 \xe2\x9c\x93");
}

TEST(CopyText, TooFewColumnsIsCorruption) {
  Tuple t;
  Status st = ParseCopyTextRow("1\t2\n", 3, &t);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_THAT(st.message(), HasSubstr("2 columns, expected 3"));
}

TEST(CopyText, TooManyColumnsIsCorruption) {
  Tuple t;
  Status st = ParseCopyTextRow("1\t2\t3\n", 2, &t);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_THAT(st.message(), HasSubstr("more than 2 columns"));
}

TEST(CopyText, EscapeAtEndOfRowIsCorruption) {
  Tuple t;
  Status st = ParseCopyTextRow("1\tabc\\", 2, &t);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_THAT(st.message(), HasSubstr("column 2"));
  EXPECT_EQ(st.message().find("abc"), std::string::npos);  // never the value
}

TEST(CopyText, WriteEscapesWhatTheParserUnescapes) {
  Tuple row = {Datum::Text("tab\there"), Datum::Null(), Datum::Text("line\nbreak\r\\"),
               Datum::Text(""), Datum::Text("\\N")};
  std::string out;
  AppendCopyTextRow(row, &out);
  EXPECT_EQ(out, "tab\\there\t\\N\tline\\nbreak\\r\\\\\t\t\\\\N\n");
  Tuple back = Parse(out, row.size());
  EXPECT_EQ(back, row);
}

TEST(CopyText, RoundTripsEveryByte) {
  std::string all;
  for (int c = 1; c < 256; ++c) all.push_back(static_cast<char>(c));
  std::string out;
  AppendCopyTextRow({Datum::Text(all)}, &out);
  EXPECT_EQ(Parse(out, 1)[0].text, all);
}

}  // namespace
}  // namespace tenantsync::snapshot::internal
