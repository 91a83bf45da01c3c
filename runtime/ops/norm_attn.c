// GroupNorm (optionally fused with SiLU) and multi-head self-attention: front-ends and the CPU
// reference, forward and backward side by side.
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "cpu_math.h"
#include "op_impl.h"

// The CPU accumulates in double; the arena hands out f32 tensors, so ask for twice the floats.
// The arena aligns every block to DDX_ARENA_ALIGN, which satisfies double alignment.
static double *ddx_scratch_f64(ddx_ctx *c, int64_t n) {
    ddx_tensor *t = ddx_new(c, DDX_F32, 1, (int64_t[]){2 * (n > 0 ? n : 1)});
    return t ? (double *)t->data : NULL;
}

// ============================================================================================
// group_norm
// ============================================================================================

// Elements between the batch dim and the channel dim (H*W, or L, or 1 for [N, C]).
static int64_t ddx_gn_spatial(const ddx_tensor *x) {
    int64_t s = 1;
    for (int d = 1; d < x->ndim - 1; d++) s *= x->shape[d];
    return s;
}

ddx_tensor *ddx_group_norm(ddx_ctx *c, ddx_tensor *x, ddx_tensor *gamma, ddx_tensor *beta, int groups, float eps,
                           bool fuse_silu) {
    if (!ddx_op_ok(c, "group_norm", 3, (ddx_tensor *[]){x, gamma, beta})) return NULL;
    char bx[64], bg[64], bb[64];
    if (x->ndim < 2 || x->ndim > 4)
        return ddx_op_fail(c, DDX_E_INPUT, "group_norm: input %s must be [N, H, W, C], [N, L, C] or [N, C]",
                           ddx_shape_str(x, bx, sizeof bx));
    if (x->dtype != DDX_F32 && x->dtype != DDX_BF16)
        return ddx_op_fail(c, DDX_E_INPUT, "group_norm: input dtype %s is not f32 or bf16", ddx_dtype_name(x->dtype));
    const int64_t C = x->shape[x->ndim - 1];
    if (groups < 1 || C % groups != 0)
        return ddx_op_fail(c, DDX_E_INPUT, "group_norm: %d groups do not divide the %lld channels of input %s", groups,
                           (long long)C, ddx_shape_str(x, bx, sizeof bx));
    if (!(eps > 0.0f) || !isfinite(eps))
        return ddx_op_fail(c, DDX_E_INPUT, "group_norm: eps must be a finite number > 0 (got %g)", (double)eps);
    if (gamma->ndim != 1 || gamma->shape[0] != C || beta->ndim != 1 || beta->shape[0] != C)
        return ddx_op_fail(c, DDX_E_INPUT, "group_norm: gamma %s and beta %s must both be [%lld] for input %s",
                           ddx_shape_str(gamma, bg, sizeof bg), ddx_shape_str(beta, bb, sizeof bb), (long long)C,
                           ddx_shape_str(x, bx, sizeof bx));
    if (gamma->dtype != beta->dtype || (gamma->dtype != DDX_F32 && gamma->dtype != x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "group_norm: gamma (%s) and beta (%s) must share one dtype, f32 or the input's (%s)",
                           ddx_dtype_name(gamma->dtype), ddx_dtype_name(beta->dtype), ddx_dtype_name(x->dtype));
    ddx_op_params p;
    memset(&p, 0, sizeof p);
    p.group_norm.groups = groups;
    p.group_norm.eps = eps;
    p.group_norm.fuse_silu = fuse_silu;
    return ddx_op_run(c, DDX_OP_GROUP_NORM, 3, (ddx_tensor *[]){x, gamma, beta}, &p, x->dtype, x->ndim, x->shape);
}

// The SiLU loops are the compute-bound part (one exp per element); cloned for AVX2 (see
// cpu_math.h), bit-identical to the baseline build.
// y = a * sigmoid(a), a = (x - mean) * scale + beta, over S rows of C channels.
DDX_CPU_CLONES static void gn_silu_rows(float *y, const float *x, const float *mean_c, const float *scale_c,
                                        const float *beta, int64_t S, int64_t C) {
    for (int64_t s = 0; s < S; s++) {
        const float *xr = x + s * C;
        float *yr = y + s * C;
        for (int64_t ch = 0; ch < C; ch++) {
            const float a = (xr[ch] - mean_c[ch]) * scale_c[ch] + beta[ch];
            yr[ch] = a * ddx_sigmoidf(a);
        }
    }
}

// da = dy * silu'(a) for one row, a recomputed from x and the saved statistics.
DDX_CPU_CLONES static void gn_silu_da_row(float *da, const float *xr, const float *dyr, const float *mean_c,
                                          const float *rstd_c, const float *gamma, const float *beta, int64_t C) {
    for (int64_t ch = 0; ch < C; ch++) {
        const float xh = (xr[ch] - mean_c[ch]) * rstd_c[ch];
        const float a = xh * gamma[ch] + beta[ch], sg = ddx_sigmoidf(a);
        da[ch] = dyr[ch] * (sg * (1.0f + a * (1.0f - sg)));
    }
}

// Statistics: two passes in double rather than fp32 Welford. This is the reference the GPU's
// fp32 Welford is checked against, so it should carry no error of its own worth measuring;
// the extra pass costs one more read of x, which the CPU can afford.
//
// Every loop runs over channels innermost (contiguous in NHWC) with per-channel accumulators
// folded into groups afterwards, so the compiler can vectorise them.
ddx_status ddx_cpu_group_norm_fwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *xt = n->in[0], *gt = n->in[1], *bt = n->in[2];
    if (xt->dtype != DDX_F32 || gt->dtype != DDX_F32 || bt->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "group_norm: the CPU backend runs f32 only (input is %s)",
                          ddx_dtype_name(xt->dtype));
    const int64_t N = xt->shape[0], S = ddx_gn_spatial(xt), C = xt->shape[xt->ndim - 1];
    const int64_t G = n->p.group_norm.groups, cg = C / G;
    const double count = (double)(S * cg);
    const double eps = n->p.group_norm.eps;
    const bool silu = n->p.group_norm.fuse_silu;
    if (ddx_numel(xt) == 0) return DDX_OK;

    ddx_tensor *mean_t = ddx_new(c, DDX_F32, 2, (int64_t[]){N, G});   // [N, G]
    ddx_tensor *rstd_t = ddx_new(c, DDX_F32, 2, (int64_t[]){N, G});   // [N, G]
    ddx_tensor *chan_t = ddx_new(c, DDX_F32, 2, (int64_t[]){2, C});   // [2, C] per-channel mean, rstd*gamma
    double *csum = ddx_scratch_f64(c, C);                              // [C]
    if (!mean_t || !rstd_t || !chan_t || !csum)
        return ddx_errorf(DDX_E_NOMEM, "group_norm: out of activation memory for statistics");
    n->saved[0] = mean_t;
    n->saved[1] = rstd_t;

    const float *x = ddx_f32c(xt), *gamma = ddx_f32c(gt), *beta = ddx_f32c(bt);
    float *y = ddx_f32(n->out);
    float *mean = ddx_f32(mean_t), *rstd = ddx_f32(rstd_t);
    float *mean_c = ddx_f32(chan_t), *scale_c = mean_c + C;

    for (int64_t b = 0; b < N; b++) {
        const float *xb = x + b * S * C;   // [S, C]
        float *yb = y + b * S * C;         // [S, C]

        memset(csum, 0, (size_t)C * sizeof *csum);
        for (int64_t s = 0; s < S; s++)
            for (int64_t ch = 0; ch < C; ch++) csum[ch] += xb[s * C + ch];
        for (int64_t g = 0; g < G; g++) {
            double acc = 0.0;
            for (int64_t j = 0; j < cg; j++) acc += csum[g * cg + j];
            mean[b * G + g] = (float)(acc / count);
            for (int64_t j = 0; j < cg; j++) mean_c[g * cg + j] = mean[b * G + g];
        }

        // Deviations from the mean as stored (f32), so that backward, which only has the f32
        // mean, normalises exactly the same numbers.
        memset(csum, 0, (size_t)C * sizeof *csum);
        for (int64_t s = 0; s < S; s++)
            for (int64_t ch = 0; ch < C; ch++) {
                const double d = (double)xb[s * C + ch] - mean_c[ch];
                csum[ch] += d * d;
            }
        for (int64_t g = 0; g < G; g++) {
            double acc = 0.0;
            for (int64_t j = 0; j < cg; j++) acc += csum[g * cg + j];
            // Biased variance, eps inside the sqrt: torch.nn.GroupNorm.
            rstd[b * G + g] = (float)(1.0 / sqrt(acc / count + eps));
            for (int64_t j = 0; j < cg; j++) scale_c[g * cg + j] = rstd[b * G + g] * gamma[g * cg + j];
        }

        if (silu) {
            gn_silu_rows(yb, xb, mean_c, scale_c, beta, S, C);
        } else {
            for (int64_t s = 0; s < S; s++) {
                const float *xr = xb + s * C;
                float *yr = yb + s * C;
                for (int64_t ch = 0; ch < C; ch++) yr[ch] = (xr[ch] - mean_c[ch]) * scale_c[ch] + beta[ch];
            }
        }
    }
    return DDX_OK;
}

// With xhat = (x - mean) * rstd, a = xhat * gamma + beta, y = silu ? a * sigmoid(a) : a:
//   da     = dy * (silu ? sigmoid(a) * (1 + a * (1 - sigmoid(a))) : 1)
//   dbeta  = sum da,  dgamma = sum da * xhat        (over batch and space, per channel)
//   dx     = rstd * (da*gamma - mean_g(da*gamma) - xhat * mean_g(da*gamma * xhat))
// where mean_g runs over the (n, g) group; both group sums follow from the per-channel sums
// of da and da * xhat of that batch item. a is recomputed rather than saved (no activation
// memory); da is kept for one batch item in scratch so each exp is computed once.
ddx_status ddx_cpu_group_norm_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *xt = n->in[0], *gt = n->in[1], *bt = n->in[2];
    ddx_tensor *dyt = n->out->grad;
    if (!dyt || !n->saved[0] || !n->saved[1])
        return ddx_errorf(DDX_E_INTERNAL, "group_norm backward: missing output grad or saved statistics");
    ddx_tensor *gx = ddx_in_grad(c, n, 0), *gg = ddx_in_grad(c, n, 1), *gb = ddx_in_grad(c, n, 2);
    if (!gx && !gg && !gb) return DDX_OK;

    const int64_t N = xt->shape[0], S = ddx_gn_spatial(xt), C = xt->shape[xt->ndim - 1];
    const int64_t G = n->p.group_norm.groups, cg = C / G;
    const double count = (double)(S * cg);
    const bool silu = n->p.group_norm.fuse_silu;
    if (ddx_numel(xt) == 0) return DDX_OK;

    double *acc = ddx_scratch_f64(c, 4 * C);
    ddx_tensor *chan_t = ddx_new(c, DDX_F32, 2, (int64_t[]){4, C});   // [4, C]
    // With SiLU, da is kept for a whole batch item when dx is wanted (its pass reads it), else
    // one row is reused; without SiLU da is dy itself.
    const int64_t da_rows = gx ? S : 1, da_step = gx ? C : 0;
    ddx_tensor *da_t = silu ? ddx_new(c, DDX_F32, 2, (int64_t[]){da_rows, C}) : NULL;   // [S or 1, C]
    if (!acc || !chan_t || (silu && !da_t))
        return ddx_errorf(DDX_E_NOMEM, "group_norm backward: out of activation memory for scratch");
    double *dgamma = acc, *dbeta = acc + C;            // [C] each, over the whole batch
    double *dgn = acc + 2 * C, *dbn = acc + 3 * C;     // [C] each, this batch item
    float *mean_c = ddx_f32(chan_t), *rstd_c = mean_c + C, *m1_c = mean_c + 2 * C, *m2_c = mean_c + 3 * C;
    float *da_buf = da_t ? ddx_f32(da_t) : NULL;
    memset(dgamma, 0, (size_t)(2 * C) * sizeof *acc);

    const float *x = ddx_f32c(xt), *gamma = ddx_f32c(gt), *beta = ddx_f32c(bt), *dy = ddx_f32c(dyt);
    const float *mean = ddx_f32c(n->saved[0]), *rstd = ddx_f32c(n->saved[1]);

    for (int64_t b = 0; b < N; b++) {
        const float *xb = x + b * S * C, *dyb = dy + b * S * C;   // [S, C]
        for (int64_t ch = 0; ch < C; ch++) {
            mean_c[ch] = mean[b * G + ch / cg];
            rstd_c[ch] = rstd[b * G + ch / cg];
        }
        memset(dgn, 0, (size_t)(2 * C) * sizeof *acc);
        // Separate branch-free loops per row (da first, then the channel sums) so that each
        // vectorises; one loop with the silu and dx tests inside stayed scalar.
        for (int64_t s = 0; s < S; s++) {
            const float *xr = xb + s * C, *dyr = dyb + s * C;
            const float *dar = dyr;
            if (silu) {
                float *dw = da_buf + s * da_step;
                gn_silu_da_row(dw, xr, dyr, mean_c, rstd_c, gamma, beta, C);
                dar = dw;
            }
            for (int64_t ch = 0; ch < C; ch++) {
                const float xh = (xr[ch] - mean_c[ch]) * rstd_c[ch];
                dbn[ch] += dar[ch];
                dgn[ch] += (double)dar[ch] * xh;
            }
        }
        for (int64_t ch = 0; ch < C; ch++) {
            dbeta[ch] += dbn[ch];
            dgamma[ch] += dgn[ch];
        }
        if (!gx) continue;
        for (int64_t g = 0; g < G; g++) {
            double s1 = 0.0, s2 = 0.0;
            for (int64_t j = 0; j < cg; j++) {
                s1 += (double)gamma[g * cg + j] * dbn[g * cg + j];
                s2 += (double)gamma[g * cg + j] * dgn[g * cg + j];
            }
            for (int64_t j = 0; j < cg; j++) {
                m1_c[g * cg + j] = (float)(s1 / count);
                m2_c[g * cg + j] = (float)(s2 / count);
            }
        }
        float *dxb = ddx_f32(gx) + b * S * C;
        for (int64_t s = 0; s < S; s++) {
            const float *xr = xb + s * C, *dar = silu ? da_buf + s * C : dyb + s * C;
            float *dxr = dxb + s * C;
            for (int64_t ch = 0; ch < C; ch++) {
                const float xh = (xr[ch] - mean_c[ch]) * rstd_c[ch];
                dxr[ch] += rstd_c[ch] * (dar[ch] * gamma[ch] - m1_c[ch] - xh * m2_c[ch]);
            }
        }
    }
    if (gg)
        for (int64_t ch = 0; ch < C; ch++) ddx_f32(gg)[ch] += (float)dgamma[ch];
    if (gb)
        for (int64_t ch = 0; ch < C; ch++) ddx_f32(gb)[ch] += (float)dbeta[ch];
    return DDX_OK;
}

// ============================================================================================
// attention
// ============================================================================================

ddx_tensor *ddx_attention(ddx_ctx *c, ddx_tensor *q, ddx_tensor *k, ddx_tensor *v, int heads, float scale) {
    if (!ddx_op_ok(c, "attention", 3, (ddx_tensor *[]){q, k, v})) return NULL;
    char bq[64], bk[64], bv[64];
    if (q->ndim != 3)
        return ddx_op_fail(c, DDX_E_INPUT, "attention: q %s must be [N, L, C] (reshape [N, H, W, C] to [N, H*W, C])",
                           ddx_shape_str(q, bq, sizeof bq));
    if (!ddx_same_shape(q, k) || !ddx_same_shape(q, v))
        return ddx_op_fail(c, DDX_E_INPUT, "attention: q %s, k %s and v %s must have one shape [N, L, C]",
                           ddx_shape_str(q, bq, sizeof bq), ddx_shape_str(k, bk, sizeof bk), ddx_shape_str(v, bv, sizeof bv));
    if ((q->dtype != DDX_F32 && q->dtype != DDX_BF16) || k->dtype != q->dtype || v->dtype != q->dtype)
        return ddx_op_fail(c, DDX_E_INPUT, "attention: q, k, v dtypes (%s, %s, %s) must be one of f32, bf16",
                           ddx_dtype_name(q->dtype), ddx_dtype_name(k->dtype), ddx_dtype_name(v->dtype));
    const int64_t L = q->shape[1], C = q->shape[2];
    if (heads < 1 || C % heads != 0)
        return ddx_op_fail(c, DDX_E_INPUT, "attention: %d heads do not divide the %lld channels of q %s", heads,
                           (long long)C, ddx_shape_str(q, bq, sizeof bq));
    // cblas takes int dimensions and leading dims.
    if (L > INT_MAX || C > INT_MAX)
        return ddx_op_fail(c, DDX_E_INPUT, "attention: q %s is too large (L and C must fit in an int)",
                           ddx_shape_str(q, bq, sizeof bq));
    if (!isfinite(scale))
        return ddx_op_fail(c, DDX_E_INPUT, "attention: scale must be finite (got %g; 0 means 1/sqrt(head_dim))",
                           (double)scale);
    ddx_op_params p;
    memset(&p, 0, sizeof p);
    p.attention.heads = heads;
    // Resolved here so that no backend has to know the convention.
    p.attention.scale = scale != 0.0f ? scale : (float)(1.0 / sqrt((double)(C / heads)));
    return ddx_op_run(c, DDX_OP_ATTENTION, 3, (ddx_tensor *[]){q, k, v}, &p, q->dtype, 3, q->shape);
}

// Head h of batch item b is the [L, d] block at column h*d of the [L, C] matrix; sgemm reads it
// in place with leading dimension C, so no head is ever copied.
//
// Forward keeps only the row logsumexp [N, heads, L] for backward and recomputes P there:
// storing P would need N*heads*L*L floats (8 MiB per head and item at 32x32 tokens).
ddx_status ddx_cpu_attention_fwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *qt = n->in[0], *kt = n->in[1], *vt = n->in[2];
    if (qt->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "attention: the CPU backend runs f32 only (input is %s)",
                          ddx_dtype_name(qt->dtype));
    const int64_t N = qt->shape[0], L = qt->shape[1], C = qt->shape[2];
    const int64_t H = n->p.attention.heads, d = C / H;
    const float scale = n->p.attention.scale;
    if (N * L * C == 0) return DDX_OK;

    ddx_tensor *lse_t = ddx_new(c, DDX_F32, 3, (int64_t[]){N, H, L});   // [N, heads, L]
    ddx_tensor *s_t = ddx_new(c, DDX_F32, 2, (int64_t[]){L, L});         // [L, L] scores, then P
    if (!lse_t || !s_t) return ddx_errorf(DDX_E_NOMEM, "attention: out of activation memory for a [%lld, %lld] score matrix",
                                          (long long)L, (long long)L);
    n->saved[0] = lse_t;
    float *P = ddx_f32(s_t), *lse = ddx_f32(lse_t);
    const int iL = (int)L, iC = (int)C, id = (int)d;

    for (int64_t b = 0; b < N; b++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t off = b * L * C + h * d;
            const float *Q = ddx_f32c(qt) + off, *K = ddx_f32c(kt) + off, *V = ddx_f32c(vt) + off;   // [L, d] ld C
            float *O = ddx_f32(n->out) + off;                                                        // [L, d] ld C
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iL, iL, id, scale, Q, iC, K, iC, 0.0f, P, iL);
            float *lse_bh = lse + (b * H + h) * L;
            for (int64_t i = 0; i < L; i++) {
                float *row = P + i * L;
                float mx = row[0];
                for (int64_t j = 1; j < L; j++) mx = row[j] > mx ? row[j] : mx;
                double sum = 0.0;
                for (int64_t j = 0; j < L; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                const float inv = (float)(1.0 / sum);
                for (int64_t j = 0; j < L; j++) row[j] *= inv;
                lse_bh[i] = mx + (float)log(sum);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, iL, id, iL, 1.0f, P, iL, V, iC, 0.0f, O, iC);
        }
    return DDX_OK;
}

// P = exp(S - lse); dP = dO V^T; dS = P * (dP - rowsum(dP * P));
// dQ += scale dS K; dK += scale dS^T Q; dV += P^T dO.
ddx_status ddx_cpu_attention_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *qt = n->in[0], *kt = n->in[1], *vt = n->in[2];
    ddx_tensor *dot = n->out->grad;
    if (!dot || !n->saved[0]) return ddx_errorf(DDX_E_INTERNAL, "attention backward: missing output grad or saved logsumexp");
    ddx_tensor *gq = ddx_in_grad(c, n, 0), *gk = ddx_in_grad(c, n, 1), *gv = ddx_in_grad(c, n, 2);
    if (!gq && !gk && !gv) return DDX_OK;
    const int64_t N = qt->shape[0], L = qt->shape[1], C = qt->shape[2];
    const int64_t H = n->p.attention.heads, d = C / H;
    const float scale = n->p.attention.scale;
    if (N * L * C == 0) return DDX_OK;

    const bool need_ds = gq || gk;
    ddx_tensor *p_t = ddx_new(c, DDX_F32, 2, (int64_t[]){L, L});                      // [L, L]
    ddx_tensor *dp_t = need_ds ? ddx_new(c, DDX_F32, 2, (int64_t[]){L, L}) : NULL;     // [L, L]
    if (!p_t || (need_ds && !dp_t))
        return ddx_errorf(DDX_E_NOMEM, "attention backward: out of activation memory for [%lld, %lld] scratch",
                          (long long)L, (long long)L);
    float *P = ddx_f32(p_t), *dP = dp_t ? ddx_f32(dp_t) : NULL;
    const float *lse = ddx_f32c(n->saved[0]);
    const int iL = (int)L, iC = (int)C, id = (int)d;

    for (int64_t b = 0; b < N; b++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t off = b * L * C + h * d;
            const float *Q = ddx_f32c(qt) + off, *K = ddx_f32c(kt) + off, *V = ddx_f32c(vt) + off;   // [L, d] ld C
            const float *dO = ddx_f32c(dot) + off;                                                   // [L, d] ld C
            const float *lse_bh = lse + (b * H + h) * L;

            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iL, iL, id, scale, Q, iC, K, iC, 0.0f, P, iL);
            for (int64_t i = 0; i < L; i++)
                for (int64_t j = 0; j < L; j++) P[i * L + j] = expf(P[i * L + j] - lse_bh[i]);

            if (gv)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, iL, id, iL, 1.0f, P, iL, dO, iC, 1.0f,
                            ddx_f32(gv) + off, iC);
            if (!need_ds) continue;

            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iL, iL, id, 1.0f, dO, iC, V, iC, 0.0f, dP, iL);
            for (int64_t i = 0; i < L; i++) {
                float *dpr = dP + i * L;
                const float *pr = P + i * L;
                double dot_i = 0.0;
                for (int64_t j = 0; j < L; j++) dot_i += (double)dpr[j] * pr[j];
                const float di = (float)dot_i;
                for (int64_t j = 0; j < L; j++) dpr[j] = pr[j] * (dpr[j] - di);   // dP becomes dS
            }
            if (gq)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, iL, id, iL, scale, dP, iL, K, iC, 1.0f,
                            ddx_f32(gq) + off, iC);
            if (gk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, iL, id, iL, scale, dP, iL, Q, iC, 1.0f,
                            ddx_f32(gk) + off, iC);
        }
    return DDX_OK;
}
