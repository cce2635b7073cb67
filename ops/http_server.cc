#include "ops/http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <thread>

namespace tenantsync::ops {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

bool TokenEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

namespace {

std::string QueryParam(const std::string& query, const std::string& name) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    std::string part = query.substr(pos, amp - pos);
    if (part.rfind(name + "=", 0) == 0) return part.substr(name.size() + 1);
    pos = amp + 1;
  }
  return {};
}

struct Shared {
  std::string token;
  HttpHandler handler;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<const Shared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)) {}

  void Read() {
    request_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec) return Close();
    std::string target(request_.target());
    std::string path = target.substr(0, target.find('?'));
    std::string query = path.size() < target.size() ? target.substr(path.size() + 1) : "";
    HttpResponse out;
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      out = {405, "text/plain; charset=utf-8", "only GET is supported\n"};
    } else if (!shared_->token.empty() && path != "/healthz" && !Authorized(query)) {
      out = {401, "text/plain; charset=utf-8",
             "missing or wrong bearer token: send 'Authorization: Bearer <ops.token>'\n"};
    } else {
      out = shared_->handler(path, query);
    }
    response_ = {};
    response_.version(request_.version());
    response_.result(static_cast<http::status>(out.status));
    response_.set(http::field::server, "tenantsync");
    response_.set(http::field::content_type, out.content_type);
    response_.set(http::field::cache_control, "no-store");
    if (out.status == 401) response_.set(http::field::www_authenticate, "Bearer");
    response_.keep_alive(request_.keep_alive());
    response_.body() = std::move(out.body);
    response_.prepare_payload();
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec || !self->response_.keep_alive()) return self->Close();
                        self->Read();
                      });
  }

  bool Authorized(const std::string& query) const {
    auto it = request_.find(http::field::authorization);
    if (it != request_.end()) {
      std::string value(it->value());
      return value.rfind("Bearer ", 0) == 0 && TokenEquals(value.substr(7), shared_->token);
    }
    std::string param = QueryParam(query, "access_token");
    return !param.empty() && TokenEquals(param, shared_->token);
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  std::shared_ptr<const Shared> shared_;
};

}  // namespace

class HttpServer::Impl {
 public:
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::shared_ptr<const Shared> shared;
  std::thread thread;
  std::atomic<bool> stopped{false};
  uint16_t port = 0;

  void Accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == asio::error::operation_aborted) return;
      } else {
        std::make_shared<Session>(std::move(socket), shared)->Read();
      }
      Accept();
    });
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                        std::string token, HttpHandler handler) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    return InvalidArgument("ops.listen '" + listen + "' is not host:port; write e.g. 127.0.0.1:9753");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    return InvalidArgument("ops.listen '" + listen + "' has no valid port; write e.g. 127.0.0.1:9753");
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    return InvalidArgument("ops.listen '" + listen +
                           "': host must be an IP address such as 127.0.0.1 or [::1]");
  }
  auto impl = std::make_unique<Impl>();
  impl->shared = std::make_shared<Shared>(Shared{std::move(token), std::move(handler)});
  tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return FailedPrecondition("cannot listen on " + listen + ": " + ec.message() +
                              "; free the port or set ops.listen to another address");
  }
  impl->port = impl->acceptor.local_endpoint(ec).port();
  impl->Accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

uint16_t HttpServer::port() const { return impl_->port; }

void HttpServer::Stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  asio::post(impl_->io, [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->io.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace tenantsync::ops
