// Data sets (Fashion-MNIST idx.gz, CIFAR-10 binary, image folders) and the batch loader.
//
// Random keying of the loader (Philox stream DDX_RNG_STREAM_DATA, step = epoch e):
//   offsets [0, 2(N-1))          the Fisher-Yates draws of epoch e: draw m (for i = N-1-m) is the
//                                64-bit value (word 2m << 32) | word 2m+1, j = value mod (i+1);
//                                the modulo bias is below N / 2^64, far beyond any measurement.
//   offsets [2N, 2N + B*batch)   the flip of the image at position p of epoch e (p = (k mod B) *
//                                batch + j for image j of batch k) is the top bit of word 2N + p.
// The two ranges never overlap, so flips and permutations are independent draws, and both are
// pure functions of (seed, k), which is what makes batch_at and a resumed run exact.
#include "train/data.h"
#include "runtime/outfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <stb_image.h>

#include "runtime/philox.h"

#define FMNIST_DEFAULT_PATH "/usr/share/datasets/fashion-mnist"
#define CIFAR_DEFAULT_PATH "data/cifar-10-batches-bin"
#define CIFAR_URL "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
#define MAX_SIDE 65535 // larger sides are rejected before any size arithmetic

// ---- resizing --------------------------------------------------------------------------------
// Separable 1-D filters: output o of an axis is sum_t w[t] * in[idx[t]] for t in [start[o],
// start[o+1]). Area averaging when shrinking (every input pixel counts, so no aliasing) and
// bilinear with half-pixel centres when enlarging (area would only replicate pixels).
typedef struct axis_filter {
    int *start; // [m + 1]
    int *idx;
    float *w;
} axis_filter;

static void axis_filter_free(axis_filter *f) {
    free(f->start);
    free(f->idx);
    free(f->w);
    memset(f, 0, sizeof *f);
}

static ddx_status axis_filter_make(int n, int m, axis_filter *f) {
    memset(f, 0, sizeof *f);
    int64_t cap = (int64_t)m * (n / m + 3);
    f->start = malloc(sizeof(int) * ((size_t)m + 1));
    f->idx = malloc(sizeof(int) * (size_t)cap);
    f->w = malloc(sizeof(float) * (size_t)cap);
    if (!f->start || !f->idx || !f->w) {
        axis_filter_free(f);
        return ddx_errorf(DDX_E_NOMEM, "data: out of memory for a %d -> %d resize filter", n, m);
    }
    int t = 0;
    for (int o = 0; o < m; o++) {
        f->start[o] = t;
        if (n == m) {
            f->idx[t] = o;
            f->w[t++] = 1.0f;
        } else if (n > m) {
            // In units of 1/m of an input pixel, output o covers [o*n, (o+1)*n) and input i covers
            // [i*m, (i+1)*m): integer overlaps, so the weights are exact fractions of n.
            int64_t lo = (int64_t)o * n, hi = lo + n;
            for (int64_t i = lo / m; i < n && i * m < hi; i++) {
                int64_t a = i * m > lo ? i * m : lo, b = (i + 1) * m < hi ? (i + 1) * m : hi;
                if (b <= a) continue;
                f->idx[t] = (int)i;
                f->w[t++] = (float)((double)(b - a) / (double)n);
            }
        } else {
            double src = ((double)o + 0.5) * n / m - 0.5;
            if (src < 0) src = 0;
            if (src > n - 1) src = n - 1;
            int i0 = (int)src;
            double fr = src - i0;
            int i1 = i0 + 1 < n ? i0 + 1 : n - 1;
            f->idx[t] = i0;
            f->w[t++] = (float)(1.0 - fr);
            if (fr > 0) {
                f->idx[t] = i1;
                f->w[t++] = (float)fr;
            }
        }
    }
    f->start[m] = t;
    return DDX_OK;
}

static inline uint8_t to_u8(float v) {
    v += 0.5f;
    if (!(v > 0.0f)) return 0;
    if (v >= 255.0f) return 255;
    return (uint8_t)v;
}

// src: u8 [h, w, c] (row stride w*c); the side x side square at (x0, y0) goes to out [s, s, c].
// tmp holds side * s * c floats.
static void resize_square(const uint8_t *src, int w, int c, int x0, int y0, int side, const axis_filter *f, int s,
                          float *tmp, uint8_t *out) {
    for (int y = 0; y < side; y++) { // horizontal pass: [side, s, c]
        const uint8_t *row = src + ((int64_t)(y0 + y) * w + x0) * c;
        float *tr = tmp + (int64_t)y * s * c;
        for (int o = 0; o < s; o++)
            for (int ch = 0; ch < c; ch++) {
                float acc = 0.0f;
                for (int t = f->start[o]; t < f->start[o + 1]; t++) acc += f->w[t] * (float)row[f->idx[t] * c + ch];
                tr[o * c + ch] = acc;
            }
    }
    for (int o = 0; o < s; o++) { // vertical pass
        uint8_t *orow = out + (int64_t)o * s * c;
        for (int i = 0; i < s * c; i++) {
            float acc = 0.0f;
            for (int t = f->start[o]; t < f->start[o + 1]; t++) acc += f->w[t] * tmp[(int64_t)f->idx[t] * s * c + i];
            orow[i] = to_u8(acc);
        }
    }
}

// Resizes `n` native images [n, side, side, c] in place of *pix to [n, s, s, c] (no-op if equal).
static ddx_status resize_all(uint8_t **pix, int64_t n, int side, int c, int s) {
    if (side == s) return DDX_OK;
    uint8_t *out = malloc((size_t)n * s * s * c);
    float *tmp = malloc(sizeof(float) * (size_t)side * s * c);
    axis_filter f;
    ddx_status st = (out && tmp) ? axis_filter_make(side, s, &f)
                                 : ddx_errorf(DDX_E_NOMEM, "data: out of memory resizing %lld images to %dx%d",
                                              (long long)n, s, s);
    if (st) {
        free(out);
        free(tmp);
        return st;
    }
    for (int64_t i = 0; i < n; i++)
        resize_square(*pix + i * side * side * c, side, c, 0, 0, side, &f, s, tmp, out + i * s * s * c);
    axis_filter_free(&f);
    free(tmp);
    free(*pix);
    *pix = out;
    return DDX_OK;
}

// desc is informative only: a long data.path is simply cut.
static void set_desc(ddx_dataset *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_desc(ddx_dataset *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->desc, sizeof d->desc, fmt, ap);
    va_end(ap);
}

// ---- Fashion-MNIST ---------------------------------------------------------------------------
static ddx_status file_missing(const char *path, bool *missing) {
    struct stat sb;
    *missing = false;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return ddx_errorf(DDX_E_INPUT, "data.path: %s is a folder, expected a file", path);
        return DDX_OK;
    }
    if (errno == ENOENT || errno == ENOTDIR) {
        *missing = true;
        return DDX_OK;
    }
    return ddx_errorf(DDX_E_IO, "data.path: cannot access %s: %s", path, strerror(errno));
}

// zlib's message without the "PATH: " it prefixes (the caller's message names the file already).
static const char *gz_reason(gzFile g, const char *path) {
    int zerr = 0;
    const char *msg = gzerror(g, &zerr);
    if (!msg || !msg[0]) return "error";
    size_t pl = strlen(path);
    if (!strncmp(msg, path, pl) && msg[pl] == ':' && msg[pl + 1] == ' ') msg += pl + 2;
    return msg;
}

// The whole decompressed content of a gzip file.
static ddx_status gz_slurp(const char *path, uint8_t **out, size_t *out_len) {
    int fd;
    DDX_TRY(ddx_input_open(path, "data.path", &fd, NULL));
    gzFile g = gzdopen(fd, "rb");
    if (!g) {
        close(fd);
        return ddx_errorf(DDX_E_IO, "data.path: cannot open %s: %s", path, strerror(errno ? errno : EIO));
    }
    gzbuffer(g, 1 << 18);
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    ddx_status st = DDX_OK;
    while (buf) {
        if (cap - len < (1 << 20)) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        int r = gzread(g, buf + len, (unsigned)(cap - len < (1u << 30) ? cap - len : (1u << 30)));
        int zerr = Z_OK;
        if (r <= 0) gzerror(g, &zerr);
        if (r < 0 || (zerr != Z_OK && zerr != Z_STREAM_END)) {
            st = ddx_errorf(DDX_E_INPUT, "data.path: %s is corrupt or truncated (zlib: %s); download it again", path,
                            gz_reason(g, path));
            break;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    gzclose(g);
    if (!buf) return ddx_errorf(DDX_E_NOMEM, "data: out of memory reading %s", path);
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = len;
    return DDX_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

// The names of classes 0..n-1, one per line, as ddx_dataset.class_names holds them.
static ddx_status set_names(ddx_dataset *d, const char *const *names, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(names[i]) + 1;
    char *p = malloc(len);
    if (!p) return ddx_errorf(DDX_E_NOMEM, "data: out of memory for the class names");
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const size_t l = strlen(names[i]);
        memcpy(p + at, names[i], l);
        at += l;
        p[at++] = '\n';
    }
    p[at] = 0;
    free(d->class_names);
    d->class_names = p;
    return DDX_OK;
}

static ddx_status load_fashion_mnist(const ddx_config *cfg, bool test, ddx_dataset *d) {
    const char *dir = cfg->data.path[0] ? cfg->data.path : FMNIST_DEFAULT_PATH;
    if (cfg->model.out_channels != 1)
        return ddx_errorf(DDX_E_INPUT,
                          "data.dataset: fashion_mnist images have 1 channel but model.out_channels is %d: set "
                          "model.out_channels: 1 (and model.in_channels: 1, or 2 with model.cond lowres)",
                          cfg->model.out_channels);
    char ipath[DDX_CONFIG_STR_MAX + 64], lpath[DDX_CONFIG_STR_MAX + 64];
    const char *split = test ? "t10k" : "train";
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    const char *paths[2] = {ipath, lpath};
    for (int i = 0; i < 2; i++) {
        bool missing;
        DDX_TRY(file_missing(paths[i], &missing));
        if (missing)
            return ddx_errorf(DDX_E_INPUT,
                              "data.path: %s not found: install the Debian package dataset-fashion-mnist (apt-get "
                              "install dataset-fashion-mnist) or set data.path to a folder with "
                              "%s-images-idx3-ubyte.gz and %s-labels-idx1-ubyte.gz",
                              paths[i], split, split);
    }
    uint8_t *img = NULL, *lab = NULL;
    size_t ilen = 0, llen = 0;
    ddx_status st = gz_slurp(ipath, &img, &ilen);
    if (!st) st = gz_slurp(lpath, &lab, &llen);
    uint64_t n = 0, rows = 0, cols = 0;
    if (!st) {
        if (ilen < 16 || be32(img) != 0x00000803u)
            st = ddx_errorf(DDX_E_INPUT, "data.path: %s is not an idx3 image file (bad magic or header)", ipath);
        else if (llen < 8 || be32(lab) != 0x00000801u)
            st = ddx_errorf(DDX_E_INPUT, "data.path: %s is not an idx1 label file (bad magic or header)", lpath);
    }
    if (!st) {
        n = be32(img + 4);
        rows = be32(img + 8);
        cols = be32(img + 12);
        if (n == 0 || rows == 0 || cols == 0 || rows > MAX_SIDE || cols > MAX_SIDE)
            st = ddx_errorf(DDX_E_INPUT, "data.path: %s: bad dimensions %llu images of %llux%llu", ipath,
                            (unsigned long long)n, (unsigned long long)rows, (unsigned long long)cols);
        else if (ilen - 16 != n * rows * cols)
            st = ddx_errorf(DDX_E_INPUT,
                            "data.path: %s: header says %llu images of %llux%llu (%llu bytes) but the file holds %llu "
                            "bytes of pixels: the file is truncated or corrupt, download it again",
                            ipath, (unsigned long long)n, (unsigned long long)rows, (unsigned long long)cols,
                            (unsigned long long)(n * rows * cols), (unsigned long long)(ilen - 16));
        else if (be32(lab + 4) != n)
            st = ddx_errorf(DDX_E_INPUT, "data.path: %s holds %u labels but %s holds %llu images", lpath, be32(lab + 4),
                            ipath, (unsigned long long)n);
        else if (llen - 8 != n)
            st = ddx_errorf(DDX_E_INPUT,
                            "data.path: %s: header says %llu labels but the file holds %llu bytes of labels: the file "
                            "is truncated or corrupt, download it again",
                            lpath, (unsigned long long)n, (unsigned long long)(llen - 8));
    }
    for (uint64_t i = 0; !st && i < n; i++)
        if (lab[8 + i] > 9)
            st = ddx_errorf(DDX_E_INPUT, "data.path: %s: label %u of image %llu is outside 0..9", lpath, lab[8 + i],
                            (unsigned long long)i);
    int s = cfg->data.image_size;
    uint8_t *pix = NULL;
    if (!st) {
        d->labels = malloc(sizeof(int32_t) * n);
        int side = (int)(rows < cols ? rows : cols);
        pix = malloc((size_t)n * side * side);
        if (!d->labels || !pix) {
            st = ddx_errorf(DDX_E_NOMEM, "data: out of memory for %llu images", (unsigned long long)n);
        } else {
            for (uint64_t i = 0; i < n; i++) d->labels[i] = lab[8 + i];
            // Center crop a non-square idx set to its shorter side (a plain copy for 28x28).
            int x0 = (int)(cols - side) / 2, y0 = (int)(rows - side) / 2;
            for (uint64_t i = 0; i < n; i++)
                for (int y = 0; y < side; y++)
                    memcpy(pix + (i * side + y) * side, img + 16 + (i * rows + y0 + y) * cols + x0, (size_t)side);
            st = resize_all(&pix, (int64_t)n, side, 1, s);
        }
    }
    free(img);
    free(lab);
    if (st) {
        free(pix);
        return st;
    }
    d->pixels = pix;
    d->n = (int64_t)n;
    d->size = s;
    d->channels = 1;
    d->num_classes = 10;
    static const char *const names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                          "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    DDX_TRY(set_names(d, names, 10));
    char resized[48] = "";
    if ((int64_t)s != (int64_t)rows || rows != cols) snprintf(resized, sizeof resized, " resized to %dx%d", s, s);
    set_desc(d, "Fashion-MNIST %s, %llu images %llux%llux1%s from %s", test ? "test" : "train",
             (unsigned long long)n, (unsigned long long)rows, (unsigned long long)cols, resized, dir);
    return DDX_OK;
}

// ---- CIFAR-10 --------------------------------------------------------------------------------
// batches.meta.txt (the archive's list of the ten class names, one a line); absent, the
// standard names. A file that is there but is not ten short names is refused.
static ddx_status cifar10_names(const char *dir, ddx_dataset *d) {
    static const char *const standard[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                             "dog",      "frog",       "horse", "ship", "truck"};
    char path[DDX_CONFIG_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    bool missing;
    DDX_TRY(file_missing(path, &missing));
    if (missing) return set_names(d, standard, 10);
    int fd;
    int64_t size = 0;
    DDX_TRY(ddx_input_open(path, "data.path", &fd, &size));
    char buf[1024];
    ssize_t got = size >= 0 && size < (int64_t)sizeof buf ? read(fd, buf, sizeof buf - 1) : -2;
    close(fd);
    if (got < 0)
        return ddx_errorf(DDX_E_INPUT, "data.path: %s: %s; it should list the ten class names, one a line", path,
                          got == -2 ? "too large" : "cannot be read");
    buf[got] = 0;
    const char *names[10];
    int n = 0;
    for (char *line = buf, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
        if (!len) continue;
        if (n == 10) return ddx_errorf(DDX_E_INPUT, "data.path: %s lists more than ten class names", path);
        names[n++] = line;
    }
    if (n != 10) return ddx_errorf(DDX_E_INPUT, "data.path: %s lists %d class names, not CIFAR-10's ten", path, n);
    return set_names(d, names, 10);
}

static ddx_status load_cifar10(const ddx_config *cfg, bool test, ddx_dataset *d) {
    const char *dir = cfg->data.path[0] ? cfg->data.path : CIFAR_DEFAULT_PATH;
    if (cfg->model.out_channels != 3)
        return ddx_errorf(DDX_E_INPUT,
                          "data.dataset: cifar10 images have 3 channels but model.out_channels is %d: set "
                          "model.out_channels: 3 (and model.in_channels: 3, or 6 with model.cond lowres)",
                          cfg->model.out_channels);
    enum { REC = 3073, NB_MAX = 5 };
    const int NB = test ? 1 : NB_MAX;   // the test split is test_batch.bin alone
    char paths[NB_MAX][DDX_CONFIG_STR_MAX + 32];
    int64_t counts[NB_MAX], total = 0;
    for (int b = 0; b < NB; b++) {
        if (test)
            snprintf(paths[b], sizeof paths[b], "%s/test_batch.bin", dir);
        else
            snprintf(paths[b], sizeof paths[b], "%s/data_batch_%d.bin", dir, b + 1);
        bool missing;
        DDX_TRY(file_missing(paths[b], &missing));
        if (missing)
            return ddx_errorf(DDX_E_INPUT,
                              "data.path: %s not found: download " CIFAR_URL ", extract it so that "
                              "DIR/%s exist%s, and set data.path: DIR (the archive "
                              "unpacks to cifar-10-batches-bin/, so extracting it inside ./data matches the default)",
                              paths[b], test ? "test_batch.bin" : "data_batch_1.bin .. data_batch_5.bin", test ? "s" : "");
        struct stat sb;
        if (stat(paths[b], &sb) != 0)
            return ddx_errorf(DDX_E_IO, "data.path: cannot access %s: %s", paths[b], strerror(errno));
        if (sb.st_size == 0 || sb.st_size % REC != 0)
            return ddx_errorf(DDX_E_INPUT,
                              "data.path: %s is %lld bytes, not a whole number of 3073-byte CIFAR-10 records: the "
                              "file is truncated or not CIFAR-10 binary (the python/matlab versions do not work)",
                              paths[b], (long long)sb.st_size);
        counts[b] = sb.st_size / REC;
        total += counts[b];
    }
    uint8_t *pix = malloc((size_t)total * 32 * 32 * 3);
    d->labels = malloc(sizeof(int32_t) * (size_t)total);
    uint8_t *rec = malloc(REC);
    ddx_status st = (pix && d->labels && rec) ? DDX_OK : ddx_errorf(DDX_E_NOMEM, "data: out of memory for CIFAR-10");
    int64_t at = 0;
    for (int b = 0; b < NB && !st; b++) {
        int fd;
        if ((st = ddx_input_open(paths[b], "data.path", &fd, NULL))) break;
        FILE *f = fdopen(fd, "rb");
        if (!f) {
            close(fd);
            st = ddx_errorf(DDX_E_IO, "data.path: cannot open %s: %s", paths[b], strerror(errno));
            break;
        }
        setvbuf(f, NULL, _IOFBF, 1 << 20);
        for (int64_t r = 0; r < counts[b] && !st; r++, at++) {
            if (fread(rec, 1, REC, f) != REC) {
                st = ddx_errorf(DDX_E_IO, "data.path: %s: read failed at record %lld", paths[b], (long long)r);
                break;
            }
            if (rec[0] > 9) {
                st = ddx_errorf(DDX_E_INPUT, "data.path: %s: record %lld has label %u, outside 0..9: not CIFAR-10 binary",
                                paths[b], (long long)r, rec[0]);
                break;
            }
            d->labels[at] = rec[0];
            // Planes R, G, B of 1024 bytes each -> interleaved HWC.
            uint8_t *o = pix + at * 3072;
            for (int p = 0; p < 1024; p++) {
                o[3 * p] = rec[1 + p];
                o[3 * p + 1] = rec[1 + 1024 + p];
                o[3 * p + 2] = rec[1 + 2048 + p];
            }
        }
        fclose(f);
    }
    free(rec);
    if (!st) st = resize_all(&pix, total, 32, 3, cfg->data.image_size);
    if (st) {
        free(pix);   // d->labels: ddx_dataset_load frees d on failure
        return st;
    }
    d->pixels = pix;
    d->n = total;
    d->size = cfg->data.image_size;
    d->channels = 3;
    d->num_classes = 10;
    DDX_TRY(cifar10_names(dir, d));
    char resized[48] = "";
    if (d->size != 32) snprintf(resized, sizeof resized, " resized to %dx%d", d->size, d->size);
    set_desc(d, "CIFAR-10 %s, %lld images 32x32x3%s from %s", test ? "test" : "train", (long long)total, resized,
             dir);
    return DDX_OK;
}

// ---- image folders ---------------------------------------------------------------------------
typedef struct path_list {
    char **v;
    int64_t n, cap;
} path_list;

static void path_list_free(path_list *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static bool is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static ddx_status walk(const char *dir, int depth, path_list *l) {
    // A symlink cycle would recurse forever; no real data set nests this deep.
    if (depth > 64) return ddx_errorf(DDX_E_INPUT, "data.path: %s: folders nested more than 64 deep (a symlink loop?)", dir);
    DIR *dp = opendir(dir);
    if (!dp) return ddx_errorf(DDX_E_IO, "data.path: cannot read folder %s: %s", dir, strerror(errno));
    ddx_status st = DDX_OK;
    struct dirent *e;
    while (!st && (e = readdir(dp))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p) {
            st = ddx_errorf(DDX_E_NOMEM, "data: out of memory listing %s", dir);
            break;
        }
        snprintf(p, len, "%s/%s", dir, e->d_name);
        bool is_dir = e->d_type == DT_DIR, is_file = e->d_type == DT_REG;
        if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
            struct stat sb;
            if (stat(p, &sb) == 0) {
                is_dir = S_ISDIR(sb.st_mode);
                is_file = S_ISREG(sb.st_mode);
            }
        }
        if (is_dir) {
            st = walk(p, depth + 1, l);
            free(p);
        } else if (is_file && is_image_name(e->d_name)) {
            if (l->n == l->cap) {
                int64_t nc = l->cap ? l->cap * 2 : 1024;
                char **nv = realloc(l->v, sizeof(char *) * (size_t)nc);
                if (!nv) {
                    free(p);
                    st = ddx_errorf(DDX_E_NOMEM, "data: out of memory listing %s", dir);
                    break;
                }
                l->v = nv;
                l->cap = nc;
            }
            l->v[l->n++] = p;
        } else {
            free(p);
        }
    }
    closedir(dp);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Classes of an image folder: the sorted names of the sub-folders of `dir` that hold the
// images, an image's label the index of its sub-folder. An image directly in `dir` means
// the folder is not split by class: no labels then (num_classes 0). files: sorted.
static ddx_status folder_classes(const char *dir, const path_list *files, ddx_dataset *d) {
    const size_t dl = strlen(dir);
    char **names = malloc((size_t)files->n * sizeof *names);
    if (!names) return ddx_errorf(DDX_E_NOMEM, "data: out of memory for the class names");
    int64_t nn = 0;
    ddx_status st = DDX_OK;
    bool flat = false;   // an image at the top level: the folder has no classes
    for (int64_t i = 0; i < files->n && !st && !flat; i++) {
        const char *rel = files->v[i] + dl;
        while (*rel == '/') rel++;
        const char *slash = strchr(rel, '/');
        if (!slash) {
            flat = true;
            break;
        }
        const size_t len = (size_t)(slash - rel);
        // Class names are stored one a line (checkpoint metadata, ddx-sample --class NAME).
        if (memchr(rel, '\n', len)) {
            st = ddx_errorf(DDX_E_INPUT, "data.path: %s: a class sub-folder name holds a line break; rename it", dir);
            break;
        }
        if (nn > 0 && strlen(names[nn - 1]) == len && !memcmp(names[nn - 1], rel, len)) continue;
        if (!(names[nn] = strndup(rel, len))) st = ddx_errorf(DDX_E_NOMEM, "data: out of memory for the class names");
        else nn++;
    }
    // Sorted paths put a sub-folder's files together, so neighbours are the only duplicates
    // left to drop; sort the names as names ("a" before "a-b", which "a-b/" sorts before "a/").
    if (!st && !flat && nn > 0) {
        qsort(names, (size_t)nn, sizeof *names, cmp_str);
        int64_t u = 0;
        for (int64_t i = 0; i < nn; i++) {
            if (u > 0 && !strcmp(names[u - 1], names[i])) free(names[i]);
            else names[u++] = names[i];
        }
        nn = u;
        for (int64_t i = 0; i < files->n; i++) {
            const char *rel = files->v[i] + dl;
            while (*rel == '/') rel++;
            char key[PATH_MAX];
            snprintf(key, sizeof key, "%.*s", (int)(strchr(rel, '/') - rel), rel);
            const char *kp = key;
            char **hit = bsearch(&kp, names, (size_t)nn, sizeof *names, cmp_str);
            d->labels[i] = (int32_t)(hit - names);
        }
        if (nn > INT32_MAX / 2) st = ddx_errorf(DDX_E_INPUT, "data.path: %s: too many class sub-folders", dir);
        if (!st) st = set_names(d, (const char *const *)names, (int)nn);
        if (!st) d->num_classes = (int)nn;
    }
    for (int64_t i = 0; i < nn; i++) free(names[i]);
    free(names);
    return st;
}

typedef struct folder_job {
    const path_list *files;
    int s, c;
    int64_t max_pixels;   // data.max_image_pixels
    uint8_t *pixels;
    atomic_llong next;
    atomic_bool failed;
    pthread_mutex_t mu;
    int64_t fail_index; // smallest failing index, so the reported file does not depend on timing
    ddx_status fail_st;
    char fail_msg[1024];
} folder_job;

static ddx_status decode_one(folder_job *job, int64_t i, float **tmp, size_t *tmp_cap) {
    const char *path = job->files->v[i];
    int w = 0, h = 0, n0 = 0;
    // The header first: a small file can declare a huge picture (a 389 KB PNG of 20000x20000
    // decodes to 1.6 GB), and up to 32 decoders run at once.
    if (stbi_info(path, &w, &h, &n0) && (int64_t)w * h > job->max_pixels)
        return ddx_errorf(DDX_E_INPUT,
                          "data.path: %s: image is %dx%d = %lld pixels, over data.max_image_pixels = %lld: shrink or "
                          "remove it, or raise data.max_image_pixels",
                          path, w, h, (long long)w * h, (long long)job->max_pixels);
    uint8_t *img = stbi_load(path, &w, &h, &n0, job->c);
    if (!img) {
        const char *why = stbi_failure_reason();
        return ddx_errorf(DDX_E_INPUT, "data.path: %s: cannot decode the image (%s): remove or replace the file", path,
                          why ? why : "unknown reason");
    }
    ddx_status st = DDX_OK;
    int side = w < h ? w : h;
    size_t need = (size_t)side * job->s * job->c;
    if (w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE) {
        st = ddx_errorf(DDX_E_INPUT, "data.path: %s: image size %dx%d not supported", path, w, h);
    } else if (need > *tmp_cap) {
        float *nt = realloc(*tmp, sizeof(float) * need);
        if (!nt) st = ddx_errorf(DDX_E_NOMEM, "data: out of memory decoding %s", path);
        else {
            *tmp = nt;
            *tmp_cap = need;
        }
    }
    axis_filter f;
    if (!st) st = axis_filter_make(side, job->s, &f);
    if (!st) {
        resize_square(img, w, job->c, (w - side) / 2, (h - side) / 2, side, &f, job->s, *tmp,
                      job->pixels + i * job->s * job->s * job->c);
        axis_filter_free(&f);
    }
    stbi_image_free(img);
    return st;
}

static void *folder_worker(void *arg) {
    folder_job *job = arg;
    float *tmp = NULL;
    size_t tmp_cap = 0;
    for (;;) {
        int64_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->files->n || atomic_load(&job->failed)) break;
        ddx_status st = decode_one(job, i, &tmp, &tmp_cap);
        if (st) {
            pthread_mutex_lock(&job->mu);
            if (job->fail_index < 0 || i < job->fail_index) {
                job->fail_index = i;
                job->fail_st = st;
                snprintf(job->fail_msg, sizeof job->fail_msg, "%s", ddx_last_error());
            }
            pthread_mutex_unlock(&job->mu);
            atomic_store(&job->failed, true);
        }
    }
    free(tmp);
    return NULL;
}

static ddx_status load_image_folder(const ddx_config *cfg, ddx_dataset *d) {
    const char *dir = cfg->data.path;
    int c = cfg->model.out_channels, s = cfg->data.image_size;
    if (c != 1 && c != 3)
        return ddx_errorf(DDX_E_INPUT,
                          "model.out_channels is %d: data.dataset image_folder gives 1 (grey) or 3 (RGB) channels", c);
    if (!dir[0])
        return ddx_errorf(DDX_E_INPUT,
                          "data.path is empty: data.dataset image_folder needs data.path set to a folder of "
                          ".png/.jpg/.jpeg images (searched recursively)");
    struct stat sb;
    int serr = stat(dir, &sb) != 0 ? errno : S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
    // Where an image set comes from is the config's business (configs/celeba64_ddpm.yaml says
    // it in its header), so point there when the config came from a file.
    if (serr)
        return ddx_errorf(DDX_E_INPUT,
                          "data.path: %s is not a folder (%s): put the images there or set data.path to the folder "
                          "holding the .png/.jpg/.jpeg images (searched recursively)%s%s%s",
                          dir, strerror(serr), cfg->origin.source[0] ? "; the header of " : "", cfg->origin.source,
                          cfg->origin.source[0] ? " says where to get them" : "");
    path_list files = {0};
    ddx_status st = walk(dir, 0, &files);
    if (!st && files.n == 0)
        st = ddx_errorf(DDX_E_INPUT,
                        "data.path: %s holds no .png/.jpg/.jpeg files (searched recursively): point data.path at "
                        "the image folder",
                        dir);
    if (st) {
        path_list_free(&files);
        return st;
    }
    // readdir order is arbitrary; sorting makes image i the same file on every machine.
    qsort(files.v, (size_t)files.n, sizeof(char *), cmp_str);
    uint8_t *pix = malloc((size_t)files.n * s * s * c);
    d->labels = calloc((size_t)files.n, sizeof(int32_t));
    if (!pix || !d->labels) {
        free(pix);
        free(d->labels);
        d->labels = NULL;
        path_list_free(&files);
        return ddx_errorf(DDX_E_NOMEM, "data: out of memory for %lld images of %dx%dx%d", (long long)files.n, s, s, c);
    }
    folder_job job = {.files = &files, .s = s, .c = c, .max_pixels = cfg->data.max_image_pixels, .pixels = pix, .fail_index = -1};
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, false);
    pthread_mutex_init(&job.mu, NULL);
    // Decoding is the cost of a large folder (CelebA: 200k JPEGs), and it parallelises perfectly.
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = ncpu < 1 ? 1 : ncpu > 32 ? 32 : (int)ncpu;
    if (nt > files.n) nt = (int)files.n;
    pthread_t th[32];
    int started = 0;
    for (; started < nt - 1; started++)
        if (pthread_create(&th[started], NULL, folder_worker, &job) != 0) break;
    folder_worker(&job);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&job.mu);
    if (job.fail_index >= 0) st = ddx_errorf(job.fail_st, "%s", job.fail_msg);
    int64_t n = files.n;
    d->num_classes = 0;
    if (!st) st = folder_classes(dir, &files, d);
    path_list_free(&files);
    if (st) {
        free(pix);   // d->labels: ddx_dataset_load frees d on failure
        return st;
    }
    d->pixels = pix;
    d->n = n;
    d->size = s;
    d->channels = c;
    set_desc(d, "image folder, %lld images at %dx%dx%d from %s", (long long)n, s, s, c, dir);
    return DDX_OK;
}

ddx_status ddx_dataset_load(const ddx_config *cfg, ddx_dataset *out) { return ddx_dataset_load_split(cfg, false, out); }

ddx_status ddx_dataset_load_split(const ddx_config *cfg, bool test, ddx_dataset *out) {
    if (!cfg || !out) return ddx_errorf(DDX_E_INPUT, "ddx_dataset_load: NULL argument");
    memset(out, 0, sizeof *out);
    if (cfg->data.image_size < 1 || cfg->data.image_size > 4096)
        return ddx_errorf(DDX_E_INPUT, "data.image_size is %d: must be in 1..4096", cfg->data.image_size);
    ddx_dataset d = {0};
    ddx_status st;
    switch (cfg->data.dataset) {
    case DDX_DATASET_FASHION_MNIST: st = load_fashion_mnist(cfg, test, &d); break;
    case DDX_DATASET_CIFAR10: st = load_cifar10(cfg, test, &d); break;
    case DDX_DATASET_IMAGE_FOLDER: st = load_image_folder(cfg, &d); break;
    default: st = ddx_errorf(DDX_E_INPUT, "data.dataset: unknown value %d", (int)cfg->data.dataset); break;
    }
    if (st) {
        ddx_dataset_free(&d);
        return st;
    }
    *out = d;
    return DDX_OK;
}

void ddx_dataset_free(ddx_dataset *d) {
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    free(d->class_names);
    memset(d, 0, sizeof *d);
}

// ---- batches ---------------------------------------------------------------------------------
// The permutation of one epoch, cached by whoever produces batches.
typedef struct perm_cache {
    int64_t epoch; // -1 = none
    int64_t *perm; // [n]
    uint32_t *draws;
} perm_cache;

enum { DRAW_CHUNK = 1 << 16 };

static ddx_status perm_compute(const ddx_dataset *d, uint64_t seed, int64_t epoch, perm_cache *pc) {
    int64_t n = d->n;
    if (!pc->perm) {
        pc->perm = malloc(sizeof(int64_t) * (size_t)n);
        pc->draws = malloc(sizeof(uint32_t) * DRAW_CHUNK);
        if (!pc->perm || !pc->draws) return ddx_errorf(DDX_E_NOMEM, "data loader: out of memory for a permutation");
    }
    pc->epoch = -1;
    for (int64_t i = 0; i < n; i++) pc->perm[i] = i;
    int64_t total = 2 * (n - 1); // words
    for (int64_t w0 = 0; w0 < total; w0 += DRAW_CHUNK) {
        int64_t cnt = total - w0 < DRAW_CHUNK ? total - w0 : DRAW_CHUNK; // even: chunk size and total are
        DDX_TRY(ddx_philox_u32(pc->draws, cnt, seed, DDX_RNG_STREAM_DATA, (uint64_t)epoch, (uint64_t)w0));
        for (int64_t t = 0; t < cnt; t += 2) {
            int64_t m = (w0 + t) / 2, i = n - 1 - m;
            uint64_t r = (uint64_t)pc->draws[t] << 32 | pc->draws[t + 1];
            int64_t j = (int64_t)(r % (uint64_t)(i + 1));
            int64_t tmp = pc->perm[i];
            pc->perm[i] = pc->perm[j];
            pc->perm[j] = tmp;
        }
    }
    pc->epoch = epoch;
    return DDX_OK;
}

static void perm_free(perm_cache *pc) {
    free(pc->perm);
    free(pc->draws);
    pc->perm = NULL;
    pc->draws = NULL;
    pc->epoch = -1;
}

static ddx_status check_args(const ddx_dataset *d, int batch, int64_t k) {
    if (!d || !d->pixels || d->n <= 0 || d->size <= 0 || d->channels <= 0)
        return ddx_errorf(DDX_E_INPUT, "data loader: empty or unloaded data set");
    if (batch <= 0) return ddx_errorf(DDX_E_INPUT, "train.batch_size is %d: must be positive", batch);
    if (batch > d->n)
        return ddx_errorf(DDX_E_INPUT,
                          "train.batch_size %d is larger than the data set (%lld images): lower train.batch_size",
                          batch, (long long)d->n);
    if (k < 0) return ddx_errorf(DDX_E_INPUT, "data loader: batch index %lld is negative", (long long)k);
    if (k / (d->n / batch) > (int64_t)UINT32_MAX)
        return ddx_errorf(DDX_E_INPUT, "data loader: batch index %lld is past 2^32 epochs", (long long)k);
    return DDX_OK;
}

// Batch k into x [batch, S, S, C] / y [batch] (either may be NULL), using and updating *pc.
static ddx_status make_batch(const ddx_dataset *d, int batch, uint64_t seed, bool hflip, int64_t k, perm_cache *pc,
                             uint32_t *flipbits, float *x, int32_t *y) {
    DDX_TRY(check_args(d, batch, k));
    int64_t per_epoch = d->n / batch, epoch = k / per_epoch, pos0 = (k % per_epoch) * batch;
    if (pc->epoch != epoch) DDX_TRY(perm_compute(d, seed, epoch, pc));
    if (hflip)
        DDX_TRY(ddx_philox_u32(flipbits, batch, seed, DDX_RNG_STREAM_DATA, (uint64_t)epoch,
                               2 * (uint64_t)d->n + (uint64_t)pos0));
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (float)v / 127.5f - 1.0f;
    int s = d->size, c = d->channels;
    int64_t img = (int64_t)s * s * c;
    for (int j = 0; j < batch; j++) {
        int64_t idx = pc->perm[pos0 + j];
        if (y) y[j] = d->labels ? d->labels[idx] : 0;
        if (!x) continue;
        const uint8_t *src = d->pixels + idx * img;
        float *dst = x + j * img;
        if (hflip && (flipbits[j] >> 31)) {
            for (int r = 0; r < s; r++)
                for (int col = 0; col < s; col++)
                    for (int ch = 0; ch < c; ch++)
                        dst[((int64_t)r * s + col) * c + ch] = lut[src[((int64_t)r * s + (s - 1 - col)) * c + ch]];
        } else {
            for (int64_t i = 0; i < img; i++) dst[i] = lut[src[i]];
        }
    }
    return DDX_OK;
}

ddx_status ddx_loader_batch_at(const ddx_dataset *d, int batch, uint64_t seed, bool hflip, int64_t k, float *x,
                               int32_t *y) {
    DDX_TRY(check_args(d, batch, k));
    perm_cache pc = {.epoch = -1};
    uint32_t *flips = malloc(sizeof(uint32_t) * (size_t)batch);
    ddx_status st = flips ? make_batch(d, batch, seed, hflip, k, &pc, flips, x, y)
                          : ddx_errorf(DDX_E_NOMEM, "data loader: out of memory");
    free(flips);
    perm_free(&pc);
    return st;
}

struct ddx_loader {
    const ddx_dataset *d;
    int batch;
    uint64_t seed;
    bool hflip;
    int64_t start, next_k; // next_k: synchronous mode only
    perm_cache pc;         // owned by the producer (the worker thread, or the caller when prefetch = 0)
    uint32_t *flips;
    int prefetch;
    // Ring of `prefetch` slots: batch start + p lives in slot p % prefetch. The worker fills slots
    // while produced - consumed < prefetch; a slot is never touched by both sides at once.
    float **slot_x;
    int32_t **slot_y;
    int64_t produced, consumed;
    bool stop, thread_started;
    ddx_status err;
    char err_msg[1024];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t can_produce, can_consume;
};

static void *loader_worker(void *arg) {
    ddx_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->produced - l->consumed >= l->prefetch) pthread_cond_wait(&l->can_produce, &l->mu);
        if (l->stop) break;
        int64_t p = l->produced;
        pthread_mutex_unlock(&l->mu);
        int slot = (int)(p % l->prefetch);
        ddx_status st = make_batch(l->d, l->batch, l->seed, l->hflip, l->start + p, &l->pc, l->flips, l->slot_x[slot],
                                   l->slot_y[slot]);
        pthread_mutex_lock(&l->mu);
        if (st) {
            l->err = st;
            snprintf(l->err_msg, sizeof l->err_msg, "%s", ddx_last_error());
            pthread_cond_broadcast(&l->can_consume);
            break;
        }
        l->produced++;
        pthread_cond_broadcast(&l->can_consume);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

ddx_status ddx_loader_create(const ddx_dataset *d, int batch, uint64_t seed, bool hflip, int64_t start_batch,
                             int prefetch, ddx_loader **out) {
    if (!out) return ddx_errorf(DDX_E_INPUT, "ddx_loader_create: NULL out");
    *out = NULL;
    DDX_TRY(check_args(d, batch, start_batch));
    if (prefetch < 0 || prefetch > 1024)
        return ddx_errorf(DDX_E_INPUT, "data loader: prefetch %d outside 0..1024", prefetch);
    ddx_loader *l = calloc(1, sizeof *l);
    if (!l) return ddx_errorf(DDX_E_NOMEM, "data loader: out of memory");
    *l = (ddx_loader){.d = d, .batch = batch, .seed = seed, .hflip = hflip, .start = start_batch,
                      .next_k = start_batch, .pc = {.epoch = -1}, .prefetch = prefetch};
    l->flips = malloc(sizeof(uint32_t) * (size_t)batch);
    if (!l->flips) goto nomem;
    if (prefetch > 0) {
        size_t xs = sizeof(float) * (size_t)batch * d->size * d->size * d->channels;
        l->slot_x = calloc((size_t)prefetch, sizeof(float *));
        l->slot_y = calloc((size_t)prefetch, sizeof(int32_t *));
        if (!l->slot_x || !l->slot_y) goto nomem;
        for (int i = 0; i < prefetch; i++) {
            l->slot_x[i] = malloc(xs);
            l->slot_y[i] = malloc(sizeof(int32_t) * (size_t)batch);
            if (!l->slot_x[i] || !l->slot_y[i]) goto nomem;
        }
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->can_produce, NULL);
        pthread_cond_init(&l->can_consume, NULL);
        if (pthread_create(&l->thread, NULL, loader_worker, l) != 0) {
            pthread_mutex_destroy(&l->mu);
            pthread_cond_destroy(&l->can_produce);
            pthread_cond_destroy(&l->can_consume);
            ddx_loader_free(l);
            return ddx_errorf(DDX_E_INTERNAL, "data loader: cannot start the prefetch thread: %s", strerror(errno));
        }
        l->thread_started = true;
    }
    *out = l;
    return DDX_OK;
nomem:
    ddx_loader_free(l);
    return ddx_errorf(DDX_E_NOMEM, "data loader: out of memory for %d prefetched batches", prefetch);
}

ddx_status ddx_loader_next(ddx_loader *l, float *x, int32_t *y, int64_t *batch_index) {
    if (!l) return ddx_errorf(DDX_E_INPUT, "ddx_loader_next: NULL loader");
    if (l->prefetch == 0) {
        DDX_TRY(make_batch(l->d, l->batch, l->seed, l->hflip, l->next_k, &l->pc, l->flips, x, y));
        if (batch_index) *batch_index = l->next_k;
        l->next_k++;
        return DDX_OK;
    }
    pthread_mutex_lock(&l->mu);
    while (l->produced == l->consumed && !l->err) pthread_cond_wait(&l->can_consume, &l->mu);
    if (l->produced == l->consumed) {
        // The batch asked for is the one the worker failed on (earlier ones were still handed out).
        ddx_status st = l->err;
        char msg[sizeof l->err_msg];
        memcpy(msg, l->err_msg, sizeof msg);
        pthread_mutex_unlock(&l->mu);
        return ddx_errorf(st, "%s", msg);
    }
    int64_t p = l->consumed;
    pthread_mutex_unlock(&l->mu);
    int slot = (int)(p % l->prefetch);
    size_t img = (size_t)l->d->size * l->d->size * l->d->channels;
    if (x) memcpy(x, l->slot_x[slot], sizeof(float) * img * (size_t)l->batch);
    if (y) memcpy(y, l->slot_y[slot], sizeof(int32_t) * (size_t)l->batch);
    pthread_mutex_lock(&l->mu);
    l->consumed++;
    pthread_cond_signal(&l->can_produce);
    pthread_mutex_unlock(&l->mu);
    if (batch_index) *batch_index = l->start + p;
    return DDX_OK;
}

void ddx_loader_free(ddx_loader *l) {
    if (!l) return;
    if (l->thread_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->can_produce);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->can_produce);
        pthread_cond_destroy(&l->can_consume);
    }
    for (int i = 0; l->slot_x && i < l->prefetch; i++) free(l->slot_x[i]);
    for (int i = 0; l->slot_y && i < l->prefetch; i++) free(l->slot_y[i]);
    free(l->slot_x);
    free(l->slot_y);
    free(l->flips);
    perm_free(&l->pc);
    free(l);
}
