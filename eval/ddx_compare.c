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
#include <sys/stat.h>

#include "eval/canvas.h"
#include "eval/fidrun.h"
#include "eval/gen.h"
#include "runtime/outfile.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-compare --checkpoint FILE.safetensors [options]\n"
            "  the same initial noise through DDPM (all diffusion.timesteps steps) and DDIM; one PNG\n"
            "  with both grids side by side, labelled with sampler, steps, wall time and img/s\n"
            "  --ddim-steps S   steps of the second sampler (default 50)\n"
            "  --sampler NAME   the second sampler: ddim (default), dpmpp2m, dpmpp3m, heun or euler_a\n"
            "  --eta E          DDIM eta in [0, 1] (default 0: deterministic DDIM)\n"
            "  --n N            images per sampler (default 16, at most 1024)\n"
            "  --seed S         noise seed (default the checkpoint's run.seed)\n"
            "  --batch B        images per forward pass (default min(N, train.batch_size))\n"
            "  --no-ema         the raw weights instead of the EMA weights\n"
            "  --config C.yaml  model settings for a checkpoint without a stored config\n"
            "  --out FILE.png   the figure (default compare.png)\n"
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
    const char *name;
    ddx_sampler kind;
    int steps;
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

// FID of nfid images of this sampler (images 0..nfid-1: the grid's are the first of them),
// drawn and measured in chunks so memory stays bounded.
static ddx_status sampler_fid(ddx_sampling *sp, ddx_inception *net, const ddx_ref *ref, int64_t nfid, int S, int C, row *rw) {
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
        st = ddx_sampling_run_at(sp, i0, (int)k, NULL, NULL, x, NULL, NULL);
        if (!st) ddx_quantize_u8(x, (size_t)k * per, u8);
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

int main(int argc, char **argv) {
    const char *ckpt = NULL, *config = NULL, *out = "compare.png";
    const char *steps_s = NULL, *eta_s = NULL, *n_s = NULL, *seed_s = NULL, *batch_s = NULL;
    const char *fid_s = NULL, *ref = NULL, *incep = NULL, *sampler_s = NULL;
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
        else if (!strcmp(a, "--sampler")) slot = &sampler_s;
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
    ddx_sampler second = DDX_SAMPLER_DDIM;
    if (!st && sampler_s) st = ddx_sampler_parse(sampler_s, "--sampler", &second);
    if (!st && second == DDX_SAMPLER_DDPM)
        st = ddx_errorf(DDX_E_INPUT, "--sampler ddpm: ddpm is always the first column; name another sampler");
    if (!st && n_s) st = ddx_parse_i64("--n", n_s, 1, 1024, &n);
    if (!st && seed_s) st = ddx_parse_i64("--seed", seed_s, 0, INT64_MAX, &seed);
    if (!st && batch_s) st = ddx_parse_i64("--batch", batch_s, 1, 65536, &batch);
    int64_t nfid = 0;
    if (!st && fid_s) st = ddx_parse_i64("--fid", fid_s, 2, 10000000, &nfid);
    if (!st && !!fid_s != !!ref) st = ddx_errorf(DDX_E_INPUT, "--fid N and --ref R go together");
    if (!st && fid_s && nfid < DDX_FID_MIN_SAMPLES && !allow_small)
        st = ddx_errorf(DDX_E_INPUT, "--fid %lld: FID from fewer than %d samples is strongly biased; use more or pass --allow-small",
                        (long long)nfid, DDX_FID_MIN_SAMPLES);
    // The figure, the reference and the weights are checked before minutes of sampling.
    if (!st) st = ddx_output_check(out, "--out");
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
    if (ddim_steps > g.cfg.diffusion.timesteps) {
        st = ddx_errorf(DDX_E_INPUT, "--ddim-steps: %lld is more than the model's diffusion.timesteps (%d)",
                        (long long)ddim_steps, g.cfg.diffusion.timesteps);
        ddx_gen_close(&g);
        ddx_inception_free(net);
        ddx_ref_free(&refst);
        return fail(st);
    }
    if (seed < 0) seed = (int64_t)g.cfg.run.seed;
    if (batch == 0) batch = n < g.cfg.train.batch_size ? n : g.cfg.train.batch_size;
    const int S = g.cfg.model.image_size, C = g.cfg.model.out_channels;
    const size_t per = (size_t)S * S * C;
    row rows[2] = {{.name = "ddpm", .kind = DDX_SAMPLER_DDPM, .steps = g.cfg.diffusion.timesteps},
                   {.name = ddx_sampler_name(second), .kind = second, .steps = (int)ddim_steps}};
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
        if (!st && !(rows[r].u8 = malloc((size_t)n * per))) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
        if (!st) ddx_quantize_u8(x, (size_t)n * per, rows[r].u8);
        if (!st && net) st = sampler_fid(sp, net, &refst, nfid, S, C, &rows[r]);
        ddx_sampling_free(sp);
    }
    free(x);
    ddx_gen_close(&g);
    ddx_inception_free(net);
    ddx_ref_free(&refst);

    if (!st) {
        printf("%-8s %6s %10s %10s%s\n", "sampler", "steps", "wall_s", "img_per_s", nfid ? "        fid        kid" : "");
        for (int r = 0; r < 2; r++) {
            printf("%-8s %6d %10.2f %10.3f", rows[r].name, rows[r].steps, rows[r].wall, rows[r].ips);
            if (nfid) printf(" %10.4f %10.6f", rows[r].fid.fid, rows[r].fid.have_kid ? rows[r].fid.kid : NAN);
            printf("\n");
        }
        if (nfid) printf("fid: %lld images per sampler against %s\n", (long long)nfid, ref);
        // Both grids with a label block above each; images magnified so a 28-pixel set is readable.
        const int cols = (int)ceil(sqrt((double)n)), nrow = (int)((n + cols - 1) / cols), gap = 2, pad = 12, ts = 2;
        int zoom = 320 / (cols * (S + gap));
        if (zoom < 1) zoom = 1;
        if (zoom > 8) zoom = 8;
        const int gw = cols * (S * zoom + gap) - gap, gh = nrow * (S * zoom + gap) - gap;
        const int lh = ddx_canvas_line_height(ts), head = (nfid ? 3 : 2) * lh + pad;
        int colw = gw > 27 * 6 * ts ? gw : 27 * 6 * ts;
        ddx_canvas cv;
        st = ddx_canvas_init(&cv, 3 * pad + 2 * colw, 2 * pad + head + gh, 32);
        const uint8_t white[3] = {240, 240, 240}, grey[3] = {180, 180, 180};
        for (int r = 0; r < 2 && !st; r++) {
            char l1[128], l2[128];
            int x0 = pad + r * (colw + pad);
            snprintf(l1, sizeof l1, "%s, %d %s", rows[r].kind == DDX_SAMPLER_DDPM ? "DDPM" : rows[r].kind == DDX_SAMPLER_DDIM ? "DDIM" : rows[r].name,
                     rows[r].steps, rows[r].kind == DDX_SAMPLER_HEUN ? "model calls" : "steps");
            snprintf(l2, sizeof l2, "%.2f s, %.2f img/s", rows[r].wall, rows[r].ips);
            ddx_canvas_text(&cv, x0, pad, ts, l1, white);
            ddx_canvas_text(&cv, x0, pad + lh, ts, l2, grey);
            if (nfid) {
                char l3[128];
                snprintf(l3, sizeof l3, "FID-%lld %.2f", (long long)nfid, rows[r].fid.fid);
                ddx_canvas_text(&cv, x0, pad + 2 * lh, ts, l3, grey);
            }
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
