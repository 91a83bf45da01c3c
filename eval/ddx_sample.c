// ddx-sample --checkpoint F [--config C.yaml] [--sampler NAME] [--steps S] [--spacing SP] [--eta E]
//            [--n N] [--seed S] [--batch B] [--no-ema] [--normalize clip|auto]
//            [--out grid.png] [--save-dir DIR] [--class K|NAME|all] [--guidance W]
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eval/gen.h"
#include "models/checkpoint.h"
#include "models/classes.h"
#include "models/device.h"
#include "models/sampler.h"
#include "runtime/image.h"
#include "runtime/outfile.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-sample --checkpoint FILE.safetensors [options]\n"
            "  --config C.yaml        model settings for a checkpoint without a stored config (a converted\n"
            "                         diffusers state dict); otherwise the stored config is used\n"
            "  --sampler NAME         ddpm, ddim, dpmpp2m, dpmpp3m, heun or euler_a (default: the config's\n"
            "                         sample.sampler)\n"
            "  --steps S              steps of every sampler but ddpm (default sample.steps); DDPM always runs\n"
            "                         all diffusion.timesteps steps, so --steps with ddpm is refused\n"
            "  --spacing SP           uniform, leading, trailing, quadratic or karras (default sample.spacing)\n"
            "  --eta E                DDIM eta in [0, 1] (default sample.eta)\n"
            "  --n N                  images (default sample.n)\n"
            "  --seed S               noise seed (default run.seed); same seed, same images\n"
            "  --batch B              images per forward pass (default min(N, train.batch_size))\n"
            "  --no-ema               sample the raw weights instead of the EMA weights\n"
            "  --normalize clip|auto  clip: (x+1)/2 clipped to [0,1] (default); auto: stretch the observed\n"
            "                         range to [0,1] when it is far from [-1,1] (for poorly trained models)\n"
            "  --out grid.png         the grid (default samples.png)\n"
            "  --save-dir DIR         also one PNG per image, DIR/000000.png ...\n"
            "  --class K|NAME|all     class-conditional models: every image of class K (a number, or a name\n"
            "                         the checkpoint stores, e.g. Sneaker), or all (default): one grid row\n"
            "                         per class\n"
            "  --guidance W           classifier-free guidance scale >= 0 (default sample.guidance, 1): one\n"
            "                         doubled forward per step; 1 = conditional only, 0 = unconditional\n");
}

static int fail(ddx_status st) {
    fprintf(stderr, "ddx-sample: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Output problems are found before minutes of sampling, not after.
static ddx_status check_writable_dir(const char *dir, const char *what) {
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return ddx_errorf(DDX_E_INPUT, "%s: folder '%s' does not exist; create it or choose another", what, dir);
    if (!S_ISDIR(sb.st_mode)) return ddx_errorf(DDX_E_INPUT, "%s: '%s' is not a folder; choose a folder", what, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return ddx_errorf(DDX_E_INPUT, "%s: folder '%s' is not writable; choose another", what, dir);
    return DDX_OK;
}

// A command-line value the config refused: the same message under the flag the user typed.
static ddx_status flag_error(ddx_status st, const char *flag, const char *key) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ddx_last_error());
    // The config's message names where the value came from and the key ("--set KEY=VALUE: key
    // 'KEY': ..."); keep what follows the last mention of the key.
    const char *rest = msg;
    for (const char *p = strstr(msg, key); p; p = strstr(p + 1, key)) {
        const char *q = strchr(p, ':');
        if (q) rest = q + 1;
    }
    while (*rest == ' ') rest++;
    return ddx_errorf(st, "%s: %s", flag, rest);
}

int main(int argc, char **argv) {
    const char *ckpt = NULL, *config = NULL, *out = "samples.png", *save_dir = NULL;
    const char *sampler = NULL, *steps = NULL, *spacing = NULL, *eta = NULL, *n_s = NULL, *seed_s = NULL, *batch_s = NULL;
    const char *class_s = NULL, *guidance_s = NULL;
    bool no_ema = false;
    ddx_normalize norm = DDX_NORMALIZE_CLIP;
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
        else if (!strcmp(a, "--sampler")) slot = &sampler;
        else if (!strcmp(a, "--steps")) slot = &steps;
        else if (!strcmp(a, "--spacing")) slot = &spacing;
        else if (!strcmp(a, "--eta")) slot = &eta;
        else if (!strcmp(a, "--n")) slot = &n_s;
        else if (!strcmp(a, "--seed")) slot = &seed_s;
        else if (!strcmp(a, "--batch")) slot = &batch_s;
        else if (!strcmp(a, "--out")) slot = &out;
        else if (!strcmp(a, "--save-dir")) slot = &save_dir;
        else if (!strcmp(a, "--class")) slot = &class_s;
        else if (!strcmp(a, "--guidance")) slot = &guidance_s;
        else if (!strcmp(a, "--normalize")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ddx-sample: --normalize needs clip or auto\n");
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(v, "clip")) norm = DDX_NORMALIZE_CLIP;
            else if (!strcmp(v, "auto")) norm = DDX_NORMALIZE_AUTO;
            else {
                fprintf(stderr, "ddx-sample: --normalize '%s': use clip or auto\n", v);
                return 2;
            }
            continue;
        } else {
            fprintf(stderr, "ddx-sample: unknown argument '%s' (see ddx-sample --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ddx-sample: %s needs a value (see ddx-sample --help)\n", a);
            return 2;
        }
        *slot = argv[++i];
    }
    if (!ckpt) {
        usage(stderr);
        return 2;
    }

    // Outputs are checked before minutes of sampling, not after.
    ddx_status st = ddx_output_check(out, "--out");
    if (!st && save_dir) st = check_writable_dir(save_dir, "--save-dir");
    if (st) return fail(st);

    ddx_checkpoint ck;
    st = ddx_checkpoint_open(ckpt, &ck);
    if (st) return fail(st);
    ddx_config cfg;
    if (config) {
        st = ddx_config_resolve(&cfg, config, NULL, 0);
    } else if (ck.has_config) {
        cfg = ck.cfg;
    } else {
        st = ddx_errorf(DDX_E_INPUT, "%s: has no stored config; pass --config CONFIG.yaml describing its model", ckpt);
    }
    // The command-line settings go through the config's own checks (ranges, enum names); an
    // error names the flag the user typed, not the config key behind it.
    char buf[DDX_CONFIG_STR_MAX + 64];
    struct { const char *flag, *key, *val; } sets[] = {
        {"--sampler", "sample.sampler", sampler}, {"--steps", "sample.steps", steps}, {"--eta", "sample.eta", eta},
        {"--spacing", "sample.spacing", spacing},
        {"--n", "sample.n", n_s}, {"--seed", "run.seed", seed_s}, {"--batch", "train.batch_size", batch_s},
        {"--guidance", "sample.guidance", guidance_s},
    };
    // Class options on an unconditional model: said here under the flag, before the config's
    // own check would name sample.guidance.
    if (!st && cfg.model.num_classes == 0 && (class_s || guidance_s))
        st = ddx_errorf(DDX_E_INPUT, "%s: %s is unconditional (model.num_classes 0); it has no classes to choose or guide by",
                        class_s ? "--class" : "--guidance", ckpt);
    for (size_t i = 0; i < sizeof sets / sizeof sets[0] && !st; i++) {
        if (!sets[i].val) continue;
        // A cut value could be another valid one (a long seed read as a short one): refuse it.
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
    if (!st && cfg.model.cond == DDX_COND_LOWRES)
        st = ddx_errorf(DDX_E_INPUT, "%s: a super-resolution model (model.cond lowres) needs a low-res image: use ddx-superres",
                        ckpt);
    if (!st && !batch_s && cfg.sample.n < cfg.train.batch_size) cfg.train.batch_size = cfg.sample.n;
    // The class: all (default: one grid row per class) or one, by number or stored name.
    const int K = cfg.model.num_classes;
    int32_t one_class = -1;
    char class_names[4096] = "";
    if (!st && K > 0 && ck.state.class_names) snprintf(class_names, sizeof class_names, "%s", ck.state.class_names);
    if (!st && class_s && strcmp(class_s, "all") != 0)
        st = ddx_class_lookup(ck.state.class_names, K, class_s, "--class", &one_class);
    if (st) {
        ddx_checkpoint_close(&ck);
        return fail(st);
    }

    // The model for inference: the weights to sample (EMA or not) straight into the VALUE
    // buffer; no gradient, optimizer or EMA memory.
    ddx_gen gen;
    ddx_sampling *sp = NULL;
    st = ddx_gen_from(&gen, &ck, &cfg, no_ema);
    ddx_checkpoint_close(&ck);
    const ddx_sample_opts so = {
        .sampler = cfg.sample.sampler,
        .steps = cfg.sample.steps,
        .eta = cfg.sample.eta,
        .spacing = cfg.sample.spacing,
        .seed = cfg.run.seed,
        .batch = cfg.sample.n < cfg.train.batch_size ? cfg.sample.n : cfg.train.batch_size,
        .graphs = ddx_gen_graphs(),
    };
    if (!st) st = ddx_sampling_create(gen.model, &gen.sched, &so, gen.dev, &sp);
    if (!st) st = ddx_sampling_set_guidance(sp, cfg.sample.guidance);
    int n = cfg.sample.n, S = cfg.model.image_size, C = cfg.model.out_channels;
    size_t per = (size_t)S * (size_t)S * (size_t)C;
    float *x = NULL;
    int32_t *y = NULL;
    if (!st && !(x = malloc((size_t)n * per * sizeof *x))) st = ddx_errorf(DDX_E_NOMEM, "out of host memory for %d images", n);
    int grid_cols = 0;
    if (!st && K > 0) {
        if (!(y = malloc((size_t)n * sizeof *y))) st = ddx_errorf(DDX_E_NOMEM, "out of host memory for %d labels", n);
        for (int i = 0; y && i < n; i++) y[i] = one_class;
        if (y && one_class < 0) grid_cols = ddx_class_grid_labels(n, K, y);   // one grid row per class
    }
    if (st) {
        free(x);
        ddx_sampling_free(sp);
        ddx_gen_close(&gen);
        return fail(st);
    }
    if (!no_ema && !gen.ema) printf("note: %s has no EMA weights; sampling the model weights\n", ckpt);

    int nsteps = ddx_sampling_steps(sp);
    printf("sampling %d images %dx%dx%d: %s, %d %s%s, seed %llu, %s weights of %s (step %lld), device %s\n", n, S, S, C,
           ddx_sampler_name(cfg.sample.sampler), nsteps, cfg.sample.sampler == DDX_SAMPLER_HEUN ? "model calls" : "steps",
           cfg.sample.sampler == DDX_SAMPLER_DDIM ? (snprintf(buf, sizeof buf, ", eta %g", cfg.sample.eta), buf) : "",
           (unsigned long long)cfg.run.seed, gen.ema ? "EMA" : "model", ckpt, (long long)gen.step, ddx_device_name(gen.dev));
    if (K > 0) {
        char nm[128] = "";
        if (one_class >= 0) ddx_class_name(class_names, one_class, nm, sizeof nm);
        if (one_class >= 0)
            printf("class %d%s%s%s, guidance %g\n", (int)one_class, nm[0] ? " (" : "", nm, nm[0] ? ")" : "", cfg.sample.guidance);
        else
            printf("classes: all %d, one grid row each (%d images per row), guidance %g\n", K, grid_cols, cfg.sample.guidance);
    }
    fflush(stdout);
    double t0 = now_s();
    st = ddx_sampling_run(sp, n, y, NULL, x, NULL, NULL);
    double dt = now_s() - t0;
    const double mib = 1.0 / (1024.0 * 1024.0);
    if (!st)
        printf("memory (%s): weights %.1f MiB (values only), sampler %.1f MiB (x, inputs, activations); host: images %.1f "
               "MiB\n",
               ddx_device_name(gen.dev), (double)ddx_param_store_bytes(&gen.ps) * mib, (double)ddx_sampling_bytes(sp) * mib,
               (double)((size_t)n * per * sizeof *x) * mib);
    free(y);
    ddx_sampling_free(sp);
    ddx_gen_close(&gen);
    if (st) {
        free(x);
        return fail(st);
    }
    printf("sampled in %.2f s (%.2f img/s, %.1f ms per step)\n", dt, n / dt, 1e3 * dt / nsteps);
    if (norm == DDX_NORMALIZE_AUTO) {
        float lo = FLT_MAX, hi = -FLT_MAX;
        for (size_t i = 0; i < (size_t)n * per; i++) lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
        bool stretched = false;
        st = ddx_image_grid_write(out, x, n, S, S, C, grid_cols, norm, &stretched);
        if (!st && stretched) printf("normalize auto: samples span [%.3g, %.3g], far from [-1, 1]: stretched to [0, 1]\n", lo, hi);
        else if (!st) printf("normalize auto: samples span [%.3g, %.3g]: clipped as usual\n", lo, hi);
    } else {
        st = ddx_image_grid_write(out, x, n, S, S, C, grid_cols, norm, NULL);
    }
    if (!st) printf("grid: %s\n", out);
    for (int i = 0; save_dir && i < n && !st; i++) {
        char p[PATH_MAX + 32];
        if (snprintf(p, sizeof p, "%s/%06d.png", save_dir, i) >= (int)sizeof p) {
            st = ddx_errorf(DDX_E_INPUT, "--save-dir: path '%s' is too long", save_dir);
            break;
        }
        st = ddx_image_write(p, x + (size_t)i * per, S, S, C, norm, NULL);
    }
    if (!st && save_dir) printf("images: %s/000000.png .. %06d.png\n", save_dir, n - 1);
    free(x);
    return st ? fail(st) : 0;
}
