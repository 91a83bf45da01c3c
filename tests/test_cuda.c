// The CUDA runtime and the elementwise kernels against CPU computations.
//
// Without a device (or without CUDA in the build) only the error-reporting paths run and the
// test exits 77 (SKIP). With one: the caching pool (classes, reuse, trim, out-of-memory
// report), host/device copies, every elementwise launcher on random data of odd sizes, both
// vector and per-element paths (aligned and one-element-offset pointers), bf16 rounding
// bit-exact against ddx_f32_to_bf16 on special values, and one case above 2^32 elements for
// fill/copy/add. Outputs are poisoned (0xFF: NaN) before each launch and followed by guard
// bytes that must come back untouched.
#include "ddx_config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda.h"
#include "runtime/tensor.h"

#if DDX_HAVE_CUDA
#include "kernels/elementwise.h"
#include "runtime/cuda/check.h"
#if defined(__has_include)
#if __has_include("kernels/philox.h") && __has_include("runtime/philox.h")
#include "kernels/philox.h"
#include "runtime/philox.h"
#define HAVE_RNG 1
#endif
#endif
#endif

#include "check.h"

#if DDX_HAVE_CUDA
static int finish(void) { return ddx_test_finish("cuda-runtime"); }
#endif

#if !DDX_HAVE_CUDA
int main(void) {
    CHECK(!ddx_cuda_available(), "a build without CUDA reports a device");
    void *p = (void *)1;
    CHECK(ddx_cuda_malloc(16, &p) == DDX_E_UNSUPPORTED && p == NULL, "ddx_cuda_malloc without CUDA must be unsupported");
    CHECK(strstr(ddx_last_error(), "without CUDA") != NULL, "message: %s", ddx_last_error());
    printf("SKIP: built without CUDA (%s)\n", ddx_cuda_describe());
    n_skip++;
    ddx_test_finish("cuda-runtime");
    return n_fail ? 1 : 77;
}
#else

// ---- helpers ----------------------------------------------------------------------------
#define GUARD 256
#define POISON 0xFF
#define GUARD_BYTE 0xA5

static struct ddx_cuda_ctx *g_cc;
// DDX_TEST_QUICK: small sizes only and no > 2^32 case, for slow tools (compute-sanitizer).
static bool g_quick;
static void *g_stream;
static uint64_t g_rng = 0x243F6A8885A308D3ull;

static uint64_t rnd64(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float urand(float lo, float hi) { return lo + (hi - lo) * (float)((rnd64() >> 40) * 0x1p-24); }

static void *dmalloc(size_t bytes) {
    void *p = NULL;
    ddx_status st = ddx_cuda_malloc(bytes, &p);
    CHECK(st == DDX_OK && p, "ddx_cuda_malloc(%zu): %s", bytes, ddx_last_error());
    return st == DDX_OK ? p : NULL;
}

static bool h2d(void *d, const void *h, size_t n) {
    ddx_status st = ddx_cuda_memcpy(d, h, n, DDX_COPY_H2D);
    if (st != DDX_OK) CHECK(false, "H2D %zu bytes: %s", n, ddx_last_error());
    return st == DDX_OK;
}
static bool d2h(void *h, const void *d, size_t n) {
    ddx_status st = ddx_cuda_memcpy(h, d, n, DDX_COPY_D2H);
    if (st != DDX_OK) CHECK(false, "D2H %zu bytes: %s", n, ddx_last_error());
    return st == DDX_OK;
}

// A device region of `bytes` starting `off` bytes into an allocation, with GUARD bytes of
// a canary pattern before (the offset) and after it.
typedef struct {
    uint8_t *base, *data;
    size_t bytes, off;
} gbuf;

static bool gbuf_init(gbuf *g, size_t bytes, size_t off, const void *init) {
    g->bytes = bytes;
    g->off = off;
    g->base = dmalloc(off + bytes + GUARD);
    g->data = g->base ? g->base + off : NULL;
    if (!g->base) return false;
    if (ddx_cuda_memset(g->base, GUARD_BYTE, off + bytes + GUARD) != DDX_OK ||
        ddx_cuda_memset(g->data, POISON, bytes) != DDX_OK) {
        CHECK(false, "memset: %s", ddx_last_error());
        return false;
    }
    return init ? h2d(g->data, init, bytes) : true;
}

static void gbuf_check_guards(const gbuf *g, const char *what) {
    uint8_t after[GUARD], before[64];
    bool ok = d2h(after, g->data + g->bytes, GUARD);
    if (g->off) ok = ok && d2h(before, g->base, g->off);
    int bad = 0;
    for (int i = 0; i < GUARD; i++) bad += after[i] != GUARD_BYTE;
    for (size_t i = 0; i < g->off; i++) bad += before[i] != GUARD_BYTE;
    CHECK(ok && bad == 0, "%s: %d guard bytes around the output were overwritten", what, bad);
}

static void gbuf_free(gbuf *g) {
    ddx_cuda_free(g->base);
    g->base = g->data = NULL;
}

static bool launched(int rc, const char *what) {
    CHECK(rc == 0, "%s: launch returned %d (%s)", what, rc, cudaGetErrorString((cudaError_t)rc));
    return rc == 0;
}

static bool device_ok(const char *what) {
    ddx_status st = ddx_cuda_sync(g_cc);
    CHECK(st == DDX_OK, "%s: %s", what, ddx_last_error());
    return st == DDX_OK;
}

static float bf16_round(float v) { return ddx_bf16_to_f32(ddx_f32_to_bf16(v)); }

// Host values as the device will store them: f32 as is, bf16 rounded.
static void to_dtype(void *dst, const float *src, int64_t n, bool bf16) {
    if (!bf16) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = ddx_f32_to_bf16(src[i]);
}
static void from_dtype(float *dst, const void *src, int64_t n, bool bf16) {
    if (!bf16) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = ddx_bf16_to_f32(s[i]);
}

// |got - ref| <= rtol_out * |ref| + rtol_mag * mag: rtol_out covers the final rounding to
// the output type (0 for f32, half a bf16 ulp), rtol_mag the fp32 arithmetic on terms whose
// absolute sizes add up to mag. Reports the first few mismatches.
static void compare(const char *what, const float *got, const double *ref, const double *mag, int64_t n, bool bf16_out,
                    double rtol_mag) {
    const double rtol_out = bf16_out ? 0x1p-8 * 1.001 : 0.0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double tol = rtol_out * fabs(ref[i]) + rtol_mag * mag[i] + 1e-37;
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= tol)) {
            if (bad < 5)
                printf("  %s: [%" PRId64 "] got %.9g want %.9g (tol %.3g)\n", what, i, (double)got[i], ref[i], tol);
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %" PRId64 " of %" PRId64 " elements wrong", what, bad, n);
}

// ---- error reporting (runs without a device too) ------------------------------------------
static ddx_status fail_cuda(void) {
    DDX_CUDA_CHECK(cudaErrorInvalidValue);
    return DDX_OK;
}
static ddx_status fail_launcher_style(void) {
    DDX_CUDA_CHECK((int)cudaErrorLaunchOutOfResources);
    return DDX_OK;
}
static ddx_status fail_cublas(void) {
    DDX_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE);
    return DDX_OK;
}
static ddx_status pass_cuda(void) {
    DDX_CUDA_CHECK(cudaSuccess);
    DDX_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS);
    return DDX_OK;
}
#if DDX_HAVE_NCCL
static ddx_status fail_nccl(void) {
    DDX_NCCL_CHECK(ncclInvalidArgument);
    return DDX_OK;
}
#endif

static void test_check_macros(void) {
    CHECK(fail_cuda() == DDX_E_CUDA, "DDX_CUDA_CHECK must return DDX_E_CUDA");
    const char *m = ddx_last_error();
    CHECK(strstr(m, "cudaErrorInvalidValue failed: cudaErrorInvalidValue: ") == m && strstr(m, "test_cuda.c:") &&
              strstr(m, "(device "),
          "DDX_CUDA_CHECK message: %s", m);
    CHECK(fail_launcher_style() == DDX_E_CUDA && strstr(ddx_last_error(), "cudaErrorLaunchOutOfResources"),
          "int-returning call: %s", ddx_last_error());
    CHECK(fail_cublas() == DDX_E_CUDA && strstr(ddx_last_error(), "CUBLAS_STATUS_INVALID_VALUE"),
          "DDX_CUBLAS_CHECK message: %s", ddx_last_error());
    CHECK(pass_cuda() == DDX_OK, "success must pass through the check macros");
#if DDX_HAVE_NCCL
    CHECK(fail_nccl() == DDX_E_CUDA && strstr(ddx_last_error(), "ncclInvalidArgument"), "DDX_NCCL_CHECK message: %s",
          ddx_last_error());
#endif
}

static void test_no_device(void) {
    void *p = (void *)1;
    CHECK(ddx_cuda_malloc(64, &p) == DDX_E_UNSUPPORTED && p == NULL, "malloc without a device must be unsupported");
    CHECK(strstr(ddx_last_error(), "no CUDA device") != NULL, "message: %s", ddx_last_error());
    struct ddx_cuda_ctx *cc = (struct ddx_cuda_ctx *)1;
    CHECK(ddx_cuda_ctx_create(&cc) == DDX_E_UNSUPPORTED && cc == NULL, "ctx without a device must be unsupported");
    CHECK(ddx_cuda_pool_bytes_in_use() == 0, "pool in use without a device");
}

// ---- pool and copies --------------------------------------------------------------------
static void test_pool(void) {
    const size_t base = ddx_cuda_pool_bytes_in_use();
    void *a = dmalloc(1000);
    CHECK(ddx_cuda_pool_bytes_in_use() == base + 1024, "1000 B must take a 1 KiB class: in use %zu", ddx_cuda_pool_bytes_in_use() - base);
    ddx_cuda_free(a);
    CHECK(ddx_cuda_pool_bytes_in_use() == base, "free must return the bytes");
    void *b = dmalloc(1024);
    CHECK(a == b, "a freed 1 KiB block must be reused (%p vs %p)", a, b);
    void *c = dmalloc(3u << 20);
    CHECK(ddx_cuda_pool_bytes_in_use() == base + 1024 + (4u << 20), "3 MiB must take a 4 MiB class");
    ddx_cuda_free(c);
    void *d = dmalloc((7u << 19) + 1);   // 3.5 MiB + 1: the same 4 MiB class
    CHECK(c == d, "a freed 4 MiB block must be reused");
    void *z = dmalloc(0);
    CHECK(z != NULL && z != b && z != d, "a 0-byte allocation must be a distinct valid block");
    ddx_cuda_free(z);
    ddx_cuda_free(b);
    ddx_cuda_free(d);
    ddx_cuda_free(NULL);
    CHECK(ddx_cuda_pool_bytes_in_use() == base, "pool in use after frees: %zu", ddx_cuda_pool_bytes_in_use() - base);
    ddx_cuda_pool_trim();
    void *e = dmalloc(1024);
    CHECK(e != NULL, "allocation after trim");
    ddx_cuda_free(e);

    // Far more than any device has: trim, retry, then a NOMEM that states the numbers.
    void *huge = (void *)1;
    ddx_status st = ddx_cuda_malloc((size_t)1 << 50, &huge);
    CHECK(st == DDX_E_NOMEM && huge == NULL, "1 PiB allocation: status %s", ddx_status_name(st));
    CHECK(strstr(ddx_last_error(), "MiB free of") != NULL, "OOM message: %s", ddx_last_error());
    CHECK(ddx_cuda_malloc(SIZE_MAX - 5, &huge) == DDX_E_NOMEM, "SIZE_MAX allocation must fail cleanly");
    void *after = dmalloc(4096);   // the failed cudaMalloc must not poison later calls
    CHECK(after && cudaGetLastError() == cudaSuccess, "state after OOM");
    ddx_cuda_free(after);
    CHECK(ddx_cuda_pool_bytes_in_use() == base, "pool in use after OOM test");
}

static void test_copies(void) {
    const size_t sizes[] = {1, 3, 4095, (1u << 20) + 7};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        uint8_t *h = malloc(n), *back = malloc(n);
        for (size_t i = 0; i < n; i++) h[i] = (uint8_t)rnd64();
        uint8_t *d1 = dmalloc(n), *d2 = dmalloc(n + 1);
        if (h && back && d1 && d2) {
            h2d(d1, h, n);
            CHECK(ddx_cuda_memcpy(d2 + 1, d1, n, DDX_COPY_D2D) == DDX_OK, "D2D %zu: %s", n, ddx_last_error());
            memset(back, 0, n);
            d2h(back, d2 + 1, n);
            CHECK(memcmp(h, back, n) == 0, "H2D/D2D/D2H round trip of %zu bytes differs", n);
            CHECK(ddx_cuda_memset(d1, 0x5A, n) == DDX_OK, "memset: %s", ddx_last_error());
            d2h(back, d1, n);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++) bad += back[i] != 0x5A;
            CHECK(bad == 0, "memset of %zu bytes: %zu wrong", n, bad);
            // Kernel then copy: the copy must wait for the kernel on the shared stream.
            launched(ddx_k_fill_i32((int32_t *)(void *)d1, (int64_t)(n / 4), 0x01020304, g_stream), "fill before copy");
            d2h(back, d1, n);
            bad = 0;
            for (size_t i = 0; i + 4 <= n; i += 4) bad += back[i] != 0x04 || back[i + 3] != 0x01;
            CHECK(bad == 0, "copy after a kernel saw stale data (%zu words)", bad);
        }
        ddx_cuda_free(d1);
        ddx_cuda_free(d2);
        free(h);
        free(back);
    }
    CHECK(ddx_cuda_memcpy(NULL, "x", 1, DDX_COPY_H2D) != DDX_OK, "NULL copy must fail");
    CHECK(ddx_cuda_memcpy(NULL, NULL, 0, DDX_COPY_H2D) == DDX_OK, "empty copy must succeed");
}

// ---- fill / copy / cast -----------------------------------------------------------------
static const int64_t k_sizes[] = {1, 3, 4095, (1 << 20) + 7};
#define N_SIZES (sizeof k_sizes / sizeof *k_sizes)

static void test_fill_copy(void) {
    for (size_t si = 0; si < N_SIZES; si++)
        for (int off = 0; off < 2; off++) {
            const int64_t n = k_sizes[si];
            if (g_quick && n > 65536) continue;
            char what[96];
            // f32, bf16, i32
            for (int dt = 0; dt < 3; dt++) {
                const size_t es = dt == 1 ? 2 : 4;
                const float v = -1.7f;
                gbuf y;
                snprintf(what, sizeof what, "fill %s n=%" PRId64 " off=%d", dt == 0 ? "f32" : dt == 1 ? "bf16" : "i32", n, off);
                if (!gbuf_init(&y, (size_t)n * es, (size_t)off * es, NULL)) continue;
                int rc = dt == 0 ? ddx_k_fill_f32((float *)(void *)y.data, n, v, g_stream)
                       : dt == 1 ? ddx_k_fill_bf16((uint16_t *)(void *)y.data, n, v, g_stream)
                                 : ddx_k_fill_i32((int32_t *)(void *)y.data, n, -123456, g_stream);
                if (launched(rc, what)) {
                    uint8_t *h = malloc((size_t)n * es);
                    d2h(h, y.data, (size_t)n * es);
                    int64_t bad = 0;
                    const uint16_t hb = ddx_f32_to_bf16(v);
                    for (int64_t i = 0; i < n; i++) {
                        if (dt == 0) { float f; memcpy(&f, h + 4 * i, 4); bad += f != v; }
                        else if (dt == 1) { uint16_t u; memcpy(&u, h + 2 * i, 2); bad += u != hb; }
                        else { int32_t u; memcpy(&u, h + 4 * i, 4); bad += u != -123456; }
                    }
                    CHECK(bad == 0, "%s: %" PRId64 " elements wrong", what, bad);
                    free(h);
                }
                gbuf_check_guards(&y, what);
                gbuf_free(&y);
            }
            // copy of n*4 bytes
            const size_t bytes = (size_t)n * 4;
            uint8_t *h = malloc(bytes), *back = malloc(bytes);
            for (size_t i = 0; i < bytes; i++) h[i] = (uint8_t)rnd64();
            gbuf src, dst;
            snprintf(what, sizeof what, "copy %zu bytes off=%d", bytes, off);
            if (gbuf_init(&src, bytes, 0, h) && gbuf_init(&dst, bytes, (size_t)off, NULL) &&
                launched(ddx_k_copy(dst.data, src.data, (int64_t)bytes, g_stream), what)) {
                d2h(back, dst.data, bytes);
                CHECK(memcmp(h, back, bytes) == 0, "%s: data differs", what);
                gbuf_check_guards(&dst, what);
            }
            gbuf_free(&src);
            gbuf_free(&dst);
            free(h);
            free(back);
        }
    CHECK(ddx_k_fill_f32(NULL, 0, 1.0f, g_stream) == 0, "empty fill must succeed");
    device_ok("fill/copy");
}

static void test_cast(void) {
    // Special values: NaNs (quiet, signalling, negative, payloads), infinities, zeros,
    // denormals, the overflow edge, and ties / near-ties of the 16-bit rounding.
    static const uint32_t special[] = {
        0x7fc00000u, 0x7f800001u, 0xffc00001u, 0x7fbfffffu, 0xff800001u, 0x7f800000u, 0xff800000u, 0x00000000u,
        0x80000000u, 0x00000001u, 0x007fffffu, 0x00008000u, 0x00018000u, 0x80008000u, 0x80018000u, 0x00007fffu,
        0x7f7fffffu, 0xff7fffffu, 0x7f7f7fffu, 0x7f7f8000u, 0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu,
        0xbf808000u, 0xbf818000u, 0x3f800000u, 0x00800000u, 0x3effffffu, 0x4b7fffffu, 0x3f7fffffu, 0xc0490fdbu,
        0x3fffffffu, 0x477fe000u, 0x477ff000u, 0x33800000u, 0x0080ffffu};
    const int ns = (int)(sizeof special / sizeof *special);
    const int64_t nr = g_quick ? 4099 : (1 << 20) + 7;
    uint32_t *h = malloc((size_t)(nr + ns) * 4);
    uint16_t *got = malloc((size_t)(nr + ns) * 2);
    for (int i = 0; i < ns; i++) h[i] = special[i];
    for (int64_t i = 0; i < nr; i++) h[ns + i] = (uint32_t)rnd64();   // every bit pattern class, NaNs included
    for (int off = 0; off < 2; off++)
        for (int part = 0; part < 2; part++) {
            const int64_t n = part == 0 ? ns : ns + nr;
            char what[64];
            snprintf(what, sizeof what, "cast f32->bf16 n=%" PRId64 " off=%d", n, off);
            gbuf x, y;
            if (gbuf_init(&x, (size_t)n * 4, (size_t)off * 4, h) && gbuf_init(&y, (size_t)n * 2, (size_t)off * 2, NULL) &&
                launched(ddx_k_cast_f32_to_bf16((uint16_t *)(void *)y.data, (const float *)(void *)x.data, n, g_stream), what)) {
                d2h(got, y.data, (size_t)n * 2);
                int64_t bad = 0;
                for (int64_t i = 0; i < n; i++) {
                    float f;
                    memcpy(&f, &h[i], 4);
                    uint16_t want = ddx_f32_to_bf16(f);
                    if (got[i] != want) {
                        if (bad < 5) printf("  %s: f32 0x%08x -> 0x%04x, want 0x%04x\n", what, h[i], got[i], want);
                        bad++;
                    }
                }
                CHECK(bad == 0, "%s: %" PRId64 " results not bit-identical to ddx_f32_to_bf16", what, bad);
                gbuf_check_guards(&y, what);
            }
            gbuf_free(&x);
            gbuf_free(&y);
        }
    // bf16 -> f32 on all 65536 patterns: a shift, so bit-exact.
    uint16_t *all = malloc(65536 * 2);
    uint32_t *back = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    for (int off = 0; off < 2; off++) {
        gbuf x, y;
        if (gbuf_init(&x, 65536 * 2, (size_t)off * 2, all) && gbuf_init(&y, 65536 * 4, (size_t)off * 4, NULL) &&
            launched(ddx_k_cast_bf16_to_f32((float *)(void *)y.data, (const uint16_t *)(void *)x.data, 65536, g_stream), "cast bf16->f32")) {
            d2h(back, y.data, 65536 * 4);
            int bad = 0;
            for (int i = 0; i < 65536; i++) bad += back[i] != (uint32_t)i << 16;
            CHECK(bad == 0, "cast bf16->f32 off=%d: %d patterns wrong", off, bad);
            gbuf_check_guards(&y, "cast bf16->f32");
        }
        gbuf_free(&x);
        gbuf_free(&y);
    }
    free(all);
    free(back);
    free(h);
    free(got);
    device_ok("cast");
}

// ---- unary and same-shape kernels ---------------------------------------------------------
typedef enum { U_SCALE, U_SILU, U_RELU, U_ACC, U_AXPY, U_SILU_BWD, U_RELU_BWD, U_ACC_X, U_COUNT } ukind;
static const char *const u_names[U_COUNT] = {"scale", "silu", "relu", "accumulate", "axpy", "silu_bwd", "relu_bwd", "accumulate_x"};

// U_ACC_X: accumulate across dtypes (bf16 into f32 when out is f32, f32 into bf16 otherwise).
static int run_unary(ukind k, bool bf16, void *y, const void *x, const void *dy, int64_t n, float al, float be) {
    void *s = g_stream;
    switch (k) {
    case U_SCALE: return bf16 ? ddx_k_scale_bf16(y, x, al, be, n, s) : ddx_k_scale_f32(y, x, al, be, n, s);
    case U_SILU: return bf16 ? ddx_k_silu_bf16(y, x, n, s) : ddx_k_silu_f32(y, x, n, s);
    case U_RELU: return bf16 ? ddx_k_relu_bf16(y, x, n, s) : ddx_k_relu_f32(y, x, n, s);
    case U_ACC: return bf16 ? ddx_k_accumulate_bf16(y, x, n, s) : ddx_k_accumulate_f32(y, x, n, s);
    case U_AXPY: return bf16 ? ddx_k_axpy_bf16(y, x, al, n, s) : ddx_k_axpy_f32(y, x, al, n, s);
    case U_SILU_BWD: return bf16 ? ddx_k_silu_bwd_bf16(y, x, dy, n, s) : ddx_k_silu_bwd_f32(y, x, dy, n, s);
    case U_RELU_BWD: return bf16 ? ddx_k_relu_bwd_bf16(y, x, dy, n, s) : ddx_k_relu_bwd_f32(y, x, dy, n, s);
    case U_ACC_X: return bf16 ? ddx_k_accumulate_f32_into_bf16(y, x, n, s) : ddx_k_accumulate_bf16_into_f32(y, x, n, s);
    default: return -1;
    }
}

static void test_unary_case(ukind k, bool bf16, int64_t n, int off) {
    const bool reads_y = k >= U_ACC;
    const bool x_bf16 = k == U_ACC_X ? !bf16 : bf16;
    const float al = -0.75f, be = 0.3125f;
    char what[96];
    snprintf(what, sizeof what, "%s %s n=%" PRId64 " off=%d", u_names[k], bf16 ? "bf16" : "f32", n, off);
    float *hx = malloc((size_t)n * 4), *hdy = malloc((size_t)n * 4), *hy0 = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
    double *ref = malloc((size_t)n * 8), *mag = malloc((size_t)n * 8);
    void *raw = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        hx[i] = urand(-6.0f, 6.0f);
        if (k == U_RELU || k == U_RELU_BWD) hx[i] = i % 7 == 0 ? 0.0f : hx[i];   // relu's kink at exactly 0
        hdy[i] = urand(-2.0f, 2.0f);
        hy0[i] = urand(-1.0f, 1.0f);
        if (x_bf16) hx[i] = bf16_round(hx[i]);
        if (bf16) {
            hdy[i] = bf16_round(hdy[i]);
            hy0[i] = bf16_round(hy0[i]);
        }
    }
    const size_t es = bf16 ? 2 : 4, xes = x_bf16 ? 2 : 4;
    gbuf x = {0}, dy = {0}, y = {0};
    bool ok = true;
    to_dtype(raw, hx, n, x_bf16);
    ok = ok && gbuf_init(&x, (size_t)n * xes, (size_t)off * xes, raw);
    to_dtype(raw, hdy, n, bf16);
    ok = ok && gbuf_init(&dy, (size_t)n * es, (size_t)off * es, raw);
    to_dtype(raw, hy0, n, bf16);
    ok = ok && gbuf_init(&y, (size_t)n * es, (size_t)off * es, reads_y ? raw : NULL);
    if (ok && launched(run_unary(k, bf16, y.data, x.data, dy.data, n, al, be), what)) {
        d2h(raw, y.data, (size_t)n * es);
        from_dtype(got, raw, n, bf16);
        for (int64_t i = 0; i < n; i++) {
            const double xv = hx[i], g = hdy[i], y0 = hy0[i];
            const double s = 1.0 / (1.0 + exp(-xv));
            switch (k) {
            case U_SCALE: ref[i] = al * xv + be; mag[i] = fabs(al * xv) + fabs(be); break;
            case U_SILU: ref[i] = xv * s; mag[i] = fabs(ref[i]); break;
            case U_RELU: ref[i] = xv > 0 ? xv : 0; mag[i] = fabs(xv); break;
            case U_ACC: case U_ACC_X: ref[i] = y0 + xv; mag[i] = fabs(y0) + fabs(xv); break;
            case U_AXPY: ref[i] = y0 + al * xv; mag[i] = fabs(y0) + fabs(al * xv); break;
            case U_SILU_BWD:
                ref[i] = y0 + g * s * (1.0 + xv * (1.0 - s));
                mag[i] = fabs(y0) + fabs(g) * s * (1.0 + fabs(xv));
                break;
            case U_RELU_BWD: ref[i] = y0 + (xv > 0 ? g : 0); mag[i] = fabs(y0) + fabs(g); break;
            default: break;
            }
        }
        compare(what, got, ref, mag, n, bf16, 4e-6);
        gbuf_check_guards(&y, what);
    }
    gbuf_free(&x);
    gbuf_free(&dy);
    gbuf_free(&y);
    free(hx); free(hdy); free(hy0); free(got); free(ref); free(mag); free(raw);
}

static void test_unary(void) {
    for (int k = 0; k < U_COUNT; k++)
        for (int bf = 0; bf < 2; bf++)
            for (size_t si = 0; si < N_SIZES; si++)
                for (int off = 0; off < 2; off++)
                    if (!g_quick || k_sizes[si] <= 65536) test_unary_case((ukind)k, bf, k_sizes[si], off);
    device_ok("unary");
}

// ---- broadcasting add / mul and their backward ----------------------------------------
typedef enum { B_ADD, B_MUL, B_MUL_BWD_A, B_RED_ADD, B_RED_MUL, B_COUNT } bkind;
static const char *const b_names[B_COUNT] = {"add", "mul", "mul_bwd_a", "reduce(add)", "reduce(mul)"};

static int run_binary(bkind k, bool bf16, void *y, const void *a, const void *b, const ddx_k_bcast *bc) {
    void *s = g_stream;
    switch (k) {
    case B_ADD: return bf16 ? ddx_k_add_bf16(y, a, b, bc, s) : ddx_k_add_f32(y, a, b, bc, s);
    case B_MUL: return bf16 ? ddx_k_mul_bf16(y, a, b, bc, s) : ddx_k_mul_f32(y, a, b, bc, s);
    case B_MUL_BWD_A: return bf16 ? ddx_k_mul_bwd_a_bf16(y, a, b, bc, s) : ddx_k_mul_bwd_a_f32(y, a, b, bc, s);
    // y = db, a = dy, b = the forward's a (or NULL)
    case B_RED_ADD: return bf16 ? ddx_k_bcast_reduce_bf16(y, a, NULL, bc, s) : ddx_k_bcast_reduce_f32(y, a, NULL, bc, s);
    case B_RED_MUL: return bf16 ? ddx_k_bcast_reduce_bf16(y, a, b, bc, s) : ddx_k_bcast_reduce_f32(y, a, b, bc, s);
    default: return -1;
    }
}

static int64_t prod4(const int64_t s[4]) { return s[0] * s[1] * s[2] * s[3]; }

static void test_bcast_case(bkind k, bool bf16, const int64_t as[4], const int64_t bs[4], int off) {
    ddx_k_bcast bc;
    if (ddx_k_bcast_make(&bc, as, bs) != 0) {
        CHECK(false, "bad test shape");
        return;
    }
    const int64_t na = prod4(as), nb = prod4(bs);
    const bool red = k == B_RED_ADD || k == B_RED_MUL;
    const int64_t ny = red ? nb : na;
    const size_t es = bf16 ? 2 : 4;
    char what[160];
    snprintf(what, sizeof what, "%s %s a[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] b[%" PRId64 ",%" PRId64 ",%" PRId64
             ",%" PRId64 "] off=%d", b_names[k], bf16 ? "bf16" : "f32", as[0], as[1], as[2], as[3], bs[0], bs[1], bs[2], bs[3], off);
    float *ha = malloc((size_t)na * 4), *hb = malloc((size_t)nb * 4), *hy0 = malloc((size_t)ny * 4), *got = malloc((size_t)ny * 4);
    double *ref = calloc((size_t)ny, 8), *mag = calloc((size_t)ny, 8);
    void *raw = malloc((size_t)(na > nb ? na : nb) * 4);
    for (int64_t i = 0; i < na; i++) ha[i] = bf16 ? bf16_round(urand(-2, 2)) : urand(-2, 2);
    for (int64_t i = 0; i < nb; i++) hb[i] = bf16 ? bf16_round(urand(-2, 2)) : urand(-2, 2);
    for (int64_t i = 0; i < ny; i++) hy0[i] = bf16 ? bf16_round(urand(-1, 1)) : urand(-1, 1);
    // For the reductions, "a" is dy (a's shape) and "b" is the forward's a (also a's shape).
    float *hsecond = red ? malloc((size_t)na * 4) : hb;
    if (red)
        for (int64_t i = 0; i < na; i++) hsecond[i] = bf16 ? bf16_round(urand(-2, 2)) : urand(-2, 2);
    const int64_t nsecond = red ? na : nb;
    gbuf a = {0}, b = {0}, y = {0};
    bool ok = true;
    to_dtype(raw, ha, na, bf16);
    ok = ok && gbuf_init(&a, (size_t)na * es, (size_t)off * es, raw);
    to_dtype(raw, hsecond, nsecond, bf16);
    ok = ok && gbuf_init(&b, (size_t)nsecond * es, (size_t)off * es, raw);
    to_dtype(raw, hy0, ny, bf16);
    ok = ok && gbuf_init(&y, (size_t)ny * es, (size_t)off * es, (k == B_ADD || k == B_MUL) ? NULL : raw);
    if (ok && launched(run_binary(k, bf16, y.data, a.data, b.data, &bc), what)) {
        d2h(raw, y.data, (size_t)ny * es);
        from_dtype(got, raw, ny, bf16);
        if (red)
            for (int64_t j = 0; j < ny; j++) {
                ref[j] = hy0[j];
                mag[j] = fabs(hy0[j]);
            }
        int64_t i = 0;
        for (int64_t i0 = 0; i0 < as[0]; i0++)
            for (int64_t i1 = 0; i1 < as[1]; i1++)
                for (int64_t i2 = 0; i2 < as[2]; i2++)
                    for (int64_t i3 = 0; i3 < as[3]; i3++, i++) {
                        const int64_t j = i0 * bc.bstride[0] + i1 * bc.bstride[1] + i2 * bc.bstride[2] + i3 * bc.bstride[3];
                        const double av = ha[i];
                        switch (k) {
                        case B_ADD: ref[i] = av + hb[j]; mag[i] = fabs(av) + fabs(hb[j]); break;
                        case B_MUL: ref[i] = av * hb[j]; mag[i] = fabs(ref[i]); break;
                        case B_MUL_BWD_A: ref[i] = hy0[i] + av * hb[j]; mag[i] = fabs(hy0[i]) + fabs(av * hb[j]); break;
                        case B_RED_ADD: ref[j] += av; mag[j] += fabs(av); break;
                        case B_RED_MUL: ref[j] += av * hsecond[i]; mag[j] += fabs(av * hsecond[i]); break;
                        default: break;
                        }
                    }
        compare(what, got, ref, mag, ny, bf16, red ? 1e-4 : 4e-6);
        gbuf_check_guards(&y, what);
    }
    gbuf_free(&a);
    gbuf_free(&b);
    gbuf_free(&y);
    if (red) free(hsecond);
    free(ha); free(hb); free(hy0); free(got); free(ref); free(mag); free(raw);
}

static void test_bcast(void) {
    static const int64_t shapes[][2][4] = {
        {{2, 32, 32, 128}, {1, 1, 1, 128}},   // bias / per-channel scale
        {{2, 32, 32, 128}, {2, 1, 1, 128}},   // time embedding into a ResBlock
        {{2, 8, 8, 64}, {2, 1, 1, 1}},        // per-sample diffusion coefficients
        {{2, 8, 8, 64}, {1, 1, 1, 1}},        // scalar
        {{2, 8, 8, 64}, {2, 8, 8, 64}},       // same shape
        {{3, 5, 7, 33}, {3, 1, 7, 1}},        // odd, interleaved
        {{3, 5, 7, 33}, {1, 5, 1, 33}},       // odd, two reduced groups
        {{2, 4, 6, 8}, {1, 4, 1, 8}},
        {{2, 4, 6, 8}, {2, 1, 6, 1}},
        {{1, 1, 1, 1}, {1, 1, 1, 1}},
        {{1, 1, 3, 4095}, {1, 1, 3, 1}},
        {{1, 1, 1, 4095}, {1, 1, 1, 4095}},
        {{3, 1, 1, 5}, {1, 1, 1, 5}},
        {{1, 1, 1, (1 << 20) + 7}, {1, 1, 1, 1}},
        {{1, 1025, 1023, 1}, {1, 1025, 1, 1}},
    };
    const int ns = (int)(sizeof shapes / sizeof *shapes);
    for (int k = 0; k < B_COUNT; k++)
        for (int bf = 0; bf < 2; bf++)
            for (int s = 0; s < ns; s++)
                for (int off = 0; off < 2; off++) {
                    if (off && s % 3 != 0) continue;   // the scalar path on a subset is enough
                    if (g_quick && prod4(shapes[s][0]) > 65536) continue;
                    test_bcast_case((bkind)k, bf, shapes[s][0], shapes[s][1], off);
                }
    device_ok("broadcast");
}

// ---- > 2^32 elements ----------------------------------------------------------------------
static void test_huge(void) {
    // 2^32 + 64 elements: past both the int32 and the uint32 index ranges.
    const int64_t C = 64, R = ((int64_t)1 << 26) + 1, n = R * C;
    const size_t bytes = (size_t)n * 4;
    size_t free_b = 0, total_b = 0;
    if (g_quick) {
        printf("SKIP: > 2^32 element test (DDX_TEST_QUICK is set)\n");
        n_skip++;
        return;
    }
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || free_b < 2 * bytes + ((size_t)1 << 30)) {
        (void)cudaGetLastError();
        printf("SKIP: > 2^32 element test needs %.1f GiB free, device has %.1f GiB\n", (2.0 * bytes + (1 << 30)) / (1 << 30),
               free_b / (double)(1 << 30));
        n_skip++;
        return;
    }
    float *a = dmalloc(bytes), *y = dmalloc(bytes), *b = dmalloc((size_t)C * 4);
    if (!a || !y || !b) goto out;
    const int64_t two31 = (int64_t)1 << 31, two32 = (int64_t)1 << 32;
    const int64_t probes[] = {0, 1, 63, 64, two31 - 1, two31, two31 + 1, two32 - 1, two32, two32 + 1, n - 2, n - 1, n / 3};
    const int np = (int)(sizeof probes / sizeof *probes);
    if (!launched(ddx_k_fill_f32(a, n, 1.5f, g_stream), "fill 2^32+64")) goto out;
    int bad = 0;
    for (int p = 0; p < np; p++) {
        float v = 0;
        d2h(&v, a + probes[p], 4);
        bad += v != 1.5f;
    }
    CHECK(bad == 0, "fill of 2^32+64 f32: %d probes wrong", bad);
    // Distinct markers so that a copy from a wrong offset shows.
    for (int p = 0; p < np; p++) {
        float v = (float)p + 0.25f;
        h2d(a + probes[p], &v, 4);
    }
    ddx_cuda_memset(y, 0xFF, bytes);
    if (!launched(ddx_k_copy(y, a, (int64_t)bytes, g_stream), "copy 17 GB")) goto out;
    bad = 0;
    for (int p = 0; p < np; p++) {
        float v = 0;
        d2h(&v, y + probes[p], 4);
        bad += v != (float)p + 0.25f;
    }
    float mid = 0;
    d2h(&mid, y + 1000, 4);
    CHECK(bad == 0 && mid == 1.5f, "copy of 2^32+64 f32: %d probes wrong", bad);
    float hb[64];
    for (int i = 0; i < C; i++) hb[i] = (float)i;
    h2d(b, hb, sizeof hb);
    ddx_cuda_memset(y, 0xFF, bytes);
    ddx_k_bcast bc;
    ddx_k_bcast_make(&bc, (const int64_t[4]){1, 1, R, C}, (const int64_t[4]){1, 1, 1, C});
    if (!launched(ddx_k_add_f32(y, a, b, &bc, g_stream), "add 2^32+64")) goto out;
    bad = 0;
    for (int p = 0; p < np; p++) {
        float v = 0;
        d2h(&v, y + probes[p], 4);
        bad += v != (float)p + 0.25f + (float)(probes[p] % C);
    }
    d2h(&mid, y + 1001, 4);
    CHECK(bad == 0 && mid == 1.5f + (float)(1001 % C), "add of 2^32+64 f32 with [1,1,1,64]: %d probes wrong", bad);
    device_ok("huge");
out:
    ddx_cuda_free(a);
    ddx_cuda_free(y);
    ddx_cuda_free(b);
    ddx_cuda_pool_trim();
}

// ---- Philox: GPU fill vs CPU fill -------------------------------------------------------
static void test_philox(void) {
#ifdef HAVE_RNG
    const int64_t n = g_quick ? 4099 : (1 << 20) + 7;
    float *cpu = malloc((size_t)n * 4), *gpu = malloc((size_t)n * 4);
    gbuf y;
    for (int kind = 0; kind < 2; kind++)
        for (uint64_t offset = 0; offset < 6; offset += 5) {
            char what[64];
            snprintf(what, sizeof what, "philox %s offset=%" PRIu64, kind ? "normal" : "uniform", offset);
            if (!gbuf_init(&y, (size_t)n * 4, 0, NULL)) break;
            int rc = kind ? ddx_philox_normal_cuda((float *)(void *)y.data, n, 1234, 7, 42, offset, g_stream)
                          : ddx_philox_uniform_cuda((float *)(void *)y.data, n, 1234, 7, 42, offset, g_stream);
            ddx_status st = kind ? ddx_philox_normal(cpu, n, 1234, 7, 42, offset) : ddx_philox_uniform(cpu, n, 1234, 7, 42, offset);
            if (launched(rc, what) && st == DDX_OK) {
                d2h(gpu, y.data, (size_t)n * 4);
                int64_t differ = 0, far = 0;
                for (int64_t i = 0; i < n; i++) {
                    differ += memcmp(&cpu[i], &gpu[i], 4) != 0;
                    far += !(fabsf(cpu[i] - gpu[i]) <= 1e-6f * fmaxf(1.0f, fabsf(cpu[i])));
                }
                if (kind == 0) CHECK(differ == 0, "%s: %" PRId64 " of %" PRId64 " not bit-identical to the CPU", what, differ, n);
                else CHECK(far == 0, "%s: %" PRId64 " of %" PRId64 " differ from the CPU (%" PRId64 " not bit-identical)", what, far, n, differ);
                if (kind == 1 && differ) printf("  note: %s: %" PRId64 " normals differ in the last bits\n", what, differ);
                gbuf_check_guards(&y, what);
            } else {
                CHECK(st == DDX_OK, "%s: CPU fill: %s", what, ddx_last_error());
            }
            gbuf_free(&y);
        }
    free(cpu);
    free(gpu);
    device_ok("philox");
#else
    printf("SKIP: kernels/philox.h not present, no Philox GPU/CPU comparison\n");
    n_skip++;
#endif
}

int main(void) {
    g_quick = getenv("DDX_TEST_QUICK") != NULL;
    test_check_macros();
    if (!ddx_cuda_available()) {
        test_no_device();
        printf("SKIP: no CUDA device (%s)\n", ddx_cuda_describe());
        n_skip++;
        printf("cuda-runtime: %d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
        return n_fail ? 1 : 77;
    }
    printf("device: %s\n", ddx_cuda_describe());
    ddx_status st = ddx_cuda_ctx_create(&g_cc);
    CHECK(st == DDX_OK, "ddx_cuda_ctx_create: %s", ddx_last_error());
    if (st != DDX_OK) return finish();
    g_stream = (void *)ddx_cuda_stream(g_cc);
    CHECK(g_stream != NULL, "the context has no stream");

    test_pool();
    test_copies();
    test_fill_copy();
    test_cast();
    test_unary();
    test_bcast();
    test_philox();
    test_huge();

    CHECK(ddx_cuda_sync(g_cc) == DDX_OK, "final sync: %s", ddx_last_error());
    ddx_cuda_ctx_destroy(g_cc);
    ddx_cuda_pool_trim();
    return finish();
}
#endif
