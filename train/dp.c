// Data-parallel rows and the bucketed gradient all-reduce: see train/dp.h.
#include "train/dp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ddx_status ddx_dp_create(ddx_comm *comm, ddx_param_store *ps, int64_t batch, double bucket_mb, ddx_dp **out) {
    *out = NULL;
    const int W = ddx_comm_world(comm), r = ddx_comm_rank(comm);
    if (batch < W)
        return ddx_errorf(DDX_E_INPUT, "train.batch_size %lld is smaller than the world size %d: every rank needs at least one row "
                                       "(train.batch_size is the global batch)",
                          (long long)batch, W);
    if (!ps->finalized) return ddx_errorf(DDX_E_INTERNAL, "data parallel: the parameter store is not finalized");
    ddx_dp *dp = calloc(1, sizeof *dp);
    if (!dp) return ddx_errorf(DDX_E_NOMEM, "data parallel: out of host memory");
    dp->comm = comm;
    dp->rank = r;
    dp->world = W;
    dp->batch = batch;
    dp->lo = batch * r / W;
    dp->n = batch * (r + 1) / W - dp->lo;
    dp->ps = ps;
    // Buckets from the end of the buffer: backward finishes the last parameters first.
    size_t want = (size_t)(bucket_mb * (1 << 20) / sizeof(float));
    if (want < 64) want = 64;
    dp->b = calloc(ps->n_params + 1, sizeof *dp->b);
    if (!dp->b) {
        free(dp);
        return ddx_errorf(DDX_E_NOMEM, "data parallel: out of host memory");
    }
    size_t hi = ps->numel, nb = 0;
    for (size_t i = ps->n_params; i-- > 0;) {
        const size_t off = ps->params[i]->offset;
        if (hi - off >= want || i == 0) {
            dp->b[nb].lo = i == 0 ? 0 : off;
            dp->b[nb].hi = hi;
            hi = dp->b[nb].lo;
            nb++;
        }
    }
    if (ps->n_params == 0) dp->b[nb++] = (ddx_dp_bucket){.lo = 0, .hi = ps->numel};
    dp->n_buckets = nb;
    *out = dp;
    return DDX_OK;
}

void ddx_dp_free(ddx_dp *dp) {
    if (!dp) return;
    free(dp->b);
    free(dp);
}

// The bucket holding flat element `off` (buckets are in decreasing order of lo).
static ddx_dp_bucket *bucket_of(ddx_dp *dp, size_t off) {
    size_t a = 0, z = dp->n_buckets;   // find the first bucket with lo <= off
    while (a < z) {
        size_t m = (a + z) / 2;
        if (dp->b[m].lo <= off) z = m;
        else a = m + 1;
    }
    return a < dp->n_buckets ? &dp->b[a] : NULL;
}

// A tensor that views parameter memory (a parameter, or a reshape of one): its bucket.
static ddx_dp_bucket *param_bucket(ddx_dp *dp, const ddx_tensor *t) {
    if (!t || !t->data) return NULL;
    const char *base = (const char *)dp->ps->buf[DDX_PBUF_VALUE], *p = (const char *)t->data;
    if (p < base || p >= base + dp->ps->numel * sizeof(float)) return NULL;
    return bucket_of(dp, (size_t)(p - base) / sizeof(float));
}

static void start_ready(ddx_dp *dp, bool all) {
    while (dp->next < dp->n_buckets && !dp->err && (all || dp->b[dp->next].pending == 0)) {
        ddx_dp_bucket *b = &dp->b[dp->next++];
        float *g = dp->ps->buf[DDX_PBUF_GRAD] + b->lo;
        dp->err = ddx_comm_allreduce_start(dp->comm, g, (int64_t)(b->hi - b->lo), DDX_F32, DDX_COMM_SUM);
        b->started = true;
        dp->total++;
        if (!all) dp->early++;
    }
}

static void hook(void *arg, const ddx_node *n) {
    ddx_dp *dp = arg;
    bool any = false;
    for (int i = 0; i < n->n_inputs; i++) {
        ddx_dp_bucket *b = param_bucket(dp, n->in[i]);
        if (b && b->pending > 0) {
            b->pending--;
            any = true;
        }
    }
    if (any) start_ready(dp, false);
    ddx_comm_progress(dp->comm);
}

ddx_status ddx_dp_backward_begin(ddx_dp *dp, ddx_ctx *c, int64_t step) {
    for (size_t i = 0; i < dp->n_buckets; i++) dp->b[i].uses = 0, dp->b[i].started = false;
    for (size_t k = 0; k < c->n_nodes; k++) {
        const ddx_node *n = &c->tape[k];
        for (int i = 0; i < n->n_inputs; i++) {
            ddx_dp_bucket *b = param_bucket(dp, n->in[i]);
            if (b) b->uses++;
        }
    }
    for (size_t i = 0; i < dp->n_buckets; i++) dp->b[i].pending = dp->b[i].uses;
    dp->next = 0;
    dp->err = DDX_OK;
    dp->step = step;
    ddx_ctx_set_bwd_hook(c, hook, dp);
    // Buckets no node reads (unused parameters: zero grads) go first, as soon as the
    // backward starts.
    start_ready(dp, false);
    return dp->err;
}

ddx_status ddx_dp_backward_end(ddx_dp *dp, ddx_ctx *c) {
    ddx_ctx_set_bwd_hook(c, NULL, NULL);
    start_ready(dp, true);
    if (dp->err) return dp->err;
    char what[96];
    snprintf(what, sizeof what, "the gradient all-reduce of step %lld", (long long)dp->step);
    return ddx_comm_wait_all(dp->comm, what);
}

ddx_tensor *ddx_dp_global_loss(ddx_dp *dp, ddx_ctx *c, ddx_tensor *l) {
    const bool grad = c->grad_enabled;
    ddx_ctx_set_grad(c, false);
    ddx_tensor *g = ddx_scale(c, l, (float)((double)dp->n / (double)dp->batch), 0.0f);   // [1]
    ddx_ctx_set_grad(c, grad);
    if (!g) return NULL;
    ddx_status st = ddx_comm_allreduce(dp->comm, g->data, 1, DDX_F32, DDX_COMM_SUM);
    if (st != DDX_OK) {
        ddx_ctx_fail(c, st);
        return NULL;
    }
    return g;
}

// FNV-1a over the bytes: any differing bit shows.
static uint64_t fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

ddx_status ddx_dp_check_drift(ddx_dp *dp, int64_t step) {
    if (dp->world <= 1) return DDX_OK;
    const size_t bytes = dp->ps->numel * sizeof(float);
    uint64_t h;
    if (dp->ps->device == DDX_CPU) {
        h = fnv1a(dp->ps->buf[DDX_PBUF_VALUE], bytes);
    } else {
        void *tmp = malloc(bytes);
        if (!tmp) return ddx_errorf(DDX_E_NOMEM, "parameter drift check: out of host memory");
        ddx_status st = ddx_memcpy(tmp, DDX_CPU, dp->ps->buf[DDX_PBUF_VALUE], dp->ps->device, bytes);
        h = fnv1a(tmp, bytes);
        free(tmp);
        DDX_TRY(st);
    }
    // Halves of 32 bits are exact in a double: min == max on both means every rank agrees.
    double v[4] = {(double)(h >> 32), (double)(h & 0xffffffffu), -(double)(h >> 32), -(double)(h & 0xffffffffu)};
    char what[96];
    snprintf(what, sizeof what, "the parameter check of step %lld", (long long)step);
    DDX_TRY(ddx_comm_allreduce_host(dp->comm, v, 4, DDX_COMM_MAX, what));
    if (v[0] != -v[2] || v[1] != -v[3])
        return ddx_errorf(DDX_E_INTERNAL, "step %lld: the parameters differ between ranks (rank %d hash %016llx); the ranks "
                                          "no longer train one model: report this as a bug",
                          (long long)step, dp->rank, (unsigned long long)h);
    return DDX_OK;
}
