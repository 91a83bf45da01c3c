// conv2d cases for the op driver: small odd shapes with gradient checks on x, weight and
// bias, then real DDPM CIFAR-10 U-Net shapes forward-only.
#include "op_cases.h"

static ddx_tensor *apply_conv2d(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_conv2d(c, in[0], in[1], in[2], tc->p.conv2d);
}

// conv2d + residual (in[3], the output's shape): ddx_conv2d_add.
static ddx_tensor *apply_conv2d_add(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_conv2d_add(c, in[0], in[1], in[2], tc->p.conv2d, in[3]);
}

#define T4(a, b, c, d, g) {.ndim = 4, .shape = {a, b, c, d}, .dtype = DDX_F32, .gen = DDX_GEN_UNIFORM, .grad = g}
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

// bf16 storage (fp32 math). Channel counts that are multiples of 8 take the tensor-core
// kernels; the others (3-channel image convs, odd Co) keep the SIMT ones, and both are here.
#define T4B(a, b, c, d, g) {.ndim = 4, .shape = {a, b, c, d}, .dtype = DDX_BF16, .gen = DDX_GEN_UNIFORM, .grad = g}
#define CONV_BF16(desc_, N, H, W, Ci, Co, KH, KW, s, pt, pb, pl, pr, with_bias, g)                    \
    {.op = DDX_OP_CONV2D, .desc = desc_, .n_inputs = 3,                                              \
     .in = {T4B(N, H, W, Ci, g), T4B(Co, KH, KW, Ci, g),                                             \
            {.ndim = (with_bias) ? 1 : 0, .shape = {Co, 1, 1, 1}, .dtype = DDX_BF16, .gen = DDX_GEN_UNIFORM, .grad = g}}, \
     .apply = apply_conv2d,                                                                          \
     .p = {.conv2d = {.stride = s, .pad_top = pt, .pad_bottom = pb, .pad_left = pl, .pad_right = pr}}, \
     .no_grad = !(g), .bf16_ref_f32 = true}

// conv2d with the residual add fused (s1, 'same' 3x3 or 1x1 so the output has x's pixels),
// in f32 (SIMT), bf16 (tensor cores when channels % 8, else SIMT) and TF32; gradients of all
// four inputs.
#define CONV_RES(desc_, N, H, W, Ci, Co, K, P, dt, extra...)                                          \
    {.op = DDX_OP_CONV2D, .desc = desc_, .n_inputs = 4,                                              \
     .in = {{.ndim = 4, .shape = {N, H, W, Ci}, .dtype = dt, .gen = DDX_GEN_UNIFORM, .grad = true},    \
            {.ndim = 4, .shape = {Co, K, K, Ci}, .dtype = dt, .gen = DDX_GEN_UNIFORM, .grad = true},   \
            {.ndim = 1, .shape = {Co, 1, 1, 1}, .dtype = dt, .gen = DDX_GEN_UNIFORM, .grad = true},    \
            {.ndim = 4, .shape = {N, H, W, Co}, .dtype = dt, .gen = DDX_GEN_UNIFORM, .grad = true}},   \
     .apply = apply_conv2d_add,                                                                      \
     .p = {.conv2d = {.stride = 1, .pad_top = P, .pad_bottom = P, .pad_left = P, .pad_right = P}}, extra}

// f32 tensors with TF32 allowed (ctx->tf32): channel counts that are multiples of 4 take the
// TF32 tensor-core kernels (operands rounded to 10 mantissa bits, fp32 sums), so the CUDA
// tolerance is 2e-3 relative to the largest |ref| instead of fp32's 1e-5.
#define CONV_TF32(desc_, N, H, W, Ci, Co, KH, KW, s, pt, pb, pl, pr, with_bias, g)                    \
    {.op = DDX_OP_CONV2D, .desc = desc_, .n_inputs = 3,                                              \
     .in = {T4(N, H, W, Ci, g), T4(Co, KH, KW, Ci, g),                                               \
            {.ndim = (with_bias) ? 1 : 0, .shape = {Co, 1, 1, 1}, .gen = DDX_GEN_UNIFORM, .grad = g}},   \
     .apply = apply_conv2d,                                                                          \
     .p = {.conv2d = {.stride = s, .pad_top = pt, .pad_bottom = pb, .pad_left = pl, .pad_right = pr}}, \
     .no_grad = !(g), .tf32 = true, .fwd_rtol = 2e-3, .fwd_atol = 2e-3}

static const ddx_op_case conv_cases[] = {
    CONV_RES("conv2d+residual 3x3 [2,5,6,3] -> 5 (SIMT)", 2, 5, 6, 3, 5, 3, 1, DDX_F32, .no_grad = false),
    CONV_RES("conv2d+residual 1x1 [2,4,3,5] -> 3 (SIMT)", 2, 4, 3, 5, 3, 1, 0, DDX_F32, .no_grad = false),
    CONV_RES("conv2d+residual bf16 3x3 [2,9,7,16] -> 24 (tensor cores, ragged tiles)", 2, 9, 7, 16, 24, 3, 1, DDX_BF16,
             .bf16_ref_f32 = true),
    CONV_RES("conv2d+residual bf16 3x3 [2,6,6,3] -> 5 (SIMT)", 2, 6, 6, 3, 5, 3, 1, DDX_BF16, .bf16_ref_f32 = true),
    CONV_RES("conv2d+residual tf32 3x3 [2,9,7,8] -> 12 (tensor cores)", 2, 9, 7, 8, 12, 3, 1, DDX_F32, .tf32 = true,
             .fwd_rtol = 2e-3, .fwd_atol = 2e-3),
    CONV_TF32("conv2d tf32 3x3 s1 p1 [2,9,7,8] -> 12, bias (ragged tiles)", 2, 9, 7, 8, 12, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_TF32("conv2d tf32 3x3 s2 pad (0,1,0,1) [2,8,8,16] -> 8, no bias", 2, 8, 8, 16, 8, 3, 3, 2, 0, 1, 0, 1, false, true),
    CONV_TF32("conv2d tf32 1x1 [3,5,5,12] -> 20, bias", 3, 5, 5, 12, 20, 1, 1, 1, 0, 0, 0, 0, true, true),
    CONV_TF32("conv2d tf32 3x3 [8,32,32,16] -> 16, bias (split-K weight gradient)", 8, 32, 32, 16, 16, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_TF32("conv2d tf32 3x3 [2,8,8,128] -> 132, bias (two N tiles)", 2, 8, 8, 128, 132, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_TF32("conv2d tf32 3x3 [34,32,32,8] -> 8, bias (128-row tiles: 272 of them)", 34, 32, 32, 8, 8, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_TF32("conv2d tf32 U-Net 3x3 128->128 32x32 batch 2", 2, 32, 32, 128, 128, 3, 3, 1, 1, 1, 1, 1, true, false),

    CONV_BF16("conv2d bf16 3x3 s1 p1 [2,9,7,16] -> 24, bias (ragged M, N and K tiles)", 2, 9, 7, 16, 24, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_BF16("conv2d bf16 3x3 s2 pad (0,1,0,1) [2,8,8,16] -> 8, no bias", 2, 8, 8, 16, 8, 3, 3, 2, 0, 1, 0, 1, false, true),
    CONV_BF16("conv2d bf16 3x3 s2 p1 odd H/W [1,7,9,8] -> 16, bias", 1, 7, 9, 8, 16, 3, 3, 2, 1, 1, 1, 1, true, true),
    CONV_BF16("conv2d bf16 1x1 [3,5,5,32] -> 40, bias", 3, 5, 5, 32, 40, 1, 1, 1, 0, 0, 0, 0, true, true),
    CONV_BF16("conv2d bf16 3x3 [8,32,32,16] -> 16, bias (split-K weight gradient)", 8, 32, 32, 16, 16, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_BF16("conv2d bf16 3x3 [2,8,8,128] -> 136, bias (two N tiles)", 2, 8, 8, 128, 136, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_BF16("conv2d bf16 output 3x3 [2,6,6,16] -> 3, bias (odd Co: SIMT backward)", 2, 6, 6, 16, 3, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_BF16("conv2d bf16 input 3x3 [2,6,6,3] -> 16, bias (Ci=3: SIMT)", 2, 6, 6, 3, 16, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_BF16("conv2d bf16 3x3 [34,32,32,8] -> 8, bias (128-row tiles: 272 of them)", 34, 32, 32, 8, 8, 3, 3, 1, 1, 1, 1, 1, true, true),
    CONV_BF16("conv2d bf16 3x3 s2 (0,1,0,1) [136,16,16,16] -> 16 (128-row tiles, stride-2 dgrad)", 136, 16, 16, 16, 16, 3, 3, 2, 0, 1, 0, 1, true, true),
    CONV_BF16("conv2d bf16 U-Net 3x3 128->128 32x32 batch 2", 2, 32, 32, 128, 128, 3, 3, 1, 1, 1, 1, 1, true, false),
    CONV_BF16("conv2d bf16 U-Net downsample s2 (0,1,0,1) 128 16x16 batch 2", 2, 16, 16, 128, 128, 3, 3, 2, 0, 1, 0, 1, true, false),

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

    // Inception's kernels (models/inception.c): 1x7 / 7x1 (pad 0,3 / 3,0), 1x3 / 3x1, 5x5 pad 2,
    // 3x3 stride 2 unpadded, 1x1; f32 with gradients, then the tensor-core paths (channels % 8)
    // and real Inception shapes forward only.
    CONV("conv2d 1x7 pad (0,0,3,3) [2,5,9,3] -> 5, bias", 2, 5, 9, 3, 5, 1, 7, 1, 0, 0, 3, 3, true),
    CONV("conv2d 7x1 pad (3,3,0,0) [2,9,5,3] -> 4, bias", 2, 9, 5, 3, 4, 7, 1, 1, 3, 3, 0, 0, true),
    CONV("conv2d 1x7 pad (0,0,3,3) on W=4 < 7 [1,3,4,2] -> 3, no bias", 1, 3, 4, 2, 3, 1, 7, 1, 0, 0, 3, 3, false),
    CONV("conv2d 1x3 pad (0,0,1,1) [2,4,5,3] -> 5, bias", 2, 4, 5, 3, 5, 1, 3, 1, 0, 0, 1, 1, true),
    CONV("conv2d 5x5 p2 [2,6,7,3] -> 4, bias", 2, 6, 7, 3, 4, 5, 5, 1, 2, 2, 2, 2, true),
    CONV("conv2d 3x3 s2 p0 [2,9,8,3] -> 5, bias", 2, 9, 8, 3, 5, 3, 3, 2, 0, 0, 0, 0, true),
    CONV_TF32("conv2d tf32 1x7 pad (0,0,3,3) [2,7,9,8] -> 12, bias", 2, 7, 9, 8, 12, 1, 7, 1, 0, 0, 3, 3, true, true),
    CONV_TF32("conv2d tf32 7x1 pad (3,3,0,0) [2,9,7,8] -> 12, bias", 2, 9, 7, 8, 12, 7, 1, 1, 3, 3, 0, 0, true, true),
    CONV_TF32("conv2d tf32 1x3 pad (0,0,1,1) [2,5,6,16] -> 8, bias", 2, 5, 6, 16, 8, 1, 3, 1, 0, 0, 1, 1, true, true),
    CONV_TF32("conv2d tf32 3x1 pad (1,1,0,0) [2,6,5,16] -> 8, bias", 2, 6, 5, 16, 8, 3, 1, 1, 1, 1, 0, 0, true, true),
    CONV_TF32("conv2d tf32 5x5 p2 [2,7,6,8] -> 12, bias", 2, 7, 6, 8, 12, 5, 5, 1, 2, 2, 2, 2, true, true),
    CONV_TF32("conv2d tf32 3x3 s2 p0 [2,9,9,8] -> 16, bias", 2, 9, 9, 8, 16, 3, 3, 2, 0, 0, 0, 0, true, true),
    CONV_TF32("conv2d tf32 Inception 1x7 160->160 17x17 batch 2", 2, 17, 17, 160, 160, 1, 7, 1, 0, 0, 3, 3, true, false),
    CONV_TF32("conv2d tf32 Inception 3x3 s2 288->384 35x35 batch 2", 2, 35, 35, 288, 384, 3, 3, 2, 0, 0, 0, 0, true, false),
    CONV_BF16("conv2d bf16 1x7 pad (0,0,3,3) [2,7,9,8] -> 16, bias", 2, 7, 9, 8, 16, 1, 7, 1, 0, 0, 3, 3, true, true),
    CONV_BF16("conv2d bf16 7x1 pad (3,3,0,0) [2,9,7,8] -> 16, bias", 2, 9, 7, 8, 16, 7, 1, 1, 3, 3, 0, 0, true, true),
    CONV_BF16("conv2d bf16 1x3 pad (0,0,1,1) [2,5,6,16] -> 8, bias", 2, 5, 6, 16, 8, 1, 3, 1, 0, 0, 1, 1, true, true),
    CONV_BF16("conv2d bf16 3x1 pad (1,1,0,0) [2,6,5,16] -> 8, bias", 2, 6, 5, 16, 8, 3, 1, 1, 1, 1, 0, 0, true, true),
    CONV_BF16("conv2d bf16 5x5 p2 [2,7,6,8] -> 16, bias", 2, 7, 6, 8, 16, 5, 5, 1, 2, 2, 2, 2, true, true),
    CONV_BF16("conv2d bf16 3x3 s2 p0 [2,9,9,8] -> 16, bias", 2, 9, 9, 8, 16, 3, 3, 2, 0, 0, 0, 0, true, true),
    CONV_BF16("conv2d bf16 Inception 7x1 192->192 17x17 batch 2", 2, 17, 17, 192, 192, 7, 1, 1, 3, 3, 0, 0, true, false),
    CONV_BF16("conv2d bf16 Inception 3x3 s2 3->32 299x299 (SIMT) batch 1", 1, 299, 299, 3, 32, 3, 3, 2, 0, 0, 0, 0, true, false),
    CONV_FWD("conv2d Inception 1x7 128->128 17x17 batch 2", 2, 17, 17, 128, 128, 1, 7, 1, 0, 0, 3, 3),
    CONV_FWD("conv2d Inception 7x1 160->192 17x17 batch 2", 2, 17, 17, 160, 192, 7, 1, 1, 3, 3, 0, 0),
    CONV_FWD("conv2d Inception 5x5 48->64 35x35 batch 2", 2, 35, 35, 48, 64, 5, 5, 1, 2, 2, 2, 2),
    CONV_FWD("conv2d Inception 1x3 384->384 8x8 batch 2", 2, 8, 8, 384, 384, 1, 3, 1, 0, 0, 1, 1),
    CONV_FWD("conv2d Inception 3x3 s2 3->32 299x299 batch 1", 1, 299, 299, 3, 32, 3, 3, 2, 0, 0, 0, 0),
    CONV_FWD("conv2d Inception 1x1 2048->448 8x8 batch 2", 2, 8, 8, 2048, 448, 1, 1, 1, 0, 0, 0, 0),
};

ddx_case_list ddx_cases_conv(void) {
    return (ddx_case_list){conv_cases, sizeof conv_cases / sizeof conv_cases[0]};
}
