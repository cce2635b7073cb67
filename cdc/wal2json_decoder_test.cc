#include "cdc/wal2json_decoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cdc/internal/fixtures.h"
#include "cdc/pgoutput_decoder.h"

namespace tenantsync::cdc {
namespace {

using ::testing::HasSubstr;
using testing::FixtureCatalog;
using testing::FixtureMessage;

const std::string kTestdata = TENANTSYNC_CDC_TESTDATA;

std::vector<uint8_t> Json(std::string_view s) { return {s.begin(), s.end()}; }

class Wal2jsonFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cat = testing::LoadCatalog(kTestdata + "/zoo.catalog.tsv");
    ASSERT_TRUE(cat.ok()) << cat.status().ToString();
    catalog_ = std::move(cat).value();
    auto msgs = testing::LoadFixture(kTestdata + "/zoo.wal2json.jsonl", /*hex=*/false);
    ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
    messages_ = std::move(msgs).value();
    Wal2jsonDecoder decoder(catalog_.Relations());
    for (const auto& m : messages_) {
      auto ev = decoder.Decode(m.bytes);
      ASSERT_TRUE(ev.ok()) << ev.status().ToString() << " in "
                           << std::string(m.bytes.begin(), m.bytes.end()).substr(0, 200);
      events_.push_back(std::move(ev).value());
    }
    auto pg = testing::LoadFixture(kTestdata + "/zoo.pgoutput.hex", /*hex=*/true);
    ASSERT_TRUE(pg.ok());
    PgoutputDecoder pgdec(catalog_.TypeNames());
    for (const auto& m : *pg) {
      auto ev = pgdec.Decode(m.bytes);
      ASSERT_TRUE(ev.ok()) << ev.status().ToString();
      pgoutput_events_.push_back(std::move(ev).value());
    }
  }

  static std::vector<Change> ChangesOf(const std::vector<Event>& events, const std::string& table) {
    std::vector<Change> out;
    for (const auto& e : events) {
      if (const auto* c = std::get_if<Change>(&e); c && c->relation && c->relation->name == table) {
        out.push_back(*c);
      }
    }
    return out;
  }

  FixtureCatalog catalog_;
  std::vector<FixtureMessage> messages_;
  std::vector<Event> events_;
  std::vector<Event> pgoutput_events_;
};

TEST_F(Wal2jsonFixtureTest, TransactionsMatchPgoutputExactly) {
  std::vector<BeginTxn> b1, b2;
  std::vector<CommitTxn> c1, c2;
  for (const auto& e : events_) {
    if (auto* b = std::get_if<BeginTxn>(&e)) b1.push_back(*b);
    if (auto* c = std::get_if<CommitTxn>(&e)) c1.push_back(*c);
  }
  for (const auto& e : pgoutput_events_) {
    if (auto* b = std::get_if<BeginTxn>(&e)) b2.push_back(*b);
    if (auto* c = std::get_if<CommitTxn>(&e)) c2.push_back(*c);
  }
  ASSERT_EQ(b1.size(), 11u);
  ASSERT_EQ(b1.size(), b2.size());
  ASSERT_EQ(c1.size(), c2.size());
  for (size_t i = 0; i < b1.size(); ++i) {
    EXPECT_EQ(b1[i].xid, b2[i].xid);
    EXPECT_EQ(b1[i].final_lsn, b2[i].final_lsn);
    EXPECT_EQ(b1[i].commit_time_us, b2[i].commit_time_us) << "timestamp text parsed exactly";
    EXPECT_EQ(c1[i].commit_lsn, c2[i].commit_lsn);
    EXPECT_EQ(c1[i].end_lsn, c2[i].end_lsn);
    EXPECT_EQ(c1[i].commit_time_us, c2[i].commit_time_us);
  }
}

// The heart of "one change model": every table of the zoo decodes to the same tuples and the
// same relation through both plugins.
TEST_F(Wal2jsonFixtureTest, BothPluginsDecodeTheZooIdentically) {
  for (const char* table : {"zoo", "nopk", "Odd \"Name\""}) {
    SCOPED_TRACE(table);
    auto w = ChangesOf(events_, table);
    auto p = ChangesOf(pgoutput_events_, table);
    ASSERT_EQ(w.size(), p.size());
    ASSERT_FALSE(w.empty());
    for (size_t i = 0; i < w.size(); ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(w[i].op, p[i].op);
      EXPECT_EQ(w[i].new_tuple, p[i].new_tuple);
      EXPECT_EQ(w[i].old_tuple, p[i].old_tuple);
      EXPECT_EQ(*w[i].relation, *p[i].relation);
    }
  }
}

TEST_F(Wal2jsonFixtureTest, UnchangedToastIsUnchangedNotNull) {
  auto zoo = ChangesOf(events_, "zoo");
  ASSERT_EQ(zoo.size(), 6u);
  EXPECT_TRUE(zoo[3].new_tuple[27].is_unchanged());
  EXPECT_EQ(zoo[3].new_tuple[22], Datum::Text("updated"));
  EXPECT_EQ(zoo[0].new_tuple[21], Datum::Text("\\x00ff10deadbeef")) << "bytea \\x restored";
  EXPECT_EQ(zoo[0].new_tuple[25], Datum::Text("t")) << "JSON true -> PG text t";
  EXPECT_EQ(zoo[0].new_tuple[2],
            Datum::Text("123456789012345678901234567890.123456789012345678901"))
      << "numeric kept as its raw token, never through double";
}

TEST_F(Wal2jsonFixtureTest, TruncateIsPerTableWithoutOptions) {
  auto t = ChangesOf(events_, "trunc_me");
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[2].op, ChangeOp::kTruncate);
  ASSERT_EQ(t[2].truncated.size(), 1u);
  EXPECT_EQ(*t[2].truncated[0], catalog_.relations.at({"public", "trunc_me"}));
  EXPECT_EQ(t[2].truncate_options, 0) << "wal2json 2.5 does not print CASCADE/RESTART IDENTITY";
}

TEST_F(Wal2jsonFixtureTest, MessagesMatchPgoutput) {
  std::vector<std::string> w, p;
  auto collect = [](const std::vector<Event>& events, std::vector<std::string>* out) {
    for (const auto& e : events) {
      if (auto* m = std::get_if<StandaloneMessage>(&e)) {
        out->push_back("S " + m->lsn.ToString() + " " + m->change.message_prefix + " " +
                       m->change.message_content);
      } else if (auto* c = std::get_if<Change>(&e); c && c->op == ChangeOp::kMessage) {
        out->push_back("T " + c->message_prefix + " " + c->message_content);
      }
    }
  };
  collect(events_, &w);
  collect(pgoutput_events_, &p);
  EXPECT_EQ(w, p);
  EXPECT_EQ(w.size(), 2u);
}

// wal2json 2.5 prints NaN / Infinity as JSON null: documented loss, asserted so a fixed
// wal2json (or a regression in our mapping) is noticed.
TEST_F(Wal2jsonFixtureTest, NanAndInfinityAreLostByWal2json) {
  auto w = ChangesOf(events_, "special_numbers");
  auto p = ChangesOf(pgoutput_events_, "special_numbers");
  ASSERT_EQ(w.size(), 2u);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].new_tuple[1], Datum::Text("NaN"));
  EXPECT_EQ(p[0].new_tuple[2], Datum::Text("Infinity"));
  EXPECT_TRUE(w[0].new_tuple[1].is_null());
  EXPECT_TRUE(w[0].new_tuple[2].is_null());
  EXPECT_EQ(w[1].new_tuple[1], p[1].new_tuple[1]);
}

TEST_F(Wal2jsonFixtureTest, EveryTruncatedMessageIsCorruption) {
  Wal2jsonDecoder decoder(catalog_.Relations());
  for (const auto& m : messages_) {
    for (size_t len = 0; len < m.bytes.size(); len += (len < 64 ? 1 : 7)) {
      auto ev = decoder.Decode(std::span<const uint8_t>(m.bytes.data(), len));
      ASSERT_FALSE(ev.ok()) << "prefix " << len;
      ASSERT_EQ(ev.status().code(), StatusCode::kCorruption) << ev.status().ToString();
    }
    ASSERT_TRUE(decoder.Decode(m.bytes).ok());
  }
}

TEST(Wal2jsonDecoderTest, WithoutCatalogBuildsRelationFromMessage) {
  Wal2jsonDecoder d;
  auto ev = d.Decode(Json(
      R"({"action":"I","xid":1,"lsn":"0/10","schema":"s","table":"t","columns":[)"
      R"({"name":"id","type":"integer","typeoid":23,"value":5},)"
      R"({"name":"b","type":"bytea","typeoid":17,"value":"0a"},)"
      R"({"name":"f","type":"boolean","typeoid":16,"value":false},)"
      R"({"name":"n","type":"numeric","typeoid":1700,"value":1.000000000000000000001}],)"
      R"("pk":[{"name":"id","type":"integer","typeoid":23}]})"));
  ASSERT_TRUE(ev.ok()) << ev.status().ToString();
  const Change& c = std::get<Change>(*ev);
  EXPECT_EQ(c.relation->columns.size(), 4u);
  EXPECT_TRUE(c.relation->columns[0].is_key);
  EXPECT_FALSE(c.relation->columns[1].is_key);
  EXPECT_EQ(c.new_tuple, (Tuple{Datum::Text("5"), Datum::Text("\\x0a"), Datum::Text("f"),
                                Datum::Text("1.000000000000000000001")}));
}

TEST(Wal2jsonDecoderTest, TimestampParsing) {
  EXPECT_EQ(*ParseWal2jsonTimestamp("1970-01-01 00:00:00+00"), 0);
  EXPECT_EQ(*ParseWal2jsonTimestamp("2000-01-01 00:00:00.5+00"), kPgEpochOffsetUs + 500000);
  EXPECT_EQ(*ParseWal2jsonTimestamp("2000-01-01 05:30:00+05:30"), kPgEpochOffsetUs);
  EXPECT_EQ(*ParseWal2jsonTimestamp("1999-12-31 23:00:00-01"), kPgEpochOffsetUs);
  EXPECT_EQ(*ParseWal2jsonTimestamp("2024-02-29 12:00:00.000001+00"), 1709208000000001LL);
  for (const char* bad : {"", "2024-02-29", "2024-02-29 12:00:00", "2024-13-01 00:00:00+00",
                          "2024-02-29T12:00:00+00", "2024-02-29 12:00:00.+00",
                          "2024-02-29 12:00:00+0", "2024-02-29 12:00:00+00:00:00:00"}) {
    auto r = ParseWal2jsonTimestamp(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
    }
  }
}

Status DecodeStatus(std::string_view json) {
  Wal2jsonDecoder d;
  return d.Decode(Json(json)).status();
}

TEST(Wal2jsonDecoderTest, MalformedObjectsAreCorruption) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {"", "document"},
      {"[]", "top level"},
      {R"({"action":"X"})", "unknown action 'X'"},
      {R"({"action":"BB"})", "action 'BB'"},
      {R"({"action":"B"})", "without lsn"},
      {R"({"action":"C","lsn":"0/1"})", "without lsn/nextlsn"},
      {R"({"action":"B","lsn":"zz"})", "lsn is not an LSN"},
      {R"({"action":"B","xid":-1,"lsn":"0/1"})", "xid"},
      {R"({"action":"B","xid":4294967296,"lsn":"0/1"})", "xid"},
      {R"({"action":"B","lsn":"0/1","timestamp":"yesterday"})", "timestamp 'yesterday'"},
      {R"({"action":"I","schema":"s","columns":[]})", "without table"},
      {R"({"action":"I","schema":"s","table":"t"})", "without columns"},
      {R"({"action":"D","schema":"s","table":"t"})", "without identity"},
      {R"({"action":"I","schema":"s","table":"t","columns":[{"name":"a"}]})", "without name or value"},
      {R"({"action":"I","schema":"s","table":"t","columns":[{"name":"a","value":[1]}]})",
       "array or object"},
      {R"({"action":"I","schema":"s","table":"t","columns":[{"name":"a","value":1}]} x)",
       "wal2json message"},
      {R"({"action":"I","schema":"s","table":"t","columns":[{"name":"a","typeoid":"x","value":1}]})",
       "typeoid"},
      {R"({"action":"I","schema":"s","table":"t","columns":{}})", "columns"},
      {R"({"action":"M","transactional":false,"prefix":"p","content":"c"})", "without lsn"},
  };
  for (const auto& c : cases) {
    Status s = DecodeStatus(c.json);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << c.json << " -> " << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr(c.message)) << c.json;
  }
}

// A source catalog that tests change between messages, counting reads.
struct FakeCatalog {
  Relation relation;
  int reads = 0;
  RelationLookup Lookup() {
    return [this](const std::string& schema, const std::string& table) -> StatusOr<Relation> {
      ++reads;
      if (schema != relation.schema || table != relation.name) return NotFound("relation");
      return relation;
    };
  }
};

Relation DriftTable(std::vector<Relation::Column> columns) {
  Relation rel;
  rel.oid = 16400;
  rel.schema = "s";
  rel.name = "t";
  rel.columns = std::move(columns);
  return rel;
}

const Relation::Column kId{"id", "integer", 23, -1, true};
const Relation::Column kNote{"note", "text", 25, -1, false};
const Relation::Column kBig{"big", "text", 25, -1, false};
const Relation::Column kBadge{"badge", "text", 25, -1, false};

std::string ColumnNames(const Relation& rel) {
  std::string out;
  for (const auto& c : rel.columns) out += (out.empty() ? "" : ",") + c.name;
  return out;
}

std::shared_ptr<const Relation> DecodeRelation(Wal2jsonDecoder& d, std::string_view json,
                                               Change* change = nullptr) {
  auto ev = d.Decode(Json(json));
  EXPECT_TRUE(ev.ok()) << ev.status().ToString() << " in " << json;
  if (!ev.ok()) return nullptr;
  if (change) *change = std::get<Change>(*ev);
  return std::get<Change>(*ev).relation;
}

// ALTER TABLE ADD COLUMN while streaming: the next UPDATE names the column; the decoder reads
// the catalog again and the change carries a new relation version (what pgoutput's Relation
// message would announce), with the UPDATE's unchanged TOAST column still unchanged.
TEST(Wal2jsonDecoderTest, ColumnAddedSinceTheCacheIsANewRelationVersion) {
  FakeCatalog catalog{DriftTable({kId, kNote, kBig})};
  Wal2jsonDecoder d(catalog.Lookup());
  auto v1 = DecodeRelation(d, R"({"action":"I","schema":"s","table":"t","columns":[)"
                              R"({"name":"id","type":"integer","typeoid":23,"value":1},)"
                              R"({"name":"note","type":"text","typeoid":25,"value":"a"},)"
                              R"({"name":"big","type":"text","typeoid":25,"value":"x"}]})");
  ASSERT_TRUE(v1);
  EXPECT_EQ(catalog.reads, 1);
  catalog.relation.columns.push_back(kBadge);
  Change c;
  auto v2 = DecodeRelation(d,
                           R"({"action":"U","schema":"s","table":"t","columns":[)"
                           R"({"name":"id","type":"integer","typeoid":23,"value":1},)"
                           R"({"name":"note","type":"text","typeoid":25,"value":"b"},)"
                           R"({"name":"badge","type":"text","typeoid":25,"value":"new"}],)"
                           R"("identity":[{"name":"id","type":"integer","typeoid":23,"value":1}]})",
                           &c);
  ASSERT_TRUE(v2);
  EXPECT_EQ(catalog.reads, 2);
  EXPECT_EQ(*v2, catalog.relation) << "the catalog's definition, typmods and keys included";
  EXPECT_NE(v2->Fingerprint(), v1->Fingerprint());
  EXPECT_EQ(c.new_tuple,
            (Tuple{Datum::Text("1"), Datum::Text("b"), Datum::Unchanged(), Datum::Text("new")}));
  EXPECT_TRUE(c.old_tuple.empty()) << "key unchanged";
  // The same columns left out again: the cached version, no catalog read.
  auto again = DecodeRelation(d, R"({"action":"U","schema":"s","table":"t","columns":[)"
                                 R"({"name":"id","type":"integer","typeoid":23,"value":2},)"
                                 R"({"name":"note","type":"text","typeoid":25,"value":"b"},)"
                                 R"({"name":"badge","type":"text","typeoid":25,"value":null}]})");
  EXPECT_EQ(again, v2);
  EXPECT_EQ(catalog.reads, 2);
  // A retyped column (ALTER COLUMN TYPE): another version.
  catalog.relation.columns[1] = {"note", "character varying(40)", 1043, 44, false};
  auto v3 = DecodeRelation(d, R"({"action":"I","schema":"s","table":"t","columns":[)"
                              R"({"name":"id","type":"integer","typeoid":23,"value":3},)"
                              R"j({"name":"note","type":"character varying(40)","typeoid":1043,)j"
                              R"("value":"c"},)"
                              R"({"name":"big","type":"text","typeoid":25,"value":"x"},)"
                              R"({"name":"badge","type":"text","typeoid":25,"value":"b"}]})");
  ASSERT_TRUE(v3);
  EXPECT_EQ(*v3, catalog.relation);
  EXPECT_EQ(catalog.reads, 3);
}

// The receiver reads the WAL after the catalog moved on: `tmp` was added, used, and dropped
// again. The changes naming it are decoded with the names and types the messages carry; the
// catalog still completes an UPDATE's unchanged TOAST column.
TEST(Wal2jsonDecoderTest, CatalogMovedOnTheMessagesColumnsWin) {
  FakeCatalog catalog{DriftTable({kId, kNote, kBig})};  // tmp already dropped
  Wal2jsonDecoder d(catalog.Lookup());
  Change c;
  auto with_tmp =
      DecodeRelation(d,
                     R"({"action":"U","schema":"s","table":"t","columns":[)"
                     R"({"name":"id","type":"integer","typeoid":23,"value":1},)"
                     R"({"name":"note","type":"text","typeoid":25,"value":"c"},)"
                     R"({"name":"tmp","type":"integer","typeoid":23,"value":1}],)"
                     R"("identity":[{"name":"id","type":"integer","typeoid":23,"value":1}],)"
                     R"("pk":[{"name":"id","type":"integer","typeoid":23}]})",
                     &c);
  ASSERT_TRUE(with_tmp);
  EXPECT_EQ(ColumnNames(*with_tmp), "id,note,big,tmp");
  EXPECT_EQ(with_tmp->oid, 16400u);
  EXPECT_EQ(with_tmp->columns[3], (Relation::Column{"tmp", "integer", 23, -1, false}));
  EXPECT_TRUE(with_tmp->columns[0].is_key);
  EXPECT_EQ(c.new_tuple,
            (Tuple{Datum::Text("1"), Datum::Text("c"), Datum::Unchanged(), Datum::Text("1")}));
  // An INSERT printing all four: the same version, no catalog read.
  int reads = catalog.reads;
  auto insert = DecodeRelation(d, R"({"action":"I","schema":"s","table":"t","columns":[)"
                                  R"({"name":"id","type":"integer","typeoid":23,"value":3},)"
                                  R"({"name":"note","type":"text","typeoid":25,"value":"d"},)"
                                  R"({"name":"big","type":"text","typeoid":25,"value":"x"},)"
                                  R"({"name":"tmp","type":"integer","typeoid":23,"value":30}]})");
  EXPECT_EQ(insert, with_tmp);
  EXPECT_EQ(catalog.reads, reads);
  // After DROP COLUMN tmp: an UPDATE leaving out big and tmp. tmp is gone from the catalog:
  // the relation drops it (pgoutput's next Relation message would not list it).
  auto dropped = DecodeRelation(d,
                                R"({"action":"U","schema":"s","table":"t","columns":[)"
                                R"({"name":"id","type":"integer","typeoid":23,"value":1},)"
                                R"({"name":"note","type":"text","typeoid":25,"value":"e"}]})",
                                &c);
  ASSERT_TRUE(dropped);
  EXPECT_EQ(*dropped, catalog.relation);
  EXPECT_EQ(c.new_tuple, (Tuple{Datum::Text("1"), Datum::Text("e"), Datum::Unchanged()}));
  // A DELETE of a table the catalog no longer has: built from the identity.
  FakeCatalog empty{DriftTable({})};
  empty.relation.name = "other";
  Wal2jsonDecoder gone(empty.Lookup());
  auto del =
      DecodeRelation(gone, R"({"action":"D","schema":"s","table":"t",)"
                           R"("identity":[{"name":"id","type":"integer","typeoid":23,)"
                           R"("value":1}],"pk":[{"name":"id","type":"integer","typeoid":23}]})");
  ASSERT_TRUE(del);
  EXPECT_EQ(ColumnNames(*del), "id");
  EXPECT_TRUE(del->columns[0].is_key);
}

// A column the cache knows but an UPDATE leaves out is unchanged TOAST as long as the catalog
// still has it; the catalog is asked once per combination of left-out columns.
TEST(Wal2jsonDecoderTest, LeftOutColumnsAreCheckedOncePerCombination) {
  FakeCatalog catalog{DriftTable({kId, kNote, kBig, kBadge})};
  Wal2jsonDecoder d(catalog.Lookup());
  const char* leave_out_big = R"({"action":"U","schema":"s","table":"t","columns":[)"
                              R"({"name":"id","type":"integer","typeoid":23,"value":1},)"
                              R"({"name":"note","type":"text","typeoid":25,"value":"a"},)"
                              R"({"name":"badge","type":"text","typeoid":25,"value":"b"}]})";
  const char* leave_out_big_and_badge =
      R"({"action":"U","schema":"s","table":"t","columns":[)"
      R"({"name":"id","type":"integer","typeoid":23,"value":1},)"
      R"({"name":"note","type":"text","typeoid":25,"value":"a"}]})";
  auto v = DecodeRelation(d, leave_out_big);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, catalog.relation);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(DecodeRelation(d, leave_out_big), v);
  EXPECT_EQ(catalog.reads, 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(DecodeRelation(d, leave_out_big_and_badge), v);
  EXPECT_EQ(catalog.reads, 2);
}

// The walsender sends a transaction once its commit record is flushed, which is before the
// commit is visible to other sessions: a catalog read right after the message can still show
// the table without the column the message names. The message's names and types decide.
TEST(Wal2jsonDecoderTest, CatalogNotYetShowingTheCommitDecodesFromTheMessage) {
  FakeCatalog catalog{DriftTable({kId, kNote, kBig})};  // the ALTER not visible yet
  Wal2jsonDecoder d(catalog.Lookup());
  ASSERT_TRUE(DecodeRelation(d, R"({"action":"D","schema":"s","table":"t","identity":[)"
                                R"({"name":"id","type":"integer","typeoid":23,"value":9}]})"));
  Change c;
  auto v2 = DecodeRelation(d,
                           R"({"action":"U","schema":"s","table":"t","columns":[)"
                           R"({"name":"id","type":"integer","typeoid":23,"value":1},)"
                           R"({"name":"note","type":"text","typeoid":25,"value":"b"},)"
                           R"({"name":"badge","type":"text","typeoid":25,"value":"new"}],)"
                           R"("identity":[{"name":"id","type":"integer","typeoid":23,"value":1}]})",
                           &c);
  ASSERT_TRUE(v2);
  Relation want = DriftTable({kId, kNote, kBig, kBadge});
  EXPECT_EQ(*v2, want) << ColumnNames(*v2);
  EXPECT_EQ(c.new_tuple,
            (Tuple{Datum::Text("1"), Datum::Text("b"), Datum::Unchanged(), Datum::Text("new")}));
}

TEST(Wal2jsonDecoderTest, UnknownIdentityColumnIsSchemaChanged) {
  FakeCatalog catalog{DriftTable({kId, kNote})};
  Wal2jsonDecoder d(catalog.Lookup());
  auto ev = d.Decode(Json(R"({"action":"U","schema":"s","table":"t","columns":[)"
                          R"({"name":"id","type":"integer","typeoid":23,"value":1}],)"
                          R"("identity":[{"name":"code","type":"text","typeoid":25,)"
                          R"("value":"x"}]})"));
  ASSERT_FALSE(ev.ok());
  EXPECT_EQ(ev.status().code(), StatusCode::kSchemaChanged);
  EXPECT_THAT(ev.status().message(), HasSubstr("s.t"));
}

TEST(Wal2jsonDecoderTest, CatalogErrorsRise) {
  Wal2jsonDecoder d([](const std::string&, const std::string&) -> StatusOr<Relation> {
    return ConnectionError("catalog connection lost");
  });
  auto ev = d.Decode(Json(R"({"action":"I","schema":"s","table":"t","columns":[]})"));
  ASSERT_FALSE(ev.ok());
  EXPECT_EQ(ev.status().code(), StatusCode::kConnection);
}

}  // namespace
}  // namespace tenantsync::cdc
