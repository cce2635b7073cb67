#include "core/status.h"

namespace tenantsync {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "Invalid argument";
    case StatusCode::kConnection: return "Connection error";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kSchemaChanged: return "Schema changed";
    case StatusCode::kFailedPrecondition: return "Failed precondition";
    case StatusCode::kNotFound: return "Not found";
    case StatusCode::kResourceExhausted: return "Resource exhausted";
    case StatusCode::kCancelled: return "Cancelled";
    case StatusCode::kFatal: return "Fatal";
  }
  return "Unknown";
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_, sqlstate_);
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  if (code_ == StatusCode::kInvalidArgument) return message_;
  std::string s(StatusCodeName(code_));
  s += ": ";
  s += message_;
  if (!sqlstate_.empty()) s += " (SQLSTATE " + sqlstate_ + ")";
  return s;
}

}  // namespace tenantsync
