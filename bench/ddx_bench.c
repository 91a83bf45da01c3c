// ddx-bench: the benchmarks that are not one op case: a whole training step (`step`) and the
// comparisons against an outside library run in the same process (`conv-sgemm`: OpenBLAS;
// `kernels`: cuBLAS, cuDNN). Each op on its own, at U-Net shapes, is timed by the op driver:
// tests/test_ops --perf (the same case tables the correctness runs use).
//
// Speed is reported as a rate and, where it has a baseline, as a ratio against that baseline
// run in the same process (docs/ARCHITECTURE.md, Benchmarks: never asserted in a timed unit test).
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/ops.h"

// ---- shared helpers ----------------------------------------------------------------------

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static uint64_t rng_next(void) {   // splitmix64
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_uniform(void) { return (float)((double)(rng_next() >> 40) / (double)(1ull << 24) * 2.0 - 1.0); }

static void *bench_alloc(size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static bool parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

// ---- ddx-bench conv-sgemm ---------------------------------------------------------------

typedef enum bench_result { BENCH_OK = 0, BENCH_SKIP, BENCH_FAIL } bench_result;

// The acceptance check for the CPU conv: conv2d 3x3 64->64, 32x32, batch 16, stride 1, pad 1,
// forward, against ONE sgemm of the same GEMM shape (M = N*Ho*Wo = 16384, N = 64, K = 576).
// im2col adds memory traffic around the same GEMM, so the ratio shows what it costs.
// Runs alternate conv and sgemm so that noise from other processes hits both alike.
static bench_result run_conv_acceptance(ddx_ctx *c, int reps, int warmup) {
    enum { B = 16, H = 32, W = 32, CI = 64, CO = 64, KK = 9 * CI };
    const int64_t M = (int64_t)B * H * W;
    const double flops = 2.0 * (double)M * CO * KK;
    bench_result res = BENCH_OK;
    ddx_tensor x = ddx_tensor_wrap(bench_alloc((size_t)M * CI * 4), DDX_F32, DDX_CPU, 4, (int64_t[]){B, H, W, CI});
    ddx_tensor w = ddx_tensor_wrap(bench_alloc((size_t)CO * KK * 4), DDX_F32, DDX_CPU, 4, (int64_t[]){CO, 3, 3, CI});
    ddx_tensor bias = ddx_tensor_wrap(bench_alloc(CO * 4), DDX_F32, DDX_CPU, 1, (int64_t[]){CO});
    float *A = bench_alloc((size_t)M * KK * 4), *Bm = bench_alloc((size_t)CO * KK * 4), *C = bench_alloc((size_t)M * CO * 4);
    double *tc = calloc((size_t)reps, sizeof(double)), *tg = calloc((size_t)reps, sizeof(double));
    printf("\nacceptance: conv2d 3x3 64->64 [16,32,32,64] s1 p1 forward vs one cblas_sgemm M=%lld N=%d K=%d\n",
           (long long)M, CO, KK);
    if (!x.data || !w.data || !bias.data || !A || !Bm || !C || !tc || !tg) {
        printf("  FAIL (out of host memory)\n");
        res = BENCH_FAIL;
        goto done;
    }
    for (int64_t i = 0; i < M * CI; i++) ((float *)x.data)[i] = rng_uniform();
    for (int64_t i = 0; i < CO * KK; i++) ((float *)w.data)[i] = 0.05f * rng_uniform();
    for (int64_t i = 0; i < CO; i++) ((float *)bias.data)[i] = 0.1f * rng_uniform();
    for (int64_t i = 0; i < M * KK; i++) A[i] = rng_uniform();
    for (int64_t i = 0; i < CO * KK; i++) Bm[i] = 0.05f * rng_uniform();
    ddx_ctx_set_grad(c, false);   // inference forward: no tape
    for (int it = -warmup; it < reps; it++) {
        ddx_ctx_reset(c);
        double t0 = now_s();
        ddx_tensor *y = ddx_conv2d(c, &x, &w, &bias, (ddx_conv2d_params){1, 1, 1, 1, 1});
        double t1 = now_s();
        if (!y) {
            ddx_status st = ddx_ctx_status(c);
            printf("  %s (%s: %s)\n", st == DDX_E_UNSUPPORTED ? "SKIP" : "FAIL", ddx_status_name(st), ddx_last_error());
            res = st == DDX_E_UNSUPPORTED ? BENCH_SKIP : BENCH_FAIL;
            goto done;
        }
        double t2 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, CO, KK, 1.0f, A, KK, Bm, KK, 0.0f, C, CO);
        double t3 = now_s();
        if (it >= 0) tc[it] = t1 - t0, tg[it] = t3 - t2;
    }
    {
        double mc = median(tc, reps), mg = median(tg, reps);
        double gc = flops / mc * 1e-9, gg = flops / mg * 1e-9;
        printf("  conv2d  %9.3f ms %8.2f GFLOP/s\n", 1e3 * mc, gc);
        printf("  sgemm   %9.3f ms %8.2f GFLOP/s\n", 1e3 * mg, gg);
        printf("  ratio conv/sgemm = %.3f (target >= 0.50): %s\n", gc / gg, gc / gg >= 0.5 ? "MET" : "BELOW TARGET");
    }
done:
    ddx_ctx_set_grad(c, true);
    ddx_ctx_reset(c);
    free(x.data), free(w.data), free(bias.data), free(A), free(Bm), free(C), free(tc), free(tg);
    return res;
}

static void conv_sgemm_usage(FILE *f) {
    fprintf(f,
            "usage: ddx-bench conv-sgemm [--reps N] [--warmup N]\n"
            "  The CPU conv acceptance check: conv2d 3x3 64->64 32x32 batch 16 forward against one\n"
            "  cblas_sgemm of the same GEMM shape, runs alternating, and the ratio (target >= 0.5).\n"
            "  Each op at U-Net shapes: tests/test_ops --perf --backend cpu [--grad] [-o OP].\n"
            "  --reps N     timed runs per measurement, median reported (default 30)\n"
            "  --warmup N   untimed runs first (default 3)\n");
}

static int cmd_conv_sgemm(int argc, char **argv) {
    int reps = 30, warmup = 3;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            conv_sgemm_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            if (!parse_int(argv[++i], 1, 100000, &reps)) {
                fprintf(stderr, "ddx-bench conv-sgemm: --reps '%s' must be an integer in [1, 100000]\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) {
            if (!parse_int(argv[++i], 0, 100000, &warmup)) {
                fprintf(stderr, "ddx-bench conv-sgemm: --warmup '%s' must be an integer in [0, 100000]\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "ddx-bench conv-sgemm: unknown or incomplete argument '%s'\n", argv[i]);
            conv_sgemm_usage(stderr);
            return 2;
        }
    }
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)256 << 20) != DDX_OK) {
        fprintf(stderr, "ddx-bench conv-sgemm: cannot create a CPU context: %s\n", ddx_last_error());
        return 1;
    }
    printf("ddx-bench conv-sgemm: CPU backend, OpenBLAS %s (%s), %d threads; median of %d runs after %d warm-up\n",
           openblas_get_config(), openblas_get_corename(), openblas_get_num_threads(), reps, warmup);
    bench_result r = run_conv_acceptance(&c, reps, warmup);
    ddx_ctx_free(&c);
    return r == BENCH_FAIL ? 1 : r == BENCH_SKIP ? 77 : 0;
}

#include "bench_kernels.h"

// ---- subcommands -------------------------------------------------------------------------

typedef struct bench_cmd {
    const char *name;
    int (*run)(int argc, char **argv);   // argv after the subcommand name; returns the exit code
    const char *summary;
} bench_cmd;

static const bench_cmd g_cmds[] = {
    {"conv-sgemm", cmd_conv_sgemm, "CPU conv2d forward vs one OpenBLAS sgemm of the same GEMM shape (acceptance ratio)"},
    {"kernels", ddx_bench_kernels, "CUDA conv and attention vs cuBLAS GEMM and cuDNN, the fused optimizer vs the copy, same run"},
    {"step", ddx_bench_step, "time a config's training step and sampling forward (compare: bench/reference/torch_step.py)"},
    {"inception", ddx_bench_inception, "FID Inception features img/s (compare: bench/reference/torch_inception.py)"},
    {"inpaint", ddx_bench_inpaint, "inpainting and RePaint sampling cost per step vs plain sampling, same batch and run"},
    {"sr", ddx_bench_sr, "super-resolution sampling step vs plain sampling at the same batch (ratio, same run)"},
    {"guidance", ddx_bench_guidance, "classifier-free guided vs unguided sampling per step, same batch (compare: bench/reference/torch_guidance.py)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: ddx-bench <command> [options]    (ddx-bench <command> --help for its options)\ncommands:\n");
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++) fprintf(f, "  %-10s %s\n", g_cmds[i].name, g_cmds[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        if (!strcmp(argv[1], g_cmds[i].name)) return g_cmds[i].run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "ops")) {
        fprintf(stderr, "ddx-bench: each op is timed by tests/test_ops --perf --backend cpu [--grad] [-o OP]; the conv vs "
                        "sgemm ratio by ddx-bench conv-sgemm\n");
        return 2;
    }
    fprintf(stderr, "ddx-bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
