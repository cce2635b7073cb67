// Checks the shipped ops files against the code: the alert rules pass `promtool check rules` and
// their own `promtool test rules`, and every tenantsync metric the rules and the Grafana dashboard
// use is one that RenderMetrics actually exports.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "ops/metrics.h"
#include "tests/harness/shell.h"

namespace tenantsync::ops {
namespace {

using ::tenantsync::testing::ReadAll;
using ::tenantsync::testing::Shell;

std::string SourceDir() {
  const char* dir = std::getenv("TENANTSYNC_SOURCE_DIR");
  return dir ? dir : ".";
}



std::set<std::string> ExportedMetricNames() {
  StatusReport r;
  r.pipeline = "p";
  PipelineStats live;
  live.AddRows("t", "insert", 1);
  std::string text = RenderMetrics(r, &live);
  std::set<std::string> names;
  std::regex type_line("# TYPE (\\S+) ");
  for (std::sregex_iterator it(text.begin(), text.end(), type_line), end; it != end; ++it) {
    names.insert((*it)[1]);
  }
  return names;
}

std::set<std::string> UsedMetricNames(const std::string& text) {
  std::set<std::string> names;
  std::regex metric("tenantsync_[a-z_]+");
  for (std::sregex_iterator it(text.begin(), text.end(), metric), end; it != end; ++it) {
    names.insert(it->str());
  }
  return names;
}

TEST(OpsArtifactsTest, AlertRulesPassPromtoolCheckAndTheirTests) {
  std::string dir = SourceDir() + "/ops/prometheus";
  auto [rc, out] = Shell("promtool check rules " + dir + "/tenantsync-alerts.yml");
  EXPECT_EQ(rc, 0) << out;
  std::tie(rc, out) = Shell("cd " + dir + " && promtool test rules tenantsync-alerts_test.yml");
  EXPECT_EQ(rc, 0) << out;
}

TEST(OpsArtifactsTest, RulesAndDashboardUseOnlyExportedMetrics) {
  std::set<std::string> exported = ExportedMetricNames();
  std::string rules = ReadAll(SourceDir() + "/ops/prometheus/tenantsync-alerts.yml");
  std::string dashboard_text = ReadAll(SourceDir() + "/ops/grafana/tenantsync-dashboard.json");
  ASSERT_FALSE(rules.empty());
  ASSERT_FALSE(dashboard_text.empty());
  nlohmann::json dashboard = nlohmann::json::parse(dashboard_text);  // throws on bad JSON
  std::string exprs;
  for (const auto& panel : dashboard["panels"]) {
    for (const auto& target : panel["targets"]) exprs += target["expr"].get<std::string>() + "\n";
  }
  EXPECT_GE(dashboard["panels"].size(), 6u);
  for (const std::string& text : {rules, exprs}) {
    for (const std::string& name : UsedMetricNames(text)) {
      EXPECT_TRUE(exported.count(name)) << name << " is used but not exported";
    }
  }
  // The metrics the issue names are all there.
  for (const char* name : {"tenantsync_lag_seconds", "tenantsync_lag_bytes", "tenantsync_applied_lsn",
                           "tenantsync_transactions_total", "tenantsync_rows_total",
                           "tenantsync_dead_letters_total", "tenantsync_slot_retained_wal_bytes",
                           "tenantsync_journal_bytes", "tenantsync_build_info"}) {
    EXPECT_TRUE(exported.count(name)) << name;
  }
}

TEST(OpsArtifactsTest, RenderedMetricsPassPromtoolLint) {
  StatusReport r;
  r.pipeline = "rawdog";
  r.phase = "streaming";
  PipelineStats live;
  live.AddRows("line_items", "insert", 3);
  live.AddRows("odd \"name\"\n", "update", 1);
  // A file of its own (concurrent runs share the temp directory), removed afterwards.
  std::string path = ::testing::TempDir() + "/tenantsync-metrics-XXXXXX";
  int fd = mkstemp(path.data());
  ASSERT_GE(fd, 0) << path;
  close(fd);
  std::ofstream(path) << RenderMetrics(r, &live);
  auto [rc, out] = Shell("promtool check metrics < " + path);
  std::remove(path.c_str());
  EXPECT_EQ(rc, 0) << out;
}

}  // namespace
}  // namespace tenantsync::ops
