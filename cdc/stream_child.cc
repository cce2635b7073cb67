// cdc_stream_child: runs one Receiver into a state directory, for tests and benchmarks that
// need the receiver in its own process (kill -9, peak RSS).
//
//   cdc_stream_child --url URL --slot S --plugin pgoutput|wal2json [--publication P]
//                    --state DIR [--until-lsn X/Y] [--start-lsn X/Y] [--status-ms N]
//                    [--sync-each-commit 0|1]   (default 0: group commit)
//                    [--stream-in-progress 0|1] (default 1: pgoutput protocol 2 streaming)
//
// Stops cleanly on SIGTERM/SIGINT (asio::signal_set -> Receiver::Stop()), or once the journal
// holds everything up to --until-lsn. Prints "transactions=N changes=M journaled=X/Y" on
// stdout and exits 0 after a clean stop; prints the error and exits 1 otherwise.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>  // before asio: Boost 1.74 awaitable.hpp uses std::exchange

#include <boost/asio.hpp>

#include "cdc/receiver.h"
#include "state/journal.h"
#include "state/state_store.h"

using namespace tenantsync;  // NOLINT: a small main

int main(int argc, char** argv) {
  cdc::StreamOptions o;
  std::string state_dir;
  Lsn until;
  bool sync_each_commit = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--url") o.source_url = v;
    else if (k == "--slot") o.slot = v;
    else if (k == "--plugin") o.plugin = v;
    else if (k == "--publication") o.publication = v;
    else if (k == "--state") state_dir = v;
    else if (k == "--status-ms") o.status_interval = std::chrono::milliseconds(std::stoi(v));
    else if (k == "--sync-each-commit") sync_each_commit = v == "1";
    else if (k == "--stream-in-progress") o.stream_in_progress = v == "1";
    else if (k == "--until-lsn" || k == "--start-lsn") {
      auto lsn = Lsn::Parse(v);
      if (!lsn.ok()) {
        std::fprintf(stderr, "%s: bad LSN %s\n", k.c_str(), v.c_str());
        return 2;
      }
      (k == "--until-lsn" ? until : o.start_lsn) = *lsn;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  state::StateOptions so;
  so.dir = state_dir;
  so.pipeline = "stream_child";
  // Group commit by default: one fsync covers many transactions; the receiver acknowledges
  // only JournaledLsn(), which advances after the fsync (invariant 2 either way).
  so.sync_each_commit = sync_each_commit;
  o.spool_dir = state_dir + "/stream-spool";
  auto store = state::StateStore::Open(so);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  state::Journal& journal = (*store)->journal();
  cdc::Receiver receiver(o, journal);

  boost::asio::io_context signals_io;
  boost::asio::signal_set signals(signals_io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) receiver.Stop();
  });
  std::thread signal_thread([&] { signals_io.run(); });
  std::atomic<bool> finished{false};
  std::thread until_thread([&] {
    if (!until.valid()) return;
    while (!finished.load()) {
      if (journal.WaitForNewer(Lsn(until.value() - 1), std::chrono::milliseconds(100))) {
        receiver.Stop();
        return;
      }
    }
  });
  Status s = receiver.Run();
  finished.store(true);
  signals_io.stop();
  signal_thread.join();
  until_thread.join();
  const auto& c = receiver.counters();
  std::printf("transactions=%llu changes=%llu journaled=%s\n",
              static_cast<unsigned long long>(c.transactions.load()),
              static_cast<unsigned long long>(c.changes.load()),
              journal.JournaledLsn().ToString().c_str());
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
