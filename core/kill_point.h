// Kill points: named places where a crash test makes the process die on purpose (STYLE.md rule 10,
// RocksDB's kill points). A test sets TENANTSYNC_KILL_POINT=<name> in the environment of the
// process under test; when execution reaches KillPoint("<name>") the process calls abort() at once,
// without flushing or closing anything, exactly like a kill -9 at that instruction. Unset (the
// production case) costs one getenv per call, so put kill points at batch or transaction
// boundaries, not in per-row loops.
//
// Names are "<folder>.<place>", e.g. "apply.after_target_commit". Every kill point's name and
// what a crash there leaves behind is documented where it is placed.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace tenantsync {

inline void KillPoint(std::string_view name) {
  const char* want = std::getenv("TENANTSYNC_KILL_POINT");
  if (want == nullptr || name != want) return;
  std::fprintf(stderr, "tenantsync: kill point %s reached, aborting\n", want);
  std::abort();
}

}  // namespace tenantsync
