// A fixed pool of threads for data-parallel kernels.
//
// Run(n, fn) calls fn(0..n-1) across the pool and returns when all calls are done;
// the calling thread works too, so a pool of N threads starts N-1 helpers. Helpers
// spin only briefly after a job and then block on a condition variable: on a machine
// where a coordinator, workers and tests share two cores, a spinning barrier waits for
// descheduled threads and collapses throughput.
//
// Thread-safety: Run may be called from one thread at a time (the owner of the pool).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera {

class ThreadPool {
 public:
  // REQUIRES: num_threads >= 1.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(helpers_.size()) + 1; }

  // Calls fn(i) for every i in [0, n), in any order, on any thread of the pool.
  void Run(int n, const std::function<void(int)>& fn);

 private:
  // One call of Run. Lives on Run's stack; Run returns only when every task is done
  // and no helper still holds a pointer to it.
  struct Job {
    const std::function<void(int)>* fn;
    int size;
    std::atomic<int> next_task{0};
    std::atomic<int> tasks_left{0};
    std::atomic<int> helpers_inside{0};
  };

  void HelperLoop();
  void DrainTasks(Job* job);
  bool JobFinished(const Job& job) const;

  std::vector<std::thread> helpers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  Job* job_ = nullptr;                 // guarded by mu_
  bool stop_ = false;                  // guarded by mu_
  std::atomic<uint64_t> generation_{0};  // bumped under mu_ for every new job
};

}  // namespace tessera
