// The sampler: one object every tool draws images through (ddx-sample, the trainer's sample
// grids, and the evaluation, inpainting and super-resolution tools). Created from a model (its
// parameter store holds the weights to sample: copy or load EMA weights into the VALUE buffer
// first), a schedule and the sampler settings; it owns its own context (no autograd tape, no
// dropout) or runs in the caller's (ddx_sampling_create_in), its x buffer and its CUDA-graph
// state (runtime/graph.h), and no gradient or optimizer memory.
//
// Noise is fixed: sample i uses the Philox noise keyed by (seed, DDX_RNG_STREAM_SAMPLER, step k,
// offset i*H*W*C) (x_T: step 0; update k: step k), so it is the same whatever the batch size
// and device.
//
// Hooks:
//   - guidance (ddx_sampling_set_guidance): classifier-free guidance with scale w for a
//     class-conditional model: one forward of the doubled batch (the labels, then the null
//     class model.num_classes for every sample: the networks' class tables have that extra
//     row, trained by train.label_dropout), and the sampler_step op reads both halves of the
//     output, eps = eps_u + w (eps_c - eps_u), inside the DDPM/DDIM update (no combine pass).
//     w == 1 runs the plain, undoubled forward; w == 0 is the unconditional model, one plain
//     forward with the null class.
//   - a post-step hook (ddx_sampling_set_post_step), called after each update with the new x;
//     what it returns replaces x (inpainting has its fused path below). It runs host code per
//     step, so a sampler with a hook runs eagerly (no CUDA graph).
//   - inpainting (ddx_sampling_set_inpaint): a known image and a mask per image; every update
//     is fused with the blend x_{t_prev} = m * q_sample(known, t_prev) + (1 - m) * x_{t_prev}
//     inside the sampler_step op (ddx_sampler_step_blend), so CUDA graphs stay on. The known
//     region's noise is Philox (seed, DDX_RNG_STREAM_INPAINT, update k, offset i*H*W*C): like
//     the sampler's noise it is the same for any batch size and device. The last update's
//     coefficients are (1, 0): where m == 1 the result IS the known image, bit for bit.
//   - RePaint (ddx_sampling_set_repaint, Lugmayr et al. 2022): the time schedule of
//     ddx_repaint_schedule; each jump back by J steps is one draw of q(x_{t+J} | x_t), run as a
//     sampler_step with no model call (its own captured graph on CUDA), noise keyed like an
//     update (stream DDX_RNG_STREAM_SAMPLER, step = the visit number).
//   - a conditioning input per image, [n, H, W, Cc] (a low-res image upsampled, ...),
//     concatenated to x_t on the channel axis before each forward: the model's in_channels is
//     out_channels + Cc.
#ifndef DDX_SAMPLER_H
#define DDX_SAMPLER_H

#ifdef __cplusplus
extern "C" {
#endif

#include "config/config.h"
#include "models/diffusion.h"
#include "models/model.h"
#include "runtime/ops.h"

typedef struct ddx_sample_opts {
    ddx_sampler sampler;
    int steps;               // DDIM steps (DDPM runs all diffusion.timesteps; this is not read)
    double eta;
    ddx_spacing spacing;
    uint64_t seed;
    int batch;               // images per forward pass
    // CUDA only: one denoising step (model forward + sampler_step) is captured per batch and
    // replayed for the later timesteps, each timestep's t, coefficients and noise step word
    // read from device memory. The same images bit for bit; off (or a failed capture) runs
    // every step eagerly.
    bool graphs;
} ddx_sample_opts;

typedef struct ddx_sampling ddx_sampling;

// Called after update k (1..steps) from timestep t to t_prev (-1: the last update) of the batch
// whose first image is image i0; x is [nb, H, W, C] on the sampler's context. Returns the x to
// keep (x itself, or a new tensor of x's shape made with the context's ops), NULL on error
// (with the context's status set).
typedef ddx_tensor *(*ddx_sampling_post_step_fn)(ddx_ctx *c, ddx_tensor *x, int k, int t, int t_prev, int64_t i0,
                                                 void *user);

// The options are checked here (steps, eta, batch; the model's channels). dev: the device of
// the model's parameter store.
ddx_status ddx_sampling_create(const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o, ddx_device dev,
                               ddx_sampling **out);
// The same, running in the caller's context c (its arena, stream and device) instead of one
// of its own: the trainer's sample grids reuse the training step's activation memory rather
// than hold a second arena. A run sets the context's mode flags (no tape, no dropout) and
// restores them afterwards; the caller must not use c while a run is in progress, and must
// keep c alive until ddx_sampling_free.
ddx_status ddx_sampling_create_in(const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o, ddx_ctx *c,
                                  ddx_sampling **out);
void ddx_sampling_free(ddx_sampling *sp);
// w: the guidance scale, finite and >= 0 (1: none; 0: unconditional); != 1 needs a
// class-conditional model.
ddx_status ddx_sampling_set_guidance(ddx_sampling *sp, double w);
void ddx_sampling_set_post_step(ddx_sampling *sp, ddx_sampling_post_step_fn fn, void *user);
// The number of timesteps a run visits (DDPM: diffusion.timesteps; DDIM: at most steps).
int ddx_sampling_steps(const ddx_sampling *sp);
// Inpainting for the next runs: known and mask are host f32 [n, H, W, C] for the n images of a
// run (read during ddx_sampling_run; the caller keeps them alive), known in [-1, 1], mask in
// [0, 1] (1 = keep, 0 = generate). Both NULL turns inpainting off.
ddx_status ddx_sampling_set_inpaint(ddx_sampling *sp, const float *known, const float *mask);
// RePaint resampling: resample r >= 1 passes over each segment of `jump` steps (r = 1: off).
ddx_status ddx_sampling_set_repaint(ddx_sampling *sp, int resample, int jump);
// The updates a run makes per batch (denoising steps plus RePaint jumps).
int ddx_sampling_visits(const ddx_sampling *sp);
// The RePaint time schedule over n sampler steps, as states: i = n-1 .. 0 is x at the i-th
// smallest of the sampler's timesteps (n-1: the start x_T), -1 the result. From state n-1 the
// schedule steps down one state at a time; on arriving (going down) at a state j that is a
// multiple of `jump` with j + jump < n, it jumps back up to j + jump, resample - 1 times per
// such j, and comes down again. Writes the states visited, the first n-1 and the last -1, into
// out (capacity cap; NULL to count) and returns how many there are (-1: bad arguments).
int64_t ddx_repaint_schedule(int n, int jump, int resample, int *out, int64_t cap);
// Device bytes the sampler holds now (x, labels, conditioning, step inputs, and its own
// activation arena's capacity; a borrowed context's arena is the caller's).
size_t ddx_sampling_bytes(const ddx_sampling *sp);
// Draws n images into out (host f32 [n, H, W, C]). y: n labels (class-conditional models:
// 0..num_classes-1, or num_classes, the null class, for an unconditional image) or NULL; cond: host f32 [n, H, W, Cc] or NULL (required when the model's in_channels exceeds its
// out_channels). progress may be NULL.
ddx_status ddx_sampling_run(ddx_sampling *sp, int n, const int32_t *y, const float *cond, float *out,
                            void (*progress)(int done, int total, void *arg), void *arg);
// n images of one class (0..num_classes-1; num_classes: the null class) with the sampler's
// guidance: what a per-class evaluation (FID of class K) draws its images through.
ddx_status ddx_sampling_run_class(ddx_sampling *sp, int n, int32_t cls, float *out,
                                  void (*progress)(int done, int total, void *arg), void *arg);
// Labels for a grid with one row per class: cols = max(1, n / K) images a row, image i of
// class (i / cols) mod K (so rows past the K-th start over at class 0); returns cols (0 when
// num_classes <= 0, leaving y alone).
int ddx_class_grid_labels(int n, int num_classes, int32_t *y);

// The same for images first .. first + n - 1 of the sequence a run of first + n images would
// draw (their noise keys), so a long evaluation can be drawn in resumable shards that give the
// images of one long run. y, cond and out hold the n images of this call.
#define DDX_SAMPLER_MAX_HWC ((int64_t)1 << 24)
ddx_status ddx_sampling_run_at(ddx_sampling *sp, int64_t first, int n, const int32_t *y, const float *cond, float *out,
                               void (*progress)(int done, int total, void *arg), void *arg);

#ifdef __cplusplus
}
#endif

#endif
