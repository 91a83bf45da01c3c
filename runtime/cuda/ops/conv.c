// Host glue of the conv CUDA family: adapts conv2d tape nodes to kernels/conv.h.
// Semantics mirror the CPU reference (runtime/ops/conv.c): forward saves nothing (backward
// reads x and w from the node's inputs), backward ACCUMULATES into whichever of dx, dw, db
// ddx_in_grad hands out. Scratch (split-K partials, bias-sum partials) comes from the
// activation arena and is rewound when the call returns: later work on the same stream may
// reuse it, which stream order makes safe.
#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/conv.h"
#include "op_impl.h"

// f32 or bf16, and one dtype for every tensor the call touches (NULL entries skipped).
static ddx_status conv_dtypes(const char *what, ddx_dtype dt, int n, const ddx_tensor *const *ts) {
    if (dt != DDX_F32 && dt != DDX_BF16)
        return ddx_errorf(DDX_E_UNSUPPORTED, "conv2d %s on CUDA: dtype %s is not supported (f32, bf16)", what,
                          ddx_dtype_name(dt));
    for (int i = 0; i < n; i++)
        if (ts[i] && ts[i]->dtype != dt)
            return ddx_errorf(DDX_E_UNSUPPORTED, "conv2d %s on CUDA: mixed dtypes %s and %s", what, ddx_dtype_name(dt),
                              ddx_dtype_name(ts[i]->dtype));
    return DDX_OK;
}

// The kernels' geometry from the node (the output's shape gives Ho, Wo).
static ddx_status conv_geom_of_node(const ddx_node *n, ddx_k_conv_geom *g) {
    const ddx_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    const ddx_conv2d_params *p = &n->p.conv2d;
    *g = (ddx_k_conv_geom){.N = x->shape[0], .H = x->shape[1], .W = x->shape[2], .Ci = x->shape[3],
                           .Co = w->shape[0], .KH = w->shape[1], .KW = w->shape[2],
                           .Ho = y->shape[1], .Wo = y->shape[2],
                           .stride = p->stride, .pad_top = p->pad_top, .pad_left = p->pad_left};
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4 || w->shape[3] != g->Ci || y->shape[0] != g->N ||
        y->shape[3] != g->Co)
        return ddx_errorf(DDX_E_INTERNAL, "conv2d on CUDA: inconsistent node shapes (the front-end should have refused them)");
    if (!ddx_k_conv2d_supported(g))
        return ddx_errorf(DDX_E_UNSUPPORTED,
                          "conv2d on CUDA: geometry not supported (x [%lld,%lld,%lld,%lld], w [%lld,%lld,%lld,%lld], "
                          "stride %d): every pixel count and GEMM dimension must be below 2^30",
                          (long long)g->N, (long long)g->H, (long long)g->W, (long long)g->Ci, (long long)g->Co,
                          (long long)g->KH, (long long)g->KW, (long long)g->Ci, p->stride);
    return DDX_OK;
}

// n floats of device scratch from the activation arena (the caller rewinds it).
static ddx_status conv_scratch(ddx_ctx *c, int64_t n, const char *what, void **out) {
    ddx_tensor *t = ddx_new(c, DDX_F32, 1, (int64_t[]){n > 0 ? n : 1});   // [n]
    if (!t) return ddx_errorf(DDX_E_NOMEM, "conv2d %s on CUDA: no activation-arena memory for %lld floats of scratch", what,
                              (long long)n);
    *out = t->data;
    return DDX_OK;
}

ddx_status ddx_cuda_conv2d_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];   // [N,H,W,Ci], [Co,KH,KW,Ci], [Co] or NULL
    ddx_tensor *y = n->out;                                          // [N,Ho,Wo,Co]
    const ddx_tensor *r = n->n_inputs > 3 ? n->in[3] : NULL;         // [N,Ho,Wo,Co] or NULL
    DDX_TRY(conv_dtypes("forward", x->dtype, 4, (const ddx_tensor *[]){w, b, y, r}));
    ddx_k_conv_geom g;
    DDX_TRY(conv_geom_of_node(n, &g));
    g.residual = r ? r->data : NULL;
    void *s = ddx_cuda_stream_of(c);
    if (x->dtype == DDX_F32 && c->tf32)
        DDX_CUDA_CHECK(ddx_k_conv2d_fwd_tf32(y->data, x->data, w->data, b ? b->data : NULL, &g, s));
    else if (x->dtype == DDX_F32)
        DDX_CUDA_CHECK(ddx_k_conv2d_fwd_f32(y->data, x->data, w->data, b ? b->data : NULL, &g, s));
    else
        DDX_CUDA_CHECK(ddx_k_conv2d_fwd_bf16(y->data, x->data, w->data, b ? b->data : NULL, &g, s));
    return DDX_OK;
}

ddx_status ddx_cuda_conv2d_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *x = n->in[0];
    const ddx_tensor *w = n->in[1];   // [N,H,W,Ci], [Co,KH,KW,Ci]
    // An input grad nobody has written yet is written by dgrad, not zeroed and added into
    // (unless x is also the residual, whose gradient is added into it below first).
    const bool fresh_gx = (n->n_inputs < 4 || n->in[3] != x) && ddx_grad_fresh(c, x);
    if (c->status != DDX_OK) return c->status;
    ddx_tensor *gx = ddx_in_grad(c, n, 0);           // [N,H,W,Ci]
    ddx_tensor *gw = ddx_in_grad(c, n, 1);           // [Co,KH,KW,Ci]
    ddx_tensor *gb = ddx_in_grad(c, n, 2);           // [Co]
    if (c->status != DDX_OK) return c->status;
    ddx_tensor *dy = n->out->grad;                   // [N,Ho,Wo,Co]
    if (!dy) return ddx_errorf(DDX_E_INTERNAL, "conv2d backward on CUDA: the output has no grad");
    // The residual's gradient is dy: its buffer where the residual has no grad yet (the
    // kernels below that read dy are ordered before later writers), else added into it.
    ddx_tensor *r = n->n_inputs > 3 ? n->in[3] : NULL;
    if (r && r->requires_grad && !ddx_grad_take(r, dy)) {
        ddx_tensor *gr = ddx_in_grad(c, n, 3);
        if (!gr) return c->status;
        DDX_TRY(conv_dtypes("backward", gr->dtype, 1, (const ddx_tensor *[]){dy}));
        DDX_TRY(ddx_cuda_accumulate(c, gr, dy));
    }
    if (!gx && !gw && !gb) return DDX_OK;
    DDX_TRY(conv_dtypes("backward", x->dtype, 5, (const ddx_tensor *[]){w, dy, gx, gw, gb}));
    ddx_k_conv_geom g;
    DDX_TRY(conv_geom_of_node(n, &g));
    void *s = ddx_cuda_stream_of(c);
    const bool f32 = x->dtype == DDX_F32;

    if (gx) {
        g.dx_overwrite = fresh_gx;
        if (f32 && c->tf32) DDX_CUDA_CHECK(ddx_k_conv2d_dgrad_tf32(gx->data, dy->data, w->data, &g, s));
        else if (f32) DDX_CUDA_CHECK(ddx_k_conv2d_dgrad_f32(gx->data, dy->data, w->data, &g, s));
        else DDX_CUDA_CHECK(ddx_k_conv2d_dgrad_bf16(gx->data, dy->data, w->data, &g, s));
        g.dx_overwrite = 0;
    }
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    if (gw) {
        const int64_t splits = !f32 ? ddx_k_conv2d_wgrad_splits_bf16(&g)
                               : c->tf32 ? ddx_k_conv2d_wgrad_splits_tf32(&g)
                                         : ddx_k_conv2d_wgrad_splits(&g);
        void *part = NULL;   // [splits, Co, KH*KW*Ci] f32
        if (splits > 1) DDX_TRY(conv_scratch(c, splits * g.Co * g.KH * g.KW * g.Ci, "weight gradient", &part));
        if (f32 && c->tf32) DDX_CUDA_CHECK(ddx_k_conv2d_wgrad_tf32(gw->data, dy->data, x->data, part, &g, s));
        else if (f32) DDX_CUDA_CHECK(ddx_k_conv2d_wgrad_f32(gw->data, dy->data, x->data, part, &g, s));
        else DDX_CUDA_CHECK(ddx_k_conv2d_wgrad_bf16(gw->data, dy->data, x->data, part, &g, s));
    }
    if (gb) {
        void *part = NULL;   // [parts, Co] f64, carved from an f32 block (the arena aligns to 256 bytes)
        DDX_TRY(conv_scratch(c, 2 * ddx_k_conv2d_bgrad_parts(&g) * g.Co, "bias gradient", &part));
        if (f32) DDX_CUDA_CHECK(ddx_k_conv2d_bgrad_f32(gb->data, dy->data, part, &g, s));
        else DDX_CUDA_CHECK(ddx_k_conv2d_bgrad_bf16(gb->data, dy->data, part, &g, s));
    }
    return ddx_arena_rewind(&c->act, mark);
}
