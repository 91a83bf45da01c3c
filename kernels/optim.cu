// Optimizer kernels (see optim.h for the launcher contract).
//
// Both passes are memory-bound: the norm reads the grads once, the update reads five arrays
// and writes four, each through 16-byte vectors in a grid-stride loop with 64-bit indices.
// Arithmetic is spelled with explicit-rounding intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn,
// __fsqrt_rn, fmaf) because nvcc contracts a*b+c into an fma by default, and the update must
// round exactly where PyTorch's CPU kernels (and train/optim.c) round.
#include "kernels/optim.h"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

namespace {

constexpr int kThreads = 256;

// Partial sums of the first pass and the total, per device (a __device__ variable exists once
// per device context), so no allocation is needed per step.
__device__ double g_sumsq_partial[DDX_K_SUMSQ_BLOCKS];
__device__ double g_sumsq_total;

// Fixed-order block sum: warp shuffles then one warp over the warp sums. The order depends
// only on the thread index, so the result is the same every run.
__device__ double block_sum(double x) {
    __shared__ double warp_sums[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = x;
    __syncthreads();
    x = 0.0;
    if (warp == 0) {
        if (lane < (int)(blockDim.x >> 5)) x = warp_sums[lane];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
    }
    return x;   // valid in thread 0
}

// Each thread sums its grid-stride share in double (the squares are exact in double, and a
// double FMA per element costs nothing next to the memory traffic); block sums to partials.
// `vec` says x is 16-byte aligned, so the bulk is read as float4.
__global__ void sumsq_partial_k(const float *__restrict__ x, int64_t n, int vec) {
    double acc = 0.0;
    const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t done = 0;
    if (vec) {
        const int64_t nv = n / 4;
        const float4 *x4 = reinterpret_cast<const float4 *>(x);
        for (int64_t i = tid; i < nv; i += stride) {
            const float4 q = __ldg(x4 + i);
            acc = fma((double)q.x, (double)q.x, acc);
            acc = fma((double)q.y, (double)q.y, acc);
            acc = fma((double)q.z, (double)q.z, acc);
            acc = fma((double)q.w, (double)q.w, acc);
        }
        done = nv * 4;
    }
    for (int64_t i = done + tid; i < n; i += stride) {
        const double e = (double)x[i];
        acc = fma(e, e, acc);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) g_sumsq_partial[blockIdx.x] = acc;
}

// One block of DDX_K_SUMSQ_BLOCKS threads adds the partials of the first pass (blocks it did
// not launch are never read).
__global__ void sumsq_final_k(int nblocks) {
    double x = (int)threadIdx.x < nblocks ? g_sumsq_partial[threadIdx.x] : 0.0;
    x = block_sum(x);
    if (threadIdx.x == 0) g_sumsq_total = x;
}

struct Adamw {
    ddx_k_adamw_args a;

    // One element; the same sequence of roundings as train/optim.c's adamw_cpu.
    __device__ __forceinline__ void operator()(float &p, float g, float &m, float &v, float *e) const {
        if (a.apply_clip) g = __fmul_rn(g, a.clip);
        p = __fmul_rn(p, a.decay);
        m = fmaf(a.w1, __fsub_rn(g, m), m);
        v = fmaf(__fmul_rn(a.w2, g), g, __fmul_rn(v, a.beta2));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), a.bc2_sqrt), a.eps);
        p = __fadd_rn(p, __fdiv_rn(__fmul_rn(a.neg_step, m), denom));
        if (e) *e = fmaf(p, a.ema_mix, __fmul_rn(*e, a.ema_keep));
    }
};

// The arguments of the graph-replayed update, finished on the device by adamw_prep_k: the
// host's per-step constants plus the clip of ddx_k_adamw_args_make computed from the device's
// norm with the same float operations in the same order; g_adamw_skip = the norm is not finite.
__device__ ddx_k_adamw_args g_adamw_args;
__device__ int g_adamw_skip;

__global__ void adamw_prep_k(const ddx_k_adamw_args *a_dev, int clip_on, float max_norm) {
    ddx_k_adamw_args a = *a_dev;
    const double norm = __dsqrt_rn(g_sumsq_total);
    const bool ok = isfinite(norm);
    const float coef = __fmul_rn(__fdiv_rn(1.0f, __fadd_rn(__double2float_rn(ok ? norm : 0.0), 1e-6f)), max_norm);
    a.apply_clip = clip_on && coef < 1.0f;
    a.clip = a.apply_clip ? coef : 1.0f;
    g_adamw_args = a;
    g_adamw_skip = ok ? 0 : 1;
}

// `vec`: every pointer 16-byte aligned, so the bulk moves as float4; the tail (and everything
// when unaligned) goes one element at a time. dev: the arguments come from adamw_prep_k
// (graph replay), and a non-finite norm leaves everything as it is.
template <bool DEV>
__global__ void adamw_k(float *__restrict__ p, const float *__restrict__ g, float *__restrict__ m,
                        float *__restrict__ v, float *__restrict__ ema, int64_t n, Adamw op_in, int vec) {
    if (DEV && g_adamw_skip) return;
    // A reference, not a copy: like the kernel parameter it reads fields where they are
    // needed, so no copy of the struct must live across the division's slow-path call.
    const Adamw &op = DEV ? *reinterpret_cast<const Adamw *>(&g_adamw_args) : op_in;
    const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const bool use_ema = op.a.apply_ema != 0 && ema != nullptr;
    int64_t done = 0;
    if (vec) {
        const int64_t nv = n / 4;
        for (int64_t i = tid; i < nv; i += stride) {
            float4 P = reinterpret_cast<float4 *>(p)[i];
            const float4 G = __ldg(reinterpret_cast<const float4 *>(g) + i);
            float4 M = reinterpret_cast<float4 *>(m)[i];
            float4 V = reinterpret_cast<float4 *>(v)[i];
            float4 E = make_float4(0.f, 0.f, 0.f, 0.f);
            if (use_ema) E = reinterpret_cast<float4 *>(ema)[i];
            op(P.x, G.x, M.x, V.x, use_ema ? &E.x : nullptr);
            op(P.y, G.y, M.y, V.y, use_ema ? &E.y : nullptr);
            op(P.z, G.z, M.z, V.z, use_ema ? &E.z : nullptr);
            op(P.w, G.w, M.w, V.w, use_ema ? &E.w : nullptr);
            reinterpret_cast<float4 *>(p)[i] = P;
            reinterpret_cast<float4 *>(m)[i] = M;
            reinterpret_cast<float4 *>(v)[i] = V;
            if (use_ema) reinterpret_cast<float4 *>(ema)[i] = E;
        }
        done = nv * 4;
    }
    for (int64_t i = done + tid; i < n; i += stride) {
        float P = p[i], M = m[i], V = v[i];
        op(P, g[i], M, V, use_ema ? ema + i : nullptr);
        p[i] = P;
        m[i] = M;
        v[i] = V;
    }
}

bool aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

int sm_count() {
    static std::atomic<int> s_sms{0};
    int sms = s_sms.load(std::memory_order_relaxed);
    if (sms <= 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) {
            (void)cudaGetLastError();   // the launch itself will report a dead device
            sms = 132;
        } else {
            s_sms.store(sms, std::memory_order_relaxed);
        }
    }
    return sms;
}

__global__ void train_stats_k(ddx_k_train_stats *st, const float *loss, const uint32_t *step_dev) {
    const double sumsq = g_sumsq_total;
    const float l = *loss;
    st->loss_sum += (double)l;
    st->loss_n += 1;
    st->last_loss = l;
    st->last_sumsq = sumsq;
    if (!isfinite(__dsqrt_rn(sumsq))) {
        if (st->bad_steps == 0) st->first_bad_step = *step_dev;
        st->bad_steps += 1;
    }
}

}  // namespace

extern "C" int ddx_k_grad_sumsq_dev(const float *x, int64_t n, void *stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (n <= 0) {
        // An empty store has norm 0: zero the total with the one-block kernel over no partials.
        sumsq_final_k<<<1, DDX_K_SUMSQ_BLOCKS, 0, s>>>(0);
        return (int)cudaGetLastError();
    }
    const int vec = aligned16(x);
    // The grid depends only on n (never on the device) so the tree, and the bits, are fixed.
    const int64_t work = vec ? (n + 3) / 4 : n;
    int64_t blocks = (work + kThreads - 1) / kThreads;
    if (blocks > DDX_K_SUMSQ_BLOCKS) blocks = DDX_K_SUMSQ_BLOCKS;
    sumsq_partial_k<<<(unsigned)blocks, kThreads, 0, s>>>(x, n, vec);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    sumsq_final_k<<<1, DDX_K_SUMSQ_BLOCKS, 0, s>>>((int)blocks);
    return (int)cudaGetLastError();
}

extern "C" int ddx_k_grad_sumsq(const float *x, int64_t n, double *out_host, void *stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    *out_host = 0.0;
    if (n <= 0) return 0;
    cudaError_t e = (cudaError_t)ddx_k_grad_sumsq_dev(x, n, stream);
    if (e != cudaSuccess) return (int)e;
    double total = 0.0;
    e = cudaMemcpyFromSymbolAsync(&total, g_sumsq_total, sizeof total, 0, cudaMemcpyDeviceToHost, s);
    if (e != cudaSuccess) return (int)e;
    e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) return (int)e;
    *out_host = total;
    return 0;
}

extern "C" int ddx_k_adamw_step(float *param, const float *grad, float *m, float *v, float *ema, int64_t n,
                                const ddx_k_adamw_args *a, void *stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (n <= 0) return 0;
    const int vec = aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v) &&
                    (!a->apply_ema || aligned16(ema));
    const int64_t work = vec ? (n + 3) / 4 : n;
    int64_t blocks = (work + kThreads - 1) / kThreads;
    // A few waves of resident blocks; the grid-stride loop covers the rest.
    const int64_t cap = (int64_t)sm_count() * (2048 / kThreads) * 2;
    if (blocks > cap) blocks = cap;
    adamw_k<false><<<(unsigned)blocks, kThreads, 0, s>>>(param, grad, m, v, a->apply_ema ? ema : nullptr, n, Adamw{*a}, vec);
    return (int)cudaGetLastError();
}

extern "C" int ddx_k_train_stats_update(ddx_k_train_stats *st, const float *loss, const uint32_t *step_dev, void *stream) {
    if (!st || !loss || !step_dev) return (int)cudaErrorInvalidValue;
    train_stats_k<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(st, loss, step_dev);
    return (int)cudaGetLastError();
}

extern "C" int ddx_k_adamw_step_dev(float *param, const float *grad, float *m, float *v, float *ema, int64_t n,
                                    const ddx_k_adamw_args *a_dev, int apply_ema, int clip_on, float max_norm,
                                    void *stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (!a_dev) return (int)cudaErrorInvalidValue;
    if (n <= 0) return 0;
    const int vec = aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v) && (!apply_ema || aligned16(ema));
    const int64_t work = vec ? (n + 3) / 4 : n;
    int64_t blocks = (work + kThreads - 1) / kThreads;
    const int64_t cap = (int64_t)sm_count() * (2048 / kThreads) * 2;
    if (blocks > cap) blocks = cap;
    adamw_prep_k<<<1, 1, 0, s>>>(a_dev, clip_on, max_norm);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    // op.a is replaced inside the kernel; apply_ema here only keeps ema non-NULL.
    ddx_k_adamw_args init = {};
    init.apply_ema = apply_ema;
    adamw_k<true><<<(unsigned)blocks, kThreads, 0, s>>>(param, grad, m, v, apply_ema ? ema : nullptr, n, Adamw{init}, vec);
    return (int)cudaGetLastError();
}
