// Session: a connection used by validate, with output settings pinned so that both servers print
// every value the same way (the checksum diff hashes printed rows), and a count of the result
// bytes moved to the client (the benchmark's "bytes moved" figure).
//
// Thread safety: one thread at a time, like the PgConn it owns.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/pg.h"
#include "core/status.h"

namespace tenantsync::validate::internal {

using Params = std::vector<std::optional<std::string>>;

class Session {
 public:
  // Connects and pins TimeZone UTC, DateStyle ISO, IntervalStyle postgres, extra_float_digits 1,
  // bytea_output hex, and a read-only, repeatable-read-free default (each query sees the newest
  // committed state: live checks rely on that). `side` ("source"/"target") names it in errors.
  static StatusOr<Session> Open(const std::string& url, std::string side);

  Session(Session&&) = default;
  Session& operator=(Session&&) = default;

  // Runs one statement with text parameters; counts the result bytes. Errors carry `side`.
  StatusOr<PgResult> Query(const std::string& sql, const Params& params = {});
  // Sends without waiting; Finish() collects the result. Lets the source and the target work
  // at the same time (RunBoth). REQUIRES: no other query in flight on this session.
  Status Send(const std::string& sql, const Params& params);
  StatusOr<PgResult> Finish(const std::string& sql);

  const std::string& side() const { return side_; }
  int64_t bytes() const { return bytes_; }
  PgConn& conn() { return conn_; }

 private:
  Session(PgConn conn, std::string side) : conn_(std::move(conn)), side_(std::move(side)) {}
  void Count(const PgResult& r);

  PgConn conn_;
  std::string side_;
  int64_t bytes_ = 0;
};

// Runs one query on each session concurrently (both servers work at once) and returns both
// results; the first error wins.
struct BothResults {
  PgResult source;
  PgResult target;
};
StatusOr<BothResults> RunBoth(Session& source, const std::string& source_sql,
                              const Params& source_params, Session& target,
                              const std::string& target_sql, const Params& target_params);

// A PostgreSQL array literal of text values: {"a","b\"c"} (NULL not supported: keys are never
// NULL). Pass it as a parameter and cast ($1::text[]).
std::string TextArrayLiteral(const std::vector<std::string>& values);

}  // namespace tenantsync::validate::internal
