// conv2d and linear cases for the op driver: small odd shapes with gradient checks on x,
// weight and bias, then real DDPM CIFAR-10 U-Net shapes forward-only.
#include "op_cases.h"

static ddx_tensor *apply_conv2d(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_conv2d(c, in[0], in[1], in[2], tc->p.conv2d);
}

static ddx_tensor *apply_linear(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_linear(c, in[0], in[1], in[2]);
}

#define T4(a, b, c, d, g) {.ndim = 4, .shape = {a, b, c, d}, .dtype = DDX_F32, .gen = DDX_GEN_UNIFORM, .grad = g}
#define T3(a, b, c, g) {.ndim = 3, .shape = {a, b, c, 1}, .dtype = DDX_F32, .gen = DDX_GEN_UNIFORM, .grad = g}
#define T2(a, b, g) {.ndim = 2, .shape = {a, b, 1, 1}, .dtype = DDX_F32, .gen = DDX_GEN_UNIFORM, .grad = g}
#define T1(a, g) {.ndim = 1, .shape = {a, 1, 1, 1}, .dtype = DDX_F32, .gen = DDX_GEN_UNIFORM, .grad = g}
#define ABSENT {.ndim = 0}

// x [N,H,W,Ci], w [Co,KH,KW,Ci], bias [Co] (ndim 0 = absent), all with gradient checks.
#define CONV(desc_, N, H, W, Ci, Co, KH, KW, s, pt, pb, pl, pr, with_bias)                            \
    {.op = DDX_OP_CONV2D, .desc = desc_, .n_inputs = 3,                                              \
     .in = {T4(N, H, W, Ci, true), T4(Co, KH, KW, Ci, true),                                         \
            {.ndim = (with_bias) ? 1 : 0, .shape = {Co, 1, 1, 1}, .gen = DDX_GEN_UNIFORM, .grad = true}}, \
     .apply = apply_conv2d,                                                                          \
     .p = {.conv2d = {.stride = s, .pad_top = pt, .pad_bottom = pb, .pad_left = pl, .pad_right = pr}}}

// Forward-only: real U-Net shapes, too big for finite differences.
#define CONV_FWD(desc_, N, H, W, Ci, Co, KH, KW, s, pt, pb, pl, pr)                                   \
    {.op = DDX_OP_CONV2D, .desc = desc_, .n_inputs = 3,                                              \
     .in = {T4(N, H, W, Ci, false), T4(Co, KH, KW, Ci, false), T1(Co, false)},                       \
     .apply = apply_conv2d,                                                                          \
     .p = {.conv2d = {.stride = s, .pad_top = pt, .pad_bottom = pb, .pad_left = pl, .pad_right = pr}}, \
     .no_grad = true}

static const ddx_op_case conv_cases[] = {
    CONV("conv2d 3x3 s1 p1 [2,5,5,3] -> 5, bias", 2, 5, 5, 3, 5, 3, 3, 1, 1, 1, 1, 1, true),
    CONV("conv2d 3x3 s1 p1 [3,4,6,5] -> 3, no bias", 3, 4, 6, 5, 3, 3, 3, 1, 1, 1, 1, 1, false),
    CONV("conv2d 3x3 s1 p0 (valid) [1,5,6,3] -> 5, bias", 1, 5, 6, 3, 5, 3, 3, 1, 0, 0, 0, 0, true),
    CONV("conv2d 3x3 s2 p1 [1,6,7,5] -> 3, bias", 1, 6, 7, 5, 3, 3, 3, 2, 1, 1, 1, 1, true),
    CONV("conv2d 3x3 s2 p1 odd H/W [3,5,5,3] -> 5, no bias", 3, 5, 5, 3, 5, 3, 3, 2, 1, 1, 1, 1, false),
    CONV("conv2d 3x3 s2 pad (0,1,0,1) [3,6,6,3] -> 5, bias", 3, 6, 6, 3, 5, 3, 3, 2, 0, 1, 0, 1, true),
    CONV("conv2d 3x3 s2 pad (0,1,0,1) [1,8,8,5] -> 5, no bias", 1, 8, 8, 5, 5, 3, 3, 2, 0, 1, 0, 1, false),
    CONV("conv2d 1x1 s1 (direct GEMM) [2,4,3,5] -> 3, bias", 2, 4, 3, 5, 3, 1, 1, 1, 0, 0, 0, 0, true),
    CONV("conv2d 1x1 s1 (direct GEMM) [3,3,3,3] -> 5, no bias", 3, 3, 3, 3, 5, 1, 1, 1, 0, 0, 0, 0, false),
    CONV("conv2d 1x1 s2 [2,5,5,3] -> 5, bias", 2, 5, 5, 3, 5, 1, 1, 2, 0, 0, 0, 0, true),
    CONV("conv2d 1x1 s1 p1 (all-padding border) [1,3,3,3] -> 5, bias", 1, 3, 3, 3, 5, 1, 1, 1, 1, 1, 1, 1, true),
    CONV("conv2d 3x3 s1 p1 on 1x1 spatial [3,1,1,5] -> 3, bias", 3, 1, 1, 5, 3, 3, 3, 1, 1, 1, 1, 1, true),
    CONV("conv2d 3x3 s2 p1 on 1x1 spatial [1,1,1,3] -> 5, no bias", 1, 1, 1, 3, 5, 3, 3, 2, 1, 1, 1, 1, false),
    CONV("conv2d 3x1 s1 pad (1,1,0,0) [2,4,5,3] -> 5, bias", 2, 4, 5, 3, 5, 3, 1, 1, 1, 1, 0, 0, true),
    CONV("conv2d 3x3 s1 p1 Ci=33 Co=8 [1,4,4,33] -> 8, bias", 1, 4, 4, 33, 8, 3, 3, 1, 1, 1, 1, 1, true),
    CONV_FWD("conv2d U-Net 3x3 128->128 32x32 batch 2", 2, 32, 32, 128, 128, 3, 3, 1, 1, 1, 1, 1),
    CONV_FWD("conv2d U-Net 3x3 256->256 8x8 batch 2", 2, 8, 8, 256, 256, 3, 3, 1, 1, 1, 1, 1),
    CONV_FWD("conv2d U-Net 3x3 256->256 4x4 batch 2", 2, 4, 4, 256, 256, 3, 3, 1, 1, 1, 1, 1),
    CONV_FWD("conv2d U-Net input 3x3 3->128 32x32 batch 2", 2, 32, 32, 3, 128, 3, 3, 1, 1, 1, 1, 1),
    CONV_FWD("conv2d U-Net output 3x3 128->3 32x32 batch 2", 2, 32, 32, 128, 3, 3, 3, 1, 1, 1, 1, 1),
    CONV_FWD("conv2d U-Net downsample 3x3 s2 (0,1,0,1) 128 32x32 -> 16x16 batch 2", 2, 32, 32, 128, 128, 3, 3, 2, 0, 1, 0, 1),
    CONV_FWD("conv2d U-Net skip 1x1 256->128 16x16 batch 2", 2, 16, 16, 256, 128, 1, 1, 1, 0, 0, 0, 0),

    {.op = DDX_OP_LINEAR, .desc = "linear 2-D [4,7] -> 5, bias", .n_inputs = 3,
     .in = {T2(4, 7, true), T2(5, 7, true), T1(5, true)}, .apply = apply_linear},
    {.op = DDX_OP_LINEAR, .desc = "linear 2-D [3,5] -> 3, no bias", .n_inputs = 3,
     .in = {T2(3, 5, true), T2(3, 5, true), ABSENT}, .apply = apply_linear},
    {.op = DDX_OP_LINEAR, .desc = "linear 1-D [7] -> 3, bias", .n_inputs = 3,
     .in = {T1(7, true), T2(3, 7, true), T1(3, true)}, .apply = apply_linear},
    {.op = DDX_OP_LINEAR, .desc = "linear 3-D [2,5,6] -> 4, bias", .n_inputs = 3,
     .in = {T3(2, 5, 6, true), T2(4, 6, true), T1(4, true)}, .apply = apply_linear},
    {.op = DDX_OP_LINEAR, .desc = "linear 4-D [2,3,3,6] -> 5, bias", .n_inputs = 3,
     .in = {T4(2, 3, 3, 6, true), T2(5, 6, true), T1(5, true)}, .apply = apply_linear},
    {.op = DDX_OP_LINEAR, .desc = "linear 4-D [3,2,1,5] -> 3, no bias", .n_inputs = 3,
     .in = {T4(3, 2, 1, 5, true), T2(3, 5, true), ABSENT}, .apply = apply_linear},
    {.op = DDX_OP_LINEAR, .desc = "linear time MLP [2,128] -> 512, bias", .n_inputs = 3,
     .in = {T2(2, 128, true), T2(512, 128, true), T1(512, true)}, .apply = apply_linear},
    {.op = DDX_OP_LINEAR, .desc = "linear time MLP [2,512] -> 128, bias", .n_inputs = 3,
     .in = {T2(2, 512, true), T2(128, 512, true), T1(128, true)}, .apply = apply_linear},
    {.op = DDX_OP_LINEAR, .desc = "linear attention proj [2,256,128] -> 128, bias (forward only)", .n_inputs = 3,
     .in = {T3(2, 256, 128, false), T2(128, 128, false), T1(128, false)}, .apply = apply_linear, .no_grad = true},
    {.op = DDX_OP_LINEAR, .desc = "linear time-emb proj [2,512] -> 256 (forward only)", .n_inputs = 3,
     .in = {T2(2, 512, false), T2(256, 512, false), T1(256, false)}, .apply = apply_linear, .no_grad = true},
};

ddx_case_list ddx_cases_conv(void) {
    return (ddx_case_list){conv_cases, sizeof conv_cases / sizeof conv_cases[0]};
}
