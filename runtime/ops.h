// The op registry, the autograd tape and the op API that model code calls.
//
// Every op is listed once in DDX_OPS; that list drives the enum, the names, the dispatch
// tables of both backends (runtime/registry.c, runtime/cuda/ops/table.c: functions found by
// name, see DDX_BWD_PICK) and the test driver's coverage check (an op without a test case
// fails the `cpu` suite). Each op belongs to one family, whose stem names its files:
// runtime/ops/<family>.c (front-end + CPU reference), runtime/cuda/ops/<family>.c (CUDA
// glue), kernels/<family>.{cu,h} and tests/cases_<family>.c (docs/ARCHITECTURE.md lists them).
#ifndef DDX_OPS_H
#define DDX_OPS_H

#ifdef __cplusplus
extern "C" {
#endif

#include "tensor.h"

// X(ENUM, name, n_inputs, differentiable)   differentiable: 0 = no backward is ever needed
#define DDX_OPS(X)                         \
    X(FILL, fill, 0, 0)                    \
    X(COPY, copy, 1, 1)                    \
    X(CAST, cast, 1, 1)                    \
    X(RESHAPE, reshape, 1, 1)              \
    X(ADD, add, 2, 1)                      \
    X(MUL, mul, 2, 1)                      \
    X(SCALE, scale, 1, 1)                  \
    X(SILU, silu, 1, 1)                    \
    X(RELU, relu, 1, 1)                    \
    X(CONCAT, concat, 2, 1)                \
    X(CONV2D, conv2d, 4, 1)                \
    X(LINEAR, linear, 3, 1)                \
    X(GROUP_NORM, group_norm, 3, 1)        \
    X(UPSAMPLE2X, upsample2x, 1, 1)        \
    X(POOL2X, pool2x, 1, 1)                \
    X(POOL2D, pool2d, 1, 1)                \
    X(RESIZE, resize, 1, 1)                \
    X(ATTENTION, attention, 3, 1)          \
    X(EMBEDDING, embedding, 2, 1)          \
    X(TIMESTEP_EMB, timestep_emb, 1, 0)    \
    X(DROPOUT, dropout, 1, 1)              \
    X(MSE_LOSS, mse_loss, 2, 1)            \
    X(SUM, sum, 1, 1)                      \
    X(MEAN, mean, 1, 1)                    \
    X(RANDN, randn, 0, 0)                  \
    X(Q_SAMPLE, q_sample, 2, 0)            \
    X(SAMPLER_STEP, sampler_step, 4, 0)    \
    X(SAMPLER_STEP_MS, sampler_step_ms, 4, 0)

typedef enum ddx_op {
#define DDX_X_ENUM(E, n, ni, d) DDX_OP_##E,
    DDX_OPS(DDX_X_ENUM)
#undef DDX_X_ENUM
    DDX_OP_COUNT
} ddx_op;

const char *ddx_op_name(ddx_op op);
ddx_op ddx_op_from_name(const char *name);   // DDX_OP_COUNT if unknown
bool ddx_op_differentiable(ddx_op op);

// ---- per-op parameters -------------------------------------------------------------------
typedef struct ddx_conv2d_params {
    int stride;                           // 1 or 2
    int pad_top, pad_bottom, pad_left, pad_right;   // asymmetric allowed (TF-style "same" stride 2)
} ddx_conv2d_params;

typedef enum ddx_upsample_mode { DDX_UPSAMPLE_NEAREST = 0, DDX_UPSAMPLE_BILINEAR } ddx_upsample_mode;
typedef enum ddx_pool_mode { DDX_POOL_MAX = 0, DDX_POOL_AVG } ddx_pool_mode;

// pool2d: PyTorch's max_pool2d / avg_pool2d (floor mode, dilation 1) with symmetric padding
// pad_h, pad_w <= half the kernel (PyTorch's limit: every window holds an input pixel). Max
// pads with -inf; avg divides by kh*kw (count_include_pad) or by the window's pixels inside the
// input (count_include_pad = false, TensorFlow's "SAME" average that Inception needs).
typedef struct ddx_pool2d_params {
    ddx_pool_mode mode;
    int kh, kw, stride, pad_h, pad_w;
    bool count_include_pad;
} ddx_pool2d_params;

typedef struct ddx_timestep_emb_params {
    int dim;                    // output width; must be even
    float freq_shift;           // diffusers: downscale_freq_shift (1 for google/ddpm-cifar10-32)
    bool flip_sin_to_cos;       // false: [sin, cos]; true: [cos, sin]
    float max_period;           // 10000
} ddx_timestep_emb_params;

// Which Philox numbers a draw uses: element e of the tensor is element (offset + e) of the
// fill keyed by (seed, stream, step); see kernels/philox.h. `offset` lets a batch of samples
// draw the same noise per sample whatever the batch size (offset = first sample * H*W*C).
// While the context's step_dev is set (CUDA graphs), the front-ends replace step with
// DDX_RNG_STEP_ON_DEVICE and the kernels read the step word from step_dev when they run; a
// kernel given the sentinel without step_dev refuses it rather than draw the wrong noise.
#define DDX_RNG_STEP_ON_DEVICE 0xFFFFFFFFu
typedef struct ddx_rng_key {
    uint64_t seed;
    uint32_t stream;
    uint32_t step;
    uint64_t offset;
} ddx_rng_key;

// One fused sampler update with coefficients precomputed on the host (in double):
//   x0   = a * x_t + b * out        (the model output `out` read as eps, x0 or v)
//   x0   = clamp(x0, -1, 1)         when clip
//   eps  = f * x_t + g * out
//   prev = c * x0 + d * x_t + e * eps + sigma * z,   z ~ N(0, 1) from `key` (not drawn when sigma == 0)
// coefs_dev (CUDA only, with the context's step_dev set): the kernel reads a, b, f, g, c, d, e, sigma, clip
// (0.0f / 1.0f) from these 9 device floats when it runs, so one captured graph serves every
// timestep; the host values are then ignored (whoever writes the buffer checks them).
// guided (classifier-free guidance folded into the update): `out` is the model output of the
// doubled batch, [2N, ...] for x_t [N, ...], rows 0..N-1 conditional (eps_c), N..2N-1
// unconditional (eps_u), and the update reads out_i = eps_u + guidance * (eps_c - eps_u)
// (spelled u + w * (c + -u) in correctly rounded steps) in place of `out`: no combine pass.
typedef struct ddx_sampler_step_params {
    float a, b, f, g, c, d, e, sigma;
    bool clip;
    ddx_rng_key key;
    const float *coefs_dev;
    // Inpainting blend (ddx_sampler_step_blend only; the plain op ignores these):
    //   kn   = kc0 * known + kc1 * zk,  zk ~ N(0, 1) keyed (key.seed, known_stream, key.step,
    //          key.offset) (not drawn when kc1 == 0), i.e. q_sample(known, t_prev)
    //   prev = m * kn + (1 - m) * prev,  exactly kn where m == 1 and prev where m == 0
    // known_coefs_dev (CUDA graphs, with coefs_dev): kc0, kc1 read from these 2 device floats.
    float kc0, kc1;
    uint32_t known_stream;
    const float *known_coefs_dev;
    bool guided;
    float guidance;
} ddx_sampler_step_params;

// One update of the multistep / two-stage samplers (DPM-Solver++ 2M/3M, Heun, Euler ancestral;
// models/diffusion.h's ddx_sampler_plan), coefficients precomputed on the host in double:
//   m    = out, or guided: out is [2N, ...] (N conditional rows, then N unconditional ones)
//          and m = out_u + w (out_c - out_u)
//   D    = a * x_t + b * m           (the x0 prediction; clamped to [-1, 1] when clip)
//   prev = cx * x_t + cd * D + c1 * h1 + c2 * h2 + sigma * z   (h1 / h2 terms only when given;
//          z ~ N(0, 1) from `key`, not drawn when sigma == 0)
// The output is [2N, ...]: rows 0..N-1 prev, rows N..2N-1 D (the sampler's next history
// entry), so one pass over memory serves both. coefs_dev (CUDA graphs, with the context's
// step_dev): a, b, cx, cd, c1, c2, sigma, clip (0.0f / 1.0f) read from these 8 device floats.
typedef struct ddx_sampler_ms_params {
    float a, b, cx, cd, c1, c2, sigma;
    bool clip;
    bool guided;
    float w;
    ddx_rng_key key;
    const float *coefs_dev;
} ddx_sampler_ms_params;

typedef union ddx_op_params {
    struct { float value; } fill;
    struct { float alpha, beta; } scale;                  // y = alpha * x + beta
    ddx_conv2d_params conv2d;
    struct { int groups; float eps; bool fuse_silu; } group_norm;
    struct { ddx_upsample_mode mode; } upsample2x;
    struct { ddx_pool_mode mode; } pool2x;
    ddx_pool2d_params pool2d;
    struct { int ho, wo; } resize;                        // output size
    struct { int heads; float scale; } attention;         // scale 0 means 1/sqrt(head_dim)
    ddx_timestep_emb_params timestep_emb;
    struct { float p; uint64_t seed; uint32_t stream; uint64_t counter; uint64_t offset; } dropout;   // offset: first element's Philox index
    struct { ddx_dtype to; } cast;
    ddx_rng_key randn;
    ddx_rng_key q_sample;
    ddx_sampler_step_params sampler_step;
    ddx_sampler_ms_params sampler_step_ms;
} ddx_op_params;

// ---- the tape ----------------------------------------------------------------------------
#define DDX_MAX_INPUTS 4
#define DDX_MAX_SAVED 3

typedef struct ddx_node {
    ddx_op op;
    int n_inputs;
    ddx_tensor *in[DDX_MAX_INPUTS];    // NULL for an absent optional input (e.g. no bias)
    ddx_tensor *out;
    ddx_tensor *saved[DDX_MAX_SAVED];  // backend-owned, from the activation arena
    ddx_op_params p;
} ddx_node;

struct ddx_meta_block;
struct ddx_cuda_ctx;

// Everything one forward/backward pass needs. Ops never fail loudly in model code: an error
// makes the context's status sticky, the op returns NULL, and every later op given a NULL
// input returns NULL too; the caller checks ddx_ctx_status() once at the end.
typedef struct ddx_ctx {
    ddx_device device;
    ddx_arena act;                     // activations, saved tensors, activation grads
    struct ddx_meta_block *meta;       // host memory for tensor headers, reset with the step
    ddx_node *tape;
    size_t n_nodes, cap_nodes;
    bool grad_enabled;                 // record the tape
    bool training;                     // dropout active
    bool tf32;                         // CUDA: f32 convs may use TF32 tensor cores (linear: fp32 SGEMM)
    ddx_status status;                 // sticky first error
    uint64_t seed;                     // run seed, keys dropout noise
    uint64_t step;                     // training step, keys dropout noise
    uint32_t rng_calls;                // dropout calls in this step; a distinct stream each
    struct ddx_cuda_ctx *cuda;         // stream and cuBLAS handle (NULL on CPU)
    // CUDA graphs (NULL otherwise): a device address holding the step word that every Philox-
    // keyed op of the context uses instead of its host step, read when the kernel runs, so a
    // step captured once replays with each step's noise. Set only around a captured body.
    const uint32_t *step_dev;
    // Data parallelism: the global index of this batch's first sample, so dropout draws each
    // sample's mask by its global index (a rank's share of the batch draws what a 1-rank step
    // draws for those rows). 0 for a whole batch.
    uint64_t sample0;
    // Called after each tape node's backward (skipped nodes too), in tape order reversed: the
    // gradient all-reduce starts a bucket as soon as its last parameter grad is final.
    void (*bwd_hook)(void *arg, const ddx_node *n);
    void *bwd_hook_arg;
} ddx_ctx;

ddx_status ddx_ctx_init(ddx_ctx *c, ddx_device dev, size_t act_bytes);
void ddx_ctx_free(ddx_ctx *c);
// Clears the tape and the activation arena (keeps the memory), rng_calls = 0.
ddx_status ddx_ctx_reset(ddx_ctx *c);
ddx_status ddx_ctx_status(const ddx_ctx *c);
// The context's mode flags, set only through these (the ops read the fields).
// grad: record the tape (off for inference: no tape, no saved tensors).
void ddx_ctx_set_grad(ddx_ctx *c, bool on);
// training: dropout active.
void ddx_ctx_set_training(ddx_ctx *c, bool on);
// tf32: CUDA f32 convs may use the TF32 tensor cores (linears stay fp32 SGEMM; the CPU ignores it).
void ddx_ctx_set_tf32(ddx_ctx *c, bool on);
// The run seed and the training step that key dropout noise.
void ddx_ctx_set_seed(ddx_ctx *c, uint64_t seed);
void ddx_ctx_set_step(ddx_ctx *c, uint64_t step);
// CUDA graphs: the device step word the context's Philox-keyed ops read instead of `step`
// while a step is captured; NULL turns it off (ddx_ctx_reset does too).
void ddx_ctx_set_step_dev(ddx_ctx *c, const uint32_t *step_dev);
// The global index of the batch's first sample (dropout keys by it; ddx_ctx_reset keeps it).
void ddx_ctx_set_sample0(ddx_ctx *c, uint64_t sample0);
// The per-node backward hook (NULL: none); kept across resets until changed.
void ddx_ctx_set_bwd_hook(ddx_ctx *c, void (*hook)(void *arg, const ddx_node *n), void *arg);
// Records `st` (with the current error message) as the sticky status if none is set yet.
void ddx_ctx_fail(ddx_ctx *c, ddx_status st);

// A new tensor in the activation arena (uninitialised; poisoned in debug mode).
ddx_tensor *ddx_new(ddx_ctx *c, ddx_dtype dt, int ndim, const int64_t *shape);
ddx_tensor *ddx_new_like(ddx_ctx *c, const ddx_tensor *t);
// A tensor header in the context's host meta memory, lives until reset.
ddx_tensor *ddx_meta_tensor(ddx_ctx *c);
// The grad of t, allocated from the arena and zeroed if it does not exist yet.
ddx_tensor *ddx_grad_of(ddx_ctx *c, ddx_tensor *t);

// Walks the tape in reverse. `loss` must be a 1-element f32 tensor; its grad is seeded with
// `seed_grad` (usually 1). Parameter grads accumulate into their store buffers.
ddx_status ddx_backward(ddx_ctx *c, ddx_tensor *loss, float seed_grad);
// Same, but seeds out->grad with a given tensor of out's shape (used by the test driver).
ddx_status ddx_backward_from(ddx_ctx *c, ddx_tensor *out, const ddx_tensor *grad_out);

// ---- op API ------------------------------------------------------------------------------
// Shapes in comments are NHWC; "[N, L, C]" tensors are 3-D ([N, H*W, C] reshaped for free).
ddx_tensor *ddx_fill(ddx_ctx *c, ddx_dtype dt, int ndim, const int64_t *shape, float value);
ddx_tensor *ddx_copy(ddx_ctx *c, ddx_tensor *x);
ddx_tensor *ddx_cast(ddx_ctx *c, ddx_tensor *x, ddx_dtype to);         // f32 <-> bf16
ddx_tensor *ddx_reshape(ddx_ctx *c, ddx_tensor *x, int ndim, const int64_t *shape);
// b broadcasts into a: each dim of b is 1 or equal to a's (e.g. [N,1,1,C] or [1,1,1,C]).
ddx_tensor *ddx_add(ddx_ctx *c, ddx_tensor *a, ddx_tensor *b);
ddx_tensor *ddx_mul(ddx_ctx *c, ddx_tensor *a, ddx_tensor *b);
ddx_tensor *ddx_scale(ddx_ctx *c, ddx_tensor *x, float alpha, float beta);
ddx_tensor *ddx_silu(ddx_ctx *c, ddx_tensor *x);
ddx_tensor *ddx_relu(ddx_ctx *c, ddx_tensor *x);
ddx_tensor *ddx_concat(ddx_ctx *c, ddx_tensor *a, ddx_tensor *b);      // along the last dim
// x [N,H,W,Ci], w [Co,KH,KW,Ci] (OHWI), bias [Co] or NULL -> [N,Ho,Wo,Co]
ddx_tensor *ddx_conv2d(ddx_ctx *c, ddx_tensor *x, ddx_tensor *w, ddx_tensor *bias, ddx_conv2d_params p);
// conv2d(x, w, bias) + res in one op: res (the output's shape and dtype) is added as the output
// is stored, so a ResNet block's residual add costs one read of res instead of a pass of its
// own; res's gradient is the output's.
ddx_tensor *ddx_conv2d_add(ddx_ctx *c, ddx_tensor *x, ddx_tensor *w, ddx_tensor *bias, ddx_conv2d_params p,
                           ddx_tensor *res);
// x [..., In], w [Out, In] (PyTorch layout), bias [Out] or NULL -> [..., Out]
ddx_tensor *ddx_linear(ddx_ctx *c, ddx_tensor *x, ddx_tensor *w, ddx_tensor *bias);
// x [N,H,W,C] (or [N,L,C]), gamma/beta [C]; optional SiLU after the affine.
ddx_tensor *ddx_group_norm(ddx_ctx *c, ddx_tensor *x, ddx_tensor *gamma, ddx_tensor *beta, int groups, float eps, bool fuse_silu);
ddx_tensor *ddx_upsample2x(ddx_ctx *c, ddx_tensor *x, ddx_upsample_mode mode);   // [N,H,W,C] -> [N,2H,2W,C]
ddx_tensor *ddx_pool2x(ddx_ctx *c, ddx_tensor *x, ddx_pool_mode mode);           // [N,H,W,C] -> [N,H/2,W/2,C]
// [N,H,W,C] -> [N,(H+2ph-kh)/s+1,(W+2pw-kw)/s+1,C] (see ddx_pool2d_params)
ddx_tensor *ddx_pool2d(ddx_ctx *c, ddx_tensor *x, ddx_pool2d_params p);
// [N,H,W,C] -> [N,1,1,C]: the mean over H*W (pool2d avg with the whole image as the window).
ddx_tensor *ddx_global_avg_pool(ddx_ctx *c, ddx_tensor *x);
// [N,H,W,C] -> [N,ho,wo,C]: F.interpolate(size=(ho, wo), mode='bilinear', align_corners=False),
// no antialiasing, growing or shrinking: src = max(0, (dst + 0.5) * in/out - 0.5).
ddx_tensor *ddx_resize_bilinear(ddx_ctx *c, ddx_tensor *x, int ho, int wo);
// q, k, v [N, L, C] with C = heads * head_dim -> [N, L, C]; softmax(q k^T * scale) v per head.
ddx_tensor *ddx_attention(ddx_ctx *c, ddx_tensor *q, ddx_tensor *k, ddx_tensor *v, int heads, float scale);
// idx [N] i32, table [V, D] -> [N, D]
ddx_tensor *ddx_embedding(ddx_ctx *c, ddx_tensor *idx, ddx_tensor *table);
// t [N] f32 -> [N, dim]: diffusers get_timestep_embedding.
ddx_tensor *ddx_timestep_emb(ddx_ctx *c, ddx_tensor *t, ddx_timestep_emb_params p);
// Inverted dropout, mask from Philox keyed by (ctx seed, stream = rng_calls, ctx step); identity when !training or p == 0.
ddx_tensor *ddx_dropout(ddx_ctx *c, ddx_tensor *x, float p);
ddx_tensor *ddx_mse_loss(ddx_ctx *c, ddx_tensor *pred, ddx_tensor *target);       // -> [1], mean
ddx_tensor *ddx_sum(ddx_ctx *c, ddx_tensor *x);                                  // -> [1]
ddx_tensor *ddx_mean(ddx_ctx *c, ddx_tensor *x);                                 // -> [1]
// Standard normal noise from Philox (identical bits on every device): no inputs, no grad.
ddx_tensor *ddx_randn(ddx_ctx *c, ddx_dtype dt, int ndim, const int64_t *shape, ddx_rng_key key);
// Forward process: x0 [N,H,W,C], coef [N,2] f32 = (sqrt(abar_t), sqrt(1 - abar_t)) per sample
// -> x_t = coef0 * x0 + coef1 * eps with eps = ddx_randn(x0's shape, key): the noise is drawn
// inside, so the training target is ddx_randn with the same key (no grad).
ddx_tensor *ddx_q_sample(ddx_ctx *c, ddx_tensor *x0, ddx_tensor *coef, ddx_rng_key key);
// One DDPM/DDIM update: x_t, out [N,H,W,C] -> x_prev (see ddx_sampler_step_params; no grad).
ddx_tensor *ddx_sampler_step(ddx_ctx *c, ddx_tensor *x_t, ddx_tensor *out, const ddx_sampler_step_params *p);
// The same update fused with the inpainting blend (see ddx_sampler_step_params): known (the
// image to keep, in [-1, 1]) and mask (1 = keep, 0 = generate, values in [0, 1]) have x_t's
// shape. One pass over memory, so inpainting costs what plain sampling costs and keeps CUDA graphs.
ddx_tensor *ddx_sampler_step_blend(ddx_ctx *c, ddx_tensor *x_t, ddx_tensor *out, ddx_tensor *known, ddx_tensor *mask,
                                   const ddx_sampler_step_params *p);
// One multistep / two-stage sampler update (see ddx_sampler_ms_params; no grad): x_t
// [N, ...], out [N, ...] ([2N, ...] guided), history h1, h2 of x_t's shape or NULL (h2 only
// with h1) -> [2N, ...]: the new x, then the x0 prediction D.
ddx_tensor *ddx_sampler_step_ms(ddx_ctx *c, ddx_tensor *x_t, ddx_tensor *out, ddx_tensor *h1, ddx_tensor *h2,
                                const ddx_sampler_ms_params *p);

// ---- backends ----------------------------------------------------------------------------
// A forward writes every element of n->out (already allocated with its final shape; poisoned
// with NaN under test) and may allocate n->saved[] from the arena. A backward reads
// n->out->grad and, for each input with requires_grad, adds that input's gradient into
// ddx_in_grad(c, n, i) (zeroed on first use; a parameter's grad is its slot in the store's
// gradient buffer). Where zeroing and adding would cost a pass, a backward may write instead,
// but only a grad that does not exist yet (op_impl.h): ddx_grad_take makes dy's buffer the
// input's grad (add on both backends; conv2d_add's residual on CUDA), ddx_grad_fresh hands out
// an uninitialised grad that the kernel writes in full (CUDA: add's other input as a copy,
// conv2d's dgrad, group_norm's dx), and reshape aliases dy as its input's first grad. An input
// whose grad already exists (used twice, or a parameter) is always added into.
typedef ddx_status (*ddx_fwd_fn)(ddx_ctx *c, ddx_node *n);
typedef ddx_status (*ddx_bwd_fn)(ddx_ctx *c, ddx_node *n);

typedef struct ddx_backend_op {
    ddx_fwd_fn fwd;
    ddx_bwd_fn bwd;
} ddx_backend_op;

// Dispatch tables, indexed by op, generated from DDX_OPS: every op has a forward on each
// backend (a missing function fails the link) and a backward when it is differentiable
// (NULL otherwise). A build without CUDA has an all-NULL CUDA table (runtime/cuda_none.c), and
// dispatch fails with DDX_E_UNSUPPORTED naming the op.
extern const ddx_backend_op ddx_cpu_ops[DDX_OP_COUNT];
extern const ddx_backend_op ddx_cuda_ops[DDX_OP_COUNT];

// Tables generated from DDX_OPS name each op's functions by convention: <backend>_<op>_fwd
// and, when the op is differentiable (d = 1), <backend>_<op>_bwd; a non-differentiable op's
// backward entry is NULL and its function need not exist.
#define DDX_BWD_PICK_0(fn) NULL
#define DDX_BWD_PICK_1(fn) fn
#define DDX_BWD_PICK(d, fn) DDX_BWD_PICK_##d(fn)
#define DDX_BWD_DECL_0(decl)
#define DDX_BWD_DECL_1(decl) decl
#define DDX_BWD_DECL(d, decl) DDX_BWD_DECL_##d(decl)

// CPU op implementations, one per registry entry, in runtime/ops/<family>.c. The CUDA ones
// (ddx_cuda_<op>_fwd/_bwd) are declared in runtime/cuda/ops/backend.h.
#define DDX_X_DECL(E, n, ni, d)                                  \
    ddx_status ddx_cpu_##n##_fwd(ddx_ctx *c, ddx_node *nd);      \
    DDX_BWD_DECL(d, ddx_status ddx_cpu_##n##_bwd(ddx_ctx *c, ddx_node *nd);)
DDX_OPS(DDX_X_DECL)
#undef DDX_X_DECL

#ifdef __cplusplus
}
#endif

#endif
