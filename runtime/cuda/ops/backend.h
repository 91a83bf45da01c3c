// The CUDA op backend: one file per op family (runtime/cuda/ops/<family>.c, kernels in
// kernels/<family>.cu) adapts tape nodes to the kernel launchers. Every op of DDX_OPS has a
// forward ddx_cuda_<op>_fwd and, when it is differentiable, a backward ddx_cuda_<op>_bwd;
// table.c builds ddx_cuda_ops from these names, so a new op needs no edit here.
#ifndef DDX_CUDA_OPS_BACKEND_H
#define DDX_CUDA_OPS_BACKEND_H

#include "kernels/dtype.h"
#include "op_impl.h"
#include "cuda/check.h"

#define DDX_X_CUDA_DECL(E, n, ni, d)                                                \
    ddx_status ddx_cuda_##n##_fwd(ddx_ctx *c, ddx_node *nd);                       \
    DDX_BWD_DECL(d, ddx_status ddx_cuda_##n##_bwd(ddx_ctx *c, ddx_node *nd);)
DDX_OPS(DDX_X_CUDA_DECL)
#undef DDX_X_CUDA_DECL

// dst += src on the context's stream, any f32/bf16 pair of equal element count (elementwise.c).
ddx_status ddx_cuda_accumulate(ddx_ctx *c, ddx_tensor *dst, const ddx_tensor *src);

// The checks and pieces every family's glue needs (common.c), so the families do not each keep
// a copy. Messages name the op and, where given, the operand ("the weight", "x"; NULL: none).
static inline void *ddx_cuda_stream_of(const ddx_ctx *c) { return (void *)ddx_cuda_stream(c->cuda); }
// t is f32 or bf16.
ddx_status ddx_cuda_need_float(const char *op, const ddx_tensor *t, const char *what);
// t (when present) has dtype dt: the kernels take one element type for all their float operands.
ddx_status ddx_cuda_need_dtype(const char *op, const ddx_tensor *t, ddx_dtype dt, const char *what);
// The storage type a norm/linear/losses launcher is told (f32 or bf16).
ddx_status ddx_cuda_k_dt(const char *op, const ddx_tensor *t, ddx_k_norm_dt *dt);
// The output's grad every backward starts from; its absence or a wrong shape is a tape bug.
ddx_status ddx_cuda_out_grad(const ddx_node *n, const ddx_tensor **dy);
// n floats of scratch from the activation arena (the caller rewinds it).
ddx_status ddx_cuda_scratch_f32(ddx_ctx *c, int64_t n, const char *what, float **out);

#endif
