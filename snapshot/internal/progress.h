// Snapshot progress: per-table counters the copy workers update, and a display thread that shows
// them. On a terminal: a live table (rows, MB, rows/s, ETA) redrawn about twice a second. Off a
// terminal: plain lines "orders: 12000/50000 rows" at most every few seconds per table and when a
// table finishes. Nothing secret is shown (table names and counts only).
//
// Thread safety: TableProgress counters are atomics written by workers; ProgressDisplay owns its
// thread, started by Start() and joined by Stop() (or the destructor, which never does I/O
// beyond a final line on the display's own stream).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tenantsync::snapshot::internal {

struct TableProgress {
  std::string table;
  int64_t estimated_rows = 0;
  int chunks_total = 0;
  std::atomic<int> chunks_done{0};      // including chunks done by earlier runs
  std::atomic<int> chunks_skipped{0};
  std::atomic<int64_t> rows{0};         // written by this run
  std::atomic<int64_t> bytes{0};        // read from the source by this run
  std::atomic<int64_t> dead_letters{0};
  std::atomic<int64_t> start_us{0};     // first chunk start, 0 until then
  std::atomic<int64_t> end_us{0};       // last chunk end, 0 until the table is done

  bool done() const { return chunks_done.load() >= chunks_total; }
};

class ProgressDisplay {
 public:
  enum class Mode { kLive, kPlain, kNone };
  ProgressDisplay(Mode mode, FILE* out, std::vector<TableProgress*> tables);
  ~ProgressDisplay();
  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  void Start();
  void Stop();  // final redraw, joins the thread

 private:
  void Loop();
  void Render(bool final);

  Mode mode_;
  FILE* out_;
  std::vector<TableProgress*> tables_;
  std::vector<int64_t> last_plain_us_;
  std::vector<bool> reported_done_;
  int lines_drawn_ = 0;
  int64_t start_us_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// "1.2 GB", "340 MB", "12 kB".
std::string FormatBytes(int64_t bytes);
// "1:02:03" / "2:03".
std::string FormatDuration(double seconds);

}  // namespace tenantsync::snapshot::internal
