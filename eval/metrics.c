#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>

double ddx_psnr(const float *a, const float *b, int h, int w, int c, const uint8_t *mask) {
    if (!a || !b || h < 1 || w < 1 || c < 1) return NAN;
    double se = 0.0;
    int64_t count = 0;
    for (int64_t p = 0; p < (int64_t)h * w; p++) {
        if (mask && !mask[p]) continue;
        for (int k = 0; k < c; k++) {
            const double d = (double)a[p * c + k] - (double)b[p * c + k];
            se += d * d;
        }
        count += c;
    }
    if (count == 0) return NAN;
    if (se == 0.0) return INFINITY;
    return 10.0 * log10(1.0 / (se / (double)count));
}

enum { RADIUS = DDX_SSIM_WIN / 2 };

// scipy.ndimage "reflect": the edge sample is repeated (d c b a | a b c d | d c b a). The
// window radius is below the image side (checked by the caller), so one reflection suffices.
static int reflect(int i, int n) {
    if (i < 0) return -i - 1;
    if (i >= n) return 2 * n - 1 - i;
    return i;
}

// Separable Gaussian filter of an h x w plane (rows, then columns), as
// scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5, mode="reflect") in double.
static void gauss(const double *in, double *tmp, double *out, int h, int w, const double *k) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0.0;
            for (int d = -RADIUS; d <= RADIUS; d++) s += k[d + RADIUS] * in[(int64_t)reflect(y + d, h) * w + x];
            tmp[(int64_t)y * w + x] = s;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0.0;
            for (int d = -RADIUS; d <= RADIUS; d++) s += k[d + RADIUS] * tmp[(int64_t)y * w + reflect(x + d, w)];
            out[(int64_t)y * w + x] = s;
        }
}

double ddx_ssim(const float *a, const float *b, int h, int w, int c, const uint8_t *mask) {
    if (!a || !b || h < DDX_SSIM_WIN || w < DDX_SSIM_WIN || c < 1) return NAN;
    const int64_t n = (int64_t)h * w;
    if (mask) {
        int64_t count = 0;
        for (int64_t p = 0; p < n; p++) count += mask[p] != 0;
        if (count == 0) return NAN;
    }
    double k[DDX_SSIM_WIN], ksum = 0.0;
    for (int d = -RADIUS; d <= RADIUS; d++) ksum += k[d + RADIUS] = exp(-0.5 * (double)(d * d) / (1.5 * 1.5));
    for (int i = 0; i < DDX_SSIM_WIN; i++) k[i] /= ksum;

    // x, y, xx, yy, xy planes, their filtered versions, and one scratch plane.
    double *buf = malloc((size_t)n * 11 * sizeof(double));
    if (!buf) return NAN;
    double *in[5], *mu[5], *tmp = buf + 10 * n;
    for (int i = 0; i < 5; i++) in[i] = buf + i * n, mu[i] = buf + (5 + i) * n;

    const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;
    double total = 0.0;
    for (int ch = 0; ch < c; ch++) {
        for (int64_t p = 0; p < n; p++) {
            const double x = a[p * c + ch], y = b[p * c + ch];
            in[0][p] = x, in[1][p] = y, in[2][p] = x * x, in[3][p] = y * y, in[4][p] = x * y;
        }
        for (int i = 0; i < 5; i++) gauss(in[i], tmp, mu[i], h, w, k);
        double sum = 0.0;
        int64_t count = 0;
        for (int yy = 0; yy < h; yy++)
            for (int xx = 0; xx < w; xx++) {
                const int64_t p = (int64_t)yy * w + xx;
                if (mask ? !mask[p] : (yy < RADIUS || yy >= h - RADIUS || xx < RADIUS || xx >= w - RADIUS)) continue;
                const double ux = mu[0][p], uy = mu[1][p];
                const double vx = mu[2][p] - ux * ux, vy = mu[3][p] - uy * uy, vxy = mu[4][p] - ux * uy;
                sum += ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux * ux + uy * uy + C1) * (vx + vy + C2));
                count++;
            }
        total += sum / (double)count;
    }
    free(buf);
    return total / c;
}
