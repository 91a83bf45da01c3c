// Host glue of the embedding CUDA family: embedding and timestep_emb (kernels in
// kernels/embed.cu). Semantics mirror the CPU reference in runtime/ops/embed.c: embedding's
// backward accumulates into the table's grad; timestep_emb is f32 only, as its front-end
// requires, and has no backward. Anything else is refused with DDX_E_UNSUPPORTED.
#include <math.h>
#include <stdint.h>

#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/embed.h"
#include "op_impl.h"

// =========================================================================================
// embedding
// =========================================================================================
// The CPU forward reports an out-of-range index as DDX_E_INPUT. Here the indices are in
// device memory and checking them would cost a host sync per call (and break stream
// capture), so the kernel writes a row of NaNs instead, which the loss and the optimizer's
// grad-norm check then report.
static ddx_status embedding_check(const ddx_tensor *idx, const ddx_tensor *table) {
    if (idx->dtype != DDX_I32 || idx->ndim != 1)
        return ddx_errorf(DDX_E_UNSUPPORTED, "embedding on CUDA: indices must be i32 [N], got %s", ddx_dtype_name(idx->dtype));
    if (table->ndim != 2 || table->shape[0] < 1)
        return ddx_errorf(DDX_E_INTERNAL, "embedding on CUDA: table must be [V, D] with V >= 1");
    return DDX_OK;
}

ddx_status ddx_cuda_embedding_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *idx = n->in[0], *table = n->in[1];   // [N] i32, [V, D]
    ddx_tensor *y = n->out;                                // [N, D]
    DDX_TRY(embedding_check(idx, table));
    DDX_TRY(ddx_cuda_need_float("embedding", table, "table"));
    DDX_TRY(ddx_cuda_need_dtype("embedding", y, table->dtype, "the output"));
    const int64_t N = idx->shape[0], V = table->shape[0], D = table->shape[1];
    if (table->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_embedding_f32(y->data, idx->data, table->data, N, V, D, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_embedding_bf16(y->data, idx->data, table->data, N, V, D, ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_embedding_bwd(ddx_ctx *c, ddx_node *n) {
    // The indices are integers: only the table gets a gradient.
    ddx_tensor *gt = ddx_in_grad(c, n, 1);   // [V, D]
    if (!gt) return c->status;
    const ddx_tensor *idx = n->in[0], *table = n->in[1], *dy;   // dy [N, D]
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    DDX_TRY(embedding_check(idx, table));
    DDX_TRY(ddx_cuda_need_float("embedding", dy, "the output grad"));
    DDX_TRY(ddx_cuda_need_dtype("embedding", gt, dy->dtype, "the table grad"));
    const int64_t N = idx->shape[0], V = table->shape[0], D = table->shape[1];
    if (dy->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_embedding_bwd_f32(gt->data, idx->data, dy->data, N, V, D, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_embedding_bwd_bf16(gt->data, idx->data, dy->data, N, V, D, ddx_cuda_stream_of(c)));
    return DDX_OK;
}

// =========================================================================================
// timestep_emb (no backward: the front-end refuses timesteps that require grad)
// =========================================================================================
ddx_status ddx_cuda_timestep_emb_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *t = n->in[0];   // [N] f32
    ddx_tensor *y = n->out;           // [N, dim] f32
    const ddx_timestep_emb_params p = n->p.timestep_emb;
    if (t->dtype != DDX_F32 || y->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "timestep_emb on CUDA: f32 only, got timesteps %s, output %s",
                          ddx_dtype_name(t->dtype), ddx_dtype_name(y->dtype));
    if (p.dim <= 0 || p.dim % 2 != 0)
        return ddx_errorf(DDX_E_UNSUPPORTED, "timestep_emb on CUDA: dim must be even and positive, got %d", p.dim);
    const int64_t half = p.dim / 2;
    // The same float roundings as the CPU (runtime/ops/embed.c): -ln(P) in double rounded once,
    // the denominator rounded once.
    const float neg_log_period = (float)-log((double)p.max_period);
    const float denom = (float)half - p.freq_shift;
    DDX_CUDA_CHECK(ddx_k_timestep_emb_f32(y->data, t->data, t->shape[0], half, neg_log_period, denom,
                                          p.flip_sin_to_cos ? 1 : 0, ddx_cuda_stream_of(c)));
    return DDX_OK;
}
