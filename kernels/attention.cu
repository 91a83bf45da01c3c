// Flash-style attention kernels (see attention.h for the contract): fp32 SIMT kernels for every
// shape and dtype, and bf16 tensor-core (mma.sync) kernels that the bf16 launchers prefer
// where they apply (the "bf16 tensor-core path" section below).
//
// ---- fp32 SIMT kernels ----
// Forward: one 128-thread block per (item, head, tile of BQ query rows). The Q tile stays in
// shared memory; the block walks the keys in tiles of BK: S = Q K^T (register-tiled, scaled
// into log2 units), an online softmax per row (running max m and sum l; the O accumulator is
// rescaled by exp2(m_old - m_new)), then O += P V with V loaded into the buffer K used. O lives
// in registers, the score tile in shared memory; at the end O / l and lse = ln(sum exp) are
// written. Nothing of size L x L ever reaches device memory.
//
// Backward (FlashAttention-2 scheme, deterministic):
//   delta_i = dO_i . O_i                                 (one warp per row)
//   dK/dV: one block per (item, head, key tile), looping over query tiles:
//          P^T = exp(scale K Q^T - lse), dV += P^T dO, dP^T = V dO^T,
//          dS^T = P^T (dP^T - delta), dK += scale dS^T Q
//   dQ:    one block per (item, head, query tile), looping over key tiles:
//          P = exp(scale Q K^T - lse), dP = dO V^T, dS = P (dP - delta), dQ += scale dS K
// Each grad element is owned by one thread of one block and accumulated in a fixed order,
// then added once into the caller's buffer: no atomics, bit-reproducible.
//
// Shared-memory tiles are [rows][dp] floats with dp = head_dim rounded up to 4 (zero-filled
// past head_dim and past L) plus padding that makes dp/4 odd, so that float4 reads of 8
// consecutive rows hit 8 distinct 16-byte bank groups. Tile sizes are compile-time per
// head_dim bucket (32, 64, 128, 256, 512: the smallest that holds head_dim), chosen to keep
// the per-thread register accumulators at <= 64 floats (no spills under 255 registers).
#include "kernels/attention.h"

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/common.cuh"

namespace {

constexpr int NT = 128;                      // threads per block, every kernel
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;


// Four consecutive elements at a 4-element-aligned address (16 bytes f32, 8 bytes bf16).
__device__ __forceinline__ float4 load4(const float *p) { return *reinterpret_cast<const float4 *>(p); }
__device__ __forceinline__ float4 load4(const uint16_t *p) {
    const uint2 r = *reinterpret_cast<const uint2 *>(p);
    return make_float4(__uint_as_float(r.x << 16), __uint_as_float(r.x & 0xffff0000u), __uint_as_float(r.y << 16),
                       __uint_as_float(r.y & 0xffff0000u));
}
__device__ __forceinline__ void store4(float *p, float4 v) { *reinterpret_cast<float4 *>(p) = v; }
__device__ __forceinline__ void store4(uint16_t *p, float4 v) {
    uint2 r;
    r.x = (uint32_t)f32_to_bf16(v.x) | ((uint32_t)f32_to_bf16(v.y) << 16);
    r.y = (uint32_t)f32_to_bf16(v.z) | ((uint32_t)f32_to_bf16(v.w) << 16);
    *reinterpret_cast<uint2 *>(p) = r;
}

// row[c .. c+3] (= or +=) v, guarded by D. vec: head_dim % 4 == 0 and every pointer aligned,
// so a chunk that starts inside the row lies wholly inside it.
template <bool ACC, typename T> __device__ __forceinline__ void put_chunk(T *row, int c, int D, float4 v, bool vec) {
    if (vec) {
        if (ACC) {
            const float4 o = load4(row + c);
            v.x += o.x;
            v.y += o.y;
            v.z += o.z;
            v.w += o.w;
        }
        store4(row + c, v);
        return;
    }
    const float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int t = 0; t < 4; t++)
        if (c + t < D) row[c + t] = from_f<T>(ACC ? to_f(row[c + t]) + e[t] : e[t]);
}

__host__ __device__ constexpr int round4(int d) { return (d + 3) & ~3; }
// Row stride of a [rows][head_dim] shared tile: a multiple of 4 with dp/4 odd.
__host__ __device__ constexpr int pad_of(int d4) { return (d4 & 7) == 0 ? d4 + 4 : d4; }

// ---- tile load ----------------------------------------------------------------------------
// dst[r][c] = src[(row0 + r) * C + c] for r < R, c < D; zero for rows >= L and for columns
// [D, round4(D)). src points at (item, row 0, head column 0). Each warp takes whole rows, its
// lanes consecutive columns (coalesced).
template <int R, typename T>
__device__ __forceinline__ void load_tile(float *dst, int dp, const T *src, int64_t C, int row0, int L, int D, bool vec) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int d4 = round4(D);
    for (int r = warp; r < R; r += NT / 32) {
        float *drow = dst + (int64_t)r * dp;
        const int row = row0 + r;
        if (row < L) {
            const T *srow = src + (int64_t)row * C;
            if (vec) {
                for (int c = lane * 4; c < D; c += 128) store4(drow + c, load4(srow + c));
            } else {
                for (int c = lane; c < d4; c += 32) drow[c] = c < D ? to_f(srow[c]) : 0.0f;
            }
        } else {
            for (int c = lane * 4; c < d4; c += 128) store4(drow + c, make_float4(0.f, 0.f, 0.f, 0.f));
        }
    }
}

// ---- C = A B^T over the head dimension ----------------------------------------------------
// A [BM][dp], B [BN][dp] in shared memory. Thread (tr, tc) of a TR x TC grid computes rows
// tr + TR*i and columns tc + TC*j. A warp reads TC consecutive B rows (distinct bank groups)
// and 32/TC A rows (broadcast), one float4 each per 4 columns of d.
template <int BM, int BN> struct AbtMap {
    static constexpr int TR = BM < 16 ? BM : 16;
    static constexpr int TC = NT / TR;
    static constexpr int SR = BM / TR;
    static constexpr int SC = BN / TC;
    static_assert(TR * TC == NT && SR * TR == BM && SC * TC == BN && SC >= 1, "bad A B^T tiling");
};

template <int BM, int BN>
__device__ __forceinline__ void gemm_abt(const float *A, const float *B, int dp, int d4,
                                         float (&acc)[AbtMap<BM, BN>::SR][AbtMap<BM, BN>::SC]) {
    using M = AbtMap<BM, BN>;
    const int tr = threadIdx.x / M::TC, tc = threadIdx.x % M::TC;
#pragma unroll
    for (int i = 0; i < M::SR; i++)
#pragma unroll
        for (int j = 0; j < M::SC; j++) acc[i][j] = 0.0f;
    const float *a0 = A + (int64_t)tr * dp, *b0 = B + (int64_t)tc * dp;
#pragma unroll 2
    for (int d = 0; d < d4; d += 4) {
        float4 a[M::SR], b[M::SC];
#pragma unroll
        for (int i = 0; i < M::SR; i++) a[i] = load4(a0 + (int64_t)i * M::TR * dp + d);
#pragma unroll
        for (int j = 0; j < M::SC; j++) b[j] = load4(b0 + (int64_t)j * M::TC * dp + d);
#pragma unroll
        for (int i = 0; i < M::SR; i++)
#pragma unroll
            for (int j = 0; j < M::SC; j++) {
                float s = acc[i][j];
                s = fmaf(a[i].x, b[j].x, s);
                s = fmaf(a[i].y, b[j].y, s);
                s = fmaf(a[i].z, b[j].z, s);
                s = fmaf(a[i].w, b[j].w, s);
                acc[i][j] = s;
            }
    }
}

// ---- acc += A B with B over the head dimension --------------------------------------------
// A [BM][as] (as >= BK, a multiple of 4), B [BK][dp]. Thread (rt, ct) of an RT x CT grid owns
// rows rt + RT*i and the 4-column chunks ct + CT*j (columns 4*chunk .. +3) of a DMAX-wide
// row; chunks at or past round4(D) are skipped.
template <int BM, int DMAX> struct AbMap {
    static constexpr int CT = DMAX / 4 < 32 ? DMAX / 4 : 32;
    static constexpr int RT = NT / CT;
    static constexpr int RPT = BM / RT;
    static constexpr int CPT = DMAX / (4 * CT);
    static_assert(CT * RT == NT && RPT * RT == BM && CPT * CT * 4 == DMAX && RPT >= 1, "bad A B tiling");
};

template <int BM, int BK, int DMAX>
__device__ __forceinline__ void gemm_ab_acc(const float *A, int as, const float *B, int dp, int d4,
                                            float (&acc)[AbMap<BM, DMAX>::RPT][AbMap<BM, DMAX>::CPT][4]) {
    using M = AbMap<BM, DMAX>;
    static_assert(BK % 4 == 0, "BK must be a multiple of 4");
    const int rt = threadIdx.x / M::CT, ct = threadIdx.x % M::CT;
    const int nchunk = d4 / 4;
#pragma unroll 2
    for (int k = 0; k < BK; k += 4) {
        float4 a[M::RPT];
#pragma unroll
        for (int i = 0; i < M::RPT; i++) a[i] = load4(A + (int64_t)(rt + M::RT * i) * as + k);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
#pragma unroll
            for (int j = 0; j < M::CPT; j++) {
                const int ch = ct + M::CT * j;
                if (ch >= nchunk) continue;
                const float4 b = load4(B + (int64_t)(k + kk) * dp + 4 * ch);
#pragma unroll
                for (int i = 0; i < M::RPT; i++) {
                    const float av = kk == 0 ? a[i].x : kk == 1 ? a[i].y : kk == 2 ? a[i].z : a[i].w;
                    acc[i][j][0] = fmaf(av, b.x, acc[i][j][0]);
                    acc[i][j][1] = fmaf(av, b.y, acc[i][j][1]);
                    acc[i][j][2] = fmaf(av, b.z, acc[i][j][2]);
                    acc[i][j][3] = fmaf(av, b.w, acc[i][j][3]);
                }
            }
        }
    }
}

// Writes (ACC: adds) mul * acc into rows row0 + rt + RT*i (< L) of dst (item/head origin).
template <bool ACC, int BM, int DMAX, typename T>
__device__ __forceinline__ void store_rows(T *dst, int64_t C, int row0, int L, int D, bool vec, float mul,
                                           const float (&acc)[AbMap<BM, DMAX>::RPT][AbMap<BM, DMAX>::CPT][4],
                                           const float *row_mul /* [BM] or nullptr */) {
    using M = AbMap<BM, DMAX>;
    const int rt = threadIdx.x / M::CT, ct = threadIdx.x % M::CT;
#pragma unroll
    for (int i = 0; i < M::RPT; i++) {
        const int r = rt + M::RT * i;
        if (row0 + r >= L) continue;
        const float m = row_mul ? mul * row_mul[r] : mul;
        T *drow = dst + (int64_t)(row0 + r) * C;
#pragma unroll
        for (int j = 0; j < M::CPT; j++) {
            const int c = 4 * (ct + M::CT * j);
            if (c >= D) continue;
            put_chunk<ACC>(drow, c, D, make_float4(m * acc[i][j][0], m * acc[i][j][1], m * acc[i][j][2], m * acc[i][j][3]),
                           vec);
        }
    }
}

template <int BM, int DMAX>
__device__ __forceinline__ void zero_acc(float (&acc)[AbMap<BM, DMAX>::RPT][AbMap<BM, DMAX>::CPT][4]) {
#pragma unroll
    for (int i = 0; i < AbMap<BM, DMAX>::RPT; i++)
#pragma unroll
        for (int j = 0; j < AbMap<BM, DMAX>::CPT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
}

// ---- tile configuration per head_dim bucket -----------------------------------------------
// F*: forward (query rows, keys per tile); KV*: dK/dV kernel (keys, query rows per tile);
// Q*: dQ kernel (query rows, keys per tile).
template <int DMAX> struct Cfg;
template <> struct Cfg<32> { static constexpr int FQ = 32, FK = 32, KVK = 32, KVQ = 32, QQ = 32, QK = 32; };
template <> struct Cfg<64> { static constexpr int FQ = 64, FK = 32, KVK = 32, KVQ = 32, QQ = 64, QK = 32; };
template <> struct Cfg<128> { static constexpr int FQ = 32, FK = 32, KVK = 32, KVQ = 32, QQ = 32, QK = 32; };
template <> struct Cfg<256> { static constexpr int FQ = 32, FK = 32, KVK = 16, KVQ = 32, QQ = 32, QK = 32; };
template <> struct Cfg<512> { static constexpr int FQ = 16, FK = 32, KVK = 8, KVQ = 16, QQ = 16, QK = 32; };

// Shared-memory floats of each kernel at a row stride dp (layouts in the kernels).
template <int BQ, int BK> constexpr size_t fwd_floats(int dp) { return (size_t)(BQ + BK) * dp + (size_t)BQ * (BK + 4) + BQ; }
template <int BK, int BQ> constexpr size_t dkv_floats(int dp) {
    return (size_t)(2 * BK + 2 * BQ) * dp + (size_t)2 * BK * (BQ + 4) + 2 * BQ;
}
template <int BQ, int BK> constexpr size_t dq_floats(int dp) { return (size_t)(2 * BQ + BK) * dp + (size_t)BQ * (BK + 4) + 2 * BQ; }

// Block index -> (item, head, tile); base offset of (item, row 0, head column 0).
struct BlockPos {
    int64_t bh;     // item * heads + head: the row of lse/delta
    int64_t base;   // element offset into q/k/v/out
    int tile;
};
__device__ __forceinline__ BlockPos block_pos(int ntiles, int L, int H, int D) {
    BlockPos p;
    p.tile = (int)(blockIdx.x % (unsigned)ntiles);
    p.bh = blockIdx.x / (unsigned)ntiles;
    const int64_t n = p.bh / H, h = p.bh % H;
    p.base = n * L * ((int64_t)H * D) + h * D;
    return p;
}

// ---- forward ------------------------------------------------------------------------------
template <int DMAX, int BQ, int BK, typename T>
__global__ void __launch_bounds__(NT)
attn_fwd_k(const T *q, const T *k, const T *v, T *out, float *lse, int L, int H, int D, float scale_log2, int ntiles, int vec) {
    extern __shared__ float4 smem4[];
    float *sm = reinterpret_cast<float *>(smem4);
    const int d4 = round4(D), dp = pad_of(d4);
    constexpr int SS = BK + 4;
    float *Qs = sm;                                    // [BQ][dp]
    float *KVs = Qs + (int64_t)BQ * dp;                // [BK][dp]: K, then V of the same keys
    float *Ss = KVs + (int64_t)BK * dp;                // [BQ][SS]: scores, then P
    float *rowf = Ss + BQ * SS;                        // [BQ]: alpha per tile, then 1/l
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BQ;
    using SM = AbtMap<BQ, BK>;
    using OM = AbMap<BQ, DMAX>;
    // Softmax row pass: TPR consecutive threads (inside one warp) share row rr.
    constexpr int TPR = NT / BQ;
    static_assert(TPR * BQ == NT && TPR <= 32, "rows must split the block evenly");
    const int rr = threadIdx.x / TPR, sub = threadIdx.x % TPR;
    const int tr = threadIdx.x / SM::TC, tc = threadIdx.x % SM::TC;
    const int rt = threadIdx.x / OM::CT;

    load_tile<BQ>(Qs, dp, q + bp.base, C, q0, L, D, vec);
    float m = -INFINITY, l = 0.0f;   // row rr's running max (log2 units) and sum
    float acc[OM::RPT][OM::CPT][4];
    zero_acc<BQ, DMAX>(acc);

    for (int k0 = 0; k0 < L; k0 += BK) {
        load_tile<BK>(KVs, dp, k + bp.base, C, k0, L, D, vec);
        __syncthreads();
        {
            float s[SM::SR][SM::SC];
            gemm_abt<BQ, BK>(Qs, KVs, dp, d4, s);
#pragma unroll
            for (int i = 0; i < SM::SR; i++)
#pragma unroll
                for (int j = 0; j < SM::SC; j++) {
                    const int col = tc + SM::TC * j;
                    Ss[(tr + SM::TR * i) * SS + col] = k0 + col < L ? s[i][j] * scale_log2 : -INFINITY;
                }
        }
        __syncthreads();   // scores complete; K no longer needed
        {
            float *row = Ss + rr * SS;
            float mx = -INFINITY;
            for (int c = sub; c < BK; c += TPR) mx = fmaxf(mx, row[c]);
#pragma unroll
            for (int o = TPR / 2; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            // Key k0 < L is valid, so mx and m_new are finite; the first tile's alpha is 0.
            const float m_new = fmaxf(m, mx);
            float sum = 0.0f;
            for (int c = sub; c < BK; c += TPR) {
                const float p = exp2f(row[c] - m_new);
                row[c] = p;
                sum += p;
            }
#pragma unroll
            for (int o = TPR / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            const float alpha = exp2f(m - m_new);
            l = l * alpha + sum;
            m = m_new;
            if (sub == 0) rowf[rr] = alpha;
        }
        load_tile<BK>(KVs, dp, v + bp.base, C, k0, L, D, vec);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < OM::RPT; i++) {
            const float a = rowf[rt + OM::RT * i];
#pragma unroll
            for (int j = 0; j < OM::CPT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[i][j][e] *= a;
        }
        gemm_ab_acc<BQ, BK, DMAX>(Ss, SS, KVs, dp, d4, acc);
        __syncthreads();   // P and V consumed before the next tile overwrites them
    }
    if (sub == 0) {
        rowf[rr] = 1.0f / l;
        if (q0 + rr < L) lse[bp.bh * L + q0 + rr] = (m + log2f(l)) * kLn2;
    }
    __syncthreads();
    store_rows<false, BQ, DMAX>(out + bp.base, C, q0, L, D, vec, 1.0f, acc, rowf);
}

// ---- backward: delta_i = dO_i . O_i ---------------------------------------------------------
// Row w of the [N*L*heads, D] view is (item, position, head) = w's [N, L, heads] index; its
// elements start at w * D. delta is [N, heads, L].
template <typename T>
__global__ void __launch_bounds__(256) attn_delta_k(const T *o, const T *dout, float *delta, int64_t rows, int L, int H, int D) {
    const int lane = threadIdx.x & 31;
    const int64_t stride = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; w < rows; w += stride) {
        const T *orow = o + w * D, *drow = dout + w * D;
        float s = 0.0f;
        for (int c = lane; c < D; c += 32) s = fmaf(to_f(orow[c]), to_f(drow[c]), s);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) {
            const int64_t h = w % H, ni = w / H, n = ni / L, i = ni % L;
            delta[(n * H + h) * L + i] = s;
        }
    }
}

// ---- backward: dK, dV ---------------------------------------------------------------------
template <int DMAX, int BK, int BQ, typename T>
__global__ void __launch_bounds__(NT)
attn_bwd_dkv_k(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *gk, T *gv, int L,
               int H, int D, float scale, float scale_log2, int ntiles, int vec) {
    extern __shared__ float4 smem4[];
    float *sm = reinterpret_cast<float *>(smem4);
    const int d4 = round4(D), dp = pad_of(d4);
    constexpr int PS = BQ + 4;
    float *Ks = sm;                                  // [BK][dp]
    float *Vs = Ks + (int64_t)BK * dp;               // [BK][dp]
    float *Qs = Vs + (int64_t)BK * dp;               // [BQ][dp]
    float *dOs = Qs + (int64_t)BQ * dp;              // [BQ][dp]
    float *Pt = dOs + (int64_t)BQ * dp;              // [BK][PS]  P^T
    float *dSt = Pt + BK * PS;                       // [BK][PS]  dS^T
    float *lse_s = dSt + BK * PS;                    // [BQ]  lse in log2 units
    float *del_s = lse_s + BQ;                       // [BQ]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int k0 = bp.tile * BK;
    const bool want_dk = gk != nullptr, want_dv = gv != nullptr;
    using SM = AbtMap<BK, BQ>;
    using GM = AbMap<BK, DMAX>;
    const int tr = threadIdx.x / SM::TC, tc = threadIdx.x % SM::TC;

    load_tile<BK>(Ks, dp, k + bp.base, C, k0, L, D, vec);
    if (want_dk) load_tile<BK>(Vs, dp, v + bp.base, C, k0, L, D, vec);
    float dK[GM::RPT][GM::CPT][4], dV[GM::RPT][GM::CPT][4];
    zero_acc<BK, DMAX>(dK);
    zero_acc<BK, DMAX>(dV);
    const float *lse_bh = lse + bp.bh * L, *del_bh = delta + bp.bh * L;

    for (int q0 = 0; q0 < L; q0 += BQ) {
        load_tile<BQ>(Qs, dp, q + bp.base, C, q0, L, D, vec);
        load_tile<BQ>(dOs, dp, dout + bp.base, C, q0, L, D, vec);
        for (int t = threadIdx.x; t < BQ; t += NT) {
            const bool ok = q0 + t < L;
            lse_s[t] = ok ? lse_bh[q0 + t] * kLog2e : 0.0f;
            del_s[t] = ok ? del_bh[q0 + t] : 0.0f;
        }
        __syncthreads();
        {
            float s[SM::SR][SM::SC], p[SM::SR][SM::SC];
            gemm_abt<BK, BQ>(Ks, Qs, dp, d4, s);
#pragma unroll
            for (int i = 0; i < SM::SR; i++)
#pragma unroll
                for (int j = 0; j < SM::SC; j++) {
                    const int col = tc + SM::TC * j;
                    // Query rows past L must add nothing to the keys' grads.
                    p[i][j] = q0 + col < L ? exp2f(s[i][j] * scale_log2 - lse_s[col]) : 0.0f;
                    Pt[(tr + SM::TR * i) * PS + col] = p[i][j];
                }
            if (want_dk) {
                gemm_abt<BK, BQ>(Vs, dOs, dp, d4, s);   // dP^T
#pragma unroll
                for (int i = 0; i < SM::SR; i++)
#pragma unroll
                    for (int j = 0; j < SM::SC; j++) {
                        const int col = tc + SM::TC * j;
                        dSt[(tr + SM::TR * i) * PS + col] = p[i][j] * (s[i][j] - del_s[col]);
                    }
            }
        }
        __syncthreads();
        if (want_dv) gemm_ab_acc<BK, BQ, DMAX>(Pt, PS, dOs, dp, d4, dV);
        if (want_dk) gemm_ab_acc<BK, BQ, DMAX>(dSt, PS, Qs, dp, d4, dK);
        __syncthreads();   // Q, dO, P, dS consumed before the next query tile
    }
    // One thread adds each element: dk then dv, so dk == dv (k and v one tensor) still sums both.
    if (want_dk) store_rows<true, BK, DMAX>(gk + bp.base, C, k0, L, D, vec, scale, dK, nullptr);
    if (want_dv) store_rows<true, BK, DMAX>(gv + bp.base, C, k0, L, D, vec, 1.0f, dV, nullptr);
}

// ---- backward: dQ -------------------------------------------------------------------------
template <int DMAX, int BQ, int BK, typename T>
__global__ void __launch_bounds__(NT)
attn_bwd_dq_k(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *gq, int L, int H,
              int D, float scale, float scale_log2, int ntiles, int vec) {
    extern __shared__ float4 smem4[];
    float *sm = reinterpret_cast<float *>(smem4);
    const int d4 = round4(D), dp = pad_of(d4);
    constexpr int SS = BK + 4;
    float *Qs = sm;                                  // [BQ][dp]
    float *dOs = Qs + (int64_t)BQ * dp;              // [BQ][dp]
    float *KVs = dOs + (int64_t)BQ * dp;             // [BK][dp]: V, then K of the same keys
    float *dSs = KVs + (int64_t)BK * dp;             // [BQ][SS]
    float *lse_s = dSs + BQ * SS;                    // [BQ]  log2 units
    float *del_s = lse_s + BQ;                       // [BQ]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BQ;
    using SM = AbtMap<BQ, BK>;
    using GM = AbMap<BQ, DMAX>;
    const int tr = threadIdx.x / SM::TC, tc = threadIdx.x % SM::TC;

    load_tile<BQ>(Qs, dp, q + bp.base, C, q0, L, D, vec);
    load_tile<BQ>(dOs, dp, dout + bp.base, C, q0, L, D, vec);
    for (int t = threadIdx.x; t < BQ; t += NT) {
        const bool ok = q0 + t < L;
        lse_s[t] = ok ? lse[bp.bh * L + q0 + t] * kLog2e : 0.0f;
        del_s[t] = ok ? delta[bp.bh * L + q0 + t] : 0.0f;
    }
    float dQ[GM::RPT][GM::CPT][4];
    zero_acc<BQ, DMAX>(dQ);

    for (int k0 = 0; k0 < L; k0 += BK) {
        load_tile<BK>(KVs, dp, v + bp.base, C, k0, L, D, vec);
        __syncthreads();
        float dpv[SM::SR][SM::SC];
        gemm_abt<BQ, BK>(dOs, KVs, dp, d4, dpv);
        __syncthreads();   // V consumed
        load_tile<BK>(KVs, dp, k + bp.base, C, k0, L, D, vec);
        __syncthreads();
        {
            float s[SM::SR][SM::SC];
            gemm_abt<BQ, BK>(Qs, KVs, dp, d4, s);
#pragma unroll
            for (int i = 0; i < SM::SR; i++)
#pragma unroll
                for (int j = 0; j < SM::SC; j++) {
                    const int row = tr + SM::TR * i, col = tc + SM::TC * j;
                    const float p = k0 + col < L ? exp2f(s[i][j] * scale_log2 - lse_s[row]) : 0.0f;
                    dSs[row * SS + col] = p * (dpv[i][j] - del_s[row]);
                }
        }
        __syncthreads();
        gemm_ab_acc<BQ, BK, DMAX>(dSs, SS, KVs, dp, d4, dQ);
        __syncthreads();   // dS and K consumed before the next tile
    }
    store_rows<true, BQ, DMAX>(gq + bp.base, C, q0, L, D, vec, scale, dQ, nullptr);
}

// ---- host side ----------------------------------------------------------------------------
template <int DMAX> size_t smem_bytes_at(int dp) {
    using F = Cfg<DMAX>;
    size_t a = fwd_floats<F::FQ, F::FK>(dp), b = dkv_floats<F::KVK, F::KVQ>(dp), c = dq_floats<F::QQ, F::QK>(dp);
    size_t m = a > b ? a : b;
    return (m > c ? m : c) * sizeof(float);
}

int bucket_of(int D) {
    if (D < 1 || D > DDX_K_ATTENTION_MAX_HEAD_DIM) return 0;
    return D <= 32 ? 32 : D <= 64 ? 64 : D <= 128 ? 128 : D <= 256 ? 256 : 512;
}

// Kernels over 48 KB of dynamic shared memory must opt in; the attribute is set to the
// bucket's largest need (head_dim = DMAX), so one value serves every head_dim of the bucket.
template <typename K> cudaError_t allow_smem(K kernel, size_t need_at_dmax) {
    if (need_at_dmax <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)need_at_dmax);
}

template <int BR> bool grid_of(int64_t N, int64_t L, int heads, int *ntiles, unsigned *blocks) {
    const int64_t nt = (L + BR - 1) / BR;
    const int64_t nb = N * heads * nt;
    if (nb <= 0 || nb > INT_MAX) return false;
    *ntiles = (int)nt;
    *blocks = (unsigned)nb;
    return true;
}

template <typename T> bool is_vec(const T *p) { return ((uintptr_t)p % (4 * sizeof(T))) == 0; }

bool shape_ok(int64_t N, int64_t L, int heads, int D) {
    // Row indices run in int with a tile of slack.
    return N >= 0 && L >= 0 && L <= INT_MAX - 128 && heads >= 1 && bucket_of(D) != 0;
}

template <int DMAX, typename T>
cudaError_t fwd_launch(const T *q, const T *k, const T *v, T *out, float *lse, int64_t N, int64_t L, int heads, int D,
                       float scale, cudaStream_t st) {
    using F = Cfg<DMAX>;
    int ntiles;
    unsigned blocks;
    if (!grid_of<F::FQ>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
    const int vec = D % 4 == 0 && is_vec(q) && is_vec(k) && is_vec(v) && is_vec(out);
    auto kern = attn_fwd_k<DMAX, F::FQ, F::FK, T>;
    cudaError_t e = allow_smem(kern, fwd_floats<F::FQ, F::FK>(pad_of(DMAX)) * sizeof(float));
    if (e != cudaSuccess) return e;
    const size_t smem = fwd_floats<F::FQ, F::FK>(pad_of(round4(D))) * sizeof(float);
    kern<<<blocks, NT, smem, st>>>(q, k, v, out, lse, (int)L, heads, D, scale * kLog2e, ntiles, vec);
    return cudaGetLastError();
}

template <typename T>
int fwd_any(const T *q, const T *k, const T *v, T *out, float *lse, int64_t N, int64_t L, int heads, int D, float scale,
            void *stream) {
    if (!shape_ok(N, L, heads, D)) return (int)cudaErrorInvalidValue;
    if (N == 0 || L == 0) return (int)cudaSuccess;
    cudaStream_t st = (cudaStream_t)stream;
    switch (bucket_of(D)) {
    case 32: return (int)fwd_launch<32>(q, k, v, out, lse, N, L, heads, D, scale, st);
    case 64: return (int)fwd_launch<64>(q, k, v, out, lse, N, L, heads, D, scale, st);
    case 128: return (int)fwd_launch<128>(q, k, v, out, lse, N, L, heads, D, scale, st);
    case 256: return (int)fwd_launch<256>(q, k, v, out, lse, N, L, heads, D, scale, st);
    default: return (int)fwd_launch<512>(q, k, v, out, lse, N, L, heads, D, scale, st);
    }
}

template <int DMAX, typename T>
cudaError_t bwd_launch(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *dq, T *dk,
                       T *dv, int64_t N, int64_t L, int heads, int D, float scale, cudaStream_t st) {
    using F = Cfg<DMAX>;
    const int vec = D % 4 == 0 && is_vec(q) && is_vec(k) && is_vec(v) && is_vec(dout) && (!dq || is_vec(dq)) &&
                    (!dk || is_vec(dk)) && (!dv || is_vec(dv));
    const float scale_log2 = scale * kLog2e;
    const int dp = pad_of(round4(D));
    cudaError_t e;
    if (dk || dv) {
        int ntiles;
        unsigned blocks;
        if (!grid_of<F::KVK>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        auto kern = attn_bwd_dkv_k<DMAX, F::KVK, F::KVQ, T>;
        if ((e = allow_smem(kern, dkv_floats<F::KVK, F::KVQ>(pad_of(DMAX)) * sizeof(float))) != cudaSuccess) return e;
        kern<<<blocks, NT, dkv_floats<F::KVK, F::KVQ>(dp) * sizeof(float), st>>>(q, k, v, dout, lse, delta, dk, dv, (int)L,
                                                                                 heads, D, scale, scale_log2, ntiles, vec);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    if (dq) {
        int ntiles;
        unsigned blocks;
        if (!grid_of<F::QQ>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        auto kern = attn_bwd_dq_k<DMAX, F::QQ, F::QK, T>;
        if ((e = allow_smem(kern, dq_floats<F::QQ, F::QK>(pad_of(DMAX)) * sizeof(float))) != cudaSuccess) return e;
        kern<<<blocks, NT, dq_floats<F::QQ, F::QK>(dp) * sizeof(float), st>>>(q, k, v, dout, lse, delta, dq, (int)L, heads,
                                                                             D, scale, scale_log2, ntiles, vec);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    return cudaSuccess;
}

template <typename T>
cudaError_t delta_launch(const T *out, const T *dout, float *delta, int64_t N, int64_t L, int heads, int D, cudaStream_t st) {
    const int64_t rows = N * L * heads;
    const int64_t want = (rows + 7) / 8;   // 8 warps per block, one row each
    const unsigned dblocks = (unsigned)(want < 4096 ? want : 4096);
    attn_delta_k<T><<<dblocks, 256, 0, st>>>(out, dout, delta, rows, (int)L, heads, D);
    return cudaGetLastError();
}

template <typename T>
int bwd_any(const T *q, const T *k, const T *v, const T *out, const T *dout, const float *lse, float *delta, T *dq, T *dk,
            T *dv, int64_t N, int64_t L, int heads, int D, float scale, void *stream) {
    if (!shape_ok(N, L, heads, D)) return (int)cudaErrorInvalidValue;
    if (N == 0 || L == 0 || (!dq && !dk && !dv)) return (int)cudaSuccess;
    cudaStream_t st = (cudaStream_t)stream;
    // delta first: both grad kernels read it.
    const cudaError_t e = delta_launch(out, dout, delta, N, L, heads, D, st);
    if (e != cudaSuccess) return (int)e;
    switch (bucket_of(D)) {
    case 32: return (int)bwd_launch<32>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    case 64: return (int)bwd_launch<64>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    case 128: return (int)bwd_launch<128>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    case 256: return (int)bwd_launch<256>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    default: return (int)bwd_launch<512>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, D, scale, st);
    }
}


// ==== bf16 tensor-core path =================================================================
// mma.sync.m16n8k16 (bf16 in, fp32 accumulate) versions of the three kernels above, taken by
// the bf16 launchers when head_dim % 8 == 0, head_dim <= 256, every pointer is 16-byte aligned
// and the device is sm_80+ with enough opt-in shared memory; anything else runs the fp32 SIMT
// kernels. Tiles are [rows][DP + 8] bf16 in shared memory, DP = head_dim rounded up to the
// bucket 32/64/128/256 (columns past head_dim zero-filled, so they add nothing to a dot product
// and produce output columns that are never stored); the +8 makes the row stride an odd
// multiple of 16 bytes, so the 8 row addresses of an ldmatrix hit 8 distinct bank groups.
// Tiles arrive by cp.async (rows past L and columns past head_dim are zero-filled by the copy
// itself), double-buffered so the next tile loads while this one is multiplied.
//
// Warp-level building blocks (each warp owns 16 rows of the left operand):
//   warp_abt: acc[16 x 8*NT8] += A[16][DP] . B[8*NT8][DP]^T   (A, B row-major in smem)
//   warp_ab:  acc[16 x 8*NN8] += P[16][KP] . B[KP][8*NN8]     (P in registers, B row-major)
// Fragment layouts (PTX ISA, m16n8k16; g = lane / 4, t = lane % 4):
//   A regs a0..a3 = (row g, cols 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)
//   B regs b0, b1 = (k rows 2t..2t+1, col g), (k rows 2t+8..2t+9, col g)
//   C regs c0..c3 = (row g, cols 2t, 2t+1), (row g+8, cols 2t, 2t+1)
// so the C fragments of two adjacent n8 tiles, packed to bf16 pairs, are exactly the A
// fragment of one k16 step: S/P never leave registers between the two products.
namespace tc {

constexpr int PAD = 8;   // bf16 elements of row padding

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared; valid == false writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void ldsm4_t(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// Two floats -> bf16x2 (round to nearest even), lo in the low half (the lower column).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// dst[r][c] = src[(row0 + r) * C + c] for r < ROWS, c < DP; zero past L and past D. src is the
// (item, row 0, head column 0) origin; D % 8 == 0 and src 16-byte aligned (checked on the host),
// so a 16-byte chunk is wholly inside or wholly outside the head's columns.
template <int ROWS, int DP> __device__ __forceinline__ void load_tile(uint16_t *dst, const uint16_t *src, int64_t C, int row0, int L, int D) {
    constexpr int CH = DP / 8, S = DP + PAD;
    static_assert((ROWS * CH) % NT == 0, "tile must split evenly over the block");
    // Not unrolled: unrolled, the compiler hoists every chunk's 64-bit address out of the tile
    // loop and the DP = 256 kernels (128 fp32 accumulators per lane) spill.
#pragma unroll 1
    for (int it = 0; it < ROWS * CH / NT; it++) {
        const int i = it * NT + (int)threadIdx.x;
        const int r = i / CH, c = (i % CH) * 8;
        const bool ok = row0 + r < L && c < D;
        cp_async16(smem_u32(dst + r * S + c), ok ? src + (int64_t)(row0 + r) * C + c : src, ok);
    }
}

template <int N> __device__ __forceinline__ void zero(float (&acc)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// acc[16 x 8*NT8] += A[16][K] . B[8*NT8][K]^T. a_base: the warp's first A row; b_base: B row 0;
// both row-major with stride S bf16.
template <int NT8, int K, int S>
__device__ __forceinline__ void warp_abt(float (&acc)[NT8][4], uint32_t a_base, uint32_t b_base, int lane) {
    static_assert(NT8 % 2 == 0 && K % 16 == 0, "bad warp_abt shape");
    const int mi = lane >> 3, r = lane & 7;
    // A: matrices (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) = a0..a3.
    const uint32_t a_addr = a_base + (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
    // B (non-transposed: a B row is an n index): (n 0-7, k 0-7) = b0 of tile n, (n 0-7, k 8-15) = b1,
    // then the same for n 8-15 = tile n+1.
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi >> 1) * 8) * S + (mi & 1) * 8) * 2);
#pragma unroll
    for (int k = 0; k < K; k += 16) {
        uint32_t a[4];
        ldsm4(a, a_addr + k * 2);
#pragma unroll
        for (int n = 0; n < NT8; n += 2) {
            uint32_t b[4];
            ldsm4(b, b_addr + (uint32_t)((n * 8 * S + k) * 2));
            mma16816(acc[n], a, b[0], b[1]);
            mma16816(acc[n + 1], a, b[2], b[3]);
        }
    }
}

// acc[16 x 8*NN8] += P[16][8*KP8] . B[8*KP8][8*NN8], P given as C fragments (fp32), B row-major
// [k][n] with stride S (ldmatrix.trans turns its k-major rows into the col operand).
template <int KP8, int NN8, int S>
__device__ __forceinline__ void warp_ab(float (&acc)[NN8][4], const float (&p)[KP8][4], uint32_t b_base, int lane) {
    static_assert(KP8 % 2 == 0 && NN8 % 2 == 0, "bad warp_ab shape");
    const int mi = lane >> 3, r = lane & 7;
    // (k 0-7, n 0-7) = b0 of tile n, (k 8-15, n 0-7) = b1, then n 8-15 = tile n+1.
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
#pragma unroll
    for (int kk = 0; kk < KP8 / 2; kk++) {
        uint32_t a[4];
        a[0] = pack_bf16(p[2 * kk][0], p[2 * kk][1]);
        a[1] = pack_bf16(p[2 * kk][2], p[2 * kk][3]);
        a[2] = pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        a[3] = pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
        for (int n = 0; n < NN8; n += 2) {
            uint32_t b[4];
            ldsm4_t(b, b_addr + (uint32_t)((kk * 16 * S + n * 8) * 2));
            mma16816(acc[n], a, b[0], b[1]);
            mma16816(acc[n + 1], a, b[2], b[3]);
        }
    }
}

// dst rows row0 + g and row0 + g + 8 (< L), columns < D: (ACC: +=) mul * acc, straight from
// the C fragments (each lane a bf16 pair per n8 tile).
template <int N8>
__device__ __forceinline__ void store_frag_acc(uint16_t *dst, int64_t C, int row0, int L, int D, float mul,
                                               const float (&acc)[N8][4], int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int row = row0 + g + 8 * h;
        if (row >= L) continue;
        uint16_t *drow = dst + (int64_t)row * C;
#pragma unroll
        for (int n = 0; n < N8; n++) {
            const int c = n * 8 + 2 * t;
            if (c >= D) continue;
            uint32_t *p = reinterpret_cast<uint32_t *>(drow + c);
            const uint32_t old = *p;
            *p = pack_bf16(to_f((uint16_t)(old & 0xffffu)) + mul * acc[n][2 * h],
                           to_f((uint16_t)(old >> 16)) + mul * acc[n][2 * h + 1]);
        }
    }
}

constexpr int BM = 64;   // query rows per block in the forward and dQ kernels: 4 warps x 16
constexpr int BKV = 64;  // key rows per block in the dK/dV kernel: 4 warps x 16
template <int DP> struct TCfg {
    static constexpr int FWD_BN = 64;                    // keys per forward tile
    static constexpr int DQ_BN = DP <= 128 ? 32 : 16;    // keys per dQ tile (16: no spills at 256)
    static constexpr int KV_BQ = 32;                     // query rows per dK/dV tile
    static constexpr int S = DP + PAD;
    static constexpr size_t fwd_smem = (size_t)(BM + 4 * FWD_BN) * S * 2;
    static constexpr size_t dq_smem = (size_t)(2 * BM + 4 * DQ_BN) * S * 2;
    static constexpr size_t kv_smem = (size_t)(2 * BKV + 4 * KV_BQ) * S * 2 + 4 * KV_BQ * sizeof(float);
};

// ---- forward, double-buffered K/V (DDX_ATTN_FWD_V1=1) ---------------------------------------
// One block per (item, head, 64 query rows); warp w owns rows 16w..16w+15 and keeps its O rows
// (16 x DP fp32) and its running max / partial sums in registers. Per key tile: S = Q K^T
// (log2 units), online softmax, O += P V with P straight from registers.
template <int DP, int BN>
__global__ void __launch_bounds__(NT)
tc_fwd_k(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int L, int H, int D,
         float scale_log2, int ntiles) {
    constexpr int S = DP + PAD;
    extern __shared__ uint4 tc_smem[];
    uint16_t *Qs = reinterpret_cast<uint16_t *>(tc_smem);   // [BM][S]
    uint16_t *Ks = Qs + BM * S;                              // [2][BN][S]
    uint16_t *Vs = Ks + 2 * BN * S;                          // [2][BN][S]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BM;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *kb = k + bp.base, *vb = v + bp.base;
    const int nkv = (L + BN - 1) / BN;

    load_tile<BM, DP>(Qs, q + bp.base, C, q0, L, D);
    load_tile<BN, DP>(Ks, kb, C, 0, L, D);
    cp_commit();
    load_tile<BN, DP>(Vs, vb, C, 0, L, D);
    cp_commit();

    float o[DP / 8][4];
    zero(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};   // rows g, g+8; l: this lane's partial sum
    const uint32_t q_addr = smem_u32(Qs + warp * 16 * S);
    for (int j = 0; j < nkv; j++) {
        const int cur = j & 1;
        // Prefetch tile j+1 into the other buffers (freed by the barrier ending tile j-1); two
        // groups per tile, empty past the end, keep the wait counts uniform.
        if (j + 1 < nkv) load_tile<BN, DP>(Ks + (cur ^ 1) * BN * S, kb, C, (j + 1) * BN, L, D);
        cp_commit();
        if (j + 1 < nkv) load_tile<BN, DP>(Vs + (cur ^ 1) * BN * S, vb, C, (j + 1) * BN, L, D);
        cp_commit();
        cp_wait<3>();   // Q and K_j landed
        __syncthreads();
        float s[BN / 8][4];
        zero(s);
        warp_abt<BN / 8, DP, S>(s, q_addr, smem_u32(Ks + cur * BN * S), lane);
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const bool ok = j * BN + n * 8 + 2 * t + (e & 1) < L;
                s[n][e] = ok ? s[n][e] * scale_log2 : -INFINITY;
                mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
            }
        float alpha[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
            // Key j*BN < L is valid, so mx is finite; the first tile's alpha is exp2(-inf) = 0.
            alpha[h] = exp2f(m[h] - mx[h]);
            m[h] = mx[h];
            l[h] *= alpha[h];
        }
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[n][e] = exp2f(s[n][e] - m[e >> 1]);
                l[e >> 1] += s[n][e];
            }
#pragma unroll
        for (int n = 0; n < DP / 8; n++) {
            o[n][0] *= alpha[0];
            o[n][1] *= alpha[0];
            o[n][2] *= alpha[1];
            o[n][3] *= alpha[1];
        }
        cp_wait<2>();   // V_j landed
        __syncthreads();
        warp_ab<BN / 8, DP / 8, S>(o, s, smem_u32(Vs + cur * BN * S), lane);
        __syncthreads();   // K_j, V_j consumed before tile j+2 overwrites them
    }
    cp_wait<0>();
    float inv[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
        inv[h] = 1.0f / l[h];
        const int row = q0 + warp * 16 + g + 8 * h;
        if (t == 0 && row < L) lse[bp.bh * L + row] = (m[h] + log2f(l[h])) * kLn2;
    }
    // Stage the warp's 16 output rows in its own Q rows (no other warp reads them), then write
    // whole 16-byte chunks.
    uint16_t *Ow = Qs + warp * 16 * S;
#pragma unroll
    for (int n = 0; n < DP / 8; n++) {
        const int c = n * 8 + 2 * t;
        *reinterpret_cast<uint32_t *>(Ow + g * S + c) = pack_bf16(o[n][0] * inv[0], o[n][1] * inv[0]);
        *reinterpret_cast<uint32_t *>(Ow + (g + 8) * S + c) = pack_bf16(o[n][2] * inv[1], o[n][3] * inv[1]);
    }
    __syncwarp();
    uint16_t *ob = out + bp.base;
    constexpr int CH = DP / 8;
#pragma unroll
    for (int i = lane; i < 16 * CH; i += 32) {
        const int r = i / CH, c = (i % CH) * 8, row = q0 + warp * 16 + r;
        if (row < L && c < D) *reinterpret_cast<uint4 *>(ob + (int64_t)row * C + c) = *reinterpret_cast<const uint4 *>(Ow + r * S + c);
    }
}

// ---- forward, single K and V buffer (the default) -------------------------------------------
// The kernel above keeps K and V double-buffered: 169 KB of shared memory at DP = 256, so
// one 4-warp block per SM and one warp per scheduler, with nothing to hide the mma, ldmatrix
// and exp latencies. This one (the default; DDX_ATTN_FWD_V1=1 selects the other) keeps ONE K and ONE V
// buffer and overlaps each load with the other product instead:
//   wait K_j | load V_j | S = Q K_j^T, softmax | wait V_j | load K_{j+1} | O += P V_j
// (101 KB at DP = 256: two blocks per SM, two warps per scheduler, and each block's barriers
// and prologue hidden by the other's work). Each warp owns MT m16 row tiles (16 * MT query
// rows): at MT = 2 every K/V fragment from ldmatrix feeds twice the mma, which halves the
// shared-memory traffic per flop where the registers allow it (DP <= 128; DDX_ATTN_FWD_MT=1
// selects MT = 1 there, smaller blocks with more of them per SM, for comparison).
template <int DP> constexpr int fwd2_mt_default() { return DP >= 256 ? 1 : 2; }
template <int DP, int MT_> struct Fwd2Cfg {
    static_assert(MT_ == 1 || (MT_ == 2 && DP <= 128), "MT = 2 needs DP <= 128 (registers)");
    static constexpr int MT = MT_;                     // m16 row tiles per warp
    static constexpr int BN = 64;                      // keys per tile
    static constexpr int BMR = 4 * 16 * MT;            // query rows per block
    // Blocks per SM the registers must allow (ptxas caps the registers at 65536 / (128 MINB)
    // to match; no spills at these): DP * MT / 8 fp32 accumulators plus MT * 32 scores per lane.
    static constexpr int MINB = DP * MT >= 256 ? 2 : (DP == 64 && MT == 2) ? 3 : 4;
    static constexpr int S = DP + PAD;
    static constexpr size_t smem = (size_t)(BMR + 2 * BN) * S * 2;
};

// 2^x; 2^-inf = +0. Same accuracy as exp2f (ex2.approx: 2 ulp), without its denormal fix-up.
__device__ __forceinline__ float fast_exp2(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
    return r;
}

// acc[MT][16 x 8*NT8] += A[16*MT][K] . B[8*NT8][K]^T: warp_abt with MT row tiles sharing each
// B fragment. a_base: the warp's first A row.
template <int MT, int NT8, int K, int S>
__device__ __forceinline__ void warp_abt_m(float (&acc)[MT][NT8][4], uint32_t a_base, uint32_t b_base, int lane) {
    static_assert(NT8 % 2 == 0 && K % 16 == 0, "bad warp_abt_m shape");
    const int mi = lane >> 3, r = lane & 7;
    const uint32_t a_addr = a_base + (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi >> 1) * 8) * S + (mi & 1) * 8) * 2);
#pragma unroll
    for (int k = 0; k < K; k += 16) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) ldsm4(a[mt], a_addr + (uint32_t)((mt * 16 * S + k) * 2));
#pragma unroll
        for (int n = 0; n < NT8; n += 2) {
            uint32_t b[4];
            ldsm4(b, b_addr + (uint32_t)((n * 8 * S + k) * 2));
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma16816(acc[mt][n], a[mt], b[0], b[1]);
                mma16816(acc[mt][n + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

// acc[MT][16 x 8*NN8] += P[16*MT][16*KP16] . B[16*KP16][8*NN8], P already packed as A fragments
// (pa[mt][kk] = the k16 step kk), B row-major [k][n] with stride S.
template <int MT, int KP16, int NN8, int S>
__device__ __forceinline__ void warp_ab_m(float (&acc)[MT][NN8][4], const uint32_t (&pa)[MT][KP16][4], uint32_t b_base,
                                          int lane) {
    static_assert(NN8 % 2 == 0, "bad warp_ab_m shape");
    const int mi = lane >> 3, r = lane & 7;
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
#pragma unroll
    for (int kk = 0; kk < KP16; kk++) {
#pragma unroll
        for (int n = 0; n < NN8; n += 2) {
            uint32_t b[4];
            ldsm4_t(b, b_addr + (uint32_t)((kk * 16 * S + n * 8) * 2));
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma16816(acc[mt][n], pa[mt][kk], b[0], b[1]);
                mma16816(acc[mt][n + 1], pa[mt][kk], b[2], b[3]);
            }
        }
    }
}

// One block per (item, head, BMR query rows); warp w owns rows w*16*MT .. +16*MT-1 and keeps
// their O (fp32), running max (log2 units) and this lane's partial row sums in registers.
// Same arithmetic as the double-buffered kernel: scores scaled into log2 units in fp32, P rounded to bf16 for P V only,
// l summed from the fp32 P, lse = (m + log2 l) ln 2.
template <int DP, int MT_>
__global__ void __launch_bounds__(NT, Fwd2Cfg<DP, MT_>::MINB)
tc_fwd2_k(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int L, int H, int D,
          float scale_log2, int ntiles) {
    using F = Fwd2Cfg<DP, MT_>;
    constexpr int S = F::S, MT = F::MT, BN = F::BN, BMR = F::BMR;
    extern __shared__ uint4 tc_smem[];
    uint16_t *Qs = reinterpret_cast<uint16_t *>(tc_smem);   // [BMR][S]
    uint16_t *Ks = Qs + BMR * S;                             // [BN][S]
    uint16_t *Vs = Ks + BN * S;                              // [BN][S]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BMR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *kb = k + bp.base, *vb = v + bp.base;
    const int nkv = (L + BN - 1) / BN;

    load_tile<BMR, DP>(Qs, q + bp.base, C, q0, L, D);
    load_tile<BN, DP>(Ks, kb, C, 0, L, D);
    cp_commit();

    float o[MT][DP / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) zero(o[mt]);
    // [mt][h]: rows warp*16*MT + 16*mt + g + 8*h.
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
    const uint32_t q_addr = smem_u32(Qs + warp * 16 * MT * S);
    const uint32_t k_addr = smem_u32(Ks), v_addr = smem_u32(Vs);
    for (int j = 0; j < nkv; j++) {
        const int k0 = j * BN;
        cp_wait<0>();      // K_j (and, at j = 0, Q) landed
        __syncthreads();   // ... for every thread's copies; and every warp is done with V_{j-1}
        load_tile<BN, DP>(Vs, vb, C, k0, L, D);
        cp_commit();

        float s[MT][BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) zero(s[mt]);
        warp_abt_m<MT, BN / 8, DP, S>(s, q_addr, k_addr, lane);

        const bool edge = k0 + BN > L;   // only the last tile holds keys past L
        uint32_t pa[MT][BN / 16][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            float mx[2] = {m[mt][0], m[mt][1]};
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float x = s[mt][n][e] * scale_log2;
                    if (edge && k0 + n * 8 + 2 * t + (e & 1) >= L) x = -INFINITY;
                    s[mt][n][e] = x;
                    mx[e >> 1] = fmaxf(mx[e >> 1], x);
                }
            float alpha[2];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
                // Key k0 < L is valid, so mx is finite; the first tile's alpha is 2^-inf = 0.
                alpha[h] = fast_exp2(m[mt][h] - mx[h]);
                m[mt][h] = mx[h];
                l[mt][h] *= alpha[h];
            }
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float p = fast_exp2(s[mt][n][e] - mx[e >> 1]);
                    s[mt][n][e] = p;
                    l[mt][e >> 1] += p;
                }
            // C fragments of n8 tiles 2kk, 2kk+1 = the A fragment of k16 step kk.
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                pa[mt][kk][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][kk][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][kk][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][kk][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int n = 0; n < DP / 8; n++) {
                o[mt][n][0] *= alpha[0];
                o[mt][n][1] *= alpha[0];
                o[mt][n][2] *= alpha[1];
                o[mt][n][3] *= alpha[1];
            }
        }
        cp_wait<0>();      // V_j landed
        __syncthreads();   // ... for every thread's copies; and every warp is done with K_j
        if (j + 1 < nkv) {
            load_tile<BN, DP>(Ks, kb, C, k0 + BN, L, D);
            cp_commit();
        }
        warp_ab_m<MT, BN / 16, DP / 8, S>(o, pa, v_addr, lane);
    }
    // No copies are in flight here: the last tile issued none after its V wait.

    // Stage the warp's output rows in its own Q rows (only this warp ever read them), then write
    // whole 16-byte chunks.
    uint16_t *Ow = Qs + warp * 16 * MT * S;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float inv[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float lt = l[mt][h];
            lt += __shfl_xor_sync(0xffffffffu, lt, 1);
            lt += __shfl_xor_sync(0xffffffffu, lt, 2);
            inv[h] = 1.0f / lt;
            const int row = q0 + warp * 16 * MT + mt * 16 + g + 8 * h;
            if (t == 0 && row < L) lse[bp.bh * L + row] = (m[mt][h] + log2f(lt)) * kLn2;
        }
        uint16_t *Om = Ow + mt * 16 * S;
#pragma unroll
        for (int n = 0; n < DP / 8; n++) {
            const int c = n * 8 + 2 * t;
            *reinterpret_cast<uint32_t *>(Om + g * S + c) = pack_bf16(o[mt][n][0] * inv[0], o[mt][n][1] * inv[0]);
            *reinterpret_cast<uint32_t *>(Om + (g + 8) * S + c) = pack_bf16(o[mt][n][2] * inv[1], o[mt][n][3] * inv[1]);
        }
    }
    __syncwarp();
    uint16_t *ob = out + bp.base;
    constexpr int CH = DP / 8;
#pragma unroll 4
    for (int i = lane; i < 16 * MT * CH; i += 32) {
        const int r = i / CH, c = (i % CH) * 8, row = q0 + warp * 16 * MT + r;
        if (row < L && c < D) *reinterpret_cast<uint4 *>(ob + (int64_t)row * C + c) = *reinterpret_cast<const uint4 *>(Ow + r * S + c);
    }
}

// ---- backward: dQ ---------------------------------------------------------------------------
// One block per (item, head, 64 query rows), looping over key tiles of BN:
// P = exp2(scale_log2 S - lse_log2), dP = dO V^T, dS = P (dP - delta), dQ += dS K.
template <int DP, int BN>
__global__ void __launch_bounds__(NT)
tc_dq_k(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *dout, const float *lse, const float *delta,
        uint16_t *gq, int L, int H, int D, float scale, float scale_log2, int ntiles) {
    constexpr int S = DP + PAD;
    extern __shared__ uint4 tc_smem[];
    uint16_t *Qs = reinterpret_cast<uint16_t *>(tc_smem);   // [BM][S]
    uint16_t *dOs = Qs + BM * S;                             // [BM][S]
    uint16_t *Ks = dOs + BM * S;                             // [2][BN][S]
    uint16_t *Vs = Ks + 2 * BN * S;                          // [2][BN][S]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int q0 = bp.tile * BM;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *kb = k + bp.base, *vb = v + bp.base;
    const int nkv = (L + BN - 1) / BN;

    load_tile<BM, DP>(Qs, q + bp.base, C, q0, L, D);
    load_tile<BM, DP>(dOs, dout + bp.base, C, q0, L, D);
    load_tile<BN, DP>(Ks, kb, C, 0, L, D);
    cp_commit();
    load_tile<BN, DP>(Vs, vb, C, 0, L, D);
    cp_commit();

    float lse2[2], del[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int row = q0 + warp * 16 + g + 8 * h;
        lse2[h] = row < L ? lse[bp.bh * L + row] * kLog2e : 0.0f;
        del[h] = row < L ? delta[bp.bh * L + row] : 0.0f;
    }
    float dq[DP / 8][4];
    zero(dq);
    const uint32_t q_addr = smem_u32(Qs + warp * 16 * S), do_addr = smem_u32(dOs + warp * 16 * S);
    for (int j = 0; j < nkv; j++) {
        const int cur = j & 1;
        if (j + 1 < nkv) load_tile<BN, DP>(Ks + (cur ^ 1) * BN * S, kb, C, (j + 1) * BN, L, D);
        cp_commit();
        if (j + 1 < nkv) load_tile<BN, DP>(Vs + (cur ^ 1) * BN * S, vb, C, (j + 1) * BN, L, D);
        cp_commit();
        cp_wait<3>();   // Q, dO and K_j landed
        __syncthreads();
        float p[BN / 8][4];
        zero(p);
        warp_abt<BN / 8, DP, S>(p, q_addr, smem_u32(Ks + cur * BN * S), lane);
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const bool ok = j * BN + n * 8 + 2 * t + (e & 1) < L;
                p[n][e] = ok ? exp2f(p[n][e] * scale_log2 - lse2[e >> 1]) : 0.0f;
            }
        cp_wait<2>();   // V_j landed
        __syncthreads();
        float dp[BN / 8][4];
        zero(dp);
        warp_abt<BN / 8, DP, S>(dp, do_addr, smem_u32(Vs + cur * BN * S), lane);
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) dp[n][e] = p[n][e] * (dp[n][e] - del[e >> 1]);
        warp_ab<BN / 8, DP / 8, S>(dq, dp, smem_u32(Ks + cur * BN * S), lane);
        __syncthreads();   // K_j, V_j consumed before tile j+2 overwrites them
    }
    cp_wait<0>();
    store_frag_acc<DP / 8>(gq + bp.base, C, q0 + warp * 16, L, D, scale, dq, lane);
}

// ---- backward: dK and/or dV -----------------------------------------------------------------
// One block per (item, head, 64 keys), looping over query tiles of BQ; warp w owns keys
// 16w..16w+15. Transposed products (keys as rows): S^T = K Q^T, P^T = exp2(S^T - lse_log2[col]);
//   MODE & KV_DV: dV += P^T dO
//   MODE & KV_DK: dP^T = V dO^T, dS^T = P^T (dP^T - delta[col]), dK += dS^T Q   (times scale)
// At DP = 256 one 16 x DP fp32 accumulator per warp is all the registers allow, so dK and dV
// are separate launches there (the dV pass recomputes S^T); at DP <= 128 one launch does both.
constexpr int KV_DV = 1, KV_DK = 2;
template <int DP, int BQ, int MODE>
__global__ void __launch_bounds__(NT)
tc_dkv_k(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *dout, const float *lse,
         const float *delta, uint16_t *gk, uint16_t *gv, int L, int H, int D, float scale, float scale_log2, int ntiles) {
    constexpr bool DK = (MODE & KV_DK) != 0, DV = (MODE & KV_DV) != 0;
    constexpr int S = DP + PAD;
    extern __shared__ uint4 tc_smem[];
    uint16_t *Ks = reinterpret_cast<uint16_t *>(tc_smem);   // [BKV][S]
    uint16_t *Vs = Ks + BKV * S;                             // [BKV][S] (dK only)
    uint16_t *Qs = Vs + BKV * S;                             // [2][BQ][S]
    uint16_t *dOs = Qs + 2 * BQ * S;                         // [2][BQ][S]
    float *lse_s = reinterpret_cast<float *>(dOs + 2 * BQ * S);   // [2][BQ] log2 units
    float *del_s = lse_s + 2 * BQ;                                // [2][BQ]
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int k0 = bp.tile * BKV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3;
    const uint16_t *qb = q + bp.base, *db = dout + bp.base;
    const float *lse_bh = lse + bp.bh * L, *del_bh = delta + bp.bh * L;
    const int nq = (L + BQ - 1) / BQ;

    load_tile<BKV, DP>(Ks, k + bp.base, C, k0, L, D);
    if (DK) load_tile<BKV, DP>(Vs, v + bp.base, C, k0, L, D);
    load_tile<BQ, DP>(Qs, qb, C, 0, L, D);
    load_tile<BQ, DP>(dOs, db, C, 0, L, D);
    cp_commit();
    for (int i = threadIdx.x; i < BQ; i += NT) {
        lse_s[i] = i < L ? lse_bh[i] * kLog2e : 0.0f;
        del_s[i] = i < L ? del_bh[i] : 0.0f;
    }

    float dk_acc[DP / 8][4], dv_acc[DP / 8][4];   // the unused one is dead code
    zero(dk_acc);
    zero(dv_acc);
    const uint32_t k_addr = smem_u32(Ks + warp * 16 * S), v_addr = smem_u32(Vs + warp * 16 * S);
    for (int j = 0; j < nq; j++) {
        const int cur = j & 1, nxt = cur ^ 1;
        const int qn = (j + 1) * BQ;
        if (j + 1 < nq) {
            load_tile<BQ, DP>(Qs + nxt * BQ * S, qb, C, qn, L, D);
            load_tile<BQ, DP>(dOs + nxt * BQ * S, db, C, qn, L, D);
            for (int i = threadIdx.x; i < BQ; i += NT) {
                lse_s[nxt * BQ + i] = qn + i < L ? lse_bh[qn + i] * kLog2e : 0.0f;
                del_s[nxt * BQ + i] = qn + i < L ? del_bh[qn + i] : 0.0f;
            }
        }
        cp_commit();
        cp_wait<1>();   // tile j (and K, V) landed
        __syncthreads();
        const float *ls = lse_s + cur * BQ, *ds = del_s + cur * BQ;
        float p[BQ / 8][4];
        zero(p);
        warp_abt<BQ / 8, DP, S>(p, k_addr, smem_u32(Qs + cur * BQ * S), lane);
#pragma unroll
        for (int n = 0; n < BQ / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int col = n * 8 + 2 * t + (e & 1);
                // Query rows past L must add nothing.
                p[n][e] = j * BQ + col < L ? exp2f(p[n][e] * scale_log2 - ls[col]) : 0.0f;
            }
        if (DV) warp_ab<BQ / 8, DP / 8, S>(dv_acc, p, smem_u32(dOs + cur * BQ * S), lane);
        if (DK) {
            float dp[BQ / 8][4];
            zero(dp);
            warp_abt<BQ / 8, DP, S>(dp, v_addr, smem_u32(dOs + cur * BQ * S), lane);
#pragma unroll
            for (int n = 0; n < BQ / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) dp[n][e] = p[n][e] * (dp[n][e] - ds[n * 8 + 2 * t + (e & 1)]);
            warp_ab<BQ / 8, DP / 8, S>(dk_acc, dp, smem_u32(Qs + cur * BQ * S), lane);
        }
        __syncthreads();   // tile j consumed before tile j+2 overwrites its buffers
    }
    cp_wait<0>();
    // dK then dV by the same lanes at the same positions: exact when dk and dv are one buffer.
    if (DK) store_frag_acc<DP / 8>(gk + bp.base, C, k0 + warp * 16, L, D, scale, dk_acc, lane);
    if (DV) store_frag_acc<DP / 8>(gv + bp.base, C, k0 + warp * 16, L, D, 1.0f, dv_acc, lane);
}

// ---- backward, one kernel per role with P and dS in shared memory (the default) -------------
// What limits the two kernels above (DDX_ATTN_BWD_V1=1): at DP = 256 a warp's 16 x DP fp32 accumulator is 128
// registers, so dK and dV are two launches (S^T = K Q^T computed three times over the dK, dV
// and dQ launches: 16 L^2 d flops per head for the 10 the math needs), and the dK/dV block's
// 136 KB of shared memory with its 4 warps leaves one warp per scheduler to hide every
// ldmatrix -> mma and exp latency. These (the default) split each
// warp's OUTPUT columns instead: a block is 4 row groups x CG column groups of warps. Per
// streamed tile every warp computes the scores of its 16 rows against BC / CG of the tile's
// columns (all of the head dim), writes P and dS (bf16, exactly the values the kernels above feed their mma)
// to shared memory, and after one barrier multiplies its 16 rows of them by its DP / CG output
// columns of the tile. Each score is computed once per launch, dK and dV come from one launch
// at every DP (14 L^2 d flops per head with the dQ launch), and a block holds 4 x CG warps (16
// at DP = 256, two 8-warp blocks per SM at DP = 128). One kernel, two roles:
//   KV (one block per 64 keys, streaming queries): F1 = K, F2 = V, X1 = Q, X2 = dO,
//       S^T = K Q^T, P^T = exp2(scale_log2 S^T - lse2[col]), dP^T = V dO^T,
//       dS^T = P^T (dP^T - delta[col]), dK += scale dS^T Q, dV += P^T dO
//   dQ (one block per 64 queries, streaming keys): F1 = Q, F2 = dO, X1 = K, X2 = V,
//       P = exp2(scale_log2 Q K^T - lse2[row]), dS = P (dO V^T - delta[row]), dQ += scale dS K
// Same rounding and summation order as the kernels above (P and dS to bf16 before their products, fp32
// everywhere else; bit-identical in a host emulation), except exp2 = ex2.approx as in the single-buffer
// forward (2 ulp); every grad element is still owned by one lane that sums it in a fixed order.
template <int DP> struct Bwd2Cfg {
    static constexpr int CG = DP >= 256 ? 4 : 2;      // column groups
    static constexpr int NTH = 128 * CG;              // threads per block
    static constexpr int BR = 64;                     // fixed rows per block: 4 row groups x 16
    static constexpr int BC = DP >= 256 ? 64 : 32;    // streamed rows per tile
    static constexpr int QW = BC / CG;                // score columns per warp
    static constexpr int CW = DP / CG;                // output columns per warp
    // Registers: 2 x CW / 2 accumulators (KV) + 16 score regs per lane; ptxas caps them at
    // 65536 / (NTH * MINB): 128 at DP >= 128, 85 below (no spills at these; 64 spills at 32).
    static constexpr int MINB = DP >= 256 ? 1 : DP == 128 ? 2 : 3;
    static constexpr int S = DP + PAD, SP = BC + PAD;   // SP * 2 bytes: an odd multiple of 16
    static constexpr size_t tiles = (size_t)(2 * BR + 4 * BC) * S * 2;   // F1, F2, 2 x X1, 2 x X2
    static constexpr size_t smem_kv = tiles + (size_t)2 * BR * SP * 2 + 4 * BC * sizeof(float);
    static constexpr size_t smem_dq = tiles + (size_t)BR * SP * 2;
    static_assert(QW == 16 && CW % 16 == 0 && BC % 16 == 0, "bad Bwd2Cfg");
};

// dst[r][c] = src[(row0 + r) * C + c] for r < ROWS, c < DP (zero past L and past D), by NTH
// threads. Same rules as load_tile.
template <int ROWS, int DP, int NTH>
__device__ __forceinline__ void load_rows(uint16_t *dst, const uint16_t *src, int64_t C, int row0, int L, int D) {
    constexpr int CH = DP / 8, S = DP + PAD;
#pragma unroll 1
    for (int i = (int)threadIdx.x; i < ROWS * CH; i += NTH) {
        const int r = i / CH, c = (i % CH) * 8;
        const bool ok = row0 + r < L && c < D;
        cp_async16(smem_u32(dst + r * S + c), ok ? src + (int64_t)(row0 + r) * C + c : src, ok);
    }
}

// acc[16 x 8*NN8] += A[16][16*K16] . B[16*K16][8*NN8], both from shared memory, row-major with
// strides SA and SB (A: the warp's 16 rows; B: k-major, turned by ldmatrix.trans).
template <int K16, int NN8, int SA, int SB>
__device__ __forceinline__ void warp_ab_s(float (&acc)[NN8][4], uint32_t a_base, uint32_t b_base, int lane) {
    static_assert(NN8 % 2 == 0, "bad warp_ab_s shape");
    const int mi = lane >> 3, r = lane & 7;
    const uint32_t a_addr = a_base + (uint32_t)(((r + (mi & 1) * 8) * SA + (mi >> 1) * 8) * 2);
    const uint32_t b_addr = b_base + (uint32_t)(((r + (mi & 1) * 8) * SB + (mi >> 1) * 8) * 2);
#pragma unroll
    for (int kk = 0; kk < K16; kk++) {
        uint32_t a[4];
        ldsm4(a, a_addr + (uint32_t)(kk * 16 * 2));
#pragma unroll
        for (int n = 0; n < NN8; n += 2) {
            uint32_t b[4];
            ldsm4_t(b, b_addr + (uint32_t)((kk * 16 * SB + n * 8) * 2));
            mma16816(acc[n], a, b[0], b[1]);
            mma16816(acc[n + 1], a, b[2], b[3]);
        }
    }
}

// warp_abt for two independent products in one loop: acc1 += A1 B1^T, acc2 += A2 B2^T. Four
// accumulator chains per k step instead of two, in the written order (ldmatrix and mma are
// volatile asm: no relying on the compiler to interleave two back-to-back warp_abt calls).
template <int NT8, int K, int S>
__device__ __forceinline__ void warp_abt2(float (&acc1)[NT8][4], float (&acc2)[NT8][4], uint32_t a1_base, uint32_t b1_base,
                                          uint32_t a2_base, uint32_t b2_base, int lane) {
    static_assert(NT8 % 2 == 0 && K % 16 == 0, "bad warp_abt2 shape");
    const int mi = lane >> 3, r = lane & 7;
    const uint32_t a_off = (uint32_t)(((r + (mi & 1) * 8) * S + (mi >> 1) * 8) * 2);
    const uint32_t b_off = (uint32_t)(((r + (mi >> 1) * 8) * S + (mi & 1) * 8) * 2);
#pragma unroll
    for (int k = 0; k < K; k += 16) {
        uint32_t a1[4], a2[4];
        ldsm4(a1, a1_base + a_off + k * 2);
        ldsm4(a2, a2_base + a_off + k * 2);
#pragma unroll
        for (int n = 0; n < NT8; n += 2) {
            uint32_t b1[4], b2[4];
            ldsm4(b1, b1_base + b_off + (uint32_t)((n * 8 * S + k) * 2));
            ldsm4(b2, b2_base + b_off + (uint32_t)((n * 8 * S + k) * 2));
            mma16816(acc1[n], a1, b1[0], b1[1]);
            mma16816(acc1[n + 1], a1, b1[2], b1[3]);
            mma16816(acc2[n], a2, b2[0], b2[1]);
            mma16816(acc2[n + 1], a2, b2[2], b2[3]);
        }
    }
}

template <int DP, bool KV>
__global__ void __launch_bounds__(Bwd2Cfg<DP>::NTH, Bwd2Cfg<DP>::MINB)
tc_bwd2_k(const uint16_t *f1, const uint16_t *f2, const uint16_t *x1, const uint16_t *x2, const float *lse,
          const float *delta, uint16_t *g1, uint16_t *g2, int L, int H, int D, float scale, float scale_log2, int ntiles) {
    using F = Bwd2Cfg<DP>;
    constexpr int S = F::S, SP = F::SP, BR = F::BR, BC = F::BC, QW = F::QW, CW = F::CW, NTH = F::NTH;
    extern __shared__ uint4 tc_smem[];
    uint16_t *F1s = reinterpret_cast<uint16_t *>(tc_smem);   // [BR][S]
    uint16_t *F2s = F1s + BR * S;                             // [BR][S]
    uint16_t *X1s = F2s + BR * S;                             // [2][BC][S]
    uint16_t *X2s = X1s + 2 * BC * S;                         // [2][BC][S]
    uint16_t *dSs = X2s + 2 * BC * S;                         // [BR][SP]
    uint16_t *Ps = dSs + BR * SP;                             // [BR][SP] (KV)
    float *lse_s = reinterpret_cast<float *>(Ps + BR * SP);   // [2][BC] (KV) log2 units
    float *del_s = lse_s + 2 * BC;                            // [2][BC] (KV)
    const BlockPos bp = block_pos(ntiles, L, H, D);
    const int64_t C = (int64_t)H * D;
    const int r0 = bp.tile * BR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int rg = warp & 3, cg = warp >> 2;
    const uint16_t *x1b = x1 + bp.base, *x2b = x2 + bp.base;
    const float *lse_bh = lse + bp.bh * L, *del_bh = delta + bp.bh * L;
    const int nt = (L + BC - 1) / BC;

    load_rows<BR, DP, NTH>(F1s, f1 + bp.base, C, r0, L, D);
    load_rows<BR, DP, NTH>(F2s, f2 + bp.base, C, r0, L, D);
    load_rows<BC, DP, NTH>(X1s, x1b, C, 0, L, D);
    load_rows<BC, DP, NTH>(X2s, x2b, C, 0, L, D);
    cp_commit();
    float rl[2] = {0.0f, 0.0f}, rd[2] = {0.0f, 0.0f};   // dQ: this lane's two rows
    if (KV) {
        for (int i = threadIdx.x; i < BC; i += NTH) {
            lse_s[i] = i < L ? lse_bh[i] * kLog2e : 0.0f;
            del_s[i] = i < L ? del_bh[i] : 0.0f;
        }
    } else {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int row = r0 + rg * 16 + g + 8 * h;
            rl[h] = row < L ? lse_bh[row] * kLog2e : 0.0f;
            rd[h] = row < L ? del_bh[row] : 0.0f;
        }
    }

    float acc1[CW / 8][4], acc2[CW / 8][4];   // acc2 (dV) is dead code in the dQ role
    zero(acc1);
    zero(acc2);
    const uint32_t f1_addr = smem_u32(F1s + rg * 16 * S), f2_addr = smem_u32(F2s + rg * 16 * S);
    const uint32_t ds_addr = smem_u32(dSs + rg * 16 * SP), p_addr = smem_u32(Ps + rg * 16 * SP);
    // Two barriers per tile. The prefetch of tile j+1 goes out AFTER the first one: every warp
    // has then finished tile j-1, the last reader of the buffers (and of P / dS) it overwrites.
    for (int j = 0; j < nt; j++) {
        const int cur = j & 1, nxt = cur ^ 1, c1 = (j + 1) * BC;
        cp_wait<0>();   // tile j (and F1, F2) landed: the only group in flight
        __syncthreads();
        if (j + 1 < nt) {
            load_rows<BC, DP, NTH>(X1s + nxt * BC * S, x1b, C, c1, L, D);
            load_rows<BC, DP, NTH>(X2s + nxt * BC * S, x2b, C, c1, L, D);
            cp_commit();
            if (KV)
                for (int i = threadIdx.x; i < BC; i += NTH) {
                    lse_s[nxt * BC + i] = c1 + i < L ? lse_bh[c1 + i] * kLog2e : 0.0f;
                    del_s[nxt * BC + i] = c1 + i < L ? del_bh[c1 + i] : 0.0f;
                }
        }
        const uint16_t *X1c = X1s + cur * BC * S, *X2c = X2s + cur * BC * S;
        float s[QW / 8][4], dp[QW / 8][4];
        zero(s);
        zero(dp);
        warp_abt2<QW / 8, DP, S>(s, dp, f1_addr, smem_u32(X1c + cg * QW * S), f2_addr, smem_u32(X2c + cg * QW * S), lane);
#pragma unroll
        for (int n = 0; n < QW / 8; n++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int col = cg * QW + n * 8 + 2 * t;   // within the tile
#pragma unroll
                for (int e2 = 0; e2 < 2; e2++) {
                    const int e = 2 * h + e2;
                    const float l2 = KV ? lse_s[cur * BC + col + e2] : rl[h];
                    const float dl = KV ? del_s[cur * BC + col + e2] : rd[h];
                    // Streamed rows past L must add nothing.
                    const float p = j * BC + col + e2 < L ? fast_exp2(s[n][e] * scale_log2 - l2) : 0.0f;
                    s[n][e] = p;
                    dp[n][e] = p * (dp[n][e] - dl);
                }
                const int off = (rg * 16 + g + 8 * h) * SP + col;
                *reinterpret_cast<uint32_t *>(dSs + off) = pack_bf16(dp[n][2 * h], dp[n][2 * h + 1]);
                if (KV) *reinterpret_cast<uint32_t *>(Ps + off) = pack_bf16(s[n][2 * h], s[n][2 * h + 1]);
            }
        __syncthreads();   // the block's P / dS rows of tile j complete
        warp_ab_s<BC / 16, CW / 8, SP, S>(acc1, ds_addr, smem_u32(X1c + cg * CW), lane);
        if (KV) warp_ab_s<BC / 16, CW / 8, SP, S>(acc2, p_addr, smem_u32(X2c + cg * CW), lane);
    }
    // dK then dV by the same lanes at the same positions: exact when they are one buffer.
    const int c0 = cg * CW;
    if (g1) store_frag_acc<CW / 8>(g1 + bp.base + c0, C, r0 + rg * 16, L, D - c0, scale, acc1, lane);
    if (KV && g2) store_frag_acc<CW / 8>(g2 + bp.base + c0, C, r0 + rg * 16, L, D - c0, 1.0f, acc2, lane);
}

// ---- host side ------------------------------------------------------------------------------
int bucket(int D) { return D <= 32 ? 32 : D <= 64 ? 64 : D <= 128 ? 128 : 256; }

bool aligned16(const void *p) { return p == nullptr || ((uintptr_t)p & 15u) == 0; }

// Whether this device runs the mma.sync kernels with `smem` bytes of dynamic shared memory.
bool device_ok(size_t smem) {
    int dev = 0, major = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) return false;
    return major >= 8 && smem <= (size_t)optin;
}

// DDX_ATTN_FWD_V1=1 (any value but "0" or empty): the double-buffered forward kernel, kept as a fallback
// and for comparison. Read once per process.
bool fwd_v1() {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("DDX_ATTN_FWD_V1");
        v = e && *e && strcmp(e, "0") != 0 ? 1 : 0;
    }
    return v == 1;
}
// DDX_ATTN_FWD_MT=1: the default forward with one m16 row tile per warp at every head_dim. Read once.
bool fwd_mt1() {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("DDX_ATTN_FWD_MT");
        v = e && strcmp(e, "1") == 0 ? 1 : 0;
    }
    return v == 1;
}
template <int DP> size_t fwd2_smem() {
    return fwd_mt1() ? Fwd2Cfg<DP, 1>::smem : Fwd2Cfg<DP, fwd2_mt_default<DP>()>::smem;
}

size_t fwd_smem(int D) {
    const bool v1 = fwd_v1();
    switch (bucket(D)) {
    case 32: return v1 ? TCfg<32>::fwd_smem : fwd2_smem<32>();
    case 64: return v1 ? TCfg<64>::fwd_smem : fwd2_smem<64>();
    case 128: return v1 ? TCfg<128>::fwd_smem : fwd2_smem<128>();
    default: return v1 ? TCfg<256>::fwd_smem : fwd2_smem<256>();
    }
}
size_t bwd1_smem(int D) {
    auto mx = [](size_t a, size_t b) { return a > b ? a : b; };
    switch (bucket(D)) {
    case 32: return mx(TCfg<32>::dq_smem, TCfg<32>::kv_smem);
    case 64: return mx(TCfg<64>::dq_smem, TCfg<64>::kv_smem);
    case 128: return mx(TCfg<128>::dq_smem, TCfg<128>::kv_smem);
    default: return mx(TCfg<256>::dq_smem, TCfg<256>::kv_smem);
    }
}
size_t bwd2_smem(int D) {
    auto mx = [](size_t a, size_t b) { return a > b ? a : b; };
    switch (bucket(D)) {
    case 32: return mx(Bwd2Cfg<32>::smem_kv, Bwd2Cfg<32>::smem_dq);
    case 64: return mx(Bwd2Cfg<64>::smem_kv, Bwd2Cfg<64>::smem_dq);
    case 128: return mx(Bwd2Cfg<128>::smem_kv, Bwd2Cfg<128>::smem_dq);
    default: return mx(Bwd2Cfg<256>::smem_kv, Bwd2Cfg<256>::smem_dq);
    }
}
// DDX_ATTN_BWD_V1=1 (any value but "0" or empty): the backward kernels that recompute S per role. Read once.
bool bwd_v1_env() {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("DDX_ATTN_BWD_V1");
        v = e && *e && strcmp(e, "0") != 0 ? 1 : 0;
    }
    return v == 1;
}
// Which tensor-core backward runs at this head_dim on this device: 2, 1, or 0 (neither fits:
// the SIMT kernels). The default backward wants 217 KB at DP = 256; a device with less opt-in shared memory
// (A100: 163 KB) runs the recomputing kernels there.
int bwd_variant(int D) {
    if (!bwd_v1_env() && device_ok(bwd2_smem(D))) return 2;
    return device_ok(bwd1_smem(D)) ? 1 : 0;
}

// The shapes the tensor-core kernels take (the rest go to the SIMT kernels).
bool shape_ok(int64_t L, int D) { return D >= 8 && D <= 256 && D % 8 == 0 && L >= 1 && L <= INT_MAX - 256; }

template <typename K> cudaError_t set_smem(K kernel, size_t bytes) {
    if (bytes <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

template <int DP, int MT>
cudaError_t fwd2_launch(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int64_t N,
                        int64_t L, int heads, int D, float scale, cudaStream_t st);

template <int DP>
cudaError_t fwd_launch(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int64_t N,
                       int64_t L, int heads, int D, float scale, cudaStream_t st) {
    int ntiles;
    unsigned blocks;
    cudaError_t e;
    if (fwd_v1()) {
        using F = TCfg<DP>;
        if (!grid_of<BM>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        auto kern = tc_fwd_k<DP, F::FWD_BN>;
        if ((e = set_smem(kern, F::fwd_smem)) != cudaSuccess) return e;
        kern<<<blocks, NT, F::fwd_smem, st>>>(q, k, v, out, lse, (int)L, heads, D, scale * kLog2e, ntiles);
        return cudaGetLastError();
    }
    return fwd_mt1() ? fwd2_launch<DP, 1>(q, k, v, out, lse, N, L, heads, D, scale, st)
                     : fwd2_launch<DP, fwd2_mt_default<DP>()>(q, k, v, out, lse, N, L, heads, D, scale, st);
}

template <int DP, int MT>
cudaError_t fwd2_launch(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int64_t N,
                        int64_t L, int heads, int D, float scale, cudaStream_t st) {
    using F = Fwd2Cfg<DP, MT>;
    int ntiles;
    unsigned blocks;
    cudaError_t e;
    if (!grid_of<F::BMR>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
    auto kern = tc_fwd2_k<DP, MT>;
    if ((e = set_smem(kern, F::smem)) != cudaSuccess) return e;
    // Several blocks per SM need the whole 228 KB as shared memory (the kernel barely uses L1:
    // cp.async.cg bypasses it). A hint; the launch works whatever the driver does with it.
    if ((e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared)) !=
        cudaSuccess)
        return e;
    kern<<<blocks, NT, F::smem, st>>>(q, k, v, out, lse, (int)L, heads, D, scale * kLog2e, ntiles);
    return cudaGetLastError();
}

template <int DP>
cudaError_t bwd_launch(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *dout, const float *lse,
                       const float *delta, uint16_t *dq, uint16_t *dk, uint16_t *dv, int64_t N, int64_t L, int heads, int D,
                       float scale, cudaStream_t st) {
    using F = TCfg<DP>;
    const float scale_log2 = scale * kLog2e;
    cudaError_t e;
    int ntiles;
    unsigned blocks;
    if (bwd_variant(D) == 2) {
        using F2 = Bwd2Cfg<DP>;
        // dK and dV (one launch), then dQ: stream order keeps aliased grads exact.
        if (dk || dv) {
            if (!grid_of<F2::BR>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
            auto kern = tc_bwd2_k<DP, true>;
            if ((e = set_smem(kern, F2::smem_kv)) != cudaSuccess) return e;
            if ((e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                                          cudaSharedmemCarveoutMaxShared)) != cudaSuccess)
                return e;
            kern<<<blocks, F2::NTH, F2::smem_kv, st>>>(k, v, q, dout, lse, delta, dk, dv, (int)L, heads, D, scale,
                                                        scale_log2, ntiles);
            if ((e = cudaGetLastError()) != cudaSuccess) return e;
        }
        if (dq) {
            if (!grid_of<F2::BR>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
            auto kern = tc_bwd2_k<DP, false>;
            if ((e = set_smem(kern, F2::smem_dq)) != cudaSuccess) return e;
            if ((e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                                          cudaSharedmemCarveoutMaxShared)) != cudaSuccess)
                return e;
            kern<<<blocks, F2::NTH, F2::smem_dq, st>>>(q, dout, k, v, lse, delta, dq, nullptr, (int)L, heads, D, scale,
                                                        scale_log2, ntiles);
            if ((e = cudaGetLastError()) != cudaSuccess) return e;
        }
        return cudaSuccess;
    }
    // dK, then dV, then dQ: stream order keeps aliased grads (k and v, or q and k, one tensor) exact.
    if (dk || dv) {
        if (!grid_of<BKV>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        // (BOTH is only instantiated where it fits in registers.)
        constexpr int BOTH = DP <= 128 ? (KV_DK | KV_DV) : KV_DK;
        if (DP <= 128 && dk && dv) {
            auto kern = tc_dkv_k<DP, F::KV_BQ, BOTH>;
            if ((e = set_smem(kern, F::kv_smem)) != cudaSuccess) return e;
            kern<<<blocks, NT, F::kv_smem, st>>>(q, k, v, dout, lse, delta, dk, dv, (int)L, heads, D, scale, scale_log2,
                                                  ntiles);
            if ((e = cudaGetLastError()) != cudaSuccess) return e;
        } else {
            if (dk) {
                auto kern = tc_dkv_k<DP, F::KV_BQ, KV_DK>;
                if ((e = set_smem(kern, F::kv_smem)) != cudaSuccess) return e;
                kern<<<blocks, NT, F::kv_smem, st>>>(q, k, v, dout, lse, delta, dk, nullptr, (int)L, heads, D, scale,
                                                      scale_log2, ntiles);
                if ((e = cudaGetLastError()) != cudaSuccess) return e;
            }
            if (dv) {
                auto kern = tc_dkv_k<DP, F::KV_BQ, KV_DV>;
                if ((e = set_smem(kern, F::kv_smem)) != cudaSuccess) return e;
                kern<<<blocks, NT, F::kv_smem, st>>>(q, k, v, dout, lse, delta, nullptr, dv, (int)L, heads, D, scale,
                                                      scale_log2, ntiles);
                if ((e = cudaGetLastError()) != cudaSuccess) return e;
            }
        }
    }
    if (dq) {
        if (!grid_of<BM>(N, L, heads, &ntiles, &blocks)) return cudaErrorInvalidValue;
        auto kern = tc_dq_k<DP, F::DQ_BN>;
        if ((e = set_smem(kern, F::dq_smem)) != cudaSuccess) return e;
        kern<<<blocks, NT, F::dq_smem, st>>>(q, k, v, dout, lse, delta, dq, (int)L, heads, D, scale, scale_log2, ntiles);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    return cudaSuccess;
}

}  // namespace tc

// Whether the bf16 forward / backward takes the tensor-core kernels.
bool tc_fwd_ok(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *out, int64_t L, int D) {
    return tc::shape_ok(L, D) && tc::aligned16(q) && tc::aligned16(k) && tc::aligned16(v) && tc::aligned16(out) &&
           tc::device_ok(tc::fwd_smem(D));
}
bool tc_bwd_ok(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *dout, const uint16_t *dq,
               const uint16_t *dk, const uint16_t *dv, int64_t L, int D) {
    return tc::shape_ok(L, D) && tc::aligned16(q) && tc::aligned16(k) && tc::aligned16(v) && tc::aligned16(dout) &&
           tc::aligned16(dq) && tc::aligned16(dk) && tc::aligned16(dv) && tc::bwd_variant(D) != 0;
}

}  // namespace

extern "C" size_t ddx_k_attention_smem_bytes(int head_dim) {
    const int dp = pad_of(round4(head_dim));
    switch (bucket_of(head_dim)) {
    case 32: return smem_bytes_at<32>(dp);
    case 64: return smem_bytes_at<64>(dp);
    case 128: return smem_bytes_at<128>(dp);
    case 256: return smem_bytes_at<256>(dp);
    case 512: return smem_bytes_at<512>(dp);
    default: return 0;
    }
}

extern "C" int ddx_k_attention_fwd_f32(const float *q, const float *k, const float *v, float *out, float *lse, int64_t N,
                                       int64_t L, int heads, int head_dim, float scale, void *stream) {
    return fwd_any(q, k, v, out, lse, N, L, heads, head_dim, scale, stream);
}

extern "C" int ddx_k_attention_fwd_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse,
                                        int64_t N, int64_t L, int heads, int head_dim, float scale, void *stream) {
    if (!shape_ok(N, L, heads, head_dim) || N == 0 || L == 0 || !tc_fwd_ok(q, k, v, out, L, head_dim))
        return fwd_any(q, k, v, out, lse, N, L, heads, head_dim, scale, stream);
    cudaStream_t st = (cudaStream_t)stream;
    switch (tc::bucket(head_dim)) {
    case 32: return (int)tc::fwd_launch<32>(q, k, v, out, lse, N, L, heads, head_dim, scale, st);
    case 64: return (int)tc::fwd_launch<64>(q, k, v, out, lse, N, L, heads, head_dim, scale, st);
    case 128: return (int)tc::fwd_launch<128>(q, k, v, out, lse, N, L, heads, head_dim, scale, st);
    default: return (int)tc::fwd_launch<256>(q, k, v, out, lse, N, L, heads, head_dim, scale, st);
    }
}

extern "C" int ddx_k_attention_bwd_f32(const float *q, const float *k, const float *v, const float *out, const float *dout,
                                       const float *lse, float *delta, float *dq, float *dk, float *dv, int64_t N, int64_t L,
                                       int heads, int head_dim, float scale, void *stream) {
    return bwd_any(q, k, v, out, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, stream);
}

extern "C" int ddx_k_attention_bwd_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *out,
                                        const uint16_t *dout, const float *lse, float *delta, uint16_t *dq, uint16_t *dk,
                                        uint16_t *dv, int64_t N, int64_t L, int heads, int head_dim, float scale,
                                        void *stream) {
    if (!shape_ok(N, L, heads, head_dim) || N == 0 || L == 0 || (!dq && !dk && !dv) ||
        !tc_bwd_ok(q, k, v, dout, dq, dk, dv, L, head_dim))
        return bwd_any(q, k, v, out, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, stream);
    cudaStream_t st = (cudaStream_t)stream;
    const cudaError_t e = delta_launch(out, dout, delta, N, L, heads, head_dim, st);
    if (e != cudaSuccess) return (int)e;
    switch (tc::bucket(head_dim)) {
    case 32: return (int)tc::bwd_launch<32>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, st);
    case 64: return (int)tc::bwd_launch<64>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, st);
    case 128: return (int)tc::bwd_launch<128>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, st);
    default: return (int)tc::bwd_launch<256>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, st);
    }
}
