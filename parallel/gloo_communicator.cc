// The CPU Communicator backend on Gloo (Debian's libgloo): TCP full mesh, Gloo's
// collective algorithms. Gloo reports failures by throwing; they become statuses here.
#include <gloo/allgather.h>
#include <gloo/allreduce_bcube.h>
#include <gloo/allreduce.h>
#include <gloo/alltoallv.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "common/signals.h"
#include "parallel/communicator.h"

namespace tessera::parallel {
namespace {

// Gloo's store interface over ours.
class StoreAdapter : public gloo::rendezvous::Store {
 public:
  StoreAdapter(RendezvousStore& store, std::chrono::milliseconds timeout) : store_(store), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    absl::Status s = store_.Set(key, data);
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
  }
  std::vector<char> get(const std::string& key) override {
    absl::StatusOr<std::vector<char>> v = store_.Get(key, timeout_);
    if (!v.ok()) throw std::runtime_error(std::string(v.status().message()));
    return *v;
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    for (const auto& k : keys) {
      absl::StatusOr<std::vector<char>> v = store_.Get(k, timeout);
      if (!v.ok()) throw std::runtime_error(std::string(v.status().message()));
    }
  }

 private:
  RendezvousStore& store_;
  std::chrono::milliseconds timeout_;
};

// Runs a Gloo call, turning its exceptions into statuses.
template <typename Fn>
absl::Status Guard(const char* what, Fn fn) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const gloo::IoException& e) {
    return absl::UnavailableError(absl::StrCat(what, ": a peer is unreachable: ", e.what()));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(what, " failed: ", e.what()));
  }
}

class GlooCommunicator : public Communicator {
 public:
  // `fast` (may be null): a second mesh whose pairs work synchronously in the calling
  // thread and busy-poll, for small all-reduces.
  GlooCommunicator(std::shared_ptr<gloo::Context> context, std::shared_ptr<gloo::Context> fast)
      : context_(std::move(context)), fast_(std::move(fast)) {}
  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }

  absl::Status AllReduceSum(std::span<float> data) override {
    if (fast_ && data.size() * sizeof(float) < kFastBytes) {
      return Guard("all-reduce", [&] {
        // Gloo's classic algorithms bind their buffer at construction: keep one per
        // (buffer, length); decode reuses the same few scratch buffers every step.
        auto& algorithm = fast_algorithms_[{data.data(), data.size()}];
        if (!algorithm) {
          algorithm = std::make_unique<gloo::AllreduceBcube<float>>(fast_, std::vector<float*>{data.data()},
                                                                     static_cast<int>(data.size()));
        }
        algorithm->run();
      });
    }
    return Guard("all-reduce", [&] {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data.data(), data.size());
      opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      // Small (hidden-size) vectors: bcube needs log2(n) rounds instead of the ring's
      // 2(n-1); large ones: the ring moves the least data per link.
      if (data.size() * sizeof(float) < (256u << 10)) opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::BCUBE);
      opts.setTag(NextTag());
      gloo::allreduce(opts);
    });
  }

  absl::Status AllGather(std::span<const float> in, std::span<float> out) override {
    if (out.size() != in.size() * static_cast<size_t>(size())) {
      return absl::InvalidArgumentError("all-gather output must hold size x input");
    }
    return Guard("all-gather", [&] {
      gloo::AllgatherOptions opts(context_);
      opts.setInput(const_cast<float*>(in.data()), in.size());
      opts.setOutput(out.data(), out.size());
      opts.setTag(NextTag());
      gloo::allgather(opts);
    });
  }

  absl::Status Broadcast(std::span<float> data, int root) override {
    if (root < 0 || root >= size()) return absl::InvalidArgumentError("broadcast root out of range");
    return Guard("broadcast", [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(data.data(), data.size());
      opts.setRoot(root);
      opts.setTag(NextTag());
      gloo::broadcast(opts);
    });
  }

  absl::Status AllToAllV(std::span<const float> in, const std::vector<int64_t>& send_counts, std::span<float> out,
                         const std::vector<int64_t>& recv_counts) override {
    if (send_counts.size() != static_cast<size_t>(size()) || recv_counts.size() != static_cast<size_t>(size())) {
      return absl::InvalidArgumentError("all-to-all needs one count per rank");
    }
    return Guard("all-to-all", [&] {
      gloo::AlltoallvOptions opts(context_);
      opts.setInput(const_cast<float*>(in.data()), send_counts);
      opts.setOutput(out.data(), recv_counts);
      opts.setTag(NextTag());
      gloo::alltoallv(opts);
    });
  }

  absl::Status Barrier() override {
    return Guard("barrier", [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTag(NextTag());
      gloo::barrier(opts);
    });
  }

 private:
  // Every collective gets its own tag, identical across ranks (same call order).
  uint32_t NextTag() { return next_tag_++; }

  // Synchronous sends block until the peer reads: both ranks send at once, so a
  // message must fit the socket buffers (16 KiB by default) or they stall each other.
  static constexpr size_t kFastBytes = 12u << 10;

  std::shared_ptr<gloo::Context> context_;
  std::shared_ptr<gloo::Context> fast_;
  std::map<std::pair<float*, size_t>, std::unique_ptr<gloo::AllreduceBcube<float>>> fast_algorithms_;
  uint32_t next_tag_ = 1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(int rank, int size, RendezvousStore& store,
                                                                     const GlooOptions& options) {
  if (size < 1 || rank < 0 || rank >= size) return absl::InvalidArgumentError("bad rank or group size");
  // A peer that dies must fail the collective (Gloo's writev to its socket), not kill
  // this process with SIGPIPE: the survivors leave their group and serve again.
  IgnoreBrokenPipes();
  std::shared_ptr<gloo::rendezvous::Context> context, fast;
  absl::Status s = Guard("rendezvous", [&] {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.hostname;
    auto device = gloo::transport::tcp::CreateDevice(attr);
    StoreAdapter adapter(store, options.timeout);
    auto connect = [&](const std::string& prefix) {
      gloo::rendezvous::PrefixStore prefixed(prefix, adapter);
      auto c = std::make_shared<gloo::rendezvous::Context>(rank, size);
      c->setTimeout(options.timeout);
      c->connectFullMesh(prefixed, device);
      return c;
    };
    context = connect(options.prefix);
    // Gloo's classic bcube all-reduce is only correct for power-of-two groups.
    const bool power_of_two = (size & (size - 1)) == 0;
    if (options.busy_poll && size > 1 && power_of_two) {
      fast = connect(options.prefix + "-fast");
      for (int peer = 0; peer < size; ++peer) {
        if (peer != rank) fast->getPair(peer)->setSync(/*sync=*/true, /*busyPoll=*/true);
      }
    }
  });
  if (!s.ok()) return s;
  return std::unique_ptr<Communicator>(new GlooCommunicator(std::move(context), std::move(fast)));
}

}  // namespace tessera::parallel
