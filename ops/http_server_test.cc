#include "ops/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast.hpp>

namespace tenantsync::ops {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

struct Reply {
  int status;
  std::string body;
};

Reply Get(uint16_t port, const std::string& target, const std::string& authorization = "") {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!authorization.empty()) req.set(http::field::authorization, authorization);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return {static_cast<int>(res.result_int()), res.body()};
}

HttpHandler Echo() {
  return [](const std::string& path, const std::string& query) {
    return HttpResponse{200, "text/plain", "path=" + path + " query=" + query};
  };
}

TEST(HttpServerTest, ServesHandlerOnAFreeLoopbackPort) {
  auto server = HttpServer::Start("127.0.0.1:0", "", Echo());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_NE((*server)->port(), 0);
  Reply r = Get((*server)->port(), "/status?x=1");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "path=/status query=x=1");
}

TEST(HttpServerTest, TokenRequiredEverywhereButHealthz) {
  auto server = HttpServer::Start("127.0.0.1:0", "s3cret-token", Echo());
  ASSERT_TRUE(server.ok());
  uint16_t port = (*server)->port();
  EXPECT_EQ(Get(port, "/metrics").status, 401);
  EXPECT_EQ(Get(port, "/metrics", "Bearer wrong").status, 401);
  EXPECT_EQ(Get(port, "/metrics", "Bearer s3cret-token").status, 200);
  EXPECT_EQ(Get(port, "/?access_token=s3cret-token").status, 200);
  EXPECT_EQ(Get(port, "/?access_token=s3cret").status, 401);
  EXPECT_EQ(Get(port, "/healthz").status, 200);
  EXPECT_THAT(Get(port, "/metrics").body, ::testing::Not(::testing::HasSubstr("s3cret")));
}

TEST(HttpServerTest, RejectsMalformedListenAddress) {
  for (const char* bad : {"9753", "localhost:9753", "127.0.0.1:", "127.0.0.1:99999", ":80"}) {
    auto server = HttpServer::Start(bad, "", Echo());
    ASSERT_FALSE(server.ok()) << bad;
    EXPECT_EQ(server.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(server.status().message(), ::testing::HasSubstr("ops.listen")) << bad;
  }
}

TEST(HttpServerTest, AddressInUseIsClearError) {
  auto first = HttpServer::Start("127.0.0.1:0", "", Echo());
  ASSERT_TRUE(first.ok());
  auto second = HttpServer::Start("127.0.0.1:" + std::to_string((*first)->port()), "", Echo());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), ::testing::HasSubstr("ops.listen"));
}

TEST(HttpServerTest, TokenEqualsIsExact) {
  EXPECT_TRUE(TokenEquals("abc", "abc"));
  EXPECT_FALSE(TokenEquals("abc", "abd"));
  EXPECT_FALSE(TokenEquals("abc", "abcd"));
  EXPECT_FALSE(TokenEquals("", "a"));
}

}  // namespace
}  // namespace tenantsync::ops
