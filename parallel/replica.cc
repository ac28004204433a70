#include "parallel/replica.h"

#include "absl/strings/str_cat.h"

namespace tessera::parallel {

absl::StatusOr<ReplicaCommunicators> ConnectReplica(const ReplicaRank& r, const std::string& prefix,
                                                    const ConnectFn& connect) {
  const std::string base = prefix.empty() ? "" : absl::StrCat(prefix, "/");
  ReplicaCommunicators comms;
  if (r.tp_size > 1) {
    absl::StatusOr<std::unique_ptr<Communicator>> tp = connect(r.tp_rank, r.tp_size, absl::StrCat(base, "tp-", r.ep_rank));
    if (!tp.ok()) return tp.status();
    comms.tp = std::move(*tp);
  }
  if (r.ep_size > 1) {
    absl::StatusOr<std::unique_ptr<Communicator>> all = connect(r.rank(), r.size(), absl::StrCat(base, "all"));
    if (!all.ok()) return all.status();
    comms.all = std::move(*all);
  }
  return comms;
}

}  // namespace tessera::parallel
