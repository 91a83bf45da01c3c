// The CUDA dispatch table, generated from DDX_OPS like the CPU one (runtime/registry.c): op
// <name> runs ddx_cuda_<name>_fwd and, when differentiable, ddx_cuda_<name>_bwd, defined in
// its family's file under runtime/cuda/ops/. An op without its functions fails to link.
#include "cuda/ops/backend.h"

const ddx_backend_op ddx_cuda_ops[DDX_OP_COUNT] = {
#define DDX_X_CUDA(E, n, ni, d) [DDX_OP_##E] = {ddx_cuda_##n##_fwd, DDX_BWD_PICK(d, ddx_cuda_##n##_bwd)},
    DDX_OPS(DDX_X_CUDA)
#undef DDX_X_CUDA
};
