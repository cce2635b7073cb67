// The running pipeline's ops surface: a sampler thread that collects the status once a second
// (keeping an hour of lag history for the page's chart) and the HTTP server that serves it:
//   /metrics  Prometheus text            /status   the `status --json` document
//   /healthz  200 "ok" while streaming with lag under ops.max_healthy_lag_seconds, else 503 + reason
//   /lag      the lag history as JSON    /         the self-contained status page (no CDN)
//   /history  the audit trail (JSON)     /history/<id>  that run's JSON report
// Scrapes read the latest sample: they never wait on the source or target servers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "core/config.h"
#include "core/pipeline_stats.h"
#include "ops/http_server.h"
#include "ops/status.h"
#include "state/state_store.h"

namespace tenantsync::ops {

class OpsService {
 public:
  // `live` and `store` (nullable) must outlive the service. Binds config.ops.listen.
  static StatusOr<std::unique_ptr<OpsService>> Start(const Config& config, PipelineStats* live,
                                                     state::StateStore* store);
  ~OpsService();  // Stop()
  void Stop();
  uint16_t port() const { return server_->port(); }
  // The latest collected report (collected_at_us == 0 before the first sample).
  StatusReport Latest() const;
  HttpResponse Handle(const std::string& path, const std::string& query) const;

 private:
  OpsService(const Config& config, PipelineStats* live, state::StateStore* store);
  void SampleLoop();
  HttpResponse History(const std::string& path) const;

  const Config& config_;
  PipelineStats* live_;
  StatusCollector collector_;
  LagHistory history_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  StatusReport latest_;
  std::thread sampler_;
  std::unique_ptr<HttpServer> server_;
};

// The status page (HTML with inline CSS and JavaScript).
const char* StatusPageHtml();

}  // namespace tenantsync::ops
