// GroupNorm (optionally fused with SiLU) and multi-head self-attention: front-ends and the CPU
// reference, forward and backward side by side.
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "cpu_math.h"
#include "op_impl.h"
#include "threads.h"

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

// One group_norm call split over the thread pool by batch item: items are independent, and
// each thread owns its scratch (per-channel sums, broadcast statistics, da) and, in backward,
// its partial dgamma/dbeta, folded in thread order afterwards (threads.h).
typedef struct gn_job {
    int64_t S, C, G, cg;
    double count, eps;
    bool silu;
    const float *x, *gamma, *beta, *dy, *mean_in, *rstd_in;
    float *y, *mean, *rstd, *dx;
    double *dacc;       // backward: [T, 4C] dgamma, dbeta (whole share), dgn, dbn (one item)
    float *chan;        // [T, 4C]
    float *da;          // backward with SiLU: [T, da_rows, C]
    int64_t da_rows, da_step;
} gn_job;

// Statistics: two passes in double rather than fp32 Welford. This is the reference the GPU's
// fp32 Welford is checked against, so it should carry no error of its own worth measuring;
// the extra pass costs one more read of x, which the CPU can afford.
//
// Every loop runs over channels innermost (contiguous in NHWC) with per-channel accumulators
// folded into groups afterwards, so the compiler can vectorise them.
static void gn_fwd_range(void *arg, int64_t b0, int64_t b1, int tid) {
    const gn_job *j = arg;
    const int64_t S = j->S, C = j->C, G = j->G, cg = j->cg;
    double *csum = j->dacc + (int64_t)tid * C;
    float *mean_c = j->chan + (int64_t)tid * 2 * C, *scale_c = mean_c + C;
    float *mean = j->mean, *rstd = j->rstd;
    const float *gamma = j->gamma, *beta = j->beta;
    for (int64_t b = b0; b < b1; b++) {
        const float *xb = j->x + b * S * C;   // [S, C]
        float *yb = j->y + b * S * C;         // [S, C]

        memset(csum, 0, (size_t)C * sizeof *csum);
        for (int64_t s = 0; s < S; s++)
            for (int64_t ch = 0; ch < C; ch++) csum[ch] += xb[s * C + ch];
        for (int64_t g = 0; g < G; g++) {
            double acc = 0.0;
            for (int64_t k = 0; k < cg; k++) acc += csum[g * cg + k];
            mean[b * G + g] = (float)(acc / j->count);
            for (int64_t k = 0; k < cg; k++) mean_c[g * cg + k] = mean[b * G + g];
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
            for (int64_t k = 0; k < cg; k++) acc += csum[g * cg + k];
            // Biased variance, eps inside the sqrt: torch.nn.GroupNorm.
            rstd[b * G + g] = (float)(1.0 / sqrt(acc / j->count + j->eps));
            for (int64_t k = 0; k < cg; k++) scale_c[g * cg + k] = rstd[b * G + g] * gamma[g * cg + k];
        }

        if (j->silu) {
            gn_silu_rows(yb, xb, mean_c, scale_c, beta, S, C);
        } else {
            for (int64_t s = 0; s < S; s++) {
                const float *xr = xb + s * C;
                float *yr = yb + s * C;
                for (int64_t ch = 0; ch < C; ch++) yr[ch] = (xr[ch] - mean_c[ch]) * scale_c[ch] + beta[ch];
            }
        }
    }
}

// The shape and parameters of a group_norm node, zero elsewhere.
static gn_job gn_job_of(const ddx_node *n) {
    const ddx_tensor *xt = n->in[0];
    gn_job j;
    memset(&j, 0, sizeof j);
    j.S = ddx_gn_spatial(xt);
    j.C = xt->shape[xt->ndim - 1];
    j.G = n->p.group_norm.groups;
    j.cg = j.C / j.G;
    j.count = (double)(j.S * j.cg);
    j.eps = n->p.group_norm.eps;
    j.silu = n->p.group_norm.fuse_silu;
    return j;
}

ddx_status ddx_cpu_group_norm_fwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *xt = n->in[0], *gt = n->in[1], *bt = n->in[2];
    if (xt->dtype != DDX_F32 || gt->dtype != DDX_F32 || bt->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "group_norm: the CPU backend runs f32 only (input is %s)",
                          ddx_dtype_name(xt->dtype));
    gn_job j = gn_job_of(n);
    const int64_t N = xt->shape[0];
    if (ddx_numel(xt) == 0) return DDX_OK;
    const int T = ddx_threads_count();

    ddx_tensor *mean_t = ddx_new(c, DDX_F32, 2, (int64_t[]){N, j.G});            // [N, G]
    ddx_tensor *rstd_t = ddx_new(c, DDX_F32, 2, (int64_t[]){N, j.G});            // [N, G]
    ddx_tensor *chan_t = ddx_new(c, DDX_F32, 3, (int64_t[]){T, 2, j.C});         // [T, 2, C] mean, rstd*gamma
    j.dacc = ddx_scratch_f64(c, (int64_t)T * j.C);                               // [T, C]
    if (!mean_t || !rstd_t || !chan_t || !j.dacc)
        return ddx_errorf(DDX_E_NOMEM, "group_norm: out of activation memory for statistics");
    n->saved[0] = mean_t;
    n->saved[1] = rstd_t;
    j.x = ddx_f32c(xt);
    j.gamma = ddx_f32c(gt);
    j.beta = ddx_f32c(bt);
    j.y = ddx_f32(n->out);
    j.mean = ddx_f32(mean_t);
    j.rstd = ddx_f32(rstd_t);
    j.chan = ddx_f32(chan_t);
    ddx_parallel_for(N, gn_fwd_range, &j);
    return DDX_OK;
}

// With xhat = (x - mean) * rstd, a = xhat * gamma + beta, y = silu ? a * sigmoid(a) : a:
//   da     = dy * (silu ? sigmoid(a) * (1 + a * (1 - sigmoid(a))) : 1)
//   dbeta  = sum da,  dgamma = sum da * xhat        (over batch and space, per channel)
//   dx     = rstd * (da*gamma - mean_g(da*gamma) - xhat * mean_g(da*gamma * xhat))
// where mean_g runs over the (n, g) group; both group sums follow from the per-channel sums
// of da and da * xhat of that batch item. a is recomputed rather than saved (no activation
// memory); da is kept for one batch item in scratch so each exp is computed once.
static void gn_bwd_range(void *arg, int64_t b0, int64_t b1, int tid) {
    const gn_job *j = arg;
    const int64_t S = j->S, C = j->C, G = j->G, cg = j->cg;
    const bool silu = j->silu;
    double *acc = j->dacc + (int64_t)tid * 4 * C;
    double *dgamma = acc, *dbeta = acc + C;            // [C] each, over this thread's items
    double *dgn = acc + 2 * C, *dbn = acc + 3 * C;     // [C] each, this batch item
    float *mean_c = j->chan + (int64_t)tid * 4 * C, *rstd_c = mean_c + C, *m1_c = mean_c + 2 * C, *m2_c = mean_c + 3 * C;
    float *da_buf = j->da ? j->da + (int64_t)tid * j->da_rows * C : NULL;
    const float *gamma = j->gamma, *beta = j->beta;
    memset(dgamma, 0, (size_t)(2 * C) * sizeof *acc);

    for (int64_t b = b0; b < b1; b++) {
        const float *xb = j->x + b * S * C, *dyb = j->dy + b * S * C;   // [S, C]
        for (int64_t ch = 0; ch < C; ch++) {
            mean_c[ch] = j->mean_in[b * G + ch / cg];
            rstd_c[ch] = j->rstd_in[b * G + ch / cg];
        }
        memset(dgn, 0, (size_t)(2 * C) * sizeof *acc);
        // Separate branch-free loops per row (da first, then the channel sums) so that each
        // vectorises; one loop with the silu and dx tests inside stayed scalar.
        for (int64_t s = 0; s < S; s++) {
            const float *xr = xb + s * C, *dyr = dyb + s * C;
            const float *dar = dyr;
            if (silu) {
                float *dw = da_buf + s * j->da_step;
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
        if (!j->dx) continue;
        for (int64_t g = 0; g < G; g++) {
            double s1 = 0.0, s2 = 0.0;
            for (int64_t k = 0; k < cg; k++) {
                s1 += (double)gamma[g * cg + k] * dbn[g * cg + k];
                s2 += (double)gamma[g * cg + k] * dgn[g * cg + k];
            }
            for (int64_t k = 0; k < cg; k++) {
                m1_c[g * cg + k] = (float)(s1 / j->count);
                m2_c[g * cg + k] = (float)(s2 / j->count);
            }
        }
        float *dxb = j->dx + b * S * C;
        for (int64_t s = 0; s < S; s++) {
            const float *xr = xb + s * C, *dar = silu ? da_buf + s * C : dyb + s * C;
            float *dxr = dxb + s * C;
            for (int64_t ch = 0; ch < C; ch++) {
                const float xh = (xr[ch] - mean_c[ch]) * rstd_c[ch];
                dxr[ch] += rstd_c[ch] * (dar[ch] * gamma[ch] - m1_c[ch] - xh * m2_c[ch]);
            }
        }
    }
}

ddx_status ddx_cpu_group_norm_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *xt = n->in[0], *gt = n->in[1], *bt = n->in[2];
    ddx_tensor *dyt = n->out->grad;
    if (!dyt || !n->saved[0] || !n->saved[1])
        return ddx_errorf(DDX_E_INTERNAL, "group_norm backward: missing output grad or saved statistics");
    ddx_tensor *gx = ddx_in_grad(c, n, 0), *gg = ddx_in_grad(c, n, 1), *gb = ddx_in_grad(c, n, 2);
    if (!gx && !gg && !gb) return DDX_OK;

    gn_job j = gn_job_of(n);
    const int64_t N = xt->shape[0];
    if (ddx_numel(xt) == 0) return DDX_OK;
    const int T = ddx_threads_count();
    const int64_t C = j.C;

    j.dacc = ddx_scratch_f64(c, (int64_t)T * 4 * C);                         // [T, 4, C]
    ddx_tensor *chan_t = ddx_new(c, DDX_F32, 3, (int64_t[]){T, 4, C});      // [T, 4, C]
    // With SiLU, da is kept for a whole batch item when dx is wanted (its pass reads it), else
    // one row is reused; without SiLU da is dy itself.
    j.da_rows = gx ? j.S : 1;
    j.da_step = gx ? C : 0;
    ddx_tensor *da_t = j.silu ? ddx_new(c, DDX_F32, 3, (int64_t[]){T, j.da_rows, C}) : NULL;   // [T, S or 1, C]
    if (!j.dacc || !chan_t || (j.silu && !da_t))
        return ddx_errorf(DDX_E_NOMEM, "group_norm backward: out of activation memory for scratch");
    // Threads past N (N < T) run nothing; their dgamma/dbeta must still read as zero.
    memset(j.dacc, 0, (size_t)(T * 4 * C) * sizeof *j.dacc);
    j.chan = ddx_f32(chan_t);
    j.da = da_t ? ddx_f32(da_t) : NULL;
    j.x = ddx_f32c(xt);
    j.gamma = ddx_f32c(gt);
    j.beta = ddx_f32c(bt);
    j.dy = ddx_f32c(dyt);
    j.mean_in = ddx_f32c(n->saved[0]);
    j.rstd_in = ddx_f32c(n->saved[1]);
    j.dx = gx ? ddx_f32(gx) : NULL;
    ddx_parallel_for(N, gn_bwd_range, &j);

    for (int64_t ch = 0; ch < C; ch++) {
        double sg = 0.0, sb = 0.0;
        for (int t = 0; t < T; t++) {
            sg += j.dacc[(int64_t)t * 4 * C + ch];
            sb += j.dacc[(int64_t)t * 4 * C + C + ch];
        }
        if (gg) ddx_f32(gg)[ch] += (float)sg;
        if (gb) ddx_f32(gb)[ch] += (float)sb;
    }
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
//
// The (item, head) pairs are independent and write disjoint blocks: the thread pool splits
// them, each thread with its own [L, L] scratch.
typedef struct attn_job {
    int64_t L, C, H, d;
    float scale;
    const float *q, *k, *v, *dout, *lse_in;
    float *out, *lse, *gq, *gk, *gv;
    float *P, *dP;   // [T, L, L] each
} attn_job;

static void attn_fwd_range(void *arg, int64_t p0, int64_t p1, int tid) {
    const attn_job *j = arg;
    const int64_t L = j->L, C = j->C, H = j->H, d = j->d;
    const int iL = (int)L, iC = (int)C, id = (int)d;
    float *P = j->P + (int64_t)tid * L * L;
    for (int64_t bh = p0; bh < p1; bh++) {
        const int64_t b = bh / H, h = bh % H;
        const int64_t off = b * L * C + h * d;
        const float *Q = j->q + off, *K = j->k + off, *V = j->v + off;   // [L, d] ld C
        float *O = j->out + off;                                        // [L, d] ld C
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iL, iL, id, j->scale, Q, iC, K, iC, 0.0f, P, iL);
        float *lse_bh = j->lse + bh * L;
        for (int64_t i = 0; i < L; i++) {
            float *row = P + i * L;
            float mx = row[0];
            for (int64_t t = 1; t < L; t++) mx = row[t] > mx ? row[t] : mx;
            double sum = 0.0;
            for (int64_t t = 0; t < L; t++) {
                row[t] = expf(row[t] - mx);
                sum += row[t];
            }
            const float inv = (float)(1.0 / sum);
            for (int64_t t = 0; t < L; t++) row[t] *= inv;
            lse_bh[i] = mx + (float)log(sum);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, iL, id, iL, 1.0f, P, iL, V, iC, 0.0f, O, iC);
    }
}

// The geometry both passes share; the rest of the job is filled per pass.
static attn_job attn_job_of(const ddx_node *n) {
    attn_job j;
    memset(&j, 0, sizeof j);
    j.L = n->in[0]->shape[1];
    j.C = n->in[0]->shape[2];
    j.H = n->p.attention.heads;
    j.d = j.C / j.H;
    j.scale = n->p.attention.scale;
    return j;
}

ddx_status ddx_cpu_attention_fwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *qt = n->in[0], *kt = n->in[1], *vt = n->in[2];
    if (qt->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "attention: the CPU backend runs f32 only (input is %s)",
                          ddx_dtype_name(qt->dtype));
    attn_job j = attn_job_of(n);
    const int64_t N = qt->shape[0];
    if (N * j.L * j.C == 0) return DDX_OK;
    const int T = ddx_threads_count();

    ddx_tensor *lse_t = ddx_new(c, DDX_F32, 3, (int64_t[]){N, j.H, j.L});     // [N, heads, L]
    ddx_tensor *s_t = ddx_new(c, DDX_F32, 3, (int64_t[]){T, j.L, j.L});       // [T, L, L] scores, then P
    if (!lse_t || !s_t) return ddx_errorf(DDX_E_NOMEM, "attention: out of activation memory for a [%lld, %lld] score matrix",
                                          (long long)j.L, (long long)j.L);
    n->saved[0] = lse_t;
    j.P = ddx_f32(s_t);
    j.lse = ddx_f32(lse_t);
    j.q = ddx_f32c(qt);
    j.k = ddx_f32c(kt);
    j.v = ddx_f32c(vt);
    j.out = ddx_f32(n->out);
    ddx_parallel_for(N * j.H, attn_fwd_range, &j);
    return DDX_OK;
}

// P = exp(S - lse); dP = dO V^T; dS = P * (dP - rowsum(dP * P));
// dQ += scale dS K; dK += scale dS^T Q; dV += P^T dO.
static void attn_bwd_range(void *arg, int64_t p0, int64_t p1, int tid) {
    const attn_job *j = arg;
    const int64_t L = j->L, C = j->C, H = j->H, d = j->d;
    const int iL = (int)L, iC = (int)C, id = (int)d;
    const float scale = j->scale;
    const bool need_ds = j->gq || j->gk;
    float *P = j->P + (int64_t)tid * L * L, *dP = j->dP ? j->dP + (int64_t)tid * L * L : NULL;
    for (int64_t bh = p0; bh < p1; bh++) {
        const int64_t b = bh / H, h = bh % H;
        const int64_t off = b * L * C + h * d;
        const float *Q = j->q + off, *K = j->k + off, *V = j->v + off;   // [L, d] ld C
        const float *dO = j->dout + off;                                // [L, d] ld C
        const float *lse_bh = j->lse_in + bh * L;

        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iL, iL, id, scale, Q, iC, K, iC, 0.0f, P, iL);
        for (int64_t i = 0; i < L; i++)
            for (int64_t t = 0; t < L; t++) P[i * L + t] = expf(P[i * L + t] - lse_bh[i]);

        if (j->gv)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, iL, id, iL, 1.0f, P, iL, dO, iC, 1.0f, j->gv + off, iC);
        if (!need_ds) continue;

        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iL, iL, id, 1.0f, dO, iC, V, iC, 0.0f, dP, iL);
        for (int64_t i = 0; i < L; i++) {
            float *dpr = dP + i * L;
            const float *pr = P + i * L;
            double dot_i = 0.0;
            for (int64_t t = 0; t < L; t++) dot_i += (double)dpr[t] * pr[t];
            const float di = (float)dot_i;
            for (int64_t t = 0; t < L; t++) dpr[t] = pr[t] * (dpr[t] - di);   // dP becomes dS
        }
        if (j->gq)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, iL, id, iL, scale, dP, iL, K, iC, 1.0f, j->gq + off, iC);
        if (j->gk)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, iL, id, iL, scale, dP, iL, Q, iC, 1.0f, j->gk + off, iC);
    }
}

ddx_status ddx_cpu_attention_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *qt = n->in[0], *kt = n->in[1], *vt = n->in[2];
    ddx_tensor *dot = n->out->grad;
    if (!dot || !n->saved[0]) return ddx_errorf(DDX_E_INTERNAL, "attention backward: missing output grad or saved logsumexp");
    ddx_tensor *gq = ddx_in_grad(c, n, 0), *gk = ddx_in_grad(c, n, 1), *gv = ddx_in_grad(c, n, 2);
    if (!gq && !gk && !gv) return DDX_OK;
    attn_job j = attn_job_of(n);
    const int64_t N = qt->shape[0];
    if (N * j.L * j.C == 0) return DDX_OK;
    const int T = ddx_threads_count();

    const bool need_ds = gq || gk;
    ddx_tensor *p_t = ddx_new(c, DDX_F32, 3, (int64_t[]){T, j.L, j.L});                      // [T, L, L]
    ddx_tensor *dp_t = need_ds ? ddx_new(c, DDX_F32, 3, (int64_t[]){T, j.L, j.L}) : NULL;     // [T, L, L]
    if (!p_t || (need_ds && !dp_t))
        return ddx_errorf(DDX_E_NOMEM, "attention backward: out of activation memory for [%lld, %lld] scratch",
                          (long long)j.L, (long long)j.L);
    j.P = ddx_f32(p_t);
    j.dP = dp_t ? ddx_f32(dp_t) : NULL;
    j.lse_in = ddx_f32c(n->saved[0]);
    j.q = ddx_f32c(qt);
    j.k = ddx_f32c(kt);
    j.v = ddx_f32c(vt);
    j.dout = ddx_f32c(dot);
    j.gq = gq ? ddx_f32(gq) : NULL;
    j.gk = gk ? ddx_f32(gk) : NULL;
    j.gv = gv ? ddx_f32(gv) : NULL;
    ddx_parallel_for(N * j.H, attn_bwd_range, &j);
    return DDX_OK;
}
