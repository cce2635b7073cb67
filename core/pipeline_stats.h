// Live counters of a running pipeline: written by the receiver, applier and snapshot threads,
// read by ops (metrics, /status, the progress line). Lives in core so that every stage can update
// it without depending on ops (dependencies point downwards).
//
// Thread safety: every member is safe to read and write from any thread. Counters only grow.
// Nothing secret is ever stored here (DESIGN.md invariant 9): table names, counts, LSNs, and an
// error message that is already secret-free by the Status rules.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace tenantsync {

// State-store meta keys through which a running pipeline tells other processes (status, history)
// what it is doing. Written by the pipeline; read by ops/status.
inline constexpr const char* kMetaPhase = "pipeline/phase";              // PhaseName text
inline constexpr const char* kMetaLastError = "pipeline/last_error";     // one secret-free line
inline constexpr const char* kMetaLastErrorTime = "pipeline/last_error_time_us";
inline constexpr const char* kMetaCaughtUpTime = "pipeline/caught_up_time_us";
inline constexpr const char* kMetaSnapshotRows = "snapshot/rows";        // "<done> <total>"
inline constexpr const char* kMetaLive = "pipeline/live";  // ops::LiveFigures JSON, once a second

class PipelineStats {
 public:
  enum class Phase : int { kStarting, kSnapshot, kCatchingUp, kStreaming, kStopped, kFailed };
  static const char* PhaseName(Phase p);

  std::atomic<int> phase{static_cast<int>(Phase::kStarting)};
  // LSN values (Lsn::value()).
  std::atomic<uint64_t> received_lsn{0};
  std::atomic<uint64_t> journaled_lsn{0};
  std::atomic<uint64_t> applied_lsn{0};
  std::atomic<uint64_t> server_wal_end{0};          // latest wal_end the walsender reported
  std::atomic<int64_t> applied_commit_time_us{0};   // source commit time of the newest applied txn
  std::atomic<int64_t> last_server_message_us{0};   // wall time of the last message from the source
  // Wall time at which the pipeline last had applied everything the source had sent (set by the
  // receiver when an idle keepalive is acknowledged with nothing left to apply, and by the applier
  // when it drains the journal). Lag in seconds counts from the later of this and the applied
  // commit time, so a pipeline that is idle while the source is busy elsewhere shows no lag.
  std::atomic<int64_t> caught_up_time_us{0};
  std::atomic<uint64_t> transactions_journaled{0};
  std::atomic<uint64_t> changes_journaled{0};
  std::atomic<uint64_t> transactions_applied{0};
  std::atomic<uint64_t> dead_letters{0};
  std::atomic<uint64_t> reconnects{0};
  // Snapshot progress.
  std::atomic<uint64_t> snapshot_rows_done{0};
  std::atomic<uint64_t> snapshot_rows_total{0};  // estimate from the catalogs

  void SetPhase(Phase p) { phase.store(static_cast<int>(p)); }
  Phase GetPhase() const { return static_cast<Phase>(phase.load()); }

  // Rows applied per (target table, op), op one of "insert", "update", "delete", "truncate".
  void AddRows(const std::string& table, const char* op, uint64_t n);
  std::map<std::pair<std::string, std::string>, uint64_t> RowsSnapshot() const;

  void SetError(std::string message);
  // Empty when there has been no error; time in microseconds since the epoch.
  std::pair<std::string, int64_t> LastError() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> rows_;
  std::string last_error_;
  int64_t last_error_time_us_ = 0;
};

inline int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace tenantsync
