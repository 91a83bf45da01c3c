// conv2d: the front-end and the CPU reference, forward and backward side by side, and the
// row-chunked GEMM job (runtime/ops/gemm.h) that linear shares.
//
// Both conv2d and linear are GEMMs. conv2d lowers the input to an im2col matrix whose rows are output
// pixels (N*Ho*Wo) and whose columns follow the OHWI weight layout (kh, kw, ci), so that
// Y = cols · W^T with W viewed as [Co, KH*KW*Ci] needs no weight transpose. A 1x1 stride-1
// unpadded conv skips im2col: an NHWC tensor already is that matrix.
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "op_impl.h"
#include "ops/gemm.h"
#include "threads.h"
#include "kernels/tune.h"

// im2col scratch per thread and chunk of output rows, from the activation arena and rewound
// when the call ends, so every conv of a step reuses the same memory. The chunk is sized to
// stay in the core's L2 (2 MiB here) between im2col writing it and the GEMM reading it:
// 1 MiB measured faster than 384 KiB or 4 MiB on the 28x28 U-Net. DDX_CONV_SCRATCH_KB
// overrides it for tuning on other CPUs.
#define DDX_CONV_SCRATCH_BYTES ((int64_t)1 << 20)

static int64_t conv_scratch_bytes(void) {
    static int64_t v = -1;
    if (v < 0) {
        const char *s = ddx_tune_raw(DDX_TUNE_CONV_SCRATCH_KB);
        v = s ? atoll(s) * 1024 : DDX_CONV_SCRATCH_BYTES;
        if (v < 4096) v = DDX_CONV_SCRATCH_BYTES;
    }
    return v;
}


static int64_t conv_out_size(int64_t in, int pad_a, int pad_b, int64_t k, int stride) {
    int64_t span = in + pad_a + pad_b - k;
    return span < 0 ? 0 : span / stride + 1;
}

static conv_geom conv_geom_of(const ddx_tensor *x, const ddx_tensor *w, const ddx_conv2d_params *p) {
    conv_geom g;
    g.N = x->shape[0];
    g.H = x->shape[1];
    g.W = x->shape[2];
    g.Ci = x->shape[3];
    g.Co = w->shape[0];
    g.KH = w->shape[1];
    g.KW = w->shape[2];
    g.Ho = conv_out_size(g.H, p->pad_top, p->pad_bottom, g.KH, p->stride);
    g.Wo = conv_out_size(g.W, p->pad_left, p->pad_right, g.KW, p->stride);
    g.K = g.KH * g.KW * g.Ci;
    g.rows = g.N * g.Ho * g.Wo;
    g.stride = p->stride;
    g.pt = p->pad_top;
    g.pl = p->pad_left;
    g.direct = g.KH == 1 && g.KW == 1 && p->stride == 1 && p->pad_top == 0 && p->pad_bottom == 0 &&
               p->pad_left == 0 && p->pad_right == 0;
    return g;
}

// The kw range [lo, hi) whose input column iw0 + kw lies inside [0, W) (stride moves iw0,
// not the taps).
static void conv_kw_range(const conv_geom *g, int64_t iw0, int64_t *lo, int64_t *hi) {
    int64_t a = iw0 < 0 ? -iw0 : 0;
    int64_t b = g->W - iw0;
    if (a > g->KW) a = g->KW;
    if (b > g->KW) b = g->KW;
    *lo = a;
    *hi = b > a ? b : a;
}

// Rows [r0, r1) of the im2col matrix of x into cols [r1 - r0, K]; padding reads as zero.
static void conv_im2col(const conv_geom *g, const float *x, int64_t r0, int64_t r1, float *cols) {
    const int64_t Ci = g->Ci, KW = g->KW, hw = g->Ho * g->Wo;
    for (int64_t r = r0; r < r1; r++) {
        int64_t n = r / hw, oh = (r % hw) / g->Wo, ow = r % g->Wo;
        int64_t ih0 = oh * g->stride - g->pt, iw0 = ow * g->stride - g->pl;
        int64_t lo, hi;
        conv_kw_range(g, iw0, &lo, &hi);
        float *dst = cols + (r - r0) * g->K;
        for (int64_t kh = 0; kh < g->KH; kh++, dst += KW * Ci) {
            int64_t ih = ih0 + kh;
            if (ih < 0 || ih >= g->H || hi == lo) {
                memset(dst, 0, (size_t)(KW * Ci) * sizeof(float));
                continue;
            }
            if (lo > 0) memset(dst, 0, (size_t)(lo * Ci) * sizeof(float));
            // Consecutive taps kw read consecutive input pixels: one contiguous span in NHWC.
            memcpy(dst + lo * Ci, x + ((n * g->H + ih) * g->W + iw0 + lo) * Ci, (size_t)((hi - lo) * Ci) * sizeof(float));
            if (hi < KW) memset(dst + hi * Ci, 0, (size_t)((KW - hi) * Ci) * sizeof(float));
        }
    }
}

// The adjoint of conv_im2col: adds rows [r0, r1) of dcols into dx (padding taps are dropped).
static void conv_col2im_add(const conv_geom *g, const float *dcols, int64_t r0, int64_t r1, float *dx) {
    const int64_t Ci = g->Ci, KW = g->KW, hw = g->Ho * g->Wo;
    for (int64_t r = r0; r < r1; r++) {
        int64_t n = r / hw, oh = (r % hw) / g->Wo, ow = r % g->Wo;
        int64_t ih0 = oh * g->stride - g->pt, iw0 = ow * g->stride - g->pl;
        int64_t lo, hi;
        conv_kw_range(g, iw0, &lo, &hi);
        const float *src = dcols + (r - r0) * g->K;
        for (int64_t kh = 0; kh < g->KH; kh++, src += KW * Ci) {
            int64_t ih = ih0 + kh;
            if (ih < 0 || ih >= g->H || hi == lo) continue;
            float *d = dx + ((n * g->H + ih) * g->W + iw0 + lo) * Ci;
            const float *s = src + lo * Ci;
            for (int64_t i = 0; i < (hi - lo) * Ci; i++) d[i] += s[i];
        }
    }
}

// acc[j] += sum over rows of dy[row, j], dy [rows, cols], in double: a bias sees every output
// pixel of the batch, tens of thousands of terms.
static void colsum_acc(const float *dy, int64_t rows, int64_t cols, double *acc) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = dy + r * cols;
        for (int64_t j = 0; j < cols; j++) acc[j] += row[j];
    }
}

// y [rows, cols] = bias broadcast over rows; lets the GEMM accumulate with beta = 1.
static void rows_fill(float *y, int64_t rows, int64_t cols, const float *bias) {
    for (int64_t r = 0; r < rows; r++) memcpy(y + r * cols, bias, (size_t)cols * sizeof(float));
}

// ---- GEMM helpers over row-major matrices whose shared dimension is "rows" (chunked) ------

// C [rows, n] (+)= A [rows, k] · B^T, B [n, k]
static void gemm_a_bt(int64_t rows, int64_t n, int64_t k, const float *A, const float *B, float beta, float *C) {
    for (int64_t r0 = 0; r0 < rows; r0 += DDX_GEMM_MAX_ROWS) {
        int64_t m = rows - r0 < DDX_GEMM_MAX_ROWS ? rows - r0 : DDX_GEMM_MAX_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, A + r0 * k, (int)k, B,
                    (int)k, beta, C + r0 * n, (int)n);
    }
}

// C [rows, k] (+)= A [rows, n] · B, B [n, k]
static void gemm_a_b(int64_t rows, int64_t n, int64_t k, const float *A, const float *B, float beta, float *C) {
    for (int64_t r0 = 0; r0 < rows; r0 += DDX_GEMM_MAX_ROWS) {
        int64_t m = rows - r0 < DDX_GEMM_MAX_ROWS ? rows - r0 : DDX_GEMM_MAX_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)n, 1.0f, A + r0 * n, (int)n, B,
                    (int)k, beta, C + r0 * k, (int)k);
    }
}

// C [n, k] += A^T · B, A [rows, n], B [rows, k]: the weight gradient, summed over rows.
static void gemm_at_b_add(int64_t rows, int64_t n, int64_t k, const float *A, const float *B, float *C) {
    for (int64_t r0 = 0; r0 < rows; r0 += DDX_GEMM_MAX_ROWS) {
        int64_t m = rows - r0 < DDX_GEMM_MAX_ROWS ? rows - r0 : DDX_GEMM_MAX_ROWS;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)k, (int)m, 1.0f, A + r0 * n, (int)n,
                    B + r0 * k, (int)k, 1.0f, C, (int)k);
    }
}

// ---- conv2d ------------------------------------------------------------------------------

// The optional bias of conv2d and linear: [rows of w] on the context's device, x's dtype.
bool ddx_gemm_bias_ok(ddx_ctx *c, const char *op, const char *dim, const ddx_tensor *bias, const ddx_tensor *w,
                    const ddx_tensor *x) {
    if (!bias) return true;
    char bs[64], ws[64];
    ddx_shape_str(bias, bs, sizeof bs);
    ddx_shape_str(w, ws, sizeof ws);
    if (bias->device != c->device)
        ddx_op_fail(c, DDX_E_INPUT, "%s: bias is on %s but the context is on %s", op, ddx_device_name(bias->device),
                    ddx_device_name(c->device));
    else if (bias->ndim != 1 || bias->shape[0] != w->shape[0])
        ddx_op_fail(c, DDX_E_INPUT, "%s: bias %s must be [%s] = [%lld] for weight %s", op, bs, dim, (long long)w->shape[0], ws);
    else if (bias->dtype != x->dtype)
        ddx_op_fail(c, DDX_E_INPUT, "%s: bias dtype %s differs from input dtype %s", op, ddx_dtype_name(bias->dtype),
                    ddx_dtype_name(x->dtype));
    else
        return true;
    return false;
}

static ddx_tensor *conv2d_op(ddx_ctx *c, ddx_tensor *x, ddx_tensor *w, ddx_tensor *bias, ddx_conv2d_params p,
                             ddx_tensor *res) {
    if (!ddx_op_ok(c, "conv2d", 2, (ddx_tensor *[]){x, w})) return NULL;
    char xs[64], ws[64];
    ddx_shape_str(x, xs, sizeof xs);
    ddx_shape_str(w, ws, sizeof ws);
    if (x->ndim != 4)
        return ddx_op_fail(c, DDX_E_INPUT, "conv2d: input %s must be 4-D [N, H, W, Ci] (NHWC)", xs);
    if (w->ndim != 4)
        return ddx_op_fail(c, DDX_E_INPUT, "conv2d: weight %s must be 4-D [Co, KH, KW, Ci] (OHWI)", ws);
    if (w->shape[3] != x->shape[3])
        return ddx_op_fail(c, DDX_E_INPUT, "conv2d: weight %s has Ci=%lld but input %s has %lld channels", ws,
                           (long long)w->shape[3], xs, (long long)x->shape[3]);
    for (int d = 0; d < 4; d++)
        if (x->shape[d] < 1 || w->shape[d] < 1)
            return ddx_op_fail(c, DDX_E_INPUT, "conv2d: empty input %s or weight %s", xs, ws);
    if (w->dtype != x->dtype)
        return ddx_op_fail(c, DDX_E_INPUT, "conv2d: weight dtype %s differs from input dtype %s",
                           ddx_dtype_name(w->dtype), ddx_dtype_name(x->dtype));
    if (x->dtype != DDX_F32 && x->dtype != DDX_BF16)
        return ddx_op_fail(c, DDX_E_INPUT, "conv2d: dtype %s is not a float type", ddx_dtype_name(x->dtype));
    if (!ddx_gemm_bias_ok(c, "conv2d", "Co", bias, w, x)) return NULL;
    if (p.stride != 1 && p.stride != 2)
        return ddx_op_fail(c, DDX_E_INPUT, "conv2d: stride %d is not supported (use 1 or 2)", p.stride);
    if (p.pad_top < 0 || p.pad_bottom < 0 || p.pad_left < 0 || p.pad_right < 0)
        return ddx_op_fail(c, DDX_E_INPUT, "conv2d: negative padding (top %d, bottom %d, left %d, right %d)",
                           p.pad_top, p.pad_bottom, p.pad_left, p.pad_right);
    if (w->shape[0] > INT_MAX || w->shape[1] * w->shape[2] * w->shape[3] > INT_MAX)
        return ddx_op_fail(c, DDX_E_UNSUPPORTED, "conv2d: weight %s is too large for a BLAS GEMM", ws);
    conv_geom g = conv_geom_of(x, w, &p);
    if (g.Ho < 1 || g.Wo < 1)
        return ddx_op_fail(c, DDX_E_INPUT, "conv2d: kernel %lldx%lld does not fit input %s with padding (%d,%d,%d,%d)",
                           (long long)g.KH, (long long)g.KW, xs, p.pad_top, p.pad_bottom, p.pad_left, p.pad_right);
    if (res) {
        if (!ddx_op_ok(c, "conv2d", 1, &res)) return NULL;
        char rs[64];
        ddx_shape_str(res, rs, sizeof rs);
        if (res->ndim != 4 || res->shape[0] != g.N || res->shape[1] != g.Ho || res->shape[2] != g.Wo ||
            res->shape[3] != g.Co || res->dtype != x->dtype)
            return ddx_op_fail(c, DDX_E_INPUT, "conv2d: residual %s %s must be the output's [%lld, %lld, %lld, %lld] %s",
                               ddx_dtype_name(res->dtype), rs, (long long)g.N, (long long)g.Ho, (long long)g.Wo,
                               (long long)g.Co, ddx_dtype_name(x->dtype));
    }
    ddx_op_params op = {.conv2d = p};
    return ddx_op_run(c, DDX_OP_CONV2D, 4, (ddx_tensor *[]){x, w, bias, res}, &op, x->dtype, 4,
                      (int64_t[]){g.N, g.Ho, g.Wo, g.Co});
}

ddx_tensor *ddx_conv2d(ddx_ctx *c, ddx_tensor *x, ddx_tensor *w, ddx_tensor *bias, ddx_conv2d_params p) {
    return conv2d_op(c, x, w, bias, p, NULL);
}

ddx_tensor *ddx_conv2d_add(ddx_ctx *c, ddx_tensor *x, ddx_tensor *w, ddx_tensor *bias, ddx_conv2d_params p,
                           ddx_tensor *res) {
    if (!res) return ddx_op_fail(c, DDX_E_INTERNAL, "conv2d_add: the residual is NULL");
    return conv2d_op(c, x, w, bias, p, res);
}

static int64_t conv_chunk_rows(const conv_geom *g) {
    int64_t r = conv_scratch_bytes() / (g->K * (int64_t)sizeof(float));
    if (r < 256) r = 256;   // wide kernels (K in the thousands): keep the GEMMs tall enough
    if (r > DDX_GEMM_MAX_ROWS) r = DDX_GEMM_MAX_ROWS;
    return r < g->rows ? r : g->rows;
}

// n floats from the activation arena (the caller rewinds it), for `what` in error messages.
static ddx_status cpu_scratch(ddx_ctx *c, int64_t n, const char *what, float **out) {
    ddx_tensor *t = ddx_new(c, DDX_F32, 1, (int64_t[]){n > 0 ? n : 1});   // [n]
    if (!t) return ddx_errorf(DDX_E_NOMEM, "%s: no activation-arena memory for %lld floats of scratch", what, (long long)n);
    *out = ddx_f32(t);
    return DDX_OK;
}

ddx_status ddx_gemm_check_f32(const ddx_node *n, const char *what) {
    for (int i = 0; i < n->n_inputs; i++)
        if (n->in[i] && n->in[i]->dtype != DDX_F32)
            return ddx_errorf(DDX_E_UNSUPPORTED, "%s: the CPU backend computes in f32 only (input %d is %s)", what, i,
                              ddx_dtype_name(n->in[i]->dtype));
    return DDX_OK;
}


void ddx_gemm_fwd_range(void *arg, int64_t u0, int64_t u1, int tid) {
    const gemm_job *j = arg;
    const conv_geom *g = &j->g;
    const int64_t end = u1 * j->unit;
    float *cols = j->cols ? j->cols + (int64_t)tid * j->chunk * g->K : NULL;
    for (int64_t r0 = u0 * j->unit; r0 < end; r0 += j->chunk) {
        int64_t r1 = r0 + j->chunk < end ? r0 + j->chunk : end;
        float *yc = j->y + r0 * g->Co;   // [r1 - r0, Co]
        float beta = 0.0f;
        if (j->b) {
            rows_fill(yc, r1 - r0, g->Co, j->b);
            beta = 1.0f;
        }
        const float *a = j->x + r0 * g->K;
        if (!g->direct) {
            conv_im2col(g, j->x, r0, r1, cols);
            a = cols;
        }
        gemm_a_bt(r1 - r0, g->Co, g->K, a, j->w, beta, yc);
    }
}

static void gemm_bwd_range(void *arg, int64_t u0, int64_t u1, int tid) {
    const gemm_job *j = arg;
    const conv_geom *g = &j->g;
    const int64_t end = u1 * j->unit, Co = g->Co, K = g->K;
    float *cols = j->cols ? j->cols + (int64_t)tid * j->chunk * K : NULL;
    float *gw = NULL;
    if (j->gw) {
        gw = tid == 0 ? j->gw : j->gw_part + (int64_t)(tid - 1) * Co * K;
        if (tid > 0) memset(gw, 0, (size_t)(Co * K) * sizeof(float));
    }
    double *gb = NULL;
    if (j->gb_part) {
        gb = j->gb_part + (int64_t)tid * Co;
        for (int64_t c = 0; c < Co; c++) gb[c] = 0.0;
    }
    for (int64_t r0 = u0 * j->unit; r0 < end; r0 += j->chunk) {
        int64_t r1 = r0 + j->chunk < end ? r0 + j->chunk : end, m = r1 - r0;
        const float *dyc = j->dy + r0 * Co;   // [m, Co]
        if (gb) colsum_acc(dyc, m, Co, gb);
        if (g->direct) {
            if (gw) gemm_at_b_add(m, Co, K, dyc, j->x + r0 * K, gw);
            if (j->gx) gemm_a_b(m, Co, K, dyc, j->w, 1.0f, j->gx + r0 * K);
            continue;
        }
        if (gw) {
            conv_im2col(g, j->x, r0, r1, cols);
            gemm_at_b_add(m, Co, K, dyc, cols, gw);
        }
        if (j->gx) {
            gemm_a_b(m, Co, K, dyc, j->w, 0.0f, cols);   // dcols [m, K]
            conv_col2im_add(g, cols, r0, r1, j->gx);
        }
    }
}

// Whether thread t got units of the backward range (threads.h's split); only those wrote
// their partials.
static bool bwd_thread_ran(const gemm_job *j, int t, int T) {
    const int64_t n = j->g.rows / j->unit;
    return n * (t + 1) / T > n * t / T;
}

// gw += the partial weight gradients of threads 1..T-1, in thread order, split by element.
static void gw_reduce_range(void *arg, int64_t e0, int64_t e1, int tid) {
    (void)tid;
    const gemm_job *j = arg;
    const int T = ddx_threads_count();
    const int64_t sz = j->g.Co * j->g.K;
    for (int t = 1; t < T; t++) {
        if (!bwd_thread_ran(j, t, T)) continue;
        const float *p = j->gw_part + (int64_t)(t - 1) * sz;
        for (int64_t e = e0; e < e1; e++) j->gw[e] += p[e];
    }
}

// Runs a prepared job's backward (scratch already carved out) and folds the partials.
void ddx_gemm_bwd_run(gemm_job *j, float *gb_out) {
    const int T = ddx_threads_count();
    ddx_parallel_for(j->g.rows / j->unit, gemm_bwd_range, j);
    if (j->gw && T > 1) ddx_parallel_for(j->g.Co * j->g.K, gw_reduce_range, j);
    if (gb_out)
        for (int64_t c = 0; c < j->g.Co; c++) {
            double s = 0.0;
            for (int t = 0; t < T; t++)
                if (bwd_thread_ran(j, t, T)) s += j->gb_part[(int64_t)t * j->g.Co + c];
            gb_out[c] += (float)s;
        }
}

// Partial gradient buffers of a backward job: [T - 1, Co, K] floats and [T, Co] doubles.
ddx_status ddx_gemm_bwd_scratch(ddx_ctx *c, gemm_job *j, bool want_gw, bool want_gb, const char *what) {
    const int T = ddx_threads_count();
    if (want_gw && T > 1) DDX_TRY(cpu_scratch(c, (int64_t)(T - 1) * j->g.Co * j->g.K, what, &j->gw_part));
    if (want_gb) {
        float *p = NULL;
        // Doubles from an f32 block: the arena aligns every block to DDX_ARENA_ALIGN.
        DDX_TRY(cpu_scratch(c, 2 * (int64_t)T * j->g.Co, what, &p));
        j->gb_part = (double *)(void *)p;
    }
    return DDX_OK;
}

ddx_status ddx_cpu_conv2d_fwd(ddx_ctx *c, ddx_node *n) {
    DDX_TRY(ddx_gemm_check_f32(n, "conv2d"));
    gemm_job j;
    memset(&j, 0, sizeof j);
    j.g = conv_geom_of(n->in[0], n->in[1], &n->p.conv2d);
    j.x = ddx_f32c(n->in[0]);                          // [N, H, W, Ci]
    j.w = ddx_f32c(n->in[1]);                          // [Co, KH*KW*Ci]
    j.b = n->in[2] ? ddx_f32c(n->in[2]) : NULL;        // [Co]
    j.y = ddx_f32(n->out);                             // [N*Ho*Wo, Co]
    j.unit = 1;
    const int T = ddx_threads_count();
    // Split the rows evenly first, then chunk each thread's share.
    j.chunk = conv_chunk_rows(&j.g);
    int64_t share = (j.g.rows + T - 1) / T;
    if (j.chunk > share) j.chunk = share;
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    if (!j.g.direct) DDX_TRY(cpu_scratch(c, (int64_t)T * j.chunk * j.g.K, "conv2d im2col", &j.cols));
    ddx_parallel_for(j.g.rows, ddx_gemm_fwd_range, &j);
    if (n->n_inputs > 3 && n->in[3]) {
        // The residual after the bias, as a separate add would: same bits.
        const float *r = ddx_f32c(n->in[3]);
        for (int64_t i = 0, m = ddx_numel(n->out); i < m; i++) j.y[i] += r[i];
    }
    return ddx_arena_rewind(&c->act, mark);
}

ddx_status ddx_cpu_conv2d_bwd(ddx_ctx *c, ddx_node *n) {
    DDX_TRY(ddx_gemm_check_f32(n, "conv2d"));
    if (!n->out->grad) return ddx_errorf(DDX_E_INTERNAL, "conv2d backward: output has no gradient");
    gemm_job j;
    memset(&j, 0, sizeof j);
    j.g = conv_geom_of(n->in[0], n->in[1], &n->p.conv2d);
    j.x = ddx_f32c(n->in[0]);                  // [N, H, W, Ci]
    j.w = ddx_f32c(n->in[1]);                  // [Co, K]
    j.dy = ddx_f32c(n->out->grad);             // [rows, Co]
    ddx_tensor *gx = ddx_in_grad(c, n, 0);     // [N, H, W, Ci]
    ddx_tensor *gw = ddx_in_grad(c, n, 1);     // [Co, KH, KW, Ci]
    ddx_tensor *gb = ddx_in_grad(c, n, 2);     // [Co]
    ddx_tensor *gr = n->n_inputs > 3 ? ddx_in_grad(c, n, 3) : NULL;   // [N, Ho, Wo, Co]
    if (c->status != DDX_OK) return c->status;
    if (gr) {
        float *d = ddx_f32(gr);
        for (int64_t i = 0, m = ddx_numel(gr); i < m; i++) d[i] += j.dy[i];
    }
    if (!gx && !gw && !gb) return DDX_OK;
    j.gx = gx ? ddx_f32(gx) : NULL;
    j.gw = gw ? ddx_f32(gw) : NULL;
    const int T = ddx_threads_count();
    // col2im scatters into the input pixels of the image a row belongs to: whole images per
    // thread keep those writes disjoint. Without col2im any row split is safe.
    const int64_t hw = j.g.Ho * j.g.Wo;
    j.unit = gx && !j.g.direct ? hw : 1;
    j.chunk = conv_chunk_rows(&j.g);
    int64_t share = ((j.g.rows / j.unit + T - 1) / T) * j.unit;
    if (j.chunk > share) j.chunk = share;
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    if (!j.g.direct && (gx || gw)) DDX_TRY(cpu_scratch(c, (int64_t)T * j.chunk * j.g.K, "conv2d backward im2col", &j.cols));
    DDX_TRY(ddx_gemm_bwd_scratch(c, &j, gw != NULL, gb != NULL, "conv2d backward"));
    ddx_gemm_bwd_run(&j, gb ? ddx_f32(gb) : NULL);
    return ddx_arena_rewind(&c->act, mark);
}
