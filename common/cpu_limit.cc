#include "common/cpu_limit.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace tessera {
namespace {

namespace fs = std::filesystem;

// A quota in CPUs from a quota and a period in microseconds; nullopt for "no limit".
std::optional<double> Ratio(double quota, double period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  return quota / period;
}

// Keeps in `best` the tighter of it and `limit` (no limit is the loosest).
void TakeTighter(std::optional<double>& best, std::optional<double> limit) {
  if (limit && (!best || *limit < *best)) best = limit;
}

// cgroup v2: "max 100000" or "150000 100000".
std::optional<double> ReadV2(const fs::path& dir) {
  std::ifstream in(dir / "cpu.max");
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max") return std::nullopt;
  return Ratio(std::atof(quota.c_str()), period);
}

// cgroup v1: cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us.
std::optional<double> ReadV1(const fs::path& dir) {
  double quota = 0, period = 0;
  std::ifstream q(dir / "cpu.cfs_quota_us"), p(dir / "cpu.cfs_period_us");
  if (!(q >> quota) || !(p >> period)) return std::nullopt;
  return Ratio(quota, period);
}

// The least of the limits in top/below and every folder above it, up to `top`.
std::optional<double> Tightest(const fs::path& top, const fs::path& below,
                               std::optional<double> (*read)(const fs::path&)) {
  fs::path dir = below.empty() ? top : top / below;
  std::optional<double> best;
  for (;;) {
    TakeTighter(best, read(dir));
    if (dir == top || !dir.has_parent_path() || dir.parent_path() == dir) return best;
    dir = dir.parent_path();
  }
}

}  // namespace

std::optional<double> CgroupCpuLimit(const std::string& proc_cgroup, const std::string& cgroup_root) {
  std::istringstream lines(proc_cgroup);
  std::optional<double> best;
  for (std::string line; std::getline(lines, line);) {
    // hierarchy-id:controllers:path
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const fs::path path = fs::path(line.substr(b + 1)).relative_path();
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      const fs::path top(cgroup_root);
      TakeTighter(best, Tightest(top, path, ReadV2));
      continue;
    }
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) {
      if (name != "cpu") continue;
      for (const char* mount : {"cpu", "cpu,cpuacct", "cpuacct,cpu"}) {
        const fs::path top = fs::path(cgroup_root) / mount;
        if (fs::exists(top)) TakeTighter(best, Tightest(top, path, ReadV1));
      }
    }
  }
  return best;
}

int UsableCpus() {
  int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  std::ifstream in("/proc/self/cgroup");
  std::stringstream text;
  text << in.rdbuf();
  if (std::optional<double> limit = CgroupCpuLimit(text.str(), "/sys/fs/cgroup")) {
    cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(*limit - 1e-9))));
  }
  return cpus;
}

}  // namespace tessera
