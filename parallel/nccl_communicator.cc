// NCCL behind parallel::Communicator: non-blocking communicators, one CUDA stream, and
// polling with a deadline so a dead peer aborts the collective instead of hanging it.
#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <thread>

#include "absl/strings/str_cat.h"

namespace tessera::parallel {
namespace {

using Clock = std::chrono::steady_clock;

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, cudaStream_t stream, cudaEvent_t queued, int rank, int size,
                   std::chrono::milliseconds timeout)
      : comm_(comm), stream_(stream), queued_(queued), rank_(rank), size_(size), timeout_(timeout) {}
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
    if (queued_) cudaEventDestroy(queued_);
    cudaFree(barrier_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool device_buffers() const override { return true; }

  absl::Status AllReduceSum(std::span<float> data) override {
    return Run("all-reduce", [&] {
      return ncclAllReduce(data.data(), data.data(), data.size(), ncclFloat, ncclSum, comm_, stream_);
    });
  }
  absl::Status AllGather(std::span<const float> in, std::span<float> out) override {
    if (out.size() != in.size() * static_cast<size_t>(size_)) {
      return absl::InvalidArgumentError("all-gather output must hold size x input");
    }
    return Run("all-gather", [&] { return ncclAllGather(in.data(), out.data(), in.size(), ncclFloat, comm_, stream_); });
  }
  absl::Status Broadcast(std::span<float> data, int root) override {
    if (root < 0 || root >= size_) return absl::InvalidArgumentError("broadcast root out of range");
    return Run("broadcast",
               [&] { return ncclBroadcast(data.data(), data.data(), data.size(), ncclFloat, root, comm_, stream_); });
  }
  absl::Status AllToAllV(std::span<const float> in, const std::vector<int64_t>& send_counts, std::span<float> out,
                         const std::vector<int64_t>& recv_counts) override {
    if (send_counts.size() != static_cast<size_t>(size_) || recv_counts.size() != static_cast<size_t>(size_)) {
      return absl::InvalidArgumentError("all-to-all needs one count per rank");
    }
    return Run("all-to-all", [&] {
      ncclResult_t r = ncclGroupStart();
      int64_t send_offset = 0, recv_offset = 0;
      for (int p = 0; p < size_ && (r == ncclSuccess || r == ncclInProgress); ++p) {
        r = ncclSend(in.data() + send_offset, send_counts[p], ncclFloat, p, comm_, stream_);
        if (r == ncclSuccess || r == ncclInProgress) {
          r = ncclRecv(out.data() + recv_offset, recv_counts[p], ncclFloat, p, comm_, stream_);
        }
        send_offset += send_counts[p];
        recv_offset += recv_counts[p];
      }
      const ncclResult_t end = ncclGroupEnd();
      return r == ncclSuccess || r == ncclInProgress ? end : r;
    });
  }
  absl::Status Barrier() override {
    if (!barrier_) {
      if (cudaMalloc(&barrier_, sizeof(float)) != cudaSuccess) return absl::InternalError("cudaMalloc failed");
    }
    return AllReduceSum({barrier_, 1});
  }

 private:
  // Launches a collective and waits for it within the timeout.
  template <typename Launch>
  absl::Status Run(const char* what, Launch launch) {
    if (comm_ == nullptr) return absl::UnavailableError(absl::StrCat(what, ": the communicator was aborted"));
    // Our stream is non-blocking: order it after the default stream's queued work.
    if (cudaEventRecord(queued_, cudaStreamLegacy) != cudaSuccess ||
        cudaStreamWaitEvent(stream_, queued_, 0) != cudaSuccess) {
      return absl::InternalError(absl::StrCat(what, ": cannot order the collective after the queued work"));
    }
    const auto deadline = Clock::now() + timeout_;
    ncclResult_t r = launch();
    while (true) {
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (r != ncclSuccess && r != ncclInProgress) async = r;
      if (async != ncclSuccess && async != ncclInProgress) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        return absl::UnavailableError(absl::StrCat(what, " failed: ", ncclGetErrorString(async)));
      }
      if (async == ncclSuccess && cudaStreamQuery(stream_) == cudaSuccess) return absl::OkStatus();
      if (Clock::now() > deadline) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        return absl::DeadlineExceededError(absl::StrCat(what, " did not finish in time: a peer is gone"));
      }
      r = ncclSuccess;
      std::this_thread::yield();
    }
  }

  ncclComm_t comm_;
  cudaStream_t stream_;
  cudaEvent_t queued_;  // the default stream's work before a collective
  int rank_, size_;
  std::chrono::milliseconds timeout_;
  float* barrier_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(int rank, int size, RendezvousStore& store,
                                                                     const NcclOptions& options) {
  if (size < 1 || rank < 0 || rank >= size) return absl::InvalidArgumentError("bad rank or group size");
  if (cudaSetDevice(options.device) != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat("no CUDA device ", options.device));
  }
  ncclUniqueId id;
  const std::string key = options.prefix + "/unique-id";
  if (rank == 0) {
    if (ncclGetUniqueId(&id) != ncclSuccess) return absl::InternalError("ncclGetUniqueId failed");
    absl::Status s = store.Set(key, std::vector<char>(id.internal, id.internal + sizeof(id.internal)));
    if (!s.ok()) return s;
  } else {
    absl::StatusOr<std::vector<char>> value = store.Get(key, options.timeout);
    if (!value.ok()) return value.status();
    if (value->size() != sizeof(id.internal)) return absl::InvalidArgumentError("malformed NCCL unique id");
    std::copy(value->begin(), value->end(), id.internal);
  }
  cudaStream_t stream;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    return absl::InternalError("cannot create a CUDA stream");
  }
  cudaEvent_t queued;
  if (cudaEventCreateWithFlags(&queued, cudaEventDisableTiming) != cudaSuccess) {
    cudaStreamDestroy(stream);
    return absl::InternalError("cannot create a CUDA event");
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // lets us poll with a deadline
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, size, id, rank, &config);
  const auto deadline = Clock::now() + options.timeout;
  while (r == ncclInProgress) {
    if (Clock::now() > deadline) {
      ncclCommAbort(comm);
      cudaStreamDestroy(stream);
      cudaEventDestroy(queued);
      return absl::DeadlineExceededError("NCCL rendezvous timed out: not every rank joined");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ncclCommGetAsyncError(comm, &r);
  }
  if (r != ncclSuccess) {
    cudaStreamDestroy(stream);
    cudaEventDestroy(queued);
    return absl::UnavailableError(absl::StrCat("NCCL init failed: ", ncclGetErrorString(r)));
  }
  return std::unique_ptr<Communicator>(new NcclCommunicator(comm, stream, queued, rank, size, options.timeout));
}

}  // namespace tessera::parallel
