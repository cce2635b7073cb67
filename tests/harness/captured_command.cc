#include "tests/harness/captured_command.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "tests/harness/shell.h"

namespace tenantsync::testing {
namespace {

std::string OutPath(const std::string& dir) { return dir + "/stdout.txt"; }
std::string ErrPath(const std::string& dir) { return dir + "/stderr.txt"; }

}  // namespace

pid_t StartCaptured(const std::vector<std::string>& argv, const std::string& dir,
                    const std::vector<std::string>& env) {
  // Everything the child needs is built before fork(): only async-signal-safe calls after it.
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  std::vector<std::string> envs = env;
  const std::string out_path = OutPath(dir), err_path = ErrPath(dir);
  pid_t pid = fork();
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(out, 1);
    dup2(err, 2);
    for (auto& e : envs) putenv(e.data());
    execv(cargs[0], cargs.data());
    _exit(127);
  }
  return pid;
}

CommandResult WaitCaptured(pid_t pid, const std::string& dir, std::chrono::seconds timeout,
                           const WhileRunning& while_running) {
  using Clock = std::chrono::steady_clock;
  CommandResult r;
  const auto start = Clock::now();
  int st = 0;
  for (;;) {
    if (waitpid(pid, &st, WNOHANG) == pid) {
      r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (Clock::now() - start > timeout) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    if (while_running) while_running(pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.out = ReadAll(OutPath(dir));
  r.err = ReadAll(ErrPath(dir));
  return r;
}

CommandResult RunCaptured(const std::vector<std::string>& argv, const std::string& dir,
                          const std::vector<std::string>& env, std::chrono::seconds timeout,
                          const WhileRunning& while_running) {
  return WaitCaptured(StartCaptured(argv, dir, env), dir, timeout, while_running);
}

}  // namespace tenantsync::testing
