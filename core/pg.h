// Move-only owners for libpq handles (STYLE.md rule 4) and the few helpers every stage needs.
//
// Ownership is taken before anything is validated, so no path leaks a PGconn or PGresult.
// Destructors only free memory: PQfinish on a connection that is mid-COPY or mid-transaction
// closes the socket, and the server rolls the transaction back. No destructor runs SQL.
//
// Thread safety: a PgConn is used by one thread at a time (libpq's rule).
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tenantsync {

// Settings for every source session whose text output tenantsync reads (the snapshot's COPY
// sessions and the walsender that decodes the stream): ISO dates read the same way whatever the
// target's DateStyle order, `postgres` intervals, exact floats, hex bytea and UTC, so the
// snapshot and the stream write the same text for the same value (the transform engine sees one
// form) whatever the source server's, database's or role's defaults are. Without them a source
// with DateStyle 'SQL, DMY' streams 01/02/2026 for February 1st, which the target reads as
// January 2nd.
inline constexpr const char* kSourceOutputSettings =
    "SET datestyle = 'ISO, YMD'; SET intervalstyle = 'postgres'; SET extra_float_digits = 3; "
    "SET bytea_output = 'hex'; SET TimeZone = 'UTC'";

// Owns a PGresult*.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* r) : r_(r) {}
  PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult() { if (r_) PQclear(r_); }

  PGresult* get() const { return r_; }
  int rows() const { return r_ ? PQntuples(r_) : 0; }
  int columns() const { return r_ ? PQnfields(r_) : 0; }
  bool IsNull(int row, int col) const { return PQgetisnull(r_, row, col); }
  // Text value of a cell; "" for NULL (check IsNull where that matters).
  std::string_view Get(int row, int col) const {
    return {PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col))};
  }
  std::optional<std::string> GetOptional(int row, int col) const;
  // REQUIRES: the cell holds an integer (a COUNT, an OID). A malformed value is kFatal.
  StatusOr<int64_t> GetInt(int row, int col) const;

 private:
  PGresult* r_ = nullptr;
};

// Owns a PGconn*.
class PgConn {
 public:
  PgConn() = default;
  explicit PgConn(PGconn* c) : c_(c) {}
  PgConn(PgConn&& o) noexcept : c_(o.c_) { o.c_ = nullptr; }
  PgConn& operator=(PgConn&& o) noexcept;
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;
  ~PgConn() { if (c_) PQfinish(c_); }

  // Connects to `url` (a postgresql:// URL or key=value string). `replication` adds
  // replication=database for the walsender protocol. `application_name` shows in pg_stat_activity.
  // Errors are kConnection and name the masked URL, never the password.
  static StatusOr<PgConn> Connect(const std::string& url, std::string_view application_name,
                                  bool replication = false);

  PGconn* get() const { return c_; }
  bool connected() const { return c_ && PQstatus(c_) == CONNECTION_OK; }

  // Runs one or more statements without parameters; the last result must be a command
  // or tuples result. Server errors carry their SQLSTATE; connection loss is kConnection.
  StatusOr<PgResult> Exec(const std::string& sql);
  // Runs one statement with text parameters (nullopt = NULL).
  StatusOr<PgResult> ExecParams(const std::string& sql,
                                const std::vector<std::optional<std::string>>& params);
  // Exec that discards a successful result.
  Status Run(const std::string& sql);

  // The server's error message for the last failure on this connection, trimmed to one line.
  std::string LastError() const;

 private:
  PGconn* c_ = nullptr;
};

// Owns a buffer allocated by libpq (PQgetCopyData, PQescapeIdentifier, ...).
class PgBuffer {
 public:
  PgBuffer() = default;
  explicit PgBuffer(char* p) : p_(p) {}
  PgBuffer(PgBuffer&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  PgBuffer& operator=(PgBuffer&& o) noexcept;
  PgBuffer(const PgBuffer&) = delete;
  PgBuffer& operator=(const PgBuffer&) = delete;
  ~PgBuffer() { if (p_) PQfreemem(p_); }
  char* get() const { return p_; }
  void reset(char* p = nullptr);

 private:
  char* p_ = nullptr;
};

// "name" with embedded quotes doubled: safe for any identifier (quotes, spaces, unicode, case).
std::string QuoteIdent(std::string_view ident);
// schema.table, each part quoted.
std::string QuoteQualified(std::string_view schema, std::string_view table);
// 'text' with quotes doubled (standard_conforming_strings is on in every supported server).
std::string QuoteLiteral(std::string_view text);

// The URL or conninfo with any password replaced by "****" (DESIGN.md invariant 9).
std::string MaskUrl(std::string_view url);

// Turns a failed PGresult into a Status: kConnection when the connection is gone or the
// SQLSTATE is class 08 / 57P (admin shutdown, crash), kFatal otherwise, with SQLSTATE attached.
Status StatusFromResult(PGconn* conn, const PGresult* result, std::string_view what);

}  // namespace tenantsync
