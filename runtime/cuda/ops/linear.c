// Host glue of the linear CUDA family: linear on cuBLAS (SGEMM for f32, GemmEx with fp32
// accumulation for bf16; never TF32, see blas_enter), the bias broadcast and the bias
// gradient in kernels/linear.cu. Semantics mirror the CPU reference (runtime/ops/linear.c):
// backward ACCUMULATES into whichever grads ddx_in_grad hands out. Scratch comes from the
// activation arena and is rewound when the call returns.
#include <stdint.h>

#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/linear.h"
#include "op_impl.h"

// ============================================================================================
// linear: cuBLAS (column-major) on row-major tensors. A row-major [r, c] matrix is a
// column-major [c, r] one with leading dim c, so with x [M, K], w [O, K], y [M, O] every
// product is computed transposed, and no tensor is ever copied:
//   y  = x w^T   <=>  y^T  (O x M)  = op_T(w as [K, O]) * (x as [K, M])        gemm(T, N, O, M, K)
//   dx += dy w   <=>  dx^T (K x M) += (w as [K, O]) * (dy as [O, M])           gemm(N, N, K, M, O)
//   dw += dy^T x <=>  dw^T (K x O) += (x as [K, M]) * op_T(dy as [O, M])        gemm(N, T, K, O, M)
// ============================================================================================

// cuBLAS takes int sizes: rows go in chunks (dw accumulates over them with beta = 1).
#define LINEAR_MAX_ROWS ((int64_t)1 << 30)

// The handle is the context's, shared with other ops: the math mode (no TF32 for f32, since
// results are compared at fp32 tolerance) and host pointer mode are set for this call and
// restored after it.
typedef struct blas_state {
    cublasMath_t math;
    cublasPointerMode_t pmode;
} blas_state;

static ddx_status blas_enter(cublasHandle_t h, blas_state *s) {
    if (!h) return ddx_errorf(DDX_E_INTERNAL, "linear on CUDA: the context has no cuBLAS handle");
    DDX_CUBLAS_CHECK(cublasGetMathMode(h, &s->math));
    DDX_CUBLAS_CHECK(cublasGetPointerMode(h, &s->pmode));
    DDX_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    DDX_CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
    return DDX_OK;
}

static ddx_status blas_leave(cublasHandle_t h, const blas_state *s) {
    DDX_CUBLAS_CHECK(cublasSetMathMode(h, s->math));
    DDX_CUBLAS_CHECK(cublasSetPointerMode(h, s->pmode));
    return DDX_OK;
}

// C = A op B + beta C, alpha 1, fp32 accumulation (f32: plain SGEMM; bf16: GemmEx).
static ddx_status linear_gemm(cublasHandle_t h, ddx_k_norm_dt dt, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int nn, int k, const void *A, int lda, const void *B, int ldb, float beta, void *C, int ldc) {
    const float alpha = 1.0f;
    if (dt == DDX_K_NORM_F32)
        DDX_CUBLAS_CHECK(cublasSgemm(h, ta, tb, m, nn, k, &alpha, (const float *)A, lda, (const float *)B, ldb, &beta,
                                     (float *)C, ldc));
    else
        DDX_CUBLAS_CHECK(cublasGemmEx(h, ta, tb, m, nn, k, &alpha, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &beta, C,
                                      CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return DDX_OK;
}

typedef struct linear_dims {
    int64_t M, K, O;      // rows, In, Out
    size_t esize;         // bytes per element
    ddx_k_norm_dt dt;
} linear_dims;

static ddx_status linear_dims_of(const ddx_node *n, linear_dims *d) {
    const ddx_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    DDX_TRY(ddx_cuda_k_dt("linear", x, &d->dt));
    DDX_TRY(ddx_cuda_need_dtype("linear", w, x->dtype, "the weight"));
    DDX_TRY(ddx_cuda_need_dtype("linear", b, x->dtype, "the bias"));
    DDX_TRY(ddx_cuda_need_dtype("linear", n->out, x->dtype, "the output"));
    d->K = w->shape[1];
    d->O = w->shape[0];
    d->M = d->K > 0 ? ddx_numel(x) / d->K : 0;
    d->esize = ddx_dtype_size(x->dtype);
    if (d->K < 1 || d->O < 1 || d->K > INT32_MAX || d->O > INT32_MAX)
        return ddx_errorf(DDX_E_UNSUPPORTED, "linear on CUDA: weight [%lld, %lld] is out of cuBLAS's int range",
                          (long long)d->O, (long long)d->K);
    return DDX_OK;
}

static ddx_status linear_fwd_gemms(cublasHandle_t h, const linear_dims *d, const char *x, const char *w, char *y,
                                   float beta) {
    for (int64_t r0 = 0; r0 < d->M; r0 += LINEAR_MAX_ROWS) {
        const int64_t m = d->M - r0 < LINEAR_MAX_ROWS ? d->M - r0 : LINEAR_MAX_ROWS;
        DDX_TRY(linear_gemm(h, d->dt, CUBLAS_OP_T, CUBLAS_OP_N, (int)d->O, (int)m, (int)d->K, w, (int)d->K,
                            x + (size_t)(r0 * d->K) * d->esize, (int)d->K, beta, y + (size_t)(r0 * d->O) * d->esize,
                            (int)d->O));
    }
    return DDX_OK;
}

ddx_status ddx_cuda_linear_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    linear_dims d = {0};
    DDX_TRY(linear_dims_of(n, &d));
    if (d.M == 0) return DDX_OK;
    // As the CPU: y starts as the broadcast bias and the GEMM adds onto it.
    if (b) DDX_CUDA_CHECK(ddx_k_rows_fill_bias(n->out->data, b->data, d.M, d.O, d.dt, ddx_cuda_stream_of(c)));
    cublasHandle_t h = c->cuda ? c->cuda->blas : NULL;
    blas_state bs;
    DDX_TRY(blas_enter(h, &bs));
    ddx_status st = linear_fwd_gemms(h, &d, x->data, w->data, n->out->data, b ? 1.0f : 0.0f);
    ddx_status st2 = blas_leave(h, &bs);
    return st != DDX_OK ? st : st2;
}

static ddx_status linear_bwd_gemms(cublasHandle_t h, const linear_dims *d, const char *x, const char *w,
                                   const char *dy, char *gx, char *gw) {
    const int K = (int)d->K, O = (int)d->O;
    for (int64_t r0 = 0; r0 < d->M; r0 += LINEAR_MAX_ROWS) {
        const int64_t m = d->M - r0 < LINEAR_MAX_ROWS ? d->M - r0 : LINEAR_MAX_ROWS;
        const char *dyc = dy + (size_t)(r0 * d->O) * d->esize;   // [m, O]
        if (gx)
            DDX_TRY(linear_gemm(h, d->dt, CUBLAS_OP_N, CUBLAS_OP_N, K, (int)m, O, w, K, dyc, O, 1.0f,
                                gx + (size_t)(r0 * d->K) * d->esize, K));
        if (gw)
            DDX_TRY(linear_gemm(h, d->dt, CUBLAS_OP_N, CUBLAS_OP_T, K, O, (int)m, x + (size_t)(r0 * d->K) * d->esize, K,
                                dyc, O, 1.0f, gw, K));
    }
    return DDX_OK;
}

ddx_status ddx_cuda_linear_bwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0], *w = n->in[1], *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    ddx_tensor *gx = ddx_in_grad(c, n, 0);   // [..., In]
    ddx_tensor *gw = ddx_in_grad(c, n, 1);   // [Out, In]
    ddx_tensor *gb = ddx_in_grad(c, n, 2);   // [Out]
    if (c->status != DDX_OK) return c->status;
    if (!gx && !gw && !gb) return DDX_OK;
    linear_dims d = {0};
    DDX_TRY(linear_dims_of(n, &d));
    DDX_TRY(ddx_cuda_need_dtype("linear backward", dy, x->dtype, "the output grad"));
    DDX_TRY(ddx_cuda_need_dtype("linear backward", gx, x->dtype, "the input grad"));
    DDX_TRY(ddx_cuda_need_dtype("linear backward", gw, x->dtype, "the weight grad"));
    DDX_TRY(ddx_cuda_need_dtype("linear backward", gb, x->dtype, "the bias grad"));
    if (d.M == 0) return DDX_OK;
    if (gx || gw) {
        cublasHandle_t h = c->cuda ? c->cuda->blas : NULL;
        blas_state bs;
        DDX_TRY(blas_enter(h, &bs));
        ddx_status st = linear_bwd_gemms(h, &d, x->data, w->data, dy->data, gx ? gx->data : NULL, gw ? gw->data : NULL);
        ddx_status st2 = blas_leave(h, &bs);
        DDX_TRY(st);
        DDX_TRY(st2);
    }
    if (gb) {
        ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
        float *scratch = NULL;
        DDX_TRY(ddx_cuda_scratch_f32(c, ddx_k_colsum_scratch_floats(d.M, d.O), "linear backward", &scratch));
        DDX_CUDA_CHECK(ddx_k_colsum_acc(gb->data, dy->data, d.M, d.O, d.dt, scratch, ddx_cuda_stream_of(c)));
        DDX_TRY(ddx_arena_rewind(&c->act, mark));
    }
    return DDX_OK;
}

