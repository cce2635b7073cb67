#include "core/lsn.h"

#include <gtest/gtest.h>

namespace tenantsync {
namespace {

TEST(LsnTest, ParsesAndFormatsRoundTrip) {
  auto lsn = Lsn::Parse("16/B374D848");
  ASSERT_TRUE(lsn.ok());
  EXPECT_EQ(lsn->value(), (uint64_t{0x16} << 32) | 0xB374D848);
  EXPECT_EQ(lsn->ToString(), "16/B374D848");
  EXPECT_EQ(Lsn::Parse("0/0")->value(), 0u);
  EXPECT_EQ(Lsn::Parse("ff/a")->ToString(), "FF/A");
}

TEST(LsnTest, RejectsMalformedText) {
  for (const char* bad : {"", "/", "1/", "/1", "1//2", "x/1", "1/2/3", "123456789/0", "1 /2", "-1/2"}) {
    auto lsn = Lsn::Parse(bad);
    EXPECT_FALSE(lsn.ok()) << bad;
    if (!lsn.ok()) {
      EXPECT_EQ(lsn.status().code(), StatusCode::kInvalidArgument) << bad;
    }
  }
}

TEST(LsnTest, OrdersAndMeasuresLag) {
  Lsn a(100), b(250);
  EXPECT_LT(a, b);
  EXPECT_EQ(b.BytesSince(a), 150u);
  EXPECT_EQ(a.BytesSince(b), 0u);
  EXPECT_FALSE(Lsn().valid());
}

}  // namespace
}  // namespace tenantsync
