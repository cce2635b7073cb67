// Receiver: streams a logical replication slot into the journal and acknowledges to the source
// only what the journal holds durably (DESIGN.md invariant 2).
//
//   source walsender ──CopyBoth──▶ Receiver ── decoder (pgoutput | wal2json) ──▶ Journal
//          ▲                           │
//          └── standby status: write = received, flush = apply = Journal::JournaledLsn()
//
// State machine of Run():
//
//   [check slot] ─missing/lost/wrong plugin──▶ return kFailedPrecondition (never a new slot)
//        │ busy (active_pid): wait up to slot_busy_wait, then kFailedPrecondition
//        ▼
//   [connect, IDENTIFY_SYSTEM, START_REPLICATION from JournaledLsn() (else start_lsn, else the
//    slot's confirmed_flush_lsn)]
//        ▼
//   [stream] ── XLogData ──▶ decode ─▶ Begin / Append / Commit ─▶ journal
//        │     (pgoutput protocol 2: stream blocks ─▶ spool; Stream Commit ─▶ journal; the one
//        │      streamed transaction in flight goes to the journal directly)
//        │     keepalive ──▶ reply now if asked; with no transaction open, AdvanceIdle(wal_end)
//        │     timer ──────▶ status update every status_interval (and < wal_sender_timeout / 2)
//        │ kConnection error (drop, server restart): Abort() the open transaction, reconnect
//        │   with exponential backoff (reconnect_initial doubling up to reconnect_max), resume
//        │   from JournaledLsn(); the journal drops the resent transactions it already holds.
//        │ Stop(): Abort() the open transaction, final status update, CopyDone, return OK.
//        ▼ any other error (corruption, journal full, schema changed): return it.
//
// Why the idle advance is safe only with no transaction open: a keepalive's wal_end W means
// the walsender has decoded WAL up to W and sent all output for it ahead of the keepalive.
// With nothing open here, every transaction that committed before W is journaled (or produced
// no output), and a transaction still running at W will commit after W, so on a restart from
// W it is decoded again in full (decoding restarts from the slot's restart_lsn, which the
// server holds back for running transactions; only commits before the confirmed position are
// skipped). While a transaction is being received, W may lie beyond its commit record:
// acknowledging W before its Commit is durable would make a restart skip it. So W is
// journaled (Journal::AdvanceIdle) only between transactions, and only acknowledged after
// that is durable. This keeps the slot of a quiet pipeline moving while the source database is
// busy elsewhere, so the source never keeps WAL for it.
//
// Thread safety: Run() on one thread; Stop(), RequestStop() and counters() from any thread.
// Lifetime: the journal (and stats) must outlive the Receiver.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/lsn.h"
#include "core/pipeline_stats.h"
#include "core/status.h"
#include "state/journal.h"

namespace tenantsync::cdc {

struct StreamOptions {
  // Source connection URL (a replication=database connection is made from it, plus a normal
  // one for catalog lookups and slot checks). Never logged unmasked.
  std::string source_url;
  // Replication slot to stream from. REQUIRED; it must exist (created by the snapshot with
  // EXPORT_SNAPSHOT): a missing slot is kFailedPrecondition, never silently recreated.
  std::string slot;
  // "pgoutput" or "wal2json"; must match the slot's plugin.
  std::string plugin = "pgoutput";
  // pgoutput: publication to stream (publication_names). REQUIRED for pgoutput.
  std::string publication;
  // wal2json: only tables of this schema are sent ("add-tables <schema>.*"). Empty: all.
  std::string schema = "public";
  // Where to start when the journal is empty (the slot's consistent point from the snapshot).
  // Unset (0/0): the slot's confirmed_flush_lsn. Ignored once the journal holds anything.
  Lsn start_lsn;
  // application_name of both connections (pg_stat_replication, pg_stat_activity).
  std::string application_name = "tenantsync-stream";
  // How often a standby status update is sent. Capped at wal_sender_timeout / 2 of the source
  // so the server never drops a healthy connection. Default 1 s. Larger values delay the slot's
  // advance (the source keeps WAL a little longer), never correctness.
  std::chrono::milliseconds status_interval{1000};
  // Reconnect backoff after a kConnection error: starts at reconnect_initial, doubles, capped
  // at reconnect_max. Reset after a session that streamed for more than reconnect_max.
  std::chrono::milliseconds reconnect_initial{250};
  std::chrono::milliseconds reconnect_max{30000};
  // Consecutive failed reconnects before Run() gives up with the last kConnection error.
  // -1 = never give up (production: a source restart may take long).
  int max_reconnect_attempts = -1;
  // How long to wait for a slot that another process (e.g. the walsender of a connection that
  // just died) still holds, before failing with kFailedPrecondition naming its PID.
  std::chrono::milliseconds slot_busy_wait{15000};
  // pgoutput: ask for streamed in-progress transactions (protocol version 2, `streaming 'on'`)
  // when the source runs PostgreSQL 14 or later. The walsender then sends a large transaction
  // while it decodes it, instead of decoding (and spilling to disk) all of it first; the blocks
  // wait in a StreamSpool (cdc/internal/stream_spool.h) until the commit. A transaction that is
  // the only one in flight is also written to the journal as it arrives (so it is not written
  // twice at commit, and the applier may start on it: apply/internal/live_feed.h).
  bool stream_in_progress = true;
  // With streaming: SET logical_decoding_work_mem to this on the replication connection before
  // START_REPLICATION (the walsender starts streaming a transaction once this much of it is
  // decoded; the server's default is 64MB). Empty: the server's setting. A value the server
  // rejects fails Run() with kFailedPrecondition naming the setting.
  std::string logical_decoding_work_mem;
  // Directory of the stream spool (the pipeline uses <state_dir>/stream-spool). Empty: a fresh
  // temporary directory, removed with the Receiver.
  std::string spool_dir;
  // Optional live counters for ops (may be null). Must outlive the Receiver.
  PipelineStats* stats = nullptr;
};

// Options for the `stream` / `run` commands from the pipeline config: url, slot, plugin,
// publication and schema from config.source.
StreamOptions StreamOptionsFromConfig(const Config& config);

class Receiver {
 public:
  // Progress counters, readable from any thread while Run() runs.
  struct Counters {
    std::atomic<uint64_t> received_lsn{0};       // highest WAL position received
    std::atomic<uint64_t> server_wal_end{0};     // latest wal_end reported by the server
    std::atomic<uint64_t> flushed_lsn{0};        // last flush position acknowledged
    std::atomic<uint64_t> transactions{0};       // transactions committed to the journal
    std::atomic<uint64_t> changes{0};            // changes appended (including skipped resends)
    std::atomic<uint64_t> bytes{0};              // XLogData payload bytes received
    std::atomic<uint64_t> reconnects{0};
    std::atomic<uint64_t> batched_reads{0};      // socket reads while batching (see receiver.cc)
    std::atomic<int64_t> last_keepalive_us{0};   // wall time of the last keepalive (Unix us)
    std::atomic<int64_t> last_message_us{0};     // wall time of the last message of any kind
  };

  Receiver(StreamOptions options, state::Journal& journal);
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  // Streams until Stop() (returns OK) or a non-retryable error (returns it). Retryable
  // connection errors are retried per the options. REQUIRES: called once.
  Status Run();

  // Asks Run() to finish: the open transaction (if any) is aborted in the journal, a final
  // status update is sent, and Run() returns OK within ~100 ms. Thread-safe.
  void Stop();
  // Same, async-signal-safe (only sets a flag; Run() notices within 100 ms). For raw signal
  // handlers; prefer asio::signal_set + Stop().
  void RequestStop() { stop_requested_.store(true); }

  const Counters& counters() const { return counters_; }

  class Session;  // one replication connection (receiver.cc)

 private:
  Status RunSession(bool* streamed);

  StreamOptions options_;
  std::string spool_dir_;         // options_.spool_dir, or a temporary one
  bool owns_spool_dir_ = false;   // the temporary one: removed with the Receiver
  state::Journal& journal_;
  Counters counters_;
  std::atomic<bool> stop_requested_{false};
  struct Loop;  // the asio io_context, shared with Stop()
  std::unique_ptr<Loop> loop_;
};

}  // namespace tenantsync::cdc
