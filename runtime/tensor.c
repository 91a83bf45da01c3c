#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

size_t ddx_dtype_size(ddx_dtype dt) {
    switch (dt) {
    case DDX_F32: return 4;
    case DDX_BF16: return 2;
    case DDX_I32: return 4;
    case DDX_U8: return 1;
    default: return 0;
    }
}

const char *ddx_dtype_name(ddx_dtype dt) {
    static const char *names[] = {"f32", "bf16", "i32", "u8"};
    return (unsigned)dt < DDX_DTYPE_COUNT ? names[dt] : "?";
}

const char *ddx_device_name(ddx_device dev) { return dev == DDX_CUDA ? "cuda" : "cpu"; }

int64_t ddx_numel(const ddx_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t ddx_nbytes(const ddx_tensor *t) { return (size_t)ddx_numel(t) * ddx_dtype_size(t->dtype); }

bool ddx_same_shape(const ddx_tensor *a, const ddx_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *ddx_shape_str(const ddx_tensor *t, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

ddx_tensor ddx_tensor_wrap(void *data, ddx_dtype dt, ddx_device dev, int ndim, const int64_t *shape) {
    ddx_tensor t = {.data = data, .ndim = ndim, .dtype = dt, .device = dev};
    for (int i = 0; i < DDX_MAX_DIMS; i++) t.shape[i] = i < ndim ? shape[i] : 1;
    return t;
}

ddx_tensor ddx_tensor_slice(const ddx_tensor *t, int64_t n0, int64_t n1) {
    ddx_tensor v = *t;
    size_t row = ddx_nbytes(t) / (size_t)(t->shape[0] ? t->shape[0] : 1);
    v.data = (uint8_t *)t->data + (size_t)n0 * row;
    v.shape[0] = n1 - n0;
    v.grad = NULL;
    v.requires_grad = false;
    v.name = NULL;
    return v;
}

// ---- device memory ---------------------------------------------------------------------
ddx_status ddx_dev_alloc(ddx_device dev, size_t bytes, void **out) {
    *out = NULL;
    if (dev == DDX_CUDA) return ddx_cuda_malloc(bytes, out);
    void *p = NULL;
    if (posix_memalign(&p, DDX_ARENA_ALIGN, bytes ? bytes : DDX_ARENA_ALIGN) != 0)
        return ddx_errorf(DDX_E_NOMEM, "host allocation of %zu bytes failed", bytes);
    *out = p;
    return DDX_OK;
}

void ddx_dev_free(ddx_device dev, void *p) {
    if (!p) return;
    if (dev == DDX_CUDA)
        ddx_cuda_free(p);
    else
        free(p);
}

ddx_status ddx_memcpy(void *dst, ddx_device ddev, const void *src, ddx_device sdev, size_t bytes) {
    if (bytes == 0) return DDX_OK;
    if (ddev == DDX_CPU && sdev == DDX_CPU) {
        memcpy(dst, src, bytes);
        return DDX_OK;
    }
    ddx_copy_kind k = ddev == DDX_CPU ? DDX_COPY_D2H : (sdev == DDX_CPU ? DDX_COPY_H2D : DDX_COPY_D2D);
    return ddx_cuda_memcpy(dst, src, bytes, k);
}

ddx_status ddx_dev_memset(ddx_device dev, void *p, int byte, size_t n) {
    if (dev == DDX_CUDA) return ddx_cuda_memset(p, byte, n);
    memset(p, byte, n);
    return DDX_OK;
}

// ---- arenas ----------------------------------------------------------------------------
typedef struct ddx_guard {
    uint8_t *p;
} ddx_guard;

static const uint8_t GUARD_BYTE = 0xA5;

static size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static ddx_status block_new(ddx_arena *a, size_t size, ddx_arena_block **out) {
    ddx_arena_block *b = calloc(1, sizeof *b);
    if (!b) return ddx_errorf(DDX_E_NOMEM, "arena %s: out of host memory", a->name);
    ddx_status st = ddx_dev_alloc(a->device, size, (void **)&b->base);
    if (st != DDX_OK) {
        free(b);
        return ddx_errorf(st, "arena %s: cannot allocate a %.1f MiB block on %s: %s", a->name,
                          (double)size / (1 << 20), ddx_device_name(a->device), ddx_last_error());
    }
    b->size = size;
    *out = b;
    return DDX_OK;
}

ddx_status ddx_arena_init(ddx_arena *a, const char *name, ddx_device dev, size_t initial_bytes) {
    memset(a, 0, sizeof *a);
    a->name = name;
    a->device = dev;
    if (initial_bytes == 0) return DDX_OK;
    return block_new(a, align_up(initial_bytes, DDX_ARENA_ALIGN), &a->head);
}

static void free_blocks(ddx_arena *a) {
    for (ddx_arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        ddx_dev_free(a->device, b->base);
        free(b);
    }
    a->head = NULL;
}

void ddx_arena_free(ddx_arena *a) {
    free_blocks(a);
    free(a->guards);
    a->guards = NULL;
    a->n_guards = a->cap_guards = 0;
}

size_t ddx_arena_capacity(const ddx_arena *a) {
    size_t n = 0;
    for (const ddx_arena_block *b = a->head; b; b = b->next) n += b->size;
    return n;
}

void *ddx_arena_alloc(ddx_arena *a, size_t bytes) {
    size_t need = align_up(bytes ? bytes : 1, DDX_ARENA_ALIGN);
    size_t guard = a->debug ? DDX_GUARD_BYTES : 0;
    if (!a->head || a->head->used + need + guard > a->head->size) {
        size_t prev = a->head ? a->head->size : 0;
        size_t size = prev * 2 > need + guard ? prev * 2 : align_up(need + guard, 1 << 20);
        ddx_arena_block *b;
        if (block_new(a, size, &b) != DDX_OK) return NULL;
        b->next = a->head;
        a->head = b;
    }
    uint8_t *p = a->head->base + a->head->used;
    a->head->used += need + guard;
    a->in_use += need + guard;
    if (a->in_use > a->peak) a->peak = a->in_use;
    if (a->debug) {
        // Poison all of it (0xFF is a NaN in f32 and bf16) so that an op that leaves an
        // element unwritten fails the comparison instead of passing on stale data.
        if (ddx_dev_memset(a->device, p, 0xFF, need) != DDX_OK) return NULL;
        if (ddx_dev_memset(a->device, p + need, GUARD_BYTE, guard) != DDX_OK) return NULL;
        if (a->n_guards == a->cap_guards) {
            size_t cap = a->cap_guards ? a->cap_guards * 2 : 64;
            ddx_guard *g = realloc(a->guards, cap * sizeof *g);
            if (!g) {
                ddx_errorf(DDX_E_NOMEM, "arena %s: out of host memory for guards", a->name);
                return NULL;
            }
            a->guards = g;
            a->cap_guards = cap;
        }
        a->guards[a->n_guards++] = (ddx_guard){p + need};
    }
    return p;
}

ddx_status ddx_arena_reset(ddx_arena *a) {
    a->n_guards = 0;
    a->in_use = 0;
    if (a->head && a->head->next) {
        // More than one block: coalesce into one of the combined size so the next step
        // finds everything in a single block at repeating addresses.
        size_t total = ddx_arena_capacity(a);
        free_blocks(a);
        return block_new(a, total, &a->head);
    }
    if (a->head) a->head->used = 0;
    return DDX_OK;
}

ddx_status ddx_arena_check_guards(const ddx_arena *a) {
    uint8_t buf[DDX_GUARD_BYTES];
    for (size_t i = 0; i < a->n_guards; i++) {
        const uint8_t *g = a->guards[i].p;
        if (a->device == DDX_CUDA) {
            DDX_TRY(ddx_memcpy(buf, DDX_CPU, g, DDX_CUDA, sizeof buf));
            g = buf;
        }
        for (size_t k = 0; k < DDX_GUARD_BYTES; k++)
            if (g[k] != GUARD_BYTE)
                return ddx_errorf(DDX_E_INTERNAL, "arena %s: guard bytes after allocation %zu overwritten (byte %zu is 0x%02x)",
                                  a->name, i, k, g[k]);
    }
    return DDX_OK;
}

ddx_arena_mark ddx_arena_mark_get(const ddx_arena *a) {
    return (ddx_arena_mark){a->head, a->head ? a->head->used : 0, a->in_use, a->n_guards};
}

ddx_status ddx_arena_rewind(ddx_arena *a, ddx_arena_mark m) {
    if (a->debug) {
        ddx_arena tail = *a;   // a view of just the guards being released
        tail.guards = a->guards + m.n_guards;
        tail.n_guards = a->n_guards - m.n_guards;
        DDX_TRY(ddx_arena_check_guards(&tail));
    }
    // Blocks chained after the mark sit in front of it in the list: empty them, keep them.
    for (ddx_arena_block *b = a->head; b && b != m.block; b = b->next) b->used = 0;
    if (m.block) m.block->used = m.used;
    a->in_use = m.in_use;
    a->n_guards = m.n_guards;
    return DDX_OK;
}

// ---- parameter store -------------------------------------------------------------------
void ddx_param_store_init(ddx_param_store *s, ddx_device dev) {
    memset(s, 0, sizeof *s);
    s->device = dev;
}

ddx_tensor *ddx_param_add(ddx_param_store *s, const char *name, int ndim, const int64_t *shape) {
    if (s->finalized || ndim < 0 || ndim > DDX_MAX_DIMS) return NULL;
    if (s->n_params == s->cap_params) {
        size_t cap = s->cap_params ? s->cap_params * 2 : 64;
        ddx_param **p = realloc(s->params, cap * sizeof *p);
        if (!p) return NULL;
        s->params = p;
        s->cap_params = cap;
    }
    ddx_param *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(name))) {
        free(p);
        return NULL;
    }
    p->value = ddx_tensor_wrap(NULL, DDX_F32, s->device, ndim, shape);
    p->value.name = p->name;
    p->value.requires_grad = true;
    p->grad = ddx_tensor_wrap(NULL, DDX_F32, s->device, ndim, shape);
    p->value.grad = &p->grad;
    p->offset = s->numel;
    // 64-element (256-byte) alignment keeps every parameter vector-load aligned.
    s->numel += ((size_t)ddx_numel(&p->value) + 63) / 64 * 64;
    s->params[s->n_params++] = p;
    return &p->value;
}

ddx_status ddx_param_store_finalize(ddx_param_store *s) { return ddx_param_store_finalize_bufs(s, DDX_PBUF_COUNT); }

ddx_status ddx_param_store_finalize_inference(ddx_param_store *s) { return ddx_param_store_finalize_bufs(s, 1); }

size_t ddx_param_store_bytes(const ddx_param_store *s) {
    size_t n = 0;
    for (int b = 0; b < DDX_PBUF_COUNT; b++)
        if (s->buf[b]) n += (s->numel ? s->numel : 1) * sizeof(float);
    return n;
}

ddx_status ddx_param_store_finalize_bufs(ddx_param_store *s, int nbufs) {
    if (s->finalized) return ddx_errorf(DDX_E_INTERNAL, "parameter store finalized twice");
    size_t bytes = (s->numel ? s->numel : 1) * sizeof(float);
    for (int b = 0; b < nbufs && b < DDX_PBUF_COUNT; b++) {
        DDX_TRY(ddx_dev_alloc(s->device, bytes, (void **)&s->buf[b]));
        DDX_TRY(ddx_dev_memset(s->device, s->buf[b], 0, bytes));
    }
    for (size_t i = 0; i < s->n_params; i++) {
        ddx_param *p = s->params[i];
        p->value.data = s->buf[DDX_PBUF_VALUE] + p->offset;
        p->grad.data = s->buf[DDX_PBUF_GRAD] ? s->buf[DDX_PBUF_GRAD] + p->offset : NULL;
    }
    s->finalized = true;
    return DDX_OK;
}

ddx_param *ddx_param_find(ddx_param_store *s, const char *name) {
    for (size_t i = 0; i < s->n_params; i++)
        if (strcmp(s->params[i]->name, name) == 0) return s->params[i];
    return NULL;
}

size_t ddx_param_count(const ddx_param_store *s) {
    size_t n = 0;
    for (size_t i = 0; i < s->n_params; i++) n += (size_t)ddx_numel(&s->params[i]->value);
    return n;
}

void ddx_param_store_free(ddx_param_store *s) {
    for (size_t i = 0; i < s->n_params; i++) {
        free(s->params[i]->name);
        free(s->params[i]);
    }
    free(s->params);
    for (int b = 0; b < DDX_PBUF_COUNT; b++) ddx_dev_free(s->device, s->buf[b]);
    memset(s, 0, sizeof *s);
}
