// Kernels of the smaller ops (see misc.h for the launcher contract).
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
// FMAs: the results are then bit-identical to runtime/ops/misc.c.
#include "kernels/resample.h"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "philox.h"

#include "kernels/common.cuh"

namespace {

constexpr int kThreads = 256;


// ---- upsample2x ---------------------------------------------------------------------------
// The two source taps of output coordinate o along an axis of n inputs: bilin_tap_of in
// runtime/ops/misc.c (PyTorch's area_pixel_compute_source_index, scale 1/2,
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
// (pool_argmax in runtime/ops/misc.c, PyTorch's max_pool2d rule).
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

// ---- strided rows (concat) ----------------------------------------------------------------
// One thread per vector of the rows x width block; consecutive threads walk a row, so both
// sides are coalesced.
template <int V, typename T, typename I, bool kAcc>
__global__ void __launch_bounds__(kThreads)
    rows_k(T *__restrict__ dst, I dst_ld, const T *__restrict__ src, I src_ld, I width_v, int64_t nvec) {
    for (int64_t i = global_tid(); i < nvec; i += grid_stride()) {
        const I e = (I)i;
        const I r = e / width_v, j = (e - r * width_v) * V;
        float v[V];
        load<V>(src + r * src_ld + j, v);
        if (kAcc) {
            float d[V];
            load<V>(dst + r * dst_ld + j, d);
#pragma unroll
            for (int k = 0; k < V; k++) v[k] = __fadd_rn(d[k], v[k]);
        }
        store<V>(dst + r * dst_ld + j, v);
    }
}

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

// ---- dropout ------------------------------------------------------------------------------
// One thread per Philox group (elements 4g .. 4g+3), so each group is drawn once; the keep
// decision is the CPU's integer test (runtime/ops/misc.c, dropout_mask_block), so the mask is
// bit-identical. kBwd: out = dx, in = dy; else out = y, in = x.
template <bool kBwd> __device__ __forceinline__ float dropout_one(bool keep, float in, float out, float scale) {
    if (kBwd) return keep ? __fadd_rn(out, __fmul_rn(in, scale)) : out;
    return keep ? __fmul_rn(in, scale) : 0.0f;
}

template <typename T, bool kBwd>
__global__ void __launch_bounds__(kThreads)
    dropout_k(T *__restrict__ out, const T *__restrict__ in, int64_t n, ddx_k_dropout_key key, bool vec) {
    const int64_t groups = (n + 3) / 4;
    const uint32_t step = key.step_dev ? __ldg(key.step_dev) : key.step;
    for (int64_t g = global_tid(); g < groups; g += grid_stride()) {
        uint32_t w[4];
        ddx_philox_group(key.seed, key.stream, step, (uint64_t)g, w);
        bool keep[4];
#pragma unroll
        for (int l = 0; l < 4; l++) keep[l] = (int32_t)(((w[l] >> 9) << 1) | 1u) >= key.threshold;
        const int64_t e0 = 4 * g;
        if (vec && e0 + 4 <= n) {
            float a[4], o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            load<4>(in + e0, a);
            if (kBwd) load<4>(out + e0, o);
#pragma unroll
            for (int l = 0; l < 4; l++) o[l] = dropout_one<kBwd>(keep[l], a[l], o[l], key.scale);
            store<4>(out + e0, o);
        } else {
#pragma unroll
            for (int l = 0; l < 4; l++) {
                const int64_t e = e0 + l;
                if (e >= n || (kBwd && !keep[l])) continue;
                const float o = kBwd ? to_f(out[e]) : 0.0f;
                out[e] = from_f<T>(dropout_one<kBwd>(keep[l], to_f(in[e]), o, key.scale));
            }
        }
    }
}

// ---- host side ----------------------------------------------------------------------------
cudaStream_t as_stream(void *s) { return (cudaStream_t)s; }

bool aligned(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

// 32-bit indices when every index of every buffer the kernel touches is below 2^31.
bool fits32(int64_t elements) { return elements < ((int64_t)1 << 31); }

// Enough blocks for every SM to hold two full waves; grid-stride loops take the rest.
int blocks_for(int64_t work, int threads) {
    static std::atomic<int> s_sms{0};
    int sms = s_sms.load(std::memory_order_relaxed);
    if (sms <= 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) {
            (void)cudaGetLastError();   // a dead device is reported by the launch itself
            sms = 132;
        } else {
            s_sms.store(sms, std::memory_order_relaxed);
        }
    }
    const int64_t blocks = (work + threads - 1) / threads, cap = (int64_t)sms * (4096 / threads);
    if (blocks < 1) return 1;
    return (int)(blocks < cap ? blocks : cap);
}

constexpr int kBad = (int)cudaErrorInvalidValue;

// ---- upsample2x ----
template <int V, typename T, typename I>
int upsample_go(T *y, const T *x, int64_t N, int64_t H, int64_t W, int64_t C, bool bil, bool bwd, cudaStream_t s) {
    // Forward: one thread per output vector; backward: one per input vector.
    const int64_t nvec = (bwd ? N * H * W : N * 4 * H * W) * (C / V);
    const int grid = blocks_for(nvec, kThreads);
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
        return vec ? upsample_go<V, T, uint32_t>(y, x, N, H, W, C, bil, bwd, as_stream(stream))
                   : upsample_go<1, T, uint32_t>(y, x, N, H, W, C, bil, bwd, as_stream(stream));
    return vec ? upsample_go<V, T, int64_t>(y, x, N, H, W, C, bil, bwd, as_stream(stream))
               : upsample_go<1, T, int64_t>(y, x, N, H, W, C, bil, bwd, as_stream(stream));
}

// ---- pool2x ----
template <int V, typename T, typename I>
int pool_go(T *out, const T *x, const T *dy, int64_t N, int64_t Ho, int64_t Wo, int64_t C, bool avg, cudaStream_t s) {
    const int64_t nvec = N * Ho * Wo * (C / V);   // output vectors in both directions
    const int grid = blocks_for(nvec, kThreads);
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
    cudaStream_t s = as_stream(stream);
    if (fits32(big))
        return vec ? pool_go<V, T, uint32_t>(out, x, dy, N, H / 2, W / 2, C, avg != 0, s)
                   : pool_go<1, T, uint32_t>(out, x, dy, N, H / 2, W / 2, C, avg != 0, s);
    return vec ? pool_go<V, T, int64_t>(out, x, dy, N, H / 2, W / 2, C, avg != 0, s)
               : pool_go<1, T, int64_t>(out, x, dy, N, H / 2, W / 2, C, avg != 0, s);
}

// ---- rows ----
template <int V, typename T, typename I, bool kAcc>
int rows_go(T *dst, int64_t dld, const T *src, int64_t sld, int64_t rows, int64_t width, cudaStream_t s) {
    const int64_t nvec = rows * (width / V);
    rows_k<V, T, I, kAcc><<<blocks_for(nvec, kThreads), kThreads, 0, s>>>(dst, (I)dld, src, (I)sld, (I)(width / V), nvec);
    return (int)cudaGetLastError();
}

template <typename T, bool kAcc>
int rows_launch(T *dst, int64_t dld, const T *src, int64_t sld, int64_t rows, int64_t width, void *stream) {
    if (rows < 0 || width < 0 || dld < width || sld < width) return kBad;
    if (rows == 0 || width == 0) return 0;
    constexpr int V = 16 / sizeof(T);
    const bool vec = width % V == 0 && dld % V == 0 && sld % V == 0 && aligned(dst, 16) && aligned(src, 16);
    const int64_t big = rows * (dld > sld ? dld : sld);
    cudaStream_t s = as_stream(stream);
    if (fits32(big))
        return vec ? rows_go<V, T, uint32_t, kAcc>(dst, dld, src, sld, rows, width, s)
                   : rows_go<1, T, uint32_t, kAcc>(dst, dld, src, sld, rows, width, s);
    return vec ? rows_go<V, T, int64_t, kAcc>(dst, dld, src, sld, rows, width, s)
               : rows_go<1, T, int64_t, kAcc>(dst, dld, src, sld, rows, width, s);
}

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
    cudaStream_t s = as_stream(stream);
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

// ---- dropout ----
template <typename T, bool kBwd>
int dropout_launch(T *out, const T *in, int64_t n, ddx_k_dropout_key key, void *stream) {
    if (n < 0 || key.threshold < 0 || key.threshold > (1 << 24)) return kBad;
    if (n == 0) return 0;
    const bool vec = aligned(out, 4 * sizeof(T)) && aligned(in, 4 * sizeof(T));
    const int64_t groups = (n + 3) / 4;
    dropout_k<T, kBwd><<<blocks_for(groups, kThreads), kThreads, 0, as_stream(stream)>>>(out, in, n, key, vec);
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

int ddx_k_rows_copy_f32(float *dst, int64_t dst_ld, const float *src, int64_t src_ld, int64_t rows, int64_t width,
                        void *stream) {
    return rows_launch<float, false>(dst, dst_ld, src, src_ld, rows, width, stream);
}
int ddx_k_rows_copy_bf16(uint16_t *dst, int64_t dst_ld, const uint16_t *src, int64_t src_ld, int64_t rows,
                         int64_t width, void *stream) {
    return rows_launch<uint16_t, false>(dst, dst_ld, src, src_ld, rows, width, stream);
}
int ddx_k_rows_acc_f32(float *dst, int64_t dst_ld, const float *src, int64_t src_ld, int64_t rows, int64_t width,
                       void *stream) {
    return rows_launch<float, true>(dst, dst_ld, src, src_ld, rows, width, stream);
}
int ddx_k_rows_acc_bf16(uint16_t *dst, int64_t dst_ld, const uint16_t *src, int64_t src_ld, int64_t rows,
                        int64_t width, void *stream) {
    return rows_launch<uint16_t, true>(dst, dst_ld, src, src_ld, rows, width, stream);
}

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
    timestep_emb_k<<<blocks_for(total, kThreads), kThreads, 0, as_stream(stream)>>>(y, t, N, half, neg_log_period,
                                                                                    denom, flip);
    return (int)cudaGetLastError();
}

int ddx_k_dropout_f32(float *y, const float *x, int64_t n, ddx_k_dropout_key key, void *stream) {
    return dropout_launch<float, false>(y, x, n, key, stream);
}
int ddx_k_dropout_bf16(uint16_t *y, const uint16_t *x, int64_t n, ddx_k_dropout_key key, void *stream) {
    return dropout_launch<uint16_t, false>(y, x, n, key, stream);
}
int ddx_k_dropout_bwd_f32(float *dx, const float *dy, int64_t n, ddx_k_dropout_key key, void *stream) {
    return dropout_launch<float, true>(dx, dy, n, key, stream);
}
int ddx_k_dropout_bwd_bf16(uint16_t *dx, const uint16_t *dy, int64_t n, ddx_k_dropout_key key, void *stream) {
    return dropout_launch<uint16_t, true>(dx, dy, n, key, stream);
}

}  // extern "C"
