// Op-driver cases for group_norm. Independent checks of the CPU reference against direct
// double-precision formulas live in tests/test_norm_ref.c.
#include "op_cases.h"

static ddx_tensor *ddx_case_group_norm(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_group_norm(c, in[0], in[1], in[2], tc->p.group_norm.groups, tc->p.group_norm.eps,
                          tc->p.group_norm.fuse_silu);
}

// x ~ N(0,1); gamma around 1 as after init-and-some-training; beta N(0,1) so that the fused
// SiLU sees both signs.
#define GN4(N, H, W, C, G, EPS, SILU, DESC, ...)                                                 \
    {.op = DDX_OP_GROUP_NORM, .desc = DESC, .n_inputs = 3,                                       \
     .in = {{.ndim = 4, .shape = {N, H, W, C}, .gen = DDX_GEN_NORMAL, .grad = true},            \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_POSITIVE, .grad = true},                   \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_NORMAL, .grad = true}},                    \
     .apply = ddx_case_group_norm, .p.group_norm = {G, EPS, SILU}, __VA_ARGS__}

// bf16 x (gamma and beta f32, as the model keeps them), against the fp32 reference.
#define GN4B(N, H, W, C, G, EPS, SILU, DESC, ...)                                                \
    {.op = DDX_OP_GROUP_NORM, .desc = DESC, .n_inputs = 3,                                       \
     .in = {{.ndim = 4, .shape = {N, H, W, C}, .dtype = DDX_BF16, .gen = DDX_GEN_NORMAL, .grad = true}, \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_POSITIVE, .grad = true},                   \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_NORMAL, .grad = true}},                    \
     .apply = ddx_case_group_norm, .p.group_norm = {G, EPS, SILU}, .bf16_ref_f32 = true, __VA_ARGS__}

#define GN3(N, L, C, G, EPS, SILU, DESC, ...)                                                    \
    {.op = DDX_OP_GROUP_NORM, .desc = DESC, .n_inputs = 3,                                       \
     .in = {{.ndim = 3, .shape = {N, L, C}, .gen = DDX_GEN_NORMAL, .grad = true},               \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_POSITIVE, .grad = true},                   \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_NORMAL, .grad = true}},                    \
     .apply = ddx_case_group_norm, .p.group_norm = {G, EPS, SILU}, __VA_ARGS__}
// The fused time-embedding add: GroupNorm(x + add[n, c]), add [N, C] ~ N(0, 1) (the size of a
// ResBlock's projected embedding next to a conv output). XG: whether x takes a grad (false
// checks dadd alone).
static ddx_tensor *ddx_case_group_norm_add(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_group_norm_add(c, in[0], in[3], in[1], in[2], tc->p.group_norm.groups, tc->p.group_norm.eps,
                              tc->p.group_norm.fuse_silu);
}

#define GNA4(N, H, W, C, G, EPS, SILU, XG, DT, DESC, ...)                                         \
    {.op = DDX_OP_GROUP_NORM, .desc = DESC, .n_inputs = 4,                                       \
     .in = {{.ndim = 4, .shape = {N, H, W, C}, .dtype = DT, .gen = DDX_GEN_NORMAL, .grad = XG}, \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_POSITIVE, .grad = true},                   \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_NORMAL, .grad = true},                     \
            {.ndim = 2, .shape = {N, C}, .dtype = DT, .gen = DDX_GEN_NORMAL, .grad = true}},    \
     .apply = ddx_case_group_norm_add, .p.group_norm = {G, EPS, SILU}, __VA_ARGS__}

#define GNA3(N, L, C, G, EPS, SILU, DESC, ...)                                                   \
    {.op = DDX_OP_GROUP_NORM, .desc = DESC, .n_inputs = 4,                                       \
     .in = {{.ndim = 3, .shape = {N, L, C}, .gen = DDX_GEN_NORMAL, .grad = true},               \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_POSITIVE, .grad = true},                   \
            {.ndim = 1, .shape = {C}, .gen = DDX_GEN_NORMAL, .grad = true},                     \
            {.ndim = 2, .shape = {N, C}, .gen = DDX_GEN_NORMAL, .grad = true}},                 \
     .apply = ddx_case_group_norm_add, .p.group_norm = {G, EPS, SILU}, __VA_ARGS__}

static const ddx_op_case norm_cases[] = {
    // ---- group_norm: the U-Net's G=32 at its channel counts, small spatial, grads checked
    GN4(2, 4, 4, 64, 32, 1e-6f, false, "gn [2,4,4,64] G=32 eps=1e-6", .no_grad = false),
    GN4(2, 4, 4, 64, 32, 1e-6f, true, "gn+silu [2,4,4,64] G=32 eps=1e-6", .no_grad = false),
    GN4(1, 3, 5, 128, 32, 1e-5f, true, "gn+silu [1,3,5,128] G=32 eps=1e-5 batch 1, odd H/W", .no_grad = false),
    GN4(3, 2, 2, 256, 32, 1e-6f, false, "gn [3,2,2,256] G=32 batch 3", .no_grad = false),
    GN4(3, 2, 2, 256, 32, 1e-6f, true, "gn+silu [3,2,2,256] G=32 batch 3", .no_grad = false),
    // Few elements per group make the normalisation strongly curved where a group's values sit
    // close together; a smaller finite-difference step keeps the truncation error in check
    // (rounding stays small: a step changes only the outputs of its own group).
    GN4(2, 1, 1, 128, 32, 1e-6f, true, "gn+silu [2,1,1,128] G=32 1x1 spatial (4 per group)", .grad_h = 1e-3),
    GN4(3, 1, 1, 256, 32, 1e-5f, false, "gn [3,1,1,256] G=32 1x1 spatial (8 per group)", .grad_h = 1e-3),
    // Two elements per group: the output is +-1 up to eps, flipping sign where the pair crosses,
    // so central differences are meaningless there; forward only.
    GN4(2, 1, 1, 64, 32, 1e-6f, true, "gn+silu [2,1,1,64] G=32 1x1 spatial (2 per group)", .no_grad = true),
    // ---- group_norm: odd group/channel counts
    GN4(2, 3, 5, 8, 1, 1e-5f, false, "gn [2,3,5,8] G=1 (layer-norm-like)", .no_grad = false),
    GN4(1, 3, 5, 5, 1, 1e-6f, true, "gn+silu [1,3,5,5] G=1 C=5", .no_grad = false),
    GN4(2, 3, 5, 8, 8, 1e-5f, false, "gn [2,3,5,8] G=C (instance-norm-like)", .no_grad = false),
    GN4(1, 3, 5, 6, 6, 1e-6f, true, "gn+silu [1,3,5,6] G=C", .no_grad = false),
    GN4(1, 3, 5, 6, 3, 1e-5f, false, "gn [1,3,5,6] G=3", .no_grad = false),
    GN4(3, 3, 5, 6, 3, 1e-6f, true, "gn+silu [3,3,5,6] G=3 batch 3", .no_grad = false),
    GN4(1, 1, 1, 6, 3, 1e-5f, false, "gn [1,1,1,6] G=3 1x1 (2 per group)", .no_grad = true),
    GN3(2, 16, 6, 2, 1e-6f, true, "gn+silu [2,16,6] 3-D [N,L,C] G=2", .no_grad = false),
    GN3(1, 7, 33, 3, 1e-5f, false, "gn [1,7,33] 3-D G=3 C=33", .no_grad = false),
    // ---- group_norm: DDPM CIFAR-10 U-Net shapes, forward only
    GN4(2, 32, 32, 128, 32, 1e-6f, true, "gn+silu [2,32,32,128] G=32 (U-Net 32x32)", .no_grad = true),
    GN4(2, 32, 32, 128, 32, 1e-6f, false, "gn [2,32,32,128] G=32 (U-Net 32x32, before attention)", .no_grad = true),
    GN4(2, 16, 16, 256, 32, 1e-6f, true, "gn+silu [2,16,16,256] G=32 (U-Net 16x16)", .no_grad = true),
    GN4(2, 8, 8, 256, 32, 1e-5f, true, "gn+silu [2,8,8,256] G=32 (U-Net 8x8)", .no_grad = true),
    GN4(2, 4, 4, 256, 32, 1e-6f, true, "gn+silu [2,4,4,256] G=32 (U-Net 4x4)", .no_grad = true),
    // ---- bf16 x: what the model computes in under precision bf16 (cg = 12 puts a 16-byte
    // vector of 8 bf16 across two groups)
    GN4B(2, 2, 2, 384, 32, 1e-6f, true, "gn+silu bf16 [2,2,2,384] G=32 (cg=12)", .no_grad = false),
    GN4B(3, 3, 5, 64, 32, 1e-5f, false, "gn bf16 [3,3,5,64] G=32 (cg=2)", .no_grad = false),
    GN4B(2, 16, 16, 384, 32, 1e-6f, true, "gn+silu bf16 [2,16,16,384] G=32", .no_grad = true),
    // ---- group_norm with the fused time-embedding add (the ResBlock's second norm)
    GNA4(2, 4, 4, 64, 32, 1e-6f, true, true, DDX_F32, "gn+add+silu [2,4,4,64] G=32 add [2,64]", .no_grad = false),
    GNA4(3, 2, 2, 256, 32, 1e-6f, false, true, DDX_F32, "gn+add [3,2,2,256] G=32 batch 3", .no_grad = false),
    GNA4(1, 3, 5, 6, 3, 1e-5f, true, true, DDX_F32, "gn+add+silu [1,3,5,6] G=3 odd H/W", .no_grad = false),
    GNA4(3, 3, 5, 6, 3, 1e-6f, true, false, DDX_F32, "gn+add+silu [3,3,5,6] G=3, dadd without dx", .no_grad = false),
    GNA4(2, 3, 5, 8, 8, 1e-5f, false, false, DDX_F32, "gn+add [2,3,5,8] G=C, dadd without dx", .no_grad = false),
    GNA3(2, 16, 6, 2, 1e-6f, true, "gn+add+silu [2,16,6] 3-D [N,L,C] G=2", .no_grad = false),
    GNA4(2, 32, 32, 128, 32, 1e-6f, true, true, DDX_F32, "gn+add+silu [2,32,32,128] G=32 (U-Net 32x32)", .no_grad = true),
    GNA4(2, 16, 16, 256, 32, 1e-6f, true, true, DDX_F32, "gn+add+silu [2,16,16,256] G=32 (U-Net 16x16)", .no_grad = true),
    GNA4(2, 2, 2, 384, 32, 1e-6f, true, true, DDX_BF16, "gn+add+silu bf16 [2,2,2,384] G=32 (cg=12)", .bf16_ref_f32 = true,
         .no_grad = false),
    GNA4(3, 3, 5, 64, 32, 1e-5f, false, true, DDX_BF16, "gn+add bf16 [3,3,5,64] G=32 (cg=2)", .bf16_ref_f32 = true,
         .no_grad = false),
    GNA4(2, 16, 16, 384, 32, 1e-6f, true, true, DDX_BF16, "gn+add+silu bf16 [2,16,16,384] G=32", .bf16_ref_f32 = true,
         .no_grad = true),
};

ddx_case_list ddx_cases_norm(void) {
    return (ddx_case_list){norm_cases, sizeof norm_cases / sizeof norm_cases[0]};
}
