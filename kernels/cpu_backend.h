// The CPU backend (kernels/backend.h): the kernels of matmul.h, ops.h and attention.h
// on a thread pool it owns, weights packed into the matmul panels, memory on the heap.
#pragma once

#include <memory>

#include "kernels/backend.h"
#include "kernels/matmul.h"

namespace tessera::kernels {

// `num_threads` kernel threads, the caller included (>= 1); `matmul` sets the matmul
// precision switches (MatmulOptions::accumulate is ignored: each call says).
std::unique_ptr<Backend> MakeCpuBackend(int num_threads, const MatmulOptions& matmul);

}  // namespace tessera::kernels
