// Line plots for the run report and the tools' figures: one layout (axes, "nice" ticks at 1-2-5
// steps, labels, a legend) drawn either into an RGB canvas (loss.png, ddx-compare's plot) or
// as inline SVG text (report.html). Non-finite points are left out of a series (a gap in the
// line, not a crash). The SVG keeps the plotted values next to the drawing: each series'
// <polyline> carries data-x / data-y with the values (%.9g), so a test or a reader can check
// that the drawing shows what was logged, and the points map back to them through the axes.
#ifndef DDX_EVAL_PLOT_H
#define DDX_EVAL_PLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "eval/canvas.h"
#include "runtime/json.h"
#include "runtime/status.h"

typedef struct ddx_plot_series {
    const char *name;       // legend text (also the SVG's data-series)
    const double *x, *y;    // n points; x ascending is not required
    int n;
    uint8_t rgb[3];
    bool thin;              // drawn 1 px wide and lighter (a raw series under its smoothed one)
} ddx_plot_series;

typedef struct ddx_plot {
    const char *title, *xlabel, *ylabel;   // ylabel: SVG only (the PNG's title names the quantity)
    int w, h;               // pixels (PNG) or SVG user units
    bool points;            // also mark each point (few points: FID over steps)
} ddx_plot;

// Axes of a plot: data range rounded out to whole ticks. Exposed for the tests, which map
// drawn coordinates back to values with the same numbers.
typedef struct ddx_plot_axes {
    double x0, x1, xstep, y0, y1, ystep;   // axis ranges and tick steps
    int left, top, right, bottom;          // plot area in pixels: [left, right] x [top, bottom]
} ddx_plot_axes;

// At most this many points per series are drawn: longer series are thinned to every k-th point
// (the last always kept), so a long run's report stays small.
#define DDX_PLOT_MAX_POINTS 2000

void ddx_plot_layout(const ddx_plot *p, const ddx_plot_series *s, int ns, ddx_plot_axes *ax);
// Pixel position of a value (doubles: the SVG keeps sub-pixel precision).
double ddx_plot_px(const ddx_plot_axes *ax, double x);
double ddx_plot_py(const ddx_plot_axes *ax, double y);

// Draws the plot with its top-left corner at (x0, y0) of c.
void ddx_plot_draw(const ddx_plot *p, const ddx_plot_series *s, int ns, ddx_canvas *c, int x0, int y0);
// A p->w x p->h PNG through the atomic writer (what: the file's name in messages).
ddx_status ddx_plot_png(const ddx_plot *p, const ddx_plot_series *s, int ns, const char *path, const char *what);
// Appends one <svg> element; text is HTML-escaped. Allocation failure is b->failed.
void ddx_plot_svg(const ddx_plot *p, const ddx_plot_series *s, int ns, ddx_json_buf *b);

// Appends s with &, <, >, " and ' escaped; bytes that are not valid UTF-8 or are control
// characters (other than tab and newline) become U+FFFD, so a hostile file cannot break the page.
void ddx_html_escape(ddx_json_buf *b, const char *s, size_t n);

#endif
