// Diffusion kernels: randn, q_sample, sampler_step (see diffusion.h for the contract).
//
// One thread handles one Philox group at a time (4 consecutive normals from one
// Philox4x32-10 call plus two Box-Muller pairs), so each group is drawn exactly once. Element
// e of a tensor is global index offset + e; group g covers global indices 4g .. 4g+3. When the
// offset is a multiple of 4 and every pointer is 16-byte aligned, a group is exactly 4
// consecutive tensor elements at a 16-byte boundary and moves as one vector load/store per
// operand; otherwise (offset not a multiple of 4, a view starting anywhere, q_sample samples
// whose size is not a multiple of 4) the thread still draws its group once and then writes
// the in-range lanes one by one. The ops are memory-bound: a grid of a few blocks per SM
// striding over the groups keeps the loads wide and in flight.
//
// Every float operation goes through ddx_rng_mul / ddx_rng_add (__fmul_rn / __fadd_rn) in the
// order runtime/ops/diffusion.c uses, so nvcc cannot contract them into FMAs and the GPU
// output is bit-identical to the CPU reference.
#include "kernels/diffusion.h"

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/philox.h"

#include "kernels/common.cuh"

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void draw4(const ddx_k_rng_key &k, uint64_t g, float z[4]) {
    uint32_t x[4];
    ddx_philox_group(k.seed, k.stream, k.step, g, x);
    ddx_philox_normal4(x, z);
}


__device__ __forceinline__ float lin2(float p, float x, float q, float y) {
    return ddx_rng_add(ddx_rng_mul(p, x), ddx_rng_mul(q, y));
}

// ---- per-element work: one(i, z) for a single element, four(i, z) for 4 aligned ones ----
struct RandnF32 {
    __device__ void load() {}
    __device__ bool noise() const { return true; }
    static constexpr bool kNoise = true;
    float *y;
    __device__ void one(int64_t i, float z) const { y[i] = z; }
    __device__ void four(int64_t i, const float z[4]) const {
        *reinterpret_cast<float4 *>(y + i) = make_float4(z[0], z[1], z[2], z[3]);
    }
};

struct RandnBf16 {
    __device__ void load() {}
    __device__ bool noise() const { return true; }
    static constexpr bool kNoise = true;
    uint16_t *y;
    __device__ void one(int64_t i, float z) const { y[i] = f32_to_bf16(z); }
    __device__ void four(int64_t i, const float z[4]) const {
        uint2 v;
        v.x = (uint32_t)f32_to_bf16(z[0]) | ((uint32_t)f32_to_bf16(z[1]) << 16);
        v.y = (uint32_t)f32_to_bf16(z[2]) | ((uint32_t)f32_to_bf16(z[3]) << 16);
        *reinterpret_cast<uint2 *>(y + i) = v;
    }
};

// four() needs per % 4 == 0 (the launcher checks), so the 4 elements share a sample.
struct QSample {
    __device__ void load() {}
    __device__ bool noise() const { return true; }
    static constexpr bool kNoise = true;
    float *y;
    const float *x0, *coef;
    int64_t per;
    __device__ void one(int64_t i, float z) const {
        const int64_t s = i / per;
        y[i] = lin2(__ldg(coef + 2 * s), __ldg(x0 + i), __ldg(coef + 2 * s + 1), z);
    }
    __device__ void four(int64_t i, const float z[4]) const {
        const int64_t s = i / per;
        const float c0 = __ldg(coef + 2 * s), c1 = __ldg(coef + 2 * s + 1);
        const float4 x = __ldg(reinterpret_cast<const float4 *>(x0 + i));
        *reinterpret_cast<float4 *>(y + i) =
            make_float4(lin2(c0, x.x, c1, z[0]), lin2(c0, x.y, c1, z[1]), lin2(c0, x.z, c1, z[2]), lin2(c0, x.w, c1, z[3]));
    }
};

// MODE: STEP_CLEAN (sigma == 0 on the host: no draw), STEP_NOISY (sigma != 0 on the host),
// STEP_DEV (coefficients read from device memory when the kernel runs; draws only when the
// loaded sigma is non-zero, so both cases round exactly like the host-coefficient kernels).
enum { STEP_CLEAN = 0, STEP_NOISY = 1, STEP_DEV = 2 };

template <int MODE> struct Step {
    static constexpr bool kNoise = MODE != STEP_CLEAN;
    float *y;
    const float *xt, *o;
    ddx_k_sampler_coefs k;
    const float *ou;   // guided: the unconditional half of the doubled output, else NULL
    // The model output the update reads: out, or eps_u + w (eps_c - eps_u) when guided.
    __device__ float guide(float c, float u) const {
        return ou ? ddx_rng_add(u, ddx_rng_mul(k.guidance, ddx_rng_add(c, -u))) : c;
    }
    __device__ void load() {
        if (MODE == STEP_DEV) {
            const float *d = k.dev;
            k.a = __ldg(d + 0), k.b = __ldg(d + 1), k.f = __ldg(d + 2), k.g = __ldg(d + 3);
            k.c = __ldg(d + 4), k.d = __ldg(d + 5), k.e = __ldg(d + 6), k.sigma = __ldg(d + 7);
            k.clip = __ldg(d + 8) != 0.0f;
        }
    }
    __device__ bool noise() const { return MODE == STEP_NOISY || (MODE == STEP_DEV && k.sigma != 0.0f); }
    __device__ float f(float x, float m, float z) const {
        float x0 = lin2(k.a, x, k.b, m);
        // Comparisons, not fminf/fmaxf: a NaN stays NaN (as on the CPU).
        if (k.clip) x0 = x0 < -1.0f ? -1.0f : (x0 > 1.0f ? 1.0f : x0);
        const float eps = lin2(k.f, x, k.g, m);
        float v = ddx_rng_add(lin2(k.c, x0, k.d, x), ddx_rng_mul(k.e, eps));
        if (noise()) v = ddx_rng_add(v, ddx_rng_mul(k.sigma, z));
        return v;
    }
    __device__ void one(int64_t i, float z) const { y[i] = f(__ldg(xt + i), guide(__ldg(o + i), ou ? __ldg(ou + i) : 0.0f), z); }
    __device__ void four(int64_t i, const float z[4]) const {
        const float4 x = __ldg(reinterpret_cast<const float4 *>(xt + i));
        float4 m = __ldg(reinterpret_cast<const float4 *>(o + i));
        if (ou) {
            const float4 u = __ldg(reinterpret_cast<const float4 *>(ou + i));
            m = make_float4(guide(m.x, u.x), guide(m.y, u.y), guide(m.z, u.z), guide(m.w, u.w));
        }
        *reinterpret_cast<float4 *>(y + i) = make_float4(f(x.x, m.x, z[0]), f(x.y, m.y, z[1]), f(x.z, m.z, z[2]), f(x.w, m.w, z[3]));
    }
};

// The update followed by the inpainting blend (ddx_k_blend). The known noise of element i is
// normal number b.key.offset + i of its own key: a four() whose elements do not start a Philox
// group of that key (an offset not a multiple of 4) draws per lane.
template <int MODE> struct StepBlend {
    static constexpr bool kNoise = MODE != STEP_CLEAN;
    Step<MODE> s;
    ddx_k_blend b;
    __device__ void load() {
        s.load();
        if (MODE == STEP_DEV) b.kc0 = __ldg(b.dev + 0), b.kc1 = __ldg(b.dev + 1);
        if (b.key.step_dev) b.key.step = __ldg(b.key.step_dev);
    }
    __device__ bool noise() const { return s.noise(); }
    __device__ float zk(int64_t i) const {
        const uint64_t e = b.key.offset + (uint64_t)i;
        float z[4];
        draw4(b.key, e >> 2, z);
        return z[e & 3u];
    }
    // Kept and generated pixels pass through untouched (as on the CPU): the known pixels of the
    // result are the input exactly at the last step.
    __device__ float mix(float w, float kn, float v) const {
        if (w == 1.0f) return kn;
        if (w == 0.0f) return v;
        return ddx_rng_add(ddx_rng_mul(w, kn), ddx_rng_mul(ddx_rng_sub(1.0f, w), v));
    }
    // The update is Step's own (whatever it reads), written to y and read back by the same
    // thread (plain loads: y is not read-only), then blended in place.
    __device__ void one(int64_t i, float z) const {
        s.one(i, z);
        const float kn = lin2(b.kc0, __ldg(b.known + i), b.kc1, b.kc1 != 0.0f ? zk(i) : 0.0f);
        s.y[i] = mix(__ldg(b.mask + i), kn, s.y[i]);
    }
    __device__ void four(int64_t i, const float z[4]) const {
        s.four(i, z);
        const float4 v = *reinterpret_cast<const float4 *>(s.y + i);
        const float4 k = __ldg(reinterpret_cast<const float4 *>(b.known + i));
        const float4 w = __ldg(reinterpret_cast<const float4 *>(b.mask + i));
        float q[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (b.kc1 != 0.0f) {
            const uint64_t e = b.key.offset + (uint64_t)i;
            if ((e & 3u) == 0) {
                draw4(b.key, e >> 2, q);
            } else {
#pragma unroll
                for (int l = 0; l < 4; l++) q[l] = zk(i + l);
            }
        }
        *reinterpret_cast<float4 *>(s.y + i) =
            make_float4(mix(w.x, lin2(b.kc0, k.x, b.kc1, q[0]), v.x), mix(w.y, lin2(b.kc0, k.y, b.kc1, q[1]), v.y),
                        mix(w.z, lin2(b.kc0, k.z, b.kc1, q[2]), v.z), mix(w.w, lin2(b.kc0, k.w, b.kc1, q[3]), v.w));
    }
};

// The multistep update (ddx_k_ms_coefs). H1 / H2: whether the history terms exist, so a
// launch without them reads nothing extra.
template <int MODE, bool H1, bool H2> struct StepMS {
    static constexpr bool kNoise = MODE != STEP_CLEAN;
    float *y;
    const float *xt, *o, *h1, *h2;
    int64_t n;
    ddx_k_ms_coefs k;
    __device__ void load() {
        if (MODE == STEP_DEV) {
            const float *d = k.dev;
            k.a = __ldg(d + 0), k.b = __ldg(d + 1), k.cx = __ldg(d + 2), k.cd = __ldg(d + 3);
            k.c1 = __ldg(d + 4), k.c2 = __ldg(d + 5), k.sigma = __ldg(d + 6);
            k.clip = __ldg(d + 7) != 0.0f;
        }
    }
    __device__ bool noise() const { return MODE == STEP_NOISY || (MODE == STEP_DEV && k.sigma != 0.0f); }
    __device__ float model(float oc, float ou) const {
        return k.guided ? ddx_rng_add(ou, ddx_rng_mul(k.w, ddx_rng_sub(oc, ou))) : oc;
    }
    // Returns the new x; *dp gets D.
    __device__ float f(float x, float m, float a1, float a2, float z, float *dp) const {
        float d = lin2(k.a, x, k.b, m);
        // Comparisons, not fminf/fmaxf: a NaN stays NaN (as on the CPU).
        if (k.clip) d = d < -1.0f ? -1.0f : (d > 1.0f ? 1.0f : d);
        float v = lin2(k.cx, x, k.cd, d);
        if (H1) v = ddx_rng_add(v, ddx_rng_mul(k.c1, a1));
        if (H2) v = ddx_rng_add(v, ddx_rng_mul(k.c2, a2));
        if (noise()) v = ddx_rng_add(v, ddx_rng_mul(k.sigma, z));
        *dp = d;
        return v;
    }
    __device__ void one(int64_t i, float z) const {
        float d;
        const float m = model(__ldg(o + i), k.guided ? __ldg(o + n + i) : 0.0f);
        y[i] = f(__ldg(xt + i), m, H1 ? __ldg(h1 + i) : 0.0f, H2 ? __ldg(h2 + i) : 0.0f, z, &d);
        y[n + i] = d;
    }
    __device__ void four(int64_t i, const float z[4]) const {
        const float4 x = __ldg(reinterpret_cast<const float4 *>(xt + i));
        float4 m = __ldg(reinterpret_cast<const float4 *>(o + i));
        if (k.guided) {
            const float4 u = __ldg(reinterpret_cast<const float4 *>(o + n + i));
            m = make_float4(model(m.x, u.x), model(m.y, u.y), model(m.z, u.z), model(m.w, u.w));
        }
        float4 a1 = make_float4(0.0f, 0.0f, 0.0f, 0.0f), a2 = a1, d;
        if (H1) a1 = __ldg(reinterpret_cast<const float4 *>(h1 + i));
        if (H2) a2 = __ldg(reinterpret_cast<const float4 *>(h2 + i));
        float4 v;
        v.x = f(x.x, m.x, a1.x, a2.x, z[0], &d.x);
        v.y = f(x.y, m.y, a1.y, a2.y, z[1], &d.y);
        v.z = f(x.z, m.z, a1.z, a2.z, z[2], &d.z);
        v.w = f(x.w, m.w, a1.w, a2.w, z[3], &d.w);
        *reinterpret_cast<float4 *>(y + i) = v;
        *reinterpret_cast<float4 *>(y + n + i) = d;
    }
};

// Global indices [key.offset, end): grid-stride over the Philox groups that touch them.
template <class Op, bool VEC>
__global__ void __launch_bounds__(kThreads) group_kernel(Op op_in, ddx_k_rng_key key, uint64_t end) {
    Op op = op_in;
    op.load();
    // A graph replays this launch with the step (and sampler coefficients) of the moment.
    if (key.step_dev) key.step = __ldg(key.step_dev);
    const bool noise = op.noise();
    const uint64_t g0 = key.offset >> 2;
    const uint64_t ngroups = ((end - 1) >> 2) - g0 + 1;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; t < ngroups; t += stride) {
        const uint64_t g = g0 + t;
        float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (Op::kNoise && noise) draw4(key, g, z);
        const uint64_t first = g << 2;
        if (VEC && first + 4 <= end) {
            op.four((int64_t)(first - key.offset), z);
        } else {
#pragma unroll
            for (int l = 0; l < 4; l++) {
                const uint64_t e = first + (uint64_t)l;
                if (e >= key.offset && e < end) op.one((int64_t)(e - key.offset), z[l]);
            }
        }
    }
}

bool aligned16(const void *p) { return p == nullptr || ((uintptr_t)p & 15u) == 0; }

// Launches group_kernel over n elements; `vec` is the caller's alignment verdict for its
// pointers (the offset condition is added here).
template <class Op> int launch(const Op &op, int64_t n, ddx_k_rng_key key, bool vec, void *stream) {
    if (n < 0 || key.offset > UINT64_MAX - (uint64_t)n) return (int)cudaErrorInvalidValue;
    if (key.step == DDX_K_STEP_ON_DEVICE && !key.step_dev) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    const uint64_t end = key.offset + (uint64_t)n;
    const uint64_t ngroups = ((end - 1) >> 2) - (key.offset >> 2) + 1;
    int dev = 0, sms = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (err != cudaSuccess) return (int)err;
    const uint64_t want = (ngroups + kThreads - 1) / kThreads;
    const uint64_t cap = (uint64_t)(sms > 0 ? sms : 1) * 16;
    const unsigned blocks = (unsigned)(want < cap ? want : cap);
    cudaStream_t s = (cudaStream_t)stream;
    if (vec && (key.offset & 3u) == 0)
        group_kernel<Op, true><<<blocks, kThreads, 0, s>>>(op, key, end);
    else
        group_kernel<Op, false><<<blocks, kThreads, 0, s>>>(op, key, end);
    return (int)cudaGetLastError();
}

}  // namespace

extern "C" int ddx_k_randn_f32(float *y, int64_t n, ddx_k_rng_key key, void *stream) {
    if (n > 0 && !y) return (int)cudaErrorInvalidValue;
    return launch(RandnF32{y}, n, key, aligned16(y), stream);
}

extern "C" int ddx_k_randn_bf16(uint16_t *y, int64_t n, ddx_k_rng_key key, void *stream) {
    if (n > 0 && !y) return (int)cudaErrorInvalidValue;
    // Four bf16 are one 8-byte store.
    return launch(RandnBf16{y}, n, key, ((uintptr_t)y & 7u) == 0, stream);
}

extern "C" int ddx_k_q_sample_f32(float *y, const float *x0, const float *coef, int64_t n, int64_t per_sample,
                                  ddx_k_rng_key key, void *stream) {
    if (n > 0 && (!y || !x0 || !coef || per_sample <= 0 || n % per_sample != 0)) return (int)cudaErrorInvalidValue;
    const bool vec = aligned16(y) && aligned16(x0) && per_sample % 4 == 0;
    return launch(QSample{y, x0, coef, per_sample}, n, key, vec, stream);
}

extern "C" int ddx_k_sampler_step_f32(float *y, const float *x_t, const float *out, int64_t n, ddx_k_sampler_coefs co,
                                      ddx_k_rng_key key, void *stream) {
    if (n > 0 && (!y || !x_t || !out)) return (int)cudaErrorInvalidValue;
    const float *ou = co.guided ? out + n : nullptr;
    const bool vec = aligned16(y) && aligned16(x_t) && aligned16(out) && aligned16(ou);
    if (co.dev) {
        if (!key.step_dev) return (int)cudaErrorInvalidValue;
        return launch(Step<STEP_DEV>{y, x_t, out, co, ou}, n, key, vec, stream);
    }
    if (co.sigma != 0.0f) return launch(Step<STEP_NOISY>{y, x_t, out, co, ou}, n, key, vec, stream);
    // No noise: the offset does not matter for the arithmetic, only for which lanes group
    // boundaries fall on; key it at 0 so the 16-byte path applies whatever the caller's offset.
    key.offset = 0;
    return launch(Step<STEP_CLEAN>{y, x_t, out, co, ou}, n, key, vec, stream);
}

extern "C" int ddx_k_sampler_step_blend_f32(float *y, const float *x_t, const float *out, int64_t n, ddx_k_sampler_coefs co,
                                            ddx_k_rng_key key, ddx_k_blend b, void *stream) {
    if (n > 0 && (!y || !x_t || !out || !b.known || !b.mask)) return (int)cudaErrorInvalidValue;
    if (n < 0 || b.key.offset > UINT64_MAX - (uint64_t)n) return (int)cudaErrorInvalidValue;
    if (b.key.step == DDX_K_STEP_ON_DEVICE && !b.key.step_dev) return (int)cudaErrorInvalidValue;
    // Guided inpainting: the update reads the doubled output exactly as the plain update does.
    const float *ou = co.guided ? out + n : nullptr;
    const bool vec = aligned16(y) && aligned16(x_t) && aligned16(out) && aligned16(ou) && aligned16(b.known) &&
                     aligned16(b.mask);
    if (co.dev) {
        if (!key.step_dev || !b.dev) return (int)cudaErrorInvalidValue;
        return launch(StepBlend<STEP_DEV>{Step<STEP_DEV>{y, x_t, out, co, ou}, b}, n, key, vec, stream);
    }
    if (co.sigma != 0.0f) return launch(StepBlend<STEP_NOISY>{Step<STEP_NOISY>{y, x_t, out, co, ou}, b}, n, key, vec, stream);
    // As for the plain update: no update noise, so the launch is keyed at 0 for the 16-byte
    // path; the blend's noise is addressed by b.key.offset + i, which does not move.
    key.offset = 0;
    return launch(StepBlend<STEP_CLEAN>{Step<STEP_CLEAN>{y, x_t, out, co, ou}, b}, n, key, vec, stream);
}

namespace {

template <bool H1, bool H2>
int launch_ms(float *y, const float *x_t, const float *out, const float *h1, const float *h2, int64_t n, ddx_k_ms_coefs co,
              ddx_k_rng_key key, bool vec, void *stream) {
    if (co.dev) return launch(StepMS<STEP_DEV, H1, H2>{y, x_t, out, h1, h2, n, co}, n, key, vec, stream);
    if (co.sigma != 0.0f) return launch(StepMS<STEP_NOISY, H1, H2>{y, x_t, out, h1, h2, n, co}, n, key, vec, stream);
    // No noise: keyed at 0 so the 16-byte path applies whatever the caller's offset.
    key.offset = 0;
    return launch(StepMS<STEP_CLEAN, H1, H2>{y, x_t, out, h1, h2, n, co}, n, key, vec, stream);
}

}  // namespace

extern "C" int ddx_k_sampler_step_ms_f32(float *y, const float *x_t, const float *out, const float *h1, const float *h2,
                                         int64_t n, ddx_k_ms_coefs co, ddx_k_rng_key key, void *stream) {
    if (n > 0 && (!y || !x_t || !out || (h2 && !h1))) return (int)cudaErrorInvalidValue;
    if (co.dev && !key.step_dev) return (int)cudaErrorInvalidValue;
    // The second output half starts at y + n: a 16-byte path needs n % 4 == 0 as well.
    const bool vec = aligned16(y) && aligned16(x_t) && aligned16(out) && aligned16(h1) && aligned16(h2) && n % 4 == 0;
    if (h2) return launch_ms<true, true>(y, x_t, out, h1, h2, n, co, key, vec, stream);
    if (h1) return launch_ms<true, false>(y, x_t, out, h1, h2, n, co, key, vec, stream);
    return launch_ms<false, false>(y, x_t, out, h1, h2, n, co, key, vec, stream);
}
