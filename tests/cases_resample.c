// Op-driver cases for upsample2x, pool2x, pool2d and resize: odd shapes with gradient checks,
// then real U-Net and Inception shapes forward only.
#include "op_cases.h"

#include "runtime/ops.h"

// Input specs: F32 (default dtype) by shape, optionally with a gradient check.
#define IN4(a, b, c_, d, g, gr) {.ndim = 4, .shape = {a, b, c_, d}, .gen = (g), .grad = (gr)}
#define IN4B(a, b, c_, d, g, gr) {.ndim = 4, .shape = {a, b, c_, d}, .dtype = DDX_BF16, .gen = (g), .grad = (gr)}

static ddx_tensor *apply_upsample(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_upsample2x(c, in[0], tc->p.upsample2x.mode);
}
static ddx_tensor *apply_pool(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_pool2x(c, in[0], tc->p.pool2x.mode);
}

static ddx_tensor *apply_pool2d(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_pool2d(c, in[0], tc->p.pool2d);
}
static ddx_tensor *apply_gap(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_global_avg_pool(c, in[0]);
}
static ddx_tensor *apply_resize(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_resize_bilinear(c, in[0], tc->p.resize.ho, tc->p.resize.wo);
}

// pool2d(mode, kernel, stride, padding, count_include_pad)
#define POOL2D(m, k, s, pd, inc) {.pool2d = {.mode = (m), .kh = (k), .kw = (k), .stride = (s), .pad_h = (pd), .pad_w = (pd), .count_include_pad = (inc)}}
#define RESIZE(h, w) {.resize = {.ho = (h), .wo = (w)}}

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

    // ---- pool2d: Inception's three pools, odd sizes, rectangular windows ------------------
    {DDX_OP_POOL2D, "pool2d max 3x3 s2 p0 [2,9,7,5]", 1, {IN4(2, 9, 7, 5, DDX_GEN_DISTINCT, true)}, apply_pool2d,
     .p = POOL2D(DDX_POOL_MAX, 3, 2, 0, false)},
    {DDX_OP_POOL2D, "pool2d max 3x3 s1 p1 [2,5,6,3]", 1, {IN4(2, 5, 6, 3, DDX_GEN_DISTINCT, true)}, apply_pool2d,
     .p = POOL2D(DDX_POOL_MAX, 3, 1, 1, false)},
    {DDX_OP_POOL2D, "pool2d max 3x3 s1 p1 every window padded [1,3,3,2]", 1, {IN4(1, 3, 3, 2, DDX_GEN_DISTINCT, true)},
     apply_pool2d, .p = POOL2D(DDX_POOL_MAX, 3, 1, 1, false)},
    {DDX_OP_POOL2D, "pool2d avg 3x3 s1 p1 exclude pad [2,5,6,3]", 1, {IN4(2, 5, 6, 3, DDX_GEN_NORMAL, true)},
     apply_pool2d, .p = POOL2D(DDX_POOL_AVG, 3, 1, 1, false)},
    {DDX_OP_POOL2D, "pool2d avg 3x3 s1 p1 include pad [2,5,6,3]", 1, {IN4(2, 5, 6, 3, DDX_GEN_NORMAL, true)},
     apply_pool2d, .p = POOL2D(DDX_POOL_AVG, 3, 1, 1, true)},
    {DDX_OP_POOL2D, "pool2d avg 2x3 s2 p(1,1) [1,7,8,4]", 1, {IN4(1, 7, 8, 4, DDX_GEN_NORMAL, true)}, apply_pool2d,
     .p = {.pool2d = {.mode = DDX_POOL_AVG, .kh = 2, .kw = 3, .stride = 2, .pad_h = 1, .pad_w = 1}}},
    {DDX_OP_POOL2D, "pool2d max 2x3 s3 p(1,0) [1,8,10,3]", 1, {IN4(1, 8, 10, 3, DDX_GEN_DISTINCT, true)}, apply_pool2d,
     .p = {.pool2d = {.mode = DDX_POOL_MAX, .kh = 2, .kw = 3, .stride = 3, .pad_h = 1, .pad_w = 0}}},
    {DDX_OP_POOL2D, "global avg pool [2,5,3,6]", 1, {IN4(2, 5, 3, 6, DDX_GEN_NORMAL, true)}, apply_gap,
     .p = POOL2D(DDX_POOL_AVG, 0, 1, 0, false)},
    {DDX_OP_POOL2D, "pool2d bf16 max 3x3 s2 p0 [1,5,5,8]", 1, {IN4B(1, 5, 5, 8, DDX_GEN_DISTINCT, true)}, apply_pool2d,
     .p = POOL2D(DDX_POOL_MAX, 3, 2, 0, false), .bf16_ref_f32 = true},
    {DDX_OP_POOL2D, "pool2d bf16 avg 3x3 s1 p1 exclude pad [2,5,6,8]", 1, {IN4B(2, 5, 6, 8, DDX_GEN_NORMAL, true)},
     apply_pool2d, .p = POOL2D(DDX_POOL_AVG, 3, 1, 1, false), .bf16_ref_f32 = true},
    {DDX_OP_POOL2D, "pool2d max 3x3 s2 Inception [2,147,147,64]", 1, {IN4(2, 147, 147, 64, DDX_GEN_DISTINCT, false)},
     apply_pool2d, .p = POOL2D(DDX_POOL_MAX, 3, 2, 0, false), .no_grad = true},
    {DDX_OP_POOL2D, "pool2d avg 3x3 s1 p1 Inception [2,35,35,192]", 1, {IN4(2, 35, 35, 192, DDX_GEN_NORMAL, false)},
     apply_pool2d, .p = POOL2D(DDX_POOL_AVG, 3, 1, 1, false), .no_grad = true},
    {DDX_OP_POOL2D, "global avg pool Inception [2,8,8,2048]", 1, {IN4(2, 8, 8, 2048, DDX_GEN_NORMAL, false)}, apply_gap,
     .p = POOL2D(DDX_POOL_AVG, 0, 1, 0, false),
     .no_grad = true},

    // ---- resize: bilinear to any size, growing and shrinking ------------------------------
    {DDX_OP_RESIZE, "resize [1,1,1,3] -> 3x2", 1, {IN4(1, 1, 1, 3, DDX_GEN_NORMAL, true)}, apply_resize, .p = RESIZE(3, 2)},
    {DDX_OP_RESIZE, "resize [2,4,5,3] -> 11x7 (grow)", 1, {IN4(2, 4, 5, 3, DDX_GEN_NORMAL, true)}, apply_resize,
     .p = RESIZE(11, 7)},
    {DDX_OP_RESIZE, "resize [1,9,13,2] -> 4x5 (shrink)", 1, {IN4(1, 9, 13, 2, DDX_GEN_NORMAL, true)}, apply_resize,
     .p = RESIZE(4, 5)},
    {DDX_OP_RESIZE, "resize [1,6,5,2] -> 6x17 (same rows)", 1, {IN4(1, 6, 5, 2, DDX_GEN_NORMAL, true)}, apply_resize,
     .p = RESIZE(6, 17)},
    {DDX_OP_RESIZE, "resize [2,7,3,1] -> 2x9 (shrink rows, grow columns)", 1, {IN4(2, 7, 3, 1, DDX_GEN_NORMAL, true)},
     apply_resize, .p = RESIZE(2, 9)},
    {DDX_OP_RESIZE, "resize bf16 [2,7,5,8] -> 4x11", 1, {IN4B(2, 7, 5, 8, DDX_GEN_NORMAL, true)}, apply_resize,
     .p = RESIZE(4, 11), .bf16_ref_f32 = true},
    {DDX_OP_RESIZE, "resize Inception [2,28,28,3] -> 299x299", 1, {IN4(2, 28, 28, 3, DDX_GEN_UNIFORM, false)},
     apply_resize, .p = RESIZE(299, 299), .no_grad = true},
};

ddx_case_list ddx_cases_resample(void) {
    return (ddx_case_list){resample_cases, sizeof resample_cases / sizeof resample_cases[0]};
}
