// Host glue of the misc CUDA family: upsample2x, pool2x, concat, embedding, timestep_emb and
// dropout (kernels in kernels/misc.cu). Semantics mirror the CPU reference in
// runtime/ops/misc.c: backward accumulates into the input grads, nothing is saved on the tape
// (max-pool recomputes its argmax from x, dropout regenerates its mask from the Philox key).
// f32 and bf16 storage are both computed natively (fp32 math); timestep_emb is f32 only, as
// its front-end requires. Anything else is refused with DDX_E_UNSUPPORTED.
#include <math.h>
#include <stdint.h>

#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/resample.h"
#include "op_impl.h"

static void *stream_of(const ddx_ctx *c) { return (void *)ddx_cuda_stream(c->cuda); }

static ddx_status need_float(const char *op, const ddx_tensor *t, const char *what) {
    if (t->dtype != DDX_F32 && t->dtype != DDX_BF16)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s on CUDA: %s dtype %s is not supported (f32, bf16)", op, what,
                          ddx_dtype_name(t->dtype));
    return DDX_OK;
}

// t must have dtype dt (the kernels take one element type for all their float operands).
static ddx_status need_dtype(const char *op, const ddx_tensor *t, ddx_dtype dt, const char *what) {
    if (t->dtype != dt)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s on CUDA: %s is %s but the kernel computes in %s (mixed dtypes)", op,
                          what, ddx_dtype_name(t->dtype), ddx_dtype_name(dt));
    return DDX_OK;
}

// The output's grad every backward starts from; its absence is a tape bug.
static ddx_status out_grad(const ddx_node *n, const ddx_tensor **dy) {
    *dy = n->out->grad;
    if (!*dy) return ddx_errorf(DDX_E_INTERNAL, "%s backward on CUDA: the output has no grad", ddx_op_name(n->op));
    if (!ddx_same_shape(*dy, n->out))
        return ddx_errorf(DDX_E_INTERNAL, "%s backward on CUDA: the output grad has the wrong shape", ddx_op_name(n->op));
    return DDX_OK;
}

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
    DDX_TRY(need_float("upsample2x", x, "input"));
    DDX_TRY(need_dtype("upsample2x", y, x->dtype, "the output"));
    int bil = 0;
    DDX_TRY(upsample_mode(n, &bil));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (x->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_upsample2x_f32(y->data, x->data, N, H, W, C, bil, stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_upsample2x_bf16(y->data, x->data, N, H, W, C, bil, stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_upsample2x_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);   // [N, H, W, C]
    if (!gx) return c->status;
    const ddx_tensor *x = n->in[0], *dy;     // dy [N, 2H, 2W, C]
    DDX_TRY(out_grad(n, &dy));
    DDX_TRY(need_nhwc("upsample2x", x));
    DDX_TRY(need_float("upsample2x", dy, "the output grad"));
    DDX_TRY(need_dtype("upsample2x", gx, dy->dtype, "the input grad"));
    int bil = 0;
    DDX_TRY(upsample_mode(n, &bil));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (dy->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_upsample2x_bwd_f32(gx->data, dy->data, N, H, W, C, bil, stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_upsample2x_bwd_bf16(gx->data, dy->data, N, H, W, C, bil, stream_of(c)));
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
    DDX_TRY(need_float("pool2x", x, "input"));
    DDX_TRY(need_dtype("pool2x", y, x->dtype, "the output"));
    int avg = 0;
    DDX_TRY(pool_mode(n, &avg));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (x->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_pool2x_f32(y->data, x->data, N, H, W, C, avg, stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_pool2x_bf16(y->data, x->data, N, H, W, C, avg, stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_pool2x_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);   // [N, H, W, C]
    if (!gx) return c->status;
    const ddx_tensor *x = n->in[0], *dy;     // dy [N, H/2, W/2, C]
    DDX_TRY(out_grad(n, &dy));
    DDX_TRY(pool_shape(x));
    DDX_TRY(need_float("pool2x", x, "input"));
    DDX_TRY(need_dtype("pool2x", dy, x->dtype, "the output grad"));
    DDX_TRY(need_dtype("pool2x", gx, x->dtype, "the input grad"));
    int avg = 0;
    DDX_TRY(pool_mode(n, &avg));
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (x->dtype == DDX_F32)
        DDX_CUDA_CHECK(ddx_k_pool2x_bwd_f32(gx->data, x->data, dy->data, N, H, W, C, avg, stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_pool2x_bwd_bf16(gx->data, x->data, dy->data, N, H, W, C, avg, stream_of(c)));
    return DDX_OK;
}

// =========================================================================================
// concat (last dim): two strided row copies forward, two strided row accumulations backward.
// =========================================================================================
// Rows = product of all dims but the last (not numel / C: C may be 0).
static int64_t leading_rows(const ddx_tensor *t) {
    int64_t r = 1;
    for (int d = 0; d < t->ndim - 1; d++) r *= t->shape[d];
    return r;
}

static size_t elem_size(ddx_dtype dt) { return dt == DDX_F32 ? 4 : 2; }

ddx_status ddx_cuda_concat_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];   // [.., Ca], [.., Cb]
    ddx_tensor *y = n->out;                          // [.., Ca + Cb]
    DDX_TRY(need_float("concat", a, "input a"));
    DDX_TRY(need_dtype("concat", b, a->dtype, "input b"));
    DDX_TRY(need_dtype("concat", y, a->dtype, "the output"));
    const int64_t rows = leading_rows(a), ca = a->shape[a->ndim - 1], cb = b->shape[b->ndim - 1], co = ca + cb;
    char *yb = (char *)y->data;
    const size_t es = elem_size(a->dtype);
    void *s = stream_of(c);
    if (a->dtype == DDX_F32) {
        DDX_CUDA_CHECK(ddx_k_rows_copy_f32((float *)yb, co, a->data, ca, rows, ca, s));
        DDX_CUDA_CHECK(ddx_k_rows_copy_f32((float *)(yb + (size_t)ca * es), co, b->data, cb, rows, cb, s));
    } else {
        DDX_CUDA_CHECK(ddx_k_rows_copy_bf16((uint16_t *)yb, co, a->data, ca, rows, ca, s));
        DDX_CUDA_CHECK(ddx_k_rows_copy_bf16((uint16_t *)(yb + (size_t)ca * es), co, b->data, cb, rows, cb, s));
    }
    return DDX_OK;
}

ddx_status ddx_cuda_concat_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *ga = ddx_in_grad(c, n, 0), *gb = ddx_in_grad(c, n, 1);
    if (c->status != DDX_OK) return c->status;
    if (!ga && !gb) return DDX_OK;
    const ddx_tensor *a = n->in[0], *b = n->in[1], *dy;
    DDX_TRY(out_grad(n, &dy));   // [.., Ca + Cb]
    DDX_TRY(need_float("concat", dy, "the output grad"));
    if (ga) DDX_TRY(need_dtype("concat", ga, dy->dtype, "the grad of a"));
    if (gb) DDX_TRY(need_dtype("concat", gb, dy->dtype, "the grad of b"));
    const int64_t rows = leading_rows(a), ca = a->shape[a->ndim - 1], cb = b->shape[b->ndim - 1], co = ca + cb;
    const char *db = (const char *)dy->data;
    const size_t es = elem_size(dy->dtype);
    void *s = stream_of(c);
    if (dy->dtype == DDX_F32) {
        if (ga) DDX_CUDA_CHECK(ddx_k_rows_acc_f32(ga->data, ca, (const float *)db, co, rows, ca, s));
        if (gb) DDX_CUDA_CHECK(ddx_k_rows_acc_f32(gb->data, cb, (const float *)(db + (size_t)ca * es), co, rows, cb, s));
    } else {
        if (ga) DDX_CUDA_CHECK(ddx_k_rows_acc_bf16(ga->data, ca, (const uint16_t *)db, co, rows, ca, s));
        if (gb)
            DDX_CUDA_CHECK(ddx_k_rows_acc_bf16(gb->data, cb, (const uint16_t *)(db + (size_t)ca * es), co, rows, cb, s));
    }
    return DDX_OK;
}

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
    DDX_TRY(need_float("embedding", table, "table"));
    DDX_TRY(need_dtype("embedding", y, table->dtype, "the output"));
    const int64_t N = idx->shape[0], V = table->shape[0], D = table->shape[1];
    if (table->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_embedding_f32(y->data, idx->data, table->data, N, V, D, stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_embedding_bf16(y->data, idx->data, table->data, N, V, D, stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_embedding_bwd(ddx_ctx *c, ddx_node *n) {
    // The indices are integers: only the table gets a gradient.
    ddx_tensor *gt = ddx_in_grad(c, n, 1);   // [V, D]
    if (!gt) return c->status;
    const ddx_tensor *idx = n->in[0], *table = n->in[1], *dy;   // dy [N, D]
    DDX_TRY(out_grad(n, &dy));
    DDX_TRY(embedding_check(idx, table));
    DDX_TRY(need_float("embedding", dy, "the output grad"));
    DDX_TRY(need_dtype("embedding", gt, dy->dtype, "the table grad"));
    const int64_t N = idx->shape[0], V = table->shape[0], D = table->shape[1];
    if (dy->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_embedding_bwd_f32(gt->data, idx->data, dy->data, N, V, D, stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_embedding_bwd_bf16(gt->data, idx->data, dy->data, N, V, D, stream_of(c)));
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
    // The same float roundings as the CPU (runtime/ops/misc.c): -ln(P) in double rounded once,
    // the denominator rounded once.
    const float neg_log_period = (float)-log((double)p.max_period);
    const float denom = (float)half - p.freq_shift;
    DDX_CUDA_CHECK(ddx_k_timestep_emb_f32(y->data, t->data, t->shape[0], half, neg_log_period, denom,
                                          p.flip_sin_to_cos ? 1 : 0, stream_of(c)));
    return DDX_OK;
}

// =========================================================================================
// dropout (the front-end returns x itself when !training or p == 0, so no node reaches here)
// =========================================================================================
// The CPU's dropout_key_of and dropout_scale: keep <=> 2 * (bits >> 9) + 1 >= ceil(p * 2^24).
static ddx_status dropout_key_of(const ddx_ctx *c, const ddx_node *n, ddx_k_dropout_key *k) {
    const float p = n->p.dropout.p;
    if (!(p >= 0.0f && p <= 1.0f))
        return ddx_errorf(DDX_E_INTERNAL, "dropout on CUDA: p = %g outside [0, 1] (the front-end should have refused it)",
                          (double)p);
    if (n->p.dropout.counter > UINT32_MAX)
        return ddx_errorf(DDX_E_INTERNAL, "dropout on CUDA: step %llu does not fit the 32-bit Philox step word",
                          (unsigned long long)n->p.dropout.counter);
    *k = (ddx_k_dropout_key){.seed = n->p.dropout.seed,
                             .stream = n->p.dropout.stream,
                             .step = (uint32_t)n->p.dropout.counter,
                             .threshold = (int32_t)ceil((double)p * 16777216.0),
                             .scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f,
                             .step_dev = c->step_dev};   // CUDA graphs: the step word at run time
    return DDX_OK;
}

ddx_status ddx_cuda_dropout_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0];
    ddx_tensor *y = n->out;
    DDX_TRY(need_float("dropout", x, "input"));
    DDX_TRY(need_dtype("dropout", y, x->dtype, "the output"));
    ddx_k_dropout_key k = {0};
    DDX_TRY(dropout_key_of(c, n, &k));
    const int64_t cnt = ddx_numel(x);
    if (x->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_dropout_f32(y->data, x->data, cnt, k, stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_dropout_bf16(y->data, x->data, cnt, k, stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_dropout_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return c->status;
    const ddx_tensor *dy;
    DDX_TRY(out_grad(n, &dy));
    DDX_TRY(need_float("dropout", dy, "the output grad"));
    DDX_TRY(need_dtype("dropout", gx, dy->dtype, "the input grad"));
    ddx_k_dropout_key k = {0};
    DDX_TRY(dropout_key_of(c, n, &k));
    const int64_t cnt = ddx_numel(gx);
    if (dy->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_dropout_bwd_f32(gx->data, dy->data, cnt, k, stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_dropout_bwd_bf16(gx->data, dy->data, cnt, k, stream_of(c)));
    return DDX_OK;
}
