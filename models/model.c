// Model dispatch, parameter registration with init specs, and PyTorch-default initialisation.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_impl.h"
#include "runtime/philox.h"

ddx_tensor *ddx_model_param(ddx_model *m, const char *name, int ndim, const int64_t *shape, ddx_init_kind kind,
                            int64_t fan_in) {
    if (m->n_init == m->cap_init) {
        size_t cap = m->cap_init ? 2 * m->cap_init : 64;
        ddx_init_spec *p = realloc(m->init, cap * sizeof *p);
        if (!p) {
            ddx_errorf(DDX_E_NOMEM, "model: out of host memory registering %s", name);
            return NULL;
        }
        m->init = p;
        m->cap_init = cap;
    }
    ddx_tensor *t = ddx_param_add(m->ps, name, ndim, shape);
    if (!t) return NULL;
    m->init[m->n_init++] = (ddx_init_spec){t, kind, fan_in};
    return t;
}

ddx_tensor *ddx_model_paramf(ddx_model *m, int ndim, const int64_t *shape, ddx_init_kind kind, int64_t fan_in,
                             const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof name) {
        ddx_errorf(DDX_E_INTERNAL, "model: parameter name too long");
        return NULL;
    }
    return ddx_model_param(m, name, ndim, shape, kind, fan_in);
}

ddx_status ddx_model_create(const ddx_config *cfg, ddx_param_store *ps, ddx_model **out) {
    *out = NULL;
    if (ps->finalized) return ddx_errorf(DDX_E_INTERNAL, "model: the parameter store is already finalized");
    ddx_model *m = calloc(1, sizeof *m);
    if (!m) return ddx_errorf(DDX_E_NOMEM, "model: out of host memory");
    m->cfg = *cfg;
    m->ps = ps;
    ddx_status st;
    switch (cfg->model.type) {
    case DDX_MODEL_TYPE_UNET_DDPM: st = ddx_unet_ddpm_create(m); break;
    case DDX_MODEL_TYPE_UNET_PLAIN: st = ddx_unet_plain_create(m); break;
    default: st = ddx_errorf(DDX_E_INPUT, "model.type: unknown model type %d", (int)cfg->model.type); break;
    }
    if (st != DDX_OK) {
        ddx_model_free(m);
        return st;
    }
    *out = m;
    return DDX_OK;
}

ddx_status ddx_model_init(const ddx_model *m, uint64_t seed) {
    if (!m->ps->finalized) return ddx_errorf(DDX_E_INTERNAL, "model init: finalize the parameter store first");
    for (size_t k = 0; k < m->n_init; k++) {
        const ddx_init_spec *s = &m->init[k];
        int64_t n = ddx_numel(s->t);
        float *h = malloc((size_t)n * sizeof *h);
        if (!h) return ddx_errorf(DDX_E_NOMEM, "model init: out of host memory");
        ddx_status st = DDX_OK;
        switch (s->kind) {
        case DDX_INIT_UNIFORM_FAN_IN: {
            // U(-b, b) from Philox's (0, 1) uniforms; b = 1/sqrt(fan_in) is what kaiming_uniform_(a=sqrt(5))
            // and PyTorch's bias init both come to.
            st = ddx_philox_uniform(h, n, seed, DDX_RNG_STREAM_INIT, (uint64_t)k, 0);
            double b = 1.0 / sqrt((double)(s->fan_in > 0 ? s->fan_in : 1));
            for (int64_t i = 0; i < n && st == DDX_OK; i++) h[i] = (float)((2.0 * h[i] - 1.0) * b);
            break;
        }
        case DDX_INIT_ONES:
            for (int64_t i = 0; i < n; i++) h[i] = 1.0f;
            break;
        case DDX_INIT_ZEROS:
            for (int64_t i = 0; i < n; i++) h[i] = 0.0f;
            break;
        case DDX_INIT_NORMAL:
            st = ddx_philox_normal(h, n, seed, DDX_RNG_STREAM_INIT, (uint64_t)k, 0);
            break;
        }
        if (st == DDX_OK) st = ddx_memcpy(s->t->data, s->t->device, h, DDX_CPU, (size_t)n * sizeof *h);
        free(h);
        DDX_TRY(st);
    }
    return DDX_OK;
}

ddx_status ddx_model_set_compute(ddx_model *m, ddx_dtype dt) {
    if (dt != DDX_F32 && dt != DDX_BF16)
        return ddx_errorf(DDX_E_INPUT, "model compute dtype %s: only f32 and bf16 are supported", ddx_dtype_name(dt));
    m->compute = dt;
    return DDX_OK;
}

ddx_dtype ddx_model_compute(const ddx_model *m) { return m->compute; }

ddx_tensor *ddx_model_w(ddx_ctx *c, const ddx_model *m, ddx_tensor *p) {
    if (!p || p->dtype == m->compute) return p;
    const ddx_tensor *all = m->cast_all;
    const float *base = all ? m->store_value.data : NULL, *pd = p->data;
    const int64_t n = ddx_numel(p);
    if (!base || p->dtype != DDX_F32 || p->device != all->device || pd < base || pd + n > base + ddx_numel(all))
        return ddx_cast(c, p, m->compute);
    if (c->status != DDX_OK) return NULL;
    const size_t off = (size_t)(pd - base) * ddx_dtype_size(all->dtype);
    ddx_tensor *v = ddx_meta_tensor(c);
    if (!v) return NULL;
    *v = ddx_tensor_wrap((char *)all->data + off, all->dtype, all->device, p->ndim, p->shape);
    if (all->grad) {
        // The view's gradient is its slice of the store-wide one, which the cast's backward
        // adds into the fp32 store after every use of every view has accumulated into it.
        ddx_tensor *g = ddx_meta_tensor(c);
        if (!g) return NULL;
        *g = ddx_tensor_wrap((char *)all->grad->data + off, all->dtype, all->device, p->ndim, p->shape);
        v->requires_grad = true;
        v->grad = g;
    }
    return v;
}

// One cast of the whole parameter store per forward instead of one per weight per use: two
// kernels per training step where there were hundreds of small ones. NULL (ddx_model_w then
// casts per use) when the store is not on this context's device.
static ddx_tensor *cast_store(ddx_ctx *c, ddx_model *m) {
    ddx_param_store *ps = m->ps;
    if (!ps || !ps->finalized || ps->device != c->device || !ps->buf[DDX_PBUF_VALUE] || !ps->numel) return NULL;
    const int64_t n = (int64_t)ps->numel;
    m->store_value = ddx_tensor_wrap(ps->buf[DDX_PBUF_VALUE], DDX_F32, ps->device, 1, &n);
    if (ps->buf[DDX_PBUF_GRAD]) {
        m->store_grad = ddx_tensor_wrap(ps->buf[DDX_PBUF_GRAD], DDX_F32, ps->device, 1, &n);
        m->store_value.requires_grad = true;
        m->store_value.grad = &m->store_grad;
    }
    ddx_tensor *all = ddx_cast(c, &m->store_value, m->compute);
    // Zeroed now, before any view accumulates into it (ddx_cast recorded a node only when
    // grads flow; then the backward of that node is what reads it).
    if (all && all->requires_grad && !ddx_grad_of(c, all)) return NULL;
    return all;
}

ddx_tensor *ddx_model_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y) {
    if (!m || !m->forward) {
        ddx_ctx_fail(c, ddx_errorf(DDX_E_INTERNAL, "model forward: no model"));
        return NULL;
    }
    if (m->compute == DDX_F32 || !x) return m->forward(c, m, x, t, y);
    // Mixed precision: the network sees x in the compute dtype; callers get f32 back, so
    // losses and sampler updates stay fp32.
    // The cache lives for this call only; the model is otherwise left as it was.
    ddx_model *mm = (ddx_model *)m;
    mm->cast_all = cast_store(c, mm);
    ddx_tensor *out = m->forward(c, m, ddx_cast(c, x, m->compute), t, y);
    mm->cast_all = NULL;
    return out && out->dtype != DDX_F32 ? ddx_cast(c, out, DDX_F32) : out;
}

ddx_param_store *ddx_model_params(const ddx_model *m) { return m->ps; }

void ddx_model_free(ddx_model *m) {
    if (!m) return;
    if (m->free_impl) m->free_impl(m->impl);
    free(m->init);
    free(m);
}

const char *ddx_model_rename_legacy(const char *name, char *buf, size_t n) {
    // diffusers' AttentionBlock (before 0.15) named its projections query/key/value/proj_attn;
    // checkpoints such as google/ddpm-cifar10-32 still carry those names.
    static const char *const from[] = {".query.", ".key.", ".value.", ".proj_attn."};
    static const char *const to[] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        const char *p = strstr(name, from[i]);
        if (!p) continue;
        int len = snprintf(buf, n, "%.*s%s%s", (int)(p - name), name, to[i], p + strlen(from[i]));
        if (len < 0 || (size_t)len >= n) return NULL;
        return buf;
    }
    return NULL;
}
