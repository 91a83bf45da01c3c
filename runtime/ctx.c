// Context, tape, op dispatch and backward.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "cuda.h"
#include "op_impl.h"

// DDX_PROFILE=1 in the environment: time per op and direction, printed to stderr at exit.
// On the CPU, wall time. On CUDA, a pair of timing events around each op's launches, read
// when the context is next reset: the op's stretch of the GPU timeline, so the ops add up to
// the step and nothing waits for the device in between (where the host falls behind the
// device, the launch gaps count to the op that was being launched). DDX_PROFILE=sync instead
// synchronises the stream around each op: host wall time, one launch latency per op.
static int g_prof = -1, g_prof_sync;
static double g_prof_s[DDX_OP_COUNT][2];
static long g_prof_n[DDX_OP_COUNT][2];

// Ops timed by events, not yet read: entry k owns events 2k and 2k+1.
typedef struct prof_pending {
    int op, dir;
} prof_pending;
static prof_pending *g_pend;
static size_t g_npend, g_cap_pend;

static void prof_flush(void) {
    for (size_t k = 0; k < g_npend; k++) {
        float ms = 0;
        if (ddx_cuda_prof_elapsed(2 * k, 2 * k + 1, &ms) != DDX_OK) break;   // reported at exit as missing time
        g_prof_s[g_pend[k].op][g_pend[k].dir] += 1e-3 * ms;
        g_prof_n[g_pend[k].op][g_pend[k].dir]++;
    }
    g_npend = 0;
}

static void prof_report(void) {
    prof_flush();
    double total = 0;
    for (int i = 0; i < DDX_OP_COUNT; i++) total += g_prof_s[i][0] + g_prof_s[i][1];
    fprintf(stderr, "DDX_PROFILE: %-14s %10s %8s %10s %8s %6s\n", "op", "fwd ms", "calls", "bwd ms", "calls", "share");
    for (int i = 0; i < DDX_OP_COUNT; i++) {
        if (!g_prof_n[i][0] && !g_prof_n[i][1]) continue;
        fprintf(stderr, "DDX_PROFILE: %-14s %10.1f %8ld %10.1f %8ld %5.1f%%\n", ddx_op_name((ddx_op)i), 1e3 * g_prof_s[i][0],
                g_prof_n[i][0], 1e3 * g_prof_s[i][1], g_prof_n[i][1], 100 * (g_prof_s[i][0] + g_prof_s[i][1]) / (total > 0 ? total : 1));
    }
}

// DDX_PROFILE_SKIP=K leaves the first K steps (context resets) out, e.g. a benchmark's warm-up.
static long g_prof_skip = -1;

static bool prof_on(void) {
    if (g_prof < 0) {
        const char *e = getenv("DDX_PROFILE");
        g_prof = e && *e && strcmp(e, "0") != 0;
        g_prof_sync = g_prof && strcmp(e, "sync") == 0;
        if (g_prof) atexit(prof_report);
        const char *k = getenv("DDX_PROFILE_SKIP");
        g_prof_skip = k ? atol(k) : 0;
    }
    return g_prof && g_prof_skip <= 0;
}

static double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double prof_now_sync(ddx_ctx *c) {
    if (c->cuda) (void)ddx_cuda_sync(c->cuda);   // a failure resurfaces at the next checked call
    return prof_now();
}

// One op's timing: started before its launches, stopped after them.
typedef struct prof_mark {
    double t0;
    bool ev;   // timed by events (entry g_npend once stopped)
} prof_mark;

static void prof_start(ddx_ctx *c, prof_mark *m) {
    m->ev = false;
    if (c->cuda && !g_prof_sync) {
        if (g_npend == g_cap_pend) {
            size_t cap = g_cap_pend ? 2 * g_cap_pend : 1024;
            prof_pending *p = realloc(g_pend, cap * sizeof *p);
            if (!p) return;   // this op goes untimed
            g_pend = p, g_cap_pend = cap;
        }
        m->ev = !ddx_cuda_capturing() && ddx_cuda_prof_record(2 * g_npend) == DDX_OK;
        return;
    }
    m->t0 = prof_now_sync(c);
}

static void prof_stop(ddx_ctx *c, const prof_mark *m, ddx_op op, int dir) {
    if (m->ev) {
        if (ddx_cuda_prof_record(2 * g_npend + 1) != DDX_OK) return;
        g_pend[g_npend++] = (prof_pending){(int)op, dir};
        return;
    }
    if (c->cuda && !g_prof_sync) return;   // no event: untimed
    g_prof_s[op][dir] += prof_now_sync(c) - m->t0, g_prof_n[op][dir]++;
}

// ---- host meta memory (tensor headers and tape nodes, freed with the step) ----------------
typedef struct ddx_meta_block {
    struct ddx_meta_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} ddx_meta_block;

static void *meta_alloc(ddx_ctx *c, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    ddx_meta_block *b = c->meta;
    if (!b || b->used + bytes > b->size) {
        size_t size = b && b->size * 2 > bytes ? b->size * 2 : (bytes > 65536 ? bytes : 65536);
        ddx_meta_block *nb = malloc(sizeof *nb + size);
        if (!nb) return NULL;
        nb->next = b;
        nb->size = size;
        nb->used = 0;
        c->meta = b = nb;
    }
    void *p = b->data + b->used;
    b->used += bytes;
    memset(p, 0, bytes);
    return p;
}

static void meta_free_all(ddx_meta_block *b) {
    while (b) {
        ddx_meta_block *next = b->next;
        free(b);
        b = next;
    }
}

// ---- context ---------------------------------------------------------------------------
ddx_status ddx_ctx_init(ddx_ctx *c, ddx_device dev, size_t act_bytes) {
    memset(c, 0, sizeof *c);
    c->device = dev;
    c->grad_enabled = true;
    if (dev == DDX_CUDA) DDX_TRY(ddx_cuda_ctx_create(&c->cuda));
    ddx_status st = ddx_arena_init(&c->act, "activations", dev, act_bytes);
    if (st != DDX_OK) {
        ddx_ctx_free(c);
        return st;
    }
    return DDX_OK;
}

void ddx_ctx_free(ddx_ctx *c) {
    if (g_npend) prof_flush();
    ddx_arena_free(&c->act);
    meta_free_all(c->meta);
    free(c->tape);
    if (c->cuda) ddx_cuda_ctx_destroy(c->cuda);
    memset(c, 0, sizeof *c);
}

void ddx_ctx_set_grad(ddx_ctx *c, bool on) { c->grad_enabled = on; }
void ddx_ctx_set_training(ddx_ctx *c, bool on) { c->training = on; }
void ddx_ctx_set_tf32(ddx_ctx *c, bool on) { c->tf32 = on; }
void ddx_ctx_set_seed(ddx_ctx *c, uint64_t seed) { c->seed = seed; }
void ddx_ctx_set_step(ddx_ctx *c, uint64_t step) { c->step = step; }
void ddx_ctx_set_step_dev(ddx_ctx *c, const uint32_t *step_dev) { c->step_dev = step_dev; }
void ddx_ctx_set_sample0(ddx_ctx *c, uint64_t sample0) { c->sample0 = sample0; }
void ddx_ctx_set_bwd_hook(ddx_ctx *c, void (*hook)(void *arg, const ddx_node *n), void *arg) {
    c->bwd_hook = hook;
    c->bwd_hook_arg = arg;
}

ddx_status ddx_ctx_reset(ddx_ctx *c) {
    if (c->cuda) DDX_TRY(ddx_cuda_sync(c->cuda));
    if (g_npend) prof_flush();
    if (g_prof_skip > 0) g_prof_skip--;
    c->n_nodes = 0;
    c->rng_calls = 0;
    c->step_dev = NULL;
    c->status = DDX_OK;
    // Keep one meta block as big as everything the step used, like the activation arena.
    if (c->meta) {
        size_t total = 0;
        for (ddx_meta_block *b = c->meta; b; b = b->next) total += b->size;
        if (c->meta->next) {
            meta_free_all(c->meta);
            c->meta = malloc(sizeof(ddx_meta_block) + total);
            if (!c->meta) return ddx_errorf(DDX_E_NOMEM, "out of host memory for tensor headers");
            c->meta->next = NULL;
            c->meta->size = total;
        }
        c->meta->used = 0;
    }
    return ddx_arena_reset(&c->act);
}

ddx_status ddx_ctx_status(const ddx_ctx *c) { return c->status; }

void ddx_ctx_fail(ddx_ctx *c, ddx_status st) {
    if (c->status == DDX_OK && st != DDX_OK) c->status = st;
}

ddx_tensor *ddx_meta_tensor(ddx_ctx *c) {
    ddx_tensor *t = meta_alloc(c, sizeof *t);
    if (!t) ddx_ctx_fail(c, ddx_errorf(DDX_E_NOMEM, "out of host memory for tensor headers"));
    return t;
}

ddx_tensor *ddx_new(ddx_ctx *c, ddx_dtype dt, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > DDX_MAX_DIMS) {
        ddx_ctx_fail(c, ddx_errorf(DDX_E_INTERNAL, "ddx_new: ndim %d out of range", ndim));
        return NULL;
    }
    ddx_tensor *t = ddx_meta_tensor(c);
    if (!t) return NULL;
    *t = ddx_tensor_wrap(NULL, dt, c->device, ndim, shape);
    t->data = ddx_arena_alloc(&c->act, ddx_nbytes(t));
    if (!t->data) {
        ddx_ctx_fail(c, DDX_E_NOMEM);
        return NULL;
    }
    return t;
}

ddx_tensor *ddx_new_like(ddx_ctx *c, const ddx_tensor *t) { return ddx_new(c, t->dtype, t->ndim, t->shape); }

ddx_tensor *ddx_grad_of(ddx_ctx *c, ddx_tensor *t) {
    if (t->grad) return t->grad;
    ddx_tensor *g = ddx_new_like(c, t);
    if (!g) return NULL;
    ddx_status st = ddx_dev_memset(c->device, g->data, 0, ddx_nbytes(g));
    if (st != DDX_OK) {
        ddx_ctx_fail(c, st);
        return NULL;
    }
    t->grad = g;
    return g;
}

bool ddx_grad_take(ddx_tensor *in, ddx_tensor *dy) {
    if (!in->requires_grad || in->grad || in->dtype != dy->dtype || !ddx_same_shape(in, dy)) return false;
    in->grad = dy;
    return true;
}

bool ddx_grad_fresh(ddx_ctx *c, ddx_tensor *t) {
    if (!t->requires_grad || t->grad) return false;
    t->grad = ddx_new_like(c, t);
    return t->grad != NULL;
}

// ---- op front-end machinery -------------------------------------------------------------
ddx_tensor *ddx_op_fail(ddx_ctx *c, ddx_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (c->status == DDX_OK) ddx_verrorf(st, fmt, ap);   // keep the first error's message
    va_end(ap);
    ddx_ctx_fail(c, st);
    return NULL;
}

bool ddx_op_ok(ddx_ctx *c, const char *op, int n, ddx_tensor *const *required) {
    if (c->status != DDX_OK) return false;
    for (int i = 0; i < n; i++) {
        if (!required[i]) {
            ddx_op_fail(c, DDX_E_INTERNAL, "%s: input %d is NULL", op, i);
            return false;
        }
        if (required[i]->device != c->device) {
            ddx_op_fail(c, DDX_E_INPUT, "%s: input %d is on %s but the context runs on %s", op, i,
                        ddx_device_name(required[i]->device), ddx_device_name(c->device));
            return false;
        }
    }
    return true;
}

static const ddx_backend_op *backend_table(ddx_device dev) { return dev == DDX_CUDA ? ddx_cuda_ops : ddx_cpu_ops; }

static bool needs_tape(ddx_ctx *c, int n_in, ddx_tensor *const *in) {
    if (!c->grad_enabled) return false;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

static ddx_node *node_new(ddx_ctx *c, ddx_op op, int n_in, ddx_tensor *const *in, const ddx_op_params *p) {
    ddx_node *n = meta_alloc(c, sizeof *n);
    if (!n) {
        ddx_op_fail(c, DDX_E_NOMEM, "out of host memory for the tape");
        return NULL;
    }
    n->op = op;
    n->n_inputs = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    if (p) n->p = *p;
    return n;
}

static bool tape_push(ddx_ctx *c, ddx_node *n) {
    if (c->n_nodes == c->cap_nodes) {
        size_t cap = c->cap_nodes ? c->cap_nodes * 2 : 256;
        ddx_node *t = realloc(c->tape, cap * sizeof(ddx_node));
        if (!t) {
            ddx_op_fail(c, DDX_E_NOMEM, "out of host memory for the tape");
            return false;
        }
        c->tape = t;
        c->cap_nodes = cap;
    }
    c->tape[c->n_nodes++] = *n;
    return true;
}

bool ddx_op_record(ddx_ctx *c, ddx_op op, int n_in, ddx_tensor *const *in, const ddx_op_params *p, ddx_tensor *out) {
    if (!needs_tape(c, n_in, in)) return true;
    ddx_node *n = node_new(c, op, n_in, in, p);
    if (!n) return false;
    n->out = out;
    out->requires_grad = true;
    return tape_push(c, n);
}

ddx_tensor *ddx_op_run(ddx_ctx *c, ddx_op op, int n_in, ddx_tensor *const *in, const ddx_op_params *p,
                       ddx_dtype out_dt, int ndim, const int64_t *shape) {
    if (c->status != DDX_OK) return NULL;
    const ddx_backend_op *be = &backend_table(c->device)[op];
    if (!be->fwd)
        return ddx_op_fail(c, DDX_E_UNSUPPORTED, "op %s has no %s kernel yet", ddx_op_name(op), ddx_device_name(c->device));
    ddx_node *n = node_new(c, op, n_in, in, p);
    if (!n) return NULL;
    n->out = ddx_new(c, out_dt, ndim, shape);
    if (!n->out) return NULL;
    const bool prof = prof_on();
    prof_mark pm;
    if (prof) prof_start(c, &pm);
    ddx_status st = be->fwd(c, n);
    if (prof) prof_stop(c, &pm, op, 0);
    if (st != DDX_OK) {
        ddx_ctx_fail(c, st);   // the backend already recorded its message
        return NULL;
    }
    if (needs_tape(c, n_in, in)) {
        n->out->requires_grad = true;
        if (!tape_push(c, n)) return NULL;
    }
    return n->out;
}

ddx_tensor *ddx_in_grad(ddx_ctx *c, ddx_node *n, int i) {
    ddx_tensor *t = n->in[i];
    if (!t || !t->requires_grad) return NULL;
    return ddx_grad_of(c, t);
}

// ---- backward ---------------------------------------------------------------------------
static ddx_status run_backward(ddx_ctx *c) {
    const ddx_backend_op *table = backend_table(c->device);
    for (size_t k = c->n_nodes; k-- > 0;) {
        ddx_node *n = &c->tape[k];
        if (!n->out->grad) {   // nothing downstream used this output
            if (c->bwd_hook) c->bwd_hook(c->bwd_hook_arg, n);
            continue;
        }
        if (!table[n->op].bwd)
            return ddx_errorf(DDX_E_UNSUPPORTED, "op %s has no backward on %s", ddx_op_name(n->op), ddx_device_name(c->device));
        const bool prof = prof_on();
        prof_mark pm;
        if (prof) prof_start(c, &pm);
        ddx_status st = table[n->op].bwd(c, n);
        if (prof) prof_stop(c, &pm, n->op, 1);
        if (st == DDX_OK) st = c->status;
        if (st != DDX_OK) return st;
        // Grad shapes are part of the contract: a backend that built a wrong-shaped grad is a bug.
        for (int i = 0; i < n->n_inputs; i++)
            if (n->in[i] && n->in[i]->grad && !ddx_same_shape(n->in[i]->grad, n->in[i]))
                return ddx_errorf(DDX_E_INTERNAL, "op %s: grad of input %d has the wrong shape", ddx_op_name(n->op), i);
        if (c->bwd_hook) c->bwd_hook(c->bwd_hook_arg, n);
    }
    return DDX_OK;
}

ddx_status ddx_backward(ddx_ctx *c, ddx_tensor *loss, float seed_grad) {
    if (c->status != DDX_OK) return c->status;
    if (!loss || loss->dtype != DDX_F32 || ddx_numel(loss) != 1)
        return ddx_errorf(DDX_E_INPUT, "backward: the loss must be a 1-element f32 tensor");
    if (!loss->requires_grad) return ddx_errorf(DDX_E_INPUT, "backward: the loss does not depend on anything that requires grad");
    if (loss->grad) {
        DDX_TRY(ddx_memcpy(loss->grad->data, c->device, &seed_grad, DDX_CPU, sizeof seed_grad));
    } else {
        // A fill op rather than a host copy: no host memory is read, so a whole training
        // step, backward included, can be captured into a CUDA graph.
        ddx_tensor *g = ddx_fill(c, DDX_F32, loss->ndim, loss->shape, seed_grad);   // loss's shape
        if (!g) return c->status;
        loss->grad = g;
    }
    return run_backward(c);
}

ddx_status ddx_backward_from(ddx_ctx *c, ddx_tensor *out, const ddx_tensor *grad_out) {
    if (c->status != DDX_OK) return c->status;
    if (!ddx_same_shape(out, grad_out) || out->dtype != grad_out->dtype)
        return ddx_errorf(DDX_E_INPUT, "backward: grad_out does not match the output's shape/dtype");
    ddx_tensor *g = ddx_grad_of(c, out);
    if (!g) return c->status;
    DDX_TRY(ddx_memcpy(g->data, c->device, grad_out->data, grad_out->device, ddx_nbytes(g)));
    return run_backward(c);
}

ddx_status ddx_cpu_need_f32(const char *op, const ddx_tensor *t, const char *what) {
    if (t->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s: the CPU backend computes in f32 only, got %s %s", op, what,
                          ddx_dtype_name(t->dtype));
    return DDX_OK;
}
