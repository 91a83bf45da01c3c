// CUDA kernels of the norm family: GroupNorm (optionally fused with SiLU and with the
// ResBlock's per-(sample, channel) time-embedding add) forward and backward.
//
// Launcher contract as in elementwise.h: raw device pointers, 64-bit element counts, the
// cudaStream_t passed as void*, the launch's cudaError_t returned as an int (0 = success).
// The backward ACCUMULATES into dgamma and dbeta, and into dx unless told to write it
// (dx_overwrite). Every reduction is a fixed-order
// two-pass sum (per-block partials, then a fixed-order fold), so the results are bit-identical
// from run to run on one device. Scratch memory comes from the caller (the activation arena),
// sized by the *_scratch_floats functions, whose answer depends only on the shape and device.
#ifndef DDX_KERNELS_NORM_H
#define DDX_KERNELS_NORM_H

#include <stdint.h>

#include "kernels/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- group_norm ---------------------------------------------------------------------------
// x [N, S, C] (S = H*W or L, NHWC), G groups of cg = C / G consecutive channels; statistics
// per (n, g) over S * cg elements. x, y, dy and dx share x_dt; gamma, beta and their grads
// share g_dt (f32 with any x, or bf16 with a bf16 x).
// On sm_90 a shape whose item fits 16 blocks' shared memory (16-byte aligned tensors, C a
// multiple of 16 / sizeof(x element), C <= 1024) runs single-pass on one thread-block cluster
// per item; anything else, or the environment DDX_GN_CLUSTER=0 (read once per process), takes
// the three-pass tiled kernels. DDX_GN_CLUSTER=1/2/4/8/16 forces a cluster size where it fits.
// The cluster path runs its one-pass kernels (one-pass shifted statistics, load overlapped
// with the statistics, fewer instructions per element); DDX_GN_CL_V2=0 (read once per process)
// selects the two-pass ones.
// Both paths are deterministic; they differ from each other in the last bits (summation order).
typedef struct ddx_k_gn_shape {
    int64_t N, S, C, G;
    float eps;          // forward only: rstd = 1 / sqrt(biased variance + eps)
    int silu;           // y = silu(a) instead of a = xhat * gamma + beta
    ddx_k_norm_dt x_dt, g_dt;
    int dx_overwrite;   // backward: 1 writes dx (every element; it need not be zeroed), 0 adds
} ddx_k_gn_shape;

int64_t ddx_k_group_norm_fwd_scratch_floats(const ddx_k_gn_shape *sh);
int64_t ddx_k_group_norm_bwd_scratch_floats(const ddx_k_gn_shape *sh);

// y = act((x - mean) * (rstd * gamma) + beta); mean and rstd [N, G] f32 written for backward.
int ddx_k_group_norm_fwd(void *y, float *mean, float *rstd, const void *x, const void *gamma, const void *beta,
                         float *scratch, const ddx_k_gn_shape *sh, void *stream);
// dx += ... (or dx = ... with sh->dx_overwrite), dgamma += ..., dbeta += ... (each may be
// NULL), from x, dy and the saved
// mean/rstd; with silu the pre-activation is recomputed from x.
int ddx_k_group_norm_bwd(void *dx, void *dgamma, void *dbeta, const void *x, const void *dy, const void *gamma,
                         const void *beta, const float *mean, const float *rstd, float *scratch,
                         const ddx_k_gn_shape *sh, void *stream);

// The ResBlock's time-embedding add fused in: what is normalised is z = x + add[n, c], add
// [N, C] of x's dtype, formed in fp32 as x is read (z is never stored, nor rounded to bf16).
// Backward recomputes z and gives dadd[n, c] += sum over S of dz as well (dx, dadd, dgamma,
// dbeta: each may be NULL), with its scratch from ddx_k_group_norm_add_bwd_scratch_floats (the
// forward's is ddx_k_group_norm_fwd_scratch_floats). These shapes take the tiled kernels on
// every device: the cluster kernels have no add yet. add == NULL is the plain group_norm.
int64_t ddx_k_group_norm_add_bwd_scratch_floats(const ddx_k_gn_shape *sh);
int ddx_k_group_norm_add_fwd(void *y, float *mean, float *rstd, const void *x, const void *add, const void *gamma,
                             const void *beta, float *scratch, const ddx_k_gn_shape *sh, void *stream);
int ddx_k_group_norm_add_bwd(void *dx, void *dadd, void *dgamma, void *dbeta, const void *x, const void *add,
                             const void *dy, const void *gamma, const void *beta, const float *mean, const float *rstd,
                             float *scratch, const ddx_k_gn_shape *sh, void *stream);

#ifdef __cplusplus
}
#endif

#endif
