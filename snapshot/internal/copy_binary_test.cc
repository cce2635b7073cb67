#include "snapshot/internal/copy_binary.h"

#include <gtest/gtest.h>

namespace tenantsync::snapshot::internal {
namespace {

const std::string kHeader = std::string("PGCOPY\n\377\r\n\0", 11) + std::string(8, '\0');

std::string U32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}
std::string Field(const std::string& bytes) { return U32(bytes.size()) + bytes; }
const std::string kNull = U32(0xffffffffu);
std::string Count(int16_t n) { return {static_cast<char>(n >> 8), static_cast<char>(n)}; }

TEST(BinaryPaddingTrimmer, TrimsOnlyTheMarkedFieldsAndOnlyTrailingBlanks) {
  BinaryPaddingTrimmer t({false, true, true, false});
  std::string out;
  // Header with the first row, as COPY TO sends it: an int, two character(n) values, a text
  // value whose trailing blanks are data and stay.
  std::string first = kHeader + Count(4) + Field(std::string("\0\0\0\7", 4)) + Field("  a b   ") +
                      Field("\xc3\xa4\xc3\xb6 ") + Field("keep  ");
  ASSERT_TRUE(t.Append(first, &out).ok());
  EXPECT_EQ(out, kHeader + Count(4) + Field(std::string("\0\0\0\7", 4)) + Field("  a b") +
                     Field("\xc3\xa4\xc3\xb6") + Field("keep  "));
  // All blank becomes empty (the target pads it back); NULL stays NULL; nothing to trim stays.
  out.clear();
  ASSERT_TRUE(
      t.Append(Count(4) + Field("x") + Field(std::string(84, ' ')) + kNull + kNull, &out).ok());
  EXPECT_EQ(out, Count(4) + Field("x") + Field("") + kNull + kNull);
  out.clear();
  ASSERT_TRUE(t.Append(Count(4) + kNull + Field("abc") + Field("") + Field(" "), &out).ok());
  EXPECT_EQ(out, Count(4) + kNull + Field("abc") + Field("") + Field(" "));
  // The trailer.
  ASSERT_TRUE(t.Append(Count(-1), &out).ok());
  EXPECT_EQ(out.substr(out.size() - 2), Count(-1));
}

TEST(BinaryPaddingTrimmer, EmptyTableIsHeaderAndTrailerInOneMessage) {
  BinaryPaddingTrimmer t({true});
  std::string out;
  ASSERT_TRUE(t.Append(kHeader + Count(-1), &out).ok());
  EXPECT_EQ(out, kHeader + Count(-1));
}

TEST(BinaryPaddingTrimmer, MalformedMessagesAreErrorsAndAppendNothing) {
  std::string out = "before";
  {
    BinaryPaddingTrimmer t({true});
    EXPECT_EQ(t.Append("not a header", &out).code(), StatusCode::kCorruption);
    EXPECT_EQ(t.Append(kHeader.substr(0, 15) + U32(100), &out).code(), StatusCode::kCorruption);
  }
  BinaryPaddingTrimmer t({true, false});
  ASSERT_TRUE(t.Append(kHeader, &out).ok());
  out = "before";
  const std::vector<std::string> bad = {
      "",                                          // no field count
      Count(3) + Field("a") + Field("b") + kNull,  // wrong field count
      Count(2) + Field("a"),                       // a field missing
      Count(2) + U32(10) + "abc" + Field("b"),     // length past the end
      Count(2) + Field("a") + U32(0xfffffffeu),    // negative length other than -1
      Count(2) + Field("a") + Field("b") + "x",    // bytes after the last field
      Count(-1) + "x",                             // bytes after the trailer
  };
  for (const auto& m : bad) {
    Status st = t.Append(m, &out);
    EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
    EXPECT_EQ(out, "before");
  }
}

TEST(BinaryPaddingTrimmer, OnlyCharacterWithALengthIsPadded) {
  EXPECT_TRUE(IsPaddedCharType("character(1)"));
  EXPECT_TRUE(IsPaddedCharType("character(84)"));
  for (const char* t :
       {"bpchar", "character", "character varying(84)", "character(84)[]", "\"char\"", "text",
        "character()", "character(8x)", "public.character(3)"}) {
    EXPECT_FALSE(IsPaddedCharType(t)) << t;
  }
}

// The applier's staging COPY asks the same question of the target catalog's and the config's
// type names.
TEST(BinaryPaddingTrimmer, CharacterWithALengthInEverySpellingIsPadded) {
  for (const char* t : {"character(84)", "character(1)", "char(5)", "bpchar(3)"}) {
    EXPECT_TRUE(IsPaddedCharType(t)) << t;
  }
  for (const char* t : {"bpchar", "character", "character varying(10)", "character(84)[]",
                        "char(x)", "character()", "text", "\"char\"", "varchar(3)", "char(5"}) {
    EXPECT_FALSE(IsPaddedCharType(t)) << t;
  }
}

}  // namespace
}  // namespace tenantsync::snapshot::internal
