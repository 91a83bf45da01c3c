// Philox4x32-10: known answers, the keying convention, float transforms (exact uniforms,
// normals against double libm), statistics, stream separation, offset consistency, bad
// input, and GPU bits == CPU bits when the build has CUDA and a device is present.
#include "ddx_config.h"
#include "philox.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if DDX_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/philox.h"
#endif

#include "check.h"

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// Random123 examples/kat_vectors, the three "philox4x32 10" lines (ctr[4] key[2] -> out[4]).
static void test_kat(void) {
    static const struct {
        uint32_t ctr[4], key[2], want[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
        {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
         {0xffffffffu, 0xffffffffu},
         {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
        {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
         {0xa4093822u, 0x299f31d0u},
         {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    };
    for (size_t k = 0; k < sizeof kat / sizeof kat[0]; k++) {
        uint32_t out[4];
        ddx_philox4x32_10(kat[k].ctr, kat[k].key, out);
        CHECK(memcmp(out, kat[k].want, sizeof out) == 0, "KAT %zu: got %08x %08x %08x %08x, want %08x %08x %08x %08x",
              k, out[0], out[1], out[2], out[3], kat[k].want[0], kat[k].want[1], kat[k].want[2], kat[k].want[3]);
        // The same vector through the ddx keying: seed = key hi:lo, group = ctr hi:lo.
        uint64_t seed = (uint64_t)kat[k].key[1] << 32 | kat[k].key[0];
        uint64_t group = (uint64_t)kat[k].ctr[1] << 32 | kat[k].ctr[0];
        ddx_philox_group(seed, kat[k].ctr[2], kat[k].ctr[3], group, out);
        CHECK(memcmp(out, kat[k].want, sizeof out) == 0, "KAT %zu through ddx_philox_group differs", k);
    }
}

// Element offset + i of a fill is lane (offset + i) % 4 of group (offset + i) / 4.
static void test_keying(void) {
    const uint64_t seed = 0x0123456789abcdefull;
    const uint32_t stream = 7, step = 123456;
    const uint64_t offset = ((uint64_t)5 << 34) + 2;   // group index above 2^32
    uint32_t got[9];
    CHECK(ddx_philox_u32(got, 9, seed, stream, step, offset) == DDX_OK, "u32 fill failed: %s", ddx_last_error());
    int bad = 0;
    for (int i = 0; i < 9; i++) {
        uint64_t e = offset + (uint64_t)i, g = e >> 2;
        const uint32_t ctr[4] = {(uint32_t)g, (uint32_t)(g >> 32), stream, step};
        const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
        uint32_t x[4];
        ddx_philox4x32_10(ctr, key, x);
        if (got[i] != x[e & 3]) bad++;
    }
    CHECK(bad == 0, "keying convention: %d of 9 elements differ from the documented (ctr, key) layout", bad);
    float u = ddx_philox_uniform_at(seed, stream, step, offset + 4), uf;
    float z = ddx_philox_normal_at(seed, stream, step, offset + 5), zf[2];
    CHECK(ddx_philox_uniform(&uf, 1, seed, stream, step, offset + 4) == DDX_OK && f2u(u) == f2u(uf),
          "ddx_philox_uniform_at disagrees with the fill");
    CHECK(ddx_philox_normal(zf, 2, seed, stream, step, offset + 4) == DDX_OK && f2u(z) == f2u(zf[1]),
          "ddx_philox_normal_at disagrees with the fill");
}

static void test_uniform(void) {
    CHECK(ddx_philox_unit(0) == 0x1p-24f, "unit(0) = %a, want 2^-24", (double)ddx_philox_unit(0));
    CHECK(ddx_philox_unit(0xffffffffu) == 1.0f - 0x1p-24f, "unit(~0) = %a, want 1 - 2^-24",
          (double)ddx_philox_unit(0xffffffffu));
    CHECK(ddx_philox_unit(0x80000000u) + ddx_philox_unit(0x7fffffffu) == 1.0f, "uniform grid not symmetric about 1/2");

    enum { N = 1000000 };
    uint32_t *x = malloc(N * sizeof *x);
    float *u = malloc(N * sizeof *u);
    if (!x || !u) {
        CHECK(0, "out of memory");
        free(x);
        free(u);
        return;
    }
    CHECK(ddx_philox_u32(x, N, 42, 3, 9, 0) == DDX_OK, "u32 fill: %s", ddx_last_error());
    CHECK(ddx_philox_uniform(u, N, 42, 3, 9, 0) == DDX_OK, "uniform fill: %s", ddx_last_error());
    int64_t bad_def = 0, bad_range = 0;
    double s1 = 0, s2 = 0, below_tenth = 0;
    for (int64_t i = 0; i < N; i++) {
        double want = (double)(2 * (x[i] >> 9) + 1) * 0x1p-24;
        if ((double)u[i] != want) bad_def++;
        if (!(u[i] > 0.0f && u[i] < 1.0f)) bad_range++;
        s1 += u[i];
        s2 += (double)u[i] * u[i];
        below_tenth += u[i] < 0.1f;
    }
    double mean = s1 / N, var = s2 / N - mean * mean;
    CHECK(bad_def == 0, "%" PRId64 " uniforms differ from (2*(x>>9)+1)*2^-24", bad_def);
    CHECK(bad_range == 0, "%" PRId64 " uniforms outside (0, 1)", bad_range);
    // 5-sigma bounds for N samples: sd(mean) = sqrt(1/12/N), sd(var) = sqrt(1/180/N), sd(frac) = sqrt(.09/N).
    CHECK(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / N), "uniform mean %.6f, want 0.5", mean);
    CHECK(fabs(var - 1.0 / 12) < 5 * sqrt(1.0 / 180 / N), "uniform var %.6f, want 1/12", var);
    CHECK(fabs(below_tenth / N - 0.1) < 5 * sqrt(0.09 / N), "P(u < 0.1) = %.6f", below_tenth / N);
    free(x);
    free(u);
}

// Largest float ulp of |v| (v != 0): the scale for error bounds below.
static double ulp_of(double v) {
    int e;
    frexp(fabs(v), &e);
    return ldexp(1.0, e - 24);
}

// The transforms are exact-arithmetic polynomials, not libm; bound them against double
// libm over every input they can receive (2^23 uniforms), then over normals.
static void test_transform_accuracy(void) {
    double worst_log = 0, worst_cs = 0;
    for (uint32_t m = 0; m < (1u << 23); m++) {
        uint32_t v = 2 * m + 1;
        float u = (float)v * 0x1p-24f;
        double ref = log((double)v * 0x1p-24);
        double el = fabs((double)ddx_rng_log(u) - ref) / ulp_of(ref);
        if (el > worst_log) worst_log = el;
        float c, s;
        ddx_rng_cossin_2pi(v, &c, &s);
        double a = 2 * M_PI * ((double)v * 0x1p-24);
        // Absolute error in units of 2^-24: near a zero of sin/cos relative error is the
        // wrong yardstick, the argument itself only carries 2^-24 absolute.
        double ec = fabs((double)c - cos(a)) / 0x1p-24, es = fabs((double)s - sin(a)) / 0x1p-24;
        if (ec > worst_cs) worst_cs = ec;
        if (es > worst_cs) worst_cs = es;
    }
    printf("transform accuracy: log %.2f ulp, cos/sin %.2f x 2^-24 absolute (exhaustive over 2^23 inputs)\n",
           worst_log, worst_cs);
    CHECK(worst_log <= 2.0, "ddx_rng_log error %.2f ulp exceeds 2 ulp", worst_log);
    CHECK(worst_cs <= 2.0, "ddx_rng_cossin_2pi error %.2f x 2^-24 exceeds 2", worst_cs);

    // Normals against Box-Muller in double from the same words: |err| <= 4 ulp(max(|z|, 1)).
    enum { N = 200000 };
    double worst = 0;
    for (uint64_t g = 0; g < N / 4; g++) {
        uint32_t x[4];
        float z[4];
        ddx_philox_group(99, 5, 1, g, x);
        ddx_philox_normal4(x, z);
        for (int h = 0; h < 2; h++) {
            double u0 = (double)(2 * (x[2 * h] >> 9) + 1) * 0x1p-24;
            double u1 = (double)(2 * (x[2 * h + 1] >> 9) + 1) * 0x1p-24;
            double r = sqrt(-2 * log(u0));
            double ref[2] = {r * cos(2 * M_PI * u1), r * sin(2 * M_PI * u1)};
            for (int k = 0; k < 2; k++) {
                double e = fabs((double)z[2 * h + k] - ref[k]) / ulp_of(fmax(fabs(ref[k]), 1.0));
                if (e > worst) worst = e;
            }
        }
    }
    printf("normal accuracy: %.2f ulp of max(|z|, 1) against double Box-Muller\n", worst);
    CHECK(worst <= 4.0, "normal error %.2f ulp of max(|z|,1) exceeds 4", worst);
}

// Pinned output bits: a host compiler that contracts into FMA or evaluates in extra
// precision changes these (and would break CPU == GPU), so the test names it. The hash
// covers 2^16 normals, since one contraction moves only some of them by an ulp.
static uint64_t fnv1a(const void *p, size_t bytes) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < bytes; i++) h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
    return h;
}

static void test_golden(void) {
    static const uint32_t want_n[8] = {0xbfb1d2a5u, 0xbf04e6a1u, 0xbf72d656u, 0xbd852258u,
                                       0xbd8b7757u, 0x3fd0cdf5u, 0xbf64190cu, 0xbf28c4ecu};
    const uint64_t want_hash = 0x56a683230c5051adull;
    enum { N = 1 << 16 };
    static float z[N];
    CHECK(ddx_philox_normal(z, N, 2024, DDX_RNG_STREAM_SAMPLER, 17, 0) == DDX_OK, "normal fill: %s", ddx_last_error());
    for (int i = 0; i < 8; i++)
        CHECK(f2u(z[i]) == want_n[i], "golden normal %d: got %08x (%.9g), want %08x", i, f2u(z[i]), (double)z[i],
              want_n[i]);
    uint64_t h = fnv1a(z, sizeof z);
    CHECK(h == want_hash, "hash of 2^16 golden normals %016" PRIx64 ", want %016" PRIx64 ": is the host compiler "
          "contracting a*b+c into FMA, using -ffast-math or extra precision?", h, want_hash);
}

static void test_normal_moments(void) {
    enum { N = 1000000 };
    float *z = malloc(N * sizeof *z);
    if (!z) {
        CHECK(0, "out of memory");
        return;
    }
    CHECK(ddx_philox_normal(z, N, 1234, DDX_RNG_STREAM_Q_SAMPLE, 3, 0) == DDX_OK, "normal fill: %s", ddx_last_error());
    double s1 = 0, s2 = 0, s4 = 0, within1 = 0, c01 = 0, c02 = 0;
    int64_t nonfinite = 0;
    for (int64_t i = 0; i < N; i++) {
        double v = z[i];
        if (!isfinite(v)) nonfinite++;
        s1 += v;
        s2 += v * v;
        s4 += v * v * v * v;
        within1 += fabs(v) < 1.0;
        if (i % 4 == 0) {
            c01 += v * z[i + 1];   // the Box-Muller pair
            c02 += v * z[i + 2];   // across pairs of one group
        }
    }
    double mean = s1 / N, var = s2 / N - mean * mean, kurt = s4 / N;
    double np = N / 4.0;
    CHECK(nonfinite == 0, "%" PRId64 " non-finite normals", nonfinite);
    // 5-sigma bounds: sd(mean) = 1/sqrt(N), sd(mean z^2) = sqrt(2/N), sd(mean z^4) = sqrt(96/N),
    // sd(P(|z|<1)) = sqrt(p(1-p)/N), sd(mean z_a z_b) = 1/sqrt(N/4).
    CHECK(fabs(mean) < 5 / sqrt(N), "normal mean %.6f, want 0", mean);
    CHECK(fabs(var - 1) < 5 * sqrt(2.0 / N), "normal var %.6f, want 1", var);
    CHECK(fabs(kurt - 3) < 5 * sqrt(96.0 / N), "normal E[z^4] %.5f, want 3", kurt);
    CHECK(fabs(within1 / N - 0.682689492) < 5 * sqrt(0.2167 / N), "P(|z| < 1) = %.6f, want 0.682689", within1 / N);
    CHECK(fabs(c01 / np) < 5 / sqrt(np), "E[z0 z1] = %.6f, want 0", c01 / np);
    CHECK(fabs(c02 / np) < 5 / sqrt(np), "E[z0 z2] = %.6f, want 0", c02 / np);
    free(z);
}

// Positions where two u32 sequences agree; independent streams agree ~n/2^32 times.
static int same_words(uint64_t seed_a, uint32_t stream_a, uint64_t step_a, uint64_t seed_b, uint32_t stream_b,
                      uint64_t step_b) {
    enum { N = 4096 };
    static uint32_t a[N], b[N];
    if (ddx_philox_u32(a, N, seed_a, stream_a, step_a, 0) != DDX_OK ||
        ddx_philox_u32(b, N, seed_b, stream_b, step_b, 0) != DDX_OK)
        return N;
    int same = 0;
    for (int i = 0; i < N; i++) same += a[i] == b[i];
    return same;
}

static void test_separation(void) {
    CHECK(same_words(1, 0, 0, 1, 0, 0) == 4096, "the same key must repeat the same sequence");
    CHECK(same_words(1, 0, 0, 2, 0, 0) <= 2, "seeds 1 and 2 share words");
    CHECK(same_words(1, 0, 0, 1 + (1ull << 32), 0, 0) <= 2, "seeds differing in the high word share words");
    CHECK(same_words(1, 0, 0, 1, 1, 0) <= 2, "streams 0 and 1 share words");
    CHECK(same_words(1, 0, 0, 1, DDX_RNG_STREAM_Q_SAMPLE, 0) <= 2, "dropout and q_sample streams share words");
    CHECK(same_words(1, 0, 0, 1, 0, 1) <= 2, "steps 0 and 1 share words");
    CHECK(same_words(1, 5, 9, 1, 9, 5) <= 2, "swapping stream and step must give a different sequence");
}

// Filling [0, n) equals filling [0, k) then [k, n) with offset k, for all three kinds.
static void test_offsets(void) {
    enum { N = 1003 };
    static uint32_t full[N], part[N];
    static float ffull[N], fpart[N];
    const uint64_t bases[] = {0, 3, (1ull << 40) + 1};
    const int64_t splits[] = {0, 1, 2, 3, 5, 500, 1001, 1002, N};
    int bad = 0;
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
        uint64_t o = bases[b];
        for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
            int64_t k = splits[s];
            ddx_philox_u32(full, N, 77, 4, 8, o);
            memset(part, 0xa5, sizeof part);
            ddx_philox_u32(part, k, 77, 4, 8, o);
            ddx_philox_u32(part + k, N - k, 77, 4, 8, o + (uint64_t)k);
            if (memcmp(full, part, sizeof full)) {
                bad++;
                printf("FAIL u32 split base=%" PRIu64 " k=%" PRId64 "\n", o, k);
            }
            for (int kind = 0; kind < 2; kind++) {
                ddx_status (*fn)(float *, int64_t, uint64_t, uint32_t, uint64_t, uint64_t) =
                    kind ? ddx_philox_normal : ddx_philox_uniform;
                fn(ffull, N, 77, 4, 8, o);
                memset(fpart, 0xa5, sizeof fpart);
                fn(fpart, k, 77, 4, 8, o);
                fn(fpart + k, N - k, 77, 4, 8, o + (uint64_t)k);
                if (memcmp(ffull, fpart, sizeof ffull)) {
                    bad++;
                    printf("FAIL %s split base=%" PRIu64 " k=%" PRId64 "\n", kind ? "normal" : "uniform", o, k);
                }
            }
        }
        // A shifted fill is the same sequence shifted.
        ddx_philox_normal(ffull, N, 77, 4, 8, o);
        ddx_philox_normal(fpart, N - 7, 77, 4, 8, o + 7);
        if (memcmp(ffull + 7, fpart, (N - 7) * sizeof(float))) {
            bad++;
            printf("FAIL normal shift by 7, base=%" PRIu64 "\n", o);
        }
    }
    CHECK(bad == 0, "%d offset-consistency cases failed", bad);
    // The highest fill allowed ends at element 2^64 - 2 (offset + n <= 2^64 - 1).
    uint32_t tail[4];
    CHECK(ddx_philox_u32(tail, 4, 1, 2, 3, UINT64_MAX - 4) == DDX_OK, "fill ending at element 2^64-2 rejected: %s",
          ddx_last_error());
    CHECK(ddx_philox_u32(tail, 4, 1, 2, 3, UINT64_MAX - 3) == DDX_E_INPUT, "fill past element 2^64-2 accepted");
}

static void test_bad_input(void) {
    float f[4];
    CHECK(ddx_philox_uniform(f, -1, 0, 0, 0, 0) == DDX_E_INPUT, "n < 0 accepted");
    CHECK(ddx_philox_normal(NULL, 4, 0, 0, 0, 0) == DDX_E_INPUT, "NULL output accepted");
    CHECK(strstr(ddx_last_error(), "ddx_philox_normal") != NULL, "error does not name the function: '%s'",
          ddx_last_error());
    CHECK(ddx_philox_uniform(f, 4, 0, 0, 1ull << 32, 0) == DDX_E_INPUT, "step >= 2^32 accepted");
    CHECK(ddx_philox_u32((uint32_t *)f, 4, 0, 0, 0, UINT64_MAX - 2) == DDX_E_INPUT, "offset overflow accepted");
    CHECK(ddx_philox_normal(NULL, 0, 0, 0, 0, 0) == DDX_OK, "an empty fill must succeed");
}

#if DDX_HAVE_CUDA
// Runs each launcher and compares bits with the CPU fill. Offsets 0 (vector stores) and 5,
// plus a 4-byte-misaligned output, cover both kernel paths and partial head/tail groups.
static void test_gpu_bits(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        cudaGetLastError();
        printf("SKIP GPU bits == CPU bits: no CUDA device\n");
        n_skip++;
        return;
    }
    enum { N = (1 << 20) + 3 };
    uint32_t *cpu = malloc((N + 1) * sizeof *cpu), *gpu = malloc((N + 1) * sizeof *gpu);
    void *d = NULL;
    if (!cpu || !gpu || cudaMalloc(&d, (N + 1) * sizeof(uint32_t)) != cudaSuccess) {
        CHECK(0, "GPU test: allocation failed");
        free(cpu);
        free(gpu);
        return;
    }
    const uint64_t offsets[] = {0, 5, (1ull << 36) + 2};
    for (int kind = 0; kind < 3; kind++) {
        static const char *names[] = {"u32", "uniform", "normal"};
        for (size_t oi = 0; oi < sizeof offsets / sizeof offsets[0]; oi++) {
            for (int mis = 0; mis < 2; mis++) {
                uint64_t o = offsets[oi];
                uint32_t *dout = (uint32_t *)d + mis;
                int rc;
                ddx_status st;
                cudaMemset(d, 0xff, (N + 1) * sizeof(uint32_t));
                if (kind == 0) {
                    rc = ddx_philox_u32_cuda(dout, N, 31337, 11, 1000, o, NULL);
                    st = ddx_philox_u32(cpu, N, 31337, 11, 1000, o);
                } else if (kind == 1) {
                    rc = ddx_philox_uniform_cuda((float *)dout, N, 31337, 11, 1000, o, NULL);
                    st = ddx_philox_uniform((float *)cpu, N, 31337, 11, 1000, o);
                } else {
                    rc = ddx_philox_normal_cuda((float *)dout, N, 31337, 11, 1000, o, NULL);
                    st = ddx_philox_normal((float *)cpu, N, 31337, 11, 1000, o);
                }
                cudaError_t ce = cudaMemcpy(gpu, dout, N * sizeof(uint32_t), cudaMemcpyDeviceToHost);
                CHECK(rc == 0 && ce == cudaSuccess && st == DDX_OK, "%s launch: rc=%d (%s), copy %s", names[kind], rc,
                      cudaGetErrorString((cudaError_t)rc), cudaGetErrorString(ce));
                int64_t diff = 0, first = -1;
                for (int64_t i = 0; i < N; i++)
                    if (cpu[i] != gpu[i]) {
                        if (first < 0) first = i;
                        diff++;
                    }
                CHECK(diff == 0, "%s offset=%" PRIu64 " misaligned=%d: %" PRId64 " of %d words differ, first at %" PRId64
                      " (cpu %08x gpu %08x)", names[kind], o, mis, diff, N, first,
                      first >= 0 ? cpu[first] : 0, first >= 0 ? gpu[first] : 0);
            }
        }
    }
    CHECK(ddx_philox_normal_cuda(NULL, 0, 1, 2, 3, 0, NULL) == 0, "GPU empty fill must succeed");
    CHECK(ddx_philox_normal_cuda((float *)d, -1, 1, 2, 3, 0, NULL) != 0, "GPU n < 0 accepted");
    CHECK(ddx_philox_uniform_cuda((float *)d, 4, 1, 2, 1ull << 32, 0, NULL) != 0, "GPU step >= 2^32 accepted");
    cudaFree(d);
    free(cpu);
    free(gpu);
}
#endif

int main(void) {
    test_kat();
    test_keying();
    test_uniform();
    test_transform_accuracy();
    test_golden();
    test_normal_moments();
    test_separation();
    test_offsets();
    test_bad_input();
#if DDX_HAVE_CUDA
    test_gpu_bits();
#else
    printf("SKIP GPU bits == CPU bits: built without CUDA\n");
    n_skip++;
#endif
    return ddx_test_finish("philox");
}
