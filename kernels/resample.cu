// Kernels of the resampling family: upsample2x, pool2x, pool2d and resize (see resample.h for the launcher
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

// ---- pool2d -------------------------------------------------------------------------------
// Any window, stride and symmetric padding, one element per thread (Inception's pools are a
// few percent of its time; the window loops dominate, not the loads). Same operation order as
// ddx_cpu_pool2d_fwd/_bwd, so results are bit-identical.
struct PoolGeom {
    int64_t H, W, C, Ho, Wo;
    int kh, kw, stride, ph, pw;
    bool avg, include_pad;
};

struct Win {
    int64_t y0, y1, x0, x1;
};

__device__ __forceinline__ Win win_of(const PoolGeom &g, int64_t oy, int64_t ox) {
    Win w;
    w.y0 = oy * g.stride - g.ph;
    w.x0 = ox * g.stride - g.pw;
    w.y1 = min(w.y0 + (int64_t)g.kh, g.H);
    w.x1 = min(w.x0 + (int64_t)g.kw, g.W);
    w.y0 = max(w.y0, (int64_t)0);
    w.x0 = max(w.x0, (int64_t)0);
    return w;
}

__device__ __forceinline__ float divisor_of(const PoolGeom &g, const Win &w) {
    return g.include_pad ? (float)(g.kh * g.kw) : (float)((w.y1 - w.y0) * (w.x1 - w.x0));
}

template <typename T>
__global__ void __launch_bounds__(kThreads) pool2d_k(T *__restrict__ y, const T *__restrict__ x, PoolGeom g, int64_t n) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        int64_t e = i;
        const int64_t c = e % g.C;
        e /= g.C;
        const int64_t ox = e % g.Wo;
        e /= g.Wo;
        const int64_t oy = e % g.Ho;
        const int64_t b = e / g.Ho;
        const Win w = win_of(g, oy, ox);
        const T *xb = x + b * g.H * g.W * g.C + c;
        float acc = g.avg ? 0.0f : -INFINITY;
        for (int64_t iy = w.y0; iy < w.y1; iy++)
            for (int64_t ix = w.x0; ix < w.x1; ix++) {
                const float v = to_f(xb[(iy * g.W + ix) * g.C]);
                if (g.avg) acc = __fadd_rn(acc, v);
                else if (v > acc || isnan(v)) acc = v;
            }
        if (g.avg) acc = __fdiv_rn(acc, divisor_of(g, w));
        y[i] = from_f<T>(acc);
    }
}

// One thread per dx element: the windows holding (iy, ix) in row-major order, as the CPU's
// scatter visits them.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    pool2d_bwd_k(T *__restrict__ dx, const T *__restrict__ x, const T *__restrict__ dy, PoolGeom g, int64_t n) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        int64_t e = i;
        const int64_t c = e % g.C;
        e /= g.C;
        const int64_t ix = e % g.W;
        e /= g.W;
        const int64_t iy = e % g.H;
        const int64_t b = e / g.H;
        // Outputs whose window [o*s - p, o*s - p + k) holds the input coordinate.
        const int64_t oy0 = max((iy + g.ph - g.kh + g.stride) / g.stride, (int64_t)0);
        const int64_t oy1 = min((iy + g.ph) / g.stride, g.Ho - 1);
        const int64_t ox0 = max((ix + g.pw - g.kw + g.stride) / g.stride, (int64_t)0);
        const int64_t ox1 = min((ix + g.pw) / g.stride, g.Wo - 1);
        const T *xb = x + b * g.H * g.W * g.C + c;
        const T *gb = dy + b * g.Ho * g.Wo * g.C + c;
        float acc = to_f(dx[i]);
        for (int64_t oy = oy0; oy <= oy1; oy++)
            for (int64_t ox = ox0; ox <= ox1; ox++) {
                const Win w = win_of(g, oy, ox);
                const float gv = to_f(gb[(oy * g.Wo + ox) * g.C]);
                if (g.avg) {
                    acc = __fadd_rn(acc, __fdiv_rn(gv, divisor_of(g, w)));
                    continue;
                }
                int64_t by = w.y0, bx = w.x0;
                float bv = -INFINITY;
                for (int64_t yy = w.y0; yy < w.y1; yy++)
                    for (int64_t xx = w.x0; xx < w.x1; xx++) {
                        const float v = to_f(xb[(yy * g.W + xx) * g.C]);
                        if (v > bv || isnan(v)) {
                            bv = v;
                            by = yy;
                            bx = xx;
                        }
                    }
                if (by == iy && bx == ix) acc = __fadd_rn(acc, gv);
            }
        dx[i] = from_f<T>(acc);
    }
}

// ---- resize -------------------------------------------------------------------------------
// resize_tap_of in runtime/ops/resample.c, with the same fp32 operations.
__device__ __forceinline__ Tap<int64_t> rtap_of(int64_t o, int64_t n, float scale) {
    float src = __fsub_rn(__fmul_rn(scale, __fadd_rn((float)o, 0.5f)), 0.5f);
    if (src < 0.0f) src = 0.0f;
    Tap<int64_t> t;
    t.i0 = min((int64_t)src, n - 1);
    t.i1 = t.i0 + (t.i0 < n - 1 ? 1 : 0);
    t.w1 = __fsub_rn(src, (float)t.i0);
    t.w0 = __fsub_rn(1.0f, t.w1);
    return t;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) resize_k(T *__restrict__ y, const T *__restrict__ x, int64_t H, int64_t W,
                                                     int64_t C, int64_t Ho, int64_t Wo, float sy, float sx, int64_t n) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        int64_t e = i;
        const int64_t c = e % C;
        e /= C;
        const int64_t ox = e % Wo;
        e /= Wo;
        const int64_t oy = e % Ho;
        const int64_t b = e / Ho;
        const Tap<int64_t> ty = rtap_of(oy, H, sy), tx = rtap_of(ox, W, sx);
        const T *xb = x + b * H * W * C + c;
        const float p00 = to_f(xb[(ty.i0 * W + tx.i0) * C]), p01 = to_f(xb[(ty.i0 * W + tx.i1) * C]);
        const float p10 = to_f(xb[(ty.i1 * W + tx.i0) * C]), p11 = to_f(xb[(ty.i1 * W + tx.i1) * C]);
        const float top = __fadd_rn(__fmul_rn(tx.w0, p00), __fmul_rn(tx.w1, p01));
        const float bot = __fadd_rn(__fmul_rn(tx.w0, p10), __fmul_rn(tx.w1, p11));
        y[i] = from_f<T>(__fadd_rn(__fmul_rn(ty.w0, top), __fmul_rn(ty.w1, bot)));
    }
}

// The outputs [lo, hi] along an axis whose taps may read input coordinate i: src(o) within
// [i - 1, i + 1) (with a margin of one for rounding), each then tested exactly.
__device__ __forceinline__ void rrange(int64_t i, int64_t out, float scale, int64_t &lo, int64_t &hi) {
    lo = (int64_t)floorf(((float)i - 0.5f) / scale - 0.5f) - 1;
    hi = (int64_t)ceilf(((float)i + 1.5f) / scale - 0.5f) + 1;
    lo = max(lo, (int64_t)0);
    hi = min(hi, out - 1);
}

// One thread per dx element, gathering the output pixels in row-major order and per pixel the
// taps 00, 01, 10, 11, as the CPU's scatter adds them.
template <typename T>
__global__ void __launch_bounds__(kThreads) resize_bwd_k(T *__restrict__ dx, const T *__restrict__ dy, int64_t H,
                                                         int64_t W, int64_t C, int64_t Ho, int64_t Wo, float sy,
                                                         float sx, int64_t n) {
    for (int64_t i = global_tid(); i < n; i += grid_stride()) {
        int64_t e = i;
        const int64_t c = e % C;
        e /= C;
        const int64_t ix = e % W;
        e /= W;
        const int64_t iy = e % H;
        const int64_t b = e / H;
        int64_t oy0, oy1, ox0, ox1;
        rrange(iy, Ho, sy, oy0, oy1);
        rrange(ix, Wo, sx, ox0, ox1);
        const T *gb = dy + b * Ho * Wo * C + c;
        float acc = to_f(dx[i]);
        for (int64_t oy = oy0; oy <= oy1; oy++) {
            const Tap<int64_t> ty = rtap_of(oy, H, sy);
            if (ty.i0 != iy && ty.i1 != iy) continue;
            for (int64_t ox = ox0; ox <= ox1; ox++) {
                const Tap<int64_t> tx = rtap_of(ox, W, sx);
                if (tx.i0 != ix && tx.i1 != ix) continue;
                const float g = to_f(gb[(oy * Wo + ox) * C]);
                if (ty.i0 == iy && tx.i0 == ix) acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(ty.w0, tx.w0), g));
                if (ty.i0 == iy && tx.i1 == ix) acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(ty.w0, tx.w1), g));
                if (ty.i1 == iy && tx.i0 == ix) acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(ty.w1, tx.w0), g));
                if (ty.i1 == iy && tx.i1 == ix) acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(ty.w1, tx.w1), g));
            }
        }
        dx[i] = from_f<T>(acc);
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

// ---- pool2d / resize ----
template <typename T>
int pool2d_launch(T *out, const T *x, const T *dy, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo,
                  int kh, int kw, int stride, int ph, int pw, int avg, int include_pad, void *stream) {
    if (N < 0 || H < 1 || W < 1 || C < 0 || Ho < 1 || Wo < 1 || kh < 1 || kw < 1 || stride < 1 || ph < 0 || pw < 0 ||
        2 * ph > kh || 2 * pw > kw || (avg != 0 && avg != 1))
        return kBad;
    const PoolGeom g = {H, W, C, Ho, Wo, kh, kw, stride, ph, pw, avg != 0, include_pad != 0};
    const int64_t n = dy ? N * H * W * C : N * Ho * Wo * C;
    if (n == 0) return 0;
    const int grid = grid_for(n, kThreads);
    if (dy) pool2d_bwd_k<T><<<grid, kThreads, 0, st(stream)>>>(out, x, dy, g, n);
    else pool2d_k<T><<<grid, kThreads, 0, st(stream)>>>(out, x, g, n);
    return (int)cudaGetLastError();
}

template <typename T>
int resize_launch(T *out, const T *in, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo, bool bwd,
                  void *stream) {
    if (N < 0 || H < 1 || W < 1 || C < 0 || Ho < 1 || Wo < 1) return kBad;
    const float sy = (float)H / (float)Ho, sx = (float)W / (float)Wo;
    const int64_t n = bwd ? N * H * W * C : N * Ho * Wo * C;
    if (n == 0) return 0;
    const int grid = grid_for(n, kThreads);
    if (bwd) resize_bwd_k<T><<<grid, kThreads, 0, st(stream)>>>(out, in, H, W, C, Ho, Wo, sy, sx, n);
    else resize_k<T><<<grid, kThreads, 0, st(stream)>>>(out, in, H, W, C, Ho, Wo, sy, sx, n);
    return (int)cudaGetLastError();
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

int ddx_k_pool2d_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo,
                     int kh, int kw, int stride, int pad_h, int pad_w, int avg, int count_include_pad, void *stream) {
    return pool2d_launch<float>(y, x, nullptr, N, H, W, C, Ho, Wo, kh, kw, stride, pad_h, pad_w, avg, count_include_pad,
                                stream);
}
int ddx_k_pool2d_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho,
                      int64_t Wo, int kh, int kw, int stride, int pad_h, int pad_w, int avg, int count_include_pad,
                      void *stream) {
    return pool2d_launch<uint16_t>(y, x, nullptr, N, H, W, C, Ho, Wo, kh, kw, stride, pad_h, pad_w, avg,
                                   count_include_pad, stream);
}
int ddx_k_pool2d_bwd_f32(float *dx, const float *x, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C,
                         int64_t Ho, int64_t Wo, int kh, int kw, int stride, int pad_h, int pad_w, int avg,
                         int count_include_pad, void *stream) {
    if (!dy) return kBad;
    return pool2d_launch<float>(dx, x, dy, N, H, W, C, Ho, Wo, kh, kw, stride, pad_h, pad_w, avg, count_include_pad,
                                stream);
}
int ddx_k_pool2d_bwd_bf16(uint16_t *dx, const uint16_t *x, const uint16_t *dy, int64_t N, int64_t H, int64_t W,
                          int64_t C, int64_t Ho, int64_t Wo, int kh, int kw, int stride, int pad_h, int pad_w, int avg,
                          int count_include_pad, void *stream) {
    if (!dy) return kBad;
    return pool2d_launch<uint16_t>(dx, x, dy, N, H, W, C, Ho, Wo, kh, kw, stride, pad_h, pad_w, avg,
                                   count_include_pad, stream);
}

int ddx_k_resize_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo,
                     void *stream) {
    return resize_launch<float>(y, x, N, H, W, C, Ho, Wo, false, stream);
}
int ddx_k_resize_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho,
                      int64_t Wo, void *stream) {
    return resize_launch<uint16_t>(y, x, N, H, W, C, Ho, Wo, false, stream);
}
int ddx_k_resize_bwd_f32(float *dx, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho,
                         int64_t Wo, void *stream) {
    return resize_launch<float>(dx, dy, N, H, W, C, Ho, Wo, true, stream);
}
int ddx_k_resize_bwd_bf16(uint16_t *dx, const uint16_t *dy, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho,
                          int64_t Wo, void *stream) {
    return resize_launch<uint16_t>(dx, dy, N, H, W, C, Ho, Wo, true, stream);
}

}  // extern "C"
