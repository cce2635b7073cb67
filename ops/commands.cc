#include "ops/commands.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

#include "ops/status.h"
#include "state/state_store.h"

namespace tenantsync::ops {

namespace {

std::atomic<bool> g_stop{false};

std::string LagLine(const StatusReport& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s  lag %.1f s  %llu bytes  applied %s  source %s  phase %s",
                r.pipeline.c_str(), r.lag_seconds, static_cast<unsigned long long>(r.lag_bytes),
                r.applied_lsn.ToString().c_str(), r.source_wal_lsn.ToString().c_str(),
                r.phase.c_str());
  return buf;
}

}  // namespace

int StatusCommand(const Config& config, bool json) {
  auto report = CollectStatus(config, nullptr);
  if (!report.ok()) {
    std::cerr << "tenantsync: " << report.status().ToString() << "\n";
    return 1;
  }
  if (json) {
    std::cout << ToJson(*report).dump(2) << "\n";
  } else {
    std::cout << ToText(*report);
  }
  return 0;
}

int LagCommand(const Config& config, bool watch, bool json) {
  StatusCollector collector(config, nullptr, nullptr);
  if (watch) {
    std::signal(SIGINT, [](int) { g_stop.store(true); });
    std::signal(SIGTERM, [](int) { g_stop.store(true); });
  }
  bool tty = isatty(STDOUT_FILENO) && !json;
  do {
    auto report = collector.Collect();
    if (!report.ok()) {
      std::cerr << "tenantsync: " << report.status().ToString() << "\n";
      return 1;
    }
    if (json) {
      nlohmann::json j = {{"pipeline", report->pipeline},
                          {"lag_seconds", report->lag_seconds},
                          {"lag_bytes", report->lag_bytes},
                          {"applied_lsn", report->applied_lsn.ToString()},
                          {"source_wal_lsn", report->source_wal_lsn.ToString()},
                          {"phase", report->phase}};
      std::cout << j.dump() << std::endl;
    } else if (tty && watch) {
      // Clear and redraw: a live view.
      std::cout << "\033[H\033[2J" << ToText(*report) << "\n(refreshing every second; Ctrl-C quits)"
                << std::endl;
    } else {
      std::cout << LagLine(*report) << std::endl;
    }
    if (!watch) break;
    for (int i = 0; i < 10 && !g_stop.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  } while (!g_stop.load());
  return 0;
}

int DeadLettersCommand(const Config& config, bool json) {
  auto store = state::StateStore::OpenReadOnly(config.state_dir);
  if (!store.ok()) {
    std::cerr << "tenantsync: " << store.status().ToString() << "\n";
    return 1;
  }
  nlohmann::json all = nlohmann::json::array();
  uint64_t after = 0, count = 0;
  if (!json) std::printf("%-6s %-10s %-24s %-20s %-12s %s\n", "id", "phase", "table", "key", "lsn", "reason");
  for (;;) {  // paged, so a long list never sits in memory at once
    auto page = (*store)->DeadLetters(after, 1000);
    if (!page.ok()) {
      std::cerr << "tenantsync: " << page.status().ToString() << "\n";
      return 1;
    }
    if (page->empty()) break;
    for (const auto& d : *page) {
      after = d.id;
      ++count;
      if (json) {
        all.push_back({{"id", d.id}, {"table", d.table}, {"key", d.key}, {"reason", d.reason},
                       {"phase", d.phase}, {"lsn", d.lsn.ToString()}, {"time_us", d.time_us}});
      } else {
        std::printf("%-6llu %-10s %-24s %-20s %-12s %s\n", static_cast<unsigned long long>(d.id),
                    d.phase.c_str(), d.table.c_str(), d.key.c_str(), d.lsn.ToString().c_str(),
                    d.reason.c_str());
      }
    }
  }
  if (json) {
    std::cout << all.dump(2) << "\n";
  } else {
    std::printf("%llu dead letter(s)\n", static_cast<unsigned long long>(count));
  }
  return 0;
}

}  // namespace tenantsync::ops
