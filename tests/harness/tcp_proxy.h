// A TCP proxy for fault tests: forwards 127.0.0.1:port() to 127.0.0.1:upstream, and on command
// cuts the network (drops every open connection and refuses new ones, as a dead link or a
// firewall reset would) or stalls it (connections stay open but no byte moves either way, as a
// partitioned link would until TCP gives up). Restore() returns to forwarding.
//
// Threads: one acceptor, one pump per connection; every method is thread-safe. The destructor
// closes everything and joins the threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/status.h"

namespace tenantsync::testing {

class TcpProxy {
 public:
  static StatusOr<std::unique_ptr<TcpProxy>> Start(int upstream_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  void Cut();      // close every connection now; accept and at once close new ones
  void Stall();    // keep connections, move no bytes
  void Restore();  // forward again
  int connections_accepted() const { return accepted_.load(); }
  int connections_cut() const { return cut_count_.load(); }

 private:
  enum class Mode : int { kForward, kStall, kCut };
  TcpProxy(int listen_fd, int port, int upstream_port);
  void AcceptLoop();
  void Pump(int client_fd, int upstream_fd, uint64_t generation);

  int listen_fd_;
  int port_;
  int upstream_port_;
  std::atomic<int> mode_{static_cast<int>(Mode::kForward)};
  std::atomic<uint64_t> generation_{0};  // bumped by Cut(): pumps of older generations close
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> cut_count_{0};
  std::mutex mu_;
  std::vector<std::thread> pumps_;
  std::thread acceptor_;
};

}  // namespace tenantsync::testing
