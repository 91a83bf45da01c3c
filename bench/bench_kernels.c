// ddx-bench kernels: the CUDA kernels that exist so far, each timed with CUDA events (median of
// many runs after warm-up, on random data) and reported as GB/s and as a share of the
// device-to-device copy bandwidth measured in the same run (cudaMemcpyAsync, read + write).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_kernels.h"
#include "ddx_config.h"

#if DDX_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/elementwise.h"
#include "kernels/rng.h"

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "ddx-bench kernels: %s failed: %s at %s:%d\n", #call, cudaGetErrorString(e_), \
                    __FILE__, __LINE__);                                                           \
            return -1.0;                                                                           \
        }                                                                                          \
    } while (0)

typedef struct kbench {
    const char *name;
    double bytes_per_elem;   // bytes read + written per element
    int which;
} kbench;

enum { K_MEMCPY, K_FILL, K_SCALE, K_SILU, K_SILU_BF16, K_SILU_BWD, K_ADD, K_ADD_BCAST, K_CAST, K_ACC };

typedef struct bufs {
    float *x, *y, *z, *b;
    uint16_t *h, *hy;
    int64_t n;
    ddx_k_bcast same, bcast;
    cudaStream_t s;
} bufs;

static int launch(const bufs *B, int which) {
    void *s = B->s;
    switch (which) {
    case K_MEMCPY: return cudaMemcpyAsync(B->y, B->x, (size_t)B->n * 4, cudaMemcpyDeviceToDevice, B->s);
    case K_FILL: return ddx_k_fill_f32(B->y, B->n, 0.5f, s);
    case K_SCALE: return ddx_k_scale_f32(B->y, B->x, 0.7f, 0.1f, B->n, s);
    case K_SILU: return ddx_k_silu_f32(B->y, B->x, B->n, s);
    case K_SILU_BF16: return ddx_k_silu_bf16(B->hy, B->h, B->n, s);
    case K_SILU_BWD: return ddx_k_silu_bwd_f32(B->z, B->x, B->y, B->n, s);
    case K_ADD: return ddx_k_add_f32(B->z, B->x, B->y, &B->same, s);
    case K_ADD_BCAST: return ddx_k_add_f32(B->z, B->x, B->b, &B->bcast, s);
    case K_CAST: return ddx_k_cast_f32_to_bf16(B->h, B->x, B->n, s);
    case K_ACC: return ddx_k_accumulate_f32(B->z, B->x, B->n, s);
    }
    return -1;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Median milliseconds of `reps` timed launches after `warmup`, or < 0 on a CUDA error.
static double time_kernel(const bufs *B, int which, int warmup, int reps) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < warmup; i++) CK((cudaError_t)launch(B, which));
    float *ms = malloc(sizeof(float) * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(e0, B->s));
        CK((cudaError_t)launch(B, which));
        CK(cudaEventRecord(e1, B->s));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms[i], e0, e1));
    }
    qsort(ms, (size_t)reps, sizeof(float), cmp_float);
    double med = ms[reps / 2];
    free(ms);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return med;
}

int ddx_bench_kernels(int argc, char **argv) {
    int reps = 50, warmup = 10;
    int64_t n = (int64_t)1 << 26;   // 64 Mi elements: 256 MiB per f32 buffer, far past L2
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: ddx-bench kernels [--reps N]\n");
            return 0;
        } else {
            fprintf(stderr, "ddx-bench kernels: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (reps < 3) reps = 3;
    int dev_count = 0;
    if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
        printf("ddx-bench kernels: SKIP: no CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return 1;
    bufs B = {.n = n};
    // [N, H, W, C] = [256, 32, 32, 256] for the broadcast add: b is [N, 1, 1, C] (a time embedding).
    int64_t ash[4] = {256, 32, 32, 256}, bsh[4] = {256, 1, 1, 256}, one[4] = {256, 32, 32, 256};
    if (cudaStreamCreate(&B.s) != cudaSuccess || cudaMalloc((void **)&B.x, (size_t)n * 4) != cudaSuccess ||
        cudaMalloc((void **)&B.y, (size_t)n * 4) != cudaSuccess || cudaMalloc((void **)&B.z, (size_t)n * 4) != cudaSuccess ||
        cudaMalloc((void **)&B.b, 256 * 256 * 4) != cudaSuccess || cudaMalloc((void **)&B.h, (size_t)n * 2) != cudaSuccess ||
        cudaMalloc((void **)&B.hy, (size_t)n * 2) != cudaSuccess) {
        fprintf(stderr, "ddx-bench kernels: cannot allocate %.1f GiB on the device\n", (double)n * 16 / (1 << 30));
        return 1;
    }
    ddx_k_bcast_make(&B.same, ash, one);
    ddx_k_bcast_make(&B.bcast, ash, bsh);
    // Random data: timing on zeros can flatter kernels (and silu on zeros is trivial).
    if (ddx_philox_normal_cuda(B.x, n, 1, 1, 0, 0, B.s) || ddx_philox_normal_cuda(B.y, n, 1, 2, 0, 0, B.s) ||
        ddx_philox_normal_cuda(B.b, 256 * 256, 1, 3, 0, 0, B.s) || ddx_k_cast_f32_to_bf16(B.h, B.y, n, B.s) ||
        cudaStreamSynchronize(B.s) != cudaSuccess) {
        fprintf(stderr, "ddx-bench kernels: initialising the buffers failed\n");
        return 1;
    }
    const kbench ks[] = {
        {"copy (cudaMemcpyAsync D2D) [baseline]", 8, K_MEMCPY},
        {"fill f32", 4, K_FILL},
        {"scale f32 (y = a x + b)", 8, K_SCALE},
        {"silu f32", 8, K_SILU},
        {"silu bf16", 4, K_SILU_BF16},
        {"silu backward f32 (dx += ...)", 16, K_SILU_BWD},
        {"add f32 same shape", 12, K_ADD},
        {"add f32 [N,H,W,C] + [N,1,1,C]", 8, K_ADD_BCAST},
        {"cast f32 -> bf16", 6, K_CAST},
        {"accumulate f32 (dst += src)", 12, K_ACC},
    };
    printf("ddx-bench kernels: %s, %lld elements, median of %d after %d warm-up\n", prop.name, (long long)n, reps, warmup);
    printf("%-40s %10s %10s %10s\n", "kernel", "ms", "GB/s", "of copy");
    double copy_gbs = 0;
    int fails = 0;
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        double ms = time_kernel(&B, ks[i].which, warmup, reps);
        if (ms <= 0) {
            printf("%-40s FAIL\n", ks[i].name);
            fails++;
            continue;
        }
        double gbs = ks[i].bytes_per_elem * (double)n / (ms * 1e-3) / 1e9;
        if (ks[i].which == K_MEMCPY) copy_gbs = gbs;
        printf("%-40s %10.3f %10.0f %9.0f%%\n", ks[i].name, ms, gbs, copy_gbs > 0 ? 100 * gbs / copy_gbs : 0);
    }
    cudaFree(B.x);
    cudaFree(B.y);
    cudaFree(B.z);
    cudaFree(B.b);
    cudaFree(B.h);
    cudaFree(B.hy);
    cudaStreamDestroy(B.s);
    return fails ? 1 : 0;
}

#else

int ddx_bench_kernels(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("ddx-bench kernels: SKIP: built without CUDA (reconfigure with nvcc on PATH)\n");
    return 77;
}

#endif
