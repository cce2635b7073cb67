#include "snapshot/internal/chunk_copier.h"

#include <cstdlib>
#include <optional>

#include "core/kill_point.h"
#include "snapshot/internal/copy_binary.h"
#include "snapshot/internal/copy_text.h"

namespace tenantsync::snapshot::internal {

namespace {

constexpr size_t kFlushBytes = 256 << 10;
// Binary pass-through groups source rows into CopyData messages of about this size, like psql's
// COPY FROM STDIN (8 kB reads). Much larger messages made the copy slower: the target backend
// only starts on a message once all of it has arrived, so source, worker and target took turns
// instead of overlapping (256 kB: 2 streams into pgbench_accounts ~17% slower than one message
// per row).
constexpr size_t kBinaryMessageBytes = 8 << 10;
constexpr int64_t kProgressEveryRows = 4096;

std::string Tid(int64_t block) { return "'(" + std::to_string(block) + ",0)'::tid"; }

// The primary message of a failed result (no DETAIL: it may quote a whole row).
std::string PrimaryMessage(PGconn* conn, const PGresult* r) {
  const char* m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string out = m ? m : PQerrorMessage(conn);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  for (char& c : out) {
    if (c == '\n') c = ' ';
  }
  if (s) out += " (SQLSTATE " + std::string(s) + ")";
  return out;
}

bool IsCancelled(const std::atomic<bool>* cancel) { return cancel && cancel->load(); }

std::string SourceSql(const TablePlan& plan, const Chunk& chunk, const std::string& columns,
                      bool binary) {
  const std::string src = QuoteQualified(plan.source->schema, plan.source->name);
  std::string pred = ChunkPredicate(chunk);
  std::string sql = pred.empty()
                        ? "COPY " + src + " (" + columns + ") TO STDOUT"
                        : "COPY (SELECT " + columns + " FROM ONLY " + src + " WHERE " + pred +
                              ") TO STDOUT";
  if (binary) sql += " (FORMAT binary)";
  return sql;
}

std::string AllSourceColumns(const TablePlan& plan) {
  std::string out;
  for (const auto& c : plan.source_columns) {
    if (!out.empty()) out += ", ";
    out += QuoteIdent(c.name);
  }
  return out;
}

}  // namespace

std::string ChunkPredicate(const Chunk& chunk) {
  if (chunk.count <= 1) return "";
  std::string p;
  if (chunk.first_block > 0) p = "ctid >= " + Tid(chunk.first_block);
  if (chunk.end_block >= 0) p += std::string(p.empty() ? "" : " AND ") + "ctid < " + Tid(chunk.end_block);
  return p.empty() ? "true" : p;
}

Status ChunkCopier::DeadLetter(const TablePlan& plan, const Chunk& chunk, int64_t row_number,
                               const Tuple& row, const std::string& reason) {
  std::string key;
  for (int i : plan.key_source_indexes) {
    if (!key.empty()) key += ",";
    key += plan.source_columns[i].name + "=";
    int ti = plan.transform->TargetIndexOf(i);
    bool secret = ti >= 0 && plan.transform->target_columns()[ti].encrypted;
    if (secret) {
      key += "<encrypted>";
    } else if (i < static_cast<int>(row.size()) && row[i].kind == Datum::Kind::kText) {
      key += row[i].text;
    } else {
      key += "NULL";
    }
  }
  if (key.empty()) {
    key = "chunk " + std::to_string(chunk.index) + " row " + std::to_string(row_number);
  }
  if (env_.config->snapshot.on_error == ErrorPolicy::kAbort) {
    return InvalidArgument("table " + plan.source->name + " row " + key + ": " + reason +
                           "; the run stops because snapshot.on_error is abort (use dead_letter to "
                           "store such rows and continue)");
  }
  state::DeadLetter dl;
  dl.table = plan.source->name;
  dl.key = key;
  dl.reason = reason;
  dl.phase = "snapshot";
  dl.lsn = env_.consistent_lsn;
  TS_RETURN_IF_ERROR_CTX(env_.state->AddDeadLetter(std::move(dl)), "storing a dead letter");
  if (env_.stats) env_.stats->dead_letters.fetch_add(1);
  return Status::Ok();
}

Status ChunkCopier::CopyPass(const TablePlan& plan, const Chunk& chunk, TableProgress* progress,
                             Pass* pass) {
  const bool binary = plan.binary;
  const std::string tgt = QuoteQualified(env_.config->target.schema, plan.target_table);
  TS_RETURN_IF_ERROR(target_.Run("BEGIN"));
  bool freeze = false;
  if (chunk.whole_created_table) {
    // FREEZE needs the table truncated (or created) in this transaction. TRUNCATE of our own,
    // still empty table loses nothing; when it is refused (another role owns the table, or a
    // foreign key someone added points at it) the chunk is copied without FREEZE.
    freeze = target_
                 .Run("SAVEPOINT tenantsync_freeze; TRUNCATE " + tgt +
                      "; RELEASE SAVEPOINT tenantsync_freeze")
                 .ok();
    if (!freeze) TS_RETURN_IF_ERROR(target_.Run("ROLLBACK TO SAVEPOINT tenantsync_freeze"));
  }
  std::string options;
  if (binary) options = "FORMAT binary";
  if (freeze) options += options.empty() ? "FREEZE" : ", FREEZE";
  TS_RETURN_IF_ERROR_CTX(
      target_.Run("COPY " + tgt + " (" + plan.target_column_list + ") FROM STDIN" +
                  (options.empty() ? "" : " (" + options + ")")),
      "starting COPY into " + tgt);
  TS_RETURN_IF_ERROR_CTX(source_.Run(SourceSql(plan, chunk, plan.source_select_list, binary)),
                         "starting COPY out of " + plan.source->name);
  PGconn* src = source_.get();
  PGconn* dst = target_.get();
  const size_t ncols = plan.source_columns.size();
  std::optional<BinaryPaddingTrimmer> trimmer;
  if (binary && !plan.trim_padding.empty()) trimmer.emplace(plan.trim_padding);
  Tuple in, out;
  std::string buf;
  buf.reserve(kFlushBytes + 4096);
  int64_t unreported = 0;
  int64_t reported = 0;  // rows added to the progress counters so far
  bool put_failed = false;
  auto put = [&](const char* data, size_t n) {
    if (!put_failed && PQputCopyData(dst, data, static_cast<int>(n)) != 1) put_failed = true;
  };
  while (true) {
    char* raw = nullptr;
    int n = PQgetCopyData(src, &raw, 0);
    if (n < 0) break;
    PgBuffer owned(raw);
    pass->bytes += n;
    if (trimmer) {
      // Rows get shorter, never longer: buf stays near kBinaryMessageBytes.
      TS_RETURN_IF_ERROR_CTX(trimmer->Append({raw, static_cast<size_t>(n)}, &buf),
                             "reading " + plan.source->name);
      if (buf.size() >= kBinaryMessageBytes) {
        put(buf.data(), buf.size());
        buf.clear();
      }
      ++pass->rows;
    } else if (binary) {
      if (buf.size() + static_cast<size_t>(n) > kBinaryMessageBytes && !buf.empty()) {
        put(buf.data(), buf.size());
        buf.clear();
      }
      if (static_cast<size_t>(n) >= kBinaryMessageBytes) {
        put(raw, n);  // a large row goes as it is (buf keeps its small capacity)
      } else {
        buf.append(raw, static_cast<size_t>(n));
      }
      // A binary COPY message is one row, except the header (in the first) and the trailer.
      ++pass->rows;
    } else {
      TS_RETURN_IF_ERROR_CTX(ParseCopyTextRow({raw, static_cast<size_t>(n)}, ncols, &in),
                             "reading " + plan.source->name);
      Status st = plan.transform->Apply(in, &out, env_.context);
      if (!st.ok()) {
        ++pass->dead;
        TS_RETURN_IF_ERROR(DeadLetter(plan, chunk, pass->rows + pass->dead, in, st.message()));
      } else {
        AppendCopyTextRow(out, &buf);
        ++pass->rows;
        if (buf.size() >= kFlushBytes) {
          put(buf.data(), buf.size());
          buf.clear();
        }
      }
    }
    if (++unreported >= kProgressEveryRows) {
      progress->rows.fetch_add(unreported);
      if (env_.stats) env_.stats->snapshot_rows_done.fetch_add(unreported);
      reported += unreported;
      unreported = 0;
      if (IsCancelled(env_.cancel)) {
        PQputCopyEnd(dst, "cancelled");
        return Cancelled("snapshot cancelled");
      }
    }
  }
  // The source COPY's own result.
  {
    PgResult r(PQgetResult(src));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      return StatusFromResult(src, r.get(), "COPY out of " + plan.source->name);
    }
    while (PGresult* extra = PQgetResult(src)) PQclear(extra);
  }
  if (binary && pass->rows > 0) --pass->rows;  // the trailer message is not a row
  if (!buf.empty()) put(buf.data(), buf.size());
  if (PQputCopyEnd(dst, nullptr) != 1) put_failed = true;
  PgResult r(PQgetResult(dst));
  ExecStatusType st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK) {
    pass->target_failed = true;
    pass->target_status = StatusFromResult(dst, r.get(), "COPY into " + tgt);
    if (!pass->target_status.IsRetryable()) {
      pass->target_status =
          Fatal("COPY into " + tgt + " failed: " + PrimaryMessage(dst, r.get()),
                pass->target_status.sqlstate());
    }
  } else {
    const char* tuples = PQcmdTuples(r.get());
    if (tuples && *tuples) pass->rows = std::atoll(tuples);
  }
  while (PGresult* extra = PQgetResult(dst)) PQclear(extra);
  // The counters now show exactly pass->rows (binary messages were counted as rows in flight).
  progress->rows.fetch_add(pass->rows - reported);
  if (env_.stats) env_.stats->snapshot_rows_done.fetch_add(pass->rows - reported);
  if (put_failed && !pass->target_failed) {
    return ConnectionError("lost the target connection while copying " + plan.source->name);
  }
  return Status::Ok();
}

Status ChunkCopier::RowByRowPass(const TablePlan& plan, const Chunk& chunk,
                                 bool record_transform_failures, TableProgress* progress,
                                 Pass* pass) {
  const std::string tgt = QuoteQualified(env_.config->target.schema, plan.target_table);
  const size_t ntarget = plan.transform->target_columns().size();
  std::string values;
  for (size_t i = 0; i < ntarget; ++i) values += (i ? ", $" : "$") + std::to_string(i + 1);
  TS_RETURN_IF_ERROR(target_.Run("BEGIN"));
  std::string name = "tenantsync_row_" + std::to_string(++statement_counter_);
  {
    PgResult r(PQprepare(target_.get(), name.c_str(),
                         ("INSERT INTO " + tgt + " (" + plan.target_column_list +
                          ") OVERRIDING SYSTEM VALUE VALUES (" + values + ")")
                             .c_str(),
                         static_cast<int>(ntarget), nullptr));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      return StatusFromResult(target_.get(), r.get(), "preparing the row insert into " + tgt);
    }
  }
  TS_RETURN_IF_ERROR_CTX(
      source_.Run(SourceSql(plan, chunk, AllSourceColumns(plan), /*binary=*/false)),
      "starting COPY out of " + plan.source->name);
  PGconn* src = source_.get();
  Tuple in, out;
  std::vector<const char*> params(ntarget);
  int64_t row_number = 0;
  Status failure;
  while (true) {
    char* raw = nullptr;
    int n = PQgetCopyData(src, &raw, 0);
    if (n < 0) break;
    PgBuffer owned(raw);
    ++row_number;
    if (!failure.ok()) continue;  // drain the source COPY before returning
    pass->bytes += n;
    failure = ParseCopyTextRow({raw, static_cast<size_t>(n)}, plan.source_columns.size(), &in);
    if (!failure.ok()) continue;
    Status st = plan.transform->Apply(in, &out, env_.context);
    if (!st.ok()) {
      if (record_transform_failures) {
        ++pass->dead;
        failure = DeadLetter(plan, chunk, row_number, in, st.message());
      }
      continue;
    }
    for (size_t i = 0; i < ntarget; ++i) {
      params[i] = out[i].kind == Datum::Kind::kText ? out[i].text.c_str() : nullptr;
    }
    failure = target_.Run("SAVEPOINT tenantsync_row");
    if (!failure.ok()) continue;
    PgResult r(PQexecPrepared(target_.get(), name.c_str(), static_cast<int>(ntarget),
                              params.data(), nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) == PGRES_COMMAND_OK) {
      ++pass->rows;
      progress->rows.fetch_add(1);
      failure = target_.Run("RELEASE SAVEPOINT tenantsync_row");
    } else {
      std::string reason = "insert failed: " + PrimaryMessage(target_.get(), r.get());
      if (PQstatus(target_.get()) != CONNECTION_OK) {
        failure = ConnectionError("lost the target connection while copying " + plan.source->name);
        continue;
      }
      ++pass->dead;
      failure = target_.Run("ROLLBACK TO SAVEPOINT tenantsync_row");
      if (failure.ok()) failure = DeadLetter(plan, chunk, row_number, in, reason);
    }
  }
  PgResult r(PQgetResult(src));
  Status src_status = PQresultStatus(r.get()) == PGRES_COMMAND_OK
                          ? Status::Ok()
                          : StatusFromResult(src, r.get(), "COPY out of " + plan.source->name);
  while (PGresult* extra = PQgetResult(src)) PQclear(extra);
  target_.Run("DEALLOCATE " + name).IgnoreError();  // the statement only costs memory
  TS_RETURN_IF_ERROR(failure);
  return src_status;
}

Status ChunkCopier::Commit(const TablePlan& plan, const Chunk& chunk, const Pass& pass) {
  TS_RETURN_IF_ERROR_CTX(
      target_.ExecParams("INSERT INTO _tenantsync.snapshot_chunks (pipeline, table_name, chunk, "
                         "chunk_count, rows, bytes, dead_letters, snapshot_name) "
                         "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                         {env_.config->pipeline, plan.source->name, std::to_string(chunk.index),
                          std::to_string(chunk.count), std::to_string(pass.rows),
                          std::to_string(pass.bytes), std::to_string(pass.dead),
                          env_.snapshot_name})
          .status(),
      "recording chunk " + std::to_string(chunk.index) + " of " + plan.source->name);
  TS_RETURN_IF_ERROR(target_.Run("COMMIT"));
  // Kill point: the chunk is committed in the target but not yet mirrored in the state store.
  // A resumed run must skip it (the target marker is the truth).
  KillPoint("snapshot.after_chunk_commit");
  char key[32];
  std::snprintf(key, sizeof key, "/%06d", chunk.index);
  return env_.state->PutMeta(std::string("snapshot/chunk/") + plan.source->name + key,
                             std::to_string(pass.rows), /*sync=*/true);
}

Status ChunkCopier::Copy(const TablePlan& plan, const Chunk& chunk, TableProgress* progress) {
  Pass pass;
  Status st = CopyPass(plan, chunk, progress, &pass);
  if (!st.ok() || pass.target_failed) {
    progress->rows.fetch_sub(pass.rows);
    target_.Run("ROLLBACK").IgnoreError();  // the connection may be gone; the server rolls back
  }
  TS_RETURN_IF_ERROR(st);
  if (pass.target_failed) {
    if (pass.target_status.IsRetryable() ||
        env_.config->snapshot.on_error == ErrorPolicy::kAbort) {
      return pass.target_status.WithContext("table " + plan.source->name + " chunk " +
                                            std::to_string(chunk.index));
    }
    // Isolate the rows the target rejects. Transform failures were stored by the first pass
    // unless it was the binary one.
    Pass again;
    Status rb = RowByRowPass(plan, chunk, /*record_transform_failures=*/plan.binary, progress, &again);
    if (!rb.ok()) {
      progress->rows.fetch_sub(again.rows);
      target_.Run("ROLLBACK").IgnoreError();
      return rb.WithContext("table " + plan.source->name + " chunk " + std::to_string(chunk.index));
    }
    again.dead += plan.binary ? 0 : pass.dead;
    pass = again;
  }
  progress->bytes.fetch_add(pass.bytes);
  progress->dead_letters.fetch_add(pass.dead);
  return Commit(plan, chunk, pass);
}

}  // namespace tenantsync::snapshot::internal
