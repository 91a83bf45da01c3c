// The CUDA op backend: one file per op family (runtime/cuda/ops/<family>.c, kernels in
// kernels/<family>.cu) adapts tape nodes to the kernel launchers. Every op of DDX_OPS has a
// forward ddx_cuda_<op>_fwd and, when it is differentiable, a backward ddx_cuda_<op>_bwd;
// table.c builds ddx_cuda_ops from these names, so a new op needs no edit here.
#ifndef DDX_CUDA_OPS_BACKEND_H
#define DDX_CUDA_OPS_BACKEND_H

#include "op_impl.h"

#define DDX_X_CUDA_DECL(E, n, ni, d)                                                \
    ddx_status ddx_cuda_##n##_fwd(ddx_ctx *c, ddx_node *nd);                       \
    DDX_BWD_DECL(d, ddx_status ddx_cuda_##n##_bwd(ddx_ctx *c, ddx_node *nd);)
DDX_OPS(DDX_X_CUDA_DECL)
#undef DDX_X_CUDA_DECL

// dst += src on the context's stream, any f32/bf16 pair of equal element count (elementwise.c).
ddx_status ddx_cuda_accumulate(ddx_ctx *c, ddx_tensor *dst, const ddx_tensor *src);

#endif
