// The ops commands: `status`, `lag`. Each returns the process exit code (0 ok, 1 failed) and
// prints errors as one line on stderr.
#pragma once

#include "core/config.h"

namespace tenantsync::ops {

// `status [--json]`: the figures of ops/status.h, from the servers and the state directory;
// works whether or not `run` is running in another process.
int StatusCommand(const Config& config, bool json);

// `lag [--watch] [--json]`: lag in seconds and bytes; --watch refreshes every second until
// Ctrl-C (a live view on a terminal, one line per second otherwise).
int LagCommand(const Config& config, bool watch, bool json);

// `dead-letters [--json]`: rows that could not be transformed or applied, oldest first, with
// table, key, phase, LSN and reason (never a value: DeadLetter holds none). Reads the state
// directory read-only, so it works while `run` holds it.
int DeadLettersCommand(const Config& config, bool json);

}  // namespace tenantsync::ops
