// ddx-compare --checkpoint F [--ddim-steps 50] [--eta 0] [--n 16] [--seed S] [--batch B]
//             [--no-ema] [--config C.yaml] [--out compare.png] [--fid N --ref ref.npz]
//
// The same initial noise x_T through DDPM (all diffusion.timesteps steps) and DDIM-S, both
// through the sampler API: the sampler keys x_T on (seed, sample index) only, so the two runs
// start from the same noise by construction. One PNG with both grids side by side, each
// labelled with sampler, steps, wall time and img/s, and the same table on stdout.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/canvas.h"
#include "eval/gen.h"
#include "runtime/outfile.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-compare --checkpoint FILE.safetensors [options]\n"
            "  the same initial noise through DDPM (all diffusion.timesteps steps) and DDIM; one PNG\n"
            "  with both grids side by side, labelled with sampler, steps, wall time and img/s\n"
            "  --ddim-steps S   DDIM steps (default 50)\n"
            "  --eta E          DDIM eta in [0, 1] (default 0: deterministic DDIM)\n"
            "  --n N            images per sampler (default 16, at most 1024)\n"
            "  --seed S         noise seed (default the checkpoint's run.seed)\n"
            "  --batch B        images per forward pass (default min(N, train.batch_size))\n"
            "  --no-ema         the raw weights instead of the EMA weights\n"
            "  --config C.yaml  model settings for a checkpoint without a stored config\n"
            "  --out FILE.png   the figure (default compare.png)\n");
}

static int fail(ddx_status st) {
    fprintf(stderr, "ddx-compare: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

typedef struct row {
    const char *name;
    ddx_sampler kind;
    int steps;
    double wall, ips;
    uint8_t *u8;
} row;

// done/total count denoising steps over all batches (models/sampler.c).
static void progress(int done, int total, void *arg) {
    const row *r = arg;
    if (done % 10 && done != total) return;
    fprintf(stderr, "\r%s: step %d/%d", r->name, done, total);
    if (done == total) fputc('\n', stderr);
}

int main(int argc, char **argv) {
    const char *ckpt = NULL, *config = NULL, *out = "compare.png";
    const char *steps_s = NULL, *eta_s = NULL, *n_s = NULL, *seed_s = NULL, *batch_s = NULL;
    bool no_ema = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-ema")) {
            no_ema = true;
            continue;
        } else if (!strcmp(a, "--checkpoint")) slot = &ckpt;
        else if (!strcmp(a, "--config")) slot = &config;
        else if (!strcmp(a, "--ddim-steps")) slot = &steps_s;
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
    if (!st && eta_s) st = ddx_parse_f64("--eta", eta_s, 0.0, 1.0, &eta);
    if (!st && n_s) st = ddx_parse_i64("--n", n_s, 1, 1024, &n);
    if (!st && seed_s) st = ddx_parse_i64("--seed", seed_s, 0, INT64_MAX, &seed);
    if (!st && batch_s) st = ddx_parse_i64("--batch", batch_s, 1, 65536, &batch);
    // The figure is checked before minutes of sampling, not after.
    if (!st) st = ddx_output_check(out, "--out");
    if (st) return fail(st);

    ddx_gen g;
    if ((st = ddx_gen_open(&g, ckpt, config, no_ema))) return fail(st);
    if (ddim_steps > g.cfg.diffusion.timesteps) {
        st = ddx_errorf(DDX_E_INPUT, "--ddim-steps: %lld is more than the model's diffusion.timesteps (%d)",
                        (long long)ddim_steps, g.cfg.diffusion.timesteps);
        ddx_gen_close(&g);
        return fail(st);
    }
    if (seed < 0) seed = (int64_t)g.cfg.run.seed;
    if (batch == 0) batch = n < g.cfg.train.batch_size ? n : g.cfg.train.batch_size;
    const int S = g.cfg.model.image_size, C = g.cfg.model.out_channels;
    const size_t per = (size_t)S * S * C;
    row rows[2] = {{"ddpm", DDX_SAMPLER_DDPM, g.cfg.diffusion.timesteps, 0, 0, NULL},
                   {"ddim", DDX_SAMPLER_DDIM, (int)ddim_steps, 0, 0, NULL}};
    float *x = malloc((size_t)n * per * sizeof *x);
    if (!x) st = ddx_errorf(DDX_E_NOMEM, "out of host memory for %lld images", (long long)n);
    printf("checkpoint %s (step %lld, %s weights), %lld images %dx%dx%d, seed %lld, device %s\n", ckpt,
           (long long)g.step, g.ema ? "EMA" : "model", (long long)n, S, S, C, (long long)seed, ddx_device_name(g.dev));
    fflush(stdout);
    for (int r = 0; r < 2 && !st; r++) {
        ddx_sampling *sp = NULL;
        st = ddx_gen_sampler(&g, rows[r].kind, rows[r].steps, rows[r].kind == DDX_SAMPLER_DDIM ? eta : 1.0,
                             (uint64_t)seed, (int)batch, &sp);
        if (!st) rows[r].steps = ddx_sampling_steps(sp);
        double t0 = ddx_now_s();
        if (!st) st = ddx_sampling_run(sp, (int)n, NULL, NULL, x, progress, &rows[r]);
        rows[r].wall = ddx_now_s() - t0;
        rows[r].ips = (double)n / rows[r].wall;
        ddx_sampling_free(sp);
        if (!st && !(rows[r].u8 = malloc((size_t)n * per))) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
        if (!st) ddx_quantize_u8(x, (size_t)n * per, rows[r].u8);
    }
    free(x);
    ddx_gen_close(&g);

    if (!st) {
        printf("%-8s %6s %10s %10s\n", "sampler", "steps", "wall_s", "img_per_s");
        for (int r = 0; r < 2; r++)
            printf("%-8s %6d %10.2f %10.3f\n", rows[r].name, rows[r].steps, rows[r].wall, rows[r].ips);
        // Both grids with a label block above each; images magnified so a 28-pixel set is readable.
        const int cols = (int)ceil(sqrt((double)n)), nrow = (int)((n + cols - 1) / cols), gap = 2, pad = 12, ts = 2;
        int zoom = 320 / (cols * (S + gap));
        if (zoom < 1) zoom = 1;
        if (zoom > 8) zoom = 8;
        const int gw = cols * (S * zoom + gap) - gap, gh = nrow * (S * zoom + gap) - gap;
        const int lh = ddx_canvas_line_height(ts), head = 2 * lh + pad;
        int colw = gw > 27 * 6 * ts ? gw : 27 * 6 * ts;
        ddx_canvas cv;
        st = ddx_canvas_init(&cv, 3 * pad + 2 * colw, 2 * pad + head + gh, 32);
        const uint8_t white[3] = {240, 240, 240}, grey[3] = {180, 180, 180};
        for (int r = 0; r < 2 && !st; r++) {
            char l1[128], l2[128];
            int x0 = pad + r * (colw + pad);
            snprintf(l1, sizeof l1, "%s, %d steps", rows[r].kind == DDX_SAMPLER_DDPM ? "DDPM" : "DDIM", rows[r].steps);
            snprintf(l2, sizeof l2, "%.2f s, %.2f img/s", rows[r].wall, rows[r].ips);
            ddx_canvas_text(&cv, x0, pad, ts, l1, white);
            ddx_canvas_text(&cv, x0, pad + lh, ts, l2, grey);
            ddx_canvas_grid(&cv, x0, pad + head, rows[r].u8, (int)n, S, S, C, cols, zoom, gap);
        }
        if (!st) st = ddx_canvas_write_png(&cv, out, "--out");
        ddx_canvas_free(&cv);
        if (!st) printf("figure: %s\n", out);
    }
    free(rows[0].u8);
    free(rows[1].u8);
    return st ? fail(st) : 0;
}
