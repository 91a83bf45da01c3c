// AdamW + linear warmup + global grad-norm clipping + EMA over the parameter store's flat
// buffers (train/optim.h).
//
// The CPU loop reproduces the roundings of PyTorch's single-tensor AdamW on its AVX-512 CPU
// kernels (verified element by element against tests/data/optim/adamw.safetensors):
//   param.mul_(1 - lr*wd)                 p * decay
//   exp_avg.lerp_(grad, 1 - beta1)        fma(w1, g - m, m)          (Vectorized lerp uses fmadd)
//   exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)   fma(w2 * g, g, v * b2)   (contracted by the compiler)
//   denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
//   param.addcdiv_(exp_avg, denom, -step_size)   p + (neg_step * m) / denom
//   ema.mul_(d).add_(p, alpha=1 - d)      fma(p, 1 - d, ema * d)
// The only known difference is sqrt: PyTorch's CPU sqrt is not correctly rounded (about 20% of
// floats come out one ulp off) while ours is, as on the GPU.
//
// Padding elements (value, grad, m, v, ema all zero) stay exactly zero through the formulas,
// so the loops run over the whole flat range with no per-parameter work.
#include "train/optim.h"

#include <math.h>
#include <string.h>

#include "ddx_config.h"
#include "kernels/optim.h"
#include "runtime/cuda.h"

#if DDX_HAVE_CUDA
#include <pthread.h>

#include "runtime/cuda/check.h"
#endif

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define DDX_OPTIM_SSE 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define DDX_OPTIM_NEON 1
#endif

ddx_optim_cfg ddx_optim_cfg_from(const ddx_config *cfg) {
    ddx_optim_cfg o;
    o.lr = cfg->train.lr;
    o.beta1 = cfg->train.beta1;
    o.beta2 = cfg->train.beta2;
    o.eps = 1e-8;
    o.weight_decay = cfg->train.weight_decay;
    o.warmup_steps = cfg->train.warmup_steps;
    o.grad_clip = cfg->train.grad_clip;
    o.ema_decay = cfg->train.ema_decay;
    o.ema_warmup = cfg->train.ema_warmup;
    return o;
}

double ddx_optim_lr(const ddx_optim_cfg *o, int64_t step) {
    if (o->warmup_steps <= 0 || step >= o->warmup_steps) return o->lr;
    if (step <= 0) return 0.0;
    return o->lr * (double)step / (double)o->warmup_steps;
}

ddx_status ddx_optim_ema_init(ddx_param_store *ps) {
    if (!ps->finalized) return ddx_errorf(DDX_E_INTERNAL, "ddx_optim_ema_init: parameter store not finalized");
    return ddx_memcpy(ps->buf[DDX_PBUF_EMA], ps->device, ps->buf[DDX_PBUF_VALUE], ps->device, ps->numel * sizeof(float));
}

// ---- CPU ----------------------------------------------------------------------------------
// GCC vector extensions: plain C arithmetic on 4 floats that compiles to packed SSE/NEON
// instructions. (GCC will not auto-vectorise sqrtf while -fmath-errno is on, and the build
// may not change that flag, so the loop is vectorised by hand.)
typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

static inline v4f v4_load(const float *p) {
    v4f r;
    memcpy(&r, p, sizeof r);
    return r;
}
static inline void v4_store(float *p, v4f x) { memcpy(p, &x, sizeof x); }
static inline v4f v4_splat(float x) { return (v4f){x, x, x, x}; }

static inline v4f v4_sqrt(v4f x) {
#if defined(DDX_OPTIM_SSE)
    return (v4f)_mm_sqrt_ps((__m128)x);
#elif defined(DDX_OPTIM_NEON)
    return vsqrtq_f32(x);
#else
    for (int k = 0; k < 4; k++) x[k] = sqrtf(x[k]);
    return x;
#endif
}

// fma(a, b, c) for floats without an FMA instruction (the build targets baseline x86-64):
// a*b is exact in double (24+24 < 53 bits), the sum rounds once to double and then to float.
// That double rounding differs from a true fma only when the double sum lands exactly on a
// float rounding midpoint, about one case in 2^29.
static inline v4f v4_fma(v4f a, v4f b, v4f c) {
    const v4d r = __builtin_convertvector(a, v4d) * __builtin_convertvector(b, v4d) + __builtin_convertvector(c, v4d);
    return __builtin_convertvector(r, v4f);
}

// Sum of squares in double. Eight independent accumulators let the compiler keep several
// packed double adds in flight; their order is fixed, so the result is reproducible.
static double sumsq_cpu(const float *x, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)x[i + k] * (double)x[i + k];
    for (; i < n; i++) acc[i & 7] += (double)x[i] * (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

typedef struct adamw_consts {
    v4f clip, decay, w1, beta2, w2, bc2_sqrt, eps, neg_step, ema_keep, ema_mix;
} adamw_consts;

// Four elements; the CUDA kernel (kernels/optim.cu) performs the same roundings.
static inline void adamw4(const adamw_consts *c, bool clip, bool ema, float *p, const float *g, float *m,
                          float *v, float *e) {
    v4f G = v4_load(g);
    if (clip) G = G * c->clip;
    v4f P = v4_load(p) * c->decay;
    v4f M = v4_load(m);
    M = v4_fma(c->w1, G - M, M);
    const v4f V = v4_fma(c->w2 * G, G, v4_load(v) * c->beta2);
    const v4f denom = v4_sqrt(V) / c->bc2_sqrt + c->eps;
    P = P + (c->neg_step * M) / denom;
    v4_store(p, P);
    v4_store(m, M);
    v4_store(v, V);
    if (ema) v4_store(e, v4_fma(P, c->ema_mix, v4_load(e) * c->ema_keep));
}

static void adamw_cpu(float *p, const float *g, float *m, float *v, float *e, size_t n, const ddx_k_adamw_args *a) {
    const adamw_consts c = {v4_splat(a->clip),  v4_splat(a->decay),    v4_splat(a->w1),  v4_splat(a->beta2),
                            v4_splat(a->w2),    v4_splat(a->bc2_sqrt), v4_splat(a->eps), v4_splat(a->neg_step),
                            v4_splat(a->ema_keep), v4_splat(a->ema_mix)};
    const bool clip = a->apply_clip != 0, ema = a->apply_ema != 0;
    size_t i = 0;
    // Branches on the loop-invariant flags are hoisted by the compiler (unswitching).
    for (; i + 4 <= n; i += 4) adamw4(&c, clip, ema, p + i, g + i, m + i, v + i, e + i);
    if (i < n) {
        // The store's buffers are whole multiples of 64 elements, so this only runs for
        // other callers; pad the tail into zeroed 4-vectors.
        float tp[4] = {0}, tg[4] = {0}, tm[4] = {0}, tv[4] = {0}, te[4] = {0};
        const size_t r = n - i;
        memcpy(tp, p + i, r * sizeof(float));
        memcpy(tg, g + i, r * sizeof(float));
        memcpy(tm, m + i, r * sizeof(float));
        memcpy(tv, v + i, r * sizeof(float));
        if (ema) memcpy(te, e + i, r * sizeof(float));
        adamw4(&c, clip, ema, tp, tg, tm, tv, te);
        memcpy(p + i, tp, r * sizeof(float));
        memcpy(m + i, tm, r * sizeof(float));
        memcpy(v + i, tv, r * sizeof(float));
        if (ema) memcpy(e + i, te, r * sizeof(float));
    }
}

// ---- CUDA ---------------------------------------------------------------------------------
#if DDX_HAVE_CUDA
// ddx_optim_step takes no context, yet its kernels must be ordered after backward on the
// process's shared stream: a context of our own, created on first use, shares that stream.
// It lives until the process exits.
static pthread_mutex_t g_cuda_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ddx_cuda_ctx *g_cuda_cc;

static ddx_status optim_stream(void **out) {
    ddx_status st = DDX_OK;
    pthread_mutex_lock(&g_cuda_mu);
    if (!g_cuda_cc) st = ddx_cuda_ctx_create(&g_cuda_cc);
    *out = st == DDX_OK ? (void *)ddx_cuda_stream(g_cuda_cc) : NULL;
    pthread_mutex_unlock(&g_cuda_mu);
    return st;
}

static ddx_status sumsq_cuda(const ddx_param_store *ps, double *out) {
    void *s;
    DDX_TRY(optim_stream(&s));
    DDX_CUDA_CHECK(ddx_k_grad_sumsq(ps->buf[DDX_PBUF_GRAD], (int64_t)ps->numel, out, s));
    return DDX_OK;
}

static ddx_status adamw_cuda(ddx_param_store *ps, const ddx_k_adamw_args *a) {
    void *s;
    DDX_TRY(optim_stream(&s));
    DDX_CUDA_CHECK(ddx_k_adamw_step(ps->buf[DDX_PBUF_VALUE], ps->buf[DDX_PBUF_GRAD], ps->buf[DDX_PBUF_ADAM_M],
                                    ps->buf[DDX_PBUF_ADAM_V], ps->buf[DDX_PBUF_EMA], (int64_t)ps->numel, a, s));
    return DDX_OK;
}
static ddx_status step_dev_cuda(ddx_param_store *ps, const ddx_optim_cfg *o, const ddx_k_adamw_args *a_dev,
                                ddx_k_train_stats *stats_dev, const float *loss_dev, const uint32_t *step_dev) {
    void *s;
    DDX_TRY(optim_stream(&s));
    DDX_CUDA_CHECK(ddx_k_grad_sumsq_dev(ps->buf[DDX_PBUF_GRAD], (int64_t)ps->numel, s));
    DDX_CUDA_CHECK(ddx_k_train_stats_update(stats_dev, loss_dev, step_dev, s));
    DDX_CUDA_CHECK(ddx_k_adamw_step_dev(ps->buf[DDX_PBUF_VALUE], ps->buf[DDX_PBUF_GRAD], ps->buf[DDX_PBUF_ADAM_M],
                                        ps->buf[DDX_PBUF_ADAM_V], ps->buf[DDX_PBUF_EMA], (int64_t)ps->numel, a_dev,
                                        o->ema_decay > 0.0, o->grad_clip > 0.0, (float)o->grad_clip, s));
    return DDX_OK;
}
#else
static ddx_status step_dev_cuda(ddx_param_store *ps, const ddx_optim_cfg *o, const ddx_k_adamw_args *a_dev,
                                ddx_k_train_stats *stats_dev, const float *loss_dev, const uint32_t *step_dev) {
    (void)ps, (void)o, (void)a_dev, (void)stats_dev, (void)loss_dev, (void)step_dev;
    return ddx_errorf(DDX_E_UNSUPPORTED, "optimizer step on CUDA parameters: %s", ddx_cuda_describe());
}
static ddx_status sumsq_cuda(const ddx_param_store *ps, double *out) {
    (void)ps;
    *out = 0.0;
    return ddx_errorf(DDX_E_UNSUPPORTED, "optimizer step on CUDA parameters: %s", ddx_cuda_describe());
}
static ddx_status adamw_cuda(ddx_param_store *ps, const ddx_k_adamw_args *a) {
    (void)ps;
    (void)a;
    return ddx_errorf(DDX_E_UNSUPPORTED, "optimizer step on CUDA parameters: %s", ddx_cuda_describe());
}
#endif

// ---- step ---------------------------------------------------------------------------------
static ddx_status check_cfg(const ddx_optim_cfg *o, int64_t step) {
    if (step < 1) return ddx_errorf(DDX_E_INPUT, "optimizer step %lld: steps are 1-based", (long long)step);
    if (!(o->lr >= 0.0) || !(o->beta1 >= 0.0 && o->beta1 < 1.0) || !(o->beta2 >= 0.0 && o->beta2 < 1.0) ||
        !(o->eps > 0.0) || !(o->weight_decay >= 0.0) || !(o->grad_clip >= 0.0) ||
        !(o->ema_decay >= 0.0 && o->ema_decay < 1.0))
        return ddx_errorf(DDX_E_INPUT,
                          "optimizer settings out of range (lr %g, beta1 %g, beta2 %g, eps %g, weight_decay %g, "
                          "grad_clip %g, ema_decay %g): betas and ema_decay must lie in [0, 1), eps > 0, the rest >= 0",
                          o->lr, o->beta1, o->beta2, o->eps, o->weight_decay, o->grad_clip, o->ema_decay);
    return DDX_OK;
}

static ddx_k_adamw_args step_args(const ddx_optim_cfg *o, int64_t step, double norm) {
    // Early in a run the EMA would mostly hold the random init; the warmup makes it follow the
    // weights until (1 + step) / (10 + step) exceeds the configured decay.
    double ema_decay = o->ema_decay;
    if (o->ema_warmup && ema_decay > 0.0) ema_decay = fmin(ema_decay, (1.0 + (double)step) / (10.0 + (double)step));
    return ddx_k_adamw_args_make(ddx_optim_lr(o, step), o->beta1, o->beta2, o->eps, o->weight_decay, step, o->grad_clip,
                                 norm, ema_decay);
}

ddx_status ddx_optim_dev_args(const ddx_optim_cfg *o, int64_t step, ddx_k_adamw_args *a) {
    DDX_TRY(check_cfg(o, step));
    *a = step_args(o, step, 0.0);
    return DDX_OK;
}

ddx_status ddx_optim_step_dev(ddx_param_store *ps, const ddx_optim_cfg *o, const ddx_k_adamw_args *a_dev,
                              ddx_k_train_stats *stats_dev, const float *loss_dev, const uint32_t *step_dev) {
    if (!ps->finalized) return ddx_errorf(DDX_E_INTERNAL, "ddx_optim_step_dev: parameter store not finalized");
    if (ps->device != DDX_CUDA) return ddx_errorf(DDX_E_INTERNAL, "ddx_optim_step_dev: CUDA parameter stores only");
    return step_dev_cuda(ps, o, a_dev, stats_dev, loss_dev, step_dev);
}

ddx_status ddx_optim_step(ddx_param_store *ps, const ddx_optim_cfg *o, int64_t step, double *grad_norm) {
    if (grad_norm) *grad_norm = 0.0;
    if (!ps->finalized) return ddx_errorf(DDX_E_INTERNAL, "ddx_optim_step: parameter store not finalized");
    DDX_TRY(check_cfg(o, step));
    const bool cuda = ps->device == DDX_CUDA;

    double sumsq;
    if (cuda)
        DDX_TRY(sumsq_cuda(ps, &sumsq));
    else
        sumsq = sumsq_cpu(ps->buf[DDX_PBUF_GRAD], ps->numel);
    const double norm = sqrt(sumsq);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return ddx_errorf(DDX_E_INPUT, "grad norm is %s at step %lld: lower train.lr or check the data",
                          isnan(norm) ? "nan" : "inf", (long long)step);

    const ddx_k_adamw_args a = step_args(o, step, norm);
    if (cuda) return adamw_cuda(ps, &a);
    adamw_cpu(ps->buf[DDX_PBUF_VALUE], ps->buf[DDX_PBUF_GRAD], ps->buf[DDX_PBUF_ADAM_M], ps->buf[DDX_PBUF_ADAM_V],
              ps->buf[DDX_PBUF_EMA], ps->numel, &a);
    return DDX_OK;
}
