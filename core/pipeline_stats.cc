#include "core/pipeline_stats.h"

namespace tenantsync {

const char* PipelineStats::PhaseName(Phase p) {
  switch (p) {
    case Phase::kStarting: return "starting";
    case Phase::kSnapshot: return "snapshot";
    case Phase::kCatchingUp: return "catching-up";
    case Phase::kStreaming: return "streaming";
    case Phase::kStopped: return "stopped";
    case Phase::kFailed: return "failed";
  }
  return "unknown";
}

void PipelineStats::AddRows(const std::string& table, const char* op, uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  rows_[{table, op}] += n;
}

std::map<std::pair<std::string, std::string>, uint64_t> PipelineStats::RowsSnapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rows_;
}

void PipelineStats::SetError(std::string message) {
  std::lock_guard<std::mutex> lock(mu_);
  last_error_ = std::move(message);
  last_error_time_us_ = NowMicros();
}

std::pair<std::string, int64_t> PipelineStats::LastError() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {last_error_, last_error_time_us_};
}

}  // namespace tenantsync
