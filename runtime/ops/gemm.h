// The CPU GEMM job that conv2d and linear share (implemented in runtime/ops/conv.c): linear
// is conv2d's direct case (a 1x1 stride-1 conv over rows), so both run one threaded,
// row-chunked GEMM with the same fixed-order reduction of partial weight and bias gradients.
#ifndef DDX_OPS_GEMM_H
#define DDX_OPS_GEMM_H

#include "op_impl.h"

// cblas takes int sizes; chunk the row dimension so no count is ever truncated.
#define DDX_GEMM_MAX_ROWS ((int64_t)1 << 30)

typedef struct conv_geom {
    int64_t N, H, W, Ci;      // input
    int64_t Co, KH, KW;       // weight
    int64_t Ho, Wo;           // output
    int64_t K;                // KH*KW*Ci: im2col row length
    int64_t rows;             // N*Ho*Wo: output pixels
    int stride, pt, pl;
    bool direct;              // 1x1, stride 1, no padding: x is the im2col matrix
} conv_geom;

// One conv2d or linear call split over the thread pool. Every thread owns its im2col chunk,
// its partial weight gradient (thread 0 accumulates straight into the real one) and its
// partial bias sums; the partials are folded in thread order afterwards (threads.h).
typedef struct gemm_job {
    conv_geom g;              // linear: rows, Co = out, K = in, direct
    int64_t unit;             // output rows per unit of the parallel range
    int64_t chunk;            // im2col rows per GEMM
    const float *x, *w, *b, *dy;
    float *y, *gx, *gw;
    float *cols;              // [T, chunk, K]
    float *gw_part;           // [T - 1, Co, K]
    double *gb_part;          // [T, Co]
} gemm_job;

// The optional bias of conv2d and linear: [rows of w] on the context's device, x's dtype.
bool ddx_gemm_bias_ok(ddx_ctx *c, const char *op, const char *dim, const ddx_tensor *bias, const ddx_tensor *w,
                      const ddx_tensor *x);
// DDX_E_UNSUPPORTED unless every present input is f32 (the CPU computes in f32 only).
ddx_status ddx_gemm_check_f32(const ddx_node *n, const char *what);
// The forward over units [u0, u1) of a prepared job (a ddx_parallel_fn).
void ddx_gemm_fwd_range(void *arg, int64_t u0, int64_t u1, int tid);
// Partial gradient buffers of a backward job: [T - 1, Co, K] floats and [T, Co] doubles.
ddx_status ddx_gemm_bwd_scratch(ddx_ctx *c, gemm_job *j, bool want_gw, bool want_gb, const char *what);
// Runs a prepared job's backward (scratch already carved out) and folds the partials.
void ddx_gemm_bwd_run(gemm_job *j, float *gb_out);

#endif
