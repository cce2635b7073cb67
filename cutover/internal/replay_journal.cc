#include "cutover/internal/replay_journal.h"

namespace tenantsync::cutover::internal {
namespace {

Status ReadOnly(const char* call) {
  return FailedPrecondition(std::string("replay reads the journal and never writes it (") + call +
                            ")");
}

}  // namespace

bool NotReplayable(const Change& c) {
  if (c.op == ChangeOp::kTruncate) return true;
  return c.relation != nullptr && c.relation->replica_identity == 'f';
}

class ReplayJournal::Reader final : public state::JournalReader {
 public:
  Reader(const ReplayJournal* view, std::unique_ptr<state::JournalReader> base)
      : view_(view), base_(std::move(base)) {}

  StatusOr<bool> NextTransaction(TransactionInfo* info) override {
    if (past_to_) return false;
    TS_ASSIGN_OR_RETURN(bool have, base_->NextTransaction(info));
    if (!have) return false;
    if (view_->to_.valid() && info->commit_lsn > view_->to_) {
      past_to_ = true;  // sticky: the journal is in commit order
      return false;
    }
    filter_ = info->commit_lsn <= view_->target_at_;
    count_ =
        filter_ && (!view_->counted_through_.valid() || info->commit_lsn > view_->counted_through_);
    if (count_) view_->counted_through_ = info->commit_lsn;
    return true;
  }

  StatusOr<bool> NextChange(Change* change) override {
    for (;;) {
      TS_ASSIGN_OR_RETURN(bool more, base_->NextChange(change));
      if (!more) return false;
      if (!filter_ || !NotReplayable(*change)) return true;
      if (count_) ++view_->filtered_;
    }
  }

 private:
  const ReplayJournal* view_;
  std::unique_ptr<state::JournalReader> base_;
  bool past_to_ = false;
  bool filter_ = false;  // the current transaction is at or before the target's position
  bool count_ = false;   // ... and its filtered changes were not counted yet
};

Status ReplayJournal::Begin(const TransactionInfo&) { return ReadOnly("Begin"); }
Status ReplayJournal::Append(const Change&) { return ReadOnly("Append"); }
Status ReplayJournal::Commit(const TransactionInfo&) { return ReadOnly("Commit"); }
Status ReplayJournal::Abort() { return ReadOnly("Abort"); }
Status ReplayJournal::AdvanceIdle(Lsn) { return ReadOnly("AdvanceIdle"); }

StatusOr<std::unique_ptr<state::JournalReader>> ReplayJournal::NewReader(Lsn after) const {
  TS_ASSIGN_OR_RETURN(std::unique_ptr<state::JournalReader> base, base_->NewReader(after));
  return std::unique_ptr<state::JournalReader>(std::make_unique<Reader>(this, std::move(base)));
}

}  // namespace tenantsync::cutover::internal
