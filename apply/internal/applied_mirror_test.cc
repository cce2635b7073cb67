#include "apply/internal/applied_mirror.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace tenantsync::apply::internal {
namespace {

using namespace std::chrono_literals;

// A journal whose RecordApplied can be held up (as a RocksDB write queued behind the group
// commit's fsync is) or made to fail; it records the positions written.
class SlowJournal final : public state::Journal {
 public:
  Status Begin(const TransactionInfo&) override { return Status::Ok(); }
  Status Append(const Change&) override { return Status::Ok(); }
  Status Commit(const TransactionInfo&) override { return Status::Ok(); }
  Status Abort() override { return Status::Ok(); }
  bool IsSkipping() const override { return false; }
  Status AdvanceIdle(Lsn) override { return Status::Ok(); }
  void NoteReceived(Lsn) override {}
  Lsn JournaledLsn() const override { return Lsn(); }
  bool WaitForNewer(Lsn, std::chrono::milliseconds) const override { return false; }
  Lsn VisibleCommitLsn() const override { return Lsn(); }
  bool WaitForVisible(Lsn, std::chrono::milliseconds) const override { return false; }
  StatusOr<std::unique_ptr<state::JournalReader>> NewReader(Lsn) const override {
    return FailedPrecondition("not used");
  }
  StatusOr<std::vector<state::Checkpoint>> Checkpoints() const override {
    return std::vector<state::Checkpoint>{};
  }
  state::JournalStats Stats() const override { return {}; }

  Status RecordApplied(Lsn lsn, int64_t time_us) override {
    std::unique_lock<std::mutex> l(mu_);
    ++entered_;
    changed_.notify_all();
    changed_.wait(l, [&] { return !held_; });
    if (fail_) return Fatal("disk full");
    written_.push_back({lsn, time_us});
    return Status::Ok();
  }

  void Hold() {
    std::lock_guard<std::mutex> l(mu_);
    held_ = true;
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    held_ = false;
    changed_.notify_all();
  }
  void FailFromNowOn() {
    std::lock_guard<std::mutex> l(mu_);
    fail_ = true;
  }
  // Waits until RecordApplied has been entered `n` times.
  void AwaitEntered(int n) {
    std::unique_lock<std::mutex> l(mu_);
    changed_.wait(l, [&] { return entered_ >= n; });
  }
  std::vector<std::pair<Lsn, int64_t>> written() {
    std::lock_guard<std::mutex> l(mu_);
    return written_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool held_ = false;
  bool fail_ = false;
  int entered_ = 0;
  std::vector<std::pair<Lsn, int64_t>> written_;
};

TEST(AppliedMirrorTest, PostDoesNotWaitForAHeldWriteAndLaterPositionsBecomeOneWrite) {
  SlowJournal j;
  AppliedMirror m(&j);
  j.Hold();
  ASSERT_TRUE(m.Post(Lsn(100), 1).ok());
  j.AwaitEntered(1);  // the first write is running, and held
  // The applier goes on committing batches meanwhile: every Post returns at once.
  for (uint64_t i = 2; i <= 50; ++i)
    ASSERT_TRUE(m.Post(Lsn(100 * i), static_cast<int64_t>(i)).ok());
  EXPECT_TRUE(j.written().empty());
  j.Release();
  ASSERT_TRUE(m.Flush().ok());
  const auto w = j.written();
  ASSERT_EQ(w.size(), 2u) << "the 49 positions posted during the held write coalesce into one";
  EXPECT_EQ(w[0], std::make_pair(Lsn(100), int64_t{1}));
  EXPECT_EQ(w[1], std::make_pair(Lsn(5000), int64_t{50}));
  EXPECT_EQ(m.writes(), 2u);
}

TEST(AppliedMirrorTest, FlushWaitsForTheWriteInProgress) {
  SlowJournal j;
  AppliedMirror m(&j);
  j.Hold();
  ASSERT_TRUE(m.Post(Lsn(100), 1).ok());
  j.AwaitEntered(1);
  std::thread releaser([&] {
    std::this_thread::sleep_for(50ms);
    j.Release();
  });
  ASSERT_TRUE(m.Flush().ok());
  EXPECT_EQ(j.written().size(), 1u) << "Flush returned before the write it waited for";
  releaser.join();
}

TEST(AppliedMirrorTest, AFailedWriteIsReturnedByTheNextPostAndFlush) {
  SlowJournal j;
  AppliedMirror m(&j);
  j.FailFromNowOn();
  ASSERT_TRUE(m.Post(Lsn(100), 1).ok());
  Status f = m.Flush();
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.ToString().find("disk full"), std::string::npos) << f.ToString();
  EXPECT_NE(f.ToString().find("applied position"), std::string::npos) << f.ToString();
  EXPECT_FALSE(m.Post(Lsn(200), 2).ok());
}

TEST(AppliedMirrorTest, DestructorWritesWhatIsPending) {
  SlowJournal j;
  {
    AppliedMirror m(&j);
    j.Hold();
    ASSERT_TRUE(m.Post(Lsn(100), 1).ok());
    j.AwaitEntered(1);
    ASSERT_TRUE(m.Post(Lsn(200), 2).ok());
    j.Release();
  }
  const auto w = j.written();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w.back().first, Lsn(200));
}

}  // namespace
}  // namespace tenantsync::apply::internal
