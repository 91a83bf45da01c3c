// ddx-train CONFIG [--set key=value ...] [--resume RUN_DIR]
//
// Trains a diffusion model from a YAML config into a run folder outputs/<name>_<timestamp>/
// holding config.yaml, log.jsonl, checkpoints/{step_N,last}.safetensors and samples/*.png.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eval/fidrun.h"
#include "eval/gen.h"
#include "eval/report.h"
#include "models/checkpoint.h"
#include "runtime/comm.h"
#include "runtime/image.h"
#include "runtime/outfile.h"
#include "train/data.h"
#include "train/dp.h"
#include "train/trainer.h"

#include "ddx_config.h"
#include "ddx_version.h"
#include "runtime/cuda.h"
#include "runtime/json.h"

static volatile sig_atomic_t g_signal = 0;
static void on_signal(int sig) { g_signal = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-train CONFIG.yaml [--set key=value ...] [--resume RUN_DIR]\n"
            "       ddx-train --resume RUN_DIR [--set key=value ...]\n"
            "       ddx-train --help-config     (every config key, its default and meaning)\n"
            "Trains into run.out_dir/<run.name>_<timestamp>/: config.yaml, log.jsonl, checkpoints/, samples/.\n"
            "--resume continues a run exactly where its last checkpoint left it; only train.total_steps,\n"
            "train.log_every, train.sample_every, train.checkpoint_every, train.keep_checkpoints,\n"
            "train.max_loss_ratio, run.device, run.comm_timeout_s, run.comm_bucket_mb, data.path,\n"
            "data.max_image_pixels, data.num_workers and eval.* may differ from the run's config, and so\n"
            "may the number of ranks. One ddx-train at a time per run folder (RUN/.lock).\n");
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

// Loss means of the last log intervals, for the divergence rule.
#define LOSS_HISTORY 10
typedef struct loss_history {
    double v[LOSS_HISTORY];
    int n, next;
} loss_history;

static void history_push(loss_history *h, double v) {
    h->v[h->next] = v;
    h->next = (h->next + 1) % LOSS_HISTORY;
    if (h->n < LOSS_HISTORY) h->n++;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double history_median(const loss_history *h) {
    double t[LOSS_HISTORY];
    memcpy(t, h->v, (size_t)h->n * sizeof t[0]);
    qsort(t, (size_t)h->n, sizeof t[0], cmp_double);
    return h->n % 2 ? t[h->n / 2] : 0.5 * (t[h->n / 2 - 1] + t[h->n / 2]);
}

// Keeps the log lines of steps <= `step` (what the checkpoint being resumed had seen), so that
// the resumed run's log reads as if the run had never stopped, and refills the loss history
// from them, so the divergence rule decides as it would have in an unbroken run. Written
// atomically; any read or write error leaves the log as it was.
static ddx_status log_truncate(const char *path, int64_t step, loss_history *hist) {
    // Before opening it: reading a FIFO put in the log's place would wait for a writer forever.
    DDX_TRY(ddx_output_check(path, "log.jsonl"));
    FILE *in = fopen(path, "r");
    if (!in) return DDX_OK;   // no log yet
    ddx_atomic_file out;
    ddx_status st = ddx_atomic_open(&out, path, "log.jsonl");
    if (st) {
        fclose(in);
        return st;
    }
    char line[4096];
    while (fgets(line, sizeof line, in)) {
        long long s;
        if (sscanf(line, "{\"step\":%lld", &s) == 1 && s > step) break;
        if (strstr(line, "\"partial\":true")) continue;   // the resumed run carries that mean on
        const char *l = strstr(line, "\"loss\":");
        if (l) history_push(hist, strtod(l + 7, NULL));
        ddx_atomic_write(&out, line, strlen(line));
    }
    bool read_failed = ferror(in);
    fclose(in);
    if (read_failed) {
        ddx_atomic_abort(&out);
        return ddx_errorf(DDX_E_IO, "%s: cannot read the log to rewrite it; it is left as it was", path);
    }
    return ddx_atomic_commit(&out);
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
    dst->data.max_image_pixels = src->data.max_image_pixels;
    dst->train.keep_checkpoints = src->train.keep_checkpoints;
    dst->train.max_loss_ratio = src->train.max_loss_ratio;
    dst->run.comm_timeout_s = src->run.comm_timeout_s;
    dst->run.comm_bucket_mb = src->run.comm_bucket_mb;
    dst->eval = src->eval;   // evaluation settings change what is measured, not what is trained
}

typedef struct run {
    ddx_config cfg;
    char dir[PATH_MAX];
    char ckpt[PATH_MAX + 64];
    ddx_trainer tr;
    ddx_dataset data;
    ddx_loader *loader;
    ddx_inception *fid_net;   // eval.fid_every > 0: the FID Inception and the reference
    ddx_ref fid_ref;
    char fid_weights[PATH_MAX];
    int log_fd;
    char log_path[PATH_MAX + 64];
    int lock_fd;
    char good[PATH_MAX + 160];  // the newest checkpoint written (passed the divergence rule)
    int64_t good_step;          // its step; -1: none yet
    double elapsed0;            // training time of earlier sessions (resumed runs)
    loss_history hist;
    float *x;
    int32_t *y;
    float *samples;
    // Data parallelism: rank 0 (lead) owns the run folder (lock, log, checkpoints, samples);
    // every rank trains. collective_end: the run ended where every rank ended it together.
    ddx_comm *comm;
    bool lead, collective_end, stop_all;
} run;

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static bool step_file_name(const char *name, long long *step) {
    int n = 0;
    return sscanf(name, "step_%lld.safetensors%n", step, &n) == 1 && name[n] == '\0' && *step >= 0;
}

// Removes all but the newest `keep` checkpoints/step_N.safetensors (regular files only).
static ddx_status prune_step_files(const char *dir, int keep) {
    DIR *d = opendir(dir);
    if (!d) return ddx_errorf(DDX_E_IO, "%s: cannot list the folder: %s", dir, strerror(errno));
    long long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    ddx_status st = DDX_OK;
    while ((e = readdir(d)) && !st) {
        long long k;
        struct stat sb;
        if (!step_file_name(e->d_name, &k) || fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        if (n == cap) {
            long long *ns = realloc(steps, (cap = cap ? 2 * cap : 16) * sizeof *ns);
            if (!ns) st = ddx_errorf(DDX_E_NOMEM, "out of host memory listing %s", dir);
            else steps = ns;
        }
        if (!st) steps[n++] = k;
    }
    closedir(d);
    if (!st && n > (size_t)keep) {
        qsort(steps, n, sizeof *steps, cmp_ll);
        for (size_t i = 0; i + (size_t)keep < n && !st; i++) {
            char p[PATH_MAX + 160];
            snprintf(p, sizeof p, "%s/step_%07lld.safetensors", dir, steps[i]);
            if (unlink(p) != 0 && errno != ENOENT) st = ddx_errorf(DDX_E_IO, "%s: cannot remove: %s", p, strerror(errno));
        }
    }
    free(steps);
    return st;
}

// With train.keep_checkpoints > 0 a checkpoint is written as checkpoints/step_N.safetensors
// and last.safetensors becomes a second name (hard link) of it, replaced by rename so it is
// always a whole file; where hard links are refused, last.safetensors is written again.
static ddx_status save_checkpoint(run *r, int64_t data_batch, double loss_sum, int64_t loss_n, double elapsed) {
    ddx_ckpt_state st = {r->tr.step, data_batch, r->cfg.run.seed, loss_sum, loss_n, elapsed,
                         r->cfg.model.num_classes > 0 ? r->data.class_names : NULL};
    const int content = DDX_CKPT_WEIGHTS | DDX_CKPT_EMA | DDX_CKPT_ADAM;
    int keep = r->cfg.train.keep_checkpoints;
    if (keep == 0) {
        DDX_TRY(ddx_checkpoint_save(r->ckpt, &r->tr.ps, content, &r->cfg, &st));
        snprintf(r->good, sizeof r->good, "%s", r->ckpt);
        r->good_step = r->tr.step;
        return DDX_OK;
    }
    char dir[PATH_MAX + 64], step_path[PATH_MAX + 128], tmp[PATH_MAX + 128];
    snprintf(dir, sizeof dir, "%s/checkpoints", r->dir);
    snprintf(step_path, sizeof step_path, "%s/step_%07" PRId64 ".safetensors", dir, r->tr.step);
    DDX_TRY(ddx_checkpoint_save(step_path, &r->tr.ps, content, &r->cfg, &st));
    // A name of the atomic writer's temp pattern, so a kill in between leaves nothing the
    // start-up sweep would not remove.
    snprintf(tmp, sizeof tmp, "%s" DDX_ATOMIC_TMP_SUFFIX "ln%04ld", r->ckpt, (long)getpid() % 10000);
    unlink(tmp);
    ddx_status s = ddx_output_check(r->ckpt, "checkpoint");
    if (!s) {
        if (link(step_path, tmp) == 0) {
            if (rename(tmp, r->ckpt) != 0) {
                s = ddx_errorf(DDX_E_IO, "%s: cannot rename %s over it: %s", r->ckpt, tmp, strerror(errno));
                unlink(tmp);
            }
        } else {
            s = ddx_checkpoint_save(r->ckpt, &r->tr.ps, content, &r->cfg, &st);
        }
    }
    if (s) return s;
    snprintf(r->good, sizeof r->good, "%s", step_path);
    r->good_step = r->tr.step;
    return prune_step_files(dir, keep);
}

// eval.fid_every: eval.fid_samples images with the grids' sampler settings and weights, quantised
// as PNGs are, against eval.ref (eval/fidrun.h); one log line {"step":S,"eval":"fid",...}
// (no "loss" key, so a resume's loss history ignores it; a resume cuts it with the steps after
// its checkpoint like any other line).
static ddx_status log_append(run *r, const char *line, size_t n);
static int stop_on_log_error(run *r, const char *line, int64_t data_batch, double elapsed);

static ddx_status run_fid(run *r, int64_t data_batch, double elapsed) {
    const ddx_config *cfg = &r->cfg;
    const int64_t n = cfg->eval.fid_samples;
    const int S = cfg->model.image_size, C = cfg->model.out_channels;
    const size_t per = (size_t)S * S * C;
    double t0 = now_s();
    float *x = malloc((size_t)n * per * sizeof *x);
    uint8_t *u8 = malloc((size_t)n * per);
    const int64_t chunk = 256;
    float *pool3 = malloc((size_t)chunk * DDX_INCEPTION_FEATURES * sizeof *pool3);
    const bool want_logits = ddx_inception_has_logits(r->fid_net);
    float *logits = want_logits ? malloc((size_t)chunk * DDX_INCEPTION_LOGITS * sizeof *logits) : NULL;
    ddx_featset f = {0};
    ddx_status st = (!x || !u8 || !pool3 || (want_logits && !logits))
                        ? ddx_errorf(DDX_E_NOMEM, "eval.fid_samples: out of host memory for %lld images", (long long)n)
                        : DDX_OK;
    if (!st) st = ddx_featset_init(&f, DDX_KID_KEEP, want_logits);
    if (!st && want_logits) st = ddx_featset_unbias(&f, r->fid_weights);
    if (!st) st = ddx_trainer_sample(&r->tr, cfg->train.ema_decay > 0, (int)n, cfg->run.seed, x);
    double t1 = now_s();
    if (!st) ddx_quantize_u8(x, (size_t)n * per, u8);
    for (int64_t i0 = 0; i0 < n && !st; i0 += chunk) {
        int64_t k = n - i0 < chunk ? n - i0 : chunk;
        st = ddx_features_u8(r->fid_net, u8 + (size_t)i0 * per, k, S, S, C, pool3, logits);
        if (!st) st = ddx_featset_add(&f, pool3, logits, k);
    }
    ddx_fid_result res;
    if (!st) st = ddx_fid_finish(&f, &r->fid_ref, &res);
    free(x);
    free(u8);
    free(pool3);
    free(logits);
    ddx_featset_free(&f);
    if (st) return st;
    double t2 = now_s();
    char kid[96] = "", is[96] = "";
    if (res.have_kid) snprintf(kid, sizeof kid, ",\"kid\":%.10g,\"kid_std\":%.10g", res.kid, res.kid_std);
    if (res.have_is) snprintf(is, sizeof is, ",\"is\":%.10g,\"is_std\":%.10g", res.is, res.is_std);
    char line[1024];
    int len = snprintf(line, sizeof line,
                       "{\"step\":%" PRId64 ",\"eval\":\"fid\",\"n\":%lld,\"fid\":%.10g%s%s,\"sample_s\":%.3f,"
                       "\"features_s\":%.3f}\n",
                       r->tr.step, (long long)n, res.fid, kid, is, t1 - t0, t2 - t1);
    printf("fid: step %" PRId64 ": FID %.4f%s against %s (%lld images; sampling %.1f s, features %.1f s)\n", r->tr.step, res.fid,
           res.have_kid ? (snprintf(kid, sizeof kid, ", KID %.5f", res.kid), kid) : "", r->fid_ref.desc, (long long)n, t1 - t0,
           t2 - t1);
    fflush(stdout);
    if (len < 0 || (size_t)len >= sizeof line) return ddx_errorf(DDX_E_INTERNAL, "fid log line too long");
    if (log_append(r, line, (size_t)len)) {
        stop_on_log_error(r, line, data_batch, elapsed);
        return DDX_E_IO;
    }
    return DDX_OK;
}

static ddx_status save_samples(run *r, const char *name) {
    const ddx_config *cfg = &r->cfg;
    int n = cfg->sample.n;
    double t0 = now_s();
    DDX_TRY(ddx_trainer_sample(&r->tr, cfg->train.ema_decay > 0, n, cfg->run.seed, r->samples));
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/samples/%s.png", r->dir, name);
    int S = cfg->model.image_size;
    // Class-conditional: one row per class (the labels ddx_trainer_sample drew them with).
    const int K = cfg->model.num_classes;
    int cols = K > 0 ? (n >= K ? n / K : 1) : 0;
    DDX_TRY(ddx_image_grid_write(path, r->samples, n, S, S, cfg->model.out_channels, cols, DDX_NORMALIZE_CLIP, NULL));
    printf("samples: %s (%d images, %s %d steps, %s weights, %.1f s)\n", path, n,
           ddx_sampler_name(cfg->sample.sampler),
           cfg->sample.sampler != DDX_SAMPLER_DDPM ? cfg->sample.steps : cfg->diffusion.timesteps,
           cfg->train.ema_decay > 0 ? "EMA" : "live", now_s() - t0);
    fflush(stdout);
    return DDX_OK;
}

// RUN/loss.png and RUN/report.html (eval/report.h), refreshed after each sample grid. A failure
// here is a warning: the report is a view of the run, and training must not stop for it.
static void refresh_report(run *r) {
    double t0 = now_s();
    ddx_runlog log;
    ddx_status st = ddx_runlog_read(r->log_path, &log);
    if (!st) st = ddx_report_loss_png(r->dir, &log, NULL);
    ddx_runlog_free(&log);
    if (!st) st = ddx_report_write(r->dir, NULL, NULL);
    if (st) fprintf(stderr, "ddx-train: warning: the run report was not refreshed: %s\n", ddx_last_error());
    else printf("report: %s/report.html, %s/loss.png (%.2f s)\n", r->dir, r->dir, now_s() - t0);
    fflush(stdout);
}

static void info_str(ddx_json_buf *b, const char *key, const char *v) {
    ddx_json_buf_printf(b, "%s", b->len > 1 ? ",\n " : "");
    ddx_json_buf_string(b, key, strlen(key));
    ddx_json_buf_printf(b, ": ");
    if (ddx_json_utf8_valid(v, strlen(v))) ddx_json_buf_string(b, v, strlen(v));
    else ddx_json_buf_string(b, "(not UTF-8)", 11);
}

// RUN/run_info.json: the device and software of the process training now (the report's "device
// and software"), rewritten at each start, so after a resume it names what resumed. A failure
// is a warning, as for the report.
static void write_run_info(const run *r, ddx_device dev, const char *why, bool resumed, const char *world, int argc,
                           char **argv) {
    ddx_json_buf b = {0};
    char t[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%SZ", &tm);
    ddx_json_buf_printf(&b, "{");
    info_str(&b, "started_utc", t);
    info_str(&b, "start", resumed ? "resumed" : "new run");
    info_str(&b, "ddx_version", DDX_VERSION_STRING);
    info_str(&b, "git", DDX_GIT_DESCRIBE);
#ifdef __clang__
    info_str(&b, "compiler", "clang " __clang_version__);
#elif defined(__GNUC__)
    info_str(&b, "compiler", "gcc " __VERSION__);
#endif
    info_str(&b, "cuda_backend", DDX_HAVE_CUDA ? "built" : "not built (CPU only)");
    info_str(&b, "device", ddx_device_name(dev));
    info_str(&b, "device_detail", dev == DDX_CUDA ? ddx_cuda_describe() : why);
    info_str(&b, "world", world);
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) == 0) info_str(&b, "host", host);
    char cmd[2048] = "";
    size_t used = 0;
    for (int i = 0; i < argc && used + 2 < sizeof cmd; i++)
        used += (size_t)snprintf(cmd + used, sizeof cmd - used, "%s%s", i ? " " : "", argv[i]);
    info_str(&b, "command", cmd);
    ddx_json_buf_printf(&b, "\n}\n");
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/run_info.json", r->dir);
    ddx_status st = b.failed ? ddx_errorf(DDX_E_NOMEM, "out of memory for run_info.json") : DDX_OK;
    ddx_atomic_file a;
    if (!st) st = ddx_atomic_open(&a, path, "run_info.json");
    if (!st) {
        ddx_atomic_write(&a, b.data, b.len);
        st = ddx_atomic_commit(&a);
    }
    ddx_json_buf_free(&b);
    if (st) fprintf(stderr, "ddx-train: warning: %s\n", ddx_last_error());
}

static void run_free(run *r) {
    if (r->loader) ddx_loader_free(r->loader);
    if (r->log_fd >= 0) close(r->log_fd);
    r->log_fd = -1;
    if (r->lock_fd >= 0) close(r->lock_fd);   // releases the run folder's lock
    r->lock_fd = -1;
    ddx_trainer_free(&r->tr);
    ddx_inception_free(r->fid_net);
    r->fid_net = NULL;
    ddx_ref_free(&r->fid_ref);
    ddx_dataset_free(&r->data);
    free(r->x);
    free(r->y);
    free(r->samples);
    // World 1 only: a multi-rank start that failed exits without MPI_Finalize (which would
    // wait for the other ranks), and mpirun then ends the job.
    if (r->comm && ddx_comm_world(r->comm) == 1) ddx_comm_finalize(r->comm);
    r->comm = NULL;
}

// Appends one line to log.jsonl with one write(); a failed or short write is cut back off
// (ftruncate), so the log never holds a cut line that a later line would be glued to.
static ddx_status log_append(run *r, const char *line, size_t n) {
    off_t at = lseek(r->log_fd, 0, SEEK_END);
    size_t done = 0;
    int e = at < 0 ? errno : 0;
    while (!e && done < n) {
        ssize_t w = write(r->log_fd, line + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) e = w < 0 ? errno : EIO;
        else done += (size_t)w;
    }
    if (!e) return DDX_OK;
    if (at >= 0 && done > 0) (void)ftruncate(r->log_fd, at);
    return ddx_errorf(DDX_E_IO, "%s: writing the log failed (%s)", r->log_path, strerror(e));
}

// A failed log write stops the run: save a checkpoint so nothing computed is lost, and say
// in one line what happened and how to go on. (Retrying the line would keep a run writing
// into a full disk; a resume after freeing space continues from the checkpoint.)
static int stop_on_log_error(run *r, const char *line, int64_t data_batch, double elapsed) {
    char why[600];
    snprintf(why, sizeof why, "%s", ddx_last_error());
    // The line that did not fit goes to stdout, so its numbers are not lost either.
    printf("log line not written: %s", line);
    fflush(stdout);
    ddx_trainer_stats stats = {0};
    ddx_status st = ddx_trainer_stats_read(&r->tr, &stats);
    if (!st) st = save_checkpoint(r, data_batch, stats.loss_sum, stats.loss_n, elapsed);
    if (st)
        fprintf(stderr, "ddx-train: %s at step %" PRId64 "; saving a checkpoint failed too (%s); the last checkpoint is %s\n", why,
                r->tr.step, ddx_last_error(), r->good_step >= 0 ? r->good : "(none)");
    else
        fprintf(stderr, "ddx-train: %s at step %" PRId64 "; stopped after saving checkpoint %s; free space, then: ddx-train --resume %s\n",
                why, r->tr.step, r->good, r->dir);
    return 2;
}

// The divergence rule: a non-finite loss, or a log interval's mean over train.max_loss_ratio x
// the median of the last (up to 10, at least 3) interval means. Prints the one line and
// returns true when training must stop.
static bool diverged(run *r, double mean, double last_loss) {
    const double ratio = r->cfg.train.max_loss_ratio;
    char why[160];
    if (!isfinite(mean) || !isfinite(last_loss)) {
        snprintf(why, sizeof why, "loss %g is not finite", !isfinite(mean) ? mean : last_loss);
    } else if (ratio > 0 && r->hist.n >= 3 && mean > ratio * history_median(&r->hist)) {
        snprintf(why, sizeof why, "loss %g is over train.max_loss_ratio %g x the median %g of the last %d log intervals", mean,
                 ratio, history_median(&r->hist), r->hist.n);
    } else {
        return false;
    }
    if (r->good_step >= 0)
        fprintf(stderr, "ddx-train: diverged at step %" PRId64 ": %s; last good checkpoint: %s (step %" PRId64 ")\n", r->tr.step,
                why, r->good, r->good_step);
    else
        fprintf(stderr, "ddx-train: diverged at step %" PRId64 ": %s; no checkpoint was saved before it\n", r->tr.step, why);
    return true;
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
    // Multi-rank runs stop on the signal only as every rank learns of it (after a step), so
    // that no rank waits in a collective the others never start.
    while (r->tr.step < total && !(r->tr.dp ? r->stop_all : g_signal)) {
        int64_t k;
        st = ddx_loader_next(r->loader, r->x, cfg->model.num_classes > 0 ? r->y : NULL, &k);
        if (st) return fail(st);
        // NCCL: the watchdog ends the job if this step blocks (inside CUDA, on a dead peer)
        // for longer than run.comm_timeout_s.
        ddx_comm_watch_begin(r->comm, "a training step");
        st = ddx_trainer_step(&r->tr, r->x, cfg->model.num_classes > 0 ? r->y : NULL, NULL, NULL);
        ddx_comm_watch_end(r->comm);
        if (st == DDX_E_NOMEM) {
            fprintf(stderr, "ddx-train: step %" PRId64 ": %s: the activations do not fit; lower train.batch_size, model.image_size or model.ch\n",
                    r->tr.step + 1, ddx_last_error());
            return 2;
        }
        if (st) {
            fprintf(stderr, "ddx-train: step %" PRId64 ": %s\n", r->tr.step + 1, ddx_last_error());
            fprintf(stderr, "ddx-train: the last checkpoint (if any) is intact: %s\n", r->good_step >= 0 ? r->good : r->ckpt);
            return ddx_exit_code(st);
        }
        data_batch = k + 1;
        int64_t step = r->tr.step;
        // NCCL without MPI exchanges the flag through the GPU, a host wait that would cost
        // the graph step its run-ahead: there the ranks agree every 10 steps (and at log lines).
        const bool agree = ddx_comm_host_cheap(r->comm) || step % 10 == 0 ||
                           (cfg->train.log_every > 0 && step % cfg->train.log_every == 0) || step == total;
        if (r->tr.dp && agree) {
            // A signal on any rank stops every rank after this step; the parameters of all
            // ranks must stay bit-identical (checked at each log interval).
            double sig = (double)g_signal;
            char what[96];
            snprintf(what, sizeof what, "the stop-signal all-reduce after step %" PRId64, step);
            if ((st = ddx_comm_allreduce_host(r->comm, &sig, 1, DDX_COMM_MAX, what))) return fail(st);
            if (sig > 0 && !g_signal) g_signal = (int)sig;
            r->stop_all = sig > 0;
            if (cfg->train.log_every > 0 && step % cfg->train.log_every == 0 && (st = ddx_dp_check_drift(r->tr.dp, step)))
                return fail(st);
        }
        if (!r->lead) continue;   // the run folder is rank 0's
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
            char line[512];
            int len = snprintf(line, sizeof line,
                               "{\"step\":%" PRId64 ",\"loss\":%.17g,\"last_loss\":%.9g,\"grad_norm\":%.9g,\"lr\":%.9g,"
                               "\"img_per_s\":%.2f,\"elapsed_s\":%.3f%s}\n",
                               step, mean, (double)stats.last_loss, gnorm, lr, ips, r->elapsed0 + (t - t_start),
                               boundary ? "" : ",\"partial\":true");
            if (len < 0 || (size_t)len >= sizeof line) return fail(ddx_errorf(DDX_E_INTERNAL, "log line too long"));
            if (log_append(r, line, (size_t)len)) return stop_on_log_error(r, line, data_batch, r->elapsed0 + (t - t_start));
            if (diverged(r, mean, stats.last_loss)) return 2;
            if (boundary) {
                history_push(&r->hist, mean);
                if ((st = ddx_trainer_stats_reset(&r->tr, 0.0, 0))) return fail(st);
                t_log = t;
                step_log = step;
            }
        }
        if (cfg->train.checkpoint_every > 0 && step % cfg->train.checkpoint_every == 0 && step != total) {
            if ((st = ddx_trainer_stats_read(&r->tr, &stats))) return fail(st);
            // Only weights that pass the divergence rule become a checkpoint.
            if (stats.loss_n > 0 && diverged(r, stats.loss_sum / (double)stats.loss_n, stats.last_loss)) return 2;
            st = save_checkpoint(r, data_batch, stats.loss_sum, stats.loss_n, r->elapsed0 + (now_s() - t_start));
            if (st) return fail(st);
        }
        if (cfg->train.sample_every > 0 && step % cfg->train.sample_every == 0 && step != total) {
            char name[64];
            snprintf(name, sizeof name, "step_%07" PRId64, step);
            st = save_samples(r, name);
            if (st) return fail(st);
            refresh_report(r);
        }
        if (cfg->eval.fid_every > 0 && step % cfg->eval.fid_every == 0 && step != total) {
            st = run_fid(r, data_batch, r->elapsed0 + (now_s() - t_start));
            if (st == DDX_E_IO) return 2;   // the log failed: stop_on_log_error said so and saved
            if (st) return fail(st);
        }
    }
    // Interrupted or done: both leave a checkpoint to resume from.
    r->collective_end = true;
    if (!r->lead) return g_signal ? 128 + g_signal : 0;
    if ((st = ddx_trainer_stats_read(&r->tr, &stats))) return fail(st);
    if (stats.loss_n > 0 && diverged(r, stats.loss_sum / (double)stats.loss_n, stats.last_loss)) return 2;
    st = save_checkpoint(r, data_batch, stats.loss_sum, stats.loss_n, r->elapsed0 + (now_s() - t_start));
    if (st) return fail(st);
    printf("checkpoint: %s (step %" PRId64 ")\n", r->good, r->tr.step);
    if (g_signal) {
        printf("interrupted by %s at step %" PRId64 "; continue with: ddx-train --resume %s\n",
               g_signal == SIGINT ? "SIGINT" : "SIGTERM", r->tr.step, r->dir);
        return 128 + g_signal;
    }
    char name[64];
    snprintf(name, sizeof name, "step_%07" PRId64, r->tr.step);
    st = save_samples(r, name);
    if (st) return fail(st);
    if (cfg->eval.fid_every > 0) {
        st = run_fid(r, data_batch, r->elapsed0 + (now_s() - t_start));
        if (st == DDX_E_IO) return 2;
        if (st) return fail(st);
    }
    refresh_report(r);
    int fd = r->log_fd;
    r->log_fd = -1;
    bool synced = fsync(fd) == 0;
    if (close(fd) != 0 || !synced)
        return fail(ddx_errorf(DDX_E_IO, "%s: closing the log failed (%s); the checkpoint %s is complete", r->log_path,
                               strerror(errno), r->good));
    printf("done: %" PRId64 " steps in %.1f s; run folder %s\n", r->tr.step, now_s() - t_start, r->dir);
    return 0;
}

// One ddx-train per run folder: an exclusive flock on RUN/.lock, held until the process ends
// (the kernel drops it however the process ends, so a stale lock never blocks a resume).
static ddx_status lock_run(run *r) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/.lock", r->dir);
    DDX_TRY(ddx_output_check(p, "run folder lock"));
    int fd = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return ddx_errorf(DDX_E_IO, "%s: cannot open the run folder's lock file: %s", p, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char buf[32] = {0};
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        close(fd);
        if (e == EWOULDBLOCK) {
            if (pid > 0)
                return ddx_errorf(DDX_E_INPUT, "%s: another ddx-train (pid %ld) is training in this run folder; wait for it or stop it",
                                  r->dir, pid);
            return ddx_errorf(DDX_E_INPUT, "%s: another ddx-train is training in this run folder; wait for it or stop it", r->dir);
        }
        return ddx_errorf(DDX_E_IO, "%s: cannot lock: %s", p, strerror(e));
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return ddx_errorf(DDX_E_IO, "%s: cannot write the lock file: %s", p, strerror(e));
    }
    r->lock_fd = fd;
    return DDX_OK;
}

// Undoes a new run folder whose start failed: only the entries this start creates.
static void remove_new_run(run *r) {
    static const char *const files[] = {"config.yaml", "log.jsonl", ".lock", "run_info.json", "loss.png", "report.html"};
    static const char *const dirs[] = {"checkpoints", "samples"};
    char p[PATH_MAX + 64];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", r->dir, files[i]);
        unlink(p);
    }
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", r->dir, dirs[i]);
        (void)ddx_atomic_sweep(p, NULL, NULL);
        rmdir(p);
    }
    (void)ddx_atomic_sweep(r->dir, NULL, NULL);
    rmdir(r->dir);
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
    r.log_fd = r.lock_fd = -1;
    r.good_step = -1;
    ddx_status st;
    // Who this process is in a multi-rank job (mpirun, srun or torchrun-style variables).
    ddx_launch launch;
    if ((st = ddx_launch_from_env(&launch))) {
        free(sets);
        return fail(st);
    }
    r.lead = launch.rank == 0;
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
        // Reading the checkpoint needs no lock (it is replaced by rename, never rewritten in
        // place); everything from here on writes into the run folder.
        if (r.lead && (st = lock_run(&r))) {
            ddx_checkpoint_close(&ck);
            free(sets);
            return fail(st);
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

    // Everything that can fail on the config, the data or memory is checked before a new run
    // folder exists, so a failed start leaves nothing behind.
    ddx_device dev;
    char why[512];
    bool cpu_fallback = false;
    st = ddx_device_pick(cfg->run.device, &dev, why, sizeof why, &cpu_fallback);
    // Before the trainer makes its CUDA context: the comm selects this rank's GPU.
    // DDX_COMM=nccl: the NCCL path even at world 1 (one GPU: the GPU suite checks it).
    const char *force = getenv("DDX_COMM");
    if (!st && force && *force && strcmp(force, "nccl") != 0)
        st = ddx_errorf(DDX_E_INPUT, "DDX_COMM='%s': the only value is nccl (unset it otherwise)", force);
    if (!st) st = ddx_comm_init(&launch, dev, cfg->run.comm_timeout_s, force && !strcmp(force, "nccl"), &r.comm);
    if (!st) st = ddx_dataset_load(cfg, &r.data);
    // A class-conditional model trains on the data set's classes, all of them and no others.
    if (!st && cfg->model.num_classes > 0 && r.data.num_classes == 0)
        st = ddx_errorf(DDX_E_INPUT,
                        "model.num_classes is %d but the data set (%s) has no labels: use a labelled set (an image folder "
                        "gets one class per sub-folder) or model.num_classes: 0",
                        cfg->model.num_classes, r.data.desc);
    else if (!st && cfg->model.num_classes > 0 && r.data.num_classes != cfg->model.num_classes)
        st = ddx_errorf(DDX_E_INPUT, "model.num_classes is %d but the data set (%s) has %d classes: set model.num_classes: %d",
                        cfg->model.num_classes, r.data.desc, r.data.num_classes, r.data.num_classes);
    for (int64_t i = 0; !st && cfg->model.num_classes > 0 && i < r.data.n; i++)
        if (r.data.labels[i] < 0 || r.data.labels[i] >= cfg->model.num_classes)
            st = ddx_errorf(DDX_E_INPUT, "data set (%s): image %lld has label %d, outside 0..%d (model.num_classes %d)", r.data.desc,
                            (long long)i, (int)r.data.labels[i], cfg->model.num_classes - 1, cfg->model.num_classes);
    if (!st && cfg->train.batch_size > r.data.n)
        st = ddx_errorf(DDX_E_INPUT, "train.batch_size %d is larger than the data set (%lld images): lower train.batch_size",
                        cfg->train.batch_size, (long long)r.data.n);
    if (!st) {
        st = ddx_trainer_init(&r.tr, cfg, dev);
        if (st == DDX_E_NOMEM)
            st = ddx_errorf(DDX_E_INPUT, "out of memory building the model and its training state (%s): lower model.ch, "
                            "model.ch_mult, model.num_res_blocks or model.image_size (train.batch_size sizes the activations)",
                            ddx_last_error());
    }
    if (!st) st = ddx_trainer_set_comm(&r.tr, r.comm, cfg->run.comm_bucket_mb);
    if (!st && r.lead && cfg->eval.fid_every > 0) {
        // Rank 0 evaluates (the other ranks wait in the next collective). The weights and the
        // reference are read now: a missing file stops the start, not the
        // first evaluation hours later.
        st = ddx_inception_path(cfg->eval.inception, "eval.inception", r.fid_weights, sizeof r.fid_weights, NULL);
        if (!st) st = ddx_inception_load(r.fid_weights, dev, DDX_INCEPTION_FP32, 0, &r.fid_net);
        if (!st) st = ddx_ref_load(cfg->eval.ref, "eval.ref", r.fid_net, cfg->data.max_image_pixels, &r.fid_ref, NULL);
        if (!st && cfg->eval.fid_samples > INT_MAX)
            st = ddx_errorf(DDX_E_INPUT, "eval.fid_samples: %lld is too many for one evaluation", (long long)cfg->eval.fid_samples);
    }
    if (!st && cfg->model.cond == DDX_COND_LOWRES) {
        // The grids super-resolve the data set's first images (low-res from models/lowres.h).
        const int gn = (int64_t)cfg->sample.n < r.data.n ? cfg->sample.n : (int)r.data.n;
        const size_t img = (size_t)r.data.size * (size_t)r.data.size * (size_t)r.data.channels;
        float *g = malloc((size_t)gn * img * sizeof *g);
        if (!g) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
        for (size_t i = 0; g && i < (size_t)gn * img; i++) g[i] = (float)r.data.pixels[i] / 127.5f - 1.0f;
        if (!st) st = ddx_trainer_set_sample_cond(&r.tr, g, gn);
        free(g);
    }
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
    r.elapsed0 = have_ck ? resumed.elapsed_s : 0.0;
    if (have_ck) {
        snprintf(r.good, sizeof r.good, "%s", r.ckpt);
        r.good_step = resumed.step;
    }

    bool created = false;
    if (!r.lead) {
        // Every other rank trains along; rank 0 alone writes the run folder.
        if (have_ck) ddx_checkpoint_close(&ck);
        int rc = train(&r, have_ck ? &resumed : NULL);
        bool together = r.collective_end;
        ddx_comm *comm = r.comm;
        r.comm = NULL;
        run_free(&r);
        if (!together) ddx_comm_abort(comm, rc ? rc : 1, "this rank stopped on its own; stopping every rank");
        ddx_comm_finalize(comm);
        return rc;
    }
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
            if (mkdir(r.dir, 0777) == 0) {
                created = true;
                break;
            }
            if (errno != EEXIST || k > 100)
                st = ddx_errorf(DDX_E_INPUT, "run.out_dir: cannot create '%s': %s; set run.out_dir to a writable folder", r.dir,
                                strerror(errno));
        }
        snprintf(r.ckpt, sizeof r.ckpt, "%s/checkpoints/last.safetensors", r.dir);
        if (!st) st = lock_run(&r);
    }
    char sub[PATH_MAX + 64];
    snprintf(sub, sizeof sub, "%s/checkpoints", r.dir);
    if (!st) st = make_dir(sub, "run.out_dir");
    // A save killed mid-write (SIGKILL, power loss) leaves its temp file: a whole checkpoint.
    int swept = 0;
    uint64_t swept_bytes = 0;
    if (!st) st = ddx_atomic_sweep(sub, &swept, &swept_bytes);
    snprintf(sub, sizeof sub, "%s/samples", r.dir);
    if (!st) st = make_dir(sub, "run.out_dir");
    snprintf(sub, sizeof sub, "%s/config.yaml", r.dir);
    if (!st) st = ddx_config_save(cfg, sub);
    snprintf(r.log_path, sizeof r.log_path, "%s/log.jsonl", r.dir);
    if (!st && have_ck) st = log_truncate(r.log_path, resumed.step, &r.hist);
    if (have_ck) ddx_checkpoint_close(&ck);
    if (!st) st = ddx_output_check(r.log_path, "log.jsonl");
    if (!st && (r.log_fd = open(r.log_path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0)
        st = ddx_errorf(DDX_E_IO, "%s: cannot write: %s", r.log_path, strerror(errno));
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ddx_last_error());
        if (created) remove_new_run(&r);
        run_free(&r);
        fprintf(stderr, "ddx-train: %s%s\n", msg, created ? " (the new run folder was removed)" : "");
        return ddx_exit_code(st);
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
    if (swept)
        printf("checkpoints: removed %d stale temp file%s (%.1f MiB) left by an interrupted save\n", swept, swept == 1 ? "" : "s",
               (double)swept_bytes / (1 << 20));
    if (have_ck) printf("resuming at step %" PRId64 " (data batch %" PRId64 ")\n", resumed.step, resumed.data_batch);
    fflush(stdout);
    char world[256] = "1 rank";
    if (r.tr.dp) {
        char w[256];
        ddx_comm_describe(r.comm, &launch, w, sizeof w);
        printf("world: %s; global batch %d, %lld row(s) on rank 0\n", w, cfg->train.batch_size, (long long)r.tr.dp->n);
        fflush(stdout);
        snprintf(world, sizeof world, "%s", w);
    }
    write_run_info(&r, dev, why, have_ck, world, argc, argv);
    int rc = train(&r, have_ck ? &resumed : NULL);
    // A new run that failed before its first step (the activations of step 1 did not fit) has
    // nothing worth keeping: it goes like any other failed start.
    bool empty = created && rc != 0 && r.tr.step == 0 && r.good_step < 0;
    bool together = r.collective_end;
    ddx_comm *comm = r.comm;
    r.comm = NULL;
    run_free(&r);
    if (empty) remove_new_run(&r);
    // A rank that ends alone (an error, the divergence rule) takes the others down with it
    // rather than leave them waiting in the next collective; its files are already final.
    if (ddx_comm_world(comm) > 1 && !together) ddx_comm_abort(comm, rc ? rc : 1, "stopping every rank");
    ddx_comm_finalize(comm);
    return rc;
}
