// A target connection in libpq pipeline mode: statements are queued without waiting for their
// results, a sync point is set every few thousand statements, and results are read one sync group
// behind, so the server works while the applier transforms the next changes.
//
// Error model: the first statement error of the current run is remembered (with its SQLSTATE and
// the server's primary message only: the DETAIL line can echo row values) and every later result
// up to the sync is skipped by the server (PGRES_PIPELINE_ABORTED); Drain() returns that first
// error. The caller then leaves pipeline mode, rolls back and isolates the failing change
// statement by statement (apply/applier.cc). A broken connection is kConnection from any call.
//
// Memory: at most two sync groups are unread; libpq buffers their small command results.
// Thread safety: one thread, like the PgConn it borrows.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "core/pg.h"
#include "core/status.h"

namespace tenantsync::apply::internal {

class PipelinedSession {
 public:
  // `conn` must outlive this object and be connected.
  explicit PipelinedSession(PgConn* conn) : conn_(conn) {}

  // Enters pipeline mode; a no-op when already in it.
  Status Enter();
  // Reads every pending result (syncing first), then leaves pipeline mode. Returns the first
  // error of the run (then the session is out of pipeline mode and the error is cleared).
  Status DrainAndExit();
  bool active() const { return active_; }

  // Queues PREPARE `name` AS `sql`.
  Status SendPrepare(const std::string& name, const std::string& sql);
  // Queues EXECUTE `name` with parameters (nullptr = NULL), text unless `formats` (one per
  // value, 1 = binary) says otherwise. `update_rows` > 0: the statement updates that many rows by
  // key; those it did not find count in zero_row_updates().
  Status SendPrepared(const std::string& name, const std::vector<const char*>& values,
                      const std::vector<int>& lengths, int64_t update_rows,
                      const std::vector<int>* formats = nullptr);
  // Queues one statement without parameters.
  Status SendQuery(const std::string& sql);
  // Sets a sync point when at least `statements_per_sync` statements are queued since the last.
  Status MaybeSync(int statements_per_sync);
  // Sets a sync point and reads every result up to it. Returns the first error of the run.
  Status Drain();
  // Sends what is queued to the server now (libpq holds it until its buffer fills otherwise),
  // without a sync point and without reading anything: the server starts on it at once.
  Status Flush();

  // Rows that updates by key did not find (skipped, as native logical replication does).
  uint64_t zero_row_updates() const { return zero_row_updates_; }

 private:
  enum class Entry : uint8_t { kStatement, kSync };
  struct Queued {
    Entry kind;
    int64_t update_rows;  // SendPrepared's
  };
  Status Sync();
  // Reads the results of the oldest queued entries up to and including one sync point.
  Status ReadOneGroup();
  void NoteError(const PGresult* res);
  Status ConnectionLost(const char* what);

  PgConn* conn_;
  bool active_ = false;
  std::deque<Queued> queue_;
  int unsynced_ = 0;          // statements queued since the last sync
  int groups_in_flight_ = 0;  // syncs queued whose results are unread
  Status first_error_;
  uint64_t zero_row_updates_ = 0;
};

// The server's primary message and SQLSTATE of a failed result, without DETAIL/HINT (which can
// echo row values: DESIGN.md invariant 9).
Status ErrorFromResult(PGconn* conn, const PGresult* res, const std::string& what);
// Rows of an UPDATE meant for `update_rows` rows (by key) that its result says it did not find.
uint64_t RowsNotFound(PGresult* res, int64_t update_rows);
// Reads every result of what was sent on `conn` until none is left (the connection is free
// again): the first failed one as ErrorFromResult(`what`), or OK.
Status FinishResults(PGconn* conn, const std::string& what);

}  // namespace tenantsync::apply::internal
