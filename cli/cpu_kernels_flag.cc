#include "cli/cpu_kernels_flag.h"

#include <iostream>

#include "common/status.h"
#include "kernels/cpu_isa.h"

namespace tessera::cli {

absl::Status SelectCpuKernels(const Args& args, const char* program, bool announce) {
  ASSIGN_OR_RETURN(const kernels::CpuIsa isa, kernels::ParseCpuIsa(args.Has("cpu-isa") ? args.flags.at("cpu-isa") : "auto"));
  RETURN_IF_ERROR(kernels::SelectCpuIsa(isa));
  if (!announce) return absl::OkStatus();
  std::cerr << program << ": CPU kernels " << kernels::CpuIsaName(isa) << " (this CPU runs up to "
            << kernels::CpuIsaName(kernels::BestCpuIsa()) << ")\n";
  return absl::OkStatus();
}

}  // namespace tessera::cli
