// GroupNorm (optionally fused with SiLU): the front-end and the CPU reference, forward and
// backward side by side.
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

static ddx_tensor *gn_op(ddx_ctx *c, ddx_tensor *x, ddx_tensor *add, ddx_tensor *gamma, ddx_tensor *beta, int groups,
                        float eps, bool fuse_silu) {
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
    if (add) {
        if (!ddx_op_ok(c, "group_norm", 1, &add)) return NULL;
        char ba[64];
        if (add->ndim != 2 || add->shape[0] != x->shape[0] || add->shape[1] != C || add->dtype != x->dtype)
            return ddx_op_fail(c, DDX_E_INPUT, "group_norm: the added %s %s must be [%lld, %lld] %s for input %s",
                               ddx_dtype_name(add->dtype), ddx_shape_str(add, ba, sizeof ba), (long long)x->shape[0],
                               (long long)C, ddx_dtype_name(x->dtype), ddx_shape_str(x, bx, sizeof bx));
    }
    ddx_op_params p;
    memset(&p, 0, sizeof p);
    p.group_norm.groups = groups;
    p.group_norm.eps = eps;
    p.group_norm.fuse_silu = fuse_silu;
    return ddx_op_run(c, DDX_OP_GROUP_NORM, 4, (ddx_tensor *[]){x, gamma, beta, add}, &p, x->dtype, x->ndim, x->shape);
}

ddx_tensor *ddx_group_norm(ddx_ctx *c, ddx_tensor *x, ddx_tensor *gamma, ddx_tensor *beta, int groups, float eps,
                           bool fuse_silu) {
    return gn_op(c, x, NULL, gamma, beta, groups, eps, fuse_silu);
}

ddx_tensor *ddx_group_norm_add(ddx_ctx *c, ddx_tensor *x, ddx_tensor *add, ddx_tensor *gamma, ddx_tensor *beta, int groups,
                               float eps, bool fuse_silu) {
    if (!ddx_op_ok(c, "group_norm", 1, &add)) return NULL;   // NULL add: an upstream failure or a caller's mistake
    return gn_op(c, x, add, gamma, beta, groups, eps, fuse_silu);
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
    int T;              // threads (the backward's dacc holds T * 4C, then T * C for dadd)
    double count, eps;
    bool silu;
    const float *x, *gamma, *beta, *dy, *mean_in, *rstd_in;
    float *y, *mean, *rstd, *dx;
    // The fused time-embedding add: z = x + add[n, c] is what gets normalised. z is rebuilt per
    // batch item in per-thread scratch [T, S, C] (computed as the unfused add computes it, so
    // the results are bit-identical to ddx_add followed by ddx_group_norm); dadd [N, C] +=
    // sum over S of dz.
    const float *add;
    float *z, *dadd;
    double *dacc;       // backward: [T, 4C] dgamma, dbeta (whole share), dgn, dbn (one item)
    float *chan;        // [T, 4C]
    float *da;          // backward with SiLU: [T, da_rows, C]
    int64_t da_rows, da_step;
} gn_job;

// Batch item b of the normalised input: x itself, or x + add[b] built in thread tid's scratch.
static const float *gn_item(const gn_job *j, int64_t b, int tid) {
    const int64_t S = j->S, C = j->C;
    const float *xb = j->x + b * S * C;
    if (!j->add) return xb;
    float *zb = j->z + (int64_t)tid * S * C;
    const float *ab = j->add + b * C;
    for (int64_t s = 0; s < S; s++)
        for (int64_t ch = 0; ch < C; ch++) zb[s * C + ch] = xb[s * C + ch] + ab[ch];
    return zb;
}

// Statistics: two passes in double. This is the reference the GPU's fp32 statistics (shifted
// one-pass sums by default on sm_90, Welford in the tiled kernels) are checked against, so it
// should carry no error of its own worth measuring;
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
        const float *xb = gn_item(j, b, tid);   // [S, C]
        float *yb = j->y + b * S * C;           // [S, C]

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
    ddx_tensor *xt = n->in[0], *gt = n->in[1], *bt = n->in[2], *at = n->in[3];
    if (xt->dtype != DDX_F32 || gt->dtype != DDX_F32 || bt->dtype != DDX_F32 || (at && at->dtype != DDX_F32))
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
    ddx_tensor *z_t = n->in[3] ? ddx_new(c, DDX_F32, 3, (int64_t[]){T, j.S, j.C}) : NULL;   // [T, S, C]
    if (!mean_t || !rstd_t || !chan_t || !j.dacc || (n->in[3] && !z_t))
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
    j.add = at ? ddx_f32c(at) : NULL;
    j.z = z_t ? ddx_f32(z_t) : NULL;
    ddx_parallel_for(N, gn_fwd_range, &j);
    return DDX_OK;
}

// With xhat = (x - mean) * rstd, a = xhat * gamma + beta, y = silu ? a * sigmoid(a) : a:
//   da     = dy * (silu ? sigmoid(a) * (1 + a * (1 - sigmoid(a))) : 1)
//   dbeta  = sum da,  dgamma = sum da * xhat        (over batch and space, per channel)
//   dx     = rstd * (da*gamma - mean_g(da*gamma) - xhat * mean_g(da*gamma * xhat))
//   dadd   = sum dx over space, per (n, c)      (with the fused add: x + add is what is normalised)
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
    double *dan = j->dadd ? j->dacc + (int64_t)j->T * 4 * C + (int64_t)tid * C : NULL;   // [C] this item's dadd
    float *mean_c = j->chan + (int64_t)tid * 4 * C, *rstd_c = mean_c + C, *m1_c = mean_c + 2 * C, *m2_c = mean_c + 3 * C;
    float *da_buf = j->da ? j->da + (int64_t)tid * j->da_rows * C : NULL;
    const float *gamma = j->gamma, *beta = j->beta;
    memset(dgamma, 0, (size_t)(2 * C) * sizeof *acc);

    for (int64_t b = b0; b < b1; b++) {
        const float *xb = gn_item(j, b, tid), *dyb = j->dy + b * S * C;   // [S, C]
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
        if (!j->dx && !dan) continue;
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
        if (!dan) {
            float *dxb = j->dx + b * S * C;
            for (int64_t s = 0; s < S; s++) {
                const float *xr = xb + s * C, *dar = silu ? da_buf + s * C : dyb + s * C;
                float *dxr = dxb + s * C;
                for (int64_t ch = 0; ch < C; ch++) {
                    const float xh = (xr[ch] - mean_c[ch]) * rstd_c[ch];
                    dxr[ch] += rstd_c[ch] * (dar[ch] * gamma[ch] - m1_c[ch] - xh * m2_c[ch]);
                }
            }
            continue;
        }
        // With the add: the same dz, also summed over space into dadd (dx may be absent).
        memset(dan, 0, (size_t)C * sizeof *dan);
        for (int64_t s = 0; s < S; s++) {
            const float *xr = xb + s * C, *dar = silu ? da_buf + s * j->da_step : dyb + s * C;
            float *dxr = j->dx ? j->dx + (b * S + s) * C : NULL;
            for (int64_t ch = 0; ch < C; ch++) {
                const float xh = (xr[ch] - mean_c[ch]) * rstd_c[ch];
                const float dz = rstd_c[ch] * (dar[ch] * gamma[ch] - m1_c[ch] - xh * m2_c[ch]);
                if (dxr) dxr[ch] += dz;
                dan[ch] += dz;
            }
        }
        float *dab = j->dadd + b * C;
        for (int64_t ch = 0; ch < C; ch++) dab[ch] += (float)dan[ch];
    }
}

ddx_status ddx_cpu_group_norm_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *xt = n->in[0], *gt = n->in[1], *bt = n->in[2], *at = n->in[3];
    ddx_tensor *dyt = n->out->grad;
    if (!dyt || !n->saved[0] || !n->saved[1])
        return ddx_errorf(DDX_E_INTERNAL, "group_norm backward: missing output grad or saved statistics");
    ddx_tensor *gx = ddx_in_grad(c, n, 0), *gg = ddx_in_grad(c, n, 1), *gb = ddx_in_grad(c, n, 2);
    ddx_tensor *ga = at ? ddx_in_grad(c, n, 3) : NULL;
    if (!gx && !gg && !gb && !ga) return DDX_OK;

    gn_job j = gn_job_of(n);
    const int64_t N = xt->shape[0];
    if (ddx_numel(xt) == 0) return DDX_OK;
    const int T = ddx_threads_count();
    const int64_t C = j.C;

    j.T = T;
    j.dacc = ddx_scratch_f64(c, (int64_t)T * (ga ? 5 : 4) * C);                 // [T, 4, C] (+ [T, C] for dadd)
    ddx_tensor *chan_t = ddx_new(c, DDX_F32, 3, (int64_t[]){T, 4, C});      // [T, 4, C]
    // With SiLU, da is kept for a whole batch item when dx or dadd is wanted (their pass reads
    // it), else one row is reused; without SiLU da is dy itself.
    const bool dz_pass = gx || ga;
    j.da_rows = dz_pass ? j.S : 1;
    j.da_step = dz_pass ? C : 0;
    ddx_tensor *da_t = j.silu ? ddx_new(c, DDX_F32, 3, (int64_t[]){T, j.da_rows, C}) : NULL;   // [T, S or 1, C]
    ddx_tensor *z_t = at ? ddx_new(c, DDX_F32, 3, (int64_t[]){T, j.S, C}) : NULL;               // [T, S, C]
    if (!j.dacc || !chan_t || (j.silu && !da_t) || (at && !z_t))
        return ddx_errorf(DDX_E_NOMEM, "group_norm backward: out of activation memory for scratch");
    if (at && at->dtype != DDX_F32) return ddx_cpu_need_f32("group_norm backward", at, "the added tensor");
    // Threads past N (N < T) run nothing; their dgamma/dbeta must still read as zero.
    memset(j.dacc, 0, (size_t)(T * 4 * C) * sizeof *j.dacc);
    j.add = at ? ddx_f32c(at) : NULL;
    j.z = z_t ? ddx_f32(z_t) : NULL;
    j.dadd = ga ? ddx_f32(ga) : NULL;
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

