#include "apply/pipeline.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <condition_variable>
#include <csignal>
#include <mutex>
#include <optional>
#include <thread>

#include "apply/applier.h"
#include "cdc/receiver.h"
#include "core/crypto.h"
#include "snapshot/preflight.h"
#include "snapshot/snapshot.h"
#include "state/journal.h"

namespace tenantsync::apply {

std::string FormatProgress(const ProgressFigures& f) {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "stream: received %s journaled %s applied %s lag %llu B %.1f s %.0f txn/s",
                f.received.ToString().c_str(), f.journaled.ToString().c_str(),
                f.applied.ToString().c_str(), static_cast<unsigned long long>(f.lag_bytes),
                f.lag_seconds, f.txn_per_second);
  return buf;
}

namespace {

// Runs the signal_set on its own thread for the whole pipeline, so a Ctrl-C during the snapshot
// or the stream takes the same clean path: it only sets `stop` and wakes the main thread.
class SignalWatcher {
 public:
  SignalWatcher(bool enabled, std::atomic<bool>* stop, std::function<void()> wake)
      : signals_(io_), stop_(stop), wake_(std::move(wake)) {
    if (!enabled) return;
    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;  // cancelled at shutdown
      stop_->store(true);
      wake_();
    });
    thread_ = std::thread([this] { io_.run(); });
  }
  ~SignalWatcher() {
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  std::atomic<bool>* stop_;
  std::function<void()> wake_;
  std::thread thread_;
};

Status Annotate(state::StateStore* store, PipelineStats* stats, const Status& s) {
  if (s.ok() || s.code() == StatusCode::kCancelled) {
    stats->SetPhase(PipelineStats::Phase::kStopped);
  } else {
    stats->SetPhase(PipelineStats::Phase::kFailed);
    stats->SetError(s.ToString());
    store->PutMeta(kMetaLastError, s.ToString()).IgnoreError();  // best effort: already failing
    store->PutMeta(kMetaLastErrorTime, std::to_string(NowMicros())).IgnoreError();
  }
  store->PutMeta(kMetaPhase, PipelineStats::PhaseName(stats->GetPhase())).IgnoreError();
  return s;
}

}  // namespace

Status RunPipeline(const Config& config, const PipelineOptions& options) {
  PipelineStats own_stats;
  PipelineStats* stats = options.stats ? options.stats : &own_stats;

  std::optional<Cipher> cipher;
  if (config.NeedsEncryptionKey()) {
    StatusOr<Cipher> c = Cipher::FromConfig(config.encryption);
    if (!c.ok()) return c.status();
    cipher.emplace(std::move(c).value());
  }

  state::StateOptions so;
  so.dir = config.state_dir;
  so.pipeline = config.pipeline;
  so.retention_hours = config.journal.retention_hours;
  so.max_journal_bytes = config.journal.max_bytes;
  so.sync_each_commit = !config.journal.group_commit;
  TS_ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore> store, state::StateStore::Open(so));

  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> stop{false};
  auto wake = [&] {
    std::lock_guard<std::mutex> l(mu);
    cv.notify_all();
  };
  SignalWatcher signals(options.handle_signals, &stop, wake);
  auto stop_requested = [&] { return stop.load() || (options.stop && options.stop->load()); };

  if (options.on_started) TS_RETURN_IF_ERROR(options.on_started(store.get(), stats));
  // Declared after `store`, so it runs before the store closes on every return below.
  struct OnStopping {
    const std::function<void()>& f;
    ~OnStopping() {
      if (f) f();
    }
  } on_stopping{options.on_stopping};

  // --- snapshot (run only) ---
  TS_ASSIGN_OR_RETURN(std::optional<std::string> snap_state, store->GetMeta(snapshot::kMetaState));
  if (options.snapshot && snap_state.value_or("") != "done") {
    stats->SetPhase(PipelineStats::Phase::kSnapshot);
    store->PutMeta(kMetaPhase, PipelineStats::PhaseName(stats->GetPhase())).IgnoreError();
    TS_ASSIGN_OR_RETURN(std::vector<std::string> failures, snapshot::Preflight(config));
    if (!failures.empty()) {
      std::string all;
      for (const auto& f : failures) all += (all.empty() ? "" : "; ") + f;
      return Annotate(store.get(), stats,
                      FailedPrecondition("preflight: " + all + "; nothing was changed"));
    }
    // The snapshot's cancel flag must follow both the signal and options.stop.
    std::atomic<bool> snapshot_cancel{false};
    std::atomic<bool> snapshot_done{false};
    std::thread relay([&] {
      while (!snapshot_done.load()) {
        if (stop_requested()) snapshot_cancel.store(true);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    snapshot::SnapshotOptions snap;
    snap.skip_preflight = true;
    snap.cancel = &snapshot_cancel;
    snap.stats = stats;
    snap.out = options.progress_out;
    snapshot::SnapshotResult result;
    Status s = snapshot::RunSnapshot(config, snap, *store, &result);
    snapshot_done.store(true);
    relay.join();
    if (!s.ok()) return Annotate(store.get(), stats, s);
    if (stop_requested()) return Annotate(store.get(), stats, Status::Ok());
  }

  // --- stream ---
  TS_ASSIGN_OR_RETURN(std::optional<std::string> consistent,
                      store->GetMeta(snapshot::kMetaConsistentLsn));
  if (!consistent) {
    return FailedPrecondition("the state directory " + config.state_dir +
                              " has no snapshot (no slot consistent point); run `tenantsync run` "
                              "(snapshot, then stream) or `tenantsync snapshot` first");
  }
  cdc::StreamOptions stream = cdc::StreamOptionsFromConfig(config);
  TS_ASSIGN_OR_RETURN(stream.start_lsn, Lsn::Parse(*consistent));
  TS_ASSIGN_OR_RETURN(std::optional<std::string> slot, store->GetMeta(snapshot::kMetaSlot));
  if (slot && !slot->empty()) stream.slot = *slot;
  stream.stats = stats;

  Applier applier(config, ApplyOptions::FromConfig(config), store.get(),
                  cipher ? &*cipher : nullptr, stats);
  // The receiver writes through the applier's tee, so large transactions are applied while they
  // are received (apply/applier.h, "Live transactions"); the store's journal gets every call.
  cdc::Receiver receiver(stream, applier.ReceiverJournal());
  stats->SetPhase(PipelineStats::Phase::kCatchingUp);
  store->PutMeta(kMetaPhase, PipelineStats::PhaseName(stats->GetPhase())).IgnoreError();

  Status receiver_status, applier_status;
  bool receiver_done = false, applier_done = false;
  std::thread receiver_thread([&] {
    Status s = receiver.Run();
    std::lock_guard<std::mutex> l(mu);
    receiver_status = s;
    receiver_done = true;
    cv.notify_all();
  });
  std::thread applier_thread([&] {
    Status s = applier.Run();
    std::lock_guard<std::mutex> l(mu);
    applier_status = s;
    applier_done = true;
    cv.notify_all();
  });

  // Foreign keys the snapshot added NOT VALID because a resumed copy mixed two snapshots
  // (snapshot/snapshot.h, "Resume"): the target is consistent once every source transaction
  // committed before the newer snapshot's point is applied, i.e. once the stream is caught up
  // (everything journaled is applied, everything received is journaled) and has received past
  // that point. They are validated then, on their own thread: VALIDATE CONSTRAINT scans the tables
  // but takes only SHARE UPDATE EXCLUSIVE, so the applier keeps writing meanwhile. A violation
  // is a real one (e.g. a parent row that became a dead letter): it is reported, the keys stay
  // NOT VALID and the next start tries again.
  TS_ASSIGN_OR_RETURN(std::optional<std::string> mixed,
                      store->GetMeta(snapshot::kMetaMixedSnapshots));
  bool validate_fks = mixed.has_value();
  Lsn validate_fks_after = stream.start_lsn;
  if (mixed) {
    StatusOr<Lsn> point = Lsn::Parse(*mixed);
    if (point.ok()) validate_fks_after = std::max(validate_fks_after, *point);
  }
  std::thread fk_thread;

  auto last_tick = std::chrono::steady_clock::now();
  uint64_t last_txns = stats->transactions_applied.load();
  auto poll = options.progress_interval.count() > 0
                  ? std::min<std::chrono::milliseconds>(options.progress_interval,
                                                        std::chrono::milliseconds(500))
                  : std::chrono::milliseconds(500);
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu);
      cv.wait_for(l, poll, [&] { return receiver_done || applier_done || stop_requested(); });
      if (receiver_done || applier_done || stop_requested()) break;
    }
    // Figures for the progress line and ops.
    state::JournalStats js = store->journal().Stats();
    Lsn journaled = store->journal().JournaledLsn();
    Lsn received = std::max(Lsn(stats->received_lsn.load()), js.received_lsn);
    if (received < journaled) received = journaled;
    Lsn applied(stats->applied_lsn.load());
    bool caught_up = js.journaled_commit_lsn <= applied && received <= journaled;
    ProgressFigures f;
    f.received = received;
    f.journaled = journaled;
    f.applied = applied;
    int64_t now = NowMicros();
    if (!caught_up) {
      f.lag_bytes = received.BytesSince(applied);
      int64_t from = std::max(stats->applied_commit_time_us.load(),
                              stats->caught_up_time_us.load());
      f.lag_seconds = from > 0 ? std::max<double>(0, (now - from) / 1e6) : 0;
    } else {
      stats->caught_up_time_us.store(now);
      if (stats->GetPhase() == PipelineStats::Phase::kCatchingUp) {
        stats->SetPhase(PipelineStats::Phase::kStreaming);
        store->PutMeta(kMetaPhase, PipelineStats::PhaseName(stats->GetPhase())).IgnoreError();
      }
      if (validate_fks && received >= validate_fks_after) {
        Lsn point = validate_fks_after;
        validate_fks = false;
        fk_thread = std::thread([&config, &store, &options, point] {
          Status s = snapshot::ValidateDeferredForeignKeys(config, *store);
          if (s.ok()) {
            std::fprintf(options.progress_out,
                         "tenantsync: caught up past the resumed snapshot (%s): the foreign keys "
                         "added NOT VALID are validated\n",
                         point.ToString().c_str());
          } else {
            std::fprintf(options.progress_out,
                         "tenantsync: caught up past the resumed snapshot (%s), but validating "
                         "the foreign keys added NOT VALID failed; they stay NOT VALID and are "
                         "validated again at the next start: %s\n",
                         point.ToString().c_str(), s.ToString().c_str());
            store->PutMeta(kMetaLastError, s.ToString()).IgnoreError();  // ops hint only
            store->PutMeta(kMetaLastErrorTime, std::to_string(NowMicros())).IgnoreError();
          }
          std::fflush(options.progress_out);
        });
      }
    }
    auto t = std::chrono::steady_clock::now();
    if (options.progress_interval.count() > 0 && t - last_tick >= options.progress_interval) {
      double secs = std::chrono::duration<double>(t - last_tick).count();
      uint64_t txns = stats->transactions_applied.load();
      f.txn_per_second = secs > 0 ? (txns - last_txns) / secs : 0;
      last_txns = txns;
      last_tick = t;
      std::fprintf(options.progress_out, "%s\n", FormatProgress(f).c_str());
      std::fflush(options.progress_out);
      store->PutMeta(kMetaCaughtUpTime, std::to_string(stats->caught_up_time_us.load()), false)
          .IgnoreError();  // ops hint only
    }
  }

  // Stop both (a no-op for one that already returned), then report the first failure.
  receiver.Stop();
  applier.Stop();
  receiver_thread.join();
  applier_thread.join();
  if (fk_thread.joinable()) fk_thread.join();
  Status result = !receiver_status.ok() ? receiver_status.WithContext("stream")
                  : !applier_status.ok() ? applier_status.WithContext("apply")
                                         : Status::Ok();
  if (result.ok() && !stop_requested()) {
    result = Fatal("the stream ended without a stop request; this is a bug");
  }
  return Annotate(store.get(), stats, result);
}

}  // namespace tenantsync::apply
