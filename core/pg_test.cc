#include "core/pg.h"

#include <gtest/gtest.h>

namespace tenantsync {
namespace {

TEST(PgQuoteTest, QuotesIdentifiersWithQuotesSpacesAndUnicode) {
  EXPECT_EQ(QuoteIdent("orders"), "\"orders\"");
  EXPECT_EQ(QuoteIdent("My \"odd\" Tåble"), "\"My \"\"odd\"\" Tåble\"");
  EXPECT_EQ(QuoteQualified("tenant_rawdog", "Line Items"), "\"tenant_rawdog\".\"Line Items\"");
}

TEST(PgQuoteTest, QuotesLiterals) {
  EXPECT_EQ(QuoteLiteral("it's"), "'it''s'");
  EXPECT_EQ(QuoteLiteral(""), "''");
}

TEST(MaskUrlTest, MasksPasswordInUrlForm) {
  EXPECT_EQ(MaskUrl("postgresql://app:s3cr%40t@db.example:5432/shop?sslmode=require"),
            "postgresql://app:****@db.example:5432/shop?sslmode=require");
  EXPECT_EQ(MaskUrl("postgres://app@db/shop"), "postgres://app@db/shop");
}

TEST(MaskUrlTest, MasksPasswordInKeyValueAndQueryForm) {
  EXPECT_EQ(MaskUrl("host=db user=app password=hunter2 dbname=shop"),
            "host=db user=app password=**** dbname=shop");
  EXPECT_EQ(MaskUrl("host=db password='a b\\'c' dbname=shop"), "host=db password=**** dbname=shop");
  EXPECT_EQ(MaskUrl("postgresql:///shop?host=/tmp&password=hunter2&port=5"),
            "postgresql:///shop?host=/tmp&password=****&port=5");
}

TEST(PgConnTest, UnreachableServerIsConnectionErrorWithoutPassword) {
  auto conn = PgConn::Connect("postgresql://u:topsecret@127.0.0.1:1/db?connect_timeout=2", "test");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), StatusCode::kConnection);
  EXPECT_EQ(conn.status().message().find("topsecret"), std::string::npos);
  EXPECT_NE(conn.status().message().find("127.0.0.1:1"), std::string::npos);
}

}  // namespace
}  // namespace tenantsync
