#include "core/pg.h"

#include <charconv>
#include <regex>

namespace tenantsync {

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (r_) PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}

std::optional<std::string> PgResult::GetOptional(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return std::string(Get(row, col));
}

StatusOr<int64_t> PgResult::GetInt(int row, int col) const {
  std::string_view v = Get(row, col);
  int64_t out = 0;
  auto r = std::from_chars(v.data(), v.data() + v.size(), out);
  if (IsNull(row, col) || r.ec != std::errc() || r.ptr != v.data() + v.size()) {
    return Fatal("expected an integer from the server, got '" + std::string(v) + "'");
  }
  return out;
}

PgConn& PgConn::operator=(PgConn&& o) noexcept {
  if (this != &o) {
    if (c_) PQfinish(c_);
    c_ = o.c_;
    o.c_ = nullptr;
  }
  return *this;
}

PgBuffer& PgBuffer::operator=(PgBuffer&& o) noexcept {
  if (this != &o) reset(std::exchange(o.p_, nullptr));
  return *this;
}

void PgBuffer::reset(char* p) {
  if (p_) PQfreemem(p_);
  p_ = p;
}

namespace {

std::string OneLine(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

}  // namespace

StatusOr<PgConn> PgConn::Connect(const std::string& url, std::string_view application_name,
                                 bool replication) {
  std::vector<const char*> keys = {"dbname", "application_name", "connect_timeout"};
  std::string app(application_name);
  std::vector<const char*> values = {url.c_str(), app.c_str(), "10"};
  if (replication) {
    keys.push_back("replication");
    values.push_back("database");
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  // expand_dbname=1: the URL's own keys win over ours except those listed after it.
  PgConn conn(PQconnectdbParams(keys.data(), values.data(), 1));
  if (!conn.c_) return ConnectionError("out of memory connecting to " + MaskUrl(url));
  if (PQstatus(conn.c_) != CONNECTION_OK) {
    std::string err = OneLine(PQerrorMessage(conn.c_));
    // libpq's message may echo connection options but never the password.
    return ConnectionError("cannot connect to " + MaskUrl(url) + ": " + err +
                           "; check the URL, that the server is running, and pg_hba.conf");
  }
  return conn;
}

Status StatusFromResult(PGconn* conn, const PGresult* result, std::string_view what) {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string sqlstate = state ? state : "";
  std::string msg = OneLine(result ? PQresultErrorMessage(result) : PQerrorMessage(conn));
  if (msg.empty()) msg = OneLine(PQerrorMessage(conn));
  std::string text = std::string(what) + ": " + msg;
  bool gone = PQstatus(conn) != CONNECTION_OK || sqlstate.rfind("08", 0) == 0 ||
              sqlstate.rfind("57P", 0) == 0;
  if (gone) return ConnectionError(text, sqlstate);
  return Fatal(text, sqlstate);
}

namespace {

StatusOr<PgResult> Check(PGconn* conn, PgResult res, const std::string& sql) {
  ExecStatusType st = res.get() ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_IN ||
      st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH || st == PGRES_EMPTY_QUERY) {
    return res;
  }
  std::string head = sql.substr(0, 60);
  for (char& c : head) {
    if (c == '\n') c = ' ';
  }
  return StatusFromResult(conn, res.get(), "query '" + head + (sql.size() > 60 ? "...'" : "'"));
}

}  // namespace

StatusOr<PgResult> PgConn::Exec(const std::string& sql) {
  return Check(c_, PgResult(PQexec(c_, sql.c_str())), sql);
}

StatusOr<PgResult> PgConn::ExecParams(const std::string& sql,
                                      const std::vector<std::optional<std::string>>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  return Check(c_,
               PgResult(PQexecParams(c_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                     values.data(), nullptr, nullptr, 0)),
               sql);
}

Status PgConn::Run(const std::string& sql) {
  auto r = Exec(sql);
  return r.ok() ? Status() : r.status();
}

std::string PgConn::LastError() const { return c_ ? OneLine(PQerrorMessage(c_)) : "no connection"; }

std::string QuoteIdent(std::string_view ident) {
  std::string out;
  out.reserve(ident.size() + 2);
  out += '"';
  for (char c : ident) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string QuoteQualified(std::string_view schema, std::string_view table) {
  return QuoteIdent(schema) + "." + QuoteIdent(table);
}

std::string QuoteLiteral(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '\'';
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

std::string MaskUrl(std::string_view url) {
  std::string s(url);
  // URL form: scheme://user:password@host...
  static const std::regex kUrlPassword(R"(^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?]*):([^@/?]*)@)");
  s = std::regex_replace(s, kUrlPassword, "$1:****@");
  // Query-string or conninfo form: password=... (quoted or not).
  static const std::regex kKeyPassword(R"((password\s*=\s*)('([^'\\]|\\.)*'|[^&\s]*))",
                                       std::regex::icase);
  s = std::regex_replace(s, kKeyPassword, "$1****");
  return s;
}

}  // namespace tenantsync
