// PLACEHOLDER: replaced by the diffusion ops (randn, q_sample, sampler_step).
#include "op_impl.h"
ddx_tensor *ddx_randn(ddx_ctx *c, ddx_dtype dt, int ndim, const int64_t *shape, ddx_rng_key key) {
    (void)dt; (void)ndim; (void)shape; (void)key;
    return ddx_op_fail(c, DDX_E_UNSUPPORTED, "randn: not written yet");
}
ddx_tensor *ddx_q_sample(ddx_ctx *c, ddx_tensor *x0, ddx_tensor *coef, ddx_rng_key key) {
    (void)x0; (void)coef; (void)key;
    return ddx_op_fail(c, DDX_E_UNSUPPORTED, "q_sample: not written yet");
}
ddx_tensor *ddx_sampler_step(ddx_ctx *c, ddx_tensor *x_t, ddx_tensor *out, const ddx_sampler_step_params *p) {
    (void)x_t; (void)out; (void)p;
    return ddx_op_fail(c, DDX_E_UNSUPPORTED, "sampler_step: not written yet");
}
#define STUB(n) \
    ddx_status ddx_cpu_##n##_fwd(ddx_ctx *c, ddx_node *nd) { (void)c; (void)nd; return ddx_errorf(DDX_E_UNSUPPORTED, #n); } \
    ddx_status ddx_cpu_##n##_bwd(ddx_ctx *c, ddx_node *nd) { (void)c; (void)nd; return ddx_errorf(DDX_E_UNSUPPORTED, #n); }
STUB(randn)
STUB(q_sample)
STUB(sampler_step)
