// Op-driver cases for upsample2x and pool2x: odd shapes with gradient checks, then real U-Net
// shapes forward only.
#include "op_cases.h"

#include "runtime/ops.h"

// Input specs: F32 (default dtype) by shape, optionally with a gradient check.
#define IN4(a, b, c_, d, g, gr) {.ndim = 4, .shape = {a, b, c_, d}, .gen = (g), .grad = (gr)}

static ddx_tensor *apply_upsample(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_upsample2x(c, in[0], tc->p.upsample2x.mode);
}
static ddx_tensor *apply_pool(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_pool2x(c, in[0], tc->p.pool2x.mode);
}

#define NEAREST {.upsample2x = {.mode = DDX_UPSAMPLE_NEAREST}}
#define BILINEAR {.upsample2x = {.mode = DDX_UPSAMPLE_BILINEAR}}
#define MAXPOOL {.pool2x = {.mode = DDX_POOL_MAX}}
#define AVGPOOL {.pool2x = {.mode = DDX_POOL_AVG}}

static const ddx_op_case resample_cases[] = {
    // ---- upsample2x ----------------------------------------------------------------------
    {DDX_OP_UPSAMPLE2X, "upsample nearest [1,1,1,1] -> 2x2", 1, {IN4(1, 1, 1, 1, DDX_GEN_NORMAL, true)}, apply_upsample,
     .p = NEAREST},
    {DDX_OP_UPSAMPLE2X, "upsample nearest [3,3,5,3]", 1, {IN4(3, 3, 5, 3, DDX_GEN_NORMAL, true)}, apply_upsample,
     .p = NEAREST},
    {DDX_OP_UPSAMPLE2X, "upsample bilinear [1,1,1,3] -> 2x2", 1, {IN4(1, 1, 1, 3, DDX_GEN_NORMAL, true)}, apply_upsample,
     .p = BILINEAR},
    {DDX_OP_UPSAMPLE2X, "upsample bilinear [2,3,4,5]", 1, {IN4(2, 3, 4, 5, DDX_GEN_NORMAL, true)}, apply_upsample,
     .p = BILINEAR},
    {DDX_OP_UPSAMPLE2X, "upsample bilinear [1,5,2,1]", 1, {IN4(1, 5, 2, 1, DDX_GEN_NORMAL, true)}, apply_upsample,
     .p = BILINEAR},
    {DDX_OP_UPSAMPLE2X, "upsample nearest U-Net [2,16,16,256]", 1, {IN4(2, 16, 16, 256, DDX_GEN_NORMAL, false)},
     apply_upsample, .p = NEAREST, .no_grad = true},
    {DDX_OP_UPSAMPLE2X, "upsample bilinear U-Net [2,16,16,256]", 1, {IN4(2, 16, 16, 256, DDX_GEN_NORMAL, false)},
     apply_upsample, .p = BILINEAR, .no_grad = true},

    // ---- pool2x --------------------------------------------------------------------------
    {DDX_OP_POOL2X, "pool max [1,2,2,1] -> 1x1", 1, {IN4(1, 2, 2, 1, DDX_GEN_DISTINCT, true)}, apply_pool, .p = MAXPOOL},
    {DDX_OP_POOL2X, "pool max [3,4,6,5]", 1, {IN4(3, 4, 6, 5, DDX_GEN_DISTINCT, true)}, apply_pool, .p = MAXPOOL},
    {DDX_OP_POOL2X, "pool avg [1,2,2,3] -> 1x1", 1, {IN4(1, 2, 2, 3, DDX_GEN_NORMAL, true)}, apply_pool, .p = AVGPOOL},
    {DDX_OP_POOL2X, "pool avg [3,4,6,5]", 1, {IN4(3, 4, 6, 5, DDX_GEN_NORMAL, true)}, apply_pool, .p = AVGPOOL},
    {DDX_OP_POOL2X, "pool max U-Net [2,32,32,128]", 1, {IN4(2, 32, 32, 128, DDX_GEN_DISTINCT, false)}, apply_pool,
     .p = MAXPOOL, .no_grad = true},
    {DDX_OP_POOL2X, "pool avg U-Net [2,16,16,256]", 1, {IN4(2, 16, 16, 256, DDX_GEN_NORMAL, false)}, apply_pool,
     .p = AVGPOOL, .no_grad = true},
};

ddx_case_list ddx_cases_resample(void) {
    return (ddx_case_list){resample_cases, sizeof resample_cases / sizeof resample_cases[0]};
}
