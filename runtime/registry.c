// The op registry: names and the CPU dispatch table, generated from DDX_OPS (the CUDA one is
// runtime/cuda/ops/table.c).
#include <string.h>

#include "ops.h"

static const char *const g_names[DDX_OP_COUNT] = {
#define DDX_X_NAME(E, n, ni, d) #n,
    DDX_OPS(DDX_X_NAME)
#undef DDX_X_NAME
};

static const bool g_diff[DDX_OP_COUNT] = {
#define DDX_X_DIFF(E, n, ni, d) d,
    DDX_OPS(DDX_X_DIFF)
#undef DDX_X_DIFF
};

const char *ddx_op_name(ddx_op op) { return (unsigned)op < DDX_OP_COUNT ? g_names[op] : "?"; }

ddx_op ddx_op_from_name(const char *name) {
    for (int i = 0; i < DDX_OP_COUNT; i++)
        if (strcmp(g_names[i], name) == 0) return (ddx_op)i;
    return DDX_OP_COUNT;
}

bool ddx_op_differentiable(ddx_op op) { return (unsigned)op < DDX_OP_COUNT && g_diff[op]; }

const ddx_backend_op ddx_cpu_ops[DDX_OP_COUNT] = {
#define DDX_X_CPU(E, n, ni, d) [DDX_OP_##E] = {ddx_cpu_##n##_fwd, DDX_BWD_PICK(d, ddx_cpu_##n##_bwd)},
    DDX_OPS(DDX_X_CPU)
#undef DDX_X_CPU
};
