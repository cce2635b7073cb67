#include "cdc/pgoutput_decoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cdc/internal/fixtures.h"

namespace tenantsync::cdc {
namespace {

using ::testing::HasSubstr;
using testing::FixtureCatalog;
using testing::FixtureMessage;

const std::string kTestdata = TENANTSYNC_CDC_TESTDATA;

class PgoutputFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cat = testing::LoadCatalog(kTestdata + "/zoo.catalog.tsv");
    ASSERT_TRUE(cat.ok()) << cat.status().ToString();
    catalog_ = std::move(cat).value();
    auto msgs = testing::LoadFixture(kTestdata + "/zoo.pgoutput.hex", /*hex=*/true);
    ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
    messages_ = std::move(msgs).value();
    PgoutputDecoder decoder(catalog_.TypeNames());
    for (const auto& m : messages_) {
      auto ev = decoder.Decode(m.bytes);
      ASSERT_TRUE(ev.ok()) << ev.status().ToString();
      events_.push_back(std::move(ev).value());
    }
  }

  // Changes of `table`, in order.
  std::vector<Change> ChangesOf(const std::string& table) const {
    std::vector<Change> out;
    for (const auto& e : events_) {
      if (const auto* c = std::get_if<Change>(&e); c && c->relation && c->relation->name == table) {
        out.push_back(*c);
      }
    }
    return out;
  }

  FixtureCatalog catalog_;
  std::vector<FixtureMessage> messages_;
  std::vector<Event> events_;
};

TEST_F(PgoutputFixtureTest, TransactionsAreBracketedAndLsnsAgree) {
  int begins = 0, commits = 0;
  std::optional<BeginTxn> open;
  for (const auto& e : events_) {
    if (const auto* b = std::get_if<BeginTxn>(&e)) {
      ASSERT_FALSE(open) << "nested Begin";
      open = *b;
      ++begins;
      EXPECT_NE(b->xid, 0u);
      // Commit times are after 2020 in Unix microseconds.
      EXPECT_GT(b->commit_time_us, 1577836800LL * 1000000);
    } else if (const auto* c = std::get_if<CommitTxn>(&e)) {
      ASSERT_TRUE(open) << "Commit without Begin";
      EXPECT_EQ(c->commit_lsn, open->final_lsn);
      EXPECT_GT(c->end_lsn, c->commit_lsn);
      EXPECT_EQ(c->commit_time_us, open->commit_time_us);
      open.reset();
      ++commits;
    } else if (std::holds_alternative<StandaloneMessage>(e)) {
      EXPECT_FALSE(open) << "non-transactional message inside a transaction";
    } else if (std::holds_alternative<Change>(e)) {
      EXPECT_TRUE(open) << "change outside a transaction";
    }
  }
  EXPECT_EQ(begins, commits);
  EXPECT_EQ(begins, 11);
}

TEST_F(PgoutputFixtureTest, RelationCarriesCatalogTypeNamesAndKeys) {
  std::shared_ptr<const Relation> zoo;
  for (const auto& e : events_) {
    if (const auto* r = std::get_if<RelationUpdate>(&e); r && r->relation->name == "zoo") {
      zoo = r->relation;
    }
  }
  ASSERT_TRUE(zoo);
  EXPECT_EQ(zoo->schema, "public");
  EXPECT_EQ(zoo->replica_identity, 'd');
  ASSERT_EQ(zoo->columns.size(), 28u);
  EXPECT_EQ(zoo->columns[0].name, "id");
  EXPECT_TRUE(zoo->columns[0].is_key);
  EXPECT_EQ(zoo->columns[0].type_name, "bigint");
  EXPECT_EQ(zoo->columns[1].type_name, "numeric(20,6)");
  EXPECT_EQ(zoo->columns[1].type_oid, 1700u);
  EXPECT_FALSE(zoo->columns[1].is_key);
  EXPECT_EQ(zoo->columns[23].type_name, "character varying(20)");
  EXPECT_EQ(zoo->columns[19].type_name, "mood");
  EXPECT_EQ(*zoo, catalog_.relations.at({"public", "zoo"}));
}

TEST_F(PgoutputFixtureTest, TypeZooValuesAreExactText) {
  auto changes = ChangesOf("zoo");
  ASSERT_EQ(changes.size(), 6u);  // 3 inserts, 2 updates, 1 delete
  const Change& row1 = changes[0];
  ASSERT_EQ(row1.op, ChangeOp::kInsert);
  const Tuple& t = row1.new_tuple;
  ASSERT_EQ(t.size(), 28u);
  EXPECT_EQ(t[0], Datum::Text("1"));
  EXPECT_EQ(t[1], Datum::Text("12345678901234.123456"));
  EXPECT_EQ(t[2], Datum::Text("123456789012345678901234567890.123456789012345678901"));
  EXPECT_EQ(t[3], Datum::Text("9223372036854775807"));
  EXPECT_EQ(t[4], Datum::Text("-2147483648"));
  EXPECT_EQ(t[6], Datum::Text("1.5e+300"));
  EXPECT_EQ(t[8], Datum::Text("2024-02-29 23:59:59.999999+00"));
  EXPECT_EQ(t[9], Datum::Text("1999-12-31 23:59:59.5"));
  EXPECT_EQ(t[12], Datum::Text("12:00:00+05:30"));
  EXPECT_EQ(t[13], Datum::Text("1 year 2 mons 3 days 04:05:06.789"));
  EXPECT_EQ(t[14], Datum::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
  EXPECT_EQ(t[15], Datum::Text(R"({"k": "v\"quote\\back", "n": 1.10, "u": "日本 😀", )"
                               R"("nested": {"arr": [1, null, true]}})"));
  EXPECT_EQ(t[16], Datum::Text(R"({ "keep" : "spacing",  "dup": 1, "dup": 2 })"));
  EXPECT_EQ(t[17], Datum::Text("{1,NULL,-3}"));
  EXPECT_EQ(t[18], Datum::Text(R"({"a b",NULL,"c\"d","e\\f",""})"));
  EXPECT_EQ(t[19], Datum::Text("happy"));
  EXPECT_EQ(t[20], Datum::Text("{happy,sad}"));
  EXPECT_EQ(t[21], Datum::Text("\\x00ff10deadbeef"));
  EXPECT_EQ(t[22], Datum::Text("tab\there\nnewline\r\x01\x1f back\\slash \"quotes\" 'single' "
                               "héllo ✓ 日本 😀"));
  EXPECT_EQ(t[24], Datum::Text("ab "));
  EXPECT_EQ(t[25], Datum::Text("t"));
  EXPECT_EQ(t[26], Datum::Text("192.168.0.1/24"));
  ASSERT_EQ(t[27].kind, Datum::Kind::kText);
  EXPECT_EQ(t[27].text.size(), 40u * 400u) << "TOASTed value arrives whole";

  const Tuple& t2 = changes[1].new_tuple;
  EXPECT_EQ(t2[8], Datum::Text("infinity"));
  EXPECT_EQ(t2[9], Datum::Text("-infinity"));
  EXPECT_EQ(t2[21], Datum::Text("\\x"));
  EXPECT_EQ(t2[22], Datum::Text(""));
  EXPECT_EQ(t2[25], Datum::Text("f"));

  const Tuple& t3 = changes[2].new_tuple;
  EXPECT_EQ(t3[10], Datum::Text("-infinity"));
  for (size_t i : {1, 2, 3, 15, 21, 22, 25, 27}) EXPECT_TRUE(t3[i].is_null()) << i;
}

TEST_F(PgoutputFixtureTest, UpdateLeavingToastUnchangedSaysSo) {
  auto changes = ChangesOf("zoo");
  const Change& u = changes[3];
  ASSERT_EQ(u.op, ChangeOp::kUpdate);
  EXPECT_TRUE(u.old_tuple.empty()) << "key did not change";
  EXPECT_EQ(u.new_tuple[4], Datum::Text("-2147483647"));
  EXPECT_EQ(u.new_tuple[22], Datum::Text("updated"));
  EXPECT_TRUE(u.new_tuple[27].is_unchanged()) << "invariant 8: unchanged TOAST is 'u', not NULL";
}

TEST_F(PgoutputFixtureTest, KeyChangeCarriesOldKey) {
  auto changes = ChangesOf("zoo");
  const Change& u = changes[4];
  ASSERT_EQ(u.op, ChangeOp::kUpdate);
  ASSERT_EQ(u.old_tuple.size(), 28u);
  EXPECT_EQ(u.old_tuple[0], Datum::Text("2"));
  for (size_t i = 1; i < 28; ++i) EXPECT_TRUE(u.old_tuple[i].is_null()) << i;
  EXPECT_EQ(u.new_tuple[0], Datum::Text("100"));
  EXPECT_EQ(u.new_tuple[19], Datum::Text("very \"odd\" mood ✓"));

  const Change& d = changes[5];
  ASSERT_EQ(d.op, ChangeOp::kDelete);
  EXPECT_TRUE(d.new_tuple.empty());
  EXPECT_EQ(d.old_tuple[0], Datum::Text("3"));
}

TEST_F(PgoutputFixtureTest, ReplicaIdentityFullSendsWholeOldRow) {
  auto changes = ChangesOf("nopk");
  ASSERT_EQ(changes.size(), 4u);
  EXPECT_EQ(changes[0].relation->replica_identity, 'f');
  EXPECT_EQ(changes[1].new_tuple, (Tuple{Datum::Null(), Datum::Null(), Datum::Null()}));
  const Change& u = changes[2];
  EXPECT_EQ(u.old_tuple, (Tuple{Datum::Text("1"), Datum::Text("x"), Datum::Text("{\"a\": 1}")}));
  EXPECT_EQ(u.new_tuple, (Tuple{Datum::Text("1"), Datum::Text("y"), Datum::Text("{\"a\": 1}")}));
  EXPECT_EQ(changes[3].old_tuple,
            (Tuple{Datum::Text("1"), Datum::Text("y"), Datum::Text("{\"a\": 1}")}));
}

TEST_F(PgoutputFixtureTest, TruncateAndMessages) {
  auto changes = ChangesOf("trunc_me");
  ASSERT_EQ(changes.size(), 3u);
  const Change& t = changes[2];
  ASSERT_EQ(t.op, ChangeOp::kTruncate);
  ASSERT_EQ(t.truncated.size(), 1u);
  EXPECT_EQ(t.truncated[0]->name, "trunc_me");
  EXPECT_EQ(t.truncate_options, 2) << "RESTART IDENTITY";

  int standalone = 0, in_txn = 0;
  for (const auto& e : events_) {
    if (const auto* m = std::get_if<StandaloneMessage>(&e)) {
      ++standalone;
      EXPECT_EQ(m->change.message_prefix, "nontx");
      EXPECT_EQ(m->change.message_content, "hello outside");
      EXPECT_FALSE(m->change.message_transactional);
      EXPECT_TRUE(m->lsn.valid());
    } else if (const auto* c = std::get_if<Change>(&e); c && c->op == ChangeOp::kMessage) {
      ++in_txn;
      EXPECT_EQ(c->message_prefix, "tx");
      EXPECT_EQ(c->message_content, "in\ttransaction ✓");
      EXPECT_TRUE(c->message_transactional);
    }
  }
  EXPECT_EQ(standalone, 1);
  EXPECT_EQ(in_txn, 1);
}

TEST_F(PgoutputFixtureTest, QuotedIdentifiersAndTypeMessage) {
  auto changes = ChangesOf("Odd \"Name\"");
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].relation->columns[1].name, "ünï");
  EXPECT_EQ(changes[0].new_tuple[1], Datum::Text("ünïcode"));
  bool saw_mood = false;
  for (const auto& e : events_) {
    if (const auto* t = std::get_if<TypeInfo>(&e); t && t->name == "mood") saw_mood = true;
  }
  EXPECT_TRUE(saw_mood) << "pgoutput sends a Type message for the enum";
}

// Every strict prefix of every captured message is malformed: each must give kCorruption
// (never a crash, never an OK with garbage).
TEST_F(PgoutputFixtureTest, EveryTruncatedMessageIsCorruption) {
  PgoutputDecoder decoder(catalog_.TypeNames());
  for (const auto& m : messages_) {
    for (size_t len = 0; len < m.bytes.size(); ++len) {
      auto ev = decoder.Decode(std::span<const uint8_t>(m.bytes.data(), len));
      ASSERT_FALSE(ev.ok()) << "prefix " << len << " of a message of " << m.bytes.size();
      ASSERT_EQ(ev.status().code(), StatusCode::kCorruption) << ev.status().ToString();
    }
    ASSERT_TRUE(decoder.Decode(m.bytes).ok());  // keeps the relation cache filled
  }
}

Status DecodeStatus(PgoutputDecoder& d, const std::vector<uint8_t>& bytes) {
  return d.Decode(bytes).status();
}

// Found by pgoutput_fuzz: a Begin/Commit whose commit time is near INT64_MAX/MIN (what
// 'infinity' looks like on the wire) overflowed when moved to the Unix epoch. It is clamped.
TEST(PgoutputDecoderTest, ExtremeCommitTimesAreClampedNotOverflowed) {
  PgoutputDecoder d;
  // 'B' final_lsn=0x0000000100000000 commit_time=0x7ffdb3ed2558cb70 xid=0x000002df
  std::vector<uint8_t> begin = {'B', 0, 0, 0, 1, 0, 0, 0, 0, 0x7f, 0xfd, 0xb3, 0xed,
                                0x25, 0x58, 0xcb, 0x70, 0, 0, 2, 0xdf};
  auto ev = d.Decode(begin);
  ASSERT_TRUE(ev.ok()) << ev.status().ToString();
  EXPECT_EQ(std::get<BeginTxn>(*ev).commit_time_us, INT64_MAX);
  EXPECT_EQ(std::get<BeginTxn>(*ev).xid, 0x2dfu);
  // 'C' flags=0 commit_lsn end_lsn commit_time=INT64_MAX ('infinity')
  std::vector<uint8_t> commit = {'C', 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 8,
                                 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  auto c = d.Decode(commit);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(std::get<CommitTxn>(*c).commit_time_us, INT64_MAX);
  EXPECT_EQ(PgToUnixMicros(INT64_MIN), INT64_MIN + kPgEpochOffsetUs);  // no overflow that way
  EXPECT_EQ(PgToUnixMicros(0), kPgEpochOffsetUs);
  EXPECT_EQ(PgToUnixMicros(-kPgEpochOffsetUs), 0);
}

TEST(PgoutputDecoderTest, HugeColumnCountInTinyMessageFailsBeforeAllocating) {
  // 'R' oid=1 "s\0" "t\0" 'd' ncols=60000, and nothing else: 10 bytes of payload.
  std::vector<uint8_t> m = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'd', 0xea, 0x60};
  PgoutputDecoder d;
  Status s = DecodeStatus(d, m);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("pgoutput Relation: columns at offset 11 needs 600000 bytes"));
}

TEST(PgoutputDecoderTest, HugeTupleColumnCountFailsBeforeAllocating) {
  PgoutputDecoder d;
  // A relation with 60000 columns can not exist without 60000 columns' bytes; so use a
  // 1-column relation and a tuple claiming 60000 columns.
  std::vector<uint8_t> rel = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'd', 0, 1,
                              1,   'a', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff};
  ASSERT_TRUE(d.Decode(rel).ok());
  std::vector<uint8_t> ins = {'I', 0, 0, 0, 1, 'N', 0xea, 0x60, 'n'};
  Status s = DecodeStatus(d, ins);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("tuple column count"));
}

TEST(PgoutputDecoderTest, HugeValueLengthFailsBeforeAllocating) {
  PgoutputDecoder d;
  std::vector<uint8_t> rel = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'd', 0, 1,
                              1,   'a', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff};
  ASSERT_TRUE(d.Decode(rel).ok());
  std::vector<uint8_t> ins = {'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0x7f, 0xff, 0xff, 0xff, '1'};
  Status s = DecodeStatus(d, ins);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("tuple column value at offset 12 needs 2147483647 bytes"));
}

TEST(PgoutputDecoderTest, HugeTruncateCountFailsBeforeAllocating) {
  PgoutputDecoder d;
  std::vector<uint8_t> m = {'T', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1};
  Status s = DecodeStatus(d, m);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("relation oids"));
}

TEST(PgoutputDecoderTest, ChangeForUnknownRelation) {
  PgoutputDecoder d;
  std::vector<uint8_t> ins = {'I', 0, 0, 0, 42, 'N', 0, 0};
  Status s = DecodeStatus(d, ins);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("relation 42 for which no Relation message"));
}

TEST(PgoutputDecoderTest, TupleColumnCountMustMatchRelation) {
  PgoutputDecoder d;
  std::vector<uint8_t> rel = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'd', 0, 1,
                              1,   'a', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff};
  ASSERT_TRUE(d.Decode(rel).ok());
  std::vector<uint8_t> ins = {'I', 0, 0, 0, 1, 'N', 0, 2, 'n', 'n'};
  Status s = DecodeStatus(d, ins);
  EXPECT_THAT(s.message(), HasSubstr("is 2 but relation s.t has 1 columns"));
}

TEST(PgoutputDecoderTest, BadTupleKind) {
  PgoutputDecoder d;
  std::vector<uint8_t> rel = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'd', 0, 1,
                              1,   'a', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff};
  ASSERT_TRUE(d.Decode(rel).ok());
  std::vector<uint8_t> ins = {'I', 0, 0, 0, 1, 'N', 0, 1, 'b', 0, 0, 0, 0};
  EXPECT_THAT(DecodeStatus(d, ins).message(), HasSubstr("tuple column kind"));
  std::vector<uint8_t> upd = {'U', 0, 0, 0, 1, 'X', 0, 1, 'n'};
  EXPECT_THAT(DecodeStatus(d, upd).message(), HasSubstr("expected 'N'"));
  std::vector<uint8_t> del = {'D', 0, 0, 0, 1, 'N', 0, 1, 'n'};
  EXPECT_THAT(DecodeStatus(d, del).message(), HasSubstr("expected 'K' or 'O'"));
}

TEST(PgoutputDecoderTest, BadReplicaIdentity) {
  PgoutputDecoder d;
  std::vector<uint8_t> rel = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'x', 0, 0};
  EXPECT_THAT(DecodeStatus(d, rel).message(), HasSubstr("replica identity"));
}

TEST(PgoutputDecoderTest, TrailingBytesAreCorruption) {
  PgoutputDecoder d;
  std::vector<uint8_t> begin(1 + 8 + 8 + 4 + 1, 0);
  begin[0] = 'B';
  Status s = DecodeStatus(d, begin);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("pgoutput Begin: 1 unexpected trailing bytes"));
}

TEST(PgoutputDecoderTest, UnknownMessageTypeAndEmptyMessage) {
  PgoutputDecoder d;
  EXPECT_THAT(DecodeStatus(d, {'Z', 0, 0, 0, 1}).message(), HasSubstr("unknown message type 90"));
  EXPECT_EQ(DecodeStatus(d, {}).code(), StatusCode::kCorruption);
}

TEST(PgoutputDecoderTest, TypeLookupFailureRises) {
  PgoutputDecoder d([](uint32_t oid, int32_t) -> StatusOr<std::string> {
    return ConnectionError("catalog connection lost");
  });
  std::vector<uint8_t> rel = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'd', 0, 1,
                              1,   'a', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff};
  Status s = DecodeStatus(d, rel);
  EXPECT_EQ(s.code(), StatusCode::kConnection);
}

TEST(PgoutputDecoderTest, RelationMessageReplacesCachedDefinition) {
  PgoutputDecoder d;
  std::vector<uint8_t> rel1 = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'd', 0, 1,
                               1,   'a', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff};
  std::vector<uint8_t> rel2 = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'f', 0, 2,
                               1,   'a', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff,
                               1,   'b', 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff};
  ASSERT_TRUE(d.Decode(rel1).ok());
  auto first = d.FindRelation(1);
  ASSERT_TRUE(d.Decode(rel2).ok());
  auto second = d.FindRelation(1);
  EXPECT_EQ(first->columns.size(), 1u) << "old changes keep their definition";
  EXPECT_EQ(second->columns.size(), 2u);
  EXPECT_EQ(second->replica_identity, 'f');
}

// --- protocol 2: streamed in-progress transactions ---

std::vector<uint8_t> U32(uint32_t v) {
  return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}
std::vector<uint8_t> U64(uint64_t v) {
  auto hi = U32(static_cast<uint32_t>(v >> 32));
  auto lo = U32(static_cast<uint32_t>(v));
  hi.insert(hi.end(), lo.begin(), lo.end());
  return hi;
}
// `type` + `parts`, concatenated.
std::vector<uint8_t> Msg(char type, std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> m = {static_cast<uint8_t>(type)};
  for (const auto& p : parts) m.insert(m.end(), p.begin(), p.end());
  return m;
}
// Relation 1 "s"."t" with one int4 key column "a", as sent inside a stream of `xid`.
std::vector<uint8_t> StreamedRelation(uint32_t xid) {
  return Msg('R', {U32(xid), U32(1), {'s', 0, 't', 0, 'd', 0, 1, 1, 'a', 0}, U32(23),
                   U32(0xffffffff)});
}
std::vector<uint8_t> StreamedInsert(uint32_t xid, char value) {
  return Msg('I', {U32(xid), U32(1), {'N', 0, 1, 't'}, U32(1), {static_cast<uint8_t>(value)}});
}

TEST(PgoutputStreamingTest, BlocksCarryTheirSubtransactionXids) {
  PgoutputDecoder d({}, /*protocol_version=*/2);
  auto start = d.Decode(Msg('S', {U32(700), {1}}));
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_EQ(std::get<StreamStart>(*start).xid, 700u);
  EXPECT_TRUE(std::get<StreamStart>(*start).first_segment);
  EXPECT_TRUE(d.in_stream());

  auto rel = d.Decode(StreamedRelation(700));
  ASSERT_TRUE(rel.ok()) << rel.status().ToString();
  EXPECT_EQ(std::get<RelationUpdate>(*rel).relation->name, "t");
  EXPECT_EQ(d.stream_xid(), 700u);

  auto ins = d.Decode(StreamedInsert(701, '7'));  // a subtransaction's change
  ASSERT_TRUE(ins.ok()) << ins.status().ToString();
  const auto& c = std::get<Change>(*ins);
  EXPECT_EQ(c.op, ChangeOp::kInsert);
  ASSERT_EQ(c.new_tuple.size(), 1u);
  EXPECT_EQ(c.new_tuple[0].text, "7");
  EXPECT_EQ(d.stream_xid(), 701u);

  ASSERT_TRUE(std::holds_alternative<StreamStop>(*d.Decode(Msg('E', {}))));
  EXPECT_FALSE(d.in_stream());

  // Between blocks, a transaction sent whole decodes as under protocol 1 (no xid prefix).
  auto begin = d.Decode(Msg('B', {U64(0x200), U64(0), U32(702)}));
  ASSERT_TRUE(begin.ok()) << begin.status().ToString();
  auto plain = d.Decode(Msg('I', {U32(1), {'N', 0, 1, 't'}, U32(1), {'8'}}));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(std::get<Change>(*plain).new_tuple[0].text, "8");
  ASSERT_TRUE(d.Decode(Msg('C', {{0}, U64(0x200), U64(0x230), U64(0)})).ok());

  auto later = d.Decode(Msg('S', {U32(700), {0}}));
  ASSERT_TRUE(later.ok());
  EXPECT_FALSE(std::get<StreamStart>(*later).first_segment);
  ASSERT_TRUE(d.Decode(Msg('E', {})).ok());

  auto abort = d.Decode(Msg('A', {U32(700), U32(701)}));
  ASSERT_TRUE(abort.ok()) << abort.status().ToString();
  EXPECT_EQ(std::get<StreamAbort>(*abort).xid, 700u);
  EXPECT_EQ(std::get<StreamAbort>(*abort).subxid, 701u);

  auto commit = d.Decode(Msg('c', {U32(700), {0}, U64(0x300), U64(0x338), U64(0)}));
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  const auto& sc = std::get<StreamCommit>(*commit);
  EXPECT_EQ(sc.xid, 700u);
  EXPECT_EQ(sc.commit_lsn, Lsn(0x300));
  EXPECT_EQ(sc.end_lsn, Lsn(0x338));
  EXPECT_EQ(sc.commit_time_us, kPgEpochOffsetUs);
}

TEST(PgoutputStreamingTest, StreamMessagesOutOfPlaceAreCorruption) {
  {
    PgoutputDecoder v1;  // protocol 1 never negotiates streaming
    Status s = DecodeStatus(v1, Msg('S', {U32(700), {1}}));
    EXPECT_EQ(s.code(), StatusCode::kCorruption);
    EXPECT_THAT(s.message(), HasSubstr("Stream Start: streaming message under protocol version 1"));
  }
  PgoutputDecoder d({}, 2);
  EXPECT_THAT(DecodeStatus(d, Msg('E', {})).message(),
              HasSubstr("Stream Stop: outside a stream block"));
  EXPECT_THAT(DecodeStatus(d, Msg('S', {U32(0), {1}})).message(), HasSubstr("Stream Start: xid at offset 5 is 0"));
  EXPECT_THAT(DecodeStatus(d, Msg('S', {U32(5), {2}})).message(), HasSubstr("first_segment"));
  ASSERT_TRUE(d.Decode(Msg('S', {U32(700), {1}})).ok());
  EXPECT_THAT(DecodeStatus(d, Msg('S', {U32(701), {1}})).message(),
              HasSubstr("Stream Start: inside a stream block"));
  EXPECT_THAT(DecodeStatus(d, Msg('c', {U32(700), {0}, U64(1), U64(2), U64(0)})).message(),
              HasSubstr("Stream Commit: inside a stream block"));
  EXPECT_THAT(DecodeStatus(d, Msg('A', {U32(700), U32(700)})).message(),
              HasSubstr("Stream Abort: inside a stream block"));
  EXPECT_THAT(DecodeStatus(d, Msg('B', {U64(1), U64(0), U32(9)})).message(),
              HasSubstr("Begin inside a stream block"));
  EXPECT_THAT(DecodeStatus(d, {'I', 0, 0}).message(), HasSubstr("xid"));  // no room for the xid
  ASSERT_TRUE(d.Decode(Msg('E', {})).ok());
  // Truncated and inconsistent control messages.
  EXPECT_EQ(DecodeStatus(d, {'c', 0, 0, 2, 0xbc, 0}).code(), StatusCode::kCorruption);
  EXPECT_THAT(DecodeStatus(d, Msg('c', {U32(700), {0}, U64(0x300), U64(0x200), U64(0)})).message(),
              HasSubstr("end_lsn"));
  EXPECT_EQ(DecodeStatus(d, {'A', 0, 0, 2, 0xbc}).code(), StatusCode::kCorruption);
  EXPECT_THAT(DecodeStatus(d, Msg('E', {{0}})).message(), HasSubstr("outside a stream block"));
}

}  // namespace
}  // namespace tenantsync::cdc
