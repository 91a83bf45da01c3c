// Class-conditional training and sampling pieces that need no data set (tests/test_cond.sh runs
// them end to end):
//   - label dropout (train.label_dropout): over 2,000 steps of 64 labels the dropped fraction
//     is p within 5 binomial standard deviations, for several p; the draw depends only on
//     (seed, step, position), so a resumed run redraws it exactly; p = 0 drops nothing;
//   - the trainer trains on exactly those labels (t->labels after a step), and refuses a label
//     that is not a class of the model;
//   - class lookup by number and by stored name (exact, then ignoring case), one-line errors;
//   - --cuda (gpu suite, exit 77 without a GPU): the CUDA trainer (CUDA graphs on) trains on
//     the same labels as the CPU one step after step (same mask), and guided sampling on the
//     GPU, with CUDA graphs and n not a multiple of the batch, matches the CPU to fp32 tolerance.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/classes.h"
#include "runtime/cuda.h"
#include "train/trainer.h"

static void test_dropout_fraction(void) {
    enum { B = 64, STEPS = 2000 };
    const double ps[] = {0.1, 0.25, 0.5};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        const double p = ps[k];
        long dropped = 0;
        for (int s = 1; s <= STEPS; s++) {
            int32_t y[B];
            for (int j = 0; j < B; j++) y[j] = j % 10;
            if (ddx_label_dropout(y, B, 10, p, 123, (uint64_t)s) != DDX_OK) {
                CHECK(0, "dropout draw: %s", ddx_last_error());
                return;
            }
            for (int j = 0; j < B; j++) {
                dropped += y[j] == 10;
                if (y[j] != 10 && y[j] != j % 10) {
                    CHECK(0, "label %d of step %d became %d, neither itself nor the null class", j, s, y[j]);
                    return;
                }
            }
        }
        const double n = (double)B * STEPS, frac = (double)dropped / n, sd = sqrt(p * (1.0 - p) / n);
        CHECK(fabs(frac - p) <= 5.0 * sd, "p %g: dropped fraction %.5f, outside p +- 5 sd (%.5f)", p, frac, 5.0 * sd);
    }
    // A function of (seed, step, position) only: redrawn the same, different for another step
    // or seed; p = 0 never drops.
    int32_t a[B], b[B], c[B], d[B], z[B];
    for (int j = 0; j < B; j++) a[j] = b[j] = c[j] = d[j] = z[j] = 3;
    ddx_label_dropout(a, B, 10, 0.5, 7, 41);
    ddx_label_dropout(b, B, 10, 0.5, 7, 41);
    ddx_label_dropout(c, B, 10, 0.5, 7, 42);
    ddx_label_dropout(d, B, 10, 0.5, 8, 41);
    ddx_label_dropout(z, B, 10, 0.0, 7, 41);
    CHECK(memcmp(a, b, sizeof a) == 0, "the same (seed, step) drew another mask");
    CHECK(memcmp(a, c, sizeof a) != 0 && memcmp(a, d, sizeof a) != 0, "another step or seed drew the same mask");
    int kept = 0;
    for (int j = 0; j < B; j++) kept += z[j] == 3;
    CHECK(kept == B, "p = 0 dropped %d labels", B - kept);
    // A prefix of a batch draws what the start of a larger batch draws (position-keyed).
    int32_t e[300], f[20];
    for (int j = 0; j < 300; j++) e[j] = 1;
    for (int j = 0; j < 20; j++) f[j] = 1;
    ddx_label_dropout(e, 300, 10, 0.5, 7, 41);
    ddx_label_dropout(f, 20, 10, 0.5, 7, 41);
    CHECK(memcmp(e, f, sizeof f) == 0, "the mask of 20 labels is not the start of the mask of 300");
}

static void tiny_cfg(ddx_config *cfg, int batch) {
    ddx_config_defaults(cfg);
    cfg->model.type = DDX_MODEL_TYPE_UNET_PLAIN;
    cfg->model.image_size = 8;
    cfg->data.image_size = 8;
    cfg->model.in_channels = cfg->model.out_channels = 1;
    cfg->model.ch = 4;
    cfg->model.ch_mult = (ddx_int_list){3, {1, 2, 2}};
    cfg->model.num_classes = 5;
    cfg->train.label_dropout = 0.3;
    cfg->train.batch_size = batch;
    cfg->train.total_steps = 10;
    cfg->train.warmup_steps = 0;
    cfg->train.lr = 1e-3;
    cfg->diffusion.timesteps = 50;
    cfg->sample.sampler = DDX_SAMPLER_DDIM;
    cfg->sample.steps = 4;
    cfg->run.seed = 11;
    cfg->run.precision = DDX_PRECISION_FP32;   // the GPU check compares losses with the CPU's
}

static void batch_inputs(int B, int step, float *x, int32_t *y) {
    for (int i = 0; i < B * 64; i++) x[i] = sinf(0.13f * (float)(i + 17 * step));
    for (int j = 0; j < B; j++) y[j] = (j + step) % 5;
}

static void test_trainer_labels(void) {
    enum { B = 16 };
    ddx_config cfg;
    tiny_cfg(&cfg, B);
    ddx_trainer t;
    ddx_status st = ddx_trainer_init(&t, &cfg, DDX_CPU);
    CHECK(st == DDX_OK, "trainer init: %s", ddx_last_error());
    if (st != DDX_OK) return;
    float x[B * 64];
    int32_t y[B], want[B];
    int dropped = 0;
    for (int s = 1; s <= 3 && st == DDX_OK; s++) {
        batch_inputs(B, s, x, y);
        memcpy(want, y, sizeof y);
        ddx_label_dropout(want, B, 5, 0.3, 11, (uint64_t)s);
        st = ddx_trainer_step(&t, x, y, NULL, NULL);
        CHECK(st == DDX_OK && t.labels && memcmp(t.labels, want, sizeof want) == 0,
              "step %d: the trainer's labels are not the data's with the step's dropout: %s", s, st ? ddx_last_error() : "");
        for (int j = 0; j < B; j++) dropped += want[j] == 5;
    }
    CHECK(dropped > 0, "p 0.3 over 48 labels dropped none");
    // A label outside the model's classes is the data's fault: refused, step not taken.
    batch_inputs(B, 9, x, y);
    y[4] = 5;
    const int64_t before = t.step;
    st = ddx_trainer_step(&t, x, y, NULL, NULL);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "label 5") && t.step == before, "label 5 of a 5-class model: %s",
          ddx_last_error());
    ddx_trainer_free(&t);
}

static void test_class_lookup(void) {
    const char *names = "T-shirt/top\nTrouser\nAnkle boot\nankle BOOT\n";
    int32_t k = -1;
    CHECK(ddx_class_names_count(names) == 4 && ddx_class_names_count(NULL) == 0, "name count");
    CHECK(ddx_class_lookup(names, 4, "1", "--class", &k) == DDX_OK && k == 1, "by number");
    CHECK(ddx_class_lookup(names, 4, "Trouser", "--class", &k) == DDX_OK && k == 1, "by name");
    CHECK(ddx_class_lookup(names, 4, "trouser", "--class", &k) == DDX_OK && k == 1, "by name, case ignored");
    CHECK(ddx_class_lookup(names, 4, "ankle BOOT", "--class", &k) == DDX_OK && k == 3, "the exact name first");
    CHECK(ddx_class_lookup(names, 4, "ANKLE boot", "--class", &k) == DDX_E_INPUT && strstr(ddx_last_error(), "several"),
          "an ambiguous name: %s", ddx_last_error());
    CHECK(ddx_class_lookup(names, 4, "4", "--class", &k) == DDX_E_INPUT && strstr(ddx_last_error(), "--class 4"),
          "class 4 of 4: %s", ddx_last_error());
    CHECK(ddx_class_lookup(names, 4, "-1", "--class", &k) == DDX_E_INPUT, "class -1");
    CHECK(ddx_class_lookup(names, 4, "Sneaker", "--class", &k) == DDX_E_INPUT && strstr(ddx_last_error(), "0 T-shirt/top"),
          "an unknown name lists the classes: %s", ddx_last_error());
    CHECK(ddx_class_lookup(NULL, 3, "2", "--class", &k) == DDX_OK && k == 2, "a number without stored names");
    CHECK(ddx_class_lookup(NULL, 3, "cat", "--class", &k) == DDX_E_INPUT && strstr(ddx_last_error(), "no class names"),
          "a name without stored names: %s", ddx_last_error());
    CHECK(ddx_class_lookup(names, 0, "1", "--class", &k) == DDX_E_INPUT && strstr(ddx_last_error(), "unconditional"),
          "a class of an unconditional model: %s", ddx_last_error());
    char buf[8];
    ddx_class_name(names, 2, buf, sizeof buf);
    CHECK(!strcmp(buf, "Ankle b"), "name cut to the buffer: '%s'", buf);
    ddx_class_name(names, 9, buf, sizeof buf);
    CHECK(!strcmp(buf, ""), "a name past the list is empty");
}

// ---- the GPU -----------------------------------------------------------------------------------
static int main_cuda(void) {
    if (!ddx_cuda_available()) {
        printf("SKIP: no CUDA device (%s)\n", ddx_cuda_describe());
        return 77;
    }
    enum { B = 16 };
    ddx_config cfg;
    tiny_cfg(&cfg, B);
    ddx_trainer tc, tg;
    ddx_status st = ddx_trainer_init(&tc, &cfg, DDX_CPU);
    if (st == DDX_OK) st = ddx_trainer_init(&tg, &cfg, DDX_CUDA);
    CHECK(st == DDX_OK, "trainers: %s", ddx_last_error());
    if (st != DDX_OK) return ddx_test_finish("cond-cuda");
    CHECK(tg.graphs, "the CUDA trainer runs CUDA graphs by default");
    float x[B * 64];
    int32_t y[B];
    for (int s = 1; s <= 5 && st == DDX_OK; s++) {
        batch_inputs(B, s, x, y);
        float lc = 0, lg = 0;
        st = ddx_trainer_step(&tc, x, y, &lc, NULL);
        if (st == DDX_OK) st = ddx_trainer_step(&tg, x, y, &lg, NULL);
        CHECK(st == DDX_OK && memcmp(tc.labels, tg.labels, B * sizeof(int32_t)) == 0,
              "step %d: the CUDA trainer's dropout mask differs from the CPU's: %s", s, st ? ddx_last_error() : "");
        CHECK(st == DDX_OK && fabsf(lc - lg) <= 1e-3f * (1.0f + fabsf(lc)), "step %d: loss cpu %g cuda %g", s, lc, lg);
    }
    // Guided sampling from the same weights: 7 images, batch 3 (7 = 3 + 3 + 1), CUDA graphs on.
    enum { N = 7, PER = 64 };
    float oc[N * PER], og[N * PER];
    const int32_t yl[N] = {0, 1, 2, 3, 4, 5, 2};
    ddx_schedule sch;
    st = ddx_schedule_init(&sch, &cfg);
    ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 5, .eta = 1.0, .seed = 3, .batch = 3, .graphs = true};
    ddx_sampling *sc = NULL, *sg = NULL;
    if (st == DDX_OK) st = ddx_sampling_create(tc.model, &sch, &o, DDX_CPU, &sc);
    if (st == DDX_OK) st = ddx_sampling_create(tg.model, &sch, &o, DDX_CUDA, &sg);
    if (st == DDX_OK) st = ddx_sampling_set_guidance(sc, 3.0);
    if (st == DDX_OK) st = ddx_sampling_set_guidance(sg, 3.0);
    if (st == DDX_OK) st = ddx_sampling_run(sc, N, yl, NULL, oc, NULL, NULL);
    if (st == DDX_OK) st = ddx_sampling_run(sg, N, yl, NULL, og, NULL, NULL);
    CHECK(st == DDX_OK, "guided sampling: %s", ddx_last_error());
    double worst = 0;
    for (int i = 0; st == DDX_OK && i < N * PER; i++) {
        const double d = fabs((double)oc[i] - (double)og[i]) / (1.0 + fabs((double)oc[i]));
        worst = d > worst || d != d ? d : worst;
    }
    // The weights already differ by the training steps' fp32 reduction order, and 5 steps of
    // sampling carry that on: 1e-3 relative.
    CHECK(st == DDX_OK && worst < 1e-3, "guided sampling cuda vs cpu: %g", worst);
    ddx_sampling_free(sc);
    ddx_sampling_free(sg);
    ddx_schedule_free(&sch);
    ddx_trainer_free(&tc);
    ddx_trainer_free(&tg);
    return ddx_test_finish("cond-cuda");
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--cuda")) return main_cuda();
    test_dropout_fraction();
    test_trainer_labels();
    test_class_lookup();
    return ddx_test_finish("cond");
}
