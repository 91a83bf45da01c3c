// Perf-only cases for test_ops --perf: the DDPM CIFAR-10 U-Net's shapes (models/unet_ddpm.c)
// at the batch each backend trains with, batch 4 on the CPU and 128 on CUDA. Too big for the
// CPU reference and finite differences, so the correctness runs skip them; every other case
// of the tables is timed too. Also the FLOP counts that the flops field of a case points to.
#include "op_cases.h"

#include "runtime/philox.h"

// ---- FLOP counts ----------------------------------------------------------------------------
// Only the GEMM work: multiply-adds count two, the bias, normalisation and softmax are left out.

double ddx_case_flops_conv2d(const ddx_op_case *tc, bool backward) {
    const int64_t *x = tc->in[0].shape, *w = tc->in[1].shape;   // [N,H,W,Ci], [Co,KH,KW,Ci]
    const ddx_conv2d_params *p = &tc->p.conv2d;
    const int64_t Ho = (x[1] + p->pad_top + p->pad_bottom - w[1]) / p->stride + 1;
    const int64_t Wo = (x[2] + p->pad_left + p->pad_right - w[2]) / p->stride + 1;
    const double fwd = 2.0 * (double)x[0] * (double)Ho * (double)Wo * (double)w[0] * (double)w[1] * (double)w[2] * (double)x[3];
    // Backward: one GEMM of the forward's size per input with a gradient (dx, dw).
    return backward ? fwd * (tc->in[0].grad + tc->in[1].grad) : fwd;
}

double ddx_case_flops_linear(const ddx_op_case *tc, bool backward) {
    const ddx_case_input *x = &tc->in[0];
    double rows = 1;
    for (int d = 0; d + 1 < x->ndim; d++) rows *= (double)x->shape[d];
    const double K = (double)x->shape[x->ndim - 1], O = (double)tc->in[1].shape[0];
    const double fwd = 2.0 * rows * K * O;
    return backward ? fwd * (tc->in[0].grad + tc->in[1].grad) : fwd;
}

double ddx_case_flops_attention(const ddx_op_case *tc, bool backward) {
    const int64_t *q = tc->in[0].shape;   // [N, L, C], all heads together
    const double fwd = 4.0 * (double)q[0] * (double)q[1] * (double)q[1] * (double)q[2];   // QK^T and PV
    // Backward: S = QK^T recomputed, dV, dP, dQ, dK: five GEMMs of the forward's two.
    return backward ? 2.5 * fwd : fwd;
}

// ---- apply functions ------------------------------------------------------------------------
static ddx_tensor *ap_conv2d(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_conv2d(c, in[0], in[1], in[2], tc->p.conv2d);
}
static ddx_tensor *ap_linear(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_linear(c, in[0], in[1], in[2]);
}
static ddx_tensor *ap_group_norm(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_group_norm(c, in[0], in[1], in[2], tc->p.group_norm.groups, tc->p.group_norm.eps, tc->p.group_norm.fuse_silu);
}
static ddx_tensor *ap_attention(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_attention(c, in[0], in[1], in[2], tc->p.attention.heads, tc->p.attention.scale);
}
static ddx_tensor *ap_silu(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_silu(c, in[0]);
}
static ddx_tensor *ap_add(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_add(c, in[0], in[1]);
}
static ddx_tensor *ap_mul(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_mul(c, in[0], in[1]);
}
static ddx_tensor *ap_scale(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_scale(c, in[0], tc->p.scale.alpha, tc->p.scale.beta);
}
static ddx_tensor *ap_copy(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_copy(c, in[0]);
}
static ddx_tensor *ap_cast(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) { return ddx_cast(c, in[0], tc->p.cast.to); }
static ddx_tensor *ap_concat(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_concat(c, in[0], in[1]);
}
static ddx_tensor *ap_upsample(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_upsample2x(c, in[0], tc->p.upsample2x.mode);
}
static ddx_tensor *ap_pool(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) { return ddx_pool2x(c, in[0], tc->p.pool2x.mode); }
static ddx_tensor *ap_embedding(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_embedding(c, in[0], in[1]);
}
static ddx_tensor *ap_timestep(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_timestep_emb(c, in[0], tc->p.timestep_emb);
}
static ddx_tensor *ap_dropout(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) { return ddx_dropout(c, in[0], tc->p.dropout.p); }
static ddx_tensor *ap_mse(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_mse_loss(c, in[0], in[1]);
}
static ddx_tensor *ap_mean(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_mean(c, in[0]);
}
static ddx_tensor *ap_q_sample(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_q_sample(c, in[0], in[1], tc->p.q_sample);
}
static ddx_tensor *ap_sampler_step_ms(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_sampler_step_ms(c, in[0], in[1], tc->n_inputs >= 3 ? in[2] : NULL, tc->n_inputs >= 4 ? in[3] : NULL,
                               &tc->p.sampler_step_ms);
}
static ddx_tensor *ap_sampler_step(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_sampler_step(c, in[0], in[1], &tc->p.sampler_step);
}

// ---- shapes ---------------------------------------------------------------------------------
#define CPU DDX_CASE_PERF_CPU
#define GPU DDX_CASE_PERF_CUDA
#define F(nd, dt, g, gr, ...) {.ndim = nd, .shape = {__VA_ARGS__}, .dtype = dt, .gen = g, .grad = gr}
#define X4(dt, g, a, b, c_, d) F(4, dt, DDX_GEN_NORMAL, g, a, b, c_, d)
// n indices in [0, v).
#define IDX(n, v) {.ndim = 1, .shape = {n}, .dtype = DDX_I32, .gen = DDX_GEN_INDEX, .gen_arg = v}

// conv2d: x [N,H,W,Ci] (grad g), w [Co,KH,KW,Ci], bias [Co]; stride s, pads (top, bottom, left, right).
#define CONV(be, dt, tf, desc_, N, H, W, Ci, Co, K, s, pt, pb, pl, pr, g)                                        \
    {.op = DDX_OP_CONV2D, .desc = desc_, .n_inputs = 3,                                                         \
     .in = {X4(dt, g, N, H, W, Ci), F(4, dt, DDX_GEN_SMALL, true, Co, K, K, Ci), F(1, dt, DDX_GEN_SMALL, true, Co)}, \
     .apply = ap_conv2d,                                                                                        \
     .p = {.conv2d = {.stride = s, .pad_top = pt, .pad_bottom = pb, .pad_left = pl, .pad_right = pr}},          \
     .tf32 = tf, .bf16_ref_f32 = true, .perf_only = be, .flops = ddx_case_flops_conv2d}

// The U-Net's convs on CUDA at batch 128, each in bf16, TF32 and f32.
#define CONV_GPU(desc_, N, H, W, Ci, Co, K, s, pt, pb, pl, pr)                                                    \
    CONV(GPU, DDX_BF16, false, "bf16 " desc_, N, H, W, Ci, Co, K, s, pt, pb, pl, pr, true),                      \
    CONV(GPU, DDX_F32, true, "tf32 " desc_, N, H, W, Ci, Co, K, s, pt, pb, pl, pr, true),                        \
    CONV(GPU, DDX_F32, false, "f32 " desc_, N, H, W, Ci, Co, K, s, pt, pb, pl, pr, true)

#define GN(be, dt, desc_, N, H, W, C)                                                                             \
    {.op = DDX_OP_GROUP_NORM, .desc = desc_, .n_inputs = 3,                                                      \
     .in = {X4(dt, true, N, H, W, C), F(1, DDX_F32, DDX_GEN_POSITIVE, true, C), F(1, DDX_F32, DDX_GEN_NORMAL, true, C)}, \
     .apply = ap_group_norm, .p.group_norm = {32, 1e-5f, true}, .bf16_ref_f32 = true, .perf_only = be}

#define ATT(be, dt, desc_, N, L, C)                                                                               \
    {.op = DDX_OP_ATTENTION, .desc = desc_, .n_inputs = 3,                                                       \
     .in = {F(3, dt, DDX_GEN_NORMAL, true, N, L, C), F(3, dt, DDX_GEN_NORMAL, true, N, L, C),                    \
            F(3, dt, DDX_GEN_NORMAL, true, N, L, C)},                                                            \
     .apply = ap_attention, .p.attention = {1, 0.0f}, .bf16_ref_f32 = true, .perf_only = be,                     \
     .flops = ddx_case_flops_attention}

#define LIN(be, desc_, ...)                                                                                       \
    {.op = DDX_OP_LINEAR, .desc = desc_, .n_inputs = 3, .in = {__VA_ARGS__}, .apply = ap_linear,               \
     .bf16_ref_f32 = true, .perf_only = be, .flops = ddx_case_flops_linear}

// One input [N,H,W,C] with a gradient.
#define UNARY(be, op_, ap, dt, desc_, N, H, W, C, ...)                                                            \
    {.op = op_, .desc = desc_, .n_inputs = 1, .in = {X4(dt, true, N, H, W, C)}, .apply = ap,                     \
     .bf16_ref_f32 = true, .perf_only = be, __VA_ARGS__}

#define BINARY(be, op_, ap, dt, desc_, a, b)                                                                      \
    {.op = op_, .desc = desc_, .n_inputs = 2, .in = {a, b}, .apply = ap, .bf16_ref_f32 = true, .perf_only = be}

#define TEMB128 {.timestep_emb = {.dim = 128, .freq_shift = 1.0f, .flip_sin_to_cos = false, .max_period = 10000.0f}}
#define QKEY {.q_sample = {.seed = 42, .stream = DDX_RNG_STREAM_Q_SAMPLE, .step = 17, .offset = 0}}
// Mid-schedule coefficients of DDPM (clipped x0, posterior noise) and DDIM (eta 0).
#define STEP_DDPM                                                                                                 \
    {.sampler_step = {.a = 1.02f, .b = -0.2f, .f = 0.1f, .g = 0.98f, .c = 0.05f, .d = 0.94f, .e = 0.0f,           \
                      .sigma = 0.03f, .clip = true, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 5}}}
#define STEP_DDIM                                                                                                 \
    {.sampler_step = {.a = 1.02f, .b = -0.2f, .f = 0.1f, .g = 0.98f, .c = 0.9f, .d = 0.0f, .e = 0.43f,            \
                      .sigma = 0.0f, .clip = true, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 6}}}

// Multistep updates: two history tensors, no noise (dpmpp3m, Heun's second stage); noise and
// no history (Euler ancestral).
#define STEP_MS3 {.sampler_step_ms = {.a = 1.02f, .b = -0.2f, .cx = 0.6f, .cd = 0.5f, .c1 = -0.2f, .c2 = 0.1f}}
#define STEP_EA                                                                                                   \
    {.sampler_step_ms = {.a = 1.02f, .b = -0.2f, .cx = 0.6f, .cd = 0.5f, .sigma = 0.3f,                            \
                         .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 5}}}

#define DIFFUSION(shape_, N, H, W, C)                                                                            \
    {.op = DDX_OP_Q_SAMPLE, .desc = "q_sample " shape_, .n_inputs = 2,                                           \
     .in = {F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C), F(2, DDX_F32, DDX_GEN_POSITIVE, false, N, 2)},     \
     .apply = ap_q_sample, .p = QKEY, .no_grad = true, .perf_only = GPU},                                        \
    {.op = DDX_OP_SAMPLER_STEP, .desc = "sampler_step DDPM " shape_, .n_inputs = 2,                               \
     .in = {F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C), F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C)}, \
     .apply = ap_sampler_step, .p = STEP_DDPM, .no_grad = true, .perf_only = GPU},                               \
    {.op = DDX_OP_SAMPLER_STEP, .desc = "sampler_step DDIM " shape_, .n_inputs = 2,                               \
     .in = {F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C), F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C)}, \
     .apply = ap_sampler_step, .p = STEP_DDIM, .no_grad = true, .perf_only = GPU},                               \
    {.op = DDX_OP_SAMPLER_STEP_MS, .desc = "sampler_step_ms dpmpp3m/heun " shape_, .n_inputs = 4,                 \
     .in = {F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C), F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C),  \
            F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C), F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C)}, \
     .apply = ap_sampler_step_ms, .p = STEP_MS3, .no_grad = true, .perf_only = GPU},                             \
    {.op = DDX_OP_SAMPLER_STEP_MS, .desc = "sampler_step_ms euler_a " shape_, .n_inputs = 2,                      \
     .in = {F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C), F(4, DDX_F32, DDX_GEN_UNIFORM, false, N, H, W, C)}, \
     .apply = ap_sampler_step_ms, .p = STEP_EA, .no_grad = true, .perf_only = GPU}

static const ddx_op_case perf_cases[] = {
    // ---- CPU, batch 4 -----------------------------------------------------------------------
    CONV(CPU, DDX_F32, false, "U-Net 3x3 128->128 [4,32,32,128] s1 p1", 4, 32, 32, 128, 128, 3, 1, 1, 1, 1, 1, true),
    CONV(CPU, DDX_F32, false, "U-Net 3x3 256->256 [4,8,8,256] s1 p1", 4, 8, 8, 256, 256, 3, 1, 1, 1, 1, 1, true),
    CONV(CPU, DDX_F32, false, "U-Net downsample 3x3 s2 (0,1,0,1) [4,32,32,128]", 4, 32, 32, 128, 128, 3, 2, 0, 1, 0, 1, true),
    CONV(CPU, DDX_F32, false, "U-Net skip 1x1 256->128 [4,16,16,256]", 4, 16, 16, 256, 128, 1, 1, 0, 0, 0, 0, true),
    CONV(CPU, DDX_F32, false, "U-Net input 3x3 3->128 [4,32,32,3]", 4, 32, 32, 3, 128, 3, 1, 1, 1, 1, 1, false),
    LIN(CPU, "attention proj [4,256,256] -> 256", F(3, DDX_F32, DDX_GEN_NORMAL, true, 4, 256, 256),
        F(2, DDX_F32, DDX_GEN_SMALL, true, 256, 256), F(1, DDX_F32, DDX_GEN_SMALL, true, 256)),
    LIN(CPU, "time MLP [64,128] -> 512", F(2, DDX_F32, DDX_GEN_NORMAL, true, 64, 128),
        F(2, DDX_F32, DDX_GEN_SMALL, true, 512, 128), F(1, DDX_F32, DDX_GEN_SMALL, true, 512)),
    GN(CPU, DDX_F32, "gn+silu [4,32,32,128] G=32", 4, 32, 32, 128),
    ATT(CPU, DDX_F32, "attn [4,256,256] 1 head (16x16 tokens)", 4, 256, 256),
    UNARY(CPU, DDX_OP_SILU, ap_silu, DDX_F32, "silu [4,32,32,128]", 4, 32, 32, 128),
    BINARY(CPU, DDX_OP_ADD, ap_add, DDX_F32, "add [4,32,32,128] + [4,1,1,128]", X4(DDX_F32, true, 4, 32, 32, 128),
           X4(DDX_F32, true, 4, 1, 1, 128)),
    BINARY(CPU, DDX_OP_MUL, ap_mul, DDX_F32, "mul [4,32,32,128] * [4,32,32,128]", X4(DDX_F32, true, 4, 32, 32, 128),
           X4(DDX_F32, true, 4, 32, 32, 128)),
    UNARY(CPU, DDX_OP_SCALE, ap_scale, DDX_F32, "scale [4,32,32,128] * 0.5 + 0.1", 4, 32, 32, 128, .p.scale = {0.5f, 0.1f}),
    BINARY(CPU, DDX_OP_CONCAT, ap_concat, DDX_F32, "concat [4,16,16,256] ++ [4,16,16,256]",
           X4(DDX_F32, true, 4, 16, 16, 256), X4(DDX_F32, true, 4, 16, 16, 256)),
    UNARY(CPU, DDX_OP_UPSAMPLE2X, ap_upsample, DDX_F32, "upsample nearest [4,16,16,128]", 4, 16, 16, 128,
          .p.upsample2x = {DDX_UPSAMPLE_NEAREST}),
    UNARY(CPU, DDX_OP_POOL2X, ap_pool, DDX_F32, "pool avg [4,32,32,128]", 4, 32, 32, 128, .p.pool2x = {DDX_POOL_AVG}),
    BINARY(CPU, DDX_OP_EMBEDDING, ap_embedding, DDX_F32, "embedding idx [64] table [10,128]",
           IDX(64, 10), F(2, DDX_F32, DDX_GEN_NORMAL, true, 10, 128)),
    {.op = DDX_OP_TIMESTEP_EMB, .desc = "timestep_emb t [64] -> [64,128]", .n_inputs = 1,
     .in = {{.ndim = 1, .shape = {64}, .gen = DDX_GEN_TIMESTEP, .gen_arg = 1000}}, .apply = ap_timestep, .p = TEMB128,
     .perf_only = CPU},
    UNARY(CPU, DDX_OP_DROPOUT, ap_dropout, DDX_F32, "dropout p=0.1 [4,32,32,128] (training)", 4, 32, 32, 128,
          .p.dropout = {0.1f}, .training = true),
    BINARY(CPU, DDX_OP_MSE_LOSS, ap_mse, DDX_F32, "mse_loss [4,32,32,3]", X4(DDX_F32, true, 4, 32, 32, 3),
           X4(DDX_F32, false, 4, 32, 32, 3)),
    UNARY(CPU, DDX_OP_MEAN, ap_mean, DDX_F32, "mean [4,32,32,128]", 4, 32, 32, 128),

    // ---- CUDA, batch 128 --------------------------------------------------------------------
    CONV_GPU("U-Net 3x3 [128,32,32,128]->128", 128, 32, 32, 128, 128, 3, 1, 1, 1, 1, 1),
    CONV_GPU("U-Net 3x3 [128,16,16,256]->256", 128, 16, 16, 256, 256, 3, 1, 1, 1, 1, 1),
    CONV_GPU("U-Net 3x3 [128,8,8,256]->256", 128, 8, 8, 256, 256, 3, 1, 1, 1, 1, 1),
    CONV_GPU("U-Net 3x3 [128,4,4,256]->256", 128, 4, 4, 256, 256, 3, 1, 1, 1, 1, 1),
    CONV_GPU("U-Net downsample 3x3 s2 (0,1,0,1) [128,32,32,128]", 128, 32, 32, 128, 128, 3, 2, 0, 1, 0, 1),
    CONV_GPU("U-Net skip 1x1 [128,16,16,128]->256", 128, 16, 16, 128, 256, 1, 1, 0, 0, 0, 0),
    CONV(GPU, DDX_BF16, false, "bf16 U-Net input 3x3 [128,32,32,3]->128", 128, 32, 32, 3, 128, 3, 1, 1, 1, 1, 1, false),
    CONV(GPU, DDX_BF16, false, "bf16 U-Net output 3x3 [128,32,32,128]->3", 128, 32, 32, 128, 3, 3, 1, 1, 1, 1, 1, true),
    GN(GPU, DDX_F32, "gn+silu [128,32,32,128] G=32", 128, 32, 32, 128),
    GN(GPU, DDX_BF16, "gn+silu bf16 [128,32,32,128] G=32", 128, 32, 32, 128),
    GN(GPU, DDX_F32, "gn+silu [128,16,16,256] G=32", 128, 16, 16, 256),
    GN(GPU, DDX_BF16, "gn+silu bf16 [128,16,16,256] G=32", 128, 16, 16, 256),
    ATT(GPU, DDX_BF16, "attn bf16 [128,256,256] 1 head d=256 (16x16 tokens)", 128, 256, 256),
    ATT(GPU, DDX_F32, "attn f32 [128,256,256] 1 head d=256", 128, 256, 256),
    ATT(GPU, DDX_BF16, "attn bf16 [32,1024,128] 1 head d=128 (32x32 tokens)", 32, 1024, 128),
    ATT(GPU, DDX_F32, "attn f32 [32,1024,128] 1 head d=128", 32, 1024, 128),
    LIN(GPU, "bf16 attention proj [128,256,256] -> 256", F(3, DDX_BF16, DDX_GEN_NORMAL, true, 128, 256, 256),
        F(2, DDX_BF16, DDX_GEN_SMALL, true, 256, 256), F(1, DDX_BF16, DDX_GEN_SMALL, true, 256)),
    LIN(GPU, "f32 attention proj [128,256,256] -> 256", F(3, DDX_F32, DDX_GEN_NORMAL, true, 128, 256, 256),
        F(2, DDX_F32, DDX_GEN_SMALL, true, 256, 256), F(1, DDX_F32, DDX_GEN_SMALL, true, 256)),
    LIN(GPU, "time MLP [128,128] -> 512", F(2, DDX_F32, DDX_GEN_NORMAL, true, 128, 128),
        F(2, DDX_F32, DDX_GEN_SMALL, true, 512, 128), F(1, DDX_F32, DDX_GEN_SMALL, true, 512)),
    UNARY(GPU, DDX_OP_SILU, ap_silu, DDX_F32, "silu [128,32,32,128]", 128, 32, 32, 128),
    UNARY(GPU, DDX_OP_SILU, ap_silu, DDX_BF16, "silu bf16 [128,32,32,128]", 128, 32, 32, 128),
    BINARY(GPU, DDX_OP_ADD, ap_add, DDX_F32, "add [128,32,32,128] + [128,32,32,128]",
           X4(DDX_F32, true, 128, 32, 32, 128), X4(DDX_F32, true, 128, 32, 32, 128)),
    BINARY(GPU, DDX_OP_ADD, ap_add, DDX_F32, "add [128,32,32,128] + [128,1,1,128] (time emb)",
           X4(DDX_F32, true, 128, 32, 32, 128), X4(DDX_F32, true, 128, 1, 1, 128)),
    BINARY(GPU, DDX_OP_MUL, ap_mul, DDX_F32, "mul [128,32,32,128] * [128,32,32,128]", X4(DDX_F32, true, 128, 32, 32, 128),
           X4(DDX_F32, true, 128, 32, 32, 128)),
    UNARY(GPU, DDX_OP_SCALE, ap_scale, DDX_F32, "scale [128,32,32,128] * 0.7 + 0.1", 128, 32, 32, 128, .p.scale = {0.7f, 0.1f}),
    UNARY(GPU, DDX_OP_COPY, ap_copy, DDX_F32, "copy [128,32,32,128]", 128, 32, 32, 128),
    UNARY(GPU, DDX_OP_CAST, ap_cast, DDX_F32, "cast f32->bf16 [128,32,32,128]", 128, 32, 32, 128, .p.cast = {DDX_BF16}),
    BINARY(GPU, DDX_OP_CONCAT, ap_concat, DDX_F32, "concat [128,16,16,256] ++ [128,16,16,256]",
           X4(DDX_F32, true, 128, 16, 16, 256), X4(DDX_F32, true, 128, 16, 16, 256)),
    UNARY(GPU, DDX_OP_UPSAMPLE2X, ap_upsample, DDX_F32, "upsample nearest [128,16,16,256]", 128, 16, 16, 256,
          .p.upsample2x = {DDX_UPSAMPLE_NEAREST}),
    UNARY(GPU, DDX_OP_POOL2X, ap_pool, DDX_F32, "pool avg [128,32,32,128]", 128, 32, 32, 128, .p.pool2x = {DDX_POOL_AVG}),
    UNARY(GPU, DDX_OP_DROPOUT, ap_dropout, DDX_F32, "dropout p=0.1 [128,32,32,128] (training)", 128, 32, 32, 128,
          .p.dropout = {0.1f}, .training = true),
    BINARY(GPU, DDX_OP_MSE_LOSS, ap_mse, DDX_F32, "mse_loss [128,32,32,3]", X4(DDX_F32, true, 128, 32, 32, 3),
           X4(DDX_F32, false, 128, 32, 32, 3)),
    UNARY(GPU, DDX_OP_MEAN, ap_mean, DDX_F32, "mean [128,32,32,128]", 128, 32, 32, 128),
    // q_sample and the DDPM and DDIM sampler steps at a CIFAR-10 batch, a 64x64 batch and 64Mi
    // elements (far past L2; uniform inputs: quicker to draw on the host at this size).
    DIFFUSION("[128,32,32,3]", 128, 32, 32, 3),
    DIFFUSION("[256,64,64,3]", 256, 64, 64, 3),
    DIFFUSION("[4096,64,64,4] (64Mi)", 4096, 64, 64, 4),
};

ddx_case_list ddx_cases_perf(void) { return (ddx_case_list){perf_cases, sizeof perf_cases / sizeof perf_cases[0]}; }
