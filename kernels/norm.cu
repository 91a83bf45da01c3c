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
#include "kernels/tune.h"

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

#include "kernels/norm_tiled.cuh"

#include "kernels/norm_cluster.cuh"

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
        const char *e = ddx_tune_raw(DDX_TUNE_GN_CLUSTER);
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
        const char *e = ddx_tune_raw(DDX_TUNE_GN_CL_V2);
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
        const char *e = ddx_tune_raw(DDX_TUNE_GN_DEBUG);
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
