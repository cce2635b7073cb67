#include "validate/internal/session.h"

#include <utility>

namespace tenantsync::validate::internal {

namespace {

constexpr const char* kPinnedSettings =
    "SET TimeZone TO 'UTC'; SET DateStyle TO 'ISO, YMD'; SET IntervalStyle TO 'postgres'; "
    "SET extra_float_digits TO 1; SET bytea_output TO 'hex'; "
    "SET default_transaction_read_only TO on; SET statement_timeout TO 0; "
    // Range aggregates group at most a few thousand ranges, but the planner guesses one group
    // per row; enough memory keeps the hash aggregate from planning spills.
    "SET work_mem TO '64MB'";

std::string Head(const std::string& sql) {
  std::string head = sql.substr(0, 60);
  for (char& c : head) {
    if (c == '\n') c = ' ';
  }
  return head;
}

}  // namespace

StatusOr<Session> Session::Open(const std::string& url, std::string side) {
  TS_ASSIGN_OR_RETURN(PgConn conn, PgConn::Connect(url, "tenantsync-validate"));
  Status s = conn.Run(kPinnedSettings);
  if (!s.ok()) return s.WithContext(side);
  return Session(std::move(conn), std::move(side));
}

void Session::Count(const PgResult& r) {
  if (!r.get()) return;
  for (int i = 0; i < r.rows(); ++i) {
    bytes_ += 4;  // per-row framing, roughly what the protocol adds
    for (int j = 0; j < r.columns(); ++j) bytes_ += PQgetlength(r.get(), i, j);
  }
}

StatusOr<PgResult> Session::Query(const std::string& sql, const Params& params) {
  auto r = params.empty() ? conn_.Exec(sql) : conn_.ExecParams(sql, params);
  if (!r.ok()) return r.status().WithContext(side_);
  Count(*r);
  return std::move(r).value();
}

Status Session::Send(const std::string& sql, const Params& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  if (!PQsendQueryParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                         values.data(), nullptr, nullptr, 0)) {
    return ConnectionError(side_ + ": cannot send query '" + Head(sql) + "': " + conn_.LastError());
  }
  return Status::Ok();
}

StatusOr<PgResult> Session::Finish(const std::string& sql) {
  PgResult result;
  // Drain every result so the connection is idle again; keep the first (there is one statement).
  bool first = true;
  while (PGresult* raw = PQgetResult(conn_.get())) {
    PgResult r(raw);
    if (first) {
      result = std::move(r);
      first = false;
    }
  }
  ExecStatusType st = result.get() ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    return StatusFromResult(conn_.get(), result.get(), side_ + ": query '" + Head(sql) + "'");
  }
  Count(result);
  return result;
}

StatusOr<BothResults> RunBoth(Session& source, const std::string& source_sql,
                              const Params& source_params, Session& target,
                              const std::string& target_sql, const Params& target_params) {
  TS_RETURN_IF_ERROR(source.Send(source_sql, source_params));
  Status sent = target.Send(target_sql, target_params);
  auto s = source.Finish(source_sql);  // always collect, so the source session stays usable
  if (!sent.ok()) return sent;
  auto t = target.Finish(target_sql);
  if (!s.ok()) return s.status();
  if (!t.ok()) return t.status();
  return BothResults{std::move(s).value(), std::move(t).value()};
}

std::string TextArrayLiteral(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

}  // namespace tenantsync::validate::internal
