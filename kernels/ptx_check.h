// Self-test launchers for the sm_90a wrappers of kernels/ptx.cuh (wgmma, mbarrier, bulk
// copy), run by tests/test_ptx_wrappers.c in the gpu suite. Launcher contract as in
// elementwise.h (cudaError_t as int, 0 = success); on a device other than compute
// capability 9.x they return cudaErrorNoKernelImageForDevice without launching.
#ifndef DDX_KERNELS_PTX_CHECK_H
#define DDX_KERNELS_PTX_CHECK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// One warpgroup computes d[64][8] = a[64][16] . bt[8][16]^T (bf16 in, f32 out) with one
// wgmma m64n8k16 from shared memory; a reaches shared memory by a bulk copy completing on an
// mbarrier and is copied back to a_echo [64 * 16] as it landed (so a bad copy and a bad
// product are told apart). Synchronous (waits for the kernel).
int ddx_k_ptx_wgmma_check(const uint16_t *a, const uint16_t *bt, float *d, uint16_t *a_echo);

#ifdef __cplusplus
}
#endif

#endif
