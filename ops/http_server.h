// A small HTTP/1.1 server (Boost.Beast) for /metrics, /status, /healthz and the status page.
//
// It runs its own io_context on its own thread: a scrape that waits on a slow server query never
// delays the replication loop, and the replication loop never delays a scrape.
// Binds to loopback by default (ops.listen). When a token is set, every path but /healthz needs
// `Authorization: Bearer <token>` or, for a browser opening the page, the RFC 6750
// `access_token=<token>` query parameter; otherwise 401. The token is compared in constant time
// and never logged.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace tenantsync::ops {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Called on the server thread with the path (no query string) and the query string.
using HttpHandler = std::function<HttpResponse(const std::string& path, const std::string& query)>;

class HttpServer {
 public:
  // `listen` is "host:port"; port 0 picks a free port (see port()). kInvalidArgument for a
  // malformed address, kFailedPrecondition when the address is in use.
  static StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen, std::string token,
                                                     HttpHandler handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  // Closes the listener and every connection, joins the thread. Idempotent.
  void Stop();

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Constant-time comparison for tokens.
bool TokenEquals(const std::string& a, const std::string& b);

}  // namespace tenantsync::ops
