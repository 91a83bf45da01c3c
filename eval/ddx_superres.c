// ddx-superres --checkpoint F (--image small.png | --from-data N [--n K] | --eval N)
//              [--sampler ddpm|ddim] [--steps S] [--eta E] [--seed S] [--batch B] [--no-ema]
//              [--samples K] [--data-path DIR] [--out big.png]
//
// Super-resolution with a model.cond lowres checkpoint (models/lowres.h): the low-res image is
// upsampled bicubically, the sampler draws x0 with it concatenated to x_t, and the output shows
// low-res (nearest-enlarged to the output size) | bicubic | SR | truth (when known), one row per
// image. Truth comes from the data set's test split (--from-data / --eval): the test image,
// area-downsampled by data.sr_factor, is the low-res input, exactly as in training.
//
// Metrics (eval/metrics.h, data range 1) compare images as they are saved: [-1, 1] mapped to
// [0, 1], clipped, rounded to 8 bits; the truth is the 8-bit data set image itself.
// --eval N: mean PSNR/SSIM over test images 0..N-1 for the model and for plain bicubic
// upsampling, as JSON on stdout. Images are sampled in chunks of CHUNK; sample j of chunk k uses
// seed run.seed + k K + j (within a chunk the sampler keys each image's noise by its position),
// so the numbers do not depend on --batch.
// --samples K (K > 1): K samples per image; the SR panel and "model" are the first, and the
// per-pixel mean of the K ("model_mean", one more panel) estimates the posterior mean E[x0 | low],
// which is what PSNR rewards: a perfect sampler's single draw has twice the MSE of that mean, so
// single samples can lose to a blurry estimate in PSNR while looking far sharper.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stb_image.h>

#include "eval/metrics.h"
#include "eval/gen.h"
#include "models/checkpoint.h"
#include "models/device.h"
#include "models/lowres.h"
#include "models/sampler.h"
#include "runtime/image.h"
#include "runtime/json.h"
#include "runtime/outfile.h"
#include "train/data.h"

#define CHUNK 256
#define MAX_ROWS 64   // rows the --out picture shows at most

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-superres --checkpoint FILE.safetensors (--image small.png | --from-data N | --eval N) [options]\n"
            "  --image small.png      a low-res PNG of (model.image_size / data.sr_factor) pixels square, grey for a\n"
            "                         1-channel model, RGB for a 3-channel one\n"
            "  --from-data N          test image N of the checkpoint's data set (area-downsampled, as in training)\n"
            "  --n K                  with --from-data: K images from N on (default 1)\n"
            "  --eval N               mean PSNR/SSIM over test images 0..N-1, model and bicubic, JSON on stdout\n"
            "  --sampler ddpm|ddim    default: the config's sample.sampler\n"
            "  --steps S              DDIM steps (default sample.steps)\n"
            "  --eta E                DDIM eta in [0, 1] (default sample.eta)\n"
            "  --seed S               noise seed (default run.seed)\n"
            "  --batch B              images per forward pass (default min(images, 64))\n"
            "  --samples K            K samples per image (default 1): also reports and shows their mean\n"
            "  --no-ema               use the raw weights instead of the EMA weights\n"
            "  --data-path DIR        the data set's folder, if not the checkpoint's data.path\n"
            "  --out big.png          low-res | bicubic | SR | truth, one row per image (required unless --eval)\n");
}

static int fail(ddx_status st) {
    fprintf(stderr, "ddx-superres: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A non-negative integer flag value (the whole string).
static ddx_status parse_count(const char *flag, const char *v, long long lo, long long hi, long long *out) {
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        return ddx_errorf(DDX_E_INPUT, "%s: '%s' is not an integer in %lld..%lld", flag, v, lo, hi);
    *out = x;
    return DDX_OK;
}

// A command-line value the config refused, named by the flag the user typed.
static ddx_status flag_error(ddx_status st, const char *flag, const char *key) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ddx_last_error());
    const char *rest = msg;
    for (const char *p = strstr(msg, key); p; p = strstr(p + 1, key)) {
        const char *q = strchr(p, ':');
        if (q) rest = q + 1;
    }
    while (*rest == ' ') rest++;
    return ddx_errorf(st, "%s: %s", flag, rest);
}

// The low-res PNG: exactly s x s pixels with c channels, into low [s, s, c] in [-1, 1].
static ddx_status read_lowres(const char *path, int s, int c, int factor, float *low) {
    int fd;
    int64_t size;
    DDX_TRY(ddx_input_open(path, "--image", &fd, &size));
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return ddx_errorf(DDX_E_IO, "--image: cannot open %s", path);
    }
    int w = 0, h = 0, n0 = 0;
    ddx_status st = DDX_OK;
    // The header first: a small file can declare a huge picture.
    if (!stbi_info_from_file(f, &w, &h, &n0)) {
        const char *why = stbi_failure_reason();
        st = ddx_errorf(DDX_E_INPUT, "--image: %s: not a readable PNG (%s)", path, why ? why : "unknown reason");
    } else if (w != s || h != s) {
        st = ddx_errorf(DDX_E_INPUT,
                        "--image: %s is %dx%d; the model super-resolves %dx%d images (x%d to %dx%d): give the low-res "
                        "image",
                        path, w, h, s, s, factor, s * factor, s * factor);
    } else if (n0 != c) {
        st = ddx_errorf(DDX_E_INPUT, "--image: %s has %d channel%s; the model takes %s images (%d channel%s)", path, n0,
                        n0 == 1 ? "" : "s", c == 1 ? "grey" : "RGB", c, c == 1 ? "" : "s");
    }
    uint8_t *img = NULL;
    if (!st) {
        img = stbi_load_from_file(f, &w, &h, &n0, c);
        if (!img || w != s || h != s) {
            const char *why = stbi_failure_reason();
            st = ddx_errorf(DDX_E_INPUT, "--image: %s: cannot decode the image (%s)", path, why ? why : "unknown reason");
        }
    }
    for (int64_t i = 0; !st && i < (int64_t)s * s * c; i++) low[i] = (float)img[i] / 127.5f - 1.0f;
    if (img) stbi_image_free(img);
    fclose(f);
    return st;
}

// [-1, 1] -> [0, 1], clipped and rounded to 8 bits: what the saved PNG holds.
static void to_unit8(const float *x, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        float u = (x[i] + 1.0f) * 0.5f;
        u = u > 0.0f ? (u < 1.0f ? u : 1.0f) : 0.0f;
        out[i] = floorf(u * 255.0f + 0.5f) / 255.0f;
    }
}

typedef struct metric_sums {
    double psnr_sr, ssim_sr, psnr_bi, ssim_bi, psnr_mean, ssim_mean;
    int64_t n;
} metric_sums;

int main(int argc, char **argv) {
    const char *ckpt = NULL, *image = NULL, *from_s = NULL, *n_s = NULL, *eval_s = NULL, *out = NULL, *data_path = NULL;
    const char *sampler = NULL, *steps = NULL, *eta = NULL, *seed_s = NULL, *batch_s = NULL, *samples_s = NULL;
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
        else if (!strcmp(a, "--image")) slot = &image;
        else if (!strcmp(a, "--from-data")) slot = &from_s;
        else if (!strcmp(a, "--n")) slot = &n_s;
        else if (!strcmp(a, "--eval")) slot = &eval_s;
        else if (!strcmp(a, "--out")) slot = &out;
        else if (!strcmp(a, "--data-path")) slot = &data_path;
        else if (!strcmp(a, "--sampler")) slot = &sampler;
        else if (!strcmp(a, "--steps")) slot = &steps;
        else if (!strcmp(a, "--eta")) slot = &eta;
        else if (!strcmp(a, "--seed")) slot = &seed_s;
        else if (!strcmp(a, "--batch")) slot = &batch_s;
        else if (!strcmp(a, "--samples")) slot = &samples_s;
        else {
            fprintf(stderr, "ddx-superres: unknown argument '%s' (see ddx-superres --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ddx-superres: %s needs a value (see ddx-superres --help)\n", a);
            return 2;
        }
        *slot = argv[++i];
    }
    if (!ckpt || (!!image + !!from_s + !!eval_s) != 1) {
        fprintf(stderr, "ddx-superres: give --checkpoint and exactly one of --image, --from-data, --eval (see --help)\n");
        return 2;
    }
    if (!out && !eval_s) {
        fprintf(stderr, "ddx-superres: --out big.png is required with --image and --from-data\n");
        return 2;
    }
    if (n_s && !from_s) {
        fprintf(stderr, "ddx-superres: --n goes with --from-data\n");
        return 2;
    }
    long long from = 0, count = 1, neval = 0, batch = 0, K = 1;
    ddx_status st = DDX_OK;
    if (from_s) st = parse_count("--from-data", from_s, 0, INT_MAX, &from);
    if (!st && n_s) st = parse_count("--n", n_s, 1, 1 << 20, &count);
    if (!st && eval_s) st = parse_count("--eval", eval_s, 1, 1 << 24, &neval);
    if (!st && batch_s) st = parse_count("--batch", batch_s, 1, 1 << 16, &batch);
    if (!st && samples_s) st = parse_count("--samples", samples_s, 1, 64, &K);
    // Outputs are checked before minutes of sampling, not after.
    if (!st && out) st = ddx_output_check(out, "--out");
    if (st) return fail(st);

    ddx_checkpoint ck;
    st = ddx_checkpoint_open(ckpt, &ck);
    if (st) return fail(st);
    ddx_config cfg;
    if (ck.has_config) cfg = ck.cfg;
    else st = ddx_errorf(DDX_E_INPUT, "%s: has no stored config; ddx-superres needs a checkpoint ddx-train wrote", ckpt);
    if (!st && cfg.model.cond != DDX_COND_LOWRES)
        st = ddx_errorf(DDX_E_INPUT,
                        "%s: not a super-resolution model (model.cond is none); train one with model.cond: lowres "
                        "(configs/fashion_mnist_sr4.yaml)",
                        ckpt);
    char buf[DDX_CONFIG_STR_MAX + 64];
    struct { const char *flag, *key, *val; } sets[] = {
        {"--sampler", "sample.sampler", sampler}, {"--steps", "sample.steps", steps}, {"--eta", "sample.eta", eta},
        {"--seed", "run.seed", seed_s},           {"--data-path", "data.path", data_path},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0] && !st; i++) {
        if (!sets[i].val) continue;
        if (snprintf(buf, sizeof buf, "%s=%s", sets[i].key, sets[i].val) >= (int)sizeof buf) {
            st = ddx_errorf(DDX_E_INPUT, "%s: value is %zu bytes long; at most %d are allowed", sets[i].flag,
                            strlen(sets[i].val), DDX_CONFIG_STR_MAX - 1);
            break;
        }
        st = ddx_config_set(&cfg, buf);
        if (st) st = flag_error(st, sets[i].flag, sets[i].key);
    }
    if (!st && steps && cfg.sample.sampler == DDX_SAMPLER_DDPM)
        st = ddx_errorf(DDX_E_INPUT, "--steps: DDPM always runs diffusion.timesteps (%d) steps; use --sampler ddim for fewer",
                        cfg.diffusion.timesteps);
    if (!st) st = ddx_config_validate(&cfg);
    if (!st && cfg.model.num_classes > 0)
        st = ddx_errorf(DDX_E_UNSUPPORTED, "%s: class-conditional super-resolution models are not supported by ddx-superres",
                        ckpt);
    if (st) {
        ddx_checkpoint_close(&ck);
        return fail(st);
    }
    const int S = cfg.model.image_size, C = cfg.model.out_channels, f = cfg.data.sr_factor, s = S / f;
    const size_t per = (size_t)S * S * C, lper = (size_t)s * s * C;

    // The inputs, before the model: a bad image or index costs nothing.
    ddx_dataset data = {0};
    int64_t n = image ? 1 : from_s ? count : neval;
    float *low = malloc((size_t)(image ? 1 : (n < CHUNK ? n : CHUNK)) * lper * sizeof *low);
    if (!low) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
    if (!st && image) st = read_lowres(image, s, C, f, low);
    if (!st && !image) {
        st = ddx_dataset_load_split(&cfg, true, &data);
        if (!st && (from + n > data.n))
            st = ddx_errorf(DDX_E_INPUT, "%s: images %lld..%lld asked for, the test split has %lld (%s)",
                            from_s ? "--from-data" : "--eval", from, from + n - 1, (long long)data.n, data.desc);
        if (!st && (data.size != S || data.channels != C))
            st = ddx_errorf(DDX_E_INPUT, "data: test images are %dx%dx%d, the model is built for %dx%dx%d", data.size,
                            data.size, data.channels, S, S, C);
    }
    if (st) {
        free(low);
        ddx_dataset_free(&data);
        ddx_checkpoint_close(&ck);
        return fail(st);
    }

    ddx_gen gen;
    ddx_sampling *sp = NULL;
    st = ddx_gen_from(&gen, &ck, &cfg, no_ema);
    ddx_checkpoint_close(&ck);
    const int64_t chunk = n < CHUNK ? n : CHUNK;
    ddx_sample_opts so = {
        .sampler = cfg.sample.sampler,
        .steps = cfg.sample.steps,
        .eta = cfg.sample.eta,
        .spacing = cfg.sample.spacing,
        .seed = cfg.run.seed,
        .batch = (int)(batch ? batch : chunk < 64 ? chunk : 64),
        .graphs = ddx_gen_graphs(),
    };
    if (!st) st = ddx_sampling_create(gen.model, &gen.sched, &so, gen.dev, &sp);
    // Per chunk: truth, bicubic (the conditioning itself) and SR, [chunk, S, S, C] each.
    float *truth = malloc((size_t)chunk * per * sizeof *truth), *bic = malloc((size_t)chunk * per * sizeof *bic);
    float *sr = malloc((size_t)chunk * per * sizeof *sr);
    // K > 1: another draw, and the running sum of the K draws.
    float *draw = K > 1 ? malloc((size_t)chunk * per * sizeof *draw) : NULL;
    float *mean = K > 1 ? malloc((size_t)chunk * per * sizeof *mean) : NULL;
    float *ua = malloc(per * sizeof *ua), *ub = malloc(per * sizeof *ub);
    // The picture: up to MAX_ROWS rows of 3 or 4 panels (one more for the mean of K samples).
    const int panels = (image ? 3 : 4) + (K > 1);
    const int64_t rows = n < MAX_ROWS ? n : MAX_ROWS;
    float *pic = out ? malloc((size_t)rows * panels * per * sizeof *pic) : NULL;
    if (!st && (!truth || !bic || !sr || !ua || !ub || (out && !pic) || (K > 1 && (!draw || !mean)))) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
    if (!st)
        fprintf(stderr, "ddx-superres: %lld image%s %dx%d -> %dx%d (x%d): %s, %d steps, seed %llu, %s weights of %s (step %lld), "
                        "device %s\n",
                (long long)n, n == 1 ? "" : "s", s, s, S, S, f, cfg.sample.sampler == DDX_SAMPLER_DDIM ? "ddim" : "ddpm",
                ddx_sampling_steps(sp), (unsigned long long)cfg.run.seed, gen.ema ? "EMA" : "model", ckpt, (long long)gen.step,
                ddx_device_name(gen.dev));
    metric_sums ms = {0};
    const double t0 = now_s();
    for (int64_t c0 = 0, k = 0; c0 < n && !st; c0 += chunk, k++) {
        const int64_t nb = n - c0 < chunk ? n - c0 : chunk;
        if (!image) {
            const uint8_t *px = data.pixels + (size_t)(from + c0) * per;
            for (size_t i = 0; i < (size_t)nb * per; i++) truth[i] = (float)px[i] / 127.5f - 1.0f;
            st = ddx_area_downsample(truth, nb, S, S, C, f, low);
        }
        if (!st) st = ddx_lowres_cond_from_low(&cfg, low, nb, bic);
        for (int64_t j = 0; j < K && !st; j++) {
            so.seed = cfg.run.seed + (uint64_t)k * (uint64_t)K + (uint64_t)j;
            if (k > 0 || j > 0) {
                // A new seed: a new sampler (the options are fixed at creation).
                ddx_sampling_free(sp);
                sp = NULL;
                st = ddx_sampling_create(gen.model, &gen.sched, &so, gen.dev, &sp);
            }
            if (!st) st = ddx_sampling_run(sp, (int)nb, NULL, bic, j ? draw : sr, NULL, NULL);
            for (size_t i = 0; !st && K > 1 && i < (size_t)nb * per; i++) mean[i] = j ? mean[i] + draw[i] : sr[i];
        }
        for (size_t i = 0; !st && K > 1 && i < (size_t)nb * per; i++) mean[i] /= (float)K;
        for (int64_t i = 0; !st && !image && i < nb; i++) {
            // The truth is an 8-bit image already: to_unit8 gives its exact values.
            to_unit8(truth + i * per, (int64_t)per, ua);
            to_unit8(sr + i * per, (int64_t)per, ub);
            ms.psnr_sr += ddx_psnr(ua, ub, S, S, C, NULL);
            ms.ssim_sr += ddx_ssim(ua, ub, S, S, C, NULL);
            to_unit8(bic + i * per, (int64_t)per, ub);
            ms.psnr_bi += ddx_psnr(ua, ub, S, S, C, NULL);
            ms.ssim_bi += ddx_ssim(ua, ub, S, S, C, NULL);
            if (K > 1) {
                to_unit8(mean + i * per, (int64_t)per, ub);
                ms.psnr_mean += ddx_psnr(ua, ub, S, S, C, NULL);
                ms.ssim_mean += ddx_ssim(ua, ub, S, S, C, NULL);
            }
            ms.n++;
        }
        for (int64_t i = 0; !st && pic && c0 + i < rows && i < nb; i++) {
            float *row = pic + (size_t)(c0 + i) * panels * per;
            // Low-res enlarged by repetition, so its pixels show as blocks.
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    for (int ch = 0; ch < C; ch++)
                        row[((size_t)y * S + x) * C + ch] = low[(size_t)i * lper + ((size_t)(y / f) * s + x / f) * C + ch];
            memcpy(row + per, bic + i * per, per * sizeof *row);
            memcpy(row + 2 * per, sr + i * per, per * sizeof *row);
            if (K > 1) memcpy(row + 3 * per, mean + i * per, per * sizeof *row);
            if (!image) memcpy(row + (size_t)(panels - 1) * per, truth + i * per, per * sizeof *row);
        }
        if (!st && eval_s) fprintf(stderr, "ddx-superres: %lld/%lld images (%.1f s)\n", (long long)(c0 + nb), (long long)n, now_s() - t0);
    }
    const double dt = now_s() - t0;
    if (!st && out) st = ddx_image_grid_write(out, pic, (int)(rows * panels), S, S, C, panels, DDX_NORMALIZE_CLIP, NULL);
    if (!st && eval_s) {
        const double m = (double)ms.n;
        // The path as a JSON string (escaped), or null when it is not UTF-8.
        ddx_json_buf jb = {0};
        if (ddx_json_utf8_valid(ckpt, strlen(ckpt))) ddx_json_buf_string(&jb, ckpt, strlen(ckpt));
        const char *ckj = jb.data && !jb.failed ? jb.data : "null";
        printf("{\"checkpoint\": %s, \"step\": %lld, \"images\": %lld, \"split\": \"test\", \"factor\": %d, \"low\": %d, "
               "\"size\": %d, \"sampler\": \"%s\", \"steps\": %d, \"eta\": %g, \"seed\": %llu, \"weights\": \"%s\", "
               "\"model\": {\"psnr\": %.4f, \"ssim\": %.5f}, \"bicubic\": {\"psnr\": %.4f, \"ssim\": %.5f}, ",
               ckj, (long long)gen.step, (long long)ms.n, f, s, S, cfg.sample.sampler == DDX_SAMPLER_DDIM ? "ddim" : "ddpm",
               ddx_sampling_steps(sp), cfg.sample.eta, (unsigned long long)cfg.run.seed, gen.ema ? "ema" : "model",
               ms.psnr_sr / m, ms.ssim_sr / m, ms.psnr_bi / m, ms.ssim_bi / m);
        if (K > 1)
            printf("\"model_mean\": {\"samples\": %lld, \"psnr\": %.4f, \"ssim\": %.5f}, ", K, ms.psnr_mean / m,
                   ms.ssim_mean / m);
        printf("\"seconds\": %.1f}\n", dt);
        ddx_json_buf_free(&jb);
    } else if (!st) {
        for (int64_t i = 0; !image && i < ms.n && ms.n == 1; i++)
            printf("test image %lld: SR PSNR %.2f dB SSIM %.4f; bicubic PSNR %.2f dB SSIM %.4f\n", from, ms.psnr_sr,
                   ms.ssim_sr, ms.psnr_bi, ms.ssim_bi);
        if (!image && ms.n > 1)
            printf("test images %lld..%lld: mean SR PSNR %.2f dB SSIM %.4f; bicubic PSNR %.2f dB SSIM %.4f\n", from,
                   from + ms.n - 1, ms.psnr_sr / ms.n, ms.ssim_sr / ms.n, ms.psnr_bi / ms.n, ms.ssim_bi / ms.n);
        if (!image && K > 1)
            printf("mean of %lld samples: PSNR %.2f dB SSIM %.4f\n", K, ms.psnr_mean / ms.n, ms.ssim_mean / ms.n);
        printf("%s: %lld row%s of low-res | bicubic | SR%s%s (%.1f s)\n", out, (long long)rows, rows == 1 ? "" : "s",
               K > 1 ? " | SR mean" : "", image ? "" : " | truth", dt);
    }
    free(low);
    free(truth);
    free(bic);
    free(sr);
    free(draw);
    free(mean);
    free(ua);
    free(ub);
    free(pic);
    ddx_dataset_free(&data);
    ddx_sampling_free(sp);
    ddx_gen_close(&gen);
    return st ? fail(st) : 0;
}
