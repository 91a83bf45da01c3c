// CUDA kernels of the losses family: the reductions to one value (sum, mean, mse_loss) with
// their backward passes.
//
// Launcher contract as in elementwise.h: raw device pointers, 64-bit element counts, the
// cudaStream_t passed as void*, the launch's cudaError_t returned as an int (0 = success).
// Backward launchers ACCUMULATE into their gradient outputs. Every reduction is a fixed-order
// two-pass sum (per-block partials, then a fixed-order fold), so the results are bit-identical
// from run to run on one device. Scratch memory comes from the caller (the activation arena),
// sized by ddx_k_reduce_scratch_floats.
#ifndef DDX_KERNELS_LOSSES_H
#define DDX_KERNELS_LOSSES_H

#include <stdint.h>

#include "kernels/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- reductions to [1] --------------------------------------------------------------------
int64_t ddx_k_reduce_scratch_floats(void);
// out[0] = (float)(sum of x / div), summed in double.
int ddx_k_sum_div(float *out, const void *x, ddx_k_norm_dt dt, int64_t n, double div, float *scratch, void *stream);
// out[0] = (float)(sum of (a - b)^2 / n), in double.
int ddx_k_mse_fwd(float *out, const float *a, const float *b, int64_t n, float *scratch, void *stream);
// dx += (float)(g[0] / div), g read on the device.
int ddx_k_scalar_grad_acc(void *dx, ddx_k_norm_dt dt, const float *g, int64_t n, double div, void *stream);
// k = (float)(2 g[0] / n); dpred += k (a - b), dtarget -= k (a - b); either may be NULL.
int ddx_k_mse_bwd(float *dpred, float *dtarget, const float *a, const float *b, const float *g, int64_t n, void *stream);

#ifdef __cplusplus
}
#endif

#endif
