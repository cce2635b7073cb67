#include "ops/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tenantsync::ops {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(MetricsTest, RendersFiguresFromReportAndLiveCounters) {
  StatusReport r;
  r.pipeline = "rawdog";
  r.phase = "streaming";
  r.lag_seconds = 1.5;
  r.lag_bytes = 4096;
  r.applied_lsn = Lsn(0x16B3748);
  r.slot_retained_wal_bytes = 123456;
  r.dead_letters = 2;
  PipelineStats live;
  live.transactions_applied = 42;
  live.AddRows("line \"items\"", "insert", 7);
  std::string text = RenderMetrics(r, &live);
  EXPECT_THAT(text, HasSubstr("# TYPE tenantsync_lag_seconds gauge\n"));
  EXPECT_THAT(text, HasSubstr("tenantsync_lag_seconds{pipeline=\"rawdog\"} 1.5\n"));
  EXPECT_THAT(text, HasSubstr("tenantsync_lag_bytes{pipeline=\"rawdog\"} 4096\n"));
  EXPECT_THAT(text, HasSubstr("tenantsync_applied_lsn{pipeline=\"rawdog\"} 23803720\n"));
  EXPECT_THAT(text, HasSubstr("tenantsync_slot_retained_wal_bytes{pipeline=\"rawdog\"} 123456\n"));
  EXPECT_THAT(text, HasSubstr("tenantsync_dead_letters_total{pipeline=\"rawdog\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("tenantsync_transactions_total{pipeline=\"rawdog\"} 42\n"));
  EXPECT_THAT(text, HasSubstr(
      "tenantsync_rows_total{pipeline=\"rawdog\",table=\"line \\\"items\\\"\",op=\"insert\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("tenantsync_phase{pipeline=\"rawdog\",phase=\"streaming\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tenantsync_phase{pipeline=\"rawdog\",phase=\"failed\"} 0\n"));
}

TEST(MetricsTest, EveryCounterEndsInTotalAndEverySampleHasAFamily) {
  StatusReport r;
  r.pipeline = "p";
  PipelineStats live;
  live.AddRows("t", "delete", 1);
  std::string text = RenderMetrics(r, &live);
  std::set<std::string> families;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      std::string name = rest.substr(0, rest.find(' '));
      std::string type = rest.substr(rest.find(' ') + 1);
      families.insert(name);
      if (type == "counter") {
        EXPECT_EQ(name.substr(name.size() - 6), "_total") << name;
      }
    } else if (!line.empty() && line[0] != '#') {
      std::string name = line.substr(0, line.find('{'));
      EXPECT_TRUE(families.count(name)) << "sample without # TYPE: " << line;
    }
  }
  EXPECT_GT(families.size(), 10u);
}

TEST(MetricsTest, NoLiveCountersWithoutLiveProcess) {
  StatusReport r;
  r.pipeline = "p";
  EXPECT_THAT(RenderMetrics(r, nullptr), Not(HasSubstr("tenantsync_rows_total")));
}

}  // namespace
}  // namespace tenantsync::ops
