// bench-fid: the FID statistics of eval/fid.h at full size. Streams N x d features (default
// 50000 x 2048, pytorch-fid's pool3) into ddx_fstats in batches of B (as ddx-eval does), then
// times the covariance, the Fréchet distance against a second set, the .npz write and read,
// and (with --kid) KID with torch-fidelity's defaults. bench/reference/fid_stats_numpy.py times
// the same steps the way pytorch-fid does them (numpy cov, scipy sqrtm) for the ratio.
//
//   bench-fid [--n N] [--n2 N2] [--d D] [--batch B] [--kid] [--npz PATH]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval/fid.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static double unif(void) {   // splitmix64 -> [0, 1)
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

// Inception-like rows: non-negative, a shared low-rank part so the covariance is not diagonal.
static void fill(float *x, int64_t rows, int64_t d, double scale) {
    for (int64_t i = 0; i < rows; i++) {
        double a = unif(), b = unif();
        for (int64_t j = 0; j < d; j++)
            x[i * d + j] = (float)(scale * (0.3 * unif() + 0.2 * a * (double)(j % 7) / 7.0 + 0.1 * b * (double)(j % 13) / 13.0));
    }
}

static int stream(ddx_fstats *s, int64_t n, int64_t d, int64_t batch, double scale, float *buf, double *t_fill) {
    for (int64_t r = 0; r < n; r += batch) {
        int64_t rows = n - r < batch ? n - r : batch;
        double t0 = now_s();
        fill(buf, rows, d, scale);
        *t_fill += now_s() - t0;
        if (ddx_fstats_add(s, buf, rows) != DDX_OK) {
            fprintf(stderr, "bench-fid: %s\n", ddx_last_error());
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    int64_t n = 50000, n2 = 10000, d = 2048, batch = 500;
    bool kid = false;
    const char *npz = "/tmp/bench_fid_stats.npz";
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--n")) n = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--n2")) n2 = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--d")) d = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--batch")) batch = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--npz")) npz = argv[++i];
        else if (!strcmp(argv[i], "--kid")) kid = true;
        else {
            fprintf(stderr, "usage: bench-fid [--n N] [--n2 N2] [--d D] [--batch B] [--kid] [--npz PATH]\n");
            return 2;
        }
    }
    if (n < 2 || n2 < 2 || d < 1 || d > DDX_FID_MAX_DIM || batch < 1) {
        fprintf(stderr, "bench-fid: bad sizes\n");
        return 2;
    }
    float *buf = malloc((size_t)batch * (size_t)d * sizeof(float));
    ddx_fstats *s1, *s2;
    if (!buf || ddx_fstats_create(&s1, d, kid ? n : 0) != DDX_OK || ddx_fstats_create(&s2, d, kid ? n2 : 0) != DDX_OK) {
        fprintf(stderr, "bench-fid: %s\n", ddx_last_error());
        return 1;
    }
    double t_fill = 0, t0 = now_s();
    if (stream(s1, n, d, batch, 1.0, buf, &t_fill)) return 1;
    double t_acc = now_s() - t0 - t_fill;
    ddx_gauss g1, g2, r;
    t0 = now_s();
    if (ddx_fstats_finish(s1, &g1) != DDX_OK) return 1;
    double t_fin = now_s() - t0;
    double dummy = 0;
    if (stream(s2, n2, d, batch, 1.1, buf, &dummy) || ddx_fstats_finish(s2, &g2) != DDX_OK) return 1;
    double fid;
    t0 = now_s();
    if (ddx_frechet_distance(&g1, &g2, &fid) != DDX_OK) {
        fprintf(stderr, "bench-fid: %s\n", ddx_last_error());
        return 1;
    }
    double t_fd = now_s() - t0;
    t0 = now_s();
    if (ddx_npz_write_stats(npz, "--npz", &g1) != DDX_OK) {
        fprintf(stderr, "bench-fid: %s\n", ddx_last_error());
        return 1;
    }
    double t_w = now_s() - t0;
    t0 = now_s();
    if (ddx_npz_read_stats(npz, 0, &r) != DDX_OK) {
        fprintf(stderr, "bench-fid: %s\n", ddx_last_error());
        return 1;
    }
    double t_r = now_s() - t0;
    bool same = r.d == g1.d && !memcmp(r.sigma, g1.sigma, (size_t)(d * d) * sizeof(double));
    printf("features %lld x %lld in batches of %lld (second set %lld rows)\n", (long long)n, (long long)d,
           (long long)batch, (long long)n2);
    printf("accumulate (dsyrk, fp64)   %8.3f s   %.1f GFLOP/s\n", t_acc, (double)n * (double)d * (double)(d + 1) / t_acc / 1e9);
    printf("finish (mean, covariance)  %8.3f s\n", t_fin);
    printf("Frechet distance           %8.3f s   FID = %.6f\n", t_fd, fid);
    printf(".npz write / read          %8.3f / %.3f s   (%s, round trip %s)\n", t_w, t_r, npz, same ? "bit-exact" : "DIFFERS");
    if (kid) {
        int64_t k1, k2;
        const float *f1 = ddx_fstats_kept(s1, &k1), *f2 = ddx_fstats_kept(s2, &k2);
        ddx_kid_opts o = ddx_kid_defaults();
        double m, sd;
        t0 = now_s();
        if (ddx_kid(f1, k1, f2, k2, d, &o, &m, &sd) != DDX_OK) {
            fprintf(stderr, "bench-fid: %s\n", ddx_last_error());
            return 1;
        }
        printf("KID (100 x 1000, fp64)     %8.3f s   KID = %.6g +- %.3g\n", now_s() - t0, m, sd);
    }
    ddx_gauss_free(&g1);
    ddx_gauss_free(&g2);
    ddx_gauss_free(&r);
    ddx_fstats_free(s1);
    ddx_fstats_free(s2);
    free(buf);
    return same ? 0 : 1;
}
