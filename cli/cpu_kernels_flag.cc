#include "cli/cpu_kernels_flag.h"

#include "kernels/cpu_isa.h"

namespace tessera::cli {

absl::Status SelectCpuKernels(const Args& args, bool announce) {
  return kernels::SelectCpuIsaNamed(args.Has("cpu-isa") ? args.flags.at("cpu-isa") : "auto", announce);
}

}  // namespace tessera::cli
