// Host glue of the norm CUDA family: group_norm (in[3], when present, the fused time-embedding
// add). Semantics mirror the CPU reference
// (runtime/ops/norm.c): the forward saves mean and rstd [N, G] f32 in saved[0..1]; backward
// writes a fresh input grad when x has none yet (ddx_grad_fresh) and ACCUMULATES into the
// others. Scratch comes from the activation arena and is rewound when the call returns: later
// work on the same stream may reuse it, which stream order makes safe.
#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/norm.h"
#include "op_impl.h"

// ============================================================================================
// group_norm
// ============================================================================================

// The kernels' shape and dtypes from the node. x f32 with f32 gamma/beta, or bf16 with f32 or
// bf16 gamma/beta (the front-end's rule); the output has x's dtype.
static ddx_status gn_shape_of(const ddx_node *n, ddx_k_gn_shape *sh) {
    const ddx_tensor *x = n->in[0], *gm = n->in[1], *bt = n->in[2];
    *sh = (ddx_k_gn_shape){0};
    DDX_TRY(ddx_cuda_k_dt("group_norm", x, &sh->x_dt));
    DDX_TRY(ddx_cuda_k_dt("group_norm", gm, &sh->g_dt));
    DDX_TRY(ddx_cuda_need_dtype("group_norm", bt, gm->dtype, "beta"));
    DDX_TRY(ddx_cuda_need_dtype("group_norm", n->out, x->dtype, "the output"));
    if (sh->x_dt == DDX_K_NORM_F32 && sh->g_dt != DDX_K_NORM_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "group_norm on CUDA: gamma %s with an f32 input", ddx_dtype_name(gm->dtype));
    if (x->ndim < 2 || x->ndim > 4)
        return ddx_errorf(DDX_E_UNSUPPORTED, "group_norm on CUDA: input has %d dims (2 to 4)", x->ndim);
    sh->N = x->shape[0];
    sh->C = x->shape[x->ndim - 1];
    sh->S = 1;
    for (int d = 1; d < x->ndim - 1; d++) sh->S *= x->shape[d];
    sh->G = n->p.group_norm.groups;
    sh->eps = n->p.group_norm.eps;
    sh->silu = n->p.group_norm.fuse_silu ? 1 : 0;
    if (n->in[3]) DDX_TRY(ddx_cuda_need_dtype("group_norm", n->in[3], x->dtype, "the added tensor"));
    if (sh->G < 1 || sh->C % sh->G != 0)
        return ddx_errorf(DDX_E_UNSUPPORTED, "group_norm on CUDA: %lld groups do not divide %lld channels",
                          (long long)sh->G, (long long)sh->C);
    return DDX_OK;
}

ddx_status ddx_cuda_group_norm_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0], *gm = n->in[1], *bt = n->in[2], *ad = n->in[3];
    ddx_k_gn_shape sh;
    DDX_TRY(gn_shape_of(n, &sh));
    if (ddx_numel(x) == 0) return DDX_OK;   // as the CPU: nothing saved
    ddx_tensor *mean_t = ddx_new(c, DDX_F32, 2, (int64_t[]){sh.N, sh.G});   // [N, G]
    ddx_tensor *rstd_t = ddx_new(c, DDX_F32, 2, (int64_t[]){sh.N, sh.G});   // [N, G]
    if (!mean_t || !rstd_t) return ddx_errorf(DDX_E_NOMEM, "group_norm on CUDA: out of activation memory for statistics");
    n->saved[0] = mean_t;
    n->saved[1] = rstd_t;
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    float *scratch = NULL;
    DDX_TRY(ddx_cuda_scratch_f32(c, ddx_k_group_norm_fwd_scratch_floats(&sh), "group_norm", &scratch));   // per-chunk Welford partials
    DDX_CUDA_CHECK(ddx_k_group_norm_add_fwd(n->out->data, ddx_f32(mean_t), ddx_f32(rstd_t), x->data, ad ? ad->data : NULL,
                                            gm->data, bt->data, scratch, &sh, ddx_cuda_stream_of(c)));
    return ddx_arena_rewind(&c->act, mark);
}

ddx_status ddx_cuda_group_norm_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *x = n->in[0], *ad = n->in[3];
    const ddx_tensor *gm = n->in[1], *bt = n->in[2], *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    // An input grad nobody has written yet is written by the kernel, not zeroed and added into.
    const bool fresh_gx = ddx_grad_fresh(c, x);
    if (c->status != DDX_OK) return c->status;
    ddx_tensor *gx = ddx_in_grad(c, n, 0), *gg = ddx_in_grad(c, n, 1), *gb = ddx_in_grad(c, n, 2);
    ddx_tensor *ga = ad ? ddx_in_grad(c, n, 3) : NULL;
    if (c->status != DDX_OK) return c->status;
    if (!gx && !gg && !gb && !ga) return DDX_OK;
    ddx_k_gn_shape sh;
    DDX_TRY(gn_shape_of(n, &sh));
    sh.dx_overwrite = fresh_gx;
    if (ddx_numel(x) == 0) return DDX_OK;
    if (!n->saved[0] || !n->saved[1])
        return ddx_errorf(DDX_E_INTERNAL, "group_norm backward on CUDA: missing saved statistics");
    DDX_TRY(ddx_cuda_need_dtype("group_norm backward", dy, x->dtype, "the output grad"));
    DDX_TRY(ddx_cuda_need_dtype("group_norm backward", gx, x->dtype, "the input grad"));
    DDX_TRY(ddx_cuda_need_dtype("group_norm backward", gg, gm->dtype, "the gamma grad"));
    DDX_TRY(ddx_cuda_need_dtype("group_norm backward", gb, bt->dtype, "the beta grad"));
    DDX_TRY(ddx_cuda_need_dtype("group_norm backward", ga, x->dtype, "the added tensor's grad"));
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    float *scratch = NULL;
    const int64_t scratch_f = ad ? ddx_k_group_norm_add_bwd_scratch_floats(&sh) : ddx_k_group_norm_bwd_scratch_floats(&sh);
    DDX_TRY(ddx_cuda_scratch_f32(c, scratch_f, "group_norm backward", &scratch));
    DDX_CUDA_CHECK(ddx_k_group_norm_add_bwd(gx ? gx->data : NULL, ga ? ga->data : NULL, gg ? gg->data : NULL,
                                            gb ? gb->data : NULL, x->data, ad ? ad->data : NULL, dy->data, gm->data,
                                            bt->data, ddx_f32c(n->saved[0]), ddx_f32c(n->saved[1]), scratch, &sh,
                                            ddx_cuda_stream_of(c)));
    return ddx_arena_rewind(&c->act, mark);
}
