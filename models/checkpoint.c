// Checkpoint files: see models/checkpoint.h.
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/checkpoint.h"
#include "models/model.h"
#include "runtime/safetensors.h"

static const char *const k_prefix[] = {"", "ema/", "adam_m/", "adam_v/"};
static const ddx_param_buf k_buf[] = {DDX_PBUF_VALUE, DDX_PBUF_EMA, DDX_PBUF_ADAM_M, DDX_PBUF_ADAM_V};
static const int k_part[] = {DDX_CKPT_WEIGHTS, DDX_CKPT_EMA, DDX_CKPT_ADAM, DDX_CKPT_ADAM};
#define N_PARTS 4

// In memory conv weights are OHWI (NHWC compute); files hold PyTorch's OIHW.
static void ohwi_to_oihw(const float *src, float *dst, const int64_t *s) {
    int64_t O = s[0], H = s[1], W = s[2], I = s[3];
    for (int64_t o = 0; o < O; o++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t w = 0; w < W; w++)
                for (int64_t i = 0; i < I; i++) dst[((o * I + i) * H + h) * W + w] = src[((o * H + h) * W + w) * I + i];
}

static void oihw_to_ohwi(const float *src, float *dst, const int64_t *s) {   // s: the OHWI shape
    int64_t O = s[0], H = s[1], W = s[2], I = s[3];
    for (int64_t o = 0; o < O; o++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t w = 0; w < W; w++)
                for (int64_t i = 0; i < I; i++) dst[((o * H + h) * W + w) * I + i] = src[((o * I + i) * H + h) * W + w];
}

static void file_shape(const ddx_tensor *v, int64_t *out) {
    for (int d = 0; d < v->ndim; d++) out[d] = v->shape[d];
    if (v->ndim == 4) out[1] = v->shape[3], out[2] = v->shape[1], out[3] = v->shape[2];
}

static char *meta_printf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static char *meta_printf(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return buf;
}

ddx_status ddx_checkpoint_save(const char *path, const ddx_param_store *ps, int content, const ddx_config *cfg,
                               const ddx_ckpt_state *st) {
    size_t numel = ps->numel;
    int n_parts = 0;
    for (int p = 0; p < N_PARTS; p++) n_parts += (content & k_part[p]) != 0;
    float *host = malloc((size_t)n_parts * numel * sizeof *host + 1);
    float *tmp = NULL;
    char *yaml = NULL;
    size_t yaml_len = 0;
    ddx_st_writer w;
    ddx_st_writer_init(&w);
    ddx_status s = DDX_OK;
    if (!host) {
        s = ddx_errorf(DDX_E_NOMEM, "%s: out of host memory for the checkpoint", path);
        goto out;
    }
    size_t max_param = 0;
    for (size_t i = 0; i < ps->n_params; i++) {
        size_t n = (size_t)ddx_numel(&ps->params[i]->value);
        if (n > max_param) max_param = n;
    }
    tmp = malloc(max_param * sizeof *tmp + 1);
    if (!tmp) {
        s = ddx_errorf(DDX_E_NOMEM, "%s: out of host memory for the checkpoint", path);
        goto out;
    }
    float *dst = host;
    for (int p = 0; p < N_PARTS; p++) {
        if (!(content & k_part[p])) continue;
        s = ddx_memcpy(dst, DDX_CPU, ps->buf[k_buf[p]], ps->device, numel * sizeof *dst);
        if (s) goto out;
        for (size_t i = 0; i < ps->n_params && !s; i++) {
            const ddx_param *pa = ps->params[i];
            float *d = dst + pa->offset;
            int64_t shape[DDX_MAX_DIMS];
            file_shape(&pa->value, shape);
            if (pa->value.ndim == 4) {
                size_t n = (size_t)ddx_numel(&pa->value);
                memcpy(tmp, d, n * sizeof *tmp);
                ohwi_to_oihw(tmp, d, pa->value.shape);
            }
            char name[512];
            snprintf(name, sizeof name, "%s%s", k_prefix[p], pa->name);
            s = ddx_st_writer_add(&w, name, DDX_ST_F32, pa->value.ndim, shape, d);
        }
        if (s) goto out;
        dst += numel;
    }
    char buf[128];
    FILE *f = open_memstream(&yaml, &yaml_len);
    if (!f) {
        s = ddx_errorf(DDX_E_NOMEM, "%s: cannot format the config", path);
        goto out;
    }
    s = ddx_config_emit(cfg, f);
    fclose(f);
    if (s) goto out;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *parts = content == (DDX_CKPT_WEIGHTS | DDX_CKPT_EMA | DDX_CKPT_ADAM) ? "weights,ema,adam"
                        : content == (DDX_CKPT_WEIGHTS | DDX_CKPT_EMA)                ? "weights,ema"
                                                                                       : "weights";
    if ((s = ddx_st_writer_meta(&w, "format", DDX_CKPT_FORMAT)) ||
        (s = ddx_st_writer_meta(&w, "content", parts)) ||
        (s = ddx_st_writer_meta(&w, "config", yaml)) ||
        (s = ddx_st_writer_meta(&w, "created", buf)) ||
        (s = ddx_st_writer_meta(&w, "step", meta_printf(buf, sizeof buf, "%" PRId64, st->step))) ||
        (s = ddx_st_writer_meta(&w, "data_batch", meta_printf(buf, sizeof buf, "%" PRId64, st->data_batch))) ||
        (s = ddx_st_writer_meta(&w, "seed", meta_printf(buf, sizeof buf, "%" PRIu64, st->seed))) ||
        (s = ddx_st_writer_meta(&w, "loss_sum", meta_printf(buf, sizeof buf, "%a", st->loss_sum))) ||
        (s = ddx_st_writer_meta(&w, "loss_n", meta_printf(buf, sizeof buf, "%" PRId64, st->loss_n))) ||
        (s = ddx_st_writer_meta(&w, "elapsed_s", meta_printf(buf, sizeof buf, "%.3f", st->elapsed_s))) ||
        (s = ddx_st_writer_meta(&w, "param_count", meta_printf(buf, sizeof buf, "%zu", ddx_param_count(ps)))) ||
        (st->class_names && (s = ddx_st_writer_meta(&w, "class_names", st->class_names))))
        goto out;
    s = ddx_st_write(&w, path);
out:
    ddx_st_writer_free(&w);
    free(yaml);
    free(tmp);
    free(host);
    return s;
}

static ddx_status parse_i64(const ddx_checkpoint *ck, const char *key, int64_t *out) {
    const char *v = ddx_st_meta_get(ck->file, key);
    char *end;
    if (!v) return ddx_errorf(DDX_E_INPUT, "%s: metadata '%s' is missing; the file is not a complete ddx checkpoint", ck->path, key);
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < 0) return ddx_errorf(DDX_E_INPUT, "%s: metadata '%s' = '%.40s' is not a count", ck->path, key, v);
    *out = x;
    return DDX_OK;
}

ddx_status ddx_checkpoint_open(const char *path, ddx_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    ck->path = strdup(path);
    ck->file = calloc(1, sizeof *ck->file);
    if (!ck->path || !ck->file) {
        ddx_checkpoint_close(ck);
        return ddx_errorf(DDX_E_NOMEM, "%s: out of host memory", path);
    }
    ddx_status s = ddx_st_read(path, ck->file);
    if (s == DDX_E_IO) s = DDX_E_INPUT;   // a missing checkpoint is the user's to fix, like a bad one
    if (s) {
        ddx_checkpoint_close(ck);
        return s;
    }
    const char *fmt = ddx_st_meta_get(ck->file, "format");
    ck->is_ddx = fmt && strcmp(fmt, DDX_CKPT_FORMAT) == 0;
    if (fmt && !ck->is_ddx) {
        s = ddx_errorf(DDX_E_INPUT, "%s: format '%.60s' is not %s (written by a different program or version)", path, fmt,
                       DDX_CKPT_FORMAT);
        ddx_checkpoint_close(ck);
        return s;
    }
    for (size_t i = 0; i < ck->file->n_tensors; i++) {
        const char *n = ck->file->tensors[i].name;
        int part = DDX_CKPT_WEIGHTS;
        for (int p = 1; p < N_PARTS; p++)
            if (strncmp(n, k_prefix[p], strlen(k_prefix[p])) == 0) part = k_part[p];
        ck->content |= part;
    }
    ck->state.class_names = ddx_st_meta_get(ck->file, "class_names");
    const char *cfg = ddx_st_meta_get(ck->file, "config");
    if (cfg) {
        char what[1100];
        snprintf(what, sizeof what, "%s (stored config)", path);
        s = ddx_config_load_string(cfg, strlen(cfg), what, &ck->cfg);
        if (s) {
            ddx_checkpoint_close(ck);
            return s;
        }
        ck->has_config = true;
    }
    if (ck->is_ddx) {
        const char *ls = ddx_st_meta_get(ck->file, "loss_sum");
        char *end = NULL;
        if ((s = parse_i64(ck, "step", &ck->state.step)) || (s = parse_i64(ck, "data_batch", &ck->state.data_batch)) ||
            (s = parse_i64(ck, "loss_n", &ck->state.loss_n))) {
            ddx_checkpoint_close(ck);
            return s;
        }
        const char *sv = ddx_st_meta_get(ck->file, "seed");
        if (!sv || (ck->state.seed = strtoull(sv, &end, 10), end == sv || *end)) {
            ddx_checkpoint_close(ck);
            return ddx_errorf(DDX_E_INPUT, "%s: metadata 'seed' is missing or not a number", path);
        }
        if (!ls || (ck->state.loss_sum = strtod(ls, &end), end == ls || *end)) {
            ddx_checkpoint_close(ck);
            return ddx_errorf(DDX_E_INPUT, "%s: metadata 'loss_sum' is missing or not a number", path);
        }
        // Optional: checkpoints written before it was stored resume their clock at 0.
        const char *es = ddx_st_meta_get(ck->file, "elapsed_s");
        if (es && (ck->state.elapsed_s = strtod(es, &end), end == es || *end || !(ck->state.elapsed_s >= 0))) {
            ddx_checkpoint_close(ck);
            return ddx_errorf(DDX_E_INPUT, "%s: metadata 'elapsed_s' = '%.40s' is not a time in seconds", path, es);
        }
        if (!ck->has_config) {
            ddx_checkpoint_close(ck);
            return ddx_errorf(DDX_E_INPUT, "%s: metadata 'config' is missing; the file is not a complete ddx checkpoint", path);
        }
    }
    return DDX_OK;
}

void ddx_checkpoint_close(ddx_checkpoint *ck) {
    if (ck->file) ddx_st_close(ck->file);
    free(ck->file);
    free(ck->path);
    memset(ck, 0, sizeof *ck);
}

static const char *shape_text(int ndim, const int64_t *s, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, d ? ", %" PRId64 : "%" PRId64, s[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

static ddx_status load_parts(const ddx_checkpoint *ck, ddx_param_store *ps, int want, bool ema_to_value) {
    if ((want & ck->content) != want) {
        const char *missing = (want & ~ck->content) & DDX_CKPT_ADAM ? "the optimizer state (adam_m/, adam_v/)"
                              : (want & ~ck->content) & DDX_CKPT_EMA ? "EMA weights (ema/)"
                                                                     : "model weights";
        return ddx_errorf(DDX_E_INPUT, "%s: has no %s", ck->path, missing);
    }
    size_t numel = ps->numel;
    float *host = calloc((size_t)N_PARTS * numel + 1, sizeof *host);
    unsigned char *seen = calloc((size_t)N_PARTS * ps->n_params + 1, 1);
    ddx_status s = DDX_OK;
    if (!host || !seen) {
        s = ddx_errorf(DDX_E_NOMEM, "%s: out of host memory loading the checkpoint", ck->path);
        goto out;
    }
    for (size_t i = 0; i < ck->file->n_tensors; i++) {
        const ddx_st_tensor *t = &ck->file->tensors[i];
        int p = 0;
        for (int q = 1; q < N_PARTS; q++)
            if (strncmp(t->name, k_prefix[q], strlen(k_prefix[q])) == 0) p = q;
        if (!(want & k_part[p])) continue;
        const char *name = t->name + strlen(k_prefix[p]);
        char renamed[512];
        const char *canon = ddx_model_rename_legacy(name, renamed, sizeof renamed);
        ddx_param *pa = NULL;
        size_t idx = 0;
        for (; idx < ps->n_params; idx++)
            if (strcmp(ps->params[idx]->name, canon ? canon : name) == 0) {
                pa = ps->params[idx];
                break;
            }
        if (!pa) {
            s = ddx_errorf(DDX_E_INPUT, "%s: tensor '%s' is not a parameter of this model (a checkpoint of another model or config?)",
                           ck->path, t->name);
            goto out;
        }
        int64_t want_shape[DDX_MAX_DIMS];
        file_shape(&pa->value, want_shape);
        bool ok = t->ndim == pa->value.ndim && t->dtype == DDX_ST_F32;
        for (int d = 0; ok && d < t->ndim; d++) ok = t->shape[d] == want_shape[d];
        if (!ok) {
            char a[96], b[96];
            s = ddx_errorf(DDX_E_INPUT, "%s: tensor '%s' is %s %s, the model needs F32 %s (a checkpoint of another model shape?)",
                           ck->path, t->name, ddx_st_dtype_name(t->dtype), shape_text(t->ndim, t->shape, a, sizeof a),
                           shape_text(pa->value.ndim, want_shape, b, sizeof b));
            goto out;
        }
        if (seen[(size_t)p * ps->n_params + idx]) {
            s = ddx_errorf(DDX_E_INPUT, "%s: tensor '%s' appears twice (under an old and a new name)", ck->path, t->name);
            goto out;
        }
        seen[(size_t)p * ps->n_params + idx] = 1;
        float *dst = host + (size_t)p * numel + pa->offset;
        size_t n = (size_t)ddx_numel(&pa->value);
        if (pa->value.ndim == 4) {
            float *src = malloc(n * sizeof *src);
            if (!src) {
                s = ddx_errorf(DDX_E_NOMEM, "%s: out of host memory", ck->path);
                goto out;
            }
            memcpy(src, t->data, n * sizeof *src);
            oihw_to_ohwi(src, dst, pa->value.shape);
            free(src);
        } else {
            memcpy(dst, t->data, n * sizeof *dst);
        }
    }
    for (int p = 0; p < N_PARTS; p++) {
        if (!(want & k_part[p])) continue;
        for (size_t i = 0; i < ps->n_params; i++)
            if (!seen[(size_t)p * ps->n_params + i]) {
                s = ddx_errorf(DDX_E_INPUT, "%s: has no tensor '%s%s' (a checkpoint of another model or config?)", ck->path,
                               k_prefix[p], ps->params[i]->name);
                goto out;
            }
    }
    for (int p = 0; p < N_PARTS && !s; p++)
        if (want & k_part[p]) {
            const ddx_param_buf b = ema_to_value && k_part[p] == DDX_CKPT_EMA ? DDX_PBUF_VALUE : k_buf[p];
            if (!ps->buf[b]) {
                s = ddx_errorf(DDX_E_INTERNAL, "%s: the parameter store has no buffer for %s", ck->path,
                               p ? k_prefix[p] : "the weights");
                break;
            }
            s = ddx_memcpy(ps->buf[b], ps->device, host + (size_t)p * numel, DDX_CPU, numel * sizeof *host);
        }
out:
    free(seen);
    free(host);
    return s;
}

ddx_status ddx_checkpoint_load(const ddx_checkpoint *ck, ddx_param_store *ps, int want) {
    return load_parts(ck, ps, want, false);
}

ddx_status ddx_checkpoint_load_value(const ddx_checkpoint *ck, ddx_param_store *ps, bool ema) {
    return load_parts(ck, ps, ema ? DDX_CKPT_EMA : DDX_CKPT_WEIGHTS, true);
}
