// Data parallelism on CPU ranks (run under mpirun; tests/test_dp.sh starts it):
//   - step 1 of an N-rank run (the global batch split over the ranks, unevenly when N does
//     not divide it) has the loss and every parameter gradient of the 1-rank step of the same
//     global batch (rank 0 runs that step itself), to fp32 tolerance; dropout is on, so the
//     masks must be drawn by global sample index too;
//   - after 5 steps (clip, AdamW, EMA) every rank holds bit-identical parameters and EMA, and
//     they equal the 1-rank run's to fp32 tolerance; the losses of every step agree.
// Usage: mpirun -np N test_dp [--bucket-mb X]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/comm.h"
#include "runtime/philox.h"
#include "train/dp.h"
#include "train/trainer.h"

#include "check.h"

#define B 7
#define S 8
#define STEPS 5

static const char *CFG =
    "run: {seed: 11, device: cpu}\n"
    "data: {dataset: fashion_mnist, image_size: 8}\n"
    "model: {type: unet_ddpm, in_channels: 1, out_channels: 1, image_size: 8, ch: 8, ch_mult: [1, 2], num_res_blocks: 1,\n"
    "        attn_resolutions: [4], dropout: 0.2, groups: 4}\n"
    "train: {batch_size: 7, lr: 2e-3, warmup_steps: 2, grad_clip: 0.5, ema_decay: 0.9}\n";

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

int main(int argc, char **argv) {
    double bucket_mb = 0.05;   // small: the tiny model gets several buckets
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--bucket-mb")) bucket_mb = atof(argv[++i]);
    ddx_launch l;
    ddx_comm *comm = NULL;
    ddx_status st = ddx_launch_from_env(&l);
    if (!st) st = ddx_comm_init(&l, DDX_CPU, 60, false, &comm);
    if (st) {
        fprintf(stderr, "test_dp: %s\n", ddx_last_error());
        return 1;
    }
    const int rank = ddx_comm_rank(comm), W = ddx_comm_world(comm);
    ddx_config cfg;
    st = ddx_config_load_string(CFG, strlen(CFG), "test_dp", &cfg);
    if (!st) st = ddx_config_validate(&cfg);
    CHECK(st == DDX_OK, "config: %s", ddx_last_error());
    ddx_trainer dp, ref;
    memset(&ref, 0, sizeof ref);
    st = ddx_trainer_init(&dp, &cfg, DDX_CPU);
    if (!st) st = ddx_trainer_set_comm(&dp, comm, bucket_mb);
    if (!st && rank == 0) st = ddx_trainer_init(&ref, &cfg, DDX_CPU);
    if (st) {
        fprintf(stderr, "test_dp: %s\n", ddx_last_error());
        return 1;
    }
    if (rank == 0)
        printf("world %d, global batch %d, %zu buckets of about %.2f MiB, rank 0 rows [%lld, %lld)\n", W, B,
               dp.dp ? dp.dp->n_buckets : 0, bucket_mb, dp.dp ? (long long)dp.dp->lo : 0LL,
               dp.dp ? (long long)(dp.dp->lo + dp.dp->n) : (long long)B);
    CHECK(W == 1 || dp.dp != NULL, "a world of %d gives a data-parallel trainer", W);
    // Every rank's share: disjoint, covering the batch, sizes differing by at most one.
    if (dp.dp) {
        double share[2] = {(double)dp.dp->n, (double)dp.dp->n};
        double lo = (double)dp.dp->lo;
        ddx_comm_allreduce_host(comm, share, 1, DDX_COMM_SUM, "shares");
        ddx_comm_allreduce_host(comm, share + 1, 1, DDX_COMM_MAX, "shares");
        double mn = (double)dp.dp->n;
        ddx_comm_allreduce_host(comm, &mn, 1, DDX_COMM_MIN, "shares");
        CHECK(share[0] == B && share[1] - mn <= 1 && lo == (double)(B * rank / W), "shares: sum %g max %g min %g lo %g", share[0],
              share[1], mn, lo);
    }
    const size_t E = (size_t)B * S * S;
    float *x = malloc(E * sizeof *x);
    const size_t np = dp.ps.numel;
    float *gref = malloc(np * sizeof *gref);
    if (!x || !gref) return 1;
    double worst_grad = 0, worst_loss = 0;
    for (int k = 1; k <= STEPS; k++) {
        // The same global batch on every rank (uniform in [-1, 1), keyed by the step).
        ddx_philox_uniform(x, (int64_t)E, 99, 7, (uint64_t)k, 0);
        for (size_t i = 0; i < E; i++) x[i] = 2 * x[i] - 1;
        float loss = 0, lref = 0;
        double gn = 0, gnref = 0;
        st = ddx_trainer_step(&dp, x, NULL, &loss, &gn);
        CHECK(st == DDX_OK, "dp step %d: %s", k, ddx_last_error());
        if (rank == 0) {
            st = ddx_trainer_step(&ref, x, NULL, &lref, &gnref);
            CHECK(st == DDX_OK, "1-rank step %d: %s", k, ddx_last_error());
            double el = fabs((double)loss - lref) / fabs((double)lref);
            worst_loss = fmax(worst_loss, el);
            CHECK(el < 2e-6, "step %d: loss %.9g, the 1-rank step %.9g (rel %.2e)", k, loss, lref, el);
            CHECK(fabs(gn - gnref) <= 1e-5 * gnref, "step %d: grad norm %.9g vs %.9g", k, gn, gnref);
            if (k == 1) {
                // Every gradient element, relative to the buffer's scale (fp32 sums in another order).
                memcpy(gref, ref.ps.buf[DDX_PBUF_GRAD], np * sizeof *gref);
                const double scale = max_abs(gref, np);
                // Normwise (fp32 sums in another order): max |g - g_ref| / max |g_ref|.
                worst_grad = max_diff(dp.ps.buf[DDX_PBUF_GRAD], gref, np) / scale;
                CHECK(worst_grad < 1e-5, "step 1: gradients differ from the 1-rank step's: max |dg| / max |g| = %.3g", worst_grad);
                size_t bad = 0;
                for (size_t p = 0; p < ref.ps.n_params; p++) {
                    const ddx_param *pp = ref.ps.params[p];
                    size_t n = (size_t)ddx_numel(&pp->value);
                    // Each parameter's gradient on its own scale too.
                    double e = max_diff(dp.ps.buf[DDX_PBUF_GRAD] + pp->offset, gref + pp->offset, n) /
                               fmax(max_abs(gref + pp->offset, n), 1e-3 * scale);
                    if (!(e < 1e-4)) {
                        if (bad++ < 5) printf("  gradient of %s differs: %.3g\n", pp->name, e);
                    }
                }
                CHECK(bad == 0, "%zu of %zu parameter gradients differ", bad, ref.ps.n_params);
            }
        }
    }
    // Bit-identical parameters on every rank (and EMA, Adam state: one hash each).
    if (dp.dp) {
        CHECK(ddx_dp_check_drift(dp.dp, STEPS) == DDX_OK, "parameters differ between ranks: %s", ddx_last_error());
        for (int b = DDX_PBUF_ADAM_M; b < DDX_PBUF_COUNT; b++) {
            float *save = dp.ps.buf[DDX_PBUF_VALUE];
            dp.ps.buf[DDX_PBUF_VALUE] = dp.ps.buf[b];   // hash buffer b through the same check
            CHECK(ddx_dp_check_drift(dp.dp, STEPS) == DDX_OK, "buffer %d differs between ranks: %s", b, ddx_last_error());
            dp.ps.buf[DDX_PBUF_VALUE] = save;
        }
        // The check can fail: a one-ulp change on one rank is caught.
        if (rank == W - 1) dp.ps.buf[DDX_PBUF_VALUE][3] = nextafterf(dp.ps.buf[DDX_PBUF_VALUE][3], 1e30f);
        CHECK(ddx_dp_check_drift(dp.dp, STEPS) == DDX_E_INTERNAL, "a one-ulp difference on rank %d is not noticed", W - 1);
        if (rank == W - 1) dp.ps.buf[DDX_PBUF_VALUE][3] = nextafterf(dp.ps.buf[DDX_PBUF_VALUE][3], -1e30f);
        printf("rank %d: %lld of %lld buckets started during backward\n", rank, (long long)dp.dp->early, (long long)dp.dp->total);
        CHECK(dp.dp->early > 0, "no bucket started before backward ended (no overlap)");
    }
    if (rank == 0) {
        // Adam divides by sqrt(v): where a gradient is tiny, its fp32 rounding moves the update by
        // a visible fraction of lr, so parameters are compared in absolute terms against lr.
        double ep = max_diff(dp.ps.buf[DDX_PBUF_VALUE], ref.ps.buf[DDX_PBUF_VALUE], np);
        double ee = max_diff(dp.ps.buf[DDX_PBUF_EMA], ref.ps.buf[DDX_PBUF_EMA], np);
        CHECK(ep < 0.05 * cfg.train.lr && ee < 0.05 * cfg.train.lr, "after %d steps: parameters differ by %.3g, EMA by %.3g (lr %g)",
              STEPS, ep, ee, cfg.train.lr);
        printf("world %d: max relative loss error %.2e, step-1 gradient error (max |dg| / max |g|) %.2e, max |dp| after %d steps "
               "%.2e, EMA %.2e\n",
               W, worst_loss, worst_grad, STEPS, ep, ee);
        ddx_trainer_free(&ref);
    }
    free(x);
    free(gref);
    ddx_trainer_free(&dp);
    ddx_comm_finalize(comm);
    char name[32];
    snprintf(name, sizeof name, "dp-%d rank %d", W, rank);
    return ddx_test_finish(name);
}
