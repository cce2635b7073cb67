#include "apply/internal/pipelined_session.h"

#include <cstdlib>
#include <cstring>

namespace tenantsync::apply::internal {

Status ErrorFromResult(PGconn* conn, const PGresult* res, const std::string& what) {
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  std::string sqlstate = state ? state : "";
  std::string msg = primary ? primary : PQerrorMessage(conn);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  for (char& c : msg) {
    if (c == '\n') c = ' ';
  }
  // The SQLSTATE travels in the Status (its ToString prints it once).
  std::string text = what + ": " + msg;
  bool gone = PQstatus(conn) != CONNECTION_OK || sqlstate.rfind("08", 0) == 0 ||
              sqlstate.rfind("57P", 0) == 0;
  if (gone) return ConnectionError(text, sqlstate);
  return Fatal(text, sqlstate);
}

uint64_t RowsNotFound(PGresult* res, int64_t update_rows) {
  if (update_rows <= 0) return 0;
  const int64_t found = std::strtoll(PQcmdTuples(res), nullptr, 10);
  return found < update_rows ? static_cast<uint64_t>(update_rows - found) : 0;
}

Status FinishResults(PGconn* conn, const std::string& what) {
  Status s;
  for (;;) {
    PgResult r(PQgetResult(conn));
    if (!r.get()) break;
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK && s.ok()) {
      s = ErrorFromResult(conn, r.get(), what);
    }
  }
  return s;
}

Status PipelinedSession::ConnectionLost(const char* what) {
  active_ = false;
  queue_.clear();
  unsynced_ = 0;
  groups_in_flight_ = 0;
  return ConnectionError(std::string(what) + ": " + conn_->LastError());
}

Status PipelinedSession::Enter() {
  if (active_) return Status::Ok();
  if (PQenterPipelineMode(conn_->get()) != 1) return ConnectionLost("entering pipeline mode");
  active_ = true;
  return Status::Ok();
}

Status PipelinedSession::SendPrepare(const std::string& name, const std::string& sql) {
  if (PQsendPrepare(conn_->get(), name.c_str(), sql.c_str(), 0, nullptr) != 1) {
    return ConnectionLost("queueing a prepare");
  }
  queue_.push_back({Entry::kStatement, 0});
  ++unsynced_;
  return Status::Ok();
}

Status PipelinedSession::SendPrepared(const std::string& name,
                                      const std::vector<const char*>& values,
                                      const std::vector<int>& lengths, int64_t update_rows,
                                      const std::vector<int>* formats) {
  if (PQsendQueryPrepared(conn_->get(), name.c_str(), static_cast<int>(values.size()),
                          values.data(), lengths.data(), formats ? formats->data() : nullptr,
                          0) != 1) {
    return ConnectionLost("queueing a statement");
  }
  queue_.push_back({Entry::kStatement, update_rows});
  ++unsynced_;
  return Status::Ok();
}

Status PipelinedSession::SendQuery(const std::string& sql) {
  if (PQsendQueryParams(conn_->get(), sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) != 1) {
    return ConnectionLost("queueing a statement");
  }
  queue_.push_back({Entry::kStatement, 0});
  ++unsynced_;
  return Status::Ok();
}

Status PipelinedSession::Sync() {
  if (PQpipelineSync(conn_->get()) != 1) return ConnectionLost("sending a pipeline sync");
  queue_.push_back({Entry::kSync, 0});
  unsynced_ = 0;
  ++groups_in_flight_;
  return Status::Ok();
}

Status PipelinedSession::MaybeSync(int statements_per_sync) {
  if (unsynced_ < statements_per_sync) return Status::Ok();
  TS_RETURN_IF_ERROR(Sync());
  // Keep one group in flight while the next is being queued; read the older one.
  while (groups_in_flight_ > 1) TS_RETURN_IF_ERROR(ReadOneGroup());
  return Status::Ok();
}

void PipelinedSession::NoteError(const PGresult* res) {
  if (!first_error_.ok()) return;
  first_error_ = ErrorFromResult(conn_->get(), res, "target statement failed");
}

Status PipelinedSession::ReadOneGroup() {
  PGconn* c = conn_->get();
  while (!queue_.empty()) {
    const Queued e = queue_.front();
    queue_.pop_front();
    if (e.kind == Entry::kSync) {
      PgResult res(PQgetResult(c));
      if (!res.get()) return ConnectionLost("reading a pipeline sync");
      if (PQresultStatus(res.get()) != PGRES_PIPELINE_SYNC) {
        return ConnectionLost("pipeline out of step (expected a sync)");
      }
      --groups_in_flight_;
      return Status::Ok();
    }
    // One statement: its results, then NULL.
    bool got_any = false;
    for (;;) {
      PgResult res(PQgetResult(c));
      if (!res.get()) break;
      got_any = true;
      ExecStatusType st = PQresultStatus(res.get());
      if (st == PGRES_FATAL_ERROR) {
        NoteError(res.get());
        if (PQstatus(c) != CONNECTION_OK) return ConnectionLost("target connection lost");
      } else if (st == PGRES_PIPELINE_ABORTED) {
        // Skipped because an earlier statement of this group failed; first_error_ has it.
      } else if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        zero_row_updates_ += RowsNotFound(res.get(), e.update_rows);
      } else {
        NoteError(res.get());
      }
    }
    if (!got_any && PQstatus(c) != CONNECTION_OK) return ConnectionLost("target connection lost");
  }
  return Status::Ok();
}

Status PipelinedSession::Flush() {
  if (PQflush(conn_->get()) != 0) return ConnectionLost("sending to the target");
  return Status::Ok();
}

Status PipelinedSession::Drain() {
  if (!active_) return Status::Ok();
  if (unsynced_ > 0 || (!queue_.empty() && queue_.back().kind != Entry::kSync))
    TS_RETURN_IF_ERROR(Sync());
  while (groups_in_flight_ > 0) TS_RETURN_IF_ERROR(ReadOneGroup());
  return first_error_;
}

Status PipelinedSession::DrainAndExit() {
  Status drained = Drain();
  if (drained.IsRetryable()) return drained;
  Status err = first_error_;
  first_error_ = Status::Ok();
  if (active_) {
    if (PQexitPipelineMode(conn_->get()) != 1) return ConnectionLost("leaving pipeline mode");
    active_ = false;
  }
  return err;
}

}  // namespace tenantsync::apply::internal
