#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/aligned_buffer.h"
#include "common/bf16.h"
#include "common/cpu_limit.h"
#include "common/flags.h"
#include "common/progress.h"
#include "common/thread_pool.h"

namespace tessera {
namespace {

// A cgroup tree under a temporary folder, as /sys/fs/cgroup shows one.
class FakeCgroups {
 public:
  FakeCgroups() : root_(std::filesystem::temp_directory_path() / ("cgroups-" + std::to_string(getpid()))) {}
  ~FakeCgroups() { std::filesystem::remove_all(root_); }
  void Write(const std::string& file, const std::string& text) {
    const std::filesystem::path path = root_ / file;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  std::string root() const { return root_.string(); }

 private:
  std::filesystem::path root_;
};

TEST(CpuLimitTest, CgroupV2QuotasTheTightestOnTheWay) {
  FakeCgroups fs;
  const std::string self = "0::/kubepods/pod1/ctr\n";
  EXPECT_EQ(CgroupCpuLimit(self, fs.root()), std::nullopt);  // no files: no limit
  fs.Write("kubepods/pod1/ctr/cpu.max", "max 100000\n");
  EXPECT_EQ(CgroupCpuLimit(self, fs.root()), std::nullopt);
  fs.Write("kubepods/pod1/cpu.max", "250000 100000\n");  // the pod's limit: 2.5 CPUs
  EXPECT_EQ(CgroupCpuLimit(self, fs.root()), 2.5);
  fs.Write("kubepods/cpu.max", "400000 100000\n");
  fs.Write("kubepods/pod1/ctr/cpu.max", "150000 100000\n");
  EXPECT_EQ(CgroupCpuLimit(self, fs.root()), 1.5);
  fs.Write("cpu.max", "50000 100000\n");  // a namespace's root with a limit of its own
  EXPECT_EQ(CgroupCpuLimit("0::/\n", fs.root()), 0.5);
}

TEST(CpuLimitTest, CgroupV1CfsQuota) {
  FakeCgroups fs;
  const std::string self = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n";
  fs.Write("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
  fs.Write("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(CgroupCpuLimit(self, fs.root()), std::nullopt);
  fs.Write("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n");
  EXPECT_EQ(CgroupCpuLimit(self, fs.root()), 3.0);
  EXPECT_EQ(CgroupCpuLimit("not a cgroup line\n", fs.root()), std::nullopt);
}

TEST(CpuLimitTest, UsableCpusIsPositiveAndWithinTheAffinityMask) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_GE(UsableCpus(), 1);
  EXPECT_LE(UsableCpus(), CPU_COUNT(&set));
}

TEST(ThreadPoolTest, RunsEveryTaskExactlyOnce) {
  ThreadPool pool(3);
  for (int round = 0; round < 200; ++round) {
    const int n = 1 + round % 17;
    std::vector<std::atomic<int>> hits(n);
    pool.Run(n, [&](int i) { hits[i].fetch_add(1); });
    for (int i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "round " << round << " task " << i;
  }
}

// Back-to-back tiny jobs: a helper that wakes late must never touch a finished job
// (this once deadlocked the pool within a few thousand rounds).
TEST(ThreadPoolTest, ManyTinyJobsNeverHang) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int round = 0; round < 100000; ++round) pool.Run(2, [&](int i) { sum += i; });
  EXPECT_EQ(sum.load(), 100000);
}

TEST(ThreadPoolTest, SingleThreadRunsInline) {
  ThreadPool pool(1);
  int sum = 0;
  pool.Run(10, [&](int i) { sum += i; });
  EXPECT_EQ(sum, 45);
}

TEST(ThreadPoolTest, HelpersSleepAndWakeUp) {
  ThreadPool pool(2);
  std::atomic<int> count{0};
  pool.Run(4, [&](int) { count++; });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // helpers are blocked now
  pool.Run(4, [&](int) { count++; });
  EXPECT_EQ(count.load(), 8);
}

// Small buffers come from the heap, large ones from huge-page mappings: both start
// zeroed and aligned, keep their bytes when moved, and grow on Reserve.
TEST(AlignedBufferTest, SmallAndHugeBuffersAreZeroedAlignedAndMovable) {
  for (size_t bytes : {size_t{100}, size_t{3} << 20}) {
    AlignedBuffer a(bytes);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(a.data()) % AlignedBuffer::kAlignment, 0u);
    const uint8_t* p = a.as<uint8_t>();
    EXPECT_TRUE(std::all_of(p, p + bytes, [](uint8_t b) { return b == 0; })) << bytes;
    a.as<uint8_t>()[bytes - 1] = 7;
    AlignedBuffer b = std::move(a);
    EXPECT_EQ(b.size(), bytes);
    EXPECT_EQ(b.as<uint8_t>()[bytes - 1], 7);
    EXPECT_EQ(a.size(), 0u);
    b.Reserve(bytes * 2);
    EXPECT_GE(b.size(), bytes * 2);
    EXPECT_EQ(b.as<uint8_t>()[bytes * 2 - 1], 0);
  }
}

TEST(ByteProgressTest, DescribesShareSizeRateAndTimeLeft) {
  EXPECT_EQ(ByteProgress::Describe(1'000'000'000, 4'000'000'000, 0.5), "25% 1.00/4.00 GB, 2.00 GB/s, 1.5 s left");
  EXPECT_EQ(ByteProgress::Describe(4'000'000'000, 4'000'000'000, 2.0), "100% 4.00/4.00 GB, 2.00 GB/s");
  EXPECT_EQ(ByteProgress::Describe(0, 0, 0.0), "0% 0.00/0.00 GB, 0.00 GB/s");
}

// Reaching the total stops the clock: what runs after the weights (a KV pool's
// allocation) is not counted as loading them.
TEST(ByteProgressTest, ReachingTheTotalFinishes) {
  ByteProgress progress("loading", ByteProgress::Style::kQuiet);
  progress.Update(5, 10);
  progress.Update(10, 10);
  const double at_total = progress.seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(progress.seconds(), at_total);
  EXPECT_EQ(progress.bytes(), 10);
  progress.Update(20, 20);  // after the end: ignored
  EXPECT_EQ(progress.bytes(), 10);
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Bf16Test, HalfToFloat) {
  EXPECT_EQ(F16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(F16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(F16ToFloat(0x7c00)));
}

// A server's flags: the command line, then TESSERA_* (a ConfigMap), then the default;
// only the table's own flags are read; switches take 1 or true.
TEST(FlagTableTest, CommandLineThenEnvironmentThenDefault) {
  EXPECT_EQ(FlagTable::EnvironmentName("kv-memory-mb"), "TESSERA_KV_MEMORY_MB");
  setenv("TESSERA_KV_MEMORY_MB", "64", 1);
  setenv("TESSERA_TP", "2", 1);
  setenv("TESSERA_BUSY_POLL", "0", 1);
  int kv_mb = 256, tp = 1, blocks = 7;
  bool busy_poll = false;
  FlagTable table("prog", "test");
  table.Int("kv-memory-mb", &kv_mb, "N", "KV memory", 1);
  table.Int("tp", &tp, "N", "ranks", 1);
  table.Int("blocks", &blocks, "N", "blocks", 0);
  table.Switch("busy-poll", &busy_poll, "spin");
  const char* argv[] = {"prog", "--tp=3", "--tp", "4"};  // given twice: the last wins
  EXPECT_EQ(table.Parse(4, argv), std::nullopt);
  EXPECT_EQ(kv_mb, 64);
  EXPECT_EQ(tp, 4);
  EXPECT_EQ(blocks, 7);
  EXPECT_FALSE(busy_poll);

  setenv("TESSERA_BUSY_POLL", "true", 1);
  FlagTable second("prog", "test");
  second.Switch("busy-poll", &busy_poll, "spin");
  const char* bare[] = {"prog"};
  EXPECT_EQ(second.Parse(1, bare), std::nullopt);
  EXPECT_TRUE(busy_poll);
  for (const char* v : {"TESSERA_KV_MEMORY_MB", "TESSERA_TP", "TESSERA_BUSY_POLL"}) unsetenv(v);
}

TEST(FlagTableTest, BadFlagsExitTwoAndHelpNamesEveryFlag) {
  int n = 3;
  std::string mode = "a";
  FlagTable table("prog", "test");
  table.Int("n", &n, "N", "a count", 1, 10);
  table.Choice("mode", &mode, {"a", "b"}, "a mode");
  for (std::vector<const char*> argv : std::vector<std::vector<const char*>>{
           {"prog", "--n", "0"}, {"prog", "--n", "x"}, {"prog", "--mode", "c"}, {"prog", "--bogus", "1"}}) {
    EXPECT_EQ(table.Parse(static_cast<int>(argv.size()), argv.data()), std::optional<int>(kUsageExit)) << argv[1];
  }
  const std::string help = table.Help();
  for (const char* text : {"--n", "a count", "TESSERA_N", "=3", "--mode", "a|b", "TESSERA_MODE"}) {
    EXPECT_NE(help.find(text), std::string::npos) << text << " missing from\n" << help;
  }
  const char* version[] = {"prog", "--version"};
  testing::internal::CaptureStdout();
  EXPECT_EQ(table.Parse(2, version), std::optional<int>(0));
  EXPECT_EQ(testing::internal::GetCapturedStdout(), std::string("prog ") + Version() + "\n");
}

}  // namespace
}  // namespace tessera
