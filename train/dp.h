// Data parallelism for the training step (train/trainer.c): which rows of the global batch
// this rank computes, and the gradient all-reduce in buckets over the parameter store's flat
// gradient buffer, started from the backward pass as each bucket's grads become final.
//
// train.batch_size is the global batch B. Rank r of W takes rows [B r / W, B (r + 1) / W)
// (shares differ by at most one row); its loss is the mean over its rows, and backward is
// seeded with n_r / B, so the summed gradient is the gradient of the mean over all B rows:
// the 1-rank step of the same batch, up to the order of the sum. The timesteps, the noise
// and dropout are drawn by global row index (Philox offsets), so each row sees the same
// random numbers whichever rank computes it.
#ifndef DDX_DP_H
#define DDX_DP_H

#include "runtime/comm.h"
#include "runtime/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ddx_dp_bucket {
    size_t lo, hi;     // element range in the flat buffers
    int uses;          // tape nodes reading parameters of the bucket (this step)
    int pending;       // of those, the ones whose backward has not run yet
    bool started;
} ddx_dp_bucket;

typedef struct ddx_dp {
    ddx_comm *comm;
    int rank, world;
    int64_t batch;          // global
    int64_t lo, n;          // this rank's rows
    ddx_param_store *ps;
    ddx_dp_bucket *b;       // launch order: the last parameters (whose grads finish first) first
    size_t n_buckets, next; // next: the first bucket not started
    ddx_status err;         // the first failure inside the hook, reported at the end
    int64_t step;
    int64_t early;          // buckets started before backward ended, over the run (overlap)
    int64_t total;          // buckets started, over the run
} ddx_dp;

// Splits the batch and the gradient buffer (buckets of about bucket_mb MiB, on parameter
// boundaries). DDX_E_INPUT when the batch has fewer rows than the world has ranks.
ddx_status ddx_dp_create(ddx_comm *comm, ddx_param_store *ps, int64_t batch, double bucket_mb, ddx_dp **out);
void ddx_dp_free(ddx_dp *dp);
// Around ddx_backward: begin counts the tape's readers of each bucket and installs the
// context's backward hook; end starts what is left, waits for every bucket (timeout: the
// comm's) and removes the hook.
ddx_status ddx_dp_backward_begin(ddx_dp *dp, ddx_ctx *c, int64_t step);
ddx_status ddx_dp_backward_end(ddx_dp *dp, ddx_ctx *c);
// The global loss from this rank's mean loss l (a [1] f32 tensor on the context's device):
// a new [1] tensor = sum over ranks of l * n_r / B (no tape).
ddx_tensor *ddx_dp_global_loss(ddx_dp *dp, ddx_ctx *c, ddx_tensor *l);
// A hash of the parameter values (host copy for CUDA) compared over all ranks: DDX_E_INTERNAL
// naming the step when two ranks hold different parameters (they must be bit-identical).
ddx_status ddx_dp_check_drift(ddx_dp *dp, int64_t step);

#ifdef __cplusplus
}
#endif

#endif
