#include "ops/live_publisher.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

namespace tenantsync::ops {

std::string LiveFigures::Encode() const {
  nlohmann::json j = {{"at_us", at_us},
                      {"pid", pid},
                      {"phase", phase},
                      {"transactions_applied", transactions_applied},
                      {"rows_applied", rows_applied},
                      {"txn_per_second", txn_per_second},
                      {"rows_per_second", rows_per_second},
                      {"received_lsn", received_lsn.ToString()},
                      {"journaled_lsn", journaled_lsn.ToString()},
                      {"applied_lsn", applied_lsn.ToString()},
                      {"applied_commit_time_us", applied_commit_time_us},
                      {"caught_up_time_us", caught_up_time_us},
                      {"dead_letters", dead_letters}};
  return j.dump();
}

std::optional<LiveFigures> LiveFigures::Decode(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  try {
    LiveFigures f;
    f.at_us = j.at("at_us").get<int64_t>();
    f.pid = j.at("pid").get<int64_t>();
    f.phase = j.at("phase").get<std::string>();
    f.transactions_applied = j.at("transactions_applied").get<uint64_t>();
    f.rows_applied = j.at("rows_applied").get<uint64_t>();
    f.txn_per_second = j.at("txn_per_second").get<double>();
    f.rows_per_second = j.at("rows_per_second").get<double>();
    auto lsn = [&](const char* key, Lsn* out) {
      auto parsed = Lsn::Parse(j.at(key).get<std::string>());
      if (!parsed.ok()) throw std::invalid_argument(key);
      *out = *parsed;
    };
    lsn("received_lsn", &f.received_lsn);
    lsn("journaled_lsn", &f.journaled_lsn);
    lsn("applied_lsn", &f.applied_lsn);
    f.applied_commit_time_us = j.at("applied_commit_time_us").get<int64_t>();
    f.caught_up_time_us = j.at("caught_up_time_us").get<int64_t>();
    f.dead_letters = j.at("dead_letters").get<uint64_t>();
    return f;
  } catch (const std::exception&) {
    return std::nullopt;  // written by another version, or torn: status does without it
  }
}

LivePublisher::LivePublisher(state::StateStore* store, const PipelineStats* live,
                             std::chrono::milliseconds interval)
    : store_(store), live_(live), interval_(interval) {
  thread_ = std::thread([this] { Loop(); });
}

LivePublisher::~LivePublisher() { Stop(); }

void LivePublisher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // ops hint only: a failure to write it must not fail the stop.
  store_->PutMeta(kMetaLive, Take(/*final=*/true).Encode(), /*sync=*/false).IgnoreError();
}

LiveFigures LivePublisher::Take(bool final) {
  LiveFigures f;
  f.at_us = NowMicros();
  f.pid = static_cast<int64_t>(::getpid());
  f.phase = PipelineStats::PhaseName(live_->GetPhase());
  // The last sample is written as the process leaves: it runs no longer, whatever it was doing.
  if (final && live_->GetPhase() != PipelineStats::Phase::kFailed) {
    f.phase = PipelineStats::PhaseName(PipelineStats::Phase::kStopped);
  }
  f.transactions_applied = live_->transactions_applied.load();
  for (const auto& [key, n] : live_->RowsSnapshot()) f.rows_applied += n;
  if (!final && last_at_us_ > 0 && f.at_us > last_at_us_) {
    double dt = static_cast<double>(f.at_us - last_at_us_) / 1e6;
    f.txn_per_second = static_cast<double>(f.transactions_applied - last_txns_) / dt;
    f.rows_per_second = static_cast<double>(f.rows_applied - last_rows_) / dt;
  }
  last_at_us_ = f.at_us;
  last_txns_ = f.transactions_applied;
  last_rows_ = f.rows_applied;
  f.received_lsn = Lsn(live_->received_lsn.load());
  f.journaled_lsn = Lsn(live_->journaled_lsn.load());
  f.applied_lsn = Lsn(live_->applied_lsn.load());
  f.applied_commit_time_us = live_->applied_commit_time_us.load();
  f.caught_up_time_us = live_->caught_up_time_us.load();
  f.dead_letters = live_->dead_letters.load();
  return f;
}

void LivePublisher::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    store_->PutMeta(kMetaLive, Take(/*final=*/false).Encode(), /*sync=*/false).IgnoreError();
    lock.lock();
    cv_.wait_for(lock, interval_, [this] { return stopping_; });
  }
}

}  // namespace tenantsync::ops
