// Publishes the running pipeline's live counters into the state store once a second, so that a
// `tenantsync status` (or `lag`, or a scrape of another bridge's page) in a separate process shows
// the apply rate and totals of the running `run`/`stream`, not only what the servers and the
// journal say.
//
// Why the state store and not the running process's HTTP port: the store is always there (the
// port may be disabled or taken), the reader opens it read-only beside the writer, and the write
// is one small non-synced meta put a second (losing the last one in a crash is harmless: it is a
// hint, marked with the time it was taken, and status ignores it once it is older than
// kLiveFiguresMaxAge).
//
// Thread safety: Start/Stop from one thread; the publishing thread only reads atomics.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/lsn.h"
#include "core/pipeline_stats.h"
#include "state/state_store.h"

namespace tenantsync::ops {

// What a running pipeline publishes (kMetaLive).
struct LiveFigures {
  int64_t at_us = 0;  // wall time the figures were taken
  int64_t pid = 0;
  std::string phase;
  uint64_t transactions_applied = 0;
  uint64_t rows_applied = 0;
  double txn_per_second = 0;   // over the last publishing interval
  double rows_per_second = 0;
  Lsn received_lsn, journaled_lsn, applied_lsn;
  int64_t applied_commit_time_us = 0;
  int64_t caught_up_time_us = 0;
  uint64_t dead_letters = 0;

  std::string Encode() const;  // JSON
  static std::optional<LiveFigures> Decode(const std::string& text);  // nullopt when malformed
};

// Figures older than this are a stopped or hung process's, not live.
inline constexpr int64_t kLiveFiguresMaxAgeUs = 5'000'000;

class LivePublisher {
 public:
  // `store` and `live` must outlive the publisher. Publishes at once, then every `interval`.
  LivePublisher(state::StateStore* store, const PipelineStats* live,
                std::chrono::milliseconds interval = std::chrono::milliseconds(1000));
  ~LivePublisher();  // Stop()
  // Publishes a last sample (rates 0, the final phase) and joins the thread. Idempotent.
  void Stop();

 private:
  void Loop();
  LiveFigures Take(bool final);

  state::StateStore* store_;
  const PipelineStats* live_;
  std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
  int64_t last_at_us_ = 0;
  uint64_t last_txns_ = 0, last_rows_ = 0;
};

}  // namespace tenantsync::ops
