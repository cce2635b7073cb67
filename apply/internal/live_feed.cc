#include "apply/internal/live_feed.h"

#include <algorithm>
#include <utility>

namespace tenantsync::apply::internal {

LiveFeed::LiveFeed(LiveFeedOptions options, Lsn last_commit)
    : options_(options), last_commit_(last_commit) {}

uint64_t LiveFeed::ChangeBytes(const Change& c) {
  uint64_t n = sizeof(Change) + c.message_content.size();
  for (const Datum& d : c.new_tuple) n += sizeof(Datum) + d.text.capacity();
  for (const Datum& d : c.old_tuple) n += sizeof(Datum) + d.text.capacity();
  return n;
}

void LiveFeed::DropLocked() {
  if (state_ == State::kOffered || state_ == State::kClaimed) ++dropped_;
  queue_.clear();
  queued_bytes_ = 0;
  aborted_ = true;
  state_ = State::kDropped;
  to_applier_.notify_all();
}

// --- writer ---

void LiveFeed::OnBegin(const TransactionInfo& info, bool tracked) {
  std::lock_guard<std::mutex> l(mu_);
  feeding_ = false;
  buffer_.clear();
  buffered_bytes_ = 0;
  // The applier still holds an earlier live transaction: this one takes the journal path.
  if (applier_holds_) return;
  queue_.clear();
  queued_bytes_ = 0;
  aborted_ = false;
  state_ = State::kIdle;
  if (!tracked || options_.offer_min_changes <= 0) return;
  // Claimable only after everything committed before it. A transaction streamed while it runs
  // (pgoutput protocol 2) has no commit LSN yet: the applier learns it from the commit item.
  if (info.commit_lsn.valid() && info.commit_lsn <= last_commit_) return;
  begin_ = info;
  prev_commit_ = last_commit_;
  state_ = State::kBuffering;
  feeding_ = true;
}

void LiveFeed::OnAppend(const Change& change) {
  if (!feeding_) return;  // writer-only flag
  std::unique_lock<std::mutex> l(mu_);
  if (state_ == State::kBuffering) {
    buffered_bytes_ += ChangeBytes(change);
    buffer_.push_back(change);
    if (static_cast<int64_t>(buffer_.size()) < options_.offer_min_changes &&
        buffered_bytes_ < options_.offer_max_buffered_bytes) {
      return;
    }
    for (Change& c : buffer_) queue_.push_back(Item{false, std::move(c), {}});
    queued_bytes_ += buffered_bytes_;
    buffer_ = std::vector<Change>();
    buffered_bytes_ = 0;
    state_ = State::kOffered;
    ++offered_;
    to_applier_.notify_all();
    return;
  }
  // Wait while the queue is full: the applier is busy (a chunk's set-based statement takes
  // seconds). At most max_wait without progress (it takes one item: the wait ends).
  // Not claimed yet: the applier is still applying earlier transactions (a catch-up), so the
  // receiver waits at most max_wait_unclaimed, then journals on without the feed.
  std::chrono::steady_clock::duration waited{};
  while (queued_bytes_ >= options_.max_queued_bytes &&
         (state_ == State::kOffered || state_ == State::kClaimed)) {
    if (waited >= (state_ == State::kOffered
                       ? std::min(options_.max_wait, options_.max_wait_unclaimed)
                       : options_.max_wait)) {
      DropLocked();
      break;
    }
    auto t0 = std::chrono::steady_clock::now();
    to_writer_.wait_for(l, std::chrono::milliseconds(50));
    waited += std::chrono::steady_clock::now() - t0;
  }
  if (state_ != State::kOffered && state_ != State::kClaimed) {
    feeding_ = false;  // dropped or abandoned: the rest of the transaction goes unfed
    return;
  }
  queued_bytes_ += ChangeBytes(change);
  queue_.push_back(Item{false, change, {}});
  to_applier_.notify_all();
}

void LiveFeed::OnCommit(const TransactionInfo& info) {
  std::lock_guard<std::mutex> l(mu_);
  if (info.commit_lsn <= last_commit_) {
    // A resend the journal recognised only at its commit (its Begin had no commit LSN) and
    // dropped: not a new transaction, so the feed drops it too.
    buffer_.clear();
    buffered_bytes_ = 0;
    if (feeding_ && (state_ == State::kOffered || state_ == State::kClaimed)) DropLocked();
    else if (feeding_ && state_ == State::kBuffering) state_ = State::kIdle;
    feeding_ = false;
    return;
  }
  last_commit_ = info.commit_lsn;
  buffer_.clear();
  buffered_bytes_ = 0;
  if (feeding_) {
    if (state_ == State::kOffered || state_ == State::kClaimed) {
      // Offered and never claimed: the applier may still claim it (the queue holds all of it,
      // commit last) or apply it from the journal; then the next Begin resets the feed.
      queue_.push_back(Item{true, {}, info});
      to_applier_.notify_all();
    } else if (state_ == State::kBuffering) {
      state_ = State::kIdle;
    }
  }
  feeding_ = false;
}

void LiveFeed::OnAbort() {
  std::lock_guard<std::mutex> l(mu_);
  buffer_.clear();
  buffered_bytes_ = 0;
  if (feeding_) {
    if (state_ == State::kOffered || state_ == State::kClaimed) {
      DropLocked();
    } else if (state_ == State::kBuffering) {
      state_ = State::kIdle;
    }
  }
  feeding_ = false;
}

// --- applier ---

bool LiveFeed::TryClaim(Lsn applied, TransactionInfo* begin) {
  std::lock_guard<std::mutex> l(mu_);
  if (state_ != State::kOffered || applied != prev_commit_) return false;
  state_ = State::kClaimed;
  applier_holds_ = true;
  *begin = begin_;
  return true;
}

bool LiveFeed::HasOffer(Lsn applied) const {
  std::lock_guard<std::mutex> l(mu_);
  return state_ == State::kOffered && applied <= prev_commit_;
}

LiveFeed::Event LiveFeed::Next(Change* change, TransactionInfo* commit,
                               std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> l(mu_);
  if (queue_.empty() && !aborted_) to_applier_.wait_for(l, wait);
  if (aborted_) return Event::kAborted;
  if (queue_.empty()) return Event::kIdle;
  Item item = std::move(queue_.front());
  queue_.pop_front();
  if (item.is_commit) {
    state_ = State::kCommitted;
    *commit = item.commit;
    return Event::kCommit;
  }
  queued_bytes_ -= std::min(queued_bytes_, ChangeBytes(item.change));
  to_writer_.notify_all();
  *change = std::move(item.change);
  return Event::kChange;
}

void LiveFeed::Release() {
  std::lock_guard<std::mutex> l(mu_);
  if (state_ == State::kClaimed) DropLocked();  // released before its commit: same as Abandon
  if (state_ != State::kDropped) {
    state_ = State::kIdle;
    queue_.clear();
    queued_bytes_ = 0;
  }
  applier_holds_ = false;
  to_writer_.notify_all();
}

void LiveFeed::Abandon() { Release(); }

uint64_t LiveFeed::offered() const {
  std::lock_guard<std::mutex> l(mu_);
  return offered_;
}

uint64_t LiveFeed::dropped() const {
  std::lock_guard<std::mutex> l(mu_);
  return dropped_;
}

// --- TeeJournal ---

Status TeeJournal::Begin(const TransactionInfo& info) {
  Status s = inner_->Begin(info);
  if (!s.ok()) {
    feed_->OnAbort();
    return s;
  }
  feed_->OnBegin(info, !inner_->IsSkipping());
  return s;
}

Status TeeJournal::Append(const Change& change) {
  Status s = inner_->Append(change);
  if (!s.ok()) {
    feed_->OnAbort();
    return s;
  }
  feed_->OnAppend(change);
  return s;
}

Status TeeJournal::Commit(const TransactionInfo& info) {
  const bool skipping = inner_->IsSkipping();
  Status s = inner_->Commit(info);
  if (!s.ok()) {
    feed_->OnAbort();
    return s;
  }
  if (skipping) {
    feed_->OnAbort();  // a duplicate: nothing was tracked; keeps last_commit_ as it is
  } else {
    feed_->OnCommit(info);
  }
  return s;
}

Status TeeJournal::Abort() {
  feed_->OnAbort();
  return inner_->Abort();
}

}  // namespace tenantsync::apply::internal
