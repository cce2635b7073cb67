// The applier against a real target cluster, fed by a real journal (state/) written by hand:
// every operation, unchanged TOAST, key changes, tables without a key, TRUNCATE policies, schema
// drift policies, dead letters, the bulk path, replay convergence, and crashes at the applier's
// kill points (run in a child process, tests/apply_crash_helper.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "apply/applier.h"
#include "core/config.h"
#include "core/pipeline_stats.h"
#include "state/journal.h"
#include "state/state_store.h"
#include "tests/harness/test_env.h"

namespace tenantsync {
namespace {

using ::testing::HasSubstr;

#define ASSERT_OK(expr)                                    \
  do {                                                     \
    ::tenantsync::Status s_ = (expr);                      \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.ToString(); \
  } while (0)

struct Col {
  std::string name;
  std::string type;
  bool key = false;
};

std::shared_ptr<const Relation> Rel(const std::string& name, std::vector<Col> cols,
                                    char identity = 'd', uint32_t oid = 16384) {
  auto r = std::make_shared<Relation>();
  r->oid = oid;
  r->schema = "public";
  r->name = name;
  r->replica_identity = identity;
  for (auto& c : cols) {
    Relation::Column rc;
    rc.name = c.name;
    rc.type_name = c.type;
    rc.is_key = c.key;
    r->columns.push_back(rc);
  }
  return r;
}

Datum T(std::string v) { return Datum::Text(std::move(v)); }
Datum N() { return Datum::Null(); }
Datum U() { return Datum::Unchanged(); }

Change Insert(std::shared_ptr<const Relation> rel, Tuple t) {
  Change c;
  c.op = ChangeOp::kInsert;
  c.relation = std::move(rel);
  c.new_tuple = std::move(t);
  return c;
}
Change Update(std::shared_ptr<const Relation> rel, Tuple t, Tuple old = {}) {
  Change c;
  c.op = ChangeOp::kUpdate;
  c.relation = std::move(rel);
  c.new_tuple = std::move(t);
  c.old_tuple = std::move(old);
  return c;
}
Change Delete(std::shared_ptr<const Relation> rel, Tuple old) {
  Change c;
  c.op = ChangeOp::kDelete;
  c.relation = std::move(rel);
  c.old_tuple = std::move(old);
  return c;
}
Change Truncate(std::vector<std::shared_ptr<const Relation>> rels, uint8_t options = 0) {
  Change c;
  c.op = ChangeOp::kTruncate;
  c.relation = rels.front();
  c.truncated = std::move(rels);
  c.truncate_options = options;
  return c;
}

// items(id bigint key, name text, qty integer, note text)
std::shared_ptr<const Relation> Items() {
  static auto r = Rel("items", {{"id", "bigint", true},
                                {"name", "text"},
                                {"qty", "integer"},
                                {"note", "text"}});
  return r;
}
Tuple Item(int id, const std::string& name, int qty, Datum note = N()) {
  return {T(std::to_string(id)), T(name), T(std::to_string(qty)), std::move(note)};
}
Tuple ItemKey(int id) { return {T(std::to_string(id)), N(), N(), N()}; }

// The rows as a VALUES list of dollar-quoted texts (NULL for a NULL): what a plain INSERT of the
// same texts stores is what the array and bulk paths are compared with.
std::string ValuesSql(const std::vector<Tuple>& rows) {
  std::string v;
  for (const Tuple& t : rows) {
    v += v.empty() ? "(" : ", (";
    for (size_t c = 0; c < t.size(); ++c) {
      v += (c ? ", " : "") + (t[c].kind == Datum::Kind::kText ? "$v$" + t[c].text + "$v$" : "NULL");
    }
    v += ")";
  }
  return v;
}

class ApplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = testing::Clusters().target().CreateDatabase("apply");
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = *db;
    char tmpl[] = "/tmp/tenantsync-apply-state-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto cfg = ConfigFromFlags("postgresql://unused@127.0.0.1:1/unused", TargetUrl(), "rawdog");
    ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
    config_ = *cfg;
    Exec("CREATE SCHEMA tenant_rawdog; CREATE TABLE tenant_rawdog.items (id bigint PRIMARY KEY, "
         "name text, qty integer, note text)");
    OpenStore();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string TargetUrl() const { return testing::Clusters().target().Url(db_); }
  void OpenStore() {
    state::StateOptions o;
    o.dir = dir_;
    o.pipeline = "rawdog";
    o.checkpoint_interval_seconds = 0;
    auto s = state::StateStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  void Exec(const std::string& sql) {
    Status s = testing::Clusters().target().Exec(db_, sql);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::string Q(const std::string& sql) {
    auto v = testing::Clusters().target().QueryValue(db_, sql);
    EXPECT_TRUE(v.ok()) << sql << ": " << v.status().ToString();
    return v.ok() ? *v : "<error>";
  }
  // Journals one committed source transaction.
  void Txn(const std::vector<Change>& changes) {
    TransactionInfo info;
    info.xid = ++xid_;
    next_lsn_ += 0x100;
    info.commit_lsn = Lsn(next_lsn_);
    info.end_lsn = Lsn(next_lsn_ + 0x10);
    info.commit_time_us = NowMicros();
    state::Journal& j = store_->journal();
    ASSERT_OK(j.Begin(info));
    for (const Change& c : changes) ASSERT_OK(j.Append(c));
    ASSERT_OK(j.Commit(info));
    last_lsn_ = info.commit_lsn;
  }
  apply::ApplyOptions Options() const { return apply::ApplyOptions::FromConfig(config_); }
  Status Apply(const apply::ApplyOptions& o) {
    apply::Applier a(config_, o, store_.get(), nullptr, &stats_);
    Status s = a.ApplyAvailable();
    counters_ = a.Counters();
    return s;
  }
  Status Apply() { return Apply(Options()); }
  std::string Progress() {
    return Q("SELECT coalesce((SELECT applied_lsn::text FROM _tenantsync.progress "
             "WHERE pipeline = 'rawdog'), 'none')");
  }
  std::string Items() {
    return Q("SELECT coalesce(string_agg(concat_ws(':', id, name, qty, coalesce(note, 'NULL')), "
             "',' ORDER BY id), '') FROM tenant_rawdog.items");
  }

  void StoresCharacterValuesExactly(bool through_arrays);
  void OneBadRowOfARunBecomesOneDeadLetter(int rows, int bulk_min_rows);

  std::string db_;
  std::string dir_;
  Config config_;
  std::unique_ptr<state::StateStore> store_;
  PipelineStats stats_;
  apply::ApplyCounters counters_;
  uint32_t xid_ = 700;
  uint64_t next_lsn_ = 0x3000000;
  Lsn last_lsn_;
};

TEST_F(ApplyTest, AppliesInsertUpdateDeleteAndRecordsProgress) {
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "apple", 3)), Insert(r, Item(2, "pear", 4)),
       Insert(r, Item(3, "plum", 5))});
  Txn({Update(r, Item(2, "pear", 40)), Delete(r, ItemKey(3))});
  Txn({Delete(r, ItemKey(99))});  // a missing row is fine
  ASSERT_OK(Apply());
  EXPECT_EQ(Items(), "1:apple:3:NULL,2:pear:40:NULL");
  EXPECT_EQ(Progress(), last_lsn_.ToString());
  EXPECT_EQ(store_->journal().Stats().applied_lsn, last_lsn_);
  EXPECT_EQ(counters_.transactions, 3u);
  EXPECT_EQ(stats_.applied_lsn.load(), last_lsn_.value());
  EXPECT_EQ(Q("SELECT commit_time IS NOT NULL FROM _tenantsync.progress"), "t");
}

TEST_F(ApplyTest, ResumesAfterTheProgressRowAndAppliesNothingTwice) {
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "a", 1))});
  ASSERT_OK(Apply());
  // The target's row is the truth: a change applied by hand behind the applier's back shows
  // whether it re-applies the first transaction (it must not).
  Exec("UPDATE tenant_rawdog.items SET qty = 100 WHERE id = 1");
  Txn({Insert(r, Item(2, "b", 2))});
  ASSERT_OK(Apply());
  EXPECT_EQ(Items(), "1:a:100:NULL,2:b:2:NULL");
  EXPECT_EQ(counters_.transactions, 1u);
  ASSERT_OK(Apply());
  EXPECT_EQ(counters_.transactions, 0u);
}

// The applier reads transactions once written to the journal, before their fsync, so after a
// crash of the machine the target may hold transactions the journal lost (never acknowledged:
// the source sends them again). The applier then waits for the journal to pass the target's
// progress row and applies only what follows it.
TEST_F(ApplyTest, TargetAheadOfALostJournalTailAppliesOnlyWhatFollowsItsProgressRow) {
  auto r = tenantsync::Items();
  auto txn_at = [&](uint64_t lsn, const std::vector<Change>& changes) {
    next_lsn_ = lsn - 0x100;
    Txn(changes);
  };
  txn_at(0x5000100, {Insert(r, Item(1, "a", 1))});
  txn_at(0x5000200, {Insert(r, Item(2, "b", 2))});
  txn_at(0x5000300, {Insert(r, Item(3, "c", 3))});
  ASSERT_OK(Apply());
  ASSERT_EQ(Progress(), "0/5000300");
  // A write behind the applier's back shows whether it re-applies a transaction it must skip.
  Exec("UPDATE tenant_rawdog.items SET qty = 100 WHERE id IN (2, 3)");
  // The machine crashed: the journal kept only its durable prefix, the first transaction.
  store_.reset();
  std::filesystem::remove_all(dir_);
  OpenStore();
  txn_at(0x5000100, {Insert(r, Item(1, "a", 1))});
  ASSERT_OK(Apply());  // the journal ends before the target's row: nothing to apply
  EXPECT_EQ(counters_.transactions, 0u);
  EXPECT_EQ(Progress(), "0/5000300");
  // The source resends what it was never acknowledged, then new transactions follow.
  txn_at(0x5000200, {Insert(r, Item(2, "b", 2))});
  txn_at(0x5000300, {Insert(r, Item(3, "c", 3))});
  txn_at(0x5000400, {Insert(r, Item(4, "d", 4))});
  ASSERT_OK(Apply());
  EXPECT_EQ(counters_.transactions, 1u);
  EXPECT_EQ(Items(), "1:a:1:NULL,2:b:100:NULL,3:c:100:NULL,4:d:4:NULL");
  EXPECT_EQ(Progress(), "0/5000400");
  EXPECT_EQ(store_->journal().Stats().applied_lsn, Lsn(0x5000400));
}

TEST_F(ApplyTest, ReplayFromScratchConverges) {
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "a", 1)), Insert(r, Item(2, "b", 2))});
  Txn({Update(r, Item(1, "a", 10)), Delete(r, ItemKey(2)), Insert(r, Item(3, "c", 3))});
  ASSERT_OK(Apply());
  std::string once = Items();
  // Forget the progress: everything is applied a second time over the same rows (the resumed
  // snapshot case of invariant 1): inserts become updates, the result is the same.
  Exec("DELETE FROM _tenantsync.progress");
  ASSERT_OK(Apply());
  EXPECT_EQ(counters_.transactions, 2u);
  EXPECT_EQ(counters_.isolated_batches, 0u);
  EXPECT_EQ(*store_->DeadLetterCount(), 0u);
  EXPECT_EQ(Items(), once);
  EXPECT_EQ(once, "1:a:10:NULL,3:c:3:NULL");
}

TEST_F(ApplyTest, UnchangedToastColumnKeepsItsValue) {
  auto r = tenantsync::Items();
  std::string big;
  for (int i = 0; i < 20000; ++i) big += std::to_string(i * 7919 % 10007) + ",";
  Txn({Insert(r, Item(1, "a", 1, T(big)))});
  Txn({Update(r, Item(1, "b", 2, U()))});
  ASSERT_OK(Apply());
  EXPECT_EQ(Q("SELECT name || qty FROM tenant_rawdog.items WHERE id = 1"), "b2");
  EXPECT_EQ(Q("SELECT md5(note) = md5(" + QuoteLiteral(big) + ") FROM tenant_rawdog.items"), "t");
}

// apply.toast_compression: large values the applier writes are lz4-compressed by default, by
// the one-statement path, the array path and the COPY path alike; "server" leaves the target's
// default (pglz on these clusters).
TEST_F(ApplyTest, LargeValuesAreCompressedAsToastCompressionSays) {
  auto r = tenantsync::Items();
  std::string big;
  for (int i = 0; i < 4000; ++i) big += "row " + std::to_string(i % 50) + "; ";
  ASSERT_EQ(Q("SHOW default_toast_compression"), "pglz");
  // id 1 alone (one statement), 2-3 (array path), 10-29 (COPY with bulk_min_rows 10).
  Txn({Insert(r, Item(1, "one", 1, T(big)))});
  Txn({Insert(r, Item(2, "array", 1, T(big))), Insert(r, Item(3, "array", 1, T(big)))});
  std::vector<Change> many;
  for (int i = 10; i < 30; ++i) many.push_back(Insert(r, Item(i, "copy", 1, T(big))));
  Txn(many);
  apply::ApplyOptions o = Options();
  o.bulk_min_rows = 10;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Q("SELECT string_agg(DISTINCT coalesce(pg_column_compression(note), 'none'), ',') "
              "FROM tenant_rawdog.items"),
            "lz4");
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.items WHERE md5(note) = md5(" +
              QuoteLiteral(big) + ")"),
            "23");

  Txn({Update(r, Item(1, "server", 2, T(big + "!")))});
  o.toast_compression = "server";
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Q("SELECT pg_column_compression(note) FROM tenant_rawdog.items WHERE id = 1"), "pglz");
}

TEST_F(ApplyTest, ChangedPrimaryKeyMovesTheRow) {
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "a", 1)), Insert(r, Item(2, "b", 2))});
  Txn({Update(r, Item(10, "a", 11), ItemKey(1))});
  ASSERT_OK(Apply());
  EXPECT_EQ(Items(), "2:b:2:NULL,10:a:11:NULL");
}

TEST_F(ApplyTest, TableWithoutKeyMatchesOneRowOnAllOldColumns) {
  Exec("CREATE TABLE tenant_rawdog.events (kind text, n integer, payload jsonb)");
  auto r = Rel("events", {{"kind", "text", true}, {"n", "integer", true}, {"payload", "jsonb", true}},
               'f', 16400);
  Txn({Insert(r, {T("x"), T("1"), T("{\"a\": 1}")}), Insert(r, {T("x"), T("1"), T("{\"a\": 1}")}),
       Insert(r, {T("y"), N(), N()})});
  Txn({Delete(r, {T("x"), T("1"), T("{\"a\": 1}")}),
       Update(r, {T("y"), T("2"), T("[]")}, {T("y"), N(), N()})});
  ASSERT_OK(Apply());
  EXPECT_EQ(Q("SELECT string_agg(concat_ws(':', kind, n, payload), ',' ORDER BY kind) "
              "FROM tenant_rawdog.events"),
            "x:1:{\"a\": 1},y:2:[]");
}

// The old row is matched by `=` on its values and IS NULL on its NULLs (not IS NOT DISTINCT
// FROM, which no index serves), so an index of the target finds it: RAWDOG's touchpoints were
// a scan of the table per deleted row.
TEST_F(ApplyTest, TableWithoutKeyFindsTheOldRowThroughAnIndex) {
  Exec(
      "CREATE TABLE tenant_rawdog.events (kind text, n integer, payload jsonb); "
      "CREATE INDEX events_n ON tenant_rawdog.events (n); "
      "INSERT INTO tenant_rawdog.events SELECT 'filler', g, NULL "
      "FROM generate_series(100, 20099) g; ANALYZE tenant_rawdog.events");
  auto r =
      Rel("events", {{"kind", "text", true}, {"n", "integer", true}, {"payload", "jsonb", true}},
          'f', 16400);
  Txn({Insert(r, {T("x"), T("1"), T("{}")}), Insert(r, {T("x"), T("1"), T("{}")}),
       Insert(r, {T("y"), T("2"), N()})});
  // Applied first: within one batch, a delete or update of a row inserted in it never reaches
  // the target (TableWithoutKeyHoldsItsChangesAsMultisetsOfRows).
  ASSERT_OK(Apply());
  Txn({Delete(r, {T("x"), T("1"), T("{}")}),
       Update(r, {T("y"), T("3"), T("[]")}, {T("y"), T("2"), N()})});
  ASSERT_OK(Apply());
  EXPECT_EQ(Q("SELECT string_agg(concat_ws(':', kind, n, payload), ',' ORDER BY kind) "
              "FROM tenant_rawdog.events WHERE kind <> 'filler'"),
            "x:1:{},y:3:[]");
  // The applier's backend reports its index scans when it exits, after Apply returned.
  std::string scans;
  for (int i = 0; i < 50; ++i) {
    scans = Q("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'events_n'");
    if (scans != "0") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(scans, "2");  // the delete's and the update's
  // Deletes held as a set go as one statement planned for their rows: index probes, not a scan
  // of the table.
  std::vector<Change> deletes;
  for (int n = 1000; n < 1010; ++n)
    deletes.push_back(Delete(r, {T("filler"), T(std::to_string(n)), N()}));
  Txn(deletes);
  auto o = Options();
  o.keyless_set_min_rows = 2;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.array_rows, 10u);
  for (int i = 0; i < 50 && scans == "2"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    scans = Q("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'events_n'");
  }
  EXPECT_GE(std::stoi(scans), 12) << "one probe per value deleted";
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.events WHERE n BETWEEN 1000 AND 1009"), "0");
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.events"), "19992");
}

// Under session_replication_role = replica a keyless table's deletes in a batch go as one
// statement per pattern of NULLs, with the effect of deleting one matching row per delete: a
// value deleted n times takes up to n equal rows, a missing row is passed over.
TEST_F(ApplyTest, TableWithoutKeyDeletesAsOneStatementPerPatternOfNulls) {
  Exec("CREATE TABLE tenant_rawdog.events (kind text, n integer, payload jsonb, w float8)");
  auto r = Rel("events",
               {{"kind", "text", true},
                {"n", "integer", true},
                {"payload", "jsonb", true},
                {"w", "double precision", true}},
               'f', 16400);
  const Tuple x = {T("x"), T("1"), T("{\"a\": 1}"), T("0.5")};
  const Tuple y = {T("y"), N(), N(), T("1")};
  const Tuple z = {T("z"), T("2"), N(), T("2")};
  const Tuple u = {T("u"), T("5"), T("[1]"), T("1")};
  const Tuple missing = {T("t"), T("9"), T("{}"), T("1")};
  Txn({Insert(r, x), Insert(r, x), Insert(r, x), Insert(r, y), Insert(r, z), Insert(r, z),
       Insert(r, u)});
  ASSERT_OK(Apply());
  Txn({Delete(r, x)});
  Txn({Delete(r, x), Delete(r, y), Delete(r, missing)});
  Txn({Delete(r, z), Delete(r, z)});
  Txn({Delete(r, z), Update(r, {T("u"), T("6"), T("[1]"), T("1")}, u)});
  auto o = Options();
  o.keyless_set_min_rows = 2;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.isolated_batches, 0u);
  // x, x, missing: one statement; z three times: one; y alone: its own single statement.
  EXPECT_EQ(counters_.array_rows, 6u);
  EXPECT_EQ(Q("SELECT string_agg(concat_ws(':', kind, n, payload, w), ',' ORDER BY kind) "
              "FROM tenant_rawdog.events"),
            "u:6:[1]:1,x:1:{\"a\": 1}:0.5");
  // The target lost a row the source still has (x is there twice in the source, once here): a
  // delete of x and then an update of x share that one row in the source's order, as one at a
  // time: the delete takes it, the update finds nothing.
  Txn({Delete(r, x)});
  Txn({Update(r, {T("x"), T("7"), T("{}"), T("1")}, x)});
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.missing_rows, 1u);
  EXPECT_EQ(Q("SELECT string_agg(concat_ws(':', kind, n, payload, w), ',' ORDER BY kind) "
              "FROM tenant_rawdog.events"),
            "u:6:[1]:1");
  // Updates go as one statement per pattern of NULLs too: the nth update of a value takes the
  // nth row equal to it, in the source's order, and one beyond the rows there finds none.
  const Tuple v = {T("v"), N(), T("{}"), T("1")};
  Txn({Insert(r, v), Insert(r, v), Insert(r, x)});
  ASSERT_OK(Apply());
  Txn({Update(r, {T("v"), T("1"), T("{}"), T("1")}, v)});
  Txn({Update(r, {T("v"), T("2"), T("{}"), T("1")}, v), Update(r, {T("v"), T("3"), N(), T("1")}, v),
       Update(r, {T("x"), T("8"), T("{}"), T("1")}, x)});
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.isolated_batches, 0u);
  EXPECT_EQ(counters_.missing_rows, 1u);  // v's third update
  EXPECT_EQ(counters_.array_rows, 3u);    // v's three updates; x's alone
  EXPECT_EQ(Q("SELECT string_agg(concat_ws(':', kind, n, payload, w), ',' ORDER BY kind, n) "
              "FROM tenant_rawdog.events"),
            "u:6:[1]:1,v:1:{}:1,v:2:{}:1,x:8:{}:1");
}

// A keyless table's changes in a batch are held as multisets of rows (a delete or an update of
// a row inserted in the same batch never reaches the target, deletes go as one statement, an
// update of a row there before goes ahead of them): whatever the batch boundaries and the COPY
// threshold, the rows left are those the source's history leaves, duplicates and NULLs included.
TEST_F(ApplyTest, TableWithoutKeyHoldsItsChangesAsMultisetsOfRows) {
  Exec("CREATE TABLE tenant_rawdog.events (a integer, b text, c jsonb, d integer[])");
  auto r = Rel(
      "events",
      {{"a", "integer", true}, {"b", "text", true}, {"c", "jsonb", true}, {"d", "integer[]", true}},
      'f', 16400);
  std::mt19937 rng(20261124);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const std::vector<Datum> bs = {T("p"), T("q"), N()};
  const std::vector<Datum> cs = {T("{\"k\": 1}"), T("[1, 2]"), N()};
  const std::vector<Datum> ds = {T("{1,2}"), T("{}"), T("{3}")};
  auto random_row = [&]() -> Tuple {
    return {T(std::to_string(pick(3))), bs[static_cast<size_t>(pick(3))],
            cs[static_cast<size_t>(pick(3))], ds[static_cast<size_t>(pick(3))]};
  };
  auto text = [](const Tuple& t) {
    std::string s;
    for (const Datum& d : t) s += (s.empty() ? "" : "|") + (d.is_null() ? "N" : d.text);
    return s;
  };
  std::vector<Tuple> model;  // the source's rows
  auto history = [&](int transactions) {
    for (int i = 0; i < transactions; ++i) {
      std::vector<Change> txn;
      for (int k = 1 + pick(5); k > 0; --k) {
        const int what = model.empty() ? 0 : pick(5) / 2;  // inserts 2/5, deletes, updates
        if (what == 0) {
          model.push_back(random_row());
          txn.push_back(Insert(r, model.back()));
          continue;
        }
        const size_t at = static_cast<size_t>(pick(static_cast<int>(model.size())));
        if (what == 1) {
          txn.push_back(Delete(r, model[at]));
          model.erase(model.begin() + static_cast<std::ptrdiff_t>(at));
        } else {
          Tuple now = random_row();
          txn.push_back(Update(r, now, model[at]));
          model[at] = now;
        }
      }
      Txn(txn);
    }
  };
  auto target = [&] {
    return Q(
        "SELECT coalesce(string_agg(concat_ws('|', coalesce(a::text, 'N'), coalesce(b, 'N'), "
        "coalesce(c::text, 'N'), d), ',' ORDER BY concat_ws('|', coalesce(a::text, 'N'), "
        "coalesce(b, 'N'), coalesce(c::text, 'N'), d) COLLATE \"C\"), '') "
        "FROM tenant_rawdog.events");
  };
  auto expected = [&] {
    std::vector<std::string> rows;
    for (const Tuple& t : model) rows.push_back(text(t));
    std::sort(rows.begin(), rows.end());
    std::string out;
    for (const auto& row : rows) out += (out.empty() ? "" : ",") + row;
    return out;
  };
  auto o = Options();
  o.keyless_set_min_rows = 2;
  history(150);
  o.batch_max_transactions = 7;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(target(), expected());
  history(300);
  o.batch_max_transactions = 1000;
  o.bulk_min_rows = 20;  // held inserts reach COPY in the middle of the batch
  ASSERT_OK(Apply(o));
  EXPECT_EQ(target(), expected());
  EXPECT_EQ(counters_.isolated_batches, 0u);
  EXPECT_GT(counters_.array_rows, 0u);
  history(300);
  ASSERT_OK(Apply());
  EXPECT_EQ(target(), expected());
  EXPECT_GT(model.size(), 20u);  // the history leaves rows to compare
}

TEST_F(ApplyTest, TruncatePolicies) {
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "a", 1))});
  Txn({Truncate({r})});
  Txn({Insert(r, Item(2, "b", 2))});

  auto o = Options();
  o.truncate = TruncatePolicy::kStop;
  Status s = Apply(o);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("apply.truncate"));
  EXPECT_THAT(s.message(), HasSubstr("items"));
  EXPECT_EQ(Items(), "");  // nothing of the stopped batch is committed

  o.truncate = TruncatePolicy::kIgnore;
  o.batch_max_transactions = 1;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Items(), "1:a:1:NULL,2:b:2:NULL");

  Exec("DELETE FROM _tenantsync.progress");
  o.truncate = TruncatePolicy::kApply;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Items(), "2:b:2:NULL");
}

TEST_F(ApplyTest, MessagesAndSkippedTablesAreNotApplied) {
  config_.tables["audit"].skip = true;
  auto audit = Rel("audit", {{"id", "bigint", true}}, 'd', 16500);
  auto other = std::make_shared<Relation>(*Rel("items", {{"id", "bigint", true}}, 'd', 16501));
  other->schema = "elsewhere";
  Change m;
  m.op = ChangeOp::kMessage;
  m.message_prefix = "p";
  m.message_content = "hello";
  Txn({m, Insert(audit, {T("1")}), Insert(other, {T("5")}),
       Insert(tenantsync::Items(), Item(1, "a", 1))});
  ASSERT_OK(Apply());
  EXPECT_EQ(Items(), "1:a:1:NULL");
  EXPECT_EQ(Progress(), last_lsn_.ToString());
}

TEST_F(ApplyTest, TransformRenamesCastsAndDeadLettersAnUncastableValue) {
  ColumnRule gross;
  gross.type = "bigint";
  config_.tables["orders"].rename = "purchases";
  config_.tables["orders"].columns["gross"] = gross;
  Exec("CREATE TABLE tenant_rawdog.purchases (id bigint PRIMARY KEY, gross bigint)");
  auto r = Rel("orders", {{"id", "bigint", true}, {"gross", "text"}}, 'd', 16600);
  Txn({Insert(r, {T("1"), T("100")}), Insert(r, {T("2"), T("12abc")}), Insert(r, {T("3"), T("7")})});
  ASSERT_OK(Apply());
  EXPECT_EQ(Q("SELECT string_agg(id || '=' || gross, ',' ORDER BY id) FROM tenant_rawdog.purchases"),
            "1=100,3=7");
  auto letters = store_->DeadLetters();
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].table, "orders");
  EXPECT_EQ((*letters)[0].key, "id=2");
  EXPECT_EQ((*letters)[0].phase, "apply");
  EXPECT_THAT((*letters)[0].reason, HasSubstr("gross"));
  EXPECT_THAT((*letters)[0].reason, ::testing::Not(HasSubstr("12abc")));
  EXPECT_EQ(stats_.dead_letters.load(), 1u);
}

TEST_F(ApplyTest, FailingChangeBecomesADeadLetterAndTheRestIsApplied) {
  Exec("ALTER TABLE tenant_rawdog.items ADD CONSTRAINT qty_not_negative CHECK (qty >= 0)");
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "a", 5))});
  Txn({Insert(r, Item(2, "b", -1)), Insert(r, Item(3, "c", 3))});
  Txn({Update(r, Item(1, "a", 6))});
  ASSERT_OK(Apply());
  EXPECT_EQ(Items(), "1:a:6:NULL,3:c:3:NULL");
  EXPECT_EQ(counters_.isolated_batches, 1u);
  EXPECT_EQ(Progress(), last_lsn_.ToString());
  auto letters = store_->DeadLetters();
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].key, "id=2");
  EXPECT_THAT((*letters)[0].reason, HasSubstr("qty_not_negative"));
  EXPECT_EQ((*letters)[0].lsn.value(), 0x3000200u);
}

TEST_F(ApplyTest, FailingChangeStopsUnderAbortAndCommitsNothingOfItsBatch) {
  Exec("ALTER TABLE tenant_rawdog.items ADD CONSTRAINT qty_not_negative CHECK (qty >= 0)");
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "a", 5))});
  Txn({Insert(r, Item(2, "b", -1))});
  auto o = Options();
  o.on_error = ErrorPolicy::kAbort;
  Status s = Apply(o);
  EXPECT_EQ(s.code(), StatusCode::kFatal) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("items"));
  EXPECT_THAT(s.message(), HasSubstr("id=2"));
  EXPECT_EQ(Items(), "");
  EXPECT_EQ(Progress(), "none");
  // Fixed in the target, a restart continues from the journal.
  Exec("ALTER TABLE tenant_rawdog.items DROP CONSTRAINT qty_not_negative");
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Items(), "1:a:5:NULL,2:b:-1:NULL");
}

TEST_F(ApplyTest, FailureInAnEarlierSyncGroupCommitsNothingOfItsBatch) {
  // A batch's COMMIT goes out with its statements (one round trip). A statement that failed in
  // an earlier sync group leaves the transaction aborted: the COMMIT must not commit the rest.
  Exec("ALTER TABLE tenant_rawdog.items ADD CONSTRAINT qty_not_negative CHECK (qty >= 0)");
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "a", -1))});
  for (int i = 2; i <= 12; ++i) Txn({Insert(r, Item(i, "x", i))});
  auto o = Options();
  o.on_error = ErrorPolicy::kAbort;
  o.statements_per_sync = 2;
  Status s = Apply(o);
  EXPECT_EQ(s.code(), StatusCode::kFatal) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("id=1"));
  EXPECT_EQ(Items(), "");
  EXPECT_EQ(Progress(), "none");
  // Under dead_letter the batch is isolated: everything but the bad row, once.
  o.on_error = ErrorPolicy::kDeadLetter;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.items"), "11");
  EXPECT_EQ(Progress(), last_lsn_.ToString());
  EXPECT_EQ(*store_->DeadLetterCount(), 1u);
}

TEST_F(ApplyTest, EarlyCommitsApplyEveryTransactionOnceAndInOrder) {
  // Changes to the same keys across the commit points (after the 1st, 3rd and 7th transaction):
  // the runs held for one key are sent at each early commit, in order.
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "a", 1))});
  Txn({Update(r, Item(1, "a", 2)), Insert(r, Item(2, "b", 1))});
  Txn({Update(r, Item(2, "b", 2))});
  Txn({Update(r, Item(1, "a", 3)), Delete(r, ItemKey(2))});
  Txn({Insert(r, Item(2, "c", 1))});
  Txn({Insert(r, Item(3, "d", 1)), Update(r, Item(2, "c", 2))});
  Txn({Update(r, Item(3, "d", 2))});
  Txn({Delete(r, ItemKey(1))});
  for (int i = 10; i < 14; ++i) Txn({Insert(r, Item(i, "x", i))});
  auto o = Options();
  o.early_commits = apply::ApplyOptions::EarlyCommits::kAlways;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Items(), "2:c:2:NULL,3:d:2:NULL,10:x:10:NULL,11:x:11:NULL,12:x:12:NULL,13:x:13:NULL");
  EXPECT_EQ(counters_.batches, 1u);
  EXPECT_EQ(counters_.early_commits, 3u);  // after transactions 1, 3 and 7 of 12
  EXPECT_EQ(counters_.transactions, 12u);
  EXPECT_EQ(Progress(), last_lsn_.ToString());
  // A batch read from a backlog (the applier not caught up) keeps one commit by default.
  for (int i = 20; i < 30; ++i) Txn({Insert(r, Item(i, "y", i))});
  ASSERT_OK(Apply());
  EXPECT_EQ(counters_.batches, 1u);
  EXPECT_EQ(counters_.early_commits, 0u);
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.items"), "16");
}

TEST_F(ApplyTest, EarlyCommitsKeepWhatCommittedWhenALaterChangeFails) {
  // A table without a key: re-applying the early-committed transactions would double them.
  Exec("CREATE TABLE tenant_rawdog.ledger (n integer CHECK (n <> 5), v text)");
  auto r = Rel("ledger", {{"n", "integer", true}, {"v", "text", true}}, 'f', 16700);
  std::vector<Lsn> lsns;
  for (int i = 1; i <= 10; ++i) {
    Txn({Insert(r, {T(std::to_string(i)), T("v")})});
    lsns.push_back(last_lsn_);
  }
  auto o = Options();
  o.early_commits = apply::ApplyOptions::EarlyCommits::kAlways;
  o.on_error = ErrorPolicy::kAbort;
  Status s = Apply(o);
  EXPECT_EQ(s.code(), StatusCode::kFatal) << s.ToString();
  // Committed after the 1st and the 3rd; the 4th-7th failed and nothing after them commits.
  EXPECT_EQ(Q("SELECT string_agg(n::text, ',' ORDER BY n) FROM tenant_rawdog.ledger"), "1,2,3");
  EXPECT_EQ(Progress(), lsns[2].ToString());
  EXPECT_EQ(counters_.transactions, 3u);
  // Under dead_letter the failed part is isolated from there: every other row once.
  o.on_error = ErrorPolicy::kDeadLetter;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Q("SELECT string_agg(n::text, ',' ORDER BY n) FROM tenant_rawdog.ledger"),
            "1,2,3,4,6,7,8,9,10");
  EXPECT_EQ(Progress(), last_lsn_.ToString());
  EXPECT_EQ(*store_->DeadLetterCount(), 1u);
  // The same in one run: the failed batch settles at its last early commit, then isolates.
  Exec("TRUNCATE tenant_rawdog.ledger; DELETE FROM _tenantsync.progress");
  store_.reset();
  std::filesystem::remove_all(dir_);
  OpenStore();
  for (int i = 1; i <= 10; ++i) Txn({Insert(r, {T(std::to_string(i)), T("v")})});
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Q("SELECT string_agg(n::text, ',' ORDER BY n) FROM tenant_rawdog.ledger"),
            "1,2,3,4,6,7,8,9,10");
  EXPECT_EQ(counters_.isolated_batches, 1u);
  EXPECT_EQ(counters_.transactions, 10u);
  EXPECT_EQ(Progress(), last_lsn_.ToString());
}

TEST_F(ApplyTest, EarlyCommitsStopAtACommitThatFails) {
  // A deferred constraint fails at COMMIT, which ends the transaction: the statements after it
  // must not run in a new one (or outside any, where each would commit on its own).
  // (Under the replica role the recheck trigger of a deferred unique constraint does not fire.)
  Exec(
      "CREATE TABLE tenant_rawdog.ledger (n integer, v text, "
      "UNIQUE (n) DEFERRABLE INITIALLY DEFERRED)");
  auto r = Rel("ledger", {{"n", "integer", true}, {"v", "text", true}}, 'f', 16700);
  Txn({Insert(r, {T("1"), T("v")})});
  const Lsn first = last_lsn_;
  Txn({Insert(r, {T("1"), T("again")})});  // in the second commit (transactions 2-3)
  for (int i = 3; i <= 10; ++i) Txn({Insert(r, {T(std::to_string(i)), T("v")})});
  auto o = Options();
  o.early_commits = apply::ApplyOptions::EarlyCommits::kAlways;
  o.session_replication_role = "origin";
  // A sync point after every statement (were the batch to set any): after one, the server runs
  // statements again.
  o.statements_per_sync = 1;
  Status s = Apply(o);
  EXPECT_THAT(s.message(), HasSubstr("ledger_n_key")) << s.ToString();
  EXPECT_EQ(Q("SELECT string_agg(n || ':' || v, ',' ORDER BY n) FROM tenant_rawdog.ledger"), "1:v");
  EXPECT_EQ(Progress(), first.ToString());
}

TEST_F(ApplyTest, SchemaDriftAddAltersTheTarget) {
  auto v1 = tenantsync::Items();
  auto v2 = Rel("items", {{"id", "bigint", true}, {"name", "text"}, {"qty", "bigint"},
                          {"note", "text"}, {"color", "character varying(12)"}});
  Txn({Insert(v1, Item(1, "a", 1))});
  Txn({Insert(v2, {T("2"), T("b"), T("9000000000"), N(), T("red")})});
  ASSERT_OK(Apply());
  EXPECT_EQ(Q("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
              "WHERE attrelid = 'tenant_rawdog.items'::regclass AND attname = 'color'"),
            "character varying(12)");
  EXPECT_EQ(Q("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
              "WHERE attrelid = 'tenant_rawdog.items'::regclass AND attname = 'qty'"),
            "bigint");
  EXPECT_EQ(Q("SELECT qty || color FROM tenant_rawdog.items WHERE id = 2"), "9000000000red");
  EXPECT_EQ(counters_.schema_changes, 2u);
}

TEST_F(ApplyTest, SchemaDriftStopNamesTheColumnAndContinuesAfterTheFix) {
  auto v2 = Rel("items", {{"id", "bigint", true}, {"name", "text"}, {"qty", "integer"},
                          {"note", "text"}, {"color", "text"}});
  Txn({Insert(tenantsync::Items(), Item(1, "a", 1))});
  Txn({Insert(v2, {T("2"), T("b"), T("2"), N(), T("red")})});
  auto o = Options();
  o.schema_drift = DriftPolicy::kStop;
  o.batch_max_transactions = 1;
  Status s = Apply(o);
  EXPECT_EQ(s.code(), StatusCode::kSchemaChanged) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("color"));
  EXPECT_THAT(s.message(), HasSubstr("tenant_rawdog.items"));
  EXPECT_EQ(Items(), "1:a:1:NULL");  // the batch before the drift is committed
  Exec("ALTER TABLE tenant_rawdog.items ADD COLUMN color text");
  ASSERT_OK(Apply(o));
  EXPECT_EQ(Q("SELECT color FROM tenant_rawdog.items WHERE id = 2"), "red");
}

TEST_F(ApplyTest, BulkPathAppliesLongRunsLikeSingleStatements) {
  auto r = tenantsync::Items();
  std::vector<Change> ins, upd, del;
  for (int i = 1; i <= 3000; ++i) ins.push_back(Insert(r, Item(i, "n" + std::to_string(i), i, T("keep"))));
  // Two passes over the same keys in one run: the last one wins. Note is unchanged TOAST.
  for (int pass = 1; pass <= 2; ++pass) {
    for (int i = 1; i <= 1000; ++i) upd.push_back(Update(r, Item(i, "u", i * 10 + pass, U())));
  }
  for (int i = 2001; i <= 3000; ++i) del.push_back(Delete(r, ItemKey(i)));
  Txn(ins);
  Txn(upd);
  Txn(del);
  auto o = Options();
  o.bulk_min_rows = 100;
  ASSERT_OK(Apply(o));
  EXPECT_GE(counters_.bulk_rows, 6000u) << "batches " << counters_.batches << ", isolated "
                                        << counters_.isolated_batches;
  EXPECT_EQ(counters_.isolated_batches, 0u);
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.items"), "2000");
  EXPECT_EQ(Q("SELECT sum(qty) FROM tenant_rawdog.items"),
            std::to_string(1000ll * 1001 / 2 * 10 + 2 * 1000 + (1001 + 2000) * 1000 / 2));
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.items WHERE note = 'keep'"), "2000");
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.items WHERE name = 'u'"), "1000");
}

// character(n) values go to the bulk path's staging table without their trailing blanks
// (apply/internal/sql_builder.h, AppendCopyText); the target pads them back. What is stored must
// equal a plain INSERT of the values as they were received, byte for byte, and the types that
// keep trailing blanks (bpchar without a length, varchar, text) must keep them.
// Character values (padded or not, NULLs, escapes) written through the bulk or the array path
// read back exactly as a plain INSERT of the same values stores them.
void ApplyTest::StoresCharacterValuesExactly(bool through_arrays) {
  const std::string cols =
      " (id bigint PRIMARY KEY, c5 character(5), c1 char(1), cu bpchar, v varchar(6), t text)";
  Exec("CREATE TABLE tenant_rawdog.codes" + cols + "; CREATE TABLE public.codes_ref" + cols);
  auto r = Rel("codes", {{"id", "bigint", true},
                         {"c5", "character(5)"},
                         {"c1", "character(1)"},
                         {"cu", "bpchar"},
                         {"v", "character varying(6)"},
                         {"t", "text"}},
               'd', 16390);
  // As a source sends them (padded) and as a transform might (not padded); NULL as "<null>".
  const std::vector<std::vector<std::string>> kValues = {
      {"ab   ", "x", "a  ", "a  ", "a  "},     {"  a  ", " ", " ", " ", " "},
      {"\xc3\xa9    ", "\xc3\xa9 ", "\xc3\xa9 ", "\xc3\xa9 ", "\xc3\xa9 "},
      {"     ", " ", "", "", ""},               {"ab", "y", "b", "b", "b"},
      {"a\tb  ", "\\", "a\\ ", "x\n ", "\t "}, {"<null>", "<null>", "<null>", "<null>", " \r "}};
  auto row = [&](int id, int variant) {
    Tuple t{T(std::to_string(id))};
    for (const std::string& v : kValues[static_cast<size_t>(variant) % kValues.size()]) {
      t.push_back(v == "<null>" ? N() : T(v));
    }
    return t;
  };
  std::vector<Change> ins, upd;
  std::vector<Tuple> expected(301);
  for (int id = 1; id <= 300; ++id) {
    expected[id] = row(id, id);
    ins.push_back(Insert(r, expected[id]));
  }
  for (int id = 1; id <= 150; ++id) {
    expected[id] = row(id, id + 3);
    upd.push_back(Update(r, expected[id]));
  }
  auto o = Options();
  o.bulk_min_rows = through_arrays ? 1000 : 100;
  // Two batches: in one, the updates would be merged into the inserted rows (MergeIntoRuns).
  Txn(ins);
  ASSERT_OK(Apply(o));
  EXPECT_GE(through_arrays ? counters_.array_rows : counters_.bulk_rows, 300u)
      << "batches " << counters_.batches;
  Txn(upd);
  ASSERT_OK(Apply(o));
  EXPECT_GE(through_arrays ? counters_.array_rows : counters_.bulk_rows, 150u)
      << "batches " << counters_.batches;
  Exec("INSERT INTO public.codes_ref VALUES " + ValuesSql({expected.begin() + 1, expected.end()}));
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.codes"), "300");
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.codes c FULL JOIN public.codes_ref r USING (id) "
              "WHERE c::text IS DISTINCT FROM r::text"),
            "0");
  EXPECT_EQ(Q("SELECT octet_length(c5) || '|' || octet_length(cu) || '|' || octet_length(v) "
              "FROM tenant_rawdog.codes WHERE id = 154"),
            "5|3|3");  // row(154, 154): {"ab   ", "x", "a  ", "a  ", "a  "}
}

TEST_F(ApplyTest, BulkPathStoresCharacterValuesExactlyAsAPlainInsert) {
  StoresCharacterValuesExactly(/*through_arrays=*/false);
}

TEST_F(ApplyTest, ArrayPathStoresCharacterValuesExactlyAsAPlainInsert) {
  StoresCharacterValuesExactly(/*through_arrays=*/true);
}

// An array-typed column goes through the array path as a text[] of its values' text, each cast
// by the column's input function (unnest() of an array of arrays would flatten it). Quotes,
// backslashes, NULL elements, the word NULL, empty and NULL arrays, 2-D arrays, a lower bound
// other than 1 and padded characters all read back as a plain INSERT of the same texts stores
// them, for a keyed table (insert, update, delete) and a keyless one (insert).
TEST_F(ApplyTest, ArrayPathStoresArrayTypedColumnsAsAPlainInsert) {
  const std::string cols =
      " (id bigint PRIMARY KEY, tags text[], nums integer[], grid text[], codes character(2)[], "
      "note text)";
  Exec("CREATE TABLE tenant_rawdog.tagged" + cols + "; CREATE TABLE public.tagged_ref" + cols +
       "; CREATE TABLE tenant_rawdog.tag_log (tags text[], at date)"
       "; CREATE TABLE public.tag_log_ref (tags text[], at date)");
  auto r = Rel("tagged",
               {{"id", "bigint", true},
                {"tags", "text[]"},
                {"nums", "integer[]"},
                {"grid", "text[]"},
                {"codes", "character(2)[]"},
                {"note", "text"}},
               'd', 16396);
  auto log = Rel("tag_log", {{"tags", "text[]"}, {"at", "date"}}, 'f', 16397);
  // As array_out writes them; "<null>" is NULL.
  const std::vector<std::vector<std::string>> kValues = {
      {"{a,\"b c\",\"q\\\"uo\",\"back\\\\slash\",NULL,\"NULL\"}", "{1,-2,NULL}", "{{a,b},{c,d}}",
       "{\"a \",bc}", "x"},
      {"{}", "{}", "{{\"{x}\",NULL}}", "{NULL}", "<null>"},
      {"<null>", "[0:1]={7,8}", "<null>", "<null>", "{not,an,array}"},
      {"{\"\",\" \",\",\",\"{}\"}", "{2147483647}", "{{\"\"}}", "{\"  \"}", ""},
  };
  auto row = [&](int id, int variant) {
    Tuple t{T(std::to_string(id))};
    for (const std::string& v : kValues[static_cast<size_t>(variant) % kValues.size()]) {
      t.push_back(v == "<null>" ? N() : T(v));
    }
    return t;
  };
  std::vector<Change> ins, upd, logs;
  std::vector<Tuple> expected(301), logged;
  for (int id = 1; id <= 300; ++id) {
    expected[id] = row(id, id);
    ins.push_back(Insert(r, expected[id]));
  }
  for (int i = 0; i < 8; ++i) {
    logged.push_back({kValues[i % 4][0] == "<null>" ? N() : T(kValues[i % 4][0]),
                      T("2026-11-" + std::to_string(10 + i))});
    logs.push_back(Insert(log, logged.back()));
  }
  for (int id = 1; id <= 150; ++id) {
    expected[id] = row(id, id + 1);
    upd.push_back(Update(r, expected[id]));
  }
  std::vector<Change> del;
  for (int id = 291; id <= 300; ++id)
    del.push_back(Delete(r, {T(std::to_string(id)), N(), N(), N(), N(), N()}));
  auto o = Options();
  o.bulk_min_rows = 1000;
  ins.insert(ins.end(), logs.begin(), logs.end());
  Txn(ins);
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.array_rows, 308u) << "batches " << counters_.batches;
  Txn(upd);
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.array_rows, 150u);
  EXPECT_EQ(counters_.text_arrays, 0u);  // every column, arrays too, went as a binary array
  Txn(del);
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.array_rows, 10u);

  Exec("INSERT INTO public.tagged_ref VALUES " +
       ValuesSql({expected.begin() + 1, expected.begin() + 291}) +
       "; INSERT INTO public.tag_log_ref VALUES " + ValuesSql(logged));
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.tagged"), "290");
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.tagged c FULL JOIN public.tagged_ref r "
              "USING (id) WHERE c::text IS DISTINCT FROM r::text"),
            "0")
      << Q("SELECT string_agg(c::text || ' <> ' || r::text, E'\\n') FROM tenant_rawdog.tagged c "
           "FULL JOIN public.tagged_ref r USING (id) WHERE c::text IS DISTINCT FROM r::text");
  EXPECT_EQ(Q("SELECT array_lower(a.nums, 1) || ':' || array_ndims(b.grid) FROM "
              "tenant_rawdog.tagged a, tenant_rawdog.tagged b WHERE a.id = 1 AND b.id = 4"),
            "0:2");  // row(1, 2): nums [0:1]={7,8}; row(4, 5): grid {{"{x}",NULL}}
  EXPECT_EQ(Q("SELECT count(*) FROM (SELECT tags, at FROM tenant_rawdog.tag_log EXCEPT ALL "
              "SELECT tags, at FROM public.tag_log_ref) d"),
            "0");
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.tag_log"), "8");
}

// The array path sends a column as a binary array where its type and values allow
// (apply/internal/binary_array.h) and as a text array otherwise. Either way every row reads back
// exactly as a plain INSERT of the same texts stores it: the server's parse is the reference.
// The database's time zone (-03:30) is not the offsets' zone, so an offset applied wrongly, or a
// value without one converted by the client, would show.
TEST_F(ApplyTest, ArrayPathStoresEveryTypeAsAPlainInsertInBinaryOrText) {
  Exec("ALTER DATABASE " + db_ + " SET timezone = 'America/St_Johns'");
  const std::string cols =
      " (id bigint PRIMARY KEY, t text, v varchar(12), b bytea, j jsonb, js json, f boolean, "
      "s smallint, i integer, n bigint, d date, ts timestamp, tz timestamptz, m numeric(10,2))";
  Exec("CREATE TABLE tenant_rawdog.typed" + cols + "; CREATE TABLE public.typed_ref" + cols);
  auto r = Rel("typed",
               {{"id", "bigint", true},
                {"t", "text"},
                {"v", "character varying(12)"},
                {"b", "bytea"},
                {"j", "jsonb"},
                {"js", "json"},
                {"f", "boolean"},
                {"s", "smallint"},
                {"i", "integer"},
                {"n", "bigint"},
                {"d", "date"},
                {"ts", "timestamp without time zone"},
                {"tz", "timestamp with time zone"},
                {"m", "numeric(10,2)"}},
               'd', 16395);
  // As the source's output functions write them; "<null>" is NULL.
  const std::vector<std::vector<std::string>> converted = {
      {"plain", "v", "\\x00ff", "{\"a\": [1, \"x\\\"y\"]}", "[1, {\"k\": null}]", "t", "-32768",
       "2147483647", "-9223372036854775808", "0001-01-01", "1999-12-31 23:59:59.999999",
       "1900-01-01 00:19:32+00:19:32", "12.50"},
      {"q\"uo\\te,{x} NULL", "\xc3\xbcn\xc3\xaf \"{", "\\x", "{}", "\"s\"", "f", "32767", "-1",
       "9223372036854775807", "9999-12-31", "2024-02-29 12:00:00", "2024-02-29 12:00:00.5-03:30",
       "<null>"},
      {"<null>", "<null>", "<null>", "<null>", "<null>", "<null>", "<null>", "<null>", "<null>",
       "<null>", "<null>", "<null>", "<null>"},
      {"", "", "\\xDEADbeef", "null", "  {\"a\" : 1}  ", "true", "0", "0", "0", "2000-01-01",
       "2000-01-01 00:00:00", "2000-01-01 05:30:00+05:30", "0"},
  };
  // Valid input the client leaves to the server: bytea's escape format, "yes", blanks around an
  // integer, infinity, a timestamp with time zone without its offset (the session's zone).
  const std::vector<std::vector<std::string>> left_to_text = {
      {"x", "y", "\\001abc", "[]", "{}", "yes", " 7 ", "  8", "9 ", "infinity", "-infinity",
       "2024-06-01 10:00:00", "1"},
      {"z", "w", "\\x01", "1", "2", "no", "1", "2", "3", "2024-01-01", "2024-01-01 00:00:00",
       "2024-06-01 10:00:00+02", "2"},
  };
  std::vector<Tuple> rows;
  auto journal = [&](const std::vector<std::vector<std::string>>& values) {
    std::vector<Change> txn;
    for (const auto& v : values) {
      Tuple t{T(std::to_string(rows.size() + 1))};
      for (const std::string& x : v) t.push_back(x == "<null>" ? N() : T(x));
      txn.push_back(Insert(r, t));
      rows.push_back(std::move(t));
    }
    Txn(txn);
  };
  journal(converted);
  ASSERT_OK(Apply());
  EXPECT_EQ(counters_.array_rows, 4u);
  EXPECT_EQ(counters_.binary_arrays, 13u);  // every column but the numeric
  EXPECT_EQ(counters_.text_arrays, 1u);
  journal(left_to_text);
  ASSERT_OK(Apply());
  EXPECT_EQ(counters_.array_rows, 2u);
  // bytea, boolean, smallint, integer, bigint, date, timestamp, timestamptz, numeric: text.
  EXPECT_EQ(counters_.binary_arrays, 5u);
  EXPECT_EQ(counters_.text_arrays, 9u);

  Exec("INSERT INTO public.typed_ref VALUES " + ValuesSql(rows));
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.typed"), "6");
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.typed c FULL JOIN public.typed_ref r USING (id) "
              "WHERE c::text IS DISTINCT FROM r::text"),
            "0")
      << Q("SELECT string_agg(c::text || ' <> ' || r::text, E'\\n') FROM tenant_rawdog.typed c "
           "FULL JOIN public.typed_ref r USING (id) WHERE c::text IS DISTINCT FROM r::text");
}

// The pgbench shape: many small transactions, each touching several tables, keys updated again
// and again. Grouped per table inside a batch, each table's changes form one run (bulk path, the
// last change per key wins); the result equals applying them one by one in commit order.
TEST_F(ApplyTest, InterleavedTablesOfManySmallTransactionsGoThroughTheBulkPathPerTable) {
  auto items = tenantsync::Items();
  auto log = Rel("audit_log", {{"item", "bigint"}, {"qty", "integer"}}, 'f', 16800);
  std::vector<Change> first;
  for (int i = 1; i <= 300; ++i) first.push_back(Insert(items, Item(i, "n", 0, T("keep"))));
  Txn(first);
  long long expected_sum = 0;
  std::vector<int> qty(301, 0);
  for (int t = 1; t <= 600; ++t) {
    int id = t % 300 + 1;  // 300 keys, each updated twice: past bulk_min_rows once per key
    qty[id] = t;
    Txn({Update(items, Item(id, "u", t, U())),
         Insert(log, {T(std::to_string(id)), T(std::to_string(t))})});
  }
  for (int i = 1; i <= 300; ++i) expected_sum += qty[i];
  auto o = Options();
  o.bulk_min_rows = 100;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.isolated_batches, 0u);
  EXPECT_GE(counters_.bulk_rows, 1000u) << "batches " << counters_.batches;
  EXPECT_EQ(Q("SELECT sum(qty) FROM tenant_rawdog.items"), std::to_string(expected_sum));
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.items WHERE note = 'keep' AND name = 'u'"), "300");
  EXPECT_EQ(Q("SELECT count(*) || ':' || sum(qty) FROM tenant_rawdog.audit_log"),
            "600:" + std::to_string(600 * 601 / 2));
  EXPECT_EQ(Q("SELECT applied_lsn::text FROM _tenantsync.progress"), last_lsn_.ToString());
}

// Under grouping a keyed table's changes are held as their net effect per key, whatever the
// order of their kinds (MergeIntoRuns). Random sequences of inserts, updates (some with
// unchanged-TOAST columns), deletes and re-inserts of few keys leave the same rows as one
// statement per change, held short (array path) and long (COPY beside the table's other runs).
TEST_F(ApplyTest, MixedChangesOfFewKeysLeaveTheRowsOneStatementPerChangeLeaves) {
  auto r = tenantsync::Items();
  std::mt19937 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  std::set<int> present;  // the source's keys, so that a key is only moved to a free one
  int moves = 0;
  for (int t = 0; t < 400; ++t) {
    std::vector<Change> txn;
    for (int i = 0, n = 1 + pick(4); i < n; ++i) {
      const int key = 1 + pick(30);
      const std::string id = std::to_string(key);
      const std::string name = "n" + std::to_string(t) + "." + std::to_string(i);
      const std::string qty = std::to_string(t * 10 + i);
      switch (pick(8)) {
        case 0:
        case 1:
          txn.push_back(Insert(r, {T(id), T(name), T(qty), T("ins")}));
          present.insert(key);
          break;
        case 7: {  // a changed primary key: the row moves to a free key
          const int to = 1 + pick(30);
          if (!present.contains(key) || present.contains(to)) break;
          txn.push_back(Update(r, {T(std::to_string(to)), T(name), T(qty), T("moved")},
                               ItemKey(key)));
          present.erase(key);
          present.insert(to);
          ++moves;
          break;
        }
        case 2:
          txn.push_back(Update(r, {T(id), T(name), T(qty), T("upd")}));
          break;
        case 3:
          txn.push_back(Update(r, {T(id), T(name), T(qty), U()}));
          break;
        case 4:
          txn.push_back(Update(r, {T(id), U(), T(qty), N()}));
          break;
        default:
          txn.push_back(Delete(r, {T(id), N(), N(), N()}));
          present.erase(key);
      }
    }
    if (!txn.empty()) Txn(txn);
  }
  ASSERT_GT(moves, 20);
  // One batch each (not cut by time on a busy machine), so the merge spans all 400 transactions.
  auto one_by_one = Options();
  one_by_one.bulk_min_rows = 0;
  one_by_one.batch_max_ms = 600000;
  ASSERT_OK(Apply(one_by_one));
  EXPECT_EQ(counters_.batches, 1u);
  const std::string want = Items();
  ASSERT_THAT(want, ::testing::HasSubstr(":ins"));
  ASSERT_THAT(want, ::testing::HasSubstr(":upd"));
  for (int min_rows : {500, 4}) {
    Exec("TRUNCATE tenant_rawdog.items; DELETE FROM _tenantsync.progress");
    auto o = Options();
    o.bulk_min_rows = min_rows;
    o.batch_max_ms = 600000;
    ASSERT_OK(Apply(o));
    EXPECT_EQ(counters_.batches, 1u);
    EXPECT_EQ(counters_.isolated_batches, 0u);
    EXPECT_GT(min_rows == 4 ? counters_.bulk_rows : counters_.array_rows, 0u);
    EXPECT_EQ(Items(), want) << "bulk_min_rows " << min_rows;
  }
}

// An order inserted and then updated in each of many source transactions (RAWDOG's checkout)
// is one insert run of the updated rows: one statement, where runs cut at every change of kind
// sent two statements per transaction.
TEST_F(ApplyTest, InsertedThenUpdatedRowsOfManyTransactionsGoAsOneRun) {
  auto r = tenantsync::Items();
  for (int id = 1; id <= 300; ++id) {
    Txn({Insert(r, Item(id, "new", 0)), Update(r, Item(id, "paid", id, T("n")))});
  }
  auto o = Options();
  o.batch_max_ms = 600000;  // one batch, not cut by time on a busy machine
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.batches, 1u);
  EXPECT_EQ(counters_.changes, 600u);
  EXPECT_EQ(counters_.array_rows, 300u);
  EXPECT_EQ(Q("SELECT count(*) || ':' || sum(qty) FROM tenant_rawdog.items WHERE name = 'paid' "
              "AND note = 'n'"),
            "300:" + std::to_string(300 * 301 / 2));
}

// Runs too short for COPY send one statement per key: the last change of each key in the batch
// (as the COPY path's statements do), so a hot row is written once per batch, not once per source
// transaction. An ENABLE ALWAYS trigger (it fires for replicated rows) counts the writes.
// Many changes of few keys (pgbench's tellers and branches): the run holds one row per key, so
// it stays short enough for the array path instead of going to COPY with every change, while
// the other table's long run in the same batch goes to COPY.
TEST_F(ApplyTest, ManyChangesOfFewKeysStayOffTheCopyPath) {
  auto items = tenantsync::Items();
  auto log = Rel("audit_log", {{"item", "bigint"}, {"qty", "integer"}}, 'f', 16800);
  Exec("CREATE TABLE tenant_rawdog.audit_log (item bigint, qty integer)");
  std::vector<Change> first;
  for (int i = 1; i <= 50; ++i) first.push_back(Insert(items, Item(i, "n", 0, T("keep"))));
  Txn(first);
  ASSERT_OK(Apply());
  std::vector<int> qty(51, 0);
  for (int t = 1; t <= 600; ++t) {
    int id = t % 50 + 1;
    qty[id] = t;
    Txn({Update(items, Item(id, "u" + std::to_string(t), t, U())),
         Insert(log, {T(std::to_string(id)), T(std::to_string(t))})});
  }
  auto o = Options();
  o.bulk_min_rows = 100;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.batches, 1u);
  EXPECT_EQ(counters_.isolated_batches, 0u);
  EXPECT_EQ(counters_.array_rows, 50u);  // the last update of each item
  EXPECT_EQ(counters_.bulk_rows, 600u);  // every audit_log insert
  std::string want;
  for (int i = 1; i <= 50; ++i) {
    want += (i > 1 ? "," : "") + std::to_string(i) + ":u" + std::to_string(qty[i]) + ":" +
            std::to_string(qty[i]) + ":keep";
  }
  EXPECT_EQ(Items(), want);
  EXPECT_EQ(Q("SELECT count(*) || ':' || sum(qty) FROM tenant_rawdog.audit_log"),
            "600:" + std::to_string(600 * 601 / 2));
  EXPECT_EQ(Progress(), last_lsn_.ToString());
}

// Inserts into a table without a key go to the table itself by COPY (no staging table): every
// value arrives as a single INSERT would store it, and a bad row still becomes one dead letter
// while the rest of the run is applied once.
TEST_F(ApplyTest, KeylessInsertRunCopiesIntoTheTableItself) {
  Exec("CREATE TABLE tenant_rawdog.ledger (n integer CHECK (n > 0), v text, c character(4))");
  auto r = Rel("ledger", {{"n", "integer", true}, {"v", "text", true}, {"c", "character(4)", true}},
               'f', 16700);
  const std::vector<Datum> awkward = {T("tab\there"),
                                      T("line\nbreak"),
                                      T("back\\slash"),
                                      N(),
                                      T("\xc3\xbcn\xc3\xaf"
                                        "code"),
                                      T("")};
  auto value = [&](int i) { return awkward[static_cast<size_t>(i) % awkward.size()]; };
  auto run_of = [&](int from, int to, int bad) {
    std::vector<Change> ins;
    for (int i = from; i <= to; ++i) {
      ins.push_back(Insert(r, {T(std::to_string(i == bad ? -1 : i)), value(i), T("ab")}));
    }
    Txn(ins);
  };
  auto o = Options();
  o.bulk_min_rows = 100;
  run_of(1, 600, 0);
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.isolated_batches, 0u);  // the COPY itself succeeded
  EXPECT_EQ(counters_.bulk_rows, 600u);
  // Every value as a plain INSERT of the same literals stores it.
  Exec("CREATE TABLE tenant_rawdog.expected (LIKE tenant_rawdog.ledger)");
  auto expect_rows = [&](int from, int to, int bad) {
    for (int i = from; i <= to; ++i) {
      if (i == bad) continue;
      const Datum v = value(i);
      Exec("INSERT INTO tenant_rawdog.expected VALUES (" + std::to_string(i) + ", " +
           (v.kind == Datum::Kind::kNull ? std::string("NULL") : "'" + v.text + "'") + ", 'ab')");
    }
  };
  expect_rows(1, 600, 0);
  auto differing = [&] {
    return Q(
        "SELECT (SELECT count(*) FROM (SELECT * FROM tenant_rawdog.ledger EXCEPT ALL "
        "SELECT * FROM tenant_rawdog.expected) a) + (SELECT count(*) FROM (SELECT * FROM "
        "tenant_rawdog.expected EXCEPT ALL SELECT * FROM tenant_rawdog.ledger) b)");
  };
  EXPECT_EQ(differing(), "0");
  // A bad row fails the COPY: the batch is isolated, the row becomes one dead letter, the rest
  // is applied once.
  run_of(601, 1200, 900);
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.isolated_batches, 1u);
  EXPECT_EQ(*store_->DeadLetterCount(), 1u);
  EXPECT_EQ(Q("SELECT count(*) || '/' || count(DISTINCT n) FROM tenant_rawdog.ledger"),
            "1199/1199");
  expect_rows(601, 1200, 900);
  EXPECT_EQ(differing(), "0");
  EXPECT_EQ(Progress(), last_lsn_.ToString());
}

TEST_F(ApplyTest, ShortRunsWriteEachKeyOncePerBatch) {
  auto items = tenantsync::Items();
  auto tags = Rel("tags", {{"id", "bigint", true}, {"tag", "text"}}, 'd', 16801);
  Exec("CREATE TABLE tenant_rawdog.writes (n bigint NOT NULL); INSERT INTO tenant_rawdog.writes "
       "VALUES (0); CREATE FUNCTION tenant_rawdog.count_write() RETURNS trigger LANGUAGE plpgsql "
       "AS $$ BEGIN UPDATE tenant_rawdog.writes SET n = n + 1; RETURN NULL; END $$; "
       "CREATE TABLE tenant_rawdog.tags (id bigint PRIMARY KEY, tag text); "
       "CREATE TRIGGER count_write AFTER INSERT OR UPDATE OR DELETE ON tenant_rawdog.items "
       "FOR EACH ROW EXECUTE FUNCTION tenant_rawdog.count_write(); "
       "ALTER TABLE tenant_rawdog.items ENABLE ALWAYS TRIGGER count_write; "
       "CREATE TRIGGER count_write AFTER INSERT OR UPDATE OR DELETE ON tenant_rawdog.tags "
       "FOR EACH ROW EXECUTE FUNCTION tenant_rawdog.count_write(); "
       "ALTER TABLE tenant_rawdog.tags ENABLE ALWAYS TRIGGER count_write");
  Txn({Insert(items, Item(1, "a", 0)), Insert(items, Item(2, "b", 0)),
       Insert(items, Item(3, "c", 0)), Insert(tags, {T("5"), T("known")})});
  ASSERT_OK(Apply());
  ASSERT_EQ(Q("SELECT n FROM tenant_rawdog.writes"), "4");
  for (int t = 1; t <= 60; ++t) {
    Txn({Update(items, Item(t % 3 + 1, "u" + std::to_string(t), t)),
         Insert(tags, {T(std::to_string(t % 2)), T("t" + std::to_string(t))})});
  }
  ASSERT_OK(Apply());  // one batch: 60 transactions, runs far below bulk_min_rows
  EXPECT_EQ(counters_.batches, 1u);
  EXPECT_EQ(Items(), "1:u60:60:NULL,2:u58:58:NULL,3:u59:59:NULL");
  EXPECT_EQ(Q("SELECT string_agg(id || ':' || tag, ',' ORDER BY id) FROM tenant_rawdog.tags"),
            "0:t60,1:t59,5:known");
  // 6 writes instead of 120: 3 updated keys and 2 upserted ones, and the first update alone (this
  // new applier learns `tags` after it, and sends what it holds before reading a new table).
  EXPECT_EQ(Q("SELECT n FROM tenant_rawdog.writes"), "10");
}

// Short runs (under bulk_min_rows) go as one statement per run over unnest() of one array per
// column: the same rows as one statement per change, for every operation, awkward text, NULLs,
// updates of missing rows (counted), inserts over existing keys, and a table without a key.
TEST_F(ApplyTest, ArrayPathAppliesShortRunsLikeSingleStatements) {
  Exec("CREATE TABLE tenant_rawdog.events (note text, n integer)");
  auto r = tenantsync::Items();
  auto ev = Rel("events", {{"note", "text"}, {"n", "integer"}}, 'f', 16391);
  const std::vector<Datum> kNotes = {T("a\"b"),       T("back\\slash"),  T("{brace},comma"),
                                     T(""),           T("NULL"),         N(),
                                     T("trailing  "), T("\xc3\xa9 \t\n")};
  auto note = [&](int i) { return kNotes[static_cast<size_t>(i) % kNotes.size()]; };
  for (int round = 0; round < 3; ++round) {
    std::vector<Change> ins, upd, del, events;
    for (int i = 1; i <= 40; ++i)
      ins.push_back(
          Insert(r, Item(round * 20 + i, "r" + std::to_string(round), i, note(i + round))));
    for (int i = 1; i <= 30; ++i)
      upd.push_back(Update(r, Item(i * 2, "u", round * 100 + i, note(i))));
    upd.push_back(Update(r, Item(900 + round, "missing", 1)));
    for (int i = 1; i <= 5; ++i) del.push_back(Delete(r, ItemKey(round * 20 + i * 3)));
    for (int i = 1; i <= 6; ++i) {
      events.push_back(Insert(ev, {note(i), i % 4 == 0 ? N() : T(std::to_string(i))}));
    }
    Txn(ins);
    Txn(upd);
    Txn(del);
    Txn(events);
  }
  auto snapshot = [&] {
    return Items() + " / " +
           Q("SELECT string_agg(concat_ws(':', coalesce(note, 'NULL'), coalesce(n::text, 'NULL')), "
             "',' ORDER BY note, n) FROM tenant_rawdog.events");
  };
  auto one_by_one = Options();
  one_by_one.array_min_rows = 0;
  ASSERT_OK(Apply(one_by_one));
  EXPECT_EQ(counters_.array_rows, 0u);
  EXPECT_EQ(counters_.isolated_batches, 0u);
  const std::string want = snapshot();
  const uint64_t missing = counters_.missing_rows;
  EXPECT_GT(missing, 0u);  // updates of ids not inserted yet, and 900..902

  Exec("TRUNCATE tenant_rawdog.items, tenant_rawdog.events; DELETE FROM _tenantsync.progress");
  ASSERT_OK(Apply());
  // Fewer rows than changes: updates of keys inserted in the same batch are merged into the
  // inserted rows (MergeIntoRuns).
  EXPECT_GT(counters_.array_rows, 100u) << "batches " << counters_.batches;
  EXPECT_EQ(counters_.isolated_batches, 0u);
  EXPECT_EQ(counters_.missing_rows, missing);
  EXPECT_EQ(snapshot(), want);
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.events"), "18");
  EXPECT_EQ(Q("SELECT note FROM tenant_rawdog.items WHERE id = 2"), "back\\slash");
}

// A row that fails inside a run fails the run's set-based statement (COPY path or array path):
// the batch is re-run change by change and only that row becomes a dead letter.
void ApplyTest::OneBadRowOfARunBecomesOneDeadLetter(int rows, int bulk_min_rows) {
  Exec("ALTER TABLE tenant_rawdog.items ADD CONSTRAINT qty_not_negative CHECK (qty >= 0)");
  auto r = tenantsync::Items();
  const int bad = rows / 2;
  std::vector<Change> ins;
  for (int i = 1; i <= rows; ++i) ins.push_back(Insert(r, Item(i, "n", i == bad ? -5 : i)));
  Txn(ins);
  auto o = Options();
  o.bulk_min_rows = bulk_min_rows;
  ASSERT_OK(Apply(o));
  EXPECT_EQ(counters_.isolated_batches, 1u);
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.items"), std::to_string(rows - 1));
  auto letters = store_->DeadLetters();
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].key, "id=" + std::to_string(bad));
}

TEST_F(ApplyTest, ArrayRunWithABadRowFallsBackToOneDeadLetter) {
  OneBadRowOfARunBecomesOneDeadLetter(/*rows=*/60, /*bulk_min_rows=*/500);
}

// A value too long for its target column is an error on every path, as in a one-row INSERT:
// the array path's casts leave the type modifier out, so nothing is cut to fit ('abcdef' cast
// to varchar(3) is 'abc'). Each bad row becomes a dead letter; the others are applied.
TEST_F(ApplyTest, ArrayRunRejectsAValueTooLongForItsColumnInsteadOfCuttingIt) {
  const std::string cols =
      " (id bigint PRIMARY KEY, code varchar(3), pad character(2), tags varchar(3)[], "
      "amount numeric(4,1))";
  Exec("CREATE TABLE tenant_rawdog.short_codes" + cols + "; CREATE TABLE public.short_ref" + cols);
  auto r = Rel("short_codes",
               {{"id", "bigint", true},
                {"code", "character varying(3)"},
                {"pad", "character(2)"},
                {"tags", "character varying(3)[]"},
                {"amount", "numeric(4,1)"}},
               'd', 16398);
  auto o = Options();
  o.bulk_min_rows = 500;
  // One bad row per batch: a failed run is applied again one row at a time, which would hide
  // the array statement cutting a value of another run of the same batch.
  for (int b = 0; b < 4; ++b) {
    std::vector<Change> ins;
    for (int i = b * 15 + 1; i <= b * 15 + 15; ++i) {
      ins.push_back(Insert(
          r, {T(std::to_string(i)), T(i == 10 ? "abcdef" : "ab  "), T(i == 20 ? "xyz" : "x "),
              T(i == 35 ? "{ab,abcd}" : "{ab,\"c    \"}"), T(i == 50 ? "12345.6" : "123.45")}));
    }
    Txn(ins);
    ASSERT_OK(Apply(o));
    EXPECT_EQ(counters_.isolated_batches, 1u) << "batch " << b;
  }
  EXPECT_EQ(Q("SELECT count(*) FROM tenant_rawdog.short_codes"), "56");
  auto letters = store_->DeadLetters();
  ASSERT_TRUE(letters.ok());
  std::vector<std::string> keys;
  for (const auto& l : *letters) keys.push_back(l.key);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"id=10", "id=20", "id=35", "id=50"}));
  // Trailing blanks past the length are dropped and numeric rounds, as in a one-row INSERT.
  Exec("INSERT INTO public.short_ref VALUES (1, 'ab  ', 'x ', '{ab,\"c    \"}', '123.45')");
  EXPECT_EQ(Q("SELECT c::text || ' ' || r::text FROM tenant_rawdog.short_codes c JOIN "
              "public.short_ref r USING (id)"),
            "(1,\"ab \",\"x \",\"{ab,\"\"c  \"\"}\",123.5) (1,\"ab \",\"x \",\"{ab,\"\"c  "
            "\"\"}\",123.5)");
}

TEST_F(ApplyTest, BulkRunWithABadRowFallsBackToOneDeadLetter) {
  OneBadRowOfARunBecomesOneDeadLetter(/*rows=*/500, /*bulk_min_rows=*/50);
}

TEST_F(ApplyTest, LostTargetConnectionIsRetriedByRun) {
  auto r = tenantsync::Items();
  Txn({Insert(r, Item(1, "a", 1))});
  apply::Applier a(config_, Options(), store_.get(), nullptr, &stats_);
  std::thread t([&] { EXPECT_TRUE(a.Run().ok()); });
  auto wait_for = [&](Lsn lsn) {
    for (int i = 0; i < 300 && a.Counters().applied_lsn < lsn; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return a.Counters().applied_lsn >= lsn;
  };
  EXPECT_TRUE(wait_for(last_lsn_));
  // Kill the applier's backend: the next batch fails with a connection error and is retried.
  Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
       "WHERE application_name = 'tenantsync-apply-rawdog'");
  Txn({Insert(r, Item(2, "b", 2))});
  Txn({Insert(r, Item(3, "c", 3))});
  EXPECT_TRUE(wait_for(last_lsn_));
  a.Stop();
  t.join();
  EXPECT_EQ(Items(), "1:a:1:NULL,2:b:2:NULL,3:c:3:NULL");
  EXPECT_GE(a.Counters().reconnects, 1u);
}

// --- crashes at kill points (child process) ---

int RunHelper(const std::string& dir, const std::string& url, const char* kill_point,
              int batch_max_transactions, bool early_commits = false) {
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    if (kill_point) setenv("TENANTSYNC_KILL_POINT", kill_point, 1);
    std::string batch = std::to_string(batch_max_transactions);
    execl(TENANTSYNC_APPLY_CRASH_HELPER, TENANTSYNC_APPLY_CRASH_HELPER, dir.c_str(), url.c_str(),
          batch.c_str(), early_commits ? "early" : static_cast<char*>(nullptr),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

class ApplyCrashTest : public ApplyTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(ApplyCrashTest, RestartAfterCrashAppliesEveryTransactionExactlyOnce) {
  // A table without a key: applying a transaction twice would leave a duplicate row.
  Exec("CREATE TABLE tenant_rawdog.ledger (n integer, v text)");
  auto r = Rel("ledger", {{"n", "integer", true}, {"v", "text", true}}, 'f', 16700);
  for (int i = 1; i <= 10; ++i) Txn({Insert(r, {T(std::to_string(i)), T("v")})});
  store_.reset();  // the child takes the state directory's lock

  EXPECT_EQ(RunHelper(dir_, TargetUrl(), GetParam(), 3), -SIGABRT);
  std::string after_crash = Q("SELECT count(*) FROM tenant_rawdog.ledger");
  if (std::string(GetParam()) == "apply.before_commit") {
    EXPECT_EQ(after_crash, "0");
  } else if (std::string(GetParam()) == "apply.after_target_commit") {
    EXPECT_EQ(after_crash, "3");
  } else {
    // The mirror's thread aborts after writing the first batch's position; the applier may
    // have committed more whole batches meanwhile (3, 3, 3 and the last 1).
    EXPECT_THAT(after_crash, ::testing::AnyOf("3", "6", "9", "10"));
  }
  EXPECT_EQ(RunHelper(dir_, TargetUrl(), nullptr, 3), 0);
  EXPECT_EQ(Q("SELECT count(*) || '/' || count(DISTINCT n) FROM tenant_rawdog.ledger"), "10/10");
  EXPECT_EQ(Progress(), last_lsn_.ToString());
  OpenStore();
  EXPECT_EQ(store_->journal().Stats().applied_lsn, last_lsn_);
}

class ApplyEarlyCommitCrashTest : public ApplyCrashTest {};

TEST_P(ApplyEarlyCommitCrashTest, RestartAfterCrashAppliesEveryTransactionExactlyOnce) {
  Exec("CREATE TABLE tenant_rawdog.ledger (n integer, v text)");
  auto r = Rel("ledger", {{"n", "integer", true}, {"v", "text", true}}, 'f', 16700);
  Txn({Insert(r, {T("1"), T("v")})});
  const Lsn first = last_lsn_;
  for (int i = 2; i <= 10; ++i) Txn({Insert(r, {T(std::to_string(i)), T("v")})});
  store_.reset();

  EXPECT_EQ(RunHelper(dir_, TargetUrl(), GetParam(), 10, true), -SIGABRT);
  // The first early commit follows the first transaction: before it is sent nothing is in the
  // target; once it is sent the target has that transaction and its progress row.
  const std::string rows = Q("SELECT count(*) FROM tenant_rawdog.ledger");
  if (std::string(GetParam()) == "apply.before_early_commit") {
    EXPECT_EQ(rows, "0");
    EXPECT_EQ(Progress(), "none");
  } else {
    EXPECT_EQ(rows, "1");
    EXPECT_EQ(Progress(), first.ToString());
  }
  EXPECT_EQ(RunHelper(dir_, TargetUrl(), nullptr, 10, true), 0);
  EXPECT_EQ(Q("SELECT count(*) || '/' || count(DISTINCT n) FROM tenant_rawdog.ledger"), "10/10");
  EXPECT_EQ(Progress(), last_lsn_.ToString());
}

INSTANTIATE_TEST_SUITE_P(KillPoints, ApplyEarlyCommitCrashTest,
                         ::testing::Values("apply.before_early_commit", "apply.after_early_commit"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '.') c = '_';
                           }
                           return n;
                         });

INSTANTIATE_TEST_SUITE_P(KillPoints, ApplyCrashTest,
                         ::testing::Values("apply.before_commit", "apply.after_target_commit",
                                           "apply.after_record_applied"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '.') c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace tenantsync
