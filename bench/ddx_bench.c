// ddx-bench: microbenchmarks. One subcommand per table entry below, so that `kernels`
// (GPU kernels vs cuBLAS/cuDNN) and `step` (a whole training step) slot in beside `ops`.
//
// Speed is reported as a rate and, where it has a baseline, as a ratio against that baseline
// run in the same process (DESIGN.md: never asserted in a timed unit test).
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

// ---- ddx-bench ops -----------------------------------------------------------------------

typedef enum in_gen { GEN_UNIFORM = 0, GEN_POSITIVE, GEN_INDEX, GEN_TIMESTEP } in_gen;

typedef struct bench_in {
    int ndim;
    int64_t shape[DDX_MAX_DIMS];
    ddx_dtype dtype;
    in_gen gen;
    int64_t arg;         // index / timestep range
    bool grad;           // a gradient flows into it when the backward is timed
} bench_in;

typedef struct op_bench {
    const char *op;      // registry name, matched by --op
    const char *desc;
    int n_in;
    bench_in in[DDX_MAX_INPUTS];
    ddx_tensor *(*apply)(ddx_ctx *c, ddx_tensor **in);
    double flops;        // forward FLOPs; 0 = memory-bound, report GB/s of estimated traffic
    bool bwd;            // time the backward too
    bool training;
} op_bench;

static ddx_tensor *ap_conv_p1(ddx_ctx *c, ddx_tensor **in) {
    return ddx_conv2d(c, in[0], in[1], in[2], (ddx_conv2d_params){1, 1, 1, 1, 1});
}
static ddx_tensor *ap_conv_p0(ddx_ctx *c, ddx_tensor **in) {
    return ddx_conv2d(c, in[0], in[1], in[2], (ddx_conv2d_params){1, 0, 0, 0, 0});
}
static ddx_tensor *ap_conv_down(ddx_ctx *c, ddx_tensor **in) {
    return ddx_conv2d(c, in[0], in[1], in[2], (ddx_conv2d_params){2, 0, 1, 0, 1});
}
static ddx_tensor *ap_linear(ddx_ctx *c, ddx_tensor **in) { return ddx_linear(c, in[0], in[1], in[2]); }
static ddx_tensor *ap_group_norm(ddx_ctx *c, ddx_tensor **in) { return ddx_group_norm(c, in[0], in[1], in[2], 32, 1e-6f, true); }
static ddx_tensor *ap_silu(ddx_ctx *c, ddx_tensor **in) { return ddx_silu(c, in[0]); }
static ddx_tensor *ap_add(ddx_ctx *c, ddx_tensor **in) { return ddx_add(c, in[0], in[1]); }
static ddx_tensor *ap_mul(ddx_ctx *c, ddx_tensor **in) { return ddx_mul(c, in[0], in[1]); }
static ddx_tensor *ap_scale(ddx_ctx *c, ddx_tensor **in) { return ddx_scale(c, in[0], 0.5f, 0.1f); }
static ddx_tensor *ap_concat(ddx_ctx *c, ddx_tensor **in) { return ddx_concat(c, in[0], in[1]); }
static ddx_tensor *ap_upsample(ddx_ctx *c, ddx_tensor **in) { return ddx_upsample2x(c, in[0], DDX_UPSAMPLE_NEAREST); }
static ddx_tensor *ap_pool(ddx_ctx *c, ddx_tensor **in) { return ddx_pool2x(c, in[0], DDX_POOL_AVG); }
static ddx_tensor *ap_attention(ddx_ctx *c, ddx_tensor **in) { return ddx_attention(c, in[0], in[1], in[2], 1, 0.0f); }
static ddx_tensor *ap_embedding(ddx_ctx *c, ddx_tensor **in) { return ddx_embedding(c, in[0], in[1]); }
static ddx_tensor *ap_timestep_emb(ddx_ctx *c, ddx_tensor **in) {
    return ddx_timestep_emb(c, in[0], (ddx_timestep_emb_params){.dim = 128, .freq_shift = 1.0f, .max_period = 10000.0f});
}
static ddx_tensor *ap_dropout(ddx_ctx *c, ddx_tensor **in) { return ddx_dropout(c, in[0], 0.1f); }
static ddx_tensor *ap_mse(ddx_ctx *c, ddx_tensor **in) { return ddx_mse_loss(c, in[0], in[1]); }
static ddx_tensor *ap_mean(ddx_ctx *c, ddx_tensor **in) { return ddx_mean(c, in[0]); }

#define F4(a, b, c, d, g) {.ndim = 4, .shape = {a, b, c, d}, .gen = GEN_UNIFORM, .grad = g}
#define F3(a, b, c, g) {.ndim = 3, .shape = {a, b, c, 1}, .gen = GEN_UNIFORM, .grad = g}
#define F2(a, b, g) {.ndim = 2, .shape = {a, b, 1, 1}, .gen = GEN_UNIFORM, .grad = g}
#define F1(a, g) {.ndim = 1, .shape = {a, 1, 1, 1}, .gen = GEN_UNIFORM, .grad = g}
#define P1(a, g) {.ndim = 1, .shape = {a, 1, 1, 1}, .gen = GEN_POSITIVE, .grad = g}

// DDPM CIFAR-10 U-Net shapes at batch 4 (the CPU training batch is small).
static const op_bench g_op_benches[] = {
    {"conv2d", "3x3 128->128 [4,32,32,128] s1 p1", 3, {F4(4, 32, 32, 128, true), F4(128, 3, 3, 128, true), F1(128, true)},
     ap_conv_p1, 2.0 * 4 * 32 * 32 * 128 * 128 * 9, true, false},
    {"conv2d", "3x3 256->256 [4,8,8,256] s1 p1", 3, {F4(4, 8, 8, 256, true), F4(256, 3, 3, 256, true), F1(256, true)},
     ap_conv_p1, 2.0 * 4 * 8 * 8 * 256 * 256 * 9, true, false},
    {"conv2d", "3x3 s2 (0,1,0,1) 128 [4,32,32,128]->16x16", 3, {F4(4, 32, 32, 128, true), F4(128, 3, 3, 128, true), F1(128, true)},
     ap_conv_down, 2.0 * 4 * 16 * 16 * 128 * 128 * 9, true, false},
    {"conv2d", "1x1 256->128 [4,16,16,256] (skip)", 3, {F4(4, 16, 16, 256, true), F4(128, 1, 1, 256, true), F1(128, true)},
     ap_conv_p0, 2.0 * 4 * 16 * 16 * 256 * 128, true, false},
    {"conv2d", "3x3 3->128 [4,32,32,3] (input conv)", 3, {F4(4, 32, 32, 3, false), F4(128, 3, 3, 3, true), F1(128, true)},
     ap_conv_p1, 2.0 * 4 * 32 * 32 * 3 * 128 * 9, true, false},
    {"linear", "[4,256,256] -> 256 (attention proj)", 3, {F3(4, 256, 256, true), F2(256, 256, true), F1(256, true)},
     ap_linear, 2.0 * 4 * 256 * 256 * 256, true, false},
    {"linear", "[64,128] -> 512 (time MLP)", 3, {F2(64, 128, true), F2(512, 128, true), F1(512, true)},
     ap_linear, 2.0 * 64 * 128 * 512, true, false},
    {"group_norm", "[4,32,32,128] 32 groups + SiLU", 3, {F4(4, 32, 32, 128, true), P1(128, true), F1(128, true)},
     ap_group_norm, 0, true, false},
    {"silu", "[4,32,32,128]", 1, {F4(4, 32, 32, 128, true)}, ap_silu, 0, true, false},
    {"add", "[4,32,32,128] + [4,1,1,128]", 2, {F4(4, 32, 32, 128, true), F4(4, 1, 1, 128, true)}, ap_add, 0, true, false},
    {"mul", "[4,32,32,128] * [4,32,32,128]", 2, {F4(4, 32, 32, 128, true), F4(4, 32, 32, 128, true)}, ap_mul, 0, true, false},
    {"scale", "[4,32,32,128]", 1, {F4(4, 32, 32, 128, true)}, ap_scale, 0, true, false},
    {"concat", "[4,16,16,256] ++ [4,16,16,256]", 2, {F4(4, 16, 16, 256, true), F4(4, 16, 16, 256, true)}, ap_concat, 0, true, false},
    {"upsample2x", "nearest [4,16,16,128]", 1, {F4(4, 16, 16, 128, true)}, ap_upsample, 0, true, false},
    {"pool2x", "avg [4,32,32,128]", 1, {F4(4, 32, 32, 128, true)}, ap_pool, 0, true, false},
    {"attention", "[4,256,256] 1 head (16x16 tokens)", 3, {F3(4, 256, 256, true), F3(4, 256, 256, true), F3(4, 256, 256, true)},
     ap_attention, 4.0 * 4 * 256 * 256 * 256, true, false},
    {"embedding", "idx [64] table [10,128]", 2,
     {{.ndim = 1, .shape = {64, 1, 1, 1}, .dtype = DDX_I32, .gen = GEN_INDEX, .arg = 10}, F2(10, 128, true)},
     ap_embedding, 0, true, false},
    {"timestep_emb", "t [64] -> [64,128]", 1, {{.ndim = 1, .shape = {64, 1, 1, 1}, .gen = GEN_TIMESTEP, .arg = 1000}},
     ap_timestep_emb, 0, false, false},
    {"dropout", "p=0.1 [4,32,32,128] (training)", 1, {F4(4, 32, 32, 128, true)}, ap_dropout, 0, true, true},
    {"mse_loss", "[4,32,32,3]", 2, {F4(4, 32, 32, 3, true), F4(4, 32, 32, 3, false)}, ap_mse, 0, true, false},
    {"mean", "[4,32,32,128]", 1, {F4(4, 32, 32, 128, true)}, ap_mean, 0, true, false},
};

// Host buffers for one benchmark's inputs; outside the arena so that they survive the
// per-rep ddx_ctx_reset. Grads too, so the backward accumulates into stable memory.
typedef struct bench_tensors {
    ddx_tensor t[DDX_MAX_INPUTS], g[DDX_MAX_INPUTS];
    ddx_tensor *ptr[DDX_MAX_INPUTS];
} bench_tensors;

static void bench_tensors_free(bench_tensors *bt) {
    for (int i = 0; i < DDX_MAX_INPUTS; i++) {
        free(bt->t[i].data);
        free(bt->g[i].data);
    }
}

static bool bench_tensors_make(const op_bench *b, bench_tensors *bt) {
    memset(bt, 0, sizeof *bt);
    for (int i = 0; i < b->n_in; i++) {
        const bench_in *in = &b->in[i];
        if (in->ndim == 0) continue;
        bt->t[i] = ddx_tensor_wrap(NULL, in->dtype, DDX_CPU, in->ndim, in->shape);
        int64_t n = ddx_numel(&bt->t[i]);
        bt->t[i].data = bench_alloc(ddx_nbytes(&bt->t[i]));
        if (!bt->t[i].data) return false;
        for (int64_t k = 0; k < n; k++) {
            if (in->dtype == DDX_I32) {
                ((int32_t *)bt->t[i].data)[k] = (int32_t)(rng_next() % (uint64_t)in->arg);
            } else {
                float v = in->gen == GEN_POSITIVE   ? 1.0f + 0.5f * rng_uniform()
                          : in->gen == GEN_TIMESTEP ? (float)(rng_next() % (uint64_t)in->arg)
                                                    : rng_uniform();
                ((float *)bt->t[i].data)[k] = v;
            }
        }
        if (b->bwd && in->grad) {
            bt->g[i] = ddx_tensor_wrap(NULL, in->dtype, DDX_CPU, in->ndim, in->shape);
            bt->g[i].data = bench_alloc(ddx_nbytes(&bt->g[i]));
            if (!bt->g[i].data) return false;
            memset(bt->g[i].data, 0, ddx_nbytes(&bt->g[i]));
            bt->t[i].requires_grad = true;
            bt->t[i].grad = &bt->g[i];
        }
        bt->ptr[i] = &bt->t[i];
    }
    return true;
}

typedef enum bench_result { BENCH_OK = 0, BENCH_SKIP, BENCH_FAIL } bench_result;

static void print_rate(double seconds, double work, bool flops) {
    if (flops)
        printf("  %9.3f ms %8.2f GFLOP/s", 1e3 * seconds, work / seconds * 1e-9);
    else
        printf("  %9.3f ms %8.2f GB/s   ", 1e3 * seconds, work / seconds * 1e-9);
}

static bench_result run_op_bench(ddx_ctx *c, const op_bench *b, int reps, int warmup) {
    bench_tensors bt;
    double *tf = calloc((size_t)reps, sizeof(double)), *tb = calloc((size_t)reps, sizeof(double));
    ddx_tensor gy = {0};
    bench_result res = BENCH_OK;
    printf("%-13s %-44s", b->op, b->desc);
    fflush(stdout);
    memset(&bt, 0, sizeof bt);
    if (!tf || !tb || !bench_tensors_make(b, &bt)) {
        printf("  FAIL (out of host memory)\n");
        bench_tensors_free(&bt);
        free(tf), free(tb);
        return BENCH_FAIL;
    }
    c->grad_enabled = b->bwd;
    c->training = b->training;
    double in_bytes = 0, grad_bytes = 0, out_bytes = 0;
    for (int i = 0; i < b->n_in; i++)
        if (bt.ptr[i]) {
            in_bytes += (double)ddx_nbytes(bt.ptr[i]);
            if (bt.ptr[i]->requires_grad) grad_bytes += (double)ddx_nbytes(bt.ptr[i]);
        }
    for (int it = -warmup; it < reps; it++) {
        ddx_ctx_reset(c);
        double t0 = now_s();
        ddx_tensor *y = b->apply(c, bt.ptr);
        double t1 = now_s();
        if (!y || ddx_ctx_status(c) != DDX_OK) {
            ddx_status st = ddx_ctx_status(c);
            if (st == DDX_E_UNSUPPORTED) {
                printf("  SKIP (unsupported)\n");
                res = BENCH_SKIP;
            } else {
                printf("  FAIL (%s: %s)\n", ddx_status_name(st), ddx_last_error());
                res = BENCH_FAIL;
            }
            goto done;
        }
        if (it == -warmup) out_bytes = (double)ddx_nbytes(y);
        if (b->bwd) {
            if (!gy.data) {
                gy = ddx_tensor_wrap(bench_alloc(ddx_nbytes(y)), DDX_F32, DDX_CPU, y->ndim, y->shape);
                if (!gy.data) {
                    printf("  FAIL (out of host memory)\n");
                    res = BENCH_FAIL;
                    goto done;
                }
                for (int64_t k = 0; k < ddx_numel(&gy); k++) ((float *)gy.data)[k] = rng_uniform();
            }
            double t2 = now_s();
            ddx_status st = ddx_backward_from(c, y, &gy);
            double t3 = now_s();
            if (st != DDX_OK) {
                if (st == DDX_E_UNSUPPORTED) {
                    printf("  SKIP (unsupported backward)\n");
                    res = BENCH_SKIP;
                } else {
                    printf("  FAIL (backward %s: %s)\n", ddx_status_name(st), ddx_last_error());
                    res = BENCH_FAIL;
                }
                goto done;
            }
            if (it >= 0) tb[it] = t3 - t2;
        }
        if (it >= 0) tf[it] = t1 - t0;
    }
    {
        bool fl = b->flops > 0;
        // Memory-bound estimate: forward reads inputs and writes the output; backward reads dy
        // and the inputs and read-modify-writes each input grad.
        print_rate(median(tf, reps), fl ? b->flops : in_bytes + out_bytes, fl);
        if (b->bwd) print_rate(median(tb, reps), fl ? 2.0 * b->flops : out_bytes + in_bytes + 2.0 * grad_bytes, fl);
        printf("\n");
    }
done:
    free(gy.data);
    bench_tensors_free(&bt);
    free(tf), free(tb);
    c->training = false;
    ddx_ctx_reset(c);
    return res;
}

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
    c->grad_enabled = false;   // inference forward: no tape
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
    c->grad_enabled = true;
    ddx_ctx_reset(c);
    free(x.data), free(w.data), free(bias.data), free(A), free(Bm), free(C), free(tc), free(tg);
    return res;
}

static void ops_usage(FILE *f) {
    fprintf(f,
            "usage: ddx-bench ops [--op NAME] [--reps N] [--warmup N]\n"
            "  Times each CPU op forward (and backward where it has one) at DDPM U-Net shapes and\n"
            "  prints the median time and GFLOP/s (GEMM-shaped ops) or GB/s of estimated traffic\n"
            "  (memory-bound ops). Ops not implemented yet print SKIP (unsupported).\n"
            "  Ends with the conv acceptance check: conv2d 3x3 64->64 32x32 batch 16 forward vs one\n"
            "  cblas_sgemm of the same GEMM shape, with the ratio (target >= 0.5).\n"
            "  --op NAME    only this op (registry name, e.g. conv2d; 'accept' = only the acceptance check)\n"
            "  --reps N     timed runs per measurement, median reported (default 30)\n"
            "  --warmup N   untimed runs first (default 3)\n");
}

static int cmd_ops(int argc, char **argv) {
    const char *only = NULL;
    int reps = 30, warmup = 3;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ops_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--op") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            if (!parse_int(argv[++i], 1, 100000, &reps)) {
                fprintf(stderr, "ddx-bench ops: --reps '%s' must be an integer in [1, 100000]\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) {
            if (!parse_int(argv[++i], 0, 100000, &warmup)) {
                fprintf(stderr, "ddx-bench ops: --warmup '%s' must be an integer in [0, 100000]\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "ddx-bench ops: unknown or incomplete argument '%s'\n", argv[i]);
            ops_usage(stderr);
            return 2;
        }
    }
    if (only && strcmp(only, "accept") != 0 && ddx_op_from_name(only) == DDX_OP_COUNT) {
        fprintf(stderr, "ddx-bench ops: unknown op '%s' (use a registry name such as conv2d, or 'accept')\n", only);
        return 2;
    }
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)256 << 20) != DDX_OK) {
        fprintf(stderr, "ddx-bench ops: cannot create a CPU context: %s\n", ddx_last_error());
        return 1;
    }
    printf("ddx-bench ops: CPU backend, OpenBLAS %s (%s), %d threads; median of %d runs after %d warm-up\n",
           openblas_get_config(), openblas_get_corename(), openblas_get_num_threads(), reps, warmup);
    printf("%-13s %-44s  %-29s  %s\n", "op", "shape", "forward", "backward");
    int n_fail = 0, n_skip = 0, n_run = 0;
    size_t n = sizeof g_op_benches / sizeof g_op_benches[0];
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, g_op_benches[i].op) != 0) continue;
        bench_result r = run_op_bench(&c, &g_op_benches[i], reps, warmup);
        n_run++;
        n_fail += r == BENCH_FAIL;
        n_skip += r == BENCH_SKIP;
    }
    if (!only || !strcmp(only, "conv2d") || !strcmp(only, "accept")) {
        bench_result r = run_conv_acceptance(&c, reps, warmup);
        n_run++;
        n_fail += r == BENCH_FAIL;
        n_skip += r == BENCH_SKIP;
    }
    if (n_run == 0) printf("(no benchmark for op '%s' yet)\n", only);
    printf("\nddx-bench ops: %d measured, %d skipped, %d failed\n", n_run - n_fail - n_skip, n_skip, n_fail);
    ddx_ctx_free(&c);
    return n_fail ? 1 : 0;
}

#include "bench_kernels.h"

// ---- subcommands -------------------------------------------------------------------------

typedef struct bench_cmd {
    const char *name;
    int (*run)(int argc, char **argv);   // argv after the subcommand name; returns the exit code
    const char *summary;
} bench_cmd;

static const bench_cmd g_cmds[] = {
    {"ops", cmd_ops, "time each CPU op (forward, backward) at U-Net shapes; conv vs sgemm acceptance check"},
    {"kernels", ddx_bench_kernels, "time each CUDA kernel family against the copy bandwidth, cuBLAS GEMM and cuDNN measured in the same run"},
    {"step", ddx_bench_step, "time a config's training step and sampling forward (compare: bench/reference/torch_step.py)"},
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
    fprintf(stderr, "ddx-bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
