// conv2d kernels (see conv.h for the launcher contract).
//
// One tiled SIMT GEMM main loop serves all three products; a "problem" struct supplies the
// gather of each operand tile (the implicit im2col) and the epilogue:
//
//   | product | GEMM M     | GEMM N     | GEMM K     | A[m][k]              | B[k][n]              |
//   | forward | N*Ho*Wo    | Co         | KH*KW*Ci   | x gathered per tap   | w[n][k]              |
//   | dgrad   | N*H*W      | Ci         | KH*KW*Co   | dy gathered per tap  | w[co][tap][n]        |
//   | wgrad   | Co         | KH*KW*Ci   | N*Ho*Wo    | dy[k][m]             | x gathered per pixel |
//
// Block tile BM x 64 (BM = 64 or 128) with K steps of 16, 256 threads each owning a TM x 4
// register tile (TM = 4 or 8). Operand tiles are staged through registers into double-
// buffered shared memory, so the global loads of step k+1 are in flight while step k is
// multiplied and one barrier per step suffices. Both tiles are stored k-major in shared
// memory so the inner loop reads a row of A and a row of B with 16-byte loads.
//
// Gathers move 4 consecutive elements of the contiguous (channel) dimension per load (16
// bytes for f32, 8 for bf16) when the channel counts are multiples of 4 and the pointers
// aligned (VEC); otherwise every element is gathered alone (only the 3-channel image convs
// in a U-Net). Positions outside the tensor (padding taps, the ragged edge of a tile) read
// as zero, so no tile needs a special case.
//
// Performance character: a plain FP32 FMA kernel, shared-memory bound near ~60-70% of SIMT
// peak on large tiles; the 128-row tile is used when there are enough tiles to fill the
// card. Stride-2 dgrad multiplies the zero taps too (3/4 of them for 3x3 s2). wgrad splits
// its long K (every output pixel) across blockIdx.z so small weights still fill the card.
#include "kernels/conv.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/common.cuh"
#include "kernels/tune.h"

namespace {

constexpr int kThreads = 256;
constexpr int kBK = 16;        // K step
constexpr int kBN = 64;        // block tile columns
constexpr int kPad = 4;        // keeps 16-byte row alignment, breaks most store conflicts
constexpr int kFar = 1 << 29;  // an "invalid row" coordinate that fails every bounds check
constexpr int kLimit = 1 << 30;

// 4 consecutive elements in one load; p must be aligned to 4 elements.
__device__ __forceinline__ void load4(const float *p, float *o) {
    const float4 v = *reinterpret_cast<const float4 *>(p);
    o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
}
__device__ __forceinline__ void load4(const uint16_t *p, float *o) {
    const uint2 v = *reinterpret_cast<const uint2 *>(p);
    o[0] = __uint_as_float(v.x << 16), o[1] = __uint_as_float(v.x & 0xffff0000u);
    o[2] = __uint_as_float(v.y << 16), o[3] = __uint_as_float(v.y & 0xffff0000u);
}
__device__ __forceinline__ void store4(float *p, const float *v) {
    *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store4(uint16_t *p, const float *v) {
    uint2 r;
    r.x = (uint32_t)f32_to_bf16(v[0]) | ((uint32_t)f32_to_bf16(v[1]) << 16);
    r.y = (uint32_t)f32_to_bf16(v[2]) | ((uint32_t)f32_to_bf16(v[3]) << 16);
    *reinterpret_cast<uint2 *>(p) = r;
}
__device__ __forceinline__ void zero4(float *o) { o[0] = o[1] = o[2] = o[3] = 0.0f; }

// row[n + j] (+)= v[j] for the j with n + j < lim; one vector access when allowed.
template <bool ACC, typename T> __device__ __forceinline__ void put4(T *row, int n, int lim, const float *v, bool vec) {
    if (vec && n + 3 < lim) {
        float o[4] = {v[0], v[1], v[2], v[3]};
        if (ACC) {
            float old[4];
            load4(row + n, old);
#pragma unroll
            for (int j = 0; j < 4; j++) o[j] += old[j];
        }
        store4(row + n, o);
        return;
    }
#pragma unroll
    for (int j = 0; j < 4; j++)
        if (n + j < lim) row[n + j] = from_f<T>(ACC ? to_f(row[n + j]) + v[j] : v[j]);
}

// ---- shared-memory staging ----------------------------------------------------------------
// Two register layouts of a 16 x E operand tile, 4 floats per quad, E/64 quads per thread:
//   rowK : quad q holds tile row (q*64 + tid/4), k = (tid%4)*4 .. +3   (K contiguous in memory)
//   rowMN: quad q holds k = idx / (E/4), columns (idx % (E/4))*4 .. +3, idx = q*256 + tid
//          (M or N contiguous in memory)
// Both are stored k-major: t[k][row].
template <int E> __device__ __forceinline__ void stash_rowk(const float *r, float (*t)[E + kPad], int tid) {
#pragma unroll
    for (int q = 0; q < E / 64; q++) {
        const int row = q * 64 + (tid >> 2), k = (tid & 3) * 4;
#pragma unroll
        for (int j = 0; j < 4; j++) t[k + j][row] = r[q * 4 + j];
    }
}

template <int E> __device__ __forceinline__ void stash_rowmn(const float *r, float (*t)[E + kPad], int tid) {
#pragma unroll
    for (int q = 0; q < E / 64; q++) {
        const int idx = q * 256 + tid, k = idx / (E / 4), c = (idx % (E / 4)) * 4;
        *reinterpret_cast<float4 *>(&t[k][c]) = make_float4(r[q * 4], r[q * 4 + 1], r[q * 4 + 2], r[q * 4 + 3]);
    }
}

// ---- the shared main loop -----------------------------------------------------------------
// P supplies: TM, RA, RB, Thread (per-thread gather state), init, k_tiles (the K-tile range of
// split z), load (global -> registers), stash (registers -> shared) and epilogue.
template <class P> __global__ void __launch_bounds__(kThreads, 2) igemm_k(const P p) {
    constexpr int TM = P::TM, BM = 16 * TM;
    __shared__ __align__(16) float As[2][kBK][BM + kPad];
    __shared__ __align__(16) float Bs[2][kBK][kBN + kPad];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * kBN, z = blockIdx.z;
    typename P::Thread th;
    p.init(th, m0, n0, tid);
    int kt0, kt1;
    p.k_tiles(z, kt0, kt1);
    float acc[TM][4];
#pragma unroll
    for (int i = 0; i < TM; i++) zero4(acc[i]);
    float ra[P::RA], rb[P::RB];
    if (kt0 < kt1) {
        p.load(th, kt0 * kBK, tid, ra, rb);
        p.stash(ra, rb, As[0], Bs[0], tid);
        __syncthreads();
        for (int kt = kt0; kt < kt1; kt++) {
            const int buf = (kt - kt0) & 1;
            const bool more = kt + 1 < kt1;
            if (more) p.load(th, (kt + 1) * kBK, tid, ra, rb);
#pragma unroll
            for (int k = 0; k < kBK; k++) {
                float a[TM], b[4];
#pragma unroll
                for (int i = 0; i < TM; i += 4) load4(&As[buf][k][ty * TM + i], a + i);
                load4(&Bs[buf][k][tx * 4], b);
#pragma unroll
                for (int i = 0; i < TM; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
            // The other buffer was last read before the previous barrier: safe to refill.
            if (more) p.stash(ra, rb, As[buf ^ 1], Bs[buf ^ 1], tid);
            __syncthreads();
        }
    }
    p.epilogue(acc, m0 + ty * TM, n0 + tx * 4, z);
}

// ---- forward: y[m][n] = sum_k x_im2col[m][k] * w[n][k] + bias[n] -------------------------
template <typename T, int TM_, bool VEC> struct FwdProb {
    static constexpr int TM = TM_, BM = 16 * TM_, QA = BM / 64, RA = 4 * QA, RB = 4;
    const T *x, *w, *bias;
    T *y;
    int H, W, Ci, Co, KW, Ho, Wo, stride, pt, pl, M, K;
    bool vec_out;
    bool acc;   // add into y (which holds the residual)

    struct Thread {
        const T *base[QA];   // image of each A row
        int ih0[QA], iw0[QA];
        const T *wrow;       // B row n0 + tid/4 of w [Co, K]
        bool wok;
    };

    __device__ void init(Thread &th, int m0, int n0, int tid) const {
#pragma unroll
        for (int q = 0; q < QA; q++) {
            const int m = m0 + q * 64 + (tid >> 2);
            th.base[q] = x;
            th.ih0[q] = th.iw0[q] = -kFar;
            if (m < M) {
                const int hw = Ho * Wo, img = m / hw, rem = m - img * hw, oh = rem / Wo, ow = rem - oh * Wo;
                th.base[q] = x + (int64_t)img * H * W * Ci;
                th.ih0[q] = oh * stride - pt;
                th.iw0[q] = ow * stride - pl;
            }
        }
        const int n = n0 + (tid >> 2);
        th.wok = n < Co;
        th.wrow = w + (int64_t)(th.wok ? n : 0) * K;
    }

    __device__ void k_tiles(int, int &k0, int &k1) const { k0 = 0, k1 = (K + kBK - 1) / kBK; }

    __device__ void load(const Thread &th, int k0, int tid, float *ra, float *rb) const {
        const int kq = k0 + (tid & 3) * 4;
        if (VEC) {
            // Ci % 4 == 0: the 4 k of a quad are 4 channels of one tap.
            const bool kin = kq < K;
            const int tap = kq / Ci, ci = kq - tap * Ci, kh = tap / KW, kw = tap - kh * KW;
#pragma unroll
            for (int q = 0; q < QA; q++) {
                const int ih = th.ih0[q] + kh, iw = th.iw0[q] + kw;
                if (kin && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W)
                    load4(th.base[q] + ((int64_t)ih * W + iw) * Ci + ci, ra + 4 * q);
                else zero4(ra + 4 * q);
            }
            if (th.wok && kin) load4(th.wrow + kq, rb);
            else zero4(rb);
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int k = kq + j;
                const bool kin = k < K;
                const int tap = k / Ci, ci = k - tap * Ci, kh = tap / KW, kw = tap - kh * KW;
#pragma unroll
                for (int q = 0; q < QA; q++) {
                    const int ih = th.ih0[q] + kh, iw = th.iw0[q] + kw;
                    ra[4 * q + j] = kin && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W
                                        ? to_f(th.base[q][((int64_t)ih * W + iw) * Ci + ci])
                                        : 0.0f;
                }
                rb[j] = th.wok && kin ? to_f(th.wrow[k]) : 0.0f;
            }
        }
    }

    __device__ void stash(const float *ra, const float *rb, float (*as)[BM + kPad], float (*bs)[kBN + kPad],
                          int tid) const {
        stash_rowk<BM>(ra, as, tid);
        stash_rowk<kBN>(rb, bs, tid);
    }

    __device__ void epilogue(float (&acc)[TM][4], int mb, int nb, int) const {
        float bv[4];
#pragma unroll
        for (int j = 0; j < 4; j++) bv[j] = bias && nb + j < Co ? to_f(bias[nb + j]) : 0.0f;
#pragma unroll
        for (int i = 0; i < TM; i++) {
            if (mb + i >= M) break;
            float v[4];
#pragma unroll
            for (int j = 0; j < 4; j++) v[j] = acc[i][j] + bv[j];
            if (this->acc) put4<true>(y + (int64_t)(mb + i) * Co, nb, Co, v, vec_out);
            else put4<false>(y + (int64_t)(mb + i) * Co, nb, Co, v, vec_out);
        }
    }
};

// ---- dgrad: dx[m][n] += sum_k dy_gather[m][k] * w[co][tap][n], k = tap*Co + co ---------------
// Input pixel (h, w) receives tap (kh, kw) from output pixel ((h+pt-kh)/s, (w+pl-kw)/s) when
// that division is exact and lands inside the output.
template <typename T, int TM_, bool VEC> struct DgradProb {
    static constexpr int TM = TM_, BM = 16 * TM_, QA = BM / 64, RA = 4 * QA, RB = 4;
    const T *dy, *w;
    T *dx;
    int H, W, Ci, Co, KW, KHKW, Ho, Wo, stride, pt, pl, M, K;
    bool vec_out;
    bool ow;   // write dx instead of adding into it

    struct Thread {
        const T *base[QA];   // dy image of each A row
        int hp[QA], wp[QA];  // h + pt, w + pl (or -kFar)
        int ci;              // B columns ci .. ci+3
    };

    __device__ void init(Thread &th, int m0, int n0, int tid) const {
#pragma unroll
        for (int q = 0; q < QA; q++) {
            const int m = m0 + q * 64 + (tid >> 2);
            th.base[q] = dy;
            th.hp[q] = th.wp[q] = -kFar;
            if (m < M) {
                const int hw = H * W, img = m / hw, rem = m - img * hw, h = rem / W, ww = rem - h * W;
                th.base[q] = dy + (int64_t)img * Ho * Wo * Co;
                th.hp[q] = h + pt;
                th.wp[q] = ww + pl;
            }
        }
        th.ci = n0 + (tid & 15) * 4;
    }

    __device__ void k_tiles(int, int &k0, int &k1) const { k0 = 0, k1 = (K + kBK - 1) / kBK; }

    // dy element offset of A row q at tap (kh, kw), or -1 when no output pixel maps there.
    __device__ __forceinline__ int64_t a_off(const Thread &th, int q, int kh, int kw) const {
        const int th_ = th.hp[q] - kh, tw = th.wp[q] - kw;
        if (th_ < 0 || tw < 0 || ((th_ | tw) & (stride - 1))) return -1;
        const int sh = stride - 1;   // stride 1 or 2: the division is a shift
        const int oh = th_ >> sh, ow = tw >> sh;
        if (oh >= Ho || ow >= Wo) return -1;
        return ((int64_t)oh * Wo + ow) * Co;
    }

    __device__ void load(const Thread &th, int k0, int tid, float *ra, float *rb) const {
        const int kq = k0 + (tid & 3) * 4;
        if (VEC) {
            // Co % 4 == 0: the 4 k of a quad are 4 output channels of one tap.
            const bool kin = kq < K;
            const int tap = kq / Co, co = kq - tap * Co, kh = tap / KW, kw = tap - kh * KW;
#pragma unroll
            for (int q = 0; q < QA; q++) {
                const int64_t o = kin ? a_off(th, q, kh, kw) : -1;
                if (o >= 0) load4(th.base[q] + o + co, ra + 4 * q);
                else zero4(ra + 4 * q);
            }
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int k = kq + j;
                const bool kin = k < K;
                const int tap = k / Co, co = k - tap * Co, kh = tap / KW, kw = tap - kh * KW;
#pragma unroll
                for (int q = 0; q < QA; q++) {
                    const int64_t o = kin ? a_off(th, q, kh, kw) : -1;
                    ra[4 * q + j] = o >= 0 ? to_f(th.base[q][o + co]) : 0.0f;
                }
            }
        }
        // B: row k0 + tid/16 of the [K, Ci] view, columns ci .. ci+3.
        const int k = k0 + (tid >> 4);
        if (k < K) {
            const int tap = k / Co, co = k - tap * Co;
            const T *row = w + ((int64_t)co * KHKW + tap) * Ci;
            if (VEC) {
                if (th.ci < Ci) load4(row + th.ci, rb);
                else zero4(rb);
            } else {
#pragma unroll
                for (int j = 0; j < 4; j++) rb[j] = th.ci + j < Ci ? to_f(row[th.ci + j]) : 0.0f;
            }
        } else {
            zero4(rb);
        }
    }

    __device__ void stash(const float *ra, const float *rb, float (*as)[BM + kPad], float (*bs)[kBN + kPad],
                          int tid) const {
        stash_rowk<BM>(ra, as, tid);
        stash_rowmn<kBN>(rb, bs, tid);
    }

    __device__ void epilogue(float (&acc)[TM][4], int mb, int nb, int) const {
#pragma unroll
        for (int i = 0; i < TM; i++) {
            if (mb + i >= M) break;
            if (ow) put4<false>(dx + (int64_t)(mb + i) * Ci, nb, Ci, acc[i], vec_out);
            else put4<true>(dx + (int64_t)(mb + i) * Ci, nb, Ci, acc[i], vec_out);
        }
    }
};

// ---- wgrad: dw[co][n] += sum_p dy[p][co] * x_im2col[p][n], n = (kh*KW + kw)*Ci + ci ---------
// K (every output pixel of the batch) is split across blockIdx.z in ranges of ktps tiles;
// with more than one split each writes its own partial [Co, KK] slice of `part`.
template <typename T, int TM_, bool VEC> struct WgradProb {
    static constexpr int TM = TM_, BM = 16 * TM_, QA = BM / 64, RA = 4 * QA, RB = 4;
    const T *dy, *x;
    T *dw;
    float *part;   // [splits, Co, KK] or NULL: accumulate into dw directly
    int H, W, Ci, Co, KW, Ho, Wo, stride, pt, pl, P, KK, ktps, ktiles;
    bool vec_out, vec_part;

    struct Thread {
        int kh[4], kw[4], ci[4];   // tap of B columns n0 + (tid%16)*4 + j (kh = -kFar past KK)
        int co;                    // the block's first output channel (A columns start here)
    };

    __device__ void init(Thread &th, int m0, int n0, int tid) const {
        const int c0 = n0 + (tid & 15) * 4;
#pragma unroll
        for (int j = 0; j < (VEC ? 1 : 4); j++) {
            const int col = c0 + j;
            th.kh[j] = -kFar, th.kw[j] = 0, th.ci[j] = 0;
            if (col < KK) {
                const int tap = col / Ci;
                th.ci[j] = col - tap * Ci;
                th.kh[j] = tap / KW;
                th.kw[j] = tap - th.kh[j] * KW;
            }
        }
        th.co = m0;
    }

    __device__ void k_tiles(int z, int &k0, int &k1) const {
        k0 = z * ktps;
        k1 = min(k0 + ktps, ktiles);
    }

    __device__ void load(const Thread &th, int k0, int tid, float *ra, float *rb) const {
        // A: rowMN over the BM output channels, dy [P, Co].
#pragma unroll
        for (int q = 0; q < QA; q++) {
            const int idx = q * 256 + tid, p = k0 + idx / (BM / 4), co = th.co + (idx % (BM / 4)) * 4;
            const T *row = dy + (int64_t)p * Co;
            if (VEC) {
                if (p < P && co < Co) load4(row + co, ra + 4 * q);
                else zero4(ra + 4 * q);
            } else {
#pragma unroll
                for (int j = 0; j < 4; j++) ra[4 * q + j] = p < P && co + j < Co ? to_f(row[co + j]) : 0.0f;
            }
        }
        // B: output pixel p = k0 + tid/16 gathered at the thread's 4 columns (taps).
        const int p = k0 + (tid >> 4);
        if (p >= P) {
            zero4(rb);
            return;
        }
        const int hw = Ho * Wo, img = p / hw, rem = p - img * hw, oh = rem / Wo, ow = rem - oh * Wo;
        const int ihb = oh * stride - pt, iwb = ow * stride - pl;
        const T *ximg = x + (int64_t)img * H * W * Ci;
        if (VEC) {
            // Ci % 4 == 0: the 4 columns are 4 channels of one tap.
            const int ih = ihb + th.kh[0], iw = iwb + th.kw[0];
            if ((unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W)
                load4(ximg + ((int64_t)ih * W + iw) * Ci + th.ci[0], rb);
            else zero4(rb);
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int ih = ihb + th.kh[j], iw = iwb + th.kw[j];
                rb[j] = (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W
                            ? to_f(ximg[((int64_t)ih * W + iw) * Ci + th.ci[j]])
                            : 0.0f;
            }
        }
    }

    __device__ void stash(const float *ra, const float *rb, float (*as)[BM + kPad], float (*bs)[kBN + kPad],
                          int tid) const {
        stash_rowmn<BM>(ra, as, tid);
        stash_rowmn<kBN>(rb, bs, tid);
    }

    __device__ void epilogue(float (&acc)[TM][4], int mb, int nb, int z) const {
#pragma unroll
        for (int i = 0; i < TM; i++) {
            const int co = mb + i;
            if (co >= Co) break;
            if (part) put4<false>(part + ((int64_t)z * Co + co) * KK, nb, KK, acc[i], vec_part);
            else put4<true>(dw + (int64_t)co * KK, nb, KK, acc[i], vec_out);
        }
    }
};

// dw[e] += sum over s of part[s][e], s in order.
template <typename T> __global__ void wgrad_reduce_k(T *dw, const float *part, int splits, int64_t n) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int k = 0; k < splits; k++) s += part[(int64_t)k * n + e];
        dw[e] = from_f<T>(to_f(dw[e]) + s);
    }
}

// ---- bias gradient ------------------------------------------------------------------------
// Pass 1: block (32, 8) sums rows [y*rows, (y+1)*rows) of 32 columns; each thread strides
// the rows by 8 and the 8 partials are added in thread order.
template <typename T> __global__ void bgrad_part_k(const T *dy, double *part, int P, int Co, int rows) {
    __shared__ double sh[8][33];
    const int tx = threadIdx.x, ty = threadIdx.y, c = blockIdx.x * 32 + tx;
    const int r0 = blockIdx.y * rows, r1 = min(r0 + rows, P);
    double s = 0.0;
    if (c < Co)
        for (int r = r0 + ty; r < r1; r += 8) s += (double)to_f(dy[(int64_t)r * Co + c]);
    sh[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < Co) {
        double t = 0.0;
#pragma unroll
        for (int i = 0; i < 8; i++) t += sh[i][tx];
        part[(int64_t)blockIdx.y * Co + c] = t;
    }
}

// Pass 2: db[c] += the parts of column c in order.
template <typename T> __global__ void bgrad_final_k(T *db, const double *part, int parts, int Co) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= Co) return;
    double s = 0.0;
    for (int r = 0; r < parts; r++) s += part[(int64_t)r * Co + c];
    db[c] = from_f<T>(to_f(db[c]) + (float)s);
}

// ---- tensor-core path: bf16 or tf32 operands, fp32 accumulation (mma.sync) ------------------
// bf16 tensors take it by default, f32 tensors when the caller asks for TF32 (the _tf32
// launchers); in both cases only when every gathered run of one 16-byte copy (8 bf16 or 4 f32
// channels) is contiguous and aligned, i.e. the channel counts the gathers walk are multiples
// of 8 (bf16) or 4 (f32). Otherwise the SIMT kernels above run.
//
// Block tiles of 8 warps, N = 128 columns: 64 or 128 rows (warps 2 x 4, each 32 or 64 x 32,
// two blocks per SM, 3-stage ring) or, only when asked for (DDX_CONV_TC_BM=256), 256 rows
// (warps 4 x 2, each 64 x 64: 128 fp32 accumulators per thread, one block per SM, 4 stages). K step KS x 32
// (bf16) or KS x 16 (f32). Operand tiles go from global to shared memory by cp.async (16
// bytes per copy, zero-filled where the implicit im2col reads padding or a ragged edge), so
// STAGES-1 tiles are in flight while one is multiplied. The gathers carry their (channel,
// tap) position from one K tile to the next instead of dividing it out per copy.
// Operands whose K runs are contiguous in memory are stored [row][k] (K-major), operands
// contiguous along M or N are stored [k][row] (MN-major). bf16 fragments come by ldmatrix
// (.trans for MN-major tiles) for m16n8k16; tf32 fragments by single 32-bit loads, rounded to
// tf32 (cvt.rna, as cuBLAS does), for m16n8k8. Row strides are padded (bf16: 80 and 272 bytes,
// f32: 80 and 544 bytes) so that the rows one fragment load touches hit distinct banks.
//
//   | product | A (M x K)                    | B (N x K)                      |
//   | forward | x gathered per tap, K-major  | w [Co][K], K-major             |
//   | dgrad   | dy gathered per tap, K-major | w [co][tap][ci], N(ci)-major   |
//   | wgrad   | dy [P][Co], M(co)-major      | x gathered per pixel, N-major  |
namespace tc {
constexpr int BM = 128, BN = 128, THREADS = 256;

// Per element type and K-tile depth: a tile's K is KS base steps of BASE (32 bf16 / 16 f32,
// one 64-byte run per row); elements per 16-byte copy; padded row strides (elements). Deeper
// tiles halve the barriers and waits per FLOP at twice the shared memory (3 stages of 36 KiB:
// still two blocks per SM).
template <typename E, int KS> struct Cfg;
template <int KS> struct Cfg<uint16_t, KS> {
    static constexpr int BASE = 32, BK = BASE * KS, SK = BK + 8, SMN = BM + 8;
};
template <int KS> struct Cfg<float, KS> {
    static constexpr int BASE = 16, BK = BASE * KS, SK = BK + 4, SMN = BM + 8;
};
// Elements per 16-byte copy: the channel counts a gather walks must be multiples of it.
template <typename E> constexpr int chunk() { return 16 / (int)sizeof(E); }

// Block tile BMT x BN as a WM x WN grid of warps, each (MI*16) x (NI*8). The 256-row tile
// gives each warp 64 x 64 (half the ldmatrix traffic per mma of 64 x 32, and half the weight
// re-reads per output row) at the price of one block of 8 warps per SM, which a 4-deep
// cp.async ring (216 KiB) then keeps fed.
template <int BMT> struct Lay;
template <> struct Lay<64> { static constexpr int WM = 2, WN = 4, MI = 2, NI = 4, MINB = 2, STAGES = 3; };
template <> struct Lay<128> { static constexpr int WM = 2, WN = 4, MI = 4, NI = 4, MINB = 2, STAGES = 3; };
template <> struct Lay<256> { static constexpr int WM = 4, WN = 2, MI = 4, NI = 8, MINB = 1, STAGES = 4; };

// Elements per operand per stage: a K-major tile of R rows, or an MN-major one of 128 columns.
template <class P> constexpr int tile_a() { return P::A_KMAJOR ? P::BMT * P::Cf::SK : P::Cf::BK * P::Cf::SMN; }
template <class P> constexpr int tile_b() { return P::B_KMAJOR ? BN * P::Cf::SK : P::Cf::BK * P::Cf::SMN; }
template <class P> constexpr size_t smem_bytes() {
    return (size_t)Lay<P::BMT>::STAGES * (tile_a<P>() + tile_b<P>()) * sizeof(typename P::Elem);
}

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared, or 16 zero bytes when !valid (src is then not read).
__device__ __forceinline__ void cp16(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm4_t(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t to_tf32(float f) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(f));
    return r;
}

// Shared-memory byte offset of element (row, col) of a tile with row stride S.
template <typename E, int S> __device__ __forceinline__ uint32_t off(int row, int col) {
    return (uint32_t)(row * S + col) * (uint32_t)sizeof(E);
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)f32_to_bf16(lo) | ((uint32_t)f32_to_bf16(hi) << 16);
}

// Two adjacent output elements: store, or (ACC) add to what is there. p is 4-byte (bf16) or
// 8-byte (f32) aligned.
template <bool ACC> __device__ __forceinline__ void put2(uint16_t *p, float v0, float v1) {
    uint32_t *q = reinterpret_cast<uint32_t *>(p);
    if (ACC) {
        const uint32_t old = *q;
        v0 += __uint_as_float(old << 16), v1 += __uint_as_float(old & 0xffff0000u);
    }
    *q = pack_bf16x2(v0, v1);
}
template <bool ACC> __device__ __forceinline__ void put2(float *p, float v0, float v1) {
    float2 *q = reinterpret_cast<float2 *>(p);
    if (ACC) {
        const float2 old = *q;
        v0 += old.x, v1 += old.y;
    }
    *q = make_float2(v0, v1);
}

// The accumulators of one thread: acc[mi][ni] is the m16n8 tile (mi, ni) of the warp; element
// e sits at row (lane/4) + 8*(e/2), column 2*(lane%4) + e%2 of that tile. A warp owns
// (MI*16) x 32 of the block tile: MI = 4 with 128-row block tiles, 2 with 64-row ones.
template <int MI, int NI> using AccT = float[MI][NI][4];

// One K tile of the warp's (MI*16) x (NI*8) tile from stage buffers a_base / b_base.
template <class P, int MI, int NI>
__device__ __forceinline__ void warp_mma(AccT<MI, NI> &acc, uint32_t a_base, uint32_t b_base, int wm, int wn, int lane) {
    using E = typename P::Elem;
    using C = typename P::Cf;
    constexpr int BK = C::BK, SK = C::SK, SMN = C::SMN;
    if constexpr (sizeof(E) == 2) {
        const int j = lane >> 3, r = lane & 7;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            // b[nj] = {b0, b1} of n-tile 2nj, then {b0, b1} of n-tile 2nj+1.
            uint32_t b[NI / 2][4];
#pragma unroll
            for (int nj = 0; nj < NI / 2; nj++) {
                const int n = wn + nj * 16 + (j >> 1) * 8;
                if (P::B_KMAJOR) ldsm4(b[nj], b_base + off<E, SK>(n + r, kk + (j & 1) * 8));
                else ldsm4_t(b[nj], b_base + off<E, SMN>(kk + (j & 1) * 8 + r, n));
            }
#pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                uint32_t a[4];
                const int m = wm + mi * 16;
                if (P::A_KMAJOR) ldsm4(a, a_base + off<E, SK>(m + (lane & 15), kk + (lane >> 4) * 8));
                else ldsm4_t(a, a_base + off<E, SMN>(kk + (j >> 1) * 8 + r, m + (j & 1) * 8));
#pragma unroll
                for (int ni = 0; ni < NI; ni++) mma_bf16(acc[mi][ni], a, b[ni >> 1][(ni & 1) * 2], b[ni >> 1][(ni & 1) * 2 + 1]);
            }
        }
    } else {
        // m16n8k8 tf32: a = (g, t) (g+8, t) (g, t+4) (g+8, t+4); b = (k t, n g) (k t+4, n g).
        const int g = lane >> 2, t = lane & 3;
        const float *As = reinterpret_cast<const float *>(__cvta_shared_to_generic(a_base));
        const float *Bs = reinterpret_cast<const float *>(__cvta_shared_to_generic(b_base));
        auto at = [&](int m, int k) { return P::A_KMAJOR ? As[m * SK + k] : As[k * SMN + m]; };
        auto bt = [&](int n, int k) { return P::B_KMAJOR ? Bs[n * SK + k] : Bs[k * SMN + n]; };
#pragma unroll
        for (int kk = 0; kk < BK; kk += 8) {
            uint32_t b[NI][2];
#pragma unroll
            for (int ni = 0; ni < NI; ni++) {
                const int n = wn + ni * 8 + g;
                b[ni][0] = to_tf32(bt(n, kk + t));
                b[ni][1] = to_tf32(bt(n, kk + t + 4));
            }
#pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                const int m = wm + mi * 16 + g;
                const uint32_t a[4] = {to_tf32(at(m, kk + t)), to_tf32(at(m + 8, kk + t)), to_tf32(at(m, kk + t + 4)),
                                       to_tf32(at(m + 8, kk + t + 4))};
#pragma unroll
                for (int ni = 0; ni < NI; ni++) mma_tf32(acc[mi][ni], a, b[ni][0], b[ni][1]);
            }
        }
    }
}

// The block's work, one body for the three products; each has its own __global__ below, so a
// profile names the product (conv_fwd_mma_k / conv_dgrad_mma_k / conv_wgrad_mma_k) rather
// than one generic kernel.
template <class P> __device__ __forceinline__ void conv_mma_body(const P &p) {
    using E = typename P::Elem;
    using L = Lay<P::BMT>;
    constexpr int BK = P::Cf::BK, TA = tile_a<P>(), TB = tile_b<P>(), MI = L::MI, NI = L::NI, STAGES = L::STAGES;
    static_assert(L::WM * L::WN * 32 == THREADS && L::WN * NI * 8 == BN && L::WM * MI * 16 == P::BMT, "warp grid");
    extern __shared__ __align__(128) unsigned char smem_raw[];
    E *As = reinterpret_cast<E *>(smem_raw), *Bs = As + STAGES * TA;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = (warp / L::WN) * (MI * 16), wn = (warp % L::WN) * (NI * 8);
    const int64_t m0 = (int64_t)blockIdx.x * P::BMT;
    const int n0 = blockIdx.y * BN;
    int kt0, kt1;
    p.k_tiles(blockIdx.z, kt0, kt1);
    typename P::Thread th;
    p.init(th, m0, n0, tid, kt0 * BK);
    const int nk = kt1 - kt0;
    AccT<MI, NI> acc;
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < nk) p.load(th, tid, smem_u32(As + s * TA), smem_u32(Bs + s * TB));
        cp_commit();
    }
    for (int i = 0; i < nk; i++) {
        cp_wait<STAGES - 2>();
        // Tile i has landed for every thread, and every warp is done with tile i-1, whose
        // slot the prefetch below overwrites.
        __syncthreads();
        const int nxt = i + STAGES - 1;
        if (nxt < nk) {
            const int s = nxt % STAGES;
            p.load(th, tid, smem_u32(As + s * TA), smem_u32(Bs + s * TB));
        }
        cp_commit();
        const int s = i % STAGES;
        warp_mma<P, MI, NI>(acc, smem_u32(As + s * TA), smem_u32(Bs + s * TB), wm, wn, lane);
    }
    cp_wait<0>();
    p.epilogue(acc, m0 + wm, n0 + wn, lane, (int)blockIdx.z);
}

template <class P> __global__ void __launch_bounds__(THREADS, Lay<P::BMT>::MINB) conv_fwd_mma_k(const P p) {
    conv_mma_body<P>(p);
}
template <class P> __global__ void __launch_bounds__(THREADS, Lay<P::BMT>::MINB) conv_dgrad_mma_k(const P p) {
    conv_mma_body<P>(p);
}
template <class P> __global__ void __launch_bounds__(THREADS, Lay<P::BMT>::MINB) conv_wgrad_mma_k(const P p) {
    conv_mma_body<P>(p);
}

// Calls f(row, col, v0, v1) for each pair of adjacent accumulators (columns col, col+1) of
// the warp tile whose top-left output element is (mb, nb).
template <int MI, int NI, class F>
__device__ __forceinline__ void for_pairs(const AccT<MI, NI> &acc, int64_t mb, int nb, int lane, F f) {
    const int g = lane >> 2, t2 = (lane & 3) * 2;
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < NI; ni++)
#pragma unroll
            for (int h = 0; h < 2; h++) f(mb + mi * 16 + g + 8 * h, nb + ni * 8 + t2, acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
}

// Thread -> 16-byte copy of one BASE-deep half of an operand tile (half h adds h*BASE to the
// K index). K-major [128][BASE]: rows tid/4 (+64), column (tid%4)*CH. MN-major [BASE][128]:
// k rows tid/(128/CH) (+ 256/(128/CH)), columns (tid%(128/CH))*CH.
template <typename E> struct Map {
    static constexpr int CH = chunk<E>(), PER_ROW = BM / CH, KR_STEP = THREADS / PER_ROW;
    __device__ static int kmaj_row(int tid, int i) { return (tid >> 2) + 64 * i; }
    __device__ static int kmaj_col(int tid) { return (tid & 3) * CH; }
    __device__ static int mn_krow(int tid, int i) { return tid / PER_ROW + KR_STEP * i; }
    __device__ static int mn_col(int tid) { return (tid % PER_ROW) * CH; }
};

// y[m][n] = sum_k x_im2col[m][k] w[n][k] + bias[n]. Ci % CH == 0, so a run of CH k is CH
// channels of one tap.
template <typename E, int BMT_, int KS> struct Fwd {
    using Elem = E;
    using Cf = Cfg<E, KS>;
    using M_ = Map<E>;
    static constexpr bool A_KMAJOR = true, B_KMAJOR = true;
    static constexpr int SK = Cf::SK, BMT = BMT_, QA = BMT_ / 64;
    const E *x, *w, *bias, *res;   // res: added after the bias (NULL for none)
    E *y;
    int H, W, Ci, Co, KW, Ho, Wo, stride, pt, pl, K;
    int64_t M;

    struct Thread {
        const E *base[QA];   // image of A rows tid/4 (+ 64 i)
        int ih0[QA], iw0[QA];
        const E *wrow[2];    // w rows n0 + tid/4 (+ 64), or w when past Co
        bool wok[2];
        // k, its channel and tap, of the thread's run in base step h of the next K tile:
        // carried from tile to tile instead of divided out per tile.
        int k[KS], ci[KS], kh[KS], kw[KS];
    };

    __device__ void init(Thread &th, int64_t m0, int n0, int tid, int) const {
#pragma unroll
        for (int i = 0; i < QA; i++) {
            const int64_t m = m0 + M_::kmaj_row(tid, i);
            th.base[i] = x;
            th.ih0[i] = th.iw0[i] = -kFar;
            if (m < M) {
                const int64_t hw = (int64_t)Ho * Wo, img = m / hw;
                const int rem = (int)(m - img * hw), oh = rem / Wo, ow = rem - oh * Wo;
                th.base[i] = x + img * H * W * Ci;
                th.ih0[i] = oh * stride - pt;
                th.iw0[i] = ow * stride - pl;
            }
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int n = n0 + M_::kmaj_row(tid, i);
            th.wok[i] = n < Co;
            th.wrow[i] = th.wok[i] ? w + (int64_t)n * K : w;
        }
#pragma unroll
        for (int h = 0; h < KS; h++) {
            const int k = M_::kmaj_col(tid) + h * Cf::BASE, tap = k / Ci;
            th.k[h] = k, th.ci[h] = k - tap * Ci, th.kh[h] = tap / KW, th.kw[h] = tap - th.kh[h] * KW;
        }
    }

    __device__ void k_tiles(int, int &k0, int &k1) const { k0 = 0, k1 = (K + Cf::BK - 1) / Cf::BK; }

    // Called for K tiles 0, 1, 2, ... in order (the thread state advances one tile per call).
    __device__ void load(Thread &th, int tid, uint32_t as, uint32_t bs) const {
#pragma unroll
        for (int h = 0; h < KS; h++) {
            const int kc = M_::kmaj_col(tid) + h * Cf::BASE, k = th.k[h];
            const bool kin = k < K;
            const int ci = th.ci[h], kh = th.kh[h], kw = th.kw[h];
#pragma unroll
            for (int i = 0; i < QA; i++) {
                const int r = M_::kmaj_row(tid, i);
                const int ih = th.ih0[i] + kh, iw = th.iw0[i] + kw;
                const bool ok = kin && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W;
                cp16(as + off<E, SK>(r, kc), ok ? th.base[i] + ((int64_t)ih * W + iw) * Ci + ci : x, ok);
            }
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int r = M_::kmaj_row(tid, i);
                const bool bok = kin && th.wok[i];
                cp16(bs + off<E, SK>(r, kc), bok ? th.wrow[i] + k : w, bok);
            }
            th.k[h] += Cf::BK;
            th.ci[h] += Cf::BK;
            while (th.ci[h] >= Ci) {
                th.ci[h] -= Ci;
                if (++th.kw[h] == KW) th.kw[h] = 0, th.kh[h]++;
            }
        }
    }

    __device__ void epilogue(const AccT<Lay<BMT>::MI, Lay<BMT>::NI> &acc, int64_t mb, int nb, int lane, int) const {
        const bool pairs = (Co & 1) == 0;
        for_pairs(acc, mb, nb, lane, [&](int64_t m, int n, float v0, float v1) {
            if (m >= M || n >= Co) return;
            E *row = y + m * Co;
            const E *rrow = res ? res + m * Co : nullptr;
            v0 += bias ? to_f(bias[n]) : 0.0f;
            v0 += rrow ? to_f(rrow[n]) : 0.0f;
            if (n + 1 < Co) {
                v1 += bias ? to_f(bias[n + 1]) : 0.0f;
                v1 += rrow ? to_f(rrow[n + 1]) : 0.0f;
                if (pairs) {
                    put2<false>(row + n, v0, v1);
                    return;
                }
                row[n + 1] = from_f<E>(v1);
            }
            row[n] = from_f<E>(v0);
        });
    }
};

// dx[m][n] += sum_k dy_gather[m][k] w[co][tap][n], k = tap*Co + co. Co % CH == 0 and
// Ci % CH == 0: a run of CH k is CH output channels of one tap, a run of CH n is CH input
// channels.
template <typename E, int BMT_, int KS> struct Dgrad {
    using Elem = E;
    using Cf = Cfg<E, KS>;
    using M_ = Map<E>;
    static constexpr bool A_KMAJOR = true, B_KMAJOR = false;
    static constexpr int SK = Cf::SK, SMN = Cf::SMN, BMT = BMT_, QA = BMT_ / 64;
    const E *dy, *w;
    E *dx;
    int H, W, Ci, Co, KW, KHKW, Ho, Wo, stride, pt, pl, K;
    int64_t M;
    bool ow;   // write dx instead of adding into it

    struct Thread {
        const E *base[QA];   // dy image of A rows tid/4 (+ 64 i)
        int hp[QA], wp[QA];  // h + pt, w + pl (or -kFar)
        // As in Fwd, carried from tile to tile: A runs (k, co, kh, kw) per base step; B rows
        // (k, co, tap) per copy.
        int k[KS], co[KS], kh[KS], kw[KS];
        int bk[2 * KS], bco[2 * KS], btap[2 * KS];
    };

    __device__ void init(Thread &th, int64_t m0, int, int tid, int) const {
#pragma unroll
        for (int i = 0; i < QA; i++) {
            const int64_t m = m0 + M_::kmaj_row(tid, i);
            th.base[i] = dy;
            th.hp[i] = th.wp[i] = -kFar;
            if (m < M) {
                const int64_t hw = (int64_t)H * W, img = m / hw;
                const int rem = (int)(m - img * hw), h = rem / W, ww = rem - h * W;
                th.base[i] = dy + img * Ho * Wo * Co;
                th.hp[i] = h + pt;
                th.wp[i] = ww + pl;
            }
        }
#pragma unroll
        for (int h = 0; h < KS; h++) {
            const int k = M_::kmaj_col(tid) + h * Cf::BASE, tap = k / Co;
            th.k[h] = k, th.co[h] = k - tap * Co, th.kh[h] = tap / KW, th.kw[h] = tap - th.kh[h] * KW;
        }
#pragma unroll
        for (int i = 0; i < 2 * KS; i++) {
            const int k = M_::mn_krow(tid, i % 2) + (i / 2) * Cf::BASE, tap = k / Co;
            th.bk[i] = k, th.btap[i] = tap, th.bco[i] = k - tap * Co;
        }
    }

    __device__ void k_tiles(int, int &k0, int &k1) const { k0 = 0, k1 = (K + Cf::BK - 1) / Cf::BK; }

    // Called for K tiles 0, 1, 2, ... in order (the thread state advances one tile per call).
    __device__ void load(Thread &th, int tid, uint32_t as, uint32_t bs) const {
#pragma unroll
        for (int h = 0; h < KS; h++) {
            const int kc = M_::kmaj_col(tid) + h * Cf::BASE, k = th.k[h];
            const bool kin = k < K;
            const int co = th.co[h], kh = th.kh[h], kw = th.kw[h];
#pragma unroll
            for (int i = 0; i < QA; i++) {
                const int r = M_::kmaj_row(tid, i);
                const int th_ = th.hp[i] - kh, tw = th.wp[i] - kw;
                // Output pixel ((h+pt-kh)/s, (w+pl-kw)/s) when the division is exact and inside.
                bool ok = kin && th_ >= 0 && tw >= 0 && ((th_ | tw) & (stride - 1)) == 0;
                const int oh = th_ >> (stride - 1), ow = tw >> (stride - 1);
                ok = ok && oh < Ho && ow < Wo;
                cp16(as + off<E, SK>(r, kc), ok ? th.base[i] + ((int64_t)oh * Wo + ow) * Co + co : dy, ok);
            }
            th.k[h] += Cf::BK;
            th.co[h] += Cf::BK;
            while (th.co[h] >= Co) {
                th.co[h] -= Co;
                if (++th.kw[h] == KW) th.kw[h] = 0, th.kh[h]++;
            }
        }
        const int nc = M_::mn_col(tid), n = blockIdx.y * BN + nc;
#pragma unroll
        for (int i = 0; i < 2 * KS; i++) {
            const int kr = M_::mn_krow(tid, i % 2) + (i / 2) * Cf::BASE, k = th.bk[i];
            const bool ok = k < K && n < Ci;
            cp16(bs + off<E, SMN>(kr, nc), ok ? w + ((int64_t)th.bco[i] * KHKW + th.btap[i]) * Ci + n : w, ok);
            th.bk[i] += Cf::BK;
            th.bco[i] += Cf::BK;
            while (th.bco[i] >= Co) th.bco[i] -= Co, th.btap[i]++;
        }
    }

    __device__ void epilogue(const AccT<Lay<BMT>::MI, Lay<BMT>::NI> &acc, int64_t mb, int nb, int lane, int) const {
        for_pairs(acc, mb, nb, lane, [&](int64_t m, int n, float v0, float v1) {
            if (m >= M || n >= Ci) return;   // Ci even: n < Ci implies n + 1 < Ci
            if (ow) put2<false>(dx + m * Ci + n, v0, v1);
            else put2<true>(dx + m * Ci + n, v0, v1);
        });
    }
};

// dw[co][n] += sum_p dy[p][co] x_im2col[p][n], n = tap*Ci + ci, over the pixels of split z;
// with more than one split each writes its fp32 partial [Co, KK] slice of `part`.
template <typename E, int KS> struct Wgrad {
    using Elem = E;
    using Cf = Cfg<E, KS>;
    using M_ = Map<E>;
    static constexpr bool A_KMAJOR = false, B_KMAJOR = false;
    static constexpr int SMN = Cf::SMN, BMT = BM;
    const E *dy, *x;
    E *dw;
    float *part;
    int H, W, Ci, Co, KW, Ho, Wo, stride, pt, pl, KK, ktps, ktiles;
    int64_t P;

    struct Thread {
        int kh, kw, ci;   // tap of the thread's CH B columns (kh = -kFar past KK)
        // Pixel of each of the thread's K rows in the next K tile, as (p, image, oh, ow), and
        // the (image, oh, ow) step of one K tile: carried, not divided out per copy.
        int p[2 * KS], img[2 * KS], oh[2 * KS], ow[2 * KS];
        int dimg, doh, dow;
    };

    __device__ void init(Thread &th, int64_t, int n0, int tid, int kbeg) const {
        const int n = n0 + M_::mn_col(tid);
        th.kh = -kFar, th.kw = 0, th.ci = 0;
        if (n < KK) {
            const int tap = n / Ci;
            th.ci = n - tap * Ci;
            th.kh = tap / KW;
            th.kw = tap - th.kh * KW;
        }
        const int hw = Ho * Wo;
#pragma unroll
        for (int i = 0; i < 2 * KS; i++) {
            const int p = kbeg + M_::mn_krow(tid, i % 2) + (i / 2) * Cf::BASE, rem = p % hw;
            th.p[i] = p, th.img[i] = p / hw, th.oh[i] = rem / Wo, th.ow[i] = rem % Wo;
        }
        th.dimg = Cf::BK / hw, th.doh = Cf::BK % hw / Wo, th.dow = Cf::BK % hw % Wo;
    }

    __device__ void k_tiles(int z, int &k0, int &k1) const {
        k0 = z * ktps;
        k1 = min(k0 + ktps, ktiles);
    }

    __device__ void load(Thread &th, int tid, uint32_t as, uint32_t bs) const {
        const int c = M_::mn_col(tid), co = blockIdx.x * BM + c;
#pragma unroll
        for (int i = 0; i < 2 * KS; i++) {
            const int kr = M_::mn_krow(tid, i % 2) + (i / 2) * Cf::BASE;
            const int p = th.p[i];
            const bool pin = p < P;
            const bool aok = pin && co < Co;
            cp16(as + off<E, SMN>(kr, c), aok ? dy + (int64_t)p * Co + co : dy, aok);
            bool bok = false;
            const E *src = x;
            if (pin) {
                const int ih = th.oh[i] * stride - pt + th.kh, iw = th.ow[i] * stride - pl + th.kw;
                bok = (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W;
                if (bok) src = x + ((int64_t)(th.img[i] * H + ih) * W + iw) * Ci + th.ci;
            }
            // Each part is below its radix before and after the step: one carry each.
            th.p[i] += Cf::BK;
            th.img[i] += th.dimg, th.oh[i] += th.doh, th.ow[i] += th.dow;
            if (th.ow[i] >= Wo) th.ow[i] -= Wo, th.oh[i]++;
            if (th.oh[i] >= Ho) th.oh[i] -= Ho, th.img[i]++;
            cp16(bs + off<E, SMN>(kr, c), src, bok);
        }
    }

    __device__ void epilogue(const AccT<Lay<BM>::MI, Lay<BM>::NI> &acc, int64_t mb, int nb, int lane, int z) const {
        for_pairs(acc, mb, nb, lane, [&](int64_t co, int n, float v0, float v1) {
            if (co >= Co || n >= KK) return;   // KK = taps * Ci is even
            if (part) put2<false>(part + ((int64_t)z * Co + co) * KK + n, v0, v1);
            else put2<true>(dw + co * KK + n, v0, v1);
        });
    }
};

// The __global__ of problem P.
template <typename E, int B, int K> auto mma_kernel(const Fwd<E, B, K> *) { return conv_fwd_mma_k<Fwd<E, B, K>>; }
template <typename E, int B, int K> auto mma_kernel(const Dgrad<E, B, K> *) { return conv_dgrad_mma_k<Dgrad<E, B, K>>; }
template <typename E, int K> auto mma_kernel(const Wgrad<E, K> *) { return conv_wgrad_mma_k<Wgrad<E, K>>; }

}  // namespace tc

// ---- host side ----------------------------------------------------------------------------
bool aligned(const void *p, int bytes) { return p == nullptr || ((uintptr_t)p % (uintptr_t)bytes) == 0; }

bool supported(const ddx_k_conv_geom *g) {
    if (!g || (g->stride != 1 && g->stride != 2) || g->pad_top < 0 || g->pad_left < 0) return false;
    const int64_t dims[] = {g->N, g->H, g->W, g->Ci, g->Co, g->KH, g->KW, g->Ho, g->Wo};
    for (int64_t d : dims)
        if (d < 1 || d >= kLimit) return false;
    if (g->pad_top >= kLimit / 4 || g->pad_left >= kLimit / 4) return false;
    return g->N * g->H * g->W < kLimit && g->N * g->Ho * g->Wo < kLimit && g->KH * g->KW * g->Ci < kLimit &&
           g->KH * g->KW * g->Co < kLimit;
}

// 128-row tiles once there are enough of them to keep the card busy (shapes alone decide,
// so the choice, and the bits, do not depend on the card).
bool big_tiles(int64_t M, int64_t N) { return cdiv(M, 128) * cdiv(N, kBN) >= 256; }

template <class P> int launch(const P &p, int64_t M, int64_t N, int splits, cudaStream_t s) {
    const dim3 grid((unsigned)cdiv(M, P::BM), (unsigned)cdiv(N, kBN), (unsigned)splits);
    if (grid.y > 65535u || grid.z > 65535u) return (int)cudaErrorInvalidValue;
    igemm_k<P><<<grid, kThreads, 0, s>>>(p);
    return (int)cudaGetLastError();
}

template <typename T, int TM, bool VEC>
int fwd_run(T *y, const T *x, const T *w, const T *bias, const ddx_k_conv_geom *g, bool vec_out, cudaStream_t s) {
    FwdProb<T, TM, VEC> p;
    p.x = x, p.w = w, p.bias = bias, p.y = y;
    p.H = (int)g->H, p.W = (int)g->W, p.Ci = (int)g->Ci, p.Co = (int)g->Co, p.KW = (int)g->KW;
    p.Ho = (int)g->Ho, p.Wo = (int)g->Wo, p.stride = g->stride, p.pt = g->pad_top, p.pl = g->pad_left;
    p.M = (int)(g->N * g->Ho * g->Wo), p.K = (int)(g->KH * g->KW * g->Ci);
    p.vec_out = vec_out;
    p.acc = g->residual != nullptr;
    return launch(p, p.M, p.Co, 1, s);
}

template <typename T>
int fwd_launch(T *y, const T *x, const T *w, const T *bias, const ddx_k_conv_geom *g, cudaStream_t s) {
    if (!supported(g)) return (int)cudaErrorInvalidValue;
    const int vb = 4 * (int)sizeof(T);
    const bool vec = g->Ci % 4 == 0 && aligned(x, vb) && aligned(w, vb);
    const bool vec_out = g->Co % 4 == 0 && aligned(y, vb);
    const bool big = big_tiles(g->N * g->Ho * g->Wo, g->Co);
    // The SIMT path takes a residual by starting y from it (rare: 3-channel or untuned convs).
    if (g->residual) {
        const cudaError_t e = cudaMemcpyAsync(y, g->residual, (size_t)(g->N * g->Ho * g->Wo * g->Co) * sizeof(T),
                                              cudaMemcpyDeviceToDevice, s);
        if (e != cudaSuccess) return (int)e;
    }
    if (big) return vec ? fwd_run<T, 8, true>(y, x, w, bias, g, vec_out, s) : fwd_run<T, 8, false>(y, x, w, bias, g, vec_out, s);
    return vec ? fwd_run<T, 4, true>(y, x, w, bias, g, vec_out, s) : fwd_run<T, 4, false>(y, x, w, bias, g, vec_out, s);
}

template <typename T, int TM, bool VEC>
int dgrad_run(T *dx, const T *dy, const T *w, const ddx_k_conv_geom *g, bool vec_out, cudaStream_t s) {
    DgradProb<T, TM, VEC> p;
    p.dy = dy, p.w = w, p.dx = dx;
    p.H = (int)g->H, p.W = (int)g->W, p.Ci = (int)g->Ci, p.Co = (int)g->Co, p.KW = (int)g->KW;
    p.KHKW = (int)(g->KH * g->KW);
    p.Ho = (int)g->Ho, p.Wo = (int)g->Wo, p.stride = g->stride, p.pt = g->pad_top, p.pl = g->pad_left;
    p.M = (int)(g->N * g->H * g->W), p.K = (int)(g->KH * g->KW * g->Co);
    p.vec_out = vec_out;
    p.ow = g->dx_overwrite != 0;
    return launch(p, p.M, p.Ci, 1, s);
}

template <typename T> int dgrad_launch(T *dx, const T *dy, const T *w, const ddx_k_conv_geom *g, cudaStream_t s) {
    if (!supported(g)) return (int)cudaErrorInvalidValue;
    const int vb = 4 * (int)sizeof(T);
    const bool vec = g->Ci % 4 == 0 && g->Co % 4 == 0 && aligned(dy, vb) && aligned(w, vb);
    const bool vec_out = g->Ci % 4 == 0 && aligned(dx, vb);
    const bool big = big_tiles(g->N * g->H * g->W, g->Ci);
    if (big) return vec ? dgrad_run<T, 8, true>(dx, dy, w, g, vec_out, s) : dgrad_run<T, 8, false>(dx, dy, w, g, vec_out, s);
    return vec ? dgrad_run<T, 4, true>(dx, dy, w, g, vec_out, s) : dgrad_run<T, 4, false>(dx, dy, w, g, vec_out, s);
}

// wgrad tiling, from the shapes alone: 128-row tiles over Co when Co > 64; K split so that
// about 512 blocks run, each split at least 8 K tiles (128 pixels), at most 64 splits.
struct WgradPlan {
    int tm, splits, ktps, ktiles;
};

WgradPlan wgrad_plan(const ddx_k_conv_geom *g) {
    WgradPlan pl;
    const int64_t P = g->N * g->Ho * g->Wo, KK = g->KH * g->KW * g->Ci;
    pl.tm = g->Co > 64 ? 8 : 4;
    pl.ktiles = (int)cdiv(P, kBK);
    const int64_t tiles = cdiv(g->Co, 16 * pl.tm) * cdiv(KK, kBN);
    int64_t s = cdiv(512, tiles);
    if (s > 64) s = 64;
    if (s > pl.ktiles / 8) s = pl.ktiles / 8;
    if (s < 1) s = 1;
    pl.ktps = (int)cdiv(pl.ktiles, s);
    pl.splits = (int)cdiv(pl.ktiles, pl.ktps);   // no empty split: every partial gets written
    return pl;
}

template <typename T, int TM, bool VEC>
int wgrad_run(T *dw, const T *dy, const T *x, float *part, const ddx_k_conv_geom *g, const WgradPlan &pl,
              bool vec_out, cudaStream_t s) {
    WgradProb<T, TM, VEC> p;
    p.dy = dy, p.x = x, p.dw = dw, p.part = pl.splits > 1 ? part : nullptr;
    p.H = (int)g->H, p.W = (int)g->W, p.Ci = (int)g->Ci, p.Co = (int)g->Co, p.KW = (int)g->KW;
    p.Ho = (int)g->Ho, p.Wo = (int)g->Wo, p.stride = g->stride, p.pt = g->pad_top, p.pl = g->pad_left;
    p.P = (int)(g->N * g->Ho * g->Wo), p.KK = (int)(g->KH * g->KW * g->Ci);
    p.ktps = pl.ktps, p.ktiles = pl.ktiles;
    p.vec_out = vec_out;
    p.vec_part = p.KK % 4 == 0 && aligned(part, 16);
    return launch(p, p.Co, p.KK, pl.splits, s);
}

template <typename T>
int wgrad_launch(T *dw, const T *dy, const T *x, float *part, const ddx_k_conv_geom *g, cudaStream_t s) {
    if (!supported(g)) return (int)cudaErrorInvalidValue;
    const WgradPlan pl = wgrad_plan(g);
    if (pl.splits > 1 && !part) return (int)cudaErrorInvalidValue;
    const int vb = 4 * (int)sizeof(T);
    const bool vec = g->Ci % 4 == 0 && g->Co % 4 == 0 && aligned(dy, vb) && aligned(x, vb);
    const bool vec_out = g->Ci % 4 == 0 && aligned(dw, vb);
    int e;
    if (pl.tm == 8)
        e = vec ? wgrad_run<T, 8, true>(dw, dy, x, part, g, pl, vec_out, s) : wgrad_run<T, 8, false>(dw, dy, x, part, g, pl, vec_out, s);
    else
        e = vec ? wgrad_run<T, 4, true>(dw, dy, x, part, g, pl, vec_out, s) : wgrad_run<T, 4, false>(dw, dy, x, part, g, pl, vec_out, s);
    if (e != 0 || pl.splits == 1) return e;
    const int64_t n = g->Co * g->KH * g->KW * g->Ci;
    const int64_t blocks = cdiv(n, kThreads) < 4096 ? cdiv(n, kThreads) : 4096;
    wgrad_reduce_k<T><<<(unsigned)blocks, kThreads, 0, s>>>(dw, part, pl.splits, n);
    return (int)cudaGetLastError();
}

// Row blocks of the bias gradient: about 256 rows each, at most 256 of them.
void bgrad_plan(const ddx_k_conv_geom *g, int &parts, int &rows) {
    const int64_t P = g->N * g->Ho * g->Wo;
    int64_t r = cdiv(P, 256);
    if (r > 256) r = 256;
    if (r < 1) r = 1;
    rows = (int)cdiv(P, r);
    parts = (int)cdiv(P, rows);
}

template <typename T> int bgrad_launch(T *db, const T *dy, double *part, const ddx_k_conv_geom *g, cudaStream_t s) {
    if (!supported(g) || !part) return (int)cudaErrorInvalidValue;
    int parts, rows;
    bgrad_plan(g, parts, rows);
    const int P = (int)(g->N * g->Ho * g->Wo), Co = (int)g->Co;
    bgrad_part_k<T><<<dim3((unsigned)cdiv(Co, 32), (unsigned)parts), dim3(32, 8), 0, s>>>(dy, part, P, Co, rows);
    int e = (int)cudaGetLastError();
    if (e != 0) return e;
    bgrad_final_k<T><<<(unsigned)cdiv(Co, kThreads), kThreads, 0, s>>>(db, part, parts, Co);
    return (int)cudaGetLastError();
}

// ---- tensor-core launches (bf16, tf32) -------------------------------------------------------
bool a16(const void *p) { return aligned(p, 16); }

// The tensor-core kernels need aligned 16-byte runs of channels wherever they gather.
template <typename E> bool tc_fwd_ok(const E *x, const E *w, const ddx_k_conv_geom *g) {
    return g->Ci % tc::chunk<E>() == 0 && a16(x) && a16(w);
}
template <typename E> bool tc_bwd_ok(const E *a, const E *b, const ddx_k_conv_geom *g) {
    return g->Ci % tc::chunk<E>() == 0 && g->Co % tc::chunk<E>() == 0 && a16(a) && a16(b);
}

// K-tile depth of the tensor-core kernels in base steps (1: 32 bf16 / 16 f32, 2: twice that).
// DDX_CONV_TC_KS=1|2 overrides the default, to compare the two in one benchmark run.
constexpr int kDefaultKS = 2;
int tc_ks() {
    static int v = 0;
    if (!v) {
        const char *e = ddx_tune_raw(DDX_TUNE_CONV_TC_KS);
        v = e && (e[0] == '1' || e[0] == '2') && !e[1] ? e[0] - '0' : kDefaultKS;
    }
    return v;
}

template <class P> int tc_launch(const P &p, int64_t M, int64_t N, int splits, cudaStream_t s) {
    using E = typename P::Elem;
    const dim3 grid((unsigned)cdiv(M, P::BMT), (unsigned)cdiv(N, tc::BN), (unsigned)splits);
    if (grid.y > 65535u || grid.z > 65535u) return (int)cudaErrorInvalidValue;
    // Above the 48 KiB default: opt in, once per kernel and process (the first call runs
    // eagerly, before any CUDA graph capture).
    const size_t smem = tc::smem_bytes<P>();
    const auto kernel = tc::mma_kernel(&p);
    static const cudaError_t opt_in = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (opt_in != cudaSuccess) return (int)opt_in;
    kernel<<<grid, tc::THREADS, smem, s>>>(p);
    return (int)cudaGetLastError();
}

// 64-row block tiles when 128-row ones would not give about two blocks per SM of a 132-SM
// card (the low-resolution layers); shapes alone decide, and the bits do not depend on it
// (every output element sums its K in the same order either way).
bool tc_small(int64_t M, int64_t N) { return cdiv(M, tc::BM) * cdiv(N, tc::BN) < 264; }

// Block-tile rows as tc_small says. DDX_CONV_TC_BM=64|128|256 forces one (tests run every
// tile on small shapes; benchmarks compare them). The 256-row tile (one block of 64 x 64 warp
// tiles per SM) is not a default: measured on an H200 it was 21% slower than the 128-row
// one in forward and 10% in dgrad at [128,32,32,128], and even at [128,16,16,256]; two blocks
// of 8 warps per SM hide the gathers' latency better than one block's bigger warp tiles save.
int tc_bm(int64_t M, int64_t N) {
    static int forced = -1;
    if (forced < 0) {
        const char *e = ddx_tune_raw(DDX_TUNE_CONV_TC_BM);
        forced = !e ? 0 : !strcmp(e, "64") ? 64 : !strcmp(e, "128") ? 128 : !strcmp(e, "256") ? 256 : 0;
    }
    if (forced) return forced;
    return tc_small(M, N) ? 64 : 128;
}

template <typename E, int BMT, int KS>
int tc_fwd_run(E *y, const E *x, const E *w, const E *bias, const ddx_k_conv_geom *g, cudaStream_t s) {
    tc::Fwd<E, BMT, KS> p;
    p.x = x, p.w = w, p.bias = bias, p.y = y;
    p.res = static_cast<const E *>(g->residual);
    p.H = (int)g->H, p.W = (int)g->W, p.Ci = (int)g->Ci, p.Co = (int)g->Co, p.KW = (int)g->KW;
    p.Ho = (int)g->Ho, p.Wo = (int)g->Wo, p.stride = g->stride, p.pt = g->pad_top, p.pl = g->pad_left;
    p.M = g->N * g->Ho * g->Wo, p.K = (int)(g->KH * g->KW * g->Ci);
    return tc_launch(p, p.M, p.Co, 1, s);
}

template <typename E>
int tc_fwd(E *y, const E *x, const E *w, const E *bias, const ddx_k_conv_geom *g, cudaStream_t s) {
    const int bm = tc_bm(g->N * g->Ho * g->Wo, g->Co);
    if (tc_ks() == 1)
        return bm == 64    ? tc_fwd_run<E, 64, 1>(y, x, w, bias, g, s)
               : bm == 128 ? tc_fwd_run<E, 128, 1>(y, x, w, bias, g, s)
                           : tc_fwd_run<E, 256, 1>(y, x, w, bias, g, s);
    return bm == 64    ? tc_fwd_run<E, 64, 2>(y, x, w, bias, g, s)
           : bm == 128 ? tc_fwd_run<E, 128, 2>(y, x, w, bias, g, s)
                       : tc_fwd_run<E, 256, 2>(y, x, w, bias, g, s);
}

template <typename E, int BMT, int KS>
int tc_dgrad_run(E *dx, const E *dy, const E *w, const ddx_k_conv_geom *g, cudaStream_t s) {
    tc::Dgrad<E, BMT, KS> p;
    p.dy = dy, p.w = w, p.dx = dx;
    p.H = (int)g->H, p.W = (int)g->W, p.Ci = (int)g->Ci, p.Co = (int)g->Co, p.KW = (int)g->KW;
    p.KHKW = (int)(g->KH * g->KW);
    p.Ho = (int)g->Ho, p.Wo = (int)g->Wo, p.stride = g->stride, p.pt = g->pad_top, p.pl = g->pad_left;
    p.M = g->N * g->H * g->W, p.K = (int)(g->KH * g->KW * g->Co);
    p.ow = g->dx_overwrite != 0;
    return tc_launch(p, p.M, p.Ci, 1, s);
}

template <typename E> int tc_dgrad(E *dx, const E *dy, const E *w, const ddx_k_conv_geom *g, cudaStream_t s) {
    const int bm = tc_bm(g->N * g->H * g->W, g->Ci);
    if (tc_ks() == 1)
        return bm == 64    ? tc_dgrad_run<E, 64, 1>(dx, dy, w, g, s)
               : bm == 128 ? tc_dgrad_run<E, 128, 1>(dx, dy, w, g, s)
                           : tc_dgrad_run<E, 256, 1>(dx, dy, w, g, s);
    return bm == 64    ? tc_dgrad_run<E, 64, 2>(dx, dy, w, g, s)
           : bm == 128 ? tc_dgrad_run<E, 128, 2>(dx, dy, w, g, s)
                       : tc_dgrad_run<E, 256, 2>(dx, dy, w, g, s);
}

// wgrad split of the pixel range for the tensor-core kernel, from the shapes alone: about 512
// blocks (DDX_CONV_WGRAD_BLOCKS=N asks for about N, to compare: fewer splits write and reduce
// fewer fp32 partials), each split at least 8 K tiles, at most 64 splits.
int64_t wgrad_blocks() {
    static int64_t v = -1;
    if (v < 0) {
        const char *e = ddx_tune_raw(DDX_TUNE_CONV_WGRAD_BLOCKS);
        const long n = e ? atol(e) : 0;
        v = n >= 1 && n <= 65536 ? n : 512;
    }
    return v;
}

template <typename E, int KS> WgradPlan tc_wgrad_plan(const ddx_k_conv_geom *g) {
    WgradPlan pl;
    const int64_t P = g->N * g->Ho * g->Wo, KK = g->KH * g->KW * g->Ci;
    pl.tm = 0;
    pl.ktiles = (int)cdiv(P, tc::Cfg<E, KS>::BK);
    const int64_t tiles = cdiv(g->Co, tc::BM) * cdiv(KK, tc::BN);
    int64_t sp = cdiv(wgrad_blocks(), tiles);
    if (sp > 64) sp = 64;
    if (sp > pl.ktiles / 8) sp = pl.ktiles / 8;
    if (sp < 1) sp = 1;
    pl.ktps = (int)cdiv(pl.ktiles, sp);
    pl.splits = (int)cdiv(pl.ktiles, pl.ktps);
    return pl;
}

template <typename E, int KS>
int tc_wgrad_run(E *dw, const E *dy, const E *x, float *part, const ddx_k_conv_geom *g, cudaStream_t s) {
    const WgradPlan pl = tc_wgrad_plan<E, KS>(g);
    if (pl.splits > 1 && (!part || !aligned(part, 8))) return (int)cudaErrorInvalidValue;
    tc::Wgrad<E, KS> p;
    p.dy = dy, p.x = x, p.dw = dw, p.part = pl.splits > 1 ? part : nullptr;
    p.H = (int)g->H, p.W = (int)g->W, p.Ci = (int)g->Ci, p.Co = (int)g->Co, p.KW = (int)g->KW;
    p.Ho = (int)g->Ho, p.Wo = (int)g->Wo, p.stride = g->stride, p.pt = g->pad_top, p.pl = g->pad_left;
    p.P = g->N * g->Ho * g->Wo, p.KK = (int)(g->KH * g->KW * g->Ci);
    p.ktps = pl.ktps, p.ktiles = pl.ktiles;
    int e = tc_launch(p, p.Co, p.KK, pl.splits, s);
    if (e != 0 || pl.splits == 1) return e;
    const int64_t n = g->Co * g->KH * g->KW * g->Ci;
    const int64_t blocks = cdiv(n, kThreads) < 4096 ? cdiv(n, kThreads) : 4096;
    wgrad_reduce_k<E><<<(unsigned)blocks, kThreads, 0, s>>>(dw, part, pl.splits, n);
    return (int)cudaGetLastError();
}

// Scratch splits the weight gradient may use: the larger of the SIMT and tensor-core plans,
// since alignment (known only at launch) picks the path.
template <typename E>
int tc_wgrad(E *dw, const E *dy, const E *x, float *part, const ddx_k_conv_geom *g, cudaStream_t s) {
    return tc_ks() == 1 ? tc_wgrad_run<E, 1>(dw, dy, x, part, g, s) : tc_wgrad_run<E, 2>(dw, dy, x, part, g, s);
}

template <typename E> int64_t wgrad_splits_any(const ddx_k_conv_geom *g) {
    if (!supported(g)) return 1;
    int64_t m = wgrad_plan(g).splits;
    const int64_t b = tc_wgrad_plan<E, 1>(g).splits, c = tc_wgrad_plan<E, 2>(g).splits;
    if (b > m) m = b;
    return c > m ? c : m;
}

// DDX_CONV_SIMT=1 keeps bf16 convs on the SIMT kernels (to compare the two paths).
bool tc_disabled() {
    static int v = -1;
    if (v < 0) {
        const char *e = ddx_tune_raw(DDX_TUNE_CONV_SIMT);
        v = e && e[0] == '1';
    }
    return v == 1;
}

}  // namespace

// ---- extern "C" launchers -----------------------------------------------------------------
extern "C" {

int ddx_k_conv2d_supported(const ddx_k_conv_geom *g) { return supported(g) ? 1 : 0; }

int ddx_k_conv2d_fwd_f32(float *y, const float *x, const float *w, const float *bias, const ddx_k_conv_geom *g,
                         void *stream) {
    return fwd_launch(y, x, w, bias, g, st(stream));
}
int ddx_k_conv2d_fwd_bf16(uint16_t *y, const uint16_t *x, const uint16_t *w, const uint16_t *bias,
                          const ddx_k_conv_geom *g, void *stream) {
    if (supported(g) && !tc_disabled() && tc_fwd_ok(x, w, g)) return tc_fwd(y, x, w, bias, g, st(stream));
    return fwd_launch(y, x, w, bias, g, st(stream));
}
int ddx_k_conv2d_fwd_tf32(float *y, const float *x, const float *w, const float *bias, const ddx_k_conv_geom *g,
                          void *stream) {
    if (supported(g) && !tc_disabled() && tc_fwd_ok(x, w, g)) return tc_fwd(y, x, w, bias, g, st(stream));
    return fwd_launch(y, x, w, bias, g, st(stream));
}

int ddx_k_conv2d_dgrad_f32(float *dx, const float *dy, const float *w, const ddx_k_conv_geom *g, void *stream) {
    return dgrad_launch(dx, dy, w, g, st(stream));
}
int ddx_k_conv2d_dgrad_bf16(uint16_t *dx, const uint16_t *dy, const uint16_t *w, const ddx_k_conv_geom *g,
                            void *stream) {
    if (supported(g) && !tc_disabled() && tc_bwd_ok(dy, w, g) && a16(dx)) return tc_dgrad(dx, dy, w, g, st(stream));
    return dgrad_launch(dx, dy, w, g, st(stream));
}
int ddx_k_conv2d_dgrad_tf32(float *dx, const float *dy, const float *w, const ddx_k_conv_geom *g, void *stream) {
    if (supported(g) && !tc_disabled() && tc_bwd_ok(dy, w, g) && a16(dx)) return tc_dgrad(dx, dy, w, g, st(stream));
    return dgrad_launch(dx, dy, w, g, st(stream));
}

int64_t ddx_k_conv2d_wgrad_splits(const ddx_k_conv_geom *g) { return supported(g) ? wgrad_plan(g).splits : 1; }
int64_t ddx_k_conv2d_wgrad_splits_bf16(const ddx_k_conv_geom *g) { return wgrad_splits_any<uint16_t>(g); }
int64_t ddx_k_conv2d_wgrad_splits_tf32(const ddx_k_conv_geom *g) { return wgrad_splits_any<float>(g); }

int ddx_k_conv2d_wgrad_f32(float *dw, const float *dy, const float *x, float *part, const ddx_k_conv_geom *g,
                           void *stream) {
    return wgrad_launch(dw, dy, x, part, g, st(stream));
}
int ddx_k_conv2d_wgrad_bf16(uint16_t *dw, const uint16_t *dy, const uint16_t *x, float *part,
                            const ddx_k_conv_geom *g, void *stream) {
    if (supported(g) && !tc_disabled() && tc_bwd_ok(dy, x, g) && aligned(dw, 4))
        return tc_wgrad(dw, dy, x, part, g, st(stream));
    return wgrad_launch(dw, dy, x, part, g, st(stream));
}
int ddx_k_conv2d_wgrad_tf32(float *dw, const float *dy, const float *x, float *part, const ddx_k_conv_geom *g,
                            void *stream) {
    if (supported(g) && !tc_disabled() && tc_bwd_ok(dy, x, g) && aligned(dw, 8))
        return tc_wgrad(dw, dy, x, part, g, st(stream));
    return wgrad_launch(dw, dy, x, part, g, st(stream));
}

int64_t ddx_k_conv2d_bgrad_parts(const ddx_k_conv_geom *g) {
    if (!supported(g)) return 1;
    int parts, rows;
    bgrad_plan(g, parts, rows);
    return parts;
}

int ddx_k_conv2d_bgrad_f32(float *db, const float *dy, double *part, const ddx_k_conv_geom *g, void *stream) {
    return bgrad_launch(db, dy, part, g, st(stream));
}
int ddx_k_conv2d_bgrad_bf16(uint16_t *db, const uint16_t *dy, double *part, const ddx_k_conv_geom *g, void *stream) {
    return bgrad_launch(db, dy, part, g, st(stream));
}

}  // extern "C"
