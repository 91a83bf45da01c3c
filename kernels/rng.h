// CUDA launchers for the Philox fills of runtime/philox.h: same arguments and the same bits
// as the CPU fills, written to device memory on the given stream (a cudaStream_t passed as
// void *, NULL = legacy default stream). Asynchronous; return 0 or a cudaError_t code:
// cudaErrorInvalidValue (1) for the inputs the CPU fills reject (n < 0, out NULL with
// n > 0, step >= 2^32, offset + n overflowing), otherwise the launch's error.
#ifndef DDX_KERNELS_RNG_H
#define DDX_KERNELS_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int ddx_philox_u32_cuda(uint32_t *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                        uint64_t offset, void *cuda_stream);
int ddx_philox_uniform_cuda(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                            uint64_t offset, void *cuda_stream);
int ddx_philox_normal_cuda(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                           uint64_t offset, void *cuda_stream);

#ifdef __cplusplus
}
#endif

#endif
