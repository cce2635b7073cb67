// The applier: reads the journal in commit order and applies every source transaction to the
// tenant schema of the target, exactly once and in order.
//
// Exactly once (DESIGN.md invariant 3): each target transaction ends with an upsert of
// `_tenantsync.progress` (pipeline, applied_lsn = commit LSN of the last source transaction in
// it), so the target's own commit decides what is applied. On start (and after any reconnect) the
// applier reads that row and opens a journal reader right after it; the state store's applied
// position (Journal::RecordApplied) is only a mirror for ops, written after the target commit by
// a thread of its own (apply/internal/applied_mirror.h), so a RocksDB write queued behind the
// journal's fsync does not hold up the next batch. A crash between the two leaves the mirror
// behind; the next start corrects it from the target. Run and ApplyAvailable return only once
// the mirror has the target's position.
//
// The applier reads a transaction as soon as the journal shows it, which under group commit is
// once it is written there, before its fsync (state/journal.h): a slow fsync of the state disk
// delays acknowledgements to the source, not the target. A crash before that fsync takes the
// transaction out of the journal although the target may hold it; the source, never
// acknowledged for it, sends it again, and the progress row makes the applier skip it.
//
// Order (invariant 4): a target transaction holds a prefix of the journal's remaining commit
// order, whole source transactions only, so the target shows a source commit boundary whenever
// another session can see it.
//
// Statement forms per change (the target key is the target table's primary key):
//   INSERT   INSERT ... ON CONFLICT (key) DO UPDATE: a replay converges
//   UPDATE   UPDATE ... WHERE key = old key (or the new key when the key did not change); the SET
//            list leaves out unchanged-TOAST columns (invariant 8) and added (`value:`) columns;
//            a changed key moves the row
//   DELETE   DELETE ... WHERE key = old key (a missing row is fine)
//   TRUNCATE TRUNCATE of the mapped target tables, per ApplyOptions::truncate
//   no key   one row matched NULL-safely on every old column (REPLICA IDENTITY FULL); under
//            session_replication_role = replica a batch holds the table's inserts, deletes and
//            updates as multisets of rows (a delete of a row inserted in the batch takes it
//            back) and sends the deletes and updates as one statement per pattern of NULLs,
//            each value deleted or updated as many times as the source did (Impl::MergeKeyless)
//   MESSAGE  not applied
//   skipped  a change to a table copied in a resumed snapshot, committed before that snapshot's
//            consistent point: the copy holds it already (snapshot/snapshot.h, "Resume")
// Conflicts with rows written in the target by the new application: the source wins.
//
// Speed: many source transactions per target transaction, prepared statements per (table,
// operation, column set) sent in libpq pipeline mode, and a bulk path for runs of one kind of
// change on one table (COPY into a temporary staging table, then one INSERT ... ON CONFLICT,
// UPDATE ... FROM or DELETE ... USING; the per-key sort that keeps the last change of a key is
// left out when the run's keys are all distinct); shorter runs send the same statements over
// unnest() of one array parameter per column (the array path). Under session_replication_role =
// replica the changes of a batch are grouped per table (each table's own order kept), so many small
// transactions that each touch several tables still form long runs: nothing in the target
// observes the order of tables inside one transaction, and every commit is still a source commit
// boundary (invariant 4). A failed batch is re-run change by change in the source's order.
//
// Live transactions: a source transaction with more than ApplyOptions::live_min_changes changes
// is applied while the receiver is still journaling it, when the receiver writes through
// ReceiverJournal() and every earlier transaction is applied: its changes go into one open target
// transaction (the bulk path's set-based statement runs every live_chunk_rows changes), and
// COMMIT (with the progress row) is sent only once the journal reports the source commit durable.
// Until then nothing is committed, so a crash, a receiver abort or any error rolls the target
// back and the ordinary journal path applies the transaction after its commit (exactly once,
// in order: apply/internal/live_feed.h says why).
//
// Failures: a target transaction that fails is rolled back and re-run change by change under
// savepoints to find the change at fault, which becomes a dead letter (table, key, reason; never
// values of secret columns) or stops the applier, per ApplyOptions::on_error (invariant 6). A lost
// connection is retried with backoff and resumes from the target's progress row.
//
// Kill points (core/kill_point.h), for crash tests:
//   apply.before_commit        the batch's statements and progress row are sent, COMMIT is not:
//                              the target rolls the batch back; a restart applies it again.
//   apply.after_target_commit  the target committed, RecordApplied did not run: the state store's
//                              mirror is behind; a restart resumes from the target's row.
//   apply.after_record_applied the mirror's write of a committed batch's position is done (on the
//                              mirror's thread, apply/internal/applied_mirror.h: the applier may
//                              have committed later batches meanwhile).
//   apply.live_chunk_applied   a live transaction's first chunks are applied in the open target
//                              transaction, its source commit may not even be received: the
//                              target rolls back; a restart applies it from the journal.
//   apply.live_before_commit   a live transaction is durable in the journal, its changes and
//                              progress row are sent, COMMIT is not: as apply.before_commit.
//
// Thread safety: Run/ApplyAvailable from one thread; Stop() and the counters from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/crypto.h"
#include "core/lsn.h"
#include "core/pipeline_stats.h"
#include "core/status.h"
#include "state/state_store.h"

namespace tenantsync::apply {

struct ApplyOptions {
  // The target database (libpq URL). Never printed unmasked.
  std::string target_url;
  // The tenant schema the source tables are applied into. Default: tenant_<slug> from the config.
  std::string target_schema;
  // Names this pipeline's row in _tenantsync.progress. Two pipelines must never share a name.
  std::string pipeline;

  // A target transaction commits after this many source transactions (default 1000), this many
  // bytes of change data (default 16 MiB; a bigger source transaction is never split) or this many
  // milliseconds since it began (default 200), whichever comes first, and whenever the journal has
  // nothing more to read. Bigger batches apply faster; a crash costs re-applying at most one batch
  // (which the progress row makes harmless).
  int batch_max_transactions = 1000;
  int64_t batch_max_bytes = 16ll << 20;
  int batch_max_ms = 200;
  // Early commits: a batch also commits in the target after its 1st, 3rd, 7th, 15th, ...
  // transaction (each time with the progress row), sent in the same pipeline without waiting for
  // the result. A burst's first transactions are then visible in the target before the rest of
  // the burst is applied. Such a batch sets no sync point before its end, so after a failure
  // the target skips every later statement and commit; the failed batch then resumes after the
  // last commit the target has (its progress row). kWhenCaughtUp (default): only in a batch that
  // starts with the applier caught up with the journal (live streaming: lag); a catch-up keeps
  // one commit per batch (throughput). kAlways is for tests.
  enum class EarlyCommits { kNever, kWhenCaughtUp, kAlways };
  EarlyCommits early_commits = EarlyCommits::kWhenCaughtUp;

  // A source TRUNCATE: kApply truncates the mapped target tables, kIgnore skips it (the tables
  // then differ until the next snapshot), kStop stops the applier with kFailedPrecondition.
  TruncatePolicy truncate = TruncatePolicy::kApply;
  // A source column missing in the target, or a changed column type: kAdd alters the target
  // (ADD COLUMN / ALTER COLUMN TYPE) and continues; kStop stops with kSchemaChanged naming the
  // table and column (the journal keeps everything: fix the target, restart, it continues).
  DriftPolicy schema_drift = DriftPolicy::kAdd;
  // A change that can not be transformed or applied: kDeadLetter stores it in the state store and
  // continues; kAbort stops the applier (nothing of the failing batch is committed).
  ErrorPolicy on_error = ErrorPolicy::kDeadLetter;
  // session_replication_role of the apply connection: "replica" (default) keeps target triggers
  // and FK checks from firing on replicated rows, as native logical replication does; "origin"
  // fires them. Setting it needs superuser (or GRANT SET on PG 15).
  std::string session_replication_role = "replica";
  // "lz4": the apply sessions compress the large (TOASTed) values they write with lz4 when the
  // target server was built with it (PostgreSQL 14+), several times cheaper for the target's
  // backend than its default pglz; readers see the same values. "server": the target's
  // default_toast_compression.
  std::string toast_compression = "lz4";

  // Runs of at least this many consecutive changes of one kind on one table go through the bulk
  // path (COPY into a staging table, one set-based statement). 0 disables the bulk path.
  int bulk_min_rows = 500;
  // Under session_replication_role = replica, shorter runs (after the per-key rule: one change
  // per key) of at least this many changes go as one statement over unnest() of one array per
  // column, instead of one statement per change (the array path). 0 disables it.
  int array_min_rows = 2;
  // A keyless table's held deletes or updates (see "no key" above) of one pattern of NULLs go as
  // one statement, planned for their rows, from this many rows on; fewer go one row at a time
  // (each found through an index of the target, when there is one, without planning).
  int keyless_set_min_rows = 8;
  // A sync point is set in the pipeline every this many statements; bounds client memory.
  int statements_per_sync = 2000;
  // Live transactions (see above): a source transaction is applied while it is received once it
  // has this many changes (default 10,000). 0 disables live apply. Costs: the receiver copies
  // the first live_min_changes changes of every transaction (dropped at its commit when small),
  // and waits while the hand-over queue (32 MiB) is full (back-pressure; after 30 s without the
  // applier taking anything, or 1 s while the applier is still busy with earlier transactions and
  // has not claimed it, the transaction is left to the journal path).
  int64_t live_min_changes = 10000;
  // A live transaction's pending bulk runs are flushed (COPY ended, UPDATE ... FROM etc. run)
  // every this many changes (default 100,000), so the target works while the rest arrives.
  // Smaller: more set-based statements (each scans or probes the table once).
  int64_t live_chunk_rows = 100000;
  // A live transaction's chunks are COPYed by a second target connection into UNLOGGED tables in
  // _tenantsync (one per chunk, committed, dropped after the transaction ends, and at start after
  // a crash), while this connection runs the previous chunk's set-based statement: the target
  // backend's COPY and UPDATE work overlap. false: one connection, a temporary table.
  bool live_parallel_staging = true;

  // Reconnect backoff after a lost target connection: doubles from initial to max, forever
  // until Stop() (the journal holds everything meanwhile).
  std::chrono::milliseconds reconnect_initial_backoff{200};
  std::chrono::milliseconds reconnect_max_backoff{10000};
  // How long Run waits for new journal entries before checking Stop().
  std::chrono::milliseconds idle_poll{100};
  // The `phase` of the dead letters this applier stores: "apply" (default), "replay" for
  // `tenantsync replay`, so an operator can tell which run wrote a row off.
  std::string dead_letter_phase = "apply";

  // Fills every field from the pipeline config (target URL and schema, pipeline name, `apply:`).
  static ApplyOptions FromConfig(const Config& config);
};

// Counters of one Applier since it was made. Read with Applier::Counters().
struct ApplyCounters {
  Lsn applied_lsn;                 // commit LSN of the last source transaction applied
  int64_t applied_commit_time_us = 0;
  uint64_t transactions = 0;       // source transactions applied
  uint64_t changes = 0;            // changes applied (rows written, deleted, truncates)
  uint64_t batches = 0;            // target transactions committed
  uint64_t early_commits = 0;      // more target commits within batches (ApplyOptions)
  uint64_t bulk_rows = 0;          // changes that went through the bulk path
  uint64_t array_rows = 0;         // changes sent by the array path (short runs, one statement)
  uint64_t binary_arrays = 0;      // of the array path's column arrays, those sent binary
  uint64_t text_arrays = 0;        // ... and those sent as text (a type or value binary leaves out)
  uint64_t dead_letters = 0;
  uint64_t isolated_batches = 0;   // batches re-run change by change after a failure
  uint64_t missing_rows = 0;       // updates that found no row in the target (skipped, as native)
  uint64_t reconnects = 0;
  uint64_t schema_changes = 0;     // drift handled under kAdd
  uint64_t live_transactions = 0;  // transactions applied while being received
  uint64_t live_given_up = 0;      // live transactions rolled back and left to the journal path
};

class Applier {
 public:
  // `config` (table rules, source schema), `store` (journal, dead letters) must outlive the
  // Applier. `cipher` may be nullptr when no rule encrypts; `stats` may be nullptr.
  Applier(const Config& config, ApplyOptions options, state::StateStore* store,
          const Cipher* cipher, PipelineStats* stats = nullptr);
  // As above, but reads transactions from `journal` instead of store->journal(), and records the
  // applied position (RecordApplied) there; dead letters and meta keys still go to `store`.
  // Replay passes a read-only, filtering view of the store's own journal
  // (cutover/internal/replay_journal.h). REQUIRES: `journal` outlives the Applier;
  // ReceiverJournal() is not called on such an Applier.
  Applier(const Config& config, ApplyOptions options, state::StateStore* store,
          state::Journal* journal, const Cipher* cipher, PipelineStats* stats = nullptr);
  ~Applier();
  Applier(const Applier&) = delete;
  Applier& operator=(const Applier&) = delete;

  // Applies until Stop() is called (then returns OK) or an error that a retry can not fix
  // (dead-letter policy abort, drift policy stop, truncate policy stop, a corrupt journal).
  // Connection loss is retried with backoff.
  Status Run();
  // Applies everything journaled when called (and what arrives meanwhile), then returns OK.
  // Does not retry connection loss. For tests, replay and the final catch-up at cutover.
  Status ApplyAvailable();
  // Makes Run() return soon (at the next batch boundary or poll), from any thread.
  void Stop();

  // The journal the receiver should write through for live transactions: forwards everything
  // to the store's journal and hands large transactions to this Applier while they are
  // received. REQUIRES: called before the receiver starts, at most once, from the thread that
  // then calls Run(); the returned journal lives as long as the Applier.
  state::Journal& ReceiverJournal();

  ApplyCounters Counters() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tenantsync::apply
