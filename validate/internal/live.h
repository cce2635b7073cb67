// Live-safe confirmation of differences (validate.h, "Live-safe").
//
// LiveGate knows the pipeline's applied LSN in the target (_tenantsync.progress, written by the
// applier in the same transaction as the changes it covers, invariant 3) and the source's WAL
// position. Confirm() takes items that differed in a first observation and re-observes them after
// the applier passed the source LSN read after that observation:
//   same again                        -> cleared (it was lag);
//   differs, source unchanged         -> confirmed (the target is wrong at a state it has passed);
//   differs, source changed meanwhile -> observe again, up to max_attempts, then unverified.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "core/lsn.h"
#include "core/status.h"
#include "validate/internal/session.h"
#include "validate/validate.h"

namespace tenantsync::validate::internal {

class LiveGate {
 public:
  // Active when options.enabled and the target has a progress row for `pipeline`.
  static StatusOr<LiveGate> Open(Session* source, Session* target, const std::string& pipeline,
                                 const LiveOptions& options);
  bool active() const { return active_; }
  const LiveOptions& options() const { return options_; }

  StatusOr<Lsn> SourceLsn();
  StatusOr<Lsn> AppliedLsn();
  // True once applied_lsn >= lsn; false after options.timeout_seconds.
  StatusOr<bool> WaitApplied(Lsn lsn);
  // Sleeps the backoff for `attempt` (0-based).
  void Backoff(int attempt) const;

 private:
  Session* source_ = nullptr;
  Session* target_ = nullptr;
  std::string pipeline_;
  LiveOptions options_;
  bool active_ = false;
};

enum class Verdict { kSame, kDiffers, kUnverified };

template <typename Id, typename S, typename T>
struct ConfirmFns {
  // Current state of these items on each side; an item absent from the map is absent there.
  std::function<StatusOr<std::map<Id, S>>(const std::vector<Id>&)> read_source;
  std::function<StatusOr<std::map<Id, T>>(const std::vector<Id>&)> read_target;
  // Whether the target state is what the source state must become (null: absent).
  std::function<StatusOr<bool>(const Id&, const S*, const T*)> same;
};

template <typename Id, typename S, typename T>
struct Confirmed {
  std::map<Id, Verdict> verdicts;
  std::map<Id, S> source;  // last observation of each item (absent: absent on that side)
  std::map<Id, T> target;
};

// `first_source` / `first_target`: the first observation, in which every id differed; the source
// was read before this call. S must be equality-comparable: equal S = unchanged source (include
// an xmin fingerprint in it).
template <typename Id, typename S, typename T>
StatusOr<Confirmed<Id, S, T>> Confirm(LiveGate& gate, const std::vector<Id>& ids,
                                      std::map<Id, S> first_source, std::map<Id, T> first_target,
                                      const ConfirmFns<Id, S, T>& fns) {
  Confirmed<Id, S, T> out;
  out.source = std::move(first_source);
  out.target = std::move(first_target);
  if (!gate.active()) {
    for (const Id& id : ids) out.verdicts[id] = Verdict::kDiffers;
    return out;
  }
  auto find = [](auto& m, const Id& id) -> decltype(&m.begin()->second) {
    auto it = m.find(id);
    return it == m.end() ? nullptr : &it->second;
  };
  std::vector<Id> pending = ids;
  for (int attempt = 0; attempt < gate.options().max_attempts && !pending.empty(); ++attempt) {
    if (attempt > 0) gate.Backoff(attempt);
    TS_ASSIGN_OR_RETURN(Lsn lsn, gate.SourceLsn());
    TS_ASSIGN_OR_RETURN(bool reached, gate.WaitApplied(lsn));
    if (!reached) break;
    TS_ASSIGN_OR_RETURN(auto target_now, fns.read_target(pending));
    TS_ASSIGN_OR_RETURN(auto source_now, fns.read_source(pending));
    std::vector<Id> next;
    for (const Id& id : pending) {
      const S* before = find(out.source, id);
      const S* after = find(source_now, id);
      const T* t = find(target_now, id);
      TS_ASSIGN_OR_RETURN(bool same_before, fns.same(id, before, t));
      bool same = same_before;
      if (!same) {
        TS_ASSIGN_OR_RETURN(same, fns.same(id, after, t));
      }
      bool unchanged = (before == nullptr && after == nullptr) ||
                       (before != nullptr && after != nullptr && *before == *after);
      // Keep the newest observation for the report.
      if (after) out.source[id] = *after; else out.source.erase(id);
      if (t) out.target[id] = *t; else out.target.erase(id);
      if (same) {
        out.verdicts[id] = Verdict::kSame;
      } else if (unchanged) {
        out.verdicts[id] = Verdict::kDiffers;
      } else {
        next.push_back(id);
      }
    }
    pending = std::move(next);
  }
  for (const Id& id : pending) out.verdicts[id] = Verdict::kUnverified;
  return out;
}

}  // namespace tenantsync::validate::internal
