// The `tenantsync` binary as a child process, the way an operator or a supervisor runs it:
// `tenantsync -c CONFIG <command>`, stdout and stderr appended to a log file. For the end-to-end,
// fault and cutover tests.
#pragma once

#include <sys/types.h>

#include <string>

namespace tenantsync::testing {

// The binary under test: $TENANTSYNC_BINARY, else the path the build compiled in (the test's
// TENANTSYNC_BINARY_PATH definition, passed as `built`).
std::string TenantsyncBinary(const char* built);

class BridgeProcess {
 public:
  BridgeProcess(std::string binary, std::string config, std::string log);
  ~BridgeProcess();  // SIGKILL if still running
  BridgeProcess(const BridgeProcess&) = delete;
  BridgeProcess& operator=(const BridgeProcess&) = delete;

  void Start(const char* command = "run");
  void Kill9();
  // SIGINT, then the exit code (or -signal); -1000 when it did not exit within 60 s (then killed).
  int Interrupt();
  // Waits for the process to exit by itself: its exit code (or -signal); -1000 after `seconds`.
  int WaitExit(int seconds);
  bool Exited();
  pid_t pid() const { return pid_; }
  std::string Log() const;
  std::string LogTail() const;  // the last 3,000 characters

 private:
  std::string binary_, config_, log_;
  pid_t pid_ = -1;
};

}  // namespace tenantsync::testing
