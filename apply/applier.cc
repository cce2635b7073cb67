#include "apply/applier.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "apply/internal/applied_mirror.h"
#include "apply/internal/binary_array.h"
#include "apply/internal/live_feed.h"
#include "apply/internal/pipelined_session.h"
#include "apply/internal/sql_builder.h"
#include "apply/internal/target_catalog.h"
#include "core/hash.h"
#include "core/kill_point.h"
#include "core/pg.h"
#include "core/transform.h"
#include "snapshot/internal/copy_binary.h"
#include "snapshot/preflight.h"
#include "snapshot/snapshot.h"
#include "state/journal.h"

namespace tenantsync::apply {

using internal::PipelinedSession;
using internal::TableShape;

ApplyOptions ApplyOptions::FromConfig(const Config& config) {
  ApplyOptions o;
  o.target_url = config.target.url;
  o.target_schema =
      config.target.schema.empty() ? "tenant_" + config.tenant.slug : config.target.schema;
  o.pipeline = config.pipeline;
  o.batch_max_transactions = config.apply.batch_max_transactions;
  o.batch_max_bytes = config.apply.batch_max_bytes;
  o.batch_max_ms = config.apply.batch_max_ms;
  o.truncate = config.apply.truncate;
  o.schema_drift = config.apply.schema_drift;
  o.on_error = config.apply.on_error;
  o.session_replication_role = config.apply.session_replication_role;
  o.toast_compression = config.apply.toast_compression;
  return o;
}

namespace {

// The commit LSN under which a streamed transaction's changes are applied before its commit
// is known (ApplyLive): later than any real position.
constexpr Lsn kInProgressLsn(std::numeric_limits<uint64_t>::max());

// How logs name a live transaction: its commit LSN, or its xid while the commit is not known.
std::string LiveName(const TransactionInfo& begin) {
  return begin.commit_lsn.valid() ? begin.commit_lsn.ToString()
                                  : "xid " + std::to_string(begin.xid) + " (in progress)";
}

// A statement error reported by the server (constraint violation, bad value): the batch is
// rolled back and re-run change by change. Anything else (connection, policy stop) rises.
bool IsStatementError(const Status& s) {
  return s.code() == StatusCode::kFatal && !s.sqlstate().empty() && !s.IsRetryable();
}

std::string TimestampText(int64_t us) {
  time_t secs = static_cast<time_t>(us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(us % 1000000));
  return buf;
}

uint64_t TupleBytes(const Tuple& t) {
  uint64_t n = 0;
  for (const Datum& d : t) n += d.text.size() + 1;
  return n;
}

void NoticeSink(void*, const PGresult*) {}

// How both target sessions (apply, staging) read and write values, and no server-side limits on
// their statements (the apply session's lock_timeout 0; the staging one overrides it).
// plan_cache_mode: a prepared statement is planned once, generically, instead of five times for
// its parameters before the server settles on the generic plan it would choose anyway; the
// statements look rows up by key (or by the columns of a keyless table's old row), and the array
// path's unnest() is planned for few rows either way (runs long enough for a join go by COPY).
constexpr const char* kTargetSessionSettings =
    "SET datestyle = ISO; SET intervalstyle = postgres; SET extra_float_digits = 3; "
    "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; "
    "SET plan_cache_mode = force_generic_plan";

// ApplyOptions::toast_compression. Best effort: a server built without lz4 rejects the value and
// keeps its own default.
void SetToastCompression(PgConn& conn, const std::string& choice) {
  if (choice != "lz4") return;
  conn.Run("SET default_toast_compression = lz4").IgnoreError();
}

// How one source relation (one exact definition) is applied.
struct RelationEntry {
  int id = 0;
  bool ignored = false;  // skipped by config or outside the source schema
  std::shared_ptr<const Relation> relation;
  std::string target_table;
  std::optional<TableTransform> transform;
  TableShape shape;
  // Source column indexes that identify a row (replica identity), for no-key matching.
  std::vector<bool> identity;
  // A table without a key whose rows are identified by all their columns (REPLICA IDENTITY FULL,
  // nothing encrypted, every column groupable): under grouping its changes are held as multisets
  // of rows (Applier::Impl::MergeKeyless). keyless_cols: the target columns a row is matched on
  // (fed by the source, not added).
  bool keyless_sets = false;
  std::vector<int> keyless_cols;
  // The target table has no index (pg_class.relhasindex): its set statements are joined by hash,
  // never by a nested loop (a scan of the table per row), whatever the planner's estimates.
  bool keyless_no_index = false;
  // The table was copied in a resumed snapshot consistent at this point (meta
  // snapshot::kMetaResumedLsnPrefix): its changes committed before it are in the copy already
  // and are skipped. 0/0 for tables copied in the slot's own snapshot.
  Lsn copied_at;
  bool skip_logged = false;
  // The bulk path's staging table exists in this session (a temp table: gone with the connection,
  // or with the transaction that created it when that one rolls back, which also drops this
  // entry). ON COMMIT DELETE ROWS empties it at every commit; within one batch it is emptied
  // before its second use (stage_used_in_batch == the batch's number).
  bool stage_created = false;
  uint64_t stage_used_in_batch = 0;
};

struct PreparedStatement {
  std::string name;
  bool prepared = false;
};

// One change to send as a single statement.
struct RowOp {
  ChangeOp op;
  std::vector<int> cols;        // insert: columns; update: SET columns
  std::vector<int> match_cols;  // no-key update/delete: columns matched by value
  std::vector<int> null_cols;   // no-key update/delete: columns matched by IS NULL
  const Tuple* values = nullptr;  // insert/update values (target tuple)
  const Tuple* key = nullptr;     // update/delete: the tuple holding the key / matched values
};

}  // namespace

class Applier::Impl {
 public:
  Impl(const Config& config, ApplyOptions options, state::StateStore* store,
       state::Journal* journal, const Cipher* cipher, PipelineStats* stats)
      : config_(config),
        options_(std::move(options)),
        store_(store),
        journal_(journal != nullptr ? journal : &store->journal()),
        cipher_(cipher),
        stats_(stats),
        session_(&conn_),
        group_tables_(options_.session_replication_role == "replica") {}

  Status Run(bool until_idle);
  Status RunSessions(bool until_idle);
  void Stop() {
    stop_.store(true);
  }
  state::Journal& ReceiverJournal() {
    if (!tee_) {
      internal::LiveFeedOptions fo;
      fo.offer_min_changes = options_.live_min_changes;
      feed_ = std::make_unique<internal::LiveFeed>(
          fo, journal_->Stats().journaled_commit_lsn);
      tee_ = std::make_unique<internal::TeeJournal>(journal_, feed_.get());
    }
    return *tee_;
  }
  ApplyCounters Counters() const {
    std::lock_guard<std::mutex> l(mu_);
    return counters_;
  }

 private:
  // --- connection ---
  Status Connect();
  Status Session(bool until_idle);
  void ResetCaches();

  // --- batches ---
  void StartBatchState();
  // Early commits apply when reader_caught_up_: the reader had nothing more just before `first`.
  Status RunBatch(state::JournalReader* reader, const TransactionInfo& first);
  // An early commit after `last` (ApplyOptions::early_commits): the held runs, the progress row,
  // COMMIT and BEGIN, sent without waiting.
  Status CommitEarly(const TransactionInfo& last, uint64_t txns, uint64_t changes);
  // After a failed batch with early commits: the target's progress row says which of them took
  // effect; that part is counted as applied and *after is set to it.
  Status SettleEarlyCommits(Lsn* after);
  StatusOr<bool> ApplyLive(std::unique_ptr<state::JournalReader>* reader);
  // A live transaction's keyed chunks are joined to their table by index probes: hash and merge
  // joins off (ApplyLive) for them, back to the defaults (planner's choice) for other statements.
  Status SendLiveJoins(bool probes_only);
  // Rolls a live transaction back (the journal path applies it after its commit): false.
  StatusOr<bool> GiveUpLive(const TransactionInfo& begin, uint64_t changes, const std::string& why);
  // Non-empty (naming the table) when a table `c` touches was copied by a resumed snapshot
  // consistent after the last applied transaction: whether `c` is in that copy depends on its
  // transaction's commit LSN.
  StatusOr<std::string> CopiedAfterApplied(const Change& c);
  Status ApplyChange(const Change& c, Lsn commit_lsn);
  Status ApplyChangeIsolated(const Change& c, Lsn commit_lsn);
  Status ApplyTruncate(const Change& c, Lsn commit_lsn);
  Status Isolate(Lsn after, Lsn through);
  // Ends the open target transaction: the progress row (lsn, commit time), the dead letters (only
  // once every statement succeeded: a failed batch is re-run, which would record them again),
  // kill point `kill_point`, COMMIT; in one round trip when there are no dead letters. A
  // statement error is returned for the caller to isolate or give up on; any other error is
  // fatal.
  Status CommitWithProgress(Lsn lsn, int64_t commit_time_us, std::string_view kill_point);
  Status FinishBatch(Lsn commit_lsn, int64_t commit_time_us, uint64_t txns, uint64_t changes);
  // Writes the progress row in the open target transaction (queued in pipeline mode), through
  // Execute: a prepared statement like the row statements.
  Status WriteProgress(Lsn lsn, int64_t commit_time_us);
  // Reads this pipeline's row in _tenantsync.progress (invalid Lsn, 0 when there is none).
  Status ReadProgress(Lsn* lsn, int64_t* commit_time_us);
  Status Rollback();

  // --- relations ---
  StatusOr<RelationEntry*> EntryFor(const std::shared_ptr<const Relation>& rel);
  StatusOr<std::unique_ptr<RelationEntry>> BuildEntry(const std::shared_ptr<const Relation>& rel);
  Status HandleDrift(RelationEntry* e, const internal::TargetTableInfo& info);

  // --- statements ---
  Status SendRow(RelationEntry* e, const RowOp& op);
  // `formats` (one per param, 1 = binary; nullptr: all text) as PQexecPrepared's paramFormats.
  Status Execute(const std::string& key, const std::function<std::string()>& make_sql,
                 const std::vector<const Datum*>& params, int64_t update_rows,
                 const std::vector<int>* formats = nullptr);
  Status LeavePipeline();
  // A sync point every statements_per_sync statements, except in a batch with early commits.
  Status MaybeSync();
  Status EnterPipeline();

  // --- bulk path ---
  struct BulkRun;
  Status AddToRun(RelationEntry* e, ChangeOp op, std::vector<int> cols, Tuple row);
  // AddToRun for a keyed table under grouping: the net effect of its changes per key.
  Status MergeIntoRuns(RelationEntry* e, ChangeOp op, std::vector<int> cols, Tuple row);
  // Sends the runs that must go before a change of e: another table's without grouping, and the
  // same target table's under another relation definition (drift).
  Status SendOtherRunsFirst(const RelationEntry* e);
  // Takes the row of key key_buf_ at `at` out of a held run (an emptied run leaves runs_).
  Tuple TakeHeldRow(BulkRun* run, uint32_t at);
  // AddToRun for a table without a key under grouping (e->keyless_sets), every kind of change:
  // see the definition.
  // `row`: the new row (insert), the old row (delete); for an update `row` is the old row and
  // `op` its SET columns and new values.
  Status MergeKeyless(RelationEntry* e, const RowOp& op, Tuple row);
  // Takes the held row row_at points to out of a keyless insert run.
  void TakeKeylessRow(BulkRun* run, std::unordered_multimap<std::string, uint32_t>::iterator it);
  // A keyless table's held deletes or updates, one statement per pattern of NULLs in the old rows
  // (KeylessDeleteSql, KeylessUpdateSql).
  Status SendKeylessRun(RelationEntry* e, const BulkRun& run);
  // One array per column of `cols` over `rows`, binary where possible (SendArrayRun).
  void BuildArrays(const TableShape& s, const std::vector<const Tuple*>& rows,
                   const std::vector<int>& cols, std::vector<Datum>* values,
                   std::vector<int>* formats);
  // Adds `row` to the rows `run` holds (and to the bytes held). True when the run is now long
  // enough for COPY (bulk_min_rows rows, or kMaxRunBytes).
  bool Hold(BulkRun* run, Tuple row);
  // Adds a row's bytes to (sign +1) or takes them off (-1) run's and the batch's held bytes.
  void CountHeld(BulkRun* run, const Tuple& row, int sign);
  // Takes `run` out of runs_ (it is destroyed).
  void Forget(const BulkRun* run);
  // A new, empty run of e at the end of runs_.
  BulkRun* NewRun(RelationEntry* e, ChangeOp op, std::vector<int> cols);
  // Holds a row of key key_buf_ in e's run of op and cols (made if needed).
  Status PutHeldRow(RelationEntry* e, ChangeOp op, std::vector<int> cols, Tuple row);
  // Sends every pending run (a barrier: truncate, DDL, the end of a batch).
  Status FlushRuns();
  // Sends the pending runs of e, if any: deletes, then inserts, then updates.
  Status FlushRunOf(const RelationEntry* e);
  // Ends the open COPY, if any, and runs its set-based statement.
  Status FlushCopying();
  // Makes a single-row statement for e safe to send: e's earlier changes are sent, no COPY is open.
  Status BeforeRowStatement(const RelationEntry* e);
  Status FlushRun(BulkRun run);
  Status SendArrayRun(RelationEntry* e, const BulkRun& run);
  Status StartCopy(BulkRun* run);
  Status CopyRow(BulkRun* run, const Tuple& row);

  // --- a live transaction's parallel staging (ApplyOptions::live_parallel_staging) ---
  // stage_conn_ COPYs each chunk into its own UNLOGGED table in _tenantsync and commits it, while
  // conn_ runs the previous chunk's set-based statement, sent without waiting for its result
  // (pending_bulk_). Every other use of conn_ first waits for that result (AwaitBulk).
  Status OpenStageConn();
  Status AwaitBulk();
  // Drops the open live transaction's staging tables: only once conn_'s transaction has ended
  // (it holds a lock on each it read). Best effort: what is left is dropped at the next Connect.
  void DropLiveStages();
  // Drops every staging table of this pipeline it can lock on `c` (idle, outside a transaction):
  // true when some are left (still locked by a crashed bridge's backend that has not noticed).
  StatusOr<bool> DropStages(PgConn& c);

  // --- failures ---
  Status HandleBadChange(const Change& c, Lsn commit_lsn, const Status& why);
  std::string KeyText(const Change& c) const;

  const Config& config_;
  ApplyOptions options_;
  state::StateStore* store_;
  state::Journal* journal_;  // store_->journal() unless the constructor named another
  const Cipher* cipher_;
  PipelineStats* stats_;
  std::atomic<bool> stop_{false};

  // Live transactions (ReceiverJournal): null unless the receiver writes through tee_.
  std::unique_ptr<internal::LiveFeed> feed_;
  bool in_live_ = false;  // inside ApplyLive
  std::unique_ptr<internal::TeeJournal> tee_;
  // The state store's applied position, written off the applier's thread (FinishBatch posts).
  internal::AppliedMirror mirror_{journal_};

  PgConn conn_;
  PipelinedSession session_;
  Lsn applied_lsn_;
  int64_t applied_commit_time_us_ = 0;

  std::unordered_map<uint64_t, std::unique_ptr<RelationEntry>> relations_;
  // The entries by Relation object, so that a fingerprint is computed once per object, not once
  // per change: a batch interleaves many tables. The shared_ptr keeps the object, and with it
  // its address, from being reused for another relation.
  std::unordered_map<const Relation*, std::pair<std::shared_ptr<const Relation>, RelationEntry*>>
      entry_by_object_;
  const Relation* last_relation_ = nullptr;
  RelationEntry* last_entry_ = nullptr;
  int next_entry_id_ = 1;
  std::unordered_map<std::string, PreparedStatement> statements_;
  int next_statement_id_ = 1;

  // Per batch.
  TransformContext ctx_;
  TransformContext update_ctx_;
  bool isolating_ = false;
  std::vector<state::DeadLetter> pending_dead_letters_;
  std::map<std::pair<std::string, const char*>, uint64_t> batch_rows_;
  uint64_t batch_bulk_rows_ = 0;
  uint64_t batch_array_rows_ = 0;
  uint64_t batch_binary_arrays_ = 0;
  uint64_t batch_text_arrays_ = 0;
  uint64_t batch_schema_changes_ = 0;
  uint64_t missing_reported_ = 0;  // session_.zero_row_updates() already counted
  uint64_t batch_number_ = 0;      // RunBatch calls in this process, for stage_used_in_batch
  // The early commits sent in this batch, in order; what each covers of the batch.
  struct EarlyCommit {
    Lsn lsn;
    int64_t commit_time_us = 0;
    uint64_t txns = 0, changes = 0;
    std::map<std::pair<std::string, const char*>, uint64_t> rows;
  };
  std::vector<EarlyCommit> early_commits_;
  bool reader_caught_up_ = false;  // the reader's last NextTransaction found nothing
  bool early_batch_ = false;       // this batch may commit early: no sync points (MaybeSync)

  // Runs of same-kind changes (bulk path), at most one per target table, in the order of their
  // first change. With group_tables_ the runs of different tables are held side by side, so the
  // interleaved changes of many small source transactions (pgbench: accounts, tellers, branches,
  // history) become one run per table per batch; without it there is at most one run. Only one
  // run at a time is `copying` (its COPY holds the connection).
  struct BulkRun {
    RelationEntry* entry = nullptr;
    ChangeOp op = ChangeOp::kInsert;
    std::vector<int> cols;
    std::vector<Tuple> rows;  // held until the run is long enough for COPY
    uint64_t bytes = 0;
    bool copying = false;
    int64_t seq = 0;
    std::string buffer;
    // A hash of every copied row's key (insert/update runs of keyed tables), so a run whose keys
    // are all distinct skips the per-key sort (DISTINCT ON) of the set-based statement. Equal
    // hashes, or more keys than kMaxTrackedKeys (memory: 8 bytes a key), keep the sort.
    std::vector<uint64_t> key_hashes;
    bool keys_tracked = true;
    // Before COPY, under grouping (session_replication_role = replica) and for a keyed table:
    // one held row per key, the net effect of its changes (MergeIntoRuns); key_rows maps a key
    // (KeyString) to its row.
    std::unordered_map<std::string, uint32_t> key_rows;
    // A keyless table's insert run (MergeKeyless): each held row by its value (KeyString over
    // keyless_cols). Its delete and update runs count their old rows (`rows`) per value in
    // key_rows; the update run holds each one's new row in new_rows (the old values outside
    // `cols`) and counts them per value in new_keys.
    std::unordered_multimap<std::string, uint32_t> row_at;
    std::vector<Tuple> new_rows;
    std::unordered_map<std::string, uint32_t> new_keys;
    std::chrono::steady_clock::time_point copy_started;
    PgConn* copy_conn = nullptr;  // where the COPY runs: conn_, or stage_conn_ (shared stage)
    std::string stage;            // the staging table, as SQL
    bool shared_stage = false;    // a committed table of stage_conn_ (parallel staging)
    bool direct = false;          // COPY straight into the target table (keyless inserts)
  };
  std::vector<std::unique_ptr<BulkRun>> runs_;
  uint64_t held_bytes_ = 0;  // bytes of rows held in runs_ (bounded: kMaxHeldBytes)
  std::string key_buf_;      // the key MergeIntoRuns works on (KeyString), reused
  std::string moved_key_buf_;
  std::vector<BulkRun*> table_runs_;  // MergeIntoRuns' runs of one table, reused
  PgConn stage_conn_;
  bool live_staged_ = false;  // the open live transaction made staging tables
  bool stages_left_ = false;  // DropStages left some: retried after a batch (FinishBatch)
  std::chrono::steady_clock::time_point stages_tried_;
  uint64_t next_stage_ = 0;
  struct PendingBulk {
    bool active = false;
    std::string what;  // "bulk update into <table>", for errors and the log
    int64_t rows = 0;
    bool unique_keys = false;
    double staging_secs = 0;
    std::chrono::steady_clock::time_point sent;
  };
  PendingBulk pending_bulk_;
  // Changes of different tables may be sent in another order than the source's inside one target
  // transaction (never across a commit: invariant 4 is about commit boundaries). Only under
  // session_replication_role = replica, where no trigger or foreign key check of the target can
  // observe the order within the transaction; under `origin` the source's order is kept.
  bool group_tables_ = false;

  mutable std::mutex mu_;
  ApplyCounters counters_;
};

// ---------------------------------------------------------------------------------------------
// Connection and the outer loop.

Status Applier::Impl::Connect() {
  ResetCaches();
  pending_bulk_ = PendingBulk();
  live_staged_ = false;
  stage_conn_ = PgConn();
  conn_ = PgConn();
  session_ = PipelinedSession(&conn_);
  missing_reported_ = 0;
  const std::string app = "tenantsync-apply-" + options_.pipeline;
  TS_ASSIGN_OR_RETURN(conn_, PgConn::Connect(options_.target_url, app));
  PQsetNoticeReceiver(conn_.get(), NoticeSink, nullptr);
  const std::string& role = options_.session_replication_role;
  if (role != "replica" && role != "origin") {
    return InvalidArgument("apply.session_replication_role: '" + role +
                           "' is not one of replica, origin");
  }
  Status s = conn_.Run("SET session_replication_role = " + role);
  if (!s.ok()) {
    return FailedPrecondition(
        "cannot set session_replication_role on the target (" + s.message() +
        "); connect as a superuser, GRANT SET ON PARAMETER session_replication_role, or set "
        "apply.session_replication_role: origin");
  }
  // Local buffers for the bulk path's staging tables (settable only before the session's first
  // temp table): a 100k-row chunk of pgbench_accounts (~12 MB) stays in memory instead of
  // spilling past the default 8 MB; the UPDATE ... FROM it measured ~15% faster. Allocated on
  // use, at most this much per apply connection.
  TS_RETURN_IF_ERROR_CTX(conn_.Run("SET temp_buffers = '64MB'"), "configuring the apply session");
  TS_RETURN_IF_ERROR_CTX(conn_.Run(kTargetSessionSettings), "configuring the apply session");
  SetToastCompression(conn_, options_.toast_compression);
  TS_RETURN_IF_ERROR_CTX(
      // The schema only when missing: CREATE SCHEMA IF NOT EXISTS needs the database's CREATE
      // privilege even when it exists (least-privilege role: ops/runbooks/security.md).
      conn_.Run("DO $ts$ BEGIN IF to_regnamespace('_tenantsync') IS NULL THEN "
                "CREATE SCHEMA _tenantsync; END IF; END $ts$; "
                "CREATE TABLE IF NOT EXISTS _tenantsync.progress (pipeline text PRIMARY KEY, "
                "applied_lsn pg_lsn, commit_time timestamptz, updated_at timestamptz)"),
      "creating _tenantsync.progress in the target");
  // Staging tables a crash left behind (a live transaction's, ApplyOptions::live_parallel_staging).
  {
    auto left = DropStages(conn_);
    if (!left.ok()) return left.status().WithContext("dropping staging tables left in _tenantsync");
    stages_left_ = *left;
    stages_tried_ = std::chrono::steady_clock::now();
  }
  return ReadProgress(&applied_lsn_, &applied_commit_time_us_);
}

Status Applier::Impl::ReadProgress(Lsn* lsn, int64_t* commit_time_us) {
  static const std::string kReadProgress =
      "SELECT applied_lsn::text, (extract(epoch FROM commit_time) * 1000000)::bigint "
      "FROM _tenantsync.progress WHERE pipeline = $1";
  TS_ASSIGN_OR_RETURN(PgResult r, conn_.ExecParams(kReadProgress, {options_.pipeline}));
  *lsn = Lsn();
  *commit_time_us = 0;
  if (r.rows() == 1 && !r.IsNull(0, 0)) {
    TS_ASSIGN_OR_RETURN(*lsn, Lsn::Parse(r.Get(0, 0)));
    if (!r.IsNull(0, 1)) {
      TS_ASSIGN_OR_RETURN(*commit_time_us, r.GetInt(0, 1));
    }
  }
  return Status::Ok();
}

void Applier::Impl::ResetCaches() {
  relations_.clear();
  entry_by_object_.clear();
  last_relation_ = nullptr;
  last_entry_ = nullptr;
  statements_.clear();
  runs_.clear();
  held_bytes_ = 0;
}

Status Applier::Impl::Run(bool until_idle) {
  Status s = RunSessions(until_idle);
  // Whoever reads the state store after Run returns sees the position the target has.
  Status mirrored = mirror_.Flush();
  return s.ok() ? mirrored : s;
}

Status Applier::Impl::RunSessions(bool until_idle) {
  auto backoff = options_.reconnect_initial_backoff;
  for (;;) {
    uint64_t batches_before = Counters().batches;
    Status s = Session(until_idle);
    if (s.ok() || stop_.load()) return s.ok() || s.IsRetryable() ? Status::Ok() : s;
    if (!s.IsRetryable() || until_idle) {
      if (stats_) stats_->SetError(s.ToString());
      return s;
    }
    if (Counters().batches > batches_before) backoff = options_.reconnect_initial_backoff;
    if (stats_) {
      stats_->SetError(s.ToString());
      stats_->reconnects.fetch_add(1);
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      ++counters_.reconnects;
    }
    spdlog::warn("apply: {}; reconnecting in {} ms", s.ToString(), backoff.count());
    auto until = std::chrono::steady_clock::now() + backoff;
    while (!stop_.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (stop_.load()) return Status::Ok();
    backoff = std::min(backoff * 2, options_.reconnect_max_backoff);
  }
}

Status Applier::Impl::Session(bool until_idle) {
  TS_RETURN_IF_ERROR(Connect());
  state::Journal& journal = *journal_;
  // The target's row decides (invariant 3); bring the ops mirror up to it.
  TS_RETURN_IF_ERROR(mirror_.Flush());
  if (applied_lsn_.valid() && journal.Stats().applied_lsn < applied_lsn_) {
    TS_RETURN_IF_ERROR(journal.RecordApplied(applied_lsn_, applied_commit_time_us_));
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    counters_.applied_lsn = applied_lsn_;
    counters_.applied_commit_time_us = applied_commit_time_us_;
  }
  if (stats_) {
    stats_->applied_lsn.store(applied_lsn_.value());
    stats_->applied_commit_time_us.store(applied_commit_time_us_);
  }
  TS_ASSIGN_OR_RETURN(std::unique_ptr<state::JournalReader> reader, journal.NewReader(applied_lsn_));
  reader_caught_up_ = false;
  for (;;) {
    if (stop_.load()) return Status::Ok();
    // Visible, not durable: a transaction is applied as soon as the journal has it (from its
    // tail in memory, or written), before its fsync (state/journal.h), so a slow state disk does
    // not add to the lag.
    Lsn seen = journal.VisibleCommitLsn();
    TransactionInfo info;
    TS_ASSIGN_OR_RETURN(bool have, reader->NextTransaction(&info));
    if (!have) {
      reader_caught_up_ = true;
      if (stats_) stats_->caught_up_time_us.store(NowMicros());
      if (until_idle) return Status::Ok();
      if (feed_) {
        TS_ASSIGN_OR_RETURN(bool applied, ApplyLive(&reader));
        if (applied) continue;
        // A large transaction is being received: look for it again soon.
        journal.WaitForVisible(seen, std::min<std::chrono::milliseconds>(
                                         options_.idle_poll, std::chrono::milliseconds(20)));
        continue;
      }
      journal.WaitForVisible(seen, options_.idle_poll);
      continue;
    }
    TS_RETURN_IF_ERROR(RunBatch(reader.get(), info));
  }
}

// ---------------------------------------------------------------------------------------------
// Batches.

namespace {

// The progress row's write: $1 pipeline, $2 the commit LSN, $3 its source commit time in
// microseconds since the epoch.
constexpr const char* kProgressSql =
    "INSERT INTO _tenantsync.progress (pipeline, applied_lsn, commit_time, updated_at) "
    "VALUES ($1, $2::pg_lsn, 'epoch'::timestamptz + $3::bigint * interval '1 microsecond', "
    "now()) ON CONFLICT (pipeline) DO UPDATE SET applied_lsn = EXCLUDED.applied_lsn, "
    "commit_time = EXCLUDED.commit_time, updated_at = EXCLUDED.updated_at";

}  // namespace

// Prepared (Execute), so that the target parses and plans it once per connection, not at every
// commit: a live stream commits ~100 times a second, and the per-commit planning showed in
// pg_stat_statements.
Status Applier::Impl::WriteProgress(Lsn lsn, int64_t commit_time_us) {
  const Datum pipeline = Datum::Text(options_.pipeline);
  const Datum at = Datum::Text(lsn.ToString());
  const Datum time = Datum::Text(std::to_string(commit_time_us));
  return Execute(
      "progress", [] { return std::string(kProgressSql); }, {&pipeline, &at, &time}, 0);
}

Status Applier::Impl::Rollback() {
  if (pending_bulk_.active) {  // its result (an error, if it is why we roll back) is dropped
    pending_bulk_.active = false;
    internal::FinishResults(conn_.get(), "").IgnoreError();
  }
  for (const auto& run : runs_) {
    if (!run->copying) continue;
    // End the COPY with an error so the connection is usable for the ROLLBACK below.
    PgConn& cc = *run->copy_conn;
    if (PQputCopyEnd(cc.get(), "batch failed") != 1) {
      if (run->shared_stage) continue;  // the staging session only: DropLiveStages, Connect
      return ConnectionError("ending COPY to the target: " + cc.LastError());
    }
    internal::FinishResults(cc.get(), "").IgnoreError();
  }
  runs_.clear();
  held_bytes_ = 0;
  if (session_.active()) {
    Status s = session_.DrainAndExit();
    if (s.IsRetryable()) return s;
  }
  // A COPY in progress is ended by the error path that got us here; ROLLBACK covers the rest.
  // ROLLBACK outside a transaction only warns; prepared statements from a failed pipeline may be
  // missing on the server, so forget them all.
  TS_RETURN_IF_ERROR(conn_.Run("ROLLBACK"));
  TS_RETURN_IF_ERROR(conn_.Run("DEALLOCATE ALL"));
  ResetCaches();
  DropLiveStages();
  return Status::Ok();
}

void Applier::Impl::StartBatchState() {
  ++batch_number_;
  early_commits_.clear();
  early_batch_ = false;
  ctx_.now = TimestampText(NowMicros());
  ctx_.for_update = false;
  update_ctx_ = ctx_;
  update_ctx_.for_update = true;
  isolating_ = false;
  pending_dead_letters_.clear();
  batch_rows_.clear();
  batch_bulk_rows_ = 0;
  batch_array_rows_ = 0;
  batch_binary_arrays_ = 0;
  batch_text_arrays_ = 0;
  batch_schema_changes_ = 0;
}

Status Applier::Impl::RunBatch(state::JournalReader* reader, const TransactionInfo& first) {
  const auto started = std::chrono::steady_clock::now();
  const int64_t started_us = NowMicros();
  Lsn batch_after = applied_lsn_;
  StartBatchState();
  TS_RETURN_IF_ERROR(EnterPipeline());
  TS_RETURN_IF_ERROR(session_.SendQuery("BEGIN"));
  using EarlyCommits = ApplyOptions::EarlyCommits;
  const bool early = options_.early_commits == EarlyCommits::kAlways ||
                     (options_.early_commits == EarlyCommits::kWhenCaughtUp && reader_caught_up_);
  early_batch_ = early;
  uint64_t next_early = 1;  // then 3, 7, 15, ...: at most ~log2(batch) more commits

  TransactionInfo info = first;
  TransactionInfo last;
  uint64_t txns = 0, changes = 0, bytes = 0;
  Status failed;  // first statement error of the batch
  reader_caught_up_ = false;
  for (;;) {
    Change c;
    for (;;) {
      TS_ASSIGN_OR_RETURN(bool have, reader->NextChange(&c));
      if (!have) break;
      if (!failed.ok()) continue;  // the batch is re-run in Isolate; just finish this txn
      bytes += TupleBytes(c.new_tuple) + TupleBytes(c.old_tuple) + 16;
      ++changes;
      Status s = ApplyChange(c, info.commit_lsn);
      if (!s.ok()) {
        if (!IsStatementError(s)) return s;
        failed = s;
      }
    }
    last = info;
    ++txns;
    if (!failed.ok()) break;
    auto elapsed = std::chrono::steady_clock::now() - started;
    if (txns >= static_cast<uint64_t>(options_.batch_max_transactions) ||
        bytes >= static_cast<uint64_t>(options_.batch_max_bytes) ||
        elapsed >= std::chrono::milliseconds(options_.batch_max_ms) || stop_.load()) {
      break;
    }
    TS_ASSIGN_OR_RETURN(bool have, reader->NextTransaction(&info));
    if (!have) {
      reader_caught_up_ = true;
      break;
    }
    if (early && txns == next_early) {
      next_early = 2 * next_early + 1;
      Status s = CommitEarly(last, txns, changes);
      if (!s.ok()) {
        if (!IsStatementError(s)) return s;
        failed = s;  // `info` is read to its end above and ends the batch
      }
    }
  }
  const auto collected = std::chrono::steady_clock::now();

  if (failed.ok()) {
    Status s = FlushRuns();
    if (!s.ok()) {
      if (!IsStatementError(s)) return s;
      failed = s;
    }
  }
  if (failed.ok()) {
    Status s = CommitWithProgress(last.commit_lsn, last.commit_time_us, "apply.before_commit");
    if (!s.ok()) {
      if (!IsStatementError(s)) return s;
      failed = s;
    }
  }
  if (!failed.ok()) {
    TS_RETURN_IF_ERROR(Rollback());
    {
      std::lock_guard<std::mutex> l(mu_);
      ++counters_.isolated_batches;
    }
    TS_RETURN_IF_ERROR(SettleEarlyCommits(&batch_after));
    if (batch_after == last.commit_lsn) return Status::Ok();
    return Isolate(batch_after, last.commit_lsn);
  }
  const size_t early_commits = early_commits_.size();
  TS_RETURN_IF_ERROR(FinishBatch(last.commit_lsn, last.commit_time_us, txns, changes));
  if (spdlog::should_log(spdlog::level::debug)) {
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    // Where lag goes (same clock only when source and applier share a machine): the first
    // transaction's source commit before the batch began (receive, journal, wait for the
    // applier), the last one's before the batch committed (what a reader of the target sees).
    spdlog::debug(
        "apply: batch of {} txn, {} changes through {} in {:.1f} ms ({:.1f} ms reading "
        "the journal; {} early commits; journaled {}; source commit of the first {:.1f} ms "
        "before it began, of the last {:.1f} ms before it committed)",
        txns, changes, last.commit_lsn.ToString(), ms(std::chrono::steady_clock::now() - started),
        ms(collected - started), early_commits, journal_->JournaledLsn().ToString(),
        (started_us - first.commit_time_us) / 1e3, (NowMicros() - last.commit_time_us) / 1e3);
  }
  return Status::Ok();
}

Status Applier::Impl::CommitEarly(const TransactionInfo& last, uint64_t txns, uint64_t changes) {
  TS_RETURN_IF_ERROR(FlushRuns());
  TS_RETURN_IF_ERROR(EnterPipeline());
  TS_RETURN_IF_ERROR(WriteProgress(last.commit_lsn, last.commit_time_us));
  KillPoint("apply.before_early_commit");
  TS_RETURN_IF_ERROR(session_.SendQuery("COMMIT"));
  TS_RETURN_IF_ERROR(session_.SendQuery("BEGIN"));
  // Nothing after a failure commits: the batch has no sync point (MaybeSync), so the server
  // skips every statement after a failed one, this COMMIT and later ones included.
  TS_RETURN_IF_ERROR(session_.Flush());
  // Sent in full: the target commits it even if this process dies now.
  KillPoint("apply.after_early_commit");
  early_commits_.push_back({last.commit_lsn, last.commit_time_us, txns, changes, batch_rows_});
  return Status::Ok();
}

Status Applier::Impl::SettleEarlyCommits(Lsn* after) {
  if (early_commits_.empty()) return Status::Ok();
  Lsn at;
  int64_t at_time_us = 0;
  TS_RETURN_IF_ERROR(ReadProgress(&at, &at_time_us));
  if (at == *after) {  // none took effect
    early_commits_.clear();
    return Status::Ok();
  }
  for (size_t i = 0; i < early_commits_.size(); ++i) {
    if (early_commits_[i].lsn != at) continue;
    EarlyCommit done = std::move(early_commits_[i]);
    early_commits_.resize(i);  // the ones before it; FinishBatch counts them
    batch_rows_ = std::move(done.rows);
    TS_RETURN_IF_ERROR(FinishBatch(done.lsn, done.commit_time_us, done.txns, done.changes));
    *after = done.lsn;
    return Status::Ok();
  }
  return FailedPrecondition("the target's progress row is at " + at.ToString() +
                            ", which is none of the failed batch's commits (after " +
                            after->ToString() + "): is another bridge applying pipeline '" +
                            options_.pipeline + "'?");
}

// Applies the transaction the receiver is journaling now, when the feed offers one that directly
// follows applied_lsn_ (apply/internal/live_feed.h). true: applied and committed, and *reader is
// reopened after it. false: none offered, or given up and rolled back (the journal path applies
// it after its commit). Exactly once: the target commits only after the journal holds the
// source commit durably, with the progress row in the same transaction (invariant 3); order: it
// is claimed only right after the last applied transaction (invariant 4).
StatusOr<bool> Applier::Impl::ApplyLive(std::unique_ptr<state::JournalReader>* reader) {
  TransactionInfo begin;
  if (!feed_->TryClaim(applied_lsn_, &begin)) return false;
  // Whatever happens below, the feed is released on the way out (rolled back unless committed).
  struct Claim {
    internal::LiveFeed* feed;
    bool* in_live;
    ~Claim() {
      *in_live = false;
      feed->Release();
    }
  } claim{feed_.get(), &in_live_};
  in_live_ = true;
  const auto started = std::chrono::steady_clock::now();
  // A transaction the source streams while it runs (pgoutput protocol 2) has no commit LSN
  // until its commit arrives: its changes are applied under kInProgressLsn, which no snapshot
  // position exceeds, so a table whose resumed-snapshot copy might already hold them (copied_at
  // after everything applied, see ApplyChange) makes it take the journal path instead.
  const bool commit_known = begin.commit_lsn.valid();
  const Lsn apply_lsn = commit_known ? begin.commit_lsn : kInProgressLsn;
  spdlog::info("apply: transaction {} is large; applying it while it is received",
               LiveName(begin));
  StartBatchState();
  TS_RETURN_IF_ERROR(EnterPipeline());
  // READ COMMITTED whatever the database's default: each statement must see the staging tables
  // stage_conn_ committed after this transaction began (parallel staging).
  TS_RETURN_IF_ERROR(session_.SendQuery("BEGIN ISOLATION LEVEL READ COMMITTED"));
  // Each chunk's set-based statement joins ~live_chunk_rows staged rows to the table by its key:
  // index probes (nested loop) cost the same for every chunk, while a hash or merge join scans
  // the table (growing with the row versions this transaction wrote) once per chunk. Measured on
  // pgbench_accounts (1M rows, chunks of 100k): 16.6 s for the ten chunks with index probes,
  // 26.1 s with the planner's merge/hash joins, 20.2 s for one 1M-row statement.
  TS_RETURN_IF_ERROR(SendLiveJoins(true));

  uint64_t changes = 0, bytes = 0;
  int64_t since_flush = 0;
  TransactionInfo commit;
  for (;;) {
    if (stop_.load()) return GiveUpLive(begin, changes, "stopping");
    Change c;
    internal::LiveFeed::Event ev = feed_->Next(&c, &commit, std::chrono::milliseconds(100));
    if (ev == internal::LiveFeed::Event::kIdle) continue;
    if (ev == internal::LiveFeed::Event::kAborted) {
      return GiveUpLive(begin, changes, "the receiver dropped it (reconnect, or a full hand-over "
                                         "queue)");
    }
    if (ev == internal::LiveFeed::Event::kCommit) break;
    ++changes;
    bytes += TupleBytes(c.new_tuple) + TupleBytes(c.old_tuple) + 16;
    if (!commit_known) {
      TS_ASSIGN_OR_RETURN(std::string copied, CopiedAfterApplied(c));
      if (!copied.empty()) {
        return GiveUpLive(begin, changes, "its commit LSN is not known yet and " + copied);
      }
    }
    Status s = ApplyChange(c, apply_lsn);
    if (s.ok() && ++since_flush >= options_.live_chunk_rows) {
      since_flush = 0;
      s = FlushRuns();
      KillPoint("apply.live_chunk_applied");
    }
    if (!s.ok()) {
      if (!IsStatementError(s)) return s;
      return GiveUpLive(begin, changes, s.ToString());
    }
  }
  const auto received = std::chrono::steady_clock::now();
  if (commit_known && commit.commit_lsn != begin.commit_lsn) {
    return GiveUpLive(begin, changes, "its commit LSN " + commit.commit_lsn.ToString() +
                                          " differs from its begin's");
  }
  if (commit.commit_lsn <= applied_lsn_) {  // a resend the journal dropped at its commit
    return GiveUpLive(begin, changes, "it is a resend of applied transaction " +
                                          commit.commit_lsn.ToString());
  }
  for (auto& d : pending_dead_letters_) {
    if (d.lsn == kInProgressLsn) d.lsn = commit.commit_lsn;
  }
  // The rest of the changes go out while the journal makes the commit durable.
  Status s = FlushRuns();
  if (!s.ok()) {
    if (!IsStatementError(s)) return s;
    return GiveUpLive(begin, changes, s.ToString());
  }
  // Nothing commits before the source commit is durable in the journal.
  state::Journal& journal = *journal_;
  while (journal.JournaledLsn() < commit.end_lsn) {
    if (stop_.load()) return GiveUpLive(begin, changes, "stopping");
    journal.WaitForNewer(journal.JournaledLsn(), std::chrono::milliseconds(100));
  }
  s = CommitWithProgress(commit.commit_lsn, commit.commit_time_us, "apply.live_before_commit");
  if (!s.ok()) {
    if (!IsStatementError(s)) return s;
    return GiveUpLive(begin, changes, s.ToString());
  }
  TS_RETURN_IF_ERROR(FinishBatch(commit.commit_lsn, commit.commit_time_us, 1, changes));
  DropLiveStages();
  {
    std::lock_guard<std::mutex> l(mu_);
    ++counters_.live_transactions;
  }
  TS_ASSIGN_OR_RETURN(*reader, journal.NewReader(applied_lsn_));
  auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
  spdlog::info("apply: transaction {} applied while received: {} changes ({:.1f} MB) in {:.1f} s, "
               "committed {:.2f} s after its last change arrived",
               commit.commit_lsn.ToString(), changes, bytes / 1e6,
               secs(std::chrono::steady_clock::now() - started),
               secs(std::chrono::steady_clock::now() - received));
  return true;
}

Status Applier::Impl::SendLiveJoins(bool probes_only) {
  const char* value = probes_only ? "off" : "DEFAULT";
  TS_RETURN_IF_ERROR(session_.SendQuery(std::string("SET LOCAL enable_hashjoin = ") + value));
  return session_.SendQuery(std::string("SET LOCAL enable_mergejoin = ") + value);
}

StatusOr<std::string> Applier::Impl::CopiedAfterApplied(const Change& c) {
  std::vector<std::shared_ptr<const Relation>> rels = c.truncated;
  if (c.relation) rels.push_back(c.relation);
  for (const auto& rel : rels) {
    TS_ASSIGN_OR_RETURN(RelationEntry * e, EntryFor(rel));
    if (!e->ignored && e->copied_at > applied_lsn_) {
      return "table " + rel->name + " was copied by a resumed snapshot consistent at " +
             e->copied_at.ToString();
    }
  }
  return std::string();
}

StatusOr<bool> Applier::Impl::GiveUpLive(const TransactionInfo& begin, uint64_t changes,
                                 const std::string& why) {
  spdlog::info("apply: live transaction {} rolled back after {} changes ({}); it is applied from "
               "the journal once committed",
               LiveName(begin), changes, why);
  {
    std::lock_guard<std::mutex> l(mu_);
    ++counters_.live_given_up;
  }
  pending_dead_letters_.clear();
  batch_rows_.clear();
  TS_RETURN_IF_ERROR(Rollback());
  return false;
}

Status Applier::Impl::CommitWithProgress(Lsn lsn, int64_t commit_time_us,
                                         std::string_view kill_point) {
  TS_RETURN_IF_ERROR(EnterPipeline());
  TS_RETURN_IF_ERROR(WriteProgress(lsn, commit_time_us));
  Status s;
  if (!pending_dead_letters_.empty()) {
    // Dead letters are stored only once every statement succeeded (a failed batch is re-run,
    // which would store them again), and before the COMMIT: one round trip to learn that.
    s = session_.Drain();
    if (s.ok()) {
      for (auto& d : pending_dead_letters_) TS_RETURN_IF_ERROR(store_->AddDeadLetter(d));
    }
  }
  // Otherwise COMMIT goes out with the statements and the progress row, and one round trip
  // ends the batch (a round trip is a wake-up of the target backend and of this thread: on a
  // busy machine, milliseconds of lag). Nothing commits if any statement failed: a failure
  // before COMMIT's sync point skips it (the pipeline is aborted up to the sync), and one in an
  // earlier sync group (statements_per_sync) leaves the transaction aborted, where COMMIT rolls
  // back; either way DrainAndExit returns the first error and the caller rolls back.
  if (s.ok()) {
    KillPoint(kill_point);
    TS_RETURN_IF_ERROR(session_.SendQuery("COMMIT"));
  }
  Status exit = session_.DrainAndExit();
  if (s.ok()) s = exit;
  return s;
}

Status Applier::Impl::FinishBatch(Lsn commit_lsn, int64_t commit_time_us, uint64_t txns,
                                  uint64_t changes) {
  KillPoint("apply.after_target_commit");
  applied_lsn_ = commit_lsn;
  applied_commit_time_us_ = commit_time_us;
  TS_RETURN_IF_ERROR(mirror_.Post(commit_lsn, commit_time_us));
  // Staging tables a crashed bridge's backend still held at the last try: again, at most every
  // 5 s, between batches (a live transaction's own are dropped by DropLiveStages).
  if (stages_left_ && !in_live_ &&
      std::chrono::steady_clock::now() - stages_tried_ >= std::chrono::seconds(5)) {
    stages_tried_ = std::chrono::steady_clock::now();
    auto left = DropStages(conn_);
    if (left.ok()) stages_left_ = *left;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    counters_.applied_lsn = commit_lsn;
    counters_.applied_commit_time_us = commit_time_us;
    counters_.transactions += txns;
    counters_.changes += changes;
    counters_.batches += 1;
    counters_.early_commits += early_commits_.size();
    counters_.bulk_rows += batch_bulk_rows_;
    counters_.array_rows += batch_array_rows_;
    counters_.binary_arrays += batch_binary_arrays_;
    counters_.text_arrays += batch_text_arrays_;
    counters_.dead_letters += pending_dead_letters_.size();
    counters_.missing_rows += session_.zero_row_updates() - missing_reported_;
    counters_.schema_changes += batch_schema_changes_;
  }
  if (stats_) {
    stats_->applied_lsn.store(commit_lsn.value());
    stats_->applied_commit_time_us.store(commit_time_us);
    stats_->transactions_applied.fetch_add(txns);
    stats_->dead_letters.fetch_add(pending_dead_letters_.size());
    for (const auto& [k, n] : batch_rows_) stats_->AddRows(k.first, k.second, n);
  }
  missing_reported_ = session_.zero_row_updates();
  pending_dead_letters_.clear();
  batch_rows_.clear();
  early_commits_.clear();
  return Status::Ok();
}

// Re-runs the source transactions in (after, through] change by change, each under a savepoint,
// so the change at fault is found; it becomes a dead letter or stops the applier.
Status Applier::Impl::Isolate(Lsn after, Lsn through) {
  isolating_ = true;
  pending_dead_letters_.clear();
  batch_rows_.clear();
  batch_bulk_rows_ = 0;
  batch_array_rows_ = 0;
  batch_binary_arrays_ = 0;
  batch_text_arrays_ = 0;
  batch_schema_changes_ = 0;
  auto opened = journal_->NewReader(after);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<state::JournalReader> reader = std::move(opened).value();
  TS_RETURN_IF_ERROR(conn_.Run("BEGIN"));
  TransactionInfo info, last;
  uint64_t txns = 0, changes = 0;
  for (;;) {
    TS_ASSIGN_OR_RETURN(bool have, reader->NextTransaction(&info));
    if (!have || info.commit_lsn > through) break;
    Change c;
    for (;;) {
      TS_ASSIGN_OR_RETURN(bool more, reader->NextChange(&c));
      if (!more) break;
      ++changes;
      TS_RETURN_IF_ERROR(ApplyChangeIsolated(c, info.commit_lsn));
    }
    last = info;
    ++txns;
    if (info.commit_lsn == through) break;
  }
  if (txns == 0) {
    isolating_ = false;
    return Corruption("journal: the transactions of a failed batch (after " + after.ToString() +
                      " through " + through.ToString() + ") can not be read again");
  }
  TS_RETURN_IF_ERROR(WriteProgress(last.commit_lsn, last.commit_time_us));
  for (auto& d : pending_dead_letters_) TS_RETURN_IF_ERROR(store_->AddDeadLetter(d));
  KillPoint("apply.before_commit");
  TS_RETURN_IF_ERROR(conn_.Run("COMMIT"));
  isolating_ = false;
  return FinishBatch(last.commit_lsn, last.commit_time_us, txns, changes);
}

Status Applier::Impl::ApplyChangeIsolated(const Change& c, Lsn commit_lsn) {
  TS_RETURN_IF_ERROR(conn_.Run("SAVEPOINT ts_change"));
  Status s = ApplyChange(c, commit_lsn);
  if (s.ok()) return conn_.Run("RELEASE SAVEPOINT ts_change");
  if (!IsStatementError(s)) return s;
  TS_RETURN_IF_ERROR(conn_.Run("ROLLBACK TO SAVEPOINT ts_change"));
  // DDL of drift handling may have been rolled back with the change: re-read the catalogs.
  ResetCaches();
  return HandleBadChange(c, commit_lsn, s);
}

std::string Applier::Impl::KeyText(const Change& c) const {
  if (!c.relation) return "";
  const Relation& rel = *c.relation;
  const Tuple& t = c.old_tuple.empty() ? c.new_tuple : c.old_tuple;
  const TableConfig* tc = config_.FindTable(rel.name);
  std::string out;
  int shown = 0;
  for (size_t i = 0; i < rel.columns.size() && i < t.size(); ++i) {
    if (!rel.columns[i].is_key) continue;
    if (++shown > 4) {
      out += ", ...";
      break;
    }
    if (!out.empty()) out += ", ";
    out += rel.columns[i].name + "=";
    bool secret = false;
    if (tc) {
      auto it = tc->columns.find(rel.columns[i].name);
      secret = it != tc->columns.end() && it->second.encrypt;
    }
    if (secret) {
      out += "<encrypted>";
    } else if (t[i].is_null()) {
      out += "NULL";
    } else if (t[i].is_unchanged()) {
      out += "<unchanged>";
    } else {
      out += t[i].text.size() > 64 ? t[i].text.substr(0, 64) + "..." : t[i].text;
    }
  }
  return out;
}

Status Applier::Impl::HandleBadChange(const Change& c, Lsn commit_lsn, const Status& why) {
  std::string table = c.relation ? c.relation->name : "";
  std::string key = KeyText(c);
  if (options_.on_error == ErrorPolicy::kAbort) {
    return Status(why.code() == StatusCode::kInvalidArgument ? StatusCode::kInvalidArgument
                                                             : StatusCode::kFatal,
                  "apply stopped at source transaction " +
                      (commit_lsn == kInProgressLsn ? std::string("in progress (streamed)")
                                                    : commit_lsn.ToString()) +
                      ", table " +
                      table + " (" + key + "): " + why.message() +
                      "; fix the target or the rule and restart (the journal keeps the change), "
                      "or set apply.on_error: dead_letter",
                  why.sqlstate());
  }
  state::DeadLetter d;
  d.table = table;
  d.key = key;
  d.reason = why.message();
  if (!why.sqlstate().empty()) d.reason += " (SQLSTATE " + why.sqlstate() + ")";
  d.phase = options_.dead_letter_phase;
  d.lsn = commit_lsn;
  pending_dead_letters_.push_back(std::move(d));
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Relations.

StatusOr<RelationEntry*> Applier::Impl::EntryFor(const std::shared_ptr<const Relation>& rel) {
  if (rel.get() == last_relation_ && last_entry_ != nullptr) return last_entry_;
  if (auto known = entry_by_object_.find(rel.get()); known != entry_by_object_.end()) {
    last_relation_ = rel.get();
    last_entry_ = known->second.second;
    return last_entry_;
  }
  uint64_t fp = rel->Fingerprint();
  auto it = relations_.find(fp);
  if (it == relations_.end()) {
    TS_ASSIGN_OR_RETURN(std::unique_ptr<RelationEntry> e, BuildEntry(rel));
    it = relations_.emplace(fp, std::move(e)).first;
  }
  // Each reconnection brings new objects for the same relations: bounded by starting over.
  if (entry_by_object_.size() >= 1024) entry_by_object_.clear();
  entry_by_object_.emplace(rel.get(), std::make_pair(rel, it->second.get()));
  last_relation_ = rel.get();
  last_entry_ = it->second.get();
  return last_entry_;
}

StatusOr<std::unique_ptr<RelationEntry>> Applier::Impl::BuildEntry(
    const std::shared_ptr<const Relation>& rel) {
  auto e = std::make_unique<RelationEntry>();
  e->id = next_entry_id_++;
  e->relation = rel;
  const TableConfig* tc = config_.FindTable(rel->name);
  if (rel->schema != config_.source.schema || (tc && tc->skip)) {
    e->ignored = true;
    return e;
  }
  std::vector<SourceColumn> cols;
  for (const auto& c : rel->columns) cols.push_back({c.name, c.type_name, c.is_key});
  StatusOr<TableTransform> t = TableTransform::Build(rel->name, tc, cols, cipher_);
  if (!t.ok()) {
    return t.status().WithContext("mapping source table " + rel->schema + "." + rel->name +
                                  " as it is now");
  }
  e->transform.emplace(std::move(t).value());
  e->target_table = config_.TargetTable(rel->name);
  TS_ASSIGN_OR_RETURN(auto copied_at, store_->GetMeta(snapshot::kMetaResumedLsnPrefix + rel->name));
  if (copied_at) {
    auto lsn = Lsn::Parse(*copied_at);
    if (!lsn.ok()) {
      return Corruption("state meta " + std::string(snapshot::kMetaResumedLsnPrefix) + rel->name +
                        " is not an LSN: '" + *copied_at + "'");
    }
    e->copied_at = *lsn;
  }
  for (const auto& c : rel->columns) {
    e->identity.push_back(c.is_key || rel->replica_identity == 'f');
  }

  // Catalog reads and drift DDL run in the batch's transaction, outside pipeline mode and after
  // the changes before this one (a run held for the bulk path) are sent.
  TS_RETURN_IF_ERROR(FlushRuns());
  TS_RETURN_IF_ERROR(LeavePipeline());
  auto loaded = internal::LoadTargetTable(&conn_, options_.target_schema, e->target_table);
  if (!loaded.ok()) return loaded.status();
  internal::TargetTableInfo info = std::move(loaded).value();
  TS_RETURN_IF_ERROR(HandleDrift(e.get(), info));
  if (batch_schema_changes_ > 0) {
    auto reloaded = internal::LoadTargetTable(&conn_, options_.target_schema, e->target_table);
    if (!reloaded.ok()) return reloaded.status();
    info = std::move(reloaded).value();
  }

  TableShape& s = e->shape;
  s.qualified = QuoteQualified(options_.target_schema, e->target_table);
  for (const TargetColumn& tcol : e->transform->target_columns()) {
    int ti = info.IndexOf(tcol.name);
    s.columns.push_back(tcol.name);
    s.types.push_back(ti >= 0 ? info.types[ti] : tcol.type);
    s.base_types.push_back(ti >= 0 ? info.base_types[ti] : tcol.type);
    s.added.push_back(tcol.source_index < 0);
    s.blank_padded.push_back(snapshot::internal::IsPaddedCharType(s.types.back()));
  }
  for (const std::string& k : info.primary_key) {
    auto pos = std::find(s.columns.begin(), s.columns.end(), k);
    if (pos == s.columns.end()) {
      return FailedPrecondition("target table " + options_.target_schema + "." + e->target_table +
                                ": primary key column " + k +
                                " is not fed by the source table " + rel->name +
                                "; fix the table's rules (rename/drop) or the target key");
    }
    s.key.push_back(static_cast<int>(pos - s.columns.begin()));
  }
  if (s.key.empty() && rel->replica_identity == 'f') {
    e->keyless_sets = true;
    e->keyless_no_index = !info.has_index;
    const auto& tcols = e->transform->target_columns();
    for (size_t si = 0; si < rel->columns.size(); ++si) {
      const int ti = e->transform->TargetIndexOf(static_cast<int>(si));
      if (ti < 0 || s.added[ti]) continue;
      e->keyless_cols.push_back(ti);
      if (tcols[ti].encrypted || !internal::KeylessGroupable(s.base_types[ti])) {
        e->keyless_sets = false;  // an encrypted value is new each time: never equal
      }
    }
    if (e->keyless_cols.empty()) e->keyless_sets = false;
  }
  return e;
}

Status Applier::Impl::HandleDrift(RelationEntry* e, const internal::TargetTableInfo& info) {
  const std::string where = options_.target_schema + "." + e->target_table;
  const std::string qualified = QuoteQualified(options_.target_schema, e->target_table);
  const Relation& rel = *e->relation;
  const TableConfig* tc = config_.FindTable(rel.name);
  bool add = options_.schema_drift == DriftPolicy::kAdd;
  const auto& tcols = e->transform->target_columns();
  if (!info.exists) {
    if (!add) {
      return SchemaChanged("source table " + rel.schema + "." + rel.name + " has no target table " +
                           where + "; create it (or run the snapshot) and restart, or set "
                           "apply.schema_drift: add");
    }
    std::string sql = "DO $ts$ BEGIN IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = " +
                      QuoteLiteral(options_.target_schema) + ") THEN CREATE SCHEMA " +
                      QuoteIdent(options_.target_schema) + "; END IF; END $ts$; " +
                      "CREATE TABLE IF NOT EXISTS " + qualified + " (";
    std::string key;
    for (size_t i = 0; i < tcols.size(); ++i) {
      if (i) sql += ", ";
      sql += QuoteIdent(tcols[i].name) + " " + tcols[i].type;
      if (tcols[i].is_key && rel.replica_identity != 'f') {
        key += (key.empty() ? "" : ", ") + QuoteIdent(tcols[i].name);
      }
    }
    if (!key.empty()) sql += ", PRIMARY KEY (" + key + ")";
    sql += ")";
    TS_RETURN_IF_ERROR_CTX(conn_.Run(sql), "creating target table " + where);
    ++batch_schema_changes_;
    return Status::Ok();
  }
  for (const TargetColumn& col : tcols) {
    int ti = info.IndexOf(col.name);
    if (ti < 0) {
      if (!add) {
        return SchemaChanged("target table " + where + " has no column " + col.name + " (" +
                             col.type + ") that source table " + rel.schema + "." + rel.name +
                             " now has; add it to the target (ALTER TABLE " + qualified +
                             " ADD COLUMN ...) and restart, or set apply.schema_drift: add");
      }
      TS_RETURN_IF_ERROR_CTX(conn_.Run("ALTER TABLE " + qualified + " ADD COLUMN IF NOT EXISTS " +
                                       QuoteIdent(col.name) + " " + col.type),
                             "adding column " + col.name + " to " + where);
      ++batch_schema_changes_;
      continue;
    }
    // A type comparison only means something for columns copied with the source's type.
    if (col.source_index < 0 || col.encrypted) continue;
    if (tc) {
      auto it = tc->columns.find(rel.columns[col.source_index].name);
      if (it != tc->columns.end() && !it->second.type.empty()) continue;
    }
    if (col.type.empty()) continue;
    // Same type, or one the target column holds without loss (the snapshot's rule: a text
    // target takes anything, numeric widening, json into jsonb): not drift.
    if (internal::CanonicalType(col.type) == internal::CanonicalType(info.types[ti]) ||
        snapshot::CompatibleTypes(col.type, info.types[ti])) {
      continue;
    }
    if (!add) {
      return SchemaChanged("source column " + rel.name + "." + col.name + " is now " + col.type +
                           ", target column " + where + "." + col.name + " is " + info.types[ti] +
                           "; alter the target column and restart, or set apply.schema_drift: add");
    }
    TS_RETURN_IF_ERROR_CTX(
        conn_.Run("ALTER TABLE " + qualified + " ALTER COLUMN " + QuoteIdent(col.name) + " TYPE " +
                  col.type + " USING " + QuoteIdent(col.name) + "::" + col.type),
        "changing the type of " + where + "." + col.name);
    ++batch_schema_changes_;
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Changes and statements.

Status Applier::Impl::LeavePipeline() {
  TS_RETURN_IF_ERROR(AwaitBulk());
  if (!session_.active()) return Status::Ok();
  return session_.DrainAndExit();
}

Status Applier::Impl::MaybeSync() {
  // After a failed statement the server skips everything up to the next sync point; what comes
  // after that point runs again. With one COMMIT per batch that is safe: the transaction stays
  // aborted and the COMMIT rolls back. With early commits it is not: a failed COMMIT ends the
  // transaction (so does a COMMIT reached after a failure), and the statements after the next
  // sync point would then run outside any transaction block, each committing on its own. So a
  // batch with early commits has no sync point until its end: a failure anywhere skips every
  // later statement and COMMIT. (Draining the pipeline, which reads every result first, is safe.)
  if (early_batch_) return Status::Ok();
  return session_.MaybeSync(options_.statements_per_sync);
}

Status Applier::Impl::EnterPipeline() {
  TS_RETURN_IF_ERROR(AwaitBulk());
  if (isolating_) return Status::Ok();
  return session_.Enter();
}

Status Applier::Impl::Execute(const std::string& key, const std::function<std::string()>& make_sql,
                              const std::vector<const Datum*>& params, int64_t update_rows,
                              const std::vector<int>* formats) {
  PreparedStatement& ps = statements_[key];
  if (ps.name.empty()) ps.name = "ts_" + std::to_string(next_statement_id_++);
  std::vector<const char*> values;
  std::vector<int> lengths;
  values.reserve(params.size());
  lengths.reserve(params.size());
  for (const Datum* d : params) {
    values.push_back(d->kind == Datum::Kind::kText ? d->text.c_str() : nullptr);
    lengths.push_back(static_cast<int>(d->text.size()));
  }
  if (isolating_) {
    if (!ps.prepared) {
      PgResult r(PQprepare(conn_.get(), ps.name.c_str(), make_sql().c_str(), 0, nullptr));
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
        return internal::ErrorFromResult(conn_.get(), r.get(), "preparing a target statement");
      }
      ps.prepared = true;
    }
    PgResult r(PQexecPrepared(conn_.get(), ps.name.c_str(), static_cast<int>(values.size()),
                              values.data(), lengths.data(), formats ? formats->data() : nullptr,
                              0));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      return internal::ErrorFromResult(conn_.get(), r.get(), "target statement failed");
    }
    if (const uint64_t missing = internal::RowsNotFound(r.get(), update_rows); missing > 0) {
      std::lock_guard<std::mutex> l(mu_);
      counters_.missing_rows += missing;
    }
    return Status::Ok();
  }
  TS_RETURN_IF_ERROR(EnterPipeline());
  if (!ps.prepared) {
    TS_RETURN_IF_ERROR(session_.SendPrepare(ps.name, make_sql()));
    ps.prepared = true;
  }
  TS_RETURN_IF_ERROR(session_.SendPrepared(ps.name, values, lengths, update_rows, formats));
  return MaybeSync();
}

namespace {

std::string MaskKey(int entry, char op, const std::vector<int>& a, const std::vector<int>& b,
                    const std::vector<int>& c = {}) {
  std::string k = std::to_string(entry);
  k += op;
  for (int x : a) k += std::to_string(x) + ",";
  k += "|";
  for (int x : b) k += std::to_string(x) + ",";
  k += "|";
  for (int x : c) k += std::to_string(x) + ",";
  return k;
}

const char* OpName(ChangeOp op) {
  switch (op) {
    case ChangeOp::kInsert: return "insert";
    case ChangeOp::kUpdate: return "update";
    case ChangeOp::kDelete: return "delete";
    case ChangeOp::kTruncate: return "truncate";
    case ChangeOp::kMessage: return "message";
  }
  return "?";
}

}  // namespace

Status Applier::Impl::SendRow(RelationEntry* e, const RowOp& op) {
  const TableShape& s = e->shape;
  std::vector<const Datum*> params;
  ++batch_rows_[std::make_pair(e->target_table, OpName(op.op))];
  switch (op.op) {
    case ChangeOp::kInsert: {
      for (int c : op.cols) params.push_back(&(*op.values)[c]);
      return Execute(
          MaskKey(e->id, 'I', op.cols, {}), [&] { return internal::InsertSql(s, op.cols); }, params,
          0);
    }
    case ChangeOp::kUpdate: {
      for (int c : op.cols) params.push_back(&(*op.values)[c]);
      if (!s.key.empty()) {
        for (int k : s.key) params.push_back(&(*op.key)[k]);
        return Execute(
            MaskKey(e->id, 'U', op.cols, {}), [&] { return internal::UpdateByKeySql(s, op.cols); },
            params, 1);
      }
      for (int m : op.match_cols) params.push_back(&(*op.key)[m]);
      return Execute(
          MaskKey(e->id, 'u', op.cols, op.match_cols, op.null_cols),
          [&] { return internal::UpdateByMatchSql(s, op.cols, op.match_cols, op.null_cols); },
          params, 1);
    }
    case ChangeOp::kDelete: {
      if (!s.key.empty()) {
        for (int k : s.key) params.push_back(&(*op.key)[k]);
        return Execute(
            MaskKey(e->id, 'D', {}, {}), [&] { return internal::DeleteByKeySql(s); }, params, 0);
      }
      for (int m : op.match_cols) params.push_back(&(*op.key)[m]);
      return Execute(
          MaskKey(e->id, 'd', {}, op.match_cols, op.null_cols),
          [&] { return internal::DeleteByMatchSql(s, op.match_cols, op.null_cols); }, params, 0);
    }
    default:
      return Fatal("SendRow: unexpected operation; this is a bug");
  }
}

Status Applier::Impl::ApplyChange(const Change& c, Lsn commit_lsn) {
  if (c.op == ChangeOp::kMessage) return Status::Ok();  // journaled for ops, never applied
  if (c.op == ChangeOp::kTruncate) {
    TS_RETURN_IF_ERROR(FlushRuns());
    return ApplyTruncate(c, commit_lsn);
  }
  if (!c.relation) return Corruption("journal: a change without its relation at " + commit_lsn.ToString());
  TS_ASSIGN_OR_RETURN(RelationEntry * e, EntryFor(c.relation));
  if (e->ignored) return Status::Ok();
  // A table copied in a resumed snapshot already holds every source transaction committed
  // before that snapshot's consistent point (snapshot/snapshot.h, "Resume"): applying one of
  // them again would duplicate a row of a keyless table or hit a unique key with a row the
  // source changed later. Skipping exactly those makes the table follow the source's history
  // from its own snapshot on, so the target converges (DESIGN.md invariant 1).
  if (commit_lsn < e->copied_at) {
    if (!e->skip_logged) {
      spdlog::info("apply: {} was copied in a resumed snapshot consistent at {}; its changes "
                   "committed before that are in the copy and are skipped",
                   c.relation->name, e->copied_at.ToString());
      e->skip_logged = true;
    }
    return Status::Ok();
  }
  const TableShape& s = e->shape;
  const TableTransform& t = *e->transform;

  Tuple values, key;
  if (c.op == ChangeOp::kInsert || c.op == ChangeOp::kUpdate) {
    Status st = t.Apply(c.new_tuple, &values, c.op == ChangeOp::kUpdate ? update_ctx_ : ctx_);
    if (!st.ok()) {
      if (st.code() == StatusCode::kSchemaChanged) return st;
      TS_RETURN_IF_ERROR(BeforeRowStatement(e));
      return HandleBadChange(c, commit_lsn, st);
    }
  }
  if (!c.old_tuple.empty()) {
    Status st = t.Apply(c.old_tuple, &key, update_ctx_);
    if (!st.ok()) {
      if (st.code() == StatusCode::kSchemaChanged) return st;
      TS_RETURN_IF_ERROR(BeforeRowStatement(e));
      return HandleBadChange(c, commit_lsn, st);
    }
  }

  RowOp op;
  op.op = c.op;
  op.values = &values;
  const bool as_sets =
      e->keyless_sets && group_tables_ && !isolating_ && options_.bulk_min_rows > 0;
  if (c.op == ChangeOp::kInsert) {
    for (size_t i = 0; i < values.size(); ++i) {
      if (!values[i].is_unchanged()) op.cols.push_back(static_cast<int>(i));
    }
    if (as_sets) return MergeKeyless(e, op, std::move(values));
    if (!isolating_ && options_.bulk_min_rows > 0) {
      return AddToRun(e, c.op, std::move(op.cols), std::move(values));
    }
    TS_RETURN_IF_ERROR(BeforeRowStatement(e));
    return SendRow(e, op);
  }

  // Update and delete: locate the row by the old key, the new key, or (no key) the old columns.
  const Tuple& locate = c.old_tuple.empty() ? values : key;
  op.key = &locate;
  if (locate.empty()) {
    TS_RETURN_IF_ERROR(BeforeRowStatement(e));
    return HandleBadChange(c, commit_lsn,
                           InvalidArgument("a " + std::string(OpName(c.op)) +
                                           " without old values can not be located"));
  }
  if (s.key.empty()) {
    for (size_t si = 0; si < e->identity.size(); ++si) {
      if (!e->identity[si]) continue;
      int ti = t.TargetIndexOf(static_cast<int>(si));
      if (ti < 0 || s.added[ti] || locate[ti].is_unchanged()) continue;
      (locate[ti].kind == Datum::Kind::kNull ? op.null_cols : op.match_cols).push_back(ti);
    }
  } else {
    for (int k : s.key) {
      if (locate[k].kind != Datum::Kind::kText) {
        TS_RETURN_IF_ERROR(BeforeRowStatement(e));
        return HandleBadChange(c, commit_lsn,
                               InvalidArgument("the key column " + s.columns[k] +
                                               " has no value in the change; it can not be "
                                               "located in the target"));
      }
    }
  }
  if (c.op == ChangeOp::kUpdate) {
    for (size_t i = 0; i < values.size(); ++i) {
      if (!values[i].is_unchanged()) op.cols.push_back(static_cast<int>(i));
    }
    if (op.cols.empty()) return Status::Ok();  // nothing but unchanged TOAST: nothing to write
  }
  if (as_sets && !c.old_tuple.empty()) return MergeKeyless(e, op, std::move(key));
  if (c.op == ChangeOp::kUpdate) {
    bool same_key = !s.key.empty();
    for (int k : s.key) {
      if (values[k].is_unchanged() || (!c.old_tuple.empty() && !(values[k] == key[k]))) {
        same_key = false;
      }
    }
    if (same_key && !isolating_ && options_.bulk_min_rows > 0) {
      return AddToRun(e, c.op, std::move(op.cols), std::move(values));
    }
  } else if (!s.key.empty() && !isolating_ && options_.bulk_min_rows > 0) {
    Tuple k = c.old_tuple.empty() ? values : key;
    return AddToRun(e, c.op, s.key, std::move(k));
  }
  TS_RETURN_IF_ERROR(BeforeRowStatement(e));
  return SendRow(e, op);
}

Status Applier::Impl::ApplyTruncate(const Change& c, Lsn commit_lsn) {
  std::vector<std::string> targets;
  std::string names;
  auto add = [&](const std::shared_ptr<const Relation>& rel) -> Status {
    if (!rel) return Status::Ok();
    TS_ASSIGN_OR_RETURN(RelationEntry * e, EntryFor(rel));
    if (e->ignored || commit_lsn < e->copied_at) return Status::Ok();  // see ApplyChange
    if (std::find(targets.begin(), targets.end(), e->shape.qualified) != targets.end()) {
      return Status::Ok();
    }
    targets.push_back(e->shape.qualified);
    names += (names.empty() ? "" : ", ") + rel->name;
    return Status::Ok();
  };
  for (const auto& rel : c.truncated) TS_RETURN_IF_ERROR(add(rel));
  if (c.truncated.empty()) TS_RETURN_IF_ERROR(add(c.relation));
  if (targets.empty()) return Status::Ok();
  switch (options_.truncate) {
    case TruncatePolicy::kIgnore:
      spdlog::warn("apply: ignored a source TRUNCATE of {} (apply.truncate: ignore)", names);
      return Status::Ok();
    case TruncatePolicy::kStop:
      return FailedPrecondition("the source truncated " + names +
                                "; apply.truncate is stop: set it to apply (truncate the target "
                                "tables too) or ignore, then restart");
    case TruncatePolicy::kApply:
      break;
  }
  for (const auto& q : targets) ++batch_rows_[std::make_pair(q, static_cast<const char*>("truncate"))];
  std::string sql = internal::TruncateSql(targets, (c.truncate_options & 2) != 0);
  if (isolating_) {
    auto r = conn_.Exec(sql);
    if (!r.ok()) return r.status();
    return Status::Ok();
  }
  TS_RETURN_IF_ERROR(EnterPipeline());
  TS_RETURN_IF_ERROR(session_.SendQuery(sql));
  return MaybeSync();
}

// ---------------------------------------------------------------------------------------------
// The bulk path: runs of one kind of change on one table with one column set.

namespace {
// Rows held in memory across all pending runs of a batch (invariant 7): beyond it every run is
// sent. A run alone beyond kMaxRunBytes goes to COPY whatever its length.
constexpr uint64_t kMaxHeldBytes = 8u << 20;
constexpr uint64_t kMaxRunBytes = 4u << 20;
constexpr size_t kMaxTrackedKeys = 4u << 20;

// FNV-1a over the key columns (kind, length and bytes of each), for BulkRun::key_hashes.
uint64_t KeyHash(const Tuple& row, const std::vector<int>& key) {
  Fnv1a f;
  for (int k : key) {
    const Datum& d = row[k];
    const auto kind = static_cast<unsigned char>(d.kind);
    const uint64_t n = d.text.size();
    f.Bytes(&kind, 1);
    f.Bytes(&n, sizeof n);
    f.Bytes(d.text.data(), d.text.size());
  }
  return f.h;
}

// The key columns' kinds, lengths and bytes, as one string: equal exactly when the keys are.
void KeyString(const Tuple& row, const std::vector<int>& key, std::string* k) {
  k->clear();
  for (int c : key) {
    const Datum& d = row[c];
    *k += static_cast<char>('0' + static_cast<int>(d.kind));
    *k += std::to_string(d.text.size());
    *k += ':';
    *k += d.text;
  }
}
}  // namespace

Status Applier::Impl::SendOtherRunsFirst(const RelationEntry* e) {
  for (size_t i = 0; i < runs_.size();) {
    const RelationEntry* other = runs_[i]->entry;
    if (other != e && (!group_tables_ || other->shape.qualified == e->shape.qualified)) {
      TS_RETURN_IF_ERROR(FlushRunOf(other));
      i = 0;  // FlushRunOf may have sent other runs too
    } else {
      ++i;
    }
  }
  return Status::Ok();
}

Status Applier::Impl::AddToRun(RelationEntry* e, ChangeOp op, std::vector<int> cols, Tuple row) {
  TS_RETURN_IF_ERROR(SendOtherRunsFirst(e));
  if (group_tables_ && !e->shape.key.empty())
    return MergeIntoRuns(e, op, std::move(cols), std::move(row));
  BulkRun* run = nullptr;
  for (const auto& r : runs_) {
    if (r->entry == e) run = r.get();
  }
  if (run != nullptr && (run->op != op || run->cols != cols)) {
    TS_RETURN_IF_ERROR(FlushRunOf(e));
    run = nullptr;
  }
  if (run == nullptr) run = NewRun(e, op, std::move(cols));
  if (run->copying) return CopyRow(run, row);
  if (Hold(run, std::move(row))) return StartCopy(run);
  if (held_bytes_ >= kMaxHeldBytes) return FlushRuns();
  return Status::Ok();
}

// Under grouping (session_replication_role = replica) a keyed table's changes are held as their
// net effect per key, whatever the order of the kinds of change: a run per kind of change and
// column set, each key in at most one of them (a key deleted and then inserted again: in the
// delete run and in the insert run), and FlushRunOf sends deletes, then inserts, then updates.
// So an order that is inserted and then updated in one source transaction, and the next order
// too, is one insert run, not a statement per change. Each step keeps what the source's sequence
// leaves in the row (an insert is an upsert, an update or a delete of a missing row does nothing):
//   held \ new   insert              update                      delete
//   none         insert              update                      delete
//   insert       insert (the new)    insert, overlaid            delete
//   update       insert (the new)    update, overlaid (columns   delete
//                                    of both)
//   delete       delete + insert     delete (no row to update)   delete
//   delete +     delete + insert     delete + insert, overlaid   delete
//     insert       (the new)
// Rows of different keys are independent, so the runs may go in any order; a unique index on
// other columns that only the source's order satisfies fails the statement, and the batch is then
// applied one change at a time in that order (Isolate). While one run of the table alone is
// COPYing, a change of another kind first sends it (its rows can not be taken back).
Status Applier::Impl::MergeIntoRuns(RelationEntry* e, ChangeOp op, std::vector<int> cols,
                                    Tuple row) {
  std::vector<BulkRun*>& mine = table_runs_;  // reused: no allocation per change
  mine.clear();
  for (const auto& r : runs_) {
    if (r->entry == e) mine.push_back(r.get());
  }
  if (!mine.empty() && mine.front()->copying) {  // then it is e's only run
    if (mine.front()->op == op && mine.front()->cols == cols) return CopyRow(mine.front(), row);
    TS_RETURN_IF_ERROR(FlushRunOf(e));
    mine.clear();
  }
  KeyString(row, e->shape.key, &key_buf_);
  BulkRun* deleted = nullptr;  // e's delete run, when it holds this key
  BulkRun* held = nullptr;     // e's insert or update run holding this key
  uint32_t at = 0;
  for (BulkRun* r : mine) {
    auto it = r->key_rows.find(key_buf_);
    if (it == r->key_rows.end()) continue;
    if (r->op == ChangeOp::kDelete) {
      deleted = r;
    } else {
      held = r;
      at = it->second;
    }
  }
  // A change merged into a held row, or a held row replaced, counts as applied here (as the COPY
  // path's per-key sort counts it); the row a run sends is counted when it is sent.
  auto count = [&](ChangeOp o) { ++batch_rows_[std::make_pair(e->target_table, OpName(o))]; };
  if (held != nullptr && op != ChangeOp::kUpdate) {  // an insert or a delete replaces it
    count(held->op);
    TakeHeldRow(held, at);
    held = nullptr;
  }
  if (held != nullptr && held->op == ChangeOp::kInsert &&
      std::includes(held->cols.begin(), held->cols.end(), cols.begin(), cols.end())) {
    Tuple& h = held->rows[at];
    const uint64_t before = TupleBytes(h);
    for (int c : cols) h[c] = std::move(row[c]);
    const uint64_t after = TupleBytes(h);
    held->bytes = held->bytes + after - before;
    held_bytes_ = held_bytes_ + after - before;
    count(op);
    return held_bytes_ >= kMaxHeldBytes ? FlushRuns() : Status::Ok();
  }
  if (held != nullptr && held->op == ChangeOp::kUpdate) {
    count(held->op);
    std::vector<int> held_cols = held->cols;
    Tuple merged = TakeHeldRow(held, at);
    for (int c : cols) merged[c] = std::move(row[c]);
    std::vector<int> all(held_cols.size() + cols.size());
    all.erase(
        std::set_union(held_cols.begin(), held_cols.end(), cols.begin(), cols.end(), all.begin()),
        all.end());
    return PutHeldRow(e, op, std::move(all), std::move(merged));
  }
  if (held != nullptr) {  // an insert whose columns do not cover the update's (not seen)
    TS_RETURN_IF_ERROR(FlushRunOf(e));
  } else if (deleted != nullptr && op != ChangeOp::kInsert) {
    count(op);  // an update or a delete of a row already deleted: nothing to do
    return Status::Ok();
  }
  return PutHeldRow(e, op, std::move(cols), std::move(row));
}

Tuple Applier::Impl::TakeHeldRow(BulkRun* run, uint32_t at) {
  Tuple out = std::move(run->rows[at]);
  CountHeld(run, out, -1);
  run->key_rows.erase(key_buf_);
  if (at + 1 != run->rows.size()) {
    run->rows[at] = std::move(run->rows.back());
    KeyString(run->rows[at], run->entry->shape.key, &moved_key_buf_);
    run->key_rows[moved_key_buf_] = at;
  }
  run->rows.pop_back();
  if (run->rows.empty()) Forget(run);
  return out;
}

// Under grouping, a table without a key whose rows are identified by all their columns
// (e->keyless_sets) holds its inserts, deletes and updates in one run each, multisets of whole
// rows (compared by KeyString over keyless_cols), and FlushRunOf sends the deletes, the updates
// and the inserts (arrays, or COPY into the table), the deletes and updates as one statement
// per pattern of NULLs in their old rows (KeylessDeleteSql, KeylessUpdateSql). Changed one at a
// time, the source's changes leave the same multiset of rows:
//   insert r                  held.
//   delete r, r held          one held r is taken back: equal rows can not be told apart, so
//     (inserted)              deleting the one inserted in this batch is deleting any of them.
//   update r -> s, r held     the held r becomes s (as for a delete).
//   delete r, else            held, and an update of r too: each refers to a row that was there
//   update r -> s, else       before the batch, so they may go before the held inserts (which
//                             came after them), and deleting (updating) r n times takes up to n
//                             rows equal to r, as n single statements do, in the source's order.
// Except where a held delete or update could take a row another one refers to: a delete of r
// while r is the old row of a held delete or update or the new row of a held update, and an
// update of r while r is the old row of a held delete or the new row of a held update (an update
// of an updated row), first send the held runs. A held delete and a held update never share a
// row then, nor one held update's new row another's old row, so their order does not matter.
// Without the source's order inside the table, the target backend runs one statement per kind of
// change and pattern of NULLs in a batch instead of one per change. A change whose old row has an
// unchanged (TOASTed) column, and every change while a batch is isolated, go one at a time.
Status Applier::Impl::MergeKeyless(RelationEntry* e, const RowOp& op, Tuple row) {
  TS_RETURN_IF_ERROR(SendOtherRunsFirst(e));
  BulkRun* ins = nullptr;
  BulkRun* del = nullptr;
  BulkRun* upd = nullptr;
  for (const auto& r : runs_) {
    if (r->entry != e) continue;
    (r->op == ChangeOp::kInsert ? ins : r->op == ChangeOp::kDelete ? del : upd) = r.get();
  }
  auto send_held = [&]() -> Status {
    ins = del = upd = nullptr;
    return FlushRunOf(e);
  };
  if (ins != nullptr && ins->copying) {
    if (op.op == ChangeOp::kInsert && ins->cols == op.cols) return CopyRow(ins, row);
    TS_RETURN_IF_ERROR(send_held());  // the COPYed rows can not be taken back: sent
  }
  for (int c : e->keyless_cols) {
    if (row[c].is_unchanged()) {  // not a whole row: matched as before, in order
      RowOp one = op;
      one.key = &row;
      one.values = op.op == ChangeOp::kInsert ? &row : op.values;
      TS_RETURN_IF_ERROR(BeforeRowStatement(e));
      return SendRow(e, one);
    }
  }
  KeyString(row, e->keyless_cols, &key_buf_);
  auto count = [&](ChangeOp o) { ++batch_rows_[std::make_pair(e->target_table, OpName(o))]; };
  switch (op.op) {
    case ChangeOp::kInsert: {
      if (ins != nullptr && ins->cols != op.cols) TS_RETURN_IF_ERROR(send_held());
      if (ins == nullptr) ins = NewRun(e, ChangeOp::kInsert, op.cols);
      ins->row_at.emplace(key_buf_, static_cast<uint32_t>(ins->rows.size()));
      if (Hold(ins, std::move(row))) {
        return del == nullptr && upd == nullptr ? StartCopy(ins) : FlushRunOf(e);
      }
      break;
    }
    case ChangeOp::kDelete: {
      if (ins != nullptr) {
        if (auto it = ins->row_at.find(key_buf_); it != ins->row_at.end()) {
          count(ChangeOp::kInsert);
          count(ChangeOp::kDelete);
          TakeKeylessRow(ins, it);
          return Status::Ok();
        }
      }
      if (upd != nullptr &&
          (upd->key_rows.count(key_buf_) > 0 || upd->new_keys.count(key_buf_) > 0)) {
        TS_RETURN_IF_ERROR(send_held());
      }
      if (del == nullptr) del = NewRun(e, ChangeOp::kDelete, {});
      ++del->key_rows[key_buf_];
      Hold(del, std::move(row));  // never COPYed: one statement per pattern of NULLs
      break;
    }
    case ChangeOp::kUpdate: {
      if (ins != nullptr &&
          std::includes(ins->cols.begin(), ins->cols.end(), op.cols.begin(), op.cols.end())) {
        if (auto it = ins->row_at.find(key_buf_); it != ins->row_at.end()) {
          const uint32_t at = it->second;
          ins->row_at.erase(it);
          Tuple& h = ins->rows[at];
          const uint64_t before = TupleBytes(h);
          for (int c : op.cols) h[c] = (*op.values)[c];
          const uint64_t after = TupleBytes(h);
          ins->bytes = ins->bytes + after - before;
          held_bytes_ = held_bytes_ + after - before;
          KeyString(h, e->keyless_cols, &moved_key_buf_);
          ins->row_at.emplace(moved_key_buf_, at);
          count(ChangeOp::kUpdate);
          break;
        }
      }
      if ((del != nullptr && del->key_rows.count(key_buf_) > 0) ||
          (upd != nullptr && upd->new_keys.count(key_buf_) > 0) ||
          (ins != nullptr && ins->row_at.find(key_buf_) != ins->row_at.end())) {
        TS_RETURN_IF_ERROR(send_held());  // (a held insert whose columns do not cover these)
      }
      if (upd != nullptr && upd->cols != op.cols) TS_RETURN_IF_ERROR(send_held());
      if (upd == nullptr) upd = NewRun(e, ChangeOp::kUpdate, op.cols);
      Tuple now = row;
      for (int c : op.cols) now[c] = (*op.values)[c];
      KeyString(now, e->keyless_cols, &moved_key_buf_);
      ++upd->new_keys[moved_key_buf_];
      ++upd->key_rows[key_buf_];
      CountHeld(upd, now, +1);
      upd->new_rows.push_back(std::move(now));
      Hold(upd, std::move(row));  // never COPYed, as deletes
      break;
    }
    default:
      return Fatal("MergeKeyless: unexpected operation; this is a bug");
  }
  return held_bytes_ >= kMaxHeldBytes ? FlushRuns() : Status::Ok();
}

void Applier::Impl::TakeKeylessRow(BulkRun* run,
                                   std::unordered_multimap<std::string, uint32_t>::iterator it) {
  const uint32_t at = it->second;
  run->row_at.erase(it);
  CountHeld(run, run->rows[at], -1);
  const uint32_t last = static_cast<uint32_t>(run->rows.size() - 1);
  if (at != last) {
    run->rows[at] = std::move(run->rows[last]);
    KeyString(run->rows[at], run->entry->keyless_cols, &moved_key_buf_);
    auto [b, end] = run->row_at.equal_range(moved_key_buf_);
    for (; b != end; ++b) {
      if (b->second == last) {
        b->second = at;
        break;
      }
    }
  }
  run->rows.pop_back();
  if (run->rows.empty()) Forget(run);
}

Status Applier::Impl::SendKeylessRun(RelationEntry* e, const BulkRun& run) {
  const TableShape& s = e->shape;
  const bool update = run.op == ChangeOp::kUpdate;
  std::map<std::vector<bool>, std::vector<size_t>> by_nulls;
  std::vector<bool> nulls(e->keyless_cols.size());
  for (size_t r = 0; r < run.rows.size(); ++r) {
    for (size_t i = 0; i < nulls.size(); ++i) nulls[i] = run.rows[r][e->keyless_cols[i]].is_null();
    by_nulls[nulls].push_back(r);
  }
  for (const auto& [pattern, rows] : by_nulls) {
    RowOp one;
    one.op = run.op;
    if (update) one.cols = run.cols;
    for (size_t i = 0; i < pattern.size(); ++i) {
      (pattern[i] ? one.null_cols : one.match_cols).push_back(e->keyless_cols[i]);
    }
    if (static_cast<int64_t>(rows.size()) < std::max(2, options_.keyless_set_min_rows) ||
        one.match_cols.empty()) {
      for (size_t r : rows) {
        one.key = &run.rows[r];
        one.values = update ? &run.new_rows[r] : nullptr;
        TS_RETURN_IF_ERROR(SendRow(e, one));
      }
      continue;
    }
    std::vector<const Tuple*> old_rows, new_rows;
    for (size_t r : rows) {
      old_rows.push_back(&run.rows[r]);
      if (update) new_rows.push_back(&run.new_rows[r]);
    }
    std::vector<Datum> values;
    std::vector<int> formats;
    BuildArrays(s, old_rows, one.match_cols, &values, &formats);
    if (update) BuildArrays(s, new_rows, one.cols, &values, &formats);
    std::vector<const Datum*> params;
    params.reserve(values.size());
    for (const Datum& d : values) params.push_back(&d);
    batch_rows_[std::make_pair(e->target_table, OpName(run.op))] += rows.size();
    batch_array_rows_ += rows.size();
    // Planned for these rows (a generic plan assumes 10 and may scan a large table where a few
    // index probes do): the plan then fits both a bulk change of a table without an index (one
    // hash join) and a few rows of a large indexed one. Without any index a nested loop scans
    // the table once per row, so such a table's statement is planned without nested loops. In
    // a live transaction the hash and merge joins its keyed chunks go without are allowed
    // again for this statement: with all three off a 10,000-row DELETE from 40,000 rows ran as
    // a nested loop comparing 10^8 pairs (9 s instead of 0.1 s).
    TS_RETURN_IF_ERROR(EnterPipeline());
    TS_RETURN_IF_ERROR(session_.SendQuery("SET LOCAL plan_cache_mode = force_custom_plan"));
    if (in_live_) TS_RETURN_IF_ERROR(SendLiveJoins(false));
    if (e->keyless_no_index) {
      TS_RETURN_IF_ERROR(session_.SendQuery("SET LOCAL enable_nestloop = off"));
    }
    TS_RETURN_IF_ERROR(Execute(
        "keyless:" + MaskKey(e->id, update ? 'w' : 'k', one.cols, one.match_cols, one.null_cols),
        [&] {
          return update ? internal::KeylessUpdateSql(s, one.match_cols, one.null_cols, one.cols)
                        : internal::KeylessDeleteSql(s, one.match_cols, one.null_cols);
        },
        params, update ? static_cast<int64_t>(rows.size()) : 0, &formats));
    TS_RETURN_IF_ERROR(session_.SendQuery("SET LOCAL plan_cache_mode = force_generic_plan"));
    if (e->keyless_no_index) {
      TS_RETURN_IF_ERROR(session_.SendQuery("SET LOCAL enable_nestloop = DEFAULT"));
    }
    if (in_live_) TS_RETURN_IF_ERROR(SendLiveJoins(true));
  }
  return Status::Ok();
}

void Applier::Impl::Forget(const BulkRun* run) {
  for (size_t i = 0; i < runs_.size(); ++i) {
    if (runs_[i].get() == run) {
      runs_.erase(runs_.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }
}

void Applier::Impl::CountHeld(BulkRun* run, const Tuple& row, int sign) {
  const uint64_t bytes = TupleBytes(row);
  if (sign > 0) {
    run->bytes += bytes;
    held_bytes_ += bytes;
  } else {
    run->bytes -= bytes;
    held_bytes_ -= bytes;
  }
}

bool Applier::Impl::Hold(BulkRun* run, Tuple row) {
  CountHeld(run, row, +1);
  run->rows.push_back(std::move(row));
  return run->rows.size() >= static_cast<size_t>(options_.bulk_min_rows) ||
         run->bytes >= kMaxRunBytes;
}

Applier::Impl::BulkRun* Applier::Impl::NewRun(RelationEntry* e, ChangeOp op,
                                              std::vector<int> cols) {
  runs_.push_back(std::make_unique<BulkRun>());
  BulkRun* run = runs_.back().get();
  run->entry = e;
  run->op = op;
  run->cols = std::move(cols);
  return run;
}

Status Applier::Impl::PutHeldRow(RelationEntry* e, ChangeOp op, std::vector<int> cols, Tuple row) {
  BulkRun* run = nullptr;
  int of_table = 0;
  for (const auto& r : runs_) {
    if (r->entry != e) continue;
    ++of_table;
    if (r->op == op && r->cols == cols) run = r.get();
  }
  if (run == nullptr) {
    run = NewRun(e, op, std::move(cols));
    ++of_table;
  }
  run->key_rows.emplace(key_buf_, static_cast<uint32_t>(run->rows.size()));
  if (Hold(run, std::move(row))) {
    // Alone, the run goes on as a COPY; beside other runs of the table, they all go now (the
    // long ones by COPY: FlushRunOf).
    return of_table == 1 ? StartCopy(run) : FlushRunOf(e);
  }
  if (held_bytes_ >= kMaxHeldBytes) return FlushRuns();
  return Status::Ok();
}

Status Applier::Impl::FlushRuns() {
  while (!runs_.empty()) TS_RETURN_IF_ERROR(FlushRunOf(runs_.front()->entry));
  return Status::Ok();
}

Status Applier::Impl::FlushRunOf(const RelationEntry* e) {
  std::vector<BulkRun> mine;
  for (size_t i = 0; i < runs_.size();) {
    if (runs_[i]->entry != e) {
      ++i;
      continue;
    }
    mine.push_back(std::move(*runs_[i]));
    runs_.erase(runs_.begin() + static_cast<std::ptrdiff_t>(i));
    held_bytes_ -= mine.back().bytes;
  }
  // Deletes first: a key deleted and then inserted again is in both runs (MergeIntoRuns). A
  // keyless table's held updates go before its held inserts, which came after them (MergeKeyless).
  const bool keyless = e->shape.key.empty();
  auto rank = [keyless](ChangeOp op) {
    if (op == ChangeOp::kDelete) return 0;
    return (op == ChangeOp::kInsert) != keyless ? 1 : 2;
  };
  std::stable_sort(mine.begin(), mine.end(),
                   [&](const BulkRun& a, const BulkRun& b) { return rank(a.op) < rank(b.op); });
  for (BulkRun& run : mine) {
    if (!run.copying && mine.size() > 1 && (run.op == ChangeOp::kInsert || !e->shape.key.empty()) &&
        (run.rows.size() >= static_cast<size_t>(options_.bulk_min_rows) ||
         run.bytes >= kMaxRunBytes)) {
      held_bytes_ += run.bytes;  // StartCopy takes it off
      TS_RETURN_IF_ERROR(StartCopy(&run));
    }
    // Rows too few for COPY go as single statements, which need the connection free of COPY.
    if (!run.copying) TS_RETURN_IF_ERROR(FlushCopying());
    TS_RETURN_IF_ERROR(FlushRun(std::move(run)));
  }
  return Status::Ok();
}

Status Applier::Impl::FlushCopying() {
  for (const auto& r : runs_) {
    if (r->copying) return FlushRunOf(r->entry);
  }
  return Status::Ok();
}

Status Applier::Impl::BeforeRowStatement(const RelationEntry* e) {
  if (!group_tables_) return FlushRuns();
  for (size_t i = 0; i < runs_.size();) {
    if (runs_[i]->entry == e || runs_[i]->entry->shape.qualified == e->shape.qualified) {
      TS_RETURN_IF_ERROR(FlushRunOf(runs_[i]->entry));
      i = 0;  // FlushRunOf may have removed other runs too
    } else {
      ++i;
    }
  }
  return FlushCopying();
}

Status Applier::Impl::StartCopy(BulkRun* run) {
  // One COPY at a time: another table's open COPY is finished first (its run stays whole).
  TS_RETURN_IF_ERROR(FlushCopying());
  RelationEntry* e = run->entry;
  if (in_live_ && options_.live_parallel_staging) {
    // A table of its own per chunk, committed by stage_conn_ (conn_'s transaction keeps a lock
    // on each one it read until it ends, so none can be emptied for reuse).
    TS_RETURN_IF_ERROR(OpenStageConn());
    run->stage = "_tenantsync." + QuoteIdent(internal::SharedStagePrefix(options_.pipeline) +
                                             std::to_string(++next_stage_));
    live_staged_ = true;
    TS_RETURN_IF_ERROR(stage_conn_.Run(internal::CreateSharedStageSql(e->shape, run->stage)));
    TS_RETURN_IF_ERROR(
        stage_conn_.Run(internal::CopyIntoStageSql(e->shape, run->stage, run->cols)));
    run->copy_conn = &stage_conn_;
    run->shared_stage = true;
  } else if (run->op == ChangeOp::kInsert && e->shape.key.empty() && !run->cols.empty()) {
    // Inserts into a table without a key need no staging: nothing to match or deduplicate, and
    // the set-based statement would only copy the staged rows once more, in the same order.
    // COPY into the table itself does what that INSERT does (constraints are checked, and the
    // rows stay in the batch's transaction); under session_replication_role = replica ordinary
    // triggers fire for neither.
    TS_RETURN_IF_ERROR(LeavePipeline());
    TS_RETURN_IF_ERROR(conn_.Run(internal::CopyIntoTableSql(e->shape, run->cols)));
    run->copy_conn = &conn_;
    run->direct = true;
  } else {
    TS_RETURN_IF_ERROR(LeavePipeline());
    run->stage = QuoteIdent(internal::StageTableName(e->id));
    if (!e->stage_created) {
      TS_RETURN_IF_ERROR(conn_.Run(internal::CreateStageSql(e->shape, run->stage)));
      e->stage_created = true;
    } else if (e->stage_used_in_batch == batch_number_) {
      TS_RETURN_IF_ERROR(conn_.Run(internal::TruncateStageSql(run->stage)));
    }
    TS_RETURN_IF_ERROR(conn_.Run(internal::CopyIntoStageSql(e->shape, run->stage, run->cols)));
    run->copy_conn = &conn_;
  }
  run->copying = true;
  run->copy_started = std::chrono::steady_clock::now();
  run->seq = 0;
  run->buffer.clear();
  std::vector<Tuple> rows = std::move(run->rows);
  run->rows.clear();
  run->key_rows = {};  // from here on the set-based statement takes the last row of each key
  run->row_at = {};
  held_bytes_ -= run->bytes;
  run->bytes = 0;
  for (const Tuple& r : rows) TS_RETURN_IF_ERROR(CopyRow(run, r));
  return Status::Ok();
}

Status Applier::Impl::CopyRow(BulkRun* run, const Tuple& row) {
  if (run->keys_tracked) {
    const std::vector<int>& key = run->entry->shape.key;
    if (key.empty() || run->op == ChangeOp::kDelete || run->key_hashes.size() >= kMaxTrackedKeys) {
      run->keys_tracked = false;
      run->key_hashes = std::vector<uint64_t>();
    } else {
      run->key_hashes.push_back(KeyHash(row, key));
    }
  }
  ++run->seq;
  if (!run->direct) run->buffer += std::to_string(run->seq);
  const std::vector<bool>& padded = run->entry->shape.blank_padded;
  for (size_t i = 0; i < run->cols.size(); ++i) {
    if (i > 0 || !run->direct) run->buffer += '\t';  // after ts_seq, or between columns
    const int c = run->cols[i];
    internal::AppendCopyText(row[c], &run->buffer, padded[c]);
  }
  run->buffer += '\n';
  if (run->buffer.size() >= (1u << 20)) {
    PgConn& cc = *run->copy_conn;
    if (PQputCopyData(cc.get(), run->buffer.data(), static_cast<int>(run->buffer.size())) != 1) {
      return ConnectionError("sending COPY data to the target: " + cc.LastError());
    }
    run->buffer.clear();
  }
  return Status::Ok();
}

Status Applier::Impl::FlushRun(BulkRun run) {
  RelationEntry* e = run.entry;
  if (!run.copying && run.op != ChangeOp::kInsert && e->shape.key.empty()) {
    return SendKeylessRun(e, run);
  }
  if (!run.copying) {
    // Too short for COPY: one statement per row, or one over arrays (SendArrayRun). Under
    // grouping, MergeIntoRuns kept one row per key, the net effect of its changes (as the COPY
    // path's statements take only the last staged row per key), so hot rows (pgbench's 10
    // branches) are changed once per batch instead of once per source transaction. Only under
    // session_replication_role = replica, where ordinary triggers and foreign-key checks do not
    // fire (an ENABLE ALWAYS or REPLICA trigger sees one write per key per batch, as it does on
    // the COPY path).
    if (group_tables_ && options_.array_min_rows > 0 &&
        (run.op == ChangeOp::kInsert || !e->shape.key.empty()) &&
        run.rows.size() >= static_cast<size_t>(options_.array_min_rows)) {
      return SendArrayRun(e, run);
    }
    for (const Tuple& row : run.rows) {
      RowOp op;
      op.op = run.op;
      op.cols = run.op == ChangeOp::kDelete ? std::vector<int>{} : run.cols;
      op.values = &row;
      op.key = &row;
      TS_RETURN_IF_ERROR(SendRow(e, op));
    }
    return Status::Ok();
  }
  PgConn& cc = *run.copy_conn;
  if (!run.buffer.empty() &&
      PQputCopyData(cc.get(), run.buffer.data(), static_cast<int>(run.buffer.size())) != 1) {
    return ConnectionError("sending COPY data to the target: " + cc.LastError());
  }
  if (PQputCopyEnd(cc.get(), nullptr) != 1) {
    return ConnectionError("ending COPY to the target: " + cc.LastError());
  }
  auto count_rows = [&] {
    batch_rows_[std::make_pair(e->target_table, OpName(run.op))] += static_cast<uint64_t>(run.seq);
    batch_bulk_rows_ += static_cast<uint64_t>(run.seq);
  };
  if (run.direct) {
    TS_RETURN_IF_ERROR(internal::FinishResults(cc.get(), "COPY into " + e->target_table));
    count_rows();
    return Status::Ok();
  }
  TS_RETURN_IF_ERROR(internal::FinishResults(cc.get(), "COPY into the staging table"));
  const std::string& stage = run.stage;
  const auto started = std::chrono::steady_clock::now();
  bool unique_keys = run.keys_tracked;
  if (unique_keys) {
    std::sort(run.key_hashes.begin(), run.key_hashes.end());
    unique_keys =
        std::adjacent_find(run.key_hashes.begin(), run.key_hashes.end()) == run.key_hashes.end();
  }
  std::string sql;
  switch (run.op) {
    case ChangeOp::kInsert:
      sql = internal::BulkInsertSql(e->shape, stage, run.cols, unique_keys);
      break;
    case ChangeOp::kUpdate:
      sql = internal::BulkUpdateSql(e->shape, stage, run.cols, unique_keys);
      break;
    case ChangeOp::kDelete: sql = internal::BulkDeleteSql(e->shape, stage); break;
    default: return Fatal("bulk path: unexpected operation; this is a bug");
  }
  if (run.shared_stage) {
    // Sent without waiting: the next chunk is staged meanwhile (AwaitBulk collects the result).
    TS_RETURN_IF_ERROR(LeavePipeline());  // also waits for the previous chunk's statement
    if (run.seq >= 10000) sql = "SET LOCAL work_mem = '256MB'; " + sql;
    if (PQsendQuery(conn_.get(), sql.c_str()) != 1) {
      return ConnectionError("sending a bulk " + std::string(OpName(run.op)) + " to the target: " +
                             conn_.LastError());
    }
    pending_bulk_.active = true;
    pending_bulk_.what = "bulk " + std::string(OpName(run.op)) + " into " + e->target_table;
    pending_bulk_.rows = run.seq;
    pending_bulk_.unique_keys = unique_keys;
    pending_bulk_.staging_secs = std::chrono::duration<double>(started - run.copy_started).count();
    pending_bulk_.sent = started;
    count_rows();
    return Status::Ok();
  }
  if (run.seq >= 10000) {
    // Statistics for the planner (a fresh temp table has none) and memory for the per-key sort,
    // for this transaction only. A live transaction's plan is fixed to index probes (ApplyLive):
    // no statistics needed (ANALYZE cost ~70 ms per 100k-row chunk).
    TS_RETURN_IF_ERROR(conn_.Run((in_live_ ? "" : "ANALYZE " + QuoteIdent(stage) + "; ") +
                                 "SET LOCAL work_mem = '256MB'"));
  }
  {
    PgResult r(PQexec(conn_.get(), sql.c_str()));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      return internal::ErrorFromResult(conn_.get(), r.get(), "bulk " + std::string(OpName(run.op)) +
                                                                 " into " + e->target_table);
    }
  }
  e->stage_used_in_batch = batch_number_;  // emptied at commit, or before its next COPY
  if (run.seq >= 10000) {
    auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
    spdlog::info("apply: bulk {} of {} rows into {} in {:.1f} s ({:.1f} s staging{})",
                 OpName(run.op), run.seq, e->target_table,
                 secs(std::chrono::steady_clock::now() - started), secs(started - run.copy_started),
                 unique_keys ? ", keys unique: no per-key sort" : "");
  }
  count_rows();
  return Status::Ok();
}

// The array path: a run too short for COPY, its rows (the last of each key) passed as one array
// per column to one set-based statement over unnest() (the bulk path's statements with an
// in-line stage). One statement instead of one per row: the target backend's per-statement work
// (bind, executor start-up, a round of the protocol) is paid once per run. Under
// session_replication_role = replica only, as the per-key rule above (row triggers still fire
// per row; statement triggers once).
void Applier::Impl::BuildArrays(const TableShape& s, const std::vector<const Tuple*>& rows,
                                const std::vector<int>& cols, std::vector<Datum>* values,
                                std::vector<int>* formats) {
  const int32_t rows32 = static_cast<int32_t>(rows.size());
  values->reserve(cols.size());
  formats->reserve(cols.size());
  for (const int col : cols) {
    // Binary where the column's type and every value of it allow (internal/binary_array.h);
    // otherwise the text array literal. An array-typed column: its values' text, as text[].
    const bool nested = internal::IsArrayType(s.types[col]);
    if (const uint32_t type = internal::BinaryArrayElementType(nested ? "text" : s.types[col]);
        type != 0) {
      internal::BinaryArrayBuilder b(type, rows32);
      bool ok = true;
      for (size_t r = 0; ok && r < rows.size(); ++r) ok = b.Append((*rows[r])[col]);
      if (ok) {
        values->push_back(Datum::Text(std::move(b).Finish()));
        formats->push_back(1);
        ++batch_binary_arrays_;
        continue;
      }
    }
    std::string a = "{";
    for (size_t r = 0; r < rows.size(); ++r) {
      if (r > 0) a += ',';
      internal::AppendArrayElement((*rows[r])[col], &a, s.blank_padded[col]);
    }
    values->push_back(Datum::Text(std::move(a += '}')));
    formats->push_back(0);
    ++batch_text_arrays_;
  }
}

Status Applier::Impl::SendArrayRun(RelationEntry* e, const BulkRun& run) {
  const TableShape& s = e->shape;
  const int32_t rows32 = static_cast<int32_t>(run.rows.size());
  std::vector<Datum> values;
  std::vector<int> formats;
  std::vector<const Tuple*> row_ptrs;
  row_ptrs.reserve(run.rows.size());
  for (const Tuple& r : run.rows) row_ptrs.push_back(&r);
  BuildArrays(s, row_ptrs, run.cols, &values, &formats);
  const int64_t rows = rows32;
  std::vector<const Datum*> params;
  params.reserve(values.size());
  for (const Datum& d : values) params.push_back(&d);
  batch_rows_[std::make_pair(e->target_table, OpName(run.op))] += run.rows.size();
  batch_array_rows_ += static_cast<uint64_t>(rows);
  const char op = run.op == ChangeOp::kInsert ? 'i' : run.op == ChangeOp::kUpdate ? 'v' : 'x';
  return Execute(
      "array:" + MaskKey(e->id, op, run.cols, {}),
      [&] {
        const std::string stage = internal::ArrayStageSql(s, run.cols);
        switch (run.op) {
          case ChangeOp::kInsert:
            return internal::BulkInsertSql(s, s.key.empty() ? stage + " u" : stage, run.cols,
                                           /*unique_keys=*/true);
          case ChangeOp::kUpdate:
            return internal::BulkUpdateSql(s, stage, run.cols, /*unique_keys=*/true);
          default:
            return internal::BulkDeleteSql(s, stage);
        }
      },
      params, run.op == ChangeOp::kUpdate ? rows : 0, &formats);
}

Status Applier::Impl::OpenStageConn() {
  if (stage_conn_.connected()) return Status::Ok();
  TS_ASSIGN_OR_RETURN(stage_conn_,
                      PgConn::Connect(options_.target_url, "tenantsync-stage-" + options_.pipeline));
  PQsetNoticeReceiver(stage_conn_.get(), NoticeSink, nullptr);
  // The same input settings as conn_ (datestyle for the staged text); its commits need no flush
  // (the staged rows matter only to conn_'s open transaction, which a target crash ends too).
  TS_RETURN_IF_ERROR_CTX(stage_conn_.Run(std::string(kTargetSessionSettings) +
                                         "; SET lock_timeout = '5s'; SET synchronous_commit = off"),
                         "configuring the staging session");
  SetToastCompression(stage_conn_, options_.toast_compression);
  return Status::Ok();
}

Status Applier::Impl::AwaitBulk() {
  if (!pending_bulk_.active) return Status::Ok();
  pending_bulk_.active = false;
  TS_RETURN_IF_ERROR(internal::FinishResults(conn_.get(), pending_bulk_.what));
  if (pending_bulk_.rows >= 10000) {
    spdlog::info("apply: {} of {} rows done {:.1f} s after it was sent ({:.1f} s staging, in "
                 "parallel with the previous chunk's{})",
                 pending_bulk_.what, pending_bulk_.rows,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                               pending_bulk_.sent)
                     .count(),
                 pending_bulk_.staging_secs,
                 pending_bulk_.unique_keys ? ", keys unique: no per-key sort" : "");
  }
  return Status::Ok();
}

StatusOr<bool> Applier::Impl::DropStages(PgConn& c) {
  // Every staging table of this pipeline: no live transaction is open when this runs, so they are
  // all finished with. One still locked (by the backend of a crashed bridge that has not noticed
  // yet) is left, and counted. The prefix is [a-z0-9_] only (SharedStagePrefix).
  const std::string stages =
      " FROM pg_class c WHERE c.relnamespace = '_tenantsync'::regnamespace AND c.relkind = 'r' "
      "AND starts_with(c.relname, '" + internal::SharedStagePrefix(options_.pipeline) + "')";
  TS_ASSIGN_OR_RETURN(
      PgResult r,
      c.Exec("DO $ts$ DECLARE r record; BEGIN PERFORM set_config('lock_timeout', '1000', true); "
             "FOR r IN SELECT c.oid::regclass::text AS t" + stages +
             " LOOP BEGIN EXECUTE 'DROP TABLE IF EXISTS ' || r.t; EXCEPTION WHEN "
             "lock_not_available THEN NULL; END; END LOOP; END $ts$; SELECT count(*)" + stages));
  return std::string(PQgetvalue(r.get(), 0, 0)) != "0";
}

void Applier::Impl::DropLiveStages() {
  if (!live_staged_) return;
  live_staged_ = false;
  if (!stage_conn_.connected()) return;
  auto left = DropStages(stage_conn_);
  stages_tried_ = std::chrono::steady_clock::now();
  if (left.ok()) {
    stages_left_ = *left;
  } else {
    stages_left_ = true;
    spdlog::warn("apply: could not drop staging tables ({}); tried again later",
                 left.status().ToString());
  }
}

// ---------------------------------------------------------------------------------------------

Applier::Applier(const Config& config, ApplyOptions options, state::StateStore* store,
                 const Cipher* cipher, PipelineStats* stats)
    : impl_(std::make_unique<Impl>(config, std::move(options), store, nullptr, cipher, stats)) {}
Applier::Applier(const Config& config, ApplyOptions options, state::StateStore* store,
                 state::Journal* journal, const Cipher* cipher, PipelineStats* stats)
    : impl_(std::make_unique<Impl>(config, std::move(options), store, journal, cipher, stats)) {}
Applier::~Applier() = default;
Status Applier::Run() { return impl_->Run(false); }
state::Journal& Applier::ReceiverJournal() { return impl_->ReceiverJournal(); }
Status Applier::ApplyAvailable() { return impl_->Run(true); }
void Applier::Stop() { impl_->Stop(); }
ApplyCounters Applier::Counters() const { return impl_->Counters(); }

}  // namespace tenantsync::apply
