#include "validate/internal/live.h"

#include <algorithm>

namespace tenantsync::validate::internal {

StatusOr<LiveGate> LiveGate::Open(Session* source, Session* target, const std::string& pipeline,
                                  const LiveOptions& options) {
  LiveGate gate;
  gate.source_ = source;
  gate.target_ = target;
  gate.pipeline_ = pipeline;
  gate.options_ = options;
  if (!options.enabled) return gate;
  TS_ASSIGN_OR_RETURN(PgResult r,
                      target->Query("SELECT to_regclass('_tenantsync.progress') IS NOT NULL"));
  if (r.Get(0, 0) != "t") return gate;
  TS_ASSIGN_OR_RETURN(
      PgResult p, target->Query("SELECT 1 FROM _tenantsync.progress WHERE pipeline = $1", {pipeline}));
  gate.active_ = p.rows() > 0;
  return gate;
}

StatusOr<Lsn> LiveGate::SourceLsn() {
  TS_ASSIGN_OR_RETURN(PgResult r, source_->Query("SELECT pg_current_wal_lsn()::text"));
  return Lsn::Parse(r.Get(0, 0));
}

StatusOr<Lsn> LiveGate::AppliedLsn() {
  TS_ASSIGN_OR_RETURN(PgResult r,
                      target_->Query("SELECT applied_lsn::text FROM _tenantsync.progress "
                                     "WHERE pipeline = $1",
                                     {pipeline_}));
  if (r.rows() == 0 || r.IsNull(0, 0)) return Lsn();
  return Lsn::Parse(r.Get(0, 0));
}

StatusOr<bool> LiveGate::WaitApplied(Lsn lsn) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration<double>(options_.timeout_seconds);
  double wait = options_.initial_backoff_seconds;
  while (true) {
    TS_ASSIGN_OR_RETURN(Lsn applied, AppliedLsn());
    if (applied >= lsn) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    wait = std::min(wait * 2, options_.max_backoff_seconds);
  }
}

void LiveGate::Backoff(int attempt) const {
  double wait = options_.initial_backoff_seconds;
  for (int i = 1; i < attempt; ++i) wait = std::min(wait * 2, options_.max_backoff_seconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(wait));
}

}  // namespace tenantsync::validate::internal
