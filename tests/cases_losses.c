// Op-driver cases for mse_loss, sum and mean: small shapes with gradient checks, then real
// U-Net shapes forward only.
#include "op_cases.h"

#include "runtime/ops.h"

// Input specs: F32 (default dtype) by shape, optionally with a gradient check.
#define IN4(a, b, c_, d, g, gr) {.ndim = 4, .shape = {a, b, c_, d}, .gen = (g), .grad = (gr)}
#define IN2(a, b, g, gr) {.ndim = 2, .shape = {a, b}, .gen = (g), .grad = (gr)}
#define IN1(a, g, gr) {.ndim = 1, .shape = {a}, .gen = (g), .grad = (gr)}

static ddx_tensor *apply_mse(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_mse_loss(c, in[0], in[1]);
}
static ddx_tensor *apply_sum(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_sum(c, in[0]);
}
static ddx_tensor *apply_mean(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_mean(c, in[0]);
}

static const ddx_op_case losses_cases[] = {
    // ---- reductions ----------------------------------------------------------------------
    {DDX_OP_MSE_LOSS, "mse [2,8,8,3]", 2, {IN4(2, 8, 8, 3, DDX_GEN_NORMAL, true), IN4(2, 8, 8, 3, DDX_GEN_NORMAL, true)},
     apply_mse, .p = {{0}}},
    {DDX_OP_MSE_LOSS, "mse [1] pred grad only", 2, {IN1(1, DDX_GEN_NORMAL, true), IN1(1, DDX_GEN_NORMAL, false)},
     apply_mse, .p = {{0}}},
    {DDX_OP_MSE_LOSS, "mse U-Net eps [2,32,32,3]", 2,
     {IN4(2, 32, 32, 3, DDX_GEN_NORMAL, false), IN4(2, 32, 32, 3, DDX_GEN_NORMAL, false)}, apply_mse, .p = {{0}},
     .no_grad = true},
    {DDX_OP_SUM, "sum [3,5]", 1, {IN2(3, 5, DDX_GEN_NORMAL, true)}, apply_sum, .p = {{0}}},
    {DDX_OP_SUM, "sum [1,3,3,5]", 1, {IN4(1, 3, 3, 5, DDX_GEN_UNIFORM, true)}, apply_sum, .p = {{0}}},
    {DDX_OP_SUM, "sum U-Net [2,32,32,128]", 1, {IN4(2, 32, 32, 128, DDX_GEN_NORMAL, false)}, apply_sum, .p = {{0}},
     .fwd_atol = 1e-3, .no_grad = true},
    {DDX_OP_MEAN, "mean [1]", 1, {IN1(1, DDX_GEN_NORMAL, true)}, apply_mean, .p = {{0}}},
    {DDX_OP_MEAN, "mean [2,8,8,5]", 1, {IN4(2, 8, 8, 5, DDX_GEN_NORMAL, true)}, apply_mean, .p = {{0}}},
    {DDX_OP_MEAN, "mean U-Net [2,32,32,128]", 1, {IN4(2, 32, 32, 128, DDX_GEN_NORMAL, false)}, apply_mean, .p = {{0}},
     .fwd_atol = 1e-6, .no_grad = true},
};

ddx_case_list ddx_cases_losses(void) {
    return (ddx_case_list){losses_cases, sizeof losses_cases / sizeof losses_cases[0]};
}
