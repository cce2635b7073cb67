#include "tests/harness/pg_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

extern char** environ;

namespace tenantsync::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kDirPrefix[] = "tenantsync-pgtest-";
constexpr char kDefaultBinDir[] = "/usr/lib/postgresql/15/bin";
constexpr int kMaxPortAttempts = 8;

// ---- Process-wide registry of live servers -----------------------------------------------
//
// Signal handlers may only touch lock-free atomics, so the pids of every live server sit in a
// fixed array of atomics; `owner_pid` keeps a forked child (a gtest death test) from stopping
// its parent's servers.
constexpr int kMaxSlots = 64;
std::atomic<pid_t> g_postmaster[kMaxSlots];
std::atomic<pid_t> g_child[kMaxSlots];
std::atomic<pid_t> g_owner_pid{0};

struct Registry {
  std::mutex mu;
  std::vector<PgCluster*> live;  // for the atexit handler
};
Registry& TheRegistry() {
  static Registry* r = new Registry();  // leaked: must outlive static destructors and atexit
  return *r;
}

struct sigaction g_previous[NSIG];
constexpr int kHandledSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGABRT};

void SleepMs(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// Async-signal-safe: immediate shutdown of every live server, reap what we can for up to
// ~5 s, then let the signal do what it did before we were installed.
void OnFatalSignal(int sig) {
  int saved_errno = errno;
  if (getpid() == g_owner_pid.load()) {
    for (int i = 0; i < kMaxSlots; ++i) {
      pid_t pm = g_postmaster[i].load();
      if (pm > 0) kill(pm, SIGQUIT);
    }
    for (int waited = 0; waited < 500; ++waited) {
      bool any = false;
      for (int i = 0; i < kMaxSlots; ++i) {
        pid_t child = g_child[i].load();
        if (child <= 0) continue;
        int st = 0;
        pid_t r = waitpid(child, &st, WNOHANG);
        if (r == child || (r < 0 && errno == ECHILD)) {
          g_child[i].store(0);
          g_postmaster[i].store(0);
        } else {
          any = true;
        }
      }
      if (!any) break;
      SleepMs(10);
    }
  }
  sigaction(sig, &g_previous[sig], nullptr);
  errno = saved_errno;
  raise(sig);  // blocked while we run; delivered with the previous disposition on return
}

// /proc/<pid>/stat field 22 (start time in clock ticks): together with the pid it names one
// process even after pid reuse. 0 when the process does not exist.
uint64_t ProcessStartTime(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields after "pid (comm)" start at field 3 (state); start time is field 22.
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 3 && field == "Z") return 0;  // a zombie is gone for our purposes
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

bool ProcessGone(pid_t pid) { return pid <= 0 || ProcessStartTime(pid) == 0; }

// Parent pid from /proc/<pid>/stat; -1 when unknown.
pid_t ParentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  size_t close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 2));
  std::string state;
  long ppid = -1;
  if (!(rest >> state >> ppid)) return -1;
  return static_cast<pid_t>(ppid);
}

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string n = e.path().filename().string();
    if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    long ppid = 0;
    if (rest >> state >> ppid && ppid == parent) out.push_back(std::stoi(n));
  }
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& text, int lines) {
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (int i = 0; i < lines && pos > 0; ++i) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
  }
  std::string out = text.substr(pos == 0 ? 0 : pos + 1);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string FindRunuser() {
  for (const char* p : {"/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser", "/bin/runuser"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return {};
}

bool KeepDirs() {
  const char* v = std::getenv("TENANTSYNC_KEEP_CLUSTER_DIRS");
  return v && *v && std::string_view(v) != "0";
}

// Spawns argv (argv[0] an absolute path) with stdin=/dev/null and stdout+stderr appended to
// `out_path`, in its own process group so a terminal's Ctrl-C reaches only us; we stop servers
// in order ourselves.
StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& out_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Fatal("cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  return pid;
}

// Runs argv to completion; a non-zero exit is kFatal with the output's tail.
Status Run(const std::vector<std::string>& argv, const std::string& out_path,
           const std::string& what) {
  TS_ASSIGN_OR_RETURN(pid_t pid, Spawn(argv, out_path));
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return Fatal(what + ": waitpid: " + std::strerror(errno));
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return Status();
  std::string how = WIFEXITED(st) ? "exit code " + std::to_string(WEXITSTATUS(st))
                                  : "signal " + std::to_string(WTERMSIG(st));
  return Fatal(what + " failed (" + how + "): " + Tail(ReadFile(out_path), 10));
}

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it for port 0).
StatusOr<int> FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Fatal(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::string err = std::strerror(errno);
    close(fd);
    return Fatal("cannot find a free TCP port: " + err);
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

// Directories of clusters whose owning process died without cleaning up (SIGKILL, ctest
// timeout): stop their server if it still runs and remove them. Only touches directories with
// our prefix and an owner file naming a process that no longer exists.
void SweepStaleClusters() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/tmp", ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(kDirPrefix, 0) != 0) continue;
    std::ifstream owner(e.path() / "owner");
    long pid = 0;
    uint64_t start = 0;
    if (!(owner >> pid >> start)) continue;  // being created right now, or not ours
    if (ProcessStartTime(static_cast<pid_t>(pid)) == start) continue;  // owner alive
    std::ifstream pidfile(e.path() / "data" / "postmaster.pid");
    long pm = 0;
    if (pidfile >> pm && pm > 0) {
      std::string cmdline = ReadFile("/proc/" + std::to_string(pm) + "/cmdline");
      if (cmdline.find((e.path() / "data").string()) != std::string::npos) {
        kill(static_cast<pid_t>(pm), SIGQUIT);
        for (int i = 0; i < 500 && !ProcessGone(static_cast<pid_t>(pm)); ++i) SleepMs(10);
      }
    }
    fs::remove_all(e.path(), ec);
  }
}

std::atomic<int> g_database_counter{0};

}  // namespace

// ---- PgCluster ----------------------------------------------------------------------------

PgCluster::PgCluster(std::string name, ClusterOptions opts)
    : name_(std::move(name)), opts_(std::move(opts)) {}

StatusOr<std::unique_ptr<PgCluster>> PgCluster::Start(std::string name, ClusterOptions opts) {
  static std::once_flag once;
  std::call_once(once, [] {
    g_owner_pid.store(getpid());
    std::atexit([] {
      if (getpid() != g_owner_pid.load()) return;  // a forked child exiting
      std::vector<PgCluster*> live;
      {
        std::lock_guard<std::mutex> lock(TheRegistry().mu);
        live = TheRegistry().live;
      }
      for (PgCluster* c : live) c->StopAndRemoveNoThrow();
    });
    for (int sig : kHandledSignals) {
      struct sigaction sa {};
      sa.sa_handler = OnFatalSignal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = 0;
      sigaction(sig, &sa, &g_previous[sig]);
    }
    SweepStaleClusters();
  });

  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
  }
  if (name.size() > 16) name.resize(16);
  if (name.empty()) name = "pg";

  std::unique_ptr<PgCluster> cluster(new PgCluster(name, std::move(opts)));
  {
    std::lock_guard<std::mutex> lock(TheRegistry().mu);
    for (int i = 0; i < kMaxSlots; ++i) {
      bool used = false;
      for (PgCluster* c : TheRegistry().live) used |= (c->slot_ == i);
      if (!used) {
        cluster->slot_ = i;
        break;
      }
    }
    if (cluster->slot_ < 0) {
      return ResourceExhausted("more than " + std::to_string(kMaxSlots) +
                               " test clusters alive in one process");
    }
    TheRegistry().live.push_back(cluster.get());
  }
  TS_RETURN_IF_ERROR_CTX(cluster->Init(), "cluster '" + cluster->name_ + "'");
  TS_RETURN_IF_ERROR_CTX(cluster->Launch(), "cluster '" + cluster->name_ + "'");
  return cluster;
}

PgCluster::~PgCluster() {
  StopAndRemoveNoThrow();
  std::lock_guard<std::mutex> lock(TheRegistry().mu);
  auto& live = TheRegistry().live;
  for (auto it = live.begin(); it != live.end(); ++it) {
    if (*it == this) {
      live.erase(it);
      break;
    }
  }
}

void PgCluster::StopAndRemoveNoThrow() {
  if (running()) {
    // Immediate shutdown: the data is thrown away, so a checkpoint would be wasted time.
    Stop(StopMode::kImmediate).IgnoreError();  // falls back to SIGKILL; nothing more to do
  }
  if (!base_dir_.empty() && !KeepDirs()) {
    std::error_code ec;
    fs::remove_all(base_dir_, ec);  // best effort; the sweep of a later run retries
  }
  base_dir_.clear();
}

std::vector<std::string> PgCluster::AsServerUser(std::vector<std::string> argv) const {
  if (geteuid() != 0) return argv;
  std::vector<std::string> out = {FindRunuser(), "-u", "postgres", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

Status PgCluster::Init() {
  bin_dir_ = opts_.bin_dir;
  if (bin_dir_.empty()) {
    const char* env = std::getenv("TENANTSYNC_PG_BIN");
    bin_dir_ = env && *env ? env : kDefaultBinDir;
  }
  for (const char* tool : {"initdb", "postgres"}) {
    if (access((bin_dir_ + "/" + tool).c_str(), X_OK) != 0) {
      return FailedPrecondition("no executable " + bin_dir_ + "/" + tool +
                                "; install postgresql-15 (ops/setup.sh --deps) or set "
                                "TENANTSYNC_PG_BIN to a PostgreSQL 15 bin directory");
    }
  }
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (uid == 0) {
    if (FindRunuser().empty()) {
      return FailedPrecondition(
          "running as root needs runuser (util-linux) to start PostgreSQL as user postgres");
    }
    struct passwd pw {};
    struct passwd* found = nullptr;
    char buf[4096];
    if (getpwnam_r("postgres", &pw, buf, sizeof(buf), &found) != 0 || found == nullptr) {
      return FailedPrecondition(
          "running as root but there is no 'postgres' OS user to run the server as; install "
          "postgresql-15 (ops/setup.sh --deps) or run the tests as a non-root user");
    }
    uid = pw.pw_uid;
    gid = pw.pw_gid;
  }

  std::string templ = std::string("/tmp/") + kDirPrefix + name_ + "-XXXXXX";
  std::vector<char> path(templ.begin(), templ.end());
  path.push_back('\0');
  if (mkdtemp(path.data()) == nullptr) {
    return Fatal("mkdtemp " + templ + ": " + std::strerror(errno));
  }
  base_dir_ = path.data();
  data_dir_ = base_dir_ + "/data";
  {
    std::ofstream owner(base_dir_ + "/owner.tmp");
    owner << getpid() << ' ' << ProcessStartTime(getpid()) << '\n';
  }
  std::error_code ec;
  fs::rename(base_dir_ + "/owner.tmp", base_dir_ + "/owner", ec);
  if (ec) return Fatal("cannot write " + base_dir_ + "/owner: " + ec.message());
  if (chown(base_dir_.c_str(), uid, gid) != 0) {
    return Fatal("chown " + base_dir_ + ": " + std::strerror(errno));
  }

  TS_RETURN_IF_ERROR(
      Run(AsServerUser({bin_dir_ + "/initdb", "-D", data_dir_, "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"}),
          base_dir_ + "/initdb.log", "initdb"));
  return WriteConfig();
}

Status PgCluster::WriteConfig() {
  std::ofstream conf(data_dir_ + "/postgresql.conf", std::ios::app);
  conf << "\n# ---- tenantsync test harness ----\n"
       << "listen_addresses = '127.0.0.1'\n"
       << "unix_socket_directories = '" << data_dir_ << "'\n"
       << "wal_level = " << opts_.wal_level << "\n"
       << "max_replication_slots = 20\n"
       << "max_wal_senders = 20\n"
       << "max_connections = 100\n"
       // Throwaway data: skip fsync. synchronous_commit stays on so commit semantics (and the
       // flush LSNs tenantsync reports) are the production ones.
       << "fsync = off\n"
       << "synchronous_commit = on\n"
       << "timezone = 'UTC'\n"
       << "log_timezone = 'UTC'\n"
       << "lc_messages = 'C'\n"
       << "log_line_prefix = '%m [%p] %q%a '\n";
  for (const auto& line : opts_.extra_conf) conf << line << "\n";
  conf.close();
  if (!conf) return Fatal("cannot write " + data_dir_ + "/postgresql.conf");

  std::ofstream hba(data_dir_ + "/pg_hba.conf", std::ios::trunc);
  hba << "# tenantsync test harness: trust, local socket and 127.0.0.1 only\n"
      << "local all all trust\n"
      << "host all all 127.0.0.1/32 trust\n"
      << "local replication all trust\n"
      << "host replication all 127.0.0.1/32 trust\n";
  hba.close();
  if (!hba) return Fatal("cannot write " + data_dir_ + "/pg_hba.conf");
  return Status();
}

Status PgCluster::Launch() {
  const bool pick_port = port_ == 0;
  Status last;
  for (int attempt = 0; attempt < (pick_port ? kMaxPortAttempts : 1); ++attempt) {
    if (pick_port) {
      TS_ASSIGN_OR_RETURN(port_, FreePort());
    }
    size_t log_start = ReadFile(log_path()).size();
    TS_ASSIGN_OR_RETURN(
        child_pid_,
        Spawn(AsServerUser({bin_dir_ + "/postgres", "-D", data_dir_, "-p", std::to_string(port_)}),
              log_path()));
    g_child[slot_].store(child_pid_);

    // Ready when postmaster.pid says so (what pg_ctl -w checks) and our child still runs: a
    // server of someone else on the same port must not fool us.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(opts_.timeout_seconds);
    bool exited = false;
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      if (waitpid(child_pid_, &st, WNOHANG) == child_pid_) {
        exited = true;
        break;
      }
      std::ifstream pidfile(data_dir_ + "/postmaster.pid");
      std::vector<std::string> lines;
      for (std::string l; std::getline(pidfile, l);) lines.push_back(l);
      // A SIGKILLed server leaves a stale "ready" file behind: only trust one written by the
      // process we spawned (or, under runuser, by its child).
      pid_t pm = lines.size() >= 8 ? static_cast<pid_t>(std::atol(lines[0].c_str())) : -1;
      if (pm > 0 && lines[7].rfind("ready", 0) == 0 &&
          (pm == child_pid_ || ParentOf(pm) == child_pid_)) {
        postmaster_pid_ = pm;
        g_postmaster[slot_].store(postmaster_pid_);
        return Status();
      }
      SleepMs(20);
    }
    if (!exited) {
      for (pid_t grandchild : ChildrenOf(child_pid_)) kill(grandchild, SIGKILL);  // runuser's
      kill(child_pid_, SIGKILL);
      waitpid(child_pid_, nullptr, 0);
    }
    child_pid_ = -1;
    g_child[slot_].store(0);
    std::string log = ReadFile(log_path()).substr(log_start);
    last = Fatal(std::string(exited ? "postgres exited during startup"
                                    : "postgres did not become ready in time") +
                 " (port " + std::to_string(port_) + ", log " + log_path() + "): " + Tail(log, 8));
    bool port_taken = log.find("could not bind") != std::string::npos ||
                      log.find("Address already in use") != std::string::npos;
    if (!port_taken) break;
  }
  if (pick_port) port_ = 0;
  return last;
}

Status PgCluster::WaitForExit(int timeout_seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (true) {
    int st = 0;
    pid_t r = waitpid(child_pid_, &st, WNOHANG);
    if (r == child_pid_ || (r < 0 && errno == ECHILD)) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(postmaster_pid_, SIGKILL);
      kill(child_pid_, SIGKILL);
      waitpid(child_pid_, &st, 0);
      g_child[slot_].store(0);
      g_postmaster[slot_].store(0);
      child_pid_ = postmaster_pid_ = -1;
      return Fatal("server '" + name_ + "' did not stop within " + std::to_string(timeout_seconds) +
                   " s; killed it");
    }
    SleepMs(10);
  }
  g_child[slot_].store(0);
  g_postmaster[slot_].store(0);
  child_pid_ = postmaster_pid_ = -1;
  return Status();
}

Status PgCluster::Stop(StopMode mode) {
  if (running() && g_child[slot_].load() == 0) {
    child_pid_ = postmaster_pid_ = -1;  // already stopped and reaped by the signal handler
  }
  if (!running()) return Status();
  int sig = mode == StopMode::kSmart ? SIGTERM : mode == StopMode::kFast ? SIGINT : SIGQUIT;
  kill(postmaster_pid_, sig);
  return WaitForExit(opts_.timeout_seconds);
}

Status PgCluster::Kill() {
  if (!running()) return FailedPrecondition("server '" + name_ + "' is not running");
  // The postmaster dies first, so it can not restart anything; its children are orphaned and,
  // with this process as child subreaper, adopted by us: we SIGKILL and reap them, so a PID 1
  // that never reaps is left no zombies. (Not SIGSTOP first: runuser mirrors a stopped child
  // by stopping itself.)
  int was_subreaper = 0;
  prctl(PR_GET_CHILD_SUBREAPER, &was_subreaper, 0, 0, 0);
  if (!was_subreaper) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  std::vector<pid_t> children = ChildrenOf(postmaster_pid_);
  kill(postmaster_pid_, SIGKILL);
  for (pid_t c : children) kill(c, SIGKILL);
  Status st = WaitForExit(opts_.timeout_seconds);
  // Children forked in the instant before the kill are adopted too: every `postgres` child of
  // ours that is not the server of another live cluster.
  for (pid_t c : ChildrenOf(getpid())) {
    bool registered = false;
    for (int i = 0; i < kMaxSlots; ++i) {
      registered |= g_postmaster[i].load() == c || g_child[i].load() == c;
    }
    std::string comm = ReadFile("/proc/" + std::to_string(c) + "/comm");
    if (!registered && comm.rfind("postgres", 0) == 0 &&
        std::find(children.begin(), children.end(), c) == children.end()) {
      kill(c, SIGKILL);
      children.push_back(c);
    }
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (pid_t c : children) {
    while (std::chrono::steady_clock::now() < deadline) {
      pid_t r = waitpid(c, nullptr, WNOHANG);
      if (r == c || (r < 0 && errno == ECHILD && ProcessGone(c))) break;
      SleepMs(5);
    }
  }
  if (!was_subreaper) prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
  return st;
}

Status PgCluster::StartServer() {
  if (running()) return Status();
  if (base_dir_.empty()) return FailedPrecondition("cluster '" + name_ + "' was removed");
  return Launch().WithContext("cluster '" + name_ + "'");
}

Status PgCluster::Restart(bool immediate) {
  TS_RETURN_IF_ERROR(Stop(immediate ? StopMode::kImmediate : StopMode::kFast));
  return StartServer();
}

std::string PgCluster::Url(std::string_view db, std::string_view user) const {
  return "postgresql://" + std::string(user) + "@127.0.0.1:" + std::to_string(port_) + "/" +
         std::string(db);
}

std::string PgCluster::LogTail(int lines) const { return Tail(ReadFile(log_path()), lines); }

StatusOr<PgConn> PgCluster::Connect(std::string_view db) const {
  return PgConn::Connect(Url(db), "tenantsync-test-harness");
}

Status PgCluster::Exec(std::string_view db, const std::string& sql) const {
  TS_ASSIGN_OR_RETURN(PgConn conn, Connect(db));
  return conn.Run(sql);
}

StatusOr<std::string> PgCluster::QueryValue(std::string_view db, const std::string& sql) const {
  TS_ASSIGN_OR_RETURN(PgConn conn, Connect(db));
  TS_ASSIGN_OR_RETURN(PgResult res, conn.Exec(sql));
  if (res.rows() == 0 || res.columns() == 0) {
    return NotFound("query returned no rows: " + sql.substr(0, 80));
  }
  return std::string(res.Get(0, 0));
}

StatusOr<int64_t> PgCluster::QueryInt(std::string_view db, const std::string& sql) const {
  TS_ASSIGN_OR_RETURN(std::string v, QueryValue(db, sql));
  char* end = nullptr;
  errno = 0;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || errno != 0 || *end != '\0') {
    return Fatal("expected an integer from '" + sql.substr(0, 80) + "', got '" + v + "'");
  }
  return static_cast<int64_t>(n);
}

StatusOr<std::string> PgCluster::CreateDatabase(std::string_view prefix) {
  bool valid = !prefix.empty() && prefix.size() <= 41 &&
               (std::islower(static_cast<unsigned char>(prefix[0])) || prefix[0] == '_');
  for (char c : prefix) {
    valid &= std::islower(static_cast<unsigned char>(c)) ||
             std::isdigit(static_cast<unsigned char>(c)) || c == '_';
  }
  if (!valid) {
    return InvalidArgument("database prefix '" + std::string(prefix) +
                           "' must match [a-z_][a-z0-9_]{0,40}");
  }
  std::string db = std::string(prefix) + "_" + std::to_string(++g_database_counter);
  TS_RETURN_IF_ERROR(Exec("postgres", "CREATE DATABASE " + QuoteIdent(db)));
  return db;
}

Status PgCluster::DropDatabase(std::string_view db) {
  return Exec("postgres", "DROP DATABASE IF EXISTS " + QuoteIdent(db) + " WITH (FORCE)");
}

}  // namespace tenantsync::testing
