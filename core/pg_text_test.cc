#include "core/pg_text.h"

#include <gtest/gtest.h>

namespace tenantsync {
namespace {

constexpr int64_t kDay = 86400LL * 1000000;

TEST(PgTextTest, IsoDatesCountDaysFromTheUnixEpoch) {
  int64_t d = -1;
  ASSERT_TRUE(ParseIsoDate("1970-01-01", &d));
  EXPECT_EQ(d, 0);
  ASSERT_TRUE(ParseIsoDate("2000-01-01", &d));
  EXPECT_EQ(d, 10957);
  ASSERT_TRUE(ParseIsoDate("2000-03-01", &d));  // 2000 is a leap year: Feb has 29 days
  EXPECT_EQ(d, 10957 + 31 + 29);
  ASSERT_TRUE(ParseIsoDate("1969-12-31", &d));
  EXPECT_EQ(d, -1);
  ASSERT_TRUE(ParseIsoDate("0001-01-01", &d));
  EXPECT_EQ(d, -719162);
  ASSERT_TRUE(ParseIsoDate("9999-12-31", &d));
  EXPECT_EQ(d, 2932896);
  ASSERT_TRUE(ParseIsoDate("2024-02-29", &d));
  EXPECT_EQ(d, 19782);
}

TEST(PgTextTest, IsoDatesRejectWhatTheServerDoesNotWrite) {
  int64_t d;
  for (const char* bad :
       {"", "2024-02-30", "2023-02-29", "1900-02-29", "2024-13-01", "2024-00-10", "2024-04-31",
        "0000-01-01", "0044-03-15 BC", "infinity", "-infinity", "12024-01-01", "2024-1-01",
        "2024/01/01", "2024-01-01 ", " 2024-01-01", "2024-01-01 00:00:00"}) {
    EXPECT_FALSE(ParseIsoDate(bad, &d)) << bad;
  }
}

TEST(PgTextTest, IsoTimestampsWithAndWithoutOffsets) {
  int64_t us = -1;
  ASSERT_TRUE(ParseIsoTimestamp("1970-01-01 00:00:00", false, &us));
  EXPECT_EQ(us, 0);
  ASSERT_TRUE(ParseIsoTimestamp("1970-01-02 00:00:00.5", false, &us));
  EXPECT_EQ(us, kDay + 500000);
  ASSERT_TRUE(ParseIsoTimestamp("1970-01-01 00:00:00.000001+00", true, &us));
  EXPECT_EQ(us, 1);
  ASSERT_TRUE(ParseIsoTimestamp("2000-01-01 05:30:00+05:30", true, &us));
  EXPECT_EQ(us, 10957 * kDay);
  ASSERT_TRUE(ParseIsoTimestamp("1999-12-31 23:00:00-01", true, &us));
  EXPECT_EQ(us, 10957 * kDay);
  // A local mean time offset with seconds, as timestamptz_out writes for old dates.
  ASSERT_TRUE(ParseIsoTimestamp("1900-01-01 00:19:32+00:19:32", true, &us));
  EXPECT_EQ(us, -25567 * kDay);
  ASSERT_TRUE(ParseIsoTimestamp("1969-12-31 23:59:59.999999", false, &us));
  EXPECT_EQ(us, -1);
  ASSERT_TRUE(ParseIsoTimestamp("2024-02-29 12:00:00.123+00", true, &us));
  EXPECT_EQ(us, 1709208000123000LL);
}

TEST(PgTextTest, IsoTimestampsRejectWhatTheServerDoesNotWrite) {
  int64_t us;
  for (const char* bad :
       {"", "2024-02-29", "2024-02-29T12:00:00", "2024-02-29 24:00:00", "2024-02-29 12:60:00",
        "2024-02-29 12:00:60", "2024-02-29 12:00:00.", "2024-02-29 12:00:00.1234567",
        "2024-02-29 12:00:00 BC", "2024-02-30 12:00:00", "2024-02-29 12:00", "infinity"}) {
    EXPECT_FALSE(ParseIsoTimestamp(bad, false, &us)) << bad;
  }
  // Without an offset where one is needed (the session's time zone would decide), with one where
  // none is expected, and malformed offsets.
  EXPECT_FALSE(ParseIsoTimestamp("2024-02-29 12:00:00", true, &us));
  EXPECT_FALSE(ParseIsoTimestamp("2024-02-29 12:00:00+00", false, &us));
  for (const char* bad :
       {"2024-02-29 12:00:00+0", "2024-02-29 12:00:00+00:00:00:00", "2024-02-29 12:00:00+16",
        "2024-02-29 12:00:00+01:60", "2024-02-29 12:00:00 +01", "2024-02-29 12:00:00+01:",
        "2024-02-29 "
        "12:00:00 CET",
        "2024-02-29 12:00:00Z"}) {
    EXPECT_FALSE(ParseIsoTimestamp(bad, true, &us)) << bad;
  }
}

TEST(PgTextTest, HexDigitsAndBigEndianAppends) {
  EXPECT_EQ(HexDigitValue('0'), 0);
  EXPECT_EQ(HexDigitValue('9'), 9);
  EXPECT_EQ(HexDigitValue('a'), 10);
  EXPECT_EQ(HexDigitValue('F'), 15);
  EXPECT_EQ(HexDigitValue('g'), -1);
  EXPECT_EQ(HexDigitValue('/'), -1);
  std::string out;
  AppendBigEndian32(0x01020304u, &out);
  AppendBigEndian64(0xA1B2C3D4E5F60718ull, &out);
  EXPECT_EQ(out, std::string("\x01\x02\x03\x04\xA1\xB2\xC3\xD4\xE5\xF6\x07\x18", 12));
}

}  // namespace
}  // namespace tenantsync
