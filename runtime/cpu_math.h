// Inline float math for the CPU backend's hot loops, written so that GCC auto-vectorises it
// at -O3 for the x86-64 baseline (SSE2), with no -ffast-math and no -m flags.
//
// Why not libm: glibc's expf is a function call per element, which keeps every loop that
// contains it scalar (silu, GroupNorm+SiLU ran at ~2 GB/s). -ffast-math would let GCC call
// the vector libm, but it must not be used on this project (runtime/philox.h relies on
// exact IEEE rounding without contraction).
//
// ddx_expf is accurate to about 1 ulp over the whole float range (tests/test_cpu_math.c
// sweeps [-88, 88] against double exp and bounds the error), handles overflow to +inf,
// underflow through the subnormals to 0, and propagates NaN.
#ifndef DDX_CPU_MATH_H
#define DDX_CPU_MATH_H

#include <stdint.h>
#include <string.h>

static inline uint32_t ddx_cm_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float ddx_cm_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// cond ? a : b as a bit mask. GCC (12) with the default -ftrapping-math keeps a float
// `cond ? a : b` inside a longer loop body as a branch, which stops vectorisation; the
// mask form is branch-free by construction and becomes cmpps + and/andnot/or.
static inline float ddx_cm_select(int cond, float a, float b) {
    const uint32_t m = 0u - (uint32_t)(cond != 0);
    return ddx_cm_u2f((ddx_cm_f2u(a) & m) | (ddx_cm_f2u(b) & ~m));
}

// exp(x) = 2^k * exp(r), k = round(x / ln 2), |r| <= ln2 / 2 (+ a rounding hair).
//  - k comes from the "add 1.5 * 2^23" trick: the sum's low mantissa bits hold round(x*log2e)
//    as an integer, so no float->int conversion (which would not vectorise well and is
//    undefined for NaN) is needed.
//  - r = x - k ln2 with ln2 split Cody-Waite style: k * hi is exact (hi has 15 significant
//    bits, |k| <= 150) and so is x - k * hi; only the small k * lo term rounds.
//  - exp(r) by its degree-7 Taylor polynomial: the truncation error is below 6e-9 relative on
//    |r| <= 0.35, well under half an ulp, so the result carries only the rounding of Horner.
//  - 2^k is applied as two power-of-two factors 2^(k/2) * 2^(k - k/2), each a normal float for
//    every k the clamp allows, so the product rounds once, correctly, into the subnormals or
//    to infinity.
static inline float ddx_expf(float x) {
    // Past these bounds exp underflows to 0 / overflows to inf anyway; the clamp keeps k
    // within the range the two scale factors can represent. NaN passes both comparisons.
    x = ddx_cm_select(x < -104.0f, -104.0f, x);
    x = ddx_cm_select(x > 89.0f, 89.0f, x);
    const float shifter = 0x1.8p23f;
    const float t = x * 0x1.715476p+0f + shifter;   // log2(e) rounded to float
    const int32_t k = (int32_t)(ddx_cm_f2u(t) - ddx_cm_f2u(shifter));
    const float kf = t - shifter;
    float r = x - kf * 0x1.62e4p-1f;                 // ln2 hi
    r = r - kf * 0x1.7f7d1cp-20f;                    // ln2 lo = ln2 - hi
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t k1 = k / 2, k2 = k - k1;
    const float s1 = ddx_cm_u2f((uint32_t)(k1 + 127) << 23);
    const float s2 = ddx_cm_u2f((uint32_t)(k2 + 127) << 23);
    return p * s1 * s2;
}

// Compute-bound loops (the ones around ddx_expf, Philox) are worth wider vectors than SSE2.
// DDX_CPU_CLONES on a function makes GCC build it twice, for AVX2 and for the x86-64
// baseline, and pick one when the program loads (an ifunc): no -m flags, the binary still
// runs on any x86-64. Results are bit-identical between the clones: the same IEEE
// operations in the same order (AVX2 does not include FMA, and ISO C mode keeps GCC from
// contracting anyway), only more lanes at a time. Define DDX_NO_CPU_CLONES to build the
// baseline only.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(DDX_NO_CPU_CLONES)
#define DDX_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DDX_CPU_CLONES
#endif

// 1 / (1 + exp(-x)): 0 for x below about -88 (exp overflows to inf), 1 for large x.
static inline float ddx_sigmoidf(float x) { return 1.0f / (1.0f + ddx_expf(-x)); }

#endif
