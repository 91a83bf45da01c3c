// ddx-eval: FID / KID / IS and PSNR / SSIM.
//
//   ddx-eval stats --config C.yaml [--split train|test] --out ref.npz
//   ddx-eval fid --checkpoint F --ref ref.npz|DIR [--n 50000] [--sampler ddim] [--steps 50] ...
//   ddx-eval fid --images DIR --ref ref.npz|DIR2
//   ddx-eval psnr-ssim --ref A --pred B
//
// Every subcommand prints progress (img/s, ETA) on stderr and its result as one JSON object on
// stdout; `fid --checkpoint` also appends it to the run's log.jsonl when the checkpoint is
// RUN/checkpoints/*.safetensors. Bad input exits 2 with one line, before any output is written.
//
// Resumable generation (fid --checkpoint): images are drawn in shards of --shard images (image
// i always gets the noise of index i: models/sampler.h ddx_sampling_run_at), and each shard's
// features are written to the work folder as soon as they exist (atomic safetensors with the
// checkpoint's and the Inception weights' SHA-256 and every setting that changes the images in
// its metadata). A rerun of the same command adds the finished shards' features in shard order
// and draws only the rest, so an interrupted run ends with the numbers an uninterrupted one
// gives. A shard made with anything else is refused, naming the setting. The folder is removed
// after a successful run unless --keep-work.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval/fidrun.h"
#include "eval/gen.h"
#include "eval/metrics.h"
#include "eval/sha256.h"
#include "models/classes.h"
#include "models/device.h"
#include "runtime/outfile.h"
#include "runtime/safetensors.h"
#include "train/data.h"

#define SHARD_FORMAT "ddx-fid-shard-1"

// ---- small helpers ---------------------------------------------------------------------------
static int fail(ddx_status st) {
    fprintf(stderr, "ddx-eval: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

typedef struct prog {
    const char *what;
    double t0, last;
    int64_t base;   // items done before this process started (resumed shards)
} prog;

static void prog_start(prog *p, const char *what, int64_t base) {
    p->what = what;
    p->t0 = p->last = ddx_now_s();
    p->base = base;
}

static void prog_show(prog *p, int64_t done, int64_t total, bool force) {
    double t = ddx_now_s();
    if (!force && t - p->last < 1.0) return;
    p->last = t;
    double rate = (double)(done - p->base) / (t - p->t0 > 1e-9 ? t - p->t0 : 1e-9);
    char eta[32];
    ddx_fmt_duration(rate > 0 ? (double)(total - done) / rate : -1, eta, sizeof eta);
    fprintf(stderr, "\r%s: %" PRId64 "/%" PRId64 " images, %.2f img/s, ETA %s   ", p->what, done, total, rate, eta);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static prog g_ref_prog;
static void ref_progress(int64_t done, int64_t total, const char *label) {
    if (!g_ref_prog.what) prog_start(&g_ref_prog, label, 0);
    prog_show(&g_ref_prog, done, total, done >= total);
}

// One JSON object, built by appending members.
typedef struct json {
    char b[8192];
    size_t n;
} json;

static void j_raw(json *j, const char *key, const char *val) {
    if (j->n >= sizeof j->b - 1) return;
    j->n += (size_t)snprintf(j->b + j->n, sizeof j->b - j->n, "%s\"%s\":%s", j->n > 1 ? "," : "", key, val);
    if (j->n > sizeof j->b - 1) j->n = sizeof j->b - 1;
}
static void j_num(json *j, const char *key, double v) {
    char t[64];
    if (isfinite(v)) snprintf(t, sizeof t, "%.10g", v);
    else snprintf(t, sizeof t, "null");
    j_raw(j, key, t);
}
static void j_int(json *j, const char *key, int64_t v) {
    char t[32];
    snprintf(t, sizeof t, "%" PRId64, v);
    j_raw(j, key, t);
}
static void j_str(json *j, const char *key, const char *v) {
    char t[2048];
    size_t o = 0;
    t[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)v; *p && o < sizeof t - 8; p++) {
        if (*p == '"' || *p == '\\') t[o++] = '\\', t[o++] = (char)*p;
        else if (*p < 0x20) o += (size_t)snprintf(t + o, sizeof t - o, "\\u%04x", *p);
        else t[o++] = (char)*p;
    }
    t[o++] = '"';
    t[o] = 0;
    j_raw(j, key, t);
}
static void j_begin(json *j) {
    j->b[0] = '{';
    j->n = 1;
}
static const char *j_end(json *j) {
    if (j->n < sizeof j->b - 1) j->b[j->n++] = '}';
    j->b[j->n] = 0;
    return j->b;
}

// The value of a flag; "--x needs a value" otherwise.
static ddx_status take(int argc, char **argv, int *i, const char **slot) {
    if (*i + 1 >= argc) return ddx_errorf(DDX_E_INPUT, "%s needs a value (see ddx-eval %s --help)", argv[*i], argv[0]);
    *slot = argv[++*i];
    return DDX_OK;
}

static ddx_status load_inception(const char *flag_path, ddx_device dev, int batch, ddx_inception **net, char *path,
                                 size_t cap) {
    const char *source = NULL;
    DDX_TRY(ddx_inception_path(flag_path, "--inception", path, cap, &source));
    ddx_status st = ddx_inception_load(path, dev, DDX_INCEPTION_FP32, batch, net);
    if (st)
        return ddx_errorf(st, "%s; fetch the weights with %s (or point --inception / DDX_INCEPTION at them)", ddx_last_error(),
                          DDX_INCEPTION_FETCH);
    return DDX_OK;
}

static void j_result(json *j, const ddx_fid_result *r) {
    j_num(j, "fid", r->fid);
    if (r->have_kid) {
        j_num(j, "kid", r->kid);
        j_num(j, "kid_std", r->kid_std);
        j_int(j, "kid_subset_size", r->kid_subset);
    } else {
        j_raw(j, "kid", "null");
    }
    if (r->have_is) {
        j_num(j, "is", r->is);
        j_num(j, "is_std", r->is_std);
    }
}

// ---- the run folder's log --------------------------------------------------------------------
// RUN when path is RUN/checkpoints/NAME.safetensors and RUN has a log.jsonl (a ddx-train run).
static bool run_folder_of(const char *ckpt, char *run, size_t cap) {
    char buf[PATH_MAX];
    if (!realpath(ckpt, buf)) return false;
    char *slash = strrchr(buf, '/');
    if (!slash) return false;
    *slash = 0;
    slash = strrchr(buf, '/');
    if (!slash || strcmp(slash + 1, "checkpoints") != 0) return false;
    *slash = 0;
    char log[PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/log.jsonl", buf);
    struct stat sb;
    if (stat(log, &sb) != 0 || !S_ISREG(sb.st_mode)) return false;
    return snprintf(run, cap, "%s", buf) < (int)cap;
}

// Appends one line to RUN/log.jsonl under the run's lock (the one ddx-train holds while it
// trains), with one checked write that is cut back off if it fails half-way, as ddx-train's
// own log lines are. A run that is training now is not written to (*skipped says so): its
// trainer logs its own evaluations.
static ddx_status log_append_run(const char *run, const char *line, bool *skipped) {
    *skipped = false;
    char lock[PATH_MAX + 16], log[PATH_MAX + 16];
    snprintf(lock, sizeof lock, "%s/.lock", run);
    snprintf(log, sizeof log, "%s/log.jsonl", run);
    DDX_TRY(ddx_output_check(lock, "run folder lock"));
    DDX_TRY(ddx_output_check(log, "log.jsonl"));
    int lfd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (lfd < 0) return ddx_errorf(DDX_E_IO, "%s: cannot open the run folder's lock file: %s", lock, strerror(errno));
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(lfd);
        if (e == EWOULDBLOCK) {
            *skipped = true;
            return DDX_OK;
        }
        return ddx_errorf(DDX_E_IO, "%s: cannot lock: %s", lock, strerror(e));
    }
    ddx_status st = DDX_OK;
    int fd = open(log, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) st = ddx_errorf(DDX_E_IO, "%s: cannot write: %s", log, strerror(errno));
    if (!st) {
        off_t at = lseek(fd, 0, SEEK_END);
        size_t n = strlen(line), done = 0;
        int e = at < 0 ? errno : 0;
        while (!e && done < n) {
            ssize_t w = write(fd, line + done, n - done);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) e = w < 0 ? errno : EIO;
            else done += (size_t)w;
        }
        if (!e && fsync(fd) != 0) e = errno;
        if (e && at >= 0 && done > 0) (void)ftruncate(fd, at);
        if (e) st = ddx_errorf(DDX_E_IO, "%s: writing the result failed (%s); the result above was not logged", log, strerror(e));
        if (close(fd) != 0 && !st) st = ddx_errorf(DDX_E_IO, "%s: closing the log failed (%s)", log, strerror(errno));
    }
    close(lfd);   // releases the lock
    return st;
}

// ---- stats -----------------------------------------------------------------------------------
static void usage_stats(FILE *f) {
    fprintf(f,
            "usage: ddx-eval stats --config C.yaml [--set key=value ...] [--split train|test] [--limit N]\n"
            "                      --out ref.npz [--inception FILE] [--batch B]\n"
            "  Reference statistics of the data set the config names (data.dataset, data.path,\n"
            "  data.image_size): each image as the loader holds it (uint8), /255, through the FID\n"
            "  Inception; mean and covariance (N-1) in fp64 as pytorch-fid's .npz (mu, sigma), plus\n"
            "  OUT.npz" DDX_REF_FEATURES_SUFFIX " with the first %d features (for KID).\n"
            "  --split      train (default) or test (Fashion-MNIST t10k, CIFAR-10 test_batch)\n"
            "  --limit N    only the first N images (quicker, biased statistics)\n"
            "  --inception  the weights (default $DDX_INCEPTION, else ~/.cache/ddx/" DDX_INCEPTION_FILE ";\n"
            "               " DDX_INCEPTION_FETCH " fetches them)\n"
            "  --batch B    images per Inception forward pass\n"
            "  --class K    only the images of class K (a number or a class name of the data set): the\n"
            "               reference for ddx-eval fid --class K\n",
            DDX_KID_KEEP);
}

static int cmd_stats(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *split = "train", *limit_s = NULL, *incep = NULL, *batch_s = NULL;
    const char *class_s = NULL;
    const char *sets[64];
    int nsets = 0;
    ddx_status st = DDX_OK;
    for (int i = 1; i < argc && !st; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_stats(stdout);
            return 0;
        } else if (!strcmp(a, "--config")) st = take(argc, argv, &i, &config);
        else if (!strcmp(a, "--out")) st = take(argc, argv, &i, &out);
        else if (!strcmp(a, "--split")) st = take(argc, argv, &i, &split);
        else if (!strcmp(a, "--limit")) st = take(argc, argv, &i, &limit_s);
        else if (!strcmp(a, "--inception")) st = take(argc, argv, &i, &incep);
        else if (!strcmp(a, "--batch")) st = take(argc, argv, &i, &batch_s);
        else if (!strcmp(a, "--class")) st = take(argc, argv, &i, &class_s);
        else if (!strcmp(a, "--set")) {
            if (nsets == 64) st = ddx_errorf(DDX_E_INPUT, "--set: at most 64");
            else st = take(argc, argv, &i, &sets[nsets++]);
        } else st = ddx_errorf(DDX_E_INPUT, "stats: unknown argument '%s' (see ddx-eval stats --help)", a);
    }
    if (!st && (!config || !out)) st = ddx_errorf(DDX_E_INPUT, "stats: --config and --out are required (see ddx-eval stats --help)");
    if (!st && strcmp(split, "train") && strcmp(split, "test")) st = ddx_errorf(DDX_E_INPUT, "--split '%s': use train or test", split);
    int64_t limit = 0, batch = 0;
    if (!st && limit_s) st = ddx_parse_i64("--limit", limit_s, 2, INT64_MAX, &limit);
    if (!st && batch_s) st = ddx_parse_i64("--batch", batch_s, 1, 4096, &batch);
    // Both outputs are checked before the data and the network are loaded.
    char feat_path[PATH_MAX + 64];
    if (!st && snprintf(feat_path, sizeof feat_path, "%s%s", out, DDX_REF_FEATURES_SUFFIX) >= (int)sizeof feat_path)
        st = ddx_errorf(DDX_E_INPUT, "--out: path too long");
    if (!st) st = ddx_output_check(out, "--out");
    if (!st) st = ddx_output_check(feat_path, "--out");
    ddx_config cfg;
    if (!st) st = ddx_config_resolve(&cfg, config, sets, nsets);
    char ipath[PATH_MAX];
    ddx_inception *net = NULL;
    ddx_device dev = DDX_CPU;
    char why[256];
    if (!st) st = ddx_device_pick(cfg.run.device, &dev, why, sizeof why, NULL);
    // The weights' path, then the data set, then the network: the cheap refusals first.
    if (!st) st = ddx_inception_path(incep, "--inception", ipath, sizeof ipath, NULL);
    ddx_dataset ds = {0};
    if (!st && cfg.data.dataset == DDX_DATASET_IMAGE_FOLDER && !strcmp(split, "test"))
        st = ddx_errorf(DDX_E_INPUT, "--split test: an image folder has no test split; set data.path to the test images "
                                     "and use --split train");
    if (!st) st = ddx_dataset_load_split(&cfg, !strcmp(split, "test"), &ds);
    int32_t cls = -1;
    if (!st && class_s && ds.num_classes <= 0)
        st = ddx_errorf(DDX_E_INPUT, "--class: %s has no classes (an image folder gets one per sub-folder)", ds.desc);
    if (!st && class_s) st = ddx_class_lookup(ds.class_names, ds.num_classes, class_s, "--class", &cls);
    if (!st && cls >= 0) {
        // Keep class cls's images, in order, in place.
        const size_t per = (size_t)ds.size * ds.size * ds.channels;
        int64_t k = 0;
        for (int64_t i = 0; i < ds.n; i++)
            if (ds.labels[i] == cls) {
                if (k != i) memmove(ds.pixels + (size_t)k * per, ds.pixels + (size_t)i * per, per);
                ds.labels[k++] = cls;
            }
        if (k < 2) st = ddx_errorf(DDX_E_INPUT, "--class %s: %s has %lld image(s) of that class; statistics need 2", class_s,
                                   ds.desc, (long long)k);
        ds.n = k;
    }
    if (!st) st = load_inception(incep, dev, (int)batch, &net, ipath, sizeof ipath);
    if (st) {
        ddx_inception_free(net);
        ddx_dataset_free(&ds);
        return fail(st);
    }
    int64_t n = limit && limit < ds.n ? limit : ds.n;
    char cls_name[128] = "";
    if (cls >= 0) ddx_class_name(ds.class_names, cls, cls_name, sizeof cls_name);
    fprintf(stderr, "stats of %s%s%s%s%s, Inception %s on %s\n", ds.desc, cls >= 0 ? ", class " : "", cls_name,
            cls >= 0 && n < ds.n ? "," : "", n < ds.n ? " (first images only)" : "", ipath, ddx_device_name(dev));
    ddx_featset f;
    st = ddx_featset_init(&f, DDX_KID_KEEP, false);
    const int64_t chunk = 256;
    const size_t per = (size_t)ds.size * ds.size * ds.channels;
    float *pool3 = malloc((size_t)chunk * DDX_INCEPTION_FEATURES * sizeof *pool3);
    if (!st && !pool3) st = ddx_errorf(DDX_E_NOMEM, "out of memory for features");
    prog p;
    prog_start(&p, "stats", 0);
    double t0 = ddx_now_s();
    for (int64_t i0 = 0; i0 < n && !st; i0 += chunk) {
        int64_t k = n - i0 < chunk ? n - i0 : chunk;
        st = ddx_features_u8(net, ds.pixels + (size_t)i0 * per, k, ds.size, ds.size, ds.channels, pool3, NULL);
        if (!st) st = ddx_featset_add(&f, pool3, NULL, k);
        if (!st) prog_show(&p, i0 + k, n, i0 + k == n);
    }
    double dt = ddx_now_s() - t0;
    free(pool3);
    char src[600];
    snprintf(src, sizeof src, "%s", ds.desc);
    if (!st) st = ddx_ref_write(out, "--out", &f, src);
    ddx_featset_free(&f);
    ddx_inception_free(net);
    ddx_dataset_free(&ds);
    if (st) return fail(st);
    json j;
    j_begin(&j);
    j_str(&j, "eval", "stats");
    j_str(&j, "config", config);
    j_str(&j, "dataset", src);
    j_str(&j, "split", split);
    if (cls >= 0) j_int(&j, "class", cls), j_str(&j, "class_name", cls_name);
    j_int(&j, "n", n);
    j_str(&j, "out", out);
    j_str(&j, "features", feat_path);
    j_num(&j, "seconds", dt);
    j_num(&j, "img_per_s", (double)n / dt);
    printf("%s\n", j_end(&j));
    return 0;
}

// ---- fid -------------------------------------------------------------------------------------
static void usage_fid(FILE *f) {
    fprintf(f,
            "usage: ddx-eval fid --checkpoint F.safetensors --ref ref.npz|DIR [options]\n"
            "       ddx-eval fid --images DIR --ref ref.npz|DIR2 [--inception FILE] [--batch B]\n"
            "  FID (pytorch-fid's), KID (torch-fidelity's: 100 subsets of 1000, polynomial kernel) and,\n"
            "  when the weights have the fc, IS (10 splits). Generated images are quantised to uint8\n"
            "  exactly as saved PNGs are, then /255, as the reference statistics are.\n"
            "  --checkpoint F    generate with the sampler from this checkpoint (EMA weights unless --no-ema)\n"
            "  --images DIR      instead: the .png/.jpg/.jpeg files under DIR\n"
            "  --ref R           a pytorch-fid .npz (mu, sigma; KID needs the features file ddx-eval stats\n"
            "                    writes next to it) or a folder of images\n"
            "  --n N             images to generate (default 50000; fewer than %d is refused for FID\n"
            "                    unless --allow-small: FID is strongly biased at small N)\n"
            "  --sampler S       ddpm, ddim, dpmpp2m, dpmpp3m, heun or euler_a (default ddim)\n"
            "  --steps S         steps of every sampler but ddpm (default 50)\n"
            "  --eta E           DDIM eta (default 0)          --seed S   noise seed (default run.seed)\n"
            "  --batch B         images per sampler forward pass (default train.batch_size)\n"
            "  --inception FILE  the weights (default $DDX_INCEPTION, else ~/.cache/ddx/" DDX_INCEPTION_FILE ";\n"
            "                    " DDX_INCEPTION_FETCH " fetches them)\n"
            "  --work DIR        shard folder of a resumable run (default next to the checkpoint:\n"
            "                    F.fid-<sha>-<sampler><steps>-eta<E>-seed<S>-n<N>/)\n"
            "  --shard K         images per shard (default 1000)\n"
            "  --keep-work       keep the shard folder after the run\n"
            "  --class K|NAME    class-conditional checkpoints: every image of class K (a number or a\n"
            "                    stored name), for the FID of one class against that class's\n"
            "                    reference (ddx-eval stats --class K); without it the labels cycle\n"
            "                    through all classes (image i has class i mod K)\n"
            "  --guidance W      classifier-free guidance scale (default the checkpoint's sample.guidance)\n"
            "  --no-ema          the raw weights\n"
            "  --no-log          do not append the result to the run's log.jsonl\n",
            DDX_FID_MIN_SAMPLES);
}

typedef struct shard_key {
    char ckpt_sha[65], incep_sha[65];
    char sampler[8];
    int steps;
    double eta;
    uint64_t seed;
    int spacing;
    bool ema;
    int64_t n, shard;
    // Class-conditional checkpoints only (the keys are absent otherwise, so unconditional
    // shards of earlier versions still resume): -1 = labels i mod num_classes.
    bool cond;
    int cls;
    double guidance;
} shard_key;

static void key_meta(const shard_key *k, char vals[][80], const char **keys, int *cnt) {
    int m = 0;
    keys[m] = "format", snprintf(vals[m++], 80, "%s", SHARD_FORMAT);
    keys[m] = "checkpoint_sha256", snprintf(vals[m++], 80, "%s", k->ckpt_sha);
    keys[m] = "inception_sha256", snprintf(vals[m++], 80, "%s", k->incep_sha);
    keys[m] = "sampler", snprintf(vals[m++], 80, "%s", k->sampler);
    keys[m] = "steps", snprintf(vals[m++], 80, "%d", k->steps);
    keys[m] = "eta", snprintf(vals[m++], 80, "%.17g", k->eta);
    keys[m] = "seed", snprintf(vals[m++], 80, "%" PRIu64, k->seed);
    keys[m] = "spacing", snprintf(vals[m++], 80, "%d", k->spacing);
    keys[m] = "ema", snprintf(vals[m++], 80, "%d", k->ema ? 1 : 0);
    keys[m] = "n", snprintf(vals[m++], 80, "%" PRId64, k->n);
    keys[m] = "shard_size", snprintf(vals[m++], 80, "%" PRId64, k->shard);
    if (k->cond) {
        keys[m] = "class", snprintf(vals[m++], 80, "%d", k->cls);
        keys[m] = "guidance", snprintf(vals[m++], 80, "%.17g", k->guidance);
    }
    *cnt = m;
}

// Reads shard `idx` into f when its file exists and was made with exactly this key. *found
// says whether there was one. A shard of another evaluation, or one that does not parse, is
// DDX_E_INPUT naming the file and what differs.
static ddx_status shard_read(const char *path, const shard_key *k, int64_t idx, int64_t count, bool want_logits,
                             ddx_featset *f, bool *found) {
    *found = false;
    struct stat sb;
    if (lstat(path, &sb) != 0) return DDX_OK;
    ddx_st_file sf;
    ddx_status st = ddx_st_read(path, &sf);
    if (st)
        return ddx_errorf(DDX_E_INPUT, "%s; remove the file to recompute that shard", ddx_last_error());
    char vals[16][80];
    const char *keys[16];
    int m;
    key_meta(k, vals, keys, &m);
    for (int i = 0; i < m && !st; i++) {
        const char *v = ddx_st_meta_get(&sf, keys[i]);
        if (!v || strcmp(v, vals[i]) != 0)
            st = ddx_errorf(DDX_E_INPUT,
                            "%s: made by another evaluation (%s is %s here, %s now); pass another --work or remove the folder",
                            path, keys[i], v ? v : "missing", vals[i]);
    }
    char idxs[32];
    snprintf(idxs, sizeof idxs, "%" PRId64, idx);
    const char *vi = ddx_st_meta_get(&sf, "index");
    if (!st && (!vi || strcmp(vi, idxs) != 0))
        st = ddx_errorf(DDX_E_INPUT, "%s: holds shard %s, not %s; remove the folder", path, vi ? vi : "?", idxs);
    const ddx_st_tensor *t = st ? NULL : ddx_st_find(&sf, "pool3");
    if (!st && (!t || t->dtype != DDX_ST_F32 || t->ndim != 2 || t->shape[0] != count || t->shape[1] != DDX_INCEPTION_FEATURES))
        st = ddx_errorf(DDX_E_INPUT, "%s: expected pool3 F32 [%" PRId64 ", %d]; remove the file to recompute that shard", path,
                        count, DDX_INCEPTION_FEATURES);
    const ddx_st_tensor *tl = st || !want_logits ? NULL : ddx_st_find(&sf, "logits");
    if (!st && want_logits &&
        (!tl || tl->dtype != DDX_ST_F32 || tl->ndim != 2 || tl->shape[0] != count || tl->shape[1] != DDX_INCEPTION_LOGITS))
        st = ddx_errorf(DDX_E_INPUT, "%s: expected logits F32 [%" PRId64 ", %d]; remove the file to recompute that shard", path,
                        count, DDX_INCEPTION_LOGITS);
    float *tmp = NULL, *tmpl = NULL;
    if (!st && !f) {   // validation only
        ddx_st_close(&sf);
        *found = true;
        return DDX_OK;
    }
    if (!st) {
        // Copies: the file's data may be unaligned for a foreign writer.
        tmp = malloc(t->nbytes);
        tmpl = tl ? malloc(tl->nbytes) : NULL;
        if (!tmp || (tl && !tmpl)) st = ddx_errorf(DDX_E_NOMEM, "out of memory reading %s", path);
    }
    if (!st) {
        memcpy(tmp, t->data, t->nbytes);
        if (tl) memcpy(tmpl, tl->data, tl->nbytes);
        st = ddx_featset_add(f, tmp, tmpl, count);
        if (st) st = ddx_errorf(st, "%s: %s; remove the file to recompute that shard", path, ddx_last_error());
    }
    free(tmp);
    free(tmpl);
    ddx_st_close(&sf);
    if (!st) *found = true;
    return st;
}

static ddx_status shard_write(const char *path, const shard_key *k, int64_t idx, int64_t first, int64_t count,
                              const float *pool3, const float *logits) {
    ddx_st_writer w;
    ddx_st_writer_init(&w);
    char vals[16][80];
    const char *keys[16];
    int m;
    key_meta(k, vals, keys, &m);
    ddx_status st = DDX_OK;
    for (int i = 0; i < m && !st; i++) st = ddx_st_writer_meta(&w, keys[i], vals[i]);
    char b[32];
    snprintf(b, sizeof b, "%" PRId64, idx);
    if (!st) st = ddx_st_writer_meta(&w, "index", b);
    snprintf(b, sizeof b, "%" PRId64, first);
    if (!st) st = ddx_st_writer_meta(&w, "first", b);
    const int64_t s1[2] = {count, DDX_INCEPTION_FEATURES}, s2[2] = {count, DDX_INCEPTION_LOGITS};
    if (!st) st = ddx_st_writer_add(&w, "pool3", DDX_ST_F32, 2, s1, pool3);
    if (!st && logits) st = ddx_st_writer_add(&w, "logits", DDX_ST_F32, 2, s2, logits);
    if (!st) st = ddx_st_write(&w, path);
    ddx_st_writer_free(&w);
    return st;
}

static ddx_status make_work_dir(const char *dir) {
    struct stat sb;
    if (lstat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) return ddx_errorf(DDX_E_INPUT, "--work: %s exists and is not a folder", dir);
        if (access(dir, W_OK | X_OK) != 0) return ddx_errorf(DDX_E_INPUT, "--work: folder %s is not writable", dir);
        return DDX_OK;
    }
    if (mkdir(dir, 0777) != 0)
        return ddx_errorf(DDX_E_INPUT, "--work: cannot create %s: %s; pass --work DIR in a writable place", dir, strerror(errno));
    return DDX_OK;
}

// Removes the shard files this evaluation made (by name) and the folder when it is then empty.
static void remove_work(const char *dir, int64_t shards) {
    char p[PATH_MAX + 64];
    for (int64_t s = 0; s < shards; s++) {
        snprintf(p, sizeof p, "%s/shard_%06" PRId64 ".safetensors", dir, s);
        unlink(p);
    }
    (void)ddx_atomic_sweep(dir, NULL, NULL);
    rmdir(dir);
}

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

#define MAX_PIXELS (INT64_C(1) << 26)

// Progress inside a shard: the sampler reports denoising steps over its batches.
typedef struct shard_prog {
    prog *p;
    int64_t first, count, n;
} shard_prog;

static void shard_progress(int done, int total, void *arg) {
    shard_prog *sp = arg;
    // Sampling is most of a shard's time; count a shard's images as done when its steps are.
    int64_t at = sp->first + (total > 0 ? sp->count * done / total : 0);
    if (at < sp->first + sp->count) prog_show(sp->p, at, sp->n, false);
}

static int fid_images(const char *images, const char *ref, const char *incep, int64_t batch) {
    char ipath[PATH_MAX];
    ddx_inception *net = NULL;
    ddx_device dev;
    char why[256];
    // Cheap refusals first (a .npz of the wrong shape, a broken image, no weights), then the
    // network.
    ddx_ref r = {0};
    ddx_status st = is_dir(ref) ? DDX_OK : ddx_ref_load(ref, "--ref", NULL, MAX_PIXELS, &r, NULL);
    ddx_imgdir d = {0}, rd = {0};
    if (!st) st = ddx_imgdir_list(images, "--images", &d);
    if (!st) st = ddx_imgdir_check(&d, MAX_PIXELS);
    if (!st && is_dir(ref)) st = ddx_imgdir_list(ref, "--ref", &rd);
    if (!st && is_dir(ref)) st = ddx_imgdir_check(&rd, MAX_PIXELS);
    ddx_imgdir_free(&rd);
    if (!st) st = ddx_device_pick(DDX_RUN_DEVICE_AUTO, &dev, why, sizeof why, NULL);
    if (!st) st = load_inception(incep, dev, (int)batch, &net, ipath, sizeof ipath);
    if (!st && is_dir(ref)) st = ddx_ref_load(ref, "--ref", net, MAX_PIXELS, &r, ref_progress);
    ddx_featset f = {0};
    bool logits = net && ddx_inception_has_logits(net);
    if (!st) st = ddx_featset_init(&f, DDX_KID_KEEP, logits);
    if (!st && logits) st = ddx_featset_unbias(&f, ipath);
    double t0 = ddx_now_s();
    g_ref_prog.what = NULL;
    if (!st) st = ddx_features_dir(net, &d, MAX_PIXELS, &f, ref_progress, "images");
    double dt = ddx_now_s() - t0;
    ddx_fid_result res;
    if (!st && ddx_fstats_count(f.st) < 2)
        st = ddx_errorf(DDX_E_INPUT, "--images: %s holds 1 image; FID needs at least 2", images);
    if (!st) st = ddx_fid_finish(&f, &r, &res);
    json j;
    if (!st) {
        j_begin(&j);
        j_str(&j, "eval", "fid");
        j_str(&j, "images", images);
        j_str(&j, "ref", ref);
        j_int(&j, "n", res.n);
        j_int(&j, "n_ref", r.n);
        j_result(&j, &res);
        j_str(&j, "inception", ipath);
        j_num(&j, "seconds", dt);
        printf("%s\n", j_end(&j));
    }
    ddx_featset_free(&f);
    ddx_ref_free(&r);
    ddx_inception_free(net);
    ddx_imgdir_free(&d);
    return st ? fail(st) : 0;
}

static int cmd_fid(int argc, char **argv) {
    const char *ckpt = NULL, *images = NULL, *ref = NULL, *incep = NULL, *work = NULL, *config = NULL;
    const char *n_s = NULL, *sampler_s = "ddim", *steps_s = NULL, *eta_s = NULL, *seed_s = NULL, *batch_s = NULL,
               *shard_s = NULL, *class_s = NULL, *ibatch_s = NULL, *guidance_s = NULL;
    bool allow_small = false, keep_work = false, no_ema = false, no_log = false;
    ddx_status st = DDX_OK;
    for (int i = 1; i < argc && !st; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_fid(stdout);
            return 0;
        } else if (!strcmp(a, "--allow-small")) allow_small = true;
        else if (!strcmp(a, "--keep-work")) keep_work = true;
        else if (!strcmp(a, "--no-ema")) no_ema = true;
        else if (!strcmp(a, "--no-log")) no_log = true;
        else if (!strcmp(a, "--checkpoint")) st = take(argc, argv, &i, &ckpt);
        else if (!strcmp(a, "--config")) st = take(argc, argv, &i, &config);
        else if (!strcmp(a, "--images")) st = take(argc, argv, &i, &images);
        else if (!strcmp(a, "--ref")) st = take(argc, argv, &i, &ref);
        else if (!strcmp(a, "--inception")) st = take(argc, argv, &i, &incep);
        else if (!strcmp(a, "--work")) st = take(argc, argv, &i, &work);
        else if (!strcmp(a, "--n")) st = take(argc, argv, &i, &n_s);
        else if (!strcmp(a, "--sampler")) st = take(argc, argv, &i, &sampler_s);
        else if (!strcmp(a, "--steps")) st = take(argc, argv, &i, &steps_s);
        else if (!strcmp(a, "--eta")) st = take(argc, argv, &i, &eta_s);
        else if (!strcmp(a, "--seed")) st = take(argc, argv, &i, &seed_s);
        else if (!strcmp(a, "--batch")) st = take(argc, argv, &i, &batch_s);
        else if (!strcmp(a, "--inception-batch")) st = take(argc, argv, &i, &ibatch_s);
        else if (!strcmp(a, "--shard")) st = take(argc, argv, &i, &shard_s);
        else if (!strcmp(a, "--class")) st = take(argc, argv, &i, &class_s);
        else if (!strcmp(a, "--guidance")) st = take(argc, argv, &i, &guidance_s);
        else st = ddx_errorf(DDX_E_INPUT, "fid: unknown argument '%s' (see ddx-eval fid --help)", a);
    }
    if (st) return fail(st);
    if (!ref) return fail(ddx_errorf(DDX_E_INPUT, "fid: --ref ref.npz|DIR is required (see ddx-eval fid --help)"));
    if (!!ckpt == !!images)
        return fail(ddx_errorf(DDX_E_INPUT, "fid: give exactly one of --checkpoint F and --images DIR (see ddx-eval fid --help)"));
    int64_t ibatch = 0;
    if (ibatch_s && (st = ddx_parse_i64("--inception-batch", ibatch_s, 1, 4096, &ibatch))) return fail(st);
    if (images) {
        if (n_s || steps_s || eta_s || seed_s || batch_s || shard_s || work || class_s || guidance_s || no_ema)
            return fail(ddx_errorf(DDX_E_INPUT, "fid --images: generation flags (--n, --steps, ...) apply to --checkpoint only"));
        return fid_images(images, ref, incep, ibatch);
    }
    // ---- generated images ----
    int64_t n = 50000, steps = 50, seed = -1, batch = 0, shard = 1000;
    double eta = 0.0;
    ddx_sampler kind;
    if ((st = ddx_sampler_parse(sampler_s, "--sampler", &kind)) != DDX_OK) return fail(st);
    if (n_s) st = ddx_parse_i64("--n", n_s, 2, 10000000, &n);
    if (!st && steps_s && kind == DDX_SAMPLER_DDPM)
        st = ddx_errorf(DDX_E_INPUT, "--steps: DDPM always runs diffusion.timesteps steps; use --sampler ddim for fewer");
    if (!st && steps_s) st = ddx_parse_i64("--steps", steps_s, 1, 100000, &steps);
    if (!st && eta_s) st = ddx_parse_f64("--eta", eta_s, 0.0, 1.0, &eta);
    if (!st && seed_s) st = ddx_parse_i64("--seed", seed_s, 0, INT64_MAX, &seed);
    if (!st && batch_s) st = ddx_parse_i64("--batch", batch_s, 1, 65536, &batch);
    if (!st && shard_s) st = ddx_parse_i64("--shard", shard_s, 1, 1000000, &shard);
    if (!st && n < DDX_FID_MIN_SAMPLES && !allow_small)
        st = ddx_errorf(DDX_E_INPUT,
                        "--n %" PRId64 ": FID from fewer than %d samples is strongly biased; use --n %d or more (50000 for "
                        "numbers comparable with papers), or pass --allow-small",
                        n, DDX_FID_MIN_SAMPLES, DDX_FID_MIN_SAMPLES);
    double guidance = -1.0;   // < 0: the checkpoint's sample.guidance
    if (!st && guidance_s) st = ddx_parse_f64("--guidance", guidance_s, 0.0, 1e6, &guidance);
    if (st) return fail(st);

    // Everything that can be refused is refused before minutes of work.
    ddx_ref r = {0};
    if (!is_dir(ref) && (st = ddx_ref_load(ref, "--ref", NULL, MAX_PIXELS, &r, NULL))) return fail(st);
    char ipath[PATH_MAX];
    const char *source = NULL;
    ddx_gen g;
    if (!st) st = ddx_inception_path(incep, "--inception", ipath, sizeof ipath, &source);
    if (!st) st = ddx_gen_open(&g, ckpt, config, no_ema);
    if (st) {
        ddx_ref_free(&r);
        return fail(st);
    }
    const int K = g.cfg.model.num_classes;
    int32_t cls = -1;
    if (K == 0 && (class_s || guidance_s))
        st = ddx_errorf(DDX_E_INPUT, "%s: %s needs a class-conditional checkpoint (this one has model.num_classes 0)",
                        class_s ? "--class" : "--guidance", ckpt);
    if (!st && K > 0 && class_s) st = ddx_class_lookup(g.class_names[0] ? g.class_names : NULL, K, class_s, "--class", &cls);
    if (!st && K > 0 && guidance < 0) guidance = g.cfg.sample.guidance;
    if (st) {
        ddx_gen_close(&g);
        ddx_ref_free(&r);
        return fail(st);
    }
    if (kind == DDX_SAMPLER_DDIM && steps > g.cfg.diffusion.timesteps) {
        st = ddx_errorf(DDX_E_INPUT, "--steps: %" PRId64 " is more than the model's diffusion.timesteps (%d)", steps,
                        g.cfg.diffusion.timesteps);
        ddx_gen_close(&g);
        ddx_ref_free(&r);
        return fail(st);
    }
    if (seed < 0) seed = (int64_t)g.cfg.run.seed;
    if (batch == 0) batch = g.cfg.train.batch_size;
    if (batch > shard) batch = shard;
    shard_key key = {.steps = kind == DDX_SAMPLER_DDIM ? (int)steps : g.cfg.diffusion.timesteps,
                     .eta = kind == DDX_SAMPLER_DDIM ? eta : 1.0,
                     .seed = (uint64_t)seed,
                     .spacing = (int)g.cfg.sample.spacing,
                     .ema = g.ema,
                     .n = n,
                     .shard = shard,
                     .cond = K > 0,
                     .cls = cls,
                     .guidance = K > 0 ? guidance : 1.0};
    snprintf(key.sampler, sizeof key.sampler, "%s", sampler_s);
    st = ddx_sha256_file(ckpt, "--checkpoint", key.ckpt_sha);
    if (!st) st = ddx_sha256_file(ipath, "--inception", key.incep_sha);
    char workdir[PATH_MAX];
    if (!st) {
        if (work) snprintf(workdir, sizeof workdir, "%s", work);
        else {
            char stem[PATH_MAX];
            snprintf(stem, sizeof stem, "%s", ckpt);
            char *dot = strrchr(stem, '.'), *sl = strrchr(stem, '/');
            if (dot && (!sl || dot > sl)) *dot = 0;
            char cond[64] = "";
            if (K > 0 && cls >= 0) snprintf(cond, sizeof cond, "-class%d-w%g", (int)cls, key.guidance);
            else if (K > 0) snprintf(cond, sizeof cond, "-classall-w%g", key.guidance);
            if (snprintf(workdir, sizeof workdir, "%s.fid-%.12s-%s%d-eta%g-seed%" PRId64 "-n%" PRId64 "%s", stem,
                         key.ckpt_sha, sampler_s, key.steps, key.eta, seed, n, cond) >= (int)sizeof workdir)
                st = ddx_errorf(DDX_E_INPUT, "--checkpoint: path too long for the default --work folder; pass --work DIR");
        }
    }
    ddx_inception *net = NULL;
    if (!st) st = make_work_dir(workdir);
    // Shards of another evaluation are refused now, before the network and the reference load.
    const int64_t nshards = (n + shard - 1) / shard;
    for (int64_t s = 0; s < nshards && !st; s++) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/shard_%06" PRId64 ".safetensors", workdir, s);
        bool found;
        st = shard_read(path, &key, s, n - s * shard < shard ? n - s * shard : shard, false, NULL, &found);
    }
    if (!st) {
        st = ddx_inception_load(ipath, g.dev, DDX_INCEPTION_FP32, (int)ibatch, &net);
        if (st)
            st = ddx_errorf(st, "%s; fetch the weights with %s", ddx_last_error(), DDX_INCEPTION_FETCH);
    }
    if (!st && is_dir(ref)) st = ddx_ref_load(ref, "--ref", net, MAX_PIXELS, &r, ref_progress);
    if (st) {
        ddx_ref_free(&r);
        ddx_inception_free(net);
        ddx_gen_close(&g);
        return fail(st);
    }
    const bool want_logits = ddx_inception_has_logits(net);
    ddx_featset f;
    st = ddx_featset_init(&f, DDX_KID_KEEP, want_logits);
    if (!st && want_logits) st = ddx_featset_unbias(&f, ipath);
    ddx_sampling *sp = NULL;
    if (!st) st = ddx_gen_sampler(&g, kind, key.steps, key.eta, (uint64_t)seed, (int)batch, &sp);
    if (!st && K > 0) st = ddx_sampling_set_guidance(sp, key.guidance);
    const int S = g.cfg.model.image_size, C = g.cfg.model.out_channels;
    const size_t per = (size_t)S * S * C;
    float *x = malloc((size_t)shard * per * sizeof *x);
    uint8_t *u8 = malloc((size_t)shard * per);
    float *pool3 = malloc((size_t)shard * DDX_INCEPTION_FEATURES * sizeof *pool3);
    float *logits = want_logits ? malloc((size_t)shard * DDX_INCEPTION_LOGITS * sizeof *logits) : NULL;
    int32_t *labels = K > 0 ? malloc((size_t)shard * sizeof *labels) : NULL;
    if (!st && (!x || !u8 || !pool3 || (want_logits && !logits) || (K > 0 && !labels)))
        st = ddx_errorf(DDX_E_NOMEM, "out of host memory for a shard of %" PRId64 " images; lower --shard", shard);
    int64_t resumed = 0;
    fprintf(stderr, "fid: %" PRId64 " images from %s (step %" PRId64 ", %s weights), %s %d steps eta %g seed %" PRId64
                    ", device %s; reference %s; shards in %s\n",
            n, ckpt, g.step, g.ema ? "EMA" : "model", sampler_s, key.steps, key.eta, seed, ddx_device_name(g.dev), r.desc,
            workdir);
    prog p;
    double t0 = ddx_now_s(), t_sample = 0, t_feat = 0;
    bool started = false;
    for (int64_t s = 0; s < nshards && !st; s++) {
        const int64_t first = s * shard, count = n - first < shard ? n - first : shard;
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/shard_%06" PRId64 ".safetensors", workdir, s);
        bool found = false;
        st = shard_read(path, &key, s, count, want_logits, &f, &found);
        if (st) break;
        if (found) {
            resumed += count;
            continue;
        }
        if (!started) {
            if (resumed) fprintf(stderr, "fid: resuming: %" PRId64 " images from finished shards\n", resumed);
            prog_start(&p, "fid", resumed);
            started = true;
        }
        double ta = ddx_now_s();
        shard_prog spg = {&p, first, count, n};
        // Labels by the image's index in the whole run, so a shard's images do not depend on
        // which shards ran before.
        for (int64_t i = 0; labels && i < count; i++) labels[i] = cls >= 0 ? cls : (int32_t)((first + i) % K);
        st = ddx_sampling_run_at(sp, first, (int)count, labels, NULL, x, shard_progress, &spg);
        double tb = ddx_now_s();
        if (!st) {
            ddx_quantize_u8(x, (size_t)count * per, u8);
            st = ddx_features_u8(net, u8, count, S, S, C, pool3, logits);
        }
        double tc = ddx_now_s();
        t_sample += tb - ta, t_feat += tc - tb;
        if (!st) st = shard_write(path, &key, s, first, count, pool3, logits);
        if (!st) st = ddx_featset_add(&f, pool3, logits, count);
        if (!st) prog_show(&p, first + count, n, first + count == n);
    }
    double dt = ddx_now_s() - t0;
    ddx_fid_result res;
    if (!st) st = ddx_fid_finish(&f, &r, &res);
    free(x);
    free(u8);
    free(pool3);
    free(logits);
    free(labels);
    ddx_sampling_free(sp);
    ddx_featset_free(&f);
    ddx_inception_free(net);
    int64_t ck_step = g.step;
    char cls_name[128] = "";
    if (cls >= 0) ddx_class_name(g.class_names, cls, cls_name, sizeof cls_name);
    ddx_device dev = g.dev;
    ddx_gen_close(&g);
    if (st) {
        ddx_ref_free(&r);
        return fail(st);
    }
    json j;
    j_begin(&j);
    j_int(&j, "step", ck_step);   // first, as ddx-train's lines, so a resume keeps or cuts it by step
    j_str(&j, "eval", "fid");
    j_str(&j, "checkpoint", ckpt);
    j_str(&j, "sampler", sampler_s);
    j_int(&j, "steps", key.steps);
    j_num(&j, "eta", key.eta);
    j_int(&j, "seed", seed);
    j_raw(&j, "ema", key.ema ? "true" : "false");
    if (K > 0) {
        if (cls >= 0) j_int(&j, "class", cls);
        else j_str(&j, "class", "all");
        if (cls_name[0]) j_str(&j, "class_name", cls_name);
        j_num(&j, "guidance", key.guidance);
    }
    j_int(&j, "n", res.n);
    j_str(&j, "ref", ref);
    j_int(&j, "n_ref", r.n);
    j_result(&j, &res);
    j_int(&j, "resumed", resumed);
    j_num(&j, "seconds", dt);
    j_num(&j, "sample_s", t_sample);
    j_num(&j, "features_s", t_feat);
    j_num(&j, "img_per_s", (double)(n - resumed) / (dt > 0 ? dt : 1));
    j_str(&j, "device", ddx_device_name(dev));
    const char *line = j_end(&j);
    printf("%s\n", line);
    fflush(stdout);
    ddx_ref_free(&r);
    if (!keep_work) remove_work(workdir, nshards);
    char run[PATH_MAX];
    if (!no_log && run_folder_of(ckpt, run, sizeof run)) {
        char l[sizeof j.b + 2];
        snprintf(l, sizeof l, "%s\n", line);
        bool skipped;
        st = log_append_run(run, l, &skipped);
        if (st) return fail(st);
        if (skipped) fprintf(stderr, "note: %s is in use by a ddx-train; the result was not appended to its log.jsonl\n", run);
        else fprintf(stderr, "appended to %s/log.jsonl\n", run);
    }
    return 0;
}

// ---- psnr-ssim -------------------------------------------------------------------------------
static void usage_psnr(FILE *f) {
    fprintf(f,
            "usage: ddx-eval psnr-ssim --ref A --pred B\n"
            "  PSNR (data range 1) and SSIM (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, per channel\n"
            "  then averaged) of two images, or of the images with the same names in two folders\n"
            "  (every .png/.jpg/.jpeg of A must be in B, with the same size and channels).\n");
}

static ddx_status load_image_f32(const char *path, float **out, int *h, int *w, int *c) {
    uint8_t *px;
    // RGB for every file: a grey image compares equal to its RGB copy.
    DDX_TRY(ddx_image_load_rgb(path, INT64_C(1) << 26, &px, h, w));
    *c = 3;
    size_t n = (size_t)*h * *w * 3;
    *out = malloc(n * sizeof **out);
    if (!*out) {
        free(px);
        return ddx_errorf(DDX_E_NOMEM, "out of memory for %s", path);
    }
    for (size_t i = 0; i < n; i++) (*out)[i] = (float)px[i] / 255.0f;
    free(px);
    return DDX_OK;
}

static ddx_status pair_metrics(const char *a, const char *b, double *psnr, double *ssim) {
    float *x = NULL, *y = NULL;
    int h1, w1, c1, h2, w2, c2;
    ddx_status st = load_image_f32(a, &x, &h1, &w1, &c1);
    if (!st) st = load_image_f32(b, &y, &h2, &w2, &c2);
    if (!st && (h1 != h2 || w1 != w2))
        st = ddx_errorf(DDX_E_INPUT, "%s is %dx%d but %s is %dx%d: PSNR/SSIM compare images of one size", a, w1, h1, b, w2, h2);
    if (!st && (h1 < DDX_SSIM_WIN || w1 < DDX_SSIM_WIN))
        st = ddx_errorf(DDX_E_INPUT, "%s: %dx%d is smaller than the %d-pixel SSIM window", a, w1, h1, DDX_SSIM_WIN);
    if (!st) {
        *psnr = ddx_psnr(x, y, h1, w1, c1, NULL);
        *ssim = ddx_ssim(x, y, h1, w1, c1, NULL);
    }
    free(x);
    free(y);
    return st;
}

static int cmd_psnr(int argc, char **argv) {
    const char *ref = NULL, *pred = NULL;
    ddx_status st = DDX_OK;
    for (int i = 1; i < argc && !st; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_psnr(stdout);
            return 0;
        } else if (!strcmp(a, "--ref")) st = take(argc, argv, &i, &ref);
        else if (!strcmp(a, "--pred")) st = take(argc, argv, &i, &pred);
        else st = ddx_errorf(DDX_E_INPUT, "psnr-ssim: unknown argument '%s' (see ddx-eval psnr-ssim --help)", a);
    }
    if (!st && (!ref || !pred)) st = ddx_errorf(DDX_E_INPUT, "psnr-ssim: --ref and --pred are required");
    if (st) return fail(st);
    struct stat sa, sb;
    if (stat(ref, &sa) != 0) return fail(ddx_errorf(DDX_E_INPUT, "--ref: %s does not exist", ref));
    if (stat(pred, &sb) != 0) return fail(ddx_errorf(DDX_E_INPUT, "--pred: %s does not exist", pred));
    if (S_ISDIR(sa.st_mode) != S_ISDIR(sb.st_mode))
        return fail(ddx_errorf(DDX_E_INPUT, "--ref and --pred must both be files or both be folders"));
    double psnr_sum = 0, ssim_sum = 0;
    int64_t n = 0, n_inf = 0;
    if (!S_ISDIR(sa.st_mode)) {
        double p, s;
        if ((st = pair_metrics(ref, pred, &p, &s))) return fail(st);
        psnr_sum = p, ssim_sum = s, n = 1, n_inf = isinf(p);
    } else {
        ddx_imgdir d;
        if ((st = ddx_imgdir_list(ref, "--ref", &d))) return fail(st);
        prog p;
        prog_start(&p, "psnr-ssim", 0);
        size_t rl = strlen(ref);
        for (int64_t i = 0; i < d.n && !st; i++) {
            char other[PATH_MAX * 2];
            snprintf(other, sizeof other, "%s%s", pred, d.paths[i] + rl);
            struct stat so;
            if (stat(other, &so) != 0) {
                st = ddx_errorf(DDX_E_INPUT, "--pred: %s is missing (the match of %s)", other, d.paths[i]);
                break;
            }
            double ps, ss;
            st = pair_metrics(d.paths[i], other, &ps, &ss);
            if (st) break;
            if (isinf(ps)) n_inf++;
            else psnr_sum += ps;
            ssim_sum += ss;
            n++;
            prog_show(&p, n, d.n, n == d.n);
        }
        ddx_imgdir_free(&d);
        if (st) return fail(st);
    }
    json j;
    j_begin(&j);
    j_str(&j, "eval", "psnr-ssim");
    j_str(&j, "ref", ref);
    j_str(&j, "pred", pred);
    j_int(&j, "n", n);
    // Identical pairs have infinite PSNR; the mean is over the others (n_identical says how many).
    j_num(&j, "psnr", n > n_inf ? psnr_sum / (double)(n - n_inf) : INFINITY);
    j_int(&j, "n_identical", n_inf);
    j_num(&j, "ssim", ssim_sum / (double)n);
    printf("%s\n", j_end(&j));
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-eval stats|fid|psnr-ssim [options]   (ddx-eval SUBCOMMAND --help for each)\n"
            "  stats      reference statistics (.npz) of a data set a config names\n"
            "  fid        FID/KID/IS of a checkpoint's samples or of an image folder against a reference\n"
            "  psnr-ssim  PSNR and SSIM of two images or two folders of matching images\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "stats")) return cmd_stats(argc - 1, argv + 1);
    if (!strcmp(cmd, "fid")) return cmd_fid(argc - 1, argv + 1);
    if (!strcmp(cmd, "psnr-ssim")) return cmd_psnr(argc - 1, argv + 1);
    fprintf(stderr, "ddx-eval: unknown subcommand '%s' (stats, fid or psnr-ssim)\n", cmd);
    return 2;
}
