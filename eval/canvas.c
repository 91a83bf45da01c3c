#include "eval/canvas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

#include "runtime/outfile.h"

// stb_easy_font is a header of static functions, some unused here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wconversion"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

ddx_status ddx_canvas_init(ddx_canvas *c, int w, int h, uint8_t grey) {
    c->w = w;
    c->h = h;
    c->rgb = malloc((size_t)w * (size_t)h * 3);
    if (!c->rgb) return ddx_errorf(DDX_E_NOMEM, "out of memory for a %dx%d picture", w, h);
    memset(c->rgb, grey, (size_t)w * (size_t)h * 3);
    return DDX_OK;
}

void ddx_canvas_free(ddx_canvas *c) {
    free(c->rgb);
    c->rgb = NULL;
}

static void fill(ddx_canvas *c, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > c->w) x1 = c->w;
    if (y1 > c->h) y1 = c->h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) memcpy(c->rgb + ((size_t)y * c->w + x) * 3, rgb, 3);
}

int ddx_canvas_line_height(int scale) { return 12 * scale; }

int ddx_canvas_text_width(int scale, const char *text) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    return stb_easy_font_width(buf) * scale;
}

int ddx_canvas_text(ddx_canvas *c, int x, int y, int scale, const char *text, const uint8_t rgb[3]) {
    // Each quad is 4 vertices of 16 bytes (x, y, z floats and a colour); the font's rectangles
    // are axis-aligned, so vertices 0 and 2 are opposite corners.
    static char vb[64 * 1024];
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    unsigned char col[4] = {255, 255, 255, 255};
    int quads = stb_easy_font_print(0, 0, buf, col, vb, sizeof vb);
    for (int q = 0; q < quads; q++) {
        const float *v0 = (const float *)(vb + (size_t)q * 64), *v2 = (const float *)(vb + (size_t)q * 64 + 32);
        fill(c, x + (int)v0[0] * scale, y + (int)v0[1] * scale, x + (int)v2[0] * scale, y + (int)v2[1] * scale, rgb);
    }
    return stb_easy_font_width(buf) * scale;
}

void ddx_canvas_grid(ddx_canvas *c, int x, int y, const uint8_t *img, int n, int h, int w, int ch, int cols, int zoom,
                     int gap) {
    for (int i = 0; i < n; i++) {
        int ox = x + (i % cols) * (w * zoom + gap), oy = y + (i / cols) * (h * zoom + gap);
        const uint8_t *im = img + (size_t)i * h * w * ch;
        for (int yy = 0; yy < h * zoom; yy++) {
            if (oy + yy < 0 || oy + yy >= c->h) continue;
            for (int xx = 0; xx < w * zoom; xx++) {
                if (ox + xx < 0 || ox + xx >= c->w) continue;
                const uint8_t *p = im + ((size_t)(yy / zoom) * w + xx / zoom) * ch;
                uint8_t *d = c->rgb + ((size_t)(oy + yy) * c->w + ox + xx) * 3;
                d[0] = p[0];
                d[1] = p[ch == 3 ? 1 : 0];
                d[2] = p[ch == 3 ? 2 : 0];
            }
        }
    }
}

static void sink(void *ctx, void *data, int size) {
    if (size > 0) ddx_atomic_write(ctx, data, (size_t)size);
}

ddx_status ddx_canvas_write_png(const ddx_canvas *c, const char *path, const char *what) {
    ddx_atomic_file a;
    DDX_TRY(ddx_atomic_open(&a, path, what));
    if (!stbi_write_png_to_func(sink, &a, c->w, c->h, 3, c->rgb, c->w * 3)) {
        ddx_atomic_abort(&a);
        return ddx_errorf(DDX_E_NOMEM, "%s: encoding the PNG failed (out of memory?)", path);
    }
    return ddx_atomic_commit(&a);
}
