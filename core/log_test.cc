#include "core/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

namespace tenantsync {
namespace {

using ::testing::HasSubstr;

TEST(LogTest, JsonLinesAreValidJsonWithEscapedMessage) {
  ASSERT_TRUE(InitLogging("json", "info").ok());
  ::testing::internal::CaptureStderr();
  spdlog::info("copied \"orders\"\nnext line \xff");
  spdlog::debug("below the level");
  std::string out = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  nlohmann::json line = nlohmann::json::parse(out);
  EXPECT_EQ(line["level"], "info");
  EXPECT_THAT(line["msg"].get<std::string>(), HasSubstr("copied \"orders\"\nnext line"));
  EXPECT_TRUE(line.contains("time"));
}

TEST(LogTest, TextIsTheDefaultFormat) {
  ASSERT_TRUE(InitLogging("text").ok());
  ::testing::internal::CaptureStderr();
  spdlog::warn("lag is high");
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr("warn"));
  EXPECT_THAT(out, HasSubstr("lag is high"));
}

TEST(LogTest, UnknownFormatIsRejected) {
  Status s = InitLogging("xml");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--log-format"));
}

TEST(LogTest, UnknownLevelIsRejected) {
  Status s = InitLogging("text", "loud");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--log-level"));
}

}  // namespace
}  // namespace tenantsync
