// Process-wide logging setup. Code logs with spdlog directly (`spdlog::info("...")`); this only
// chooses the format once, in main, before any thread starts.
//
//   text (default): "2026-11-21 17:40:00.123 info  snapshot: orders copied"
//   json:           {"time":"2026-11-21T17:40:00.123456+00:00","level":"info","msg":"..."}
//                   one object per line; the message is JSON-escaped (invalid UTF-8 replaced).
//
// Logs go to stderr, so stdout stays for command output (`status --json`, reports).
// Never log a secret (DESIGN.md invariant 9): URLs go through MaskUrl (core/pg.h), values of
// encrypted columns and tenant secrets are not logged at all.
#pragma once

#include <string_view>

#include "core/status.h"

namespace tenantsync {

// `format`: "text" or "json". `level`: trace, debug, info, warn, error, critical or off.
// kInvalidArgument naming the flag when either is unknown.
Status InitLogging(std::string_view format, std::string_view level = "info");

}  // namespace tenantsync
