// ddx-bench kernels: the CUDA kernels that have a baseline in an outside library, timed against
// it in the same run, and the fused optimizer step (a trainer kernel, not an op case):
//
//   conv, attention: TFLOP/s, as a share of a large square cuBLAS GEMM of the same dtype timed in
//       this run, next to cuDNN (conv) or the cuBLAS GEMMs of naive attention at the same shapes;
//   optim: GB/s counting the bytes that must move, as a share of the device-to-device copy
//       bandwidth (cudaMemcpyAsync, read + write) of this run.
//   sampler: each sampler's per-step update (sampler_step for ddpm / ddim, sampler_step_ms for
//       dpmpp2m / dpmpp3m / heun / euler_a) in GB/s over the bytes it reads and writes, as a
//       share of the same copy (issue 16's target: >= 80%), alone and with the history copies
//       models/sampler.c adds per model call.
//
// Every op on its own (elementwise, group_norm, diffusion and the rest, at the U-Net's batch-128
// shapes, as a share of the copy) is timed by the op driver: tests/test_ops --perf --backend cuda.
//
// Timing: CUDA events after warm-up; each sample brackets enough back-to-back runs to last about
// 0.25 ms (so launch latency does not count for microsecond kernels); the median of the samples.
// Data are Philox normals (never zeros: zeros flatter some kernels). Every CUDA, cuBLAS and
// cuDNN call is checked; a failure prints the call and its file:line, and the exit code is 1.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_kernels.h"
#include "ddx_config.h"

#if DDX_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#ifndef DDX_BENCH_HAVE_CUDNN
#define DDX_BENCH_HAVE_CUDNN 0
#endif
#if DDX_BENCH_HAVE_CUDNN
#include <cudnn.h>
#endif

#include "kernels/attention.h"
#include "kernels/conv.h"
#include "kernels/diffusion.h"
#include "kernels/optim.h"
#include "kernels/philox.h"

#define MAX_ALLOCS 64
#define MAX_SAMPLES 1000

typedef struct kb_state {
    cudaStream_t s;
    cudaEvent_t e0, e1;
    cublasHandle_t blas;
#if DDX_BENCH_HAVE_CUDNN
    cudnnHandle_t dnn;
#endif
    int reps, min_reps, warmup;
    double budget_ms;                          // cap on one item's timed total (then min_reps)
    double copy_gbs;                           // D2D copy bandwidth of this run, read + write
    double gemm_bf16, gemm_f32, gemm_tf32;     // TFLOP/s of the square GEMMs of this run
    int fails, dead;                           // dead: a sticky device error, stop timing
    // For the closing check against the kernel targets (-1: not measured).
    double attn_bf16_tf;                       // attention fwd bf16 at the U-Net's [128,256,256]
    double conv_ratio_min, conv_log_sum;       // bf16 conv rate / cuDNN's over every row
    int conv_ratio_n, conv_ratio_low;          // rows, and rows under 0.60
    double smp_min_share;                      // the lowest sampler update's share of the copy (-1: none)
    const char *smp_min_name;
    uint32_t seed_step;
    void *allocs[MAX_ALLOCS];
    int nalloc;
    char filter[256];
} kb_state;

static kb_state K;

static int fail_at(const char *call, const char *err, const char *file, int line) {
    fprintf(stderr, "ddx-bench kernels: %s failed: %s at %s:%d\n", call, err, file, line);
    K.fails++;
    return -1;
}

// ddx launchers return a cudaError_t as an int; so do the CUDA runtime calls.
#define CU(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (cudaError_t)(call);                                                      \
        if (e_ != cudaSuccess) return fail_at(#call, cudaGetErrorString(e_), __FILE__, __LINE__);  \
    } while (0)
#define CB(call)                                                                                   \
    do {                                                                                           \
        cublasStatus_t e_ = (call);                                                                \
        if (e_ != CUBLAS_STATUS_SUCCESS) return fail_at(#call, cublasGetStatusString(e_), __FILE__, __LINE__); \
    } while (0)
#if DDX_BENCH_HAVE_CUDNN
#define CD(call)                                                                                   \
    do {                                                                                           \
        cudnnStatus_t e_ = (call);                                                                 \
        if (e_ != CUDNN_STATUS_SUCCESS) return fail_at(#call, cudnnGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)
#endif

// ---- helpers ------------------------------------------------------------------------------

static void *dalloc(size_t bytes) {
    void *p = NULL;
    if (K.nalloc == MAX_ALLOCS) {
        fail_at("dalloc", "too many live allocations", __FILE__, __LINE__);
        return NULL;
    }
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        fprintf(stderr, "ddx-bench kernels: cudaMalloc(%zu bytes) failed: %s\n", bytes, cudaGetErrorString(e));
        K.fails++;
        return NULL;
    }
    K.allocs[K.nalloc++] = p;
    return p;
}

static void dfree_all(void) {
    for (int i = 0; i < K.nalloc; i++)
        if (cudaFree(K.allocs[i]) != cudaSuccess) fail_at("cudaFree", "failed", __FILE__, __LINE__);
    K.nalloc = 0;
}

// Philox normals, a fresh stream of numbers per buffer.
static int fill_normal(void *p, int64_t n, int bf16) {
    ddx_k_rng_key key = {.seed = 0x5EEDull, .stream = 7, .step = ++K.seed_step, .offset = 0};
    if (bf16)
        CU(ddx_k_randn_bf16(p, n, key, K.s));
    else
        CU(ddx_k_randn_f32(p, n, key, K.s));
    return 0;
}

static int want(const char *section) {
    if (!K.filter[0]) return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", K.filter);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (!strcmp(t, section)) return 1;
    return 0;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef int (*run_fn)(void *arg);   // enqueue one run on K.s: 0, or -1 after fail_at

static int time_runs_inner(run_fn fn, void *arg, double *ms_out) {
    static float ms[MAX_SAMPLES];
    for (int i = 0; i < K.warmup; i++)
        if (fn(arg)) return -1;
    CU(cudaStreamSynchronize(K.s));
    float one = 0;
    CU(cudaEventRecord(K.e0, K.s));
    if (fn(arg)) return -1;
    CU(cudaEventRecord(K.e1, K.s));
    CU(cudaEventSynchronize(K.e1));
    CU(cudaEventElapsedTime(&one, K.e0, K.e1));
    if (one < 1e-4f) one = 1e-4f;
    int inner = (int)ceil(0.25 / one);
    if (inner < 1) inner = 1;
    if (inner > 1000) inner = 1000;
    int reps = K.reps;
    const double sample_ms = (double)one * inner;
    if (reps * sample_ms > K.budget_ms) {
        reps = (int)(K.budget_ms / sample_ms);
        if (reps < K.min_reps) reps = K.min_reps;
    }
    if (reps > MAX_SAMPLES) reps = MAX_SAMPLES;
    for (int r = 0; r < reps; r++) {
        CU(cudaEventRecord(K.e0, K.s));
        for (int i = 0; i < inner; i++)
            if (fn(arg)) return -1;
        CU(cudaEventRecord(K.e1, K.s));
        CU(cudaEventSynchronize(K.e1));
        CU(cudaEventElapsedTime(&ms[r], K.e0, K.e1));
        ms[r] /= (float)inner;
    }
    qsort(ms, (size_t)reps, sizeof(float), cmp_float);
    *ms_out = reps % 2 ? ms[reps / 2] : 0.5 * ((double)ms[reps / 2 - 1] + ms[reps / 2]);
    return 0;
}

// Median ms of one run, or -1 on failure (after which a sticky device error stops the bench).
static double time_runs(run_fn fn, void *arg) {
    double ms = -1;
    if (K.dead) return -1;
    if (time_runs_inner(fn, arg, &ms)) {
        (void)cudaGetLastError();
        cudaError_t e = cudaDeviceSynchronize();
        if (e != cudaSuccess) {
            fprintf(stderr, "ddx-bench kernels: the device is in error (%s): stopping\n", cudaGetErrorString(e));
            K.dead = 1;
        }
        return -1;
    }
    return ms;
}

// One table line. rate/ms < 0: FAIL; base NULL: no baseline ("-"); base_ms < 0: baseline n/a.
// ref: this row's rate as a share of the run's copy bandwidth or same-dtype GEMM rate.
static void row(const char *name, const char *shape, const char *dt, double ms, double rate, const char *unit,
                double ref, const char *base, double base_ms, double base_rate) {
    char a[32], b[32], c[32], d[32], e[32], f[32];
    if (ms < 0) {
        snprintf(a, sizeof a, "FAIL");
        snprintf(b, sizeof b, "-");
        snprintf(c, sizeof c, "-");
    } else {
        snprintf(a, sizeof a, "%.4f", ms);
        snprintf(b, sizeof b, unit[0] == 'T' ? "%.2f" : "%.0f", rate);
        if (ref > 0)
            snprintf(c, sizeof c, "%.0f%%", 100 * rate / ref);
        else
            snprintf(c, sizeof c, "-");
    }
    if (!base) {
        snprintf(d, sizeof d, "-");
        snprintf(e, sizeof e, "-");
        snprintf(f, sizeof f, "-");
    } else if (base_ms < 0) {
        snprintf(d, sizeof d, "n/a");
        snprintf(e, sizeof e, "n/a");
        snprintf(f, sizeof f, "n/a");
    } else {
        snprintf(d, sizeof d, "%.4f", base_ms);
        snprintf(e, sizeof e, unit[0] == 'T' ? "%.2f" : "%.0f", base_rate);
        if (ms < 0)
            snprintf(f, sizeof f, "-");
        else
            snprintf(f, sizeof f, "%.2f", rate / base_rate);
    }
    printf("%-24s %-30s %-5s %9s %8s %-4s %6s | %-22s %9s %8s %6s\n", name, shape, dt, a, b, unit, c, base ? base : "-",
           d, e, f);
    fflush(stdout);
}

static void header(const char *section, const char *what) {
    printf("\n== %s: %s\n", section, what);
    printf("%-24s %-30s %-5s %9s %8s %-4s %6s | %-22s %9s %8s %6s\n", "kernel", "shape", "dtype", "ms", "rate", "unit",
           "%ref", "baseline", "base ms", "b.rate", "ratio");
}

static double gbs(double bytes, double ms) { return ms > 0 ? bytes / (ms * 1e-3) / 1e9 : -1; }
static double tflops(double flops, double ms) { return ms > 0 ? flops / (ms * 1e-3) / 1e12 : -1; }

// ---- copy bandwidth -----------------------------------------------------------------------

typedef struct copy_run {
    float *x, *y;
    int64_t n;
} copy_run;

static int run_copy(void *arg) {
    const copy_run *B = arg;
    CU(cudaMemcpyAsync(B->y, B->x, (size_t)B->n * 4, cudaMemcpyDeviceToDevice, K.s));
    return 0;
}

// The copy bandwidth the optimizer rows are read against: 64 Mi floats (256 MiB, far past L2).
static void section_copy(void) {
    copy_run B = {.n = (int64_t)1 << 26};
    B.x = dalloc((size_t)B.n * 4);
    B.y = dalloc((size_t)B.n * 4);
    if (B.x && B.y && !fill_normal(B.x, B.n, 0) && !fill_normal(B.y, B.n, 0))
        K.copy_gbs = gbs(8.0 * (double)B.n, time_runs(run_copy, &B));
    printf("copy bandwidth (cudaMemcpyAsync D2D, 256 MiB, read + write): %.0f GB/s\n", K.copy_gbs);
    dfree_all();
}

// ---- cuBLAS GEMM rate ---------------------------------------------------------------------

typedef struct gemm_run {
    int m;
    cudaDataType_t dt;
    cublasComputeType_t ct;
    void *a, *b, *c;
} gemm_run;

static int run_gemm(void *arg) {
    const gemm_run *G = arg;
    const float one = 1.0f, zero = 0.0f;
    CB(cublasGemmEx(K.blas, CUBLAS_OP_N, CUBLAS_OP_N, G->m, G->m, G->m, &one, G->a, G->dt, G->m, G->b, G->dt, G->m, &zero,
                    G->c, G->dt, G->m, G->ct, CUBLAS_GEMM_DEFAULT));
    return 0;
}

static void section_gemm(int show) {
    const int m = 8192;
    const double flops = 2.0 * m * (double)m * m;
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%dx%d", m, m, m);
    if (show) header("gemm", "cublasGemmEx square, the GEMM rate the conv and attention rows are read against");
    static const struct {
        const char *dt_name;
        cudaDataType_t dt;
        cublasComputeType_t ct;
        size_t es;
        int which;   // 0 bf16, 1 f32 (no TF32: CUBLAS_COMPUTE_32F under the default math mode), 2 tf32
    } gs[] = {
        {"bf16", CUDA_R_16BF, CUBLAS_COMPUTE_32F, 2, 0},
        {"f32", CUDA_R_32F, CUBLAS_COMPUTE_32F, 4, 1},
        {"tf32", CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 4, 2},
    };
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
        gemm_run G = {.m = m, .dt = gs[i].dt, .ct = gs[i].ct};
        const size_t bytes = (size_t)m * m * gs[i].es;
        G.a = dalloc(bytes);
        G.b = dalloc(bytes);
        G.c = dalloc(bytes);
        double ms = -1;
        if (G.a && G.b && G.c && !fill_normal(G.a, (int64_t)m * m, gs[i].es == 2) &&
            !fill_normal(G.b, (int64_t)m * m, gs[i].es == 2))
            ms = time_runs(run_gemm, &G);
        const double r = tflops(flops, ms);
        if (gs[i].which == 0) K.gemm_bf16 = r;
        if (gs[i].which == 1) K.gemm_f32 = r;
        if (gs[i].which == 2) K.gemm_tf32 = r;
        if (show)
            row("cublasGemmEx", shape, gs[i].dt_name, ms, r, "TF/s", 0, NULL, 0, 0);
        else
            printf("GEMM rate (cublasGemmEx %s, %s): %.1f TFLOP/s\n", shape, gs[i].dt_name, r);
        dfree_all();
    }
}

// ---- conv2d vs cuDNN ----------------------------------------------------------------------

typedef struct conv_shape {
    const char *label;
    int64_t N, H, W, Ci, Co, KH, KW;
    int stride, pt, pl, pb, pr;
} conv_shape;

// The DDPM CIFAR-10 U-Net's convs at batch 128 (models/unet_ddpm.c): 3x3 "same" at every
// level, the Downsample2D conv (pad right/bottom by one, then 3x3 stride 2), a 1x1 shortcut.
static const conv_shape CONV_SHAPES[] = {
    {"3x3 [128,32,32,128]->128", 128, 32, 32, 128, 128, 3, 3, 1, 1, 1, 1, 1},
    {"3x3 [128,16,16,256]->256", 128, 16, 16, 256, 256, 3, 3, 1, 1, 1, 1, 1},
    {"3x3 [128,8,8,256]->256", 128, 8, 8, 256, 256, 3, 3, 1, 1, 1, 1, 1},
    {"3x3 [128,4,4,256]->256", 128, 4, 4, 256, 256, 3, 3, 1, 1, 1, 1, 1},
    {"3x3s2 [128,32,32,128]->128", 128, 32, 32, 128, 128, 3, 3, 2, 0, 0, 1, 1},
    {"1x1 [128,16,16,128]->256", 128, 16, 16, 128, 256, 1, 1, 1, 0, 0, 0, 0},
};

enum { DIR_FWD, DIR_DGRAD, DIR_WGRAD };
static const char *const DIR_NAME[] = {"conv2d fwd", "conv2d dgrad", "conv2d wgrad"};

typedef struct conv_run {
    ddx_k_conv_geom g;
    int bf16, tf32, dir;   // tf32: f32 tensors through the _tf32 launchers (TF32 tensor cores)
    void *x, *w, *y, *dy, *dx, *dw;
    float *part;
#if DDX_BENCH_HAVE_CUDNN
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    int algo;
    void *ws;
    size_t ws_bytes;
#endif
} conv_run;

static int run_ddx_conv(void *arg) {
    conv_run *c = arg;
    switch (c->dir) {
    case DIR_FWD:
        if (c->bf16)
            CU(ddx_k_conv2d_fwd_bf16(c->y, c->x, c->w, NULL, &c->g, K.s));
        else if (c->tf32)
            CU(ddx_k_conv2d_fwd_tf32(c->y, c->x, c->w, NULL, &c->g, K.s));
        else
            CU(ddx_k_conv2d_fwd_f32(c->y, c->x, c->w, NULL, &c->g, K.s));
        break;
    case DIR_DGRAD:
        if (c->bf16)
            CU(ddx_k_conv2d_dgrad_bf16(c->dx, c->dy, c->w, &c->g, K.s));
        else if (c->tf32)
            CU(ddx_k_conv2d_dgrad_tf32(c->dx, c->dy, c->w, &c->g, K.s));
        else
            CU(ddx_k_conv2d_dgrad_f32(c->dx, c->dy, c->w, &c->g, K.s));
        break;
    default:
        if (c->bf16)
            CU(ddx_k_conv2d_wgrad_bf16(c->dw, c->dy, c->x, c->part, &c->g, K.s));
        else if (c->tf32)
            CU(ddx_k_conv2d_wgrad_tf32(c->dw, c->dy, c->x, c->part, &c->g, K.s));
        else
            CU(ddx_k_conv2d_wgrad_f32(c->dw, c->dy, c->x, c->part, &c->g, K.s));
        break;
    }
    return 0;
}

#if DDX_BENCH_HAVE_CUDNN
// cuDNN's legacy API overwrites (beta = 0) where ddx's backward launchers accumulate (dx += ..):
// the ddx rows move one extra read of dx / dw, a small handicap next to the GEMM work.
static int run_cudnn_conv(void *arg) {
    conv_run *c = arg;
    const float one = 1.0f, zero = 0.0f;
    switch (c->dir) {
    case DIR_FWD:
        CD(cudnnConvolutionForward(K.dnn, &one, c->xd, c->x, c->wd, c->w, c->cd, (cudnnConvolutionFwdAlgo_t)c->algo, c->ws,
                                   c->ws_bytes, &zero, c->yd, c->y));
        break;
    case DIR_DGRAD:
        CD(cudnnConvolutionBackwardData(K.dnn, &one, c->wd, c->w, c->yd, c->dy, c->cd,
                                        (cudnnConvolutionBwdDataAlgo_t)c->algo, c->ws, c->ws_bytes, &zero, c->xd, c->dx));
        break;
    default:
        CD(cudnnConvolutionBackwardFilter(K.dnn, &one, c->xd, c->x, c->yd, c->dy, c->cd,
                                          (cudnnConvolutionBwdFilterAlgo_t)c->algo, c->ws, c->ws_bytes, &zero, c->wd,
                                          c->dw));
        break;
    }
    return 0;
}

// An algorithm's math type is acceptable for the requested mode: under CUDNN_FMA_MATH (f32
// without TF32) nothing that may use tensor cores.
static int math_ok(cudnnMathType_t want_m, cudnnMathType_t got) {
    if (want_m != CUDNN_FMA_MATH) return 1;
    return got == CUDNN_FMA_MATH || got == CUDNN_DEFAULT_MATH;
}

// Descriptors for c (NHWC x/y, KRSC = OHWI filter). cuDNN pads symmetrically: the Downsample2D
// conv (pad 0 top/left, 1 bottom/right) is timed with pad 1 all round, which gives the same
// output size and the same FLOPs. Returns 1 when cuDNN cannot express the shape.
static int cudnn_descs(conv_run *c, const conv_shape *sh, cudnnMathType_t math) {
    const cudnnDataType_t dt = c->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    const ddx_k_conv_geom *g = &c->g;
    CD(cudnnCreateTensorDescriptor(&c->xd));
    CD(cudnnCreateTensorDescriptor(&c->yd));
    CD(cudnnCreateFilterDescriptor(&c->wd));
    CD(cudnnCreateConvolutionDescriptor(&c->cd));
    CD(cudnnSetTensor4dDescriptor(c->xd, CUDNN_TENSOR_NHWC, dt, (int)g->N, (int)g->Ci, (int)g->H, (int)g->W));
    CD(cudnnSetTensor4dDescriptor(c->yd, CUDNN_TENSOR_NHWC, dt, (int)g->N, (int)g->Co, (int)g->Ho, (int)g->Wo));
    CD(cudnnSetFilter4dDescriptor(c->wd, dt, CUDNN_TENSOR_NHWC, (int)g->Co, (int)g->Ci, (int)g->KH, (int)g->KW));
    const int ph = sh->pt == sh->pb ? sh->pt : (sh->pt + sh->pb + 1) / 2;
    const int pw = sh->pl == sh->pr ? sh->pl : (sh->pl + sh->pr + 1) / 2;
    CD(cudnnSetConvolution2dDescriptor(c->cd, ph, pw, sh->stride, sh->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                       CUDNN_DATA_FLOAT));
    CD(cudnnSetConvolutionMathType(c->cd, math));
    int on, oc, oh, ow;
    CD(cudnnGetConvolution2dForwardOutputDim(c->cd, c->xd, c->wd, &on, &oc, &oh, &ow));
    if (on != g->N || oc != g->Co || oh != g->Ho || ow != g->Wo) {
        fprintf(stderr, "ddx-bench kernels: cuDNN gives output [%d,%d,%d,%d] for %s, not ddx's: no cuDNN row\n", on, oh, ow,
                oc, sh->label);
        return 1;
    }
    return 0;
}

static void cudnn_free(conv_run *c) {
    if (c->xd) cudnnDestroyTensorDescriptor(c->xd);
    if (c->yd) cudnnDestroyTensorDescriptor(c->yd);
    if (c->wd) cudnnDestroyFilterDescriptor(c->wd);
    if (c->cd) cudnnDestroyConvolutionDescriptor(c->cd);
    if (c->ws && cudaFree(c->ws) != cudaSuccess) fail_at("cudaFree(workspace)", "failed", __FILE__, __LINE__);
    c->xd = c->yd = NULL;
    c->wd = NULL;
    c->cd = NULL;
    c->ws = NULL;
    c->ws_bytes = 0;
}

// cudnnFind*Algorithm (runs every candidate, like torch.backends.cudnn.benchmark); the fastest
// successful one within the math mode, its workspace allocated here, outside the timing.
// Returns 0, 1 when no algorithm fits, -1 on an error.
// The three cudnnFind*Algorithm result types share these fields; the list is fastest first.
#define PICK_FIRST(perf)                                                                           \
    for (int i = 0; i < got && !found; i++)                                                        \
        if ((perf)[i].status == CUDNN_STATUS_SUCCESS && math_ok(math, (perf)[i].mathType)) {       \
            c->algo = (int)(perf)[i].algo;                                                         \
            ws = (perf)[i].memory;                                                                 \
            mt = (perf)[i].mathType;                                                               \
            found = 1;                                                                             \
        }

static int cudnn_pick(conv_run *c, cudnnMathType_t math) {
    int got = 0, found = 0;
    cudnnMathType_t mt = math;
    size_t ws = 0;
    if (c->dir == DIR_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        CD(cudnnFindConvolutionForwardAlgorithm(K.dnn, c->xd, c->wd, c->cd, c->yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                                perf));
        PICK_FIRST(perf);
    } else if (c->dir == DIR_DGRAD) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        CD(cudnnFindConvolutionBackwardDataAlgorithm(K.dnn, c->wd, c->yd, c->cd, c->xd,
                                                     CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf));
        PICK_FIRST(perf);
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        CD(cudnnFindConvolutionBackwardFilterAlgorithm(K.dnn, c->xd, c->yd, c->cd, c->wd,
                                                       CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf));
        PICK_FIRST(perf);
    }
    if (!found) return 1;
    // Under FMA the descriptor keeps FMA (a DEFAULT result must not turn TF32 back on).
    CD(cudnnSetConvolutionMathType(c->cd, math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : mt));
    if (ws) CU(cudaMalloc(&c->ws, ws));
    c->ws_bytes = ws;
    return 0;
}

// Median ms of cuDNN for c->dir under `math`, -1 when not available (printed) or failed.
static double cudnn_time(conv_run *c, const conv_shape *sh, cudnnMathType_t math) {
    double ms = -1;
    if (K.dead) return -1;
    int r = cudnn_descs(c, sh, math);
    if (r == 0) {
        r = cudnn_pick(c, math);
        if (r == 1)
            fprintf(stderr, "ddx-bench kernels: cuDNN found no algorithm for %s %s %s\n", DIR_NAME[c->dir], sh->label,
                    c->bf16 ? "bf16" : "f32");
        if (r == 0) ms = time_runs(run_cudnn_conv, c);
    }
    cudnn_free(c);
    return ms;
}
#endif

static void conv_shape_dtype(const conv_shape *sh, int bf16, int tf32) {
    conv_run c;
    memset(&c, 0, sizeof c);
    c.bf16 = bf16;
    c.tf32 = tf32;
    ddx_k_conv_geom *g = &c.g;
    g->N = sh->N, g->H = sh->H, g->W = sh->W, g->Ci = sh->Ci, g->Co = sh->Co, g->KH = sh->KH, g->KW = sh->KW;
    g->stride = sh->stride, g->pad_top = sh->pt, g->pad_left = sh->pl;
    g->Ho = (sh->H + sh->pt + sh->pb - sh->KH) / sh->stride + 1;
    g->Wo = (sh->W + sh->pl + sh->pr - sh->KW) / sh->stride + 1;
    const double flops = 2.0 * (double)g->N * g->Ho * g->Wo * g->Co * g->KH * g->KW * g->Ci;
    const char *dtn = bf16 ? "bf16" : tf32 ? "tf32" : "f32";
    const size_t es = bf16 ? 2 : 4;
    const int64_t nx = g->N * g->H * g->W * g->Ci, ny = g->N * g->Ho * g->Wo * g->Co, nw = g->Co * g->KH * g->KW * g->Ci;
    if (!ddx_k_conv2d_supported(g)) {
        fprintf(stderr, "ddx-bench kernels: ddx_k_conv2d_supported refuses %s\n", sh->label);
        K.fails++;
        return;
    }
    // The bf16 weight gradient has its own split (tensor-core path): scratch sized by it.
    const int64_t splits = bf16   ? ddx_k_conv2d_wgrad_splits_bf16(g)
                           : tf32 ? ddx_k_conv2d_wgrad_splits_tf32(g)
                                  : ddx_k_conv2d_wgrad_splits(g);
    c.x = dalloc((size_t)nx * es);
    c.dx = dalloc((size_t)nx * es);
    c.y = dalloc((size_t)ny * es);
    c.dy = dalloc((size_t)ny * es);
    c.w = dalloc((size_t)nw * es);
    c.dw = dalloc((size_t)nw * es);
    c.part = splits > 1 ? dalloc((size_t)(splits * nw) * 4) : NULL;
    if (!c.x || !c.dx || !c.y || !c.dy || !c.w || !c.dw || (splits > 1 && !c.part)) goto out;
    if (fill_normal(c.x, nx, bf16) || fill_normal(c.dx, nx, bf16) || fill_normal(c.y, ny, bf16) ||
        fill_normal(c.dy, ny, bf16) || fill_normal(c.w, nw, bf16) || fill_normal(c.dw, nw, bf16))
        goto out;
    const double gemm = bf16 ? K.gemm_bf16 : tf32 ? K.gemm_tf32 : K.gemm_f32;
    for (int dir = DIR_FWD; dir <= DIR_WGRAD; dir++) {
        c.dir = dir;
        const double ms = time_runs(run_ddx_conv, &c);
        const double r = tflops(flops, ms);
#if DDX_BENCH_HAVE_CUDNN
        // cuDNN's DEFAULT math allows TF32 for f32 tensors; FMA math forbids it.
        const double bms = cudnn_time(&c, sh, bf16 ? CUDNN_TENSOR_OP_MATH : tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
        row(DIR_NAME[dir], sh->label, dtn, ms, r, "TF/s", gemm,
            bf16 ? "cuDNN bf16" : tf32 ? "cuDNN tf32 (DEFAULT)" : "cuDNN f32 (no TF32)", bms, tflops(flops, bms));
        if (bf16 && ms > 0 && bms > 0) {
            const double q = bms / ms;   // = ddx rate / cuDNN rate
            K.conv_ratio_min = K.conv_ratio_n ? fmin(K.conv_ratio_min, q) : q;
            K.conv_log_sum += log(q);
            K.conv_ratio_n++;
            K.conv_ratio_low += q < 0.60;
        }
#else
        row(DIR_NAME[dir], sh->label, dtn, ms, r, "TF/s", gemm, "cuDNN (not built)", -1, 0);
#endif
    }
out:
    dfree_all();
}

static void section_conv(void) {
    header("conv", "NHWC x, OHWI w; TF/s = 2 N Ho Wo Co KH KW Ci / time; %ref = share of the same-dtype GEMM rate; "
                   "ratio = ddx / baseline rate");
    for (size_t i = 0; i < sizeof CONV_SHAPES / sizeof CONV_SHAPES[0] && !K.dead; i++)
        for (int mode = 2; mode >= 0; mode--) conv_shape_dtype(&CONV_SHAPES[i], mode == 2, mode == 1);
}

// ---- attention vs the cuBLAS GEMMs of naive attention -------------------------------------

typedef struct attn_run {
    int bf16, bwd, base;   // base: the cuBLAS GEMMs instead of ddx
    int64_t N, L;
    int d;
    float scale;
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *S;
    float *lse, *delta;
} attn_run;

// Row-major C[M,Nc] = op(A) op(B) over `batch` matrices (strides in elements), through cuBLAS's
// column-major view: C^T = op(B)^T op(A)^T, so B goes first and each transpose flag carries
// over. lda/ldb/ldc are the row-major leading dimensions (columns of the stored matrix).
static int rm_gemm(int bf16, int ta, int tb, int64_t M, int64_t Nc, int64_t Kd, const void *A, int64_t lda, int64_t sA,
                   const void *B, int64_t ldb, int64_t sB, void *C, int64_t ldc, int64_t sC, int64_t batch) {
    const float one = 1.0f, zero = 0.0f;
    const cudaDataType_t dt = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    CB(cublasGemmStridedBatchedEx(K.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)Nc, (int)M,
                                  (int)Kd, &one, B, dt, (int)ldb, sB, A, dt, (int)lda, sA, &zero, C, dt, (int)ldc, sC,
                                  (int)batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

// The GEMMs of unfused attention with one head (q, k, v [N, L, d]; S [N, L, L] reused for the
// scores, probabilities and their gradients): forward S = Q K^T, O = P V; backward recomputes
// S = Q K^T, then dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q. Softmax and its backward
// are left out, so this is a lower bound on what cuBLAS-based attention costs.
static int run_attn_base(attn_run *a) {
    const int64_t L = a->L, d = a->d, sq = L * d, ss = L * L, n = a->N;
    const int b = a->bf16;
    if (rm_gemm(b, 0, 1, L, L, d, a->q, d, sq, a->k, d, sq, a->S, L, ss, n)) return -1;
    if (!a->bwd) return rm_gemm(b, 0, 0, L, d, L, a->S, L, ss, a->v, d, sq, a->o, d, sq, n);
    if (rm_gemm(b, 1, 0, L, d, L, a->S, L, ss, a->dout, d, sq, a->dv, d, sq, n)) return -1;
    if (rm_gemm(b, 0, 1, L, L, d, a->dout, d, sq, a->v, d, sq, a->S, L, ss, n)) return -1;
    if (rm_gemm(b, 0, 0, L, d, L, a->S, L, ss, a->k, d, sq, a->dq, d, sq, n)) return -1;
    return rm_gemm(b, 1, 0, L, d, L, a->S, L, ss, a->q, d, sq, a->dk, d, sq, n);
}

static int run_attn(void *arg) {
    attn_run *a = arg;
    if (a->base) return run_attn_base(a);
    const int h = 1;
    if (!a->bwd) {
        if (a->bf16)
            CU(ddx_k_attention_fwd_bf16(a->q, a->k, a->v, a->o, a->lse, a->N, a->L, h, a->d, a->scale, K.s));
        else
            CU(ddx_k_attention_fwd_f32(a->q, a->k, a->v, a->o, a->lse, a->N, a->L, h, a->d, a->scale, K.s));
    } else {
        if (a->bf16)
            CU(ddx_k_attention_bwd_bf16(a->q, a->k, a->v, a->o, a->dout, a->lse, a->delta, a->dq, a->dk, a->dv, a->N, a->L,
                                        h, a->d, a->scale, K.s));
        else
            CU(ddx_k_attention_bwd_f32(a->q, a->k, a->v, a->o, a->dout, a->lse, a->delta, a->dq, a->dk, a->dv, a->N, a->L,
                                       h, a->d, a->scale, K.s));
    }
    return 0;
}

static void section_attention(void) {
    header("attention", "1 head; fwd TF/s = 4 N L^2 d / time, bwd = 2.5x that (5 L^2 d GEMMs: S recomputed, dV, dP, "
                        "dQ, dK); baseline: those GEMMs alone in cuBLAS (no softmax); %ref = share of the GEMM rate");
    static const struct {
        const char *label;
        int64_t N, L;
        int d;
    } shapes[] = {{"[128,256,256] h1 d256", 128, 256, 256}, {"[32,1024,128] h1 d128", 32, 1024, 128}};
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
        fail_at("cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)", "failed", __FILE__, __LINE__);
        return;
    }
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0] && !K.dead; i++)
        for (int bf16 = 1; bf16 >= 0; bf16--) {
            attn_run a;
            memset(&a, 0, sizeof a);
            a.bf16 = bf16;
            a.N = shapes[i].N, a.L = shapes[i].L, a.d = shapes[i].d;
            a.scale = (float)(1.0 / sqrt((double)a.d));
            const char *dtn = bf16 ? "bf16" : "f32";
            const double fwd_flops = 4.0 * (double)a.N * a.L * a.L * a.d, bwd_flops = 2.5 * fwd_flops;
            const double gemm = bf16 ? K.gemm_bf16 : K.gemm_f32;
            const size_t need = ddx_k_attention_smem_bytes(a.d);
            if (need == 0 || need > (size_t)optin) {   // the runtime refuses these cleanly too: not a failure
                printf("%-24s %-30s %-5s SKIP: head_dim %d needs %zu bytes of shared memory per block, the device allows "
                       "%d\n", "attention fwd+bwd", shapes[i].label, dtn, a.d, need, optin);
                continue;
            }
            const size_t es = bf16 ? 2 : 4;
            const int64_t nq = a.N * a.L * a.d, ns = a.N * a.L * a.L, nl = a.N * a.L;
            void **bufs[] = {&a.q, &a.k, &a.v, &a.o, &a.dout, &a.dq, &a.dk, &a.dv};
            int ok = 1;
            for (size_t j = 0; j < sizeof bufs / sizeof bufs[0]; j++) {
                *bufs[j] = dalloc((size_t)nq * es);
                ok = ok && *bufs[j] && !fill_normal(*bufs[j], nq, bf16);
            }
            a.S = dalloc((size_t)ns * es);
            a.lse = dalloc((size_t)nl * 4);
            a.delta = dalloc((size_t)nl * 4);
            ok = ok && a.S && a.lse && a.delta;
            double ms[2] = {-1, -1}, bms[2] = {-1, -1};
            for (int bwd = 0; bwd <= 1 && ok; bwd++) {
                a.bwd = bwd;
                a.base = 0;
                ms[bwd] = time_runs(run_attn, &a);   // the forward leaves o and lse for the backward
                a.base = 1;
                bms[bwd] = time_runs(run_attn, &a);
                a.base = 0;
                if (!bwd && ms[0] > 0 && run_attn(&a)) ms[0] = -1;   // the cuBLAS run overwrote o
                if (ms[0] < 0) break;
            }
            if (bf16 && i == 0 && ms[0] > 0) K.attn_bf16_tf = tflops(fwd_flops, ms[0]);
            row("attention fwd", shapes[i].label, dtn, ms[0], tflops(fwd_flops, ms[0]), "TF/s", gemm, "cuBLAS GEMM-only bound",
                bms[0], tflops(fwd_flops, bms[0]));
            row("attention bwd", shapes[i].label, dtn, ms[1], tflops(bwd_flops, ms[1]), "TF/s", gemm, "cuBLAS GEMM-only bound",
                bms[1], tflops(bwd_flops, bms[1]));
            dfree_all();
        }
}

// ---- optimizer: grad norm, fused clip + AdamW + EMA ---------------------------------------

typedef struct opt_run {
    int which;   // 0 grad_sumsq, 1 adamw
    float *p, *g, *m, *v, *ema;
    int64_t n;
    ddx_k_adamw_args args;
    double norm;
} opt_run;

static int run_opt(void *arg) {
    opt_run *o = arg;
    if (o->which == 0)
        CU(ddx_k_grad_sumsq(o->g, o->n, &o->norm, K.s));
    else
        CU(ddx_k_adamw_step(o->p, o->g, o->m, o->v, o->ema, o->n, &o->args, K.s));
    return 0;
}

static void section_optim(void) {
    header("optim", "the DDPM CIFAR-10 U-Net's 35,746,307 f32 params; adamw (clip + AdamW + EMA) reads p g m v ema, "
                    "writes p m v ema; grad_sumsq reads g (and waits for its 8-byte result); %ref = share of the copy");
    opt_run o = {.n = 35746307};
    o.args = ddx_k_adamw_args_make(2e-4, 0.9, 0.999, 1e-8, 0.01, 1000, 1.0, 2.0, 0.9999);
    const size_t b = (size_t)o.n * 4;
    o.p = dalloc(b), o.g = dalloc(b), o.m = dalloc(b), o.v = dalloc(b), o.ema = dalloc(b);
    int ok = o.p && o.g && o.m && o.v && o.ema && !fill_normal(o.p, o.n, 0) && !fill_normal(o.g, o.n, 0) &&
             !fill_normal(o.m, o.n, 0) && !fill_normal(o.ema, o.n, 0);
    if (ok) {   // the second moment must be >= 0: uniform [0, 1)
        const int e = ddx_philox_uniform_cuda(o.v, o.n, 0x5EED, 9, 1, 0, K.s);
        if (e) ok = !fail_at("ddx_philox_uniform_cuda(v)", cudaGetErrorString((cudaError_t)e), __FILE__, __LINE__);
    }
    o.which = 0;
    double ms = ok ? time_runs(run_opt, &o) : -1;
    row("grad_sumsq", "35746307", "f32", ms, gbs(4.0 * o.n, ms), "GB/s", K.copy_gbs, NULL, 0, 0);
    o.which = 1;
    ms = ok ? time_runs(run_opt, &o) : -1;
    row("adamw+clip+ema", "35746307", "f32", ms, gbs(36.0 * o.n, ms), "GB/s", K.copy_gbs, NULL, 0, 0);
    dfree_all();
}

// ---- sampler updates ------------------------------------------------------------------------

// One sampler update over n elements: which 0 = sampler_step (ddpm, noise), 1 = sampler_step_ms
// with nh history tensors. copies: also the device copies models/sampler.c makes after the op
// (multistep: h2 <- h1, h1 <- D; Heun: h1 <- x, h2 <- D; every sampler: x <- x').
typedef struct smp_run {
    float *x, *o, *h1, *h2, *y, *xs;
    int64_t n;
    int which, nh, copies, stage;
    float sigma;
} smp_run;

static int run_smp(void *arg) {
    const smp_run *r = arg;
    const ddx_k_rng_key key = {.seed = 3, .stream = 2, .step = 5, .offset = 0};
    if (r->which == 0) {
        const ddx_k_sampler_coefs co = {.a = 1.02f, .b = -0.2f, .f = 0.1f, .g = 0.98f, .c = 0.05f, .d = 0.94f, .sigma = r->sigma,
                                        .clip = 1};
        CU(ddx_k_sampler_step_f32(r->y, r->x, r->o, r->n, co, key, K.s));
    } else {
        const ddx_k_ms_coefs co = {.a = 1.02f, .b = -0.2f, .cx = 0.6f, .cd = 0.5f, .c1 = -0.2f, .c2 = 0.1f, .sigma = r->sigma};
        CU(ddx_k_sampler_step_ms_f32(r->y, r->x, r->o, r->nh >= 1 ? r->h1 : NULL, r->nh >= 2 ? r->h2 : NULL, r->n, co, key,
                                     K.s));
    }
    if (!r->copies) return 0;
    const size_t b = (size_t)r->n * 4;
    if (r->which == 1 && r->stage) {
        CU(cudaMemcpyAsync(r->h1, r->x, b, cudaMemcpyDeviceToDevice, K.s));
        CU(cudaMemcpyAsync(r->h2, r->y + r->n, b, cudaMemcpyDeviceToDevice, K.s));
    } else if (r->which == 1) {
        if (r->nh >= 2) CU(cudaMemcpyAsync(r->h2, r->h1, b, cudaMemcpyDeviceToDevice, K.s));
        if (r->nh >= 1) CU(cudaMemcpyAsync(r->h1, r->y + r->n, b, cudaMemcpyDeviceToDevice, K.s));
    }
    CU(cudaMemcpyAsync(r->xs, r->y, b, cudaMemcpyDeviceToDevice, K.s));
    return 0;
}

static void section_sampler(void) {
    header("sampler", "one sampler update per model call, f32; bytes = the inputs read + the outputs written (the "
                      "multistep op writes x' and D); +copies adds models/sampler.c's device copies after it; %ref = "
                      "share of the copy (target >= 80% for the update)");
    typedef struct { const char *name; int which, nh, stage; float sigma; } smp_kind;
    static const smp_kind kinds[] = {{"ddpm (sampler_step)", 0, 0, 0, 0.03f}, {"ddim (sampler_step)", 0, 0, 0, 0.0f},
                                     {"dpmpp2m", 1, 1, 0, 0.0f}, {"dpmpp3m", 1, 2, 0, 0.0f},
                                     {"heun", 1, 2, 1, 0.0f}, {"euler_a", 1, 0, 0, 0.3f}};
    // 2^24 elements (64 MiB per tensor) is past L2, like the copy; the CIFAR batch fits in L2 on
    // an H100 and is shown for what a real step costs.
    static const struct { int64_t n; const char *shape; } sizes[] = {{(int64_t)1 << 24, "[16777216] (past L2)"},
                                                                     {(int64_t)128 * 32 * 32 * 3, "[128,32,32,3]"}};
    K.smp_min_share = -1;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0] && !K.dead; si++) {
        smp_run r = {.n = sizes[si].n};
        const size_t b = (size_t)r.n * 4;
        r.x = dalloc(b), r.o = dalloc(b), r.h1 = dalloc(b), r.h2 = dalloc(b), r.y = dalloc(2 * b), r.xs = dalloc(b);
        const int ok = r.x && r.o && r.h1 && r.h2 && r.y && r.xs && !fill_normal(r.x, r.n, 0) && !fill_normal(r.o, r.n, 0) &&
                       !fill_normal(r.h1, r.n, 0) && !fill_normal(r.h2, r.n, 0);
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            r.which = kinds[k].which, r.nh = kinds[k].nh, r.stage = kinds[k].stage, r.sigma = kinds[k].sigma;
            const double reads = 2.0 + (double)r.nh, writes = r.which ? 2.0 : 1.0;
            const double bytes = 4.0 * (double)r.n * (reads + writes);
            r.copies = 0;
            double ms = ok ? time_runs(run_smp, &r) : -1;
            const double rate = gbs(bytes, ms);
            row(kinds[k].name, sizes[si].shape, "f32", ms, rate, "GB/s", K.copy_gbs, NULL, 0, 0);
            if (si == 0 && ms > 0 && K.copy_gbs > 0) {
                const double share = rate / K.copy_gbs;
                if (K.smp_min_share < 0 || share < K.smp_min_share) K.smp_min_share = share, K.smp_min_name = kinds[k].name;
            }
            // The copies: each moves 8 bytes per element (read + write).
            const int ncopies = 1 + (r.which ? (r.stage ? 2 : r.nh) : 0);
            r.copies = 1;
            ms = ok ? time_runs(run_smp, &r) : -1;
            char nm[48];
            snprintf(nm, sizeof nm, "%s +copies", kinds[k].name);
            row(nm, sizes[si].shape, "f32", ms, gbs(bytes + 8.0 * (double)r.n * ncopies, ms), "GB/s", K.copy_gbs, NULL, 0, 0);
        }
        dfree_all();
    }
}

// ---- driver -------------------------------------------------------------------------------

static int setup(void) {
    CU(cudaStreamCreate(&K.s));
    CU(cudaEventCreate(&K.e0));
    CU(cudaEventCreate(&K.e1));
    CB(cublasCreate(&K.blas));
    CB(cublasSetStream(K.blas, K.s));
    CB(cublasSetMathMode(K.blas, CUBLAS_DEFAULT_MATH));   // f32 GEMMs without TF32 unless asked per call
#if DDX_BENCH_HAVE_CUDNN
    CD(cudnnCreate(&K.dnn));
    CD(cudnnSetStream(K.dnn, K.s));
#endif
    return 0;
}

static void teardown(void) {
    dfree_all();
#if DDX_BENCH_HAVE_CUDNN
    if (K.dnn) cudnnDestroy(K.dnn);
#endif
    if (K.blas) cublasDestroy(K.blas);
    if (K.e0) cudaEventDestroy(K.e0);
    if (K.e1) cudaEventDestroy(K.e1);
    if (K.s) cudaStreamDestroy(K.s);
}

// Issue 4's targets, read off the rows above (SDPA's rate comes from torch_kernels.py; the
// group_norm and sampler_step targets are shares of the copy in test_ops --perf --backend cuda).
static void print_targets(void) {
    printf("\n== targets\n");
    if (K.attn_bf16_tf >= 0)
        printf("attention fwd bf16 [128,256,256] d256: %.2f TFLOP/s (target >= SDPA's: the 'sdpa fwd' bf16 row of "
               "bench/reference/torch_kernels.py)\n", K.attn_bf16_tf);
    if (K.smp_min_share >= 0)
        printf("sampler updates past L2: lowest share of the copy %.0f%% (%s) (target >= 80%%): %s\n",
               100 * K.smp_min_share, K.smp_min_name, K.smp_min_share >= 0.8 ? "met" : "NOT met");
    if (K.conv_ratio_n)
        printf("conv2d bf16 vs cuDNN over %d rows: min %.2f, geomean %.2f, %d under 0.60 (target >= 0.60): %s\n",
               K.conv_ratio_n, K.conv_ratio_min, exp(K.conv_log_sum / K.conv_ratio_n), K.conv_ratio_low,
               K.conv_ratio_low ? "NOT met" : "met");
}

static const char *const SECTIONS = "gemm,conv,attention,optim,sampler";

int ddx_bench_kernels(int argc, char **argv) {
    memset(&K, 0, sizeof K);
    K.reps = 25, K.min_reps = 5, K.warmup = 3, K.budget_ms = 1000;
    K.attn_bf16_tf = -1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            K.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc)
            snprintf(K.filter, sizeof K.filter, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            K.reps = 7, K.warmup = 2, K.budget_ms = 200;
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: ddx-bench kernels [--reps N] [--quick] [--filter SECTION[,SECTION...]]\n"
                   "sections: %s\n"
                   "Each row: kernel | shape | dtype | ms | rate | unit | %%ref (share of the copy bandwidth or of the\n"
                   "same-dtype cuBLAS GEMM rate, both measured in this run) | baseline | its ms | its rate | ratio\n"
                   "(ddx rate / baseline rate). PyTorch at the same shapes: bench/reference/torch_kernels.py.\n"
                   "Each op (elementwise, group_norm, diffusion, ...): tests/test_ops --perf --backend cuda [--grad].\n",
                   SECTIONS);
            return 0;
        } else {
            fprintf(stderr, "ddx-bench kernels: unknown option '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    if (K.reps < 3) K.reps = 3;
    if (K.reps > MAX_SAMPLES) K.reps = MAX_SAMPLES;
    if (K.min_reps > K.reps) K.min_reps = K.reps;
    if (K.filter[0]) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", K.filter);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            const char *hit = strstr(SECTIONS, t);
            const size_t len = strlen(t);
            if (!hit || (hit != SECTIONS && hit[-1] != ',') || (hit[len] != ',' && hit[len] != '\0')) {
                fprintf(stderr, "ddx-bench kernels: unknown section '%s' (sections: %s; each op on its own: "
                                "tests/test_ops --perf --backend cuda -o OP)\n", t, SECTIONS);
                return 2;
            }
        }
    }
    int dev_count = 0;
    if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
        printf("ddx-bench kernels: SKIP: no CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    int rt = 0, drv = 0, blas_v = 0;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || cudaRuntimeGetVersion(&rt) != cudaSuccess ||
        cudaDriverGetVersion(&drv) != cudaSuccess) {
        fprintf(stderr, "ddx-bench kernels: cannot query device 0\n");
        return 1;
    }
    if (setup()) {
        teardown();
        return 1;
    }
    if (cublasGetVersion(K.blas, &blas_v) != CUBLAS_STATUS_SUCCESS) blas_v = 0;
    printf("ddx-bench kernels: %s (sm_%d%d, %d SMs, %.0f GiB), CUDA runtime %d.%d, driver %d.%d, cuBLAS %d", prop.name,
           prop.major, prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30), rt / 1000,
           rt % 1000 / 10, drv / 1000, drv % 1000 / 10, blas_v);
#if DDX_BENCH_HAVE_CUDNN
    printf(", cuDNN %zu (built against %d)\n", cudnnGetVersion(), CUDNN_VERSION);
#else
    printf(", cuDNN: not built in (its columns read n/a)\n");
#endif
    printf("timing: CUDA events, median of up to %d samples (>= %d) after %d warm-up runs, ~%.0f ms per row at most\n",
           K.reps, K.min_reps, K.warmup, K.budget_ms);
    const int need_gemm = want("gemm") || want("conv") || want("attention");
    K.smp_min_share = -1;
    if ((want("optim") || want("sampler")) && !K.dead) section_copy();
    if (need_gemm && !K.dead) section_gemm(want("gemm"));
    if (want("conv") && !K.dead) section_conv();
    if (want("attention") && !K.dead) section_attention();
    if (want("optim") && !K.dead) section_optim();
    if (want("sampler") && !K.dead) section_sampler();
    teardown();
    print_targets();
    if (K.fails) printf("\nddx-bench kernels: %d failure(s), see stderr\n", K.fails);
    return K.fails ? 1 : 0;
}

#else

int ddx_bench_kernels(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("ddx-bench kernels: SKIP: built without CUDA (reconfigure with nvcc on PATH)\n");
    return 77;
}

#endif
