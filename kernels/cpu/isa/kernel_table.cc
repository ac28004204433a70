// This level's kernel table (internal/isa_kernels.h); TESSERA_ISA_TABLE names it.
#include "kernels/cpu/isa/kernel_entry_points.h"

namespace tessera::kernels::internal {

extern const IsaKernels TESSERA_ISA_TABLE;
const IsaKernels TESSERA_ISA_TABLE = {
    &TESSERA_ISA_NS::RunMatmulTask,
    &TESSERA_ISA_NS::AttendOne,
#if defined(__AVX512BF16__)
    /*has_bf16_dot=*/true,
#else
    /*has_bf16_dot=*/false,
#endif
};

}  // namespace tessera::kernels::internal
