// The diffusion ops: randn, q_sample and sampler_step. Front-ends (validation) and the CPU
// fp32 reference. None of them is differentiable: their inputs are data, noise or a model
// output that sampling never differentiates through.
//
// Noise: element e of every op's output uses Philox normal number key.offset + e of
// (key.seed, key.stream, key.step) (runtime/philox.h), so the CPU and GPU draw identical bits.
// The arithmetic is spelled with ddx_rng_mul / ddx_rng_add, the same correctly rounded
// operations the CUDA kernels use (__fmul_rn / __fadd_rn), so no compiler can fuse a product
// into an add on one side only: the two backends agree bit for bit, not just within fp32
// tolerance.
#include <stdio.h>
#include <string.h>

#include "op_impl.h"
#include "philox.h"

// The key must address [offset, offset + n) without wrapping the 64-bit element index.
static bool key_fits(const ddx_rng_key *k, int64_t n) { return n >= 0 && k->offset <= UINT64_MAX - (uint64_t)n; }

// While the context's step word lives in device memory (c->step_dev, CUDA graphs): CUDA
// only, and the host step word becomes the sentinel the kernels refuse without step_dev, so
// a backend that did not pass step_dev on fails loudly instead of drawing the noise of
// whichever step was captured.
static bool device_step(ddx_ctx *c, const char *op, ddx_rng_key *key) {
    if (!c->step_dev) return true;
    if (c->device != DDX_CUDA) {
        ddx_op_fail(c, DDX_E_INPUT, "%s: a device step word (ctx step_dev) needs the CUDA backend", op);
        return false;
    }
    key->step = DDX_RNG_STEP_ON_DEVICE;
    return true;
}

// A non-differentiable op must not silently cut a gradient path: refuse an input that wants
// a grad while the tape is recording, rather than failing later in backward.
static bool refuse_grad(ddx_ctx *c, const char *op, const ddx_tensor *t, const char *what) {
    if (c->grad_enabled && t->requires_grad) {
        ddx_op_fail(c, DDX_E_INPUT,
                    "%s: %s requires grad but %s has no backward; detach it or turn grad off (ctx->grad_enabled)",
                    op, what, op);
        return true;
    }
    return false;
}

// =========================================================================================
// randn
// =========================================================================================
ddx_tensor *ddx_randn(ddx_ctx *c, ddx_dtype dt, int ndim, const int64_t *shape, ddx_rng_key key) {
    if (!ddx_op_ok(c, "randn", 0, NULL)) return NULL;
    if (dt != DDX_F32 && dt != DDX_BF16)
        return ddx_op_fail(c, DDX_E_INPUT, "randn: dtype %s is not supported (f32, or bf16 on CUDA)", ddx_dtype_name(dt));
    if (dt == DDX_BF16 && c->device == DDX_CPU)
        return ddx_op_fail(c, DDX_E_UNSUPPORTED, "randn: bf16 output needs the CUDA backend; the CPU draws f32");
    if (ndim < 1 || ndim > DDX_MAX_DIMS || !shape)
        return ddx_op_fail(c, DDX_E_INPUT, "randn: ndim %d out of range 1..4 (or shape is NULL)", ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > INT64_MAX / shape[i]))
            return ddx_op_fail(c, DDX_E_INPUT, "randn: dim %d is %lld; dims must be >= 0 with a product below 2^63", i,
                               (long long)shape[i]);
        n *= shape[i];
    }
    if (!key_fits(&key, n))
        return ddx_op_fail(c, DDX_E_INPUT, "randn: offset %llu + %lld elements overflows the 64-bit Philox index",
                           (unsigned long long)key.offset, (long long)n);
    if (!device_step(c, "randn", &key)) return NULL;
    ddx_op_params p = {.randn = key};
    return ddx_op_run(c, DDX_OP_RANDN, 0, NULL, &p, dt, ndim, shape);
}

ddx_status ddx_cpu_randn_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(ddx_cpu_need_f32("randn", n->out, "output"));
    const ddx_rng_key *k = &n->p.randn;
    return ddx_philox_normal(ddx_f32(n->out), ddx_numel(n->out), k->seed, k->stream, k->step, k->offset);
}

// =========================================================================================
// q_sample: x_t = coef0 * x0 + coef1 * eps, eps = randn(x0's shape, key), coef per sample.
// =========================================================================================
ddx_tensor *ddx_q_sample(ddx_ctx *c, ddx_tensor *x0, ddx_tensor *coef, ddx_rng_key key) {
    if (!ddx_op_ok(c, "q_sample", 2, (ddx_tensor *[]){x0, coef})) return NULL;
    char sx[DDX_SHAPE_BUF], sc[DDX_SHAPE_BUF];
    if (x0->dtype != DDX_F32 || coef->dtype != DDX_F32)
        return ddx_op_fail(c, DDX_E_INPUT, "q_sample: x0 and coef must be f32, got %s and %s", ddx_dtype_name(x0->dtype),
                           ddx_dtype_name(coef->dtype));
    if (x0->ndim < 1 || x0->shape[0] < 1)
        return ddx_op_fail(c, DDX_E_INPUT, "q_sample: x0 %s needs a batch dim of at least 1",
                           ddx_shape_str(x0, sx, sizeof sx));
    if (coef->ndim != 2 || coef->shape[0] != x0->shape[0] || coef->shape[1] != 2)
        return ddx_op_fail(c, DDX_E_INPUT, "q_sample: coef is %s, want [%lld, 2] (sqrt(abar), sqrt(1-abar)) for x0 %s",
                           ddx_shape_str(coef, sc, sizeof sc), (long long)x0->shape[0], ddx_shape_str(x0, sx, sizeof sx));
    if (!key_fits(&key, ddx_numel(x0)))
        return ddx_op_fail(c, DDX_E_INPUT, "q_sample: offset %llu + %lld elements overflows the 64-bit Philox index",
                           (unsigned long long)key.offset, (long long)ddx_numel(x0));
    if (refuse_grad(c, "q_sample", x0, "x0") || refuse_grad(c, "q_sample", coef, "coef")) return NULL;
    if (!device_step(c, "q_sample", &key)) return NULL;
    ddx_op_params p = {.q_sample = key};
    return ddx_op_run(c, DDX_OP_Q_SAMPLE, 2, (ddx_tensor *[]){x0, coef}, &p, DDX_F32, x0->ndim, x0->shape);
}

ddx_status ddx_cpu_q_sample_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(ddx_cpu_need_f32("q_sample", n->in[0], "x0"));
    DDX_TRY(ddx_cpu_need_f32("q_sample", n->in[1], "coef"));
    const int64_t cnt = ddx_numel(n->out);
    if (cnt == 0) return DDX_OK;
    const int64_t N = n->in[0]->shape[0], per = cnt / N;
    const float *x0 = ddx_f32c(n->in[0]), *coef = ddx_f32c(n->in[1]);
    float *y = ddx_f32(n->out);
    const ddx_rng_key *k = &n->p.q_sample;
    // The noise lands in y first and is consumed in place.
    DDX_TRY(ddx_philox_normal(y, cnt, k->seed, k->stream, k->step, k->offset));
    for (int64_t i = 0; i < N; i++) {
        const float c0 = coef[2 * i], c1 = coef[2 * i + 1];
        const float *xs = x0 + i * per;
        float *ys = y + i * per;
        for (int64_t j = 0; j < per; j++) ys[j] = ddx_rng_add(ddx_rng_mul(c0, xs[j]), ddx_rng_mul(c1, ys[j]));
    }
    return DDX_OK;
}

// =========================================================================================
// sampler_step: see ddx_sampler_step_params in runtime/ops.h.
// =========================================================================================
static bool finite_f(float v) { return v == v && v - v == 0.0f; }

// known and mask: both NULL (the plain update) or both given (the inpainting blend).
static ddx_tensor *sampler_step4(ddx_ctx *c, ddx_tensor *x_t, ddx_tensor *out, ddx_tensor *known, ddx_tensor *mask,
                                 const ddx_sampler_step_params *p) {
    if (!ddx_op_ok(c, "sampler_step", 2, (ddx_tensor *[]){x_t, out})) return NULL;
    char sa[DDX_SHAPE_BUF], sb[DDX_SHAPE_BUF], sk[DDX_SHAPE_BUF];
    if (!p) return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: params are NULL");
    if (x_t->dtype != DDX_F32 || out->dtype != DDX_F32)
        return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: x_t and the model output must be f32, got %s and %s",
                           ddx_dtype_name(x_t->dtype), ddx_dtype_name(out->dtype));
    bool shape_ok = ddx_same_shape(x_t, out);
    if (p->guided) {
        // The doubled batch: [2N, rest of x_t's shape].
        shape_ok = out->ndim == x_t->ndim && x_t->ndim >= 1 && out->shape[0] == 2 * x_t->shape[0];
        for (int i = 1; shape_ok && i < x_t->ndim; i++) shape_ok = out->shape[i] == x_t->shape[i];
        if (!finite_f(p->guidance))
            return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: guidance scale %g is not finite", (double)p->guidance);
    }
    if (!shape_ok)
        return ddx_op_fail(c, DDX_E_INPUT,
                           p->guided ? "sampler_step: guided, the model output %s must be the doubled batch of x_t %s"
                                     : "sampler_step: the model output %s and x_t %s must have the same shape",
                           ddx_shape_str(out, sb, sizeof sb), ddx_shape_str(x_t, sa, sizeof sa));
    if (p->coefs_dev && (!c->step_dev || c->device != DDX_CUDA))
        return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: device coefficients need the CUDA backend and the context's step_dev");
    const float co[8] = {p->a, p->b, p->f, p->g, p->c, p->d, p->e, p->sigma};
    for (int i = 0; i < 8 && !p->coefs_dev; i++)
        if (!finite_f(co[i]))
            return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: coefficient %c is not finite (%g); check the schedule",
                               "abfgcdes"[i], (double)co[i]);
    if (!key_fits(&p->key, ddx_numel(x_t)))
        return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: offset %llu + %lld elements overflows the 64-bit Philox index",
                           (unsigned long long)p->key.offset, (long long)ddx_numel(x_t));
    if (refuse_grad(c, "sampler_step", x_t, "x_t") || refuse_grad(c, "sampler_step", out, "the model output"))
        return NULL;
    ddx_op_params op = {.sampler_step = *p};
    if (!device_step(c, "sampler_step", &op.sampler_step.key)) return NULL;
    if (known) {
        if (!ddx_op_ok(c, "sampler_step", 2, (ddx_tensor *[]){known, mask})) return NULL;
        if (known->dtype != DDX_F32 || mask->dtype != DDX_F32)
            return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: the known image and the mask must be f32, got %s and %s",
                               ddx_dtype_name(known->dtype), ddx_dtype_name(mask->dtype));
        if (!ddx_same_shape(x_t, known) || !ddx_same_shape(x_t, mask))
            return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: the known image %s and the mask %s must have x_t's shape %s",
                               ddx_shape_str(known, sa, sizeof sa), ddx_shape_str(mask, sb, sizeof sb),
                               ddx_shape_str(x_t, sk, sizeof sk));
        if (p->coefs_dev && !p->known_coefs_dev)
            return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: device coefficients need the blend's device coefficients too");
        if (!p->coefs_dev && (!finite_f(p->kc0) || !finite_f(p->kc1)))
            return ddx_op_fail(c, DDX_E_INPUT, "sampler_step: blend coefficients (%g, %g) are not finite; check the schedule",
                               (double)p->kc0, (double)p->kc1);
        if (refuse_grad(c, "sampler_step", known, "the known image") || refuse_grad(c, "sampler_step", mask, "the mask"))
            return NULL;
        return ddx_op_run(c, DDX_OP_SAMPLER_STEP, 4, (ddx_tensor *[]){x_t, out, known, mask}, &op, DDX_F32, x_t->ndim,
                          x_t->shape);
    }
    return ddx_op_run(c, DDX_OP_SAMPLER_STEP, 2, (ddx_tensor *[]){x_t, out}, &op, DDX_F32, x_t->ndim, x_t->shape);
}

ddx_tensor *ddx_sampler_step(ddx_ctx *c, ddx_tensor *x_t, ddx_tensor *out, const ddx_sampler_step_params *p) {
    return sampler_step4(c, x_t, out, NULL, NULL, p);
}

ddx_tensor *ddx_sampler_step_blend(ddx_ctx *c, ddx_tensor *x_t, ddx_tensor *out, ddx_tensor *known, ddx_tensor *mask,
                                   const ddx_sampler_step_params *p) {
    if (!known || !mask) {
        if (c->status == DDX_OK) ddx_op_fail(c, DDX_E_INTERNAL, "sampler_step: the blend needs both the known image and the mask");
        return NULL;
    }
    return sampler_step4(c, x_t, out, known, mask, p);
}

// The blend, after the update has written y: where the mask keeps, the known image noised to
// the next step's level. Its noise is drawn in chunks (element e: number key.offset + e of the
// known stream), so no second full-size buffer is needed.
static ddx_status blend_known(const ddx_sampler_step_params *p, const float *known, const float *mask, float *y,
                              int64_t cnt) {
    float z[1024];
    const bool noise = p->kc1 != 0.0f;
    for (int64_t i0 = 0; i0 < cnt; i0 += 1024) {
        const int64_t m = cnt - i0 < 1024 ? cnt - i0 : 1024;
        if (noise) DDX_TRY(ddx_philox_normal(z, m, p->key.seed, p->known_stream, p->key.step, p->key.offset + (uint64_t)i0));
        for (int64_t j = 0; j < m; j++) {
            const int64_t i = i0 + j;
            const float kn = ddx_rng_add(ddx_rng_mul(p->kc0, known[i]), ddx_rng_mul(p->kc1, noise ? z[j] : 0.0f));
            const float w = mask[i];
            // A kept or generated pixel is taken as it is: the result's known pixels ARE the
            // input at the last step, whatever the update produced there (even a NaN).
            if (w == 1.0f) y[i] = kn;
            else if (w != 0.0f) y[i] = ddx_rng_add(ddx_rng_mul(w, kn), ddx_rng_mul(ddx_rng_sub(1.0f, w), y[i]));
        }
    }
    return DDX_OK;
}

ddx_status ddx_cpu_sampler_step_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(ddx_cpu_need_f32("sampler_step", n->in[0], "x_t"));
    DDX_TRY(ddx_cpu_need_f32("sampler_step", n->in[1], "model output"));
    const ddx_sampler_step_params *p = &n->p.sampler_step;
    const int64_t cnt = ddx_numel(n->out);
    const float *xt = ddx_f32c(n->in[0]), *o = ddx_f32c(n->in[1]);
    // Guided: o is the conditional half, ou the unconditional one (see ddx_sampler_step_params).
    const float *ou = p->guided ? o + cnt : NULL;
    float *y = ddx_f32(n->out);
    const bool noise = p->sigma != 0.0f;
    // The noise lands in y first and is consumed in place.
    if (noise) DDX_TRY(ddx_philox_normal(y, cnt, p->key.seed, p->key.stream, p->key.step, p->key.offset));
    for (int64_t i = 0; i < cnt; i++) {
        const float m = ou ? ddx_rng_add(ou[i], ddx_rng_mul(p->guidance, ddx_rng_add(o[i], -ou[i]))) : o[i];
        float x0 = ddx_rng_add(ddx_rng_mul(p->a, xt[i]), ddx_rng_mul(p->b, m));
        // Comparisons rather than fminf/fmaxf: a NaN must stay NaN, not become a clip bound.
        if (p->clip) x0 = x0 < -1.0f ? -1.0f : (x0 > 1.0f ? 1.0f : x0);
        const float eps = ddx_rng_add(ddx_rng_mul(p->f, xt[i]), ddx_rng_mul(p->g, m));
        float v = ddx_rng_add(ddx_rng_add(ddx_rng_mul(p->c, x0), ddx_rng_mul(p->d, xt[i])), ddx_rng_mul(p->e, eps));
        if (noise) v = ddx_rng_add(v, ddx_rng_mul(p->sigma, y[i]));
        y[i] = v;
    }
    if (n->n_inputs == 4 && n->in[2] && n->in[3]) {
        DDX_TRY(ddx_cpu_need_f32("sampler_step", n->in[2], "known image"));
        DDX_TRY(ddx_cpu_need_f32("sampler_step", n->in[3], "mask"));
        return blend_known(p, ddx_f32c(n->in[2]), ddx_f32c(n->in[3]), y, cnt);
    }
    return DDX_OK;
}

// =========================================================================================
// sampler_step_ms: see ddx_sampler_ms_params in runtime/ops.h.
// =========================================================================================
ddx_tensor *ddx_sampler_step_ms(ddx_ctx *c, ddx_tensor *x_t, ddx_tensor *out, ddx_tensor *h1, ddx_tensor *h2,
                                const ddx_sampler_ms_params *p) {
    if (!ddx_op_ok(c, "sampler_step_ms", 2, (ddx_tensor *[]){x_t, out})) return NULL;
    char sa[DDX_SHAPE_BUF], sb[DDX_SHAPE_BUF];
    if (!p) return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: params are NULL");
    if (h2 && !h1) return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: a second history tensor needs the first");
    ddx_tensor *hs[2] = {h1, h2};
    for (int i = 0; i < 2 && hs[i]; i++) {
        if (!ddx_op_ok(c, "sampler_step_ms", 1, &hs[i])) return NULL;
        if (hs[i]->dtype != DDX_F32 || !ddx_same_shape(x_t, hs[i]))
            return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: history %d is %s %s, want f32 of x_t's shape %s", i + 1,
                               ddx_dtype_name(hs[i]->dtype), ddx_shape_str(hs[i], sa, sizeof sa),
                               ddx_shape_str(x_t, sb, sizeof sb));
        if (refuse_grad(c, "sampler_step_ms", hs[i], "a history tensor")) return NULL;
    }
    if (x_t->dtype != DDX_F32 || out->dtype != DDX_F32)
        return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: x_t and the model output must be f32, got %s and %s",
                           ddx_dtype_name(x_t->dtype), ddx_dtype_name(out->dtype));
    if (x_t->ndim < 1 || x_t->shape[0] < 1)
        return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: x_t %s needs a batch dim of at least 1",
                           ddx_shape_str(x_t, sa, sizeof sa));
    // Guided: the model output holds the conditional rows, then as many unconditional ones.
    bool shape_ok = out->ndim == x_t->ndim && out->shape[0] == (p->guided ? 2 : 1) * x_t->shape[0];
    for (int i = 1; shape_ok && i < x_t->ndim; i++) shape_ok = out->shape[i] == x_t->shape[i];
    if (!shape_ok)
        return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: the model output %s must be %s x_t's %s", ddx_shape_str(out, sa, sizeof sa),
                           p->guided ? "twice (guided: conditional then unconditional rows)" : "the shape of",
                           ddx_shape_str(x_t, sb, sizeof sb));
    if (p->coefs_dev && (!c->step_dev || c->device != DDX_CUDA))
        return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: device coefficients need the CUDA backend and the context's step_dev");
    const float co[7] = {p->a, p->b, p->cx, p->cd, p->c1, p->c2, p->sigma};
    static const char *const names[7] = {"a", "b", "cx", "cd", "c1", "c2", "sigma"};
    for (int i = 0; i < 7 && !p->coefs_dev; i++)
        if (!finite_f(co[i]))
            return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: coefficient %s is not finite (%g); check the schedule",
                               names[i], (double)co[i]);
    if (p->guided && !finite_f(p->w))
        return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: the guidance scale %g is not finite", (double)p->w);
    if (!key_fits(&p->key, ddx_numel(x_t)))
        return ddx_op_fail(c, DDX_E_INPUT, "sampler_step_ms: offset %llu + %lld elements overflows the 64-bit Philox index",
                           (unsigned long long)p->key.offset, (long long)ddx_numel(x_t));
    if (refuse_grad(c, "sampler_step_ms", x_t, "x_t") || refuse_grad(c, "sampler_step_ms", out, "the model output"))
        return NULL;
    ddx_op_params op = {.sampler_step_ms = *p};
    if (!device_step(c, "sampler_step_ms", &op.sampler_step_ms.key)) return NULL;
    int64_t shape[DDX_MAX_DIMS];
    for (int i = 0; i < x_t->ndim; i++) shape[i] = x_t->shape[i];
    shape[0] *= 2;
    const int nin = h2 ? 4 : h1 ? 3 : 2;
    return ddx_op_run(c, DDX_OP_SAMPLER_STEP_MS, nin, (ddx_tensor *[]){x_t, out, h1, h2}, &op, DDX_F32, x_t->ndim, shape);
}

ddx_status ddx_cpu_sampler_step_ms_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(ddx_cpu_need_f32("sampler_step_ms", n->in[0], "x_t"));
    DDX_TRY(ddx_cpu_need_f32("sampler_step_ms", n->in[1], "model output"));
    const ddx_sampler_ms_params *p = &n->p.sampler_step_ms;
    const int64_t cnt = ddx_numel(n->in[0]);
    const float *xt = ddx_f32c(n->in[0]), *o = ddx_f32c(n->in[1]);
    const float *h1 = NULL, *h2 = NULL;
    if (n->n_inputs >= 3) {
        DDX_TRY(ddx_cpu_need_f32("sampler_step_ms", n->in[2], "history 1"));
        h1 = ddx_f32c(n->in[2]);
    }
    if (n->n_inputs >= 4) {
        DDX_TRY(ddx_cpu_need_f32("sampler_step_ms", n->in[3], "history 2"));
        h2 = ddx_f32c(n->in[3]);
    }
    float *y = ddx_f32(n->out), *yd = y + cnt;
    const bool noise = p->sigma != 0.0f;
    // The noise lands in y first and is consumed in place.
    if (noise) DDX_TRY(ddx_philox_normal(y, cnt, p->key.seed, p->key.stream, p->key.step, p->key.offset));
    for (int64_t i = 0; i < cnt; i++) {
        float m = o[i];
        if (p->guided) m = ddx_rng_add(o[cnt + i], ddx_rng_mul(p->w, ddx_rng_sub(o[i], o[cnt + i])));
        float d = ddx_rng_add(ddx_rng_mul(p->a, xt[i]), ddx_rng_mul(p->b, m));
        // Comparisons rather than fminf/fmaxf: a NaN must stay NaN, not become a clip bound.
        if (p->clip) d = d < -1.0f ? -1.0f : (d > 1.0f ? 1.0f : d);
        float v = ddx_rng_add(ddx_rng_mul(p->cx, xt[i]), ddx_rng_mul(p->cd, d));
        if (h1) v = ddx_rng_add(v, ddx_rng_mul(p->c1, h1[i]));
        if (h2) v = ddx_rng_add(v, ddx_rng_mul(p->c2, h2[i]));
        if (noise) v = ddx_rng_add(v, ddx_rng_mul(p->sigma, y[i]));
        y[i] = v;
        yd[i] = d;
    }
    return DDX_OK;
}
