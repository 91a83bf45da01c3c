// Kernel-level tests on shapes of more than 2^31 elements, at least one per kernel family:
// any 32-bit index, offset or grid computation that overflows shows up as a wrong, missing or
// faulting element. The raw launchers of kernels/*.h run on cudaMalloc'd buffers; inputs are
// generated on the device (Philox fills, markers), and only SAMPLED outputs are checked against
// values computed on the host from the inputs read back at the positions they depend on: the
// first and last elements, the elements whose flat index or byte offset crosses 2^31 and 2^32,
// and ~1000 pseudo-random positions (whole slices where a reduction is involved). Every output
// is poisoned (0xFF bytes: NaN) before the kernel runs, so one that writes nothing fails.
//
// Prints one PASS / FAIL / SKIP line per case, then "huge: N passed, N failed, N skipped".
// Exit 77 (SKIP) without a device. Peak device memory: about 35 GB (the AdamW case, four f32
// arrays of 2^31 + 5 elements); every case frees its buffers before the next one starts.
// Usage: test_huge [--list] [SUBSTRING...]   (run only the cases whose name contains one)
#define _POSIX_C_SOURCE 200809L

#include "ddx_config.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/cuda.h"
#include "runtime/tensor.h"

#if DDX_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/attention.h"
#include "kernels/conv.h"
#include "kernels/diffusion.h"
#include "kernels/elementwise.h"
#include "kernels/embed.h"
#include "kernels/linear.h"
#include "kernels/losses.h"
#include "kernels/norm.h"
#include "kernels/optim.h"
#include "kernels/philox.h"
#include "kernels/resample.h"
#include "runtime/philox.h"
#endif

#include "check.h"

#if !DDX_HAVE_CUDA
int main(void) {
    printf("SKIP: built without CUDA (%s)\n", ddx_cuda_describe());
    n_skip++;
    ddx_test_finish("huge");
    return 77;
}
#else

#define TWO31 ((int64_t)1 << 31)
#define TWO32 ((int64_t)1 << 32)
#define GIB (1024.0 * 1024.0 * 1024.0)
#define BF_U (0x1p-8 * 1.001)   // bf16 rounding, relative (8 significant bits)
#define NRAND 1000
#define MAXS (NRAND + 64)
#define MAXP 12
#define MAX_PRINT 8

// ---- per-case state ---------------------------------------------------------------------
typedef struct {
    const char *name;
    int fails;
    const char *skip;   // set by a case that cannot run here
    char skip_buf[160];
    void *ptrs[MAXP];
    int np;
    size_t bytes, peak;
} hcase;

static hcase g_c;
static bool g_dead;   // a sticky CUDA error: later cases cannot run
static uint64_t g_rng;

static uint64_t rnd64(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int64_t rnd_below(int64_t n) { return (int64_t)(rnd64() % (uint64_t)n); }
static float urand(float lo, float hi) { return lo + (hi - lo) * (float)((rnd64() >> 40) * 0x1p-24); }

static void cfail(const char *fmt, ...) {
    if (g_c.fails < MAX_PRINT) {
        va_list ap;
        va_start(ap, fmt);
        printf("  %s: ", g_c.name);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    } else if (g_c.fails == MAX_PRINT) {
        printf("  %s: (further problems not printed)\n", g_c.name);
    }
    g_c.fails++;
}

static void cskip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_c.skip_buf, sizeof g_c.skip_buf, fmt, ap);
    va_end(ap);
    g_c.skip = g_c.skip_buf;
}

static bool cu_ok(cudaError_t e, const char *what, int line) {
    if (e == cudaSuccess) return true;
    cfail("%s: %s (%s) at test_huge.c:%d", what, cudaGetErrorName(e), cudaGetErrorString(e), line);
    return false;
}
#define CU(x) cu_ok((x), #x, __LINE__)

// A launcher's return code, then the kernel's completion (faults show at the sync).
static bool launch_ok(int rc, const char *what, int line) {
    if (rc != 0) {
        cfail("%s: launcher returned %d (%s)%s at test_huge.c:%d", what, rc, cudaGetErrorName((cudaError_t)rc),
              rc == (int)cudaErrorInvalidValue ? ": the launcher refuses this shape" : "", line);
        return false;
    }
    return cu_ok(cudaDeviceSynchronize(), what, line);
}
#define LAUNCH(x) launch_ok((x), #x, __LINE__)

static void *dalloc(size_t bytes) {
    if (g_c.np == MAXP) {
        cfail("test bug: more than %d buffers", MAXP);
        return NULL;
    }
    void *p = NULL;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        cfail("cudaMalloc(%.2f GiB): %s", bytes / GIB, cudaGetErrorString(e));
        (void)cudaGetLastError();
        return NULL;
    }
    g_c.ptrs[g_c.np++] = p;
    g_c.bytes += bytes;
    if (g_c.bytes > g_c.peak) g_c.peak = g_c.bytes;
    return p;
}

static bool poison(void *d, size_t bytes) { return CU(cudaMemset(d, 0xFF, bytes)); }
static bool h2d(void *d, const void *h, size_t bytes) { return CU(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice)); }
static bool d2h(void *h, const void *d, size_t bytes) { return CU(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost)); }

// Single elements read back (NaN / all-ones when the copy failed; the failure is recorded).
static uint16_t rd_u16(const uint16_t *d, int64_t i) {
    uint16_t v = 0xFFFF;
    d2h(&v, d + i, 2);
    return v;
}
static float rd_bf(const uint16_t *d, int64_t i) { return ddx_bf16_to_f32(rd_u16(d, i)); }
static uint32_t rd_u32(const uint32_t *d, int64_t i) {
    uint32_t v = 0xFFFFFFFFu;
    d2h(&v, d + i, 4);
    return v;
}
static float rd_f(const float *d, int64_t i) {
    float v = NAN;
    d2h(&v, d + i, 4);
    return v;
}
static bool wr_bf(uint16_t *d, int64_t i, float v) {
    const uint16_t h = ddx_f32_to_bf16(v);
    return h2d(d + i, &h, 2);
}
static bool wr_f(float *d, int64_t i, float v) { return h2d(d + i, &v, 4); }

static uint32_t f_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void expect_near(const char *what, int64_t idx, double got, double ref, double tol) {
    if (!(fabs(got - ref) <= tol)) cfail("%s[%" PRId64 "]: got %.9g, want %.9g (tol %.3g)", what, idx, got, ref, tol);
}
static void expect_u16(const char *what, int64_t idx, uint16_t got, uint16_t want) {
    if (got != want)
        cfail("%s[%" PRId64 "]: got bf16 0x%04x (%.7g), want 0x%04x (%.7g)", what, idx, got, (double)ddx_bf16_to_f32(got),
              want, (double)ddx_bf16_to_f32(want));
}

// The positions every flat check visits: the ends, the elements around 2^31 and 2^32 both as
// element indices and as byte offsets (for elements of esize bytes), `extra` (may be NULL),
// and NRAND pseudo-random ones. Returns the count (<= MAXS + n_extra).
static int make_samples(int64_t n, int esize, const int64_t *extra, int n_extra, int64_t *s) {
    int k = 0;
    for (int64_t i = 0; i < 4 && i < n; i++) s[k++] = i;
    for (int64_t i = 1; i <= 4 && n - i >= 4; i++) s[k++] = n - i;
    const int64_t marks[] = {TWO31, TWO32, TWO31 / esize, TWO32 / esize};
    for (int m = 0; m < 4; m++)
        for (int64_t d = -2; d <= 2; d++) {
            const int64_t v = marks[m] + d;
            if (v >= 0 && v < n) s[k++] = v;
        }
    for (int e = 0; e < n_extra; e++)
        if (extra[e] >= 0 && extra[e] < n) s[k++] = extra[e];
    for (int r = 0; r < NRAND; r++) s[k++] = rnd_below(n);
    return k;
}

static ddx_k_rng_key key_of(uint64_t seed, uint32_t stream) { return (ddx_k_rng_key){.seed = seed, .stream = stream}; }

// ================================= elementwise ===========================================
// silu, bf16, 2^31 + 61 elements: element indices pass 2^31 and byte offsets 2^32 inside the
// 16-byte vector loop, and the scalar tail (61 % 8 elements) sits above 2^31.
static void case_ew_silu(void) {
    const int64_t n = TWO31 + 61;
    uint16_t *x = dalloc((size_t)n * 2), *y = dalloc((size_t)n * 2);
    if (!x || !y) return;
    if (!LAUNCH(ddx_k_randn_bf16(x, n, key_of(101, 1), NULL)) || !poison(y, (size_t)n * 2)) return;
    if (!LAUNCH(ddx_k_silu_bf16(y, x, n, NULL))) return;
    int64_t s[MAXS];
    const int ns = make_samples(n, 2, NULL, 0, s);
    for (int i = 0; i < ns; i++) {
        const double xv = rd_bf(x, s[i]), ref = xv / (1.0 + exp(-xv));
        expect_near("silu y", s[i], rd_bf(y, s[i]), ref, BF_U * fabs(ref) + 4e-6 * fabs(ref));
    }
}

// add, bf16, a [1, 1, 2^26 + 1, 64] + b [64] = 2^32 + 64 elements: past the 32-bit unsigned
// index range (the launcher's 64-bit index path) with 16-byte vectors.
static void case_ew_add_bcast(void) {
    const int64_t C = 64, R = ((int64_t)1 << 26) + 1, n = R * C;
    uint16_t *a = dalloc((size_t)n * 2), *y = dalloc((size_t)n * 2), *b = dalloc((size_t)C * 2);
    if (!a || !y || !b) return;
    uint16_t hb[64];
    for (int c = 0; c < C; c++) hb[c] = ddx_f32_to_bf16(urand(-3.0f, 3.0f));
    if (!h2d(b, hb, sizeof hb) || !LAUNCH(ddx_k_randn_bf16(a, n, key_of(102, 1), NULL)) || !poison(y, (size_t)n * 2))
        return;
    ddx_k_bcast bc;
    if (ddx_k_bcast_make(&bc, (const int64_t[4]){1, 1, R, C}, (const int64_t[4]){1, 1, 1, C}) != 0) {
        cfail("test bug: bad broadcast");
        return;
    }
    if (!LAUNCH(ddx_k_add_bf16(y, a, b, &bc, NULL))) return;
    int64_t s[MAXS];
    const int ns = make_samples(n, 2, NULL, 0, s);
    for (int i = 0; i < ns; i++) {
        const float av = rd_bf(a, s[i]), bv = ddx_bf16_to_f32(hb[s[i] % C]);
        expect_u16("add y", s[i], rd_u16(y, s[i]), ddx_f32_to_bf16(av + bv));
    }
}

// ==================================== philox =============================================
// 2^31 + 6 u32 words (offset 0: the 16-byte store path) and normals at an offset whose
// group counter's low word wraps past 2^32 inside the range (the per-element path).
static void case_philox(void) {
    const int64_t n = TWO31 + 6;
    const uint64_t seed = 0x123456789ull;
    uint32_t *o = dalloc((size_t)n * 4);
    if (!o || !poison(o, (size_t)n * 4)) return;
    if (!LAUNCH(ddx_philox_u32_cuda(o, n, seed, 5, 9, 0, NULL))) return;
    int64_t s[MAXS + 8];
    int ns = make_samples(n, 4, NULL, 0, s);
    for (int i = 0; i < ns; i++) {
        uint32_t w[4];
        ddx_philox_group(seed, 5, 9, (uint64_t)s[i] >> 2, w);
        const uint32_t got = rd_u32(o, s[i]);
        if (got != w[s[i] & 3]) cfail("u32[%" PRId64 "]: got 0x%08x, want 0x%08x", s[i], got, w[s[i] & 3]);
    }
    const uint64_t off = ((uint64_t)1 << 34) - ((uint64_t)1 << 30) - 2;
    const int64_t wrap = (int64_t)(((uint64_t)1 << 34) - off);   // first element of group 2^32
    const int64_t extra[] = {wrap - 5, wrap - 4, wrap - 3, wrap - 2, wrap - 1, wrap, wrap + 1, wrap + 4};
    if (!poison(o, (size_t)n * 4)) return;
    if (!LAUNCH(ddx_philox_normal_cuda((float *)(void *)o, n, seed, 6, 9, off, NULL))) return;
    ns = make_samples(n, 4, extra, 8, s);
    int differ = 0;
    for (int i = 0; i < ns; i++) {
        const float want = ddx_philox_normal_at(seed, 6, 9, off + (uint64_t)s[i]);
        const float got = rd_f((const float *)(void *)o, s[i]);
        differ += f_bits(got) != f_bits(want);
        expect_near("normal", s[i], got, want, 1e-6 * fmax(1.0, fabs(want)));
    }
    if (differ) printf("  note: %s: %d of %d sampled normals not bit-identical to the CPU's\n", g_c.name, differ, ns);
}

// =================================== diffusion ===========================================
// q_sample f32: 174763 samples of 64*64*3 = 2^31 + 4096 elements, per-sample coefficients,
// 16-byte path (offset 0).
static void case_q_sample(void) {
    const int64_t per = 64 * 64 * 3, S = 174763, n = S * per;
    const ddx_k_rng_key key = {.seed = 77, .stream = DDX_RNG_STREAM_Q_SAMPLE, .step = 3, .offset = 0};
    float *x0 = dalloc((size_t)n * 4), *y = dalloc((size_t)n * 4), *coef = dalloc((size_t)S * 8);
    float *hc = malloc((size_t)S * 8);
    if (!x0 || !y || !coef || !hc) goto out;
    for (int64_t i = 0; i < S; i++) {
        const double abar = 0.02 + 0.96 * (double)(i % 1000) / 1000.0;
        hc[2 * i] = (float)sqrt(abar);
        hc[2 * i + 1] = (float)sqrt(1.0 - abar);
    }
    if (!h2d(coef, hc, (size_t)S * 8) || !LAUNCH(ddx_k_randn_f32(x0, n, key_of(78, 2), NULL)) || !poison(y, (size_t)n * 4))
        goto out;
    if (!LAUNCH(ddx_k_q_sample_f32(y, x0, coef, n, per, key, NULL))) goto out;
    int64_t s[MAXS];
    const int ns = make_samples(n, 4, NULL, 0, s);
    int differ = 0;
    for (int i = 0; i < ns; i++) {
        const int64_t smp = s[i] / per;
        const float c0 = hc[2 * smp], c1 = hc[2 * smp + 1], xv = rd_f(x0, s[i]);
        const float z = ddx_philox_normal_at(key.seed, key.stream, key.step, key.offset + (uint64_t)s[i]);
        const float want = ddx_rng_add(ddx_rng_mul(c0, xv), ddx_rng_mul(c1, z)), got = rd_f(y, s[i]);
        differ += f_bits(got) != f_bits(want);
        expect_near("q_sample", s[i], got, want, 2e-6 * (fabs(c0 * xv) + fabs(c1 * z)) + 1e-30);
    }
    if (differ) printf("  note: %s: %d of %d samples not bit-identical to the CPU formula\n", g_c.name, differ, ns);
out:
    free(hc);
}

// sampler_step f32 with noise and clipping: 2^31 + 3 elements at a Philox offset of 2 (the
// per-element path), the model output aliasing x_t (both are read-only).
static void case_sampler_step(void) {
    const int64_t n = TWO31 + 3;
    const ddx_k_rng_key key = {.seed = 91, .stream = DDX_RNG_STREAM_SAMPLER, .step = 12, .offset = 2};
    const ddx_k_sampler_coefs co = {
        .a = 1.1f, .b = -0.3f, .f = 0.2f, .g = 0.9f, .c = 0.7f, .d = 0.25f, .e = -0.4f, .sigma = 0.05f, .clip = 1};
    float *xt = dalloc((size_t)n * 4), *y = dalloc((size_t)n * 4);
    if (!xt || !y) return;
    if (!LAUNCH(ddx_k_randn_f32(xt, n, key_of(92, 2), NULL)) || !poison(y, (size_t)n * 4)) return;
    if (!LAUNCH(ddx_k_sampler_step_f32(y, xt, xt, n, co, key, NULL))) return;
    int64_t s[MAXS];
    const int ns = make_samples(n, 4, NULL, 0, s);
    int differ = 0;
    for (int i = 0; i < ns; i++) {
        const float x = rd_f(xt, s[i]), m = x;
        const float z = ddx_philox_normal_at(key.seed, key.stream, key.step, key.offset + (uint64_t)s[i]);
        float x0 = ddx_rng_add(ddx_rng_mul(co.a, x), ddx_rng_mul(co.b, m));
        x0 = x0 < -1.0f ? -1.0f : (x0 > 1.0f ? 1.0f : x0);
        const float eps = ddx_rng_add(ddx_rng_mul(co.f, x), ddx_rng_mul(co.g, m));
        float v = ddx_rng_add(ddx_rng_add(ddx_rng_mul(co.c, x0), ddx_rng_mul(co.d, x)), ddx_rng_mul(co.e, eps));
        v = ddx_rng_add(v, ddx_rng_mul(co.sigma, z));
        const float got = rd_f(y, s[i]);
        differ += f_bits(got) != f_bits(v);
        expect_near("sampler_step", s[i], got, v, 2e-6 * (fabs(x) + 1.0 + fabs(z)));
    }
    if (differ) printf("  note: %s: %d of %d samples not bit-identical to the CPU formula\n", g_c.name, differ, ns);
}

// ====================================== norm =============================================
// group_norm + SiLU forward, bf16 x [4097, 32*32, 512] (2^31 + 2^19 elements), G = 32, f32
// affine. x gets a per-(image, group) scale and offset (through the broadcasting mul/add, in
// place) so that statistics taken from a wrong group show. Whole images are checked: the
// first ones, those around the 2^31-byte and 2^31-element image boundaries, the last.
static void case_group_norm(void) {
    const int64_t N = 4097, S = 1024, C = 512, G = 32, cg = C / G, img = S * C, n = N * img;
    ddx_k_gn_shape sh = {
        .N = N, .S = S, .C = C, .G = G, .eps = 1e-5f, .silu = 1, .x_dt = DDX_K_NORM_BF16, .g_dt = DDX_K_NORM_F32};
    const int64_t scratch_f = ddx_k_group_norm_fwd_scratch_floats(&sh);
    uint16_t *x = dalloc((size_t)n * 2), *y = dalloc((size_t)n * 2), *sc = dalloc((size_t)(N * C) * 2),
             *of = dalloc((size_t)(N * C) * 2);
    float *gam = dalloc((size_t)C * 4), *bet = dalloc((size_t)C * 4), *mean = dalloc((size_t)(N * G) * 4),
          *rstd = dalloc((size_t)(N * G) * 4), *scr = dalloc((size_t)scratch_f * 4);
    uint16_t *hs = malloc((size_t)(N * C) * 2), *ho = malloc((size_t)(N * C) * 2), *hx = malloc((size_t)img * 2),
             *hy = malloc((size_t)img * 2);
    float hg[512], hbt[512];
    if (!x || !y || !sc || !of || !gam || !bet || !mean || !rstd || !scr || !hs || !ho || !hx || !hy) goto out;
    for (int64_t i = 0; i < N * C; i++) {
        const int64_t im = i / C, g = (i % C) / cg;
        hs[i] = ddx_f32_to_bf16(0.5f + 0.25f * (float)((im * 7 + g * 3) % 8));
        ho[i] = ddx_f32_to_bf16((float)((im * 5 + g * 11) % 13) - 6.0f);
    }
    for (int c = 0; c < C; c++) {
        hg[c] = urand(0.5f, 1.5f);
        hbt[c] = urand(-0.5f, 0.5f);
    }
    ddx_k_bcast bc;
    ddx_k_bcast_make(&bc, (const int64_t[4]){N, 1, S, C}, (const int64_t[4]){N, 1, 1, C});
    if (!h2d(sc, hs, (size_t)(N * C) * 2) || !h2d(of, ho, (size_t)(N * C) * 2) || !h2d(gam, hg, sizeof hg) ||
        !h2d(bet, hbt, sizeof hbt) || !LAUNCH(ddx_k_randn_bf16(x, n, key_of(111, 3), NULL)) ||
        !LAUNCH(ddx_k_mul_bf16(x, x, sc, &bc, NULL)) || !LAUNCH(ddx_k_add_bf16(x, x, of, &bc, NULL)) ||
        !poison(y, (size_t)n * 2) || !poison(mean, (size_t)(N * G) * 4) || !poison(rstd, (size_t)(N * G) * 4))
        goto out;
    if (!LAUNCH(ddx_k_group_norm_fwd(y, mean, rstd, x, gam, bet, scr, &sh, NULL))) goto out;
    int64_t imgs[10] = {0, 1, 2047, 2048, 4095, 4096, 0, 0, 0, 0};
    for (int k = 6; k < 10; k++) imgs[k] = rnd_below(N);
    for (int k = 0; k < 10 && g_c.fails < MAX_PRINT; k++) {
        const int64_t im = imgs[k];
        if (!d2h(hx, x + im * img, (size_t)img * 2) || !d2h(hy, y + im * img, (size_t)img * 2)) goto out;
        for (int64_t g = 0; g < G; g++) {
            double s1 = 0.0, s2 = 0.0;
            for (int64_t p = 0; p < S; p++)
                for (int64_t c = g * cg; c < (g + 1) * cg; c++) s1 += ddx_bf16_to_f32(hx[p * C + c]);
            const double mu = s1 / (double)(S * cg);
            for (int64_t p = 0; p < S; p++)
                for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
                    const double d = ddx_bf16_to_f32(hx[p * C + c]) - mu;
                    s2 += d * d;
                }
            const double rs = 1.0 / sqrt(s2 / (double)(S * cg) + 1e-5);
            const float dm = rd_f(mean, im * G + g), dr = rd_f(rstd, im * G + g);
            expect_near("mean", im * G + g, dm, mu, 1e-5 * (fabs(mu) + 1.0 / rs));
            expect_near("rstd", im * G + g, dr, rs, 1e-4 * rs);
            for (int64_t p = 0; p < S; p++)
                for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
                    const double xh = (ddx_bf16_to_f32(hx[p * C + c]) - mu) * rs;
                    const double a = xh * hg[c] + hbt[c], ref = a / (1.0 + exp(-a));
                    expect_near("y", im * img + p * C + c, ddx_bf16_to_f32(hy[p * C + c]), ref,
                                BF_U * fabs(ref) + 1e-4 * (fabs(xh * hg[c]) + fabs(hbt[c])) + 1e-6);
                }
        }
    }
out:
    free(hs);
    free(ho);
    free(hx);
    free(hy);
}

// Marker positions for the reductions: a buffer of zeros with 2^k (k = 0..12) at these
// positions sums exactly, and a skipped or doubled marker changes the sum.
static int markers(int64_t n, int64_t *pos) {
    const int64_t p[] = {0, 1, 12345, ((int64_t)1 << 29) + 7, ((int64_t)1 << 30) - 1, (int64_t)1 << 30, TWO31 - 1,
                         TWO31, TWO31 + 1, TWO31 + 40, n / 3, n - 2, n - 1};
    int k = 0;
    for (int i = 0; i < 13; i++)
        if (p[i] >= 0 && p[i] < n) pos[k++] = p[i];
    return k;
}

// sum / mean of 2^31 + 77 bf16 and mse_loss of 2^31 + 77 f32, on zeros with markers.
static void case_reduce(void) {
    const int64_t n = TWO31 + 77;
    const int64_t scr_f = ddx_k_reduce_scratch_floats();
    uint16_t *xb = dalloc((size_t)n * 2);
    float *out = dalloc(4), *scr = dalloc((size_t)scr_f * 4);
    if (!xb || !out || !scr) return;
    int64_t pos[13];
    const int nm = markers(n, pos);
    double want = 0.0, want_sq = 0.0;
    if (!CU(cudaMemset(xb, 0, (size_t)n * 2))) return;
    for (int k = 0; k < nm; k++) {
        if (!wr_bf(xb, pos[k], ldexpf(1.0f, k))) return;
        want += ldexp(1.0, k);
        want_sq += ldexp(1.0, 2 * k);
    }
    if (!poison(out, 4) || !LAUNCH(ddx_k_sum_div(out, xb, DDX_K_NORM_BF16, n, 1.0, scr, NULL))) return;
    float got = rd_f(out, 0);
    if (got != (float)want) cfail("sum of bf16 markers: got %.9g, want %.9g", (double)got, want);
    if (!poison(out, 4) || !LAUNCH(ddx_k_sum_div(out, xb, DDX_K_NORM_BF16, n, (double)n, scr, NULL))) return;
    got = rd_f(out, 0);
    if (got != (float)(want / (double)n)) cfail("mean of bf16 markers: got %.9g, want %.9g", (double)got, want / (double)n);
    CU(cudaFree(xb));   // make room for the two f32 operands
    g_c.ptrs[0] = NULL;
    g_c.bytes -= (size_t)n * 2;
    float *a = dalloc((size_t)n * 4), *b = dalloc((size_t)n * 4);
    if (!a || !b || !CU(cudaMemset(a, 0, (size_t)n * 4)) || !CU(cudaMemset(b, 0, (size_t)n * 4))) return;
    for (int k = 0; k < nm; k++)   // a - b = 2^k at the markers: half from a, half from -b
        if (!(k % 2 ? wr_f(a, pos[k], ldexpf(1.0f, k)) : wr_f(b, pos[k], -ldexpf(1.0f, k)))) return;
    if (!poison(out, 4) || !LAUNCH(ddx_k_mse_fwd(out, a, b, n, scr, NULL))) return;
    got = rd_f(out, 0);
    if (got != (float)(want_sq / (double)n))
        cfail("mse of f32 markers: got %.9g, want %.9g", (double)got, want_sq / (double)n);
}

// linear's helpers: the bias broadcast into y [2^24 + 3, 128] bf16 (2^31 + 384 elements)
// and the column sums of dy of that shape (zeros with small-integer markers: exact).
static void case_linear_helpers(void) {
    const int64_t rows = ((int64_t)1 << 24) + 3, cols = 128, n = rows * cols;
    const int64_t scr_f = ddx_k_colsum_scratch_floats(rows, cols);
    uint16_t *y = dalloc((size_t)n * 2), *bias = dalloc((size_t)cols * 2), *db = dalloc((size_t)cols * 2);
    float *scr = dalloc((size_t)scr_f * 4);
    if (!y || !bias || !db || !scr) return;
    uint16_t hb[128];
    for (int c = 0; c < cols; c++) hb[c] = ddx_f32_to_bf16(urand(-2.0f, 2.0f));
    if (!h2d(bias, hb, sizeof hb) || !poison(y, (size_t)n * 2)) return;
    if (!LAUNCH(ddx_k_rows_fill_bias(y, bias, rows, cols, DDX_K_NORM_BF16, NULL))) return;
    int64_t s[MAXS];
    const int ns = make_samples(n, 2, NULL, 0, s);
    for (int i = 0; i < ns; i++) expect_u16("rows_fill_bias", s[i], rd_u16(y, s[i]), hb[s[i] % cols]);

    int64_t pos[13];
    const int nm = markers(n, pos);
    double want[128] = {0};
    if (!CU(cudaMemset(y, 0, (size_t)n * 2)) || !CU(cudaMemset(db, 0, (size_t)cols * 2))) return;
    for (int k = 0; k < nm; k++) {
        const float v = (float)(1 << (k % 7));   // every column sum stays an integer below 256
        if (!wr_bf(y, pos[k], v)) return;
        want[pos[k] % cols] += v;
    }
    if (!LAUNCH(ddx_k_colsum_acc(db, y, rows, cols, DDX_K_NORM_BF16, scr, NULL))) return;
    uint16_t got[128];
    if (!d2h(got, db, sizeof got)) return;
    for (int c = 0; c < cols; c++) expect_u16("colsum", c, got[c], ddx_f32_to_bf16((float)want[c]));
}

// ====================================== misc =============================================
// PyTorch's source index for scale 2, align_corners=False (exact: multiples of 1/4).
static void tap(int64_t o, int64_t n, int64_t *i0, int64_t *i1, float *w0, float *w1) {
    float src = ((float)o + 0.5f) * 0.5f - 0.5f;
    if (src < 0.0f) src = 0.0f;
    *i0 = (int64_t)src;
    *i1 = *i0 + (*i0 < n - 1 ? 1 : 0);
    *w1 = src - (float)*i0;
    *w0 = 1.0f - *w1;
}

// bilinear upsample2x, bf16 x [1025, 32, 32, 512] -> y [1025, 64, 64, 512] (2^31 + 2^21).
static void case_upsample(void) {
    const int64_t N = 1025, H = 32, W = 32, C = 512, nx = N * H * W * C, ny = 4 * nx;
    uint16_t *x = dalloc((size_t)nx * 2), *y = dalloc((size_t)ny * 2);
    if (!x || !y) return;
    if (!LAUNCH(ddx_k_randn_bf16(x, nx, key_of(121, 4), NULL)) || !poison(y, (size_t)ny * 2)) return;
    if (!LAUNCH(ddx_k_upsample2x_bf16(y, x, N, H, W, C, 1, NULL))) return;
    int64_t s[MAXS];
    const int ns = make_samples(ny, 2, NULL, 0, s);
    for (int i = 0; i < ns; i++) {
        int64_t e = s[i];
        const int64_t c = e % C, ox = (e / C) % (2 * W), oy = (e / C / (2 * W)) % (2 * H), b = e / C / (4 * W * H);
        int64_t y0, y1, x0, x1;
        float wy0, wy1, wx0, wx1;
        tap(oy, H, &y0, &y1, &wy0, &wy1);
        tap(ox, W, &x0, &x1, &wx0, &wx1);
        const uint16_t *xb = x + b * H * W * C + c;
        const float p00 = rd_bf(xb, (y0 * W + x0) * C), p01 = rd_bf(xb, (y0 * W + x1) * C);
        const float p10 = rd_bf(xb, (y1 * W + x0) * C), p11 = rd_bf(xb, (y1 * W + x1) * C);
        const float top = ddx_rng_add(ddx_rng_mul(wx0, p00), ddx_rng_mul(wx1, p01));
        const float bot = ddx_rng_add(ddx_rng_mul(wx0, p10), ddx_rng_mul(wx1, p11));
        const float v = ddx_rng_add(ddx_rng_mul(wy0, top), ddx_rng_mul(wy1, bot));
        expect_u16("upsample y", e, rd_u16(y, e), ddx_f32_to_bf16(v));
    }
}

// pool2x max and avg, bf16 x [1025, 64, 64, 512] (2^31 + 2^21) -> y [1025, 32, 32, 512].
static void case_pool(void) {
    const int64_t N = 1025, H = 64, W = 64, C = 512, nx = N * H * W * C, ny = nx / 4;
    uint16_t *x = dalloc((size_t)nx * 2), *y = dalloc((size_t)ny * 2);
    if (!x || !y) return;
    if (!LAUNCH(ddx_k_randn_bf16(x, nx, key_of(131, 4), NULL))) return;
    for (int avg = 0; avg < 2; avg++) {
        if (!poison(y, (size_t)ny * 2) || !LAUNCH(ddx_k_pool2x_bf16(y, x, N, H, W, C, avg, NULL))) return;
        int64_t s[MAXS];
        // x's image 512 starts at 2^31 bytes, image 1024 at 2^31 elements: the first outputs
        // of those images and the last ones before them.
        const int64_t extra[] = {TWO31 / 8 - 1, TWO31 / 8, TWO31 / 4 - 1, TWO31 / 4};
        const int ns = make_samples(ny, 2, extra, 4, s);
        for (int i = 0; i < ns; i++) {
            const int64_t e = s[i], c = e % C, ox = (e / C) % (W / 2), oy = (e / C / (W / 2)) % (H / 2),
                          b = e / C / (W / 2) / (H / 2);
            const int64_t p = ((b * H + 2 * oy) * W + 2 * ox) * C + c;
            const float v0 = rd_bf(x, p), v1 = rd_bf(x, p + C), v2 = rd_bf(x, p + W * C), v3 = rd_bf(x, p + W * C + C);
            float want;
            if (avg) {
                want = ddx_rng_mul(ddx_rng_add(ddx_rng_add(v0, v1), ddx_rng_add(v2, v3)), 0.25f);
            } else {
                want = v0;
                if (v1 > want) want = v1;
                if (v2 > want) want = v2;
                if (v3 > want) want = v3;
            }
            expect_u16(avg ? "avg pool y" : "max pool y", e, rd_u16(y, e), ddx_f32_to_bf16(want));
        }
    }
}

// concat as strided rows: src [2^25 + 3, 64] (2^31 + 192) into columns 8..71 of
// dst [2^25 + 3, 72] (2.4e9 elements); columns 0..7 must stay untouched.
static void case_concat(void) {
    const int64_t rows = ((int64_t)1 << 25) + 3, w = 64, dld = 72, ns_el = rows * w, nd = rows * dld;
    uint16_t *src = dalloc((size_t)ns_el * 2), *dst = dalloc((size_t)nd * 2);
    if (!src || !dst) return;
    if (!LAUNCH(ddx_k_randn_bf16(src, ns_el, key_of(141, 5), NULL)) || !poison(dst, (size_t)nd * 2)) return;
    if (!LAUNCH(ddx_k_rows_copy_bf16(dst + 8, dld, src, w, rows, w, NULL))) return;
    int64_t s[MAXS];
    const int ns = make_samples(ns_el, 2, NULL, 0, s);
    for (int i = 0; i < ns; i++) {
        const int64_t r = s[i] / w, j = s[i] % w;
        expect_u16("concat dst", r * dld + 8 + j, rd_u16(dst, r * dld + 8 + j), rd_u16(src, s[i]));
        expect_u16("concat untouched", r * dld + j % 8, rd_u16(dst, r * dld + j % 8), 0xFFFF);
    }
}

// embedding: idx [2^22 + 1] into a [1000, 512] bf16 table, y 2^31 + 512 elements; a few
// indices out of range (their rows must be NaN).
static void case_embedding(void) {
    const int64_t N = ((int64_t)1 << 22) + 1, V = 1000, D = 512, n = N * D;
    uint16_t *y = dalloc((size_t)n * 2), *tab = dalloc((size_t)(V * D) * 2);
    int32_t *idx = dalloc((size_t)N * 4);
    int32_t *hi = malloc((size_t)N * 4);
    uint16_t *ht = malloc((size_t)(V * D) * 2);
    if (!y || !tab || !idx || !hi || !ht) goto out;
    for (int64_t i = 0; i < V * D; i++) ht[i] = ddx_f32_to_bf16(urand(-1.0f, 1.0f));
    for (int64_t i = 0; i < N; i++) hi[i] = (int32_t)rnd_below(V);
    hi[N - 1] = -1;
    hi[N / 2] = (int32_t)V;
    if (!h2d(tab, ht, (size_t)(V * D) * 2) || !h2d(idx, hi, (size_t)N * 4) || !poison(y, (size_t)n * 2)) goto out;
    if (!LAUNCH(ddx_k_embedding_bf16(y, idx, tab, N, V, D, NULL))) goto out;
    int64_t s[MAXS];
    const int64_t extra[] = {(N / 2) * D, (N / 2) * D + D - 1};
    const int ns = make_samples(n, 2, extra, 2, s);
    for (int i = 0; i < ns; i++) {
        const int64_t r = s[i] / D, j = s[i] % D;
        const uint16_t got = rd_u16(y, s[i]);
        if (hi[r] < 0 || hi[r] >= V) {
            if (!isnan(ddx_bf16_to_f32(got))) cfail("embedding y[%" PRId64 "] of a bad index: 0x%04x, want NaN", s[i], got);
        } else {
            expect_u16("embedding y", s[i], got, ht[(int64_t)hi[r] * D + j]);
        }
    }
out:
    free(hi);
    free(ht);
}

// timestep_emb f32: t [2^23 + 1] -> y [2^23 + 1, 256] (2^31 + 256 elements).
static void case_timestep_emb(void) {
    const int64_t N = ((int64_t)1 << 23) + 1, half = 128, dim = 2 * half, n = N * dim;
    const float nlp = (float)-log(10000.0), denom = (float)half - 1.0f;
    float *y = dalloc((size_t)n * 4), *t = dalloc((size_t)N * 4);
    float *ht = malloc((size_t)N * 4);
    if (!y || !t || !ht) goto out;
    for (int64_t i = 0; i < N; i++) ht[i] = urand(0.0f, 1000.0f);
    if (!h2d(t, ht, (size_t)N * 4) || !poison(y, (size_t)n * 4)) goto out;
    if (!LAUNCH(ddx_k_timestep_emb_f32(y, t, N, half, nlp, denom, 0, NULL))) goto out;
    int64_t s[MAXS];
    const int ns = make_samples(n, 4, NULL, 0, s);
    int differ = 0;
    for (int i = 0; i < ns; i++) {
        const int64_t r = s[i] / dim, col = s[i] % dim, k = col % half;
        const float e1 = nlp * (float)k, ex = e1 / denom;
        const float freq = (float)exp((double)ex), arg = ht[r] * freq;
        const float want = col < half ? (float)sin((double)arg) : (float)cos((double)arg), got = rd_f(y, s[i]);
        differ += f_bits(got) != f_bits(want);
        expect_near("timestep_emb y", s[i], got, want, 3e-7);
    }
    if (differ) printf("  note: %s: %d of %d samples not bit-identical to the host formula\n", g_c.name, differ, ns);
out:
    free(ht);
}

// dropout bf16, p = 0.3, 2^31 + 5 elements: the mask is Philox element e's bits.
static void case_dropout(void) {
    const int64_t n = TWO31 + 5;
    const ddx_k_dropout_key key = {
        .seed = 0xD0D0ull, .stream = 3, .step = 17, .threshold = (int32_t)ceil(0.3 * 16777216.0), .scale = 1.0f / (1.0f - 0.3f)};
    uint16_t *x = dalloc((size_t)n * 2), *y = dalloc((size_t)n * 2);
    if (!x || !y) return;
    if (!LAUNCH(ddx_k_randn_bf16(x, n, key_of(151, 6), NULL)) || !poison(y, (size_t)n * 2)) return;
    if (!LAUNCH(ddx_k_dropout_bf16(y, x, n, key, NULL))) return;
    int64_t s[MAXS];
    const int ns = make_samples(n, 2, NULL, 0, s);
    for (int i = 0; i < ns; i++) {
        uint32_t w[4];
        ddx_philox_group(key.seed, key.stream, key.step, (uint64_t)s[i] >> 2, w);
        const bool keep = (int32_t)(((w[s[i] & 3] >> 9) << 1) | 1u) >= key.threshold;
        const uint16_t want = keep ? ddx_f32_to_bf16(ddx_rng_mul(rd_bf(x, s[i]), key.scale)) : 0;
        expect_u16("dropout y", s[i], rd_u16(y, s[i]), want);
    }
}

// ===================================== optim =============================================
// One clipped AdamW step over 2^31 + 5 f32 parameters (no EMA: with it the five arrays would
// need 43 GB), then the gradient norm of markers over the same range.
static void case_adamw(void) {
    const int64_t n = TWO31 + 5;
    float *p = dalloc((size_t)n * 4), *g = dalloc((size_t)n * 4), *m = dalloc((size_t)n * 4), *v = dalloc((size_t)n * 4);
    if (!p || !g || !m || !v) return;
    if (!LAUNCH(ddx_philox_normal_cuda(p, n, 161, 1, 0, 0, NULL)) || !LAUNCH(ddx_philox_normal_cuda(g, n, 161, 2, 0, 0, NULL)) ||
        !LAUNCH(ddx_philox_normal_cuda(m, n, 161, 3, 0, 0, NULL)) || !LAUNCH(ddx_philox_uniform_cuda(v, n, 161, 4, 0, 0, NULL)))
        return;
    int64_t s[MAXS];
    const int ns = make_samples(n, 4, NULL, 0, s);
    static float p0[MAXS], g0[MAXS], m0[MAXS], v0[MAXS];
    for (int i = 0; i < ns; i++) {
        p0[i] = rd_f(p, s[i]);
        g0[i] = rd_f(g, s[i]);
        m0[i] = rd_f(m, s[i]);
        v0[i] = rd_f(v, s[i]);
    }
    const ddx_k_adamw_args a = ddx_k_adamw_args_make(1e-3, 0.9, 0.999, 1e-8, 0.01, 10, 1.0, 5.0, 0.0);
    if (!a.apply_clip) cfail("test bug: the clip should apply");
    if (!LAUNCH(ddx_k_adamw_step(p, g, m, v, NULL, n, &a, NULL))) return;
    int differ = 0;
    for (int i = 0; i < ns; i++) {
        const float gc = ddx_rng_mul(g0[i], a.clip);
        float P = ddx_rng_mul(p0[i], a.decay);
        const float M = fmaf(a.w1, gc - m0[i], m0[i]);
        const float V = fmaf(ddx_rng_mul(a.w2, gc), gc, ddx_rng_mul(v0[i], a.beta2));
        const float q = sqrtf(V) / a.bc2_sqrt;
        const float den = q + a.eps;
        const float upd = ddx_rng_mul(a.neg_step, M) / den;
        P = P + upd;
        const float gp = rd_f(p, s[i]), gm = rd_f(m, s[i]), gv = rd_f(v, s[i]);
        differ += f_bits(gp) != f_bits(P) || f_bits(gm) != f_bits(M) || f_bits(gv) != f_bits(V);
        expect_near("adamw p", s[i], gp, P, 1e-6 * fabs(P) + 1e-9);
        expect_near("adamw m", s[i], gm, M, 1e-6 * fabs(M) + 1e-12);
        expect_near("adamw v", s[i], gv, V, 1e-6 * fabs(V) + 1e-12);
    }
    if (differ) printf("  note: %s: %d of %d samples not bit-identical to the host formula\n", g_c.name, differ, ns);
    int64_t pos[13];
    const int nm = markers(n, pos);
    double want = 0.0, got = -1.0;
    if (!CU(cudaMemset(g, 0, (size_t)n * 4))) return;
    for (int k = 0; k < nm; k++) {
        if (!wr_f(g, pos[k], ldexpf(1.0f, k))) return;
        want += ldexp(1.0, 2 * k);
    }
    const int rc = ddx_k_grad_sumsq(g, n, &got, NULL);
    if (rc != 0) cfail("ddx_k_grad_sumsq returned %d (%s)", rc, cudaGetErrorName((cudaError_t)rc));
    else if (got != want) cfail("grad_sumsq of markers: got %.17g, want %.17g", got, want);
}

// =================================== attention ===========================================
// Forward, bf16 q/k/v/out [2^17 + 1, 256, 64] (2^31 + 16384 elements each), 2 heads of 32.
// Items 65536 and 131072 start at 2^31 bytes and 2^31 elements; every row of both heads of
// the checked items is compared with a double-precision softmax of the bf16 inputs.
static void case_attention(void) {
    const int64_t N = ((int64_t)1 << 17) + 1, L = 256, C = 64, n = N * L * C;
    const int heads = 2, hd = 32;
    const float scale = 1.0f / sqrtf((float)hd);
    int dev = 0, optin = 0;
    const size_t need = ddx_k_attention_smem_bytes(hd);
    if (!CU(cudaGetDevice(&dev)) || !CU(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)))
        return;
    if (need == 0) {
        cfail("ddx_k_attention_smem_bytes(%d) = 0: head_dim %d refused", hd, hd);
        return;
    }
    if (need > (size_t)optin) {
        cskip("the kernel needs %zu B of shared memory per block, this device allows %d", need, optin);
        return;
    }
    uint16_t *q = dalloc((size_t)n * 2), *k = dalloc((size_t)n * 2), *v = dalloc((size_t)n * 2), *o = dalloc((size_t)n * 2);
    float *lse = dalloc((size_t)(N * heads * L) * 4);
    uint16_t *hq = malloc((size_t)(L * C) * 2), *hk = malloc((size_t)(L * C) * 2), *hv = malloc((size_t)(L * C) * 2),
             *ho = malloc((size_t)(L * C) * 2);
    float *hl = malloc((size_t)(heads * L) * 4);
    double *sc = malloc((size_t)L * 8);
    if (!q || !k || !v || !o || !lse || !hq || !hk || !hv || !ho || !hl || !sc) goto out;
    if (!LAUNCH(ddx_k_randn_bf16(q, n, key_of(171, 7), NULL)) || !LAUNCH(ddx_k_randn_bf16(k, n, key_of(172, 7), NULL)) ||
        !LAUNCH(ddx_k_randn_bf16(v, n, key_of(173, 7), NULL)) || !poison(o, (size_t)n * 2) ||
        !poison(lse, (size_t)(N * heads * L) * 4))
        goto out;
    if (!LAUNCH(ddx_k_attention_fwd_bf16(q, k, v, o, lse, N, L, heads, hd, scale, NULL))) goto out;
    int64_t items[6] = {0, 65535, 65536, 131071, 131072, 0};
    items[5] = rnd_below(N);
    for (int it = 0; it < 6 && g_c.fails < MAX_PRINT; it++) {
        const int64_t b = items[it], base = b * L * C;
        if (!d2h(hq, q + base, (size_t)(L * C) * 2) || !d2h(hk, k + base, (size_t)(L * C) * 2) ||
            !d2h(hv, v + base, (size_t)(L * C) * 2) || !d2h(ho, o + base, (size_t)(L * C) * 2) ||
            !d2h(hl, lse + b * heads * L, (size_t)(heads * L) * 4))
            goto out;
        for (int h = 0; h < heads; h++)
            for (int64_t i = 0; i < L; i++) {
                double mx = -INFINITY;
                for (int64_t j = 0; j < L; j++) {
                    double d = 0.0;
                    for (int c = 0; c < hd; c++)
                        d += (double)ddx_bf16_to_f32(hq[i * C + h * hd + c]) * ddx_bf16_to_f32(hk[j * C + h * hd + c]);
                    sc[j] = d * scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                double l = 0.0;
                for (int64_t j = 0; j < L; j++) l += (sc[j] = exp(sc[j] - mx));
                expect_near("lse", (b * heads + h) * L + i, hl[h * L + i], mx + log(l), 2e-5 * (fabs(mx + log(l)) + 1.0));
                for (int c = 0; c < hd; c++) {
                    double r = 0.0, mag = 0.0;
                    for (int64_t j = 0; j < L; j++) {
                        const double vv = ddx_bf16_to_f32(hv[j * C + h * hd + c]);
                        r += sc[j] * vv;
                        mag += sc[j] * fabs(vv);
                    }
                    r /= l;
                    mag /= l;
                    // The tensor-core kernel multiplies V by the probabilities rounded to bf16
                    // (as FlashAttention does): each p is off by up to 2^-9 p, so the sum by up to
                    // 2^-9 mag; 2^-8 mag leaves a factor of two, plus the output's own rounding.
                    // (A 1e-4 mag bound failed on the H200 by one bf16 ulp at ~1800 of the outputs.)
                    expect_near("out", base + i * C + h * hd + c, ddx_bf16_to_f32(ho[i * C + h * hd + c]), r,
                                BF_U * fabs(r) + 0x1p-8 * mag + 1e-6);
                }
            }
    }
out:
    free(hq);
    free(hk);
    free(hv);
    free(ho);
    free(hl);
    free(sc);
}

// ====================================== conv =============================================
// bf16 x [4100, 64, 64, 128] (2^31 + 2^21 elements: image 2048 starts at 2^32 bytes, image
// 4096 at 2^31 elements), 3x3, stride 1, pad 1, Co = 8; w [8, 3, 3, 128].
enum { CV_N = 4100, CV_H = 64, CV_W = 64, CV_CI = 128, CV_CO = 8, CV_K = 3 };
static const ddx_k_conv_geom g_cv = {.N = CV_N, .H = CV_H, .W = CV_W, .Ci = CV_CI, .Co = CV_CO, .KH = CV_K, .KW = CV_K,
                                     .Ho = CV_H, .Wo = CV_W, .stride = 1, .pad_top = 1, .pad_left = 1};
#define CV_NX ((int64_t)CV_N * CV_H * CV_W * CV_CI)
#define CV_NY ((int64_t)CV_N * CV_H * CV_W * CV_CO)
#define CV_NW (CV_CO * CV_K * CV_K * CV_CI)

static bool conv_supported(void) {
    if (ddx_k_conv2d_supported(&g_cv)) return true;
    cfail("ddx_k_conv2d_supported() returns 0 for x [%d, %d, %d, %d] (%" PRId64 " elements), 3x3, Co %d", CV_N, CV_H, CV_W,
          CV_CI, CV_NX, CV_CO);
    return false;
}

static bool conv_weights(uint16_t *w, float *hw) {
    uint16_t hb[CV_NW];
    for (int i = 0; i < CV_NW; i++) {
        hb[i] = ddx_f32_to_bf16(urand(-1.0f, 1.0f) / 32.0f);
        hw[i] = ddx_bf16_to_f32(hb[i]);
    }
    return h2d(w, hb, sizeof hb);
}

// The output pixels checked by fwd and dgrad: corners and a middle pixel of the images around
// the boundaries, then random pixels. Fills (img, row, col) triples, returns the count.
static int conv_pixels(int64_t (*px)[3], int nrand) {
    const int64_t imgs[] = {0, 1, 2047, 2048, 4095, 4096, CV_N - 1};
    const int64_t spots[][2] = {{0, 0}, {0, CV_W - 1}, {CV_H - 1, 0}, {CV_H - 1, CV_W - 1}, {31, 17}};
    int k = 0;
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 5; j++) {
            px[k][0] = imgs[i];
            px[k][1] = spots[j][0];
            px[k][2] = spots[j][1];
            k++;
        }
    for (int r = 0; r < nrand; r++, k++) {
        px[k][0] = rnd_below(CV_N);
        px[k][1] = rnd_below(CV_H);
        px[k][2] = rnd_below(CV_W);
    }
    return k;
}

static void case_conv_fwd(void) {
    if (!conv_supported()) return;
    uint16_t *x = dalloc((size_t)CV_NX * 2), *y = dalloc((size_t)CV_NY * 2), *w = dalloc(CV_NW * 2), *bias = dalloc(CV_CO * 2);
    static float hw[CV_NW];
    if (!x || !y || !w || !bias || !conv_weights(w, hw)) return;
    uint16_t hb[CV_CO];
    for (int c = 0; c < CV_CO; c++) hb[c] = ddx_f32_to_bf16(urand(-1.0f, 1.0f));
    if (!h2d(bias, hb, sizeof hb) || !LAUNCH(ddx_k_randn_bf16(x, CV_NX, key_of(181, 8), NULL)) || !poison(y, (size_t)CV_NY * 2))
        return;
    if (!LAUNCH(ddx_k_conv2d_fwd_bf16(y, x, w, bias, &g_cv, NULL))) return;
    static int64_t px[35 + 300][3];
    const int np = conv_pixels(px, 300);
    for (int t = 0; t < np && g_c.fails < MAX_PRINT; t++) {
        const int64_t b = px[t][0], oh = px[t][1], ow = px[t][2];
        double acc[CV_CO] = {0}, mag[CV_CO] = {0};
        for (int kh = 0; kh < CV_K; kh++)
            for (int kw = 0; kw < CV_K; kw++) {
                const int64_t ih = oh - 1 + kh, iw = ow - 1 + kw;
                if (ih < 0 || ih >= CV_H || iw < 0 || iw >= CV_W) continue;
                uint16_t patch[CV_CI];
                if (!d2h(patch, x + ((b * CV_H + ih) * CV_W + iw) * CV_CI, sizeof patch)) return;
                for (int co = 0; co < CV_CO; co++)
                    for (int ci = 0; ci < CV_CI; ci++) {
                        const double term = (double)ddx_bf16_to_f32(patch[ci]) * hw[((co * CV_K + kh) * CV_K + kw) * CV_CI + ci];
                        acc[co] += term;
                        mag[co] += fabs(term);
                    }
            }
        uint16_t got[CV_CO];
        const int64_t yo = ((b * CV_H + oh) * CV_W + ow) * CV_CO;
        if (!d2h(got, y + yo, sizeof got)) return;
        for (int co = 0; co < CV_CO; co++) {
            const double ref = acc[co] + ddx_bf16_to_f32(hb[co]);
            expect_near("conv y", yo + co, ddx_bf16_to_f32(got[co]), ref,
                        BF_U * fabs(ref) + 1e-4 * (mag[co] + fabs(ddx_bf16_to_f32(hb[co]))) + 1e-6);
        }
    }
}

// dgrad: dx [4100, 64, 64, 128] (2^31 + 2^21) += the input gradient of random dy; dx starts
// at 1.0 so an untouched element shows.
static void case_conv_dgrad(void) {
    if (!conv_supported()) return;
    uint16_t *dx = dalloc((size_t)CV_NX * 2), *dy = dalloc((size_t)CV_NY * 2), *w = dalloc(CV_NW * 2);
    static float hw[CV_NW];
    if (!dx || !dy || !w || !conv_weights(w, hw)) return;
    if (!LAUNCH(ddx_k_randn_bf16(dy, CV_NY, key_of(191, 8), NULL)) || !LAUNCH(ddx_k_fill_bf16(dx, CV_NX, 1.0f, NULL))) return;
    if (!LAUNCH(ddx_k_conv2d_dgrad_bf16(dx, dy, w, &g_cv, NULL))) return;
    static int64_t px[35 + 200][3];
    const int np = conv_pixels(px, 200);
    for (int t = 0; t < np && g_c.fails < MAX_PRINT; t++) {
        const int64_t b = px[t][0], h = px[t][1], x = px[t][2];
        static double acc[CV_CI], mag[CV_CI];
        for (int ci = 0; ci < CV_CI; ci++) acc[ci] = 1.0, mag[ci] = 1.0;
        for (int kh = 0; kh < CV_K; kh++)
            for (int kw = 0; kw < CV_K; kw++) {
                const int64_t oh = h + 1 - kh, ow = x + 1 - kw;
                if (oh < 0 || oh >= CV_H || ow < 0 || ow >= CV_W) continue;
                uint16_t g[CV_CO];
                if (!d2h(g, dy + ((b * CV_H + oh) * CV_W + ow) * CV_CO, sizeof g)) return;
                for (int co = 0; co < CV_CO; co++)
                    for (int ci = 0; ci < CV_CI; ci++) {
                        const double term = (double)ddx_bf16_to_f32(g[co]) * hw[((co * CV_K + kh) * CV_K + kw) * CV_CI + ci];
                        acc[ci] += term;
                        mag[ci] += fabs(term);
                    }
            }
        uint16_t got[CV_CI];
        const int64_t xo = ((b * CV_H + h) * CV_W + x) * CV_CI;
        if (!d2h(got, dx + xo, sizeof got)) return;
        for (int ci = 0; ci < CV_CI; ci++)
            expect_near("conv dx", xo + ci, ddx_bf16_to_f32(got[ci]), acc[ci], BF_U * fabs(acc[ci]) + 1e-4 * mag[ci] + 1e-6);
    }
}

// wgrad and bgrad over all 16.8M output pixels with dy zero except at marker pixels (in the
// first image, around the boundary images and in the last), so the sums over the huge x are
// exact functions of a few patches.
static void case_conv_wgrad(void) {
    if (!conv_supported()) return;
    // The bf16 wgrad may take the tensor-core path with its own split count; room for either.
    const int64_t sp32 = ddx_k_conv2d_wgrad_splits(&g_cv), sp16 = ddx_k_conv2d_wgrad_splits_bf16(&g_cv);
    const int64_t splits = sp32 > sp16 ? sp32 : sp16, parts = ddx_k_conv2d_bgrad_parts(&g_cv);
    uint16_t *x = dalloc((size_t)CV_NX * 2), *dy = dalloc((size_t)CV_NY * 2), *dw = dalloc(CV_NW * 2), *db = dalloc(CV_CO * 2);
    float *part = splits > 1 ? dalloc((size_t)(splits * CV_NW) * 4) : NULL;
    double *bpart = dalloc((size_t)(parts * CV_CO) * 8);
    if (!x || !dy || !dw || !db || (splits > 1 && !part) || !bpart) return;
    if (!LAUNCH(ddx_k_randn_bf16(x, CV_NX, key_of(201, 8), NULL)) || !CU(cudaMemset(dy, 0, (size_t)CV_NY * 2)) ||
        !CU(cudaMemset(dw, 0, CV_NW * 2)) || !CU(cudaMemset(db, 0, CV_CO * 2)))
        return;
    const int64_t mk[][3] = {{0, 0, 0}, {1, 17, 0}, {2048, 10, 63}, {4095, 32, 32}, {4096, 0, 5}, {CV_N - 1, 63, 63}};
    enum { NMK = 6 };
    static double ref[CV_NW], mag[CV_NW];
    double bref[CV_CO] = {0}, bmag[CV_CO] = {0};
    memset(ref, 0, sizeof ref);
    memset(mag, 0, sizeof mag);
    for (int t = 0; t < NMK; t++) {
        const int64_t b = mk[t][0], oh = mk[t][1], ow = mk[t][2];
        uint16_t g[CV_CO];
        for (int co = 0; co < CV_CO; co++) g[co] = ddx_f32_to_bf16(urand(-1.0f, 1.0f));
        if (!h2d(dy + ((b * CV_H + oh) * CV_W + ow) * CV_CO, g, sizeof g)) return;
        for (int co = 0; co < CV_CO; co++) {
            bref[co] += ddx_bf16_to_f32(g[co]);
            bmag[co] += fabs(ddx_bf16_to_f32(g[co]));
        }
        for (int kh = 0; kh < CV_K; kh++)
            for (int kw = 0; kw < CV_K; kw++) {
                const int64_t ih = oh - 1 + kh, iw = ow - 1 + kw;
                if (ih < 0 || ih >= CV_H || iw < 0 || iw >= CV_W) continue;
                uint16_t patch[CV_CI];
                if (!d2h(patch, x + ((b * CV_H + ih) * CV_W + iw) * CV_CI, sizeof patch)) return;
                for (int co = 0; co < CV_CO; co++)
                    for (int ci = 0; ci < CV_CI; ci++) {
                        const double term = (double)ddx_bf16_to_f32(g[co]) * ddx_bf16_to_f32(patch[ci]);
                        ref[((co * CV_K + kh) * CV_K + kw) * CV_CI + ci] += term;
                        mag[((co * CV_K + kh) * CV_K + kw) * CV_CI + ci] += fabs(term);
                    }
            }
    }
    if (!LAUNCH(ddx_k_conv2d_wgrad_bf16(dw, dy, x, part, &g_cv, NULL))) return;
    if (!LAUNCH(ddx_k_conv2d_bgrad_bf16(db, dy, bpart, &g_cv, NULL))) return;
    static uint16_t got[CV_NW];
    if (!d2h(got, dw, sizeof got)) return;
    for (int e = 0; e < CV_NW; e++)
        expect_near("conv dw", e, ddx_bf16_to_f32(got[e]), ref[e], BF_U * fabs(ref[e]) + 1e-5 * mag[e] + 1e-7);
    uint16_t gb[CV_CO];
    if (!d2h(gb, db, sizeof gb)) return;
    for (int co = 0; co < CV_CO; co++)
        expect_near("conv db", co, ddx_bf16_to_f32(gb[co]), bref[co], BF_U * fabs(bref[co]) + 1e-6 * bmag[co]);
}

// ===================================== driver ============================================
typedef struct {
    const char *name;
    double need_gib;   // device memory the case allocates at its peak
    void (*fn)(void);
} case_def;

// Ordered so that the kernels most likely to fault (and poison the context) run last.
static const case_def k_cases[] = {
    {"elementwise-silu-bf16", 8.1, case_ew_silu},
    {"elementwise-add-bcast-bf16-2^32", 16.1, case_ew_add_bcast},
    {"philox-u32-normal", 8.1, case_philox},
    {"diffusion-q_sample-f32", 16.1, case_q_sample},
    {"diffusion-sampler_step-f32", 16.1, case_sampler_step},
    {"norm-group_norm-silu-bf16", 8.2, case_group_norm},
    {"norm-sum-mean-mse", 16.1, case_reduce},
    {"norm-linear-bias-colsum-bf16", 4.1, case_linear_helpers},
    {"misc-upsample2x-bilinear-bf16", 5.1, case_upsample},
    {"misc-pool2x-max-avg-bf16", 5.1, case_pool},
    {"misc-concat-rows-bf16", 8.6, case_concat},
    {"misc-embedding-bf16", 4.1, case_embedding},
    {"misc-timestep_emb-f32", 8.1, case_timestep_emb},
    {"misc-dropout-bf16", 8.1, case_dropout},
    {"optim-adamw-grad_sumsq-f32", 32.1, case_adamw},
    {"attention-fwd-bf16", 16.3, case_attention},
    {"conv2d-fwd-bf16", 4.4, case_conv_fwd},
    {"conv2d-wgrad-bgrad-bf16", 4.4, case_conv_wgrad},
    {"conv2d-dgrad-bf16", 4.4, case_conv_dgrad},
};
#define N_CASES ((int)(sizeof k_cases / sizeof *k_cases))

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_case(const case_def *cd) {
    if (g_dead) {
        printf("SKIP %s: the CUDA context was lost in an earlier case\n", cd->name);
        n_skip++;
        return;
    }
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        (void)cudaGetLastError();
        fr = 0;
    }
    if ((double)fr / GIB < cd->need_gib + 0.5) {
        printf("SKIP %s: needs %.1f GiB of free device memory, %.1f GiB free\n", cd->name, cd->need_gib + 0.5, fr / GIB);
        n_skip++;
        return;
    }
    memset(&g_c, 0, sizeof g_c);
    g_c.name = cd->name;
    g_rng = 0x243F6A8885A308D3ull;
    for (const char *p = cd->name; *p; p++) g_rng = g_rng * 31 + (uint8_t)*p;
    const double t0 = now_s();
    cd->fn();
    const cudaError_t sync = cudaDeviceSynchronize();
    if (sync != cudaSuccess) cfail("after the case: %s (%s)", cudaGetErrorName(sync), cudaGetErrorString(sync));
    for (int i = 0; i < g_c.np; i++)
        if (g_c.ptrs[i] && cudaFree(g_c.ptrs[i]) != cudaSuccess) (void)cudaGetLastError();
    const double dt = now_s() - t0;
    // A sticky error (an illegal address, say) survives cudaGetLastError: no later case can run.
    (void)cudaGetLastError();
    if (cudaDeviceSynchronize() != cudaSuccess) {
        g_dead = true;
        printf("  (the CUDA context is unusable after this case)\n");
    }
    if (g_c.fails) {
        printf("FAIL %s: %d problem%s (%.2f s)\n", cd->name, g_c.fails, g_c.fails == 1 ? "" : "s", dt);
        n_fail++;
    } else if (g_c.skip) {
        printf("SKIP %s: %s\n", cd->name, g_c.skip);
        n_skip++;
    } else {
        printf("PASS %s (%.1f GiB, %.2f s)\n", cd->name, g_c.peak / GIB, dt);
        n_pass++;
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    for (int a = 1; a < argc; a++)
        if (strcmp(argv[a], "--list") == 0) {
            for (int i = 0; i < N_CASES; i++) printf("%s\n", k_cases[i].name);
            return 0;
        }
    if (!ddx_cuda_available()) {
        printf("SKIP: no CUDA device (%s)\n", ddx_cuda_describe());
        n_skip++;
        ddx_test_finish("huge");
        return 77;
    }
    printf("device: %s\n", ddx_cuda_describe());
    const double t0 = now_s();
    for (int i = 0; i < N_CASES; i++) {
        bool want = argc < 2;
        for (int a = 1; a < argc; a++) want = want || strstr(k_cases[i].name, argv[a]) != NULL;
        if (want) run_case(&k_cases[i]);
    }
    printf("total %.1f s\n", now_s() - t0);
    return ddx_test_finish("huge");
}
#endif
