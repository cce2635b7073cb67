// Journal throughput: pgbench-like (TPC-B) transactions journaled with Commit's fsync, then read
// back; and the throughput of spooling one large transaction.
//
//   state_journal_bench [transactions=20000] [group|sync] [dir=<tmp>]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "state/journal.h"
#include "state/state_store.h"

namespace tenantsync::state {
namespace {

std::shared_ptr<const Relation> Table(const std::string& name, int columns) {
  auto r = std::make_shared<Relation>();
  r->oid = 16400 + static_cast<uint32_t>(name.size());
  r->schema = "public";
  r->name = name;
  for (int i = 0; i < columns; ++i) {
    r->columns.push_back({i == 0 ? "aid" : "c" + std::to_string(i), i == 0 ? "integer" : "text",
                          i == 0 ? 23u : 25u, -1, i == 0});
  }
  return r;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

int Run(int argc, char** argv) {
  long txns = argc > 1 ? std::atol(argv[1]) : 20000;
  bool group = argc > 2 && std::string(argv[2]) == "group";
  std::string dir = argc > 3 ? argv[3]
                             : (std::filesystem::temp_directory_path() /
                                ("journal-bench-" + std::to_string(::getpid())))
                                   .string();
  std::filesystem::remove_all(dir);
  StateOptions o;
  o.dir = dir;
  o.pipeline = "bench";
  o.sync_each_commit = !group;
  auto store_or = StateStore::Open(o);
  if (!store_or.ok()) {
    std::fprintf(stderr, "%s\n", store_or.status().ToString().c_str());
    return 1;
  }
  Journal& j = (*store_or)->journal();
  auto accounts = Table("pgbench_accounts", 4);
  auto tellers = Table("pgbench_tellers", 4);
  auto branches = Table("pgbench_branches", 3);
  auto history = Table("pgbench_history", 6);

  auto t0 = std::chrono::steady_clock::now();
  uint64_t lsn = 0x1000000;
  for (long i = 0; i < txns; ++i) {
    TransactionInfo t{static_cast<uint32_t>(1000 + i), Lsn(lsn), Lsn(lsn + 0x30), 0};
    Status s = j.Begin(t);
    auto update = [&](const std::shared_ptr<const Relation>& rel, int n) {
      Change c;
      c.op = ChangeOp::kUpdate;
      c.relation = rel;
      c.new_tuple.push_back(Datum::Text(std::to_string(i % 100000)));
      c.new_tuple.push_back(Datum::Text("1"));
      c.new_tuple.push_back(Datum::Text(std::to_string(i * 7 % 5000)));
      for (int k = 3; k < n; ++k) c.new_tuple.push_back(Datum::Unchanged());
      return j.Append(c);
    };
    if (s.ok()) s = update(accounts, 4);
    if (s.ok()) s = update(tellers, 4);
    if (s.ok()) s = update(branches, 3);
    if (s.ok()) {
      Change c;
      c.op = ChangeOp::kInsert;
      c.relation = history;
      c.new_tuple = {Datum::Text("1"),
                     Datum::Text("2"),
                     Datum::Text(std::to_string(i)),
                     Datum::Text("-4321"),
                     Datum::Text("2024-05-01 12:00:00.123456+00"),
                     Datum::Null()};
      s = j.Append(c);
    }
    if (s.ok()) s = j.Commit(t);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    lsn += 0x200;
  }
  // Durable: what the receiver could acknowledge.
  while (j.JournaledLsn() < Lsn(lsn - 0x200 + 0x30)) {
    j.WaitForNewer(j.JournaledLsn(), std::chrono::seconds(1));
  }
  auto t1 = std::chrono::steady_clock::now();
  auto reader = j.NewReader(Lsn());
  TransactionInfo info;
  Change c;
  uint64_t read_txns = 0, read_changes = 0;
  while (reader.ok() && (*reader)->NextTransaction(&info).value()) {
    ++read_txns;
    while ((*reader)->NextChange(&c).value()) ++read_changes;
  }
  auto t2 = std::chrono::steady_clock::now();

  // One large transaction, 4-change rows of the same shape.
  const long big = 500000;
  TransactionInfo t{1, Lsn(lsn), Lsn(lsn + 0x30), 0};
  if (!j.Begin(t).ok()) return 1;
  Change ins;
  ins.op = ChangeOp::kInsert;
  ins.relation = history;
  ins.new_tuple = {Datum::Text("1"),
                   Datum::Text("2"),
                   Datum::Text("3"),
                   Datum::Text("-4321"),
                   Datum::Text("2024-05-01 12:00:00.123456+00"),
                   Datum::Null()};
  for (long i = 0; i < big; ++i) {
    ins.new_tuple[2].text = std::to_string(i);
    if (!j.Append(ins).ok()) return 1;
  }
  if (!j.Commit(t).ok()) return 1;
  auto t3 = std::chrono::steady_clock::now();

  std::printf(
      "journal %ld pgbench-like transactions (4 changes each, %s): %.2f s, "
      "%.0f txn/s, %.0f changes/s\n",
      txns, group ? "group commit" : "fsync per commit", Seconds(t1 - t0), txns / Seconds(t1 - t0),
      4 * txns / Seconds(t1 - t0));
  std::printf("read back %llu transactions / %llu changes: %.2f s, %.0f txn/s\n",
              static_cast<unsigned long long>(read_txns),
              static_cast<unsigned long long>(read_changes), Seconds(t2 - t1),
              read_txns / Seconds(t2 - t1));
  std::printf("one %ld-change transaction: %.2f s, %.0f changes/s; journal %llu MB, disk %llu MB\n",
              big, Seconds(t3 - t2), big / Seconds(t3 - t2),
              static_cast<unsigned long long>(j.Stats().bytes >> 20),
              static_cast<unsigned long long>((*store_or)->DiskBytes() >> 20));
  store_or->reset();
  if (argc <= 3) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace tenantsync::state

int main(int argc, char** argv) { return tenantsync::state::Run(argc, argv); }
