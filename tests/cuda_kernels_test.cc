// CUDA kernels against their CPU oracles. Skips where no GPU is present.
#include <cuda_runtime.h>

#include <random>

#include <gtest/gtest.h>

#include "kernels/cuda/device.h"
#include "kernels/cuda/rms_norm.cuh"
#include "kernels/ops.h"

namespace tessera::kernels {
namespace {

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device: GPU tests skipped";
  }
};

TEST_F(CudaTest, RmsNormMatchesCpu) {
  for (int64_t dim : {16, 64, 1000, 4096}) {
    const int64_t rows = 7;
    std::mt19937 rng(static_cast<uint32_t>(dim));
    std::normal_distribution<float> dist;
    std::vector<float> x(rows * dim), w(dim), want(rows * dim), got(rows * dim);
    for (float& v : x) v = dist(rng);
    for (float& v : w) v = dist(rng);
    RmsNorm(x.data(), rows, dim, dim, w.data(), 1e-5f, want.data(), dim);
    float *dx, *dw, *dout;
    ASSERT_EQ(cudaMalloc(&dx, x.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dw, w.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dout, x.size() * 4), cudaSuccess);
    cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
    ASSERT_EQ(cuda::LaunchRmsNorm(dx, dw, dout, rows, dim, 1e-5f, nullptr), 0);
    ASSERT_EQ(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f * (1 + std::fabs(want[i])));
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(dout);
  }
}

}  // namespace
}  // namespace tessera::kernels
