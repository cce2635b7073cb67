#include "apply/internal/applied_mirror.h"

#include "core/kill_point.h"

namespace tenantsync::apply::internal {

AppliedMirror::~AppliedMirror() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

Status AppliedMirror::Post(Lsn commit_lsn, int64_t commit_time_us) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!error_.ok()) return error_;
    pending_ = Position{commit_lsn, commit_time_us};
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  }
  wake_.notify_one();
  return Status::Ok();
}

Status AppliedMirror::Flush() {
  std::unique_lock<std::mutex> l(mu_);
  idle_.wait(l, [&] { return (!pending_ && !writing_) || !error_.ok(); });
  return error_;
}

uint64_t AppliedMirror::writes() const {
  std::lock_guard<std::mutex> l(mu_);
  return writes_;
}

void AppliedMirror::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    wake_.wait(l, [&] { return stop_ || pending_.has_value(); });
    if (!pending_) return;  // stopping, nothing left to write
    const Position p = *pending_;
    pending_.reset();
    writing_ = true;
    l.unlock();
    Status s = journal_->RecordApplied(p.lsn, p.commit_time_us);
    if (s.ok()) KillPoint("apply.after_record_applied");
    l.lock();
    writing_ = false;
    ++writes_;
    if (!s.ok() && error_.ok()) {
      error_ = s.WithContext("recording the applied position in the state store");
    }
    idle_.notify_all();
    if (!error_.ok()) return;
  }
}

}  // namespace tenantsync::apply::internal
