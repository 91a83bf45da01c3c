// The optimizer (train/optim.h): AdamW + warmup + global grad-norm clipping + EMA.
//
// Default (CPU): three steps against PyTorch (tests/data/optim/adamw.safetensors, made by
// tests/reference/make_optim_fixtures.py) with and without weight decay, every parameter's
// value, m, v and EMA and the returned norm compared after each step; plus the warmup
// schedule, padding staying zero, grads left untouched, a NaN grad refused with nothing
// changed, ema_decay 0 leaving the EMA alone, grad_clip 0 never clipping, bad arguments.
//
// --cuda: the same fixture steps and a larger random store (odd sizes, about 1M elements) run on
// CPU and CUDA side by side, compared after every step; the NaN refusal and the norm's
// run-to-run determinism on the device. Exits 77 without a GPU.
//
// --bench N [--cuda]: ms per ddx_optim_step over N parameters on the CPU or GPU (not a test).
//
// Usage: test_optim [--cuda] [--bench N] [FIXTURE]   (default data/optim/adamw.safetensors, run from tests/)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/cuda.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"
#include "train/optim.h"

#include "check.h"

#define N_PARAMS 5
static const char *const PNAMES[N_PARAMS] = {"a", "b", "c", "d", "e"};

// ---- helpers ----------------------------------------------------------------------------
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {   // uniform in [-1, 1)
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 40) / (double)(1ull << 23) - 1.0);
}

static ddx_optim_cfg cfg_default(void) {
    return (ddx_optim_cfg){.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01,
                           .warmup_steps = 2, .grad_clip = 1.0, .ema_decay = 0.9};
}

// A store with the given shapes on `dev`; returns false (after a FAIL line) on error.
static bool store_make(ddx_param_store *s, ddx_device dev, int n, const char *const *names, const int *ndims,
                       const int64_t (*shapes)[4]) {
    ddx_param_store_init(s, dev);
    for (int i = 0; i < n; i++) {
        if (!ddx_param_add(s, names[i], ndims[i], shapes[i])) {
            CHECK(0, "ddx_param_add %s: %s", names[i], ddx_last_error());
            return false;
        }
    }
    ddx_status st = ddx_param_store_finalize(s);
    CHECK(st == DDX_OK, "finalize on %s: %s", ddx_device_name(dev), ddx_last_error());
    return st == DDX_OK;
}

static float *host_copy(const ddx_param_store *s, int b) {
    float *h = malloc(s->numel * sizeof *h);
    if (!h) return NULL;
    if (ddx_memcpy(h, DDX_CPU, s->buf[b], s->device, s->numel * sizeof *h) != DDX_OK) {
        CHECK(0, "copy buffer %d to host: %s", b, ddx_last_error());
        free(h);
        return NULL;
    }
    return h;
}

// Every padding element of every flat buffer is exactly +0 (bit pattern 0).
static void check_padding(const ddx_param_store *s, const char *what) {
    for (int b = 0; b < DDX_PBUF_COUNT; b++) {
        float *h = host_copy(s, b);
        if (!h) return;
        size_t bad = 0, end = 0;
        for (size_t i = 0; i < s->n_params; i++) {
            const ddx_param *p = s->params[i];
            const size_t lo = p->offset + (size_t)ddx_numel(&p->value);
            const size_t hi = i + 1 < s->n_params ? s->params[i + 1]->offset : s->numel;
            for (size_t k = lo; k < hi; k++) {
                uint32_t u;
                memcpy(&u, &h[k], 4);
                bad += u != 0;
            }
            end = hi;
        }
        CHECK(bad == 0 && end == s->numel, "%s: buffer %d has %zu nonzero padding elements", what, b, bad);
        free(h);
    }
}

// |got - want| <= atol + rtol * |want| for every element; prints the worst offender.
static void check_close(const char *what, const float *got, const float *want, int64_t n, double rtol, double atol) {
    int64_t worst = -1;
    double worst_excess = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - (double)want[i]);
        const double lim = atol + rtol * fabs((double)want[i]);
        if (!(d <= lim) && (worst < 0 || d - lim > worst_excess)) {
            worst = i;
            worst_excess = d - lim;
        }
    }
    CHECK(worst < 0, "%s: element %lld got %.9g want %.9g (rtol %g atol %g)", what, (long long)worst,
          worst < 0 ? 0.0 : got[worst], worst < 0 ? 0.0 : want[worst], rtol, atol);
}

static const ddx_st_tensor *fx(const ddx_st_file *f, const char *name, int64_t numel) {
    const ddx_st_tensor *t = ddx_st_find(f, name);
    CHECK(t && t->dtype == DDX_ST_F32 && t->nbytes == (size_t)numel * 4, "fixture tensor %s missing or wrong size", name);
    return t && t->dtype == DDX_ST_F32 && t->nbytes == (size_t)numel * 4 ? t : NULL;
}

static double meta_f(const ddx_st_file *f, const char *key) {
    const char *v = ddx_st_meta_get(f, key);
    CHECK(v != NULL, "fixture metadata %s missing", key);
    return v ? strtod(v, NULL) : NAN;
}

// Builds the fixture's store on `dev` with the initial weights, EMA initialised from them.
static bool fixture_store(ddx_param_store *s, ddx_device dev, const ddx_st_file *f) {
    const char *names[N_PARAMS];
    int ndims[N_PARAMS];
    int64_t shapes[N_PARAMS][4];
    for (int i = 0; i < N_PARAMS; i++) {
        char key[64];
        snprintf(key, sizeof key, "init.%s", PNAMES[i]);
        const ddx_st_tensor *t = ddx_st_find(f, key);
        CHECK(t != NULL, "fixture tensor %s missing", key);
        if (!t) return false;
        names[i] = PNAMES[i];
        ndims[i] = t->ndim;
        for (int d = 0; d < 4; d++) shapes[i][d] = d < t->ndim ? t->shape[d] : 1;
    }
    if (!store_make(s, dev, N_PARAMS, names, ndims, shapes)) return false;
    for (int i = 0; i < N_PARAMS; i++) {
        char key[64];
        snprintf(key, sizeof key, "init.%s", PNAMES[i]);
        ddx_param *p = ddx_param_find(s, PNAMES[i]);
        const ddx_st_tensor *t = fx(f, key, ddx_numel(&p->value));
        if (!t || ddx_memcpy(p->value.data, dev, t->data, DDX_CPU, t->nbytes) != DDX_OK) return false;
    }
    return ddx_optim_ema_init(s) == DDX_OK;
}

static bool fixture_grads(ddx_param_store *s, const ddx_st_file *f, int step) {
    for (int i = 0; i < N_PARAMS; i++) {
        char key[64];
        snprintf(key, sizeof key, "grad.%d.%s", step, PNAMES[i]);
        ddx_param *p = ddx_param_find(s, PNAMES[i]);
        const ddx_st_tensor *t = fx(f, key, ddx_numel(&p->value));
        if (!t || ddx_memcpy(p->grad.data, s->device, t->data, DDX_CPU, t->nbytes) != DDX_OK) return false;
    }
    return true;
}

static ddx_optim_cfg fixture_cfg(const ddx_st_file *f, const char *run) {
    char key[64];
    snprintf(key, sizeof key, "weight_decay.%s", run);
    return (ddx_optim_cfg){.lr = meta_f(f, "lr"), .beta1 = meta_f(f, "beta1"), .beta2 = meta_f(f, "beta2"),
                           .eps = meta_f(f, "eps"), .weight_decay = meta_f(f, key),
                           .warmup_steps = (int64_t)meta_f(f, "warmup_steps"), .grad_clip = meta_f(f, "grad_clip"),
                           .ema_decay = meta_f(f, "ema_decay")};
}

// ---- CPU against PyTorch ----------------------------------------------------------------
// Tolerances, all relative to PyTorch's value:
//  - norm 1e-6: PyTorch sums in float32 (per-tensor norms, then the norm of the norms), ddx in
//    double; their difference is a few float ulps at most.
//  - m, v 1e-6 (8 ulps): the arithmetic is the same; the clip coefficient derives from the
//    norm, so on clipped steps it can be an ulp apart, and that ulp carries into m and v.
//  - param, ema 1e-6 plus 1e-9 absolute: in addition PyTorch's CPU sqrt is not correctly
//    rounded (one ulp off for ~20% of inputs); a one-ulp change in denom changes the update
//    (about lr = 1e-2) by 1e-9, far below an ulp of the weights (~0.5).
static void test_fixture_cpu(const ddx_st_file *f) {
    const int steps = (int)meta_f(f, "steps");
    static const char *const runs[2] = {"wd", "nowd"};
    for (int r = 0; r < 2; r++) {
        ddx_param_store s;
        if (!fixture_store(&s, DDX_CPU, f)) {
            ddx_param_store_free(&s);
            return;
        }
        const ddx_optim_cfg o = fixture_cfg(f, runs[r]);
        size_t exact = 0, total = 0;
        for (int step = 1; step <= steps; step++) {
            if (!fixture_grads(&s, f, step)) break;
            float *g_before = host_copy(&s, DDX_PBUF_GRAD);
            double norm = -1.0;
            ddx_status st = ddx_optim_step(&s, &o, step, &norm);
            CHECK(st == DDX_OK, "%s step %d: %s", runs[r], step, ddx_last_error());
            CHECK(g_before && memcmp(g_before, s.buf[DDX_PBUF_GRAD], s.numel * 4) == 0, "%s step %d: grads were modified", runs[r], step);
            free(g_before);
            char key[96], what[96];
            snprintf(key, sizeof key, "%s.%d.norm", runs[r], step);
            const ddx_st_tensor *tn = fx(f, key, 1);
            if (tn) {
                float want;
                memcpy(&want, tn->data, 4);
                CHECK(fabs(norm - want) <= 1e-6 * want, "%s step %d: norm %.9g, torch %.9g", runs[r], step, norm, (double)want);
            }
            static const char *const kinds[4] = {"param", "m", "v", "ema"};
            static const int bufs[4] = {DDX_PBUF_VALUE, DDX_PBUF_ADAM_M, DDX_PBUF_ADAM_V, DDX_PBUF_EMA};
            for (int i = 0; i < N_PARAMS; i++) {
                const ddx_param *p = ddx_param_find(&s, PNAMES[i]);
                const int64_t n = ddx_numel(&p->value);
                for (int k = 0; k < 4; k++) {
                    snprintf(key, sizeof key, "%s.%d.%s.%s", runs[r], step, kinds[k], PNAMES[i]);
                    const ddx_st_tensor *t = fx(f, key, n);
                    if (!t) continue;
                    float *want = malloc((size_t)n * 4);
                    memcpy(want, t->data, (size_t)n * 4);
                    const float *got = s.buf[bufs[k]] + p->offset;
                    snprintf(what, sizeof what, "%s step %d %s.%s", runs[r], step, kinds[k], PNAMES[i]);
                    const bool mv = k == 1 || k == 2;
                    check_close(what, got, want, n, 1e-6, mv ? 0.0 : 1e-9);
                    for (int64_t e = 0; e < n; e++) exact += memcmp(&got[e], &want[e], 4) == 0;
                    total += (size_t)n;
                    free(want);
                }
            }
        }
        printf("fixture %s: %zu of %zu compared floats bit-identical to PyTorch\n", runs[r], exact, total);
        check_padding(&s, runs[r]);
        ddx_param_store_free(&s);
    }
}

// ---- properties -------------------------------------------------------------------------
static void test_lr(void) {
    ddx_optim_cfg o = cfg_default();
    o.lr = 2e-4;
    o.warmup_steps = 4;
    const double want[6] = {0.0, 0.5e-4, 1e-4, 1.5e-4, 2e-4, 2e-4};
    for (int s = 0; s <= 5; s++)
        CHECK(fabs(ddx_optim_lr(&o, s) - want[s]) <= 1e-18, "lr at step %d with warmup 4: %g, want %g", s, ddx_optim_lr(&o, s), want[s]);
    CHECK(ddx_optim_lr(&o, 1000000) == 2e-4, "lr after warmup: %g", ddx_optim_lr(&o, 1000000));
    o.warmup_steps = 0;
    CHECK(ddx_optim_lr(&o, 1) == 2e-4 && ddx_optim_lr(&o, 7) == 2e-4, "lr without warmup: %g", ddx_optim_lr(&o, 1));
    o.warmup_steps = 1;
    CHECK(ddx_optim_lr(&o, 1) == 2e-4, "lr with warmup 1 at step 1: %g", ddx_optim_lr(&o, 1));
}

// A small random CPU store (odd sizes) with weights and grads filled, EMA initialised.
static bool random_store(ddx_param_store *s, ddx_device dev, float grad_scale) {
    static const char *const names[3] = {"w0", "w1", "w2"};
    static const int ndims[3] = {2, 1, 4};
    static const int64_t shapes[3][4] = {{33, 7, 1, 1}, {1000, 1, 1, 1}, {3, 5, 5, 13}};
    if (!store_make(s, dev, 3, names, ndims, shapes)) return false;
    float *h = malloc(s->numel * 4);
    if (!h) return false;
    for (int b = 0; b < 2; b++) {
        memset(h, 0, s->numel * 4);
        for (size_t i = 0; i < s->n_params; i++) {
            const ddx_param *p = s->params[i];
            for (int64_t k = 0; k < ddx_numel(&p->value); k++) h[p->offset + (size_t)k] = frand() * (b ? grad_scale : 0.5f);
        }
        if (ddx_memcpy(s->buf[b == 0 ? DDX_PBUF_VALUE : DDX_PBUF_GRAD], dev, h, DDX_CPU, s->numel * 4) != DDX_OK) {
            free(h);
            return false;
        }
    }
    free(h);
    return ddx_optim_ema_init(s) == DDX_OK;
}

typedef struct snapshot {
    float *b[DDX_PBUF_COUNT];
} snapshot;

static snapshot snap(const ddx_param_store *s) {
    snapshot z;
    for (int b = 0; b < DDX_PBUF_COUNT; b++) z.b[b] = host_copy(s, b);
    return z;
}
static void snap_free(snapshot *z) {
    for (int b = 0; b < DDX_PBUF_COUNT; b++) free(z->b[b]);
}
// Bitwise equality of buffer b between a snapshot and the store now.
static bool same_buf(const snapshot *z, const ddx_param_store *s, int b) {
    float *now = host_copy(s, b);
    bool eq = now && z->b[b] && memcmp(now, z->b[b], s->numel * 4) == 0;
    free(now);
    return eq;
}

// A NaN (or inf) anywhere in the grads: DDX_E_INPUT with the documented message, nothing written.
static void test_nonfinite(ddx_device dev) {
    const char *dn = ddx_device_name(dev);
    for (int kind = 0; kind < 2; kind++) {
        ddx_param_store s;
        if (!random_store(&s, dev, 0.1f)) {
            ddx_param_store_free(&s);
            return;
        }
        ddx_optim_cfg o = cfg_default();
        CHECK(ddx_optim_step(&s, &o, 1, NULL) == DDX_OK, "%s: first step: %s", dn, ddx_last_error());
        const float bad = kind == 0 ? NAN : INFINITY;
        ddx_param *p = ddx_param_find(&s, "w1");
        ddx_memcpy((float *)p->grad.data + 17, dev, &bad, DDX_CPU, 4);
        snapshot before = snap(&s);
        double norm = 0.0;
        ddx_status st = ddx_optim_step(&s, &o, 2, &norm);
        const char *want = kind == 0 ? "grad norm is nan at step 2: lower train.lr or check the data"
                                     : "grad norm is inf at step 2: lower train.lr or check the data";
        CHECK(st == DDX_E_INPUT, "%s: %s grad gave status %s", dn, kind ? "inf" : "nan", ddx_status_name(st));
        CHECK(strcmp(ddx_last_error(), want) == 0, "%s: message '%s'", dn, ddx_last_error());
        CHECK(!isfinite(norm), "%s: reported norm %g for a non-finite grad", dn, norm);
        for (int b = 0; b < DDX_PBUF_COUNT; b++) CHECK(same_buf(&before, &s, b), "%s: buffer %d changed by a refused step", dn, b);
        snap_free(&before);
        ddx_param_store_free(&s);
    }
}

static void test_ema_off(void) {
    ddx_param_store s;
    if (!random_store(&s, DDX_CPU, 0.1f)) {
        ddx_param_store_free(&s);
        return;
    }
    for (size_t i = 0; i < s.numel; i++) s.buf[DDX_PBUF_EMA][i] = (float)i * 0.25f;   // not the weights
    snapshot before = snap(&s);
    ddx_optim_cfg o = cfg_default();
    o.ema_decay = 0.0;
    CHECK(ddx_optim_step(&s, &o, 1, NULL) == DDX_OK, "ema off step: %s", ddx_last_error());
    CHECK(same_buf(&before, &s, DDX_PBUF_EMA), "ema_decay 0 changed the EMA buffer");
    CHECK(!same_buf(&before, &s, DDX_PBUF_VALUE), "the weights did not move");
    // With EMA on the same buffer moves towards the new weights.
    ddx_optim_cfg o2 = cfg_default();
    CHECK(ddx_optim_step(&s, &o2, 2, NULL) == DDX_OK, "ema on step: %s", ddx_last_error());
    CHECK(!same_buf(&before, &s, DDX_PBUF_EMA), "ema_decay 0.9 left the EMA buffer as it was");
    snap_free(&before);
    ddx_param_store_free(&s);
}

// grad_clip 0 never clips, whatever the norm: m after step 1 is (1 - beta1) * g exactly
// (lerp from 0), and a max_norm the norm never reaches gives bit-identical results.
static void test_no_clip(void) {
    ddx_param_store s0, s1, s2;
    g_rng = 42;
    bool ok = random_store(&s0, DDX_CPU, 50.0f);
    g_rng = 42;
    ok = random_store(&s1, DDX_CPU, 50.0f) && ok;
    g_rng = 42;
    ok = random_store(&s2, DDX_CPU, 50.0f) && ok;
    if (ok) {
        ddx_optim_cfg o = cfg_default();
        o.grad_clip = 0.0;
        double norm = 0.0;
        CHECK(ddx_optim_step(&s0, &o, 1, &norm) == DDX_OK, "no-clip step: %s", ddx_last_error());
        CHECK(norm > 100.0, "the test wants a large norm, got %g", norm);
        size_t bad = 0;
        for (size_t i = 0; i < s0.numel; i++) bad += s0.buf[DDX_PBUF_ADAM_M][i] != 0.1f * s0.buf[DDX_PBUF_GRAD][i];
        CHECK(bad == 0, "grad_clip 0: %zu elements of m are not 0.1 * g (clipped?)", bad);
        o.grad_clip = 1e6;
        CHECK(ddx_optim_step(&s1, &o, 1, NULL) == DDX_OK, "high-clip step: %s", ddx_last_error());
        for (int b = 0; b < DDX_PBUF_COUNT; b++)
            CHECK(memcmp(s0.buf[b], s1.buf[b], s0.numel * 4) == 0, "grad_clip 0 and 1e6 differ in buffer %d", b);
        // And clipping does change things when the norm is above max_norm.
        o.grad_clip = 1.0;
        CHECK(ddx_optim_step(&s2, &o, 1, NULL) == DDX_OK, "clip step: %s", ddx_last_error());
        CHECK(memcmp(s0.buf[DDX_PBUF_ADAM_M], s2.buf[DDX_PBUF_ADAM_M], s0.numel * 4) != 0, "grad_clip 1 did not clip a norm of %g", norm);
        const ddx_param *p = ddx_param_find(&s2, "w1");
        const float coef = (float)(1.0 / (norm + 1e-6));
        const float m = s2.buf[DDX_PBUF_ADAM_M][p->offset + 3], g = s2.buf[DDX_PBUF_GRAD][p->offset + 3];
        CHECK(fabsf(m - 0.1f * g * coef) <= 1e-6f * fabsf(m), "clipped m %.9g, want about %.9g", m, 0.1f * g * coef);
    }
    ddx_param_store_free(&s0);
    ddx_param_store_free(&s1);
    ddx_param_store_free(&s2);
}

static void test_bad_args(void) {
    ddx_param_store s;
    if (!random_store(&s, DDX_CPU, 0.1f)) {
        ddx_param_store_free(&s);
        return;
    }
    snapshot before = snap(&s);
    ddx_optim_cfg o = cfg_default();
    CHECK(ddx_optim_step(&s, &o, 0, NULL) == DDX_E_INPUT, "step 0 accepted");
    o.beta2 = 1.0;
    CHECK(ddx_optim_step(&s, &o, 1, NULL) == DDX_E_INPUT, "beta2 = 1 accepted");
    CHECK(strstr(ddx_last_error(), "beta2 1") != NULL, "message: %s", ddx_last_error());
    o = cfg_default();
    o.eps = 0.0;
    CHECK(ddx_optim_step(&s, &o, 1, NULL) == DDX_E_INPUT, "eps = 0 accepted");
    for (int b = 0; b < DDX_PBUF_COUNT; b++) CHECK(same_buf(&before, &s, b), "buffer %d changed by a refused step", b);
    snap_free(&before);
    ddx_param_store_free(&s);
    ddx_param_store u;
    ddx_param_store_init(&u, DDX_CPU);
    o = cfg_default();
    CHECK(ddx_optim_step(&u, &o, 1, NULL) == DDX_E_INTERNAL, "unfinalized store accepted");
    ddx_param_store_free(&u);
}

// ---- CUDA against CPU -------------------------------------------------------------------
// Tolerance 1e-6 relative (plus 1e-9 absolute for weights and EMA): the element arithmetic
// is the same sequence of roundings on both (explicit-rounding intrinsics on the GPU, a
// double-precision fma emulation on the CPU that differs from a true fma about once in 2^29),
// and the norm is summed in double on both in different orders, so the clip coefficient can
// at most flip one float ulp. Most runs are bit-identical; the count is printed.
static void compare_stores(const char *what, const ddx_param_store *cpu, const ddx_param_store *gpu) {
    static const char *const bn[DDX_PBUF_COUNT] = {"value", "grad", "m", "v", "ema"};
    size_t exact = 0;
    for (int b = 0; b < DDX_PBUF_COUNT; b++) {
        float *g = host_copy(gpu, b);
        if (!g) return;
        char w[128];
        snprintf(w, sizeof w, "%s %s", what, bn[b]);
        const bool mv = b == DDX_PBUF_ADAM_M || b == DDX_PBUF_ADAM_V || b == DDX_PBUF_GRAD;
        check_close(w, g, cpu->buf[b], (int64_t)cpu->numel, 1e-6, mv ? 0.0 : 1e-9);
        for (size_t i = 0; i < cpu->numel; i++) exact += memcmp(&g[i], &cpu->buf[b][i], 4) == 0;
        free(g);
    }
    printf("%s: %zu of %zu floats bit-identical CPU vs CUDA\n", what, exact, cpu->numel * DDX_PBUF_COUNT);
}

static void run_pair(const char *what, ddx_param_store *c, ddx_param_store *g, const ddx_optim_cfg *o, int steps,
                     const ddx_st_file *f) {
    for (int step = 1; step <= steps; step++) {
        if (f) {
            if (!fixture_grads(c, f, step) || !fixture_grads(g, f, step)) return;
        } else if (step > 1) {   // fresh grads, same on both
            float *h = host_copy(c, DDX_PBUF_GRAD);
            if (!h) return;
            for (size_t i = 0; i < c->n_params; i++) {
                const ddx_param *p = c->params[i];
                for (int64_t k = 0; k < ddx_numel(&p->value); k++) h[p->offset + (size_t)k] *= -0.7f + 0.1f * (float)step;
            }
            memcpy(c->buf[DDX_PBUF_GRAD], h, c->numel * 4);
            ddx_memcpy(g->buf[DDX_PBUF_GRAD], DDX_CUDA, h, DDX_CPU, c->numel * 4);
            free(h);
        }
        double nc = 0, ng = 0;
        ddx_status sc = ddx_optim_step(c, o, step, &nc);
        ddx_status sg = ddx_optim_step(g, o, step, &ng);
        CHECK(sc == DDX_OK && sg == DDX_OK, "%s step %d: cpu %s, cuda %s: %s", what, step, ddx_status_name(sc),
              ddx_status_name(sg), ddx_last_error());
        CHECK(fabs(nc - ng) <= 1e-12 * nc, "%s step %d: norm cpu %.17g cuda %.17g", what, step, nc, ng);
        char w[96];
        snprintf(w, sizeof w, "%s step %d (norm %.4g)", what, step, nc);
        compare_stores(w, c, g);
    }
}

static int main_cuda(const ddx_st_file *f) {
    if (!ddx_cuda_available()) {
        printf("SKIP: no CUDA device (%s)\n", ddx_cuda_describe());
        return 77;
    }
    // The fixture, both runs.
    static const char *const runs[2] = {"wd", "nowd"};
    for (int r = 0; r < 2; r++) {
        ddx_param_store c, g;
        bool ok = fixture_store(&c, DDX_CPU, f);
        ok = fixture_store(&g, DDX_CUDA, f) && ok;
        const ddx_optim_cfg o = fixture_cfg(f, runs[r]);
        if (ok) run_pair(runs[r], &c, &g, &o, (int)meta_f(f, "steps"), f);
        if (ok) check_padding(&g, "cuda fixture");
        ddx_param_store_free(&c);
        ddx_param_store_free(&g);
    }
    // A larger random store: a 1M-element parameter plus odd ones; clipped and not.
    {
        static const char *const names[4] = {"big", "odd", "one", "conv"};
        static const int ndims[4] = {2, 1, 1, 4};
        static const int64_t shapes[4][4] = {{1024, 1000, 1, 1}, {4097, 1, 1, 1}, {1, 1, 1, 1}, {64, 3, 3, 17}};
        ddx_param_store c, g;
        bool ok = store_make(&c, DDX_CPU, 4, names, ndims, shapes);
        ok = store_make(&g, DDX_CUDA, 4, names, ndims, shapes) && ok;
        if (ok) {
            for (size_t i = 0; i < c.n_params; i++) {
                const ddx_param *p = c.params[i];
                for (int64_t k = 0; k < ddx_numel(&p->value); k++) {
                    c.buf[DDX_PBUF_VALUE][p->offset + (size_t)k] = frand();
                    c.buf[DDX_PBUF_GRAD][p->offset + (size_t)k] = frand() * 1e-3f;
                }
            }
            for (int b = 0; b < 2; b++) ddx_memcpy(g.buf[b], DDX_CUDA, c.buf[b], DDX_CPU, c.numel * 4);
            ok = ddx_optim_ema_init(&c) == DDX_OK && ddx_optim_ema_init(&g) == DDX_OK;
            ddx_optim_cfg o = cfg_default();
            o.warmup_steps = 3;
            // run_pair scales the grads in place by -0.5 and -0.4 on steps 2 and 3, so the
            // norms run 0.59, 0.29, 0.12 (nothing clipped at 0.7), then 0.12, 0.059, 0.024
            // (clipped, clipped, not clipped at 0.05).
            o.grad_clip = 0.7;
            if (ok) run_pair("random", &c, &g, &o, 3, NULL);
            o.grad_clip = 0.05;
            if (ok) run_pair("random clipped", &c, &g, &o, 3, NULL);
            // Determinism: the same norm, bit for bit, on repeated runs.
            double n1 = 0, n2 = 0;
            o.lr = 0.0;
            ddx_optim_step(&g, &o, 4, &n1);
            ddx_optim_step(&g, &o, 5, &n2);
            CHECK(memcmp(&n1, &n2, sizeof n1) == 0, "CUDA norm not deterministic: %.17g vs %.17g", n1, n2);
            check_padding(&g, "cuda random");
        }
        ddx_param_store_free(&c);
        ddx_param_store_free(&g);
    }
    test_nonfinite(DDX_CUDA);
    return ddx_test_finish("optim-cuda");
}

// ---- bench ------------------------------------------------------------------------------
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int main_bench(long long n, ddx_device dev) {
    if (dev == DDX_CUDA && !ddx_cuda_available()) {
        printf("SKIP: no CUDA device (%s)\n", ddx_cuda_describe());
        return 77;
    }
    // Split into realistic-looking parameters of a few sizes (padding included).
    ddx_param_store s;
    ddx_param_store_init(&s, dev);
    long long left = n;
    int i = 0;
    while (left > 0) {
        char name[32];
        snprintf(name, sizeof name, "p%d", i++);
        int64_t sz = left > 589824 ? 589824 + (i % 3) * 37 : left;   // a 3x3x256x256 conv and odd ones
        if (sz > left) sz = left;
        ddx_param_add(&s, name, 1, &sz);
        left -= sz;
    }
    if (ddx_param_store_finalize(&s) != DDX_OK) {
        fprintf(stderr, "bench: %s\n", ddx_last_error());
        return 1;
    }
    float *h = malloc(s.numel * 4);
    if (!h) return 1;
    for (int b = 0; b < 2; b++) {
        for (size_t k = 0; k < s.numel; k++) h[k] = b ? frand() * 1e-4f : frand();
        ddx_memcpy(s.buf[b == 0 ? DDX_PBUF_VALUE : DDX_PBUF_GRAD], dev, h, DDX_CPU, s.numel * 4);
    }
    free(h);
    ddx_optim_ema_init(&s);
    ddx_optim_cfg o = cfg_default();
    o.ema_decay = 0.9999;
    double best = 1e30, sum = 0;
    const int reps = dev == DDX_CUDA ? 20 : 5;
    for (int r = 0; r <= reps; r++) {
        const double t0 = now_ms();
        double norm;
        float probe;   // on CUDA a read-back waits for the (asynchronous) update kernel
        if (ddx_optim_step(&s, &o, r + 1, &norm) != DDX_OK ||
            ddx_memcpy(&probe, DDX_CPU, s.buf[DDX_PBUF_EMA], dev, 4) != DDX_OK) {
            fprintf(stderr, "bench: %s\n", ddx_last_error());
            return 1;
        }
        const double t = now_ms() - t0;
        if (r > 0) {   // the first touches fresh pages
            sum += t;
            if (t < best) best = t;
        }
    }
    printf("ddx_optim_step %s over %zu parameters (%zu with padding, %zu tensors): best %.3f ms, mean %.3f ms\n",
           ddx_device_name(dev), ddx_param_count(&s), s.numel, s.n_params, best, sum / reps);
    ddx_param_store_free(&s);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = "data/optim/adamw.safetensors";
    bool cuda = false;
    long long bench = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cuda") == 0)
            cuda = true;
        else if (strcmp(argv[i], "--bench") == 0 && i + 1 < argc)
            bench = atoll(argv[++i]);
        else
            path = argv[i];
    }
    if (bench > 0) return main_bench(bench, cuda ? DDX_CUDA : DDX_CPU);
    ddx_st_file f;
    if (ddx_st_read(path, &f) != DDX_OK) {
        printf("FAIL: cannot read the fixture: %s (run from tests/, or pass its path)\n", ddx_last_error());
        return 1;
    }
    int rc;
    if (cuda) {
        rc = main_cuda(&f);
    } else {
        test_lr();
        test_fixture_cpu(&f);
        test_nonfinite(DDX_CPU);
        test_ema_off();
        test_no_clip();
        test_bad_args();
        rc = ddx_test_finish("optim");
    }
    ddx_st_close(&f);
    return rc;
}
