// The model in bf16 compute on the GPU against fp32 on the CPU, parameter by parameter: a
// small DDPM U-Net (tensor-core convs, GroupNorm with fp32 scale/shift, bf16 attention) runs
// forward + mse + backward from the same weights and inputs. Checks that every parameter's
// gradient reaches the fp32 store (through the store-wide cast of ddx_model_forward and the
// views ddx_model_w hands out; GroupNorm's directly) close to the fp32 one, that the CUDA fp32
// gradients match the CPU's, and that a second bf16 step gives the same bits (the cast cache
// lives for one forward; nothing stale carries over). gpu suite; exits 77 without a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/model_impl.h"
#include "runtime/cuda.h"

#define NB 2
#define S 16
#define CIN 3

typedef struct run {
    ddx_param_store ps;
    ddx_model *m;
    ddx_ctx c;
    bool ready;
} run;

static void fill_pattern(float *p, int64_t n, uint32_t seed) {
    uint32_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
}

static void tiny_cfg(ddx_config *cfg) {
    ddx_config_defaults(cfg);
    cfg->model.type = DDX_MODEL_TYPE_UNET_DDPM;
    cfg->model.image_size = S;
    cfg->model.in_channels = CIN;
    cfg->model.out_channels = CIN;
    cfg->model.ch = 16;
    cfg->model.ch_mult.n = 2;
    cfg->model.ch_mult.v[0] = 1;
    cfg->model.ch_mult.v[1] = 2;
    cfg->model.num_res_blocks = 1;
    cfg->model.attn_resolutions.n = 1;
    cfg->model.attn_resolutions.v[0] = 8;
    cfg->model.groups = 8;
    cfg->model.dropout = 0.0;
    cfg->model.norm_eps = 1e-6;
}

// A model on `dev` holding the weights `w` (host, numel floats; NULL: initialise and return
// them in *w_out).
static bool run_open(run *r, ddx_device dev, const float *w, float **w_out) {
    memset(r, 0, sizeof *r);
    ddx_config cfg;
    tiny_cfg(&cfg);
    ddx_param_store_init(&r->ps, dev);
    if (ddx_model_create(&cfg, &r->ps, &r->m) != DDX_OK || ddx_param_store_finalize(&r->ps) != DDX_OK) goto fail;
    const size_t bytes = r->ps.numel * sizeof(float);
    if (w) {
        if (ddx_memcpy(r->ps.buf[DDX_PBUF_VALUE], dev, w, DDX_CPU, bytes) != DDX_OK) goto fail;
    } else {
        float *h = malloc(bytes);
        if (!h || ddx_model_init(r->m, 5) != DDX_OK || ddx_memcpy(h, DDX_CPU, r->ps.buf[DDX_PBUF_VALUE], dev, bytes) != DDX_OK) {
            free(h);
            goto fail;
        }
        *w_out = h;
    }
    if (ddx_ctx_init(&r->c, dev, (size_t)64 << 20) != DDX_OK) goto fail;
    r->ready = true;
    return true;
fail:
    CHECK(false, "%s model: %s", ddx_device_name(dev), ddx_last_error());
    return false;
}

static void run_close(run *r) {
    if (r->ready) ddx_ctx_free(&r->c);
    if (r->m) ddx_model_free(r->m);
    ddx_param_store_free(&r->ps);
}

// One forward + mse + backward; the store's gradient into g (host, numel floats).
static bool step(run *r, float *g) {
    ddx_ctx *c = &r->c;
    const ddx_device dev = r->ps.device;
    ddx_ctx_reset(c);
    const size_t gbytes = r->ps.numel * sizeof(float);
    if (ddx_dev_memset(dev, r->ps.buf[DDX_PBUF_GRAD], 0, gbytes) != DDX_OK) return false;
    const int64_t n = (int64_t)NB * S * S * CIN;
    float hx[NB * S * S * CIN], he[NB * S * S * CIN], ht[NB] = {17.0f, 640.0f};
    fill_pattern(hx, n, 11);
    fill_pattern(he, n, 12);
    ddx_tensor *x = ddx_new(c, DDX_F32, 4, (int64_t[]){NB, S, S, CIN});   // [2, 16, 16, 3]
    ddx_tensor *e = ddx_new(c, DDX_F32, 4, (int64_t[]){NB, S, S, CIN});   // [2, 16, 16, 3]
    ddx_tensor *t = ddx_new(c, DDX_F32, 1, (int64_t[]){NB});              // [2]
    if (!x || !e || !t) return false;
    if (ddx_memcpy(x->data, dev, hx, DDX_CPU, sizeof hx) || ddx_memcpy(e->data, dev, he, DDX_CPU, sizeof he) ||
        ddx_memcpy(t->data, dev, ht, DDX_CPU, sizeof ht))
        return false;
    ddx_tensor *o = ddx_model_forward(c, r->m, x, t, NULL);
    ddx_tensor *loss = o ? ddx_mse_loss(c, o, e) : NULL;
    if (!loss || ddx_backward(c, loss, 1.0f) != DDX_OK || ddx_ctx_status(c) != DDX_OK) return false;
    return ddx_memcpy(g, DDX_CPU, r->ps.buf[DDX_PBUF_GRAD], dev, gbytes) == DDX_OK;
}

// Largest per-parameter error relative to that parameter's largest reference gradient, or to
// 1e-3 of the largest gradient of the model where that is bigger: the attention key bias has
// a gradient of exactly zero in exact arithmetic (softmax ignores a shift shared by a row's
// scores), so its computed gradient is rounding noise and only an absolute bound means
// anything there. Fails each parameter beyond rtol.
static double compare(const char *what, const ddx_param_store *ps, const float *got, const float *ref, double rtol) {
    double worst = 0, gmax = 0;
    int bad = 0;
    for (size_t k = 0; k < ps->numel; k++) gmax = fmax(gmax, fabs(ref[k]));
    for (size_t i = 0; i < ps->n_params; i++) {
        const ddx_param *p = ps->params[i];
        const int64_t n = ddx_numel(&p->value);
        double mx = 0, err = 0;
        for (int64_t k = 0; k < n; k++) {
            mx = fmax(mx, fabs(ref[p->offset + k]));
            err = fmax(err, fabs((double)got[p->offset + k] - ref[p->offset + k]));
        }
        const double den = fmax(mx, 1e-3 * gmax);
        const double rel = den > 0 ? err / den : err;
        worst = fmax(worst, rel);
        if (!(rel <= rtol) && bad++ < 5) CHECK(false, "%s: gradient of %s off by %.3g of its largest", what, p->name, rel);
    }
    CHECK(bad == 0, "%s: %d of %zu parameter gradients beyond %.g", what, bad, ps->n_params, rtol);
    printf("%s: %zu parameter gradients, worst %.3g of its largest (bound %.g)\n", what, ps->n_params, worst, rtol);
    return worst;
}

int main(void) {
    if (!ddx_cuda_available()) {
        printf("SKIP: no CUDA device (%s)\n", ddx_cuda_describe());
        n_skip++;
        return ddx_test_finish("model-bf16");
    }
    run cpu, gpu;
    float *w = NULL;
    if (!run_open(&cpu, DDX_CPU, NULL, &w)) return ddx_test_finish("model-bf16");
    if (!run_open(&gpu, DDX_CUDA, w, NULL)) {
        run_close(&cpu);
        free(w);
        return ddx_test_finish("model-bf16");
    }
    const size_t n = cpu.ps.numel;
    float *g_cpu = malloc(n * sizeof(float)), *g_f32 = malloc(n * sizeof(float)), *g_b1 = malloc(n * sizeof(float)),
          *g_b2 = malloc(n * sizeof(float));
    if (g_cpu && g_f32 && g_b1 && g_b2) {
        bool ok = step(&cpu, g_cpu);
        CHECK(ok, "CPU fp32 step: %s", ddx_last_error());
        ok = ok && step(&gpu, g_f32);
        CHECK(ok, "CUDA fp32 step: %s", ddx_last_error());
        // fp32 against fp32 in another summation order: ~1e-6 relative; 1e-4 is far below what
        // a misrouted gradient costs.
        if (ok) compare("CUDA fp32 vs CPU fp32", &cpu.ps, g_f32, g_cpu, 1e-4);
        ok = ok && ddx_model_set_compute(gpu.m, DDX_BF16) == DDX_OK;
        ok = ok && step(&gpu, g_b1);
        CHECK(ok, "CUDA bf16 step: %s", ddx_last_error());
        ok = ok && step(&gpu, g_b2);
        CHECK(ok, "second CUDA bf16 step: %s", ddx_last_error());
        if (ok) {
            // bf16 operands (8-bit mantissa) through a dozen layers: around 1e-2 of each
            // parameter's largest gradient, more for parameters whose gradient is a small sum
            // of cancelling terms; a gradient that never arrives, or lands in another
            // parameter's slot, errs by 1 or more.
            compare("CUDA bf16 vs CPU fp32", &cpu.ps, g_b1, g_cpu, 0.2);
            CHECK(memcmp(g_b1, g_b2, n * sizeof(float)) == 0, "two identical bf16 steps gave different gradients");
        }
    } else {
        CHECK(false, "out of host memory");
    }
    free(g_cpu), free(g_f32), free(g_b1), free(g_b2), free(w);
    run_close(&gpu);
    run_close(&cpu);
    return ddx_test_finish("model-bf16");
}
