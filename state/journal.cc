#include "state/journal.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <limits>

#include "state/internal/codec.h"
#include "state/internal/journal_impl.h"

namespace tenantsync::state::internal {

namespace {

constexpr char kWriterKey[] = "writer";
constexpr char kTrimKey[] = "trim";
constexpr char kAppliedKey[] = "applied";
constexpr char kIdleKey[] = "idle";
constexpr char kCheckpointPrefix[] = "ckpt/";

// Unsynced spool writes are flushed to RocksDB in batches of about this size.
constexpr size_t kSpoolFlushBytes = 2 << 20;
// A block of changes (one journal_change entry) is put into the write batch at this size: one
// RocksDB entry (memtable insert, key compare, index) per ~64 KB instead of one per change.
constexpr size_t kBlockBytes = 64 << 10;
// Group commit: the syncer stops waiting out its interval once the committed transactions in the
// writer's batch reach this size; at twice this size (the syncer is stuck in a slow fsync) the
// writer writes them itself, unsynced. Bounds the batch's memory (invariant 7).
constexpr size_t kGroupBytes = kSpoolFlushBytes;
// A group commit's fsync slower than this is logged (debug); slower than kSlowSyncWarn, a
// warning (at most one a minute): the source is acknowledged only after it, and the next group
// waits for it (RocksDB queues writes behind a sync write).
constexpr auto kSlowSyncDebug = std::chrono::milliseconds(20);
constexpr auto kSlowSyncWarn = std::chrono::seconds(1);

void ReportSlowSync(std::chrono::steady_clock::duration took) {
  if (took < kSlowSyncDebug) return;
  const double ms = std::chrono::duration<double, std::milli>(took).count();
  static std::atomic<int64_t> last_warn_s{0};
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
  if (took >= kSlowSyncWarn && now_s - last_warn_s.load() >= 60) {
    last_warn_s.store(now_s);
    spdlog::warn(
        "journal: an fsync of the journal took {:.0f} ms (a slow or busy state_dir "
        "disk delays acknowledgements to the source)",
        ms);
  } else {
    spdlog::debug("journal: an fsync of the journal took {:.1f} ms", ms);
  }
}

// One retention pass deletes at most this many transactions (bounds the applier's pause).
constexpr uint64_t kMaxTrimPerPass = 100000;
// Under size pressure retention trims applied transactions until the journal is below this
// fraction of max_journal_bytes.
constexpr double kSizeTrimTarget = 0.8;
constexpr double kSizeTrimStart = 0.9;
constexpr size_t kMaxCheckpoints = 10000;

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string CheckpointKey(uint64_t id) { return kCheckpointPrefix + Key64(id); }

std::string FormatBytes(uint64_t bytes) {
  char buf[64];
  double b = static_cast<double>(bytes);
  if (bytes >= (1ull << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GB", b / (1ull << 30));
  } else if (bytes >= (1ull << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f MB", b / (1ull << 20));
  } else if (bytes >= (1ull << 10)) {
    std::snprintf(buf, sizeof(buf), "%.1f KB", b / (1ull << 10));
  } else {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 " bytes", bytes);
  }
  return buf;
}

rocksdb::Slice AsSlice(const std::string& s) { return rocksdb::Slice(s.data(), s.size()); }

// Relations by fingerprint for one reader; filled lazily from the relations CF.
class RelationCache final : public RelationSource {
 public:
  explicit RelationCache(const Db* db) : db_(db) {}

  StatusOr<std::shared_ptr<const Relation>> Get(uint64_t fingerprint) override {
    auto it = cache_.find(fingerprint);
    if (it != cache_.end()) return it->second;
    std::string key = Key64(fingerprint);
    TS_ASSIGN_OR_RETURN(auto value, db_->Get(kCfRelations, key, "reading a relation"));
    if (!value.has_value()) {
      return Corruption("journal references relation " + HexKey(key) +
                        " that is missing from the relations column family");
    }
    auto rel = std::make_shared<Relation>();
    TS_RETURN_IF_ERROR(DecodeRelation(key, *value, rel.get()));
    std::shared_ptr<const Relation> shared = std::move(rel);
    cache_.emplace(fingerprint, shared);
    return shared;
  }

 private:
  const Db* db_;
  std::unordered_map<uint64_t, std::shared_ptr<const Relation>> cache_;
};

// Walks commit records in key (= commit LSN) order and, per transaction, its changes by
// (seq, index). When the commit records run out, the next transaction comes from the journal's
// tail (committed, not yet in RocksDB) when it is there; otherwise the next call re-creates both
// iterators to see transactions written since. The change iterator is always created after the
// commit-record iterator, and changes are written before their commit record, so every change
// of a visible transaction is visible too. Memory: two iterators, one block of changes (pinned
// by the change iterator or held by the tail, ~64 KB, or one large change) and one decoded
// change.
class JournalReaderImpl final : public JournalReader {
 public:
  JournalReaderImpl(std::shared_ptr<const JournalImpl> journal, Lsn after)
      : journal_(std::move(journal)), db_(journal_->db()), pos_(after), relations_(db_) {}

  StatusOr<bool> NextTransaction(TransactionInfo* info) override {
    in_txn_ = false;
    tail_txn_.reset();
    if (txn_it_ && !at_end_) {
      txn_it_->Next();
      TS_ASSIGN_OR_RETURN(bool got, FromIterator(info));
      if (got) return true;
      return FromTail(info);
    }
    TS_ASSIGN_OR_RETURN(bool from_tail, FromTail(info));
    if (from_tail) return true;
    TS_RETURN_IF_ERROR(journal_->CheckRetained(pos_));
    txn_it_ = db_->NewIterator(kCfJournalTxn);
    change_it_ = db_->NewIterator(kCfJournalChange);
    txn_it_->Seek(AsSlice(Key64(pos_.value() + 1)));
    at_end_ = false;
    return FromIterator(info);
  }

  StatusOr<bool> NextChange(Change* change) override {
    if (!in_txn_ || change_index_ >= txn_.changes) return false;
    if (block_.done()) {
      if (tail_txn_) return Fatal("journal tail block ended early; this is a bug");
      TS_RETURN_IF_ERROR(NextBlock());
    }
    TS_ASSIGN_OR_RETURN(bool got, block_.Next(&relations_, change));
    if (!got) return Fatal("journal block ended early; this is a bug");
    ++change_index_;
    return true;
  }

 private:
  // The transaction at txn_it_, if valid and visible; else at_end_.
  StatusOr<bool> FromIterator(TransactionInfo* info) {
    if (!txn_it_->Valid()) {
      TS_RETURN_IF_ERROR(FromRocks(txn_it_->status(), db_->dir(), "reading the journal"));
      at_end_ = true;
      return false;
    }
    rocksdb::Slice k = txn_it_->key();
    rocksdb::Slice v = txn_it_->value();
    TS_RETURN_IF_ERROR(DecodeTxn(std::string_view(k.data(), k.size()),
                                 std::string_view(v.data(), v.size()), &txn_));
    if (txn_.commit_lsn > visible_) {
      // Still in the writer's batch (group commit), or Commit has not returned yet.
      visible_ = journal_->VisibleCommitLsn();
      if (txn_.commit_lsn > visible_) {
        at_end_ = true;
        return false;
      }
    }
    Start(info);
    return true;
  }

  // The transaction after pos_ from the journal's tail, if it is there. Its relations are in
  // RocksDB already (JournalImpl::Commit), so relations_ finds them.
  StatusOr<bool> FromTail(TransactionInfo* info) {
    std::shared_ptr<const JournalImpl::TailTxn> t = journal_->TailNext(pos_);
    if (!t) return false;
    at_end_ = true;  // the iterators are behind it now: fresh ones next time
    txn_ = t->rec;
    Start(info);
    if (txn_.changes > 0) {
      expected_key_ = Key64x2(txn_.seq, 0);
      TS_RETURN_IF_ERROR(block_.Reset(expected_key_, t->block));
      if (block_.count() != txn_.changes) {
        return Fatal("journal transaction at commit LSN " + txn_.commit_lsn.ToString() +
                     " held in memory with " + std::to_string(block_.count()) + " of its " +
                     std::to_string(txn_.changes) + " changes; this is a bug");
      }
    }
    tail_txn_ = std::move(t);  // keeps the block that block_ reads
    return true;
  }

  void Start(TransactionInfo* info) {
    pos_ = txn_.commit_lsn;
    info->xid = txn_.xid;
    info->commit_lsn = txn_.commit_lsn;
    info->end_lsn = txn_.end_lsn;
    info->commit_time_us = txn_.commit_time_us;
    in_txn_ = true;
    change_index_ = 0;
    change_positioned_ = false;
    block_ = ChangeBlockReader();  // a transaction left mid-block: its next one starts anew
  }

  // Positions change_it_ on the block that starts at change_index_ (blocks are keyed by their
  // first change) and checks that it fits in the transaction.
  Status NextBlock() {
    expected_key_ = Key64x2(txn_.seq, change_index_);
    if (!change_positioned_) {
      // Transactions are usually journaled in commit order, so the first block of this one
      // tends to follow the last block read: one step instead of a seek.
      if (change_it_->Valid()) change_it_->Next();
      if (!change_it_->Valid() || change_it_->key() != AsSlice(expected_key_)) {
        change_it_->Seek(AsSlice(expected_key_));
      }
      change_positioned_ = true;
    } else {
      change_it_->Next();
    }
    if (!change_it_->Valid() || change_it_->key() != AsSlice(expected_key_)) {
      TS_RETURN_IF_ERROR(FromRocks(change_it_->status(), db_->dir(), "reading the journal"));
      return Corruption("journal transaction at commit LSN " + txn_.commit_lsn.ToString() +
                        " is missing change " + std::to_string(change_index_ + 1) + " of " +
                        std::to_string(txn_.changes) + " (key " + HexKey(expected_key_) + ")");
    }
    // The value stays valid while change_it_ stays on it: it moves only for the next block.
    rocksdb::Slice v = change_it_->value();
    TS_RETURN_IF_ERROR(block_.Reset(expected_key_, std::string_view(v.data(), v.size())));
    if (block_.count() > txn_.changes - change_index_) {
      return Corruption("journal transaction at commit LSN " + txn_.commit_lsn.ToString() +
                        " has " + std::to_string(txn_.changes) + " changes, but its block at key " +
                        HexKey(expected_key_) + " holds " + std::to_string(block_.count()) +
                        " from change " + std::to_string(change_index_ + 1));
    }
    return Status::Ok();
  }

  std::shared_ptr<const JournalImpl> journal_;  // keeps the database open
  const Db* db_;
  Lsn pos_;      // commit LSN of the last transaction returned (or `after`)
  Lsn visible_;  // VisibleCommitLsn() last seen
  std::unique_ptr<rocksdb::Iterator> txn_it_;
  std::unique_ptr<rocksdb::Iterator> change_it_;
  bool at_end_ = false;
  bool in_txn_ = false;
  TxnRecord txn_;
  uint64_t change_index_ = 0;
  bool change_positioned_ = false;
  std::string expected_key_;  // the current block's key (block_ names it in errors)
  ChangeBlockReader block_;
  std::shared_ptr<const JournalImpl::TailTxn> tail_txn_;  // the transaction read from the tail
  RelationCache relations_;
};

}  // namespace

StatusOr<std::shared_ptr<JournalImpl>> JournalImpl::Open(std::shared_ptr<Db> db,
                                                         const StateOptions& options) {
  std::shared_ptr<JournalImpl> j(new JournalImpl(db, options));
  TS_RETURN_IF_ERROR(j->LoadPositions());
  if (!db->read_only()) {
    TS_RETURN_IF_ERROR(j->DeleteOrphans());
    j->next_seq_ = j->writer_.last_seq + 1;
    auto it = db->NewIterator(kCfRelations);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() == 8) j->known_relations_.insert(DecodeFixed64BE(it->key().data()));
    }
    TS_RETURN_IF_ERROR(FromRocks(it->status(), db->dir(), "loading relations"));
    if (!options.sync_each_commit) j->syncer_ = std::thread([raw = j.get()] { raw->SyncLoop(); });
  }
  return j;
}

Status JournalImpl::LoadPositions() {
  WriterState writer;
  TrimState trim;
  AppliedState applied;
  Lsn idle;
  TS_ASSIGN_OR_RETURN(auto w, db_->Get(kCfJournalMeta, kWriterKey, "reading the journal state"));
  if (w) TS_RETURN_IF_ERROR(DecodeWriterState(*w, &writer));
  TS_ASSIGN_OR_RETURN(auto t, db_->Get(kCfJournalMeta, kTrimKey, "reading the journal state"));
  if (t) TS_RETURN_IF_ERROR(DecodeTrimState(*t, &trim));
  TS_ASSIGN_OR_RETURN(auto a, db_->Get(kCfJournalMeta, kAppliedKey, "reading the journal state"));
  if (a) TS_RETURN_IF_ERROR(DecodeApplied(*a, &applied));
  TS_ASSIGN_OR_RETURN(auto i, db_->Get(kCfJournalMeta, kIdleKey, "reading the journal state"));
  if (i) TS_RETURN_IF_ERROR(DecodeLsnRecord(*i, &idle));

  std::deque<Checkpoint> checkpoints;
  auto it = db_->NewIterator(kCfJournalMeta);
  for (it->Seek(kCheckpointPrefix); it->Valid() && it->key().starts_with(kCheckpointPrefix);
       it->Next()) {
    Checkpoint c;
    TS_RETURN_IF_ERROR(DecodeCheckpoint(std::string_view(it->key().data(), it->key().size()),
                                        std::string_view(it->value().data(), it->value().size()),
                                        &c));
    checkpoints.push_back(c);
  }
  TS_RETURN_IF_ERROR(FromRocks(it->status(), db_->dir(), "reading checkpoints"));

  {
    std::lock_guard<std::mutex> lock(mu_);
    writer_ = writer;
    durable_ = writer;  // what survived is durable now
    written_ = writer;
    trim_ = trim;
    applied_ = applied;
    idle_lsn_ = idle;
    received_lsn_ = std::max(received_lsn_, writer.received_lsn);
    checkpoints_ = std::move(checkpoints);
    next_checkpoint_id_ = checkpoints_.empty() ? 1 : checkpoints_.back().id + 1;
    // Transactions journaled before this process count towards the next checkpoint only from
    // here; a restart starts a new interval.
    txns_at_last_checkpoint_ = writer_.appended_txns;
  }
  return LoadOldest();
}

Status JournalImpl::LoadOldest() {
  Lsn from;
  {
    std::lock_guard<std::mutex> lock(mu_);
    from = trim_.trimmed_through;
  }
  auto it = db_->NewIterator(kCfJournalTxn);
  it->Seek(AsSlice(Key64(from.value() + 1)));
  Lsn oldest;
  if (it->Valid()) {
    if (it->key().size() != 8) {
      return Corruption("state record journal_txn " +
                        HexKey(std::string_view(it->key().data(), it->key().size())) +
                        " is malformed: key is not 8 bytes");
    }
    oldest = Lsn(DecodeFixed64BE(it->key().data()));
  }
  TS_RETURN_IF_ERROR(FromRocks(it->status(), db_->dir(), "reading the journal"));
  std::lock_guard<std::mutex> lock(mu_);
  oldest_lsn_ = oldest;
  return Status::Ok();
}

Status JournalImpl::Reload() { return LoadPositions(); }

JournalImpl::~JournalImpl() { Shutdown(); }

void JournalImpl::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_syncer_ = true;
  }
  sync_wanted_.notify_all();
  if (syncer_.joinable()) syncer_.join();
}

void JournalImpl::SyncLoop() {
  using Clock = std::chrono::steady_clock;
  const auto interval = std::chrono::microseconds(
      static_cast<int64_t>(std::max(0.0, options_.group_commit_interval_ms) * 1000));
  auto last_sync = Clock::now() - interval;
  // Committed transactions to write (in batch_, which the syncer may only take between the
  // writer's transactions) or already written unsynced by the writer.
  auto work = [&] {
    return (batch_has_commits_ && !in_txn_) ||
           written_.last_commit_lsn > durable_.last_commit_lsn;
  };
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // Commit wakes the syncer only while it waits here (syncer_waiting_): one wake-up per group.
    syncer_waiting_ = true;
    sync_wanted_.wait(lock, [&] { return stop_syncer_ || work(); });
    syncer_waiting_ = false;
    if (!work()) return;  // stopping with nothing pending
    if (!stop_syncer_) {
      // Coalesce: commits gather in the writer's batch until the interval since the previous
      // sync is over. The receiver keeps receiving and journaling meanwhile. A reader that has
      // read everything visible and waits (the applier, caught up) cuts the wait short: it
      // would otherwise idle while these transactions wait out the interval (lag); a reader
      // busy applying does not, so under a backlog the groups stay large.
      // With the tail, readers have what it holds already: only a gap in it cuts the wait.
      sync_wanted_.wait_until(lock, last_sync + interval, [&] {
        return stop_syncer_ || group_full_ || (readers_waiting_ > 0 && ReadersNeedWriteLocked());
      });
    }
    write_done_.wait(lock, [&] { return !writing_; });  // the writer's own write, if any
    if (!sync_error_.ok()) return;
    WriterState target;
    if (batch_has_commits_ && !in_txn_) {
      target = TakeBatchLocked();
    } else if (batch_has_commits_) {
      // A transaction is open (under a steady stream the next one begins microseconds after a
      // commit, so waking and retrying here would mostly lose that race, a wake-up per
      // transaction): the writer hands batch_ over when the transaction ends (EndTxnLocked).
      handover_wanted_ = true;
      sync_wanted_.wait(lock, [&] { return stop_syncer_ || handed_over_ || !in_txn_; });
      handover_wanted_ = false;
      if (!handed_over_) continue;  // ended without commits to hand over, or stopping
      handed_over_ = false;
      target = handed_target_;
    } else if (written_.last_commit_lsn > durable_.last_commit_lsn) {
      target = written_;  // the writer wrote them; an empty batch just syncs (group_ is empty)
    } else {
      continue;
    }
    writing_ = true;
    lock.unlock();
    // First the group, unsynced: readers see it at once (written_), so the applier's work does
    // not wait for the fsync (a busy disk's fsync can take 100+ ms). Then an empty write with
    // sync=true fsyncs the WAL, which makes every earlier write durable (rocksdb/db.h,
    // DB::Close: "Write() using an empty write batch with WriteOptions.sync=true" syncs the
    // WAL); RocksDB refuses it once a WAL write has failed. Only then is the group durable and
    // acknowledgeable (invariant 2).
    Status s;
    if (group_.Count() > 0) {
      s = db_->Write(&group_, /*sync=*/false, "writing the journal");
      if (s.ok()) {
        lock.lock();
        if (target.last_commit_lsn > written_.last_commit_lsn) written_ = target;
        TrimTailLocked();
        lock.unlock();
        advanced_.notify_all();
      }
    }
    if (s.ok()) {
      const auto sync_started = Clock::now();
      rocksdb::WriteBatch empty;
      s = db_->Write(&empty, /*sync=*/true, "syncing the journal");
      ReportSlowSync(Clock::now() - sync_started);
    }
    group_.Clear();
    last_sync = Clock::now();
    lock.lock();
    writing_ = false;
    write_done_.notify_all();
    if (!s.ok()) {
      // RocksDB may have lost the batch with the failed write, so nothing after the last good
      // sync may ever be reported durable by this instance (invariant 2): the error stays,
      // Begin, Commit and AdvanceIdle return it, JournaledLsn() stops here. Reopening recovers
      // exactly what reached the disk; the source resends the rest.
      sync_error_ = s.WithContext(
          "group commit stopped; restart to continue from the journal's durable end");
      advanced_.notify_all();
      return;
    }
    if (target.last_commit_lsn > written_.last_commit_lsn) written_ = target;
    if (target.last_commit_lsn > durable_.last_commit_lsn) durable_ = target;
    TrimTailLocked();
    advanced_.notify_all();
  }
}

WriterState JournalImpl::TakeBatchLocked() {
  std::swap(batch_, group_);  // group_ was cleared after the last write: batch_ reuses it
  batch_has_commits_ = false;
  group_full_ = false;
  // Every committed transaction is in group_ or written before it.
  PutWriterState(&group_, writer_);
  return writer_;
}

void JournalImpl::PutWriterState(rocksdb::WriteBatch* batch, const WriterState& state) {
  // Under group commit once per written group, after its last transaction, not once per
  // transaction (each is a memtable insert on the syncer's thread).
  batch->Put(db_->cf(kCfJournalMeta), kWriterKey, AsSlice(EncodeWriterState(state)));
}

void JournalImpl::EndTxnLocked() {
  in_txn_ = false;
  if (handover_wanted_) {
    // The syncer waits for this transaction to end: hand it the committed transactions here, on
    // the writer's thread, before the next Begin can open another one. group_ is empty (the
    // syncer clears it after each write, before writing_ goes false).
    if (batch_has_commits_) {
      handed_target_ = TakeBatchLocked();
      handed_over_ = true;
      handover_wanted_ = false;  // once: the next commits wait in batch_ for the next group
      // The next write is the syncer's: a write of the writer's own (WriteOwnBatch, which may
      // carry later commits) must wait for it, or a later commit could reach the WAL first.
      writing_ = true;
    }
    sync_wanted_.notify_one();
  } else if (batch_has_commits_ && syncer_waiting_) {
    sync_wanted_.notify_one();
  }
}

Status JournalImpl::WriteOwnBatch(std::string_view what, bool sync, const Lsn* idle) {
  WriterState target;
  bool carries_commits = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    // Commit order in the WAL: a group the syncer took before this batch's transactions is
    // written first.
    write_done_.wait(lock, [&] { return !writing_; });
    if (!sync_error_.ok()) return sync_error_;
    carries_commits = batch_has_commits_;
    // The syncer took the committed transactions meanwhile, and there is nothing else to write.
    if (!carries_commits && !in_txn_ && !sync && idle == nullptr) return Status::Ok();
    batch_has_commits_ = false;
    group_full_ = false;
    target = writer_;
    writing_ = true;  // batch_ is ours until writing_ is false again
  }
  if (idle != nullptr) {
    batch_.Put(db_->cf(kCfJournalMeta), kIdleKey, AsSlice(EncodeLsnRecord(*idle)));
  }
  if (carries_commits) PutWriterState(&batch_, target);
  Status s = db_->Write(&batch_, sync, what);
  if (s.ok()) batch_.Clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!s.ok()) {
      // As in SyncLoop: committed transactions may be lost with it, and RocksDB stops writing.
      sync_error_ = s.WithContext(
          "group commit stopped; restart to continue from the journal's durable end");
      advanced_.notify_all();
    } else {
      if (carries_commits && target.last_commit_lsn > written_.last_commit_lsn) written_ = target;
      TrimTailLocked();
      if (sync && target.last_commit_lsn > durable_.last_commit_lsn) durable_ = target;
      if (idle != nullptr) {
        idle_lsn_ = std::max(idle_lsn_, *idle);
        received_lsn_ = std::max(received_lsn_, *idle);
      }
    }
  }
  write_done_.notify_all();
  sync_wanted_.notify_one();  // written_ may be ahead of durable_ now
  if (sync || carries_commits) advanced_.notify_all();  // durable, or visible to readers
  return s;
}

Lsn JournalImpl::VisibleLocked() const {
  if (tail_.empty()) return written_.last_commit_lsn;
  return std::max(written_.last_commit_lsn, tail_.back()->rec.commit_lsn);
}

bool JournalImpl::ReadersNeedWriteLocked() const {
  return tail_gap_ || options_.memory_tail_bytes == 0;
}

size_t JournalImpl::TailCost(size_t block_bytes) { return block_bytes + sizeof(TailTxn) + 64; }

void JournalImpl::TrimTailLocked() {
  while (!tail_.empty() && tail_.front()->rec.commit_lsn <= written_.last_commit_lsn) {
    tail_bytes_ -= TailCost(tail_.front()->block.size());
    tail_.pop_front();
  }
  // Everything committed is in RocksDB (so the tail is empty): the next commit may join it.
  if (written_.last_commit_lsn == writer_.last_commit_lsn) tail_gap_ = false;
}

std::shared_ptr<const JournalImpl::TailTxn> JournalImpl::TailNext(Lsn after) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (tail_.empty() || tail_.back()->rec.commit_lsn <= after) return nullptr;
  auto it = std::upper_bound(tail_.begin(), tail_.end(), after,
                             [](Lsn a, const auto& t) { return a < t->rec.commit_lsn; });
  if (it == tail_.end() || (*it)->prev_commit_lsn != after) return nullptr;
  return *it;
}

Lsn JournalImpl::VisibleCommitLsn() const {
  std::lock_guard<std::mutex> lock(mu_);
  return VisibleLocked();
}

bool JournalImpl::WaitForVisible(Lsn commit_lsn, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  auto visible = [&] { return VisibleLocked() > commit_lsn; };
  if (visible()) return true;
  ++readers_waiting_;
  // The syncer may be waiting out its interval with transactions the tail does not have.
  if (batch_has_commits_ && ReadersNeedWriteLocked()) sync_wanted_.notify_one();
  bool advanced = advanced_.wait_for(lock, timeout, visible);
  --readers_waiting_;
  return advanced;
}

Status JournalImpl::DeleteOrphans() {
  // Everything spooled after the last committed transaction belongs to a transaction that
  // never committed (crash or Abort whose delete was lost with the crash).
  std::string from = Key64x2(writer_.last_seq + 1, 0);
  auto it = db_->NewIterator(kCfJournalChange);
  it->Seek(AsSlice(from));
  bool any = it->Valid();
  TS_RETURN_IF_ERROR(FromRocks(it->status(), db_->dir(), "looking for orphaned changes"));
  if (!any) return Status::Ok();
  rocksdb::WriteBatch b;
  b.DeleteRange(db_->cf(kCfJournalChange), AsSlice(from),
                AsSlice(Key64x2(std::numeric_limits<uint64_t>::max(), 0)));
  return db_->Write(&b, /*sync=*/false, "deleting orphaned changes");
}

// --- writer ---

Status JournalImpl::Begin(const TransactionInfo& info) {
  if (db_->read_only()) return FailedPrecondition("the journal is open read-only");
  if (in_txn_) {
    // A transaction left open (e.g. the connection broke mid-transaction and the server
    // resends it): its spooled changes are discarded.
    TS_RETURN_IF_ERROR(Abort());
  }
  Lsn last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sync_error_.ok()) return sync_error_;  // see SyncLoop: the journal has stopped
    last = writer_.last_commit_lsn;
    in_txn_ = true;  // from here the syncer leaves batch_ alone until the transaction ends
  }
  skipping_ = info.commit_lsn.valid() && info.commit_lsn <= last;
  flushed_any_ = false;
  change_index_ = 0;
  spool_bytes_ = 0;
  block_.Clear();
  if (!skipping_) {
    seq_ = next_seq_++;
    batch_.SetSavePoint();  // group commit: earlier transactions may still be in batch_
  }
  return Status::Ok();
}

StatusOr<uint64_t> JournalImpl::RelationFingerprint(const std::shared_ptr<const Relation>& rel) {
  if (!rel) return uint64_t{0};
  uint64_t fp = 0;
  auto it = fingerprints_.find(rel.get());
  if (it != fingerprints_.end() && it->second.relation.lock() == rel) {
    fp = it->second.fingerprint;
  } else {
    fp = rel->Fingerprint();
    if (fingerprints_.size() > 4096) {
      std::erase_if(fingerprints_, [](const auto& e) { return e.second.relation.expired(); });
    }
    fingerprints_[rel.get()] = FingerprintMemo{rel, fp};
  }
  if (fp == 0) return Fatal("relation " + rel->schema + "." + rel->name + " has fingerprint 0");
  if (!known_relations_.contains(fp)) {
    batch_.Put(db_->cf(kCfRelations), AsSlice(Key64(fp)), AsSlice(EncodeRelation(*rel)));
    known_relations_.insert(fp);
    pending_relations_.push_back(fp);
  }
  return fp;
}

Status JournalImpl::Append(const Change& change) {
  if (!in_txn_) return FailedPrecondition("Journal::Append without Begin");
  if (skipping_) return Status::Ok();
  TS_ASSIGN_OR_RETURN(uint64_t fp, RelationFingerprint(change.relation));
  truncated_fps_.clear();
  for (const auto& rel : change.truncated) {
    TS_ASSIGN_OR_RETURN(uint64_t tfp, RelationFingerprint(rel));
    truncated_fps_.push_back(tfp);
  }
  if (block_.empty()) block_first_ = change_index_;
  const size_t before = block_.size();
  block_.Add(change, fp, truncated_fps_);
  ++change_index_;
  spool_bytes_ += block_.size() - before;
  if (block_.size() >= kBlockBytes) return PutBlock();
  return Status::Ok();
}

Status JournalImpl::PutBlock(std::string* copy) {
  if (block_.empty()) return Status::Ok();
  AssignKey64x2(&key_buf_, seq_, block_first_);
  const std::string_view value = block_.Finish();
  if (copy != nullptr) copy->assign(value);
  batch_.Put(db_->cf(kCfJournalChange), AsSlice(key_buf_),
             rocksdb::Slice(value.data(), value.size()));
  spool_bytes_ += key_buf_.size() + 5;  // + the block header
  block_.Clear();
  if (batch_.GetDataSize() >= kSpoolFlushBytes) {
    TS_RETURN_IF_ERROR(CheckLimit(0));
    TS_RETURN_IF_ERROR(FlushSpool());
  }
  return Status::Ok();
}

Status JournalImpl::FlushSpool() {
  // Group commit: batch_ may start with committed transactions, written here too.
  Status s = options_.sync_each_commit
                 ? db_->Write(&batch_, /*sync=*/false, "spooling a transaction")
                 : WriteOwnBatch("spooling a transaction", /*sync=*/false);
  if (!s.ok()) {
    DiscardSpool();
    return s;
  }
  batch_.Clear();
  batch_.SetSavePoint();  // what follows is the open transaction's, to roll back on Abort
  pending_relations_.clear();
  flushed_any_ = true;
  return Status::Ok();
}

void JournalImpl::DiscardSpool() {
  // Back to the open transaction's save point, keeping the committed transactions before it
  // (group commit). NotFound: no save point (a skipped transaction): nothing of it is in batch_.
  block_.Clear();
  batch_.RollbackToSavePoint().PermitUncheckedError();
  for (uint64_t fp : pending_relations_) known_relations_.erase(fp);
  pending_relations_.clear();
}

Status JournalImpl::CheckLimit(uint64_t extra_bytes) {
  auto over = [&]() {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t held = writer_.appended_bytes - trim_.trimmed_bytes;
    return held + spool_bytes_ + extra_bytes > static_cast<uint64_t>(options_.max_journal_bytes);
  };
  if (!over()) return Status::Ok();
  TS_RETURN_IF_ERROR(Trim(/*size_pressure=*/true));
  if (!over()) return Status::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t held = writer_.appended_bytes - trim_.trimmed_bytes;
  return ResourceExhausted(
      "journal at " + FormatBytes(held + spool_bytes_ + extra_bytes) +
      " exceeds journal.max_bytes=" +
      FormatBytes(static_cast<uint64_t>(options_.max_journal_bytes)) + " in " + db_->dir() +
      " (journaled up to " + writer_.last_commit_lsn.ToString() + ", applied up to " +
      applied_.lsn.ToString() +
      "); the target is probably not applying: check the apply side and its errors, or raise "
      "journal.max_bytes if the disk has room");
}

Status JournalImpl::Commit(const TransactionInfo& info) {
  if (!in_txn_) return FailedPrecondition("Journal::Commit without Begin");
  if (skipping_) {
    skipping_ = false;
    std::lock_guard<std::mutex> lock(mu_);
    EndTxnLocked();
    return Status::Ok();
  }
  if (!info.commit_lsn.valid()) {
    return InvalidArgument("Journal::Commit needs the transaction's commit LSN");
  }
  WriterState next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sync_error_.ok()) return sync_error_;
    next = writer_;
    next.received_lsn = std::max(received_lsn_, info.end_lsn);
  }
  if (info.commit_lsn <= next.last_commit_lsn) {
    // A duplicate only recognisable at commit (wal2json tells the commit LSN here).
    return Abort();
  }
  // For the tail: the whole transaction is the block still being built (nothing of it is in
  // batch_ or spooled yet), and it defines no relation that is not in RocksDB already.
  const bool tail_fits = !options_.sync_each_commit && options_.memory_tail_bytes > 0 &&
                         !flushed_any_ && pending_relations_.empty() &&
                         (change_index_ == 0 || (!block_.empty() && block_first_ == 0));
  std::string tail_block;
  TS_RETURN_IF_ERROR(PutBlock(tail_fits ? &tail_block : nullptr));
  TxnRecord rec;
  rec.xid = info.xid;
  rec.commit_lsn = info.commit_lsn;
  rec.end_lsn = info.end_lsn.valid() ? info.end_lsn : info.commit_lsn;
  rec.commit_time_us = info.commit_time_us;
  rec.seq = seq_;
  rec.changes = change_index_;
  rec.journaled_at_us = NowUs();
  std::string key = Key64(rec.commit_lsn.value());
  rec.bytes = spool_bytes_ + key.size() + 64;  // + the record itself, approximately
  TS_RETURN_IF_ERROR(CheckLimit(key.size() + 64));

  const Lsn prev_commit_lsn = next.last_commit_lsn;
  next.last_commit_lsn = rec.commit_lsn;
  next.last_end_lsn = rec.end_lsn;
  next.last_commit_time_us = rec.commit_time_us;
  next.last_seq = rec.seq;
  next.appended_txns += 1;
  next.appended_changes += rec.changes;
  next.appended_bytes += rec.bytes;
  batch_.Put(db_->cf(kCfJournalTxn), AsSlice(key), AsSlice(EncodeTxn(rec)));
  if (options_.sync_each_commit) {
    PutWriterState(&batch_, next);
    Status s = db_->Write(&batch_, /*sync=*/true, "committing a transaction");
    if (!s.ok()) {
      // Whatever was spooled is an orphan now, deleted at the next Open.
      DiscardSpool();
      std::lock_guard<std::mutex> lock(mu_);
      in_txn_ = false;
      return s;
    }
    batch_.Clear();
  } else {
    // Group commit: the transaction stays in batch_ for the syncer, which writes it with the
    // others committed meanwhile (one write, one fsync); JournaledLsn() follows that fsync.
    batch_.PopSavePoint().PermitUncheckedError();  // Begin set it: the transaction is whole
  }
  pending_relations_.clear();
  const size_t batch_bytes = batch_.GetDataSize();
  bool wake_readers = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writer_ = next;
    received_lsn_ = next.received_lsn;
    if (!oldest_lsn_.valid()) oldest_lsn_ = rec.commit_lsn;
    if (options_.sync_each_commit) {
      durable_ = next;
      written_ = next;
    } else {
      const size_t cost = TailCost(tail_block.size());
      if (tail_fits && !tail_gap_ && tail_bytes_ + cost <= options_.memory_tail_bytes) {
        auto t = std::make_shared<TailTxn>();
        t->rec = rec;
        t->prev_commit_lsn = prev_commit_lsn;
        t->block = std::move(tail_block);
        tail_.push_back(std::move(t));
        tail_bytes_ += cost;
        wake_readers = readers_waiting_ > 0;
      } else if (options_.memory_tail_bytes > 0) {
        // Readers get this one from RocksDB, so no later one may come from the tail before
        // written_ has caught up with writer_ again (TrimTailLocked).
        tail_gap_ = true;
        if (readers_waiting_ > 0) sync_wanted_.notify_one();  // see WaitForVisible
      }
      batch_has_commits_ = true;
      if (batch_bytes >= kGroupBytes && !group_full_) {
        group_full_ = true;
        sync_wanted_.notify_one();
      }
    }
    EndTxnLocked();
  }
  if (options_.sync_each_commit || wake_readers) {
    advanced_.notify_all();
  }
  if (!options_.sync_each_commit && batch_bytes >= 2 * kGroupBytes) {
    // The syncer is stuck in a slow fsync: write the batch now rather than let it grow.
    return WriteOwnBatch("committing transactions", /*sync=*/false);
  }
  return Status::Ok();
}

Status JournalImpl::Abort() {
  if (!in_txn_) return Status::Ok();
  bool skipped = skipping_;
  skipping_ = false;
  if (!skipped) DiscardSpool();
  {
    std::lock_guard<std::mutex> lock(mu_);
    EndTxnLocked();
  }
  if (skipped || !flushed_any_) return Status::Ok();
  rocksdb::WriteBatch b;
  b.DeleteRange(db_->cf(kCfJournalChange), AsSlice(Key64x2(seq_, 0)),
                AsSlice(Key64x2(seq_ + 1, 0)));
  // Not synced: if lost in a crash, Open deletes the orphans again.
  return db_->Write(&b, /*sync=*/false, "discarding an aborted transaction");
}

Status JournalImpl::AdvanceIdle(Lsn lsn) {
  if (db_->read_only()) return FailedPrecondition("the journal is open read-only");
  if (in_txn_ && !skipping_) {
    return FailedPrecondition(
        "Journal::AdvanceIdle while transaction is open; an idle "
        "position is only safe with nothing pending");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sync_error_.ok()) return sync_error_;  // see SyncLoop: nothing may become durable now
    if (lsn <= JournaledLsnLocked()) return Status::Ok();
  }
  if (!options_.sync_each_commit) {
    // With the committed transactions still in batch_, in one synced write after any group
    // write under way: the idle position never runs ahead of an unsynced transaction.
    return WriteOwnBatch("recording an idle position", /*sync=*/true, &lsn);
  }
  // Synced; in sync mode every committed transaction is durable already.
  WriterState written;
  {
    std::lock_guard<std::mutex> lock(mu_);
    written = writer_;
  }
  rocksdb::WriteBatch b;
  b.Put(db_->cf(kCfJournalMeta), kIdleKey, AsSlice(EncodeLsnRecord(lsn)));
  TS_RETURN_IF_ERROR(db_->Write(&b, /*sync=*/true, "recording an idle position"));
  {
    std::lock_guard<std::mutex> lock(mu_);
    idle_lsn_ = std::max(idle_lsn_, lsn);
    received_lsn_ = std::max(received_lsn_, lsn);
    if (written.last_commit_lsn > durable_.last_commit_lsn) durable_ = written;
  }
  advanced_.notify_all();
  return Status::Ok();
}

void JournalImpl::NoteReceived(Lsn lsn) {
  std::lock_guard<std::mutex> lock(mu_);
  received_lsn_ = std::max(received_lsn_, lsn);
}

Lsn JournalImpl::JournaledLsnLocked() const { return std::max(durable_.last_end_lsn, idle_lsn_); }

Lsn JournalImpl::JournaledLsn() const {
  std::lock_guard<std::mutex> lock(mu_);
  return JournaledLsnLocked();
}

bool JournalImpl::WaitForNewer(Lsn lsn, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return advanced_.wait_for(lock, timeout, [&] { return JournaledLsnLocked() > lsn; });
}

// --- reader ---

Status JournalImpl::CheckRetained(Lsn after) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (after >= trim_.trimmed_through) return Status::Ok();
  return NotFound("the journal in " + db_->dir() + " no longer holds transactions after " +
                  after.ToString() + ": retention removed everything up to commit LSN " +
                  trim_.trimmed_through.ToString() + " (retained window: after " +
                  trim_.trimmed_through.ToString() + " through " +
                  writer_.last_commit_lsn.ToString() +
                  "); replay from a checkpoint inside that window, or take a new snapshot");
}

StatusOr<std::unique_ptr<JournalReader>> JournalImpl::NewReader(Lsn after) const {
  TS_RETURN_IF_ERROR(CheckRetained(after));
  return std::unique_ptr<JournalReader>(
      std::make_unique<JournalReaderImpl>(shared_from_this(), after));
}

// --- applied position, checkpoints, retention ---

Status JournalImpl::RecordApplied(Lsn commit_lsn, int64_t commit_time_us) {
  if (db_->read_only()) return FailedPrecondition("the journal is open read-only");
  int64_t now = NowUs();
  rocksdb::WriteBatch b;
  AppliedState applied{commit_lsn, commit_time_us};
  b.Put(db_->cf(kCfJournalMeta), kAppliedKey, AsSlice(EncodeApplied(applied)));
  std::optional<Checkpoint> checkpoint;
  std::optional<uint64_t> drop_checkpoint;
  {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t interval_us = static_cast<int64_t>(options_.checkpoint_interval_seconds * 1e6);
    if (checkpoints_.empty() || now - checkpoints_.back().time_us >= interval_us) {
      checkpoint = Checkpoint{next_checkpoint_id_, commit_lsn, now,
                              writer_.appended_txns - txns_at_last_checkpoint_};
      if (checkpoints_.size() >= kMaxCheckpoints) drop_checkpoint = checkpoints_.front().id;
    }
  }
  if (checkpoint) {
    b.Put(db_->cf(kCfJournalMeta), AsSlice(CheckpointKey(checkpoint->id)),
          AsSlice(EncodeCheckpoint(*checkpoint)));
  }
  if (drop_checkpoint) b.Delete(db_->cf(kCfJournalMeta), AsSlice(CheckpointKey(*drop_checkpoint)));
  // Not synced: the target's _tenantsync.progress is authoritative for exactly-once (invariant
  // 3); this copy feeds ops and retention, and a lost update is rewritten by the next batch.
  TS_RETURN_IF_ERROR(db_->Write(&b, /*sync=*/false, "recording the applied position"));
  bool size_pressure = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    applied_ = applied;
    if (checkpoint) {
      checkpoints_.push_back(*checkpoint);
      next_checkpoint_id_ = checkpoint->id + 1;
      txns_at_last_checkpoint_ = writer_.appended_txns;
    }
    if (drop_checkpoint && !checkpoints_.empty()) checkpoints_.pop_front();
    uint64_t held = writer_.appended_bytes - trim_.trimmed_bytes;
    size_pressure = static_cast<double>(held) >
                    kSizeTrimStart * static_cast<double>(options_.max_journal_bytes);
  }
  int64_t trim_interval_us = static_cast<int64_t>(options_.trim_interval_seconds * 1e6);
  if (size_pressure || now - last_trim_us_ >= trim_interval_us) {
    last_trim_us_ = now;
    TS_RETURN_IF_ERROR(Trim(size_pressure));
  }
  return Status::Ok();
}

Status JournalImpl::Trim(bool size_pressure) {
  std::lock_guard<std::mutex> trim_lock(trim_mu_);
  Lsn applied;
  TrimState trim;
  uint64_t held = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    applied = applied_.lsn;
    trim = trim_;
    held = writer_.appended_bytes - trim_.trimmed_bytes;
  }
  if (!applied.valid() || applied <= trim.trimmed_through) return Status::Ok();
  const int64_t cutoff_us = NowUs() - static_cast<int64_t>(options_.retention_hours * 3600e6);
  const uint64_t target_bytes =
      static_cast<uint64_t>(kSizeTrimTarget * static_cast<double>(options_.max_journal_bytes));

  rocksdb::ReadOptions ro;
  std::string upper = Key64(applied.value() + 1);  // never past the applied position
  rocksdb::Slice upper_slice = AsSlice(upper);
  ro.iterate_upper_bound = &upper_slice;
  auto it = db_->NewIterator(kCfJournalTxn, ro);
  TrimState next = trim;
  uint64_t count = 0;
  TxnRecord rec;
  for (it->Seek(AsSlice(Key64(trim.trimmed_through.value() + 1)));
       it->Valid() && count < kMaxTrimPerPass; it->Next()) {
    TS_RETURN_IF_ERROR(DecodeTxn(std::string_view(it->key().data(), it->key().size()),
                                 std::string_view(it->value().data(), it->value().size()), &rec));
    bool old_enough = rec.journaled_at_us <= cutoff_us;
    bool too_big = size_pressure && held - (next.trimmed_bytes - trim.trimmed_bytes) > target_bytes;
    if (!old_enough && !too_big) break;
    next.trimmed_through = rec.commit_lsn;
    next.trimmed_seq_through = std::max(next.trimmed_seq_through, rec.seq);
    next.trimmed_txns += 1;
    next.trimmed_changes += rec.changes;
    next.trimmed_bytes += rec.bytes;
    ++count;
  }
  TS_RETURN_IF_ERROR(FromRocks(it->status(), db_->dir(), "scanning for retention"));
  if (count == 0) return Status::Ok();

  rocksdb::WriteBatch b;
  b.DeleteRange(db_->cf(kCfJournalTxn), AsSlice(Key64(trim.trimmed_through.value() + 1)),
                AsSlice(Key64(next.trimmed_through.value() + 1)));
  b.DeleteRange(db_->cf(kCfJournalChange), AsSlice(Key64x2(trim.trimmed_seq_through + 1, 0)),
                AsSlice(Key64x2(next.trimmed_seq_through + 1, 0)));
  b.Put(db_->cf(kCfJournalMeta), kTrimKey, AsSlice(EncodeTrimState(next)));
  // Checkpoints before the trimmed position can no longer be replayed from.
  std::vector<uint64_t> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Checkpoint& c : checkpoints_) {
      if (c.lsn >= next.trimmed_through) break;
      dropped.push_back(c.id);
    }
  }
  for (uint64_t id : dropped) b.Delete(db_->cf(kCfJournalMeta), AsSlice(CheckpointKey(id)));
  TS_RETURN_IF_ERROR(db_->Write(&b, /*sync=*/false, "trimming the journal"));
  {
    std::lock_guard<std::mutex> lock(mu_);
    trim_ = next;
    while (!checkpoints_.empty() && !dropped.empty() && checkpoints_.front().id <= dropped.back()) {
      checkpoints_.pop_front();
    }
  }
  return LoadOldest();
}

StatusOr<std::vector<Checkpoint>> JournalImpl::Checkpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::vector<Checkpoint>(checkpoints_.begin(), checkpoints_.end());
}

JournalStats JournalImpl::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  JournalStats s;
  s.received_lsn = std::max(received_lsn_, JournaledLsnLocked());
  s.journaled_lsn = JournaledLsnLocked();
  s.journaled_commit_lsn = durable_.last_commit_lsn;
  s.applied_lsn = applied_.lsn;
  s.last_journaled_commit_time_us = durable_.last_commit_time_us;
  s.last_applied_commit_time_us = applied_.commit_time_us;
  s.transactions = writer_.appended_txns - trim_.trimmed_txns;
  s.changes = writer_.appended_changes - trim_.trimmed_changes;
  s.oldest_lsn = s.transactions == 0 ? Lsn() : oldest_lsn_;
  s.bytes = writer_.appended_bytes - trim_.trimmed_bytes;
  return s;
}

}  // namespace tenantsync::state::internal
