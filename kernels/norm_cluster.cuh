// Part of kernels/norm.cu, included inside its anonymous namespace after kernels/common.cuh
// and kernels/norm_tiled.cuh (not a standalone header): the single-pass GroupNorm kernels that
// run one thread-block cluster per batch item on sm_90+ (two-pass v1 and one-pass v2).
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
