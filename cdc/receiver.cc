// The CopyBoth sub-protocol (PostgreSQL docs, "Streaming Replication Protocol"), big-endian:
//
//   server -> us   XLogData          'w' Int64 data_start  Int64 wal_end  Int64 send_time  Byte[n]
//                  Primary keepalive 'k' Int64 wal_end  Int64 send_time  Byte1 reply_requested
//   us -> server   Standby status    'r' Int64 write  Int64 flush  Int64 apply  Int64 send_time
//                                        Byte1 reply_requested
// Times are microseconds since 2000-01-01. The socket code here only moves frames; what is
// inside an XLogData is the decoders' business.
#include "cdc/receiver.h"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <filesystem>
#include <optional>
#include <thread>
#include <variant>

#include "cdc/byte_reader.h"
#include "cdc/internal/stream_spool.h"
#include "cdc/pgoutput_decoder.h"
#include "cdc/wal2json_decoder.h"
#include "core/kill_point.h"
#include "core/pg.h"

namespace tenantsync::cdc {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kTick = std::chrono::milliseconds(100);
// Longest stretch spent decoding buffered messages before the event loop runs again (timer,
// Stop()); bounds status-update latency during a huge transaction.
constexpr auto kDrainSlice = std::chrono::milliseconds(20);
// Read batching under a steady stream (Session::UpdateBatching).
constexpr auto kBatchWindow = std::chrono::milliseconds(2);
constexpr uint64_t kBusyMessages = 64;  // per kBatchWindow: ~32,000 messages/s
constexpr int kBatchLowWater = 64 << 10;
constexpr auto kBatchWait = std::chrono::microseconds(1000);

int64_t PgNowMicros() { return NowMicros() - kPgEpochOffsetUs; }

void PutU64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}

struct SlotInfo {
  std::string plugin;
  std::string slot_type;
  std::string database;
  std::optional<int64_t> active_pid;
  Lsn confirmed_flush;
  std::string wal_status;
};

StatusOr<std::optional<SlotInfo>> ReadSlot(PgConn& conn, const std::string& slot) {
  TS_ASSIGN_OR_RETURN(
      PgResult r,
      conn.ExecParams("SELECT plugin, slot_type, database, active_pid, confirmed_flush_lsn, "
                      "coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1",
                      {slot}));
  if (r.rows() == 0) return std::optional<SlotInfo>();
  SlotInfo s;
  s.plugin = std::string(r.Get(0, 0));
  s.slot_type = std::string(r.Get(0, 1));
  s.database = std::string(r.Get(0, 2));
  if (!r.IsNull(0, 3)) {
    TS_ASSIGN_OR_RETURN(int64_t pid, r.GetInt(0, 3));
    s.active_pid = pid;
  }
  if (!r.IsNull(0, 4)) {
    auto lsn = Lsn::Parse(r.Get(0, 4));
    if (!lsn.ok()) return Fatal("pg_replication_slots.confirmed_flush_lsn is not an LSN");
    s.confirmed_flush = *lsn;
  }
  s.wal_status = std::string(r.Get(0, 5));
  return std::optional<SlotInfo>(std::move(s));
}

// Catalog lookups for the decoders, over the session's normal connection.
StatusOr<std::string> LookupTypeName(PgConn& conn, uint32_t oid, int32_t typmod) {
  TS_ASSIGN_OR_RETURN(PgResult r, conn.ExecParams("SELECT format_type($1::oid, $2::int)",
                                                  {std::to_string(oid), std::to_string(typmod)}));
  if (r.rows() != 1 || r.IsNull(0, 0)) return NotFound("type " + std::to_string(oid));
  return std::string(r.Get(0, 0));
}

StatusOr<Relation> LookupRelation(PgConn& conn, const std::string& schema,
                                  const std::string& table) {
  // Live columns in attnum order (what both plugins send), the replica identity, and which
  // columns pgoutput would flag as key: all under FULL, the identity index's otherwise.
  TS_ASSIGN_OR_RETURN(
      PgResult r,
      conn.ExecParams(
          "SELECT c.oid, c.relreplident, a.attname, format_type(a.atttypid, a.atttypmod), "
          "       a.atttypid, a.atttypmod, "
          "       (c.relreplident = 'f' OR coalesce(a.attnum = ANY(i.indkey), false)) "
          "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
          "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
          "   AND a.attgenerated = '' "
          "  LEFT JOIN pg_index i ON i.indrelid = c.oid AND CASE c.relreplident "
          "       WHEN 'i' THEN i.indisreplident WHEN 'd' THEN i.indisprimary ELSE false END "
          " WHERE n.nspname = $1 AND c.relname = $2 ORDER BY a.attnum",
          {schema, table}));
  if (r.rows() == 0) return NotFound("relation " + schema + "." + table);
  Relation rel;
  rel.schema = schema;
  rel.name = table;
  TS_ASSIGN_OR_RETURN(int64_t oid, r.GetInt(0, 0));
  rel.oid = static_cast<uint32_t>(oid);
  rel.replica_identity = r.Get(0, 1).empty() ? 'd' : r.Get(0, 1)[0];
  for (int i = 0; i < r.rows(); ++i) {
    Relation::Column col;
    col.name = std::string(r.Get(i, 2));
    col.type_name = std::string(r.Get(i, 3));
    TS_ASSIGN_OR_RETURN(int64_t type_oid, r.GetInt(i, 4));
    TS_ASSIGN_OR_RETURN(int64_t typmod, r.GetInt(i, 5));
    col.type_oid = static_cast<uint32_t>(type_oid);
    col.type_modifier = static_cast<int32_t>(typmod);
    col.is_key = r.Get(i, 6) == "t";
    rel.columns.push_back(std::move(col));
  }
  return rel;
}

}  // namespace

StreamOptions StreamOptionsFromConfig(const Config& config) {
  StreamOptions o;
  o.source_url = config.source.url;
  o.slot = config.source.slot.empty() ? "tenantsync_" + config.pipeline : config.source.slot;
  o.publication = config.source.publication.empty() ? "tenantsync_" + config.pipeline
                                                    : config.source.publication;
  o.plugin = config.source.plugin;
  o.schema = config.source.schema;
  o.stream_in_progress = config.source.stream_in_progress;
  o.logical_decoding_work_mem = config.source.logical_decoding_work_mem;
  if (!config.state_dir.empty()) o.spool_dir = config.state_dir + "/stream-spool";
  return o;
}

struct Receiver::Loop {
  asio::io_context io;
};

// One replication connection, from slot check to close.
class Receiver::Session {
 public:
  explicit Session(Receiver& r) : r_(r), io_(r.loop_->io) {}

  Status Run(bool* streamed) {
    Status s = Stream(streamed);
    // Whatever ended the session, a partial transaction is not kept: it is resent in full
    // on the next start (its commit is after JournaledLsn()).
    bool journal_open = journal_open_;
    in_txn_ = false;
    journal_open_ = false;
    fast_xid_ = 0;
    block_xid_ = 0;
    // Streamed transactions not committed yet are streamed again from their first block.
    if (spool_) spool_->DiscardAll();
    if (journal_open) {
      Status a = r_.journal_.Abort();
      if (!a.ok()) return a.WithContext("aborting the partial transaction");
    }
    if (repl_.connected() && copy_open_) {
      if (s.ok()) {
        // Clean stop: final status update with everything durable, then CopyDone.
        PQsetnonblocking(repl_.get(), 0);
        SendStatus(false).IgnoreError();  // best effort: the server may already be gone
        PQputCopyEnd(repl_.get(), nullptr);
        PQflush(repl_.get());
      }
    }
    return s;
  }

 private:
  Status Stream(bool* streamed) {
    const StreamOptions& o = r_.options_;
    TS_ASSIGN_OR_RETURN(catalog_, PgConn::Connect(o.source_url, o.application_name));
    TS_RETURN_IF_ERROR(CheckSlot());
    TS_ASSIGN_OR_RETURN(PgResult t, catalog_.Exec("SELECT setting::bigint FROM pg_settings "
                                                  "WHERE name = 'wal_sender_timeout'"));
    status_interval_ = o.status_interval;
    if (t.rows() == 1) {
      TS_ASSIGN_OR_RETURN(int64_t ms, t.GetInt(0, 0));
      if (ms > 0 && std::chrono::milliseconds(ms / 2) < status_interval_) {
        status_interval_ = std::chrono::milliseconds(std::max<int64_t>(ms / 2, 100));
      }
    }
    if (o.plugin == "pgoutput") {
      streaming_ = false;
      if (o.stream_in_progress) {
        TS_ASSIGN_OR_RETURN(PgResult v, catalog_.Exec("SHOW server_version_num"));
        TS_ASSIGN_OR_RETURN(int64_t version, v.GetInt(0, 0));
        streaming_ = version >= 140000;  // protocol 2 and `streaming` came with PostgreSQL 14
      }
      if (streaming_) {
        TS_ASSIGN_OR_RETURN(spool_, internal::StreamSpool::Open(r_.spool_dir_));
      }
      decoder_.emplace<PgoutputDecoder>(TypeNames(), streaming_ ? 2 : 1);
    } else {
      decoder_.emplace<Wal2jsonDecoder>([this](const std::string& s, const std::string& t) {
        return LookupRelation(catalog_, s, t);
      });
    }

    TS_ASSIGN_OR_RETURN(repl_, PgConn::Connect(o.source_url, o.application_name, true));
    TS_ASSIGN_OR_RETURN(PgResult ident, repl_.Exec("IDENTIFY_SYSTEM"));
    if (ident.rows() != 1 || ident.columns() < 4) {
      return Fatal("IDENTIFY_SYSTEM returned an unexpected result");
    }
    // The walsender writes the values' text with its own session's settings (pgoutput and
    // wal2json call the types' output functions): the same as the snapshot's (core/pg.h).
    TS_RETURN_IF_ERROR_CTX(repl_.Run(kSourceOutputSettings),
                           "configuring the replication session's output");
    if (streaming_ && !o.logical_decoding_work_mem.empty()) {
      // A 1M-row UPDATE with the default 64MB: the applier waited ~0.7 s for the first block
      // while one core idled (bench/RESULTS.md, Apply).
      PgResult set(PQexec(repl_.get(), ("SET logical_decoding_work_mem = " +
                                         QuoteLiteral(o.logical_decoding_work_mem)).c_str()));
      if (PQresultStatus(set.get()) != PGRES_COMMAND_OK) {
        Status s = StatusFromResult(repl_.get(), set.get(), "SET logical_decoding_work_mem");
        if (s.code() == StatusCode::kConnection) return s;
        return FailedPrecondition("source.logical_decoding_work_mem '" +
                                  o.logical_decoding_work_mem + "' was refused by the source (" +
                                  s.message() + "); use a size such as 4MB, or leave it empty");
      }
    }
    std::string start = StartCommand();
    spdlog::info("stream: {} from {} (slot {}, plugin {}, server at {})", "starting",
                 start_lsn_.ToString(), o.slot, o.plugin, ident.Get(0, 2));
    PgResult started(PQexec(repl_.get(), start.c_str()));
    if (PQresultStatus(started.get()) != PGRES_COPY_BOTH) {
      Status s = StatusFromResult(repl_.get(), started.get(), "START_REPLICATION");
      // 55006 object_in_use: the slot is held by another walsender (a race with CheckSlot).
      if (s.sqlstate() == "55006") return ConnectionError(s.message(), s.sqlstate());
      return s;
    }
    copy_open_ = true;
    *streamed = true;
    if (PQsetnonblocking(repl_.get(), 1) != 0) return ConnectionError(repl_.LastError());
    return Loop();
  }

  Status CheckSlot() {
    const StreamOptions& o = r_.options_;
    auto deadline = Clock::now() + o.slot_busy_wait;
    for (;;) {
      TS_ASSIGN_OR_RETURN(auto slot, ReadSlot(catalog_, o.slot));
      Lsn journaled = r_.journal_.JournaledLsn();
      if (!slot) {
        return FailedPrecondition(
            "replication slot " + o.slot + " does not exist on SOURCE (dropped, or lost in a "
            "failover); changes after LSN " + journaled.ToString() +
            " can not be recovered from it: run `tenantsync rollback --confirm` and start again "
            "with a new snapshot");
      }
      if (slot->slot_type != "logical") {
        return FailedPrecondition("replication slot " + o.slot + " is a " + slot->slot_type +
                                  " slot; tenantsync needs a logical slot");
      }
      if (slot->plugin != o.plugin) {
        return FailedPrecondition("replication slot " + o.slot + " uses plugin " +
                                  slot->plugin + " but the config says " + o.plugin +
                                  "; set source.plugin: " + slot->plugin);
      }
      if (slot->wal_status == "lost") {
        return FailedPrecondition(
            "replication slot " + o.slot + " has lost required WAL (wal_status = lost, "
            "max_slot_wal_keep_size exceeded); changes after LSN " + journaled.ToString() +
            " can not be recovered: run `tenantsync rollback --confirm` and start again with a "
            "new snapshot");
      }
      if (journaled.valid() && slot->confirmed_flush.valid() && journaled < slot->confirmed_flush) {
        return FailedPrecondition(
            "replication slot " + o.slot + " has confirmed " + slot->confirmed_flush.ToString() +
            " but the journal only holds up to " + journaled.ToString() +
            ": another consumer advanced the slot (or the state directory is not this "
            "pipeline's); changes in between are lost: start again with a new snapshot");
      }
      start_lsn_ = journaled.valid() ? journaled
                   : o.start_lsn.valid() ? o.start_lsn
                                         : slot->confirmed_flush;
      if (!slot->active_pid) return Status::Ok();
      if (r_.stop_requested_.load()) return Cancelled("stopped while waiting for the slot");
      if (Clock::now() >= deadline) {
        return FailedPrecondition("replication slot " + o.slot + " is in use by PID " +
                                  std::to_string(*slot->active_pid) +
                                  " on SOURCE (another tenantsync stream?); stop it first, or "
                                  "check pg_stat_replication");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }

  std::string StartCommand() const {
    const StreamOptions& o = r_.options_;
    std::string cmd = "START_REPLICATION SLOT " + QuoteIdent(o.slot) + " LOGICAL " +
                      start_lsn_.ToString() + " (";
    if (o.plugin == "pgoutput") {
      cmd += std::string("\"proto_version\" ") + (streaming_ ? "'2'" : "'1'") +
             ", \"publication_names\" " + QuoteLiteral(QuoteIdent(o.publication)) +
             ", \"messages\" 'true'";
      if (streaming_) cmd += ", \"streaming\" 'on'";
    } else {
      bool first = true;
      for (const auto& [k, v] : Wal2jsonDecoder::PluginOptions()) {
        if (!first) cmd += ", ";
        first = false;
        cmd += QuoteIdent(k) + " " + QuoteLiteral(v);
      }
      if (!o.schema.empty()) {
        // wal2json's table list syntax: "schema.table", * wildcard, backslash escapes.
        std::string pattern;
        for (char c : o.schema) {
          if (c == '.' || c == ',' || c == '*' || c == '\\' || c == ' ') pattern.push_back('\\');
          pattern.push_back(c);
        }
        cmd += ", \"add-tables\" " + QuoteLiteral(pattern + ".*");
      }
    }
    return cmd + ")";
  }

  // The event loop of one connection: socket readable -> drain; tick -> status / stop.
  Status Loop() {
    try {
      return LoopOrThrow();
    } catch (const std::exception& e) {  // asio reports descriptor errors by exception
      return ConnectionError(std::string("replication event loop: ") + e.what());
    }
  }

  Status LoopOrThrow() {
    io_.restart();
    asio::posix::stream_descriptor sock(io_, PQsocket(repl_.get()));
    asio::steady_timer timer(io_);
    done_ = false;
    result_ = Status::Ok();
    last_status_ = Clock::now();

    asio::steady_timer batch_timer(io_);
    sock_fd_ = PQsocket(repl_.get());
    batching_ = false;
    window_messages_ = 0;
    window_start_ = Clock::now();
    SetReceiveLowWater(sock_fd_, 1);
    // One wait at a time: the socket (readable at the low-water mark) or, while batching, the
    // batch timer, whichever comes first; the other is cancelled and a stale completion that
    // was already queued is recognised by its generation.
    uint64_t wait_gen = 0;
    std::function<void()> arm_read;
    auto on_wake = [&](uint64_t gen, bool by_timer) {
      if (done_ || gen != wait_gen) return;
      ++wait_gen;
      boost::system::error_code ignored;
      if (by_timer) {
        sock.cancel(ignored);
      } else {
        batch_timer.cancel();
      }
      if (batching_) r_.counters_.batched_reads.fetch_add(1, std::memory_order_relaxed);
      ReadThenDrain(arm_read);
    };
    arm_read = [&] {
      const uint64_t gen = wait_gen;
      sock.async_wait(asio::posix::stream_descriptor::wait_read,
                      [&, gen](const boost::system::error_code& ec) {
                        if (ec == asio::error::operation_aborted) return;
                        if (done_ || gen != wait_gen) return;
                        if (ec) return Finish(ConnectionError("socket wait: " + ec.message()));
                        on_wake(gen, false);
                      });
      if (batching_) {
        batch_timer.expires_after(kBatchWait);
        batch_timer.async_wait([&, gen](const boost::system::error_code& ec) {
          if (ec) return;  // cancelled: the socket woke first
          on_wake(gen, true);
        });
      }
    };
    std::function<void()> arm_timer = [&] {
      timer.expires_after(kTick);
      timer.async_wait([&](const boost::system::error_code& ec) {
        if (done_ || ec) return;
        if (r_.stop_requested_.load()) return Finish(Status::Ok());
        Status s = MaybeSendStatus();
        if (!s.ok()) return Finish(s);
        arm_timer();
      });
    };
    on_finish_ = [&] {
      boost::system::error_code ignored;
      sock.cancel(ignored);
      timer.cancel();
      batch_timer.cancel();
    };
    // Messages may already be buffered in libpq (they arrived with the START_REPLICATION answer).
    asio::post(io_, [&] { Drain(arm_read); });
    arm_timer();
    io_.run();
    if (!done_) {
      // io_.stop() posted by Stop(): a clean stop.
      done_ = true;
      result_ = Status::Ok();
      on_finish_();
    }
    // Run every handler still queued (cancelled waits, posted drains: they see done_ and
    // return) while the locals they refer to are alive.
    for (;;) {
      io_.restart();
      if (io_.poll() == 0) break;
    }
    sock.release();  // the descriptor belongs to libpq
    return result_;
  }

  void Finish(Status s) {
    if (done_) return;
    done_ = true;
    result_ = std::move(s);
    on_finish_();
    io_.stop();
  }

  // Reads what the socket holds into libpq, then decodes it.
  void ReadThenDrain(const std::function<void()>& arm_read) {
    if (PQconsumeInput(repl_.get()) == 0) {
      return Finish(ConnectionError("replication connection lost: " + repl_.LastError()));
    }
    Drain(arm_read);
  }

  // Decodes what libpq has buffered; re-posts itself after kDrainSlice so timers and Stop()
  // run during a long transaction; waits on the socket when libpq has nothing left.
  void Drain(const std::function<void()>& arm_read) {
    auto slice_end = Clock::now() + kDrainSlice;
    for (;;) {
      if (r_.stop_requested_.load()) return Finish(Status::Ok());
      char* raw = nullptr;
      int n = PQgetCopyData(repl_.get(), &raw, 1);
      PgBuffer buf(raw);
      if (n == 0) {
        Status s = MaybeSendStatus();
        if (!s.ok()) return Finish(s);
        UpdateBatching();  // before the wait is armed: it decides whether the timer is needed
        return arm_read();
      }
      if (n == -1) {
        PgResult res(PQgetResult(repl_.get()));
        return Finish(ConnectionError("the source ended the replication stream" +
                                      (repl_.LastError().empty() ? std::string()
                                                                 : ": " + repl_.LastError())));
      }
      if (n < 0) {
        return Finish(ConnectionError("replication connection lost: " + repl_.LastError()));
      }
      ++window_messages_;
      Status s = HandleCopyData(std::span<const uint8_t>(reinterpret_cast<uint8_t*>(raw), n));
      if (!s.ok()) return Finish(s);
      if (Clock::now() >= slice_end) {
        s = MaybeSendStatus();
        if (!s.ok()) return Finish(s);
        asio::post(io_, [this, &arm_read] {
          if (!done_) ReadThenDrain(arm_read);
        });
        return;
      }
    }
  }

  // Batching of socket reads under a steady stream: the walsender sends every change as its own
  // small message, and waking for each (an epoll wake-up, a recv, a window update) costs the
  // receiver more CPU than decoding it. While messages arrive faster than kBusyMessages per
  // kBatchWindow, the socket reports readable only once kBatchLowWater bytes are queued
  // (SO_RCVLOWAT) and a kBatchWait timer reads whatever is there meanwhile: at most kBatchWait
  // of added latency, and none when the stream is quiet (the low-water mark is back at 1).
  void UpdateBatching() {
    auto now = Clock::now();
    if (now - window_start_ < kBatchWindow) return;
    bool busy = window_messages_ >= kBusyMessages;
    window_messages_ = 0;
    window_start_ = now;
    if (busy == batching_) return;
    batching_ = busy;
    SetReceiveLowWater(sock_fd_, busy ? kBatchLowWater : 1);
  }

  static void SetReceiveLowWater(int fd, int bytes) {
    // Best effort: without it every message wakes the loop, as before.
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes));
  }

  Status HandleCopyData(std::span<const uint8_t> msg) {
    r_.counters_.last_message_us.store(NowMicros());
    if (auto* st = r_.options_.stats) st->last_server_message_us.store(NowMicros());
    ByteReader r(msg, "replication message");
    TS_ASSIGN_OR_RETURN(uint8_t kind, r.ReadU8("kind"));
    if (kind == 'w') {
      TS_ASSIGN_OR_RETURN(uint64_t data_start, r.ReadU64("XLogData data_start"));
      TS_ASSIGN_OR_RETURN(uint64_t wal_end, r.ReadU64("XLogData wal_end"));
      TS_ASSIGN_OR_RETURN(int64_t send_time, r.ReadI64("XLogData send_time"));
      NoteServerPosition(Lsn(data_start), Lsn(wal_end));
      std::span<const uint8_t> payload = msg.subspan(r.offset());
      r_.counters_.bytes.fetch_add(payload.size());
      StatusOr<Event> ev = std::visit(
          [&](auto& d) -> StatusOr<Event> {
            if constexpr (std::is_same_v<std::decay_t<decltype(d)>, std::monostate>) {
              return Fatal("no decoder");
            } else {
              return d.Decode(payload);
            }
          },
          decoder_);
      if (!ev.ok()) {
        return ev.status().WithContext("decoding the message at " + Lsn(data_start).ToString());
      }
      return OnEvent(std::move(ev).value(), send_time, payload);
    }
    if (kind == 'k') {
      TS_ASSIGN_OR_RETURN(uint64_t wal_end, r.ReadU64("keepalive wal_end"));
      TS_ASSIGN_OR_RETURN(int64_t send_time, r.ReadI64("keepalive send_time"));
      TS_ASSIGN_OR_RETURN(uint8_t reply, r.ReadU8("keepalive reply_requested"));
      (void)send_time;
      r_.counters_.last_keepalive_us.store(NowMicros());
      NoteServerPosition(Lsn(wal_end), Lsn(wal_end));
      // See the header: a keepalive position may be journaled only with no transaction open.
      // Transactions received after this keepalive commit at or after wal_end, so the
      // position stays safe to journal later (MaybeAdvanceIdle re-checks in_txn_).
      if (!in_txn_ && Lsn(wal_end) > pending_idle_) pending_idle_ = Lsn(wal_end);
      TS_RETURN_IF_ERROR(MaybeAdvanceIdle());
      if (reply) return SendStatus(false);
      return Status::Ok();
    }
    return r.Error("kind", "is " + std::to_string(kind) + "; expected 'w' or 'k'");
  }

  // Journals the idle position of the last keepalive (at most once per status interval: it is
  // a synced write) and acknowledges it at once.
  Status MaybeAdvanceIdle() {
    if (!IdleSafe() || !pending_idle_.valid()) return Status::Ok();
    if (pending_idle_ <= r_.journal_.JournaledLsn()) {
      pending_idle_ = Lsn();
      return Status::Ok();
    }
    if (Clock::now() - last_idle_advance_ < status_interval_) return Status::Ok();
    TS_RETURN_IF_ERROR(r_.journal_.AdvanceIdle(pending_idle_));
    pending_idle_ = Lsn();
    last_idle_advance_ = Clock::now();
    if (auto* st = r_.options_.stats) {
      st->journaled_lsn.store(r_.journal_.JournaledLsn().value());
      auto stats = r_.journal_.Stats();
      if (stats.applied_lsn >= stats.journaled_commit_lsn) st->caught_up_time_us.store(NowMicros());
    }
    return SendStatus(false);
  }

  void NoteServerPosition(Lsn data_start, Lsn wal_end) {
    if (data_start > received_) received_ = data_start;
    r_.counters_.received_lsn.store(received_.value());
    if (wal_end.value() > r_.counters_.server_wal_end.load()) {
      r_.counters_.server_wal_end.store(wal_end.value());
    }
    // The journal learns the received position once per drained batch (FlushReceived), not
    // per message: its lock is shared with the group-commit syncer.
    if (auto* st = r_.options_.stats) {
      st->received_lsn.store(received_.value());
      if (wal_end.value() > st->server_wal_end.load()) st->server_wal_end.store(wal_end.value());
    }
  }

  // No transaction open anywhere: a keepalive position may be journaled (see the header).
  // Streamed transactions not committed yet count as open: their blocks are not journaled.
  bool IdleSafe() const { return !in_txn_ && !journal_open_ && (!spool_ || spool_->empty()); }

  Status OnEvent(Event&& ev, int64_t send_time_pg_us, std::span<const uint8_t> payload) {
    state::Journal& j = r_.journal_;
    if (streaming_) {
      if (auto* st = std::get_if<StreamStart>(&ev)) return OnStreamStart(*st);
      if (std::holds_alternative<StreamStop>(ev)) {
        block_xid_ = 0;
        return Status::Ok();
      }
      if (auto* sc = std::get_if<StreamCommit>(&ev)) return OnStreamCommit(*sc);
      if (auto* sa = std::get_if<StreamAbort>(&ev)) return OnStreamAbort(*sa);
      if (block_xid_ != 0) return OnStreamed(ev, payload);
      // A transaction sent whole, or a standalone message: the streamed transaction held in
      // the journal (if any) is no longer the only one in flight.
      if (std::holds_alternative<BeginTxn>(ev) || std::holds_alternative<StandaloneMessage>(ev)) {
        TS_RETURN_IF_ERROR(LeaveFastPath("a transaction arrived between its blocks"));
      }
    }
    if (auto* b = std::get_if<BeginTxn>(&ev)) {
      if (in_txn_) return Corruption("Begin of " + b->final_lsn.ToString() + " inside a transaction");
      txn_ = TransactionInfo{b->xid, b->final_lsn, Lsn(), b->commit_time_us};
      in_txn_ = true;
      // The journal transaction starts with the first change: empty transactions (wal2json
      // sends Begin/Commit for every transaction of the database, pgoutput skips them) are
      // not journaled, so both plugins journal the same transactions.
      journal_open_ = false;
      return Status::Ok();
    }
    if (auto* c = std::get_if<Change>(&ev)) {
      if (!in_txn_) return Corruption("change outside a transaction");
      if (!journal_open_) {
        TS_RETURN_IF_ERROR(j.Begin(txn_));
        journal_open_ = true;
      }
      TS_RETURN_IF_ERROR(j.Append(*c));
      r_.counters_.changes.fetch_add(1);
      return Status::Ok();
    }
    if (auto* c = std::get_if<CommitTxn>(&ev)) {
      if (!in_txn_) return Corruption("Commit of " + c->commit_lsn.ToString() + " without Begin");
      if (c->commit_lsn != txn_.commit_lsn) {
        return Corruption("Commit at " + c->commit_lsn.ToString() + " for Begin at " +
                          txn_.commit_lsn.ToString());
      }
      txn_.end_lsn = c->end_lsn;
      txn_.commit_time_us = c->commit_time_us;
      if (!journal_open_) {
        // Empty: nothing to journal, and everything before it is journaled, so its end is an
        // idle position (acknowledged once journaled by MaybeAdvanceIdle).
        in_txn_ = false;
        if (c->end_lsn > pending_idle_) pending_idle_ = c->end_lsn;
        return Status::Ok();
      }
      // Kill point "cdc.before_journal_commit": the transaction is spooled, not committed;
      // a restart must receive it again in full and journal it once.
      KillPoint("cdc.before_journal_commit");
      TS_RETURN_IF_ERROR(j.Commit(txn_));
      in_txn_ = false;
      journal_open_ = false;
      // Kill point "cdc.after_journal_commit": durable but not acknowledged; the resend after
      // a restart must be dropped as a duplicate.
      KillPoint("cdc.after_journal_commit");
      CountCommit();
      return Status::Ok();
    }
    if (auto* m = std::get_if<StandaloneMessage>(&ev)) {
      if (in_txn_) return Corruption("non-transactional message inside a transaction");
      // Journaled as a one-change transaction at the message's LSN; end_lsn = lsn so a restart
      // from there receives it again and the journal drops the resend.
      TransactionInfo t{0, m->lsn, m->lsn, PgToUnixMicros(send_time_pg_us)};
      TS_RETURN_IF_ERROR(j.Begin(t));
      Status s = j.Append(m->change);
      if (s.ok()) s = j.Commit(t);
      if (!s.ok()) {
        j.Abort().IgnoreError();  // the original error is the one to report
        return s;
      }
      CountCommit();
      return Status::Ok();
    }
    return Status::Ok();  // RelationUpdate, TypeInfo, OriginInfo: caches already updated
  }

  // --- streamed in-progress transactions (pgoutput protocol 2) ---
  //
  // Every block goes to the spool. The fast path: a streamed transaction that starts while
  // nothing else is in flight is also appended to the journal as it arrives (journal_open_,
  // fast_xid_), so its Stream Commit is just the journal's Commit and the applier's live path
  // sees its changes during the stream. Anything else in flight meanwhile (a transaction sent
  // whole, another streamed one, a cut subtransaction) aborts that journal transaction, and
  // the commit replays the spool into the journal instead.

  Status OnStreamStart(const StreamStart& st) {
    if (in_txn_) return Corruption("Stream Start of transaction " + std::to_string(st.xid) +
                                   " inside a transaction");
    TS_RETURN_IF_ERROR(spool_->Start(st.xid, st.first_segment));
    block_xid_ = st.xid;
    if (fast_xid_ != 0 && (fast_xid_ != st.xid || st.first_segment)) {
      TS_RETURN_IF_ERROR(LeaveFastPath("another streamed transaction arrived"));
    }
    if (st.first_segment && fast_xid_ == 0 && !journal_open_ && spool_->Count() == 1) {
      // The commit LSN is not known yet: the journal checks for a resend at Commit.
      TS_RETURN_IF_ERROR(r_.journal_.Begin(TransactionInfo{st.xid, Lsn(), Lsn(), 0}));
      journal_open_ = true;
      fast_xid_ = st.xid;
    }
    return Status::Ok();
  }

  Status OnStreamed(const Event& ev, std::span<const uint8_t> payload) {
    const uint32_t sub = std::get<PgoutputDecoder>(decoder_).stream_xid();
    if (std::holds_alternative<RelationUpdate>(ev) || std::holds_alternative<TypeInfo>(ev)) {
      return spool_->Append(block_xid_, sub, /*schema=*/true, payload);
    }
    if (const auto* c = std::get_if<Change>(&ev)) {
      TS_RETURN_IF_ERROR(spool_->Append(block_xid_, sub, /*schema=*/false, payload));
      if (fast_xid_ == block_xid_) TS_RETURN_IF_ERROR(r_.journal_.Append(*c));
      r_.counters_.changes.fetch_add(1);
      return Status::Ok();
    }
    if (std::holds_alternative<OriginInfo>(ev)) return Status::Ok();
    return Corruption("unexpected message inside the stream block of transaction " +
                      std::to_string(block_xid_));
  }

  Status OnStreamAbort(const StreamAbort& a) {
    TS_ASSIGN_OR_RETURN(bool cut, spool_->AbortSubtransaction(a.xid, a.subxid));
    if (fast_xid_ == a.xid && (cut || a.subxid == a.xid)) {
      TS_RETURN_IF_ERROR(LeaveFastPath(a.subxid == a.xid ? "it rolled back"
                                                         : "a subtransaction rolled back"));
    }
    return Status::Ok();
  }

  Status OnStreamCommit(const StreamCommit& c) {
    state::Journal& j = r_.journal_;
    TransactionInfo info{c.xid, c.commit_lsn, c.end_lsn, c.commit_time_us};
    if (fast_xid_ == c.xid) return CommitStreamed(info);
    if (!spool_->Holds(c.xid)) {
      return Corruption("Stream Commit of transaction " + std::to_string(c.xid) +
                        " whose blocks were not received");
    }
    if (spool_->Changes(c.xid) == 0) {  // everything in it rolled back: nothing to journal
      spool_->Discard(c.xid);
      if (c.end_lsn > pending_idle_) pending_idle_ = c.end_lsn;
      return Status::Ok();
    }
    // A fresh decoder: the spool holds the transaction's own Relation messages.
    PgoutputDecoder replay(TypeNames(), 2);
    const uint8_t start[] = {'S',
                             static_cast<uint8_t>(c.xid >> 24),
                             static_cast<uint8_t>(c.xid >> 16),
                             static_cast<uint8_t>(c.xid >> 8),
                             static_cast<uint8_t>(c.xid),
                             1};
    TS_RETURN_IF_ERROR(replay.Decode(start).status());
    TS_RETURN_IF_ERROR(j.Begin(info));
    journal_open_ = true;
    uint64_t n = 0;
    Status s = spool_->Replay(c.xid, [&](std::span<const uint8_t> m) -> Status {
      TS_ASSIGN_OR_RETURN(Event ev, replay.Decode(m));
      if (const auto* ch = std::get_if<Change>(&ev)) TS_RETURN_IF_ERROR(j.Append(*ch));
      // The socket is not read meanwhile: keep the walsender from timing out on us.
      if (++n % 65536 == 0 && Clock::now() - last_status_ >= status_interval_) {
        TS_RETURN_IF_ERROR(SendStatus(false));
      }
      return Status::Ok();
    });
    if (!s.ok()) return s.WithContext("journaling streamed transaction " + std::to_string(c.xid));
    return CommitStreamed(info);
  }

  // The streamed transaction open in the journal (fast path or replayed spool) committed.
  Status CommitStreamed(const TransactionInfo& info) {
    KillPoint("cdc.before_journal_commit");  // see the kill points at CommitTxn
    TS_RETURN_IF_ERROR(r_.journal_.Commit(info));
    fast_xid_ = 0;
    journal_open_ = false;
    spool_->Discard(info.xid);
    KillPoint("cdc.after_journal_commit");
    CountCommit();
    return Status::Ok();
  }

  TypeNameLookup TypeNames() {
    return [this](uint32_t oid, int32_t typmod) { return LookupTypeName(catalog_, oid, typmod); };
  }

  Status LeaveFastPath(const char* why) {
    if (fast_xid_ == 0) return Status::Ok();
    spdlog::debug("stream: transaction {} leaves the journal until its commit: {}", fast_xid_,
                  why);
    fast_xid_ = 0;
    journal_open_ = false;
    return r_.journal_.Abort();
  }

  void CountCommit() {
    r_.counters_.transactions.fetch_add(1);
    if (auto* st = r_.options_.stats) {
      st->transactions_journaled.fetch_add(1);
      st->changes_journaled.store(r_.counters_.changes.load());
      st->journaled_lsn.store(r_.journal_.JournaledLsn().value());
    }
  }

  void FlushReceived() {
    if (received_ > noted_received_) {
      r_.journal_.NoteReceived(received_);
      noted_received_ = received_;
    }
  }

  // Called whenever a drained batch ends (libpq has nothing more, or the slice is over).
  Status MaybeSendStatus() {
    FlushReceived();
    TS_RETURN_IF_ERROR(MaybeAdvanceIdle());
    if (Clock::now() - last_status_ < status_interval_) {
      if (PQflush(repl_.get()) < 0) return ConnectionError("flush: " + repl_.LastError());
      return Status::Ok();
    }
    return SendStatus(false);
  }

  // write = received, flush = apply = durable in the journal (invariant 2).
  Status SendStatus(bool reply_requested) {
    FlushReceived();
    Lsn flushed = r_.journal_.JournaledLsn();
    Lsn written = std::max(received_, flushed);
    std::string msg;
    msg.reserve(34);
    msg.push_back('r');
    PutU64(msg, written.value());
    PutU64(msg, flushed.value());
    PutU64(msg, flushed.value());
    PutU64(msg, static_cast<uint64_t>(PgNowMicros()));
    msg.push_back(reply_requested ? 1 : 0);
    if (PQputCopyData(repl_.get(), msg.data(), static_cast<int>(msg.size())) != 1 ||
        PQflush(repl_.get()) < 0) {
      return ConnectionError("sending a standby status update: " + repl_.LastError());
    }
    last_status_ = Clock::now();
    r_.counters_.flushed_lsn.store(flushed.value());
    return Status::Ok();
  }

  Receiver& r_;
  asio::io_context& io_;
  PgConn catalog_;
  PgConn repl_;
  bool copy_open_ = false;
  std::variant<std::monostate, PgoutputDecoder, Wal2jsonDecoder> decoder_;
  Lsn start_lsn_;
  Lsn received_;
  Lsn noted_received_;  // what the journal was last told by FlushReceived
  Lsn pending_idle_;  // keepalive position seen with no transaction open, not yet journaled
  Clock::time_point last_idle_advance_;
  bool in_txn_ = false;       // between Begin and Commit on the wire
  bool journal_open_ = false;  // a journal transaction is open (the current one has changes)
  bool streaming_ = false;     // pgoutput protocol 2 with streamed in-progress transactions
  std::unique_ptr<internal::StreamSpool> spool_;  // when streaming_
  uint32_t block_xid_ = 0;     // inside a stream block: its transaction
  uint32_t fast_xid_ = 0;      // the streamed transaction open in the journal (fast path)
  TransactionInfo txn_;
  std::chrono::milliseconds status_interval_{1000};
  Clock::time_point last_status_;
  bool done_ = false;
  int sock_fd_ = -1;
  bool batching_ = false;          // see UpdateBatching
  Clock::time_point window_start_;
  uint64_t window_messages_ = 0;
  Status result_;
  std::function<void()> on_finish_;
};

Receiver::Receiver(StreamOptions options, state::Journal& journal)
    : options_(std::move(options)), journal_(journal), loop_(std::make_unique<Loop>()) {
  spool_dir_ = options_.spool_dir;
  if (spool_dir_.empty()) {
    // A fresh temporary directory (StreamSpool::Open creates it if mkdtemp could not).
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tenantsync-spool-XXXXXX").string();
    spool_dir_ = mkdtemp(tmpl.data()) != nullptr
                     ? tmpl
                     : tmpl.substr(0, tmpl.size() - 6) + std::to_string(getpid());
    owns_spool_dir_ = true;
  }
}

Receiver::~Receiver() {
  if (owns_spool_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(spool_dir_, ec);
  }
}

void Receiver::Stop() {
  stop_requested_.store(true);
  // Ends io.run() at once instead of at the next tick. post() is thread-safe. If no session
  // is running, the handler runs (harmlessly) when the next one starts and sees the flag.
  asio::post(loop_->io, [this] { loop_->io.stop(); });
}

Status Receiver::RunSession(bool* streamed) {
  Session session(*this);
  return session.Run(streamed);
}

Status Receiver::Run() {
  if (options_.slot.empty()) return InvalidArgument("stream: the replication slot name is empty");
  if (options_.plugin != "pgoutput" && options_.plugin != "wal2json") {
    return InvalidArgument("stream: plugin must be pgoutput or wal2json, not '" +
                           options_.plugin + "'");
  }
  if (options_.plugin == "pgoutput" && options_.publication.empty()) {
    return InvalidArgument("stream: pgoutput needs a publication name");
  }
  auto backoff = options_.reconnect_initial;
  int failures = 0;
  while (!stop_requested_.load()) {
    auto started = Clock::now();
    bool streamed = false;
    Status s = RunSession(&streamed);
    if (s.ok() || s.code() == StatusCode::kCancelled) return Status::Ok();  // stopped
    if (!s.IsRetryable()) return s;
    if (streamed && Clock::now() - started > options_.reconnect_max) {
      backoff = options_.reconnect_initial;
      failures = 0;
    }
    ++failures;
    if (options_.max_reconnect_attempts >= 0 && failures > options_.max_reconnect_attempts) {
      return s.WithContext("giving up after " + std::to_string(failures) + " attempts");
    }
    counters_.reconnects.fetch_add(1);
    if (options_.stats) options_.stats->reconnects.fetch_add(1);
    spdlog::warn("stream: {}; reconnecting in {} ms", s.ToString(), backoff.count());
    auto until = Clock::now() + backoff;
    while (Clock::now() < until && !stop_requested_.load()) {
      std::this_thread::sleep_for(std::min<Clock::duration>(kTick, until - Clock::now()));
    }
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
  return Status::Ok();
}

}  // namespace tenantsync::cdc
