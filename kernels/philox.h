// Philox4x32-10 counter-based random numbers with identical bits on CPU and GPU.
//
// Philox (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC11) is a keyed
// bijection of a 128-bit counter: any element's random bits are a pure function of
// (key, counter), so a kernel thread, a CPU loop and a resumed run all agree without
// carrying generator state around.
//
// ddx keying convention (every consumer must follow it, or two consumers share noise):
//   key[0], key[1]  = seed low 32 bits, seed high 32 bits
//   ctr[0], ctr[1]  = group index low 32, high 32  (group g holds elements 4g .. 4g+3)
//   ctr[2]          = stream: which consumer draws (dropout call k, q_sample noise,
//                     sampler noise, ...); see DDX_RNG_STREAM_* below
//   ctr[3]          = step: training step or sampling step (must fit in 32 bits)
// Element e of a fill with element offset `offset` is lane (offset + e) % 4 of group
// (offset + e) / 4, so filling [0, n) equals filling [0, k) then [k, n) with offset k.
// There is no separate rank word: a data-parallel consumer passes offset = the global
// element index of its shard, which keeps results independent of the number of ranks.
//
// Floats are defined exactly, from integer bits and correctly rounded +, -, *, /, sqrt
// only, so they are bit-identical wherever float arithmetic is IEEE binary32 without
// excess precision and without contraction into FMA:
//   uniform u = (2 * (x >> 9) + 1) * 2^-24, in the open interval (0, 1) on a grid of 2^23
//     points symmetric about 1/2 (exact; log(u) and log(1 - u) are finite).
//   normals: Box-Muller on lanes (0, 1) and (2, 3) of one group:
//     z0 = sqrt(-2 log u0) cos(2 pi u1), z1 = sqrt(-2 log u0) sin(2 pi u1)
//   with log, sin and cos evaluated by the polynomials below rather than libm/CUDA math,
//   whose last-ulp results differ between glibc and the GPU. The polynomials are accurate
//   to a few float ulps (tests/test_philox.c bounds the error against double libm).
// Device code spells each operation with a _rn intrinsic so nvcc cannot fuse a multiply
// and an add; host code hides each product from contraction (DDX_RNG_OPAQUE). -ffast-math
// would still break the match; tests/test_philox.c pins a hash of the output bits.
//
// This header is the core that kernels/ owns: the keying convention, the exact float helpers
// and the per-element draws, for host and device alike, plus the launchers of the GPU fills.
// runtime/philox.h adds the CPU fills on top.
#ifndef DDX_KERNELS_PHILOX_H
#define DDX_KERNELS_PHILOX_H

#include <float.h>
#include <stdint.h>
#include <string.h>

#ifndef DDX_HD
#ifdef __CUDACC__
#define DDX_HD __host__ __device__
#else
#define DDX_HD
#endif
#endif

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != -1
#error "kernels/philox.h: float expressions are evaluated in extra precision (x87?); CPU noise would not match the GPU. Build with SSE math."
#endif

#ifdef __cplusplus
extern "C" {
#endif

// Streams used by ddx itself. Dropout call k of a step uses DDX_RNG_STREAM_DROPOUT + k;
// the other consumers sit far above any plausible dropout count.
enum {
    DDX_RNG_STREAM_DROPOUT = 0,
    DDX_RNG_STREAM_Q_SAMPLE = 0x40000000u,     // forward-process noise in training
    DDX_RNG_STREAM_TIMESTEP = 0x40000001u,     // timestep draws in training
    DDX_RNG_STREAM_SAMPLER = 0x40000002u,      // sampler noise (initial x_T and per-step)
    DDX_RNG_STREAM_DATA = 0x40000003u,         // shuffling / augmentation
    DDX_RNG_STREAM_INIT = 0x40000004u,         // parameter initialisation
    DDX_RNG_STREAM_INPAINT = 0x40000005u,      // inpainting: the known region noised to the next step
    DDX_RNG_STREAM_MASK = 0x40000006u,         // random inpainting masks (step = image index)
    DDX_RNG_STREAM_LABEL_DROP = 0x40000010u,   // classifier-free guidance label dropout in training
};

#define DDX_PHILOX_M0 0xD2511F53u
#define DDX_PHILOX_M1 0xCD9E8D57u
#define DDX_PHILOX_W0 0x9E3779B9u
#define DDX_PHILOX_W1 0xBB67AE85u

// ---- exact float operations: the same correctly rounded result on host and device ----------
#if defined(__CUDA_ARCH__)
static inline DDX_HD float ddx_rng_mul(float a, float b) { return __fmul_rn(a, b); }
static inline DDX_HD float ddx_rng_add(float a, float b) { return __fadd_rn(a, b); }
static inline DDX_HD float ddx_rng_sub(float a, float b) { return __fsub_rn(a, b); }
static inline DDX_HD float ddx_rng_div(float a, float b) { return __fdiv_rn(a, b); }
static inline DDX_HD float ddx_rng_sqrt(float a) { return __fsqrt_rn(a); }
static inline DDX_HD float ddx_rng_i2f(int32_t a) { return __int2float_rn(a); }
static inline DDX_HD uint32_t ddx_rng_f2bits(float a) { return __float_as_uint(a); }
static inline DDX_HD float ddx_rng_bits2f(uint32_t a) { return __uint_as_float(a); }
static inline DDX_HD uint32_t ddx_rng_mulhi(uint32_t a, uint32_t b) { return __umulhi(a, b); }
#else
// A compiler allowed to contract (GCC's -std=gnu*, -ffp-contract=fast, on an FMA target:
// -march=native, aarch64) would fuse a product into the following add and round once
// instead of twice. Passing each product through an empty asm hides it from that
// optimisation at no run-time cost; other targets rely on the ISO C default.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define DDX_RNG_OPAQUE(v) __asm__("" : "+x"(v))
#elif defined(__GNUC__) && defined(__aarch64__)
#define DDX_RNG_OPAQUE(v) __asm__("" : "+w"(v))
#else
#define DDX_RNG_OPAQUE(v) ((void)0)
#endif
static inline DDX_HD float ddx_rng_mul(float a, float b) {
    float r = a * b;
    DDX_RNG_OPAQUE(r);
    return r;
}
static inline DDX_HD float ddx_rng_add(float a, float b) { return a + b; }
static inline DDX_HD float ddx_rng_sub(float a, float b) { return a - b; }
static inline DDX_HD float ddx_rng_div(float a, float b) { return a / b; }
static inline DDX_HD float ddx_rng_sqrt(float a) { return __builtin_sqrtf(a); }
static inline DDX_HD float ddx_rng_i2f(int32_t a) { return (float)a; }
static inline DDX_HD uint32_t ddx_rng_f2bits(float a) { uint32_t u; memcpy(&u, &a, 4); return u; }
static inline DDX_HD float ddx_rng_bits2f(uint32_t a) { float f; memcpy(&f, &a, 4); return f; }
static inline DDX_HD uint32_t ddx_rng_mulhi(uint32_t a, uint32_t b) {
    return (uint32_t)(((uint64_t)a * b) >> 32);
}
#endif

// ---- Philox4x32-10 ------------------------------------------------------------------------
static inline DDX_HD void ddx_philox_round(uint32_t x[4], uint32_t k0, uint32_t k1) {
    uint32_t hi0 = ddx_rng_mulhi(DDX_PHILOX_M0, x[0]), lo0 = DDX_PHILOX_M0 * x[0];
    uint32_t hi1 = ddx_rng_mulhi(DDX_PHILOX_M1, x[2]), lo1 = DDX_PHILOX_M1 * x[2];
    uint32_t y0 = hi1 ^ x[1] ^ k0, y2 = hi0 ^ x[3] ^ k1;
    x[0] = y0;
    x[1] = lo1;
    x[2] = y2;
    x[3] = lo0;
}

static inline DDX_HD void ddx_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t x[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        ddx_philox_round(x, k0, k1);
        k0 += DDX_PHILOX_W0;
        k1 += DDX_PHILOX_W1;
    }
    out[0] = x[0];
    out[1] = x[1];
    out[2] = x[2];
    out[3] = x[3];
}

// The 4 raw words of group `group` under the ddx keying convention.
static inline DDX_HD void ddx_philox_group(uint64_t seed, uint32_t stream, uint32_t step, uint64_t group,
                                           uint32_t out[4]) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)group, (uint32_t)(group >> 32), stream, step};
    ddx_philox4x32_10(ctr, key, out);
}

// ---- floats ---------------------------------------------------------------------------------
// (2 * (x >> 9) + 1) * 2^-24: both the conversion (< 2^24) and the power-of-two scale are exact.
static inline DDX_HD float ddx_philox_unit(uint32_t x) {
    return ddx_rng_mul(ddx_rng_i2f((int32_t)(((x >> 9) << 1) | 1u)), 0x1p-24f);
}

// Natural log for positive normal floats, from +, *, / only. u = 2^e * m with
// m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, so the
// odd series to s^9 leaves a truncation error below 1e-9 relative.
static inline DDX_HD float ddx_rng_log(float u) {
    uint32_t b = ddx_rng_f2bits(u);
    int32_t e = (int32_t)((b >> 23) & 0xffu) - 127;
    uint32_t mb = (b & 0x007fffffu) | 0x3f800000u;   // m in [1, 2)
    if (mb > 0x3fb504f3u) {                           // m > sqrt(2): halve it (exact)
        mb -= 0x00800000u;
        e += 1;
    }
    float f = ddx_rng_sub(ddx_rng_bits2f(mb), 1.0f);  // exact (Sterbenz)
    float s = ddx_rng_div(f, ddx_rng_add(f, 2.0f));
    float z = ddx_rng_mul(s, s);
    float p = ddx_rng_add(0x1.5555560p-1f,            // 2/3
              ddx_rng_mul(z, ddx_rng_add(0x1.99999ap-2f,    // 2/5
              ddx_rng_mul(z, ddx_rng_add(0x1.24924ap-2f,    // 2/7
              ddx_rng_mul(z, 0x1.c71c72p-3f))))));          // 2/9
    float logm = ddx_rng_add(ddx_rng_add(s, s), ddx_rng_mul(ddx_rng_mul(s, z), p));
    // ln 2 split: hi has 15 significant bits, so e * hi is exact for any float exponent.
    float ef = ddx_rng_i2f(e);
    return ddx_rng_add(ddx_rng_mul(ef, 0x1.62e4p-1f), ddx_rng_add(logm, ddx_rng_mul(ef, 0x1.7f7d1cp-20f)));
}

// cos and sin of 2 pi u for u = (2m + 1) * 2^-24 given as the odd integer v = 2m + 1.
// The quadrant reduction is done in integers, so it is exact: 4u = q + r, |r| < 1/2
// (never a tie, v is odd), angle = q pi/2 + r pi/2 with |r pi/2| < pi/4.
static inline DDX_HD void ddx_rng_cossin_2pi(uint32_t v, float *c, float *s) {
    uint32_t q = (v + (1u << 21)) >> 22;                  // round(v / 2^22), 0..4
    int32_t rn = (int32_t)v - (int32_t)(q << 22);         // in (-2^21, 2^21)
    float r = ddx_rng_mul(ddx_rng_i2f(rn), 0x1p-22f);     // exact
    float r2 = ddx_rng_mul(r, r);
    // Taylor coefficients of sin(pi/2 r) and cos(pi/2 r); the first omitted terms are
    // below 2e-9 for |r| <= 1/2.
    float sp = ddx_rng_add(0x1.921fb6p+0f,
               ddx_rng_mul(r2, ddx_rng_add(-0x1.4abbcep-1f,
               ddx_rng_mul(r2, ddx_rng_add(0x1.466bc6p-4f,
               ddx_rng_mul(r2, ddx_rng_add(-0x1.32d2ccp-8f,
               ddx_rng_mul(r2, 0x1.507834p-13f))))))));
    float sr = ddx_rng_mul(r, sp);
    float cp = ddx_rng_add(-0x1.3bd3ccp+0f,
               ddx_rng_mul(r2, ddx_rng_add(0x1.03c1f0p-2f,
               ddx_rng_mul(r2, ddx_rng_add(-0x1.55d3c8p-6f,
               ddx_rng_mul(r2, ddx_rng_add(0x1.e1f506p-11f,
               ddx_rng_mul(r2, -0x1.a6d1f2p-16f))))))));
    float cr = ddx_rng_add(1.0f, ddx_rng_mul(r2, cp));
    switch (q & 3u) {
    case 0: *c = cr; *s = sr; break;
    case 1: *c = -sr; *s = cr; break;
    case 2: *c = -cr; *s = -sr; break;
    default: *c = sr; *s = -cr; break;
    }
}

// Four standard normals from the four words of one group (Box-Muller on lane pairs).
static inline DDX_HD void ddx_philox_normal4(const uint32_t x[4], float out[4]) {
    for (int h = 0; h < 2; h++) {
        float u = ddx_philox_unit(x[2 * h]);
        float rad = ddx_rng_sqrt(ddx_rng_mul(-2.0f, ddx_rng_log(u)));
        float c, s;
        ddx_rng_cossin_2pi(((x[2 * h + 1] >> 9) << 1) | 1u, &c, &s);
        out[2 * h] = ddx_rng_mul(rad, c);
        out[2 * h + 1] = ddx_rng_mul(rad, s);
    }
}

// One element's uniform / normal, for kernels that fuse the draw (dropout masks, q_sample):
// element `index` of the fill keyed by (seed, stream, step), as if offset were 0.
static inline DDX_HD float ddx_philox_uniform_at(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
    uint32_t x[4];
    ddx_philox_group(seed, stream, step, index >> 2, x);
    return ddx_philox_unit(x[index & 3]);
}

static inline DDX_HD float ddx_philox_normal_at(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
    uint32_t x[4];
    float z[4];
    ddx_philox_group(seed, stream, step, index >> 2, x);
    ddx_philox_normal4(x, z);
    return z[index & 3];
}

// ---- CUDA fills (kernels/philox.cu) --------------------------------------------------------
// Same arguments and the same bits as the CPU fills (runtime/philox.h), written to device
// memory on the given stream (a cudaStream_t passed as void *, NULL = legacy default stream). Asynchronous; return 0 or a cudaError_t code:
// cudaErrorInvalidValue (1) for the inputs the CPU fills reject (n < 0, out NULL with
// n > 0, step >= 2^32, offset + n overflowing), otherwise the launch's error.
int ddx_philox_u32_cuda(uint32_t *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                        uint64_t offset, void *cuda_stream);
int ddx_philox_uniform_cuda(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                            uint64_t offset, void *cuda_stream);
int ddx_philox_normal_cuda(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                           uint64_t offset, void *cuda_stream);

#ifdef __cplusplus
}
#endif

#endif
