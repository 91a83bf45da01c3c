// ddx-bench-allreduce: all-reduce time at the gradient bucket sizes of a model, with
// nccl-tests' definitions (algbw = bytes / time, busbw = algbw * 2 (n - 1) / n), on whatever
// the comm layer runs: MPI on CPU ranks (mpirun -np N ddx-bench-allreduce), NCCL on GPUs
// (--device cuda; one rank per GPU). Also prints the bucket schedule ddx-train uses.
//
//   mpirun -np N ddx-bench-allreduce [--config configs/cifar10_ddpm.yaml] [--bucket-mb 25]
//                                    [--device cpu|cuda] [--reps 20]
// Not a test: it asserts nothing about speed. Rank 0 prints one table.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/model.h"
#include "runtime/comm.h"
#include "runtime/cuda.h"
#include "runtime/ops.h"
#include "runtime/tensor.h"
#include "train/dp.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int die(const char *what) {
    fprintf(stderr, "ddx-bench-allreduce: %s: %s\n", what, ddx_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *config = "configs/cifar10_ddpm.yaml";
    double bucket_mb = 25;
    int reps = 20;
    ddx_device dev = DDX_CPU;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--bucket-mb") && i + 1 < argc) bucket_mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) dev = !strcmp(argv[++i], "cuda") ? DDX_CUDA : DDX_CPU;
        else {
            fprintf(stderr, "usage: ddx-bench-allreduce [--config YAML] [--bucket-mb MB] [--device cpu|cuda] [--reps N]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    ddx_launch l;
    ddx_comm *comm = NULL;
    ddx_config cfg;
    if (ddx_launch_from_env(&l)) return die("launch");
    if (ddx_config_resolve(&cfg, config, NULL, 0)) return die("config");
    if (ddx_comm_init(&l, dev, 120, dev == DDX_CUDA, &comm)) return die("comm");
    ddx_ctx ctx;   // CUDA: the compute stream NCCL is ordered against
    if (ddx_ctx_init(&ctx, dev, (size_t)1 << 20)) return die("context");
    if (ctx.cuda) ddx_comm_set_compute(comm, ctx.cuda);
    const int rank = ddx_comm_rank(comm), W = ddx_comm_world(comm);
    // The model's parameter layout only (values, on the host): the buckets are ranges of it.
    ddx_param_store ps;
    ddx_model *m = NULL;
    ddx_param_store_init(&ps, DDX_CPU);
    if (ddx_model_create(&cfg, &ps, &m) || ddx_param_store_finalize_inference(&ps)) return die("model");
    ddx_dp *dp = NULL;
    if (ddx_dp_create(comm, &ps, W, bucket_mb, &dp)) return die("buckets");
    const size_t numel = ps.numel;
    float *buf = NULL;
    if (ddx_dev_alloc(dev, numel * sizeof(float), (void **)&buf)) return die("buffer");
    if (ddx_dev_memset(dev, buf, 0, numel * sizeof(float))) return die("memset");
    if (rank == 0) {
        printf("model %s: %zu parameters, gradient %.1f MB (f32, padded), %zu buckets (each closed at the first parameter boundary past %g MiB; launch order):", config,
               ddx_param_count(&ps), numel * 4e-6, dp->n_buckets, bucket_mb);
        for (size_t b = 0; b < dp->n_buckets; b++) printf(" %.2f", (double)(dp->b[b].hi - dp->b[b].lo) * 4e-6);
        printf(" MB\nworld %d, %s backend, %d reps, median\n", W, ddx_comm_backend_name(ddx_comm_backend_of(comm)), reps);
        printf("| size (MB) | what | time (ms) | algbw (GB/s) | busbw (GB/s) |\n|---|---|---|---|---|\n");
    }
    // Sizes: each distinct bucket size, then the whole gradient as the buckets of one step.
    double *t = malloc((size_t)reps * sizeof *t);
    for (size_t b = 0; b <= dp->n_buckets && t; b++) {
        const bool step = b == dp->n_buckets;
        if (!step && b > 0 && dp->b[b].hi - dp->b[b].lo == dp->b[b - 1].hi - dp->b[b - 1].lo) continue;
        int64_t n = step ? (int64_t)numel : (int64_t)(dp->b[b].hi - dp->b[b].lo);
        for (int r = -2; r < reps; r++) {   // two warm-up rounds
            if (ddx_comm_barrier(comm)) return die("barrier");
            double t0 = now_s();
            if (step) {
                for (size_t k = 0; k < dp->n_buckets; k++)
                    if (ddx_comm_allreduce_start(comm, buf + dp->b[k].lo, (int64_t)(dp->b[k].hi - dp->b[k].lo), DDX_F32, DDX_COMM_SUM))
                        return die("all-reduce");
                if (ddx_comm_wait_all(comm, "the bucketed all-reduce")) return die("all-reduce");
            } else if (ddx_comm_allreduce(comm, buf, n, DDX_F32, DDX_COMM_SUM)) {
                return die("all-reduce");
            }
            if (ctx.cuda && ddx_cuda_sync(ctx.cuda)) return die("sync");
            double dt = now_s() - t0;
            double mx = dt;
            if (ddx_comm_allreduce_host(comm, &mx, 1, DDX_COMM_MAX, "the timing")) return die("timing");
            if (r >= 0) t[r] = mx;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        const double med = t[reps / 2], bytes = (double)n * 4;
        const double alg = bytes / med / 1e9, bus = alg * 2.0 * (W - 1) / W;
        if (rank == 0)
            printf("| %.2f | %s | %.3f | %.2f | %.2f |\n", bytes * 1e-6, step ? "all buckets of one step" : "one bucket", med * 1e3, alg,
                   bus);
    }
    free(t);
    ddx_dev_free(dev, buf);
    ddx_dp_free(dp);
    ddx_model_free(m);
    ddx_param_store_free(&ps);
    ddx_ctx_free(&ctx);
    ddx_comm_finalize(comm);
    return 0;
}
