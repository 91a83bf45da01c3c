// Data-parallel rows draw what the whole batch draws for them (no MPI needed):
//   - dropout of rows [lo, hi) with ddx_ctx_set_sample0(lo) equals rows [lo, hi) of the
//     dropout of the whole batch, forward and backward, for row sizes that are and are not a
//     multiple of 4 (the Philox group), at several split points;
//   - the timesteps and coefficients of ddx_diffusion_loss_inputs_at(lo) equal the whole
//     batch's rows lo.., and the loss of each share, weighted n / B, sums to the whole loss.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/diffusion.h"
#include "models/model.h"
#include "runtime/ops.h"
#include "runtime/philox.h"

#include "check.h"

// Forward y and backward dx (with dy = 1 + 0.5 * index) of dropout over x[n0, n1) with
// sample0 = n0; row = elements per sample.
static void dropout_rows(ddx_ctx *c, const float *x, int64_t n0, int64_t n1, int64_t row, float *y, float *dx) {
    ddx_ctx_reset(c);
    ddx_ctx_set_seed(c, 1234);
    ddx_ctx_set_step(c, 17);
    ddx_ctx_set_training(c, true);
    ddx_ctx_set_grad(c, true);
    ddx_ctx_set_sample0(c, (uint64_t)n0);
    const int64_t n = n1 - n0, shape[2] = {n, row};
    ddx_tensor *xt = ddx_new(c, DDX_F32, 2, shape);
    memcpy(xt->data, x + n0 * row, (size_t)(n * row) * sizeof(float));
    xt->requires_grad = true;
    ddx_tensor *yt = ddx_dropout(c, xt, 0.3f);
    ddx_tensor *g = ddx_new(c, DDX_F32, 2, shape);
    for (int64_t i = 0; i < n * row; i++) ((float *)g->data)[i] = 1.0f + 0.5f * (float)((n0 * row + i) % 7);
    CHECK(yt && ddx_backward_from(c, yt, g) == DDX_OK && xt->grad, "dropout rows [%lld, %lld): %s", (long long)n0, (long long)n1,
          ddx_last_error());
    if (!yt || !xt->grad) return;
    memcpy(y + n0 * row, yt->data, (size_t)(n * row) * sizeof(float));
    memcpy(dx + n0 * row, xt->grad->data, (size_t)(n * row) * sizeof(float));
    ddx_ctx_set_sample0(c, 0);
}

int main(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)8 << 20)) return 1;
    const int64_t B = 7;
    for (int64_t row = 5; row <= 1030; row += 341) {   // 5, 346, 687, 1028: odd, even, multiple of 4
        float *x = malloc((size_t)(B * row) * sizeof *x), *y = calloc((size_t)(B * row), sizeof *y),
              *dx = calloc((size_t)(B * row), sizeof *dx), *y2 = calloc((size_t)(B * row), sizeof *y2),
              *dx2 = calloc((size_t)(B * row), sizeof *dx2);
        ddx_philox_normal(x, B * row, 3, 5, 0, 0);
        dropout_rows(&c, x, 0, B, row, y, dx);
        size_t kept = 0;
        for (int64_t i = 0; i < B * row; i++) kept += y[i] != 0;
        CHECK(kept > 0 && kept < (size_t)(B * row), "row %lld: dropout keeps some and drops some (%zu of %lld)", (long long)row,
              kept, (long long)(B * row));
        for (int split = 1; split < 4; split++) {
            const int64_t cuts[4][4] = {{0, B, B, B}, {0, 3, B, B}, {0, 2, 4, B}, {0, 1, 5, B}};
            memset(y2, 0, (size_t)(B * row) * sizeof *y2);
            memset(dx2, 0, (size_t)(B * row) * sizeof *dx2);
            for (int k = 0; k < 3; k++)
                if (cuts[split][k + 1] > cuts[split][k]) dropout_rows(&c, x, cuts[split][k], cuts[split][k + 1], row, y2, dx2);
            CHECK(!memcmp(y, y2, (size_t)(B * row) * sizeof *y) && !memcmp(dx, dx2, (size_t)(B * row) * sizeof *dx),
                  "row size %lld, split %d: the shares' dropout differs from the whole batch's", (long long)row, split);
        }
        free(x), free(y), free(dx), free(y2), free(dx2);
    }
    ddx_ctx_free(&c);

    // Timesteps and coefficients by global row index.
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    ddx_schedule s;
    CHECK(ddx_schedule_init(&s, &cfg) == DDX_OK, "schedule: %s", ddx_last_error());
    float t[B], coef[2 * B], t2[B], coef2[2 * B];
    CHECK(ddx_diffusion_loss_inputs(&s, B, 9, 4, t, coef, NULL) == DDX_OK, "inputs");
    bool same = true;
    for (int64_t lo = 0; lo < B; lo += 3) {
        int64_t n = lo + 3 <= B ? 3 : B - lo;
        CHECK(ddx_diffusion_loss_inputs_at(&s, n, 9, 4, (uint64_t)lo, t2, coef2, NULL) == DDX_OK, "inputs_at");
        same = same && !memcmp(t2, t + lo, (size_t)n * sizeof *t) && !memcmp(coef2, coef + 2 * lo, (size_t)(2 * n) * sizeof *coef);
    }
    CHECK(same, "the timesteps of a share differ from the whole batch's rows");
    ddx_schedule_free(&s);
    return ddx_test_finish("dp-rows");
}
