// Op-driver cases for embedding and timestep_emb.
#include "op_cases.h"

#include "runtime/ops.h"

// Input specs: F32 (default dtype) by shape, optionally with a gradient check.
#define IN2(a, b, g, gr) {.ndim = 2, .shape = {a, b}, .gen = (g), .grad = (gr)}

static ddx_tensor *apply_embedding(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)tc;
    return ddx_embedding(c, in[0], in[1]);
}
static ddx_tensor *apply_timestep(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_timestep_emb(c, in[0], tc->p.timestep_emb);
}

#define TEMB(d, shift, flip) {.timestep_emb = {.dim = (d), .freq_shift = (shift), .flip_sin_to_cos = (flip), .max_period = 10000.0f}}

// Timestep embeddings reach arguments of ~1000 where one fp32 ulp is 6e-5: a backend that
// rounds the frequencies differently from the CPU reference fails here (see runtime/ops/embed.c).
#define TEMB_ATOL 1e-5

static const ddx_op_case embed_cases[] = {
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
};

ddx_case_list ddx_cases_embed(void) {
    return (ddx_case_list){embed_cases, sizeof embed_cases / sizeof embed_cases[0]};
}
