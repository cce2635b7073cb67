// Durability under SIGKILL, and memory bound for one huge transaction.
//
// The crash test runs the writer in a child process (this binary re-executed with
// --gtest_filter=JournalCrashChild.*), which journals deterministic transactions and reports the
// index of each one covered by JournaledLsn() down a pipe (every Commit that returned OK with
// sync_each_commit; odd rounds use group commit). The parent SIGKILLs it at a random
// moment, reopens the journal and checks invariant 2's promise: every acknowledged transaction is
// there exactly once, in commit order, complete, and nothing else but (at most) the transactions
// that followed them, also complete.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include "state/internal/test_util.h"
#include "state/journal.h"
#include "state/state_store.h"

namespace tenantsync::state {
namespace {

using testing::MakeInsert;
using testing::MakeRelation;
using testing::RawDb;
using testing::RssBytes;
using testing::TempDir;

constexpr char kDirEnv[] = "TENANTSYNC_CRASH_CHILD_DIR";
constexpr char kFdEnv[] = "TENANTSYNC_CRASH_CHILD_FD";
constexpr char kGroupEnv[] = "TENANTSYNC_CRASH_CHILD_GROUP";  // set: group commit
constexpr uint64_t kBaseLsn = 0x1000000;

// Transaction `i` of the deterministic workload.
TransactionInfo TxnFor(uint64_t i) {
  TransactionInfo t;
  t.xid = static_cast<uint32_t>(1000 + i);
  t.commit_lsn = Lsn(kBaseLsn + i * 0x100);
  t.end_lsn = Lsn(kBaseLsn + i * 0x100 + 0x30);
  t.commit_time_us = 1700000000000000 + static_cast<int64_t>(i);
  return t;
}
uint64_t ChangesFor(uint64_t i) { return i % 9 == 4 ? 20000 : 1 + i % 17; }
std::string PayloadFor(uint64_t i, uint64_t k) {
  return std::to_string(i) + ":" + std::to_string(k) + std::string(40 + (i + k) % 30, 'v');
}

StateOptions CrashOptions(const std::string& dir) {
  StateOptions o;
  o.dir = dir;
  o.pipeline = "crash";
  return o;
}

// The child: journals transactions forever from where the journal ends, re-sending the last two
// first (as a reconnecting receiver may), and writes each committed index to the pipe.
TEST(JournalCrashChild, Run) {
  const char* dir = std::getenv(kDirEnv);
  const char* fd_text = std::getenv(kFdEnv);
  if (dir == nullptr || fd_text == nullptr) GTEST_SKIP() << "only runs as the crash test's child";
  int fd = std::atoi(fd_text);
  StateOptions options = CrashOptions(dir);
  options.sync_each_commit = std::getenv(kGroupEnv) == nullptr;
  auto store_or = StateStore::Open(options);
  ASSERT_TRUE(store_or.ok()) << store_or.status().ToString();
  Journal& j = (*store_or)->journal();
  Lsn last = j.Stats().journaled_commit_lsn;
  uint64_t next = last.valid() ? (last.value() - kBaseLsn) / 0x100 + 1 : 0;
  auto rel = MakeRelation("orders");
  Lsn acked = j.JournaledLsn();
  for (uint64_t i = next >= 2 ? next - 2 : 0;; ++i) {
    TransactionInfo t = TxnFor(i);
    ASSERT_TRUE(j.Begin(t).ok());
    ASSERT_EQ(j.IsSkipping(), i < next);
    for (uint64_t k = 0; k < ChangesFor(i); ++k) {
      ASSERT_TRUE(
          j.Append(MakeInsert(rel, {Datum::Text(std::to_string(i)), Datum::Text(PayloadFor(i, k))}))
              .ok());
    }
    Status s = j.Commit(t);
    ASSERT_TRUE(s.ok()) << s.ToString();
    // Acknowledge what JournaledLsn() covers, as the receiver does (invariant 2). With
    // sync_each_commit that is this transaction.
    Lsn durable = j.JournaledLsn();
    if (durable.valid() && durable > acked) {
      acked = durable;
      uint64_t index = (durable.value() - kBaseLsn) / 0x100;
      if (index >= next) {
        ASSERT_EQ(::write(fd, &index, sizeof(index)), static_cast<ssize_t>(sizeof(index)));
      }
    }
    if (options.sync_each_commit && i >= next) {
      ASSERT_EQ(durable, t.end_lsn);
    }
  }
}

// Reads acknowledged indexes from `fd` until `deadline`; returns the highest (or -1).
int64_t ReadAcks(int fd, std::chrono::steady_clock::time_point deadline, bool* eof) {
  int64_t max_ack = -1;
  *eof = false;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    uint64_t buf[512];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) {
      *eof = true;
      break;
    }
    for (ssize_t k = 0; k < n / 8; ++k) max_ack = std::max<int64_t>(max_ack, buf[k]);
  }
  return max_ack;
}

TEST(JournalCrashTest, SigkillNeverLosesAnAcknowledgedTransactionOrShowsAPartialOne) {
  TempDir tmp;
  std::mt19937 rng(std::random_device{}());
  int64_t max_ack = -1;
  int kills = 0;
  uint64_t verified = 0;
  for (int round = 0; round < 10; ++round) {
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(pipe_fds[0]);
      ::setenv(kDirEnv, tmp.path().c_str(), 1);
      ::setenv(kFdEnv, std::to_string(pipe_fds[1]).c_str(), 1);
      if (round % 2 == 1) ::setenv(kGroupEnv, "1", 1);
      ::execl("/proc/self/exe", "journal_crash_child", "--gtest_filter=JournalCrashChild.Run",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(pipe_fds[1]);
    // Let it start (exec, open, replay) and run for a random while, then kill it.
    int run_ms = 300 + static_cast<int>(rng() % 900);
    bool eof = false;
    int64_t acked = ReadAcks(
        pipe_fds[0], std::chrono::steady_clock::now() + std::chrono::milliseconds(run_ms), &eof);
    ASSERT_FALSE(eof) << "the child died by itself in round " << round;
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status));
    ++kills;
    // Acks already in the pipe were written after their Commit returned OK.
    int64_t rest =
        ReadAcks(pipe_fds[0], std::chrono::steady_clock::now() + std::chrono::seconds(5), &eof);
    ::close(pipe_fds[0]);
    max_ack = std::max({max_ack, acked, rest});

    // Reopen: transactions 0..K-1, each complete, K-1 >= every acknowledgement.
    auto store = StateStore::Open(CrashOptions(tmp.path()));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Journal& j = (*store)->journal();
    auto reader = j.NewReader(Lsn());
    ASSERT_TRUE(reader.ok());
    TransactionInfo info;
    Change c;
    uint64_t k = 0;
    uint64_t total_changes = 0;
    for (;; ++k) {
      auto more = (*reader)->NextTransaction(&info);
      ASSERT_TRUE(more.ok()) << more.status().ToString();
      if (!*more) break;
      TransactionInfo want = TxnFor(k);
      ASSERT_EQ(info.commit_lsn, want.commit_lsn) << "round " << round << ": gap or duplicate";
      ASSERT_EQ(info.end_lsn, want.end_lsn);
      ASSERT_EQ(info.xid, want.xid);
      uint64_t n = 0;
      while (true) {
        auto ch = (*reader)->NextChange(&c);
        ASSERT_TRUE(ch.ok()) << ch.status().ToString();
        if (!*ch) break;
        ASSERT_EQ(c.new_tuple.at(1).text, PayloadFor(k, n));
        ++n;
      }
      ASSERT_EQ(n, ChangesFor(k)) << "transaction " << k << " is partial";
      total_changes += n;
    }
    ASSERT_GE(static_cast<int64_t>(k) - 1, max_ack) << "round " << round << " lost acked data";
    EXPECT_EQ(j.Stats().transactions, k);
    EXPECT_EQ(j.Stats().changes, total_changes);
    EXPECT_EQ(j.JournaledLsn(), k == 0 ? Lsn() : TxnFor(k - 1).end_lsn);
    verified = k;
    reader->reset();
    store->reset();
    // No orphaned change survives the reopen.
    RawDb raw(tmp.path());
    EXPECT_EQ(raw.CountJournaledChanges(), total_changes);
  }
  EXPECT_EQ(kills, 10);
  EXPECT_GT(max_ack, 10) << "the child made too little progress to test anything";
  std::printf("crash test: %d kills, %llu transactions verified, highest ack %lld\n", kills,
              static_cast<unsigned long long>(verified), static_cast<long long>(max_ack));
}

// A 128 MB tmpfs mounted at `path` (created) for as long as this lives: a disk that fills up.
// mounted() is false, with the reason in error(), where this process may not mount (not root).
class SmallTmpfs {
 public:
  explicit SmallTmpfs(std::string path) : path_(std::move(path)) {
    std::filesystem::create_directory(path_);
    mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", 0, "size=128m,mode=0700") == 0;
    if (!mounted_) error_ = std::strerror(errno);
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool mounted_ = false;
  std::string error_;
};

// Issue 9: the state directory's disk fills up. Needs root for a small tmpfs; skipped otherwise.
TEST(JournalDiskFullTest, DiskFullIsResourceExhaustedAndRecoversOnceSpaceIsFreed) {
  TempDir tmp;
  SmallTmpfs fs(tmp.Sub("mnt"));
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << fs.error();
  const std::string& mnt = fs.path();
  std::string dir = mnt + "/state";
  auto rel = MakeRelation("orders");
  std::string payload(2000, 'd');
  std::vector<uint64_t> committed;
  {
    auto store = StateStore::Open(CrashOptions(dir));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Journal& j = (*store)->journal();
    auto commit = [&](uint64_t i) {
      TransactionInfo t = TxnFor(i);
      Status s = j.Begin(t);
      for (int k = 0; k < 30 && s.ok(); ++k) {
        s = j.Append(MakeInsert(rel, {Datum::Text(std::to_string(i)), Datum::Text(payload)}));
      }
      if (s.ok()) s = j.Commit(t);
      if (s.ok()) {
        committed.push_back(i);
      } else {
        j.Abort().IgnoreError();  // the spool is discarded; what failed is reported below
      }
      return s;
    };
    ASSERT_TRUE(commit(0).ok());
    // Fill the file system.
    {
      std::ofstream filler(mnt + "/filler", std::ios::binary);
      std::string mb(1 << 20, 'f');
      while (filler.write(mb.data(), mb.size())) {
      }
    }
    Status s;
    uint64_t i = 1;
    for (; i < 2000 && s.ok(); ++i) s = commit(i);
    ASSERT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
    EXPECT_THAT(s.message(),
                ::testing::HasSubstr("state directory " + dir + " is out of disk space"));
    // Still refused while the disk is full; no crash, no partial transaction.
    EXPECT_FALSE(commit(i++).ok());
    std::filesystem::remove(mnt + "/filler");
    // Space is back: the same process continues once RocksDB's recovery notices (it polls for
    // free space every 5 s); until then every attempt gets the same clear error.
    auto freed = std::chrono::steady_clock::now();
    Status again = commit(i++);
    while (!again.ok() && std::chrono::steady_clock::now() - freed < std::chrono::seconds(30)) {
      ASSERT_EQ(again.code(), StatusCode::kResourceExhausted) << again.ToString();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      again = commit(i++);
    }
    ASSERT_TRUE(again.ok()) << again.ToString();
    std::printf("disk full: writes resumed in-process %lld ms after space was freed\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - freed)
                                           .count()));
  }
  {
    // And after a restart.
    auto store = StateStore::Open(CrashOptions(dir));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Journal& j = (*store)->journal();
    const uint64_t first = committed.back() + 1;
    for (uint64_t i = first; i < first + 2; ++i) {
      TransactionInfo t = TxnFor(i);
      ASSERT_TRUE(j.Begin(t).ok());
      for (int k = 0; k < 30; ++k) {
        ASSERT_TRUE(
            j.Append(MakeInsert(rel, {Datum::Text(std::to_string(i)), Datum::Text(payload)})).ok());
      }
      Status s = j.Commit(t);
      ASSERT_TRUE(s.ok()) << s.ToString();
      committed.push_back(i);
    }
  }
  auto store = StateStore::Open(CrashOptions(dir));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto reader = (*store)->journal().NewReader(Lsn());
  ASSERT_TRUE(reader.ok());
  TransactionInfo info;
  Change c;
  std::vector<uint64_t> seen;
  while ((*reader)->NextTransaction(&info).value()) {
    uint64_t index = (info.commit_lsn.value() - kBaseLsn) / 0x100;
    seen.push_back(index);
    int n = 0;
    while ((*reader)->NextChange(&c).value()) ++n;
    EXPECT_EQ(n, 30) << "transaction " << index;
  }
  EXPECT_EQ(seen, committed);
  std::printf("disk full: %zu transactions committed around the full disk\n", committed.size());
}

// Group commit on a full disk: the failed write or sync (the syncer's group write, or the writer's
// own spool write of a big transaction that carries committed ones) stops the journal with a
// clear error instead of an abort, and nothing JournaledLsn() ever reported is missing after
// reopening (invariant 2).
TEST(JournalDiskFullTest, GroupCommitNeverReportsDurableWhatAFullDiskLost) {
  // Every seventh transaction is ~2.4 MB: spooled by the writer itself, with the committed
  // transactions still waiting for the syncer in the same write.
  auto ChangesFor = [](uint64_t i) { return i % 7 == 6 ? 1200 : 5; };
  TempDir tmp;
  SmallTmpfs fs(tmp.Sub("mnt"));
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << fs.error();
  const std::string& mnt = fs.path();
  std::string dir = mnt + "/state";
  StateOptions options = CrashOptions(dir);
  options.sync_each_commit = false;
  auto rel = MakeRelation("orders");
  std::string payload(2000, 'd');
  Lsn reported;  // the highest JournaledLsn() seen: what a receiver may have acknowledged
  {
    auto store = StateStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Journal& j = (*store)->journal();
    {
      std::ofstream filler(mnt + "/filler", std::ios::binary);
      std::string mb(1 << 20, 'f');
      for (int i = 0; i < 120 && filler.write(mb.data(), mb.size()); ++i) {
      }
    }
    Status s;
    for (uint64_t i = 0; i < 20000 && s.ok(); ++i) {
      TransactionInfo t = TxnFor(i);
      s = j.Begin(t);
      for (int k = 0; k < ChangesFor(i) && s.ok(); ++k) {
        s = j.Append(MakeInsert(rel, {Datum::Text(std::to_string(i)), Datum::Text(payload)}));
      }
      if (s.ok()) s = j.Commit(t);
      if (!s.ok()) j.Abort().IgnoreError();  // s is what the test checks
      reported = std::max(reported, j.JournaledLsn());
      if (i % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
    // Stays stopped: no later commit or idle position becomes durable in this instance.
    std::filesystem::remove(mnt + "/filler");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    reported = std::max(reported, j.JournaledLsn());
  }
  auto store = StateStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_GE((*store)->journal().JournaledLsn(), reported);
  auto reader = (*store)->journal().NewReader(Lsn());
  ASSERT_TRUE(reader.ok());
  TransactionInfo info;
  Change c;
  uint64_t expect = 0;
  while ((*reader)->NextTransaction(&info).value()) {
    ASSERT_EQ(info.commit_lsn, TxnFor(expect).commit_lsn);
    int n = 0;
    while ((*reader)->NextChange(&c).value()) ++n;
    EXPECT_EQ(n, ChangesFor(expect)) << "transaction " << expect;
    ++expect;
  }
  ASSERT_GT(expect, 0u);
  EXPECT_GE(TxnFor(expect - 1).end_lsn, reported) << "a reported transaction is missing";
  std::printf("group commit, disk full: %llu transactions recovered, reported durable up to %s\n",
              static_cast<unsigned long long>(expect), reported.ToString().c_str());
}

TEST(JournalBigTransactionTest, MillionChangesStreamThroughWithBoundedMemory) {
  TempDir tmp;
  auto store_or = StateStore::Open(CrashOptions(tmp.path()));
  ASSERT_TRUE(store_or.ok());
  Journal& j = (*store_or)->journal();
  constexpr uint64_t kChanges = 1000000;
  auto rel = MakeRelation("line_items", 4);
  uint64_t rss_start = RssBytes();
  uint64_t rss_peak = rss_start;
  auto t0 = std::chrono::steady_clock::now();
  TransactionInfo t = testing::MakeTxn(0x5000);
  ASSERT_TRUE(j.Begin(t).ok());
  Change c = MakeInsert(
      rel, {Datum::Null(), Datum::Text("line item"), Datum::Unchanged(), Datum::Text("1999")});
  for (uint64_t i = 0; i < kChanges; ++i) {
    c.new_tuple[0].kind = Datum::Kind::kText;
    c.new_tuple[0].text = std::to_string(i);
    Status s = j.Append(c);
    ASSERT_TRUE(s.ok()) << s.ToString();
    if (i % 50000 == 0) rss_peak = std::max(rss_peak, RssBytes());
  }
  ASSERT_TRUE(j.Commit(t).ok());
  auto t1 = std::chrono::steady_clock::now();
  rss_peak = std::max(rss_peak, RssBytes());

  auto reader = j.NewReader(Lsn());
  ASSERT_TRUE(reader.ok());
  TransactionInfo info;
  ASSERT_TRUE((*reader)->NextTransaction(&info).value());
  uint64_t n = 0;
  Change out;
  while (true) {
    auto more = (*reader)->NextChange(&out);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (!*more) break;
    ASSERT_EQ(out.new_tuple[0].text, std::to_string(n));
    if (n % 50000 == 0) rss_peak = std::max(rss_peak, RssBytes());
    ++n;
  }
  auto t2 = std::chrono::steady_clock::now();
  EXPECT_EQ(n, kChanges);
  uint64_t growth = rss_peak > rss_start ? rss_peak - rss_start : 0;
  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::printf(
      "1M-change transaction: journal %lld ms, read %lld ms, RSS start %llu MB, peak "
      "%llu MB (growth %llu MB), journal %llu MB\n",
      static_cast<long long>(ms(t1 - t0)), static_cast<long long>(ms(t2 - t1)),
      static_cast<unsigned long long>(rss_start >> 20),
      static_cast<unsigned long long>(rss_peak >> 20),
      static_cast<unsigned long long>(growth >> 20),
      static_cast<unsigned long long>(j.Stats().bytes >> 20));
#if defined(__SANITIZE_ADDRESS__)
  // ASan's quarantine keeps up to 256 MB of freed memory resident: RSS says nothing here.
  std::printf("ASan build: RSS bound not checked\n");
#else
  EXPECT_LT(growth, 200ull << 20);
#endif
}

}  // namespace
}  // namespace tenantsync::state
