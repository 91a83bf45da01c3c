#include "eval/fidrun.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h>

#include "runtime/outfile.h"
#include "runtime/safetensors.h"

ddx_status ddx_featset_init(ddx_featset *f, int64_t keep_max, bool want_logits) {
    memset(f, 0, sizeof *f);
    f->want_logits = want_logits;
    return ddx_fstats_create(&f->st, DDX_INCEPTION_FEATURES, keep_max);
}

ddx_status ddx_featset_add(ddx_featset *f, const float *pool3, const float *logits, int64_t n) {
    DDX_TRY(ddx_fstats_add(f->st, pool3, n));
    if (!f->want_logits) return DDX_OK;
    if (!logits) return ddx_errorf(DDX_E_INTERNAL, "featset: logits expected");
    if (f->n_logits + n > f->cap_logits) {
        int64_t nc = f->cap_logits ? f->cap_logits : 1024;
        while (nc < f->n_logits + n) nc *= 2;
        float *p = realloc(f->logits, (size_t)nc * DDX_INCEPTION_LOGITS * sizeof *p);
        if (!p) return ddx_errorf(DDX_E_NOMEM, "out of memory keeping %lld logits for IS", (long long)nc);
        f->logits = p;
        f->cap_logits = nc;
    }
    float *dst = f->logits + (size_t)f->n_logits * DDX_INCEPTION_LOGITS;
    memcpy(dst, logits, (size_t)n * DDX_INCEPTION_LOGITS * sizeof *logits);
    for (int64_t i = 0; f->bias && i < n; i++)
        for (int k = 0; k < DDX_INCEPTION_LOGITS; k++) dst[(size_t)i * DDX_INCEPTION_LOGITS + k] -= f->bias[k];
    f->n_logits += n;
    return DDX_OK;
}

ddx_status ddx_featset_unbias(ddx_featset *f, const char *weights) {
    ddx_st_file sf;
    DDX_TRY(ddx_st_read(weights, &sf));
    const ddx_st_tensor *t = ddx_st_find(&sf, "fc.bias");
    ddx_status st = DDX_OK;
    if (!t || t->dtype != DDX_ST_F32 || t->ndim != 1 || t->shape[0] != DDX_INCEPTION_LOGITS)
        st = ddx_errorf(DDX_E_INPUT, "%s: no F32 fc.bias [%d] for the Inception Score", weights, DDX_INCEPTION_LOGITS);
    if (!st && !f->bias && !(f->bias = malloc(DDX_INCEPTION_LOGITS * sizeof *f->bias)))
        st = ddx_errorf(DDX_E_NOMEM, "out of memory");
    if (!st) memcpy(f->bias, t->data, DDX_INCEPTION_LOGITS * sizeof *f->bias);
    ddx_st_close(&sf);
    return st;
}

void ddx_featset_free(ddx_featset *f) {
    ddx_fstats_free(f->st);
    free(f->logits);
    free(f->bias);
    memset(f, 0, sizeof *f);
}

ddx_status ddx_features_u8(ddx_inception *net, const uint8_t *img, int64_t n, int h, int w, int c, float *pool3,
                           float *logits) {
    const int64_t b = ddx_inception_batch(net) > 0 ? ddx_inception_batch(net) : 8;
    const size_t per = (size_t)h * w * c;
    float *x = malloc((size_t)b * per * sizeof *x);
    if (!x) return ddx_errorf(DDX_E_NOMEM, "out of memory for %lld images of %dx%dx%d", (long long)b, h, w, c);
    ddx_status st = DDX_OK;
    for (int64_t i0 = 0; i0 < n && !st; i0 += b) {
        int64_t k = n - i0 < b ? n - i0 : b;
        const uint8_t *src = img + (size_t)i0 * per;
        for (size_t j = 0; j < (size_t)k * per; j++) x[j] = (float)src[j] / 255.0f;
        st = ddx_inception_features(net, x, (int)k, h, w, c, pool3 + (size_t)i0 * DDX_INCEPTION_FEATURES,
                                    logits ? logits + (size_t)i0 * DDX_INCEPTION_LOGITS : NULL);
    }
    free(x);
    return st;
}

// ---- image folders ---------------------------------------------------------------------------
static bool is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static ddx_status walk(const char *dir, const char *what, int depth, ddx_imgdir *l) {
    if (depth > 64) return ddx_errorf(DDX_E_INPUT, "%s: %s: folders nested more than 64 deep (a symlink loop?)", what, dir);
    DIR *dp = opendir(dir);
    if (!dp) return ddx_errorf(DDX_E_INPUT, "%s: cannot read folder %s: %s", what, dir, strerror(errno));
    ddx_status st = DDX_OK;
    struct dirent *e;
    while (!st && (e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;   // ., .., and hidden files (editor and OS leftovers)
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p) {
            st = ddx_errorf(DDX_E_NOMEM, "out of memory listing %s", dir);
            break;
        }
        snprintf(p, len, "%s/%s", dir, e->d_name);
        struct stat sb;
        bool is_dir = false, is_file = false;
        if (stat(p, &sb) == 0) is_dir = S_ISDIR(sb.st_mode), is_file = S_ISREG(sb.st_mode);
        if (is_dir) {
            st = walk(p, what, depth + 1, l);
            free(p);
        } else if (is_file && is_image_name(e->d_name)) {
            if (l->n == l->cap) {
                int64_t nc = l->cap ? l->cap * 2 : 256;
                char **nv = realloc(l->paths, sizeof(char *) * (size_t)nc);
                if (!nv) {
                    free(p);
                    st = ddx_errorf(DDX_E_NOMEM, "out of memory listing %s", dir);
                    break;
                }
                l->paths = nv;
                l->cap = nc;
            }
            l->paths[l->n++] = p;
        } else {
            free(p);
        }
    }
    closedir(dp);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

ddx_status ddx_imgdir_list(const char *dir, const char *what, ddx_imgdir *out) {
    memset(out, 0, sizeof *out);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ddx_errorf(DDX_E_INPUT, "%s: %s is not a folder", what, dir);
    ddx_status st = walk(dir, what, 0, out);
    if (!st && out->n == 0) st = ddx_errorf(DDX_E_INPUT, "%s: %s holds no .png, .jpg or .jpeg file", what, dir);
    if (st) {
        ddx_imgdir_free(out);
        return st;
    }
    qsort(out->paths, (size_t)out->n, sizeof *out->paths, cmp_str);
    return DDX_OK;
}

void ddx_imgdir_free(ddx_imgdir *d) {
    for (int64_t i = 0; i < d->n; i++) free(d->paths[i]);
    free(d->paths);
    memset(d, 0, sizeof *d);
}

ddx_status ddx_image_load_rgb(const char *path, int64_t max_pixels, uint8_t **pix, int *h, int *w) {
    *pix = NULL;
    int fd;
    int64_t size;
    // Through ddx_input_open: a FIFO named like an image must not block the run.
    DDX_TRY(ddx_input_open(path, "image", &fd, &size));
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return ddx_errorf(DDX_E_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    int x = 0, y = 0, n0 = 0;
    // The header first: a small file can declare a huge picture.
    if (stbi_info_from_file(f, &x, &y, &n0) && (int64_t)x * y > max_pixels) {
        fclose(f);
        return ddx_errorf(DDX_E_INPUT, "%s: image is %dx%d, over the %lld-pixel limit: shrink or remove it", path, x, y,
                          (long long)max_pixels);
    }
    uint8_t *img = stbi_load_from_file(f, &x, &y, &n0, 3);
    fclose(f);
    if (!img) {
        const char *why = stbi_failure_reason();
        return ddx_errorf(DDX_E_INPUT, "%s: cannot decode the image (%s): remove or replace the file", path,
                          why ? why : "unknown reason");
    }
    *pix = img;
    *h = y;
    *w = x;
    return DDX_OK;
}

ddx_status ddx_imgdir_check(const ddx_imgdir *d, int64_t max_pixels) {
    for (int64_t i = 0; i < d->n; i++) {
        uint8_t *px;
        int h, w;
        DDX_TRY(ddx_image_load_rgb(d->paths[i], max_pixels, &px, &h, &w));
        stbi_image_free(px);
    }
    return DDX_OK;
}

ddx_status ddx_features_dir(ddx_inception *net, const ddx_imgdir *d, int64_t max_pixels, ddx_featset *f,
                            void (*progress)(int64_t done, int64_t total, const char *label), const char *label) {
    const int b = ddx_inception_batch(net) > 0 ? ddx_inception_batch(net) : 8;
    uint8_t *batch = NULL;
    size_t cap = 0;
    float *pool3 = malloc((size_t)b * DDX_INCEPTION_FEATURES * sizeof *pool3);
    float *logits = f->want_logits ? malloc((size_t)b * DDX_INCEPTION_LOGITS * sizeof *logits) : NULL;
    ddx_status st = (!pool3 || (f->want_logits && !logits)) ? ddx_errorf(DDX_E_NOMEM, "out of memory for features") : DDX_OK;
    int bh = 0, bw = 0, k = 0;
    for (int64_t i = 0; i <= d->n && !st; i++) {
        uint8_t *img = NULL;
        int h = 0, w = 0;
        if (i < d->n) st = ddx_image_load_rgb(d->paths[i], max_pixels, &img, &h, &w);
        if (st) break;
        // Flush the batch at the end, when it is full, or when the size changes.
        if (k > 0 && (i == d->n || k == b || h != bh || w != bw)) {
            st = ddx_features_u8(net, batch, k, bh, bw, 3, pool3, logits);
            if (!st) st = ddx_featset_add(f, pool3, logits, k);
            if (!st && progress) progress(i, d->n, label);
            k = 0;
        }
        if (i == d->n || st) {
            stbi_image_free(img);
            break;
        }
        size_t per = (size_t)h * w * 3;
        if ((size_t)b * per > cap) {
            uint8_t *nb = realloc(batch, (size_t)b * per);
            if (!nb) {
                stbi_image_free(img);
                st = ddx_errorf(DDX_E_NOMEM, "out of memory for a batch of %dx%d images", w, h);
                break;
            }
            batch = nb;
            cap = (size_t)b * per;
        }
        memcpy(batch + (size_t)k * per, img, per);
        stbi_image_free(img);
        bh = h, bw = w;
        k++;
    }
    free(batch);
    free(pool3);
    free(logits);
    return st;
}

// ---- the reference ---------------------------------------------------------------------------
static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static ddx_status read_ref_features(const char *path, ddx_ref *r) {
    ddx_st_file sf;
    DDX_TRY(ddx_st_read(path, &sf));
    const ddx_st_tensor *t = ddx_st_find(&sf, "pool3");
    ddx_status st = DDX_OK;
    if (!t || t->dtype != DDX_ST_F32 || t->ndim != 2 || t->shape[1] != r->g.d || t->shape[0] < 1 || t->shape[0] > DDX_KID_KEEP)
        st = ddx_errorf(DDX_E_INPUT, "%s: expected an F32 tensor 'pool3' of [1..%d, %lld] features; remake it with ddx-eval stats",
                        path, DDX_KID_KEEP, (long long)r->g.d);
    if (!st && !(r->feats = malloc(t->nbytes))) st = ddx_errorf(DDX_E_NOMEM, "out of memory reading %s", path);
    if (!st) {
        memcpy(r->feats, t->data, t->nbytes);
        r->n_feats = t->shape[0];
        const char *n = ddx_st_meta_get(&sf, "n");
        if (n) r->n = strtoll(n, NULL, 10);
    }
    ddx_st_close(&sf);
    return st;
}

ddx_status ddx_ref_load(const char *ref, const char *what, ddx_inception *net, int64_t max_pixels, ddx_ref *out,
                        void (*progress)(int64_t done, int64_t total, const char *label)) {
    memset(out, 0, sizeof *out);
    struct stat sb;
    if (stat(ref, &sb) != 0) return ddx_errorf(DDX_E_INPUT, "%s: %s does not exist", what, ref);
    if (S_ISDIR(sb.st_mode)) {
        ddx_imgdir d;
        DDX_TRY(ddx_imgdir_list(ref, what, &d));
        ddx_featset f = {0};
        ddx_status st = ddx_imgdir_check(&d, max_pixels);
        if (!st && !net) st = ddx_errorf(DDX_E_INTERNAL, "%s: a reference folder needs the network", what);
        if (!st) st = ddx_featset_init(&f, DDX_KID_KEEP, false);
        if (!st) st = ddx_features_dir(net, &d, max_pixels, &f, progress, "reference");
        if (!st && ddx_fstats_count(f.st) < 2)
            st = ddx_errorf(DDX_E_INPUT, "%s: %s holds %lld image; statistics need at least 2", what, ref, (long long)d.n);
        if (!st) st = ddx_fstats_finish(f.st, &out->g);
        if (!st) {
            int64_t k;
            const float *kept = ddx_fstats_kept(f.st, &k);
            out->n = ddx_fstats_count(f.st);
            if (k > 0 && (out->feats = malloc((size_t)k * DDX_INCEPTION_FEATURES * sizeof(float)))) {
                memcpy(out->feats, kept, (size_t)k * DDX_INCEPTION_FEATURES * sizeof(float));
                out->n_feats = k;
            }
            snprintf(out->desc, sizeof out->desc, "folder %s (%lld images)", ref, (long long)out->n);
        }
        ddx_featset_free(&f);
        ddx_imgdir_free(&d);
        if (st) ddx_ref_free(out);
        return st;
    }
    if (!ends_with(ref, ".npz"))
        return ddx_errorf(DDX_E_INPUT, "%s: %s is neither a folder of images nor a .npz statistics file", what, ref);
    DDX_TRY(ddx_npz_read_stats(ref, 0, &out->g));
    if (out->g.d != DDX_INCEPTION_FEATURES) {
        int64_t d = out->g.d;
        ddx_ref_free(out);
        return ddx_errorf(DDX_E_INPUT, "%s: %s holds %lld-d statistics; FID needs the %d-d pool3 statistics (pytorch-fid dims=2048)",
                          what, ref, (long long)d, DDX_INCEPTION_FEATURES);
    }
    snprintf(out->desc, sizeof out->desc, "%s", ref);
    char fp[4096];
    if (snprintf(fp, sizeof fp, "%s%s", ref, DDX_REF_FEATURES_SUFFIX) < (int)sizeof fp && stat(fp, &sb) == 0) {
        ddx_status st = read_ref_features(fp, out);
        if (st) {
            ddx_ref_free(out);
            return st;
        }
    }
    return DDX_OK;
}

void ddx_ref_free(ddx_ref *r) {
    ddx_gauss_free(&r->g);
    free(r->feats);
    memset(r, 0, sizeof *r);
}

ddx_status ddx_ref_write(const char *out, const char *what, const ddx_featset *f, const char *source_desc) {
    char fp[4096];
    if (snprintf(fp, sizeof fp, "%s%s", out, DDX_REF_FEATURES_SUFFIX) >= (int)sizeof fp)
        return ddx_errorf(DDX_E_INPUT, "%s: path too long", what);
    DDX_TRY(ddx_output_check(out, what));
    DDX_TRY(ddx_output_check(fp, what));
    ddx_gauss g = {0};
    DDX_TRY(ddx_fstats_finish(f->st, &g));
    int64_t k;
    const float *kept = ddx_fstats_kept(f->st, &k);
    ddx_st_writer w;
    ddx_st_writer_init(&w);
    const int64_t shape[2] = {k, DDX_INCEPTION_FEATURES};
    char n[32];
    snprintf(n, sizeof n, "%lld", (long long)ddx_fstats_count(f->st));
    // The features file first: a reader finds the .npz only once its companion is complete.
    ddx_status st = ddx_st_writer_add(&w, "pool3", DDX_ST_F32, 2, shape, kept);
    if (!st) st = ddx_st_writer_meta(&w, "n", n);
    if (!st) st = ddx_st_writer_meta(&w, "source", source_desc);
    if (!st) st = ddx_st_write(&w, fp);
    ddx_st_writer_free(&w);
    if (!st) st = ddx_npz_write_stats(out, what, &g);
    ddx_gauss_free(&g);
    return st;
}

ddx_status ddx_fid_finish(const ddx_featset *f, const ddx_ref *ref, ddx_fid_result *r) {
    memset(r, 0, sizeof *r);
    r->n = ddx_fstats_count(f->st);
    ddx_gauss g = {0};
    DDX_TRY(ddx_fstats_finish(f->st, &g));
    ddx_status st = ddx_frechet_distance(&g, &ref->g, &r->fid);
    ddx_gauss_free(&g);
    if (st) return st;
    int64_t k;
    const float *kept = ddx_fstats_kept(f->st, &k);
    if (kept && k >= 2 && ref->feats && ref->n_feats >= 2) {
        ddx_kid_opts o = ddx_kid_defaults();
        // torch-fidelity refuses sets smaller than its subset size; a small evaluation uses
        // subsets of the smaller set's size instead (reported as kid_subset_size).
        int64_t m = k < ref->n_feats ? k : ref->n_feats;
        if (o.subset_size > m) o.subset_size = m;
        st = ddx_kid(kept, k, ref->feats, ref->n_feats, DDX_INCEPTION_FEATURES, &o, &r->kid, &r->kid_std);
        if (st) return st;
        r->have_kid = true;
        r->kid_subset = o.subset_size;
    }
    if (f->want_logits && f->n_logits >= 10) {
        st = ddx_inception_score(f->logits, f->n_logits, DDX_INCEPTION_LOGITS, 10, true, 2020, &r->is, &r->is_std);
        if (st) return st;
        r->have_is = true;
    }
    return DDX_OK;
}
