// Kernels of the resampling family: upsample2x and pool2x (see resample.h for the launcher
// contract).
//
// All of them are memory-bound gathers: one thread produces one 16-byte vector of output
// channels (4 x f32, 8 x bf16; NHWC keeps channels innermost, so a vector never crosses a
// pixel) and reads exactly what it needs, so nothing is scattered and nothing needs atomics.
// Backward passes are written as gathers too (each gradient element sums its own
// contributions in a fixed order), which makes them deterministic. When the channel count
// or a pointer does not allow 16-byte vectors, the same kernels run one element per thread.
//
// Index math is 32-bit unsigned when every index fits (a 64-bit division costs several times
// more, and each output vector needs three), 64-bit otherwise. Float operations are spelled
// with _rn intrinsics in the CPU reference's order so that nvcc cannot contract them into
// FMAs: the results are then bit-identical to runtime/ops/resample.c.
#include "kernels/resample.h"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "kernels/common.cuh"

namespace {

constexpr int kThreads = 256;

// ---- upsample2x ---------------------------------------------------------------------------
// The two source taps of output coordinate o along an axis of n inputs: bilin_tap_of in
// runtime/ops/resample.c (PyTorch's area_pixel_compute_source_index, scale 1/2,
// align_corners=False). Every value is a multiple of 1/4, so all of it is exact.
template <typename I> struct Tap {
    I i0, i1;
    float w0, w1;
};

template <typename I> __device__ __forceinline__ Tap<I> tap_of(I o, I n) {
    float src = __fsub_rn(__fmul_rn(__fadd_rn((float)o, 0.5f), 0.5f), 0.5f);
    if (src < 0.0f) src = 0.0f;
    Tap<I> t;
    t.i0 = (I)src;
    t.i1 = t.i0 + (t.i0 < n - 1 ? 1 : 0);
    t.w1 = __fsub_rn(src, (float)t.i0);
    t.w0 = __fsub_rn(1.0f, t.w1);
    return t;
}

// One thread per output vector (b, oy, ox, c..c+V-1) of y [N, 2H, 2W, C].
template <int V, typename T, typename I, bool kBilinear>
__global__ void __launch_bounds__(kThreads)
    upsample2x_k(T *__restrict__ y, const T *__restrict__ x, I H, I W, I C, int64_t nvec) {
    const I Cv = C / V, Ho = 2 * H, Wo = 2 * W;
    for (int64_t i = global_tid(); i < nvec; i += grid_stride()) {
        I e = (I)i;
        const I c = (e % Cv) * V;
        e /= Cv;
        const I ox = e % Wo;
        e /= Wo;
        const I oy = e % Ho;
        const I b = e / Ho;
        const T *xb = x + b * H * W * C + c;
        float out[V];
        if (!kBilinear) {
            load<V>(xb + ((oy / 2) * W + ox / 2) * C, out);
        } else {
            const Tap<I> ty = tap_of(oy, H), tx = tap_of(ox, W);
            float p00[V], p01[V], p10[V], p11[V];
            load<V>(xb + (ty.i0 * W + tx.i0) * C, p00);
            load<V>(xb + (ty.i0 * W + tx.i1) * C, p01);
            load<V>(xb + (ty.i1 * W + tx.i0) * C, p10);
            load<V>(xb + (ty.i1 * W + tx.i1) * C, p11);
            // The CPU's (and PyTorch's) association: rows first, then columns.
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float top = __fadd_rn(__fmul_rn(tx.w0, p00[k]), __fmul_rn(tx.w1, p01[k]));
                const float bot = __fadd_rn(__fmul_rn(tx.w0, p10[k]), __fmul_rn(tx.w1, p11[k]));
                out[k] = __fadd_rn(__fmul_rn(ty.w0, top), __fmul_rn(ty.w1, bot));
            }
        }
        store<V>(y + i * V, out);
    }
}

template <int V> __device__ __forceinline__ void add_scaled(float (&acc)[V], const float (&g)[V], float w) {
#pragma unroll
    for (int k = 0; k < V; k++) acc[k] = __fadd_rn(acc[k], __fmul_rn(w, g[k]));
}

// One thread per input vector (b, iy, ix, c..c+V-1) of dx [N, H, W, C]: it gathers the
// output pixels that read it. The CPU scatters over output pixels in row-major order and, per
// pixel, over the taps 00, 01, 10, 11; visiting the same pixels and taps in the same order
// makes the sum bit-identical (and needs no atomics).
//
// Bilinear: output row oy reads input rows floor(max(oy/2 - 1/4, 0)) and the next (clamped),
// so input row iy is read only by output rows 2iy-2 .. 2iy+2 (likewise for columns); the taps
// of those 5 rows and 5 columns are computed once and tested for iy / ix.
template <int V, typename T, typename I, bool kBilinear>
__global__ void __launch_bounds__(kThreads)
    upsample2x_bwd_k(T *__restrict__ dx, const T *__restrict__ dy, I H, I W, I C, int64_t nvec) {
    const I Cv = C / V, Ho = 2 * H, Wo = 2 * W;
    for (int64_t i = global_tid(); i < nvec; i += grid_stride()) {
        I e = (I)i;
        const I c = (e % Cv) * V;
        e /= Cv;
        const I ix = e % W;
        e /= W;
        const I iy = e % H;
        const I b = e / H;
        const T *gb = dy + b * Ho * Wo * C + c;
        float acc[V];
        load<V>(dx + i * V, acc);
        if (!kBilinear) {
#pragma unroll
            for (int s = 0; s < 4; s++) {
                float g[V];
                load<V>(gb + ((2 * iy + (I)(s >> 1)) * Wo + 2 * ix + (I)(s & 1)) * C, g);
#pragma unroll
                for (int k = 0; k < V; k++) acc[k] = __fadd_rn(acc[k], g[k]);
            }
        } else {
            // Per candidate column: does tap 0 / tap 1 of that output column hit ix, and with
            // which weight. Out-of-range candidates hit nothing.
            bool cx0[5], cx1[5];
            float wx0[5], wx1[5];
#pragma unroll
            for (int a = 0; a < 5; a++) {
                const I ox = 2 * ix + (I)a - 2;   // unsigned wrap-around is caught below
                const bool in = 2 * ix + (I)a >= 2 && ox < Wo;
                const Tap<I> t = tap_of(in ? ox : (I)0, W);
                cx0[a] = in && t.i0 == ix;
                cx1[a] = in && t.i1 == ix;
                wx0[a] = t.w0;
                wx1[a] = t.w1;
            }
#pragma unroll
            for (int r = 0; r < 5; r++) {
                if (2 * iy + (I)r < 2) continue;
                const I oy = 2 * iy + (I)r - 2;
                if (oy >= Ho) continue;
                const Tap<I> ty = tap_of(oy, H);
                const bool y0 = ty.i0 == iy, y1 = ty.i1 == iy;
                if (!y0 && !y1) continue;
#pragma unroll
                for (int a = 0; a < 5; a++) {
                    if (!cx0[a] && !cx1[a]) continue;
                    float g[V];
                    load<V>(gb + (oy * Wo + 2 * ix + (I)a - 2) * C, g);
                    if (y0 && cx0[a]) add_scaled(acc, g, __fmul_rn(ty.w0, wx0[a]));
                    if (y0 && cx1[a]) add_scaled(acc, g, __fmul_rn(ty.w0, wx1[a]));
                    if (y1 && cx0[a]) add_scaled(acc, g, __fmul_rn(ty.w1, wx0[a]));
                    if (y1 && cx1[a]) add_scaled(acc, g, __fmul_rn(ty.w1, wx1[a]));
                }
            }
        }
        store<V>(dx + i * V, acc);
    }
}

// ---- pool2x -------------------------------------------------------------------------------
// Window position (0..3, row-major) of the max: the first of equal values, and a NaN wins
// (pool_argmax in runtime/ops/resample.c, PyTorch's max_pool2d rule).
__device__ __forceinline__ int argmax4(float v0, float v1, float v2, float v3) {
    int best = 0;
    float bv = v0;
    if (v1 > bv || isnan(v1)) best = 1, bv = v1;
    if (v2 > bv || isnan(v2)) best = 2, bv = v2;
    if (v3 > bv || isnan(v3)) best = 3;
    return best;
}

// One thread per output vector (b, oy, ox, c..c+V-1) of y [N, Ho, Wo, C]; x is [N, 2Ho, 2Wo, C].
template <int V, typename T, typename I, bool kAvg>
__global__ void __launch_bounds__(kThreads)
    pool2x_k(T *__restrict__ y, const T *__restrict__ x, I Ho, I Wo, I C, int64_t nvec) {
    const I Cv = C / V, row = 2 * Wo * C;
    for (int64_t i = global_tid(); i < nvec; i += grid_stride()) {
        I e = (I)i;
        const I c = (e % Cv) * V;
        e /= Cv;
        const I ox = e % Wo;
        e /= Wo;
        const I oy = e % Ho;
        const I b = e / Ho;
        const T *p = x + ((b * 2 * Ho + 2 * oy) * 2 * Wo + 2 * ox) * C + c;
        float v0[V], v1[V], v2[V], v3[V], out[V];
        load<V>(p, v0);
        load<V>(p + C, v1);
        load<V>(p + row, v2);
        load<V>(p + row + C, v3);
#pragma unroll
        for (int k = 0; k < V; k++) {
            if (kAvg) {
                out[k] = __fmul_rn(__fadd_rn(__fadd_rn(v0[k], v1[k]), __fadd_rn(v2[k], v3[k])), 0.25f);
            } else {
                const int a = argmax4(v0[k], v1[k], v2[k], v3[k]);
                out[k] = a == 0 ? v0[k] : a == 1 ? v1[k] : a == 2 ? v2[k] : v3[k];
            }
        }
        store<V>(y + i * V, out);
    }
}

// One thread per output vector: windows do not overlap, so each thread owns its four dx
// vectors. Max sends dy to the argmax recomputed from x (the CPU saves no indices either) and
// leaves the other three elements bit-for-bit alone.
template <int V, typename T, typename I, bool kAvg>
__global__ void __launch_bounds__(kThreads)
    pool2x_bwd_k(T *__restrict__ dx, const T *__restrict__ x, const T *__restrict__ dy, I Ho, I Wo, I C,
                 int64_t nvec) {
    const I Cv = C / V, row = 2 * Wo * C;
    for (int64_t i = global_tid(); i < nvec; i += grid_stride()) {
        I e = (I)i;
        const I c = (e % Cv) * V;
        e /= Cv;
        const I ox = e % Wo;
        e /= Wo;
        const I oy = e % Ho;
        const I b = e / Ho;
        const I base = ((b * 2 * Ho + 2 * oy) * 2 * Wo + 2 * ox) * C + c;
        const I off[4] = {base, base + C, base + row, base + row + C};
        float g[V], d[4][V];
        load<V>(dy + i * V, g);
#pragma unroll
        for (int s = 0; s < 4; s++) load<V>(dx + off[s], d[s]);
        if (kAvg) {
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float q = __fmul_rn(0.25f, g[k]);
#pragma unroll
                for (int s = 0; s < 4; s++) d[s][k] = __fadd_rn(d[s][k], q);
            }
        } else {
            float v[4][V];
#pragma unroll
            for (int s = 0; s < 4; s++) load<V>(x + off[s], v[s]);
#pragma unroll
            for (int k = 0; k < V; k++) {
                const int a = argmax4(v[0][k], v[1][k], v[2][k], v[3][k]);
#pragma unroll
                for (int s = 0; s < 4; s++)
                    if (s == a) d[s][k] = __fadd_rn(d[s][k], g[k]);
            }
        }
#pragma unroll
        for (int s = 0; s < 4; s++) store<V>(dx + off[s], d[s]);
    }
}

// ---- host side ----------------------------------------------------------------------------
bool aligned(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

constexpr int kBad = (int)cudaErrorInvalidValue;

// ---- upsample2x ----
template <int V, typename T, typename I>
int upsample_go(T *y, const T *x, int64_t N, int64_t H, int64_t W, int64_t C, bool bil, bool bwd, cudaStream_t s) {
    // Forward: one thread per output vector; backward: one per input vector.
    const int64_t nvec = (bwd ? N * H * W : N * 4 * H * W) * (C / V);
    const int grid = grid_for(nvec, kThreads);
    if (!bwd) {
        if (bil) upsample2x_k<V, T, I, true><<<grid, kThreads, 0, s>>>(y, x, (I)H, (I)W, (I)C, nvec);
        else upsample2x_k<V, T, I, false><<<grid, kThreads, 0, s>>>(y, x, (I)H, (I)W, (I)C, nvec);
    } else {
        // Here y is dx and x is dy.
        if (bil) upsample2x_bwd_k<V, T, I, true><<<grid, kThreads, 0, s>>>(y, x, (I)H, (I)W, (I)C, nvec);
        else upsample2x_bwd_k<V, T, I, false><<<grid, kThreads, 0, s>>>(y, x, (I)H, (I)W, (I)C, nvec);
    }
    return (int)cudaGetLastError();
}

template <typename T>
int upsample_launch(T *y, const T *x, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear, bool bwd, void *stream) {
    if (N < 0 || H < 0 || W < 0 || C < 0 || (bilinear != 0 && bilinear != 1)) return kBad;
    const int64_t big = N * 4 * H * W * C;   // the larger tensor
    if (big == 0) return 0;
    constexpr int V = 16 / sizeof(T);
    const bool vec = C % V == 0 && aligned(y, 16) && aligned(x, 16);
    const bool bil = bilinear != 0;
    if (fits32(big))
        return vec ? upsample_go<V, T, uint32_t>(y, x, N, H, W, C, bil, bwd, st(stream))
                   : upsample_go<1, T, uint32_t>(y, x, N, H, W, C, bil, bwd, st(stream));
    return vec ? upsample_go<V, T, int64_t>(y, x, N, H, W, C, bil, bwd, st(stream))
               : upsample_go<1, T, int64_t>(y, x, N, H, W, C, bil, bwd, st(stream));
}

// ---- pool2x ----
template <int V, typename T, typename I>
int pool_go(T *out, const T *x, const T *dy, int64_t N, int64_t Ho, int64_t Wo, int64_t C, bool avg, cudaStream_t s) {
    const int64_t nvec = N * Ho * Wo * (C / V);   // output vectors in both directions
    const int grid = grid_for(nvec, kThreads);
    if (!dy) {
        if (avg) pool2x_k<V, T, I, true><<<grid, kThreads, 0, s>>>(out, x, (I)Ho, (I)Wo, (I)C, nvec);
        else pool2x_k<V, T, I, false><<<grid, kThreads, 0, s>>>(out, x, (I)Ho, (I)Wo, (I)C, nvec);
    } else {
        if (avg) pool2x_bwd_k<V, T, I, true><<<grid, kThreads, 0, s>>>(out, x, dy, (I)Ho, (I)Wo, (I)C, nvec);
        else pool2x_bwd_k<V, T, I, false><<<grid, kThreads, 0, s>>>(out, x, dy, (I)Ho, (I)Wo, (I)C, nvec);
    }
    return (int)cudaGetLastError();
}

// dy == NULL: forward (out = y); else backward (out = dx).
template <typename T>
int pool_launch(T *out, const T *x, const T *dy, int64_t N, int64_t H, int64_t W, int64_t C, int avg, void *stream) {
    if (N < 0 || H < 0 || W < 0 || C < 0 || H % 2 != 0 || W % 2 != 0 || (avg != 0 && avg != 1)) return kBad;
    const int64_t big = N * H * W * C;
    if (big == 0) return 0;
    constexpr int V = 16 / sizeof(T);
    const bool vec = C % V == 0 && aligned(out, 16) && aligned(x, 16) && (!dy || aligned(dy, 16));
    cudaStream_t s = st(stream);
    if (fits32(big))
        return vec ? pool_go<V, T, uint32_t>(out, x, dy, N, H / 2, W / 2, C, avg != 0, s)
                   : pool_go<1, T, uint32_t>(out, x, dy, N, H / 2, W / 2, C, avg != 0, s);
    return vec ? pool_go<V, T, int64_t>(out, x, dy, N, H / 2, W / 2, C, avg != 0, s)
               : pool_go<1, T, int64_t>(out, x, dy, N, H / 2, W / 2, C, avg != 0, s);
}

}  // namespace

// ---- extern "C" launchers -----------------------------------------------------------------
extern "C" {

int ddx_k_upsample2x_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear,
                         void *stream) {
    return upsample_launch(y, x, N, H, W, C, bilinear, false, stream);
}
int ddx_k_upsample2x_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear,
                          void *stream) {
    return upsample_launch(y, x, N, H, W, C, bilinear, false, stream);
}
int ddx_k_upsample2x_bwd_f32(float *dx, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear,
                             void *stream) {
    return upsample_launch(dx, dy, N, H, W, C, bilinear, true, stream);
}
int ddx_k_upsample2x_bwd_bf16(uint16_t *dx, const uint16_t *dy, int64_t N, int64_t H, int64_t W, int64_t C,
                              int bilinear, void *stream) {
    return upsample_launch(dx, dy, N, H, W, C, bilinear, true, stream);
}

int ddx_k_pool2x_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int avg, void *stream) {
    return pool_launch<float>(y, x, nullptr, N, H, W, C, avg, stream);
}
int ddx_k_pool2x_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int avg,
                      void *stream) {
    return pool_launch<uint16_t>(y, x, nullptr, N, H, W, C, avg, stream);
}
int ddx_k_pool2x_bwd_f32(float *dx, const float *x, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C,
                         int avg, void *stream) {
    if (!dy) return kBad;
    return pool_launch<float>(dx, x, dy, N, H, W, C, avg, stream);
}
int ddx_k_pool2x_bwd_bf16(uint16_t *dx, const uint16_t *x, const uint16_t *dy, int64_t N, int64_t H, int64_t W,
                          int64_t C, int avg, void *stream) {
    if (!dy) return kBad;
    return pool_launch<uint16_t>(dx, x, dy, N, H, W, C, avg, stream);
}

}  // extern "C"
