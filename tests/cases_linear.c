// linear cases for the op driver: small odd shapes with gradient checks on x, weight and
// bias, then the DDPM CIFAR-10 U-Net's linear shapes.
#include "op_cases.h"

static ddx_tensor *apply_linear(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_linear(c, in[0], in[1], in[2]);
}

#define T4(a, b, c, d, g) {.ndim = 4, .shape = {a, b, c, d}, .dtype = DDX_F32, .gen = DDX_GEN_UNIFORM, .grad = g}
#define T3(a, b, c, g) {.ndim = 3, .shape = {a, b, c, 1}, .dtype = DDX_F32, .gen = DDX_GEN_UNIFORM, .grad = g}
#define T2(a, b, g) {.ndim = 2, .shape = {a, b, 1, 1}, .dtype = DDX_F32, .gen = DDX_GEN_UNIFORM, .grad = g}
#define T1(a, g) {.ndim = 1, .shape = {a, 1, 1, 1}, .dtype = DDX_F32, .gen = DDX_GEN_UNIFORM, .grad = g}
#define ABSENT {.ndim = 0}

static const ddx_op_case linear_cases[] = {
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

ddx_case_list ddx_cases_linear(void) {
    return (ddx_case_list){linear_cases, sizeof linear_cases / sizeof linear_cases[0]};
}
