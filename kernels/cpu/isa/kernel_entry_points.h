// The entry points each per-ISA translation unit defines, in its own namespace
// (TESSERA_ISA_NS, set by kernels/CMakeLists.txt: isa_portable, isa_avx2, ...).
#pragma once

#include <cstdint>

#include "kernels/cpu/internal/isa_kernels.h"

#ifndef TESSERA_ISA_NS
#error "compiled only as a per-ISA kernel unit (kernels/CMakeLists.txt)"
#endif

namespace tessera::kernels::TESSERA_ISA_NS {

void RunMatmulTask(const internal::MatmulTask& task, int64_t row_begin, int64_t row_end, int64_t panel0,
                   int num_panels);

void AttendOne(const float* q, const float* q_sink, int64_t pos, int kvh, int group, const PagedKvView& kv, const AttentionShape& shape,
               const AttentionSequence& seq, float* out, float* scores, float* rows);

}  // namespace tessera::kernels::TESSERA_ISA_NS
