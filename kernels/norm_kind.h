// The normalisations of the models' blocks, shared by the CPU and CUDA kernels.
#pragma once

namespace tessera::kernels {

enum class NormKind { kRmsNorm, kLayerNorm };

}  // namespace tessera::kernels
