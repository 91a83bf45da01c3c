// eval/metrics: PSNR and SSIM against scikit-image on LCG images (tests/data/metrics_fixtures.h,
// made by tests/reference/make_metrics_fixtures.py), plus the edge cases the header promises.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "eval/metrics.h"
#include "tests/check.h"
#include "tests/data/metrics_fixtures.h"

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 56;
}

static void make_pair(int h, int w, int c, unsigned seed, int amp, float *a, float *b) {
    const int64_t n = (int64_t)h * w * c;
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) a[i] = (float)((double)lcg(&s) / 255.0);
    s = (uint64_t)seed + 1000;
    for (int64_t i = 0; i < n; i++) {
        const long v = lround(a[i] * 255.0) + (long)(lcg(&s) % (uint64_t)(2 * amp + 1)) - amp;
        b[i] = (float)((double)(v < 0 ? 0 : v > 255 ? 255 : v) / 255.0);
    }
}

static void box_mask(int h, int w, uint8_t *m) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) m[y * w + x] = y >= h / 4 && y <= h / 2 && x >= w / 3 && x < w - 1;
}

static int close_rel(double got, double want, double tol) { return fabs(got - want) <= tol * fabs(want); }

int main(void) {
    for (size_t k = 0; k < sizeof metrics_cases / sizeof metrics_cases[0]; k++) {
        const int h = metrics_cases[k].h, w = metrics_cases[k].w, c = metrics_cases[k].c;
        float *a = malloc(sizeof(float) * h * w * c), *b = malloc(sizeof(float) * h * w * c);
        uint8_t *m = malloc((size_t)h * w);
        make_pair(h, w, c, metrics_cases[k].seed, metrics_cases[k].amp, a, b);
        box_mask(h, w, m);
        // The fixture images are float64 k/255; these are the nearest floats, which moves PSNR
        // and SSIM by about 1e-8 relative.
        const double psnr = ddx_psnr(a, b, h, w, c, NULL), ssim = ddx_ssim(a, b, h, w, c, NULL);
        const double psnr_m = ddx_psnr(a, b, h, w, c, m), ssim_m = ddx_ssim(a, b, h, w, c, m);
        CHECK(close_rel(psnr, metrics_cases[k].psnr, 1e-6), "case %zu psnr %.12g want %.12g", k, psnr,
              metrics_cases[k].psnr);
        CHECK(close_rel(ssim, metrics_cases[k].ssim, 1e-6), "case %zu ssim %.12g want %.12g", k, ssim,
              metrics_cases[k].ssim);
        CHECK(close_rel(psnr_m, metrics_cases[k].psnr_m, 1e-6), "case %zu masked psnr %.12g want %.12g", k, psnr_m,
              metrics_cases[k].psnr_m);
        CHECK(close_rel(ssim_m, metrics_cases[k].ssim_m, 1e-6), "case %zu masked ssim %.12g want %.12g", k, ssim_m,
              metrics_cases[k].ssim_m);
        // Identical images: PSNR infinite, SSIM exactly 1 up to rounding.
        CHECK(isinf(ddx_psnr(a, a, h, w, c, NULL)) && ddx_psnr(a, a, h, w, c, NULL) > 0, "case %zu psnr(a, a)", k);
        CHECK(fabs(ddx_ssim(a, a, h, w, c, NULL) - 1.0) < 1e-12, "case %zu ssim(a, a) %.17g", k,
              ddx_ssim(a, a, h, w, c, NULL));
        // The metrics are symmetric.
        CHECK(ddx_psnr(b, a, h, w, c, NULL) == psnr, "case %zu psnr symmetric", k);
        CHECK(fabs(ddx_ssim(b, a, h, w, c, NULL) - ssim) < 1e-14, "case %zu ssim symmetric", k);
        // An empty mask counts nothing.
        for (int i = 0; i < h * w; i++) m[i] = 0;
        CHECK(isnan(ddx_psnr(a, b, h, w, c, m)) && isnan(ddx_ssim(a, b, h, w, c, m)), "case %zu empty mask", k);
        free(a), free(b), free(m);
    }
    // Below the window, and bad dimensions: NAN, never a read out of bounds.
    float small[10 * 10] = {0};
    CHECK(isnan(ddx_ssim(small, small, 10, 10, 1, NULL)), "10x10 ssim");
    CHECK(!isnan(ddx_psnr(small, small, 10, 10, 1, NULL)), "10x10 psnr is defined");
    CHECK(isnan(ddx_psnr(small, small, 0, 10, 1, NULL)) && isnan(ddx_ssim(small, small, 11, 11, 0, NULL)),
          "zero dimensions");
    // A constant offset of 0.1 everywhere: MSE 0.01, PSNR exactly 20 dB.
    float x[12 * 12], y[12 * 12];
    for (int i = 0; i < 144; i++) x[i] = 0.25f, y[i] = 0.25f + 0.1f;
    CHECK(fabs(ddx_psnr(x, y, 12, 12, 1, NULL) - 20.0) < 1e-5, "offset psnr %.9g", ddx_psnr(x, y, 12, 12, 1, NULL));
    return ddx_test_finish("metrics");
}
