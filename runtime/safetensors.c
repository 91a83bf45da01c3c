// safetensors reader (validates everything: the file is untrusted) and atomic writer.
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "outfile.h"

// Tensor bytes go to and from disk as they lie in memory; the format is little-endian.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

static const struct {
    const char *name;
    size_t size;
} st_dtypes[DDX_ST_DTYPE_COUNT] = {
    [DDX_ST_F32] = {"F32", 4}, [DDX_ST_BF16] = {"BF16", 2}, [DDX_ST_F16] = {"F16", 2},
    [DDX_ST_I64] = {"I64", 8}, [DDX_ST_I32] = {"I32", 4},   [DDX_ST_U8] = {"U8", 1},
};

size_t ddx_st_dtype_size(ddx_st_dtype dt) {
    return ((unsigned)dt < DDX_ST_DTYPE_COUNT) ? st_dtypes[dt].size : 0;
}

const char *ddx_st_dtype_name(ddx_st_dtype dt) {
    return ((unsigned)dt < DDX_ST_DTYPE_COUNT) ? st_dtypes[dt].name : "?";
}

static bool st_dtype_lookup(const char *s, size_t n, ddx_st_dtype *out) {
    for (int i = 0; i < DDX_ST_DTYPE_COUNT; i++) {
        if (strlen(st_dtypes[i].name) == n && memcmp(st_dtypes[i].name, s, n) == 0) {
            *out = (ddx_st_dtype)i;
            return true;
        }
    }
    return false;
}

bool ddx_st_dtype_parse(const char *s, ddx_st_dtype *out) {
    return s && st_dtype_lookup(s, strlen(s), out);
}

// numel * elem_size with every product checked; false on overflow of int64.
static bool st_nbytes(int ndim, const int64_t *shape, size_t elem, int64_t *numel_out, int64_t *nbytes_out) {
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) numel = 0;
    if (numel != 0) {
        for (int i = 0; i < ndim; i++) {
            if (numel > INT64_MAX / shape[i]) return false;
            numel *= shape[i];
        }
    }
    if (numel > INT64_MAX / (int64_t)elem) return false;
    *numel_out = numel;
    *nbytes_out = numel * (int64_t)elem;
    return true;
}

static char *st_strndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

// ---- reader -------------------------------------------------------------------------------

typedef struct st_span {
    uint64_t begin, end;
    size_t tensor;  // index into the tensors array
} st_span;

static int span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int tensor_name_cmp(const void *a, const void *b) {
    return strcmp(((const ddx_st_tensor *)a)->name, ((const ddx_st_tensor *)b)->name);
}

static int meta_key_cmp(const void *a, const void *b) {
    return strcmp(((const ddx_st_meta *)a)->key, ((const ddx_st_meta *)b)->key);
}

#define NAME_BUF 80

static ddx_status st_parse_meta(const char *what, const ddx_json *v, ddx_st_file *out) {
    char k[NAME_BUF];
    if (v->type != DDX_JSON_OBJECT)
        return ddx_errorf(DDX_E_INPUT, "%s: \"__metadata__\" is a JSON %s, expected an object of string to string",
                          what, ddx_json_type_name(v->type));
    if (v->n == 0) return DDX_OK;
    out->meta = calloc(v->n, sizeof *out->meta);
    if (!out->meta) return ddx_errorf(DDX_E_NOMEM, "%s: out of memory for metadata", what);
    for (size_t i = 0; i < v->n; i++) {
        const ddx_json_member *m = &v->u.members[i];
        ddx_json_printable(m->key, m->key_len, k, sizeof k);
        if (m->value.type != DDX_JSON_STRING)
            return ddx_errorf(DDX_E_INPUT, "%s: __metadata__ \"%s\" is a JSON %s, expected a string", what, k,
                              ddx_json_type_name(m->value.type));
        // Keys and values are handed out as C strings, so an embedded NUL would silently cut them.
        if (memchr(m->key, 0, m->key_len) || memchr(m->value.u.s, 0, m->value.n))
            return ddx_errorf(DDX_E_INPUT, "%s: __metadata__ \"%s\" contains a NUL character", what, k);
        out->meta[i].key = st_strndup(m->key, m->key_len);
        out->meta[i].value = st_strndup(m->value.u.s, m->value.n);
        out->n_meta = i + 1;
        if (!out->meta[i].key || !out->meta[i].value)
            return ddx_errorf(DDX_E_NOMEM, "%s: out of memory for metadata", what);
    }
    qsort(out->meta, out->n_meta, sizeof *out->meta, meta_key_cmp);
    return DDX_OK;
}

// Validates one tensor entry; fills t (name excluded) and its span.
static ddx_status st_parse_entry(const char *what, const char *name, const ddx_json *v, uint64_t data_len,
                                 ddx_st_tensor *t, st_span *span) {
    if (v->type != DDX_JSON_OBJECT)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": entry is a JSON %s, expected an object with dtype, "
                          "shape and data_offsets", what, name, ddx_json_type_name(v->type));
    const ddx_json *dtype = NULL, *shape = NULL, *offs = NULL;
    for (size_t i = 0; i < v->n; i++) {
        const ddx_json_member *m = &v->u.members[i];
        if (m->key_len == 5 && memcmp(m->key, "dtype", 5) == 0) dtype = &m->value;
        else if (m->key_len == 5 && memcmp(m->key, "shape", 5) == 0) shape = &m->value;
        else if (m->key_len == 12 && memcmp(m->key, "data_offsets", 12) == 0) offs = &m->value;
        else {
            char k[NAME_BUF];
            return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": unknown key \"%s\" (allowed: dtype, shape, "
                              "data_offsets)", what, name, ddx_json_printable(m->key, m->key_len, k, sizeof k));
        }
    }
    if (!dtype || !shape || !offs)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": missing \"%s\"", what, name,
                          !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    if (dtype->type != DDX_JSON_STRING)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": dtype is a JSON %s, expected a string", what, name,
                          ddx_json_type_name(dtype->type));
    if (!st_dtype_lookup(dtype->u.s, dtype->n, &t->dtype)) {
        char d[NAME_BUF];
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": unsupported dtype \"%s\" (ddx reads F32, BF16, F16, "
                          "I64, I32, U8)", what, name, ddx_json_printable(dtype->u.s, dtype->n, d, sizeof d));
    }

    if (shape->type != DDX_JSON_ARRAY)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": shape is a JSON %s, expected an array of integers",
                          what, name, ddx_json_type_name(shape->type));
    if (shape->n > DDX_ST_MAX_DIMS)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": shape has %zu dims, at most %d are supported", what,
                          name, shape->n, DDX_ST_MAX_DIMS);
    t->ndim = (int)shape->n;
    for (size_t i = 0; i < shape->n; i++)
        if (!ddx_json_as_index(&shape->u.items[i], &t->shape[i]))
            return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": shape[%zu] is not an integer in [0, 2^63-1]", what,
                              name, i);
    int64_t numel, nbytes;
    if (!st_nbytes(t->ndim, t->shape, st_dtypes[t->dtype].size, &numel, &nbytes))
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": shape's byte size overflows 64 bits", what, name);

    if (offs->type != DDX_JSON_ARRAY || offs->n != 2)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": data_offsets must be an array [begin, end]", what, name);
    int64_t b, e;
    if (!ddx_json_as_index(&offs->u.items[0], &b) || !ddx_json_as_index(&offs->u.items[1], &e))
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": data_offsets must hold integers in [0, 2^63-1]", what,
                          name);
    if (b > e)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": data_offsets [%lld, %lld] has begin > end", what, name,
                          (long long)b, (long long)e);
    if ((uint64_t)e > data_len)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": data_offsets [%lld, %lld] run past the %llu-byte data "
                          "buffer (truncated file?)", what, name, (long long)b, (long long)e,
                          (unsigned long long)data_len);
    if (e - b != nbytes)
        return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\": data_offsets [%lld, %lld] hold %lld bytes but %s of "
                          "%lld elements needs %lld", what, name, (long long)b, (long long)e, (long long)(e - b),
                          st_dtypes[t->dtype].name, (long long)numel, (long long)nbytes);
    t->nbytes = (size_t)nbytes;
    span->begin = (uint64_t)b;
    span->end = (uint64_t)e;
    return DDX_OK;
}

// Offsets sorted by begin must start at 0, abut, and end at the buffer end: no byte of the
// buffer is unowned or shared, which is what makes a file's size and content unambiguous.
static ddx_status st_check_tiling(const char *what, const ddx_st_file *f, st_span *spans, uint64_t data_len) {
    if (f->n_tensors) qsort(spans, f->n_tensors, sizeof *spans, span_cmp);
    uint64_t expect = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_span *s = &spans[i];
        char a[NAME_BUF], b[NAME_BUF];
        const char *nm = ddx_json_printable(f->tensors[s->tensor].name, strlen(f->tensors[s->tensor].name), a, sizeof a);
        if (s->begin < expect)
            return ddx_errorf(DDX_E_INPUT, "%s: tensor \"%s\" at data_offsets [%llu, %llu] overlaps tensor \"%s\"",
                              what, nm, (unsigned long long)s->begin, (unsigned long long)s->end,
                              ddx_json_printable(f->tensors[spans[i - 1].tensor].name,
                                                 strlen(f->tensors[spans[i - 1].tensor].name), b, sizeof b));
        if (s->begin > expect)
            return ddx_errorf(DDX_E_INPUT, "%s: data bytes [%llu, %llu) belong to no tensor (gap before tensor "
                              "\"%s\")", what, (unsigned long long)expect, (unsigned long long)s->begin, nm);
        expect = s->end;
    }
    if (expect != data_len)
        return ddx_errorf(DDX_E_INPUT, "%s: tensors cover %llu bytes but the data buffer has %llu (trailing bytes "
                          "belong to no tensor)", what, (unsigned long long)expect, (unsigned long long)data_len);
    return DDX_OK;
}

ddx_status ddx_st_parse(const void *buf, size_t len, const char *what, ddx_st_file *out) {
    memset(out, 0, sizeof *out);
    if (!what) what = "safetensors";
    if (!buf && len) return ddx_errorf(DDX_E_INTERNAL, "%s: ddx_st_parse got a NULL buffer", what);
    const uint8_t *p = buf;
    if (len < 8)
        return ddx_errorf(DDX_E_INPUT, "%s: file is %zu bytes, shorter than the 8-byte header length (truncated or "
                          "not a safetensors file)", what, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen == 0)
        return ddx_errorf(DDX_E_INPUT, "%s: header length is 0 (not a safetensors file?)", what);
    if (hlen > len - 8)
        return ddx_errorf(DDX_E_INPUT, "%s: header length %llu exceeds the %zu bytes after the length field "
                          "(truncated or not a safetensors file)", what, (unsigned long long)hlen, len - 8);
    if (hlen > DDX_ST_MAX_HEADER)
        return ddx_errorf(DDX_E_INPUT, "%s: header length %llu exceeds the %llu-byte limit", what,
                          (unsigned long long)hlen, (unsigned long long)DDX_ST_MAX_HEADER);
    const uint8_t *data = p + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;

    size_t wl = strlen(what);
    char *jwhat = malloc(wl + 10);
    if (!jwhat) return ddx_errorf(DDX_E_NOMEM, "%s: out of memory", what);
    memcpy(jwhat, what, wl);
    memcpy(jwhat + wl, " (header)", 10);
    ddx_json root;
    ddx_status st = ddx_json_parse(p + 8, (size_t)hlen, jwhat, &root);
    free(jwhat);
    if (st != DDX_OK) return st;

    st_span *spans = NULL;
    if (root.type != DDX_JSON_OBJECT) {
        st = ddx_errorf(DDX_E_INPUT, "%s: header is a JSON %s, expected an object", what,
                        ddx_json_type_name(root.type));
        goto fail;
    }
    size_t n_tensors = 0;
    for (size_t i = 0; i < root.n; i++) {
        const ddx_json_member *m = &root.u.members[i];
        if (m->key_len == 12 && memcmp(m->key, "__metadata__", 12) == 0) {
            if ((st = st_parse_meta(what, &m->value, out)) != DDX_OK) goto fail;
        } else {
            n_tensors++;
        }
    }
    if (n_tensors) {
        out->tensors = calloc(n_tensors, sizeof *out->tensors);
        spans = calloc(n_tensors, sizeof *spans);
        if (!out->tensors || !spans) {
            st = ddx_errorf(DDX_E_NOMEM, "%s: out of memory for %zu tensors", what, n_tensors);
            goto fail;
        }
    }
    for (size_t i = 0; i < root.n; i++) {
        const ddx_json_member *m = &root.u.members[i];
        if (m->key_len == 12 && memcmp(m->key, "__metadata__", 12) == 0) continue;
        char nm[NAME_BUF];
        ddx_json_printable(m->key, m->key_len, nm, sizeof nm);
        if (memchr(m->key, 0, m->key_len)) {
            st = ddx_errorf(DDX_E_INPUT, "%s: tensor name \"%s\" contains a NUL character", what, nm);
            goto fail;
        }
        size_t k = out->n_tensors;
        ddx_st_tensor *t = &out->tensors[k];
        if ((st = st_parse_entry(what, nm, &m->value, data_len, t, &spans[k])) != DDX_OK) goto fail;
        spans[k].tensor = k;
        t->name = st_strndup(m->key, m->key_len);
        out->n_tensors = k + 1;
        if (!t->name) {
            st = ddx_errorf(DDX_E_NOMEM, "%s: out of memory for tensor names", what);
            goto fail;
        }
    }
    if ((st = st_check_tiling(what, out, spans, data_len)) != DDX_OK) goto fail;
    for (size_t i = 0; i < out->n_tensors; i++)
        out->tensors[spans[i].tensor].data = data + spans[i].begin;
    if (out->n_tensors) qsort(out->tensors, out->n_tensors, sizeof *out->tensors, tensor_name_cmp);
    free(spans);
    ddx_json_free(&root);
    return DDX_OK;
fail:
    free(spans);
    ddx_json_free(&root);
    ddx_st_close(out);
    return st;
}

ddx_status ddx_st_read(const char *path, ddx_st_file *out) {
    memset(out, 0, sizeof *out);
    int fd;
    int64_t fsize = 0;
    DDX_TRY(ddx_input_open(path, "safetensors file", &fd, &fsize));
    if (fsize < 0 || (uint64_t)fsize > SIZE_MAX - 16) {
        close(fd);
        return ddx_errorf(DDX_E_INPUT, "%s: file size %lld is not addressable", path, (long long)fsize);
    }
    size_t size = (size_t)fsize;
    uint8_t head[8] = {0};
    ssize_t got_head = pread(fd, head, sizeof head, 0);
    // Shifting the load address by the header length mod 8 puts the data buffer (and so every
    // tensor whose offset is a multiple of its element size) at an aligned address.
    size_t pad = 0;
    if (got_head == (ssize_t)sizeof head) {
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | head[i];
        pad = (size_t)((8 - (8 + hlen % 8) % 8) % 8);
    }
    uint8_t *buf = malloc(size + pad + 1);
    if (!buf) {
        close(fd);
        return ddx_errorf(DDX_E_NOMEM, "%s: cannot allocate %zu bytes to read the file", path, size);
    }
    size_t n = 0;
    while (n < size) {
        ssize_t r = pread(fd, buf + pad + n, size - n, (off_t)n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return ddx_errorf(DDX_E_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break;  // file shrank while reading: parse what is there, which will not validate
        n += (size_t)r;
    }
    close(fd);
    ddx_status st = ddx_st_parse(buf + pad, n, path, out);
    if (st != DDX_OK) {
        free(buf);
        return st;
    }
    out->owned = buf;
    return DDX_OK;
}

const ddx_st_tensor *ddx_st_find(const ddx_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *ddx_st_meta_get(const ddx_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    size_t lo = 0, hi = f->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta[mid].key, key);
        if (c == 0) return f->meta[mid].value;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

void ddx_st_close(ddx_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    free(f->owned);
    memset(f, 0, sizeof *f);
}

// ---- writer -------------------------------------------------------------------------------

void ddx_st_writer_init(ddx_st_writer *w) { memset(w, 0, sizeof *w); }

void ddx_st_writer_free(ddx_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->meta);
    memset(w, 0, sizeof *w);
}

static bool st_grow(void **arr, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return true;
    size_t nc = *cap ? *cap * 2 : 16;
    if (nc > SIZE_MAX / size) return false;
    void *p = realloc(*arr, nc * size);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

ddx_status ddx_st_writer_add(ddx_st_writer *w, const char *name, ddx_st_dtype dtype, int ndim,
                             const int64_t *shape, const void *data) {
    if (!name) return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_add: tensor name is NULL");
    char nm[NAME_BUF];
    ddx_json_printable(name, strlen(name), nm, sizeof nm);
    if (!ddx_json_utf8_valid(name, strlen(name)))
        return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_add: tensor name \"%s\" is not valid UTF-8", nm);
    if (strcmp(name, "__metadata__") == 0)
        return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_add: \"__metadata__\" is reserved, not a tensor name");
    if ((unsigned)dtype >= DDX_ST_DTYPE_COUNT)
        return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_add: tensor \"%s\": invalid dtype %d", nm, (int)dtype);
    if (ndim < 0 || ndim > DDX_ST_MAX_DIMS || (ndim > 0 && !shape))
        return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_add: tensor \"%s\": ndim %d outside [0, %d]", nm, ndim,
                          DDX_ST_MAX_DIMS);
    ddx_st_tensor t = {.dtype = dtype, .ndim = ndim, .data = data};
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_add: tensor \"%s\": shape[%d] = %lld is negative", nm, i,
                              (long long)shape[i]);
        t.shape[i] = shape[i];
    }
    int64_t numel, nbytes;
    if (!st_nbytes(ndim, t.shape, st_dtypes[dtype].size, &numel, &nbytes) || (uint64_t)nbytes > SIZE_MAX)
        return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_add: tensor \"%s\": byte size overflows", nm);
    if (nbytes > 0 && !data)
        return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_add: tensor \"%s\": data is NULL", nm);
    t.nbytes = (size_t)nbytes;
    if (!st_grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof *w->tensors) ||
        !(t.name = st_strndup(name, strlen(name))))
        return ddx_errorf(DDX_E_NOMEM, "ddx_st_writer_add: out of memory adding tensor \"%s\"", nm);
    w->tensors[w->n_tensors++] = t;
    return DDX_OK;
}

ddx_status ddx_st_writer_meta(ddx_st_writer *w, const char *key, const char *value) {
    if (!key || !value) return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_meta: key or value is NULL");
    char k[NAME_BUF];
    ddx_json_printable(key, strlen(key), k, sizeof k);
    if (!ddx_json_utf8_valid(key, strlen(key)) || !ddx_json_utf8_valid(value, strlen(value)))
        return ddx_errorf(DDX_E_INPUT, "ddx_st_writer_meta: metadata \"%s\": key or value is not valid UTF-8", k);
    ddx_st_meta m = {0};
    if (!st_grow((void **)&w->meta, &w->cap_meta, w->n_meta, sizeof *w->meta) ||
        !(m.key = st_strndup(key, strlen(key))) || !(m.value = st_strndup(value, strlen(value)))) {
        free(m.key);
        return ddx_errorf(DDX_E_NOMEM, "ddx_st_writer_meta: out of memory adding \"%s\"", k);
    }
    w->meta[w->n_meta++] = m;
    return DDX_OK;
}

static int tensor_ptr_name_cmp(const void *a, const void *b) {
    return strcmp((*(const ddx_st_tensor *const *)a)->name, (*(const ddx_st_tensor *const *)b)->name);
}

// Largest element size first keeps every tensor aligned without padding bytes (which the
// exact-tiling rule forbids); names break ties so the layout is deterministic.
static int tensor_ptr_layout_cmp(const void *a, const void *b) {
    const ddx_st_tensor *x = *(const ddx_st_tensor *const *)a, *y = *(const ddx_st_tensor *const *)b;
    size_t sx = st_dtypes[x->dtype].size, sy = st_dtypes[y->dtype].size;
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int meta_ptr_cmp(const void *a, const void *b) {
    return strcmp((*(const ddx_st_meta *const *)a)->key, (*(const ddx_st_meta *const *)b)->key);
}

typedef struct st_layout {
    ddx_json_buf header;            // padded JSON
    const ddx_st_tensor **order;    // data order
    uint64_t data_len;
} st_layout;

static void st_layout_free(st_layout *L) {
    ddx_json_buf_free(&L->header);
    free(L->order);
}

static ddx_status st_layout_build(const ddx_st_writer *w, const char *what, st_layout *L) {
    memset(L, 0, sizeof *L);
    size_t n = w->n_tensors;
    const ddx_st_tensor **by_name = NULL;
    const ddx_st_meta **meta = NULL;
    uint64_t *offset = NULL;  // indexed like w->tensors
    ddx_status st = DDX_OK;
    char nm[NAME_BUF];
    by_name = malloc((n ? n : 1) * sizeof *by_name);
    L->order = malloc((n ? n : 1) * sizeof *L->order);
    offset = malloc((n ? n : 1) * sizeof *offset);
    meta = malloc((w->n_meta ? w->n_meta : 1) * sizeof *meta);
    if (!by_name || !L->order || !offset || !meta) {
        st = ddx_errorf(DDX_E_NOMEM, "%s: out of memory laying out %zu tensors", what, n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) by_name[i] = L->order[i] = &w->tensors[i];
    qsort(by_name, n, sizeof *by_name, tensor_ptr_name_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(by_name[i - 1]->name, by_name[i]->name) == 0) {
            st = ddx_errorf(DDX_E_INPUT, "%s: duplicate tensor name \"%s\"; nothing was written", what,
                            ddx_json_printable(by_name[i]->name, strlen(by_name[i]->name), nm, sizeof nm));
            goto done;
        }
    }
    for (size_t i = 0; i < w->n_meta; i++) meta[i] = &w->meta[i];
    qsort(meta, w->n_meta, sizeof *meta, meta_ptr_cmp);
    for (size_t i = 1; i < w->n_meta; i++) {
        if (strcmp(meta[i - 1]->key, meta[i]->key) == 0) {
            st = ddx_errorf(DDX_E_INPUT, "%s: duplicate metadata key \"%s\"; nothing was written", what,
                            ddx_json_printable(meta[i]->key, strlen(meta[i]->key), nm, sizeof nm));
            goto done;
        }
    }
    qsort(L->order, n, sizeof *L->order, tensor_ptr_layout_cmp);
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (L->order[i]->nbytes > INT64_MAX - pos) {
            st = ddx_errorf(DDX_E_INPUT, "%s: total tensor bytes overflow", what);
            goto done;
        }
        offset[L->order[i] - w->tensors] = pos;
        pos += L->order[i]->nbytes;
    }
    L->data_len = pos;

    ddx_json_buf *h = &L->header;
    ddx_json_buf_append(h, "{", 1);
    bool first = true;
    if (w->n_meta) {
        ddx_json_buf_append(h, "\"__metadata__\":{", 16);
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) ddx_json_buf_append(h, ",", 1);
            ddx_json_buf_string(h, meta[i]->key, strlen(meta[i]->key));
            ddx_json_buf_append(h, ":", 1);
            ddx_json_buf_string(h, meta[i]->value, strlen(meta[i]->value));
        }
        ddx_json_buf_append(h, "}", 1);
        first = false;
    }
    for (size_t i = 0; i < n; i++) {
        const ddx_st_tensor *t = by_name[i];
        if (!first) ddx_json_buf_append(h, ",", 1);
        first = false;
        ddx_json_buf_string(h, t->name, strlen(t->name));
        ddx_json_buf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtypes[t->dtype].name);
        for (int d = 0; d < t->ndim; d++) ddx_json_buf_printf(h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        uint64_t b = offset[t - w->tensors];
        ddx_json_buf_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)b,
                            (unsigned long long)(b + t->nbytes));
    }
    ddx_json_buf_append(h, "}", 1);
    // Spaces are JSON whitespace, so padding keeps the header valid while aligning the data.
    while (!h->failed && (8 + h->len) % 8 != 0) ddx_json_buf_append(h, " ", 1);
    if (h->failed) st = ddx_errorf(DDX_E_NOMEM, "%s: out of memory building the header", what);
done:
    free(by_name);
    free(meta);
    free(offset);
    if (st != DDX_OK) st_layout_free(L);
    return st;
}

static void st_put_le64(uint8_t *o, uint64_t v) {
    for (int i = 0; i < 8; i++) o[i] = (uint8_t)(v >> (8 * i));
}

ddx_status ddx_st_serialize(const ddx_st_writer *w, void **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    st_layout L;
    DDX_TRY(st_layout_build(w, "ddx_st_serialize", &L));
    if (L.data_len > SIZE_MAX - 8 - L.header.len) {
        st_layout_free(&L);
        return ddx_errorf(DDX_E_NOMEM, "ddx_st_serialize: %llu data bytes do not fit in memory",
                          (unsigned long long)L.data_len);
    }
    size_t total = 8 + L.header.len + (size_t)L.data_len;
    uint8_t *buf = malloc(total);
    if (!buf) {
        st_layout_free(&L);
        return ddx_errorf(DDX_E_NOMEM, "ddx_st_serialize: cannot allocate %zu bytes", total);
    }
    st_put_le64(buf, L.header.len);
    memcpy(buf + 8, L.header.data, L.header.len);
    size_t pos = 8 + L.header.len;
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (L.order[i]->nbytes) memcpy(buf + pos, L.order[i]->data, L.order[i]->nbytes);
        pos += L.order[i]->nbytes;
    }
    st_layout_free(&L);
    *out = buf;
    *out_len = total;
    return DDX_OK;
}

ddx_status ddx_st_write(const ddx_st_writer *w, const char *path) {
    if (!path || !*path) return ddx_errorf(DDX_E_INPUT, "ddx_st_write: empty output path");
    st_layout L;
    DDX_TRY(st_layout_build(w, path, &L));
    ddx_atomic_file a;
    ddx_status st = ddx_atomic_open(&a, path, "safetensors output");
    if (st) {
        st_layout_free(&L);
        return st;
    }
    uint8_t len8[8];
    st_put_le64(len8, L.header.len);
    ddx_atomic_write(&a, len8, 8);
    ddx_atomic_write(&a, L.header.data, L.header.len);
    for (size_t i = 0; i < w->n_tensors; i++) ddx_atomic_write(&a, L.order[i]->data, L.order[i]->nbytes);
    st_layout_free(&L);
    return ddx_atomic_commit(&a);
}
