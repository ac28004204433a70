// The activation functions of the models' MLPs, shared by the CPU and CUDA kernels.
#pragma once

namespace tessera::kernels {

enum class Activation { kSilu, kGeluTanh, kGeluErf, kRelu };

}  // namespace tessera::kernels
