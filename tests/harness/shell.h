// Small process helpers shared by the tests that drive the tenantsync binary or other tools
// (promtool, chromium, pg_recvlogical). Header-only: ops/ unit tests use it without the harness.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

namespace tenantsync::testing {

// The whole file, or "" when it can not be read.
inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `cmd` under /bin/sh; {exit code, stdout and stderr together}. {-1, ""} when it can not start.
inline std::pair<int, std::string> Shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int rc = pclose(p);
  return {WEXITSTATUS(rc), out};
}

}  // namespace tenantsync::testing
