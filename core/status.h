// Status and StatusOr<T>: every fallible call in tenantsync returns one of these.
//
// The codes are CDC-shaped (STYLE.md rule 3): a caller decides what to do from the code alone
// (retry a connection, stop on corruption, apply the drift policy on kSchemaChanged), and the
// message says, in one line, what is wrong and how to fix it. Messages never contain secrets
// (DESIGN.md invariant 9): build them from masked URLs and column names, never from values.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tenantsync {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // bad config, flags or input; fix the input and run again
  kConnection,          // a server is unreachable or the connection broke; retryable
  kCorruption,          // wire bytes or state bytes are not what they must be
  kSchemaChanged,       // a relation no longer matches the mapping
  kFailedPrecondition,  // the world is not in the state the command needs (wal_level, slot in use)
  kNotFound,            // a named thing (table, slot, checkpoint) does not exist
  kResourceExhausted,   // disk or journal limit reached
  kCancelled,           // stopped by a signal; not an error for the user
  kFatal,               // anything else: a bug or an unexpected server answer
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message, std::string sqlstate = {})
      : code_(code), message_(std::move(message)), sqlstate_(std::move(sqlstate)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // SQLSTATE of the server error behind this status, empty when there is none.
  const std::string& sqlstate() const { return sqlstate_; }
  bool IsRetryable() const { return code_ == StatusCode::kConnection; }

  // Returns a copy whose message is prefixed with `context: ` (abseil's "while loading orders").
  Status WithContext(std::string_view context) const;
  // "Corruption: journal record 0/16B3 is truncated" (no prefix for kInvalidArgument, whose
  // messages are written for users as they are).
  std::string ToString() const;

  // Deliberately drops the status; use only where ignoring it is right, and say why.
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string sqlstate_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status ConnectionError(std::string m, std::string sqlstate = {}) {
  return {StatusCode::kConnection, std::move(m), std::move(sqlstate)};
}
inline Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status SchemaChanged(std::string m) { return {StatusCode::kSchemaChanged, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status Fatal(std::string m, std::string sqlstate = {}) {
  return {StatusCode::kFatal, std::move(m), std::move(sqlstate)};
}

// A value or the Status saying why there is none. Never holds an OK status without a value.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& s) : v_(s) { assert(!s.ok()); }  // NOLINT: implicit by design
  StatusOr(Status&& s) : v_(std::move(s)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT
  StatusOr(const T& v) : v_(v) {}                                                   // NOLINT
  StatusOr(T&& v) : v_(std::move(v)) {}                                             // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  // REQUIRES: ok().
  T& value() & { assert(ok()); return std::get<T>(v_); }
  const T& value() const& { assert(ok()); return std::get<T>(v_); }
  T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace tenantsync

#define TS_CONCAT_INNER(a, b) a##b
#define TS_CONCAT(a, b) TS_CONCAT_INNER(a, b)

// Returns from the current function if `expr` is not OK.
#define TS_RETURN_IF_ERROR(expr)                            \
  do {                                                      \
    ::tenantsync::Status ts_status_ = (expr);               \
    if (!ts_status_.ok()) return ts_status_;                \
  } while (0)

// Like TS_RETURN_IF_ERROR, adding context to the message as the error rises.
#define TS_RETURN_IF_ERROR_CTX(expr, context)               \
  do {                                                      \
    ::tenantsync::Status ts_status_ = (expr);               \
    if (!ts_status_.ok()) return ts_status_.WithContext(context); \
  } while (0)

// `TS_ASSIGN_OR_RETURN(auto conn, PgConn::Connect(url));`
#define TS_ASSIGN_OR_RETURN(lhs, expr) \
  TS_ASSIGN_OR_RETURN_IMPL(TS_CONCAT(ts_statusor_, __LINE__), lhs, expr)
#define TS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
