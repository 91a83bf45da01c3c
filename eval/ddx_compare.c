// ddx-compare --checkpoint F [--samplers ddpm,ddim] [--steps 10,20,50 | --ddim-steps 50] [--eta 0]
//             [--n 16] [--seed S] [--batch B] [--no-ema] [--config C.yaml] [--out compare.png]
//             [--table T.md] [--plot P.png] [--fid N --ref ref.npz]
//
// The same initial noise x_T through every sampler x step count, all through the sampler API:
// the sampler keys x_T on (seed, sample index) only, so every configuration starts from the
// same noise by construction. One PNG with the grids side by side, each labelled with sampler,
// steps, wall time and img/s (and FID); the same table on stdout. With --samplers or --steps
// also a markdown table (and a .json twin) and a plot of FID (or img/s) over steps, one line per
// sampler. Samplers are named as sample.sampler (the config's enum): nothing here is specific to
// one sampler. A sampler that does not take a step count (ddpm: all diffusion.timesteps) runs
// once, whatever --steps says.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/canvas.h"
#include "eval/fidrun.h"
#include "eval/gen.h"
#include "eval/plot.h"
#include "runtime/json.h"
#include "runtime/outfile.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-compare --checkpoint FILE.safetensors [options]\n"
            "  the same initial noise through each sampler and step count; one PNG with the grids side\n"
            "  by side, labelled with sampler, steps, wall time and img/s (the first 64 images of each)\n"
            "  --sampler NAME   the two-column form: DDPM and NAME (ddim, dpmpp2m, dpmpp3m, heun, euler_a)\n"
            "  --samplers A,B   samplers, as sample.sampler names (default ddpm,ddim); one that takes\n"
            "                   no step count (ddpm: all diffusion.timesteps) runs once\n"
            "  --steps S1,S2    step counts (default --ddim-steps); with --samplers or --steps also\n"
            "                   the table (--table) and the plot over steps (--plot)\n"
            "  --ddim-steps S   the one step count when --steps is not given (default 50)\n"
            "  --eta E          eta in [0, 1] for samplers that take one (default 0: deterministic DDIM)\n"
            "  --n N            images per configuration (default 16, at most 1024)\n"
            "  --seed S         noise seed (default the checkpoint's run.seed)\n"
            "  --batch B        images per forward pass (default min(N, train.batch_size))\n"
            "  --no-ema         the raw weights instead of the EMA weights\n"
            "  --config C.yaml  model settings for a checkpoint without a stored config\n"
            "  --out FILE.png   the figure (default compare.png)\n"
            "  --table FILE.md  the table as markdown, and FILE.json beside it (default: --out's name\n"
            "                   with .md / .json)\n"
            "  --plot FILE.png  FID (img/s without --fid) over steps, one line per sampler (default:\n"
            "                   --out's name with _steps.png)\n"
            "  --fid N --ref R  also each sampler's FID (and KID) of N images (the grid's first images\n"
            "                   among them) against R (a .npz from ddx-eval stats, or an image folder);\n"
            "                   N below 2048 needs --allow-small\n"
            "  --inception FILE the FID weights (default $DDX_INCEPTION, else ~/.cache/ddx/)\n");
}

static int fail(ddx_status st) {
    fprintf(stderr, "ddx-compare: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

typedef struct row {
    char name[32];
    ddx_sampler kind;
    int steps_req, steps;
    double wall, ips;
    uint8_t *u8;
    ddx_fid_result fid;
    double fid_s;
} row;

// done/total count denoising steps over all batches (models/sampler.c).
static void progress(int done, int total, void *arg) {
    const row *r = arg;
    if (done % 10 && done != total) return;
    fprintf(stderr, "\r%s: step %d/%d", r->name, done, total);
    if (done == total) fputc('\n', stderr);
}

// FID of nfid images of this sampler (images 0..nfid-1: the grid's are the first of them, and
// the nhave already drawn for the grid, quantised in `have`, are not drawn again), drawn and
// measured in chunks so memory stays bounded.
static ddx_status sampler_fid(ddx_sampling *sp, ddx_inception *net, const ddx_ref *ref, int64_t nfid, int S, int C, row *rw,
                              const uint8_t *have, int64_t nhave) {
    const int64_t chunk = 256;
    const size_t per = (size_t)S * S * C;
    float *x = malloc((size_t)chunk * per * sizeof *x);
    uint8_t *u8 = malloc((size_t)chunk * per);
    float *pool3 = malloc((size_t)chunk * DDX_INCEPTION_FEATURES * sizeof *pool3);
    ddx_featset f = {0};
    ddx_status st = !x || !u8 || !pool3 ? ddx_errorf(DDX_E_NOMEM, "out of host memory for --fid") : DDX_OK;
    if (!st) st = ddx_featset_init(&f, DDX_KID_KEEP, false);
    double t0 = ddx_now_s();
    for (int64_t i0 = 0; i0 < nfid && !st; i0 += chunk) {
        int64_t k = nfid - i0 < chunk ? nfid - i0 : chunk;
        // Keyed by image index: image i is the same whether drawn for the grid or here.
        const int64_t reuse = nhave > i0 ? (nhave - i0 < k ? nhave - i0 : k) : 0;
        if (reuse) memcpy(u8, have + (size_t)i0 * per, (size_t)reuse * per);
        if (k > reuse) st = ddx_sampling_run_at(sp, i0 + reuse, (int)(k - reuse), NULL, NULL, x, NULL, NULL);
        if (!st && k > reuse) ddx_quantize_u8(x, (size_t)(k - reuse) * per, u8 + (size_t)reuse * per);
        if (!st) st = ddx_features_u8(net, u8, k, S, S, C, pool3, NULL);
        if (!st) st = ddx_featset_add(&f, pool3, NULL, k);
        if (!st) fprintf(stderr, "\r%s: fid %lld/%lld images", rw->name, (long long)(i0 + k), (long long)nfid);
    }
    if (!st) fputc('\n', stderr);
    if (!st) st = ddx_fid_finish(&f, ref, &rw->fid);
    rw->fid_s = ddx_now_s() - t0;
    ddx_featset_free(&f);
    free(x);
    free(u8);
    free(pool3);
    return st;
}

enum { MAX_SAMPLERS = 16, MAX_STEPS = 32, FIG_IMAGES = 64 };

// "a,b,c" split in place into at most cap items; empty items are an error.
static ddx_status split_list(const char *flag, char *s, char **items, int cap, int *n) {
    *n = 0;
    for (char *p = s;;) {
        char *c = strchr(p, ',');
        if (c) *c = 0;
        if (!*p) return ddx_errorf(DDX_E_INPUT, "%s: an empty item in the list (write %s a,b,c)", flag, flag);
        if (*n == cap) return ddx_errorf(DDX_E_INPUT, "%s: more than %d items", flag, cap);
        items[(*n)++] = p;
        if (!c) return DDX_OK;
        p = c + 1;
    }
}

// A sampler name through the config's own enum (sample.sampler), so a sampler added there is
// usable here with no change; the error lists the names the config allows.
static ddx_status parse_sampler(const char *name, ddx_sampler *out) {
    ddx_config c;
    ddx_config_defaults(&c);
    char a[96];
    if (strlen(name) > 40) return ddx_errorf(DDX_E_INPUT, "--samplers: '%.40s...' is no sampler name", name);
    snprintf(a, sizeof a, "sample.sampler=%s", name);
    if (ddx_config_set(&c, a)) {
        const char *allowed = strstr(ddx_last_error(), "allowed:");
        return ddx_errorf(DDX_E_INPUT, "--samplers: unknown sampler '%s'%s%s", name, allowed ? "; " : "", allowed ? allowed : "");
    }
    *out = c.sample.sampler;
    return DDX_OK;
}

// The name without its extension (".png"), for the table and plot defaults.
static void stem(const char *path, char *buf, size_t n) {
    snprintf(buf, n, "%s", path);
    char *dot = strrchr(buf, '.'), *slash = strrchr(buf, '/');
    if (dot && (!slash || dot > slash)) *dot = 0;
}

static void upper(const char *s, char *buf, size_t n) {
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) buf[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
    buf[i] = 0;
}

// The grids in panels of up to 4 per line, each with its label block.
// The step count a row is known by: what was asked for (Heun makes 2 S - 1 model calls for S
// steps), or the sampler's own count when it takes none (ddpm: diffusion.timesteps).
static int shown_steps(const row *r) { return r->kind == DDX_SAMPLER_HEUN ? r->steps_req : r->steps; }

static ddx_status figure(const row *rows, int nr, int n, int S, int C, int64_t nfid, const char *out) {
    const int cols = (int)ceil(sqrt((double)n)), nrow = (n + cols - 1) / cols, gap = 2, pad = 12, ts = 2;
    int zoom = 320 / (cols * (S + gap));
    if (zoom < 1) zoom = 1;
    if (zoom > 8) zoom = 8;
    const int gw = cols * (S * zoom + gap) - gap, gh = nrow * (S * zoom + gap) - gap;
    const int lh = ddx_canvas_line_height(ts), head = (nfid ? 3 : 2) * lh + pad;
    const int colw = gw > 27 * 6 * ts ? gw : 27 * 6 * ts, per_line = nr < 4 ? nr : 4, lines = (nr + per_line - 1) / per_line;
    ddx_canvas cv;
    DDX_TRY(ddx_canvas_init(&cv, pad + per_line * (colw + pad), pad + lines * (head + gh + pad), 32));
    const uint8_t white[3] = {240, 240, 240}, grey[3] = {180, 180, 180};
    for (int r = 0; r < nr; r++) {
        char l1[128], l2[128], nm[32];
        const int x0 = pad + (r % per_line) * (colw + pad), y0 = pad + (r / per_line) * (head + gh + pad);
        upper(rows[r].name, nm, sizeof nm);
        if (rows[r].steps != shown_steps(&rows[r]))
            snprintf(l1, sizeof l1, "%s, %d steps (%d calls)", nm, shown_steps(&rows[r]), rows[r].steps);
        else
            snprintf(l1, sizeof l1, "%s, %d steps", nm, rows[r].steps);
        snprintf(l2, sizeof l2, "%.2f s, %.2f img/s", rows[r].wall, rows[r].ips);
        ddx_canvas_text(&cv, x0, y0, ts, l1, white);
        ddx_canvas_text(&cv, x0, y0 + lh, ts, l2, grey);
        if (nfid) {
            char l3[128];
            snprintf(l3, sizeof l3, "FID-%lld %.2f", (long long)nfid, rows[r].fid.fid);
            ddx_canvas_text(&cv, x0, y0 + 2 * lh, ts, l3, grey);
        }
        ddx_canvas_grid(&cv, x0, y0 + head, rows[r].u8, n, S, S, C, cols, zoom, gap);
    }
    ddx_status st = ddx_canvas_write_png(&cv, out, "--out");
    ddx_canvas_free(&cv);
    return st;
}

static void json_str(ddx_json_buf *b, const char *s) {
    if (ddx_json_utf8_valid(s, strlen(s))) ddx_json_buf_string(b, s, strlen(s));
    else ddx_json_buf_string(b, "(not UTF-8)", 11);
}

static ddx_status write_buf(ddx_json_buf *b, const char *path, const char *what) {
    if (b->failed) return ddx_errorf(DDX_E_NOMEM, "%s: out of memory", path);
    ddx_atomic_file a;
    DDX_TRY(ddx_atomic_open(&a, path, what));
    ddx_atomic_write(&a, b->data, b->len);
    return ddx_atomic_commit(&a);
}

// The markdown table and its JSON twin (same numbers, full precision).
static ddx_status tables(const row *rows, int nr, const char *ckpt, int64_t step, bool ema, int64_t n, int64_t seed,
                         const char *device, int64_t nfid, const char *ref, const char *md, const char *js) {
    ddx_json_buf b = {0};
    ddx_json_buf_printf(&b, "| sampler | steps | model calls | wall s | img/s |%s\n|---|---:|---:|---:|---:|%s\n",
                        nfid ? " FID | KID |" : "", nfid ? "---:|---:|" : "");
    for (int r = 0; r < nr; r++) {
        ddx_json_buf_printf(&b, "| %s | %d | %d | %.2f | %.3f |", rows[r].name, shown_steps(&rows[r]), rows[r].steps, rows[r].wall,
                            rows[r].ips);
        if (nfid && rows[r].fid.have_kid) ddx_json_buf_printf(&b, " %.2f | %.4f |", rows[r].fid.fid, rows[r].fid.kid);
        else if (nfid) ddx_json_buf_printf(&b, " %.2f | n/a (the reference has no features file) |", rows[r].fid.fid);
        ddx_json_buf_printf(&b, "\n");
    }
    ddx_json_buf_printf(&b, "\n%lld images per configuration (seed %lld, the same noise for every row), %s weights of step %lld, "
                            "device %s",
                        (long long)n, (long long)seed, ema ? "EMA" : "model", (long long)step, device);
    if (nfid) ddx_json_buf_printf(&b, "; FID and KID of %lld images per row against %s", (long long)nfid, ref);
    ddx_json_buf_printf(&b, ".\n");
    ddx_status st = write_buf(&b, md, "--table");
    ddx_json_buf_free(&b);
    if (st) return st;
    ddx_json_buf_printf(&b, "{\"checkpoint\": ");
    json_str(&b, ckpt);
    ddx_json_buf_printf(&b, ", \"step\": %lld, \"weights\": \"%s\", \"n\": %lld, \"seed\": %lld, \"device\": ", (long long)step,
                        ema ? "ema" : "model", (long long)n, (long long)seed);
    json_str(&b, device);
    if (nfid) {
        ddx_json_buf_printf(&b, ", \"fid_n\": %lld, \"ref\": ", (long long)nfid);
        json_str(&b, ref);
    }
    ddx_json_buf_printf(&b, ",\n \"rows\": [");
    for (int r = 0; r < nr; r++) {
        ddx_json_buf_printf(&b, "%s\n  {\"sampler\": \"%s\", \"steps_requested\": %d, \"model_calls\": %d, \"wall_s\": %.6g, \"img_per_s\": %.6g",
                            r ? "," : "", rows[r].name, rows[r].steps_req, rows[r].steps, rows[r].wall, rows[r].ips);
        if (nfid && isfinite(rows[r].fid.fid)) ddx_json_buf_printf(&b, ", \"fid\": %.10g", rows[r].fid.fid);
        if (nfid && rows[r].fid.have_kid && isfinite(rows[r].fid.kid))
            ddx_json_buf_printf(&b, ", \"kid\": %.10g, \"kid_std\": %.10g", rows[r].fid.kid, rows[r].fid.kid_std);
        ddx_json_buf_printf(&b, "}");
    }
    ddx_json_buf_printf(&b, "\n]}\n");
    st = write_buf(&b, js, "--table");
    ddx_json_buf_free(&b);
    return st;
}

// FID (or img/s) over steps, one line per sampler. A sampler with one row whose step count lies
// outside the requested range (ddpm's diffusion.timesteps) is drawn as a level line across the
// range, named with its step count, so it does not stretch the axis.
static ddx_status steps_plot(const row *rows, int nr, const int64_t *steps, int nsteps, int64_t nfid, const char *path) {
    static const uint8_t pal[6][3] = {{31, 119, 180}, {230, 120, 20}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}, {140, 86, 75}};
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < nsteps; k++) lo = fmin(lo, (double)steps[k]), hi = fmax(hi, (double)steps[k]);
    ddx_plot_series s[MAX_SAMPLERS];
    double xs[MAX_SAMPLERS][MAX_STEPS], ys[MAX_SAMPLERS][MAX_STEPS];
    char names[MAX_SAMPLERS][64];
    int ns = 0;
    for (int r = 0; r < nr && ns < MAX_SAMPLERS; r++) {
        int j = 0;
        while (j < ns && strcmp(names[j], rows[r].name)) j++;
        if (j == ns) {
            snprintf(names[ns], sizeof names[ns], "%.31s", rows[r].name);
            s[ns] = (ddx_plot_series){.name = names[ns], .x = xs[ns], .y = ys[ns], .n = 0};
            memcpy(s[ns].rgb, pal[ns % 6], 3);
            ns++;
        }
        if (s[j].n < MAX_STEPS) {
            xs[j][s[j].n] = rows[r].steps;
            ys[j][s[j].n] = nfid ? rows[r].fid.fid : rows[r].ips;
            s[j].n++;
        }
    }
    for (int j = 0; j < ns; j++)
        if (s[j].n == 1 && (xs[j][0] < lo || xs[j][0] > hi) && lo < hi) {
            snprintf(names[j] + strlen(names[j]), sizeof names[j] - strlen(names[j]), " (%g steps)", xs[j][0]);
            xs[j][1] = hi, ys[j][1] = ys[j][0], xs[j][0] = lo;
            s[j].n = 2;
        }
    char title[96];
    snprintf(title, sizeof title, nfid ? "FID-%lld vs model calls" : "img/s vs model calls", (long long)nfid);
    // x is model calls, the cost every sampler pays alike (Heun: 2 per step but the last).
    const ddx_plot p = {.title = title, .xlabel = "model calls (NFE)", .w = 640, .h = 400, .points = true};
    return ddx_plot_png(&p, s, ns, path, "--plot");
}

int main(int argc, char **argv) {
    const char *ckpt = NULL, *config = NULL, *out = "compare.png", *table = NULL, *plot = NULL;
    const char *steps_s = NULL, *eta_s = NULL, *n_s = NULL, *seed_s = NULL, *batch_s = NULL;
    const char *fid_s = NULL, *ref = NULL, *incep = NULL, *samplers_s = NULL, *steplist_s = NULL, *sampler_s = NULL;
    bool no_ema = false, allow_small = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-ema")) {
            no_ema = true;
            continue;
        } else if (!strcmp(a, "--allow-small")) {
            allow_small = true;
            continue;
        } else if (!strcmp(a, "--checkpoint")) slot = &ckpt;
        else if (!strcmp(a, "--fid")) slot = &fid_s;
        else if (!strcmp(a, "--ref")) slot = &ref;
        else if (!strcmp(a, "--inception")) slot = &incep;
        else if (!strcmp(a, "--config")) slot = &config;
        else if (!strcmp(a, "--ddim-steps")) slot = &steps_s;
        else if (!strcmp(a, "--samplers")) slot = &samplers_s;
        else if (!strcmp(a, "--sampler")) slot = &sampler_s;
        else if (!strcmp(a, "--steps")) slot = &steplist_s;
        else if (!strcmp(a, "--table")) slot = &table;
        else if (!strcmp(a, "--plot")) slot = &plot;
        else if (!strcmp(a, "--eta")) slot = &eta_s;
        else if (!strcmp(a, "--n")) slot = &n_s;
        else if (!strcmp(a, "--seed")) slot = &seed_s;
        else if (!strcmp(a, "--batch")) slot = &batch_s;
        else if (!strcmp(a, "--out")) slot = &out;
        else {
            fprintf(stderr, "ddx-compare: unknown argument '%s' (see ddx-compare --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ddx-compare: %s needs a value (see ddx-compare --help)\n", a);
            return 2;
        }
        *slot = argv[++i];
    }
    if (!ckpt) {
        fprintf(stderr, "ddx-compare: --checkpoint FILE is required (see ddx-compare --help)\n");
        return 2;
    }
    int64_t ddim_steps = 50, n = 16, seed = -1, batch = 0;
    double eta = 0.0;
    ddx_status st = DDX_OK;
    if (steps_s) st = ddx_parse_i64("--ddim-steps", steps_s, 1, 100000, &ddim_steps);
    if (!st && steps_s && steplist_s) st = ddx_errorf(DDX_E_INPUT, "--ddim-steps and --steps: give one (--steps takes a list)");
    if (!st && eta_s) st = ddx_parse_f64("--eta", eta_s, 0.0, 1.0, &eta);
    if (!st && n_s) st = ddx_parse_i64("--n", n_s, 1, 1024, &n);
    if (!st && seed_s) st = ddx_parse_i64("--seed", seed_s, 0, INT64_MAX, &seed);
    if (!st && batch_s) st = ddx_parse_i64("--batch", batch_s, 1, 65536, &batch);
    // The configurations: samplers x step counts.
    char sbuf[1024], tbuf[1024];
    char *snames[MAX_SAMPLERS], *tnames[MAX_STEPS];
    ddx_sampler kinds[MAX_SAMPLERS];
    int64_t steps[MAX_STEPS];
    int nsamp = 0, nsteps = 0;
    // --sampler NAME: the two-column comparison DDPM | NAME (the form before --samplers).
    char pair[128];
    if (!st && sampler_s && samplers_s) st = ddx_errorf(DDX_E_INPUT, "--sampler and --samplers: give one of them");
    if (!st && sampler_s && !strcmp(sampler_s, "ddpm"))
        st = ddx_errorf(DDX_E_INPUT, "--sampler ddpm: the first column is DDPM already; name another sampler");
    if (!st && sampler_s) {
        if (strlen(sampler_s) > 40) st = ddx_errorf(DDX_E_INPUT, "--sampler: '%.40s...' is no sampler name", sampler_s);
        snprintf(pair, sizeof pair, "ddpm,%.40s", sampler_s);
        samplers_s = pair;
    }
    snprintf(sbuf, sizeof sbuf, "%s", samplers_s ? samplers_s : "ddpm,ddim");
    if (!st && strlen(samplers_s ? samplers_s : "") >= sizeof sbuf) st = ddx_errorf(DDX_E_INPUT, "--samplers: the list is too long");
    if (!st) st = split_list("--samplers", sbuf, snames, MAX_SAMPLERS, &nsamp);
    for (int i = 0; i < nsamp && !st; i++) {
        st = parse_sampler(snames[i], &kinds[i]);
        for (int j = 0; j < i && !st; j++)
            if (kinds[j] == kinds[i]) st = ddx_errorf(DDX_E_INPUT, "--samplers: '%s' is listed twice", snames[i]);
    }
    if (steplist_s) {
        snprintf(tbuf, sizeof tbuf, "%s", steplist_s);
        if (!st && strlen(steplist_s) >= sizeof tbuf) st = ddx_errorf(DDX_E_INPUT, "--steps: the list is too long");
        if (!st) st = split_list("--steps", tbuf, tnames, MAX_STEPS, &nsteps);
        for (int i = 0; i < nsteps && !st; i++) {
            st = ddx_parse_i64("--steps", tnames[i], 1, 100000, &steps[i]);
            for (int j = 0; j < i && !st; j++)
                if (steps[j] == steps[i]) st = ddx_errorf(DDX_E_INPUT, "--steps: %lld is listed twice", (long long)steps[i]);
        }
    } else {
        steps[0] = ddim_steps;
        nsteps = 1;
    }
    // The table and the plot come with the sampler/step grid (or when asked for by name).
    const bool grid = (samplers_s && !sampler_s) || steplist_s || table || plot;
    char base[4096], md[4200], js[4200], pl[4200];
    stem(out, base, sizeof base);
    if (table) snprintf(md, sizeof md, "%s", table);
    else snprintf(md, sizeof md, "%s.md", base);
    stem(md, js, sizeof js);
    snprintf(js + strlen(js), sizeof js - strlen(js), ".json");
    if (!plot) snprintf(pl, sizeof pl, "%s_steps.png", base);
    else snprintf(pl, sizeof pl, "%s", plot);
    int64_t nfid = 0;
    if (!st && fid_s) st = ddx_parse_i64("--fid", fid_s, 2, 10000000, &nfid);
    if (!st && !!fid_s != !!ref) st = ddx_errorf(DDX_E_INPUT, "--fid N and --ref R go together");
    if (!st && fid_s && nfid < DDX_FID_MIN_SAMPLES && !allow_small)
        st = ddx_errorf(DDX_E_INPUT, "--fid %lld: FID from fewer than %d samples is strongly biased; use more or pass --allow-small",
                        (long long)nfid, DDX_FID_MIN_SAMPLES);
    // The outputs, the reference and the weights are checked before minutes of sampling.
    if (!st) st = ddx_output_check(out, "--out");
    if (!st && grid) st = ddx_output_check(md, "--table");
    if (!st && grid) st = ddx_output_check(js, "--table");
    if (!st && grid) st = ddx_output_check(pl, "--plot");
    ddx_ref refst = {0};
    char ipath[4096];
    struct stat sb;
    const bool ref_dir = ref && stat(ref, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (!st && ref && !ref_dir) st = ddx_ref_load(ref, "--ref", NULL, INT64_C(1) << 26, &refst, NULL);
    if (!st && ref) st = ddx_inception_path(incep, "--inception", ipath, sizeof ipath, NULL);
    if (st) {
        ddx_ref_free(&refst);
        return fail(st);
    }

    ddx_gen g;
    if ((st = ddx_gen_open(&g, ckpt, config, no_ema))) {
        ddx_ref_free(&refst);
        return fail(st);
    }
    ddx_inception *net = NULL;
    if (ref) {
        st = ddx_inception_load(ipath, g.dev, DDX_INCEPTION_FP32, 0, &net);
        if (st) st = ddx_errorf(st, "%s; fetch the weights with %s", ddx_last_error(), DDX_INCEPTION_FETCH);
        if (!st && ref_dir) st = ddx_ref_load(ref, "--ref", net, INT64_C(1) << 26, &refst, NULL);
    }
    for (int k = 0; k < nsteps && !st; k++)
        if (steps[k] > g.cfg.diffusion.timesteps)
            st = ddx_errorf(DDX_E_INPUT, "%s: %lld is more than the model's diffusion.timesteps (%d)", steplist_s ? "--steps" : "--ddim-steps",
                            (long long)steps[k], g.cfg.diffusion.timesteps);
    if (st) {
        ddx_gen_close(&g);
        ddx_inception_free(net);
        ddx_ref_free(&refst);
        return fail(st);
    }
    if (seed < 0) seed = (int64_t)g.cfg.run.seed;
    if (batch == 0) batch = n < g.cfg.train.batch_size ? n : g.cfg.train.batch_size;
    const int S = g.cfg.model.image_size, C = g.cfg.model.out_channels;
    const size_t per = (size_t)S * S * C;
    const int keep = n < FIG_IMAGES ? (int)n : FIG_IMAGES;
    row rows[MAX_SAMPLERS * MAX_STEPS];
    memset(rows, 0, sizeof rows);
    int nr = 0;
    float *x = malloc((size_t)n * per * sizeof *x);
    if (!x) st = ddx_errorf(DDX_E_NOMEM, "out of host memory for %lld images", (long long)n);
    char device[64];
    snprintf(device, sizeof device, "%s", ddx_device_name(g.dev));
    printf("checkpoint %s (step %lld, %s weights), %lld images %dx%dx%d, seed %lld, device %s\n", ckpt,
           (long long)g.step, g.ema ? "EMA" : "model", (long long)n, S, S, C, (long long)seed, device);
    fflush(stdout);
    for (int i = 0; i < nsamp && !st; i++)
        for (int k = 0; k < nsteps && !st; k++) {
            row *rw = &rows[nr];
            snprintf(rw->name, sizeof rw->name, "%s", snames[i]);
            rw->kind = kinds[i];
            rw->steps_req = (int)steps[k];
            ddx_sampling *sp = NULL;
            st = ddx_gen_sampler(&g, kinds[i], (int)steps[k], eta, (uint64_t)seed, (int)batch, &sp);
            if (st) break;
            rw->steps = ddx_sampling_steps(sp);
            // A sampler that ignores the step count gives the same configuration again: once is enough.
            bool again = false;
            for (int q = 0; q < nr && !again; q++) again = rows[q].kind == rw->kind && rows[q].steps == rw->steps;
            if (again) {
                ddx_sampling_free(sp);
                continue;
            }
            double t0 = ddx_now_s();
            st = ddx_sampling_run(sp, (int)n, NULL, NULL, x, progress, rw);
            rw->wall = ddx_now_s() - t0;
            rw->ips = (double)n / rw->wall;
            // All n quantised for the FID (they are its first images), then cut to the figure's.
            if (!st && !(rw->u8 = malloc((size_t)n * per))) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
            if (!st) ddx_quantize_u8(x, (size_t)n * per, rw->u8);
            if (!st && net) st = sampler_fid(sp, net, &refst, nfid, S, C, rw, rw->u8, n < nfid ? n : nfid);
            if (!st && keep < n) {
                uint8_t *small = realloc(rw->u8, (size_t)keep * per);
                if (small) rw->u8 = small;
            }
            ddx_sampling_free(sp);
            if (!st) nr++;
        }
    free(x);
    const bool ema = g.ema;
    const int64_t gstep = g.step;
    ddx_gen_close(&g);
    ddx_inception_free(net);
    ddx_ref_free(&refst);

    if (!st) {
        printf("%-8s %6s %6s %10s %10s%s\n", "sampler", "steps", "calls", "wall_s", "img_per_s", nfid ? "        fid        kid" : "");
        for (int r = 0; r < nr; r++) {
            printf("%-8s %6d %6d %10.2f %10.3f", rows[r].name, shown_steps(&rows[r]), rows[r].steps, rows[r].wall, rows[r].ips);
            if (nfid) printf(" %10.4f %10.6f", rows[r].fid.fid, rows[r].fid.have_kid ? rows[r].fid.kid : NAN);
            printf("\n");
        }
        if (nfid) printf("fid: %lld images per configuration against %s\n", (long long)nfid, ref);
        st = figure(rows, nr, keep, S, C, nfid, out);
        if (!st) printf("figure: %s\n", out);
    }
    if (!st && grid) {
        st = tables(rows, nr, ckpt, gstep, ema, n, seed, device, nfid, ref, md, js);
        if (!st) st = steps_plot(rows, nr, steps, nsteps, nfid, pl);
        if (!st) printf("table: %s, %s\nplot: %s\n", md, js, pl);
    }
    for (int r = 0; r < MAX_SAMPLERS * MAX_STEPS; r++) free(rows[r].u8);
    return st ? fail(st) : 0;
}
