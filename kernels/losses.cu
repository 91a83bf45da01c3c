// Kernels of the losses family: the reductions to one value (sum, mean, mse_loss) and their
// backward passes (see losses.h for the launcher contract).
//
// Reductions to [1] accumulate in double per thread (the CPU reference sums in double, and
// the loss must not depend on the summation order), a block tree gives one partial per block,
// and a single block folds the partials in index order.
#include "kernels/losses.h"

#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cstdint>

#include "kernels/common.cuh"

namespace {

constexpr int kThreads = 256;

// ---- reductions to [1] --------------------------------------------------------------------
constexpr int kRedMaxBlocks = 1024;

// Fixed-order block sum of one double per thread; the result is valid in thread 0.
__device__ __forceinline__ double block_sum(double s) {
    __shared__ double warp_sum[kThreads / 32];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if ((threadIdx.x & 31) == 0) warp_sum[threadIdx.x >> 5] = s;
    __syncthreads();
    double t = 0.0;
    if (threadIdx.x == 0) {
#pragma unroll
        for (int k = 0; k < kThreads / 32; k++) t += warp_sum[k];
    }
    return t;
}

// part[block] = sum over this block's grid-stride share of x (SQDIFF: of (a - b)^2).
template <int V, typename T, bool SQDIFF>
__global__ void __launch_bounds__(kThreads) reduce_part_k(double *part, const T *a, const T *b, int64_t n) {
    double s = 0.0;
    const int64_t nv = n / V;
    for (int64_t i = global_tid(); i < nv; i += grid_stride()) {
        float av[V], bv[V];
        load<V>(a + i * V, av);
        if constexpr (SQDIFF) {
            load<V>(b + i * V, bv);
#pragma unroll
            for (int k = 0; k < V; k++) {
                const double d = (double)av[k] - (double)bv[k];
                s += d * d;
            }
        } else {
#pragma unroll
            for (int k = 0; k < V; k++) s += (double)av[k];
        }
    }
    for (int64_t i = nv * V + global_tid(); i < n; i += grid_stride()) {
        if constexpr (SQDIFF) {
            const double d = (double)to_f(a[i]) - (double)to_f(b[i]);
            s += d * d;
        } else {
            s += (double)to_f(a[i]);
        }
    }
    const double t = block_sum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = t;
}

__global__ void __launch_bounds__(kThreads) reduce_final_k(float *out, const double *part, int nparts, double div) {
    double s = 0.0;
    for (int j = threadIdx.x; j < nparts; j += kThreads) s += part[j];
    const double t = block_sum(s);
    if (threadIdx.x == 0) out[0] = (float)(t / div);
}

// dx += (float)(g / div): the backward of sum (div 1) and mean (div n).
template <int V, typename T>
__global__ void __launch_bounds__(kThreads) scalar_acc_k(T *dx, const float *g, int64_t n, double div) {
    const float v = (float)((double)g[0] / div);
    const int64_t nv = n / V;
    for (int64_t i = global_tid(); i < nv; i += grid_stride()) {
        float d[V];
        load<V>(dx + i * V, d);
#pragma unroll
        for (int k = 0; k < V; k++) d[k] += v;
        store<V>(dx + i * V, d);
    }
    for (int64_t i = nv * V + global_tid(); i < n; i += grid_stride()) dx[i] = from_f<T>(to_f(dx[i]) + v);
}

// dp += k (a - b), then dt -= k (a - b), element by element in that order: pred and target
// may be one tensor, and then dp and dt are one buffer (as on the CPU, the two updates apply
// one after the other).
template <int V>
__global__ void __launch_bounds__(kThreads) mse_bwd_k(float *dp, float *dt, const float *a, const float *b,
                                                      const float *g, int64_t n) {
    const float kk = (float)(2.0 * (double)g[0] / (double)n);
    const int64_t nv = n / V;
    for (int64_t i = global_tid(); i < nv; i += grid_stride()) {
        float av[V], bv[V], d[V];
        load<V>(a + i * V, av);
        load<V>(b + i * V, bv);
        if (dp) {
            load<V>(dp + i * V, d);
#pragma unroll
            for (int k = 0; k < V; k++) d[k] += kk * (av[k] - bv[k]);
            store<V>(dp + i * V, d);
        }
        if (dt) {
            load<V>(dt + i * V, d);
#pragma unroll
            for (int k = 0; k < V; k++) d[k] -= kk * (av[k] - bv[k]);
            store<V>(dt + i * V, d);
        }
    }
    for (int64_t i = nv * V + global_tid(); i < n; i += grid_stride()) {
        const float gv = kk * (a[i] - b[i]);
        if (dp) dp[i] += gv;
        if (dt) dt[i] -= gv;
    }
}

// ---- host side ----------------------------------------------------------------------------
bool aligned(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

// Reductions: one partial per block, at most kRedMaxBlocks blocks.
int red_grid(int64_t work) {
    const int g = grid_for(work, kThreads);
    return g < kRedMaxBlocks ? g : kRedMaxBlocks;
}

template <typename T, bool SQDIFF>
int reduce_run(float *out, const T *a, const T *b, int64_t n, double div, float *scratch, cudaStream_t s) {
    constexpr int V = 16 / (int)sizeof(T);
    double *part = reinterpret_cast<double *>(scratch);
    const bool vec = aligned(a, 16) && (!SQDIFF || aligned(b, 16));
    const int grid = red_grid(vec ? cdiv(n, V) : n);
    if (vec) reduce_part_k<V, T, SQDIFF><<<grid, kThreads, 0, s>>>(part, a, b, n);
    else reduce_part_k<1, T, SQDIFF><<<grid, kThreads, 0, s>>>(part, a, b, n);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    reduce_final_k<<<1, kThreads, 0, s>>>(out, part, grid, div);
    return (int)cudaGetLastError();
}

template <typename T> int scalar_acc(T *dx, const float *g, int64_t n, double div, cudaStream_t s) {
    constexpr int V = 16 / (int)sizeof(T);
    if (aligned(dx, 16)) scalar_acc_k<V, T><<<grid_for(cdiv(n, V), kThreads), kThreads, 0, s>>>(dx, g, n, div);
    else scalar_acc_k<1, T><<<grid_for(n, kThreads), kThreads, 0, s>>>(dx, g, n, div);
    return (int)cudaGetLastError();
}

}  // namespace

// ---- extern "C" launchers -----------------------------------------------------------------
extern "C" {

int64_t ddx_k_reduce_scratch_floats(void) { return 2 * (int64_t)kRedMaxBlocks; }

int ddx_k_sum_div(float *out, const void *x, ddx_k_norm_dt dt, int64_t n, double div, float *scratch, void *stream) {
    if (n <= 0) return (int)cudaErrorInvalidValue;
    if (dt == DDX_K_NORM_F32)
        return reduce_run<float, false>(out, (const float *)x, nullptr, n, div, scratch, st(stream));
    return reduce_run<uint16_t, false>(out, (const uint16_t *)x, nullptr, n, div, scratch, st(stream));
}

int ddx_k_mse_fwd(float *out, const float *a, const float *b, int64_t n, float *scratch, void *stream) {
    if (n <= 0) return (int)cudaErrorInvalidValue;
    return reduce_run<float, true>(out, a, b, n, (double)n, scratch, st(stream));
}

int ddx_k_scalar_grad_acc(void *dx, ddx_k_norm_dt dt, const float *g, int64_t n, double div, void *stream) {
    if (n <= 0) return 0;
    if (dt == DDX_K_NORM_F32) return scalar_acc<float>((float *)dx, g, n, div, st(stream));
    return scalar_acc<uint16_t>((uint16_t *)dx, g, n, div, st(stream));
}

int ddx_k_mse_bwd(float *dpred, float *dtarget, const float *a, const float *b, const float *g, int64_t n, void *stream) {
    if (n <= 0 || (!dpred && !dtarget)) return 0;
    const cudaStream_t s = st(stream);
    const bool vec = aligned(a, 16) && aligned(b, 16) && (!dpred || aligned(dpred, 16)) && (!dtarget || aligned(dtarget, 16));
    if (vec) mse_bwd_k<4><<<grid_for(cdiv(n, 4), kThreads), kThreads, 0, s>>>(dpred, dtarget, a, b, g, n);
    else mse_bwd_k<1><<<grid_for(n, kThreads), kThreads, 0, s>>>(dpred, dtarget, a, b, g, n);
    return (int)cudaGetLastError();
}

}  // extern "C"
