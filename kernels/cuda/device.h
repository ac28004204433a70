// What CUDA devices this process can see. Safe to call where no driver or GPU exists.
#pragma once

namespace tessera::kernels::cuda {

// Number of usable CUDA devices; 0 when there is no driver or no GPU.
int DeviceCount();

}  // namespace tessera::kernels::cuda
