// Host glue of the attention CUDA family: adapts attention tape nodes to kernels/attention.h.
// Semantics mirror the CPU reference (runtime/ops/attention.c): the forward saves the row
// logsumexp [N, heads, L] f32 in n->saved[0] (the same tensor the CPU saves, computed by the
// fused kernel), the backward recomputes the probabilities from it and ACCUMULATES into
// whichever of dq, dk, dv ddx_in_grad hands out. Unlike the CPU, f32 and bf16 storage are both
// computed natively: f32 in fp32, bf16 on tensor cores with fp32 accumulation where the kernels
// allow it (kernels/attention.h says when), else in fp32. The backward also reads the forward's output (n->out) for
// delta_i = dO_i . O_i; its [N, heads, L] scratch comes from the activation arena and is
// rewound when the call returns (stream order makes the reuse safe).
#include <limits.h>

#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/attention.h"
#include "op_impl.h"

// One float dtype (f32 or bf16) for every tensor the call touches (NULL entries skipped).
static ddx_status attn_dtypes(const char *what, ddx_dtype dt, int n, const ddx_tensor *const *ts) {
    if (dt != DDX_F32 && dt != DDX_BF16)
        return ddx_errorf(DDX_E_UNSUPPORTED, "attention %s on CUDA: dtype %s is not supported (f32, bf16)", what,
                          ddx_dtype_name(dt));
    for (int i = 0; i < n; i++)
        if (ts[i] && ts[i]->dtype != dt)
            return ddx_errorf(DDX_E_UNSUPPORTED, "attention %s on CUDA: mixed dtypes %s and %s", what, ddx_dtype_name(dt),
                              ddx_dtype_name(ts[i]->dtype));
    return DDX_OK;
}

typedef struct attn_geom {
    int64_t N, L, C;
    int heads, head_dim;
} attn_geom;

// Shapes from the node, and whether these kernels can run them on this device.
static ddx_status attn_geom_of(const ddx_node *n, attn_geom *g) {
    const ddx_tensor *q = n->in[0];
    const int heads = n->p.attention.heads;
    if (q->ndim != 3 || heads < 1 || q->shape[2] % heads != 0)
        return ddx_errorf(DDX_E_INTERNAL, "attention on CUDA: inconsistent node (the front-end should have refused it)");
    g->N = q->shape[0];
    g->L = q->shape[1];
    g->C = q->shape[2];
    g->heads = heads;
    const int64_t d = g->C / heads;
    if (d > DDX_K_ATTENTION_MAX_HEAD_DIM)
        return ddx_errorf(DDX_E_UNSUPPORTED, "attention on CUDA: head_dim %lld (C %lld / %d heads) is over the kernels' %d",
                          (long long)d, (long long)g->C, heads, DDX_K_ATTENTION_MAX_HEAD_DIM);
    g->head_dim = (int)d;
    if (g->N * g->L * g->C == 0) return DDX_OK;
    // The kernels index rows in int and launch one block per (item, head, tile of >= 8 rows)
    // on a 1-D grid of at most 2^31 - 1 blocks.
    if (g->L > (int64_t)1 << 30 || g->N * heads * ((g->L + 7) / 8) > INT_MAX)
        return ddx_errorf(DDX_E_UNSUPPORTED, "attention on CUDA: [%lld, %lld, %lld] with %d heads is too large for one launch",
                          (long long)g->N, (long long)g->L, (long long)g->C, heads);
    const size_t need = ddx_k_attention_smem_bytes(g->head_dim);
    int dev = 0, optin = 0;
    DDX_CUDA_CHECK(cudaGetDevice(&dev));
    DDX_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (need > (size_t)optin)
        return ddx_errorf(DDX_E_UNSUPPORTED,
                          "attention on CUDA: head_dim %d needs %zu bytes of shared memory per block, device %d allows %d",
                          g->head_dim, need, dev, optin);
    return DDX_OK;
}

ddx_status ddx_cuda_attention_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];   // [N, L, C] each
    ddx_tensor *y = n->out;                                          // [N, L, C]
    DDX_TRY(attn_dtypes("forward", q->dtype, 3, (const ddx_tensor *[]){k, v, y}));
    attn_geom g;
    DDX_TRY(attn_geom_of(n, &g));
    if (g.N * g.L * g.C == 0) return DDX_OK;
    ddx_tensor *lse = ddx_new(c, DDX_F32, 3, (int64_t[]){g.N, g.heads, g.L});   // [N, heads, L]
    if (!lse)
        return ddx_errorf(DDX_E_NOMEM, "attention on CUDA: out of activation memory for the [%lld, %d, %lld] logsumexp",
                          (long long)g.N, g.heads, (long long)g.L);
    n->saved[0] = lse;
    const float scale = n->p.attention.scale;   // resolved by the front-end (never 0 here)
    void *s = ddx_cuda_stream_of(c);
    if (q->dtype == DDX_F32)
        DDX_CUDA_CHECK(ddx_k_attention_fwd_f32(q->data, k->data, v->data, y->data, lse->data, g.N, g.L, g.heads, g.head_dim,
                                               scale, s));
    else
        DDX_CUDA_CHECK(ddx_k_attention_fwd_bf16(q->data, k->data, v->data, y->data, lse->data, g.N, g.L, g.heads,
                                                g.head_dim, scale, s));
    return DDX_OK;
}

ddx_status ddx_cuda_attention_bwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];   // [N, L, C] each
    ddx_tensor *gq = ddx_in_grad(c, n, 0), *gk = ddx_in_grad(c, n, 1), *gv = ddx_in_grad(c, n, 2);
    if (c->status != DDX_OK) return c->status;
    if (!gq && !gk && !gv) return DDX_OK;
    const ddx_tensor *dy = n->out->grad;   // [N, L, C]
    if (!dy) return ddx_errorf(DDX_E_INTERNAL, "attention backward on CUDA: the output has no grad");
    attn_geom g;
    DDX_TRY(attn_geom_of(n, &g));
    if (g.N * g.L * g.C == 0) return DDX_OK;
    const ddx_tensor *lse = n->saved[0];   // [N, heads, L]
    if (!lse || lse->dtype != DDX_F32 || ddx_numel(lse) != g.N * g.heads * g.L)
        return ddx_errorf(DDX_E_INTERNAL, "attention backward on CUDA: missing or malformed saved logsumexp");
    DDX_TRY(attn_dtypes("backward", q->dtype, 7, (const ddx_tensor *[]){k, v, n->out, dy, gq, gk, gv}));

    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    ddx_tensor *delta = ddx_new(c, DDX_F32, 3, (int64_t[]){g.N, g.heads, g.L});   // [N, heads, L]
    if (!delta)
        return ddx_errorf(DDX_E_NOMEM, "attention backward on CUDA: out of activation memory for [%lld, %d, %lld] scratch",
                          (long long)g.N, g.heads, (long long)g.L);
    const float scale = n->p.attention.scale;
    void *s = ddx_cuda_stream_of(c);
    int attention_bwd_launch;
    if (q->dtype == DDX_F32)
        attention_bwd_launch = ddx_k_attention_bwd_f32(q->data, k->data, v->data, n->out->data, dy->data, lse->data, delta->data,
                                    gq ? gq->data : NULL, gk ? gk->data : NULL, gv ? gv->data : NULL, g.N, g.L, g.heads,
                                    g.head_dim, scale, s);
    else
        attention_bwd_launch = ddx_k_attention_bwd_bf16(q->data, k->data, v->data, n->out->data, dy->data, lse->data, delta->data,
                                     gq ? gq->data : NULL, gk ? gk->data : NULL, gv ? gv->data : NULL, g.N, g.L, g.heads,
                                     g.head_dim, scale, s);
    const ddx_status rw = ddx_arena_rewind(&c->act, mark);
    DDX_CUDA_CHECK(attention_bwd_launch);
    return rw;
}
