// Child process of apply_test's crash tests: applies a state directory's journal into a target,
// so that TENANTSYNC_KILL_POINT can abort() it without touching the test binary (whose harness
// shuts its clusters down on SIGABRT).
//   apply_crash_helper STATE_DIR TARGET_URL BATCH_MAX_TRANSACTIONS [early]
// ("early": early commits in every batch, ApplyOptions::EarlyCommits::kAlways)
// Exit 0 when everything journaled is applied, 1 with the error on stderr otherwise.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "apply/applier.h"
#include "core/config.h"
#include "state/state_store.h"

int main(int argc, char** argv) {
  using namespace tenantsync;
  if (argc != 4 && !(argc == 5 && std::string(argv[4]) == "early")) {
    std::fprintf(stderr,
                 "usage: apply_crash_helper STATE_DIR TARGET_URL BATCH_MAX_TRANSACTIONS [early]\n");
    return 2;
  }
  auto config = ConfigFromFlags("postgresql://unused@127.0.0.1:1/unused", argv[2], "rawdog");
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  state::StateOptions so;
  so.dir = argv[1];
  so.pipeline = "rawdog";
  auto store = state::StateStore::Open(so);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  apply::ApplyOptions o = apply::ApplyOptions::FromConfig(*config);
  o.batch_max_transactions = std::atoi(argv[3]);
  if (argc == 5) o.early_commits = apply::ApplyOptions::EarlyCommits::kAlways;
  apply::Applier applier(*config, o, store->get(), nullptr);
  Status s = applier.ApplyAvailable();
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
