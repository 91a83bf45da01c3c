// Cases for fill, copy, cast, reshape, add, mul, scale, silu, relu, dropout and concat.
#include "op_cases.h"

#define SH(...) {__VA_ARGS__}
#define IN(nd, shp, g, gr) {.ndim = nd, .shape = shp, .gen = g, .grad = gr}
#define INT(nd, shp, dt, g, gr) {.ndim = nd, .shape = shp, .dtype = dt, .gen = g, .grad = gr}
// Input specs: F32 (default dtype) by shape, optionally with a gradient check.
#define IN4(a, b, c_, d, g, gr) {.ndim = 4, .shape = {a, b, c_, d}, .gen = (g), .grad = (gr)}
#define IN3(a, b, c_, g, gr) {.ndim = 3, .shape = {a, b, c_}, .gen = (g), .grad = (gr)}
#define IN2(a, b, g, gr) {.ndim = 2, .shape = {a, b}, .gen = (g), .grad = (gr)}


static ddx_tensor *ap_fill(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)in;
    // The output shape/dtype rides in the first (absent) input slot's description.
    const ddx_case_input *s = &tc->in[0];
    return ddx_fill(c, s->dtype, (int)s->gen_arg, s->shape, tc->p.fill.value);
}
static ddx_tensor *ap_copy(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) { (void)tc; return ddx_copy(c, in[0]); }
static ddx_tensor *ap_cast(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) { return ddx_cast(c, in[0], tc->p.cast.to); }
static ddx_tensor *ap_reshape(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    int64_t n = ddx_numel(in[0]);
    int64_t last = in[0]->shape[in[0]->ndim - 1];
    return ddx_reshape(c, in[0], 2, (int64_t[]){n / last, last});
}
// x used by two consumers, one of them through a reshape: exercises grad aliasing and accumulation.
static ddx_tensor *ap_reshape_shared(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    ddx_tensor *x = in[0];
    int64_t sh[3] = {x->shape[0], x->shape[1] * x->shape[2], x->shape[3]};
    ddx_tensor *a = ddx_reshape(c, x, 3, sh);
    ddx_tensor *b = ddx_reshape(c, ddx_scale(c, x, 2.0f, 0.5f), 3, sh);
    return ddx_add(c, ddx_mul(c, a, a), b);
}
static ddx_tensor *ap_add(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) { (void)tc; return ddx_add(c, in[0], in[1]); }
static ddx_tensor *ap_mul(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) { (void)tc; return ddx_mul(c, in[0], in[1]); }
static ddx_tensor *ap_scale(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_scale(c, in[0], tc->p.scale.alpha, tc->p.scale.beta);
}
static ddx_tensor *ap_silu(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) { (void)tc; return ddx_silu(c, in[0]); }
static ddx_tensor *ap_relu(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) { (void)tc; return ddx_relu(c, in[0]); }
static ddx_tensor *apply_concat(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_concat(c, in[0], in[1]);
}
static ddx_tensor *apply_dropout(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_dropout(c, in[0], tc->p.dropout.p);
}

#define DROP(prob) {.dropout = {.p = (prob)}}

static const ddx_op_case g_cases[] = {
    // fill: in[0] is absent (ndim 0 is what the driver reads); its shape/dtype/gen_arg(=ndim) describe the output.
    {.op = DDX_OP_FILL, .desc = "f32 [2,3,5,7] = 1.5", .n_inputs = 1, .in = {{.ndim = 0, .shape = SH(2, 3, 5, 7), .dtype = DDX_F32, .gen_arg = 4}}, .apply = ap_fill, .p.fill = {1.5f}},
    {.op = DDX_OP_FILL, .desc = "bf16 [1027] = -0.3", .n_inputs = 1, .in = {{.ndim = 0, .shape = SH(1027), .dtype = DDX_BF16, .gen_arg = 1}}, .apply = ap_fill, .p.fill = {-0.3f}},
    {.op = DDX_OP_FILL, .desc = "i32 [4,9] = 7", .n_inputs = 1, .in = {{.ndim = 0, .shape = SH(4, 9), .dtype = DDX_I32, .gen_arg = 2}}, .apply = ap_fill, .p.fill = {7.0f}},
    {.op = DDX_OP_COPY, .desc = "f32 [2,4,4,3]", .n_inputs = 1, .in = {IN(4, SH(2, 4, 4, 3), DDX_GEN_NORMAL, true)}, .apply = ap_copy},
    {.op = DDX_OP_COPY, .desc = "bf16 [1,1,1,1]", .n_inputs = 1, .in = {INT(4, SH(1, 1, 1, 1), DDX_BF16, DDX_GEN_NORMAL, false)}, .apply = ap_copy},
    {.op = DDX_OP_COPY, .desc = "f32 [2,32,32,128] real", .n_inputs = 1, .in = {IN(4, SH(2, 32, 32, 128), DDX_GEN_NORMAL, false)}, .apply = ap_copy, .no_grad = true},
    {.op = DDX_OP_CAST, .desc = "f32->bf16 [3,5,5,7]", .n_inputs = 1, .in = {IN(4, SH(3, 5, 5, 7), DDX_GEN_NORMAL, false)}, .apply = ap_cast, .p.cast = {DDX_BF16}},
    {.op = DDX_OP_CAST, .desc = "bf16->f32 [2,3,3,4]", .n_inputs = 1, .in = {INT(4, SH(2, 3, 3, 4), DDX_BF16, DDX_GEN_NORMAL, false)}, .apply = ap_cast, .p.cast = {DDX_F32}},
    {.op = DDX_OP_CAST, .desc = "f32->f32 [7] grad", .n_inputs = 1, .in = {IN(1, SH(7), DDX_GEN_NORMAL, true)}, .apply = ap_cast, .p.cast = {DDX_F32}},
    {.op = DDX_OP_RESHAPE, .desc = "[2,4,4,3] -> [32,3]", .n_inputs = 1, .in = {IN(4, SH(2, 4, 4, 3), DDX_GEN_NORMAL, true)}, .apply = ap_reshape},
    {.op = DDX_OP_RESHAPE, .desc = "shared input, two consumers", .n_inputs = 1, .in = {IN(4, SH(2, 3, 2, 5), DDX_GEN_NORMAL, true)}, .apply = ap_reshape_shared},
    {.op = DDX_OP_ADD, .desc = "same shape [2,4,4,8]", .n_inputs = 2, .in = {IN(4, SH(2, 4, 4, 8), DDX_GEN_NORMAL, true), IN(4, SH(2, 4, 4, 8), DDX_GEN_NORMAL, true)}, .apply = ap_add},
    {.op = DDX_OP_ADD, .desc = "[2,4,4,8] + [2,1,1,8] (time emb)", .n_inputs = 2, .in = {IN(4, SH(2, 4, 4, 8), DDX_GEN_NORMAL, true), IN(4, SH(2, 1, 1, 8), DDX_GEN_NORMAL, true)}, .apply = ap_add},
    {.op = DDX_OP_ADD, .desc = "[3,2,5,7] + [7] (bias)", .n_inputs = 2, .in = {IN(4, SH(3, 2, 5, 7), DDX_GEN_NORMAL, true), IN(1, SH(7), DDX_GEN_NORMAL, true)}, .apply = ap_add},
    {.op = DDX_OP_ADD, .desc = "[2,3,3,5] + [1,3,3,1]", .n_inputs = 2, .in = {IN(4, SH(2, 3, 3, 5), DDX_GEN_NORMAL, true), IN(4, SH(1, 3, 3, 1), DDX_GEN_NORMAL, true)}, .apply = ap_add},
    {.op = DDX_OP_ADD, .desc = "[1] + [1]", .n_inputs = 2, .in = {IN(1, SH(1), DDX_GEN_NORMAL, true), IN(1, SH(1), DDX_GEN_NORMAL, true)}, .apply = ap_add},
    {.op = DDX_OP_ADD, .desc = "real [2,32,32,128] + [2,1,1,128]", .n_inputs = 2, .in = {IN(4, SH(2, 32, 32, 128), DDX_GEN_NORMAL, false), IN(4, SH(2, 1, 1, 128), DDX_GEN_NORMAL, false)}, .apply = ap_add, .no_grad = true},
    {.op = DDX_OP_ADD, .desc = "bf16 [2,8,8,64] + [2,1,1,64]", .n_inputs = 2, .in = {INT(4, SH(2, 8, 8, 64), DDX_BF16, DDX_GEN_NORMAL, true), INT(4, SH(2, 1, 1, 64), DDX_BF16, DDX_GEN_NORMAL, true)}, .apply = ap_add, .bf16_ref_f32 = true},
    {.op = DDX_OP_MUL, .desc = "same shape [2,3,3,5]", .n_inputs = 2, .in = {IN(4, SH(2, 3, 3, 5), DDX_GEN_NORMAL, true), IN(4, SH(2, 3, 3, 5), DDX_GEN_NORMAL, true)}, .apply = ap_mul},
    {.op = DDX_OP_MUL, .desc = "[2,4,4,6] * [2,1,1,6]", .n_inputs = 2, .in = {IN(4, SH(2, 4, 4, 6), DDX_GEN_NORMAL, true), IN(4, SH(2, 1, 1, 6), DDX_GEN_NORMAL, true)}, .apply = ap_mul},
    // one scale per sample (the min-SNR loss weights): b broadcast over H, W and C
    {.op = DDX_OP_MUL, .desc = "[3,4,4,5] * [3,1,1,1]", .n_inputs = 2, .in = {IN(4, SH(3, 4, 4, 5), DDX_GEN_NORMAL, true), IN(4, SH(3, 1, 1, 1), DDX_GEN_NORMAL, true)}, .apply = ap_mul},
    {.op = DDX_OP_MUL, .desc = "[5,3] * [3]", .n_inputs = 2, .in = {IN(2, SH(5, 3), DDX_GEN_NORMAL, true), IN(1, SH(3), DDX_GEN_NORMAL, true)}, .apply = ap_mul},
    {.op = DDX_OP_MUL, .desc = "bf16 [3,5,5,33] * [3,5,5,33]", .n_inputs = 2, .in = {INT(4, SH(3, 5, 5, 33), DDX_BF16, DDX_GEN_NORMAL, true), INT(4, SH(3, 5, 5, 33), DDX_BF16, DDX_GEN_NORMAL, true)}, .apply = ap_mul, .bf16_ref_f32 = true},
    {.op = DDX_OP_SCALE, .desc = "[2,4,4,3] * 0.7 - 0.2", .n_inputs = 1, .in = {IN(4, SH(2, 4, 4, 3), DDX_GEN_NORMAL, true)}, .apply = ap_scale, .p.scale = {0.7f, -0.2f}},
    {.op = DDX_OP_SCALE, .desc = "[1] * -3", .n_inputs = 1, .in = {IN(1, SH(1), DDX_GEN_NORMAL, true)}, .apply = ap_scale, .p.scale = {-3.0f, 0.0f}},
    {.op = DDX_OP_SILU, .desc = "[2,5,5,7]", .n_inputs = 1, .in = {IN(4, SH(2, 5, 5, 7), DDX_GEN_NORMAL, true)}, .apply = ap_silu},
    {.op = DDX_OP_SILU, .desc = "[4097] wide range", .n_inputs = 1, .in = {IN(1, SH(4097), DDX_GEN_NORMAL, true)}, .apply = ap_silu},
    {.op = DDX_OP_SILU, .desc = "real [2,16,16,256]", .n_inputs = 1, .in = {IN(4, SH(2, 16, 16, 256), DDX_GEN_NORMAL, false)}, .apply = ap_silu, .no_grad = true},
    {.op = DDX_OP_SILU, .desc = "bf16 [2,9,9,32]", .n_inputs = 1, .in = {INT(4, SH(2, 9, 9, 32), DDX_BF16, DDX_GEN_NORMAL, true)}, .apply = ap_silu, .bf16_ref_f32 = true},
    {.op = DDX_OP_RELU, .desc = "[2,5,5,7]", .n_inputs = 1, .in = {IN(4, SH(2, 5, 5, 7), DDX_GEN_AWAY_FROM_ZERO, true)}, .apply = ap_relu},
    {.op = DDX_OP_RELU, .desc = "[1,1,1,1]", .n_inputs = 1, .in = {IN(4, SH(1, 1, 1, 1), DDX_GEN_AWAY_FROM_ZERO, true)}, .apply = ap_relu},

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

    // ---- dropout (training: the mask is a pure function of the key, so grads check) --------
    {DDX_OP_DROPOUT, "dropout p=0.1 [2,4,4,3] training", 1, {IN4(2, 4, 4, 3, DDX_GEN_NORMAL, true)}, apply_dropout,
     .p = DROP(0.1f), .training = true},
    {DDX_OP_DROPOUT, "dropout p=0.5 [3,5] training", 1, {IN2(3, 5, DDX_GEN_NORMAL, true)}, apply_dropout,
     .p = DROP(0.5f), .training = true},
    {DDX_OP_DROPOUT, "dropout p=0.5 [1,1,1,5] training", 1, {IN4(1, 1, 1, 5, DDX_GEN_NORMAL, true)}, apply_dropout,
     .p = DROP(0.5f), .training = true},
    {DDX_OP_DROPOUT, "dropout p=0.1 U-Net [2,16,16,256] training", 1, {IN4(2, 16, 16, 256, DDX_GEN_NORMAL, false)},
     apply_dropout, .p = DROP(0.1f), .training = true, .no_grad = true},
};

ddx_case_list ddx_cases_elementwise(void) { return (ddx_case_list){g_cases, sizeof g_cases / sizeof g_cases[0]}; }
