// GoogleTest helpers for Status and StatusOr (abseil's status_matchers, trimmed).
//
//   ASSERT_OK(cluster.Exec(db, "CREATE TABLE t (id int)"));
//   ASSERT_OK_AND_ASSIGN(int64_t n, cluster.QueryInt(db, "SELECT count(*) FROM t"));
//   EXPECT_THAT(LoadRawdog(url, 1), StatusIs(StatusCode::kFailedPrecondition,
//                                            HasSubstr("already has RAWDOG table")));
//
// Assert the specific code and message of an error (STYLE.md), never a bare "not ok".
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <utility>

#include "core/status.h"

namespace tenantsync::testing {

inline Status GetStatus(const Status& s) { return s; }
template <typename T>
Status GetStatus(const StatusOr<T>& s) {
  return s.status();
}

// Matches a Status or StatusOr whose code is `code` and whose message matches `message`
// (a string or a matcher such as HasSubstr("slot")).
MATCHER_P2(StatusIs, code, message, "") {
  const ::tenantsync::Status st = ::tenantsync::testing::GetStatus(arg);
  if (st.code() != code) {
    *result_listener << "whose status is " << st.ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(::testing::MatcherCast<const std::string&>(message),
                                       st.message(), result_listener);
}

MATCHER(IsOk, "is OK") {
  const ::tenantsync::Status st = ::tenantsync::testing::GetStatus(arg);
  if (!st.ok()) *result_listener << "whose status is " << st.ToString();
  return st.ok();
}

}  // namespace tenantsync::testing

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::tenantsync::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::tenantsync::testing::IsOk())

// `ASSERT_OK_AND_ASSIGN(auto conn, cluster.Connect(db));` fails the test on error.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(TS_CONCAT(ts_assert_statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)                    \
  auto tmp = (expr);                                                 \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status().ToString(); \
  lhs = std::move(tmp).value()
