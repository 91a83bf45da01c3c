// ddx-inpaint --checkpoint F (--image in.png [--image ...] | --from-data N [--data-start K])
//             --mask KIND|file:PNG [--sampler ddpm|ddim] [--steps S] [--eta E]
//             [--resample R --jump J] [--n N] [--seed S] [--batch B] [--label L] [--no-ema]
//             [--mask-out m.png] [--json metrics.json] --out out.png
//
// Inpaints each input with the sampler's fused replacement blend (models/sampler.h), writes one
// PNG per input: original | masked | result (one per --n sample) | mask, and prints PSNR and
// SSIM (eval/metrics.h) of every result against the original over the whole image and over the
// filled region. Every input is read and checked (size, channels, mask) and every output path
// checked before any sampling; outputs are written only once all sampling succeeded.
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval/metrics.h"
#include "eval/gen.h"
#include "models/checkpoint.h"
#include "models/device.h"
#include "models/mask.h"
#include "models/sampler.h"
#include "runtime/image.h"
#include "runtime/json.h"
#include "runtime/outfile.h"
#include "train/data.h"

#define MAX_IMAGES 4096

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-inpaint --checkpoint FILE.safetensors (--image IN.png | --from-data N) --mask KIND --out OUT.png\n"
            "  --config C.yaml        model settings for a checkpoint without a stored config\n"
            "  --image IN.png         an image of the model's size and channels (grey or RGB PNG); repeat for more\n"
            "  --from-data N          the first N images of the checkpoint's data set (data.dataset, data.path)\n"
            "  --data-start K         ... starting at image K (default 0)\n"
            "  --mask KIND            box | box:X,Y,W,H | center | half:left|right|top|bottom | strokes |\n"
            "                         file:MASK.png (grey PNG of the image size: white keeps, black is filled)\n"
            "  --sampler ddpm|ddim    default: the config's sample.sampler\n"
            "  --steps S              DDIM steps (default sample.steps); DDPM runs all diffusion.timesteps\n"
            "  --eta E                DDIM eta in [0, 1] (default sample.eta)\n"
            "  --resample R --jump J  RePaint: R passes over every segment of J steps (R = 1: off)\n"
            "  --n N                  results per input (different noise), default 1\n"
            "  --seed S               noise and random-mask seed (default run.seed)\n"
            "  --batch B              images per forward pass (default min(inputs x N, train.batch_size))\n"
            "  --label L              class of every --image for a class-conditional model\n"
            "  --no-ema               sample the raw weights instead of the EMA weights\n"
            "  --mask-out M.png       also write the masks (white keep, black fill)\n"
            "  --json FILE            also write the metrics as JSON\n"
            "  --out OUT.png          one PNG per input: OUT.png for one, OUT_000.png, OUT_001.png ... for more\n");
}

static int fail(ddx_status st) {
    fprintf(stderr, "ddx-inpaint: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

static ddx_status parse_count(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return ddx_errorf(DDX_E_INPUT, "%s: '%s' is not an integer in %ld..%ld", flag, v, lo, hi);
    *out = x;
    return DDX_OK;
}

// OUT.png for a single input, OUT_%03d.png (before the extension) for several.
static ddx_status out_name(const char *out, int i, int n, char *buf, size_t cap) {
    if (n == 1) {
        if (snprintf(buf, cap, "%s", out) >= (int)cap) return ddx_errorf(DDX_E_INPUT, "--out: path too long");
        return DDX_OK;
    }
    const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    const size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - out) : strlen(out);
    if (snprintf(buf, cap, "%.*s_%03d%s", (int)stem, out, i, out + stem) >= (int)cap)
        return ddx_errorf(DDX_E_INPUT, "--out: path too long");
    return DDX_OK;
}

// A metric for the JSON file: non-finite values (SSIM of an image under 11 pixels, PSNR of an
// identical region) are null, which JSON can hold, rather than nan or inf, which it cannot.
static void json_num(ddx_json_buf *b, const char *key, double v, int prec) {
    if (isfinite(v)) ddx_json_buf_printf(b, "\"%s\": %.*f", key, prec, v);
    else ddx_json_buf_printf(b, "\"%s\": null", key);
}

static float to01(float x) {
    const float u = (x + 1.0f) * 0.5f;
    return u < 0.0f ? 0.0f : (u > 1.0f ? 1.0f : (u == u ? u : 0.0f));
}

int main(int argc, char **argv) {
    const char *ckpt = NULL, *config = NULL, *out = NULL, *mask_s = NULL, *mask_out = NULL, *json = NULL;
    const char *sampler = NULL, *steps = NULL, *eta = NULL, *seed_s = NULL, *batch_s = NULL;
    const char *from_s = NULL, *start_s = NULL, *n_s = NULL, *resample_s = NULL, *jump_s = NULL, *label_s = NULL;
    const char *images[MAX_IMAGES];
    int nimages = 0;
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
        } else if (!strcmp(a, "--image")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ddx-inpaint: --image needs a value (see ddx-inpaint --help)\n");
                return 2;
            }
            if (nimages == MAX_IMAGES) {
                fprintf(stderr, "ddx-inpaint: --image: at most %d images per run\n", MAX_IMAGES);
                return 2;
            }
            images[nimages++] = argv[++i];
            continue;
        } else if (!strcmp(a, "--checkpoint")) slot = &ckpt;
        else if (!strcmp(a, "--config")) slot = &config;
        else if (!strcmp(a, "--from-data")) slot = &from_s;
        else if (!strcmp(a, "--data-start")) slot = &start_s;
        else if (!strcmp(a, "--mask")) slot = &mask_s;
        else if (!strcmp(a, "--mask-out")) slot = &mask_out;
        else if (!strcmp(a, "--json")) slot = &json;
        else if (!strcmp(a, "--sampler")) slot = &sampler;
        else if (!strcmp(a, "--steps")) slot = &steps;
        else if (!strcmp(a, "--eta")) slot = &eta;
        else if (!strcmp(a, "--resample")) slot = &resample_s;
        else if (!strcmp(a, "--jump")) slot = &jump_s;
        else if (!strcmp(a, "--n")) slot = &n_s;
        else if (!strcmp(a, "--seed")) slot = &seed_s;
        else if (!strcmp(a, "--batch")) slot = &batch_s;
        else if (!strcmp(a, "--label")) slot = &label_s;
        else if (!strcmp(a, "--out")) slot = &out;
        else {
            fprintf(stderr, "ddx-inpaint: unknown argument '%s' (see ddx-inpaint --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ddx-inpaint: %s needs a value (see ddx-inpaint --help)\n", a);
            return 2;
        }
        *slot = argv[++i];
    }
    if (!ckpt || !out || !mask_s || (!nimages && !from_s)) {
        fprintf(stderr, "ddx-inpaint: --checkpoint, --out, --mask and one of --image or --from-data are required (see "
                        "ddx-inpaint --help)\n");
        return 2;
    }
    if (nimages && from_s) {
        fprintf(stderr, "ddx-inpaint: give --image or --from-data, not both\n");
        return 2;
    }
    if (start_s && !from_s) {
        fprintf(stderr, "ddx-inpaint: --data-start goes with --from-data\n");
        return 2;
    }
    if ((resample_s != NULL) != (jump_s != NULL)) {
        fprintf(stderr, "ddx-inpaint: --resample and --jump go together (RePaint: e.g. --resample 10 --jump 10)\n");
        return 2;
    }
    long nin = nimages, start = 0, per = 1, resample = 1, jump = 0, label = -1;
    ddx_status st = DDX_OK;
    if (from_s) st = parse_count("--from-data", from_s, 1, MAX_IMAGES, &nin);
    if (!st && start_s) st = parse_count("--data-start", start_s, 0, INT_MAX, &start);
    if (!st && n_s) st = parse_count("--n", n_s, 1, 64, &per);
    if (!st && resample_s) st = parse_count("--resample", resample_s, 1, 1000, &resample);
    if (!st && jump_s) st = parse_count("--jump", jump_s, 1, 1 << 24, &jump);
    if (!st && label_s) st = parse_count("--label", label_s, 0, INT_MAX, &label);
    ddx_mask_spec mspec;
    if (!st) st = ddx_mask_parse(mask_s, "--mask", &mspec);
    // Outputs are checked before minutes of sampling, not after.
    char path[PATH_MAX + 16];
    for (int i = 0; i < nin && !st; i++) {
        st = out_name(out, i, (int)nin, path, sizeof path);
        if (!st) st = ddx_output_check(path, "--out");
    }
    if (!st && mask_out) st = ddx_output_check(mask_out, "--mask-out");
    if (!st && json) st = ddx_output_check(json, "--json");
    if (st) return fail(st);

    ddx_checkpoint ck;
    st = ddx_checkpoint_open(ckpt, &ck);
    if (st) return fail(st);
    ddx_config cfg;
    if (config) st = ddx_config_resolve(&cfg, config, NULL, 0);
    else if (ck.has_config) cfg = ck.cfg;
    else st = ddx_errorf(DDX_E_INPUT, "%s: has no stored config; pass --config CONFIG.yaml describing its model", ckpt);
    char buf[DDX_CONFIG_STR_MAX + 64];
    struct { const char *flag, *key, *val; } sets[] = {
        {"--sampler", "sample.sampler", sampler}, {"--steps", "sample.steps", steps}, {"--eta", "sample.eta", eta},
        {"--seed", "run.seed", seed_s}, {"--batch", "train.batch_size", batch_s},
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
    const int S = cfg.model.image_size, C = cfg.model.out_channels, nc = cfg.model.num_classes;
    if (!st && cfg.model.in_channels != C)
        st = ddx_errorf(DDX_E_INPUT,
                        "%s: the model takes a conditioning input (model.in_channels %d > out_channels %d); ddx-inpaint "
                        "works with unconditional and class-conditional models",
                        ckpt, cfg.model.in_channels, C);
    if (!st && nc > 0 && nimages && label < 0)
        st = ddx_errorf(DDX_E_INPUT, "--label: the model is class-conditional (%d classes); give the class of the images", nc);
    if (!st && label >= 0 && nc <= 0) st = ddx_errorf(DDX_E_INPUT, "--label: the model is not class-conditional");
    if (!st && label >= nc && nc > 0) st = ddx_errorf(DDX_E_INPUT, "--label: %ld is not a class of the model (0..%d)", label, nc - 1);
    if (st) {
        ddx_checkpoint_close(&ck);
        return fail(st);
    }

    // Inputs: originals [nin, S, S, C] in [-1, 1], labels, masks [nin, S, S] -- all checked now.
    const int64_t hw = (int64_t)S * S, hwc = hw * C, total = nin * per;
    float *orig = malloc((size_t)(nin * hwc) * sizeof(float));
    uint8_t *masks = malloc((size_t)(nin * hw)), *u8 = malloc((size_t)hwc);
    int32_t *labels = nc > 0 ? malloc((size_t)total * sizeof(int32_t)) : NULL;
    if (!orig || !masks || !u8 || (nc > 0 && !labels)) st = ddx_errorf(DDX_E_NOMEM, "out of host memory for %ld images", nin);
    for (int i = 0; i < nimages && !st; i++) {
        st = ddx_image_read_u8(images[i], "--image", S, S, C, u8);
        for (int64_t k = 0; k < hwc && !st; k++) orig[i * hwc + k] = (float)u8[k] / 127.5f - 1.0f;
        for (int j = 0; j < per && labels && !st; j++) labels[i * per + j] = (int32_t)label;
    }
    if (!st && from_s) {
        ddx_dataset ds;
        st = ddx_dataset_load(&cfg, &ds);
        const bool loaded = st == DDX_OK;
        if (!st && (ds.size != S || ds.channels != C))
            st = ddx_errorf(DDX_E_INPUT, "--from-data: %s is %dx%dx%d but the model works on %dx%dx%d", ds.desc, ds.size,
                            ds.size, ds.channels, S, S, C);
        if (!st && start + nin > ds.n)
            st = ddx_errorf(DDX_E_INPUT, "--from-data %ld --data-start %ld: the data set has %lld images", nin, start,
                            (long long)ds.n);
        for (int64_t i = 0; i < nin && !st; i++) {
            const uint8_t *p = ds.pixels + (start + i) * hwc;
            for (int64_t k = 0; k < hwc; k++) orig[i * hwc + k] = (float)p[k] / 127.5f - 1.0f;
            for (int j = 0; j < per && labels; j++) labels[i * per + j] = ds.labels[start + i] < nc ? ds.labels[start + i] : 0;
        }
        if (!st) printf("inputs: images %ld..%ld of %s\n", start, start + nin - 1, ds.desc);
        if (loaded) ddx_dataset_free(&ds);
    }
    for (int i = 0; i < nin && !st; i++) st = ddx_mask_make(&mspec, "--mask", S, S, cfg.run.seed, i, masks + i * hw);
    free(u8);
    if (st) {
        free(orig), free(masks), free(labels);
        ddx_checkpoint_close(&ck);
        return fail(st);
    }

    // The model, for inference (as ddx-sample).
    ddx_gen gen;
    ddx_sampling *sp = NULL;
    st = ddx_gen_from(&gen, &ck, &cfg, no_ema);
    ddx_checkpoint_close(&ck);
    const int B = (int)(batch_s ? cfg.train.batch_size : (total < cfg.train.batch_size ? total : cfg.train.batch_size));
    const ddx_sample_opts so = {
        .sampler = cfg.sample.sampler,
        .steps = cfg.sample.steps,
        .eta = cfg.sample.eta,
        .spacing = cfg.sample.spacing,
        .seed = cfg.run.seed,
        .batch = B,
        .graphs = ddx_gen_graphs(),
    };
    if (!st) st = ddx_sampling_create(gen.model, &gen.sched, &so, gen.dev, &sp);
    if (!st && resample > 1) st = ddx_sampling_set_repaint(sp, (int)resample, (int)jump);
    // The sampler's inputs: every input repeated `per` times, the mask on every channel.
    float *known = NULL, *mk = NULL, *res = NULL;
    if (!st && (!(known = malloc((size_t)(total * hwc) * sizeof(float))) || !(mk = malloc((size_t)(total * hwc) * sizeof(float))) ||
                !(res = malloc((size_t)(total * hwc) * sizeof(float)))))
        st = ddx_errorf(DDX_E_NOMEM, "out of host memory for %lld images", (long long)total);
    for (int64_t i = 0; i < nin && !st; i++)
        for (int j = 0; j < per; j++) {
            float *kd = known + (i * per + j) * hwc, *md = mk + (i * per + j) * hwc;
            memcpy(kd, orig + i * hwc, (size_t)hwc * sizeof(float));
            for (int64_t p = 0; p < hw; p++)
                for (int ch = 0; ch < C; ch++) md[p * C + ch] = (float)masks[i * hw + p];
        }
    if (!st) st = ddx_sampling_set_inpaint(sp, known, mk);
    double dt = 0;
    if (!st) {
        if (!no_ema && !gen.ema) printf("note: %s has no EMA weights; sampling the model weights\n", ckpt);
        const int visits = ddx_sampling_visits(sp);
        printf("inpainting %ld image%s x %ld %dx%dx%d, mask %s: %s, %d steps", nin, nin == 1 ? "" : "s", per, S, S, C, mask_s,
               cfg.sample.sampler == DDX_SAMPLER_DDIM ? "ddim" : "ddpm", ddx_sampling_steps(sp));
        if (resample > 1) printf(", RePaint resample %ld jump %ld: %d updates", resample, jump, visits);
        printf(", seed %llu, %s weights of %s (step %lld), device %s\n", (unsigned long long)cfg.run.seed,
               gen.ema ? "EMA" : "model", ckpt, (long long)gen.step, ddx_device_name(gen.dev));
        fflush(stdout);
        const double t0 = now_s();
        st = ddx_sampling_run(sp, (int)total, labels, NULL, res, NULL, NULL);
        dt = now_s() - t0;
        if (!st)
            printf("sampled in %.2f s (%.1f ms per update of a batch of up to %d)\n", dt,
                   1e3 * dt / ((double)visits * (double)((total + B - 1) / B)), B);
    }
    ddx_sampling_free(sp);
    ddx_gen_close(&gen);
    free(known);
    free(labels);

    // The replacement method's promise, checked on every run: the kept pixels are the input.
    int64_t kept = 0, same = 0;
    for (int64_t r = 0; r < total && !st; r++)
        for (int64_t k = 0; k < hwc; k++)
            if (masks[(r / per) * hw + k / C]) kept++, same += memcmp(&res[r * hwc + k], &orig[(r / per) * hwc + k], sizeof(float)) == 0;
    if (!st && same != kept)
        st = ddx_errorf(DDX_E_INTERNAL, "internal error: %lld of %lld kept pixels differ from the input", (long long)(kept - same),
                        (long long)kept);
    if (!st) printf("known region: all %lld kept values equal the input exactly\n", (long long)kept);

    // Metrics in [0, 1]: the whole image and the filled region.
    float *a01 = malloc((size_t)hwc * sizeof(float)), *b01 = malloc((size_t)hwc * sizeof(float));
    uint8_t *fillm = malloc((size_t)hw);
    double *m4 = malloc((size_t)total * 4 * sizeof(double));
    if (!st && (!a01 || !b01 || !fillm || !m4)) st = ddx_errorf(DDX_E_NOMEM, "out of host memory for the metrics");
    double sum[4] = {0, 0, 0, 0}, base[2] = {0, 0};
    for (int64_t i = 0; i < nin && !st; i++) {
        for (int64_t k = 0; k < hwc; k++) a01[k] = to01(orig[i * hwc + k]);
        for (int64_t p = 0; p < hw; p++) fillm[p] = masks[i * hw + p] == 0;
        // The baseline: the masked input itself (the hole mid-grey).
        for (int64_t k = 0; k < hwc; k++) b01[k] = masks[i * hw + k / C] ? a01[k] : 0.5f;
        base[0] += ddx_psnr(a01, b01, S, S, C, fillm) / (double)nin;
        base[1] += ddx_ssim(a01, b01, S, S, C, fillm) / (double)nin;
        for (int j = 0; j < per; j++) {
            const int64_t r = i * per + j;
            for (int64_t k = 0; k < hwc; k++) b01[k] = to01(res[r * hwc + k]);
            double *m = m4 + r * 4;
            m[0] = ddx_psnr(a01, b01, S, S, C, NULL);
            m[1] = ddx_ssim(a01, b01, S, S, C, NULL);
            m[2] = ddx_psnr(a01, b01, S, S, C, fillm);
            m[3] = ddx_ssim(a01, b01, S, S, C, fillm);
            for (int q = 0; q < 4; q++) sum[q] += m[q] / (double)total;
            printf("image %lld sample %d: PSNR %.2f dB, SSIM %.4f (whole image); PSNR %.2f dB, SSIM %.4f (filled region, %.1f%% "
                   "of the pixels)\n",
                   (long long)(from_s ? start + i : i), j, m[0], m[1], m[2], m[3],
                   100.0 * (double)(hw - ddx_mask_kept(masks + i * hw, S, S)) / (double)hw);
        }
    }
    if (!st && total > 1)
        printf("mean over %lld results: PSNR %.2f dB, SSIM %.4f (whole image); PSNR %.2f dB, SSIM %.4f (filled region)\n",
               (long long)total, sum[0], sum[1], sum[2], sum[3]);
    if (!st)
        printf("baseline (the hole left mid-grey), filled region: PSNR %.2f dB, SSIM %.4f\n", base[0], base[1]);

    // Outputs, now that everything worked: original | masked | results | mask per input.
    const int cols = (int)per + 3;
    float *row = !st ? malloc((size_t)(cols * hwc) * sizeof(float)) : NULL;
    if (!st && !row) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
    for (int64_t i = 0; i < nin && !st; i++) {
        memcpy(row, orig + i * hwc, (size_t)hwc * sizeof(float));
        for (int64_t k = 0; k < hwc; k++) row[hwc + k] = masks[i * hw + k / C] ? orig[i * hwc + k] : 0.0f;
        memcpy(row + 2 * hwc, res + i * per * hwc, (size_t)(per * hwc) * sizeof(float));
        for (int64_t k = 0; k < hwc; k++) row[(2 + per) * hwc + k] = masks[i * hw + k / C] ? 1.0f : -1.0f;
        st = out_name(out, (int)i, (int)nin, path, sizeof path);
        if (!st) st = ddx_image_grid_write(path, row, cols, S, S, C, cols, DDX_NORMALIZE_CLIP, NULL);
        if (!st) printf("wrote %s (original | masked | result%s | mask)\n", path, per > 1 ? "s" : "");
    }
    if (!st && mask_out) {
        float *mf = malloc((size_t)(nin * hw) * sizeof(float));
        if (!mf) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
        for (int64_t k = 0; mf && k < nin * hw; k++) mf[k] = masks[k] ? 1.0f : -1.0f;
        if (!st) st = nin == 1 ? ddx_image_write(mask_out, mf, S, S, 1, DDX_NORMALIZE_CLIP, NULL)
                               : ddx_image_grid_write(mask_out, mf, (int)nin, S, S, 1, 0, DDX_NORMALIZE_CLIP, NULL);
        if (!st) printf("wrote %s (masks: white keep, black fill)\n", mask_out);
        free(mf);
    }
    if (!st && json) {
        ddx_json_buf jb = {0};
        const char *strs[2] = {ckpt, mask_s};
        for (int q = 0; q < 2; q++) {
            ddx_json_buf_printf(&jb, q ? ", \"mask\": " : "{\"checkpoint\": ");
            if (ddx_json_utf8_valid(strs[q], strlen(strs[q]))) ddx_json_buf_string(&jb, strs[q], strlen(strs[q]));
            else ddx_json_buf_printf(&jb, "null");
        }
        ddx_json_buf_printf(&jb, ", \"sampler\": \"%s\", \"steps\": %d, \"resample\": %ld, \"jump\": %ld, \"seed\": %llu, "
                                 "\"seconds\": %.3f, \"results\": [",
                            cfg.sample.sampler == DDX_SAMPLER_DDIM ? "ddim" : "ddpm",
                            cfg.sample.sampler == DDX_SAMPLER_DDIM ? cfg.sample.steps : cfg.diffusion.timesteps, resample, jump,
                            (unsigned long long)cfg.run.seed, dt);
        static const char *const keys[4] = {"psnr", "ssim", "psnr_filled", "ssim_filled"};
        for (int64_t r = 0; r <= total; r++) {
            const double *v = r < total ? m4 + r * 4 : sum;
            if (r < total)
                ddx_json_buf_printf(&jb, "%s{\"image\": %lld, \"sample\": %lld", r ? ", " : "",
                                    (long long)(r / per + (from_s ? start : 0)), (long long)(r % per));
            else
                ddx_json_buf_printf(&jb, "], \"mean\": {");
            for (int q = 0; q < 4; q++) {
                if (r < total || q) ddx_json_buf_printf(&jb, ", ");
                json_num(&jb, keys[q], v[q], q % 2 ? 5 : 4);
            }
            ddx_json_buf_printf(&jb, "}");
        }
        ddx_json_buf_printf(&jb, "}\n");
        if (jb.failed) st = ddx_errorf(DDX_E_NOMEM, "--json: out of host memory");
        ddx_atomic_file af;
        if (!st) st = ddx_atomic_open(&af, json, "--json");
        if (!st) {
            ddx_atomic_write(&af, jb.data, jb.len);
            st = ddx_atomic_commit(&af);
        }
        ddx_json_buf_free(&jb);
        if (!st) printf("wrote %s\n", json);
    }
    free(row), free(a01), free(b01), free(fillm), free(m4), free(orig), free(masks), free(mk), free(res);
    return st ? fail(st) : 0;
}
