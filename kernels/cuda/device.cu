#include <cuda_runtime.h>

#include "kernels/cuda/device.h"

namespace tessera::kernels::cuda {

int DeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

}  // namespace tessera::kernels::cuda
