// Independent checks of the CPU embedding and timestep_emb: direct formulas in double and
// PyTorch-made tables (tests/data/embed_fixtures.h, from tests/reference/make_op_fixtures.py).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/op_impl.h"
#include "runtime/ops.h"
#include "ref_util.h"

#include "data/embed_fixtures.h"

#include "check.h"

// ---- embedding ------------------------------------------------------------------------------
static ddx_tensor *mk_idx(ddx_ctx *c, int64_t n, const int32_t *v) {
    ddx_tensor *t = ddx_new(c, DDX_I32, 1, (int64_t[]){n});
    memcpy(t->data, v, sizeof(int32_t) * (size_t)n);
    return t;
}

static void test_embedding(ddx_ctx *c) {
    ddx_ctx_reset(c);
    const int32_t idx[12] = {3, 0, 9, 3, 3, 7, 1, 0, 9, 2, 5, 3};
    const int64_t V = 10, D = 7, N = 12;
    ddx_tensor *it = mk_idx(c, N, idx), *table = mk(c, 2, (int64_t[]){V, D}, NULL, true);
    ddx_tensor *y = ddx_embedding(c, it, table);
    CHECK(y != NULL && y->shape[0] == N && y->shape[1] == D, "embedding: %s", ddx_last_error());
    if (!y) return;
    double ref[12 * 7], dt[10 * 7];
    for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < D; d++) ref[i * D + d] = ddx_f32c(table)[idx[i] * D + d];
    CHECK(close_arr("embedding fwd", ddx_f32c(y), ref, N * D, 0, 0), "embedding forward V=10 D=7 N=12");
    ddx_tensor *g = rand_grad_like(c, y);
    preset_grad(c, table, 2.0f);
    CHECK(ddx_backward_from(c, y, g) == DDX_OK, "embedding backward: %s", ddx_last_error());
    for (int64_t k = 0; k < V * D; k++) dt[k] = 2.0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < D; d++) dt[idx[i] * D + d] += ddx_f32c(g)[i * D + d];
    CHECK(close_arr("embedding dtable", ddx_f32c(table->grad), dt, V * D, 1e-6, 1e-6), "embedding scatter-add backward");
    CHECK(it->grad == NULL, "embedding: indices must get no grad");

    // V = 1: every index must be 0.
    ddx_ctx_reset(c);
    ddx_tensor *t1 = mk(c, 2, (int64_t[]){1, 7}, NULL, false);
    ddx_tensor *y1 = ddx_embedding(c, mk_idx(c, 3, (int32_t[]){0, 0, 0}), t1);
    CHECK(y1 && memcmp(ddx_f32c(y1) + 14, ddx_f32c(t1), 7 * sizeof(float)) == 0, "embedding V=1");

    ddx_ctx_reset(c);
    ddx_tensor *tb = mk(c, 2, (int64_t[]){V, D}, NULL, false);
    CHECK(expect_error(c, ddx_embedding(c, mk_idx(c, 3, (int32_t[]){0, 10, 1}), tb), DDX_E_INPUT, "index 10"),
          "embedding: index == V is an input error naming the index");
    tb = mk(c, 2, (int64_t[]){V, D}, NULL, false);
    CHECK(expect_error(c, ddx_embedding(c, mk_idx(c, 2, (int32_t[]){-1, 1}), tb), DDX_E_INPUT, "index -1"),
          "embedding: negative index is an input error");
    tb = mk(c, 2, (int64_t[]){V, D}, NULL, false);
    CHECK(expect_error(c, ddx_embedding(c, mk(c, 1, (int64_t[]){2}, NULL, false), tb), DDX_E_INPUT, "i32"),
          "embedding: f32 indices rejected");
}

// ---- timestep_emb -----------------------------------------------------------------------------
static void test_timestep(ddx_ctx *c) {
    for (size_t k = 0; k < sizeof temb_fixtures / sizeof temb_fixtures[0]; k++) {
        const temb_fixture *f = &temb_fixtures[k];
        ddx_ctx_reset(c);
        ddx_tensor *t = mk(c, 1, (int64_t[]){TEMB_N_T}, temb_t, false);
        ddx_timestep_emb_params p = {.dim = f->dim, .freq_shift = f->freq_shift, .flip_sin_to_cos = f->flip, .max_period = 10000.0f};
        ddx_tensor *y = ddx_timestep_emb(c, t, p);
        CHECK(y && y->shape[0] == TEMB_N_T && y->shape[1] == f->dim, "timestep_emb: %s", ddx_last_error());
        if (!y) continue;
        // PyTorch's fp32 arithmetic, rounded at the same points, agrees to 1e-6 up to t = 1000,
        // except in a column whose frequency PyTorch's vectorised expf (within 1 ulp, not
        // correctly rounded) rounds the other way: there t * freq moves by one ulp of the
        // argument. Those columns must be rare (2 of 64 for dim 128, shift 0, with torch 2.15 on
        // AVX512) and within that bound.
        const int half = f->dim / 2;
        int64_t loose_cols = 0, bad = 0;
        for (int k = 0; k < half; k++) {
            const float freq = (float)exp(-log(10000.0) * k / (half - (double)f->freq_shift));
            bool loose = false;
            for (int i = 0; i < TEMB_N_T; i++) {
                const double targ = (double)temb_t[i] * freq;
                const double bound = 1e-6 + fabs(temb_t[i]) * (nextafterf(freq, INFINITY) - freq) +
                                     (nextafterf((float)targ, INFINITY) - (float)targ);
                for (int half_i = 0; half_i < 2; half_i++) {
                    const int64_t at = (int64_t)i * f->dim + half_i * half + k;
                    const double e = fabs((double)ddx_f32c(y)[at] - (double)f->table[at]);
                    if (e > 1e-6) loose = true;
                    if (e > bound) {
                        if (bad++ == 0)
                            printf("  timestep: t=%g column %lld: got %.9g, want %.9g (err %.3g > %.3g)\n",
                                   (double)temb_t[i], (long long)(half_i * half + k), (double)ddx_f32c(y)[at],
                                   (double)f->table[at], e, bound);
                    }
                }
            }
            loose_cols += loose;
        }
        CHECK(bad == 0 && loose_cols <= 2,
              "timestep_emb dim %d shift %g flip %d matches diffusers get_timestep_embedding (%lld elements out of "
              "bounds, %lld frequencies beyond 1e-6)",
              f->dim, (double)f->freq_shift, f->flip, (long long)bad, (long long)loose_cols);
        // Small timesteps leave no room for an ulp of argument to matter: 1e-6 throughout.
        CHECK(close_arrf("timestep t<=7 vs torch", ddx_f32c(y), f->table, 3 * f->dim, 1e-6),
              "timestep_emb dim %d: t in {0, 1, 7} within 1e-6 of PyTorch", f->dim);
    }
    ddx_timestep_emb_params good = {.dim = 32, .freq_shift = 1.0f, .flip_sin_to_cos = false, .max_period = 10000.0f};
    ddx_ctx_reset(c);
    ddx_timestep_emb_params odd = good;
    odd.dim = 33;
    CHECK(expect_error(c, ddx_timestep_emb(c, mk(c, 1, (int64_t[]){2}, NULL, false), odd), DDX_E_INPUT, "even"),
          "timestep_emb: odd dim rejected");
    CHECK(expect_error(c, ddx_timestep_emb(c, mk(c, 1, (int64_t[]){2}, NULL, true), good), DDX_E_INPUT, "grad"),
          "timestep_emb: t with requires_grad rejected");
    ddx_timestep_emb_params zero = good;
    zero.dim = 2;
    CHECK(expect_error(c, ddx_timestep_emb(c, mk(c, 1, (int64_t[]){2}, NULL, false), zero), DDX_E_INPUT, "freq_shift"),
          "timestep_emb: dim/2 == freq_shift (division by zero) rejected");
}

int main(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)64 << 20) != DDX_OK) {
        printf("embed-ref: cannot create a CPU context: %s\n", ddx_last_error());
        return 1;
    }
    c.act.debug = true;   // poison allocations with NaN: an unwritten output element shows up

    test_embedding(&c);
    test_timestep(&c);

    ddx_status gst = ddx_arena_check_guards(&c.act);
    CHECK(gst == DDX_OK, "arena guards intact: %s", ddx_last_error());
    ddx_ctx_free(&c);
    return ddx_test_finish("embed-ref");
}
