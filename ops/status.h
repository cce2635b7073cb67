// The pipeline's status as ops sees it: what `tenantsync status`, `lag --watch`, /status,
// /metrics, /healthz and the status page show. One collector, so every view shows the same figures.
//
// Sources, in order of authority:
//  - the source server: current WAL LSN, the slot's confirmed_flush_lsn and retained WAL;
//  - the target: _tenantsync.progress (the applied LSN written with the changes, invariant 3);
//  - the state directory (opened read-only, so this works while `run` holds it): journal LSNs,
//    size, retention window, dead letters, the phase and last error the running process recorded;
//  - the live counters of this process when it is the one running the pipeline, or else the
//    figures the running process publishes in the state directory (ops/live_publisher.h).
// A server that can not be reached is reported in the figures (source_reachable=false ...), not
// as a failure of the whole collection.
//
// Lag: bytes = source WAL position - the position the pipeline has fully applied (the applied
// commit LSN, or the journal's acknowledged position when nothing journaled is left to apply);
// seconds = 0 when caught up (lag bytes 0), else now - the later of the source commit time of the
// newest applied transaction and the last time the pipeline was caught up (PipelineStats::
// caught_up_time_us). Both read zero when the source is idle and everything is applied.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/lsn.h"
#include "core/pipeline_stats.h"
#include "core/status.h"
#include "state/state_store.h"

namespace tenantsync::ops {

struct StatusReport {
  std::string pipeline;
  std::string phase;            // snapshot / catching-up / streaming / stopped / failed / ...
  double snapshot_percent = -1; // -1 when no snapshot is running
  bool source_reachable = false;
  bool target_reachable = false;
  bool state_readable = false;
  std::string source_error, target_error, state_error;  // why not, secret-free
  Lsn source_wal_lsn;
  Lsn slot_confirmed_flush_lsn;
  bool slot_exists = false;
  bool slot_active = false;
  uint64_t slot_retained_wal_bytes = 0;
  Lsn received_lsn, journaled_lsn, applied_lsn;
  int64_t applied_commit_time_us = 0;
  int64_t caught_up_time_us = 0;
  uint64_t lag_bytes = 0;
  double lag_seconds = 0;
  uint64_t journal_bytes = 0;
  uint64_t journal_transactions = 0;
  Lsn journal_oldest_lsn;
  double retention_hours = 0;
  // Apply rate and totals since the running process started: from this process's counters when it
  // runs the pipeline, else from the figures the running process publishes (LivePublisher).
  // 0 when no pipeline is running.
  double apply_txn_per_second = 0;
  double apply_rows_per_second = 0;
  uint64_t transactions_applied = 0;
  uint64_t rows_applied = 0;
  int64_t live_pid = 0;  // the process the live figures are from (0: none running)
  // Set when the state directory says a pipeline is running (snapshot / catching-up / streaming)
  // but its process stopped publishing figures (killed, crashed, machine restarted): the time it
  // was last seen. The phase then reads "stopped".
  int64_t vanished_since_us = 0;
  uint64_t dead_letters = 0;
  std::string last_error;
  int64_t last_error_time_us = 0;
  int64_t collected_at_us = 0;
};

// Collects reports, keeping its server connections between calls (the status page samples once a
// second). Not thread-safe: one collector per thread.
class StatusCollector {
 public:
  // `live` and `store` are this process's counters and open state store when it runs the
  // pipeline; nullptr in a separate process (then the state directory is opened read-only).
  // Both must outlive the collector.
  StatusCollector(const Config& config, const PipelineStats* live,
                  tenantsync::state::StateStore* store);
  ~StatusCollector();
  // Never fails as a whole for an unreachable server (the report says so); kInvalidArgument
  // only for a config that names no state directory.
  StatusOr<StatusReport> Collect();

 private:
  struct Conns;
  const Config& config_;
  const PipelineStats* live_;
  tenantsync::state::StateStore* store_;
  std::unique_ptr<Conns> conns_;
  int64_t last_time_us_ = 0;
  uint64_t last_txns_ = 0, last_rows_ = 0;
};

// One-shot collection (the `status` command).
StatusOr<StatusReport> CollectStatus(const Config& config, const PipelineStats* live);

nlohmann::json ToJson(const StatusReport& report);
// Human-readable, one figure a line; never shows a URL or secret.
std::string ToText(const StatusReport& report);

// Lag samples for the status page's chart: one per second over the last hour.
class LagHistory {
 public:
  void Add(int64_t time_us, double lag_seconds, uint64_t lag_bytes);
  nlohmann::json ToJson() const;  // [[unix_ms, lag_seconds, lag_bytes], ...]

 private:
  struct Sample {
    int64_t time_us;
    double lag_seconds;
    uint64_t lag_bytes;
  };
  static constexpr size_t kMaxSamples = 3600;
  mutable std::mutex mu_;
  std::deque<Sample> samples_;
};

}  // namespace tenantsync::ops
