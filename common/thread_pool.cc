#include "common/thread_pool.h"

#include <immintrin.h>

namespace tessera {
namespace {
// About 20 microseconds of polling before a thread sleeps: long enough to catch the
// next kernel of the same step, short enough not to steal a shared core.
constexpr int kSpinIterations = 4000;
}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 1; i < num_threads; ++i) helpers_.emplace_back([this] { HelperLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : helpers_) t.join();
}

void ThreadPool::DrainTasks(Job* job) {
  while (true) {
    int i = job->next_task.fetch_add(1, std::memory_order_relaxed);
    if (i >= job->size) return;
    (*job->fn)(i);
    job->tasks_left.fetch_sub(1, std::memory_order_acq_rel);
  }
}

bool ThreadPool::JobFinished(const Job& job) const {
  return job.tasks_left.load(std::memory_order_acquire) == 0 &&
         job.helpers_inside.load(std::memory_order_acquire) == 0;
}

void ThreadPool::Run(int n, const std::function<void(int)>& fn) {
  if (n <= 0) return;
  if (helpers_.empty() || n == 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  Job job;
  job.fn = &fn;
  job.size = n;
  job.tasks_left.store(n, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &job;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  DrainTasks(&job);
  for (int spin = 0; spin < kSpinIterations && !JobFinished(job); ++spin) _mm_pause();
  // Decide under the lock: a helper registers itself (helpers_inside) only while
  // holding it, so once the job is finished here and job_ is cleared, no helper can
  // still reach `job`, which dies with this frame.
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return JobFinished(job); });
  job_ = nullptr;
}

void ThreadPool::HelperLoop() {
  uint64_t seen = 0;
  while (true) {
    for (int spin = 0; spin < kSpinIterations; ++spin) {
      if (generation_.load(std::memory_order_acquire) != seen) break;
      _mm_pause();
    }
    Job* job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      if (stop_) return;
      seen = generation_.load(std::memory_order_acquire);
      job = job_;
      if (job == nullptr) continue;  // that job already finished
      job->helpers_inside.fetch_add(1, std::memory_order_relaxed);
    }
    DrainTasks(job);
    {
      std::lock_guard<std::mutex> lock(mu_);
      job->helpers_inside.fetch_sub(1, std::memory_order_release);
      if (JobFinished(*job)) done_.notify_one();
    }
  }
}

}  // namespace tessera
