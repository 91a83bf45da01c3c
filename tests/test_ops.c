// The op test driver (in the spirit of ggml's test-backend-ops and dav1d's checkasm).
//
//   test_ops [--backend cpu|cuda] [--grad] [-o OP] [--seed N] [--list] [-v]
//   test_ops --perf [--backend cpu|cuda] [--grad] [-o OP] [--reps N] [--seed N]
//
// For every case in tests/cases_*.c (the perf-only ones of tests/cases_perf.c only with --perf):
//   cpu  : the reference runs twice on poisoned (NaN) memory with guard bytes after every
//          buffer; the output must be fully written (no NaN), bit-identical across the two
//          runs, the inputs untouched and every guard intact.
//   cuda : the same case on the GPU against the CPU reference (tolerances below); an op
//          without a CUDA kernel is a SKIP, never a PASS.
//   --grad (cpu): every backward against central finite differences of
//          L = sum(out * R), R random, accumulated in double, perturbing each sampled
//          element by h = grad_h * max(1, |x|) and dividing by the step actually
//          representable in f32.
//   --grad (cuda): CUDA backward against CPU backward.
//   --perf: times every case instead (see "perf mode" below); asserts nothing about speed,
//          only that every timed output and gradient is finite.
//
// Default tolerances, |got - ref| <= atol + rtol * |ref| (a case may override):
//   | check                     | rtol | atol                    |
//   | cuda fwd, f32 output      | 1e-5 | 1e-5 * max(1, max|ref|) |
//   | cuda fwd, bf16 output     | 1e-2 | 1e-2 * max(1, max|ref|) |
//   | cuda fwd, tf32 case       | set by the case (about 1e-3)  |
//   | cuda bwd vs cpu bwd       | 2x the forward tolerances      |
//   | cpu bwd vs finite diff.   | 1e-2 | 1e-3 * max(1, max|grad|)|
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "op_cases.h"
#include "runtime/cuda.h"

typedef struct opts {
    ddx_device backend;
    bool grad, verbose, list, perf;
    const char *only;
    uint64_t seed;
    int reps;   // --perf: timed samples per measurement
} opts;

static int n_pass, n_fail, n_skip;

// ---- deterministic host RNG (the driver must not depend on the code under test) ----------
typedef struct rng {
    uint64_t s;
} rng;
static uint64_t rng_u64(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unif(rng *r) { return (double)(rng_u64(r) >> 11) * 0x1.0p-53; }
// Each checked case draws from its own stream, keyed by --seed and the case's description
// (FNV-1a): adding cases, or picking some with -o, leaves every other case's inputs and
// probed elements as they were, so a failure of the full run reproduces with -o OP.
static rng case_rng(uint64_t seed, const char *desc) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = desc; *p; p++) h = (h ^ (uint64_t)(unsigned char)*p) * 1099511628211ull;
    return (rng){seed ^ h};
}
static double rng_normal(rng *r) {
    double u1 = rng_unif(r), u2 = rng_unif(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// ---- host copies of case inputs -----------------------------------------------------------
typedef struct host_input {
    bool present;
    ddx_dtype dtype;
    int ndim;
    int64_t shape[DDX_MAX_DIMS];
    int64_t n;
    float *f;     // values as f32 (bf16-representable for bf16 inputs)
    int32_t *i;   // for i32 inputs
    double gap;   // DDX_GEN_DISTINCT: the spacing between values; a finite difference must stay below it
} host_input;

static void gen_input(host_input *h, const ddx_case_input *ci, rng *r) {
    memset(h, 0, sizeof *h);
    if (ci->ndim == 0) return;
    h->present = true;
    h->dtype = ci->dtype;
    h->ndim = ci->ndim;
    h->n = 1;
    for (int d = 0; d < ci->ndim; d++) {
        h->shape[d] = ci->shape[d];
        h->n *= ci->shape[d];
    }
    if (ci->dtype == DDX_I32 || ci->dtype == DDX_U8) {
        h->i = malloc((size_t)(h->n ? h->n : 1) * sizeof(int32_t));
        int64_t mod = ci->gen_arg > 0 ? ci->gen_arg : (ci->dtype == DDX_U8 ? 256 : 1000);
        for (int64_t k = 0; k < h->n; k++) h->i[k] = (int32_t)(rng_u64(r) % (uint64_t)mod);
        return;
    }
    h->f = malloc((size_t)(h->n ? h->n : 1) * sizeof(float));
    for (int64_t k = 0; k < h->n; k++) {
        double v;
        switch (ci->gen) {
        case DDX_GEN_UNIFORM: v = 2 * rng_unif(r) - 1; break;
        case DDX_GEN_POSITIVE: v = 0.5 + rng_unif(r); break;
        case DDX_GEN_AWAY_FROM_ZERO: v = (0.1 + 0.9 * rng_unif(r)) * (rng_u64(r) & 1 ? 1 : -1); break;
        case DDX_GEN_DISTINCT: v = (double)k; break;   // permuted below
        case DDX_GEN_TIMESTEP: v = (double)(rng_u64(r) % (uint64_t)(ci->gen_arg > 0 ? ci->gen_arg : 1000)); break;
        case DDX_GEN_SMALL: v = 0.1 * rng_normal(r); break;
        case DDX_GEN_INDEX: v = (double)(rng_u64(r) % (uint64_t)(ci->gen_arg > 0 ? ci->gen_arg : 1)); break;
        default: v = rng_normal(r); break;
        }
        h->f[k] = (float)v;
    }
    if (ci->gen == DDX_GEN_DISTINCT) {
        // Values 0.05 apart after scaling: ties impossible and far larger than any FD step.
        for (int64_t k = h->n - 1; k > 0; k--) {
            int64_t j = (int64_t)(rng_u64(r) % (uint64_t)(k + 1));
            float t = h->f[k];
            h->f[k] = h->f[j];
            h->f[j] = t;
        }
        h->gap = 4.0 / (double)h->n;
        for (int64_t k = 0; k < h->n; k++) h->f[k] = (float)((h->f[k] - h->n / 2.0) * h->gap);
    }
    if (ci->dtype == DDX_BF16)
        for (int64_t k = 0; k < h->n; k++) h->f[k] = ddx_bf16_to_f32(ddx_f32_to_bf16(h->f[k]));
}

static void free_input(host_input *h) {
    free(h->f);
    free(h->i);
}

// The dtype an input takes on a backend.
static ddx_dtype dev_dtype(const ddx_op_case *tc, const host_input *h, ddx_device dev) {
    if (h->dtype == DDX_BF16 && dev == DDX_CPU && tc->bf16_ref_f32) return DDX_F32;
    return h->dtype;
}

// Host bytes for an input in a given dtype.
static void *host_bytes(const host_input *h, ddx_dtype dt, size_t *nbytes) {
    *nbytes = (size_t)h->n * ddx_dtype_size(dt);
    void *b = malloc(*nbytes ? *nbytes : 1);
    if (dt == DDX_F32)
        memcpy(b, h->f, *nbytes);
    else if (dt == DDX_BF16)
        for (int64_t k = 0; k < h->n; k++) ((uint16_t *)b)[k] = ddx_f32_to_bf16(h->f[k]);
    else if (dt == DDX_I32)
        memcpy(b, h->i, *nbytes);
    else
        for (int64_t k = 0; k < h->n; k++) ((uint8_t *)b)[k] = (uint8_t)h->i[k];
    return b;
}

// Reads a device tensor back as f64 values (f32, bf16, i32 or u8).
static double *to_host(const ddx_tensor *t) {
    int64_t n = ddx_numel(t);
    size_t nb = ddx_nbytes(t);
    void *raw = malloc(nb ? nb : 1);
    double *out = malloc((size_t)(n ? n : 1) * sizeof(double));
    if (ddx_memcpy(raw, DDX_CPU, t->data, t->device, nb) != DDX_OK) {
        for (int64_t k = 0; k < n; k++) out[k] = NAN;
    } else {
        for (int64_t k = 0; k < n; k++) {
            switch (t->dtype) {
            case DDX_F32: out[k] = ((float *)raw)[k]; break;
            case DDX_BF16: out[k] = ddx_bf16_to_f32(((uint16_t *)raw)[k]); break;
            case DDX_I32: out[k] = ((int32_t *)raw)[k]; break;
            default: out[k] = ((uint8_t *)raw)[k]; break;
            }
        }
    }
    free(raw);
    return out;
}

// ---- one run of a case ---------------------------------------------------------------------
typedef struct run_result {
    ddx_status st;
    char msg[512];
    double *out;             // forward output
    int64_t n_out;
    ddx_dtype out_dtype;
    int out_ndim;
    int64_t out_shape[DDX_MAX_DIMS];
    double *grads[DDX_MAX_INPUTS];   // analytic grads (backward runs only)
    double loss;             // sum(out * R) when R given
} run_result;

static void free_result(run_result *r) {
    free(r->out);
    for (int i = 0; i < DDX_MAX_INPUTS; i++) free(r->grads[i]);
    memset(r, 0, sizeof *r);
}

static void fail_result(run_result *r, ddx_status st, const char *what) {
    r->st = st;
    snprintf(r->msg, sizeof r->msg, "%s: %s", what, ddx_last_error());
}

// Runs the case on ctx's backend with inputs hin. With R (host, one per output element) it
// also computes L = sum(out*R) and, when `backward`, the input grads.
static void run_case(ddx_ctx *c, const ddx_op_case *tc, host_input *hin, const float *R, bool backward, run_result *res) {
    memset(res, 0, sizeof *res);
    ddx_status st = ddx_ctx_reset(c);
    if (st != DDX_OK) return fail_result(res, st, "ctx reset");
    ddx_ctx_set_training(c, tc->training);
    ddx_ctx_set_tf32(c, tc->tf32);   // only CUDA kernels read it
    ddx_ctx_set_seed(c, 1234);
    ddx_ctx_set_step(c, 7);
    ddx_tensor *in[DDX_MAX_INPUTS] = {0};
    void *hostb[DDX_MAX_INPUTS] = {0};
    size_t nb[DDX_MAX_INPUTS] = {0};
    for (int i = 0; i < tc->n_inputs; i++) {
        if (!hin[i].present) continue;
        ddx_dtype dt = dev_dtype(tc, &hin[i], c->device);
        in[i] = ddx_new(c, dt, hin[i].ndim, hin[i].shape);
        if (!in[i]) {
            fail_result(res, c->status, "input alloc");
            goto out;
        }
        hostb[i] = host_bytes(&hin[i], dt, &nb[i]);
        if ((st = ddx_memcpy(in[i]->data, c->device, hostb[i], DDX_CPU, nb[i])) != DDX_OK) {
            fail_result(res, st, "input upload");
            goto out;
        }
        in[i]->requires_grad = backward && tc->in[i].grad;
    }
    ddx_tensor *y = tc->apply(c, in, tc);
    if (!y || c->status != DDX_OK) {
        fail_result(res, c->status != DDX_OK ? c->status : DDX_E_INTERNAL, "forward");
        goto out;
    }
    if (c->cuda && (st = ddx_cuda_sync(c->cuda)) != DDX_OK) {
        fail_result(res, st, "forward sync");
        goto out;
    }
    if ((st = ddx_arena_check_guards(&c->act)) != DDX_OK) {
        fail_result(res, st, "forward");
        goto out;
    }
    // Ops must never write their inputs.
    for (int i = 0; i < tc->n_inputs; i++) {
        if (!in[i]) continue;
        void *back = malloc(nb[i] ? nb[i] : 1);
        st = ddx_memcpy(back, DDX_CPU, in[i]->data, c->device, nb[i]);
        bool same = st == DDX_OK && memcmp(back, hostb[i], nb[i]) == 0;
        free(back);
        if (!same) {
            res->st = DDX_E_INTERNAL;
            snprintf(res->msg, sizeof res->msg, "forward modified input %d", i);
            goto out;
        }
    }
    res->out = to_host(y);
    res->n_out = ddx_numel(y);
    res->out_dtype = y->dtype;
    res->out_ndim = y->ndim;
    memcpy(res->out_shape, y->shape, sizeof res->out_shape);
    if (R) {
        double L = 0;
        for (int64_t k = 0; k < res->n_out; k++) L += res->out[k] * (double)R[k];
        res->loss = L;
    }
    if (backward) {
        ddx_tensor *g = ddx_new(c, y->dtype, y->ndim, y->shape);
        if (!g) {
            fail_result(res, c->status, "grad alloc");
            goto out;
        }
        size_t gb = ddx_nbytes(g);
        void *rb = malloc(gb ? gb : 1);
        for (int64_t k = 0; k < res->n_out; k++) {
            if (y->dtype == DDX_BF16)
                ((uint16_t *)rb)[k] = ddx_f32_to_bf16(R[k]);
            else
                ((float *)rb)[k] = R[k];
        }
        st = ddx_memcpy(g->data, c->device, rb, DDX_CPU, gb);
        free(rb);
        if (st == DDX_OK) st = ddx_backward_from(c, y, g);
        if (st == DDX_OK && c->cuda) st = ddx_cuda_sync(c->cuda);
        if (st == DDX_OK) st = ddx_arena_check_guards(&c->act);
        if (st != DDX_OK) {
            fail_result(res, st, "backward");
            goto out;
        }
        for (int i = 0; i < tc->n_inputs; i++) {
            if (!in[i] || !tc->in[i].grad) continue;
            if (!in[i]->grad) {
                res->st = DDX_E_INTERNAL;
                snprintf(res->msg, sizeof res->msg, "backward produced no grad for input %d", i);
                goto out;
            }
            res->grads[i] = to_host(in[i]->grad);
        }
    }
out:
    for (int i = 0; i < DDX_MAX_INPUTS; i++) free(hostb[i]);
}

// ---- comparisons ---------------------------------------------------------------------------
typedef struct cmp {
    bool ok;
    int64_t worst;
    double max_abs, got, ref;
} cmp;

static cmp compare(const double *got, const double *ref, int64_t n, double rtol, double atol_rel) {
    double scale = 1;
    for (int64_t k = 0; k < n; k++)
        if (fabs(ref[k]) > scale) scale = fabs(ref[k]);
    double atol = atol_rel * scale;
    cmp r = {.ok = true, .worst = -1};
    double worst_excess = -INFINITY;
    for (int64_t k = 0; k < n; k++) {
        double d = fabs(got[k] - ref[k]);
        double excess = d - (atol + rtol * fabs(ref[k]));
        if (!(d == d)) excess = INFINITY;   // NaN: an unwritten (poisoned) element
        if (d > r.max_abs || d != d) r.max_abs = d;
        if (excess > worst_excess) {
            worst_excess = excess;
            r.worst = k;
            r.got = got[k];
            r.ref = ref[k];
        }
    }
    r.ok = !(worst_excess > 0);
    return r;
}

static void report(const opts *o, const ddx_op_case *tc, const char *mode, int status, const char *detail) {
    const char *tag = status == 0 ? "PASS" : status == 1 ? "FAIL" : "SKIP";
    if (status == 0) n_pass++;
    if (status == 1) n_fail++;
    if (status == 2) n_skip++;
    if (status != 0 || o->verbose)
        printf("%s %-13s %-5s %-42s %s\n", tag, ddx_op_name(tc->op), mode, tc->desc, detail ? detail : "");
}

static bool all_finite(const double *v, int64_t n, int64_t *bad) {
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(v[k])) {
            *bad = k;
            return false;
        }
    return true;
}

// ---- the checks ----------------------------------------------------------------------------
static void check_cpu_forward(const opts *o, ddx_ctx *cpu, const ddx_op_case *tc, host_input *hin) {
    run_result a, b;
    char msg[600];
    run_case(cpu, tc, hin, NULL, false, &a);
    if (a.st != DDX_OK) {
        report(o, tc, "fwd", 1, a.msg);
        free_result(&a);
        return;
    }
    run_case(cpu, tc, hin, NULL, false, &b);
    int64_t bad;
    if (b.st != DDX_OK) {
        report(o, tc, "fwd", 1, b.msg);
    } else if (!all_finite(a.out, a.n_out, &bad)) {
        snprintf(msg, sizeof msg, "output element %" PRId64 " is %g (unwritten or overflow)", bad, a.out[bad]);
        report(o, tc, "fwd", 1, msg);
    } else if (memcmp(a.out, b.out, (size_t)a.n_out * sizeof(double)) != 0) {
        report(o, tc, "fwd", 1, "two runs on the same input differ (reads uninitialised memory?)");
    } else {
        report(o, tc, "fwd", 0, NULL);
    }
    free_result(&a);
    free_result(&b);
}

static double tol_or(double v, double def) { return v > 0 ? v : def; }

static void check_cuda_forward(const opts *o, ddx_ctx *cpu, ddx_ctx *gpu, const ddx_op_case *tc, host_input *hin) {
    run_result ref, got;
    char msg[700];
    run_case(cpu, tc, hin, NULL, false, &ref);
    if (ref.st != DDX_OK) {
        report(o, tc, "fwd", 1, ref.msg);
        free_result(&ref);
        return;
    }
    run_case(gpu, tc, hin, NULL, false, &got);
    if (got.st == DDX_E_UNSUPPORTED) {
        report(o, tc, "fwd", 2, got.msg);
    } else if (got.st != DDX_OK) {
        report(o, tc, "fwd", 1, got.msg);
    } else if (got.n_out != ref.n_out) {
        report(o, tc, "fwd", 1, "output size differs from the CPU reference");
    } else {
        bool bf = got.out_dtype == DDX_BF16;
        cmp r = compare(got.out, ref.out, ref.n_out, tol_or(tc->fwd_rtol, bf ? 1e-2 : 1e-5), tol_or(tc->fwd_atol, bf ? 1e-2 : 1e-5));
        snprintf(msg, sizeof msg, "max |diff| %.3g at %" PRId64 ": got %.9g want %.9g", r.max_abs, r.worst, r.got, r.ref);
        report(o, tc, "fwd", r.ok ? 0 : 1, r.ok && !o->verbose ? NULL : msg);
    }
    free_result(&ref);
    free_result(&got);
}

static float *random_R(rng *r, int64_t n) {
    float *R = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t k = 0; k < n; k++) R[k] = (float)rng_normal(r);
    return R;
}

static void check_cpu_grad(const opts *o, ddx_ctx *cpu, const ddx_op_case *tc, host_input *hin, rng *r) {
    run_result probe, an;
    char msg[700];
    run_case(cpu, tc, hin, NULL, false, &probe);
    if (probe.st != DDX_OK) {
        report(o, tc, "grad", 1, probe.msg);
        free_result(&probe);
        return;
    }
    float *R = random_R(r, probe.n_out);
    if (probe.out_dtype == DDX_BF16)
        for (int64_t k = 0; k < probe.n_out; k++) R[k] = ddx_bf16_to_f32(ddx_f32_to_bf16(R[k]));
    free_result(&probe);
    run_case(cpu, tc, hin, R, true, &an);
    if (an.st != DDX_OK) {
        report(o, tc, "grad", 1, an.msg);
        goto done;
    }
    double h_rel = tol_or(tc->grad_h, 1e-2), rtol = tol_or(tc->grad_rtol, 1e-2), atol_rel = tol_or(tc->grad_atol, 1e-3);
    for (int i = 0; i < tc->n_inputs; i++) {
        if (!hin[i].present || !tc->in[i].grad) continue;
        host_input *h = &hin[i];
        double gmax = 1;
        for (int64_t k = 0; k < h->n; k++)
            if (fabs(an.grads[i][k]) > gmax) gmax = fabs(an.grads[i][k]);
        int64_t n_check = h->n <= 48 ? h->n : 48;
        bool ok = true;
        for (int64_t s = 0; s < n_check && ok; s++) {
            int64_t k = h->n <= 48 ? s : (int64_t)(rng_u64(r) % (uint64_t)h->n);
            float x0 = h->f[k];
            double step = h_rel * fmax(1.0, fabs(x0));
            // Distinct values: a step past half the gap could swap the order (a max pool's
            // argmax) and measure a different branch than the analytic gradient took.
            if (h->gap > 0 && step > h->gap / 4) step = h->gap / 4;
            float xp = (float)(x0 + step), xm = (float)(x0 - step);
            if (h->dtype == DDX_BF16) {
                xp = ddx_bf16_to_f32(ddx_f32_to_bf16(xp));
                xm = ddx_bf16_to_f32(ddx_f32_to_bf16(xm));
            }
            run_result rp, rm;
            h->f[k] = xp;
            run_case(cpu, tc, hin, R, false, &rp);
            h->f[k] = xm;
            run_case(cpu, tc, hin, R, false, &rm);
            h->f[k] = x0;
            if (rp.st != DDX_OK || rm.st != DDX_OK) {
                report(o, tc, "grad", 1, rp.st != DDX_OK ? rp.msg : rm.msg);
                free_result(&rp);
                free_result(&rm);
                goto done;
            }
            double num = (rp.loss - rm.loss) / ((double)xp - (double)xm);
            double a = an.grads[i][k];
            free_result(&rp);
            free_result(&rm);
            if (!(fabs(a - num) <= atol_rel * gmax + rtol * fmax(fabs(a), fabs(num)))) {
                snprintf(msg, sizeof msg, "input %d element %" PRId64 ": analytic %.7g, finite difference %.7g", i, k, a, num);
                ok = false;
            }
        }
        if (!ok) {
            report(o, tc, "grad", 1, msg);
            goto done;
        }
    }
    report(o, tc, "grad", 0, NULL);
done:
    free(R);
    free_result(&an);
}

static void check_cuda_grad(const opts *o, ddx_ctx *cpu, ddx_ctx *gpu, const ddx_op_case *tc, host_input *hin, rng *r) {
    run_result probe, ref, got;
    char msg[700];
    run_case(cpu, tc, hin, NULL, false, &probe);
    if (probe.st != DDX_OK) {
        report(o, tc, "grad", 1, probe.msg);
        free_result(&probe);
        return;
    }
    float *R = random_R(r, probe.n_out);
    for (int64_t k = 0; k < probe.n_out; k++) R[k] = ddx_bf16_to_f32(ddx_f32_to_bf16(R[k]));   // exact in every dtype
    free_result(&probe);
    run_case(cpu, tc, hin, R, true, &ref);
    run_case(gpu, tc, hin, R, true, &got);
    if (ref.st != DDX_OK) {
        report(o, tc, "grad", 1, ref.msg);
    } else if (got.st == DDX_E_UNSUPPORTED) {
        report(o, tc, "grad", 2, got.msg);
    } else if (got.st != DDX_OK) {
        report(o, tc, "grad", 1, got.msg);
    } else {
        bool ok = true;
        for (int i = 0; i < tc->n_inputs && ok; i++) {
            if (!hin[i].present || !tc->in[i].grad) continue;
            bool bf = hin[i].dtype == DDX_BF16;
            cmp c = compare(got.grads[i], ref.grads[i], hin[i].n, 2 * tol_or(tc->fwd_rtol, bf ? 1e-2 : 1e-5),
                            2 * tol_or(tc->fwd_atol, bf ? 1e-2 : 1e-5));
            if (!c.ok) {
                snprintf(msg, sizeof msg, "grad of input %d: max |diff| %.3g at %" PRId64 ": got %.9g want %.9g", i, c.max_abs,
                         c.worst, c.got, c.ref);
                ok = false;
            }
        }
        report(o, tc, "grad", ok ? 0 : 1, ok ? NULL : msg);
    }
    free(R);
    free_result(&ref);
    free_result(&got);
}

static bool has_grad_inputs(const ddx_op_case *tc) {
    if (!ddx_op_differentiable(tc->op)) return false;
    for (int i = 0; i < tc->n_inputs; i++)
        if (tc->in[i].ndim && tc->in[i].grad) return true;
    return false;
}

// ---- perf mode -----------------------------------------------------------------------------
// --perf times each case on one backend, in the spirit of ggml's test-backend-ops perf mode:
// random inputs (the case's generators, never zeros), warm-up runs, then the median of the
// samples. Each sample brackets enough back-to-back runs to last about PERF_SAMPLE_MS, so that
// microsecond ops are not all timer overhead; a sample on CUDA is the time between two CUDA
// events on the stream (launch gaps count where the host falls behind), on the CPU the
// clock_gettime wall time.
//   fwd: the op with the tape off (an inference forward); activations are released between
//        the runs of a sample, so a sample reuses the same memory.
//   bwd (--grad, cases with gradients): ddx_backward_from after an untimed taped forward, one
//        run per sample; on CUDA it includes seeding the output's gradient (one device copy
//        of the output and a stream synchronisation).
// GB/s counts the bytes that must move: fwd, the inputs read and the output written; bwd, the
// output gradient and the inputs read and the input gradients written. GFLOP/s where the case
// has a flops function. On CUDA, %copy is GB/s as a share of a 256 MiB device-to-device
// cudaMemcpyAsync (read + write) timed the same way in the same run.
// Before timing, one checked run: every output element and gradient must be finite, so a
// broken kernel is reported as a failure instead of being timed.
#define PERF_SAMPLE_MS 0.25
#define PERF_MAX_INNER 1000
#define PERF_WARMUP 3
#define PERF_BUDGET_MS 1000.0   // a measurement's timed total, beyond which fewer samples are taken
#define PERF_MIN_REPS 3
#define PERF_COPY_BYTES ((size_t)256 << 20)

typedef struct perf_clock {
    ddx_ctx *c;
    struct ddx_cuda_timer *ev;   // CUDA events; NULL: wall time (CPU)
    double t0;
} perf_clock;

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ddx_status clock_start(perf_clock *k) {
    if (k->ev) return ddx_cuda_timer_start(k->ev, k->c->cuda);
    k->t0 = wall_s();
    return DDX_OK;
}

static ddx_status clock_stop(perf_clock *k, double *ms) {
    if (k->ev) {
        float f = 0;
        ddx_status st = ddx_cuda_timer_stop(k->ev, k->c->cuda, &f);
        *ms = f;
        return st;
    }
    *ms = 1e3 * (wall_s() - k->t0);
    return DDX_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The inputs live outside the activation arena, so they survive the reset before each sample.
typedef struct perf_inputs {
    ddx_tensor t[DDX_MAX_INPUTS];
    ddx_tensor *ptr[DDX_MAX_INPUTS];
    double bytes, grad_bytes;   // all inputs; those with a gradient
} perf_inputs;

static void perf_inputs_free(ddx_device dev, perf_inputs *pi) {
    for (int i = 0; i < DDX_MAX_INPUTS; i++) ddx_dev_free(dev, pi->t[i].data);
    memset(pi, 0, sizeof *pi);
}

static ddx_status perf_inputs_make(ddx_ctx *c, const ddx_op_case *tc, const host_input *hin, perf_inputs *pi) {
    memset(pi, 0, sizeof *pi);
    for (int i = 0; i < tc->n_inputs; i++) {
        if (!hin[i].present) continue;
        ddx_dtype dt = dev_dtype(tc, &hin[i], c->device);
        pi->t[i] = ddx_tensor_wrap(NULL, dt, c->device, hin[i].ndim, hin[i].shape);
        size_t nb = 0;
        void *hb = host_bytes(&hin[i], dt, &nb);
        ddx_status st = ddx_dev_alloc(c->device, nb, &pi->t[i].data);
        if (st == DDX_OK) st = ddx_memcpy(pi->t[i].data, c->device, hb, DDX_CPU, nb);
        free(hb);
        if (st != DDX_OK) return st;
        pi->ptr[i] = &pi->t[i];
        pi->bytes += (double)nb;
        if (tc->in[i].grad) pi->grad_bytes += (double)nb;
    }
    return DDX_OK;
}

// Resets the context for one run: the case's flags, no stale gradients (they lived in the arena).
static ddx_status perf_begin(ddx_ctx *c, const ddx_op_case *tc, perf_inputs *pi, bool taped) {
    ddx_status st = ddx_ctx_reset(c);
    ddx_ctx_set_grad(c, taped);
    ddx_ctx_set_training(c, tc->training);
    ddx_ctx_set_tf32(c, tc->tf32);
    ddx_ctx_set_seed(c, 1234);
    ddx_ctx_set_step(c, 7);
    for (int i = 0; i < DDX_MAX_INPUTS; i++) {
        pi->t[i].grad = NULL;
        pi->t[i].requires_grad = taped && tc->in[i].grad;
    }
    return st;
}

static ddx_status run_status(ddx_ctx *c, const ddx_tensor *y) {
    if (c->status != DDX_OK) return c->status;
    return y ? DDX_OK : ddx_errorf(DDX_E_INTERNAL, "the op returned no tensor");
}

// The checked run. Returns DDX_OK with *why empty, DDX_OK with *why set (a non-finite value:
// a failure), or the status of an error. Sets the output's bytes.
static ddx_status perf_check(ddx_ctx *c, const ddx_op_case *tc, perf_inputs *pi, const ddx_tensor *seed, bool backward,
                             double *out_bytes, char *why, size_t nwhy) {
    why[0] = 0;
    DDX_TRY(perf_begin(c, tc, pi, backward));
    ddx_tensor *y = tc->apply(c, pi->ptr, tc);
    DDX_TRY(run_status(c, y));
    *out_bytes = (double)ddx_nbytes(y);
    int64_t bad = 0;
    double *out = to_host(y);
    if (!all_finite(out, ddx_numel(y), &bad)) snprintf(why, nwhy, "output element %" PRId64 " is %g", bad, out[bad]);
    free(out);
    if (why[0] || !backward) return DDX_OK;
    if (!ddx_same_shape(y, seed) || y->dtype != seed->dtype)
        return ddx_errorf(DDX_E_INTERNAL, "the output's shape or dtype differs between runs");
    DDX_TRY(ddx_backward_from(c, y, seed));
    for (int i = 0; i < tc->n_inputs && !why[0]; i++) {
        if (!pi->ptr[i] || !tc->in[i].grad) continue;
        if (!pi->t[i].grad) return ddx_errorf(DDX_E_INTERNAL, "backward produced no grad for input %d", i);
        double *g = to_host(pi->t[i].grad);
        if (!all_finite(g, ddx_numel(pi->t[i].grad), &bad))
            snprintf(why, nwhy, "gradient of input %d element %" PRId64 " is %g", i, bad, g[bad]);
        free(g);
    }
    return DDX_OK;
}

// A random output gradient of y's shape and dtype, outside the arena (host values N(0,1)).
static ddx_status perf_seed_make(ddx_ctx *c, const ddx_op_case *tc, perf_inputs *pi, rng *r, ddx_tensor *seed) {
    DDX_TRY(perf_begin(c, tc, pi, false));
    ddx_tensor *y = tc->apply(c, pi->ptr, tc);
    DDX_TRY(run_status(c, y));
    *seed = ddx_tensor_wrap(NULL, y->dtype, c->device, y->ndim, y->shape);
    int64_t n = ddx_numel(seed);
    size_t nb = ddx_nbytes(seed);
    void *hb = malloc(nb ? nb : 1);
    if (!hb) return ddx_errorf(DDX_E_NOMEM, "out of host memory for an output gradient");
    for (int64_t k = 0; k < n; k++) {
        float v = (float)rng_normal(r);
        if (seed->dtype == DDX_BF16)
            ((uint16_t *)hb)[k] = ddx_f32_to_bf16(v);
        else
            ((float *)hb)[k] = v;
    }
    ddx_status st = ddx_dev_alloc(c->device, nb, &seed->data);
    if (st == DDX_OK) st = ddx_memcpy(seed->data, c->device, hb, DDX_CPU, nb);
    free(hb);
    return st;
}

// Median ms of one forward.
static ddx_status perf_time_fwd(perf_clock *k, ddx_ctx *c, const ddx_op_case *tc, perf_inputs *pi, int reps, double *ms) {
    double one = 0, *v = calloc((size_t)reps, sizeof *v);
    if (!v) return ddx_errorf(DDX_E_NOMEM, "out of host memory");
    ddx_status st = DDX_OK;
    int inner = 1, n = reps;
    // Sample -1 sizes `inner`; the warm-up runs untimed; then the samples.
    for (int s = -2; s < n && st == DDX_OK; s++) {
        if ((st = perf_begin(c, tc, pi, false)) != DDX_OK) break;
        ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
        int runs = s == -2 ? PERF_WARMUP : inner;
        if (s != -2 && (st = clock_start(k)) != DDX_OK) break;
        for (int i = 0; i < runs && st == DDX_OK; i++) {
            ddx_tensor *y = tc->apply(c, pi->ptr, tc);
            if ((st = run_status(c, y)) == DDX_OK) st = ddx_arena_rewind(&c->act, mark);
        }
        if (st != DDX_OK || s == -2) continue;
        double t = 0;
        if ((st = clock_stop(k, &t)) != DDX_OK) break;
        if (s == -1) {
            one = t > 1e-4 ? t : 1e-4;
            inner = (int)ceil(PERF_SAMPLE_MS / one);
            inner = inner < 1 ? 1 : inner > PERF_MAX_INNER ? PERF_MAX_INNER : inner;
            double per_sample = one * inner;
            if (n * per_sample > PERF_BUDGET_MS) {
                n = (int)(PERF_BUDGET_MS / per_sample);
                if (n < PERF_MIN_REPS) n = PERF_MIN_REPS;
                if (n > reps) n = reps;
            }
        } else {
            v[s] = t / inner;
        }
    }
    if (st == DDX_OK) *ms = median_of(v, n);
    free(v);
    return st;
}

// Median ms of one backward (one per sample).
static ddx_status perf_time_bwd(perf_clock *k, ddx_ctx *c, const ddx_op_case *tc, perf_inputs *pi, const ddx_tensor *seed,
                                int reps, double *ms) {
    double *v = calloc((size_t)reps, sizeof *v), spent = 0;
    if (!v) return ddx_errorf(DDX_E_NOMEM, "out of host memory");
    ddx_status st = DDX_OK;
    int n = 0;
    for (int s = -PERF_WARMUP; s < reps && st == DDX_OK; s++) {
        if (s >= PERF_MIN_REPS && spent > PERF_BUDGET_MS) break;
        if ((st = perf_begin(c, tc, pi, true)) != DDX_OK) break;
        ddx_tensor *y = tc->apply(c, pi->ptr, tc);
        if ((st = run_status(c, y)) != DDX_OK) break;
        double t = 0;
        if ((st = clock_start(k)) == DDX_OK) st = ddx_backward_from(c, y, seed);
        if (st == DDX_OK) st = clock_stop(k, &t);
        if (st == DDX_OK && s >= 0) {
            v[n++] = t;
            spent += t;
        }
    }
    if (st == DDX_OK) *ms = median_of(v, n);
    free(v);
    return st;
}

// The copy bandwidth reference (GB/s, read + write), timed like a forward sample.
static ddx_status perf_copy_gbs(perf_clock *k, ddx_ctx *c, int reps, double *gbs) {
    void *src = NULL, *dst = NULL;
    const size_t n = PERF_COPY_BYTES / sizeof(uint32_t);
    uint32_t *h = malloc(PERF_COPY_BYTES);
    double *v = calloc((size_t)reps, sizeof *v);
    ddx_status st = !h || !v ? ddx_errorf(DDX_E_NOMEM, "out of host memory") : DDX_OK;
    if (st == DDX_OK) {
        rng r = {0xC0FFEE};
        for (size_t i = 0; i < n; i++) h[i] = (uint32_t)rng_u64(&r);   // random bits, never a zero page
        st = ddx_dev_alloc(c->device, PERF_COPY_BYTES, &src);
    }
    if (st == DDX_OK) st = ddx_dev_alloc(c->device, PERF_COPY_BYTES, &dst);
    if (st == DDX_OK) st = ddx_memcpy(src, c->device, h, DDX_CPU, PERF_COPY_BYTES);
    for (int s = -PERF_WARMUP; s < reps && st == DDX_OK; s++) {
        double t = 0;
        if ((st = clock_start(k)) == DDX_OK) st = ddx_cuda_copy_async(c->cuda, dst, src, PERF_COPY_BYTES);
        if (st == DDX_OK) st = clock_stop(k, &t);
        if (s >= 0) v[s] = t;
    }
    if (st == DDX_OK) *gbs = 2.0 * (double)PERF_COPY_BYTES / (median_of(v, reps) * 1e-3) * 1e-9;
    ddx_dev_free(c->device, src);
    ddx_dev_free(c->device, dst);
    free(h);
    free(v);
    return st;
}

static void perf_row(const ddx_op_case *tc, const char *dir, double ms, double bytes, double flops, double copy_gbs) {
    double gbs = bytes / (ms * 1e-3) * 1e-9;
    char fl[32] = "-", share[32] = "";
    if (flops > 0) snprintf(fl, sizeof fl, "%.1f", flops / (ms * 1e-3) * 1e-9);
    if (copy_gbs > 0) snprintf(share, sizeof share, " %6.0f%%", 100 * gbs / copy_gbs);
    printf("PERF %-13s %-60s %-3s %10.4f %9.2f %9s%s\n", ddx_op_name(tc->op), tc->desc, dir, ms, gbs, fl, copy_gbs > 0 ? share : "");
    fflush(stdout);
}

static void perf_case(const opts *o, perf_clock *k, ddx_ctx *c, const ddx_op_case *tc, host_input *hin, rng *r, double copy_gbs) {
    perf_inputs pi;
    ddx_tensor seed = {0};
    char why[256];
    double out_bytes = 0, ms = 0;
    const bool backward = o->grad && !tc->no_grad && has_grad_inputs(tc);
    ddx_status st = perf_inputs_make(c, tc, hin, &pi);
    if (st == DDX_OK && backward) st = perf_seed_make(c, tc, &pi, r, &seed);
    if (st == DDX_OK) st = perf_check(c, tc, &pi, &seed, backward, &out_bytes, why, sizeof why);
    if (st == DDX_OK && why[0]) {
        report(o, tc, "perf", 1, why);
    } else if (st == DDX_OK) {
        st = perf_time_fwd(k, c, tc, &pi, o->reps, &ms);
        if (st == DDX_OK) perf_row(tc, "fwd", ms, pi.bytes + out_bytes, tc->flops ? tc->flops(tc, false) : 0, copy_gbs);
        if (st == DDX_OK && backward) {
            st = perf_time_bwd(k, c, tc, &pi, &seed, o->reps, &ms);
            if (st == DDX_OK)
                perf_row(tc, "bwd", ms, out_bytes + pi.bytes + pi.grad_bytes, tc->flops ? tc->flops(tc, true) : 0, copy_gbs);
        }
        if (st == DDX_OK) n_pass++;
    }
    if (st != DDX_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", ddx_status_name(st), ddx_last_error());
        report(o, tc, "perf", st == DDX_E_UNSUPPORTED ? 2 : 1, msg);
    }
    (void)ddx_ctx_reset(c);
    c->status = DDX_OK;
    ddx_dev_free(c->device, seed.data);
    perf_inputs_free(c->device, &pi);
}

// Returns the exit code.
static int run_perf(const opts *o, const ddx_case_list *lists, size_t n_lists, const char *suite) {
    ddx_ctx c;
    perf_clock k = {.c = &c};
    double copy_gbs = 0;
    rng r = {o->seed};
    if (o->backend == DDX_CUDA && !ddx_cuda_available()) {
        printf("SKIP: no CUDA device (%s)\n", ddx_cuda_describe());
        printf("test_ops[%s]: 0 timed, 0 failed, 1 skipped\n", suite);
        return 77;
    }
    if (ddx_ctx_init(&c, o->backend, 1 << 20) != DDX_OK) {
        fprintf(stderr, "test_ops: %s\n", ddx_last_error());
        return 1;
    }
    if (o->backend == DDX_CUDA) {
        if (ddx_cuda_timer_create(&k.ev) != DDX_OK || perf_copy_gbs(&k, &c, o->reps, &copy_gbs) != DDX_OK) {
            fprintf(stderr, "test_ops: the copy bandwidth reference failed: %s\n", ddx_last_error());
            ddx_cuda_timer_destroy(k.ev);
            ddx_ctx_free(&c);
            return 1;
        }
        printf("test_ops: device %s\n", ddx_cuda_describe());
        printf("copy reference: cudaMemcpyAsync device-to-device, %zu MiB, read + write: %.0f GB/s\n", PERF_COPY_BYTES >> 20,
               copy_gbs);
    }
    printf("timing: %s, median of up to %d samples of >= %.2f ms after %d warm-up runs; bwd: one backward per sample\n",
           o->backend == DDX_CUDA ? "CUDA events" : "clock_gettime (wall)", o->reps, PERF_SAMPLE_MS, PERF_WARMUP);
    printf("%-4s %-13s %-60s %-3s %10s %9s %9s%s\n", "", "op", "case", "dir", "ms", "GB/s", "GFLOP/s",
           o->backend == DDX_CUDA ? "   %copy" : "");
    const unsigned mask = o->backend == DDX_CUDA ? DDX_CASE_PERF_CUDA : DDX_CASE_PERF_CPU;
    for (size_t l = 0; l < n_lists; l++) {
        for (size_t j = 0; j < lists[l].n; j++) {
            const ddx_op_case *tc = &lists[l].cases[j];
            if (o->only && strcmp(ddx_op_name(tc->op), o->only) != 0) continue;
            if (tc->perf_only && !(tc->perf_only & mask)) continue;
            host_input hin[DDX_MAX_INPUTS];
            memset(hin, 0, sizeof hin);
            for (int i = 0; i < tc->n_inputs; i++) gen_input(&hin[i], &tc->in[i], &r);
            perf_case(o, &k, &c, tc, hin, &r, copy_gbs);
            for (int i = 0; i < tc->n_inputs; i++) free_input(&hin[i]);
        }
    }
    ddx_cuda_timer_destroy(k.ev);
    ddx_ctx_free(&c);
    printf("test_ops[%s]: %d timed, %d failed", suite, n_pass, n_fail);
    if (n_skip) printf(", %d skipped", n_skip);
    printf("\n");
    if (n_fail) return 1;
    return n_pass == 0 && n_skip ? 77 : 0;
}

// ---- main ----------------------------------------------------------------------------------
static void usage(FILE *f) {
    fprintf(f, "usage: test_ops [--backend cpu|cuda] [--grad] [-o OP] [--seed N] [--list] [-v]\n"
               "       test_ops --perf [--backend cpu|cuda] [--grad] [-o OP] [--reps N] [--seed N]\n"
               "  --perf    time every case (forward; with --grad the backward too) instead of checking it\n"
               "  --reps N  --perf: timed samples per measurement, the median is printed (default 20)\n");
}

int main(int argc, char **argv) {
    opts o = {.backend = DDX_CPU, .seed = 0x5eed, .reps = 20};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--backend") && i + 1 < argc) {
            const char *b = argv[++i];
            if (!strcmp(b, "cpu"))
                o.backend = DDX_CPU;
            else if (!strcmp(b, "cuda"))
                o.backend = DDX_CUDA;
            else {
                fprintf(stderr, "test_ops: unknown backend '%s' (cpu or cuda)\n", b);
                return 2;
            }
        } else if (!strcmp(a, "--grad")) {
            o.grad = true;
        } else if (!strcmp(a, "-o") && i + 1 < argc) {
            o.only = argv[++i];
            if (ddx_op_from_name(o.only) == DDX_OP_COUNT) {
                fprintf(stderr, "test_ops: unknown op '%s'\n", o.only);
                return 2;
            }
        } else if (!strcmp(a, "--seed") && i + 1 < argc) {
            o.seed = strtoull(argv[++i], NULL, 0);
        } else if (!strcmp(a, "--perf")) {
            o.perf = true;
        } else if (!strcmp(a, "--reps") && i + 1 < argc) {
            const char *v = argv[++i];
            char *end;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (errno || end == v || *end || n < 1 || n > 100000) {
                fprintf(stderr, "test_ops: --reps '%s' must be an integer in [1, 100000]\n", v);
                return 2;
            }
            o.reps = (int)n;
        } else if (!strcmp(a, "--list")) {
            o.list = true;
        } else if (!strcmp(a, "-v")) {
            o.verbose = true;
        } else {
            usage(stderr);
            return 2;
        }
    }
    char suite[32];
    snprintf(suite, sizeof suite, "%s%s%s", o.backend == DDX_CUDA ? "cuda" : "cpu", o.grad ? ",grad" : "", o.perf ? ",perf" : "");
    printf("test_ops[%s]: --seed %" PRIu64 "\n", suite, o.seed);

#define DDX_X_CASES(fam) ddx_cases_##fam(),
    ddx_case_list lists[] = {DDX_CASE_FAMILIES(DDX_X_CASES) ddx_cases_perf()};
#undef DDX_X_CASES
    size_t n_lists = sizeof lists / sizeof lists[0];

    if (o.list) {
        for (size_t l = 0; l < n_lists; l++)
            for (size_t k = 0; k < lists[l].n; k++) {
                const ddx_op_case *tc = &lists[l].cases[k];
                const char *tag = !tc->perf_only                          ? ""
                                  : tc->perf_only == DDX_CASE_PERF_CPU  ? " (--perf, cpu)"
                                  : tc->perf_only == DDX_CASE_PERF_CUDA ? " (--perf, cuda)"
                                                                        : " (--perf)";
                printf("%-13s %s%s\n", ddx_op_name(tc->op), tc->desc, tag);
            }
        return 0;
    }
    if (o.perf) return run_perf(&o, lists, n_lists, suite);
    // Coverage: an op in the registry without a case is a failure, not a silent gap.
    if (!o.only) {
        for (int op = 0; op < DDX_OP_COUNT; op++) {
            size_t cnt = 0, cnt_grad = 0;
            for (size_t l = 0; l < n_lists; l++)
                for (size_t k = 0; k < lists[l].n; k++)
                    if (lists[l].cases[k].op == (ddx_op)op && !lists[l].cases[k].perf_only) {
                        cnt++;
                        cnt_grad += !lists[l].cases[k].no_grad;
                    }
            if (cnt == 0 || (o.grad && ddx_op_differentiable((ddx_op)op) && cnt_grad == 0)) {
                printf("FAIL %-13s coverage: no %stest case\n", ddx_op_name((ddx_op)op), cnt ? "gradient " : "");
                n_fail++;
            }
        }
    }
    if (o.backend == DDX_CUDA && !ddx_cuda_available()) {
        printf("SKIP: no CUDA device (%s)\n", ddx_cuda_describe());
        printf("test_ops[%s]: 0 passed, %d failed, 1 skipped\n", suite, n_fail);
        return n_fail ? 1 : 77;
    }

    ddx_ctx cpu, gpu;
    if (ddx_ctx_init(&cpu, DDX_CPU, 1 << 20) != DDX_OK) {
        fprintf(stderr, "test_ops: %s\n", ddx_last_error());
        return 1;
    }
    cpu.act.debug = true;
    if (o.backend == DDX_CUDA) {
        if (ddx_ctx_init(&gpu, DDX_CUDA, 1 << 20) != DDX_OK) {
            fprintf(stderr, "test_ops: %s\n", ddx_last_error());
            return 1;
        }
        gpu.act.debug = true;
        printf("test_ops: device %s\n", ddx_cuda_describe());
    }

    for (size_t l = 0; l < n_lists; l++) {
        for (size_t k = 0; k < lists[l].n; k++) {
            const ddx_op_case *tc = &lists[l].cases[k];
            if (o.only && strcmp(ddx_op_name(tc->op), o.only) != 0) continue;
            if (tc->perf_only) continue;   // timed by --perf, too big to check here
            rng r = case_rng(o.seed, tc->desc);
            host_input hin[DDX_MAX_INPUTS];
            memset(hin, 0, sizeof hin);
            for (int i = 0; i < tc->n_inputs; i++) gen_input(&hin[i], &tc->in[i], &r);
            if (o.grad && (tc->no_grad || !has_grad_inputs(tc))) {
                // forward-only case: nothing to check in gradient mode, and nothing counted
            } else if (o.backend == DDX_CPU) {
                if (o.grad)
                    check_cpu_grad(&o, &cpu, tc, hin, &r);
                else
                    check_cpu_forward(&o, &cpu, tc, hin);
            } else {
                check_cuda_forward(&o, &cpu, &gpu, tc, hin);
                if (o.grad && !tc->no_grad && has_grad_inputs(tc)) check_cuda_grad(&o, &cpu, &gpu, tc, hin, &r);
            }
            for (int i = 0; i < tc->n_inputs; i++) free_input(&hin[i]);
        }
    }
    ddx_ctx_free(&cpu);
    if (o.backend == DDX_CUDA) ddx_ctx_free(&gpu);
    printf("test_ops[%s]: %d passed, %d failed", suite, n_pass, n_fail);
    if (n_skip) printf(", %d skipped", n_skip);
    printf("\n");
    if (n_fail) return 1;
    return n_pass == 0 && n_skip ? 77 : 0;
}
