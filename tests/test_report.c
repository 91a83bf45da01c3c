// The run report's pieces (eval/plot.h, eval/report.h):
//   - SVG plots: every polyline point maps back through the axes to the value it was drawn
//     from, and data-x/data-y hold the values; the raster plot puts the series colour at the
//     pixel of each point; non-finite points are gaps;
//   - HTML escaping of hostile text and bytes that are not UTF-8;
//   - log.jsonl read from the fixture run folder (tests/data/report_run): the known values,
//     and each malformed line (cut JSON, not JSON, not an object, no step, a cut last line, an
//     over-long line) skipped with its line number, never a failure;
//   - report.html from the fixture: the plots carry the logged values, the skipped lines are
//     named, the config is escaped, the sample grids are embedded; a folder or a FIFO as the
//     output is refused with nothing written.
// test_report --nonblank FILE.png [R G B]: exit 0 when 1% or more of the PNG's pixels differ from
// its top-left pixel (and, given R G B, 20 or more are near that colour): tests/test_report_browser.sh
// checks chromium's screenshot with it.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h>

#include "eval/plot.h"
#include "eval/report.h"
#include "runtime/outfile.h"
#include "tests/check.h"

static const char *FIX = "data/report_run";

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    size_t got = b ? fread(b, 1, (size_t)sz, f) : 0;
    fclose(f);
    if (b) b[got] = 0;
    if (n) *n = got;
    return b;
}

// With rgb: also at least 20 pixels within 12 levels of that colour (a plotted line rendered).
static int nonblank_rgb(const char *path, const int *rgb) {
    int w, h, ch;
    unsigned char *px = stbi_load(path, &w, &h, &ch, 3);
    if (!px) {
        printf("%s: not a readable PNG\n", path);
        return 1;
    }
    // The most common colour is the background; the page must have something else on it.
    size_t n = (size_t)w * h, other = 0;
    size_t near = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(px + 3 * i, px, 3)) other++;
        if (rgb && abs(px[3 * i] - rgb[0]) <= 12 && abs(px[3 * i + 1] - rgb[1]) <= 12 && abs(px[3 * i + 2] - rgb[2]) <= 12) near++;
    }
    stbi_image_free(px);
    printf("%s: %dx%d, %.1f%% of the pixels differ from the top-left one", path, w, h, 100.0 * (double)other / (double)n);
    if (rgb) printf(", %zu pixels of colour %d,%d,%d", near, rgb[0], rgb[1], rgb[2]);
    printf("\n");
    return other * 100 >= n && (!rgb || near >= 20) ? 0 : 1;
}

static int nonblank(const char *path) { return nonblank_rgb(path, NULL); }

// Parses "a,b a,b ..." after `attr="` in s; returns the count (at most cap).
static int parse_pairs(const char *s, const char *attr, double *x, double *y, int cap) {
    const char *p = strstr(s, attr);
    if (!p) return 0;
    p += strlen(attr);
    int n = 0;
    while (n < cap && *p && *p != '"') {
        char *e;
        x[n] = strtod(p, &e);
        if (*e != ',') break;
        y[n] = strtod(e + 1, &e);
        n++;
        p = e;
        while (*p == ' ') p++;
    }
    return n;
}

static int parse_list(const char *s, const char *attr, double *v, int cap) {
    const char *p = strstr(s, attr);
    if (!p) return 0;
    p += strlen(attr);
    int n = 0;
    while (n < cap && *p && *p != '"') {
        char *e;
        v[n++] = strtod(p, &e);
        if (e == p) return -1;
        p = e;
        while (*p == ' ') p++;
    }
    return n;
}

static double attr_num(const char *s, const char *attr) {
    const char *p = strstr(s, attr);
    return p ? strtod(p + strlen(attr), NULL) : NAN;
}

static void test_svg(void) {
    const double x[] = {0, 10, 20, 30, 40, 50}, y[] = {2.5, 1.0, NAN, 0.5, 0.25, 0.125};
    ddx_plot_series s = {.name = "a<b", .x = x, .y = y, .n = 6, .rgb = {10, 20, 30}};
    const ddx_plot p = {.title = "t & t", .xlabel = "step", .ylabel = "loss", .w = 400, .h = 300};
    ddx_json_buf b = {0};
    ddx_plot_svg(&p, &s, 1, &b);
    CHECK(!b.failed && b.data, "svg built");
    if (b.failed || !b.data) return;
    CHECK(strstr(b.data, "t &amp; t") && strstr(b.data, "data-series=\"a&lt;b\"") && !strstr(b.data, "a<b"), "svg text escaped");
    ddx_plot_axes ax;
    ddx_plot_layout(&p, &s, 1, &ax);
    CHECK(ax.y0 <= 0.125 && ax.y1 >= 2.5 && ax.x0 <= 0 && ax.x1 >= 50, "axes cover the data: y [%g, %g] x [%g, %g]", ax.y0, ax.y1,
          ax.x0, ax.x1);
    CHECK(attr_num(b.data, "data-y0=\"") == ax.y0 && attr_num(b.data, "data-y1=\"") == ax.y1, "svg records its axes");
    // The NaN splits the series into two polylines: points 0-1 and 3-5.
    const char *l1 = strstr(b.data, "<polyline"), *l2 = l1 ? strstr(l1 + 1, "<polyline") : NULL;
    CHECK(l1 && l2 && !strstr(l2 + 1, "<polyline"), "a non-finite point makes a gap (two polylines)");
    if (!l1 || !l2) return;
    double px[8], py[8], dx[8], dy[8];
    const int idx1[] = {0, 1}, idx2[] = {3, 4, 5};
    const struct {
        const char *at;
        const int *idx;
        int n;
    } runs[] = {{l1, idx1, 2}, {l2, idx2, 3}};
    for (int r = 0; r < 2; r++) {
        int n = parse_pairs(runs[r].at, "points=\"", px, py, 8);
        int nx = parse_list(runs[r].at, "data-x=\"", dx, 8), ny = parse_list(runs[r].at, "data-y=\"", dy, 8);
        CHECK(n == runs[r].n && nx == n && ny == n, "polyline %d: %d points, %d x, %d y (want %d)", r, n, nx, ny, runs[r].n);
        for (int i = 0; i < n && i < runs[r].n; i++) {
            const int k = runs[r].idx[i];
            // Back through the axes: pixels to values, within the 0.01 px the SVG is written with.
            double vx = ax.x0 + (px[i] - ax.left) / (ax.right - ax.left) * (ax.x1 - ax.x0);
            double vy = ax.y0 + (ax.bottom - py[i]) / (ax.bottom - ax.top) * (ax.y1 - ax.y0);
            CHECK(fabs(vx - x[k]) <= 0.01 * (ax.x1 - ax.x0) / (ax.right - ax.left) &&
                      fabs(vy - y[k]) <= 0.01 * (ax.y1 - ax.y0) / (ax.bottom - ax.top),
                  "point %d drawn at (%g, %g) reads back (%g, %g), want (%g, %g)", k, px[i], py[i], vx, vy, x[k], y[k]);
            CHECK(dx[i] == x[k] && dy[i] == y[k], "data-x/y of point %d: (%g, %g) want (%g, %g)", k, dx[i], dy[i], x[k], y[k]);
        }
    }
    ddx_json_buf_free(&b);

    // A long series is thinned to DDX_PLOT_MAX_POINTS (the last point kept).
    enum { N = 10007 };
    double *lx = malloc(N * sizeof *lx), *ly = malloc(N * sizeof *ly);
    for (int i = 0; i < N; i++) lx[i] = i, ly[i] = sin(i * 0.01);
    ddx_plot_series ls = {.name = "long", .x = lx, .y = ly, .n = N};
    ddx_json_buf lb = {0};
    ddx_plot_svg(&p, &ls, 1, &lb);
    double *v = malloc(N * sizeof *v);
    int nv = parse_list(lb.data, "data-x=\"", v, N);
    CHECK(nv > 1000 && nv <= DDX_PLOT_MAX_POINTS && v[nv - 1] == N - 1, "long series: %d points drawn, last x %g", nv,
          nv > 0 ? v[nv - 1] : -1.0);
    free(v);
    free(lx);
    free(ly);
    ddx_json_buf_free(&lb);
}

// A diverged run's values (1e308, -1e308, a lone point) still give a plot: finite axes, no crash.
static void test_extreme(void) {
    const double x[] = {0, 1, 2, 3}, y[] = {1.0, 1e308, -1e308, 2.0}, x1[] = {5}, y1[] = {7};
    ddx_plot_series s[2] = {{.name = "wild", .x = x, .y = y, .n = 4}, {.name = "one", .x = x1, .y = y1, .n = 1}};
    const ddx_plot p = {.title = "extreme", .w = 300, .h = 200, .points = true};
    ddx_plot_axes ax;
    ddx_plot_layout(&p, s, 2, &ax);
    CHECK(isfinite(ax.y0) && isfinite(ax.y1) && ax.y0 <= 1 && ax.y1 >= 7 && ax.x1 >= 5, "extreme values: axes y [%g, %g]", ax.y0,
          ax.y1);
    ddx_canvas c;
    if (!ddx_canvas_init(&c, p.w, p.h, 0)) {
        ddx_plot_draw(&p, s, 2, &c, 0, 0);
        ddx_canvas_free(&c);
    }
    ddx_json_buf b = {0};
    ddx_plot_svg(&p, s, 2, &b);
    CHECK(b.data && !strstr(b.data, "nan") && !strstr(b.data, "inf"), "extreme values: the SVG has no nan/inf coordinates");
    ddx_json_buf_free(&b);
}

static void test_raster(void) {
    const double x[] = {0, 100, 200, 300}, y[] = {4, 3, 1, 2};
    ddx_plot_series s = {.name = "s", .x = x, .y = y, .n = 4, .rgb = {200, 10, 10}};
    const ddx_plot p = {.title = "raster", .xlabel = "step", .w = 420, .h = 260, .points = true};
    ddx_canvas c;
    CHECK(!ddx_canvas_init(&c, p.w, p.h, 0), "canvas");
    ddx_plot_draw(&p, &s, 1, &c, 0, 0);
    ddx_plot_axes ax;
    ddx_plot_layout(&p, &s, 1, &ax);
    for (int i = 0; i < 4; i++) {
        int xx = (int)lround(ddx_plot_px(&ax, x[i])), yy = (int)lround(ddx_plot_py(&ax, y[i]));
        const uint8_t *q = c.rgb + ((size_t)yy * c.w + xx) * 3;
        CHECK(q[0] == 200 && q[1] == 10 && q[2] == 10, "point %d at pixel (%d, %d) has the series colour (got %d %d %d)", i, xx, yy,
              q[0], q[1], q[2]);
    }
    // Far from every point and line (the plot area's top-right corner region above y=4 at x=300
    // is above the line from (200,1) to (300,2)): background or grid, never the series colour.
    int xx = (int)lround(ddx_plot_px(&ax, 290)), yy = (int)lround(ddx_plot_py(&ax, 3.9));
    const uint8_t *q = c.rgb + ((size_t)yy * c.w + xx) * 3;
    CHECK(!(q[0] == 200 && q[1] == 10), "no series colour away from the line");
    ddx_canvas_free(&c);
}

static void test_escape(void) {
    ddx_json_buf b = {0};
    const char in[] = "<a href='x'>\"&\x01\xff\xc3\xa9\n";
    ddx_html_escape(&b, in, sizeof in - 1);
    CHECK(b.data && !strcmp(b.data, "&lt;a href=&#39;x&#39;&gt;&quot;&amp;\xEF\xBF\xBD\xEF\xBF\xBD\xc3\xa9\n"), "escaped: %s",
          b.data ? b.data : "(null)");
    ddx_json_buf_free(&b);
}

static void test_log(const char *tmp) {
    char path[512];
    snprintf(path, sizeof path, "%s/log.jsonl", FIX);
    ddx_runlog log;
    ddx_status st = ddx_runlog_read(path, &log);
    CHECK(!st, "fixture log read: %s", st ? ddx_last_error() : "");
    if (st) return;
    const double steps[] = {10, 20, 30, 40, 50, 60}, loss[] = {1.25, 0.75, 0.5, 0.375, 0.3125, 0.25},
                 gn[] = {3.5, 2.25, 1.75, 1.5, 1.25, 1.0}, ips[] = {40.5, 42.25, 44.0, 43.5, 45.75, 46.0};
    CHECK(log.n == 6 && log.nf == 2 && log.lines == 13, "6 training lines, 2 FID lines, 13 lines (got %lld, %lld, %lld)",
          (long long)log.n, (long long)log.nf, (long long)log.lines);
    for (int i = 0; i < 6 && i < log.n; i++)
        CHECK(log.step[i] == steps[i] && log.loss[i] == loss[i] && log.grad_norm[i] == gn[i] && log.img_per_s[i] == ips[i],
              "line %d values", i);
    if (log.nf == 2) CHECK(log.fstep[1] == 60 && log.fid[1] == 98.25 && log.kid[1] == 0.046875, "FID line values");
    // Debiased EMA: the first smoothed value is the first value.
    if (log.n >= 2)
        CHECK(log.loss_smooth[0] == 1.25 &&
                  fabs(log.loss_smooth[1] - (0.6 * 0.4 * 1.25 + 0.4 * 0.75) / (0.6 * 0.4 + 0.4)) < 1e-12,
              "smoothed loss %g %g", log.loss_smooth[0], log.loss_smooth[1]);
    const int64_t want[] = {3, 5, 7, 8, 13};
    CHECK(log.nskip == 5, "5 lines skipped (got %lld)", (long long)log.nskip);
    for (int i = 0; i < 5 && i < log.nskip; i++) CHECK(log.skip[i].line == want[i], "skip %d is line %lld", i, (long long)log.skip[i].line);
    if (log.nskip == 5) CHECK(strstr(log.skip[4].why, "cut short") != NULL, "the cut last line says so: %s", log.skip[4].why);
    ddx_runlog_free(&log);

    // An over-long line (and binary junk) is skipped too; the lines after it are read.
    snprintf(path, sizeof path, "%s/long.jsonl", tmp);
    FILE *f = fopen(path, "wb");
    fprintf(f, "{\"step\":1,\"loss\":2}\n{\"step\":2,\"x\":\"");
    for (int i = 0; i < DDX_REPORT_MAX_LINE + 100; i++) fputc('a', f);
    fputs("\"}\n", f);
    fwrite("\x00\xff\xfe\n", 1, 4, f);
    fputs("{\"step\":3,\"loss\":1}\n", f);
    fclose(f);
    st = ddx_runlog_read(path, &log);
    CHECK(!st && log.n == 2 && log.nskip == 2 && log.skip[0].line == 2 && strstr(log.skip[0].why, "longer") && log.skip[1].line == 3,
          "over-long line 2 and junk line 3 skipped (n %lld, skipped %lld)", (long long)log.n, (long long)log.nskip);
    if (!st) ddx_runlog_free(&log);

    snprintf(path, sizeof path, "%s/absent.jsonl", tmp);
    st = ddx_runlog_read(path, &log);
    CHECK(!st && log.missing && log.n == 0, "a missing log is no error");
    if (!st) ddx_runlog_free(&log);
    // A folder in the log's place is refused (one line), not read.
    st = ddx_runlog_read(tmp, &log);
    CHECK(st == DDX_E_INPUT, "a folder as the log: input error (got %d)", st);
}

static void test_report(const char *tmp) {
    char out[512];
    snprintf(out, sizeof out, "%s/report.html", tmp);
    int64_t skipped = -1;
    ddx_status st = ddx_report_write(FIX, out, &skipped);
    CHECK(!st, "report of the fixture: %s", st ? ddx_last_error() : "");
    if (st) return;
    CHECK(skipped == 5, "5 skipped lines reported (got %lld)", (long long)skipped);
    size_t n;
    char *h = read_all(out, &n);
    CHECK(h != NULL, "report readable");
    if (!h) return;
    for (int ln = 3; ln <= 13; ln += 1) {
        char want[64];
        snprintf(want, sizeof want, "<li>log.jsonl line %d:", ln);
        const bool bad = ln == 3 || ln == 5 || ln == 7 || ln == 8 || ln == 13;
        CHECK((strstr(h, want) != NULL) == bad, "line %d %s listed as skipped", ln, bad ? "is" : "is not");
    }
    CHECK(strstr(h, "data-y=\"1.25 0.75 0.5 0.375 0.3125 0.25\""), "the loss plot carries the logged losses");
    CHECK(strstr(h, "data-y=\"3.5 2.25 1.75 1.5 1.25 1\""), "the grad-norm plot carries the logged norms");
    CHECK(strstr(h, "data-y=\"40.5 42.25 44 43.5 45.75 46\""), "the img/s plot carries the logged throughput");
    CHECK(strstr(h, "data-y=\"123.5 98.25\"") && strstr(h, "data-y=\"0.0625 0.046875\""), "FID and KID plots");
    CHECK(strstr(h, "&lt;script&gt;document.title=&quot;escaped?&quot;&lt;/script&gt; &amp; &quot;quotes&quot; &#39;single&#39;") &&
              !strstr(h, "<script>document.title"),
          "the config is escaped");
    CHECK(strstr(h, "gcc &lt;fixture&gt; &amp; co"), "run_info.json shown, escaped");
    const char *a = strstr(h, "data:image/png;base64,iVBORw0KGgo"), *b = a ? strstr(a + 1, "data:image/png;base64,iVBORw0KGgo") : NULL;
    CHECK(a && b && strstr(h, "step 20</figcaption>") && strstr(h, "step 60</figcaption>") && strstr(h, "step 20</figcaption>") < strstr(h, "step 60</figcaption>"),
          "both sample grids embedded, in step order");
    free(h);

    // loss.png of the fixture decodes and is not blank.
    snprintf(out, sizeof out, "%s/loss.png", tmp);
    ddx_runlog log;
    char lp[512];
    snprintf(lp, sizeof lp, "%s/log.jsonl", FIX);
    st = ddx_runlog_read(lp, &log);
    if (!st) st = ddx_report_loss_png(FIX, &log, out);
    if (!st) ddx_runlog_free(&log);
    CHECK(!st && nonblank(out) == 0, "loss.png written and not blank");

    // Output refused: a folder, a FIFO; nothing created, nothing replaced.
    snprintf(out, sizeof out, "%s/dir.html", tmp);
    mkdir(out, 0755);
    st = ddx_report_write(FIX, out, NULL);
    struct stat sb;
    CHECK(st == DDX_E_INPUT && stat(out, &sb) == 0 && S_ISDIR(sb.st_mode), "a folder as the report: refused, left alone");
    snprintf(out, sizeof out, "%s/fifo.html", tmp);
    if (mkfifo(out, 0644) == 0) {
        st = ddx_report_write(FIX, out, NULL);
        CHECK(st == DDX_E_INPUT && stat(out, &sb) == 0 && S_ISFIFO(sb.st_mode), "a FIFO as the report: refused, left alone");
    }
    // A folder with no log, no config, no samples: a page that says so.
    char empty[512];
    snprintf(empty, sizeof empty, "%s/empty", tmp);
    mkdir(empty, 0755);
    snprintf(out, sizeof out, "%s/empty.html", tmp);
    st = ddx_report_write(empty, out, NULL);
    h = !st ? read_all(out, NULL) : NULL;
    CHECK(h && strstr(h, "no log.jsonl") && strstr(h, "no readable config.yaml") && strstr(h, "no sample grids"),
          "an empty folder gives a page saying what is missing");
    free(h);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--nonblank")) return nonblank(argv[2]);
    if (argc == 6 && !strcmp(argv[1], "--nonblank")) {
        const int rgb[3] = {atoi(argv[3]), atoi(argv[4]), atoi(argv[5])};
        return nonblank_rgb(argv[2], rgb);
    }
    char tmp[] = "/tmp/ddx_test_report_XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_svg();
    test_raster();
    test_extreme();
    test_escape();
    test_log(tmp);
    test_report(tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmp);
    return ddx_test_finish("report");
}
