// PNG output through stb_image_write and the atomic writer of outfile.h, so a crash or a full
// disk never leaves a half-written sample grid where a good one was, and an --out that names a
// device, FIFO, folder or symlink is refused, never replaced.
//
// Normalisation. clip: u = (x + 1) / 2 clipped to [0, 1]. auto: like clip, unless the finite
// values are "far from [-1, 1]": min < -1.5 or max > 1.5 (clipping would hide most of the
// picture, e.g. an untrained or diverging model), or max - min < 0.25 (so little contrast that
// the clipped picture is a flat grey, e.g. a model that predicts ~0); then u = (x - min) /
// (max - min). A constant picture (max == min) is never stretched. In every mode NaN and -inf
// map to 0 and +inf to 1 (a broken sample must still be visible, not crash the writer);
// 8-bit value = floor(255 u + 0.5).
#include "image.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image.h>
#include <stb_image_write.h>

#include "outfile.h"

#define BORDER 2

static void sink_write(void *ctx, void *data, int size) {
    if (size > 0) ddx_atomic_write(ctx, data, (size_t)size);
}

static ddx_status write_png_atomic(const char *path, const uint8_t *pix, int w, int h, int c) {
    ddx_atomic_file a;
    DDX_TRY(ddx_atomic_open(&a, path, "PNG output"));
    if (!stbi_write_png_to_func(sink_write, &a, w, h, c, pix, w * c)) {
        ddx_atomic_abort(&a);
        return ddx_errorf(DDX_E_NOMEM, "%s: encoding the PNG failed (out of memory?)", path);
    }
    return ddx_atomic_commit(&a);
}

static ddx_status check_shape(const char *path, const float *x, int64_t n, int h, int w, int c) {
    if (!path || !path[0]) return ddx_errorf(DDX_E_INPUT, "image: empty output path");
    if (!x) return ddx_errorf(DDX_E_INPUT, "%s: no pixels (NULL)", path);
    if (n < 1 || h < 1 || w < 1) return ddx_errorf(DDX_E_INPUT, "%s: bad image shape n=%lld h=%d w=%d", path, (long long)n, h, w);
    if (c != 1 && c != 3)
        return ddx_errorf(DDX_E_INPUT, "%s: %d channels: PNG output takes 1 (grey) or 3 (RGB)", path, c);
    return DDX_OK;
}

// Maps [n * h * w * c] floats to the [0, 1] mapping parameters: u = (x - lo) * scale.
static void pick_mapping(const float *x, int64_t count, ddx_normalize mode, float *lo, float *scale, bool *stretched) {
    *lo = -1.0f;
    *scale = 0.5f;
    bool st = false;
    if (mode == DDX_NORMALIZE_AUTO) {
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < count; i++) {
            if (!isfinite(x[i])) continue;
            if (x[i] < mn) mn = x[i];
            if (x[i] > mx) mx = x[i];
        }
        if (mx > mn && (mn < -1.5f || mx > 1.5f || (double)mx - mn < 0.25)) {
            st = true;
            *lo = mn;
            *scale = (float)(1.0 / ((double)mx - mn));
        }
    }
    if (stretched) *stretched = st;
}

static inline uint8_t map_u8(float v, float lo, float scale) {
    if (isnan(v)) return 0;
    float u = (v - lo) * scale;
    if (!(u > 0.0f)) return 0;
    if (u >= 1.0f) return 255;
    return (uint8_t)(u * 255.0f + 0.5f);
}

ddx_status ddx_image_grid_write(const char *path, const float *x, int n, int h, int w, int c, int cols,
                                ddx_normalize mode, bool *stretched) {
    DDX_TRY(check_shape(path, x, n, h, w, c));
    if (cols < 0) return ddx_errorf(DDX_E_INPUT, "%s: grid columns %d is negative", path, cols);
    if (cols == 0) {
        cols = (int)ceil(sqrt((double)n));
        while ((int64_t)cols * cols < n) cols++; // sqrt rounding on perfect squares
    }
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols;
    int64_t gw = (int64_t)cols * (w + BORDER) + BORDER, gh = (int64_t)rows * (h + BORDER) + BORDER;
    // stb_image_write takes int sizes and an int stride.
    if (gw * c > INT32_MAX / 2 || gh > INT32_MAX / 2 || gw * gh * c > INT32_MAX)
        return ddx_errorf(DDX_E_INPUT, "%s: a %lldx%lld grid is too large for one PNG: write fewer images", path,
                          (long long)gw, (long long)gh);
    float lo, scale;
    pick_mapping(x, (int64_t)n * h * w * c, mode, &lo, &scale, stretched);
    uint8_t *pix = calloc((size_t)(gw * gh * c), 1); // border and empty cells: black
    if (!pix) return ddx_errorf(DDX_E_NOMEM, "%s: out of memory for a %lldx%lld grid", path, (long long)gw, (long long)gh);
    for (int i = 0; i < n; i++) {
        int64_t ox = (int64_t)(i % cols) * (w + BORDER) + BORDER, oy = (int64_t)(i / cols) * (h + BORDER) + BORDER;
        const float *img = x + (int64_t)i * h * w * c;
        for (int y = 0; y < h; y++) {
            uint8_t *row = pix + ((oy + y) * gw + ox) * c;
            const float *src = img + (int64_t)y * w * c;
            for (int64_t k = 0; k < (int64_t)w * c; k++) row[k] = map_u8(src[k], lo, scale);
        }
    }
    ddx_status st = write_png_atomic(path, pix, (int)gw, (int)gh, c);
    free(pix);
    return st;
}

// A single image has no border: it is the picture itself (super-resolution and inpainting
// outputs are compared pixel for pixel with their inputs).
ddx_status ddx_image_write(const char *path, const float *x, int h, int w, int c, ddx_normalize mode, bool *stretched) {
    DDX_TRY(check_shape(path, x, 1, h, w, c));
    if ((int64_t)w * c > INT32_MAX / 2 || (int64_t)w * h * c > INT32_MAX)
        return ddx_errorf(DDX_E_INPUT, "%s: a %dx%d image is too large for one PNG", path, w, h);
    float lo, scale;
    pick_mapping(x, (int64_t)h * w * c, mode, &lo, &scale, stretched);
    uint8_t *pix = malloc((size_t)h * w * c);
    if (!pix) return ddx_errorf(DDX_E_NOMEM, "%s: out of memory", path);
    for (int64_t k = 0; k < (int64_t)h * w * c; k++) pix[k] = map_u8(x[k], lo, scale);
    ddx_status st = write_png_atomic(path, pix, w, h, c);
    free(pix);
    return st;
}

static const char *channel_words(int n) {
    switch (n) {
    case 1: return "grey";
    case 2: return "grey + alpha";
    case 3: return "RGB";
    case 4: return "RGBA";
    default: return "unknown";
    }
}

ddx_status ddx_image_read_u8(const char *path, const char *what, int h, int w, int c, uint8_t *out) {
    if (h < 1 || w < 1 || (c != 1 && c != 3) || !out)
        return ddx_errorf(DDX_E_INTERNAL, "%s: bad read request %dx%dx%d", what, h, w, c);
    int fd = -1;
    DDX_TRY(ddx_input_open(path, what, &fd, NULL));
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        const int e = errno;
        close(fd);
        return ddx_errorf(DDX_E_IO, "%s: cannot read %s: %s", what, path, strerror(e));
    }
    int fw = 0, fh = 0, fc = 0;
    ddx_status st = DDX_OK;
    if (!stbi_info_from_file(f, &fw, &fh, &fc)) {
        const char *why = stbi_failure_reason();
        st = ddx_errorf(DDX_E_INPUT, "%s: %s: not a readable PNG (%s)", what, path, why ? why : "unknown reason");
    } else if (fw != w || fh != h) {
        st = ddx_errorf(DDX_E_INPUT, "%s: %s is %dx%d pixels but the model works on %dx%d; resize it first", what, path, fw,
                        fh, w, h);
    } else if (fc != c) {
        st = ddx_errorf(DDX_E_INPUT, "%s: %s is %s (%d channel%s) but %s is wanted; convert it first", what, path,
                        channel_words(fc), fc, fc == 1 ? "" : "s", c == 1 ? "grey (1 channel)" : "RGB (3 channels)");
    }
    if (!st) {
        int rw = 0, rh = 0, rc = 0;
        uint8_t *img = stbi_load_from_file(f, &rw, &rh, &rc, c);
        if (!img) {
            const char *why = stbi_failure_reason();
            st = ddx_errorf(DDX_E_INPUT, "%s: %s: cannot decode the image (%s)", what, path, why ? why : "unknown reason");
        } else if (rw != w || rh != h) {
            st = ddx_errorf(DDX_E_INPUT, "%s: %s decoded to %dx%d, not the %dx%d its header says", what, path, rw, rh, w, h);
        } else {
            memcpy(out, img, (size_t)h * (size_t)w * (size_t)c);
        }
        stbi_image_free(img);
    }
    fclose(f);
    return st;
}
