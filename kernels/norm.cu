// Norm-family kernels (see norm.h for the launcher contract).
//
// GroupNorm on NHWC data: a group is cg = C / G consecutive channels repeated over the S
// pixels of one batch item, so its elements are strided in memory. Rather than one block per
// (n, g), which would read short runs of cg channels and leave most SMs idle at the U-Net's
// N * G = 64 groups, every kernel tiles an item as [S rows, C columns]: a block owns a chunk
// of rows and a tile of channel columns (16-byte or 8-byte vectors of 4 channels), each thread
// one column vector walked down the rows, so a warp reads whole contiguous rows. Per-channel
// partial statistics (fp32 Welford, or fp32 sums in backward) go to scratch per (n, chunk),
// and a second tiny kernel folds them per group in a fixed order: deterministic, and one read
// of x for the statistics. The normalise pass and dx pass are then pure streaming passes.
// Those tiled kernels are the fallback: on sm_90, items that fit the shared memory of a
// thread-block cluster take a single-pass path (one cluster per item, x read once; see
// "group_norm, single pass" below), unless DDX_GN_CLUSTER=0.
#include "kernels/norm.h"

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "kernels/common.cuh"

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sigmoidf_(float a) { return 1.0f / (1.0f + expf(-a)); }

// Chan et al.'s merge of two (count, mean, M2) summaries; either may be empty.
template <typename F> __device__ __forceinline__ void welford_merge(F &na, F &ma, F &m2a, F nb, F mb, F m2b) {
    if (nb == F(0)) return;
    if (na == F(0)) {
        na = nb;
        ma = mb;
        m2a = m2b;
        return;
    }
    const F n = na + nb, wb = nb / n, d = mb - ma;
    ma += d * wb;
    m2a += m2b + d * d * na * wb;
    na = n;
}

// ---- group_norm geometry ------------------------------------------------------------------
// An item is [S rows, C channels]; rows are cut into P chunks of `rows` (the last shorter),
// channels into `tiles` tiles of blockDim.x column vectors of V channels. Block b is
// (n, tile, p) with p fastest. blockDim.x * blockDim.y == kThreads.
struct GnArgs {
    int64_t S, C, G, cg;
    int64_t rows, P, tiles;
    int ow;   // backward: write dx instead of adding into it
};

struct BlockPos {
    int64_t n, p, col;   // col: this thread's column vector (may be >= C / V: idle)
    int64_t r0, r1;      // this block's rows [r0, r1)
};

__device__ __forceinline__ BlockPos block_pos(const GnArgs &a) {
    int64_t b = blockIdx.x;
    BlockPos q;
    q.p = b % a.P;
    b /= a.P;
    const int64_t tile = b % a.tiles;
    q.n = b / a.tiles;
    q.col = tile * blockDim.x + threadIdx.x;
    q.r0 = q.p * a.rows;
    q.r1 = q.r0 + a.rows < a.S ? q.r0 + a.rows : a.S;
    return q;
}

// Rows of [r0, r1) that thread row ty visits with stride blockDim.y.
__device__ __forceinline__ int64_t rows_of(int64_t len, int ty) {
    return ty < len ? (len - ty + blockDim.y - 1) / blockDim.y : 0;
}

// The fused time-embedding add (ADD): what is normalised is z = x + add[n, c], add [N, C] of x's
// type, formed in fp32 as each element is read (never rounded to T, never stored). av holds
// this thread's V channel values of add; without ADD nothing is read or added (not even +0,
// which would turn -0 into +0), so those instantiations compile to the code they always had.
template <int V, typename T, bool ADD>
__device__ __forceinline__ void add_const(float (&av)[V], const T *add, const GnArgs &a, int64_t n, int64_t col) {
    if constexpr (ADD) {
#pragma unroll
        for (int k = 0; k < V; k++) av[k] = to_f(add[n * a.C + col * V + k]);
    }
}

template <int V, bool ADD> __device__ __forceinline__ void add_to(float (&v)[V], const float (&av)[V]) {
    if constexpr (ADD) {
#pragma unroll
        for (int k = 0; k < V; k++) v[k] += av[k];
    }
}

// Statistics, pass 1: per-channel Welford (mean, M2) over this block's rows, merged over the
// block's thread rows in order; count = the chunk's row count, implied by p.
template <int V, typename T, bool ADD = false>
__global__ void __launch_bounds__(kThreads) gn_stats_k(float2 *part, const T *x, const T *add, GnArgs a) {
    __shared__ float sh_mean[kThreads * V], sh_m2[kThreads * V];
    const BlockPos q = block_pos(a);
    const int64_t ncols = a.C / V;
    const bool active = q.col < ncols;
    float mean[V], m2[V], cnt = 0.0f;
#pragma unroll
    for (int k = 0; k < V; k++) mean[k] = m2[k] = 0.0f;
    if (active) {
        const T *xp = x + q.n * a.S * a.C + q.col * V;
        float av[V];
        add_const<V, T, ADD>(av, add, a, q.n, q.col);
        for (int64_t r = q.r0 + threadIdx.y; r < q.r1; r += blockDim.y) {
            float v[V];
            load<V>(xp + r * a.C, v);
            add_to<V, ADD>(v, av);
            cnt += 1.0f;
            const float inv = 1.0f / cnt;
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float d = v[k] - mean[k];
                mean[k] += d * inv;
                m2[k] += d * (v[k] - mean[k]);
            }
        }
    }
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
#pragma unroll
    for (int k = 0; k < V; k++) {
        sh_mean[tid * V + k] = mean[k];
        sh_m2[tid * V + k] = m2[k];
    }
    __syncthreads();
    if (threadIdx.y != 0 || !active) return;
    const int64_t len = q.r1 - q.r0;
    for (int t = 1; t < (int)blockDim.y; t++) {
        const float nb = (float)rows_of(len, t);
        if (nb == 0.0f) break;   // counts never grow with t
        const int o = (t * blockDim.x + threadIdx.x) * V;
#pragma unroll
        for (int k = 0; k < V; k++) {
            float na = cnt;
            welford_merge(na, mean[k], m2[k], nb, sh_mean[o + k], sh_m2[o + k]);
        }
        cnt += nb;
    }
    float2 *pp = part + (q.n * a.P + q.p) * a.C + q.col * V;
#pragma unroll
    for (int k = 0; k < V; k++) pp[k] = make_float2(mean[k], m2[k]);
}

// Statistics, pass 2: one warp per (n, g) folds the P * cg channel partials in double, lanes
// over a fixed interleave, then a fixed shuffle tree; lane 0 writes mean and rstd.
__global__ void __launch_bounds__(kThreads) gn_stats_final_k(float *mean, float *rstd, const float2 *part, GnArgs a,
                                                             int64_t NG, double eps) {
    const int64_t w = global_tid() / 32;
    const int lane = threadIdx.x & 31;
    if (w >= NG) return;   // uniform across the warp
    const int64_t n = w / a.G, g = w % a.G, items = a.P * a.cg;
    double cnt = 0.0, m = 0.0, m2 = 0.0;
    for (int64_t j = lane; j < items; j += 32) {
        const int64_t p = j / a.cg, k = j % a.cg;
        const float2 v = part[(n * a.P + p) * a.C + g * a.cg + k];
        const int64_t r0 = p * a.rows;
        const double nb = (double)(r0 + a.rows < a.S ? a.rows : a.S - r0);
        welford_merge(cnt, m, m2, nb, (double)v.x, (double)v.y);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const double nb = __shfl_down_sync(0xffffffffu, cnt, off);
        const double mb = __shfl_down_sync(0xffffffffu, m, off);
        const double m2b = __shfl_down_sync(0xffffffffu, m2, off);
        if (lane < off) welford_merge(cnt, m, m2, nb, mb, m2b);
    }
    if (lane == 0) {
        const double var = m2 > 0.0 ? m2 / cnt : 0.0;   // biased, as torch.nn.GroupNorm
        mean[w] = (float)m;
        rstd[w] = (float)(1.0 / sqrt(var + eps));
    }
}

// Per-thread channel constants: the statistics of each channel's group and its affine.
template <int V, typename TG> struct ChanConst {
    float mean[V], rstd[V], gamma[V], beta[V];
};

template <int V, typename TG>
__device__ __forceinline__ void chan_const(ChanConst<V, TG> &cc, const TG *gamma, const TG *beta, const float *mean,
                                           const float *rstd, const GnArgs &a, int64_t n, int64_t col) {
#pragma unroll
    for (int k = 0; k < V; k++) {
        const int64_t c = col * V + k, gi = n * a.G + c / a.cg;
        cc.mean[k] = mean[gi];
        cc.rstd[k] = rstd[gi];
        cc.gamma[k] = to_f(gamma[c]);
        cc.beta[k] = to_f(beta[c]);
    }
}

// Normalise + affine (+ SiLU): y = a or a * sigmoid(a), a = (x - mean) * (rstd * gamma) + beta,
// the same operation order as the CPU reference.
template <int V, typename T, typename TG, bool SILU, bool ADD = false>
__global__ void __launch_bounds__(kThreads) gn_apply_k(T *y, const T *x, const T *add, const TG *gamma, const TG *beta,
                                                       const float *mean, const float *rstd, GnArgs a) {
    const BlockPos q = block_pos(a);
    if (q.col >= a.C / V) return;
    ChanConst<V, TG> cc;
    chan_const<V, TG>(cc, gamma, beta, mean, rstd, a, q.n, q.col);
    float scale[V];
#pragma unroll
    for (int k = 0; k < V; k++) scale[k] = cc.rstd[k] * cc.gamma[k];
    const int64_t base = q.n * a.S * a.C + q.col * V;
    for (int64_t r = q.r0 + threadIdx.y; r < q.r1; r += blockDim.y) {
        float v[V];
        load<V>(x + base + r * a.C, v);
        if constexpr (ADD) {
            // Re-read per row (an L1 hit): held in a register across the rows, ptxas spilled
            // the bf16 V=1 instantiation.
            float ad[V];
            add_const<V, T, ADD>(ad, add, a, q.n, q.col);
            add_to<V, ADD>(v, ad);
        }
#pragma unroll
        for (int k = 0; k < V; k++) {
            const float av = (v[k] - cc.mean[k]) * scale[k] + cc.beta[k];
            v[k] = SILU ? av * sigmoidf_(av) : av;
        }
        store<V>(y + base + r * a.C, v);
    }
}

// da = dy * silu'(a) with a recomputed, or dy itself.
template <bool SILU> __device__ __forceinline__ float gn_da(float dy, float xh, float gamma, float beta) {
    if (!SILU) return dy;
    const float av = xh * gamma + beta, s = sigmoidf_(av);
    return dy * (s * (1.0f + av * (1.0f - s)));
}

// Backward, pass 1: per-channel sums of da and da * xhat over this block's rows, folded over
// the block's thread rows in order.
template <int V, typename T, typename TG, bool SILU, bool ADD = false>
__global__ void __launch_bounds__(kThreads) gn_bwd_part_k(float2 *part, const T *x, const T *add, const T *dy,
                                                          const TG *gamma, const TG *beta, const float *mean,
                                                          const float *rstd, GnArgs a) {
    __shared__ float sh_db[kThreads * V], sh_dg[kThreads * V];
    const BlockPos q = block_pos(a);
    const bool active = q.col < a.C / V;
    float sdb[V], sdg[V];
#pragma unroll
    for (int k = 0; k < V; k++) sdb[k] = sdg[k] = 0.0f;
    if (active) {
        ChanConst<V, TG> cc;
        chan_const<V, TG>(cc, gamma, beta, mean, rstd, a, q.n, q.col);
        float av[V];
        add_const<V, T, ADD>(av, add, a, q.n, q.col);
        const int64_t base = q.n * a.S * a.C + q.col * V;
        for (int64_t r = q.r0 + threadIdx.y; r < q.r1; r += blockDim.y) {
            float xv[V], dv[V];
            load<V>(x + base + r * a.C, xv);
            add_to<V, ADD>(xv, av);
            load<V>(dy + base + r * a.C, dv);
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float xh = (xv[k] - cc.mean[k]) * cc.rstd[k];
                const float da = gn_da<SILU>(dv[k], xh, cc.gamma[k], cc.beta[k]);
                sdb[k] += da;
                sdg[k] += da * xh;
            }
        }
    }
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
#pragma unroll
    for (int k = 0; k < V; k++) {
        sh_db[tid * V + k] = sdb[k];
        sh_dg[tid * V + k] = sdg[k];
    }
    __syncthreads();
    if (threadIdx.y != 0 || !active) return;
    for (int t = 1; t < (int)blockDim.y; t++) {
        const int o = (t * blockDim.x + threadIdx.x) * V;
#pragma unroll
        for (int k = 0; k < V; k++) {
            sdb[k] += sh_db[o + k];
            sdg[k] += sh_dg[o + k];
        }
    }
    float2 *pp = part + (q.n * a.P + q.p) * a.C + q.col * V;
#pragma unroll
    for (int k = 0; k < V; k++) pp[k] = make_float2(sdb[k], sdg[k]);
}

// Backward, pass 2: per (n, c) totals over the P chunks, in double and chunk order.
__global__ void __launch_bounds__(kThreads) gn_bwd_nc_k(double2 *nc, const float2 *part, GnArgs a, int64_t NC) {
    for (int64_t t = global_tid(); t < NC; t += grid_stride()) {
        const int64_t n = t / a.C, c = t % a.C;
        double sb = 0.0, sg = 0.0;
        for (int64_t p = 0; p < a.P; p++) {
            const float2 v = part[(n * a.P + p) * a.C + c];
            sb += v.x;
            sg += v.y;
        }
        nc[t] = make_double2(sb, sg);
    }
}

// Backward, pass 3. Tasks [0, C): dgamma[c] += sum_n dgn, dbeta[c] += sum_n dbn (batch order).
// Tasks [C, C + N*G): the group means m1 = mean(da * gamma), m2 = mean(da * gamma * xhat).
template <typename TG>
__global__ void __launch_bounds__(kThreads) gn_bwd_final_k(float2 *mm, TG *dgamma, TG *dbeta, const double2 *nc,
                                                           const TG *gamma, GnArgs a, int64_t N, double count) {
    const int64_t tasks = a.C + N * a.G;
    for (int64_t t = global_tid(); t < tasks; t += grid_stride()) {
        if (t < a.C) {
            if (!dgamma && !dbeta) continue;
            double sb = 0.0, sg = 0.0;
            for (int64_t n = 0; n < N; n++) {
                const double2 v = nc[n * a.C + t];
                sb += v.x;
                sg += v.y;
            }
            if (dgamma) dgamma[t] = from_f<TG>(to_f(dgamma[t]) + (float)sg);
            if (dbeta) dbeta[t] = from_f<TG>(to_f(dbeta[t]) + (float)sb);
        } else {
            if (!mm) continue;
            const int64_t u = t - a.C, n = u / a.G, g = u % a.G;
            double s1 = 0.0, s2 = 0.0;
            for (int64_t k = 0; k < a.cg; k++) {
                const int64_t c = g * a.cg + k;
                const double gm = (double)to_f(gamma[c]);
                const double2 v = nc[n * a.C + c];
                s1 += gm * v.x;
                s2 += gm * v.y;
            }
            mm[u] = make_float2((float)(s1 / count), (float)(s2 / count));
        }
    }
}

// Backward, pass 4: dx += rstd * (da * gamma - m1 - xhat * m2).
template <int V, typename T, typename TG, bool SILU>
__global__ void __launch_bounds__(kThreads) gn_bwd_dx_k(T *dx, const T *x, const T *dy, const TG *gamma,
                                                        const TG *beta, const float *mean, const float *rstd,
                                                        const float2 *mm, GnArgs a) {
    const BlockPos q = block_pos(a);
    if (q.col >= a.C / V) return;
    ChanConst<V, TG> cc;
    chan_const<V, TG>(cc, gamma, beta, mean, rstd, a, q.n, q.col);
    float m1[V], m2[V];
#pragma unroll
    for (int k = 0; k < V; k++) {
        const float2 v = mm[q.n * a.G + (q.col * V + k) / a.cg];
        m1[k] = v.x;
        m2[k] = v.y;
    }
    const int64_t base = q.n * a.S * a.C + q.col * V;
    for (int64_t r = q.r0 + threadIdx.y; r < q.r1; r += blockDim.y) {
        const int64_t o = base + r * a.C;
        float xv[V], dv[V], gv[V];
        load<V>(x + o, xv);
        load<V>(dy + o, dv);
        if (a.ow) {
#pragma unroll
            for (int k = 0; k < V; k++) gv[k] = 0.0f;
        } else {
            load<V>(dx + o, gv);
        }
#pragma unroll
        for (int k = 0; k < V; k++) {
            const float xh = (xv[k] - cc.mean[k]) * cc.rstd[k];
            const float da = gn_da<SILU>(dv[k], xh, cc.gamma[k], cc.beta[k]);
            gv[k] += cc.rstd[k] * (da * cc.gamma[k] - m1[k] - xh * m2[k]);
        }
        store<V>(dx + o, gv);
    }
}

// Backward, pass 4 with the fused add: dz = rstd * (da * gamma - m1 - xhat * m2) as in
// gn_bwd_dx_k, added into dx when there is one (dx may be NULL: add alone wants a grad), and
// summed per channel over this block's rows (thread rows folded in order through shared
// memory, as gn_bwd_part_k) into dpart [N, P, C]; gn_dadd_k folds the P chunks.
template <int V, typename T, typename TG, bool SILU>
__global__ void __launch_bounds__(kThreads) gn_bwd_dz_add_k(T *dx, float *dpart, const T *x, const T *add, const T *dy,
                                                            const TG *gamma, const TG *beta, const float *mean,
                                                            const float *rstd, const float2 *mm, GnArgs a) {
    __shared__ float sh_dz[kThreads * V];
    const BlockPos q = block_pos(a);
    const bool active = q.col < a.C / V;
    float sdz[V];
#pragma unroll
    for (int k = 0; k < V; k++) sdz[k] = 0.0f;
    if (active) {
        ChanConst<V, TG> cc;
        chan_const<V, TG>(cc, gamma, beta, mean, rstd, a, q.n, q.col);
        float av[V], m1[V], m2[V];
        add_const<V, T, true>(av, add, a, q.n, q.col);
#pragma unroll
        for (int k = 0; k < V; k++) {
            const float2 v = mm[q.n * a.G + (q.col * V + k) / a.cg];
            m1[k] = v.x;
            m2[k] = v.y;
        }
        const int64_t base = q.n * a.S * a.C + q.col * V;
        for (int64_t r = q.r0 + threadIdx.y; r < q.r1; r += blockDim.y) {
            const int64_t o = base + r * a.C;
            float xv[V], dv[V], gv[V];
            load<V>(x + o, xv);
            add_to<V, true>(xv, av);
            load<V>(dy + o, dv);
            if (!dx || a.ow) {
#pragma unroll
                for (int k = 0; k < V; k++) gv[k] = 0.0f;
            } else {
                load<V>(dx + o, gv);
            }
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float xh = (xv[k] - cc.mean[k]) * cc.rstd[k];
                const float da = gn_da<SILU>(dv[k], xh, cc.gamma[k], cc.beta[k]);
                const float dz = cc.rstd[k] * (da * cc.gamma[k] - m1[k] - xh * m2[k]);
                gv[k] += dz;
                sdz[k] += dz;
            }
            if (dx) store<V>(dx + o, gv);
        }
    }
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
#pragma unroll
    for (int k = 0; k < V; k++) sh_dz[tid * V + k] = sdz[k];
    __syncthreads();
    if (threadIdx.y != 0 || !active) return;
    for (int t = 1; t < (int)blockDim.y; t++) {
        const int o = (t * blockDim.x + threadIdx.x) * V;
#pragma unroll
        for (int k = 0; k < V; k++) sdz[k] += sh_dz[o + k];
    }
    float *pp = dpart + (q.n * a.P + q.p) * a.C + q.col * V;
#pragma unroll
    for (int k = 0; k < V; k++) pp[k] = sdz[k];
}

// dadd[n, c] += the P chunk sums of dz, in double and chunk order (deterministic).
template <typename T>
__global__ void __launch_bounds__(kThreads) gn_dadd_k(T *dadd, const float *dpart, GnArgs a, int64_t NC) {
    for (int64_t t = global_tid(); t < NC; t += grid_stride()) {
        const int64_t n = t / a.C, c = t % a.C;
        double s = 0.0;
        for (int64_t p = 0; p < a.P; p++) s += dpart[(n * a.P + p) * a.C + c];
        dadd[t] = from_f<T>(to_f(dadd[t]) + (float)s);
    }
}

// ---- group_norm, single pass: one thread-block cluster per batch item --------------------
// The tiled kernels above read x twice (statistics, then normalise) and backward reads x and
// dy twice. Here the cl blocks of a cluster split item n's rows: block `rank` copies rows
// [rank * R, rank * R + len) of x (and dy) into shared memory once, reduces them to per-group
// partials in a fixed order, publishes those in its shared memory, and after a cluster barrier
// every block merges all ranks' partials in rank order through distributed shared memory
// (the same arithmetic in every block, so every block gets the same bits), then works from
// its shared copy: HBM sees one read of x (and dy) and one write of y (dx: read and write, as
// backward accumulates). Copies move 16-byte vectors (C % (16 / sizeof(T)) == 0, so a block's
// rows are whole vectors); the math works on W = 4 channels per thread whatever T is (8-byte
// bf16 vectors keep the backward's per-channel constants within the register budget).
// Threads: ncv = C / W column vectors times nty row lanes; thread t always owns column vector
// t % ncv, whose W channels may belong to several groups (cg < W, or cg not a multiple of W),
// so every per-channel value looks up its own group.
struct GnClArgs {
    int64_t S, C, G, cg;
    int64_t R;        // rows per block (the last blocks may get fewer or none)
    int ncv, nty;     // blockDim.x == ncv * nty
    float eps;        // forward
    double count;     // backward: S * cg
    int ow;           // backward: write dx instead of adding into it
};

constexpr int kGnW = 4;   // channels per thread-vector in the cluster kernels

__host__ __device__ __forceinline__ size_t gn_al16(size_t b) { return (b + 15) & ~(size_t)15; }

// Dynamic shared memory layout (byte offsets, each region 16-byte aligned). Forward:
// chunk [R, C] T, red [threads * W] f32, chan [C] f32, pmean/pm2/gmean/grstd [G] f32.
// Backward: xs, dys [R, C] T each, red [threads * W] float2, pub [C] float2, ncd [C] double2,
// mm [G] float2.
struct GnClSmem {
    size_t a, b, c, d, e, f, g, total;
};

__host__ __device__ __forceinline__ GnClSmem gn_cl_smem(int64_t R, int64_t C, int64_t G, int threads, int esize,
                                                        bool bwd) {
    const size_t chunk = gn_al16((size_t)R * (size_t)C * (size_t)esize), E = (size_t)kGnW;
    GnClSmem L;
    if (!bwd) {
        L.a = chunk;                                        // red
        L.b = L.a + gn_al16((size_t)threads * E * 4);       // chan
        L.c = L.b + gn_al16((size_t)C * 4);                 // pmean
        L.d = L.c + gn_al16((size_t)G * 4);                 // pm2
        L.e = L.d + gn_al16((size_t)G * 4);                 // gmean
        L.f = L.e + gn_al16((size_t)G * 4);                 // grstd
        L.g = L.f + gn_al16((size_t)G * 4);
        L.total = L.g;
    } else {
        L.a = chunk;                                        // dys
        L.b = L.a + chunk;                                  // red
        L.c = L.b + gn_al16((size_t)threads * E * 8);       // pub
        L.d = L.c + gn_al16((size_t)C * 8);                 // ncd
        L.e = L.d + gn_al16((size_t)C * 16);                // mm
        L.f = L.e + gn_al16((size_t)G * 8);
        L.g = L.f;
        L.total = L.f;
    }
    return L;
}

// Device code of the cluster path exists for sm_90+ only (the compute_80 PTX kernels trap).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
__device__ __forceinline__ void gn_cp16(void *smem_dst, const void *src) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(smem_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void gn_cp_wait_all() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Rows of block `rank`: [rank * R, rank * R + len), len possibly 0.
__device__ __forceinline__ int64_t gn_cl_len(const GnClArgs &a, int64_t rank) {
    const int64_t left = a.S - rank * a.R;
    return left <= 0 ? 0 : (left < a.R ? left : a.R);
}

// red[t * W + k] = v[k] (= red[ty][c] with c = cv * W + k), then chan[c] = the sum over row
// lanes ty = 0, 1, ... in that order.
template <int E>
__device__ __forceinline__ void gn_cl_fold(float *red, float *chan, const float (&v)[E], const GnClArgs &a) {
    static_assert(E == kGnW, "red is laid out for W channels per thread");
    const int t = threadIdx.x;
#pragma unroll
    for (int k = 0; k < E; k++) red[t * E + k] = v[k];
    __syncthreads();
    for (int64_t c = t; c < a.C; c += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < a.nty; j++) acc += red[j * a.C + c];
        chan[c] = acc;
    }
    __syncthreads();
}
#endif

// Forward. Per block: two passes over the shared chunk give each group's block mean and the
// M2 around it (exact two-pass, not streaming Welford), Chan-merged across ranks in double.
template <typename T, typename TG, bool SILU>
__global__ void __launch_bounds__(kThreads) gn_cl_fwd_k(T *y, float *mean, float *rstd, const T *x, const TG *gamma,
                                                        const TG *beta, GnClArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();   // the host takes this path on sm_90+ only
#else
    constexpr int E = 16 / (int)sizeof(T), W = kGnW;
    extern __shared__ __align__(16) unsigned char gn_smem[];
    namespace cg = cooperative_groups;
    const cg::cluster_group cl = cg::this_cluster();
    const int rank = (int)cl.block_rank(), ncl = (int)cl.num_blocks();
    const int64_t n = blockIdx.x / ncl;
    const int t = threadIdx.x, nthr = blockDim.x;
    const int cv = t % a.ncv, ty = t / a.ncv;
    const int64_t len = gn_cl_len(a, rank), r0 = (int64_t)rank * a.R;
    const GnClSmem L = gn_cl_smem(a.R, a.C, a.G, nthr, (int)sizeof(T), false);
    T *chunk = reinterpret_cast<T *>(gn_smem);
    float *red = reinterpret_cast<float *>(gn_smem + L.a), *chan = reinterpret_cast<float *>(gn_smem + L.b);
    float *pmean = reinterpret_cast<float *>(gn_smem + L.c), *pm2 = reinterpret_cast<float *>(gn_smem + L.d);
    float *gmean = reinterpret_cast<float *>(gn_smem + L.e), *grstd = reinterpret_cast<float *>(gn_smem + L.f);

    // The block's rows are one contiguous run of len * C elements.
    const int64_t base = (n * a.S + r0) * a.C, nvec = len * a.C / E;
    for (int64_t v = t; v < nvec; v += nthr) gn_cp16(chunk + v * E, x + base + v * E);
    gn_cp_wait_all();
    __syncthreads();

    // Pass 1: group sums -> block means.
    float s[W];
#pragma unroll
    for (int k = 0; k < W; k++) s[k] = 0.0f;
    for (int64_t r = ty; r < len; r += a.nty) {
        float v[W];
        load<W>(chunk + (r * a.ncv + cv) * W, v);
#pragma unroll
        for (int k = 0; k < W; k++) s[k] += v[k];
    }
    gn_cl_fold<W>(red, chan, s, a);
    const double nb = (double)len * (double)a.cg;
    for (int64_t g = t; g < a.G; g += nthr) {
        double acc = 0.0;
        for (int64_t j = 0; j < a.cg; j++) acc += (double)chan[g * a.cg + j];
        pmean[g] = nb > 0.0 ? (float)(acc / nb) : 0.0f;
    }
    __syncthreads();

    // Pass 2: M2 around the block mean (the float that is published).
    float m[W];
#pragma unroll
    for (int k = 0; k < W; k++) {
        m[k] = pmean[((int64_t)cv * W + k) / a.cg];
        s[k] = 0.0f;
    }
    for (int64_t r = ty; r < len; r += a.nty) {
        float v[W];
        load<W>(chunk + (r * a.ncv + cv) * W, v);
#pragma unroll
        for (int k = 0; k < W; k++) {
            const float d = v[k] - m[k];
            s[k] += d * d;
        }
    }
    gn_cl_fold<W>(red, chan, s, a);
    for (int64_t g = t; g < a.G; g += nthr) {
        double acc = 0.0;
        for (int64_t j = 0; j < a.cg; j++) acc += (double)chan[g * a.cg + j];
        pm2[g] = (float)acc;
    }

    // Every rank's (mean, M2) merged in rank order; rank 0 writes the statistics.
    cl.sync();
    for (int64_t g = t; g < a.G; g += nthr) {
        double cnt = 0.0, mu = 0.0, q2 = 0.0;
        for (int q = 0; q < ncl; q++) {
            const float *rm = cl.map_shared_rank(pmean, q), *rm2 = cl.map_shared_rank(pm2, q);
            welford_merge(cnt, mu, q2, (double)gn_cl_len(a, q) * (double)a.cg, (double)rm[g], (double)rm2[g]);
        }
        const double var = q2 > 0.0 ? q2 / cnt : 0.0;   // biased, as torch.nn.GroupNorm
        const float fm = (float)mu, fr = (float)(1.0 / sqrt(var + (double)a.eps));
        gmean[g] = fm;
        grstd[g] = fr;
        if (rank == 0) {
            mean[n * a.G + g] = fm;
            rstd[n * a.G + g] = fr;
        }
    }
    __syncthreads();
    cl.barrier_arrive();   // done with the other blocks' memory; they may exit once all arrive

    // Normalise + affine (+ SiLU) from the shared copy, the CPU reference's operation order.
    float sc[W], bt[W];
#pragma unroll
    for (int k = 0; k < W; k++) {
        const int64_t c = (int64_t)cv * W + k, g = c / a.cg;
        m[k] = gmean[g];
        sc[k] = grstd[g] * to_f(gamma[c]);
        bt[k] = to_f(beta[c]);
    }
    for (int64_t r = ty; r < len; r += a.nty) {
        const int64_t o = (r * a.ncv + cv) * W;
        float v[W];
        load<W>(chunk + o, v);
#pragma unroll
        for (int k = 0; k < W; k++) {
            const float av = (v[k] - m[k]) * sc[k] + bt[k];
            v[k] = SILU ? av * sigmoidf_(av) : av;
        }
        store<W>(y + base + o, v);
    }
    cl.barrier_wait();   // no block leaves while another may still read its partials
#endif
}

// Backward. Per channel: sums of da and da * xhat over the block's rows (fp32, row lanes folded
// in order), totals over ranks in double and rank order; nc[n, c] (when not null) gets those
// totals for the dgamma/dbeta fold, and dx (when not null) += rstd (da gamma - m1 - xhat m2).
template <typename T, typename TG, bool SILU>
__global__ void __launch_bounds__(kThreads, 3) gn_cl_bwd_k(T *dx, double2 *nc, const T *x, const T *dy, const TG *gamma,
                                                        const TG *beta, const float *mean, const float *rstd,
                                                        GnClArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    constexpr int E = 16 / (int)sizeof(T), W = kGnW;
    extern __shared__ __align__(16) unsigned char gn_smem[];
    namespace cg = cooperative_groups;
    const cg::cluster_group cl = cg::this_cluster();
    const int rank = (int)cl.block_rank(), ncl = (int)cl.num_blocks();
    const int64_t n = blockIdx.x / ncl;
    const int t = threadIdx.x, nthr = blockDim.x;
    const int cv = t % a.ncv, ty = t / a.ncv;
    const int64_t len = gn_cl_len(a, rank), r0 = (int64_t)rank * a.R;
    const GnClSmem L = gn_cl_smem(a.R, a.C, a.G, nthr, (int)sizeof(T), true);
    T *xs = reinterpret_cast<T *>(gn_smem), *dys = reinterpret_cast<T *>(gn_smem + L.a);
    float2 *red = reinterpret_cast<float2 *>(gn_smem + L.b), *pub = reinterpret_cast<float2 *>(gn_smem + L.c);
    double2 *ncd = reinterpret_cast<double2 *>(gn_smem + L.d);
    float2 *mm = reinterpret_cast<float2 *>(gn_smem + L.e);

    const int64_t base = (n * a.S + r0) * a.C, nvec = len * a.C / E;
    for (int64_t v = t; v < nvec; v += nthr) {
        gn_cp16(xs + v * E, x + base + v * E);
        gn_cp16(dys + v * E, dy + base + v * E);
    }
    gn_cp_wait_all();

    float mn[W], rs[W], gm[W], bt[W];
#pragma unroll
    for (int k = 0; k < W; k++) {
        const int64_t c = (int64_t)cv * W + k, gi = n * a.G + c / a.cg;
        mn[k] = mean[gi];
        rs[k] = rstd[gi];
        gm[k] = to_f(gamma[c]);
        bt[k] = SILU ? to_f(beta[c]) : 0.0f;
    }
    __syncthreads();

    float sdb[W], sdg[W];
#pragma unroll
    for (int k = 0; k < W; k++) sdb[k] = sdg[k] = 0.0f;
    for (int64_t r = ty; r < len; r += a.nty) {
        const int64_t o = (r * a.ncv + cv) * W;
        float xv[W], dv[W];
        load<W>(xs + o, xv);
        load<W>(dys + o, dv);
#pragma unroll
        for (int k = 0; k < W; k++) {
            const float xh = (xv[k] - mn[k]) * rs[k];
            const float da = gn_da<SILU>(dv[k], xh, gm[k], bt[k]);
            sdb[k] += da;
            sdg[k] += da * xh;
        }
    }
#pragma unroll
    for (int k = 0; k < W; k++) red[t * W + k] = make_float2(sdb[k], sdg[k]);
    __syncthreads();
    for (int64_t c = t; c < a.C; c += nthr) {
        float sb = 0.0f, sg = 0.0f;
        for (int j = 0; j < a.nty; j++) {
            const float2 v = red[j * a.C + c];
            sb += v.x;
            sg += v.y;
        }
        pub[c] = make_float2(sb, sg);
    }

    cl.sync();
    for (int64_t c = t; c < a.C; c += nthr) {
        double sb = 0.0, sg = 0.0;
        for (int q = 0; q < ncl; q++) {
            const float2 v = cl.map_shared_rank(pub, q)[c];
            sb += v.x;
            sg += v.y;
        }
        ncd[c] = make_double2(sb, sg);
        if (nc && rank == 0) nc[n * a.C + c] = make_double2(sb, sg);
    }
    __syncthreads();
    cl.barrier_arrive();

    if (dx) {
        for (int64_t g = t; g < a.G; g += nthr) {
            double s1 = 0.0, s2 = 0.0;
            for (int64_t k = 0; k < a.cg; k++) {
                const int64_t c = g * a.cg + k;
                const double gmc = (double)to_f(gamma[c]);
                const double2 v = ncd[c];
                s1 += gmc * v.x;
                s2 += gmc * v.y;
            }
            mm[g] = make_float2((float)(s1 / a.count), (float)(s2 / a.count));
        }
        __syncthreads();
        float m1[W], m2[W];
#pragma unroll
        for (int k = 0; k < W; k++) {
            const float2 v = mm[((int64_t)cv * W + k) / a.cg];
            m1[k] = v.x;
            m2[k] = v.y;
        }
        for (int64_t r = ty; r < len; r += a.nty) {
            const int64_t o = (r * a.ncv + cv) * W;
            float xv[W], dv[W], gv[W];
            load<W>(xs + o, xv);
            load<W>(dys + o, dv);
            if (a.ow) {
#pragma unroll
                for (int k = 0; k < W; k++) gv[k] = 0.0f;
            } else {
                load<W>(dx + base + o, gv);
            }
#pragma unroll
            for (int k = 0; k < W; k++) {
                const float xh = (xv[k] - mn[k]) * rs[k];
                const float da = gn_da<SILU>(dv[k], xh, gm[k], bt[k]);
                gv[k] += rs[k] * (da * gm[k] - m1[k] - xh * m2[k]);
            }
            store<W>(dx + base + o, gv);
        }
    }
    cl.barrier_wait();
#endif
}

// dgamma[c] += sum over n of nc[n, c].y, dbeta[c] += ... .x: 32 channels per block, 8 lanes
// each summing every 8th item in double, the lanes then added in order (a fixed order, and
// eight loads in flight per channel rather than one long dependent chain).
constexpr int kAffX = 32, kAffY = 8;
template <typename TG>
__global__ void __launch_bounds__(kAffX *kAffY) gn_cl_affine_k(TG *dgamma, TG *dbeta, const double2 *nc, int64_t N,
                                                              int64_t C) {
    __shared__ double2 sh[kAffY][kAffX];
    const int64_t c = (int64_t)blockIdx.x * kAffX + threadIdx.x;
    double sb = 0.0, sg = 0.0;
    if (c < C)
        for (int64_t n = threadIdx.y; n < N; n += kAffY) {
            const double2 v = nc[n * C + c];
            sb += v.x;
            sg += v.y;
        }
    sh[threadIdx.y][threadIdx.x] = make_double2(sb, sg);
    __syncthreads();
    if (threadIdx.y != 0 || c >= C) return;
#pragma unroll
    for (int k = 1; k < kAffY; k++) {
        sb += sh[k][threadIdx.x].x;
        sg += sh[k][threadIdx.x].y;
    }
    if (dgamma) dgamma[c] = from_f<TG>(to_f(dgamma[c]) + (float)sg);
    if (dbeta) dbeta[c] = from_f<TG>(to_f(dbeta[c]) + (float)sb);
}

// ---- group_norm cluster kernels, one-pass statistics (the default; DDX_GN_CL_V2=0: two-pass) -
// Same cluster split, shared-memory copy and rank-ordered merge as above, rearranged because
// the two-pass kernels above are bound by instructions and block barriers rather than by HBM:
// - forward statistics in one pass over the chunk: fp32 sums of d = x - K_g and d * d per
//   channel, K_g one shift per (item, group) that every block of the cluster derives from the
//   same elements of x (the mean of the first min(cg, 4) channels of the group in the item's
//   row 0), so partials around it just add, in double across channels and ranks, with
//   mean = K_g + S1 / n and var = S2 / n - (S1 / n)^2. The shift keeps the cancellation in
//   the last step at (1 + (K_g - mean)^2 / var) times the fp32 rounding of the sums, a few
//   units for data where row 0 is typical of its group (not exact two-pass like the kernels above);
// - the copy lands in two cp.async groups (first and second half of the block's rows) and the
//   statistics start on the first half while the second is in flight;
// - 32-bit offsets inside the block, 64-bit only for the item's base pointer; forward works
//   on whole 16-byte vectors (E = 16 / sizeof(T) channels per thread);
// - SiLU and its derivative from ex2.approx and rcp.approx (relative error ~1e-6, far inside
//   the f32 tolerance) instead of expf and an IEEE division; bf16 stores by cvt.rn.bf16x2
//   (round-to-nearest-even like f32_to_bf16; only a NaN's payload may differ);
// - backward with f32 storage keeps da (SiLU) in place of dy in shared memory, so the dx pass
//   does not recompute the sigmoid; bf16 has no room for it and recomputes.
// Every block still derives the statistics with the same arithmetic in the same order, so
// all blocks agree bit for bit and runs repeat bit for bit.
__host__ __device__ __forceinline__ GnClSmem gn_cl2_smem_fwd(int64_t R, int64_t C, int64_t G, int threads,
                                                            int esize) {
    // chunk [R, C] T | red [threads * E] f32 | kg [G] f32 | chan1, chan2 [C] f32 |
    // pub [G] double2 | gst [G] float2 | gb [C] float2 (gamma, beta)
    const size_t E = (size_t)(16 / esize);
    GnClSmem L;
    L.a = gn_al16((size_t)R * (size_t)C * (size_t)esize);   // red
    L.b = L.a + gn_al16((size_t)threads * E * 4);              // kg
    L.c = L.b + gn_al16((size_t)G * 4);                        // chan1
    L.d = L.c + gn_al16((size_t)C * 4);                        // chan2
    L.e = L.d + gn_al16((size_t)C * 4);                        // pub
    L.f = L.e + gn_al16((size_t)G * 16);                       // gst
    L.g = L.f + gn_al16((size_t)G * 8);                        // gb
    L.total = L.g + gn_al16((size_t)C * 8);
    return L;
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
__device__ __forceinline__ void gn_cp_commit() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void gn_cp_wait() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

__device__ __forceinline__ float gn_rcp_approx(float v) {
#ifdef __CUDA_ARCH__
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
#else
    return 1.0f / v;
#endif
}

// 1 / (1 + e^-a): a -> -inf gives rcp(inf) = 0, a -> +inf gives 1.
__device__ __forceinline__ float gn_sigmoid_fast(float a) {
#ifdef __CUDA_ARCH__
    return gn_rcp_approx(1.0f + __expf(-a));
#else
    return gn_rcp_approx(1.0f + expf(-a));
#endif
}

template <bool SILU> __device__ __forceinline__ float gn_da_fast(float dy, float xh, float gamma, float beta) {
    if (!SILU) return dy;
    const float av = xh * gamma + beta, s = gn_sigmoid_fast(av);
    return dy * (s * (1.0f + av * (1.0f - s)));
}

// store<V> with bf16 rounding by cvt.rn.bf16x2.f32 (one instruction per two values).
template <int V, typename T> __device__ __forceinline__ void gn_st(T *p, const float (&v)[V]) {
#ifdef __CUDA_ARCH__
    if constexpr (sizeof(T) == 2) {
        static_assert(V % 2 == 0, "pairs");
        uint32_t w[V / 2];
#pragma unroll
        for (int i = 0; i < V / 2; i++)
            asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(w[i]) : "f"(v[2 * i + 1]), "f"(v[2 * i]));
        if constexpr (V == 8) *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
        else if constexpr (V == 4) *reinterpret_cast<uint2 *>(p) = make_uint2(w[0], w[1]);
        else *reinterpret_cast<uint32_t *>(p) = w[0];
        return;
    }
#endif
    store<V>(p, v);
}

// s1 += sum over ranks q = 0, 1, ... of p[q].x (s2: .y), p in block q's shared memory: four
// remote loads in flight at a time, the additions still in rank order.
template <typename CL, typename P>
__device__ __forceinline__ void gn_cl2_rank_sum(const CL &cl, P *p, int ncl, double &s1, double &s2) {
    int q = 0;
    for (; q + 4 <= ncl; q += 4) {
        const P v0 = *cl.map_shared_rank(p, q), v1 = *cl.map_shared_rank(p, q + 1);
        const P v2 = *cl.map_shared_rank(p, q + 2), v3 = *cl.map_shared_rank(p, q + 3);
        s1 += v0.x;
        s2 += v0.y;
        s1 += v1.x;
        s2 += v1.y;
        s1 += v2.x;
        s2 += v2.y;
        s1 += v3.x;
        s2 += v3.y;
    }
    for (; q < ncl; q++) {
        const P v = *cl.map_shared_rank(p, q);
        s1 += v.x;
        s2 += v.y;
    }
}

// red[t * V + k] = v[k] (= red[ty][c], c = cv * V + k), then chan[c] = the sum over row
// lanes in order. Starts and ends with a block barrier, so red can be refilled right after.
template <int V>
__device__ __forceinline__ void gn_cl2_fold(float *red, float *chan, const float (&v)[V], int C, int nty) {
    const int t = threadIdx.x;
#pragma unroll
    for (int k = 0; k < V; k++) red[t * V + k] = v[k];
    __syncthreads();
    for (int c = t; c < C; c += (int)blockDim.x) {
        float acc = 0.0f;
#pragma unroll 8
        for (int j = 0; j < nty; j++) acc += red[j * C + c];
        chan[c] = acc;
    }
    __syncthreads();
}
#endif

template <typename T, typename TG, bool SILU>
__global__ void __launch_bounds__(kThreads, 4) gn_cl2_fwd_k(T *y, float *mean, float *rstd, const T *x,
                                                            const TG *gamma, const TG *beta, GnClArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    constexpr int E = 16 / (int)sizeof(T);
    extern __shared__ __align__(16) unsigned char gn_smem[];
    namespace cg = cooperative_groups;
    const cg::cluster_group cl = cg::this_cluster();
    const int rank = (int)cl.block_rank(), ncl = (int)cl.num_blocks();
    const int64_t n = blockIdx.x / ncl;
    const int t = threadIdx.x, nthr = blockDim.x;
    const int C = (int)a.C, G = (int)a.G, cgs = (int)a.cg, ncv = a.ncv, nty = a.nty;
    const int cv = t % ncv, ty = t / ncv;
    const int len = (int)gn_cl_len(a, rank);
    const GnClSmem L = gn_cl2_smem_fwd(a.R, a.C, a.G, nthr, (int)sizeof(T));
    T *chunk = reinterpret_cast<T *>(gn_smem);
    float *red = reinterpret_cast<float *>(gn_smem + L.a), *kg = reinterpret_cast<float *>(gn_smem + L.b);
    float *chan1 = reinterpret_cast<float *>(gn_smem + L.c), *chan2 = reinterpret_cast<float *>(gn_smem + L.d);
    double2 *pub = reinterpret_cast<double2 *>(gn_smem + L.e);
    float2 *gst = reinterpret_cast<float2 *>(gn_smem + L.f), *gb = reinterpret_cast<float2 *>(gn_smem + L.g);

    const T *x0 = x + n * a.S * a.C;                   // the item's row 0
    const int64_t boff = (n * a.S + (int64_t)rank * a.R) * a.C;
    const T *xb = x + boff;
    T *yb = y + boff;
    const int h = (len + 1) / 2, nv0 = h * C / E, nv1 = len * C / E;
    for (int v = t; v < nv0; v += nthr) gn_cp16(chunk + v * E, xb + v * E);
    gn_cp_commit();
    for (int v = nv0 + t; v < nv1; v += nthr) gn_cp16(chunk + v * E, xb + v * E);
    gn_cp_commit();

    const int kn = cgs < 4 ? cgs : 4;
    for (int g = t; g < G; g += nthr) {
        float acc = 0.0f;
        for (int k = 0; k < kn; k++) acc += to_f(x0[g * cgs + k]);
        kg[g] = acc / (float)kn;
    }
    // gamma and beta staged while the copy is in flight (in registers they would cost spills)
    for (int c = t; c < C; c += nthr) gb[c] = make_float2(to_f(gamma[c]), to_f(beta[c]));
    gn_cp_wait<1>();
    __syncthreads();
    float kk[E], s1[E], s2[E];
#pragma unroll
    for (int k = 0; k < E; k++) {
        kk[k] = kg[(cv * E + k) / cgs];
        s1[k] = s2[k] = 0.0f;
    }
    auto accum = [&](int r) {
        float v[E];
        load<E>(chunk + (r * ncv + cv) * E, v);
#pragma unroll
        for (int k = 0; k < E; k++) {
            const float d = v[k] - kk[k];
            s1[k] += d;
            s2[k] = fmaf(d, d, s2[k]);
        }
    };
    int r = ty;
#pragma unroll 2
    for (; r < h; r += nty) accum(r);
    gn_cp_wait<0>();
    __syncthreads();
#pragma unroll 2
    for (; r < len; r += nty) accum(r);
    gn_cl2_fold<E>(red, chan1, s1, C, nty);
    gn_cl2_fold<E>(red, chan2, s2, C, nty);
    for (int g = t; g < G; g += nthr) {
        double a1 = 0.0, a2 = 0.0;
        for (int k = 0; k < cgs; k++) {
            a1 += (double)chan1[g * cgs + k];
            a2 += (double)chan2[g * cgs + k];
        }
        pub[g] = make_double2(a1, a2);
    }

    cl.sync();
    const double cnt = (double)a.S * (double)cgs;
    for (int g = t; g < G; g += nthr) {
        double a1 = 0.0, a2 = 0.0;
        gn_cl2_rank_sum(cl, pub + g, ncl, a1, a2);
        const double d = a1 / cnt, var0 = a2 / cnt - d * d;
        const double var = var0 > 0.0 ? var0 : 0.0;   // biased, as torch.nn.GroupNorm
        const float fm = (float)((double)kg[g] + d), fr = (float)(1.0 / sqrt(var + (double)a.eps));
        gst[g] = make_float2(fm, fr);
        if (rank == 0) {
            mean[n * G + g] = fm;
            rstd[n * G + g] = fr;
        }
    }
    __syncthreads();
    cl.barrier_arrive();

    float m[E], sc[E], bt[E];
#pragma unroll
    for (int k = 0; k < E; k++) {
        const float2 st = gst[(cv * E + k) / cgs], gbk = gb[cv * E + k];
        m[k] = st.x;
        sc[k] = st.y * gbk.x;
        bt[k] = gbk.y;
    }
    for (int rr = ty; rr < len; rr += nty) {
        const int o = (rr * ncv + cv) * E;
        float v[E];
        load<E>(chunk + o, v);
#pragma unroll
        for (int k = 0; k < E; k++) {
            const float av = (v[k] - m[k]) * sc[k] + bt[k];
            v[k] = SILU ? av * gn_sigmoid_fast(av) : av;
        }
        gn_st<E>(yb + o, v);
    }
    cl.barrier_wait();
#endif
}

template <typename T, typename TG, bool SILU>
__global__ void __launch_bounds__(kThreads, 3) gn_cl2_bwd_k(T *dx, double2 *nc, const T *x, const T *dy,
                                                            const TG *gamma, const TG *beta, const float *mean,
                                                            const float *rstd, GnClArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    constexpr int E = 16 / (int)sizeof(T), W = kGnW;
    constexpr bool KEEP = SILU && sizeof(T) == 4;   // da replaces dy in shared memory
    extern __shared__ __align__(16) unsigned char gn_smem[];
    namespace cg = cooperative_groups;
    const cg::cluster_group cl = cg::this_cluster();
    const int rank = (int)cl.block_rank(), ncl = (int)cl.num_blocks();
    const int64_t n = blockIdx.x / ncl;
    const int t = threadIdx.x, nthr = blockDim.x;
    const int C = (int)a.C, G = (int)a.G, cgs = (int)a.cg, ncv = a.ncv, nty = a.nty;
    const int cv = t % ncv, ty = t / ncv;
    const int len = (int)gn_cl_len(a, rank);
    const GnClSmem L = gn_cl_smem(a.R, a.C, a.G, nthr, (int)sizeof(T), true);
    T *xs = reinterpret_cast<T *>(gn_smem), *dys = reinterpret_cast<T *>(gn_smem + L.a);
    float2 *red = reinterpret_cast<float2 *>(gn_smem + L.b), *pub = reinterpret_cast<float2 *>(gn_smem + L.c);
    double2 *ncd = reinterpret_cast<double2 *>(gn_smem + L.d);
    float2 *mm = reinterpret_cast<float2 *>(gn_smem + L.e);

    const int64_t boff = (n * a.S + (int64_t)rank * a.R) * a.C;
    const T *xb = x + boff, *dyb = dy + boff;
    const int h = (len + 1) / 2, nv0 = h * C / E, nv1 = len * C / E;
    for (int v = t; v < nv0; v += nthr) {
        gn_cp16(xs + v * E, xb + v * E);
        gn_cp16(dys + v * E, dyb + v * E);
    }
    gn_cp_commit();
    for (int v = nv0 + t; v < nv1; v += nthr) {
        gn_cp16(xs + v * E, xb + v * E);
        gn_cp16(dys + v * E, dyb + v * E);
    }
    gn_cp_commit();

    float mn[W], rs[W], gm[W], bt[W];
#pragma unroll
    for (int k = 0; k < W; k++) {
        const int c = cv * W + k;
        const int64_t gi = n * G + c / cgs;
        mn[k] = mean[gi];
        rs[k] = rstd[gi];
        gm[k] = to_f(gamma[c]);
        bt[k] = SILU ? to_f(beta[c]) : 0.0f;
    }

    float sdb[W], sdg[W];
#pragma unroll
    for (int k = 0; k < W; k++) sdb[k] = sdg[k] = 0.0f;
    auto accum = [&](int r) {
        const int o = (r * ncv + cv) * W;
        float xv[W], dv[W];
        load<W>(xs + o, xv);
        load<W>(dys + o, dv);
#pragma unroll
        for (int k = 0; k < W; k++) {
            const float xh = (xv[k] - mn[k]) * rs[k];
            const float da = gn_da_fast<SILU>(dv[k], xh, gm[k], bt[k]);
            sdb[k] += da;
            sdg[k] = fmaf(da, xh, sdg[k]);
            dv[k] = da;
        }
        if constexpr (KEEP) store<W>(dys + o, dv);
    };
    gn_cp_wait<1>();
    __syncthreads();
    int r = ty;
#pragma unroll 2
    for (; r < h; r += nty) accum(r);
    gn_cp_wait<0>();
    __syncthreads();
#pragma unroll 2
    for (; r < len; r += nty) accum(r);
#pragma unroll
    for (int k = 0; k < W; k++) red[t * W + k] = make_float2(sdb[k], sdg[k]);
    __syncthreads();
    for (int c = t; c < C; c += nthr) {
        float sb = 0.0f, sg = 0.0f;
#pragma unroll 8
        for (int j = 0; j < nty; j++) {
            const float2 v = red[j * C + c];
            sb += v.x;
            sg += v.y;
        }
        pub[c] = make_float2(sb, sg);
    }

    cl.sync();
    for (int c = t; c < C; c += nthr) {
        double sb = 0.0, sg = 0.0;
        gn_cl2_rank_sum(cl, pub + c, ncl, sb, sg);
        if (nc && rank == 0) nc[n * C + c] = make_double2(sb, sg);
        const double gmc = (double)to_f(gamma[c]);
        ncd[c] = make_double2(gmc * sb, gmc * sg);
    }
    __syncthreads();
    cl.barrier_arrive();

    if (dx) {
        for (int g = t; g < G; g += nthr) {
            double s1 = 0.0, s2 = 0.0;
            for (int k = 0; k < cgs; k++) {
                const double2 v = ncd[g * cgs + k];
                s1 += v.x;
                s2 += v.y;
            }
            mm[g] = make_float2((float)(s1 / a.count), (float)(s2 / a.count));
        }
        __syncthreads();
        // dx = rs (da gm - m1 - xh m2) = da * A + (xh * B + D)
        float A[W], B[W], D[W];
#pragma unroll
        for (int k = 0; k < W; k++) {
            const float2 v = mm[(cv * W + k) / cgs];
            A[k] = rs[k] * gm[k];
            B[k] = -rs[k] * v.y;
            D[k] = -rs[k] * v.x;
        }
        T *dxb = dx + boff;
#pragma unroll 2
        for (int rr = ty; rr < len; rr += nty) {
            const int o = (rr * ncv + cv) * W;
            float xv[W], dv[W], gv[W];
            load<W>(xs + o, xv);
            load<W>(dys + o, dv);
            if (a.ow) {
#pragma unroll
                for (int k = 0; k < W; k++) gv[k] = 0.0f;
            } else {
                load<W>(dxb + o, gv);
            }
#pragma unroll
            for (int k = 0; k < W; k++) {
                const float xh = (xv[k] - mn[k]) * rs[k];
                const float da = KEEP ? dv[k] : gn_da_fast<SILU>(dv[k], xh, gm[k], bt[k]);
                gv[k] += fmaf(da, A[k], fmaf(xh, B[k], D[k]));
            }
            gn_st<W>(dxb + o, gv);
        }
    }
    cl.barrier_wait();
#endif
}

// ---- host side ----------------------------------------------------------------------------
bool aligned(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

// Row chunking of group_norm: about four blocks per SM over the whole tensor, but at least 32
// rows per chunk so the per-chunk partials stay small next to x. Depends on the shape and the
// SM count only, so the scratch size query and the launch agree.
void gn_chunks(const ddx_k_gn_shape *sh, int64_t *rows, int64_t *P) {
    const int64_t per_item = sh->N * cdiv(sh->C, 128);
    const int64_t p_want = cdiv(4 * (int64_t)sm_count(), per_item > 0 ? per_item : 1);
    int64_t r = cdiv(sh->S, p_want);
    if (r < 32) r = 32;
    if (r > sh->S) r = sh->S;
    if (r < 1) r = 1;
    *rows = r;
    *P = cdiv(sh->S, r);
}

// The launch geometry of the tiled kernels; false when the grid would not fit.
struct GnLaunch {
    GnArgs a;
    int V;
    dim3 block;
    int64_t blocks;
};

bool gn_launch(const ddx_k_gn_shape *sh, bool vec_ok, GnLaunch *L) {
    GnArgs &a = L->a;
    a.S = sh->S;
    a.C = sh->C;
    a.G = sh->G;
    a.cg = sh->C / sh->G;
    a.ow = sh->dx_overwrite != 0;
    gn_chunks(sh, &a.rows, &a.P);
    L->V = vec_ok && sh->C % 4 == 0 ? 4 : 1;
    const int64_t ncols = sh->C / L->V;
    int bx = 1;
    while (bx < ncols && bx < 32) bx *= 2;
    L->block = dim3((unsigned)bx, (unsigned)(kThreads / bx));
    a.tiles = cdiv(ncols, bx);
    L->blocks = sh->N * a.tiles * a.P;
    return L->blocks >= 1 && L->blocks <= INT_MAX;
}

bool gn_shape_ok(const ddx_k_gn_shape *sh) {
    return sh->N >= 1 && sh->S >= 1 && sh->C >= 1 && sh->G >= 1 && sh->C % sh->G == 0;
}

// ---- group_norm cluster path: planning and launch ------------------------------------------
// DDX_GN_CLUSTER: unset = automatic; 0 = always the tiled kernels; 1, 2, 4, 8 or 16 = that
// cluster size wherever the item fits it (for benchmarking), otherwise automatic.
int gn_cluster_env() {
    static const int v = [] {
        const char *e = getenv("DDX_GN_CLUSTER");
        if (!e || !*e) return -1;
        char *end = nullptr;
        const long k = strtol(e, &end, 10);
        if (*end != '\0') return -1;
        return (k == 0 || k == 1 || k == 2 || k == 4 || k == 8 || k == 16) ? (int)k : -1;
    }();
    return v;
}

// Clusters need sm_90; the kernels' compute_80 PTX only traps.
bool gn_cluster_device() {
    static std::atomic<int> s_ok{-1};
    int ok = s_ok.load(std::memory_order_relaxed);
    if (ok >= 0) return ok == 1;
    int dev = 0, major = 0, cl = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&cl, cudaDevAttrClusterLaunch, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;   // not cached: a transient failure should not switch the path off for good
    }
    ok = major >= 9 && cl != 0;
    s_ok.store(ok ? 1 : 0, std::memory_order_relaxed);
    return ok;
}

// Shared memory per block: aim at <= 64 KB so three or more blocks share an SM; up to
// kGnClMaxSmem (two per SM) when even 16 blocks per item give bigger chunks.
constexpr size_t kGnClGoodSmem = 64 * 1024, kGnClMaxSmem = 110 * 1024;
// The one-pass kernels aim at bigger blocks (the two-pass ones measured fastest with ~64 KB chunks in
// most forward shapes, and with two ~32 KB chunks per block in backward): forward a 64 KB
// chunk plus its reduction buffers (three blocks per SM), backward up to 80 KB.
constexpr size_t kGnCl2GoodSmem = 74 * 1024, kGnCl2GoodSmemBwd = 80 * 1024;

struct GnClPlan {
    GnClArgs a;
    int cl, threads;
    size_t smem;
};

// The one-pass cluster kernels are the default; DDX_GN_CL_V2=0 (read once per process)
// selects the two-pass ones.
bool gn_cl_v2() {
    static const bool v = [] {
        const char *e = getenv("DDX_GN_CL_V2");
        return !(e && strcmp(e, "0") == 0);
    }();
    return v;
}

// The cluster geometry for this shape, or false (-> tiled kernels). esize = sizeof(T); v2:
// for the one-pass kernels (forward: E = 16 / esize channels per thread, its own layout).
bool gn_cl_plan(const ddx_k_gn_shape *sh, int esize, bool bwd, GnClPlan *P, bool v2 = false) {
    const int env = gn_cluster_env();
    if (env == 0) return false;
    if (sh->C % (16 / esize) != 0) return false;   // whole 16-byte copy vectors (kGnW divides them)
    if (sh->C / kGnW > kThreads) return false;      // the same shapes for both kernel sets
    const bool v2f = v2 && !bwd;
    const int64_t ncv = sh->C / (v2f ? 16 / esize : kGnW);
    const int nty = kThreads / (int)ncv, threads = (int)ncv * nty;
    GnClArgs &a = P->a;
    a.S = sh->S;
    a.C = sh->C;
    a.G = sh->G;
    a.cg = sh->C / sh->G;
    a.ncv = (int)ncv;
    a.nty = nty;
    a.eps = sh->eps;
    a.count = (double)sh->S * (double)a.cg;
    a.ow = sh->dx_overwrite != 0;
    auto smem_for = [&](int cl) {
        return v2f ? gn_cl2_smem_fwd(cdiv(sh->S, cl), sh->C, sh->G, threads, esize).total
                   : gn_cl_smem(cdiv(sh->S, cl), sh->C, sh->G, threads, esize, bwd).total;
    };
    int cl = 0;
    if (env > 0 && smem_for(env) <= kGnClMaxSmem) {
        cl = env;
    } else {
        const size_t good = !v2 ? kGnClGoodSmem : bwd ? kGnCl2GoodSmemBwd : kGnCl2GoodSmem;
        for (int c = 1; c <= 16 && !cl; c *= 2)
            if (smem_for(c) <= good) cl = c;
        if (!cl && smem_for(16) <= kGnClMaxSmem) cl = 16;
        if (!cl) return false;
        // Small items: more, shorter blocks so that at least two per SM load at once.
        while (cl < 8 && sh->N * cl < 2 * (int64_t)sm_count() && cdiv(sh->S, 2 * cl) >= 4) cl *= 2;
    }
    a.R = cdiv(sh->S, cl);
    P->cl = cl;
    P->threads = threads;
    P->smem = smem_for(cl);
    return sh->N * cl <= INT_MAX;
}

cudaLaunchConfig_t gn_cl_config(const GnClPlan &P, int64_t N, cudaLaunchAttribute *attr, cudaStream_t s) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(N * P.cl));
    cfg.blockDim = dim3((unsigned)P.threads);
    cfg.dynamicSmemBytes = P.smem;
    cfg.stream = s;
    attr->id = cudaLaunchAttributeClusterDimension;
    attr->val.clusterDim.x = (unsigned)P.cl;
    attr->val.clusterDim.y = 1;
    attr->val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cfg;
}

// Whether kernel f can run this plan: its attributes set (once per kernel) and at least one
// such cluster fits the device. Answers are cached per (kernel, cluster size, shared memory),
// so after the first eager call of a shape nothing but the launch reaches the driver (the
// trainer's first step is eager, later ones are captured into a graph).
bool gn_cl_usable(const void *f, const GnClPlan &P) {
    struct Entry {
        const void *f;
        int cl;
        size_t smem;
        bool ok;
    };
    static std::mutex mu;
    static Entry cache[256];
    static int used = 0;
    static const void *attr_set[64];
    static int n_attr = 0;
    std::lock_guard<std::mutex> lock(mu);
    for (int i = 0; i < used; i++)
        if (cache[i].f == f && cache[i].cl == P.cl && cache[i].smem == P.smem) return cache[i].ok;
    bool have_attr = false;
    for (int i = 0; i < n_attr && !have_attr; i++) have_attr = attr_set[i] == f;
    bool ok = true;
    if (!have_attr) {
        ok = cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kGnClMaxSmem) == cudaSuccess &&
             cudaFuncSetAttribute(f, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess;
        if (ok && n_attr < 64) attr_set[n_attr++] = f;
    }
    if (ok) {
        cudaLaunchAttribute attr;
        const cudaLaunchConfig_t cfg = gn_cl_config(P, 1, &attr, 0);
        int clusters = 0;
        ok = cudaOccupancyMaxActiveClusters(&clusters, f, &cfg) == cudaSuccess && clusters >= 1;
    }
    if (!ok) (void)cudaGetLastError();   // a refused query must not surface as a launch error
    if (used < 256) cache[used++] = Entry{f, P.cl, P.smem, ok};
    return ok;
}

// DDX_GN_DEBUG=1: one line on stderr per distinct (direction, shape, path), to see which
// kernels a benchmark or a model ran.
void gn_debug(bool bwd, const ddx_k_gn_shape *sh, const GnClPlan *P) {
    static const int on = [] {
        const char *e = getenv("DDX_GN_DEBUG");
        return e && *e && strcmp(e, "0") != 0;
    }();
    if (!on) return;
    static std::mutex mu;
    static int64_t seen[64][5];
    static int n = 0;
    std::lock_guard<std::mutex> lock(mu);
    const int64_t key[5] = {bwd, sh->N, sh->S, sh->C, P ? P->cl : 0};
    for (int i = 0; i < n; i++)
        if (!memcmp(seen[i], key, sizeof key)) return;
    if (n < 64) memcpy(seen[n++], key, sizeof key);
    if (P)
        fprintf(stderr, "DDX_GN_DEBUG: %s [%lld,%lld,%lld] G=%lld %s: cluster%s %d x %lld blocks of %d threads, %zu B shared\n",
                bwd ? "bwd" : "fwd", (long long)sh->N, (long long)sh->S, (long long)sh->C, (long long)sh->G,
                sh->x_dt == DDX_K_NORM_BF16 ? "bf16" : "f32", gn_cl_v2() ? " v2" : "", P->cl, (long long)sh->N * P->cl, P->threads, P->smem);
    else
        fprintf(stderr, "DDX_GN_DEBUG: %s [%lld,%lld,%lld] G=%lld %s: tiled kernels\n", bwd ? "bwd" : "fwd",
                (long long)sh->N, (long long)sh->S, (long long)sh->C, (long long)sh->G,
                sh->x_dt == DDX_K_NORM_BF16 ? "bf16" : "f32");
}

// 1 = launched (the return code in *err), 0 = this shape or device takes the tiled kernels.
template <typename T, typename TG>
int gn_cl_fwd(T *y, float *mean, float *rstd, const T *x, const T *add, const TG *gamma, const TG *beta,
              const ddx_k_gn_shape *sh, cudaStream_t s, int *err) {
    // The cluster kernels have no fused add yet: with one, the tiled kernels run.
    if (add) return 0;
    GnClPlan P;
    const bool v2 = gn_cl_v2();
    if (!aligned(x, 16) || !aligned(y, 16) || !gn_cl_plan(sh, (int)sizeof(T), false, &P, v2) ||
        !gn_cluster_device())
        return 0;
    void (*k)(T *, float *, float *, const T *, const TG *, const TG *, GnClArgs) =
        v2 ? (sh->silu ? gn_cl2_fwd_k<T, TG, true> : gn_cl2_fwd_k<T, TG, false>)
           : (sh->silu ? gn_cl_fwd_k<T, TG, true> : gn_cl_fwd_k<T, TG, false>);
    if (!gn_cl_usable((const void *)k, P)) return 0;
    gn_debug(false, sh, &P);
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg = gn_cl_config(P, sh->N, &attr, s);
    *err = (int)cudaLaunchKernelEx(&cfg, k, y, mean, rstd, x, gamma, beta, P.a);
    return 1;
}

// nc (double2 [N, C]) is the head of the tiled path's scratch (so the scratch size serves both
// paths); gn_cl_affine_k folds it into dgamma/dbeta.
template <typename T, typename TG>
int gn_cl_bwd(T *dx, TG *dgamma, TG *dbeta, const T *x, const T *add, const T *dy, const TG *gamma, const TG *beta,
              const float *mean, const float *rstd, float *scratch, const ddx_k_gn_shape *sh, cudaStream_t s,
              int *err) {
    if (add) return 0;   // as gn_cl_fwd
    GnClPlan P;
    if (!aligned(x, 16) || !aligned(dy, 16) || (dx && !aligned(dx, 16)) || !aligned(scratch, 16) ||
        !gn_cl_plan(sh, (int)sizeof(T), true, &P, gn_cl_v2()) || !gn_cluster_device())
        return 0;
    void (*k)(T *, double2 *, const T *, const T *, const TG *, const TG *, const float *, const float *, GnClArgs) =
        gn_cl_v2() ? (sh->silu ? gn_cl2_bwd_k<T, TG, true> : gn_cl2_bwd_k<T, TG, false>)
                   : (sh->silu ? gn_cl_bwd_k<T, TG, true> : gn_cl_bwd_k<T, TG, false>);
    if (!gn_cl_usable((const void *)k, P)) return 0;
    gn_debug(true, sh, &P);
    const bool affine = dgamma || dbeta;
    double2 *nc = affine ? reinterpret_cast<double2 *>(scratch) : nullptr;
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg = gn_cl_config(P, sh->N, &attr, s);
    cudaError_t e = cudaLaunchKernelEx(&cfg, k, dx, nc, x, dy, gamma, beta, mean, rstd, P.a);
    if (e == cudaSuccess && affine) {
        gn_cl_affine_k<TG><<<(unsigned)cdiv(sh->C, kAffX), dim3(kAffX, kAffY), 0, s>>>(dgamma, dbeta, nc, sh->N, sh->C);
        e = cudaGetLastError();
    }
    *err = (int)e;
    return 1;
}

template <int V, typename T, typename TG, bool ADD>
void gn_apply(T *y, const T *x, const T *add, const TG *gamma, const TG *beta, const float *mean, const float *rstd,
              const GnLaunch &L, bool silu, cudaStream_t s) {
    const unsigned grid = (unsigned)L.blocks;
    if (silu) gn_apply_k<V, T, TG, true, ADD><<<grid, L.block, 0, s>>>(y, x, add, gamma, beta, mean, rstd, L.a);
    else gn_apply_k<V, T, TG, false, ADD><<<grid, L.block, 0, s>>>(y, x, add, gamma, beta, mean, rstd, L.a);
}

template <typename T, typename TG>
int gn_fwd(T *y, float *mean, float *rstd, const T *x, const T *add, const TG *gamma, const TG *beta, float *scratch,
           const ddx_k_gn_shape *sh, cudaStream_t s) {
    int err = 0;
    if (gn_cl_fwd<T, TG>(y, mean, rstd, x, add, gamma, beta, sh, s, &err)) return err;
    gn_debug(false, sh, nullptr);
    const int64_t vb = 4 * (int64_t)sizeof(T);
    GnLaunch L;
    if (!gn_launch(sh, aligned(x, vb) && aligned(y, vb), &L)) return (int)cudaErrorInvalidConfiguration;
    float2 *part = reinterpret_cast<float2 *>(scratch);
    const unsigned grid = (unsigned)L.blocks;
    if (add) {
        if (L.V == 4) gn_stats_k<4, T, true><<<grid, L.block, 0, s>>>(part, x, add, L.a);
        else gn_stats_k<1, T, true><<<grid, L.block, 0, s>>>(part, x, add, L.a);
    } else {
        if (L.V == 4) gn_stats_k<4, T><<<grid, L.block, 0, s>>>(part, x, nullptr, L.a);
        else gn_stats_k<1, T><<<grid, L.block, 0, s>>>(part, x, nullptr, L.a);
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    const int64_t NG = sh->N * sh->G;
    if (cdiv(NG * 32, kThreads) > INT_MAX) return (int)cudaErrorInvalidConfiguration;
    gn_stats_final_k<<<(unsigned)cdiv(NG * 32, kThreads), kThreads, 0, s>>>(mean, rstd, part, L.a, NG, (double)sh->eps);
    e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    if (add) {
        if (L.V == 4) gn_apply<4, T, TG, true>(y, x, add, gamma, beta, mean, rstd, L, sh->silu != 0, s);
        else gn_apply<1, T, TG, true>(y, x, add, gamma, beta, mean, rstd, L, sh->silu != 0, s);
    } else {
        if (L.V == 4) gn_apply<4, T, TG, false>(y, x, nullptr, gamma, beta, mean, rstd, L, sh->silu != 0, s);
        else gn_apply<1, T, TG, false>(y, x, nullptr, gamma, beta, mean, rstd, L, sh->silu != 0, s);
    }
    return (int)cudaGetLastError();
}

template <int V, typename T, typename TG, bool ADD>
void gn_bwd_part(float2 *part, const T *x, const T *add, const T *dy, const TG *gamma, const TG *beta,
                 const float *mean, const float *rstd, const GnLaunch &L, bool silu, cudaStream_t s) {
    const unsigned grid = (unsigned)L.blocks;
    if (silu) gn_bwd_part_k<V, T, TG, true, ADD><<<grid, L.block, 0, s>>>(part, x, add, dy, gamma, beta, mean, rstd, L.a);
    else gn_bwd_part_k<V, T, TG, false, ADD><<<grid, L.block, 0, s>>>(part, x, add, dy, gamma, beta, mean, rstd, L.a);
}

template <int V, typename T, typename TG>
void gn_bwd_dz_add(T *dx, float *dpart, const T *x, const T *add, const T *dy, const TG *gamma, const TG *beta,
                   const float *mean, const float *rstd, const float2 *mm, const GnLaunch &L, bool silu, cudaStream_t s) {
    const unsigned grid = (unsigned)L.blocks;
    if (silu)
        gn_bwd_dz_add_k<V, T, TG, true><<<grid, L.block, 0, s>>>(dx, dpart, x, add, dy, gamma, beta, mean, rstd, mm, L.a);
    else
        gn_bwd_dz_add_k<V, T, TG, false><<<grid, L.block, 0, s>>>(dx, dpart, x, add, dy, gamma, beta, mean, rstd, mm, L.a);
}

template <int V, typename T, typename TG>
void gn_bwd_dx(T *dx, const T *x, const T *dy, const TG *gamma, const TG *beta, const float *mean, const float *rstd,
               const float2 *mm, const GnLaunch &L, bool silu, cudaStream_t s) {
    const unsigned grid = (unsigned)L.blocks;
    if (silu) gn_bwd_dx_k<V, T, TG, true><<<grid, L.block, 0, s>>>(dx, x, dy, gamma, beta, mean, rstd, mm, L.a);
    else gn_bwd_dx_k<V, T, TG, false><<<grid, L.block, 0, s>>>(dx, x, dy, gamma, beta, mean, rstd, mm, L.a);
}

// Scratch layout (floats): nc double2 [N*C] first (16-byte aligned at the arena's block
// start), then part float2 [N*P*C], then mm float2 [N*G], then (with the fused add) dpart
// float [N*P*C].
template <typename T, typename TG>
int gn_bwd(T *dx, T *dadd, TG *dgamma, TG *dbeta, const T *x, const T *add, const T *dy, const TG *gamma,
           const TG *beta, const float *mean, const float *rstd, float *scratch, const ddx_k_gn_shape *sh,
           cudaStream_t s) {
    if (!add) dadd = nullptr;
    if (!dx && !dadd && !dgamma && !dbeta) return 0;
    int err = 0;
    if (gn_cl_bwd<T, TG>(dx, dgamma, dbeta, x, add, dy, gamma, beta, mean, rstd, scratch, sh, s, &err)) return err;
    gn_debug(true, sh, nullptr);
    const int64_t vb = 4 * (int64_t)sizeof(T);
    GnLaunch L;
    if (!gn_launch(sh, aligned(x, vb) && aligned(dy, vb) && (!dx || aligned(dx, vb)), &L))
        return (int)cudaErrorInvalidConfiguration;
    const int64_t N = sh->N, C = sh->C, NC = N * C;
    double2 *nc = reinterpret_cast<double2 *>(scratch);
    float2 *part = reinterpret_cast<float2 *>(scratch + 4 * NC);
    float2 *mm = reinterpret_cast<float2 *>(scratch + 4 * NC + 2 * NC * L.a.P);
    const bool silu = sh->silu != 0;
    if (add) {
        if (L.V == 4) gn_bwd_part<4, T, TG, true>(part, x, add, dy, gamma, beta, mean, rstd, L, silu, s);
        else gn_bwd_part<1, T, TG, true>(part, x, add, dy, gamma, beta, mean, rstd, L, silu, s);
    } else {
        if (L.V == 4) gn_bwd_part<4, T, TG, false>(part, x, nullptr, dy, gamma, beta, mean, rstd, L, silu, s);
        else gn_bwd_part<1, T, TG, false>(part, x, nullptr, dy, gamma, beta, mean, rstd, L, silu, s);
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    gn_bwd_nc_k<<<grid_for(NC, kThreads), kThreads, 0, s>>>(nc, part, L.a, NC);
    e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    const double count = (double)sh->S * (double)L.a.cg;
    gn_bwd_final_k<TG><<<grid_for(C + N * sh->G, kThreads), kThreads, 0, s>>>(dx || dadd ? mm : nullptr, dgamma, dbeta,
                                                                              nc, gamma, L.a, N, count);
    e = cudaGetLastError();
    if (e != cudaSuccess || (!dx && !dadd)) return (int)e;
    if (add) {   // x + add was normalised: the dz pass recomputes it (and sums dz for dadd)
        float *dpart = scratch + 4 * NC + 2 * NC * L.a.P + 2 * N * sh->G;
        if (L.V == 4) gn_bwd_dz_add<4, T, TG>(dx, dpart, x, add, dy, gamma, beta, mean, rstd, mm, L, silu, s);
        else gn_bwd_dz_add<1, T, TG>(dx, dpart, x, add, dy, gamma, beta, mean, rstd, mm, L, silu, s);
        e = cudaGetLastError();
        if (e != cudaSuccess || !dadd) return (int)e;
        gn_dadd_k<T><<<grid_for(NC, kThreads), kThreads, 0, s>>>(dadd, dpart, L.a, NC);
        return (int)cudaGetLastError();
    }
    if (L.V == 4) gn_bwd_dx<4, T, TG>(dx, x, dy, gamma, beta, mean, rstd, mm, L, silu, s);
    else gn_bwd_dx<1, T, TG>(dx, x, dy, gamma, beta, mean, rstd, mm, L, silu, s);
    return (int)cudaGetLastError();
}

}  // namespace

// ---- extern "C" launchers -----------------------------------------------------------------
extern "C" {

int64_t ddx_k_group_norm_fwd_scratch_floats(const ddx_k_gn_shape *sh) {
    if (!gn_shape_ok(sh)) return 1;
    int64_t rows, P;
    gn_chunks(sh, &rows, &P);
    return 2 * sh->N * P * sh->C;
}

int64_t ddx_k_group_norm_bwd_scratch_floats(const ddx_k_gn_shape *sh) {
    if (!gn_shape_ok(sh)) return 1;
    int64_t rows, P;
    gn_chunks(sh, &rows, &P);
    return 4 * sh->N * sh->C + 2 * sh->N * P * sh->C + 2 * sh->N * sh->G;
}

int64_t ddx_k_group_norm_add_bwd_scratch_floats(const ddx_k_gn_shape *sh) {
    if (!gn_shape_ok(sh)) return 1;
    int64_t rows, P;
    gn_chunks(sh, &rows, &P);
    return ddx_k_group_norm_bwd_scratch_floats(sh) + sh->N * P * sh->C;
}

int ddx_k_group_norm_add_fwd(void *y, float *mean, float *rstd, const void *x, const void *add, const void *gamma,
                             const void *beta, float *scratch, const ddx_k_gn_shape *sh, void *stream) {
    if (sh->N == 0 || sh->S == 0 || sh->C == 0) return 0;
    if (!gn_shape_ok(sh)) return (int)cudaErrorInvalidValue;
    const cudaStream_t s = st(stream);
    using bf = uint16_t;
    if (sh->x_dt == DDX_K_NORM_F32 && sh->g_dt == DDX_K_NORM_F32)
        return gn_fwd<float, float>((float *)y, mean, rstd, (const float *)x, (const float *)add, (const float *)gamma,
                                    (const float *)beta, scratch, sh, s);
    if (sh->x_dt == DDX_K_NORM_BF16 && sh->g_dt == DDX_K_NORM_F32)
        return gn_fwd<bf, float>((bf *)y, mean, rstd, (const bf *)x, (const bf *)add, (const float *)gamma,
                                 (const float *)beta, scratch, sh, s);
    if (sh->x_dt == DDX_K_NORM_BF16 && sh->g_dt == DDX_K_NORM_BF16)
        return gn_fwd<bf, bf>((bf *)y, mean, rstd, (const bf *)x, (const bf *)add, (const bf *)gamma, (const bf *)beta,
                              scratch, sh, s);
    return (int)cudaErrorInvalidValue;
}

int ddx_k_group_norm_fwd(void *y, float *mean, float *rstd, const void *x, const void *gamma, const void *beta,
                         float *scratch, const ddx_k_gn_shape *sh, void *stream) {
    return ddx_k_group_norm_add_fwd(y, mean, rstd, x, nullptr, gamma, beta, scratch, sh, stream);
}

int ddx_k_group_norm_add_bwd(void *dx, void *dadd, void *dgamma, void *dbeta, const void *x, const void *add,
                             const void *dy, const void *gamma, const void *beta, const float *mean, const float *rstd,
                             float *scratch, const ddx_k_gn_shape *sh, void *stream) {
    if (sh->N == 0 || sh->S == 0 || sh->C == 0) return 0;
    if (!gn_shape_ok(sh)) return (int)cudaErrorInvalidValue;
    const cudaStream_t s = st(stream);
    using bf = uint16_t;
    if (sh->x_dt == DDX_K_NORM_F32 && sh->g_dt == DDX_K_NORM_F32)
        return gn_bwd<float, float>((float *)dx, (float *)dadd, (float *)dgamma, (float *)dbeta, (const float *)x,
                                    (const float *)add, (const float *)dy, (const float *)gamma, (const float *)beta,
                                    mean, rstd, scratch, sh, s);
    if (sh->x_dt == DDX_K_NORM_BF16 && sh->g_dt == DDX_K_NORM_F32)
        return gn_bwd<bf, float>((bf *)dx, (bf *)dadd, (float *)dgamma, (float *)dbeta, (const bf *)x, (const bf *)add,
                                 (const bf *)dy, (const float *)gamma, (const float *)beta, mean, rstd, scratch, sh, s);
    if (sh->x_dt == DDX_K_NORM_BF16 && sh->g_dt == DDX_K_NORM_BF16)
        return gn_bwd<bf, bf>((bf *)dx, (bf *)dadd, (bf *)dgamma, (bf *)dbeta, (const bf *)x, (const bf *)add,
                              (const bf *)dy, (const bf *)gamma, (const bf *)beta, mean, rstd, scratch, sh, s);
    return (int)cudaErrorInvalidValue;
}

int ddx_k_group_norm_bwd(void *dx, void *dgamma, void *dbeta, const void *x, const void *dy, const void *gamma,
                         const void *beta, const float *mean, const float *rstd, float *scratch,
                         const ddx_k_gn_shape *sh, void *stream) {
    return ddx_k_group_norm_add_bwd(dx, nullptr, dgamma, dbeta, x, nullptr, dy, gamma, beta, mean, rstd, scratch, sh,
                                    stream);
}

}  // extern "C"
