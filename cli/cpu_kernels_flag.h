// The --cpu-isa flag every binary that runs CPU kernels takes (kernels/cpu_isa.h).
#pragma once

#include "absl/status/status.h"
#include "cli/args.h"

namespace tessera::cli {

inline constexpr char kCpuIsaHelp[] =
    "--cpu-isa LEVEL  CPU kernels: auto (default, the best this CPU runs), avx512-bf16, avx512, avx2, portable";

// Selects the level --cpu-isa names (auto when absent): kernels::SelectCpuIsaNamed.
// INVALID_ARGUMENT for an unknown name, FAILED_PRECONDITION for a level this CPU lacks.
absl::Status SelectCpuKernels(const Args& args, bool announce);

}  // namespace tessera::cli
