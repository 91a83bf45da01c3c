// ddx-train CONFIG [--set key=value ...] [--resume RUN_DIR]
//
// Trains a diffusion model from a YAML config into a run folder outputs/<name>_<timestamp>/
// holding config.yaml, log.jsonl, checkpoints/last.safetensors and samples/*.png.
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "runtime/image.h"
#include "train/data.h"
#include "train/trainer.h"

static volatile sig_atomic_t g_signal = 0;
static void on_signal(int sig) { g_signal = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-train CONFIG.yaml [--set key=value ...] [--resume RUN_DIR]\n"
            "       ddx-train --resume RUN_DIR [--set key=value ...]\n"
            "       ddx-train --help-config     (every config key, its default and meaning)\n"
            "Trains into run.out_dir/<run.name>_<timestamp>/: config.yaml, log.jsonl, checkpoints/, samples/.\n"
            "--resume continues a run exactly where its last checkpoint left it; only train.total_steps,\n"
            "train.log_every, train.sample_every, train.checkpoint_every, run.device, data.path and\n"
            "data.num_workers may differ from the run's config.\n");
}

static int fail(ddx_status st) {
    fprintf(stderr, "ddx-train: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ddx_status make_dir(const char *path, const char *key) {
    if (mkdir(path, 0777) == 0 || errno == EEXIST) {
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && access(path, W_OK | X_OK) == 0) return DDX_OK;
        return ddx_errorf(DDX_E_INPUT, "%s: '%s' is not a writable folder; set %s to one", key, path, key);
    }
    return ddx_errorf(DDX_E_INPUT, "%s: cannot create '%s': %s; set %s to a writable folder", key, path, strerror(errno), key);
}

// mkdir -p for run.out_dir.
static ddx_status make_dirs(const char *path, const char *key) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return ddx_errorf(DDX_E_INPUT, "%s: path too long", key);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return ddx_errorf(DDX_E_INPUT, "%s: cannot create '%s': %s; set %s to a writable folder", key, buf, strerror(errno), key);
        *p = '/';
    }
    return make_dir(buf, key);
}

static void fmt_duration(double s, char *buf, size_t n) {
    if (s < 0 || s > 1e9) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

// Keeps the log lines of steps <= `step` (what the checkpoint being resumed had seen), so that
// the resumed run's log reads as if the run had never stopped. Written atomically.
static ddx_status log_truncate(const char *path, int64_t step) {
    FILE *in = fopen(path, "r");
    if (!in) return DDX_OK;   // no log yet
    char tmp[PATH_MAX + 128];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return ddx_errorf(DDX_E_IO, "%s: cannot write: %s", tmp, strerror(errno));
    }
    char line[4096];
    while (fgets(line, sizeof line, in)) {
        long long s;
        if (sscanf(line, "{\"step\":%lld", &s) == 1 && s > step) break;
        if (strstr(line, "\"partial\":true")) continue;   // the resumed run carries that mean on
        fputs(line, out);
    }
    fclose(in);
    bool ok = fflush(out) == 0 && fsync(fileno(out)) == 0;
    ok = (fclose(out) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return ddx_errorf(DDX_E_IO, "%s: cannot rewrite the log: %s", path, strerror(errno));
    }
    return DDX_OK;
}

// Keys a resume may change: they affect how long and how chatty the run is, not what it computes.
static void copy_resume_keys(ddx_config *dst, const ddx_config *src) {
    dst->train.total_steps = src->train.total_steps;
    dst->train.log_every = src->train.log_every;
    dst->train.sample_every = src->train.sample_every;
    dst->train.checkpoint_every = src->train.checkpoint_every;
    dst->run.device = src->run.device;
    memcpy(dst->data.path, src->data.path, sizeof dst->data.path);
    dst->data.num_workers = src->data.num_workers;
}

typedef struct run {
    ddx_config cfg;
    char dir[PATH_MAX];
    char ckpt[PATH_MAX + 64];
    ddx_trainer tr;
    ddx_dataset data;
    ddx_loader *loader;
    FILE *log;
    float *x;
    int32_t *y;
    float *samples;
} run;

static ddx_status save_checkpoint(run *r, int64_t data_batch, double loss_sum, int64_t loss_n) {
    ddx_ckpt_state st = {r->tr.step, data_batch, r->cfg.run.seed, loss_sum, loss_n};
    return ddx_checkpoint_save(r->ckpt, &r->tr.ps, DDX_CKPT_WEIGHTS | DDX_CKPT_EMA | DDX_CKPT_ADAM, &r->cfg, &st);
}

static ddx_status save_samples(run *r, const char *name) {
    const ddx_config *cfg = &r->cfg;
    int n = cfg->sample.n;
    double t0 = now_s();
    DDX_TRY(ddx_trainer_sample(&r->tr, cfg->train.ema_decay > 0, n, cfg->run.seed, r->samples));
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/samples/%s.png", r->dir, name);
    int S = cfg->model.image_size;
    int cols = cfg->model.num_classes > 0 ? cfg->model.num_classes : 0;
    DDX_TRY(ddx_image_grid_write(path, r->samples, n, S, S, cfg->model.out_channels, cols, DDX_NORMALIZE_CLIP, NULL));
    printf("samples: %s (%d images, %s %d steps, %s weights, %.1f s)\n", path, n,
           cfg->sample.sampler == DDX_SAMPLER_DDIM ? "ddim" : "ddpm",
           cfg->sample.sampler == DDX_SAMPLER_DDIM ? cfg->sample.steps : cfg->diffusion.timesteps,
           cfg->train.ema_decay > 0 ? "EMA" : "live", now_s() - t0);
    fflush(stdout);
    return DDX_OK;
}

static void run_free(run *r) {
    if (r->loader) ddx_loader_free(r->loader);
    if (r->log) fclose(r->log);
    ddx_trainer_free(&r->tr);
    ddx_dataset_free(&r->data);
    free(r->x);
    free(r->y);
    free(r->samples);
}

static int train(run *r, const ddx_ckpt_state *resumed) {
    const ddx_config *cfg = &r->cfg;
    ddx_status st;
    int64_t B = cfg->train.batch_size;
    int prefetch = cfg->data.num_workers > 0 ? 2 * cfg->data.num_workers : 0;
    int64_t data_batch = resumed ? resumed->data_batch : 0;
    st = ddx_loader_create(&r->data, (int)B, cfg->run.seed, cfg->data.hflip, data_batch, prefetch, &r->loader);
    if (st) return fail(st);
    r->x = malloc(r->tr.batch_elems * sizeof *r->x);
    r->y = malloc((size_t)B * sizeof *r->y);
    int S = cfg->model.image_size;
    r->samples = malloc((size_t)cfg->sample.n * (size_t)S * (size_t)S * (size_t)cfg->model.out_channels * sizeof(float));
    if (!r->x || !r->y || !r->samples) return fail(ddx_errorf(DDX_E_NOMEM, "out of host memory"));

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    // The running loss lives where the steps run (on the device under CUDA graphs) and is read
    // back only for a log line or a checkpoint, so steps do not wait for the GPU.
    st = ddx_trainer_stats_reset(&r->tr, resumed ? resumed->loss_sum : 0.0, resumed ? resumed->loss_n : 0);
    if (st) return fail(st);
    ddx_trainer_stats stats = {0};
    int64_t total = cfg->train.total_steps;
    double t_start = now_s(), t_log = t_start;
    int64_t step_log = r->tr.step;
    bool printed_arena = false;
    while (r->tr.step < total && !g_signal) {
        int64_t k;
        st = ddx_loader_next(r->loader, r->x, cfg->model.num_classes > 0 ? r->y : NULL, &k);
        if (st) return fail(st);
        st = ddx_trainer_step(&r->tr, r->x, cfg->model.num_classes > 0 ? r->y : NULL, NULL, NULL);
        if (st) {
            fprintf(stderr, "ddx-train: step %" PRId64 ": %s\n", r->tr.step + 1, ddx_last_error());
            fprintf(stderr, "ddx-train: the last checkpoint (if any) is intact: %s\n", r->ckpt);
            return ddx_exit_code(st);
        }
        data_batch = k + 1;
        int64_t step = r->tr.step;
        if (!printed_arena) {
            printf("memory: activation arena %.1f MiB peak (after step 1)\n", (double)r->tr.ctx.act.peak / (1 << 20));
            printed_arena = true;
        }
        bool boundary = cfg->train.log_every > 0 && step % cfg->train.log_every == 0;
        // The last step of a run off the log interval gets a "partial" line that does not reset
        // the running mean, so a run extended later logs exactly what an unbroken run would.
        if (boundary || (cfg->train.log_every > 0 && step == total)) {
            if ((st = ddx_trainer_stats_read(&r->tr, &stats))) return fail(st);
            const double gnorm = stats.last_grad_norm;
            double t = now_s();
            double ips = (double)(step - step_log) * (double)B / (t - t_log);
            double mean = stats.loss_sum / (double)stats.loss_n;
            double lr = ddx_optim_lr(&r->tr.optim, step);
            char eta[32];
            fmt_duration((double)(total - step) * (t - t_log) / (double)(step - step_log), eta, sizeof eta);
            printf("step %7" PRId64 "/%" PRId64 "  loss %.5f  grad %.3f  lr %.2e  %7.1f img/s  ETA %s\n", step, total, mean,
                   gnorm, lr, ips, eta);
            fflush(stdout);
            fprintf(r->log, "{\"step\":%" PRId64 ",\"loss\":%.17g,\"last_loss\":%.9g,\"grad_norm\":%.9g,\"lr\":%.9g,"
                            "\"img_per_s\":%.2f,\"elapsed_s\":%.3f%s}\n",
                    step, mean, (double)stats.last_loss, gnorm, lr, ips, t - t_start, boundary ? "" : ",\"partial\":true");
            fflush(r->log);
            if (boundary) {
                if ((st = ddx_trainer_stats_reset(&r->tr, 0.0, 0))) return fail(st);
                t_log = t;
                step_log = step;
            }
        }
        if (cfg->train.checkpoint_every > 0 && step % cfg->train.checkpoint_every == 0 && step != total) {
            if ((st = ddx_trainer_stats_read(&r->tr, &stats))) return fail(st);
            st = save_checkpoint(r, data_batch, stats.loss_sum, stats.loss_n);
            if (st) return fail(st);
        }
        if (cfg->train.sample_every > 0 && step % cfg->train.sample_every == 0 && step != total) {
            char name[64];
            snprintf(name, sizeof name, "step_%07" PRId64, step);
            st = save_samples(r, name);
            if (st) return fail(st);
        }
    }
    // Interrupted or done: both leave a checkpoint to resume from.
    if ((st = ddx_trainer_stats_read(&r->tr, &stats))) return fail(st);
    st = save_checkpoint(r, data_batch, stats.loss_sum, stats.loss_n);
    if (st) return fail(st);
    printf("checkpoint: %s (step %" PRId64 ")\n", r->ckpt, r->tr.step);
    if (g_signal) {
        printf("interrupted by %s at step %" PRId64 "; continue with: ddx-train --resume %s\n",
               g_signal == SIGINT ? "SIGINT" : "SIGTERM", r->tr.step, r->dir);
        return 128 + g_signal;
    }
    char name[64];
    snprintf(name, sizeof name, "step_%07" PRId64, r->tr.step);
    st = save_samples(r, name);
    if (st) return fail(st);
    printf("done: %" PRId64 " steps in %.1f s; run folder %s\n", r->tr.step, now_s() - t_start, r->dir);
    return 0;
}

int main(int argc, char **argv) {
    const char *config_path = NULL, *resume = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0;
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--help-config")) {
            ddx_config_describe(stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--set") || !strcmp(a, "--resume")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ddx-train: %s needs a value (see ddx-train --help)\n", a);
                free(sets);
                return 2;
            }
            if (!strcmp(a, "--set")) sets[n_sets++] = argv[++i];
            else resume = argv[++i];
        } else if (!strncmp(a, "--set=", 6)) {
            sets[n_sets++] = a + 6;
        } else if (a[0] == '-') {
            fprintf(stderr, "ddx-train: unknown option '%s' (see ddx-train --help)\n", a);
            free(sets);
            return 2;
        } else if (!config_path) {
            config_path = a;
        } else {
            fprintf(stderr, "ddx-train: more than one config given ('%s' and '%s')\n", config_path, a);
            free(sets);
            return 2;
        }
    }
    if (!config_path && !resume) {
        usage(stderr);
        free(sets);
        return 2;
    }

    static run r;
    ddx_status st;
    ddx_checkpoint ck = {0};
    bool have_ck = false;
    if (resume) {
        snprintf(r.dir, sizeof r.dir, "%s", resume);
        size_t len = strlen(r.dir);
        while (len > 1 && r.dir[len - 1] == '/') r.dir[--len] = 0;
        snprintf(r.ckpt, sizeof r.ckpt, "%s/checkpoints/last.safetensors", r.dir);
        st = ddx_checkpoint_open(r.ckpt, &ck);
        if (st) {
            free(sets);
            return fail(st);
        }
        have_ck = true;
        if (!ck.is_ddx) {
            ddx_checkpoint_close(&ck);
            free(sets);
            return fail(ddx_errorf(DDX_E_INPUT, "%s: not a ddx training checkpoint (no training state); cannot resume from it", r.ckpt));
        }
        // The stored config is what the run was; a given config or --set may only change the
        // keys copy_resume_keys lists.
        ddx_config want;
        if (config_path) {
            st = ddx_config_resolve(&want, config_path, sets, n_sets);
        } else {
            want = ck.cfg;
            st = DDX_OK;
            for (int i = 0; i < n_sets && !st; i++) st = ddx_config_set(&want, sets[i]);
            if (!st) st = ddx_config_validate(&want);
        }
        if (st) {
            ddx_checkpoint_close(&ck);
            free(sets);
            return fail(st);
        }
        r.cfg = ck.cfg;
        copy_resume_keys(&r.cfg, &want);
        const char *diff = ddx_config_diff(&r.cfg, &want);
        if (diff) {
            ddx_checkpoint_close(&ck);
            free(sets);
            return fail(ddx_errorf(DDX_E_INPUT, "%s: key '%s' differs from the run's config; resume with the run's settings or start a new run",
                                   config_path ? config_path : "--set", diff));
        }
    } else {
        st = ddx_config_resolve(&r.cfg, config_path, sets, n_sets);
        if (st) {
            free(sets);
            return fail(st);
        }
    }
    free(sets);
    const ddx_config *cfg = &r.cfg;

    ddx_device dev;
    char why[512];
    bool cpu_fallback = false;
    st = ddx_device_pick(cfg->run.device, &dev, why, sizeof why, &cpu_fallback);
    if (!st) st = ddx_dataset_load(cfg, &r.data);
    if (!st) st = ddx_trainer_init(&r.tr, cfg, dev);
    if (!st && have_ck) {
        st = ddx_checkpoint_load(&ck, &r.tr.ps, DDX_CKPT_WEIGHTS | DDX_CKPT_EMA | DDX_CKPT_ADAM);
        r.tr.step = ck.state.step;
    }
    if (st) {
        if (have_ck) ddx_checkpoint_close(&ck);
        run_free(&r);
        return fail(st);
    }
    ddx_ckpt_state resumed = ck.state;

    if (!have_ck) {
        // A new folder every time: an earlier run's files are never touched.
        st = make_dirs(cfg->run.out_dir, "run.out_dir");
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        for (int k = 0; !st; k++) {
            if (k == 0) snprintf(r.dir, sizeof r.dir, "%s/%s_%s", cfg->run.out_dir, cfg->run.name, stamp);
            else snprintf(r.dir, sizeof r.dir, "%s/%s_%s-%d", cfg->run.out_dir, cfg->run.name, stamp, k);
            if (mkdir(r.dir, 0777) == 0) break;
            if (errno != EEXIST || k > 100)
                st = ddx_errorf(DDX_E_INPUT, "run.out_dir: cannot create '%s': %s; set run.out_dir to a writable folder", r.dir,
                                strerror(errno));
        }
        snprintf(r.ckpt, sizeof r.ckpt, "%s/checkpoints/last.safetensors", r.dir);
    }
    char sub[PATH_MAX + 64], logp[PATH_MAX + 64];
    snprintf(sub, sizeof sub, "%s/checkpoints", r.dir);
    if (!st) st = make_dir(sub, "run.out_dir");
    snprintf(sub, sizeof sub, "%s/samples", r.dir);
    if (!st) st = make_dir(sub, "run.out_dir");
    snprintf(sub, sizeof sub, "%s/config.yaml", r.dir);
    if (!st) st = ddx_config_save(cfg, sub);
    snprintf(logp, sizeof logp, "%s/log.jsonl", r.dir);
    if (!st && have_ck) st = log_truncate(logp, resumed.step);
    if (have_ck) ddx_checkpoint_close(&ck);
    if (!st && !(r.log = fopen(logp, "a"))) st = ddx_errorf(DDX_E_INPUT, "%s: cannot write: %s", logp, strerror(errno));
    if (st) {
        run_free(&r);
        return fail(st);
    }

    // The banner: everything needed to know what this run is.
    printf("ddx-train %s\n", have_ck ? "(resumed)" : "");
    printf("---- resolved config ----\n");
    ddx_config_emit(cfg, stdout);
    printf("-------------------------\n");
    printf("device: %s (%s%s)\n", ddx_device_name(dev), why, cpu_fallback ? "; training on the CPU" : "");
    printf("data: %s\n", r.data.desc);
    printf("model: %s, %zu parameters\n", cfg->model.type == DDX_MODEL_TYPE_UNET_DDPM ? "unet_ddpm" : "unet_plain",
           ddx_param_count(&r.tr.ps));
    printf("memory: parameters %.1f MiB (weights, grads, Adam m, v, EMA: %.1f MiB each)\n",
           5.0 * (double)r.tr.ps.numel * 4 / (1 << 20), (double)r.tr.ps.numel * 4 / (1 << 20));
    printf("memory: data set %.1f MiB\n", (double)r.data.n * r.data.size * r.data.size * r.data.channels / (1 << 20));
    printf("run folder: %s\n", r.dir);
    if (have_ck) printf("resuming at step %" PRId64 " (data batch %" PRId64 ")\n", resumed.step, resumed.data_batch);
    fflush(stdout);
    int rc = train(&r, have_ck ? &resumed : NULL);
    run_free(&r);
    return rc;
}
