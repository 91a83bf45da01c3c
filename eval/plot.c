#include "eval/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Space for the tick labels left of and below the plot area, the title above it.
enum { MARGIN_L = 70, MARGIN_R = 16, MARGIN_T = 30, MARGIN_B = 40 };

// A tick step of 1, 2 or 5 x 10^k giving about `want` intervals over `range`.
static double nice_step(double range, int want) {
    double raw = range / want;
    double p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void axis(double lo, double hi, int want, double *a0, double *a1, double *step) {
    if (!(lo <= hi)) lo = 0, hi = 1;   // no finite point at all
    if (hi - lo <= fabs(hi) * 1e-12) {
        double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= d;
        hi += d;
    }
    *step = nice_step(hi - lo, want);
    *a0 = floor(lo / *step + 1e-9) * *step;
    *a1 = ceil(hi / *step - 1e-9) * *step;
}

// Every k-th point of a series, so at most DDX_PLOT_MAX_POINTS are drawn (the last always).
static int stride_of(int n) { return n > DDX_PLOT_MAX_POINTS ? (n + DDX_PLOT_MAX_POINTS - 2) / (DDX_PLOT_MAX_POINTS - 1) : 1; }
static bool drawn(int i, int n, int k) { return i % k == 0 || i == n - 1; }

void ddx_plot_layout(const ddx_plot *p, const ddx_plot_series *s, int ns, ddx_plot_axes *ax) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int j = 0; j < ns; j++)
        for (int i = 0; i < s[j].n; i++) {
            double x = s[j].x[i], y = s[j].y[i];
            // Beyond 1e300 the axis range itself would overflow: such points only clamp to the edge.
            if (!isfinite(x) || !isfinite(y) || fabs(x) > 1e300 || fabs(y) > 1e300) continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
        }
    axis(xlo, xhi, 6, &ax->x0, &ax->x1, &ax->xstep);
    axis(ylo, yhi, 5, &ax->y0, &ax->y1, &ax->ystep);
    ax->left = MARGIN_L;
    ax->top = MARGIN_T;
    ax->right = p->w - MARGIN_R;
    ax->bottom = p->h - MARGIN_B;
}

double ddx_plot_px(const ddx_plot_axes *ax, double x) {
    return ax->left + (x - ax->x0) / (ax->x1 - ax->x0) * (ax->right - ax->left);
}

double ddx_plot_py(const ddx_plot_axes *ax, double y) {
    return ax->bottom - (y - ax->y0) / (ax->y1 - ax->y0) * (ax->bottom - ax->top);
}

// Tick label: fixed-point with as many decimals as the 1-2-5 step needs ("0.0005", "250"), so
// neighbouring ticks always differ; %g only for very large or very small steps.
static void tick_label(double v, double step, char *buf, size_t n) {
    if (fabs(v) < step * 1e-6) v = 0;
    if (step >= 1e-5 && fabs(v) < 1e9) {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, n, "%.*f", dec, v);
    } else {
        snprintf(buf, n, "%.3g", v);
    }
}

// ---- raster ----------------------------------------------------------------------------------

static void put(ddx_canvas *c, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->rgb + ((size_t)y * c->w + x) * 3, rgb, 3);
}

static void rect(ddx_canvas *c, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put(c, x, y, rgb);
}

// Bresenham; thick lines add the pixel below and to the right.
static void line(ddx_canvas *c, int x0, int y0, int x1, int y1, bool thick, const uint8_t rgb[3]) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (int guard = 0; guard < 100000; guard++) {
        put(c, x0, y0, rgb);
        if (thick) put(c, x0 + 1, y0, rgb), put(c, x0, y0 + 1, rgb), put(c, x0 + 1, y0 + 1, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

// Pixel coordinates stay far inside int even for a wild value: clamp before converting.
static int clampi(double v) { return !(v >= -1e6) ? -1000000 : v > 1e6 ? 1000000 : (int)lround(v); }

void ddx_plot_draw(const ddx_plot *p, const ddx_plot_series *s, int ns, ddx_canvas *c, int x0, int y0) {
    static const uint8_t bg[3] = {255, 255, 255}, ink[3] = {40, 40, 40}, grid[3] = {225, 225, 225};
    ddx_plot_axes ax;
    ddx_plot_layout(p, s, ns, &ax);
    rect(c, x0, y0, x0 + p->w, y0 + p->h, bg);
    char lab[64];
    for (double v = ax.y0; v <= ax.y1 + ax.ystep * 1e-6; v += ax.ystep) {
        int y = y0 + clampi(ddx_plot_py(&ax, v));
        line(c, x0 + ax.left, y, x0 + ax.right, y, false, grid);
        tick_label(v, ax.ystep, lab, sizeof lab);
        ddx_canvas_text(c, x0 + ax.left - 6 - ddx_canvas_text_width(1, lab), y - 4, 1, lab, ink);
    }
    for (double v = ax.x0; v <= ax.x1 + ax.xstep * 1e-6; v += ax.xstep) {
        int x = x0 + clampi(ddx_plot_px(&ax, v));
        line(c, x, y0 + ax.top, x, y0 + ax.bottom, false, grid);
        tick_label(v, ax.xstep, lab, sizeof lab);
        ddx_canvas_text(c, x - ddx_canvas_text_width(1, lab) / 2, y0 + ax.bottom + 6, 1, lab, ink);
    }
    line(c, x0 + ax.left, y0 + ax.bottom, x0 + ax.right, y0 + ax.bottom, false, ink);
    line(c, x0 + ax.left, y0 + ax.top, x0 + ax.left, y0 + ax.bottom, false, ink);
    if (p->title) ddx_canvas_text(c, x0 + ax.left, y0 + 8, 2, p->title, ink);
    if (p->xlabel)
        ddx_canvas_text(c, x0 + (ax.left + ax.right - ddx_canvas_text_width(1, p->xlabel)) / 2, y0 + ax.bottom + 22, 1, p->xlabel,
                        ink);
    int lx = x0 + ax.right;
    for (int j = ns - 1; j >= 0; j--) {
        const char *name = s[j].name ? s[j].name : "";
        lx -= ddx_canvas_text_width(1, name) + 26;
        rect(c, lx, y0 + 12, lx + 14, y0 + 15, s[j].rgb);
        ddx_canvas_text(c, lx + 18, y0 + 9, 1, name, ink);
    }
    for (int j = 0; j < ns; j++) {
        const int k = stride_of(s[j].n);
        bool have = false;
        int px = 0, py = 0;
        for (int i = 0; i < s[j].n; i++) {
            if (!drawn(i, s[j].n, k)) continue;
            if (!isfinite(s[j].x[i]) || !isfinite(s[j].y[i])) {
                have = false;
                continue;
            }
            int x = x0 + clampi(ddx_plot_px(&ax, s[j].x[i])), y = y0 + clampi(ddx_plot_py(&ax, s[j].y[i]));
            if (have) line(c, px, py, x, y, !s[j].thin, s[j].rgb);
            if (p->points) rect(c, x - 2, y - 2, x + 3, y + 3, s[j].rgb);
            px = x, py = y, have = true;
        }
    }
}

ddx_status ddx_plot_png(const ddx_plot *p, const ddx_plot_series *s, int ns, const char *path, const char *what) {
    ddx_canvas c;
    DDX_TRY(ddx_canvas_init(&c, p->w, p->h, 255));
    ddx_plot_draw(p, s, ns, &c, 0, 0);
    ddx_status st = ddx_canvas_write_png(&c, path, what);
    ddx_canvas_free(&c);
    return st;
}

// ---- SVG -------------------------------------------------------------------------------------

void ddx_html_escape(ddx_json_buf *b, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        const char *rep = ch == '&' ? "&amp;" : ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '"' ? "&quot;" : ch == '\'' ? "&#39;" : NULL;
        if (rep) {
            ddx_json_buf_append(b, rep, strlen(rep));
            i++;
            continue;
        }
        if (ch < 0x80) {
            if (ch < 0x20 && ch != '\n' && ch != '\t') ddx_json_buf_append(b, "\xEF\xBF\xBD", 3);
            else if (ch == 0x7f) ddx_json_buf_append(b, "\xEF\xBF\xBD", 3);
            else ddx_json_buf_append(b, s + i, 1);
            i++;
            continue;
        }
        size_t len = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC0 ? 2 : 1;
        if (len > 1 && i + len <= n && ddx_json_utf8_valid(s + i, len)) {
            ddx_json_buf_append(b, s + i, len);
            i += len;
        } else {
            ddx_json_buf_append(b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
}

static void esc(ddx_json_buf *b, const char *s) { ddx_html_escape(b, s, strlen(s)); }

// SVG coordinates: a wild value (a diverged loss of 1e308) maps to inf, which a browser rejects
// along with the whole polyline; clamped, it is a line off the edge.
static double cx(const ddx_plot_axes *ax, double x) {
    double v = ddx_plot_px(ax, x);
    return !(v >= -1e6) ? -1e6 : v > 1e6 ? 1e6 : v;
}
static double cy(const ddx_plot_axes *ax, double y) {
    double v = ddx_plot_py(ax, y);
    return !(v >= -1e6) ? -1e6 : v > 1e6 ? 1e6 : v;
}

static void hex(char *buf, const uint8_t rgb[3]) { snprintf(buf, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]); }

void ddx_plot_svg(const ddx_plot *p, const ddx_plot_series *s, int ns, ddx_json_buf *b) {
    ddx_plot_axes ax;
    ddx_plot_layout(p, s, ns, &ax);
    ddx_json_buf_printf(b,
                        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
                        "data-x0=\"%.9g\" data-x1=\"%.9g\" data-y0=\"%.9g\" data-y1=\"%.9g\" data-left=\"%d\" data-top=\"%d\" "
                        "data-right=\"%d\" data-bottom=\"%d\">\n",
                        p->w, p->h, p->w, p->h, ax.x0, ax.x1, ax.y0, ax.y1, ax.left, ax.top, ax.right, ax.bottom);
    ddx_json_buf_printf(b, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", p->w, p->h);
    if (p->title) {
        ddx_json_buf_printf(b, "<text x=\"%d\" y=\"20\" class=\"title\">", ax.left);
        esc(b, p->title);
        ddx_json_buf_printf(b, "</text>\n");
    }
    char lab[64];
    for (double v = ax.y0; v <= ax.y1 + ax.ystep * 1e-6; v += ax.ystep) {
        double y = ddx_plot_py(&ax, v);
        tick_label(v, ax.ystep, lab, sizeof lab);
        ddx_json_buf_printf(b,
                            "<line x1=\"%d\" x2=\"%d\" y1=\"%.2f\" y2=\"%.2f\" class=\"grid\"/>"
                            "<text x=\"%d\" y=\"%.2f\" class=\"ytick\">%s</text>\n",
                            ax.left, ax.right, y, y, ax.left - 6, y + 4, lab);
    }
    for (double v = ax.x0; v <= ax.x1 + ax.xstep * 1e-6; v += ax.xstep) {
        double x = ddx_plot_px(&ax, v);
        tick_label(v, ax.xstep, lab, sizeof lab);
        ddx_json_buf_printf(b,
                            "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%d\" y2=\"%d\" class=\"grid\"/>"
                            "<text x=\"%.2f\" y=\"%d\" class=\"xtick\">%s</text>\n",
                            x, x, ax.top, ax.bottom, x, ax.bottom + 16, lab);
    }
    ddx_json_buf_printf(b, "<path d=\"M%d %dV%dH%d\" class=\"axis\"/>\n", ax.left, ax.top, ax.bottom, ax.right);
    if (p->xlabel) {
        ddx_json_buf_printf(b, "<text x=\"%d\" y=\"%d\" class=\"xlabel\">", (ax.left + ax.right) / 2, ax.bottom + 34);
        esc(b, p->xlabel);
        ddx_json_buf_printf(b, "</text>\n");
    }
    if (p->ylabel) {
        ddx_json_buf_printf(b, "<text transform=\"translate(14 %d) rotate(-90)\" class=\"ylabel\">", (ax.top + ax.bottom) / 2);
        esc(b, p->ylabel);
        ddx_json_buf_printf(b, "</text>\n");
    }
    char col[8];
    for (int j = 0; j < ns; j++) {
        const int k = stride_of(s[j].n);
        hex(col, s[j].rgb);
        const char *name = s[j].name ? s[j].name : "";
        // One polyline per unbroken run of finite points; the values ride along in data-x/y.
        int i = 0;
        while (i < s[j].n) {
            while (i < s[j].n && (!drawn(i, s[j].n, k) || !isfinite(s[j].x[i]) || !isfinite(s[j].y[i]))) i++;
            if (i >= s[j].n) break;
            int end = i;
            while (end < s[j].n && (!drawn(end, s[j].n, k) || (isfinite(s[j].x[end]) && isfinite(s[j].y[end])))) end++;
            ddx_json_buf_printf(b, "<polyline class=\"series\" data-series=\"");
            esc(b, name);
            ddx_json_buf_printf(b, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"", col, s[j].thin ? "1" : "2");
            for (int q = i; q < end; q++)
                if (drawn(q, s[j].n, k))
                    ddx_json_buf_printf(b, "%s%.2f,%.2f", q == i ? "" : " ", cx(&ax, s[j].x[q]), cy(&ax, s[j].y[q]));
            ddx_json_buf_printf(b, "\" data-x=\"");
            for (int q = i; q < end; q++)
                if (drawn(q, s[j].n, k)) ddx_json_buf_printf(b, "%s%.9g", q == i ? "" : " ", s[j].x[q]);
            ddx_json_buf_printf(b, "\" data-y=\"");
            for (int q = i; q < end; q++)
                if (drawn(q, s[j].n, k)) ddx_json_buf_printf(b, "%s%.9g", q == i ? "" : " ", s[j].y[q]);
            ddx_json_buf_printf(b, "\"><title>");
            esc(b, name);
            ddx_json_buf_printf(b, "</title></polyline>\n");
            if (p->points)
                for (int q = i; q < end; q++)
                    if (drawn(q, s[j].n, k))
                        ddx_json_buf_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"><title>%.9g: %.6g</title></circle>\n",
                                            cx(&ax, s[j].x[q]), cy(&ax, s[j].y[q]), col, s[j].x[q], s[j].y[q]);
            i = end;
        }
    }
    double lx = ax.right;
    for (int j = ns - 1; j >= 0; j--) {
        const char *name = s[j].name ? s[j].name : "";
        lx -= 7.0 * (double)strlen(name) + 30;
        hex(col, s[j].rgb);
        ddx_json_buf_printf(b, "<rect x=\"%.1f\" y=\"12\" width=\"14\" height=\"3\" fill=\"%s\"/><text x=\"%.1f\" y=\"18\" class=\"legend\">",
                            lx, col, lx + 18);
        esc(b, name);
        ddx_json_buf_printf(b, "</text>\n");
    }
    ddx_json_buf_printf(b, "</svg>\n");
}
