#include "eval/report.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eval/plot.h"
#include "runtime/json.h"
#include "runtime/outfile.h"

// ---- log.jsonl -------------------------------------------------------------------------------

static bool grow(double **a, int64_t n, int64_t *cap, int64_t want) {
    (void)n;
    if (want <= *cap) return true;
    double *p = realloc(*a, (size_t)want * sizeof *p);
    if (!p) return false;
    *a = p;
    return true;
}

static void skip(ddx_runlog *log, int64_t line, const char *fmt, const char *arg) {
    if (log->nskip < DDX_REPORT_MAX_SKIPS_LISTED) {
        ddx_runlog_skip *s = &log->skip[log->nskip];
        s->line = line;
        snprintf(s->why, sizeof s->why, fmt, arg);
    }
    log->nskip++;
}

static double num(const ddx_json *o, const char *key) {
    const ddx_json *v = ddx_json_get(o, key);
    return v && v->type == DDX_JSON_NUMBER ? ddx_json_number(v) : NAN;
}

void ddx_runlog_free(ddx_runlog *log) {
    double **arrays[] = {&log->step, &log->loss, &log->loss_smooth, &log->last_loss, &log->grad_norm, &log->lr,
                         &log->img_per_s, &log->elapsed_s, &log->fstep, &log->fid, &log->kid};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        free(*arrays[i]);
        *arrays[i] = NULL;
    }
    free(log->skip);
    memset(log, 0, sizeof *log);
}

static ddx_status nomem(ddx_runlog *log) {
    ddx_runlog_free(log);
    return ddx_errorf(DDX_E_NOMEM, "out of memory reading the log");
}

ddx_status ddx_runlog_read(const char *path, ddx_runlog *log) {
    memset(log, 0, sizeof *log);
    int fd;
    ddx_status st = ddx_input_open(path, "log.jsonl", &fd, NULL);
    if (st) {
        if (access(path, F_OK) != 0 && errno == ENOENT) {
            log->missing = true;
            return DDX_OK;
        }
        return st;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return ddx_errorf(DDX_E_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    log->skip = calloc(DDX_REPORT_MAX_SKIPS_LISTED, sizeof *log->skip);
    char *buf = malloc(DDX_REPORT_MAX_LINE + 2);
    if (!log->skip || !buf) {
        free(buf);
        fclose(f);
        return nomem(log);
    }
    int64_t cap = 0, fcap = 0;
    while (fgets(buf, DDX_REPORT_MAX_LINE + 2, f)) {
        size_t len = strlen(buf);
        bool nl = len > 0 && buf[len - 1] == '\n';
        if (log->lines >= DDX_REPORT_MAX_LINES) {
            log->capped = true;
            continue;   // counted as "more", not read
        }
        const int64_t ln = ++log->lines;
        if (!nl && len == DDX_REPORT_MAX_LINE + 1) {
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n') {}
            skip(log, ln, "longer than %s bytes", "65536");
            continue;
        }
        if (len == 0 || (len == 1 && nl)) {
            skip(log, ln, "%sempty line", "");
            continue;
        }
        ddx_json o;
        if (ddx_json_parse(buf, len, "line", &o)) {
            skip(log, ln, "%s", nl ? "not valid JSON" : "not valid JSON (the last line, cut short: a run still writing or killed?)");
            continue;
        }
        const ddx_json *step = ddx_json_get(&o, "step");
        if (o.type != DDX_JSON_OBJECT) {
            skip(log, ln, "%snot a JSON object", "");
        } else if (!step || step->type != DDX_JSON_NUMBER || !isfinite(ddx_json_number(step))) {
            skip(log, ln, "%sno numeric \"step\"", "");
        } else if (ddx_json_get(&o, "loss")) {
            if (log->n == cap) {
                int64_t nc = cap ? 2 * cap : 256;
                double **arr[] = {&log->step, &log->loss, &log->loss_smooth, &log->last_loss, &log->grad_norm, &log->lr,
                                  &log->img_per_s, &log->elapsed_s};
                for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++)
                    if (!grow(arr[i], log->n, &cap, nc)) {
                        ddx_json_free(&o);
                        free(buf);
                        fclose(f);
                        return nomem(log);
                    }
                cap = nc;
            }
            const int64_t i = log->n++;
            log->step[i] = ddx_json_number(step);
            log->loss[i] = num(&o, "loss");
            log->last_loss[i] = num(&o, "last_loss");
            log->grad_norm[i] = num(&o, "grad_norm");
            log->lr[i] = num(&o, "lr");
            log->img_per_s[i] = num(&o, "img_per_s");
            log->elapsed_s[i] = num(&o, "elapsed_s");
        } else if (ddx_json_get(&o, "fid")) {
            if (log->nf == fcap) {
                int64_t nc = fcap ? 2 * fcap : 64;
                double **arr[] = {&log->fstep, &log->fid, &log->kid};
                for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++)
                    if (!grow(arr[i], log->nf, &fcap, nc)) {
                        ddx_json_free(&o);
                        free(buf);
                        fclose(f);
                        return nomem(log);
                    }
                fcap = nc;
            }
            const int64_t i = log->nf++;
            log->fstep[i] = ddx_json_number(step);
            log->fid[i] = num(&o, "fid");
            log->kid[i] = num(&o, "kid");
        } else {
            log->other++;
        }
        ddx_json_free(&o);
    }
    bool bad = ferror(f);
    free(buf);
    fclose(f);
    if (bad) {
        ddx_runlog_free(log);
        return ddx_errorf(DDX_E_IO, "%s: read error", path);
    }
    // Debiased EMA (TensorBoard's smoothing): the first points are not pulled towards 0.
    double acc = 0, wsum = 0;
    for (int64_t i = 0; i < log->n; i++) {
        if (!isfinite(log->loss[i])) {
            log->loss_smooth[i] = NAN;
            continue;
        }
        acc = DDX_REPORT_SMOOTHING * acc + (1 - DDX_REPORT_SMOOTHING) * log->loss[i];
        wsum = DDX_REPORT_SMOOTHING * wsum + (1 - DDX_REPORT_SMOOTHING);
        log->loss_smooth[i] = acc / wsum;
    }
    return DDX_OK;
}

// ---- plots -----------------------------------------------------------------------------------

static const uint8_t BLUE[3] = {31, 119, 180}, LIGHT[3] = {160, 196, 226}, ORANGE[3] = {230, 120, 20}, GREEN[3] = {44, 160, 44},
                     RED[3] = {214, 39, 40}, PURPLE[3] = {148, 103, 189};

static int loss_series(const ddx_runlog *log, ddx_plot_series s[2]) {
    s[0] = (ddx_plot_series){.name = "loss (logged mean)", .x = log->step, .y = log->loss, .n = (int)log->n, .thin = true};
    memcpy(s[0].rgb, LIGHT, 3);
    s[1] = (ddx_plot_series){.name = "smoothed (EMA 0.6)", .x = log->step, .y = log->loss_smooth, .n = (int)log->n};
    memcpy(s[1].rgb, BLUE, 3);
    return 2;
}

ddx_status ddx_report_loss_png(const char *run_dir, const ddx_runlog *log, const char *out) {
    char path[PATH_MAX];
    if (!out) {
        snprintf(path, sizeof path, "%s/loss.png", run_dir);
        out = path;
    }
    ddx_plot_series s[2];
    int ns = loss_series(log, s);
    const ddx_plot p = {.title = "training loss", .xlabel = "step", .ylabel = "loss", .w = 640, .h = 360};
    return ddx_plot_png(&p, s, ns, out, "loss.png");
}

// ---- the page --------------------------------------------------------------------------------

// Whole small file (at most cap bytes, *cut set when it had more). NULL when absent or refused.
static char *slurp(const char *path, const char *what, size_t cap, size_t *n, bool *cut) {
    int fd;
    int64_t size = 0;
    *n = 0;
    *cut = false;
    if (ddx_input_open(path, what, &fd, &size)) return NULL;
    size_t want = size < 0 ? 0 : (size_t)size > cap ? cap : (size_t)size;
    *cut = (size_t)size > cap;
    char *buf = malloc(want + 1);
    size_t got = 0;
    while (buf && got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (buf) buf[got] = 0;
    *n = got;
    return buf;
}

static void text(ddx_json_buf *b, const char *s) { ddx_html_escape(b, s, strlen(s)); }

static void base64(ddx_json_buf *b, const unsigned char *d, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        q[0] = A[v >> 18 & 63], q[1] = A[v >> 12 & 63];
        q[2] = i + 1 < n ? A[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? A[v & 63] : '=';
        ddx_json_buf_append(b, q, 4);
    }
}

typedef struct sample_png {
    long long step;
    char name[64];
} sample_png;

static int cmp_sample(const void *a, const void *b) {
    long long x = ((const sample_png *)a)->step, y = ((const sample_png *)b)->step;
    return (x > y) - (x < y);
}

// samples/step_N.png, ordered by N; at most `max` (the latest kept).
static int list_samples(const char *dir, sample_png **out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    sample_png *v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        int used = 0;
        if (strlen(e->d_name) >= sizeof v->name || ddx_atomic_is_temp_name(e->d_name)) continue;
        if (sscanf(e->d_name, "step_%lld.png%n", &s, &used) != 1 || used != (int)strlen(e->d_name) || s < 0) continue;
        if (n == cap) {
            int nc = cap ? 2 * cap : 16;
            if (nc > 100000) break;
            sample_png *p = realloc(v, (size_t)nc * sizeof *p);
            if (!p) break;
            v = p, cap = nc;
        }
        v[n].step = s;
        snprintf(v[n].name, sizeof v[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_sample);
    *out = v;
    return n;
}

static const char CSS[] =
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left;font-size:14px}"
    "pre{background:#fff;border:1px solid #ddd;padding:8px;font-size:12px;max-height:480px;overflow:auto}"
    ".plots{display:flex;flex-wrap:wrap;gap:12px}.plotbox{position:relative}"
    "svg.plot{border:1px solid #ddd}svg.plot text{font-size:11px;fill:#333}"
    "svg.plot .title{font-size:14px;font-weight:bold}svg.plot .ytick{text-anchor:end}svg.plot .xtick,svg.plot .xlabel,svg.plot .ylabel{text-anchor:middle}"
    "svg.plot .grid{stroke:#e4e4e4}svg.plot .axis{stroke:#333;fill:none}"
    ".readout{position:absolute;right:20px;bottom:44px;font-size:12px;background:#ffffffd0;padding:1px 4px}.readout:empty{display:none}"
    ".timeline{display:flex;flex-wrap:wrap;gap:16px}.timeline figure{margin:0}.timeline img{image-rendering:pixelated;width:256px;border:1px solid #ccc}"
    ".warn{color:#a40}";

// Hover readout: the nearest logged point of each series under the mouse, from data-x/data-y.
static const char JS[] =
    "document.querySelectorAll('svg.plot').forEach(function(svg){"
    "var box=svg.parentNode,ro=box.querySelector('.readout');if(!ro)return;"
    "var d=svg.dataset,x0=+d.x0,x1=+d.x1,L=+d.left,R=+d.right;"
    "var lines=Array.prototype.map.call(svg.querySelectorAll('polyline.series'),function(p){"
    "return{n:p.dataset.series,x:p.dataset.x.split(' ').map(Number),y:p.dataset.y.split(' ').map(Number)};});"
    "svg.addEventListener('mousemove',function(ev){var r=svg.getBoundingClientRect();"
    "var px=(ev.clientX-r.left)*svg.viewBox.baseVal.width/r.width,xv=x0+(px-L)/(R-L)*(x1-x0),out=[];"
    "lines.forEach(function(s){var bi=-1,bd=Infinity;s.x.forEach(function(v,i){var dd=Math.abs(v-xv);if(dd<bd){bd=dd;bi=i;}});"
    "if(bi>=0)out.push(s.n+' @ '+s.x[bi]+': '+s.y[bi].toPrecision(5));});ro.textContent=out.join(' | ');});});"
    // Set last, so a page whose script stopped early lacks it (tests/test_report_browser.sh).
    "document.body.setAttribute('data-plots-ready',document.querySelectorAll('svg.plot').length);";

static void plot(ddx_json_buf *b, const char *title, const char *ylabel, ddx_plot_series *s, int ns, bool points) {
    bool any = false;
    for (int j = 0; j < ns; j++)
        for (int i = 0; i < s[j].n && !any; i++) any = isfinite(s[j].y[i]) && isfinite(s[j].x[i]);
    if (!any) return;   // a key an older log did not have: no empty plot
    const ddx_plot p = {.title = title, .xlabel = "step", .ylabel = ylabel, .w = 560, .h = 320, .points = points};
    ddx_json_buf_printf(b, "<div class=\"plotbox\">");
    ddx_plot_svg(&p, s, ns, b);
    ddx_json_buf_printf(b, "<div class=\"readout\"></div></div>\n");
}

static void row(ddx_json_buf *b, const char *k, const char *v) {
    ddx_json_buf_printf(b, "<tr><th>");
    text(b, k);
    ddx_json_buf_printf(b, "</th><td>");
    text(b, v);
    ddx_json_buf_printf(b, "</td></tr>\n");
}

static void run_info(ddx_json_buf *b, const char *run_dir) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/run_info.json", run_dir);
    size_t n;
    bool cut;
    char *s = slurp(path, "run_info.json", 65536, &n, &cut);
    ddx_json o;
    if (!s || cut || ddx_json_parse(s, n, "run_info.json", &o)) {
        ddx_json_buf_printf(b, "<p class=\"warn\">%s</p>\n",
                            s ? "run_info.json is not valid JSON (or larger than 64 KiB); not shown"
                              : "not recorded: this run folder has no run_info.json (written by ddx-train since the run report; "
                                "the device is in the training output's \"device:\" line)");
        free(s);
        return;
    }
    free(s);
    ddx_json_buf_printf(b, "<table>\n");
    if (o.type == DDX_JSON_OBJECT)
        for (size_t i = 0; i < o.n; i++) {
            const ddx_json_member *m = &o.u.members[i];
            char v[512];
            if (m->value.type == DDX_JSON_STRING) snprintf(v, sizeof v, "%s", m->value.u.s);
            else if (m->value.type == DDX_JSON_NUMBER) snprintf(v, sizeof v, "%.10g", ddx_json_number(&m->value));
            else if (m->value.type == DDX_JSON_BOOL) snprintf(v, sizeof v, "%s", m->value.u.b ? "true" : "false");
            else continue;
            row(b, m->key, v);
        }
    ddx_json_buf_printf(b, "</table>\n");
    ddx_json_free(&o);
}

static void samples(ddx_json_buf *b, const char *run_dir) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/samples", run_dir);
    sample_png *v;
    int n = list_samples(dir, &v);
    if (!n) {
        ddx_json_buf_printf(b, "<p>no sample grids (samples/step_N.png) yet</p>\n");
        return;
    }
    size_t embedded = 0;
    int linked = 0;
    ddx_json_buf_printf(b, "<div class=\"timeline\">\n");
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX + 80];
        snprintf(path, sizeof path, "%s/%s", dir, v[i].name);
        size_t len = 0;
        bool cut = false;
        char *png = embedded < DDX_REPORT_EMBED_TOTAL ? slurp(path, "sample grid", DDX_REPORT_EMBED_ONE, &len, &cut) : NULL;
        ddx_json_buf_printf(b, "<figure><img alt=\"samples at step %lld\" src=\"", v[i].step);
        if (png && !cut && len > 8 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8) && embedded + len <= DDX_REPORT_EMBED_TOTAL) {
            ddx_json_buf_printf(b, "data:image/png;base64,");
            base64(b, (const unsigned char *)png, len);
            embedded += len;
        } else {
            ddx_json_buf_printf(b, "samples/%s", v[i].name);   // name is step_N.png: nothing to escape
            linked++;
        }
        free(png);
        ddx_json_buf_printf(b, "\"><figcaption>step %lld</figcaption></figure>\n", v[i].step);
    }
    ddx_json_buf_printf(b, "</div>\n");
    if (linked)
        ddx_json_buf_printf(b, "<p class=\"warn\">%d grid(s) linked as samples/step_N.png instead of embedded (over the %u MiB "
                               "embedding cap, or not a PNG): keep report.html next to samples/</p>\n",
                            linked, DDX_REPORT_EMBED_TOTAL >> 20);
    free(v);
}

static void fmt_time(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

ddx_status ddx_report_write(const char *run_dir, const char *out, int64_t *skipped) {
    char path[PATH_MAX], logp[PATH_MAX];
    if (!out) {
        snprintf(path, sizeof path, "%s/report.html", run_dir);
        out = path;
    }
    DDX_TRY(ddx_output_check(out, "report.html"));
    snprintf(logp, sizeof logp, "%s/log.jsonl", run_dir);
    ddx_runlog log;
    DDX_TRY(ddx_runlog_read(logp, &log));
    if (skipped) *skipped = log.nskip;
    ddx_json_buf b = {0};
    char when[64];
    fmt_time(when, sizeof when);
    const char *slash = strrchr(run_dir, '/');
    const char *name = slash && slash[1] ? slash + 1 : run_dir;
    ddx_json_buf_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ddx run ");
    text(&b, name);
    ddx_json_buf_printf(&b, "</title><style>%s</style></head><body>\n<h1>ddx run: ", CSS);
    text(&b, run_dir);
    ddx_json_buf_printf(&b, "</h1>\n<p>report written %s by ddx-report</p>\n", when);

    ddx_json_buf_printf(&b, "<h2>Summary</h2>\n<table id=\"summary\">\n");
    char v[128];
    if (log.missing) {
        row(&b, "log", "no log.jsonl in this folder");
    } else {
        snprintf(v, sizeof v, "%lld (%lld training, %lld evaluation, %lld other, %lld skipped)", (long long)log.lines,
                 (long long)log.n, (long long)log.nf, (long long)log.other, (long long)log.nskip);
        row(&b, "log lines", v);
    }
    if (log.n) {
        const int64_t i = log.n - 1;
        snprintf(v, sizeof v, "%.0f", log.step[i]);
        row(&b, "last step", v);
        snprintf(v, sizeof v, "%.6g", log.loss[i]);
        row(&b, "last logged loss", v);
        snprintf(v, sizeof v, "%.1f s", log.elapsed_s[i]);
        if (isfinite(log.elapsed_s[i])) row(&b, "training time", v);
    }
    if (log.nf) {
        snprintf(v, sizeof v, "%.4f at step %.0f", log.fid[log.nf - 1], log.fstep[log.nf - 1]);
        row(&b, "last FID", v);
    }
    ddx_json_buf_printf(&b, "</table>\n");
    if (log.capped)
        ddx_json_buf_printf(&b, "<p class=\"warn\">log.jsonl has more than %d lines: only the first %d are shown</p>\n",
                            DDX_REPORT_MAX_LINES, DDX_REPORT_MAX_LINES);
    if (log.nskip) {
        ddx_json_buf_printf(&b, "<h2>Skipped log lines</h2>\n<ul id=\"skipped\">\n");
        for (int64_t i = 0; i < log.nskip && i < DDX_REPORT_MAX_SKIPS_LISTED; i++) {
            ddx_json_buf_printf(&b, "<li>log.jsonl line %lld: ", (long long)log.skip[i].line);
            text(&b, log.skip[i].why);
            ddx_json_buf_printf(&b, "</li>\n");
        }
        if (log.nskip > DDX_REPORT_MAX_SKIPS_LISTED)
            ddx_json_buf_printf(&b, "<li>and %lld more</li>\n", (long long)(log.nskip - DDX_REPORT_MAX_SKIPS_LISTED));
        ddx_json_buf_printf(&b, "</ul>\n");
    }

    ddx_json_buf_printf(&b, "<h2>Training curves</h2>\n<div class=\"plots\">\n");
    ddx_plot_series s[2];
    int ns = loss_series(&log, s);
    plot(&b, "loss", "loss", s, ns, false);
    const struct {
        const char *title, *y;
        const double *v;
        const uint8_t *rgb;
    } one[] = {{"grad norm", "global grad norm (before clipping)", log.grad_norm, ORANGE},
               {"learning rate", "lr", log.lr, GREEN},
               {"throughput", "img/s", log.img_per_s, PURPLE}};
    for (size_t k = 0; k < sizeof one / sizeof one[0]; k++) {
        s[0] = (ddx_plot_series){.name = one[k].title, .x = log.step, .y = one[k].v, .n = (int)log.n};
        memcpy(s[0].rgb, one[k].rgb, 3);
        plot(&b, one[k].title, one[k].y, s, 1, false);
    }
    s[0] = (ddx_plot_series){.name = "FID", .x = log.fstep, .y = log.fid, .n = (int)log.nf};
    memcpy(s[0].rgb, RED, 3);
    plot(&b, "FID", "FID", s, 1, true);
    s[0] = (ddx_plot_series){.name = "KID", .x = log.fstep, .y = log.kid, .n = (int)log.nf};
    memcpy(s[0].rgb, PURPLE, 3);
    plot(&b, "KID", "KID", s, 1, true);
    ddx_json_buf_printf(&b, "</div>\n");
    ddx_runlog_free(&log);

    ddx_json_buf_printf(&b, "<h2>Samples by step</h2>\n");
    samples(&b, run_dir);

    ddx_json_buf_printf(&b, "<h2>Device and software</h2>\n");
    run_info(&b, run_dir);

    ddx_json_buf_printf(&b, "<h2>Resolved config</h2>\n");
    char cpath[PATH_MAX];
    snprintf(cpath, sizeof cpath, "%s/config.yaml", run_dir);
    size_t n;
    bool cut;
    char *cfg = slurp(cpath, "config.yaml", DDX_REPORT_MAX_TEXT, &n, &cut);
    if (cfg) {
        ddx_json_buf_printf(&b, "<pre id=\"config\">");
        ddx_html_escape(&b, cfg, n);
        ddx_json_buf_printf(&b, "</pre>\n");
        if (cut) ddx_json_buf_printf(&b, "<p class=\"warn\">config.yaml cut at %u KiB</p>\n", DDX_REPORT_MAX_TEXT >> 10);
        free(cfg);
    } else {
        ddx_json_buf_printf(&b, "<p class=\"warn\">no readable config.yaml in this folder</p>\n");
    }
    ddx_json_buf_printf(&b, "<script>%s</script>\n</body></html>\n", JS);
    if (b.failed) {
        ddx_json_buf_free(&b);
        return ddx_errorf(DDX_E_NOMEM, "%s: out of memory building the report", out);
    }
    ddx_atomic_file a;
    ddx_status st = ddx_atomic_open(&a, out, "report.html");
    if (!st) {
        ddx_atomic_write(&a, b.data, b.len);
        st = ddx_atomic_commit(&a);
    }
    ddx_json_buf_free(&b);
    return st;
}
