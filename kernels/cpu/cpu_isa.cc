#include "kernels/cpu_isa.h"

#include <cpuid.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "kernels/cpu/internal/isa_kernels.h"

namespace tessera::kernels {
namespace {

// F16C from cpuid leaf 1 (ECX bit 29): clang's __builtin_cpu_supports has no "f16c".
bool CpuHasF16c() {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

// The compiler's cpuid reading also checks that the OS saves the AVX / AVX-512 registers.
bool CpuHas(CpuIsa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case CpuIsa::kPortable: return true;
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CpuHasF16c();
    case CpuIsa::kAvx512: return CpuHas(CpuIsa::kAvx2) && __builtin_cpu_supports("avx512f");
    case CpuIsa::kAvx512Bf16: return CpuHas(CpuIsa::kAvx512) && __builtin_cpu_supports("avx512bf16");
  }
  return false;
}

const internal::IsaKernels& KernelsOf(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kPortable: return internal::kPortableKernels;
    case CpuIsa::kAvx2: return internal::kAvx2Kernels;
    case CpuIsa::kAvx512: return internal::kAvx512Kernels;
    case CpuIsa::kAvx512Bf16: return internal::kAvx512Bf16Kernels;
  }
  return internal::kPortableKernels;
}

std::atomic<CpuIsa>& Selected() {
  static std::atomic<CpuIsa> selected{BestCpuIsa()};
  return selected;
}

}  // namespace

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kPortable: return "portable";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx512Bf16: return "avx512-bf16";
  }
  return "?";
}

absl::StatusOr<CpuIsa> ParseCpuIsa(std::string_view name) {
  if (name == "auto") return BestCpuIsa();
  for (CpuIsa isa : AllCpuIsas()) {
    if (name == CpuIsaName(isa)) return isa;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown CPU kernel level '", std::string(name), "'; expected auto, portable, avx2, avx512 or avx512-bf16"));
}

bool CpuSupports(CpuIsa isa) { return CpuHas(isa); }

CpuIsa BestCpuIsa() {
  static const CpuIsa best = [] {
    CpuIsa found = CpuIsa::kPortable;
    for (CpuIsa isa : AllCpuIsas()) {
      if (CpuHas(isa)) found = isa;
    }
    return found;
  }();
  return best;
}

std::vector<CpuIsa> AllCpuIsas() {
  return {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16};
}

absl::Status SelectCpuIsa(CpuIsa isa) {
  if (!CpuSupports(isa)) {
    return absl::FailedPreconditionError(absl::StrCat("this CPU cannot run the ", CpuIsaName(isa),
                                                      " kernels (it runs up to ", CpuIsaName(BestCpuIsa()), ")"));
  }
  Selected().store(isa, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status SelectCpuIsaNamed(std::string_view name, bool announce) {
  ASSIGN_OR_RETURN(const CpuIsa isa, ParseCpuIsa(name));
  RETURN_IF_ERROR(SelectCpuIsa(isa));
  if (announce) {
    log::Info() << "CPU kernels " << CpuIsaName(isa) << " (this CPU runs up to " << CpuIsaName(BestCpuIsa()) << ")";
  }
  return absl::OkStatus();
}

CpuIsa ActiveCpuIsa() { return Selected().load(std::memory_order_relaxed); }

namespace internal {
const IsaKernels& ActiveKernels() { return KernelsOf(ActiveCpuIsa()); }
}  // namespace internal

}  // namespace tessera::kernels
