#include "tests/harness/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tenantsync::testing {

namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Writes all of `data`; false when the peer is gone.
bool WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(int upstream_port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Fatal(std::string("proxy socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = Loopback(0);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) {
    std::string err = std::strerror(errno);
    ::close(fd);
    return Fatal("proxy bind/listen: " + err);
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  std::unique_ptr<TcpProxy> p(new TcpProxy(fd, ntohs(a.sin_port), upstream_port));
  p->acceptor_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

TcpProxy::TcpProxy(int listen_fd, int port, int upstream_port)
    : listen_fd_(listen_fd), port_(port), upstream_port_(upstream_port) {}

TcpProxy::~TcpProxy() {
  stopping_ = true;
  generation_.fetch_add(1);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> pumps;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pumps.swap(pumps_);
  }
  for (auto& t : pumps) t.join();
  ::close(listen_fd_);
}

void TcpProxy::Cut() {
  mode_ = static_cast<int>(Mode::kCut);
  generation_.fetch_add(1);
}
void TcpProxy::Stall() { mode_ = static_cast<int>(Mode::kStall); }
void TcpProxy::Restore() { mode_ = static_cast<int>(Mode::kForward); }

void TcpProxy::AcceptLoop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) continue;
    ++accepted_;
    if (static_cast<Mode>(mode_.load()) == Mode::kCut) {
      ::close(client);  // refused: the server looks unreachable
      ++cut_count_;
      continue;
    }
    int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = Loopback(upstream_port_);
    if (upstream < 0 || ::connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (upstream >= 0) ::close(upstream);
      ::close(client);
      continue;
    }
    int one = 1;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint64_t gen = generation_.load();
    std::lock_guard<std::mutex> lock(mu_);
    pumps_.emplace_back([this, client, upstream, gen] { Pump(client, upstream, gen); });
  }
}

void TcpProxy::Pump(int client_fd, int upstream_fd, uint64_t generation) {
  char buf[64 * 1024];
  for (;;) {
    if (stopping_ || generation_.load() != generation) {
      ++cut_count_;
      break;  // cut: both ends see the connection drop
    }
    if (static_cast<Mode>(mode_.load()) == Mode::kStall) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;  // bytes wait in the kernel's buffers; nothing moves
    }
    pollfd p[2] = {{client_fd, POLLIN, 0}, {upstream_fd, POLLIN, 0}};
    int n = ::poll(p, 2, 50);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    bool closed = false;
    for (int i = 0; i < 2 && !closed; ++i) {
      if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      ssize_t r = ::recv(p[i].fd, buf, sizeof buf, 0);
      if (r <= 0) {
        closed = true;
        break;
      }
      if (!WriteAll(i == 0 ? upstream_fd : client_fd, buf, static_cast<size_t>(r))) closed = true;
    }
    if (closed) break;
  }
  ::shutdown(client_fd, SHUT_RDWR);
  ::shutdown(upstream_fd, SHUT_RDWR);
  ::close(client_fd);
  ::close(upstream_fd);
}

}  // namespace tenantsync::testing
