#include "snapshot/internal/progress.h"

#include <algorithm>
#include <chrono>

#include "core/pipeline_stats.h"

namespace tenantsync::snapshot::internal {

std::string FormatBytes(int64_t bytes) {
  char buf[32];
  if (bytes >= (1ll << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GB", bytes / double(1ll << 30));
  } else if (bytes >= (1 << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MB", bytes / double(1 << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%lld kB", static_cast<long long>(bytes / 1024));
  }
  return buf;
}

std::string FormatDuration(double seconds) {
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return buf;
}

ProgressDisplay::ProgressDisplay(Mode mode, FILE* out, std::vector<TableProgress*> tables)
    : mode_(mode), out_(out), tables_(std::move(tables)),
      last_plain_us_(tables_.size(), 0), reported_done_(tables_.size(), false) {}

ProgressDisplay::~ProgressDisplay() { Stop(); }

void ProgressDisplay::Start() {
  if (mode_ == Mode::kNone || thread_.joinable()) return;
  start_us_ = NowMicros();
  // Tables finished by an earlier run are not reported again.
  for (size_t i = 0; i < tables_.size(); ++i) reported_done_[i] = tables_[i]->done();
  thread_ = std::thread([this] { Loop(); });
}

void ProgressDisplay::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  Render(true);
}

void ProgressDisplay::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    cv_.wait_for(l, std::chrono::milliseconds(500));
    if (stop_) break;
    l.unlock();
    Render(false);
    l.lock();
  }
}

void ProgressDisplay::Render(bool final) {
  const int64_t now = NowMicros();
  if (mode_ == Mode::kPlain) {
    for (size_t i = 0; i < tables_.size(); ++i) {
      TableProgress& t = *tables_[i];
      bool done = t.done();
      if (reported_done_[i]) continue;
      if (t.start_us.load() == 0) continue;
      if (!done && now - last_plain_us_[i] < 5'000'000) continue;
      last_plain_us_[i] = now;
      if (done) reported_done_[i] = true;
      int64_t total = std::max(t.estimated_rows, t.rows.load());
      if (done) total = t.rows.load();
      std::fprintf(out_, "%s: %lld/%lld rows%s\n", t.table.c_str(),
                   static_cast<long long>(t.rows.load()), static_cast<long long>(total),
                   done ? " (done)" : "");
    }
    std::fflush(out_);
    return;
  }
  if (mode_ != Mode::kLive) return;
  std::string s;
  if (lines_drawn_ > 0) s += "\x1b[" + std::to_string(lines_drawn_) + "A";
  int lines = 0;
  int64_t all_rows = 0, all_bytes = 0;
  for (TableProgress* tp : tables_) {
    TableProgress& t = *tp;
    int64_t rows = t.rows.load(), bytes = t.bytes.load();
    all_rows += rows;
    all_bytes += bytes;
    int64_t start = t.start_us.load(), end = t.end_us.load();
    double secs = start ? ((end ? end : now) - start) / 1e6 : 0;
    double rate = secs > 0.05 ? rows / secs : 0;
    std::string state;
    if (t.done()) {
      state = t.chunks_skipped.load() == t.chunks_total ? "done earlier" : "done";
    } else if (!start) {
      state = "waiting";
    } else {
      int64_t left = std::max<int64_t>(0, t.estimated_rows - rows);
      state = rate > 0 ? "ETA " + FormatDuration(left / rate) : "";
    }
    char line[256];
    std::snprintf(line, sizeof line, "\x1b[2K%-28.28s %12lld / %-12lld rows %10s %10.0f rows/s  %d/%d  %s\n",
                  t.table.c_str(), static_cast<long long>(rows),
                  static_cast<long long>(std::max(t.estimated_rows, rows)), FormatBytes(bytes).c_str(),
                  rate, t.chunks_done.load(), t.chunks_total, state.c_str());
    s += line;
    ++lines;
  }
  double secs = (now - start_us_) / 1e6;
  char line[160];
  std::snprintf(line, sizeof line, "\x1b[2K%-28s %12lld rows %10s in %s%s\n", "total",
                static_cast<long long>(all_rows), FormatBytes(all_bytes).c_str(),
                FormatDuration(secs).c_str(), final ? "" : " ...");
  s += line;
  ++lines;
  lines_drawn_ = lines;
  std::fputs(s.c_str(), out_);
  std::fflush(out_);
}

}  // namespace tenantsync::snapshot::internal
