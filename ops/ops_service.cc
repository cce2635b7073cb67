#include "ops/ops_service.h"

#include "ops/audit.h"
#include "ops/metrics.h"

namespace tenantsync::ops {

OpsService::OpsService(const Config& config, PipelineStats* live, state::StateStore* store)
    : config_(config), live_(live), collector_(config, live, store) {}

StatusOr<std::unique_ptr<OpsService>> OpsService::Start(const Config& config, PipelineStats* live,
                                                        state::StateStore* store) {
  std::unique_ptr<OpsService> service(new OpsService(config, live, store));
  OpsService* raw = service.get();
  TS_ASSIGN_OR_RETURN(service->server_,
                      HttpServer::Start(config.ops.listen, config.ops.token,
                                        [raw](const std::string& path, const std::string& query) {
                                          return raw->Handle(path, query);
                                        }));
  service->sampler_ = std::thread([raw] { raw->SampleLoop(); });
  return service;
}

OpsService::~OpsService() { Stop(); }

void OpsService::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (sampler_.joinable()) sampler_.join();
  if (server_) server_->Stop();
}

void OpsService::SampleLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    auto report = collector_.Collect();
    lock.lock();
    if (report.ok()) {
      latest_ = *report;
      history_.Add(report->collected_at_us, report->lag_seconds, report->lag_bytes);
    }
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
  }
}

StatusReport OpsService::Latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_;
}

// /history: the audit trail (newest first, without the reports); /history/<id>: one run's JSON
// report. Read from the target's _tenantsync.runs on each request (rare, and never on the
// replication path).
HttpResponse OpsService::History(const std::string& path) const {
  auto records = ReadHistory(config_, 50);
  if (!records.ok()) {
    return {503, "text/plain; charset=utf-8", records.status().ToString() + "\n"};
  }
  if (path == "/history") {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : *records) {
      nlohmann::json j = r.ToJson();
      j["has_report"] = !r.report.is_null();
      j.erase("report");
      a.push_back(std::move(j));
    }
    return {200, "application/json", a.dump(2) + "\n"};
  }
  std::string id = path.substr(std::string("/history/").size());
  for (const auto& r : *records) {
    if (r.id == id && !r.report.is_null()) return {200, "application/json", r.report.dump(2) + "\n"};
  }
  return {404, "text/plain; charset=utf-8", "no report for run '" + id + "'\n"};
}

HttpResponse OpsService::Handle(const std::string& path, const std::string& query) const {
  if (path == "/metrics") {
    return {200, "text/plain; version=0.0.4; charset=utf-8", RenderMetrics(Latest(), live_)};
  }
  if (path == "/status") return {200, "application/json", ToJson(Latest()).dump(2) + "\n"};
  if (path == "/lag") return {200, "application/json", history_.ToJson().dump() + "\n"};
  if (path == "/healthz") {
    StatusReport r = Latest();
    if (r.collected_at_us == 0) return {503, "text/plain; charset=utf-8", "starting\n"};
    if (r.phase != "streaming") {
      return {503, "text/plain; charset=utf-8", "phase is " + r.phase + ", not streaming\n"};
    }
    if (r.lag_seconds > config_.ops.max_healthy_lag_seconds) {
      return {503, "text/plain; charset=utf-8",
              "lag " + std::to_string(r.lag_seconds) + " s exceeds ops.max_healthy_lag_seconds " +
                  std::to_string(config_.ops.max_healthy_lag_seconds) + "\n"};
    }
    return {200, "text/plain; charset=utf-8", "ok\n"};
  }
  if (path == "/history" || path.rfind("/history/", 0) == 0) return History(path);
  if (path == "/") return {200, "text/html; charset=utf-8", StatusPageHtml()};
  return {404, "text/plain; charset=utf-8", "not found; try /, /status, /metrics, /healthz, /lag, /history\n"};
}

}  // namespace tenantsync::ops
