// Op-driver cases for randn, q_sample and sampler_step. They are not differentiable, so every
// case is forward-only: the driver checks the CPU reference is fully written and repeatable
// and (gpu suite) that CUDA matches it. Offsets that are not a multiple of 4 and per-sample
// sizes that are not a multiple of 4 take the kernels' unaligned paths; the real CIFAR-10
// batch (128 x 32 x 32 x 3) takes the vector paths. tests/test_diffusion.c checks the CPU
// reference itself against direct double-precision formulas.
#include "op_cases.h"

#include "runtime/ops.h"
#include "runtime/philox.h"

#define IN4(a, b, c_, d, g) {.ndim = 4, .shape = {a, b, c_, d}, .gen = (g)}
#define IN2(a, b, g) {.ndim = 2, .shape = {a, b}, .gen = (g)}
#define IN1(a, g) {.ndim = 1, .shape = {a}, .gen = (g)}

typedef struct randn_shape {
    int ndim;
    int64_t shape[4];
    bool bf16_on_cuda;
} randn_shape;
static const randn_shape randn_shapes[] = {
    {4, {3, 5, 7, 3}, false}, {4, {1, 1, 1, 1}, false}, {2, {3, 5}, false},  {4, {128, 32, 32, 3}, false},
    {4, {3, 5, 7, 3}, true},  {4, {128, 32, 32, 3}, true}, {1, {7}, false},
};

// randn has no inputs to carry its shape: it comes from randn_shapes[key.seed >> 32] (the
// seed's high word), so the case table stays plain data.
static ddx_tensor *apply_randn_keyed(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    (void)in;
    const ddx_rng_key k = tc->p.randn;
    const randn_shape *s = &randn_shapes[k.seed >> 32];
    // bf16 is a CUDA-only output: the CPU reference draws f32 and the driver compares the
    // GPU's bf16 against it with the bf16 tolerance.
    ddx_dtype dt = s->bf16_on_cuda && c->device == DDX_CUDA ? DDX_BF16 : DDX_F32;
    return ddx_randn(c, dt, s->ndim, s->shape, k);
}

static ddx_tensor *apply_q_sample(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_q_sample(c, in[0], in[1], tc->p.q_sample);
}

static ddx_tensor *apply_sampler_step(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_sampler_step(c, in[0], in[1], &tc->p.sampler_step);
}

// The inpainting blend: in[3] holds f32 integers; 'soft' halves them ({0, 0.5, 1}: kept,
// mixed and generated pixels), otherwise they are the binary mask itself.
static ddx_tensor *apply_sampler_step_blend(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    const bool soft = tc->p.sampler_step.known_stream == DDX_RNG_STREAM_INPAINT + 1;
    ddx_tensor *m = soft ? ddx_scale(c, in[3], 0.5f, 0.0f) : in[3];
    ddx_sampler_step_params p = tc->p.sampler_step;
    p.known_stream = DDX_RNG_STREAM_INPAINT;
    return ddx_sampler_step_blend(c, in[0], in[1], in[2], m, &p);
}

// sampler_step_ms: in[2], in[3] are the history tensors when the case has them.
static ddx_tensor *apply_sampler_step_ms(ddx_ctx *c, ddx_tensor **in, const ddx_op_case *tc) {
    return ddx_sampler_step_ms(c, in[0], in[1], tc->n_inputs >= 3 ? in[2] : NULL, tc->n_inputs >= 4 ? in[3] : NULL,
                               &tc->p.sampler_step_ms);
}

#define RANDN(shape_idx, off) \
    {.randn = {.seed = ((uint64_t)(shape_idx) << 32) | 0x5eedu, .stream = DDX_RNG_STREAM_SAMPLER, .step = 3, .offset = (off)}}
#define QKEY(off) {.q_sample = {.seed = 42, .stream = DDX_RNG_STREAM_Q_SAMPLE, .step = 11, .offset = (off)}}
// DDPM-like (eps parameterisation, x0 clipped, noise) and DDIM-like (no noise, eps term) steps;
// the numbers are those of t = 500 -> 499 and t = 500 -> 480 of the linear schedule.
#define STEP_DDPM(off)                                                                                        \
    {.sampler_step = {.a = 3.6935f, .b = -3.5553f, .f = 0.0f, .g = 1.0f, .c = 0.02106f, .d = 0.99396f, .e = 0.0f, \
                      .sigma = 0.11535f, .clip = true, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 5, .offset = (off)}}}
#define STEP_DDIM(eta_sigma, off)                                                                             \
    {.sampler_step = {.a = 3.6935f, .b = -3.5553f, .f = 0.0f, .g = 1.0f, .c = 0.28805f, .d = 0.0f, .e = 0.95761f,  \
                      .sigma = (eta_sigma), .clip = false, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 6, .offset = (off)}}}
// v parameterisation: x0 and eps both mix x_t and the output.
#define STEP_V(off)                                                                                           \
    {.sampler_step = {.a = 0.27074f, .b = -0.96265f, .f = 0.96265f, .g = 0.27074f, .c = 0.28805f, .d = 0.0f,       \
                      .e = 0.95761f, .sigma = 0.05f, .clip = true, .key = {.seed = 10, .stream = DDX_RNG_STREAM_SAMPLER, .step = 7, .offset = (off)}}}

// Blend steps: the update of STEP_DDPM / STEP_DDIM, then the known image noised to the next
// level (kc0, kc1 of t = 499 and the last step's (1, 0)); soft = 1 picks the {0, 0.5, 1} mask.
#define BLEND_DDPM(off, k0, k1, soft)                                                                               \
    {.sampler_step = {.a = 3.6935f, .b = -3.5553f, .f = 0.0f, .g = 1.0f, .c = 0.02106f, .d = 0.99396f, .e = 0.0f,      \
                      .sigma = 0.11535f, .clip = true, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 5, .offset = (off)}, \
                      .kc0 = (k0), .kc1 = (k1), .known_stream = DDX_RNG_STREAM_INPAINT + (soft)}}
#define BLEND_DDIM(off, k0, k1, soft)                                                                               \
    {.sampler_step = {.a = 3.6935f, .b = -3.5553f, .f = 0.0f, .g = 1.0f, .c = 0.28805f, .d = 0.0f, .e = 0.95761f,      \
                      .sigma = 0.0f, .clip = false, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 6, .offset = (off)}, \
                      .kc0 = (k0), .kc1 = (k1), .known_stream = DDX_RNG_STREAM_INPAINT + (soft)}}
#define BLEND_IN(a, b, c_, d, mgen)                                                                          \
    {IN4(a, b, c_, d, DDX_GEN_NORMAL), IN4(a, b, c_, d, DDX_GEN_NORMAL), IN4(a, b, c_, d, DDX_GEN_UNIFORM), \
     {.ndim = 4, .shape = {a, b, c_, d}, .gen = DDX_GEN_TIMESTEP, .gen_arg = (mgen)}}
// Guided blend: the doubled model output (rows 0..N-1 conditional, N..2N-1 unconditional).
#define BLEND_DDPM_G(off, k0, k1, soft, w)                                                                           \
    {.sampler_step = {.a = 3.6935f, .b = -3.5553f, .f = 0.0f, .g = 1.0f, .c = 0.02106f, .d = 0.99396f, .e = 0.0f,      \
                      .sigma = 0.11535f, .clip = true, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 5, .offset = (off)}, \
                      .kc0 = (k0), .kc1 = (k1), .known_stream = DDX_RNG_STREAM_INPAINT + (soft), .guided = true, .guidance = (w)}}
#define BLEND_DDIM_G(off, k0, k1, soft, w)                                                                           \
    {.sampler_step = {.a = 3.6935f, .b = -3.5553f, .f = 0.0f, .g = 1.0f, .c = 0.28805f, .d = 0.0f, .e = 0.95761f,      \
                      .sigma = 0.0f, .clip = false, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 6, .offset = (off)}, \
                      .kc0 = (k0), .kc1 = (k1), .known_stream = DDX_RNG_STREAM_INPAINT + (soft), .guided = true, .guidance = (w)}}
#define BLEND_IN_G(a, b, c_, d, mgen)                                                                          \
    {IN4(a, b, c_, d, DDX_GEN_NORMAL), IN4(2 * (a), b, c_, d, DDX_GEN_NORMAL), IN4(a, b, c_, d, DDX_GEN_UNIFORM), \
     {.ndim = 4, .shape = {a, b, c_, d}, .gen = DDX_GEN_TIMESTEP, .gen_arg = (mgen)}}
// Classifier-free guidance folded into the step: the output input is the doubled batch
// [2N, ...] (conditional rows, then unconditional ones) and the step reads u + w (c - u).
#define GUIDED(w) .guided = true, .guidance = (w)
#define STEP_DDPM_G(off, w)                                                                                   \
    {.sampler_step = {.a = 3.6935f, .b = -3.5553f, .f = 0.0f, .g = 1.0f, .c = 0.02106f, .d = 0.99396f, .e = 0.0f, \
                      .sigma = 0.11535f, .clip = true, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 5, .offset = (off)}, \
                      GUIDED(w)}}
#define STEP_DDIM_G(eta_sigma, off, w)                                                                        \
    {.sampler_step = {.a = 3.6935f, .b = -3.5553f, .f = 0.0f, .g = 1.0f, .c = 0.28805f, .d = 0.0f, .e = 0.95761f,  \
                      .sigma = (eta_sigma), .clip = false, .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 6, .offset = (off)}, \
                      GUIDED(w)}}
#define STEP_V_G(off, w)                                                                                      \
    {.sampler_step = {.a = 0.27074f, .b = -0.96265f, .f = 0.96265f, .g = 0.27074f, .c = 0.28805f, .d = 0.0f,       \
                      .e = 0.95761f, .sigma = 0.05f, .clip = true, .key = {.seed = 10, .stream = DDX_RNG_STREAM_SAMPLER, .step = 7, .offset = (off)}, \
                      GUIDED(w)}}

// Multistep updates: DPM-Solver++ 2M (one history, no noise), 3M (two), Heun's second stage
// (two, x0 clipped), Euler ancestral (noise, no history), a guided read (w = 3).
#define MS_KEY(off) .key = {.seed = 12, .stream = DDX_RNG_STREAM_SAMPLER, .step = 4, .offset = (off)}
#define MS_2M(off) {.sampler_step_ms = {.a = 3.6935f, .b = -3.5553f, .cx = 0.6f, .cd = 0.55f, .c1 = -0.17f, MS_KEY(off)}}
#define MS_3M(off) \
    {.sampler_step_ms = {.a = 0.27074f, .b = -0.96265f, .cx = 0.6f, .cd = 0.7f, .c1 = -0.4f, .c2 = 0.11f, MS_KEY(off)}}
#define MS_HEUN(off)                                                                                                \
    {.sampler_step_ms = {.a = 1.0f, .b = -0.5f, .cx = -0.31f, .cd = 0.29f, .c1 = 1.02f, .c2 = 0.33f, .clip = true, \
                         MS_KEY(off)}}
#define MS_EULER_A(off) {.sampler_step_ms = {.a = 3.6935f, .b = -3.5553f, .cx = 0.4f, .cd = 0.5f, .sigma = 0.37f, MS_KEY(off)}}
#define MS_GUIDED(off) \
    {.sampler_step_ms = {.a = 3.6935f, .b = -3.5553f, .cx = 0.4f, .cd = 0.5f, .sigma = 0.2f, .guided = true, .w = 3.0f, MS_KEY(off)}}
#define MS_IN(n, a, b, c_, d) \
    {IN4(a, b, c_, d, DDX_GEN_NORMAL), IN4((n) * (a), b, c_, d, DDX_GEN_NORMAL), IN4(a, b, c_, d, DDX_GEN_NORMAL), \
     IN4(a, b, c_, d, DDX_GEN_NORMAL)}

static const ddx_op_case diffusion_cases[] = {
    // ---- randn ---------------------------------------------------------------------------
    {DDX_OP_RANDN, "randn [3,5,7,3] offset 0", 0, {{0}}, apply_randn_keyed, .p = RANDN(0, 0), .no_grad = true},
    {DDX_OP_RANDN, "randn [3,5,7,3] offset 6 (unaligned groups)", 0, {{0}}, apply_randn_keyed, .p = RANDN(0, 6),
     .no_grad = true},
    {DDX_OP_RANDN, "randn [1,1,1,1] offset 3", 0, {{0}}, apply_randn_keyed, .p = RANDN(1, 3), .no_grad = true},
    {DDX_OP_RANDN, "randn 2-D [3,5] offset 1", 0, {{0}}, apply_randn_keyed, .p = RANDN(2, 1), .no_grad = true},
    {DDX_OP_RANDN, "randn 1-D [7] offset 2^33 + 2", 0, {{0}}, apply_randn_keyed, .p = RANDN(6, (1ULL << 33) + 2),
     .no_grad = true},
    {DDX_OP_RANDN, "randn CIFAR batch [128,32,32,3]", 0, {{0}}, apply_randn_keyed, .p = RANDN(3, 0), .no_grad = true},
    {DDX_OP_RANDN, "randn [3,5,7,3] offset 5 (bf16 on CUDA)", 0, {{0}}, apply_randn_keyed, .p = RANDN(4, 5),
     .no_grad = true},
    {DDX_OP_RANDN, "randn CIFAR batch [128,32,32,3] (bf16 on CUDA)", 0, {{0}}, apply_randn_keyed, .p = RANDN(5, 3072),
     .no_grad = true},

    // ---- q_sample ------------------------------------------------------------------------
    {DDX_OP_Q_SAMPLE, "q_sample batch 1 [1,5,3,1] offset 0", 2, {IN4(1, 5, 3, 1, DDX_GEN_UNIFORM), IN2(1, 2, DDX_GEN_POSITIVE)},
     apply_q_sample, .p = QKEY(0), .no_grad = true},
    {DDX_OP_Q_SAMPLE, "q_sample batch 3 [3,7,5,3] offset 3", 2, {IN4(3, 7, 5, 3, DDX_GEN_UNIFORM), IN2(3, 2, DDX_GEN_POSITIVE)},
     apply_q_sample, .p = QKEY(3), .no_grad = true},
    {DDX_OP_Q_SAMPLE, "q_sample batch 3 [3,4,4,3] offset 96", 2, {IN4(3, 4, 4, 3, DDX_GEN_UNIFORM), IN2(3, 2, DDX_GEN_UNIFORM)},
     apply_q_sample, .p = QKEY(96), .no_grad = true},
    {DDX_OP_Q_SAMPLE, "q_sample 2-D [3,5]", 2, {IN2(3, 5, DDX_GEN_NORMAL), IN2(3, 2, DDX_GEN_POSITIVE)}, apply_q_sample,
     .p = QKEY(0), .no_grad = true},
    {DDX_OP_Q_SAMPLE, "q_sample 1-D [6]", 2, {IN1(6, DDX_GEN_NORMAL), IN2(6, 2, DDX_GEN_POSITIVE)}, apply_q_sample,
     .p = QKEY(1), .no_grad = true},
    {DDX_OP_Q_SAMPLE, "q_sample CIFAR batch [128,32,32,3]", 2,
     {IN4(128, 32, 32, 3, DDX_GEN_UNIFORM), IN2(128, 2, DDX_GEN_POSITIVE)}, apply_q_sample, .p = QKEY(0), .no_grad = true},

    // ---- sampler_step --------------------------------------------------------------------
    {DDX_OP_SAMPLER_STEP, "sampler_step DDPM batch 1 [1,3,3,1]", 2,
     {IN4(1, 3, 3, 1, DDX_GEN_NORMAL), IN4(1, 3, 3, 1, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_DDPM(0),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step DDPM batch 3 [3,5,7,3] offset 7", 2,
     {IN4(3, 5, 7, 3, DDX_GEN_NORMAL), IN4(3, 5, 7, 3, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_DDPM(7),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step DDIM eta 0 [3,4,4,3]", 2,
     {IN4(3, 4, 4, 3, DDX_GEN_NORMAL), IN4(3, 4, 4, 3, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_DDIM(0.0f, 0),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step DDIM eta>0 2-D [3,5] offset 2", 2,
     {IN2(3, 5, DDX_GEN_NORMAL), IN2(3, 5, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_DDIM(0.2f, 2), .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step v-param clip [2,3,3,3] offset 27", 2,
     {IN4(2, 3, 3, 3, DDX_GEN_NORMAL), IN4(2, 3, 3, 3, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_V(27),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step DDPM CIFAR batch [128,32,32,3]", 2,
     {IN4(128, 32, 32, 3, DDX_GEN_NORMAL), IN4(128, 32, 32, 3, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_DDPM(0),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step DDIM eta 0 CIFAR batch [128,32,32,3]", 2,
     {IN4(128, 32, 32, 3, DDX_GEN_NORMAL), IN4(128, 32, 32, 3, DDX_GEN_NORMAL)}, apply_sampler_step,
     .p = STEP_DDIM(0.0f, 0), .no_grad = true},

    // ---- sampler_step with the inpainting blend (4 inputs) ---------------------------------
    {DDX_OP_SAMPLER_STEP, "sampler_step+blend DDPM batch 1 [1,3,3,1]", 4, BLEND_IN(1, 3, 3, 1, 2),
     apply_sampler_step_blend, .p = BLEND_DDPM(0, 0.99494f, 0.10044f, 0), .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step+blend DDPM [3,5,7,3] offset 7 (unaligned groups)", 4, BLEND_IN(3, 5, 7, 3, 2),
     apply_sampler_step_blend, .p = BLEND_DDPM(7, 0.99494f, 0.10044f, 0), .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step+blend DDIM eta 0 [3,4,4,3] offset 2 (known noise off the groups)", 4,
     BLEND_IN(3, 4, 4, 3, 2), apply_sampler_step_blend, .p = BLEND_DDIM(2, 0.5367f, 0.8438f, 0), .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step+blend soft mask [2,3,3,3] offset 27", 4, BLEND_IN(2, 3, 3, 3, 3),
     apply_sampler_step_blend, .p = BLEND_DDPM(27, 0.7f, 0.71414f, 1), .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step+blend last step (1, 0) soft mask [2,4,4,3]", 4, BLEND_IN(2, 4, 4, 3, 3),
     apply_sampler_step_blend, .p = BLEND_DDIM(0, 1.0f, 0.0f, 1), .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step+blend DDPM CIFAR batch [128,32,32,3]", 4, BLEND_IN(128, 32, 32, 3, 2),
     apply_sampler_step_blend, .p = BLEND_DDPM(0, 0.99494f, 0.10044f, 0), .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step+blend DDIM eta 0 CIFAR batch [128,32,32,3] offset 3072", 4,
     BLEND_IN(128, 32, 32, 3, 2), apply_sampler_step_blend, .p = BLEND_DDIM(3072, 0.5367f, 0.8438f, 0), .no_grad = true},
    // ---- sampler_step, guided, with the inpainting blend: both folded into one pass ---------
    {DDX_OP_SAMPLER_STEP, "sampler_step+blend guided w 3 DDPM [3,5,7,3] offset 7", 4, BLEND_IN_G(3, 5, 7, 3, 2),
     apply_sampler_step_blend, .p = BLEND_DDPM_G(7, 0.99494f, 0.10044f, 0, 3.0f), .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step+blend guided w 7.5 DDIM soft mask [2,4,4,3] (vector path)", 4,
     BLEND_IN_G(2, 4, 4, 3, 3), apply_sampler_step_blend, .p = BLEND_DDIM_G(0, 0.5367f, 0.8438f, 1, 7.5f), .no_grad = true},
    // ---- sampler_step, guided (out is the doubled batch) ------------------------------------
    {DDX_OP_SAMPLER_STEP, "sampler_step guided w 3 DDPM [3,5,7,3] offset 7 (unaligned)", 2,
     {IN4(3, 5, 7, 3, DDX_GEN_NORMAL), IN4(6, 5, 7, 3, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_DDPM_G(7, 3.0f),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step guided w 7.5 DDIM eta 0 [3,4,4,3]", 2,
     {IN4(3, 4, 4, 3, DDX_GEN_NORMAL), IN4(6, 4, 4, 3, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_DDIM_G(0.0f, 0, 7.5f),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step guided w 0 DDIM eta>0 2-D [3,5] offset 2", 2,
     {IN2(3, 5, DDX_GEN_NORMAL), IN2(6, 5, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_DDIM_G(0.2f, 2, 0.0f),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step guided w 0.5 v-param clip [2,3,3,3] offset 27", 2,
     {IN4(2, 3, 3, 3, DDX_GEN_NORMAL), IN4(4, 3, 3, 3, DDX_GEN_NORMAL)}, apply_sampler_step, .p = STEP_V_G(27, 0.5f),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP, "sampler_step guided w 3 DDPM CIFAR batch [64,32,32,3] (vector path)", 2,
     {IN4(64, 32, 32, 3, DDX_GEN_NORMAL), IN4(128, 32, 32, 3, DDX_GEN_NORMAL)}, apply_sampler_step,
     .p = STEP_DDPM_G(0, 3.0f), .no_grad = true},

    // ---- sampler_step_ms (2, 3 or 4 inputs) ---------------------------------------------------
    {DDX_OP_SAMPLER_STEP_MS, "sampler_step_ms 2M [1,3,3,1] (odd count: scalar path)", 3, MS_IN(1, 1, 3, 3, 1),
     apply_sampler_step_ms, .p = MS_2M(0), .no_grad = true},
    {DDX_OP_SAMPLER_STEP_MS, "sampler_step_ms 3M [3,4,4,3]", 4, MS_IN(1, 3, 4, 4, 3), apply_sampler_step_ms, .p = MS_3M(0),
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP_MS, "sampler_step_ms Heun stage 2 clip [2,3,3,3]", 4, MS_IN(1, 2, 3, 3, 3), apply_sampler_step_ms,
     .p = MS_HEUN(0), .no_grad = true},
    {DDX_OP_SAMPLER_STEP_MS, "sampler_step_ms Euler a. [3,5,7,3] offset 7 (unaligned groups)", 2, MS_IN(1, 3, 5, 7, 3),
     apply_sampler_step_ms, .p = MS_EULER_A(7), .no_grad = true},
    {DDX_OP_SAMPLER_STEP_MS, "sampler_step_ms Euler a. 2-D [3,5] offset 2", 2,
     {IN2(3, 5, DDX_GEN_NORMAL), IN2(3, 5, DDX_GEN_NORMAL)}, apply_sampler_step_ms, .p = MS_EULER_A(2), .no_grad = true},
    {DDX_OP_SAMPLER_STEP_MS, "sampler_step_ms guided w=3 [2,4,4,3] offset 96", 2, MS_IN(2, 2, 4, 4, 3),
     apply_sampler_step_ms, .p = MS_GUIDED(96), .no_grad = true},
    {DDX_OP_SAMPLER_STEP_MS, "sampler_step_ms guided 2M [2,3,3,1] (odd count)", 3, MS_IN(2, 2, 3, 3, 1),
     apply_sampler_step_ms, .p = {.sampler_step_ms = {.a = 1.0f, .b = -0.5f, .cx = 0.6f, .cd = 0.55f, .c1 = -0.17f, .guided = true, .w = 1.5f, MS_KEY(0)}},
     .no_grad = true},
    {DDX_OP_SAMPLER_STEP_MS, "sampler_step_ms 3M CIFAR batch [128,32,32,3]", 4, MS_IN(1, 128, 32, 32, 3),
     apply_sampler_step_ms, .p = MS_3M(0), .no_grad = true},
    {DDX_OP_SAMPLER_STEP_MS, "sampler_step_ms Euler a. CIFAR batch [128,32,32,3] offset 3072", 2, MS_IN(1, 128, 32, 32, 3),
     apply_sampler_step_ms, .p = MS_EULER_A(3072), .no_grad = true},
};

ddx_case_list ddx_cases_diffusion(void) {
    return (ddx_case_list){diffusion_cases, sizeof diffusion_cases / sizeof diffusion_cases[0]};
}
