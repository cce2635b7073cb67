#include "tests/harness/bridge_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "tests/harness/shell.h"

namespace tenantsync::testing {

std::string TenantsyncBinary(const char* built) {
  const char* env = std::getenv("TENANTSYNC_BINARY");
  return env && *env ? env : built;
}

BridgeProcess::BridgeProcess(std::string binary, std::string config, std::string log)
    : binary_(std::move(binary)), config_(std::move(config)), log_(std::move(log)) {}

BridgeProcess::~BridgeProcess() {
  if (pid_ > 0) Kill9();
}

void BridgeProcess::Start(const char* command) {
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(binary_.c_str(), binary_.c_str(), "-c", config_.c_str(), command,
          static_cast<char*>(nullptr));
    _exit(127);
  }
}

void BridgeProcess::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int st;
  waitpid(pid_, &st, 0);
  pid_ = -1;
}

int BridgeProcess::WaitExit(int seconds) {
  for (int i = 0; i < seconds * 10; ++i) {
    int st;
    if (pid_ > 0 && waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return -1000;
}

int BridgeProcess::Interrupt() {
  kill(pid_, SIGINT);
  int rc = WaitExit(60);
  if (rc == -1000) Kill9();
  return rc;
}

bool BridgeProcess::Exited() {
  int st;
  if (pid_ > 0 && waitpid(pid_, &st, WNOHANG) == pid_) {
    pid_ = -1;
    return true;
  }
  return pid_ <= 0;
}

std::string BridgeProcess::Log() const { return ReadAll(log_); }

std::string BridgeProcess::LogTail() const {
  std::string l = Log();
  return l.size() > 3000 ? l.substr(l.size() - 3000) : l;
}

}  // namespace tenantsync::testing
