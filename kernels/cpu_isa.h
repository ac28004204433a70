// Which instruction-set level the CPU kernels run at.
//
// The hot CPU kernels (the packed matmul and the attention inner loop) are compiled
// once per level, each translation unit with its own compiler flags
// (kernels/CMakeLists.txt), and one of them is chosen at run time from what the CPU
// reports (cpuid). The build never depends on the build machine's CPU: one binary runs
// everywhere, at the best level the machine it runs on has.
//
// Thread-safety: SelectCpuIsa is meant for the edge (a binary's flags, a test's setup)
// before kernels run; the selection is read atomically by every kernel call.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessera::kernels {

// Ordered from the floor up: a CPU that runs one level runs every level below it.
enum class CpuIsa {
  kPortable,    // plain C++ (SSE2, the x86-64 baseline)
  kAvx2,        // AVX2 + FMA + F16C: Haswell and later, Zen 1-3
  kAvx512,      // AVX-512F: Skylake-X, Ice Lake
  kAvx512Bf16,  // AVX-512F + AVX512_BF16: Zen 4/5, Sapphire Rapids (vdpbf16ps)
};

// "portable", "avx2", "avx512", "avx512-bf16".
const char* CpuIsaName(CpuIsa isa);

// A name as CpuIsaName gives it, or "auto" for BestCpuIsa(); INVALID_ARGUMENT otherwise.
absl::StatusOr<CpuIsa> ParseCpuIsa(std::string_view name);

// Whether this CPU (and its OS, which must save the wider registers) runs `isa`.
bool CpuSupports(CpuIsa isa);

// The highest level this CPU runs.
CpuIsa BestCpuIsa();

// Every level, floor first, with whether this CPU runs it (for tests and benchmarks).
std::vector<CpuIsa> AllCpuIsas();

// Makes the kernels run at `isa` from now on; FAILED_PRECONDITION naming the missing
// instructions when this CPU cannot. Without a call the kernels run at BestCpuIsa().
absl::Status SelectCpuIsa(CpuIsa isa);

// The edge of every binary that runs kernels (its --cpu-isa flag): ParseCpuIsa, then
// SelectCpuIsa; with `announce`, logs "CPU kernels <level> (this CPU runs up to <best>)".
absl::Status SelectCpuIsaNamed(std::string_view name, bool announce);

// The level the kernels run at now.
CpuIsa ActiveCpuIsa();

}  // namespace tessera::kernels
