#include "state/internal/records.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "state/internal/codec.h"
#include "state/internal/test_util.h"

namespace tenantsync::state::internal {
namespace {

using ::testing::HasSubstr;

class MapRelations final : public RelationSource {
 public:
  StatusOr<std::shared_ptr<const Relation>> Get(uint64_t fp) override {
    auto it = map.find(fp);
    if (it == map.end()) return Corruption("no relation " + std::to_string(fp));
    return it->second;
  }
  std::map<uint64_t, std::shared_ptr<const Relation>> map;
};

TEST(CodecTest, VarintAndFixedRoundTripAndRejectUnderflow) {
  std::string s;
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 300ull, 1ull << 35, ~0ull}) PutVarint64(&s, v);
  PutFixed64BE(&s, 0x0102030405060708ull);
  PutFixed32BE(&s, 0xa1b2c3d4u);
  PutLengthPrefixed(&s, "hello");
  ByteReader r(s);
  uint64_t v = 0;
  for (uint64_t want : {0ull, 1ull, 127ull, 128ull, 300ull, 1ull << 35, ~0ull}) {
    ASSERT_TRUE(r.ReadVarint64(&v));
    EXPECT_EQ(v, want);
  }
  ASSERT_TRUE(r.ReadFixed64BE(&v));
  EXPECT_EQ(v, 0x0102030405060708ull);
  uint32_t u = 0;
  ASSERT_TRUE(r.ReadFixed32BE(&u));
  EXPECT_EQ(u, 0xa1b2c3d4u);
  std::string_view sv;
  ASSERT_TRUE(r.ReadLengthPrefixed(&sv));
  EXPECT_EQ(sv, "hello");
  EXPECT_TRUE(r.done());
  uint8_t b = 0;
  EXPECT_FALSE(r.ReadU8(&b));
  EXPECT_FALSE(r.ReadVarint64(&v));
  EXPECT_FALSE(r.ReadFixed64BE(&v));
}

TEST(CodecTest, OverlongVarintAndLengthBeyondInputAreRejected) {
  std::string eleven(11, '\x80');
  ByteReader r1(eleven);
  uint64_t v = 0;
  EXPECT_FALSE(r1.ReadVarint64(&v));
  std::string too_big;
  PutVarint64(&too_big, 1000);
  too_big += "abc";
  ByteReader r2(too_big);
  std::string_view sv;
  EXPECT_FALSE(r2.ReadLengthPrefixed(&sv));
}

TEST(CodecTest, BigEndianKeysSortNumerically) {
  EXPECT_LT(Key64(0xff), Key64(0x100));
  EXPECT_LT(Key64x2(1, ~0ull), Key64x2(2, 0));
  EXPECT_EQ(DecodeFixed64BE(Key64(0x16B374D848).data()), 0x16B374D848u);
}

class ChangeRecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rel_ = testing::MakeRelation("orders", 3);
    relations_.map[rel_->Fingerprint()] = rel_;
    change_.op = ChangeOp::kUpdate;
    change_.relation = rel_;
    change_.new_tuple = {Datum::Text("1"), Datum::Unchanged(), Datum::Text("abc")};
    change_.old_tuple = {Datum::Text("0"), Datum::Null(), Datum::Null()};
    change_.message_prefix = "p";
    EncodeChange(change_, rel_->Fingerprint(), {rel_->Fingerprint()}, &encoded_);
  }
  std::shared_ptr<const Relation> rel_;
  MapRelations relations_;
  Change change_;
  std::string encoded_;
};

TEST_F(ChangeRecordTest, RoundTrips) {
  Change out;
  ASSERT_TRUE(DecodeChange("k", encoded_, &relations_, &out).ok());
  EXPECT_EQ(out.op, ChangeOp::kUpdate);
  EXPECT_EQ(out.relation, rel_);
  EXPECT_EQ(out.new_tuple, change_.new_tuple);
  EXPECT_EQ(out.old_tuple, change_.old_tuple);
  ASSERT_EQ(out.truncated.size(), 1u);
  EXPECT_EQ(out.message_prefix, "p");
}

TEST_F(ChangeRecordTest, EveryTruncationIsCorruption) {
  for (size_t n = 0; n < encoded_.size(); ++n) {
    Change out;
    Status s = DecodeChange("key", encoded_.substr(0, n), &relations_, &out);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << "prefix of " << n << " bytes";
    EXPECT_THAT(s.message(), HasSubstr(HexKey("key")));
  }
}

TEST_F(ChangeRecordTest, TrailingBytesUnknownKindsAndVersionsAreCorruption) {
  Change out;
  EXPECT_EQ(DecodeChange("k", encoded_ + "x", &relations_, &out).code(), StatusCode::kCorruption);
  std::string bad_version = encoded_;
  bad_version[0] = 9;
  Status s = DecodeChange("k", bad_version, &relations_, &out);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("record version 9"));
  std::string bad_op = encoded_;
  bad_op[1] = 'Z';
  EXPECT_THAT(DecodeChange("k", bad_op, &relations_, &out).message(),
              HasSubstr("unknown change op"));
  std::string bad_datum = encoded_;
  bad_datum[1 + 1 + 8 + 1] = 'q';  // first datum kind of the new tuple
  EXPECT_THAT(DecodeChange("k", bad_datum, &relations_, &out).message(),
              HasSubstr("unknown datum kind"));
  MapRelations empty;
  EXPECT_EQ(DecodeChange("k", encoded_, &empty, &out).code(), StatusCode::kCorruption);
}

// Reads every change of a journal_change value; the first error, or the changes.
StatusOr<std::vector<Change>> ReadBlock(std::string_view value, RelationSource* relations) {
  ChangeBlockReader r;
  TS_RETURN_IF_ERROR(r.Reset("key", value));
  std::vector<Change> out;
  for (;;) {
    Change c;
    TS_ASSIGN_OR_RETURN(bool more, r.Next(relations, &c));
    if (!more) break;
    out.push_back(std::move(c));
  }
  if (out.size() != r.count()) return Fatal("read " + std::to_string(out.size()));
  return out;
}

TEST_F(ChangeRecordTest, BlockRoundTripsItsChangesInOrder) {
  ChangeBlockBuilder b;
  EXPECT_TRUE(b.empty());
  Change insert = testing::MakeInsert(rel_, {Datum::Text("2"), Datum::Text(""), Datum::Null()});
  Change big = testing::MakeInsert(
      rel_, {Datum::Text("3"), Datum::Text(std::string(70000, 'x')), Datum::Text("tab\there")});
  b.Add(change_, rel_->Fingerprint(), {rel_->Fingerprint()});
  b.Add(insert, rel_->Fingerprint(), {});
  b.Add(big, rel_->Fingerprint(), {});
  EXPECT_EQ(b.count(), 3u);
  const std::string block(b.Finish());
  EXPECT_EQ(block.size(), b.size());
  auto got = ReadBlock(block, &relations_);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[0].op, ChangeOp::kUpdate);
  EXPECT_EQ((*got)[0].new_tuple, change_.new_tuple);
  EXPECT_EQ((*got)[0].old_tuple, change_.old_tuple);
  EXPECT_EQ((*got)[0].truncated.size(), 1u);
  EXPECT_EQ((*got)[1].new_tuple, insert.new_tuple);
  EXPECT_EQ((*got)[2].new_tuple, big.new_tuple);
  EXPECT_EQ((*got)[2].relation, rel_);

  // Clear starts a new block; the old value is not changed by it.
  b.Clear();
  EXPECT_TRUE(b.empty());
  b.Add(insert, rel_->Fingerprint(), {});
  auto one = ReadBlock(b.Finish(), &relations_);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].new_tuple, insert.new_tuple);
  EXPECT_EQ(ReadBlock(block, &relations_)->size(), 3u);
}

TEST_F(ChangeRecordTest, ASingleChangeRecordOfStateFormat1ReadsAsABlockOfOne) {
  auto got = ReadBlock(encoded_, &relations_);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].new_tuple, change_.new_tuple);
  EXPECT_EQ((*got)[0].old_tuple, change_.old_tuple);
}

TEST_F(ChangeRecordTest, EveryBlockTruncationAndBadHeaderIsCorruption) {
  ChangeBlockBuilder b;
  b.Add(change_, rel_->Fingerprint(), {rel_->Fingerprint()});
  b.Add(change_, rel_->Fingerprint(), {});
  const std::string block(b.Finish());
  for (size_t n = 0; n < block.size(); ++n) {
    auto got = ReadBlock(block.substr(0, n), &relations_);
    ASSERT_FALSE(got.ok()) << "prefix of " << n << " bytes";
    EXPECT_EQ(got.status().code(), StatusCode::kCorruption) << "prefix of " << n << " bytes";
    EXPECT_THAT(got.status().message(), HasSubstr(HexKey("key")));
  }
  auto trailing = ReadBlock(block + "x", &relations_);
  EXPECT_EQ(trailing.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(trailing.status().message(), HasSubstr("1 trailing bytes"));

  std::string zero = block;
  zero[1] = zero[2] = zero[3] = zero[4] = 0;
  EXPECT_THAT(ReadBlock(zero, &relations_).status().message(), HasSubstr("a block of 0 changes"));
  std::string more = block;
  more[4] = 3;  // claims a third change
  EXPECT_THAT(ReadBlock(more, &relations_).status().message(),
              HasSubstr("change 3 of 3 runs past the end"));
  std::string fewer = block;
  fewer[4] = 1;  // the second change becomes trailing bytes
  EXPECT_THAT(ReadBlock(fewer, &relations_).status().message(), HasSubstr("trailing bytes"));
  std::string version = block;
  version[0] = 7;
  EXPECT_THAT(ReadBlock(version, &relations_).status().message(), HasSubstr("record version 7"));
  std::string huge_len = block;
  huge_len[5] = '\x7f';  // the first change's length, far past the end
  EXPECT_EQ(ReadBlock(huge_len, &relations_).status().code(), StatusCode::kCorruption);
}

TEST_F(ChangeRecordTest, RandomByteFlipsNeverCrash) {
  std::mt19937 rng(42);
  for (int i = 0; i < 20000; ++i) {
    std::string v = encoded_;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) v[rng() % v.size()] = static_cast<char>(rng());
    Change out;
    Status s = DecodeChange("k", v, &relations_, &out);
    if (!s.ok()) {
      EXPECT_EQ(s.code(), StatusCode::kCorruption);
    }
  }
}

TEST(RecordsTest, OtherRecordsRoundTripAndRejectTruncation) {
  TxnRecord t{.xid = 9,
              .commit_lsn = Lsn(500),
              .end_lsn = Lsn(520),
              .commit_time_us = -5,
              .seq = 77,
              .changes = 3,
              .bytes = 999,
              .journaled_at_us = 123};
  std::string tv = EncodeTxn(t);
  TxnRecord t2;
  ASSERT_TRUE(DecodeTxn(Key64(500), tv, &t2).ok());
  EXPECT_EQ(t2.xid, 9u);
  EXPECT_EQ(t2.end_lsn, Lsn(520));
  EXPECT_EQ(t2.commit_time_us, -5);
  EXPECT_EQ(t2.seq, 77u);
  EXPECT_EQ(t2.journaled_at_us, 123);
  EXPECT_THAT(DecodeTxn(Key64(501), tv, &t2).message(), HasSubstr("does not match its key"));
  for (size_t n = 0; n < tv.size(); ++n) {
    EXPECT_EQ(DecodeTxn(Key64(500), tv.substr(0, n), &t2).code(), StatusCode::kCorruption);
  }

  auto rel = testing::MakeRelation("line_items", 5);
  std::string rv = EncodeRelation(*rel);
  Relation r2;
  ASSERT_TRUE(DecodeRelation(Key64(rel->Fingerprint()), rv, &r2).ok());
  EXPECT_EQ(r2, *rel);
  for (size_t n = 0; n < rv.size(); ++n) {
    EXPECT_EQ(DecodeRelation(Key64(rel->Fingerprint()), rv.substr(0, n), &r2).code(),
              StatusCode::kCorruption);
  }

  DeadLetter d{.id = 0,
               .table = "orders",
               .key = "id=1",
               .reason = "bad",
               .phase = "apply",
               .lsn = Lsn(7),
               .time_us = 8};
  std::string dv = EncodeDeadLetter(d);
  DeadLetter d2;
  ASSERT_TRUE(DecodeDeadLetter(Key64(5), dv, &d2).ok());
  EXPECT_EQ(d2.id, 5u);
  EXPECT_EQ(d2.reason, "bad");
  for (size_t n = 0; n < dv.size(); ++n) {
    EXPECT_EQ(DecodeDeadLetter(Key64(5), dv.substr(0, n), &d2).code(), StatusCode::kCorruption);
  }

  Checkpoint c{.id = 3, .lsn = Lsn(10), .time_us = 11, .transactions = 12};
  std::string cv = EncodeCheckpoint(c);
  Checkpoint c2;
  ASSERT_TRUE(DecodeCheckpoint("ckpt", cv, &c2).ok());
  EXPECT_EQ(c2.transactions, 12u);

  WriterState w{.last_commit_lsn = Lsn(1),
                .last_end_lsn = Lsn(2),
                .last_commit_time_us = 3,
                .last_seq = 4,
                .appended_txns = 5,
                .appended_changes = 6,
                .appended_bytes = 7,
                .received_lsn = Lsn(8)};
  WriterState w2;
  ASSERT_TRUE(DecodeWriterState(EncodeWriterState(w), &w2).ok());
  EXPECT_EQ(w2.appended_bytes, 7u);
  EXPECT_EQ(w2.received_lsn, Lsn(8));

  FormatMarker m{.format_version = kFormatVersion, .pipeline = "rawdog", .created_us = 1};
  FormatMarker m2;
  ASSERT_TRUE(DecodeFormatMarker(EncodeFormatMarker(m), &m2).ok());
  EXPECT_EQ(m2.pipeline, "rawdog");
  EXPECT_EQ(DecodeFormatMarker("\x01\x03"
                               "abc",
                               &m2)
                .code(),
            StatusCode::kCorruption);
}

}  // namespace
}  // namespace tenantsync::state::internal
