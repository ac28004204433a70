// How many CPUs this process may use: its affinity mask, capped by the CPU quota of
// its cgroup and every cgroup above it (a container's CPU limit: Kubernetes'
// resources.limits.cpu, docker --cpus), rounded up. Threads beyond that only take
// turns: a pool sized to the node's cores in a 2-CPU container is throttled.
#pragma once

#include <optional>
#include <string>

namespace tessera {

// UsableCpus() for this process: at least 1.
int UsableCpus();

// The tightest CPU quota on the way from a process's cgroup up to the root, in CPUs
// (1.5 for "150000 100000"); nullopt without one. `proc_cgroup` is the text of
// /proc/<pid>/cgroup; `cgroup_root` where the hierarchies are mounted
// (/sys/fs/cgroup): cgroup v2's cpu.max, or v1's cpu.cfs_quota_us and
// cpu.cfs_period_us under cpu/ or cpu,cpuacct/.
std::optional<double> CgroupCpuLimit(const std::string& proc_cgroup, const std::string& cgroup_root);

}  // namespace tessera
