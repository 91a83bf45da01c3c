// Inpainting masks (models/mask.h).
//
// Random kinds draw 32-bit words from Philox (seed, DDX_RNG_STREAM_MASK, step = image index)
// one after another. Stroke geometry uses only +, * and a table of 16 directions (no libm),
// so the pixels are the same on every machine.
#include "models/mask.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/image.h"
#include "runtime/philox.h"

typedef struct draws {
    uint64_t seed;
    uint64_t index;
    uint64_t next;      // Philox element of the next word
    uint32_t buf[16];
    int pos;
} draws;

static ddx_status draw_u32(draws *d, uint32_t *v) {
    if (d->pos == 16) {
        DDX_TRY(ddx_philox_u32(d->buf, 16, d->seed, DDX_RNG_STREAM_MASK, d->index, d->next));
        d->next += 16;
        d->pos = 0;
    }
    *v = d->buf[d->pos++];
    return DDX_OK;
}

// Uniform integer in [lo, hi] (the modulo bias is below 2^-20 for the ranges used here).
static ddx_status draw_int(draws *d, int lo, int hi, int *v) {
    uint32_t u;
    DDX_TRY(draw_u32(d, &u));
    *v = lo + (int)(u % (uint32_t)(hi - lo + 1));
    return DDX_OK;
}

static bool parse_int(const char **s, int *v) {
    char *end;
    errno = 0;
    long x = strtol(*s, &end, 10);
    if (end == *s || errno || x < -1000000 || x > 1000000) return false;
    *v = (int)x;
    *s = end;
    return true;
}

ddx_status ddx_mask_parse(const char *s, const char *what, ddx_mask_spec *out) {
    memset(out, 0, sizeof *out);
    if (!s || !*s) return ddx_errorf(DDX_E_INPUT, "%s: empty mask kind; use box, box:X,Y,W,H, center, half:SIDE, strokes or file:PATH", what);
    if (!strcmp(s, "box")) {
        out->kind = DDX_MASK_BOX_RANDOM;
    } else if (!strncmp(s, "box:", 4)) {
        const char *p = s + 4;
        int v[4];
        for (int i = 0; i < 4; i++) {
            if (!parse_int(&p, &v[i]) || *p != (i < 3 ? ',' : '\0'))
                return ddx_errorf(DDX_E_INPUT, "%s: '%s': a given box is box:X,Y,W,H (4 integers, pixels)", what, s);
            if (i < 3) p++;
        }
        out->kind = DDX_MASK_BOX;
        out->x = v[0], out->y = v[1], out->bw = v[2], out->bh = v[3];
    } else if (!strcmp(s, "center")) {
        out->kind = DDX_MASK_CENTER;
    } else if (!strncmp(s, "half:", 5)) {
        static const char *const names[] = {"left", "right", "top", "bottom"};
        out->kind = DDX_MASK_HALF;
        int i = 0;
        while (i < 4 && strcmp(s + 5, names[i])) i++;
        if (i == 4) return ddx_errorf(DDX_E_INPUT, "%s: '%s': the half is left, right, top or bottom", what, s);
        out->side = (ddx_mask_side)i;
    } else if (!strcmp(s, "strokes")) {
        out->kind = DDX_MASK_STROKES;
    } else if (!strncmp(s, "file:", 5)) {
        if (!s[5]) return ddx_errorf(DDX_E_INPUT, "%s: 'file:' needs a path (file:mask.png)", what);
        out->kind = DDX_MASK_FILE;
        out->path = s + 5;
    } else {
        return ddx_errorf(DDX_E_INPUT,
                          "%s: unknown mask kind '%s'; use box, box:X,Y,W,H, center, half:left|right|top|bottom, strokes "
                          "or file:PATH.png",
                          what, s);
    }
    return DDX_OK;
}

static void fill_box(uint8_t *m, int w, int x0, int y0, int bw, int bh) {
    for (int y = y0; y < y0 + bh; y++) memset(m + (size_t)y * w + x0, 0, (size_t)bw);
}

// 16 directions: cos and sin of k * 22.5 degrees, as literals.
static const double dir_cos[16] = {1.0, 0.9238795325112867, 0.7071067811865476, 0.3826834323650898, 0.0,
                                   -0.3826834323650898, -0.7071067811865476, -0.9238795325112867, -1.0,
                                   -0.9238795325112867, -0.7071067811865476, -0.3826834323650898, 0.0,
                                   0.3826834323650898, 0.7071067811865476, 0.9238795325112867};
static double dir_sin(int k) { return dir_cos[(k + 12) & 15]; }   // sin(a) = cos(a - 90 deg)

static int64_t count_fill(const uint8_t *m, int64_t n) {
    int64_t z = 0;
    for (int64_t i = 0; i < n; i++) z += m[i] == 0;
    return z;
}

// A round brush of radius r at (cx, cy) (rounded to the nearest pixel).
static void stamp(uint8_t *m, int h, int w, double cx, double cy, int r) {
    const int px = (int)(cx + 0.5 + 1e6) - 1000000, py = (int)(cy + 0.5 + 1e6) - 1000000;
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
            const int x = px + dx, y = py + dy;
            if (dx * dx + dy * dy <= r * r && x >= 0 && x < w && y >= 0 && y < h) m[(size_t)y * w + x] = 0;
        }
}

static ddx_status make_strokes(draws *d, int h, int w, uint8_t *m) {
    const int64_t npix = (int64_t)h * w, cap = npix * 3 / 4;
    const int side = h < w ? h : w, big = h > w ? h : w;
    const int rlo = side / 14 > 1 ? side / 14 : 1, rhi = side / 8 > rlo ? side / 8 : rlo;
    const int maxlen = big / 3 > 1 ? big / 3 : 1;
    uint8_t *tmp = malloc((size_t)npix);
    if (!tmp) return ddx_errorf(DDX_E_NOMEM, "mask: out of memory for a %dx%d mask", w, h);
    int strokes, x, y;
    ddx_status st = draw_int(d, 1, 3, &strokes);
    bool full = false;
    for (int s = 0; s < strokes && !st && !full; s++) {
        int nseg = 0, r = 0, a = 0;
        if (!st) st = draw_int(d, 0, w - 1, &x);
        if (!st) st = draw_int(d, 0, h - 1, &y);
        if (!st) st = draw_int(d, 3, 6, &nseg);
        if (!st) st = draw_int(d, rlo, rhi, &r);
        if (!st) st = draw_int(d, 0, 15, &a);
        double cx = x, cy = y;
        for (int k = 0; k < nseg && !st && !full; k++) {
            int len = 0, turn = 0;
            if (!st) st = draw_int(d, 1, maxlen, &len);
            // Mostly smooth strokes: the direction turns by at most 3 of the 16 steps.
            if (!st) st = draw_int(d, -3, 3, &turn);
            if (st) break;
            a = (a + turn + 16) & 15;
            memcpy(tmp, m, (size_t)npix);
            double px = cx, py = cy;
            for (int j = 0; j <= 2 * len; j++) {
                px = cx + dir_cos[a] * (0.5 * j);
                py = cy + dir_sin(a) * (0.5 * j);
                stamp(tmp, h, w, px, py, r);
            }
            if (count_fill(tmp, npix) > cap) {
                full = true;
                break;
            }
            memcpy(m, tmp, (size_t)npix);
            // A stroke that leaves the image is reflected back in, so its next segment is seen.
            cx = px < 0 ? -px : (px > w - 1 ? 2.0 * (w - 1) - px : px);
            cy = py < 0 ? -py : (py > h - 1 ? 2.0 * (h - 1) - py : py);
        }
    }
    if (!st && count_fill(m, npix) == 0) m[(size_t)y * w + x] = 0;   // at least one pixel to fill
    free(tmp);
    return st;
}

int64_t ddx_mask_kept(const uint8_t *m, int h, int w) {
    return (int64_t)h * w - count_fill(m, (int64_t)h * w);
}

ddx_status ddx_mask_make(const ddx_mask_spec *s, const char *what, int h, int w, uint64_t seed, int64_t index,
                         uint8_t *m) {
    if (h < 2 || w < 2) return ddx_errorf(DDX_E_INPUT, "%s: a %dx%d image is too small to mask", what, w, h);
    const int64_t npix = (int64_t)h * w;
    memset(m, 1, (size_t)npix);
    draws d = {.seed = seed, .index = (uint64_t)index, .next = 0, .pos = 16};
    switch (s->kind) {
    case DDX_MASK_BOX_RANDOM: {
        int bh, bw, x, y;
        DDX_TRY(draw_int(&d, h / 4 > 1 ? h / 4 : 1, h / 2 > 1 ? h / 2 : 1, &bh));
        DDX_TRY(draw_int(&d, w / 4 > 1 ? w / 4 : 1, w / 2 > 1 ? w / 2 : 1, &bw));
        DDX_TRY(draw_int(&d, 0, h - bh, &y));
        DDX_TRY(draw_int(&d, 0, w - bw, &x));
        fill_box(m, w, x, y, bw, bh);
        return DDX_OK;
    }
    case DDX_MASK_BOX:
        if (s->bw < 1 || s->bh < 1 || s->x < 0 || s->y < 0 || s->x > w - s->bw || s->y > h - s->bh)
            return ddx_errorf(DDX_E_INPUT, "%s: box:%d,%d,%d,%d is not a non-empty box inside the %dx%d image", what, s->x,
                              s->y, s->bw, s->bh, w, h);
        if (s->bw == w && s->bh == h)
            return ddx_errorf(DDX_E_INPUT, "%s: box:%d,%d,%d,%d fills the whole image: nothing is kept to inpaint from", what,
                              s->x, s->y, s->bw, s->bh);
        fill_box(m, w, s->x, s->y, s->bw, s->bh);
        return DDX_OK;
    case DDX_MASK_CENTER:
        fill_box(m, w, (w - w / 2) / 2, (h - h / 2) / 2, w / 2, h / 2);
        return DDX_OK;
    case DDX_MASK_HALF:
        switch (s->side) {
        case DDX_SIDE_LEFT: fill_box(m, w, 0, 0, w / 2, h); break;
        case DDX_SIDE_RIGHT: fill_box(m, w, w - w / 2, 0, w / 2, h); break;
        case DDX_SIDE_TOP: fill_box(m, w, 0, 0, w, h / 2); break;
        default: fill_box(m, w, 0, h - h / 2, w, h / 2); break;
        }
        return DDX_OK;
    case DDX_MASK_STROKES:
        return make_strokes(&d, h, w, m);
    case DDX_MASK_FILE: {
        DDX_TRY(ddx_image_read_u8(s->path, what, h, w, 1, m));
        for (int64_t i = 0; i < npix; i++) m[i] = m[i] >= 128;
        const int64_t kept = ddx_mask_kept(m, h, w);
        if (kept == npix)
            return ddx_errorf(DDX_E_INPUT, "%s: %s keeps every pixel (all white): nothing to inpaint; black (< 128) marks the "
                                           "pixels to fill",
                              what, s->path);
        if (kept == 0)
            return ddx_errorf(DDX_E_INPUT, "%s: %s fills every pixel (all black): nothing is kept to inpaint from; white (>= "
                                           "128) marks the pixels to keep",
                              what, s->path);
        return DDX_OK;
    }
    }
    return ddx_errorf(DDX_E_INTERNAL, "mask: unknown kind %d", (int)s->kind);
}
