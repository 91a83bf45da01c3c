// FID / KID / IS statistics in fp64 over OpenBLAS and its LAPACK (see fid.h).
#include "fid.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// LAPACK's Fortran symmetric eigensolver, which libopenblas exports (meson checks for it).
// The trailing size_t arguments are gfortran's hidden lengths of the two character arguments.
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t, size_t);

// Rows converted to fp64 per dsyrk call. Each call re-reads and rewrites the d x d accumulator,
// so more rows per call means less memory traffic per flop (128 -> 512 rows took bench-fid
// from 8.8 to 12 GFLOP/s on the 2-core dev machine); 8 MiB of buffer at d = 2048. Batches
// smaller than this are added as they come (callers with tiny batches pay the traffic).
#define FSTATS_CHUNK 512

ddx_status ddx_gauss_alloc(ddx_gauss *g, int64_t d) {
    memset(g, 0, sizeof(*g));
    if (d < 1 || d > DDX_FID_MAX_DIM)
        return ddx_errorf(DDX_E_INPUT, "feature dimension %lld outside 1..%d", (long long)d, DDX_FID_MAX_DIM);
    g->mu = calloc((size_t)d, sizeof(double));
    g->sigma = calloc((size_t)d * (size_t)d, sizeof(double));
    if (!g->mu || !g->sigma) {
        ddx_gauss_free(g);
        return ddx_errorf(DDX_E_NOMEM, "statistics of dimension %lld: out of memory", (long long)d);
    }
    g->d = d;
    return DDX_OK;
}

void ddx_gauss_free(ddx_gauss *g) {
    if (!g) return;
    free(g->mu);
    free(g->sigma);
    memset(g, 0, sizeof(*g));
}

// ---- streaming mean / covariance ------------------------------------------------------------
// Sums are taken of x - shift, with shift the first batch's mean: the textbook sum(x x^T) -
// n mu mu^T cancels catastrophically when |mu| >> std, the shifted sums do not.
struct ddx_fstats {
    int64_t d, n, keep_max, kept, kept_cap;
    double *shift;   // [d]
    double *sum;     // [d]   sum of (x - shift)
    double *S;       // [d*d] upper triangle of sum of (x - shift)(x - shift)^T
    double *buf;     // [FSTATS_CHUNK*d]
    float *keep;     // [kept_cap*d]
};

ddx_status ddx_fstats_create(ddx_fstats **out, int64_t d, int64_t keep_max) {
    *out = NULL;
    if (d < 1 || d > DDX_FID_MAX_DIM)
        return ddx_errorf(DDX_E_INPUT, "feature dimension %lld outside 1..%d", (long long)d, DDX_FID_MAX_DIM);
    if (keep_max < 0) return ddx_errorf(DDX_E_INPUT, "feature statistics: keep_max %lld < 0", (long long)keep_max);
    ddx_fstats *s = calloc(1, sizeof(*s));
    if (!s) return ddx_errorf(DDX_E_NOMEM, "feature statistics: out of memory");
    s->d = d;
    s->keep_max = keep_max;
    s->shift = calloc((size_t)d, sizeof(double));
    s->sum = calloc((size_t)d, sizeof(double));
    s->S = calloc((size_t)d * (size_t)d, sizeof(double));
    s->buf = malloc((size_t)FSTATS_CHUNK * (size_t)d * sizeof(double));
    if (!s->shift || !s->sum || !s->S || !s->buf) {
        ddx_fstats_free(s);
        return ddx_errorf(DDX_E_NOMEM, "feature statistics of dimension %lld: out of memory", (long long)d);
    }
    *out = s;
    return DDX_OK;
}

void ddx_fstats_free(ddx_fstats *s) {
    if (!s) return;
    free(s->shift);
    free(s->sum);
    free(s->S);
    free(s->buf);
    free(s->keep);
    free(s);
}

int64_t ddx_fstats_count(const ddx_fstats *s) { return s->n; }

const float *ddx_fstats_kept(const ddx_fstats *s, int64_t *n_rows) {
    *n_rows = s->kept;
    return s->kept ? s->keep : NULL;
}

static ddx_status keep_rows(ddx_fstats *s, const float *x, int64_t n) {
    int64_t take = s->keep_max - s->kept;
    if (take > n) take = n;
    if (take <= 0) return DDX_OK;
    if (s->kept + take > s->kept_cap) {
        // Grows geometrically up to keep_max, so a short run never holds keep_max rows.
        int64_t cap = s->kept_cap ? s->kept_cap * 2 : 1024;
        if (cap < s->kept + take) cap = s->kept + take;
        if (cap > s->keep_max) cap = s->keep_max;
        float *k = realloc(s->keep, (size_t)cap * (size_t)s->d * sizeof(float));
        if (!k) return ddx_errorf(DDX_E_NOMEM, "keeping %lld feature rows for KID: out of memory", (long long)cap);
        s->keep = k;
        s->kept_cap = cap;
    }
    memcpy(s->keep + (size_t)s->kept * (size_t)s->d, x, (size_t)take * (size_t)s->d * sizeof(float));
    s->kept += take;
    return DDX_OK;
}

ddx_status ddx_fstats_add(ddx_fstats *s, const float *x, int64_t n) {
    if (n < 0 || (n > 0 && !x)) return ddx_errorf(DDX_E_INPUT, "feature statistics: bad batch (n = %lld)", (long long)n);
    const int64_t d = s->d;
    for (int64_t i = 0; i < n * d; i++)
        if (!isfinite(x[i]))
            return ddx_errorf(DDX_E_INPUT, "feature row %lld (of this batch, %lld seen before) is not finite",
                              (long long)(i / d), (long long)s->n);
    if (n == 0) return DDX_OK;
    if (s->n == 0) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) s->shift[j] += x[i * d + j];
        for (int64_t j = 0; j < d; j++) s->shift[j] /= (double)n;
    }
    DDX_TRY(keep_rows(s, x, n));
    for (int64_t r0 = 0; r0 < n; r0 += FSTATS_CHUNK) {
        int64_t rows = n - r0 < FSTATS_CHUNK ? n - r0 : FSTATS_CHUNK;
        for (int64_t i = 0; i < rows; i++) {
            const float *xi = x + (r0 + i) * d;
            double *bi = s->buf + i * d;
            for (int64_t j = 0; j < d; j++) {
                bi[j] = (double)xi[j] - s->shift[j];
                s->sum[j] += bi[j];
            }
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)rows, 1.0, s->buf, (int)d, 1.0, s->S, (int)d);
    }
    s->n += n;
    return DDX_OK;
}

ddx_status ddx_fstats_finish(const ddx_fstats *s, ddx_gauss *out) {
    if (s->n < 2)
        return ddx_errorf(DDX_E_INPUT, "a covariance needs at least 2 feature rows, got %lld", (long long)s->n);
    DDX_TRY(ddx_gauss_alloc(out, s->d));
    const int64_t d = s->d;
    const double n = (double)s->n;
    for (int64_t j = 0; j < d; j++) out->mu[j] = s->sum[j] / n;   // mean of the shifted rows for now
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = i; j < d; j++) {
            double c = (s->S[i * d + j] - n * out->mu[i] * out->mu[j]) / (n - 1.0);
            out->sigma[i * d + j] = c;
            out->sigma[j * d + i] = c;
        }
    for (int64_t j = 0; j < d; j++) out->mu[j] += s->shift[j];
    return DDX_OK;
}

// ---- Fréchet distance -----------------------------------------------------------------------
// Eigen-decomposes the symmetric d x d matrix a (overwritten by its eigenvectors when vectors)
// into w ascending.
static ddx_status sym_eig(double *a, int64_t d, double *w, bool vectors) {
    const int n = (int)d;
    const char jobz = vectors ? 'V' : 'N', uplo = 'U';
    int info = 0, lwork = -1, liwork = -1, iwq = 0;
    double wq = 0;
    dsyevd_(&jobz, &uplo, &n, a, &n, w, &wq, &lwork, &iwq, &liwork, &info, 1, 1);
    if (info != 0) return ddx_errorf(DDX_E_INTERNAL, "LAPACK dsyevd workspace query failed (info %d)", info);
    lwork = (int)wq + 1;
    liwork = iwq + 1;
    double *work = malloc((size_t)lwork * sizeof(double));
    int *iwork = malloc((size_t)liwork * sizeof(int));
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return ddx_errorf(DDX_E_NOMEM, "Fréchet distance: out of memory for the eigensolver");
    }
    dsyevd_(&jobz, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work);
    free(iwork);
    if (info != 0)
        return ddx_errorf(DDX_E_INPUT, "Fréchet distance: the eigensolver did not converge (LAPACK dsyevd info %d)", info);
    return DDX_OK;
}

static ddx_status check_gauss(const ddx_gauss *g, const char *which) {
    if (!g || !g->mu || !g->sigma || g->d < 1 || g->d > DDX_FID_MAX_DIM)
        return ddx_errorf(DDX_E_INPUT, "Fréchet distance: %s statistics are empty", which);
    const size_t dd = (size_t)g->d * (size_t)g->d;
    for (int64_t i = 0; i < g->d; i++)
        if (!isfinite(g->mu[i])) return ddx_errorf(DDX_E_INPUT, "Fréchet distance: %s mu[%lld] is not finite", which, (long long)i);
    for (size_t i = 0; i < dd; i++)
        if (!isfinite(g->sigma[i]))
            return ddx_errorf(DDX_E_INPUT, "Fréchet distance: %s sigma[%zu] is not finite", which, i);
    return DDX_OK;
}

ddx_status ddx_frechet_distance(const ddx_gauss *a, const ddx_gauss *b, double *fid) {
    DDX_TRY(check_gauss(a, "first"));
    DDX_TRY(check_gauss(b, "second"));
    if (a->d != b->d)
        return ddx_errorf(DDX_E_INPUT, "Fréchet distance: feature dimensions differ (%lld vs %lld)", (long long)a->d,
                          (long long)b->d);
    const int64_t d = a->d;
    const int n = (int)d;
    const size_t dd = (size_t)d * (size_t)d;
    double dist2 = 0, tr1 = 0, tr2 = 0;
    for (int64_t i = 0; i < d; i++) {
        double df = a->mu[i] - b->mu[i];
        dist2 += df * df;
        tr1 += a->sigma[i * d + i];
        tr2 += b->sigma[i * d + i];
    }
    double *V = malloc(dd * sizeof(double)), *T = malloc(dd * sizeof(double)), *M = malloc(dd * sizeof(double));
    double *w = malloc((size_t)d * sizeof(double));
    ddx_status st = DDX_OK;
    if (!V || !T || !M || !w) {
        st = ddx_errorf(DDX_E_NOMEM, "Fréchet distance of dimension %lld: out of memory", (long long)d);
        goto done;
    }
    // S1 = V diag(l) V^T. With B = diag(sqrt l) V^T, B^T B = S1 and B S2 B^T has the eigenvalues
    // of S1 S2 (cyclic similarity) and of sqrt(S1) S2 sqrt(S1), but is symmetric: its
    // eigenvalues come from the symmetric solver and the square root of each is exact.
    memcpy(V, a->sigma, dd * sizeof(double));
    if ((st = sym_eig(V, d, w, true)) != DDX_OK) goto done;
    // dsyevd returns eigenvectors as columns (column-major), i.e. V^T row-major: row k of V is
    // eigenvector k. Negative eigenvalues are rounding noise of a PSD matrix: clamp to 0.
    for (int64_t k = 0; k < d; k++) {
        double s = w[k] > 0 ? sqrt(w[k]) : 0.0;
        for (int64_t j = 0; j < d; j++) V[k * d + j] *= s;
    }
    cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, n, n, 1.0, b->sigma, n, V, n, 0.0, T, n);   // T = B S2
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0, T, n, V, n, 0.0, M, n);    // M = B S2 B^T
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = i + 1; j < d; j++) {
            double m = 0.5 * (M[i * d + j] + M[j * d + i]);
            M[i * d + j] = M[j * d + i] = m;
        }
    if ((st = sym_eig(M, d, w, false)) != DDX_OK) goto done;
    double tr_sqrt = 0;
    for (int64_t k = 0; k < d; k++)
        if (w[k] > 0) tr_sqrt += sqrt(w[k]);
    *fid = dist2 + tr1 + tr2 - 2.0 * tr_sqrt;
done:
    free(V);
    free(T);
    free(M);
    free(w);
    return st;
}

// ---- numpy's legacy RandomState -------------------------------------------------------------
void ddx_np_rng_seed(ddx_np_rng *r, uint32_t seed) {
    r->mt[0] = seed;
    for (int i = 1; i < 624; i++) r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->pos = 624;
}

static uint32_t np_rng_u32(ddx_np_rng *r) {
    if (r->pos >= 624) {
        for (int i = 0; i < 624; i++) {
            uint32_t y = (r->mt[i] & 0x80000000u) | (r->mt[(i + 1) % 624] & 0x7fffffffu);
            r->mt[i] = r->mt[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        r->pos = 0;
    }
    uint32_t y = r->mt[r->pos++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

// numpy's random_interval: uniform in [0, max] by masked rejection.
static uint64_t np_rng_interval(ddx_np_rng *r, uint64_t max) {
    if (max == 0) return 0;
    uint64_t mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    uint64_t v;
    if (max <= 0xffffffffu) {
        while ((v = (np_rng_u32(r) & mask)) > max) {}
    } else {
        // next_uint64 of the legacy MT19937 is two 32-bit draws, high word first.
        do {
            uint64_t hi = np_rng_u32(r), lo = np_rng_u32(r);
            v = ((hi << 32) | lo) & mask;
        } while (v > max);
    }
    return v;
}

ddx_status ddx_np_rng_permutation(ddx_np_rng *r, int64_t *perm, int64_t n) {
    if (n < 0) return ddx_errorf(DDX_E_INPUT, "permutation of %lld elements", (long long)n);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i >= 1; i--) {
        int64_t j = (int64_t)np_rng_interval(r, (uint64_t)i);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    return DDX_OK;
}

// ---- KID ------------------------------------------------------------------------------------
ddx_kid_opts ddx_kid_defaults(void) {
    ddx_kid_opts o = {.subsets = 100, .subset_size = 1000, .degree = 3, .gamma = 0, .coef0 = 1, .seed = 2020};
    return o;
}

static double poly_k(double dot, double gamma, double coef0, int degree) {
    double base = dot * gamma + coef0, k = 1;
    for (int p = 0; p < degree; p++) k *= base;
    return k;
}

static void gather_rows(double *dst, const float *f, const int64_t *idx, int64_t m, int64_t d) {
    for (int64_t i = 0; i < m; i++) {
        const float *src = f + (size_t)idx[i] * (size_t)d;
        for (int64_t j = 0; j < d; j++) dst[i * d + j] = src[j];
    }
}

ddx_status ddx_kid(const float *f1, int64_t n1, const float *f2, int64_t n2, int64_t d, const ddx_kid_opts *opts,
                   double *mean, double *std) {
    ddx_kid_opts o = opts ? *opts : ddx_kid_defaults();
    const int64_t m = o.subset_size;
    if (d < 1 || d > DDX_FID_MAX_DIM)
        return ddx_errorf(DDX_E_INPUT, "KID: feature dimension %lld outside 1..%d", (long long)d, DDX_FID_MAX_DIM);
    if (o.subsets < 1 || m < 2 || o.degree < 1)
        return ddx_errorf(DDX_E_INPUT, "KID: needs subsets >= 1, subset size >= 2 and degree >= 1 (got %lld, %lld, %d)",
                          (long long)o.subsets, (long long)m, o.degree);
    if (m > n1 || m > n2)
        return ddx_errorf(DDX_E_INPUT, "KID: subset size %lld is larger than the feature sets (%lld and %lld rows); "
                          "lower the subset size or give more samples", (long long)m, (long long)n1, (long long)n2);
    if (m > 1000000) return ddx_errorf(DDX_E_INPUT, "KID: subset size %lld is above 10^6", (long long)m);
    const double gamma = o.gamma > 0 ? o.gamma : 1.0 / (double)d;
    const int im = (int)m, id = (int)d;
    double *X = malloc((size_t)m * (size_t)d * sizeof(double)), *Y = malloc((size_t)m * (size_t)d * sizeof(double));
    double *G = malloc((size_t)m * (size_t)m * sizeof(double));
    double *mmd = malloc((size_t)o.subsets * sizeof(double));
    int64_t *p1 = o.idx1 ? NULL : malloc((size_t)n1 * sizeof(int64_t));
    int64_t *p2 = o.idx2 ? NULL : malloc((size_t)n2 * sizeof(int64_t));
    ddx_status st = DDX_OK;
    if (!X || !Y || !G || !mmd || (!o.idx1 && !p1) || (!o.idx2 && !p2)) {
        st = ddx_errorf(DDX_E_NOMEM, "KID: out of memory for subsets of %lld x %lld", (long long)m, (long long)d);
        goto done;
    }
    ddx_np_rng rng;
    ddx_np_rng_seed(&rng, o.seed);
    for (int64_t s = 0; s < o.subsets; s++) {
        const int64_t *i1, *i2;
        // torch-fidelity draws set 1 then set 2 from one RandomState, per subset.
        if (o.idx1) {
            i1 = o.idx1 + s * m;
        } else {
            ddx_np_rng_permutation(&rng, p1, n1);
            i1 = p1;
        }
        if (o.idx2) {
            i2 = o.idx2 + s * m;
        } else {
            ddx_np_rng_permutation(&rng, p2, n2);
            i2 = p2;
        }
        for (int64_t i = 0; i < m; i++)
            if (i1[i] < 0 || i1[i] >= n1 || i2[i] < 0 || i2[i] >= n2) {
                st = ddx_errorf(DDX_E_INPUT, "KID: subset %lld index out of range", (long long)s);
                goto done;
            }
        gather_rows(X, f1, i1, m, d);
        gather_rows(Y, f2, i2, m, d);
        double sxx = 0, syy = 0, sxy = 0;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, im, id, 1.0, X, id, 0.0, G, im);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = i + 1; j < m; j++) sxx += poly_k(G[i * m + j], gamma, o.coef0, o.degree);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, im, id, 1.0, Y, id, 0.0, G, im);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = i + 1; j < m; j++) syy += poly_k(G[i * m + j], gamma, o.coef0, o.degree);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, im, im, id, 1.0, X, id, Y, id, 0.0, G, im);
        for (int64_t i = 0; i < m * m; i++) sxy += poly_k(G[i], gamma, o.coef0, o.degree);
        // Unbiased MMD^2: off-diagonal means of K_XX and K_YY (each pair counted twice), minus
        // twice the full mean of K_XY.
        const double md = (double)m;
        mmd[s] = 2.0 * (sxx + syy) / (md * (md - 1.0)) - 2.0 * sxy / (md * md);
    }
    double mu = 0, var = 0;
    for (int64_t s = 0; s < o.subsets; s++) mu += mmd[s];
    mu /= (double)o.subsets;
    for (int64_t s = 0; s < o.subsets; s++) var += (mmd[s] - mu) * (mmd[s] - mu);
    *mean = mu;
    *std = sqrt(var / (double)o.subsets);
done:
    free(X);
    free(Y);
    free(G);
    free(mmd);
    free(p1);
    free(p2);
    return st;
}

// ---- Inception Score ------------------------------------------------------------------------
ddx_status ddx_inception_score(const float *logits, int64_t n, int64_t classes, int64_t splits, bool shuffle,
                               uint32_t seed, double *mean, double *std) {
    if (classes < 2 || classes > 1000000 || splits < 1 || n < splits)
        return ddx_errorf(DDX_E_INPUT, "Inception Score: needs classes >= 2 and at least %lld rows for %lld splits (got %lld)",
                          (long long)splits, (long long)splits, (long long)n);
    for (int64_t i = 0; i < n * classes; i++)
        if (!isfinite(logits[i]))
            return ddx_errorf(DDX_E_INPUT, "Inception Score: logit row %lld is not finite", (long long)(i / classes));
    int64_t *perm = malloc((size_t)n * sizeof(int64_t));
    double *lp = malloc((size_t)classes * sizeof(double)), *q = malloc((size_t)classes * sizeof(double));
    double *score = malloc((size_t)splits * sizeof(double));
    ddx_status st = DDX_OK;
    if (!perm || !lp || !q || !score) {
        st = ddx_errorf(DDX_E_NOMEM, "Inception Score: out of memory");
        goto done;
    }
    if (shuffle) {
        ddx_np_rng rng;
        ddx_np_rng_seed(&rng, seed);
        ddx_np_rng_permutation(&rng, perm, n);
    } else {
        for (int64_t i = 0; i < n; i++) perm[i] = i;
    }
    for (int64_t s = 0; s < splits; s++) {
        const int64_t r0 = s * n / splits, r1 = (s + 1) * n / splits;
        // Two passes over the chunk: q = mean softmax, then mean KL(p || q). The log-softmax is
        // taken with the row max subtracted, as torch's log_softmax.
        for (int64_t c = 0; c < classes; c++) q[c] = 0;
        for (int pass = 0; pass < 2; pass++) {
            double kl_sum = 0;
            for (int64_t r = r0; r < r1; r++) {
                const float *x = logits + (size_t)perm[r] * (size_t)classes;
                double mx = x[0], z = 0;
                for (int64_t c = 1; c < classes; c++) mx = x[c] > mx ? x[c] : mx;
                for (int64_t c = 0; c < classes; c++) z += exp((double)x[c] - mx);
                const double lz = log(z);
                double kl = 0;
                for (int64_t c = 0; c < classes; c++) {
                    lp[c] = (double)x[c] - mx - lz;
                    if (pass == 0) q[c] += exp(lp[c]);
                    else kl += exp(lp[c]) * (lp[c] - q[c]);
                }
                kl_sum += kl;
            }
            if (pass == 0) {
                for (int64_t c = 0; c < classes; c++) q[c] = log(q[c] / (double)(r1 - r0));
            } else {
                score[s] = exp(kl_sum / (double)(r1 - r0));
            }
        }
    }
    double mu = 0, var = 0;
    for (int64_t s = 0; s < splits; s++) mu += score[s];
    mu /= (double)splits;
    for (int64_t s = 0; s < splits; s++) var += (score[s] - mu) * (score[s] - mu);
    *mean = mu;
    *std = sqrt(var / (double)splits);
done:
    free(perm);
    free(lp);
    free(q);
    free(score);
    return st;
}
