// CUDA kernels of the diffusion ops: randn, q_sample and sampler_step (runtime/ops.h gives
// their semantics, runtime/ops/diffusion.c their CPU reference).
//
// Host launchers take raw device pointers, element counts and a cudaStream_t passed as void*,
// enqueue the work and return the cudaError_t of the launch as an int (0 = success;
// cudaErrorInvalidValue (1) for arguments the CPU front-end would refuse). Each kernel draws
// its Philox noise itself: element e uses normal number offset + e of (seed, stream, step),
// the same bits as ddx_philox_normal on the CPU, and the arithmetic uses the same correctly
// rounded operations in the same order, so CUDA and CPU outputs are bit-identical.
#ifndef DDX_KERNELS_DIFFUSION_H
#define DDX_KERNELS_DIFFUSION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// The Philox key of a draw (runtime/ops.h's ddx_rng_key without the runtime dependency).
// step_dev: when non-NULL the kernel reads the step word from that device address when it
// runs, so a CUDA graph captured once replays with each step's key (the host writes the step
// there before every launch; the runtime passes its context's step_dev). The front-ends then
// set step to DDX_K_STEP_ON_DEVICE: a launcher given that sentinel without step_dev refuses
// it, so an adapter that forgot to forward step_dev fails the capture instead of replaying
// the captured step's noise.
#define DDX_K_STEP_ON_DEVICE 0xFFFFFFFFu
typedef struct ddx_k_rng_key {
    uint64_t seed;
    uint32_t stream;
    uint32_t step;
    uint64_t offset;
    const uint32_t *step_dev;
} ddx_k_rng_key;

// The fused sampler update (runtime/ops.h's ddx_sampler_step_params):
//   x0 = a x_t + b out, clamped to [-1, 1] when clip; eps = f x_t + g out;
//   prev = ((c x0 + d x_t) + e eps) + sigma z   (no z drawn when sigma == 0)
// dev: when non-NULL the kernel reads a, b, f, g, c, d, e, sigma, clip (clip as 0.0f / 1.0f)
// from these 9 device floats when it runs and ignores the host values (CUDA graphs: one
// capture replayed for every timestep). Requires key.step_dev too.
// guided: `out` holds 2n elements, the conditional half then the unconditional one, and the
// update reads u + guidance * (c + -u) (correctly rounded, as the CPU) in place of out[i].
typedef struct ddx_k_sampler_coefs {
    float a, b, f, g, c, d, e, sigma;
    int clip;
    const float *dev;
    int guided;
    float guidance;
} ddx_k_sampler_coefs;
#define DDX_K_SAMPLER_COEFS_DEV_N 9

// y[i] = normal number key.offset + i, i in [0, n).
int ddx_k_randn_f32(float *y, int64_t n, ddx_k_rng_key key, void *stream);
// The same numbers rounded to bf16 like ddx_f32_to_bf16.
int ddx_k_randn_bf16(uint16_t *y, int64_t n, ddx_k_rng_key key, void *stream);
// y = coef[s,0] * x0 + coef[s,1] * z for element i of sample s = i / per_sample.
// coef: [n / per_sample, 2] f32; n must be a multiple of per_sample.
int ddx_k_q_sample_f32(float *y, const float *x0, const float *coef, int64_t n, int64_t per_sample,
                       ddx_k_rng_key key, void *stream);
// y = the sampler update of x_t and the model output `out` (all n elements; 2n when guided).
int ddx_k_sampler_step_f32(float *y, const float *x_t, const float *out, int64_t n, ddx_k_sampler_coefs co,
                           ddx_k_rng_key key, void *stream);

// The inpainting blend fused into the update (runtime/ops.h's ddx_sampler_step_params):
//   kn = kc0 known + kc1 zk (zk: normal number key.offset + i of `key`, not drawn when kc1 == 0)
//   y  = kn where mask == 1, y where mask == 0, else mask kn + (1 - mask) y
// key: the known-noise key (its own stream; the update's step word and offset). dev: when
// non-NULL (graphs, with the update's dev) kc0, kc1 are read from these 2 device floats.
typedef struct ddx_k_blend {
    const float *known, *mask;
    float kc0, kc1;
    const float *dev;
    ddx_k_rng_key key;
} ddx_k_blend;
int ddx_k_sampler_step_blend_f32(float *y, const float *x_t, const float *out, int64_t n, ddx_k_sampler_coefs co,
                                 ddx_k_rng_key key, ddx_k_blend b, void *stream);

// The multistep / two-stage sampler update (runtime/ops.h's ddx_sampler_ms_params):
//   m = out[i], or guided: m = out[n + i] + w (out[i] - out[n + i]);
//   D = a x_t + b m, clamped to [-1, 1] when clip;
//   y[i] = (((cx x_t + cd D) + c1 h1) + c2 h2) + sigma z   (h terms only for non-NULL h),
//   y[n + i] = D.
// dev: when non-NULL the kernel reads a, b, cx, cd, c1, c2, sigma, clip (0.0f / 1.0f) from
// these 8 device floats when it runs (CUDA graphs). Requires key.step_dev too.
typedef struct ddx_k_ms_coefs {
    float a, b, cx, cd, c1, c2, sigma;
    int clip;
    int guided;
    float w;
    const float *dev;
} ddx_k_ms_coefs;
#define DDX_K_MS_COEFS_DEV_N 8
int ddx_k_sampler_step_ms_f32(float *y, const float *x_t, const float *out, const float *h1, const float *h2, int64_t n,
                              ddx_k_ms_coefs co, ddx_k_rng_key key, void *stream);

#ifdef __cplusplus
}
#endif

#endif