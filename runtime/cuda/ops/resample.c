// Host glue of the resampling CUDA family: upsample2x, pool2x, pool2d and resize (kernels in
// kernels/resample.cu). Semantics mirror the CPU reference in runtime/ops/resample.c:
// backward accumulates into the input grads, nothing is saved on the tape (max-pool
// recomputes its argmax from x). f32 and bf16 storage are both computed natively (fp32 math);
// anything else is refused with DDX_E_UNSUPPORTED.
#include <math.h>
#include <stdint.h>

#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/resample.h"
#include "op_impl.h"

static ddx_status need_nhwc(const char *op, const ddx_tensor *x) {
    if (x->ndim != 4)
        return ddx_errorf(DDX_E_INTERNAL, "%s on CUDA: input must be [N, H, W, C] (the front-end should have refused it)",
                          op);
    return DDX_OK;
}

// =========================================================================================
// upsample2x
// =========================================================================================
static ddx_status upsample_mode(const ddx_node *n, int *bilinear) {
    switch (n->p.upsample2x.mode) {
    case DDX_UPSAMPLE_NEAREST: *bilinear = 0; return DDX_OK;
    case DDX_UPSAMPLE_BILINEAR: *bilinear = 1; return DDX_OK;
    default:
        return ddx_errorf(DDX_E_UNSUPPORTED, "upsample2x on CUDA: unknown mode %d (nearest or bilinear)",
                          (int)n->p.upsample2x.mode);
    }
}

ddx_status ddx_cuda_upsample2x_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0];   // [N, H, W, C]
    ddx_tensor *y = n->out;           // [N, 2H, 2W, C]
    DDX_TRY(need_nhwc("upsample2x", x));
    DDX_TRY(ddx_cuda_need_float("upsample2x", x, "input"));
    DDX_TRY(ddx_cuda_need_dtype("upsample2x", y, x->dtype, "the output"));
    int bil = 0;
    DDX_TRY(upsample_mode(n, &bil));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (x->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_upsample2x_f32(y->data, x->data, N, H, W, C, bil, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_upsample2x_bf16(y->data, x->data, N, H, W, C, bil, ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_upsample2x_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);   // [N, H, W, C]
    if (!gx) return c->status;
    const ddx_tensor *x = n->in[0], *dy;     // dy [N, 2H, 2W, C]
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    DDX_TRY(need_nhwc("upsample2x", x));
    DDX_TRY(ddx_cuda_need_float("upsample2x", dy, "the output grad"));
    DDX_TRY(ddx_cuda_need_dtype("upsample2x", gx, dy->dtype, "the input grad"));
    int bil = 0;
    DDX_TRY(upsample_mode(n, &bil));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (dy->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_upsample2x_bwd_f32(gx->data, dy->data, N, H, W, C, bil, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_upsample2x_bwd_bf16(gx->data, dy->data, N, H, W, C, bil, ddx_cuda_stream_of(c)));
    return DDX_OK;
}

// =========================================================================================
// pool2x
// =========================================================================================
static ddx_status pool_mode(const ddx_node *n, int *avg) {
    switch (n->p.pool2x.mode) {
    case DDX_POOL_MAX: *avg = 0; return DDX_OK;
    case DDX_POOL_AVG: *avg = 1; return DDX_OK;
    default: return ddx_errorf(DDX_E_UNSUPPORTED, "pool2x on CUDA: unknown mode %d (max or avg)", (int)n->p.pool2x.mode);
    }
}

static ddx_status pool_shape(const ddx_tensor *x) {
    DDX_TRY(need_nhwc("pool2x", x));
    if (x->shape[1] % 2 != 0 || x->shape[2] % 2 != 0)
        return ddx_errorf(DDX_E_INTERNAL, "pool2x on CUDA: H and W must be even (the front-end should have refused it)");
    return DDX_OK;
}

ddx_status ddx_cuda_pool2x_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0];   // [N, H, W, C]
    ddx_tensor *y = n->out;           // [N, H/2, W/2, C]
    DDX_TRY(pool_shape(x));
    DDX_TRY(ddx_cuda_need_float("pool2x", x, "input"));
    DDX_TRY(ddx_cuda_need_dtype("pool2x", y, x->dtype, "the output"));
    int avg = 0;
    DDX_TRY(pool_mode(n, &avg));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (x->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_pool2x_f32(y->data, x->data, N, H, W, C, avg, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_pool2x_bf16(y->data, x->data, N, H, W, C, avg, ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_pool2x_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);   // [N, H, W, C]
    if (!gx) return c->status;
    const ddx_tensor *x = n->in[0], *dy;     // dy [N, H/2, W/2, C]
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    DDX_TRY(pool_shape(x));
    DDX_TRY(ddx_cuda_need_float("pool2x", x, "input"));
    DDX_TRY(ddx_cuda_need_dtype("pool2x", dy, x->dtype, "the output grad"));
    DDX_TRY(ddx_cuda_need_dtype("pool2x", gx, x->dtype, "the input grad"));
    int avg = 0;
    DDX_TRY(pool_mode(n, &avg));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (x->dtype == DDX_F32)
        DDX_CUDA_CHECK(ddx_k_pool2x_bwd_f32(gx->data, x->data, dy->data, N, H, W, C, avg, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_pool2x_bwd_bf16(gx->data, x->data, dy->data, N, H, W, C, avg, ddx_cuda_stream_of(c)));
    return DDX_OK;
}

// =========================================================================================
// pool2d
// =========================================================================================
static ddx_status pool2d_launch(ddx_ctx *c, const ddx_node *n, void *out, const ddx_tensor *x, const void *dy) {
    const ddx_pool2d_params *p = &n->p.pool2d;
    if (p->mode != DDX_POOL_MAX && p->mode != DDX_POOL_AVG)
        return ddx_errorf(DDX_E_UNSUPPORTED, "pool2d on CUDA: unknown mode %d (max or avg)", (int)p->mode);
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    const int64_t Ho = n->out->shape[1], Wo = n->out->shape[2];
    const int avg = p->mode == DDX_POOL_AVG, inc = p->count_include_pad;
    void *s = ddx_cuda_stream_of(c);
    if (x->dtype == DDX_F32) {
        if (dy)
            DDX_CUDA_CHECK(ddx_k_pool2d_bwd_f32(out, x->data, dy, N, H, W, C, Ho, Wo, p->kh, p->kw, p->stride, p->pad_h,
                                                p->pad_w, avg, inc, s));
        else
            DDX_CUDA_CHECK(ddx_k_pool2d_f32(out, x->data, N, H, W, C, Ho, Wo, p->kh, p->kw, p->stride, p->pad_h, p->pad_w,
                                            avg, inc, s));
    } else {
        if (dy)
            DDX_CUDA_CHECK(ddx_k_pool2d_bwd_bf16(out, x->data, dy, N, H, W, C, Ho, Wo, p->kh, p->kw, p->stride, p->pad_h,
                                                 p->pad_w, avg, inc, s));
        else
            DDX_CUDA_CHECK(ddx_k_pool2d_bf16(out, x->data, N, H, W, C, Ho, Wo, p->kh, p->kw, p->stride, p->pad_h,
                                             p->pad_w, avg, inc, s));
    }
    return DDX_OK;
}

ddx_status ddx_cuda_pool2d_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0];   // [N, H, W, C]
    DDX_TRY(need_nhwc("pool2d", x));
    DDX_TRY(ddx_cuda_need_float("pool2d", x, "input"));
    DDX_TRY(ddx_cuda_need_dtype("pool2d", n->out, x->dtype, "the output"));
    return pool2d_launch(c, n, n->out->data, x, NULL);
}

ddx_status ddx_cuda_pool2d_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);   // [N, H, W, C]
    if (!gx) return c->status;
    const ddx_tensor *x = n->in[0], *dy;     // dy [N, Ho, Wo, C]
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    DDX_TRY(need_nhwc("pool2d", x));
    DDX_TRY(ddx_cuda_need_float("pool2d", x, "input"));
    DDX_TRY(ddx_cuda_need_dtype("pool2d", dy, x->dtype, "the output grad"));
    DDX_TRY(ddx_cuda_need_dtype("pool2d", gx, x->dtype, "the input grad"));
    return pool2d_launch(c, n, gx->data, x, dy->data);
}

// =========================================================================================
// resize
// =========================================================================================
ddx_status ddx_cuda_resize_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0];   // [N, H, W, C]
    ddx_tensor *y = n->out;           // [N, Ho, Wo, C]
    DDX_TRY(need_nhwc("resize", x));
    DDX_TRY(ddx_cuda_need_float("resize", x, "input"));
    DDX_TRY(ddx_cuda_need_dtype("resize", y, x->dtype, "the output"));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (x->dtype == DDX_F32)
        DDX_CUDA_CHECK(ddx_k_resize_f32(y->data, x->data, N, H, W, C, y->shape[1], y->shape[2], ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_resize_bf16(y->data, x->data, N, H, W, C, y->shape[1], y->shape[2], ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_resize_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);   // [N, H, W, C]
    if (!gx) return c->status;
    const ddx_tensor *x = n->in[0], *dy;     // dy [N, Ho, Wo, C]
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    DDX_TRY(need_nhwc("resize", x));
    DDX_TRY(ddx_cuda_need_float("resize", dy, "the output grad"));
    DDX_TRY(ddx_cuda_need_dtype("resize", gx, dy->dtype, "the input grad"));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    const int64_t Ho = n->out->shape[1], Wo = n->out->shape[2];
    if (dy->dtype == DDX_F32)
        DDX_CUDA_CHECK(ddx_k_resize_bwd_f32(gx->data, dy->data, N, H, W, C, Ho, Wo, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_resize_bwd_bf16(gx->data, dy->data, N, H, W, C, Ho, Wo, ddx_cuda_stream_of(c)));
    return DDX_OK;
}
