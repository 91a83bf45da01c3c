// What every family's glue shares (declared in backend.h).
#include "cuda/ops/backend.h"

ddx_status ddx_cuda_need_float(const char *op, const ddx_tensor *t, const char *what) {
    if (t->dtype != DDX_F32 && t->dtype != DDX_BF16)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s on CUDA: %s%sdtype %s is not supported (f32, bf16)", op, what ? what : "",
                          what ? " " : "", ddx_dtype_name(t->dtype));
    return DDX_OK;
}

ddx_status ddx_cuda_need_dtype(const char *op, const ddx_tensor *t, ddx_dtype dt, const char *what) {
    if (t && t->dtype != dt)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s on CUDA: %s is %s but the kernel computes in %s (mixed dtypes)", op,
                          what, ddx_dtype_name(t->dtype), ddx_dtype_name(dt));
    return DDX_OK;
}

ddx_status ddx_cuda_k_dt(const char *op, const ddx_tensor *t, ddx_k_norm_dt *dt) {
    if (t->dtype == DDX_F32) *dt = DDX_K_NORM_F32;
    else if (t->dtype == DDX_BF16) *dt = DDX_K_NORM_BF16;
    else return ddx_cuda_need_float(op, t, NULL);
    return DDX_OK;
}

ddx_status ddx_cuda_out_grad(const ddx_node *n, const ddx_tensor **dy) {
    *dy = n->out->grad;
    if (!*dy) return ddx_errorf(DDX_E_INTERNAL, "%s backward on CUDA: the output has no grad", ddx_op_name(n->op));
    if (!ddx_same_shape(*dy, n->out))
        return ddx_errorf(DDX_E_INTERNAL, "%s backward on CUDA: the output grad has the wrong shape", ddx_op_name(n->op));
    return DDX_OK;
}

ddx_status ddx_cuda_scratch_f32(ddx_ctx *c, int64_t n, const char *what, float **out) {
    ddx_tensor *t = ddx_new(c, DDX_F32, 1, (int64_t[]){n > 0 ? n : 1});   // [n]
    if (!t)
        return ddx_errorf(DDX_E_NOMEM, "%s on CUDA: no activation-arena memory for %lld floats of scratch", what,
                          (long long)n);
    *out = ddx_f32(t);
    return DDX_OK;
}
