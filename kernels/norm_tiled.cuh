// Part of kernels/norm.cu, included inside its anonymous namespace after kernels/common.cuh
// (not a standalone header): the three-pass tiled GroupNorm kernels, the path for every
// device and shape (and the only one with the fused time-embedding add).
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
