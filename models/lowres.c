// Area downsampling and bicubic upsampling for the super-resolution conditioning (lowres.h).
#include "models/lowres.h"

#include <math.h>
#include <stdlib.h>

ddx_status ddx_area_downsample(const float *x, int64_t n, int H, int W, int C, int f, float *out) {
    if (n < 0 || H < 1 || W < 1 || C < 1 || f < 1 || H % f || W % f)
        return ddx_errorf(DDX_E_INPUT, "area downsample: %dx%d is not a whole multiple of the factor %d", H, W, f);
    const int h = H / f, w = W / f;
    const double inv = 1.0 / ((double)f * f);
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * (int64_t)H * W * C;
        float *oi = out + i * (int64_t)h * w * C;
        for (int r = 0; r < h; r++)
            for (int q = 0; q < w; q++)
                for (int ch = 0; ch < C; ch++) {
                    double s = 0;
                    for (int a = 0; a < f; a++)
                        for (int b = 0; b < f; b++) s += xi[((int64_t)(r * f + a) * W + (q * f + b)) * C + ch];
                    oi[((int64_t)r * w + q) * C + ch] = (float)(s * inv);
                }
    }
    return DDX_OK;
}

// Keys' cubic convolution kernel, A = -0.75 (PyTorch's, and OpenCV's), at the four taps of
// a point whose fractional offset from its left neighbour is t.
static void cubic_weights(double t, double wt[4]) {
    const double A = -0.75;
    const double x0 = t + 1.0, x1 = t, x2 = 1.0 - t, x3 = 2.0 - t;
    wt[0] = ((A * x0 - 5.0 * A) * x0 + 8.0 * A) * x0 - 4.0 * A;
    wt[1] = ((A + 2.0) * x1 - (A + 3.0)) * x1 * x1 + 1.0;
    wt[2] = ((A + 2.0) * x2 - (A + 3.0)) * x2 * x2 + 1.0;
    wt[3] = ((A * x3 - 5.0 * A) * x3 + 8.0 * A) * x3 - 4.0 * A;
}

typedef struct taps {
    int idx[4];
    double wt[4];
} taps;

// Per output index along one axis: the four clamped source indices and their weights.
static ddx_status axis_taps(int in, int f, taps **out) {
    const int o = in * f;
    taps *tp = malloc((size_t)o * sizeof *tp);
    if (!tp) return ddx_errorf(DDX_E_NOMEM, "bicubic upsample: out of host memory");
    for (int i = 0; i < o; i++) {
        const double src = (i + 0.5) / f - 0.5;   // align_corners=False
        const double fl = floor(src);
        cubic_weights(src - fl, tp[i].wt);
        for (int k = 0; k < 4; k++) {
            int j = (int)fl - 1 + k;
            tp[i].idx[k] = j < 0 ? 0 : j > in - 1 ? in - 1 : j;
        }
    }
    *out = tp;
    return DDX_OK;
}

ddx_status ddx_bicubic_upsample(const float *x, int64_t n, int h, int w, int C, int f, float *out) {
    if (n < 0 || h < 1 || w < 1 || C < 1 || f < 1)
        return ddx_errorf(DDX_E_INPUT, "bicubic upsample: bad size %dx%dx%d or factor %d", h, w, C, f);
    const int H = h * f, W = w * f;
    taps *ty = NULL, *tx = NULL;
    ddx_status st = axis_taps(h, f, &ty);
    if (st == DDX_OK) st = axis_taps(w, f, &tx);
    for (int64_t i = 0; i < n && st == DDX_OK; i++) {
        const float *xi = x + i * (int64_t)h * w * C;
        float *oi = out + i * (int64_t)H * W * C;
        for (int r = 0; r < H; r++)
            for (int q = 0; q < W; q++)
                for (int ch = 0; ch < C; ch++) {
                    double s = 0;
                    for (int a = 0; a < 4; a++) {
                        const float *row = xi + (int64_t)ty[r].idx[a] * w * C + ch;
                        double rs = 0;
                        for (int b = 0; b < 4; b++) rs += tx[q].wt[b] * row[(int64_t)tx[q].idx[b] * C];
                        s += ty[r].wt[a] * rs;
                    }
                    oi[((int64_t)r * W + q) * C + ch] = (float)s;
                }
    }
    free(ty);
    free(tx);
    return st;
}

void ddx_clamp_f32(float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
}

static ddx_status check_cfg(const ddx_config *cfg) {
    const int S = cfg->model.image_size, f = cfg->data.sr_factor;
    if (cfg->model.cond != DDX_COND_LOWRES || f < 1 || S % f)
        return ddx_errorf(DDX_E_INPUT, "model.cond: the model is not a lowres (super-resolution) model with a data.sr_factor "
                                       "that divides model.image_size");
    return DDX_OK;
}

ddx_status ddx_lowres_cond_from_low(const ddx_config *cfg, const float *low, int64_t n, float *out) {
    DDX_TRY(check_cfg(cfg));
    const int S = cfg->model.image_size, f = cfg->data.sr_factor, C = cfg->model.out_channels;
    DDX_TRY(ddx_bicubic_upsample(low, n, S / f, S / f, C, f, out));
    ddx_clamp_f32(out, n * (int64_t)S * S * C, -1.0f, 1.0f);
    return DDX_OK;
}

ddx_status ddx_lowres_cond(const ddx_config *cfg, const float *x0, int64_t n, float *out) {
    DDX_TRY(check_cfg(cfg));
    const int S = cfg->model.image_size, f = cfg->data.sr_factor, C = cfg->model.out_channels;
    const int s = S / f;
    float *low = malloc((size_t)(n > 0 ? n : 1) * (size_t)s * (size_t)s * (size_t)C * sizeof *low);
    if (!low) return ddx_errorf(DDX_E_NOMEM, "lowres conditioning: out of host memory for %lld images", (long long)n);
    ddx_status st = ddx_area_downsample(x0, n, S, S, C, f, low);
    if (st == DDX_OK) st = ddx_lowres_cond_from_low(cfg, low, n, out);
    free(low);
    return st;
}
