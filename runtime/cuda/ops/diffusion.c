// Host glue of the diffusion CUDA family: randn, q_sample and sampler_step (kernels in
// kernels/diffusion.cu, Philox drawn inside). Not differentiable: no backward. Bit-identical
// to the CPU reference in runtime/ops/diffusion.c.
#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/diffusion.h"
#include "op_impl.h"

// ---- randn / q_sample / sampler_step (no backward: not differentiable) --------------------
// c->step_dev (CUDA graphs) goes with every key: the kernels then read the step word there.
static ddx_k_rng_key k_key(const ddx_ctx *c, const ddx_rng_key *k) {
    return (ddx_k_rng_key){
        .seed = k->seed, .stream = k->stream, .step = k->step, .offset = k->offset, .step_dev = c->step_dev};
}

ddx_status ddx_cuda_randn_fwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *y = n->out;
    const ddx_k_rng_key k = k_key(c, &n->p.randn);
    if (y->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_randn_f32(y->data, ddx_numel(y), k, ddx_cuda_stream_of(c)));
    else if (y->dtype == DDX_BF16) DDX_CUDA_CHECK(ddx_k_randn_bf16(y->data, ddx_numel(y), k, ddx_cuda_stream_of(c)));
    else return ddx_errorf(DDX_E_UNSUPPORTED, "randn on CUDA: dtype %s is not supported (f32, bf16)", ddx_dtype_name(y->dtype));
    return DDX_OK;
}

ddx_status ddx_cuda_q_sample_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x0 = n->in[0], *coef = n->in[1];
    if (x0->dtype != DDX_F32 || coef->dtype != DDX_F32 || n->out->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "q_sample on CUDA: f32 only, got x0 %s, coef %s", ddx_dtype_name(x0->dtype),
                          ddx_dtype_name(coef->dtype));
    const int64_t cnt = ddx_numel(x0);
    if (cnt == 0) return DDX_OK;
    DDX_CUDA_CHECK(ddx_k_q_sample_f32(n->out->data, x0->data, coef->data, cnt, cnt / x0->shape[0], k_key(c, &n->p.q_sample),
                                      ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_sampler_step_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *xt = n->in[0], *o = n->in[1];
    if (xt->dtype != DDX_F32 || o->dtype != DDX_F32 || n->out->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "sampler_step on CUDA: f32 only, got x_t %s, output %s",
                          ddx_dtype_name(xt->dtype), ddx_dtype_name(o->dtype));
    const ddx_sampler_step_params *p = &n->p.sampler_step;
    const ddx_k_sampler_coefs co = {.a = p->a, .b = p->b, .f = p->f, .g = p->g, .c = p->c, .d = p->d, .e = p->e,
                                    .sigma = p->sigma, .clip = p->clip ? 1 : 0, .dev = p->coefs_dev,
                                    .guided = p->guided ? 1 : 0, .guidance = p->guidance};
    if (n->n_inputs == 4 && n->in[2] && n->in[3]) {
        const ddx_tensor *kn = n->in[2], *mk = n->in[3];
        if (kn->dtype != DDX_F32 || mk->dtype != DDX_F32)
            return ddx_errorf(DDX_E_UNSUPPORTED, "sampler_step on CUDA: f32 only, got known %s, mask %s",
                              ddx_dtype_name(kn->dtype), ddx_dtype_name(mk->dtype));
        ddx_rng_key kk = p->key;
        kk.stream = p->known_stream;
        const ddx_k_blend b = {.known = kn->data, .mask = mk->data, .kc0 = p->kc0, .kc1 = p->kc1,
                               .dev = p->coefs_dev ? p->known_coefs_dev : NULL, .key = k_key(c, &kk)};
        DDX_CUDA_CHECK(ddx_k_sampler_step_blend_f32(n->out->data, xt->data, o->data, ddx_numel(xt), co, k_key(c, &p->key), b,
                                                    ddx_cuda_stream_of(c)));
        return DDX_OK;
    }
    DDX_CUDA_CHECK(ddx_k_sampler_step_f32(n->out->data, xt->data, o->data, ddx_numel(xt), co, k_key(c, &p->key), ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_sampler_step_ms_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *xt = n->in[0], *o = n->in[1];
    const ddx_tensor *h1 = n->n_inputs >= 3 ? n->in[2] : NULL, *h2 = n->n_inputs >= 4 ? n->in[3] : NULL;
    if (xt->dtype != DDX_F32 || o->dtype != DDX_F32 || n->out->dtype != DDX_F32 || (h1 && h1->dtype != DDX_F32) ||
        (h2 && h2->dtype != DDX_F32))
        return ddx_errorf(DDX_E_UNSUPPORTED, "sampler_step_ms on CUDA: f32 only, got x_t %s, output %s",
                          ddx_dtype_name(xt->dtype), ddx_dtype_name(o->dtype));
    const ddx_sampler_ms_params *p = &n->p.sampler_step_ms;
    const ddx_k_ms_coefs co = {.a = p->a, .b = p->b, .cx = p->cx, .cd = p->cd, .c1 = p->c1, .c2 = p->c2, .sigma = p->sigma,
                               .clip = p->clip ? 1 : 0, .guided = p->guided ? 1 : 0, .w = p->w, .dev = p->coefs_dev};
    DDX_CUDA_CHECK(ddx_k_sampler_step_ms_f32(n->out->data, xt->data, o->data, h1 ? h1->data : NULL, h2 ? h2->data : NULL,
                                             ddx_numel(xt), co, k_key(c, &p->key), ddx_cuda_stream_of(c)));
    return DDX_OK;
}
