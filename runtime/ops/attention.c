// Multi-head self-attention: the front-end and the CPU reference, forward and backward side
// by side.
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "op_impl.h"
#include "threads.h"

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
