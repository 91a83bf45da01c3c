// Philox fills on the GPU: the same functions of (seed, stream, step, element) as the CPU
// fills in runtime/philox.c, since both evaluate the exact-arithmetic helpers of philox.h.
#include <cuda_runtime.h>

#include <stdint.h>

#include "kernels/philox.h"

namespace {

enum FillKind { FILL_U32 = 0, FILL_UNIFORM = 1, FILL_NORMAL = 2 };

template <int KIND>
__device__ __forceinline__ void group_values(uint64_t seed, uint32_t stream, uint32_t step, uint64_t g,
                                             uint32_t bits[4]) {
    uint32_t x[4];
    ddx_philox_group(seed, stream, step, g, x);
    if (KIND == FILL_U32) {
        for (int l = 0; l < 4; l++) bits[l] = x[l];
    } else if (KIND == FILL_UNIFORM) {
        for (int l = 0; l < 4; l++) bits[l] = __float_as_uint(ddx_philox_unit(x[l]));
    } else {
        float z[4];
        ddx_philox_normal4(x, z);
        for (int l = 0; l < 4; l++) bits[l] = __float_as_uint(z[l]);
    }
}

// One thread per group of 4 elements, grid-stride. Group g covers elements 4g .. 4g+3;
// out[i] holds element offset + i. When offset is a multiple of 4 and out is 16-byte
// aligned (the usual case) whole groups go out as one 16-byte store.
template <int KIND, bool VEC>
__global__ void __launch_bounds__(256) philox_fill_kernel(uint32_t *__restrict__ out, uint64_t offset, uint64_t end,
                                                          uint64_t seed, uint32_t stream, uint32_t step) {
    const uint64_t g0 = offset >> 2, g1 = (end - 1) >> 2;
    const uint64_t ngroups = g1 - g0 + 1;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; t < ngroups; t += stride) {
        const uint64_t g = g0 + t;
        uint32_t v[4];
        group_values<KIND>(seed, stream, step, g, v);
        const uint64_t first = g << 2;
        if (VEC && first + 4 <= end) {
            reinterpret_cast<uint4 *>(out)[t] = make_uint4(v[0], v[1], v[2], v[3]);
        } else {
            for (int l = 0; l < 4; l++) {
                const uint64_t e = first + (uint64_t)l;
                if (e >= offset && e < end) out[e - offset] = v[l];
            }
        }
    }
}

template <int KIND>
int philox_launch(void *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step, uint64_t offset,
                  void *cuda_stream) {
    if (n < 0 || (n > 0 && !out) || step > UINT32_MAX || offset > UINT64_MAX - (uint64_t)n)
        return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    const uint64_t end = offset + (uint64_t)n;
    const uint64_t ngroups = ((end - 1) >> 2) - (offset >> 2) + 1;

    // Enough blocks to fill the device several times over; the grid-stride loop does the rest.
    int dev = 0, sms = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (err != cudaSuccess) return (int)err;
    const int threads = 256;
    const uint64_t want = (ngroups + threads - 1) / threads;
    const uint64_t cap = (uint64_t)(sms > 0 ? sms : 1) * 16;
    const unsigned blocks = (unsigned)(want < cap ? want : cap);

    cudaStream_t s = (cudaStream_t)cuda_stream;
    uint32_t *o = (uint32_t *)out;
    const bool vec = (offset & 3) == 0 && ((uintptr_t)out & 15) == 0;
    if (vec)
        philox_fill_kernel<KIND, true><<<blocks, threads, 0, s>>>(o, offset, end, seed, stream, (uint32_t)step);
    else
        philox_fill_kernel<KIND, false><<<blocks, threads, 0, s>>>(o, offset, end, seed, stream, (uint32_t)step);
    return (int)cudaGetLastError();
}

}  // namespace

extern "C" int ddx_philox_u32_cuda(uint32_t *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                                   uint64_t offset, void *cuda_stream) {
    return philox_launch<FILL_U32>(out, n, seed, stream, step, offset, cuda_stream);
}

extern "C" int ddx_philox_uniform_cuda(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                                       uint64_t offset, void *cuda_stream) {
    return philox_launch<FILL_UNIFORM>(out, n, seed, stream, step, offset, cuda_stream);
}

extern "C" int ddx_philox_normal_cuda(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                                      uint64_t offset, void *cuda_stream) {
    return philox_launch<FILL_NORMAL>(out, n, seed, stream, step, offset, cuda_stream);
}
