#include "cdc/byte_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace tenantsync::cdc {
namespace {

using ::testing::HasSubstr;

std::span<const uint8_t> Bytes(const std::vector<uint8_t>& v) { return {v.data(), v.size()}; }

void ExpectOverrun(const Status& s, std::string_view field) {
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("test msg: "));
  EXPECT_THAT(s.message(), HasSubstr(std::string(field)));
}

TEST(ByteReaderTest, ReadsBigEndianIntegers) {
  std::vector<uint8_t> b = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
                            0x0c, 0x0d, 0x0e, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0xfe};
  ByteReader r(Bytes(b), "test msg");
  EXPECT_EQ(*r.ReadU8("a"), 0x01);
  EXPECT_EQ(*r.ReadU16("b"), 0x0203);
  EXPECT_EQ(*r.ReadU32("c"), 0x04050607u);
  EXPECT_EQ(*r.ReadU64("d"), 0x08090a0b0c0d0e0full);
  EXPECT_EQ(*r.ReadI64("e"), -2);
  EXPECT_TRUE(r.AtEnd());
  EXPECT_TRUE(r.ExpectEnd().ok());
}

TEST(ByteReaderTest, SignedReads) {
  std::vector<uint8_t> b = {0xff, 0xfe, 0xff, 0xff, 0xff, 0xff};
  ByteReader r(Bytes(b), "test msg");
  EXPECT_EQ(*r.ReadI16("a"), -2);
  EXPECT_EQ(*r.ReadI32("b"), -1);
}

TEST(ByteReaderTest, U8OverrunOnEmpty) {
  std::vector<uint8_t> b;
  ByteReader r(Bytes(b), "test msg");
  auto v = r.ReadU8("kind byte");
  ASSERT_FALSE(v.ok());
  ExpectOverrun(v.status(), "kind byte at offset 0 needs 1 bytes, 0 left");
}

TEST(ByteReaderTest, U16Overrun) {
  std::vector<uint8_t> b = {0x01};
  ByteReader r(Bytes(b), "test msg");
  auto v = r.ReadU16("column count");
  ASSERT_FALSE(v.ok());
  ExpectOverrun(v.status(), "column count at offset 0 needs 2 bytes, 1 left");
  EXPECT_EQ(r.offset(), 0u) << "a failed read consumes nothing";
}

TEST(ByteReaderTest, U32Overrun) {
  std::vector<uint8_t> b = {0, 0, 0, 1, 0, 0, 0};
  ByteReader r(Bytes(b), "test msg");
  ASSERT_TRUE(r.ReadU32("first").ok());
  auto v = r.ReadU32("relation oid");
  ASSERT_FALSE(v.ok());
  ExpectOverrun(v.status(), "relation oid at offset 4 needs 4 bytes, 3 left");
}

TEST(ByteReaderTest, U64Overrun) {
  std::vector<uint8_t> b(7, 0);
  ByteReader r(Bytes(b), "test msg");
  auto v = r.ReadU64("final_lsn");
  ASSERT_FALSE(v.ok());
  ExpectOverrun(v.status(), "final_lsn at offset 0 needs 8 bytes, 7 left");
}

TEST(ByteReaderTest, I64Overrun) {
  std::vector<uint8_t> b(3, 0);
  ByteReader r(Bytes(b), "test msg");
  auto v = r.ReadI64("commit_time");
  ASSERT_FALSE(v.ok());
  ExpectOverrun(v.status(), "commit_time at offset 0 needs 8 bytes");
}

TEST(ByteReaderTest, I16AndI32Overrun) {
  std::vector<uint8_t> b = {1};
  ByteReader r(Bytes(b), "test msg");
  ASSERT_FALSE(r.ReadI16("x").ok());
  auto v = r.ReadI32("typmod");
  ASSERT_FALSE(v.ok());
  ExpectOverrun(v.status(), "typmod at offset 0 needs 4 bytes");
}

TEST(ByteReaderTest, CStringReadsUpToNul) {
  std::vector<uint8_t> b = {'a', 'b', 0, 0, 'c', 0};
  ByteReader r(Bytes(b), "test msg");
  EXPECT_EQ(*r.ReadCString("s1"), "ab");
  EXPECT_EQ(*r.ReadCString("s2"), "");
  EXPECT_EQ(*r.ReadCStringView("s3"), "c");
  EXPECT_TRUE(r.AtEnd());
}

TEST(ByteReaderTest, CStringWithoutTerminator) {
  std::vector<uint8_t> b = {'a', 'b', 'c'};
  ByteReader r(Bytes(b), "test msg");
  auto v = r.ReadCString("relation name");
  ASSERT_FALSE(v.ok());
  ExpectOverrun(v.status(), "relation name at offset 0 has no terminating NUL in the 3 bytes");
}

TEST(ByteReaderTest, CStringAtEnd) {
  std::vector<uint8_t> b;
  ByteReader r(Bytes(b), "test msg");
  ASSERT_FALSE(r.ReadCStringView("prefix").ok());
}

TEST(ByteReaderTest, BytesExact) {
  std::vector<uint8_t> b = {'x', 'y', 'z'};
  ByteReader r(Bytes(b), "test msg");
  EXPECT_EQ(*r.ReadBytes(2, "value"), "xy");
  EXPECT_EQ(*r.ReadBytesView(1, "value"), "z");
  EXPECT_EQ(*r.ReadBytes(0, "empty"), "");
}

TEST(ByteReaderTest, BytesOverrunDoesNotAllocate) {
  std::vector<uint8_t> b = {'x', 'y', 'z'};
  ByteReader r(Bytes(b), "test msg");
  // A length of 4 GB from the wire must fail on the bounds check, not in an allocation.
  auto v = r.ReadBytes(0xffffffffu, "tuple column value");
  ASSERT_FALSE(v.ok());
  ExpectOverrun(v.status(), "tuple column value at offset 0 needs 4294967295 bytes, 3 left");
}

TEST(ByteReaderTest, NeedChecksCountsBeforeReserving) {
  std::vector<uint8_t> b(10, 0);
  ByteReader r(Bytes(b), "test msg");
  EXPECT_TRUE(r.Need(10, "columns").ok());
  ExpectOverrun(r.Need(600000, "columns"), "columns at offset 0 needs 600000 bytes, 10 left");
}

TEST(ByteReaderTest, ExpectEndReportsTrailingBytes) {
  std::vector<uint8_t> b = {1, 2, 3};
  ByteReader r(Bytes(b), "test msg");
  ASSERT_TRUE(r.ReadU8("a").ok());
  Status s = r.ExpectEnd();
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("2 unexpected trailing bytes at offset 1"));
}

}  // namespace
}  // namespace tenantsync::cdc
