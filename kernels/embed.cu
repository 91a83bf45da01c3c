// Kernels of the embedding family (see embed.h for the launcher contract): embedding as a
// gather of table rows (its backward a gather per table row, in position order, so no
// atomics) and timestep_emb with the CPU reference's float roundings.
#include "kernels/embed.h"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "kernels/common.cuh"

namespace {

constexpr int kThreads = 256;

// ---- embedding ----------------------------------------------------------------------------
// One block per output row (grid-stride over rows), its threads across the row's vectors.
template <int V, typename T>
__global__ void embedding_k(T *__restrict__ y, const int32_t *__restrict__ idx, const T *__restrict__ table,
                            int64_t N, int64_t rows, int64_t D) {
    const int64_t Dv = D / V;
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        const int64_t v = idx[i];
        const bool ok = v >= 0 && v < rows;
        for (int64_t j = threadIdx.x; j < Dv; j += blockDim.x) {
            float o[V];
            if (ok) {
                load<V>(table + v * D + j * V, o);
            } else {
#pragma unroll
                for (int k = 0; k < V; k++) o[k] = __int_as_float(0x7fc00000);
            }
            store<V>(y + i * D + j * V, o);
        }
    }
}

// One block per position i. The first position holding index v owns table row v: it adds the
// dy rows of every position holding v, in increasing order, exactly as the CPU's sequential
// scatter-add does; later positions holding v skip. Distinct owners write distinct rows, so
// there are no races and no atomics. The duplicate test is O(i) per block, fine for N = batch.
template <int V, typename T>
__global__ void embedding_bwd_k(T *__restrict__ dtable, const int32_t *__restrict__ idx, const T *__restrict__ dy,
                                int64_t N, int64_t rows, int64_t D) {
    const int64_t Dv = D / V;
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        const int32_t v = idx[i];
        if (v < 0 || (int64_t)v >= rows) continue;   // the forward wrote NaNs; block-uniform
        int dup = 0;
        for (int64_t j = threadIdx.x; j < i; j += blockDim.x) dup |= idx[j] == v;
        if (__syncthreads_or(dup)) continue;          // block-uniform too
        T *row = dtable + (int64_t)v * D;
        for (int64_t j = threadIdx.x; j < Dv; j += blockDim.x) {
            float acc[V];
            load<V>(row + j * V, acc);
            for (int64_t k = i; k < N; k++) {
                if (idx[k] != v) continue;
                float g[V];
                load<V>(dy + k * D + j * V, g);
#pragma unroll
                for (int q = 0; q < V; q++) acc[q] = __fadd_rn(acc[q], g[q]);
            }
            store<V>(row + j * V, acc);
        }
    }
}

// ---- timestep_emb -------------------------------------------------------------------------
// sin and cos of a float argument evaluated in double and rounded once, like the CPU's
// (float)sin((double)arg). CUDA's own double sin/cos (and sincosf, inside a loop) carry a
// Payne-Hanek slow path with a local-memory stack frame, so the reduction is done here:
// n = rint(x * 2/pi), r = x - n * pi/2 with pi/2 split into three doubles (P1 + P2 + P3). The
// first FMA is exact (x and n * P1 are multiples of 2^-52 and |x - n * P1| < 2), the others
// round relative to the small result, so r is good to about an ulp for any |x| < 2^31, far past
// t * freq in practice. Then Taylor series to r^21 / r^20 on |r| <= pi/4 (truncation < 1e-23).
// A host copy of this function agreed with (float)sin/cos((double)x) of glibc on every 7th
// float in [-2000, 2000] (3.3e8 arguments, no mismatch).
__device__ __forceinline__ void sincos_rounded(float xf, float *s, float *c) {
    const double x = (double)xf;
    const double n = rint(x * 0x1.45f306dc9c883p-1);   // 2/pi
    double r = fma(-n, 0x1.921fb54442d18p+0, x);
    r = fma(-n, 0x1.1a62633145c07p-54, r);
    r = fma(-n, -0x1.f1976b7ed8fbcp-110, r);
    if (x == 0.0) r = x;   // keep sin(-0) = -0 (the FMAs above would give +0)
    const double z = r * r;
    const double sp =
        -1.0 / 6.0 +
        z * (1.0 / 120.0 +
        z * (-1.0 / 5040.0 +
        z * (1.0 / 362880.0 +
        z * (-1.0 / 39916800.0 +
        z * (1.0 / 6227020800.0 +
        z * (-1.0 / 1307674368000.0 +
        z * (1.0 / 355687428096000.0 +
        z * (-1.0 / 121645100408832000.0 +
        z * (1.0 / 51090942171709440000.0)))))))));
    const double sr = fma(r * z, sp, r);
    const double cp =
        -0.5 +
        z * (1.0 / 24.0 +
        z * (-1.0 / 720.0 +
        z * (1.0 / 40320.0 +
        z * (-1.0 / 3628800.0 +
        z * (1.0 / 479001600.0 +
        z * (-1.0 / 87178291200.0 +
        z * (1.0 / 20922789888000.0 +
        z * (-1.0 / 6402373705728000.0 +
        z * (1.0 / 2432902008176640000.0)))))))));
    const double cr = fma(z, cp, 1.0);
    // Quadrant from n mod 4, taken in double so a huge or non-finite n cannot overflow an int
    // (a non-finite x gives NaN through r anyway).
    const double m = n - 4.0 * floor(n * 0.25);
    const int q = m == m ? (int)m : 0;
    double sv, cv;
    switch (q & 3) {
    case 0: sv = sr; cv = cr; break;
    case 1: sv = cr; cv = -sr; break;
    case 2: sv = -sr; cv = -cr; break;
    default: sv = -cr; cv = sr; break;
    }
    *s = (float)sv;
    *c = (float)cv;
}

// One thread per (i, k). The frequency must be the CPU's float to the bit (the argument
// reaches ~1000, where one ulp of freq moves it by 6e-5): the exponent is rounded at the same
// points, and exp runs in double and is rounded once, like the CPU's (float)exp((double)e).
// Both exps are within an ulp of the exact value, so they round to the same float except when
// it lies within ~2^-52 of a rounding boundary; the same holds for sin and cos.
__global__ void __launch_bounds__(kThreads)
    timestep_emb_k(float *__restrict__ y, const float *__restrict__ t, int64_t N, int64_t half, float neg_log_period,
                   float denom, int flip) {
    const int64_t total = N * half, dim = 2 * half;
    const int64_t sin_at = flip ? half : 0, cos_at = flip ? 0 : half;
    for (int64_t e = global_tid(); e < total; e += grid_stride()) {
        const int64_t i = e / half, k = e - i * half;
        const float exponent = __fdiv_rn(__fmul_rn(neg_log_period, (float)k), denom);
        const float freq = (float)exp((double)exponent);
        const float arg = __fmul_rn(t[i], freq);
        float s, c;
        sincos_rounded(arg, &s, &c);
        y[i * dim + sin_at + k] = s;
        y[i * dim + cos_at + k] = c;
    }
}

// ---- host side ----------------------------------------------------------------------------
bool aligned(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

constexpr int kBad = (int)cudaErrorInvalidValue;

// ---- embedding ----
// Threads per block: the row's vector count rounded up to a warp, at most kThreads.
int row_threads(int64_t vectors) {
    const int64_t t = (vectors + 31) / 32 * 32;
    return (int)(t < 32 ? 32 : t > kThreads ? kThreads : t);
}

template <typename T>
int embedding_launch(T *out, const int32_t *idx, const T *in, int64_t N, int64_t V, int64_t D, bool bwd, void *stream) {
    if (N < 0 || V < 1 || D < 0) return kBad;
    if (N == 0 || D == 0) return 0;
    constexpr int VW = 16 / sizeof(T);
    const bool vec = D % VW == 0 && aligned(out, 16) && aligned(in, 16);
    const int64_t grid64 = N < 65535 ? N : 65535;
    const int grid = (int)grid64;
    cudaStream_t s = st(stream);
    if (vec) {
        const int th = row_threads(D / VW);
        if (bwd) embedding_bwd_k<VW, T><<<grid, th, 0, s>>>(out, idx, in, N, V, D);
        else embedding_k<VW, T><<<grid, th, 0, s>>>(out, idx, in, N, V, D);
    } else {
        const int th = row_threads(D);
        if (bwd) embedding_bwd_k<1, T><<<grid, th, 0, s>>>(out, idx, in, N, V, D);
        else embedding_k<1, T><<<grid, th, 0, s>>>(out, idx, in, N, V, D);
    }
    return (int)cudaGetLastError();
}

}  // namespace

// ---- extern "C" launchers -----------------------------------------------------------------
extern "C" {

int ddx_k_embedding_f32(float *y, const int32_t *idx, const float *table, int64_t N, int64_t V, int64_t D,
                        void *stream) {
    return embedding_launch(y, idx, table, N, V, D, false, stream);
}
int ddx_k_embedding_bf16(uint16_t *y, const int32_t *idx, const uint16_t *table, int64_t N, int64_t V, int64_t D,
                         void *stream) {
    return embedding_launch(y, idx, table, N, V, D, false, stream);
}
int ddx_k_embedding_bwd_f32(float *dtable, const int32_t *idx, const float *dy, int64_t N, int64_t V, int64_t D,
                            void *stream) {
    return embedding_launch(dtable, idx, dy, N, V, D, true, stream);
}
int ddx_k_embedding_bwd_bf16(uint16_t *dtable, const int32_t *idx, const uint16_t *dy, int64_t N, int64_t V,
                             int64_t D, void *stream) {
    return embedding_launch(dtable, idx, dy, N, V, D, true, stream);
}

int ddx_k_timestep_emb_f32(float *y, const float *t, int64_t N, int64_t half, float neg_log_period, float denom,
                           int flip, void *stream) {
    if (N < 0 || half < 0) return kBad;
    const int64_t total = N * half;
    if (total == 0) return 0;
    timestep_emb_k<<<grid_for(total, kThreads), kThreads, 0, st(stream)>>>(y, t, N, half, neg_log_period,
                                                                                    denom, flip);
    return (int)cudaGetLastError();
}

}  // extern "C"
