// A command run the way an operator runs it from a shell, with its stdout and stderr captured
// separately and its exit code: for the tests that assert what the `tenantsync` binary prints
// on which stream (bad_input_test, security_test, rotate_key_test, snapshot_test). For one
// combined stream use
// Shell() (tests/harness/shell.h); for a long-running `run` with a log, BridgeProcess.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace tenantsync::testing {

struct CommandResult {
  // The exit code; 128 + N when signal N ended the process; -1 when it was still running at the
  // timeout (then it was killed).
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
  double seconds = 0;  // wall time from start to exit (or to the kill)
};

// Starts `argv` (argv[0] a path) with `env` ("NAME=value") added to this process's environment
// and stdin inherited; stdout and stderr go to `dir`/stdout.txt and `dir`/stderr.txt (truncated,
// mode 0600). The child's pid; wait for it with WaitCaptured, or kill it first.
pid_t StartCaptured(const std::vector<std::string>& argv, const std::string& dir,
                    const std::vector<std::string>& env = {});

// Called with the child's pid every 50 ms while it runs (it may kill it: a test's fault).
using WhileRunning = std::function<void(pid_t)>;

// Waits for `pid` (from StartCaptured with the same `dir`), SIGKILLing it after `timeout`, and
// reads what it printed. `seconds` counts from this call.
CommandResult WaitCaptured(pid_t pid, const std::string& dir,
                           std::chrono::seconds timeout = std::chrono::seconds(300),
                           const WhileRunning& while_running = nullptr);

// StartCaptured then WaitCaptured. Not thread safe for one `dir` (the files are shared).
CommandResult RunCaptured(const std::vector<std::string>& argv, const std::string& dir,
                          const std::vector<std::string>& env = {},
                          std::chrono::seconds timeout = std::chrono::seconds(300),
                          const WhileRunning& while_running = nullptr);

}  // namespace tenantsync::testing
