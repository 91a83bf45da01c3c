// The embedding family: embedding (a table lookup by index) and timestep_emb (diffusers'
// sinusoidal timestep embedding). Front-ends and the CPU fp32 reference, forward and backward
// side by side.
#include <math.h>

#include "op_impl.h"

// =========================================================================================
// embedding: out[i] = table[idx[i]]; backward scatter-adds into the table's grad.
// =========================================================================================
ddx_tensor *ddx_embedding(ddx_ctx *c, ddx_tensor *idx, ddx_tensor *table) {
    if (!ddx_op_ok(c, "embedding", 2, (ddx_tensor *[]){idx, table})) return NULL;
    char si[DDX_SHAPE_BUF], st[DDX_SHAPE_BUF];
    if (idx->ndim != 1 || idx->dtype != DDX_I32)
        return ddx_op_fail(c, DDX_E_INPUT, "embedding: indices must be an i32 [N] tensor, got %s %s",
                           ddx_dtype_name(idx->dtype), ddx_shape_str(idx, si, sizeof si));
    if (table->ndim != 2 || !ddx_is_float_dtype(table->dtype) || table->shape[0] < 1)
        return ddx_op_fail(c, DDX_E_INPUT, "embedding: table must be a float [V, D] tensor with V >= 1, got %s %s",
                           ddx_dtype_name(table->dtype), ddx_shape_str(table, st, sizeof st));
    // Index range is checked by the backend's forward: on CUDA the indices live on the device.
    return ddx_op_run(c, DDX_OP_EMBEDDING, 2, (ddx_tensor *[]){idx, table}, &(ddx_op_params){0}, table->dtype, 2,
                      (int64_t[]){idx->shape[0], table->shape[1]});
}

ddx_status ddx_cpu_embedding_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *it = n->in[0], *tt = n->in[1];
    DDX_TRY(ddx_cpu_need_f32("embedding", tt, "table"));
    const int64_t N = it->shape[0], V = tt->shape[0], D = tt->shape[1];
    const int32_t *idx = (const int32_t *)it->data;   // [N]
    const float *table = ddx_f32c(tt);                // [V, D]
    float *y = ddx_f32(n->out);                       // [N, D]
    for (int64_t i = 0; i < N; i++) {
        const int64_t v = idx[i];
        if (v < 0 || v >= V)
            return ddx_errorf(DDX_E_INPUT, "embedding: index %lld at position %lld is out of range for a table of %lld rows",
                              (long long)v, (long long)i, (long long)V);
        for (int64_t d = 0; d < D; d++) y[i * D + d] = table[v * D + d];
    }
    return DDX_OK;
}

ddx_status ddx_cpu_embedding_bwd(ddx_ctx *c, ddx_node *n) {
    // The indices are integers: only the table gets a gradient.
    ddx_tensor *gt = ddx_in_grad(c, n, 1);
    if (!gt) return DDX_OK;
    const int64_t N = n->in[0]->shape[0], D = n->in[1]->shape[1];
    const int32_t *idx = (const int32_t *)n->in[0]->data;   // [N], validated by the forward
    const float *dy = ddx_f32c(n->out->grad);              // [N, D]
    float *dt = ddx_f32(gt);                               // [V, D]
    for (int64_t i = 0; i < N; i++) {
        const int64_t v = idx[i];
        for (int64_t d = 0; d < D; d++) dt[v * D + d] += dy[i * D + d];
    }
    return DDX_OK;
}

// =========================================================================================
// timestep_emb: diffusers get_timestep_embedding (scale 1).
// =========================================================================================
ddx_tensor *ddx_timestep_emb(ddx_ctx *c, ddx_tensor *t, ddx_timestep_emb_params p) {
    if (!ddx_op_ok(c, "timestep_emb", 1, (ddx_tensor *[]){t})) return NULL;
    char s[DDX_SHAPE_BUF];
    if (t->ndim != 1 || t->dtype != DDX_F32)
        return ddx_op_fail(c, DDX_E_INPUT, "timestep_emb: timesteps must be an f32 [N] tensor, got %s %s",
                           ddx_dtype_name(t->dtype), ddx_shape_str(t, s, sizeof s));
    if (t->requires_grad)
        return ddx_op_fail(c, DDX_E_INPUT, "timestep_emb: has no backward; timesteps must not require grad");
    if (p.dim <= 0 || p.dim % 2 != 0)
        return ddx_op_fail(c, DDX_E_INPUT, "timestep_emb: dim must be even and positive, got %d", p.dim);
    if (!(p.max_period > 0.0f) || !isfinite(p.max_period))
        return ddx_op_fail(c, DDX_E_INPUT, "timestep_emb: max_period must be positive (usually 10000), got %g",
                           (double)p.max_period);
    if (!isfinite(p.freq_shift) || (float)(p.dim / 2) - p.freq_shift == 0.0f)
        return ddx_op_fail(c, DDX_E_INPUT, "timestep_emb: dim/2 - freq_shift must be non-zero (dim %d, freq_shift %g)",
                           p.dim, (double)p.freq_shift);
    ddx_op_params op = {.timestep_emb = p};
    return ddx_op_run(c, DDX_OP_TIMESTEP_EMB, 1, (ddx_tensor *[]){t}, &op, DDX_F32, 2, (int64_t[]){t->shape[0], p.dim});
}

// Matching PyTorch's fp32 arithmetic matters more than accuracy here: the argument t * freq
// reaches 1000, where one fp32 ulp is 6e-5, so any rounding difference in freq moves sin/cos by
// far more than 1e-6. diffusers computes exponent = fp32(-ln P) * k / (half - shift) in fp32,
// then exp in fp32, then t * freq in fp32; we round at the same points. exp is evaluated in
// double and rounded once (correctly rounded expf, which PyTorch's vectorised expf matches on
// the tables we tested), and sin/cos of the fp32 argument in double, rounded once (within
// 1 ulp of PyTorch). tests/test_embed_ref.c checks this against a PyTorch-made table.
ddx_status ddx_cpu_timestep_emb_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *tt = n->in[0];
    DDX_TRY(ddx_cpu_need_f32("timestep_emb", tt, "timesteps"));
    const ddx_timestep_emb_params p = n->p.timestep_emb;
    const int64_t N = tt->shape[0], half = p.dim / 2, dim = p.dim;
    const float *t = ddx_f32c(tt);   // [N]
    float *y = ddx_f32(n->out);      // [N, dim]
    const float neg_log_period = (float)-log((double)p.max_period);
    const float denom = (float)half - p.freq_shift;
    // flip: [cos, sin] instead of [sin, cos].
    const int64_t sin_at = p.flip_sin_to_cos ? half : 0, cos_at = p.flip_sin_to_cos ? 0 : half;
    for (int64_t k = 0; k < half; k++) {
        const float exponent = (neg_log_period * (float)k) / denom;
        const float freq = (float)exp((double)exponent);
        for (int64_t i = 0; i < N; i++) {
            const float arg = t[i] * freq;
            y[i * dim + sin_at + k] = (float)sin((double)arg);
            y[i * dim + cos_at + k] = (float)cos((double)arg);
        }
    }
    return DDX_OK;
}
