// The smaller ops: concat, upsample2x, pool2x, embedding, timestep_emb, dropout, mse_loss,
// sum and mean. Front-ends (shape checks) and the CPU fp32 reference, forward and backward
// side by side. Semantics follow PyTorch (NHWC layout here, NCHW there).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "op_impl.h"
#include "threads.h"
#include "philox.h"

#define SHAPE_BUF 64

static bool is_float_dtype(ddx_dtype dt) { return dt == DDX_F32 || dt == DDX_BF16; }

// The CPU backend is the fp32 reference: anything else is a dispatch mistake or a bf16
// tensor reaching the CPU, which has no bf16 kernels.
static ddx_status cpu_need_f32(const char *op, const ddx_tensor *t, const char *what) {
    if (t->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s: the CPU backend computes in f32 only, got %s %s", op, what,
                          ddx_dtype_name(t->dtype));
    return DDX_OK;
}

// =========================================================================================
// concat: along the last dim; every other dim must match.
// =========================================================================================
ddx_tensor *ddx_concat(ddx_ctx *c, ddx_tensor *a, ddx_tensor *b) {
    if (!ddx_op_ok(c, "concat", 2, (ddx_tensor *[]){a, b})) return NULL;
    char sa[SHAPE_BUF], sb[SHAPE_BUF];
    if (a->dtype != b->dtype || !is_float_dtype(a->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "concat: inputs must share a float dtype, got %s and %s",
                           ddx_dtype_name(a->dtype), ddx_dtype_name(b->dtype));
    bool ok = a->ndim == b->ndim && a->ndim >= 1;
    for (int d = 0; ok && d < a->ndim - 1; d++) ok = a->shape[d] == b->shape[d];
    if (!ok)
        return ddx_op_fail(c, DDX_E_INPUT, "concat: %s and %s must agree in every dim but the last",
                           ddx_shape_str(a, sa, sizeof sa), ddx_shape_str(b, sb, sizeof sb));
    int64_t shape[DDX_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[d];
    shape[a->ndim - 1] = a->shape[a->ndim - 1] + b->shape[b->ndim - 1];
    return ddx_op_run(c, DDX_OP_CONCAT, 2, (ddx_tensor *[]){a, b}, &(ddx_op_params){0}, a->dtype, a->ndim, shape);
}

typedef struct concat_job {
    int64_t ca, cb;
    const float *pa, *pb;   // forward: the inputs; backward: unused
    float *y;               // forward: the output
    const float *dy;        // backward
    float *ga, *gb;         // backward: NULL when not needed
} concat_job;

static void concat_fwd_range(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const concat_job *j = arg;
    const int64_t ca = j->ca, cb = j->cb, co = ca + cb;
    for (int64_t r = r0; r < r1; r++) {
        memcpy(j->y + r * co, j->pa + r * ca, (size_t)ca * sizeof(float));
        memcpy(j->y + r * co + ca, j->pb + r * cb, (size_t)cb * sizeof(float));
    }
}

static void concat_bwd_range(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const concat_job *j = arg;
    const int64_t ca = j->ca, cb = j->cb, co = ca + cb;
    for (int64_t r = r0; r < r1; r++) {
        const float *d = j->dy + r * co;
        if (j->ga)
            for (int64_t i = 0; i < ca; i++) j->ga[r * ca + i] += d[i];
        if (j->gb)
            for (int64_t i = 0; i < cb; i++) j->gb[r * cb + i] += d[ca + i];
    }
}

static void concat_run(concat_job *j, int64_t rows, ddx_parallel_fn fn) {
    // Below ~64K elements the thread hand-off costs more than the copy.
    if (rows * (j->ca + j->cb) >= ((int64_t)1 << 16)) ddx_parallel_for(rows, fn, j);
    else if (rows > 0) fn(j, 0, rows, 0);
}

ddx_status ddx_cpu_concat_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    DDX_TRY(cpu_need_f32("concat", a, "input"));
    DDX_TRY(cpu_need_f32("concat", b, "input"));
    concat_job j = {.ca = a->shape[a->ndim - 1], .cb = b->shape[b->ndim - 1], .pa = ddx_f32c(a), .pb = ddx_f32c(b),
                    .y = ddx_f32(n->out)};   // y [rows, Ca + Cb]
    concat_run(&j, ddx_numel(a) / j.ca, concat_fwd_range);
    return DDX_OK;
}

ddx_status ddx_cpu_concat_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *ga = ddx_in_grad(c, n, 0), *gb = ddx_in_grad(c, n, 1);
    if (c->status != DDX_OK) return c->status;
    concat_job j = {.ca = n->in[0]->shape[n->in[0]->ndim - 1], .cb = n->in[1]->shape[n->in[1]->ndim - 1],
                    .dy = ddx_f32c(n->out->grad), .ga = ga ? ddx_f32(ga) : NULL, .gb = gb ? ddx_f32(gb) : NULL};
    if (ga || gb) concat_run(&j, ddx_numel(n->in[0]) / j.ca, concat_bwd_range);
    return DDX_OK;
}

// =========================================================================================
// upsample2x: nearest, or bilinear with align_corners=False (F.interpolate(scale_factor=2)).
// =========================================================================================
ddx_tensor *ddx_upsample2x(ddx_ctx *c, ddx_tensor *x, ddx_upsample_mode mode) {
    if (!ddx_op_ok(c, "upsample2x", 1, (ddx_tensor *[]){x})) return NULL;
    char sx[SHAPE_BUF];
    if (x->ndim != 4 || !is_float_dtype(x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "upsample2x: input must be a float [N, H, W, C] tensor, got %s %s",
                           ddx_dtype_name(x->dtype), ddx_shape_str(x, sx, sizeof sx));
    if (mode != DDX_UPSAMPLE_NEAREST && mode != DDX_UPSAMPLE_BILINEAR)
        return ddx_op_fail(c, DDX_E_INPUT, "upsample2x: unknown mode %d (nearest or bilinear)", (int)mode);
    ddx_op_params p = {.upsample2x = {.mode = mode}};
    return ddx_op_run(c, DDX_OP_UPSAMPLE2X, 1, (ddx_tensor *[]){x}, &p, x->dtype, 4,
                      (int64_t[]){x->shape[0], 2 * x->shape[1], 2 * x->shape[2], x->shape[3]});
}

// One output coordinate's two source taps and weights, PyTorch's area_pixel_compute_source_index
// for scale 1/2 with align_corners=False: src = (dst + 0.5) / 2 - 0.5, clamped at 0, the upper
// tap clamped at the edge. All values are exact in fp32 (multiples of 1/4).
typedef struct bilin_tap {
    int64_t i0, i1;
    float w0, w1;
} bilin_tap;

static bilin_tap bilin_tap_of(int64_t dst, int64_t in_size) {
    float src = ((float)dst + 0.5f) * 0.5f - 0.5f;
    if (src < 0.0f) src = 0.0f;
    bilin_tap t;
    t.i0 = (int64_t)src;
    t.i1 = t.i0 + (t.i0 < in_size - 1 ? 1 : 0);
    t.w1 = src - (float)t.i0;
    t.w0 = 1.0f - t.w1;
    return t;
}

ddx_status ddx_cpu_upsample2x_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *xt = n->in[0];
    DDX_TRY(cpu_need_f32("upsample2x", xt, "input"));
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = 2 * H, Wo = 2 * W;
    const float *x = ddx_f32c(xt);   // [N, H, W, C]
    float *y = ddx_f32(n->out);      // [N, 2H, 2W, C]
    const bool bilinear = n->p.upsample2x.mode == DDX_UPSAMPLE_BILINEAR;
    for (int64_t b = 0; b < N; b++) {
        const float *xb = x + b * H * W * C;
        for (int64_t oy = 0; oy < Ho; oy++) {
            bilin_tap ty = bilin_tap_of(oy, H);
            for (int64_t ox = 0; ox < Wo; ox++) {
                float *yo = y + ((b * Ho + oy) * Wo + ox) * C;
                if (!bilinear) {
                    const float *xi = xb + ((oy / 2) * W + ox / 2) * C;
                    for (int64_t ch = 0; ch < C; ch++) yo[ch] = xi[ch];
                    continue;
                }
                bilin_tap tx = bilin_tap_of(ox, W);
                const float *p00 = xb + (ty.i0 * W + tx.i0) * C, *p01 = xb + (ty.i0 * W + tx.i1) * C;
                const float *p10 = xb + (ty.i1 * W + tx.i0) * C, *p11 = xb + (ty.i1 * W + tx.i1) * C;
                // Same association as PyTorch's CPU kernel, so fp32 results agree closely.
                for (int64_t ch = 0; ch < C; ch++)
                    yo[ch] = ty.w0 * (tx.w0 * p00[ch] + tx.w1 * p01[ch]) + ty.w1 * (tx.w0 * p10[ch] + tx.w1 * p11[ch]);
            }
        }
    }
    return DDX_OK;
}

ddx_status ddx_cpu_upsample2x_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return DDX_OK;
    const ddx_tensor *xt = n->in[0];
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = 2 * H, Wo = 2 * W;
    const float *dy = ddx_f32c(n->out->grad);   // [N, 2H, 2W, C]
    float *dx = ddx_f32(gx);                    // [N, H, W, C]
    const bool bilinear = n->p.upsample2x.mode == DDX_UPSAMPLE_BILINEAR;
    for (int64_t b = 0; b < N; b++) {
        float *db = dx + b * H * W * C;
        for (int64_t oy = 0; oy < Ho; oy++) {
            bilin_tap ty = bilin_tap_of(oy, H);
            for (int64_t ox = 0; ox < Wo; ox++) {
                const float *g = dy + ((b * Ho + oy) * Wo + ox) * C;
                if (!bilinear) {
                    float *d = db + ((oy / 2) * W + ox / 2) * C;
                    for (int64_t ch = 0; ch < C; ch++) d[ch] += g[ch];
                    continue;
                }
                bilin_tap tx = bilin_tap_of(ox, W);
                float *d00 = db + (ty.i0 * W + tx.i0) * C, *d01 = db + (ty.i0 * W + tx.i1) * C;
                float *d10 = db + (ty.i1 * W + tx.i0) * C, *d11 = db + (ty.i1 * W + tx.i1) * C;
                const float w00 = ty.w0 * tx.w0, w01 = ty.w0 * tx.w1, w10 = ty.w1 * tx.w0, w11 = ty.w1 * tx.w1;
                // Taps may coincide at the edges; sequential += handles that.
                for (int64_t ch = 0; ch < C; ch++) {
                    d00[ch] += w00 * g[ch];
                    d01[ch] += w01 * g[ch];
                    d10[ch] += w10 * g[ch];
                    d11[ch] += w11 * g[ch];
                }
            }
        }
    }
    return DDX_OK;
}

// =========================================================================================
// pool2x: 2x2 window, stride 2; max or average.
// =========================================================================================
ddx_tensor *ddx_pool2x(ddx_ctx *c, ddx_tensor *x, ddx_pool_mode mode) {
    if (!ddx_op_ok(c, "pool2x", 1, (ddx_tensor *[]){x})) return NULL;
    char sx[SHAPE_BUF];
    if (x->ndim != 4 || !is_float_dtype(x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "pool2x: input must be a float [N, H, W, C] tensor, got %s %s",
                           ddx_dtype_name(x->dtype), ddx_shape_str(x, sx, sizeof sx));
    if (x->shape[1] % 2 != 0 || x->shape[2] % 2 != 0 || x->shape[1] == 0 || x->shape[2] == 0)
        return ddx_op_fail(c, DDX_E_INPUT, "pool2x: H and W of %s must be even and positive (pad or crop first)",
                           ddx_shape_str(x, sx, sizeof sx));
    if (mode != DDX_POOL_MAX && mode != DDX_POOL_AVG)
        return ddx_op_fail(c, DDX_E_INPUT, "pool2x: unknown mode %d (max or avg)", (int)mode);
    ddx_op_params p = {.pool2x = {.mode = mode}};
    return ddx_op_run(c, DDX_OP_POOL2X, 1, (ddx_tensor *[]){x}, &p, x->dtype, 4,
                      (int64_t[]){x->shape[0], x->shape[1] / 2, x->shape[2] / 2, x->shape[3]});
}

// Window offset (0..3, row-major: (0,0) (0,1) (1,0) (1,1)) of the max. Ties keep the first and
// a NaN wins (`v > best || isnan(v)`, as PyTorch's max_pool2d), so the gradient goes where
// PyTorch sends it.
static int pool_argmax(const float *x00, int64_t row, int64_t C) {
    const float v[4] = {x00[0], x00[C], x00[row], x00[row + C]};
    int best = 0;
    for (int k = 1; k < 4; k++)
        if (v[k] > v[best] || isnan(v[k])) best = k;
    return best;
}

ddx_status ddx_cpu_pool2x_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *xt = n->in[0];
    DDX_TRY(cpu_need_f32("pool2x", xt, "input"));
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = H / 2, Wo = W / 2, row = W * C;
    const float *x = ddx_f32c(xt);   // [N, H, W, C]
    float *y = ddx_f32(n->out);      // [N, H/2, W/2, C]
    const bool is_max = n->p.pool2x.mode == DDX_POOL_MAX;
    for (int64_t b = 0; b < N; b++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                const float *xi = x + ((b * H + 2 * oy) * W + 2 * ox) * C;
                float *yo = y + ((b * Ho + oy) * Wo + ox) * C;
                for (int64_t ch = 0; ch < C; ch++) {
                    const float *p = xi + ch;
                    if (is_max) {
                        const int k = pool_argmax(p, row, C);
                        yo[ch] = p[(k >> 1) * row + (k & 1) * C];
                    } else {
                        yo[ch] = ((p[0] + p[C]) + (p[row] + p[row + C])) * 0.25f;
                    }
                }
            }
    return DDX_OK;
}

ddx_status ddx_cpu_pool2x_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return DDX_OK;
    const ddx_tensor *xt = n->in[0];
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = H / 2, Wo = W / 2, row = W * C;
    const float *x = ddx_f32c(xt);              // [N, H, W, C]
    const float *dy = ddx_f32c(n->out->grad);   // [N, H/2, W/2, C]
    float *dx = ddx_f32(gx);
    const bool is_max = n->p.pool2x.mode == DDX_POOL_MAX;
    for (int64_t b = 0; b < N; b++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                const int64_t base = ((b * H + 2 * oy) * W + 2 * ox) * C;
                const float *g = dy + ((b * Ho + oy) * Wo + ox) * C;
                for (int64_t ch = 0; ch < C; ch++) {
                    float *d = dx + base + ch;
                    if (is_max) {
                        // The argmax is recomputed from the input rather than saved: the input
                        // is alive until the step ends, and this saves an index tensor.
                        const int k = pool_argmax(x + base + ch, row, C);
                        d[(k >> 1) * row + (k & 1) * C] += g[ch];
                    } else {
                        const float q = 0.25f * g[ch];
                        d[0] += q;
                        d[C] += q;
                        d[row] += q;
                        d[row + C] += q;
                    }
                }
            }
    return DDX_OK;
}

// =========================================================================================
// embedding: out[i] = table[idx[i]]; backward scatter-adds into the table's grad.
// =========================================================================================
ddx_tensor *ddx_embedding(ddx_ctx *c, ddx_tensor *idx, ddx_tensor *table) {
    if (!ddx_op_ok(c, "embedding", 2, (ddx_tensor *[]){idx, table})) return NULL;
    char si[SHAPE_BUF], st[SHAPE_BUF];
    if (idx->ndim != 1 || idx->dtype != DDX_I32)
        return ddx_op_fail(c, DDX_E_INPUT, "embedding: indices must be an i32 [N] tensor, got %s %s",
                           ddx_dtype_name(idx->dtype), ddx_shape_str(idx, si, sizeof si));
    if (table->ndim != 2 || !is_float_dtype(table->dtype) || table->shape[0] < 1)
        return ddx_op_fail(c, DDX_E_INPUT, "embedding: table must be a float [V, D] tensor with V >= 1, got %s %s",
                           ddx_dtype_name(table->dtype), ddx_shape_str(table, st, sizeof st));
    // Index range is checked by the backend's forward: on CUDA the indices live on the device.
    return ddx_op_run(c, DDX_OP_EMBEDDING, 2, (ddx_tensor *[]){idx, table}, &(ddx_op_params){0}, table->dtype, 2,
                      (int64_t[]){idx->shape[0], table->shape[1]});
}

ddx_status ddx_cpu_embedding_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *it = n->in[0], *tt = n->in[1];
    DDX_TRY(cpu_need_f32("embedding", tt, "table"));
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
    char s[SHAPE_BUF];
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
// 1 ulp of PyTorch). tests/test_misc_ref.c checks this against a PyTorch-made table.
ddx_status ddx_cpu_timestep_emb_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *tt = n->in[0];
    DDX_TRY(cpu_need_f32("timestep_emb", tt, "timesteps"));
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

ddx_status ddx_cpu_timestep_emb_bwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    (void)n;
    return ddx_errorf(DDX_E_INTERNAL, "timestep_emb: no differentiable input (the front-end rejects t with grad)");
}

// =========================================================================================
// dropout: inverted dropout; the mask is regenerated from its Philox key in backward.
// =========================================================================================
ddx_tensor *ddx_dropout(ddx_ctx *c, ddx_tensor *x, float p) {
    if (!ddx_op_ok(c, "dropout", 1, (ddx_tensor *[]){x})) return NULL;
    if (!is_float_dtype(x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "dropout: input must be float, got %s", ddx_dtype_name(x->dtype));
    if (!(p >= 0.0f && p <= 1.0f))
        return ddx_op_fail(c, DDX_E_INPUT, "dropout: p must be in [0, 1], got %g", (double)p);
    if (!c->training || p == 0.0f) return x;
    if (c->step > UINT32_MAX)
        return ddx_op_fail(c, DDX_E_INPUT, "dropout: step %llu does not fit the 32-bit Philox step word",
                           (unsigned long long)c->step);
    // Each active call of the step gets its own stream (runtime/philox.h's convention), so two
    // dropouts in one step draw different masks; the key, not the mask, goes on the tape.
    ddx_op_params op = {.dropout = {.p = p, .seed = c->seed, .stream = DDX_RNG_STREAM_DROPOUT + c->rng_calls,
                                    .counter = c->step}};
    c->rng_calls++;
    return ddx_op_run(c, DDX_OP_DROPOUT, 1, (ddx_tensor *[]){x}, &op, x->dtype, x->ndim, x->shape);
}

// The mask is regenerated from the Philox key in backward rather than stored.
//
// Philox is evaluated for DROPOUT_GROUPS consecutive groups at once, lane-parallel (the same
// arithmetic as ddx_philox4x32_10 on arrays, which GCC vectorises), instead of one group per
// call: that is what made dropout run at ~1.5 GB/s. keep_i = (u_i >= p) is decided on the
// integer v_i = 2 * (bits >> 9) + 1: u_i = v_i * 2^-24 exactly (ddx_philox_unit), p * 2^24
// is exact too, so u_i >= p <=> v_i >= ceil(p * 2^24). The mask is bit-identical to
// ddx_philox_uniform(...) >= p (tests/test_misc_ref.c checks it).
#define DROPOUT_GROUPS 64
#define DROPOUT_BLOCK (4 * DROPOUT_GROUPS)

typedef struct dropout_key {
    uint32_t k0, k1, stream, step;
    int32_t threshold;   // ceil(p * 2^24), in [0, 2^24]
} dropout_key;

static dropout_key dropout_key_of(const ddx_node *n) {
    const double t = ceil((double)n->p.dropout.p * 16777216.0);
    return (dropout_key){.k0 = (uint32_t)n->p.dropout.seed,
                         .k1 = (uint32_t)(n->p.dropout.seed >> 32),
                         .stream = n->p.dropout.stream,
                         .step = (uint32_t)n->p.dropout.counter,
                         .threshold = (int32_t)t};
}

// keep[e] = all-ones or 0 for elements 4 * g0 + e, e in [0, DROPOUT_BLOCK): element 4g + l is
// word l of group g.
static void dropout_mask_block(const dropout_key *k, uint64_t g0, uint32_t keep[DROPOUT_BLOCK]) {
    uint32_t x0[DROPOUT_GROUPS], x1[DROPOUT_GROUPS], x2[DROPOUT_GROUPS], x3[DROPOUT_GROUPS];
    for (int j = 0; j < DROPOUT_GROUPS; j++) {
        const uint64_t g = g0 + (uint64_t)j;
        x0[j] = (uint32_t)g;
        x1[j] = (uint32_t)(g >> 32);
        x2[j] = k->stream;
        x3[j] = k->step;
    }
    uint32_t k0 = k->k0, k1 = k->k1;
    for (int r = 0; r < 10; r++) {
        for (int j = 0; j < DROPOUT_GROUPS; j++) {
            const uint64_t p0 = (uint64_t)DDX_PHILOX_M0 * x0[j], p1 = (uint64_t)DDX_PHILOX_M1 * x2[j];
            const uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1[j] ^ k0, y2 = (uint32_t)(p0 >> 32) ^ x3[j] ^ k1;
            x0[j] = y0;
            x1[j] = (uint32_t)p1;
            x2[j] = y2;
            x3[j] = (uint32_t)p0;
        }
        k0 += DDX_PHILOX_W0;
        k1 += DDX_PHILOX_W1;
    }
    const int32_t t = k->threshold;
    for (int j = 0; j < DROPOUT_GROUPS; j++) {
        keep[4 * j + 0] = 0u - (uint32_t)((int32_t)(((x0[j] >> 9) << 1) | 1u) >= t);
        keep[4 * j + 1] = 0u - (uint32_t)((int32_t)(((x1[j] >> 9) << 1) | 1u) >= t);
        keep[4 * j + 2] = 0u - (uint32_t)((int32_t)(((x2[j] >> 9) << 1) | 1u) >= t);
        keep[4 * j + 3] = 0u - (uint32_t)((int32_t)(((x3[j] >> 9) << 1) | 1u) >= t);
    }
}

static inline float mask_f32(float v, uint32_t m) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= m;
    memcpy(&v, &u, sizeof v);
    return v;
}

// p == 1 keeps nothing (u < 1 always); its scale is 0 rather than inf, like PyTorch's zeros.
static float dropout_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

ddx_status ddx_cpu_dropout_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(cpu_need_f32("dropout", n->in[0], "input"));
    const float scale = dropout_scale(n->p.dropout.p);
    const int64_t cnt = ddx_numel(n->in[0]);
    const float *x = ddx_f32c(n->in[0]);
    float *y = ddx_f32(n->out);
    const dropout_key key = dropout_key_of(n);
    uint32_t keep[DROPOUT_BLOCK];
    for (int64_t e0 = 0; e0 < cnt; e0 += DROPOUT_BLOCK) {
        dropout_mask_block(&key, (uint64_t)e0 >> 2, keep);
        const int64_t m = cnt - e0 < DROPOUT_BLOCK ? cnt - e0 : DROPOUT_BLOCK;
        const float *xb = x + e0;
        float *yb = y + e0;
        for (int64_t i = 0; i < m; i++) yb[i] = mask_f32(xb[i] * scale, keep[i]);
    }
    return DDX_OK;
}

ddx_status ddx_cpu_dropout_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return DDX_OK;
    const float scale = dropout_scale(n->p.dropout.p);
    const int64_t cnt = ddx_numel(n->in[0]);
    const float *dy = ddx_f32c(n->out->grad);
    float *dx = ddx_f32(gx);
    const dropout_key key = dropout_key_of(n);
    uint32_t keep[DROPOUT_BLOCK];
    for (int64_t e0 = 0; e0 < cnt; e0 += DROPOUT_BLOCK) {
        dropout_mask_block(&key, (uint64_t)e0 >> 2, keep);
        const int64_t m = cnt - e0 < DROPOUT_BLOCK ? cnt - e0 : DROPOUT_BLOCK;
        const float *db = dy + e0;
        float *xb = dx + e0;
        // Dropped elements add nothing (not even +0, which would turn a -0 grad into +0).
        for (int64_t i = 0; i < m; i++) {
            const float add = xb[i] + db[i] * scale;
            uint32_t ua, uo;
            memcpy(&ua, &add, sizeof ua);
            memcpy(&uo, &xb[i], sizeof uo);
            const uint32_t u = (ua & keep[i]) | (uo & ~keep[i]);
            memcpy(&xb[i], &u, sizeof u);
        }
    }
    return DDX_OK;
}

// =========================================================================================
// Reductions to [1]: mse_loss (mean of squared difference), sum, mean. Accumulated in double
// so the loss does not depend on the summation order at fp32 precision.
// =========================================================================================
static ddx_tensor *reduce_front(ddx_ctx *c, ddx_op op, const char *name, ddx_tensor *x) {
    if (!ddx_op_ok(c, name, 1, (ddx_tensor *[]){x})) return NULL;
    if (!is_float_dtype(x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "%s: input must be float, got %s", name, ddx_dtype_name(x->dtype));
    if (ddx_numel(x) == 0) return ddx_op_fail(c, DDX_E_INPUT, "%s: input is empty", name);
    return ddx_op_run(c, op, 1, (ddx_tensor *[]){x}, &(ddx_op_params){0}, DDX_F32, 1, (int64_t[]){1});
}

ddx_tensor *ddx_mse_loss(ddx_ctx *c, ddx_tensor *pred, ddx_tensor *target) {
    if (!ddx_op_ok(c, "mse_loss", 2, (ddx_tensor *[]){pred, target})) return NULL;
    char sp[SHAPE_BUF], st[SHAPE_BUF];
    if (pred->dtype != DDX_F32 || target->dtype != DDX_F32)
        return ddx_op_fail(c, DDX_E_INPUT, "mse_loss: pred and target must be f32, got %s and %s",
                           ddx_dtype_name(pred->dtype), ddx_dtype_name(target->dtype));
    if (!ddx_same_shape(pred, target))
        return ddx_op_fail(c, DDX_E_INPUT, "mse_loss: pred %s and target %s differ in shape",
                           ddx_shape_str(pred, sp, sizeof sp), ddx_shape_str(target, st, sizeof st));
    if (ddx_numel(pred) == 0) return ddx_op_fail(c, DDX_E_INPUT, "mse_loss: inputs are empty");
    return ddx_op_run(c, DDX_OP_MSE_LOSS, 2, (ddx_tensor *[]){pred, target}, &(ddx_op_params){0}, DDX_F32, 1,
                      (int64_t[]){1});
}

ddx_status ddx_cpu_mse_loss_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(cpu_need_f32("mse_loss", n->in[0], "pred"));
    DDX_TRY(cpu_need_f32("mse_loss", n->in[1], "target"));
    const int64_t cnt = ddx_numel(n->in[0]);
    const float *a = ddx_f32c(n->in[0]), *b = ddx_f32c(n->in[1]);
    double acc = 0.0;
    for (int64_t i = 0; i < cnt; i++) {
        const double d = (double)a[i] - (double)b[i];
        acc += d * d;
    }
    ddx_f32(n->out)[0] = (float)(acc / (double)cnt);
    return DDX_OK;
}

ddx_status ddx_cpu_mse_loss_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gp = ddx_in_grad(c, n, 0), *gt = ddx_in_grad(c, n, 1);
    const int64_t cnt = ddx_numel(n->in[0]);
    const float *a = ddx_f32c(n->in[0]), *b = ddx_f32c(n->in[1]);
    const float k = (float)(2.0 * (double)ddx_f32c(n->out->grad)[0] / (double)cnt);
    float *dp = gp ? ddx_f32(gp) : NULL, *dt = gt ? ddx_f32(gt) : NULL;
    for (int64_t i = 0; i < cnt; i++) {
        const float g = k * (a[i] - b[i]);
        if (dp) dp[i] += g;
        if (dt) dt[i] -= g;
    }
    return DDX_OK;
}

ddx_tensor *ddx_sum(ddx_ctx *c, ddx_tensor *x) { return reduce_front(c, DDX_OP_SUM, "sum", x); }
ddx_tensor *ddx_mean(ddx_ctx *c, ddx_tensor *x) { return reduce_front(c, DDX_OP_MEAN, "mean", x); }

// Eight independent double accumulators: a single one is a chain of dependent adds (one
// element per add latency, ~5 GB/s); lanes let GCC vectorise without reassociating anything
// itself, and the result differs from the sequential double sum only by double roundings.
#define SUM_LANES 8
static double sum_f32(const ddx_tensor *x) {
    const float *p = ddx_f32c(x);
    const int64_t cnt = ddx_numel(x), body = cnt - cnt % SUM_LANES;
    double lane[SUM_LANES] = {0};
    for (int64_t i = 0; i < body; i += SUM_LANES)
        for (int j = 0; j < SUM_LANES; j++) lane[j] += p[i + j];
    double acc = 0.0;
    for (int j = 0; j < SUM_LANES; j++) acc += lane[j];
    for (int64_t i = body; i < cnt; i++) acc += p[i];
    return acc;
}

// Both reductions broadcast one scalar back: dx += dy * w.
static void add_scalar_grad(ddx_tensor *g, float v) {
    float *d = ddx_f32(g);
    const int64_t cnt = ddx_numel(g);
    for (int64_t i = 0; i < cnt; i++) d[i] += v;
}

ddx_status ddx_cpu_sum_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(cpu_need_f32("sum", n->in[0], "input"));
    ddx_f32(n->out)[0] = (float)sum_f32(n->in[0]);
    return DDX_OK;
}

ddx_status ddx_cpu_sum_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (g) add_scalar_grad(g, ddx_f32c(n->out->grad)[0]);
    return DDX_OK;
}

ddx_status ddx_cpu_mean_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(cpu_need_f32("mean", n->in[0], "input"));
    ddx_f32(n->out)[0] = (float)(sum_f32(n->in[0]) / (double)ddx_numel(n->in[0]));
    return DDX_OK;
}

ddx_status ddx_cpu_mean_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (g) add_scalar_grad(g, (float)((double)ddx_f32c(n->out->grad)[0] / (double)ddx_numel(n->in[0])));
    return DDX_OK;
}
