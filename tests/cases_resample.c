// Op-driver cases for concat, upsample2x, pool2x, embedding, timestep_emb, dropout, mse_loss,
// sum and mean: odd shapes with gradient checks, then real U-Net shapes forward only.
#include "op_cases.h"

#include "runtime/ops.h"

// Input specs: F32 (default dtype) by shape, optionally with a gradient check.
#define IN4(a, b, c_, d, g, gr) {.ndim = 4, .shape = {a, b, c_, d}, .gen = (g), .grad = (gr)}
#define IN3(a, b, c_, g, gr) {.ndim = 3, .shape = {a, b, c_}, .gen = (g), .grad = (gr)}
#define IN2(a, b, g, gr) {.ndim = 2, .shape = {a, b}, .gen = (g), .grad = (gr)}
#define IN1(a, g, gr) {.ndim = 1, .shape = {a}, .gen = (g), .grad = (gr)}

static ddx_tensor *apply_concat(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_concat(c, in[0], in[1]);
}
static ddx_tensor *apply_upsample(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_upsample2x(c, in[0], tc->p.upsample2x.mode);
}
static ddx_tensor *apply_pool(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_pool2x(c, in[0], tc->p.pool2x.mode);
}
static ddx_tensor *apply_embedding(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_embedding(c, in[0], in[1]);
}
static ddx_tensor *apply_timestep(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_timestep_emb(c, in[0], tc->p.timestep_emb);
}
static ddx_tensor *apply_dropout(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_dropout(c, in[0], tc->p.dropout.p);
}
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

#define NEAREST {.upsample2x = {.mode = DDX_UPSAMPLE_NEAREST}}
#define BILINEAR {.upsample2x = {.mode = DDX_UPSAMPLE_BILINEAR}}
#define MAXPOOL {.pool2x = {.mode = DDX_POOL_MAX}}
#define AVGPOOL {.pool2x = {.mode = DDX_POOL_AVG}}
#define TEMB(d, shift, flip) {.timestep_emb = {.dim = (d), .freq_shift = (shift), .flip_sin_to_cos = (flip), .max_period = 10000.0f}}
#define DROP(prob) {.dropout = {.p = (prob)}}

// Timestep embeddings reach arguments of ~1000 where one fp32 ulp is 6e-5: a backend that
// rounds the frequencies differently from the CPU reference fails here (see misc.c).
#define TEMB_ATOL 1e-5

static const ddx_op_case misc_cases[] = {
    // ---- concat --------------------------------------------------------------------------
    {DDX_OP_CONCAT, "concat [2,3,3,1]+[2,3,3,5]", 2, {IN4(2, 3, 3, 1, DDX_GEN_NORMAL, true), IN4(2, 3, 3, 5, DDX_GEN_NORMAL, true)},
     apply_concat, .p = {{0}}},
    {DDX_OP_CONCAT, "concat [1,1,1,3]+[1,1,1,1], grad b only", 2,
     {IN4(1, 1, 1, 3, DDX_GEN_UNIFORM, false), IN4(1, 1, 1, 1, DDX_GEN_UNIFORM, true)}, apply_concat, .p = {{0}}},
    {DDX_OP_CONCAT, "concat 2-D [3,5]+[3,3]", 2, {IN2(3, 5, DDX_GEN_NORMAL, true), IN2(3, 3, DDX_GEN_NORMAL, true)},
     apply_concat, .p = {{0}}},
    {DDX_OP_CONCAT, "concat 3-D [2,7,3]+[2,7,5]", 2, {IN3(2, 7, 3, DDX_GEN_NORMAL, true), IN3(2, 7, 5, DDX_GEN_NORMAL, true)},
     apply_concat, .p = {{0}}},
    {DDX_OP_CONCAT, "concat U-Net skip [2,32,32,128]+[2,32,32,128]", 2,
     {IN4(2, 32, 32, 128, DDX_GEN_NORMAL, false), IN4(2, 32, 32, 128, DDX_GEN_NORMAL, false)}, apply_concat,
     .p = {{0}}, .no_grad = true},
    {DDX_OP_CONCAT, "concat U-Net skip [2,8,8,256]+[2,8,8,128]", 2,
     {IN4(2, 8, 8, 256, DDX_GEN_NORMAL, false), IN4(2, 8, 8, 128, DDX_GEN_NORMAL, false)}, apply_concat,
     .p = {{0}}, .no_grad = true},

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

    // ---- embedding -----------------------------------------------------------------------
    {DDX_OP_EMBEDDING, "embedding V=1 D=7 N=3", 2,
     {{.ndim = 1, .shape = {3}, .dtype = DDX_I32, .gen = DDX_GEN_INDEX, .gen_arg = 1}, IN2(1, 7, DDX_GEN_NORMAL, true)},
     apply_embedding, .p = {{0}}},
    {DDX_OP_EMBEDDING, "embedding V=10 D=7 N=12 (repeats)", 2,
     {{.ndim = 1, .shape = {12}, .dtype = DDX_I32, .gen = DDX_GEN_INDEX, .gen_arg = 10}, IN2(10, 7, DDX_GEN_NORMAL, true)},
     apply_embedding, .p = {{0}}},
    {DDX_OP_EMBEDDING, "embedding V=10 D=1 N=1", 2,
     {{.ndim = 1, .shape = {1}, .dtype = DDX_I32, .gen = DDX_GEN_INDEX, .gen_arg = 10}, IN2(10, 1, DDX_GEN_NORMAL, true)},
     apply_embedding, .p = {{0}}},
    {DDX_OP_EMBEDDING, "embedding class table V=10 D=512 N=2", 2,
     {{.ndim = 1, .shape = {2}, .dtype = DDX_I32, .gen = DDX_GEN_INDEX, .gen_arg = 10}, IN2(10, 512, DDX_GEN_SMALL, false)},
     apply_embedding, .p = {{0}}, .no_grad = true},

    // ---- timestep_emb (no backward) ------------------------------------------------------
    {DDX_OP_TIMESTEP_EMB, "timestep dim 32 shift 0 no flip N=3", 1,
     {{.ndim = 1, .shape = {3}, .gen = DDX_GEN_TIMESTEP, .gen_arg = 1000}}, apply_timestep, .p = TEMB(32, 0.0f, false),
     .fwd_atol = TEMB_ATOL, .no_grad = true},
    {DDX_OP_TIMESTEP_EMB, "timestep dim 32 shift 1 flip N=1", 1,
     {{.ndim = 1, .shape = {1}, .gen = DDX_GEN_TIMESTEP, .gen_arg = 1000}}, apply_timestep, .p = TEMB(32, 1.0f, true),
     .fwd_atol = TEMB_ATOL, .no_grad = true},
    {DDX_OP_TIMESTEP_EMB, "timestep dim 128 shift 1 no flip N=5 (ddpm-cifar10)", 1,
     {{.ndim = 1, .shape = {5}, .gen = DDX_GEN_TIMESTEP, .gen_arg = 1000}}, apply_timestep, .p = TEMB(128, 1.0f, false),
     .fwd_atol = TEMB_ATOL, .no_grad = true},
    {DDX_OP_TIMESTEP_EMB, "timestep dim 128 shift 0 flip N=2", 1,
     {{.ndim = 1, .shape = {2}, .gen = DDX_GEN_TIMESTEP, .gen_arg = 1000}}, apply_timestep, .p = TEMB(128, 0.0f, true),
     .fwd_atol = TEMB_ATOL, .no_grad = true},

    // ---- dropout (training: the mask is a pure function of the key, so grads check) --------
    {DDX_OP_DROPOUT, "dropout p=0.1 [2,4,4,3] training", 1, {IN4(2, 4, 4, 3, DDX_GEN_NORMAL, true)}, apply_dropout,
     .p = DROP(0.1f), .training = true},
    {DDX_OP_DROPOUT, "dropout p=0.5 [3,5] training", 1, {IN2(3, 5, DDX_GEN_NORMAL, true)}, apply_dropout,
     .p = DROP(0.5f), .training = true},
    {DDX_OP_DROPOUT, "dropout p=0.5 [1,1,1,5] training", 1, {IN4(1, 1, 1, 5, DDX_GEN_NORMAL, true)}, apply_dropout,
     .p = DROP(0.5f), .training = true},
    {DDX_OP_DROPOUT, "dropout p=0.1 U-Net [2,16,16,256] training", 1, {IN4(2, 16, 16, 256, DDX_GEN_NORMAL, false)},
     apply_dropout, .p = DROP(0.1f), .training = true, .no_grad = true},

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

ddx_case_list ddx_cases_misc(void) {
    return (ddx_case_list){misc_cases, sizeof misc_cases / sizeof misc_cases[0]};
}
