// CUDA kernels of the linear family: the helpers around linear's cuBLAS GEMMs (the GEMMs
// themselves run in runtime/cuda/ops/linear.c).
//
// Launcher contract as in elementwise.h: raw device pointers, 64-bit element counts, the
// cudaStream_t passed as void*, the launch's cudaError_t returned as an int (0 = success).
// Backward launchers ACCUMULATE into their gradient outputs. The column sum is a fixed-order
// two-pass sum (per-block partials, then a fixed-order fold): bit-identical from run to run
// on one device. Scratch memory comes from the caller, sized by ddx_k_colsum_scratch_floats.
#ifndef DDX_KERNELS_LINEAR_H
#define DDX_KERNELS_LINEAR_H

#include <stdint.h>

#include "kernels/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- linear helpers -----------------------------------------------------------------------
// y[r, c] = bias[c] for a row-major [rows, cols] y (the GEMM then adds with beta = 1).
int ddx_k_rows_fill_bias(void *y, const void *bias, int64_t rows, int64_t cols, ddx_k_norm_dt dt, void *stream);
// db[c] += sum over r of dy[r, c].
int64_t ddx_k_colsum_scratch_floats(int64_t rows, int64_t cols);
int ddx_k_colsum_acc(void *db, const void *dy, int64_t rows, int64_t cols, ddx_k_norm_dt dt, float *scratch,
                     void *stream);

#ifdef __cplusplus
}
#endif

#endif
