// ops end to end: `tenantsync run` as a child process against real clusters, watched the way an
// operator would: status / status --json / lag / history from other processes, the HTTP surface
// (/healthz, /metrics, /status, /lag, the page) with its bearer token, `promtool check metrics`,
// a real Prometheus server scraping /metrics, and headless Chromium drawing the page's chart.
// Throughout, the source password, the encryption key and the tenant secret must never appear
// in anything tenantsync prints or serves.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>  // before Boost 1.74 Asio, which needs std::exchange in C++20
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/lsn.h"
#include "state/state_store.h"
#include "tests/fixtures/rawdog.h"
#include "tests/harness/bridge_roles.h"
#include "tests/harness/status_matchers.h"
#include "tests/harness/shell.h"
#include "tests/harness/test_env.h"

namespace tenantsync::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kPassword = "Pw-Sup3rSecret-4711";
constexpr const char* kToken = "ops-token-b7f1c2";
constexpr const char* kShopifySecret = "shpat_secret_0f9e8d7c";
constexpr const char* kKey = "q4n0c3Zc2V5yYF3yQ1b2d3h4Zm9vYmFyYmF6cXV4MTI=";  // 32 bytes

std::string Binary() {
  const char* b = std::getenv("TENANTSYNC_BINARY");
  return b ? b : "tenantsync";
}

int FreePort() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}



struct HttpReply {
  int status = 0;
  std::string body;
};

HttpReply Get(int port, const std::string& target, const std::string& token = "") {
  namespace beast = boost::beast;
  namespace http = beast::http;
  try {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(10));
    stream.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)});
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    return {static_cast<int>(res.result_int()), res.body()};
  } catch (const std::exception&) {
    return {};
  }
}

// A child process with its own environment; stdout and stderr go to a file.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::vector<std::string>& env, std::string log)
      : log_(std::move(log)) {
    pid_ = fork();
    if (pid_ == 0) {
      FILE* f = std::fopen(log_.c_str(), "w");
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
      for (const auto& e : env) putenv(strdup(e.c_str()));
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Child() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool Running() {
    if (exited_) return false;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      exited_ = true;
      status_ = st;
    }
    return !exited_;
  }
  // Sends `sig` and waits up to `timeout`; the exit code, or -1 on timeout.
  int Stop(int sig, std::chrono::seconds timeout) {
    kill(pid_, sig);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (Running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (Running()) return -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  std::string Log() const { return ReadAll(log_); }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::string log_;
};

template <typename F>
bool WaitFor(F predicate, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return predicate();
}

// Adds the password to a harness URL: postgresql://USER@host -> USER:PW@host. The test clusters
// trust local TCP, so the password is never checked, but tenantsync must still hide it.
std::string WithPassword(const std::string& url) {
  return std::regex_replace(url, std::regex("://([^@/]+)@"),
                            std::string("://$1:") + kPassword + "@");
}

class OpsE2eTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) return;  // kept to look at
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("ops_e2e_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_OK_AND_ASSIGN(source_db_, Clusters().source().CreateDatabase("ops_src"));
    ASSERT_OK_AND_ASSIGN(target_db_, Clusters().target().CreateDatabase("ops_tgt"));
    ASSERT_OK(LoadRawdog(Clusters().source().Url(source_db_), 1, 7));
    std::string slot = "ops_" + source_db_;
    // `run` and every command run as the least-privilege roles; the DBA's publication covers
    // every table.
    ASSERT_OK(GrantBridgeSource(Clusters().source(), source_db_, /*publication=*/slot));
    ASSERT_OK(GrantBridgeTarget(Clusters().target(), target_db_, "tenant_rawdog"));
    source_url_ = WithPassword(Clusters().source().Url(source_db_, kBridgeSourceRole));
    target_url_ = WithPassword(Clusters().target().Url(target_db_, kBridgeTargetRole));
    port_ = FreePort();
    std::string example = ReadAll(std::string(std::getenv("TENANTSYNC_SOURCE_DIR")) + "/examples/rawdog.yaml");
    ASSERT_FALSE(example.empty());
    example = std::regex_replace(example, std::regex("state_dir: .*"), "state_dir: " + (dir_ / "state").string());
    example = std::regex_replace(example, std::regex("ops: \\{listen: .*"),
                                 "ops: {listen: \"127.0.0.1:" + std::to_string(port_) +
                                     "\", token: \"${OPS_TOKEN}\", max_healthy_lag_seconds: 60}");
    example = std::regex_replace(example, std::regex("publication: tenantsync_rawdog, slot: tenantsync_rawdog"),
                                 "publication: " + slot + ", slot: " + slot);
    config_ = (dir_ / "rawdog.yaml").string();
    std::ofstream(config_) << example;
    env_ = {"POSTGRES_URL=" + source_url_, "NEW_POSTGRES_URL=" + target_url_,
            std::string("SHOPIFY_ACCESS_TOKEN=") + kShopifySecret, std::string("TENANTSYNC_KEY=") + kKey,
            std::string("OPS_TOKEN=") + kToken};
    for (const auto& e : env_) {
      const size_t eq = e.find('=');
      setenv(e.substr(0, eq).c_str(), e.substr(eq + 1).c_str(), /*overwrite=*/1);
    }
  }

  // Runs a tenantsync command to completion; {exit code, output}.
  std::pair<int, std::string> Tenantsync(const std::string& args) {
    return Shell(Binary() + " -c " + config_ + " " + args);
  }

  void ExpectNoSecret(const std::string& what, const std::string& text) {
    EXPECT_THAT(text, Not(HasSubstr(kPassword))) << what;
    EXPECT_THAT(text, Not(HasSubstr(kToken))) << what;
    EXPECT_THAT(text, Not(HasSubstr(kShopifySecret))) << what;
    EXPECT_THAT(text, Not(HasSubstr(kKey))) << what;
  }

  fs::path dir_;
  std::string source_db_, target_db_, source_url_, target_url_, config_;
  std::vector<std::string> env_;
  int port_ = 0;
};

TEST_F(OpsE2eTest, OperatorViewOfARunningPipeline) {
  Child run({Binary(), "-c", config_, "run"}, env_, (dir_ / "run.log").string());
  ASSERT_TRUE(WaitFor([&] { return Get(port_, "/healthz").status == 200 || !run.Running(); },
                      std::chrono::seconds(180)))
      << "never healthy: " << Get(port_, "/healthz").body << "\n" << run.Log();
  ASSERT_TRUE(run.Running()) << run.Log();

  // The token guards everything but /healthz.
  EXPECT_EQ(Get(port_, "/metrics").status, 401);
  EXPECT_EQ(Get(port_, "/status", "wrong").status, 401);
  EXPECT_EQ(Get(port_, "/metrics", kToken).status, 200);

  // A change workload; the figures must follow the servers' own views.
  // While it runs, `status` in this (another) process shows the running pipeline's apply rate:
  // the figures the bridge publishes in the state directory once a second.
  WorkloadOptions wl;
  wl.clients = 2;
  wl.transactions_per_client = 1500;
  StatusOr<WorkloadResult> result = Status::Ok();
  std::atomic<bool> workload_done{false};
  std::thread workload([&] {
    result = RunRawdogWorkload(Clusters().source().Url(source_db_), wl);
    workload_done = true;
  });
  nlohmann::json busy;
  std::string busy_text;
  // The running bridge's own sampler keeps /status fresh under the load too (scrapes read it).
  int64_t oldest_sample_us = 0;
  auto now_us = [] {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
  };
  while (!workload_done) {
    HttpReply own = Get(port_, "/status", kToken);
    if (own.status == 200) {
      int64_t age = now_us() - nlohmann::json::parse(own.body)["collected_at_us"].get<int64_t>();
      oldest_sample_us = std::max(oldest_sample_us, age);
    }
    auto [c, t] = Tenantsync("status --json");
    if (c != 0) continue;
    auto j = nlohmann::json::parse(t);
    if (j["apply"]["txn_per_second"].get<double>() > 0) {
      busy = j;
      busy_text = t;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  workload.join();
  ASSERT_OK(result.status());
  EXPECT_EQ(result->committed, 3000);
  std::printf("oldest /status sample seen under load: %.2f s\n", oldest_sample_us / 1e6);
  EXPECT_LT(oldest_sample_us, 3'000'000) << "the sampler fell behind under load";
  ASSERT_FALSE(busy.is_null()) << "status never showed an apply rate during the workload\n" << run.Log();
  EXPECT_EQ(busy["apply"]["running_pid"].get<int64_t>(), run.pid()) << busy_text;
  EXPECT_GT(busy["apply"]["rows_per_second"].get<double>(), 0) << busy_text;
  EXPECT_GT(busy["apply"]["transactions_total"].get<uint64_t>(), 0u) << busy_text;
  EXPECT_THAT(busy["phase"].get<std::string>(), ::testing::AnyOf("streaming", "catching-up")) << busy_text;

  // The slot is never acknowledged past what the journal holds (invariant 2): read the slot
  // first, then the journal, which can only have moved on.
  ASSERT_OK_AND_ASSIGN(std::string confirmed_text,
      Clusters().source().QueryValue(source_db_, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'ops_" + source_db_ + "'"));
  ASSERT_OK_AND_ASSIGN(Lsn confirmed, Lsn::Parse(confirmed_text));
  EXPECT_GT(confirmed, Lsn());
  auto [rc, text] = Tenantsync("status --json");
  ASSERT_EQ(rc, 0) << text;
  nlohmann::json st = nlohmann::json::parse(text);
  ASSERT_OK_AND_ASSIGN(std::string wal_now, Clusters().source().QueryValue(source_db_, "SELECT pg_current_wal_lsn()::text"));
  ASSERT_OK_AND_ASSIGN(Lsn current, Lsn::Parse(wal_now));
  ASSERT_OK_AND_ASSIGN(Lsn applied, Lsn::Parse(st["applied_lsn"].get<std::string>()));
  ASSERT_OK_AND_ASSIGN(Lsn journaled, Lsn::Parse(st["journaled_lsn"].get<std::string>()));
  ASSERT_OK_AND_ASSIGN(Lsn status_wal, Lsn::Parse(st["source"]["wal_lsn"].get<std::string>()));
  EXPECT_LE(status_wal, current);
  EXPECT_LE(applied, status_wal);
  EXPECT_LE(confirmed, journaled);
  EXPECT_TRUE(st["source"]["slot_exists"].get<bool>());
  EXPECT_TRUE(st["source"]["slot_active"].get<bool>());

  // Idle: everything applied, lag reads zero in seconds and bytes; applied equals the target's row.
  bool idle = WaitFor([&] {
    auto [c, t] = Tenantsync("status --json");
    if (c != 0) return false;
    auto j = nlohmann::json::parse(t);
    return j["lag_bytes"].get<uint64_t>() == 0 && j["lag_seconds"].get<double>() == 0.0;
  }, std::chrono::seconds(60));
  // The target's row first, then status: status can only have moved on from it.
  ASSERT_OK_AND_ASSIGN(std::string progress, Clusters().target().QueryValue(target_db_,
      "SELECT applied_lsn::text FROM _tenantsync.progress"));
  ASSERT_OK_AND_ASSIGN(Lsn target_applied, Lsn::Parse(progress));
  auto [rc_idle, idle_text] = Tenantsync("status --json");
  EXPECT_TRUE(idle) << idle_text;
  ASSERT_OK_AND_ASSIGN(Lsn idle_applied, Lsn::Parse(nlohmann::json::parse(idle_text)["applied_lsn"].get<std::string>()));
  EXPECT_GE(idle_applied, target_applied);
  // The running pipeline's own /status is a fresh sample (at most a second old), with its live
  // counters: it has applied the workload's transactions.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto live = nlohmann::json::parse(Get(port_, "/status", kToken).body);
  ASSERT_OK_AND_ASSIGN(Lsn live_applied, Lsn::Parse(live["applied_lsn"].get<std::string>()));
  EXPECT_GE(live_applied, target_applied) << live.dump();
  // (A workload transaction may change nothing the publication carries: no journal entry.)
  uint64_t live_total = live["apply"]["transactions_total"].get<uint64_t>();
  EXPECT_GE(live_total, 2900u) << live.dump();
  EXPECT_LE(live_total, 3000u) << live.dump();
  // ... and another process's status has the same totals once idle (published a second later).
  std::string outside;
  EXPECT_TRUE(WaitFor([&] {
    auto [c, t] = Tenantsync("status --json");
    outside = t;
    return c == 0 && nlohmann::json::parse(t)["apply"]["transactions_total"].get<uint64_t>() == live_total &&
           nlohmann::json::parse(t)["apply"]["rows_total"] == live["apply"]["rows_total"];
  }, std::chrono::seconds(10))) << outside << "\n" << live.dump();

  // A change the target refuses becomes a dead letter, visible to ops, never silently dropped
  // (invariant 6): the new platform added a rule the old data breaks.
  ASSERT_OK(Clusters().target().Exec(target_db_,
      "ALTER TABLE tenant_rawdog.reviews ADD CONSTRAINT no_secret_titles CHECK (title IS DISTINCT FROM 'refused by target') NOT VALID"));
  ASSERT_OK_AND_ASSIGN(std::string refused_id, Clusters().source().QueryValue(source_db_,
      "INSERT INTO reviews (product_id, customer_id, rating, title, body, created_at) "
      "SELECT p.id, NULL, 4, 'refused by target', 'x', now() FROM products p "
      "WHERE NOT EXISTS (SELECT 1 FROM reviews r WHERE r.product_id = p.id AND r.customer_id IS NULL) "
      "LIMIT 1 RETURNING id::text"));
  bool lettered = WaitFor([&] {
    auto [c, t] = Tenantsync("dead-letters --json");
    return c == 0 && t.find("\"reviews\"") != std::string::npos;
  }, std::chrono::seconds(60));
  auto [rc_dl, dead] = Tenantsync("dead-letters --json");
  ASSERT_TRUE(lettered) << dead << run.Log();
  auto letters = nlohmann::json::parse(dead);
  ASSERT_EQ(letters.size(), 1u) << dead;
  EXPECT_EQ(letters[0]["table"], "reviews");
  EXPECT_THAT(letters[0]["key"].get<std::string>(), HasSubstr(refused_id));
  EXPECT_THAT(letters[0]["reason"].get<std::string>(), HasSubstr("no_secret_titles"));
  EXPECT_EQ(letters[0]["phase"], "apply");
  ASSERT_OK_AND_ASSIGN(std::string in_target, Clusters().target().QueryValue(target_db_,
      "SELECT count(*) FROM tenant_rawdog.reviews WHERE id = " + refused_id));
  EXPECT_EQ(in_target, "0");
  EXPECT_TRUE(WaitFor([&] {
    return Get(port_, "/metrics", kToken).body.find("tenantsync_dead_letters_total{pipeline=\"rawdog\"} 1\n") != std::string::npos;
  }, std::chrono::seconds(10))) << Get(port_, "/metrics", kToken).body;
  auto [rc_dl_text, dead_text] = Tenantsync("dead-letters");
  EXPECT_EQ(rc_dl_text, 0);
  EXPECT_THAT(dead_text, HasSubstr("1 dead letter(s)"));
  // Idle again after the refused change.
  EXPECT_TRUE(WaitFor([&] {
    auto [c, t] = Tenantsync("status --json");
    return c == 0 && nlohmann::json::parse(t)["lag_bytes"].get<uint64_t>() == 0;
  }, std::chrono::seconds(60)));

  // lag (one shot) and the human status.
  auto [rc_lag, lag_text] = Tenantsync("lag");
  EXPECT_EQ(rc_lag, 0);
  EXPECT_THAT(lag_text, HasSubstr("lag 0.0 s"));
  // lag --watch refreshes every second until Ctrl-C, then exits 0.
  auto [rc_watch, watch] = Shell("timeout --preserve-status -s INT 3.5 " + Binary() + " -c " + config_ + " lag --watch");
  EXPECT_EQ(rc_watch, 0) << watch;
  EXPECT_GE(std::count(watch.begin(), watch.end(), '\n'), 2) << watch;
  EXPECT_THAT(watch, HasSubstr("rawdog  lag "));
  auto [rc_human, human] = Tenantsync("status");
  EXPECT_EQ(rc_human, 0);
  EXPECT_THAT(human, HasSubstr("phase"));
  EXPECT_THAT(human, HasSubstr("streaming"));

  // /metrics: figures, and the Prometheus exposition format per promtool.
  HttpReply metrics = Get(port_, "/metrics", kToken);
  ASSERT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.body, HasSubstr("tenantsync_lag_seconds{pipeline=\"rawdog\"} 0\n"));
  EXPECT_THAT(metrics.body, HasSubstr("tenantsync_rows_total{pipeline=\"rawdog\",table=\"orders\""));
  std::ofstream(dir_ / "metrics.txt") << metrics.body;
  auto [prc, pout] = Shell("promtool check metrics < " + (dir_ / "metrics.txt").string());
  EXPECT_EQ(prc, 0) << pout;

  // A real Prometheus scrapes it (with the bearer token).
  int prom_port = FreePort();
  std::ofstream(dir_ / "prometheus.yml")
      << "global: {scrape_interval: 1s}\n"
         "scrape_configs:\n"
         "  - job_name: tenantsync\n"
         "    authorization: {credentials: " << kToken << "}\n"
         "    static_configs: [{targets: ['127.0.0.1:" << port_ << "']}]\n";
  Child prometheus({"/usr/bin/prometheus", "--config.file=" + (dir_ / "prometheus.yml").string(),
                    "--storage.tsdb.path=" + (dir_ / "tsdb").string(),
                    "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                   {}, (dir_ / "prometheus.log").string());
  bool scraped = WaitFor([&] {
    HttpReply r = Get(prom_port, "/api/v1/query?query=tenantsync_applied_lsn");
    return r.status == 200 && r.body.find("\"pipeline\":\"rawdog\"") != std::string::npos;
  }, std::chrono::seconds(60));
  EXPECT_TRUE(scraped) << prometheus.Log();
  HttpReply up = Get(prom_port, "/api/v1/query?query=up%7Bjob%3D%22tenantsync%22%7D");
  EXPECT_THAT(up.body, HasSubstr("\"1\"]"));

  // The status page draws real lag data in headless Chromium.
  std::string page_url = "http://127.0.0.1:" + std::to_string(port_) + "/?access_token=" + kToken;
  auto [crc, dom] = Shell("chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                          "--disable-background-networking --disable-component-update --disable-sync "
                          "--user-data-dir=" + (dir_ / "chromium").string() +
                          " --virtual-time-budget=5000 --dump-dom '" + page_url + "'");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom, m, std::regex("data-points=\"([0-9]+)\""))) << dom.substr(0, 2000);
  EXPECT_GT(std::stoi(m[1]), 0) << "chart drew no samples";
  EXPECT_THAT(dom, HasSubstr("<b id=\"phase\" class=\"ok\">streaming</b>"));
  EXPECT_THAT(dom, HasSubstr("<div id=\"err\"></div>")) << "the page reported an error";
  // The page lists the runs of the audit trail (this one, still running).
  ASSERT_TRUE(std::regex_search(dom, m, std::regex("id=\"runs\"[^>]*data-rows=\"([0-9]+)\""))) << dom.substr(0, 2000);
  EXPECT_GE(std::stoi(m[1]), 1) << "the page listed no runs";
  EXPECT_THAT(dom, HasSubstr("<td>running</td>"));

  // /status and /lag carry the same figures; nothing secret anywhere.
  HttpReply status = Get(port_, "/status", kToken);
  HttpReply lag = Get(port_, "/lag", kToken);
  EXPECT_EQ(status.status, 200);
  EXPECT_EQ(nlohmann::json::parse(status.body)["pipeline"], "rawdog");
  EXPECT_FALSE(nlohmann::json::parse(lag.body).empty());
  for (const auto& [what, text] : std::vector<std::pair<std::string, std::string>>{
           {"metrics", metrics.body}, {"status", status.body}, {"page", dom},
           {"status --json", idle_text}, {"status", human}, {"lag", lag_text},
           {"lag --watch", watch}, {"dead-letters", dead}}) {
    ExpectNoSecret(what, text);
  }

  // Clean stop on SIGINT, then status still works from the state directory and the servers.
  EXPECT_EQ(run.Stop(SIGINT, std::chrono::seconds(60)), 0) << run.Log();
  std::string run_log = run.Log();
  ExpectNoSecret("run log", run_log);
  auto [rc_after, after] = Tenantsync("status --json");
  ASSERT_EQ(rc_after, 0) << after;
  auto after_json = nlohmann::json::parse(after);
  EXPECT_TRUE(after_json["journal"]["readable"].get<bool>()) << after;
  EXPECT_FALSE(after_json["source"]["slot_active"].get<bool>()) << after;

  // The audit trail has the run, with its outcome and masked arguments.
  auto [rc_hist, hist] = Tenantsync("history --json");
  ASSERT_EQ(rc_hist, 0) << hist;
  auto runs = nlohmann::json::parse(hist);
  ASSERT_FALSE(runs.empty());
  EXPECT_EQ(runs[0]["command"], "run");
  EXPECT_EQ(runs[0]["outcome"], "ok");
  EXPECT_GT(runs[0]["finished_us"].get<int64_t>(), runs[0]["started_us"].get<int64_t>());
  ExpectNoSecret("history", hist);
  auto [rc_hist_text, hist_text] = Tenantsync("history");
  EXPECT_EQ(rc_hist_text, 0);
  EXPECT_THAT(hist_text, HasSubstr(" run "));
  ExpectNoSecret("history", hist_text);

  // The state directory is private.
  EXPECT_EQ(fs::status(dir_ / "state").permissions() & (fs::perms::group_all | fs::perms::others_all),
            fs::perms::none);

  // A bridge killed without a word (kill -9) shows as not running once its figures go stale,
  // not as streaming forever.
  {
    Child again({Binary(), "-c", config_, "run"}, env_, (dir_ / "run2.log").string());
    ASSERT_TRUE(WaitFor([&] { return Get(port_, "/healthz").status == 200 || !again.Running(); },
                        std::chrono::seconds(120))) << again.Log();
    auto [rc_live, live_text] = Tenantsync("status --json");
    ASSERT_EQ(rc_live, 0) << live_text;
    EXPECT_EQ(nlohmann::json::parse(live_text)["phase"], "streaming") << live_text;
    EXPECT_EQ(again.Stop(SIGKILL, std::chrono::seconds(10)), 128 + SIGKILL);
    std::string gone_text;
    EXPECT_TRUE(WaitFor([&] {
      auto [c, t] = Tenantsync("status --json");
      gone_text = t;
      return c == 0 && nlohmann::json::parse(t)["phase"] == "stopped";
    }, std::chrono::seconds(15))) << gone_text;
    EXPECT_GT(nlohmann::json::parse(gone_text).value("vanished_since_us", int64_t{0}), 0) << gone_text;
    auto [rc_gone, gone_human] = Tenantsync("status");
    EXPECT_EQ(rc_gone, 0);
    EXPECT_THAT(gone_human, HasSubstr("not running: its process stopped reporting")) << gone_human;

    // The killed run's start record is in the state directory too (written through the store the
    // pipeline opened), still "running": it never finished.
    auto store = state::StateStore::OpenReadOnly((dir_ / "state").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto audit = (*store)->ScanMeta("audit/");
    ASSERT_TRUE(audit.ok()) << audit.status().ToString();
    int killed_runs = 0, finished_runs = 0;
    for (const auto& [key, value] : *audit) {
      auto r = nlohmann::json::parse(value);
      if (r["command"] != "run") continue;
      if (r["outcome"] == "running") ++killed_runs;
      if (r["outcome"] == "ok") ++finished_runs;
    }
    EXPECT_EQ(killed_runs, 1) << "state-directory audit records: " << audit->size();
    EXPECT_EQ(finished_runs, 1);
  }

  Clusters().source().Exec(source_db_, "SELECT pg_drop_replication_slot('ops_" + source_db_ + "')").IgnoreError();
}

TEST_F(OpsE2eTest, HealthzReportsWhyWhenNotStreaming) {
  // No pipeline running: nothing listens; status from another process still answers.
  auto [rc, text] = Tenantsync("status");
  EXPECT_EQ(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr("slot"));
  EXPECT_THAT(text, HasSubstr("missing"));
  ExpectNoSecret("status", text);
}

}  // namespace
}  // namespace tenantsync::testing
