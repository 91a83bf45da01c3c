// Self-test kernel of the sm_90a wrappers in kernels/ptx.cuh (see ptx_check.h). Its body
// exists only in the sm_90a SASS; the compute_80 PTX holds an empty kernel that the launcher
// never starts.
#include "kernels/ptx_check.h"

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ptx.cuh"

namespace {

// Operands in the no-swizzle core-matrix layout of ptx::wgmma_desc: 8 x 8 bf16 blocks of 128
// contiguous bytes. A (64 x 16, K-major): block (m / 8, k / 8) at byte ((m / 8) * 2 + k / 8) * 128,
// so the K-direction (leading) offset is 128 and the M-direction (stride) offset 256. B^T
// (8 x 16, K-major): block (0, k / 8) at (k / 8) * 128, leading offset 128.
__global__ void __launch_bounds__(128) ptx_wgmma_check_k(const uint16_t *a, const uint16_t *bt, float *d,
                                                         uint16_t *a_echo) {
#if DDX_PTX_SM90A
    __shared__ alignas(128) uint16_t stage[64 * 16];
    __shared__ alignas(128) uint16_t sa[64 * 16];
    __shared__ alignas(128) uint16_t sb[8 * 16];
    __shared__ alignas(8) uint64_t bar;
    const int tid = threadIdx.x;
    const uint32_t bar_a = ptx::smem_u32(&bar);
    if (tid == 0) {
        ptx::mbar_init(bar_a, 1);
        ptx::mbar_init_fence();
    }
    __syncthreads();
    if (tid == 0) {
        ptx::mbar_arrive_expect_tx(bar_a, (uint32_t)sizeof stage);
        ptx::bulk_load(ptx::smem_u32(stage), a, (uint32_t)sizeof stage, bar_a);
    }
    ptx::mbar_wait(bar_a, 0);
    for (int i = tid; i < 64 * 16; i += 128) {
        const int m = i / 16, k = i % 16;
        a_echo[i] = stage[i];
        sa[((m / 8) * 2 + k / 8) * 64 + (m % 8) * 8 + k % 8] = stage[i];
    }
    for (int i = tid; i < 8 * 16; i += 128) {
        const int n = i / 16, k = i % 16;
        sb[(k / 8) * 64 + n * 8 + k % 8] = bt[i];
    }
    ptx::fence_proxy_async();   // the generic-proxy stores above, seen by wgmma's async proxy
    __syncthreads();
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint64_t da = ptx::wgmma_desc(ptx::smem_u32(sa), 128, 256, 0);
    const uint64_t db = ptx::wgmma_desc(ptx::smem_u32(sb), 128, 256, 0);
    ptx::wgmma_fence();
    ptx::wgmma_m64n8k16_bf16(acc, da, db, false);
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
    for (int k = 0; k < 4; k++) ptx::wgmma_fence_reg(acc[k]);
    const int warp = tid / 32, lane = tid % 32, row = 16 * warp + lane / 4, col = 2 * (lane % 4);
    d[row * 8 + col] = acc[0];
    d[row * 8 + col + 1] = acc[1];
    d[(row + 8) * 8 + col] = acc[2];
    d[(row + 8) * 8 + col + 1] = acc[3];
#else
    (void)a, (void)bt, (void)d, (void)a_echo;
#endif
}

}  // namespace

extern "C" int ddx_k_ptx_wgmma_check(const uint16_t *a, const uint16_t *bt, float *d, uint16_t *a_echo) {
    int dev = 0, major = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e != cudaSuccess) return (int)e;
    if (major != 9) return (int)cudaErrorNoKernelImageForDevice;
    ptx_wgmma_check_k<<<1, 128>>>(a, bt, d, a_echo);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    return (int)e;
}
