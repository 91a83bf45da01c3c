// An RGB8 canvas for the comparison figure: grids of samples and text labels (stb_easy_font's
// line font, drawn as filled rectangles at an integer scale), written as a PNG through the
// atomic writer.
#ifndef DDX_EVAL_CANVAS_H
#define DDX_EVAL_CANVAS_H

#include <stdint.h>

#include "runtime/status.h"

typedef struct ddx_canvas {
    int w, h;
    uint8_t *rgb;   // [h, w, 3]
} ddx_canvas;

ddx_status ddx_canvas_init(ddx_canvas *c, int w, int h, uint8_t grey);
void ddx_canvas_free(ddx_canvas *c);
// Text with its top-left at (x, y), each font pixel a scale x scale square; returns the width drawn.
int ddx_canvas_text(ddx_canvas *c, int x, int y, int scale, const char *text, const uint8_t rgb[3]);
// Width `text` takes at `scale`, without drawing it (for right-aligned and centred labels).
int ddx_canvas_text_width(int scale, const char *text);
// Height of one text line at `scale`.
int ddx_canvas_line_height(int scale);
// n images of u8 [h, w, ch] (ch 1 or 3), each magnified zoom times, in `cols` columns with a
// `gap`-pixel gap, top-left at (x, y).
void ddx_canvas_grid(ddx_canvas *c, int x, int y, const uint8_t *img, int n, int h, int w, int ch, int cols, int zoom, int gap);
ddx_status ddx_canvas_write_png(const ddx_canvas *c, const char *path, const char *what);

#endif
