// The main job: `tenantsync stream` and `tenantsync run`.
//
//   run    = preflight + snapshot (unless the state store says it is done) + stream
//   stream = Receiver (cdc/, source slot -> journal) and Applier (journal -> target), each on its
//            own thread, until SIGINT/SIGTERM (a clean stop of both: the receiver aborts its open
//            transaction and acknowledges only what is durable, the applier finishes or rolls
//            back its batch) or until either fails (the other is stopped, the error returned).
//
// The receiver and the applier never wait for each other: the journal decouples them, so the
// target can be down for hours while the slot keeps advancing (the applier retries its
// connection with backoff) and the source never retains WAL for us (DESIGN.md, "Why a journal").
//
// Progress: one line on stderr every `progress_interval`:
//   stream: received 0/3A1F2B8 journaled 0/3A1F2B8 applied 0/3A1F120 lag 408 B 0.2 s 812 txn/s
// Lag is zero when everything the source has sent is applied (an idle source reads 0 B 0.0 s).
// The same figures go to PipelineStats (for ops' /metrics and /status) and the phase and last
// error to the state store's meta keys (core/pipeline_stats.h), for `status` in another process.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>

#include "core/config.h"
#include "core/pipeline_stats.h"
#include "core/status.h"
#include "state/state_store.h"

namespace tenantsync::apply {

struct PipelineOptions {
  // true for `run` (preflight + snapshot when not done), false for `stream` (which then needs a
  // finished snapshot's slot: kFailedPrecondition otherwise).
  bool snapshot = true;
  // How often the progress line is printed; 0 disables it.
  std::chrono::milliseconds progress_interval{5000};
  FILE* progress_out = stderr;
  // Live counters shared with ops (HTTP /metrics); nullptr: the pipeline keeps its own.
  PipelineStats* stats = nullptr;
  // Called once the state store is open, before the snapshot or stream starts (main starts the
  // ops HTTP service here). A non-OK status stops the pipeline before anything runs.
  std::function<Status(state::StateStore*, PipelineStats*)> on_started;
  // Called once on the way out, before the state store closes, whenever on_started was called
  // (main stops the ops HTTP service here: its sampler reads the store).
  std::function<void()> on_stopping;
  // SIGINT and SIGTERM stop the pipeline cleanly (asio::signal_set). Tests set this false and
  // use `stop` instead.
  bool handle_signals = true;
  // Set from another thread to stop the pipeline as a signal would. May be nullptr.
  const std::atomic<bool>* stop = nullptr;
};

// Runs `run` or `stream` (see above). Returns OK after a clean stop by signal or `stop`;
// kCancelled when the snapshot phase was interrupted (running again resumes it).
Status RunPipeline(const Config& config, const PipelineOptions& options);

// The line printed every progress_interval, from a stats snapshot (exposed for tests).
struct ProgressFigures {
  Lsn received, journaled, applied;
  uint64_t lag_bytes = 0;
  double lag_seconds = 0;
  double txn_per_second = 0;
};
std::string FormatProgress(const ProgressFigures& f);

}  // namespace tenantsync::apply
