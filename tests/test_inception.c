// The FID Inception network (models/inception.c) against pytorch-fid's own InceptionV3.
//
// tests/data/inception/fixture.safetensors (tests/reference/gen_inception.py) holds two small
// images (32x32 RGB, 20x24 grayscale), the pool3 features and fc logits PyTorch computed for
// them, and the name and shape of every tensor of the state dict. The weights are a formula of
// the name and element index (see the script), rebuilt here in C, written through the runtime's
// safetensors writer and loaded with ddx_inception_load, so the test checks the names, shapes,
// BatchNorm folding, layouts and the whole forward against PyTorch without committing 95 MB.
//
// Default (cpu suite): the CPU forward vs the fixture, and bad weight files. `--cuda` (gpu
// suite; exit 77 without a GPU): the CUDA forward in fp32, tf32 and bf16 vs the CPU one, and
// chunked batches vs one image at a time.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/inception.h"
#include "runtime/cuda.h"
#include "runtime/safetensors.h"

#include "check.h"

#define FIXTURE "data/inception/fixture.safetensors"

// ---- the weight formula (gen_inception.py) ------------------------------------------------
static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001B3ull;
    }
    return h;
}

static double uniform_at(uint64_t h, uint64_t i) {
    uint64_t z = h + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 40) * 0x1p-24;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static void fill_tensor(const char *name, int ndim, const int64_t *shape, float *out) {
    int64_t n = 1, fan_in = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    for (int d = 1; d < ndim; d++) fan_in *= shape[d];
    const uint64_t h = fnv1a64(name);
    const bool w = ends_with(name, "conv.weight") || strcmp(name, "fc.weight") == 0;
    const bool one = ends_with(name, "bn.weight") || ends_with(name, "bn.running_var");
    const double a = sqrt(6.0 / (double)fan_in);
    for (int64_t i = 0; i < n; i++) {
        const double u = uniform_at(h, (uint64_t)i);
        out[i] = (float)(w ? (2.0 * u - 1.0) * a : one ? 0.5 + u : 0.2 * u - 0.1);
    }
}

// ---- the state dict's tensor list from the fixture --------------------------------------------
#define MAX_T 512
typedef struct wt {
    char name[80];
    int ndim;
    int64_t shape[4];
    float *data;
} wt;
static wt g_t[MAX_T];
static int g_nt;

static bool parse_tensors(const char *list) {
    const char *p = list;
    while (*p && g_nt < MAX_T) {
        wt *t = &g_t[g_nt];
        const char *colon = strchr(p, ':');
        if (!colon || colon - p >= (long)sizeof t->name) return false;
        memcpy(t->name, p, (size_t)(colon - p));
        t->name[colon - p] = 0;
        p = colon + 1;
        t->ndim = 0;
        for (;;) {
            char *end;
            long long v = strtoll(p, &end, 10);
            if (end == p || t->ndim >= 4) return false;
            t->shape[t->ndim++] = v;
            p = end;
            if (*p == 'x') p++;
            else break;
        }
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
        t->data = malloc(sizeof(float) * (size_t)n);
        if (!t->data) return false;
        fill_tensor(t->name, t->ndim, t->shape, t->data);
        g_nt++;
        if (*p == ',') p++;
        else if (*p) return false;
    }
    return *p == 0;
}

// Writes the weights to path: all of them, or without `drop`, with `reshape` given a swapped
// shape, or without the fc.
static ddx_status write_weights(const char *path, const char *drop, const char *reshape, bool with_fc) {
    ddx_st_writer w;
    ddx_st_writer_init(&w);
    ddx_status st = DDX_OK;
    for (int i = 0; i < g_nt && st == DDX_OK; i++) {
        const wt *t = &g_t[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        if (!with_fc && strncmp(t->name, "fc.", 3) == 0) continue;
        int64_t shape[4];
        memcpy(shape, t->shape, sizeof shape);
        if (reshape && strcmp(t->name, reshape) == 0) {
            int64_t s = shape[2];
            shape[2] = shape[3];
            shape[3] = s;
        }
        st = ddx_st_writer_add(&w, t->name, DDX_ST_F32, t->ndim, shape, t->data);
    }
    if (st == DDX_OK) st = ddx_st_write(&w, path);
    ddx_st_writer_free(&w);
    return st;
}

// ---- comparisons ------------------------------------------------------------------------------
// max |a - b| / max |b|: the features' scale is their largest entry (many are near 0 after the
// ReLUs and the average, so a per-element relative error would measure noise).
static double rel_err(const float *a, const float *b, int64_t n) {
    double d = 0.0, m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

typedef struct fixture {
    ddx_st_file f;
    const float *rgb, *gray, *pool3, *logits;   // aligned copies
    float *own;
} fixture;

static const float *copy_of(const ddx_st_tensor *t, float **pool, size_t *off) {
    float *dst = *pool + *off;
    memcpy(dst, t->data, t->nbytes);
    *off += t->nbytes / sizeof(float);
    return dst;
}

static bool fixture_load(fixture *fx) {
    memset(fx, 0, sizeof *fx);
    if (ddx_st_read(FIXTURE, &fx->f) != DDX_OK) {
        printf("inception: %s\n", ddx_last_error());
        return false;
    }
    const char *names[4] = {"image_rgb", "image_gray", "pool3", "logits"};
    const ddx_st_tensor *t[4];
    size_t total = 0;
    for (int i = 0; i < 4; i++) {
        t[i] = ddx_st_find(&fx->f, names[i]);
        if (!t[i] || t[i]->dtype != DDX_ST_F32) {
            printf("inception: %s lacks an F32 '%s'\n", FIXTURE, names[i]);
            return false;
        }
        total += t[i]->nbytes / sizeof(float);
    }
    fx->own = malloc(total * sizeof(float));
    size_t off = 0;
    fx->rgb = copy_of(t[0], &fx->own, &off);
    fx->gray = copy_of(t[1], &fx->own, &off);
    fx->pool3 = copy_of(t[2], &fx->own, &off);
    fx->logits = copy_of(t[3], &fx->own, &off);
    const char *list = ddx_st_meta_get(&fx->f, "tensors");
    if (!list || !parse_tensors(list)) {
        printf("inception: %s has no readable 'tensors' metadata\n", FIXTURE);
        return false;
    }
    return true;
}

// pool3 and logits of the fixture's two images on one network.
static ddx_status run_fixture(ddx_inception *net, const fixture *fx, float *pool3, float *logits) {
    DDX_TRY(ddx_inception_features(net, fx->rgb, 1, 32, 32, 3, pool3, logits));
    return ddx_inception_features(net, fx->gray, 1, 20, 24, 1, pool3 + DDX_INCEPTION_FEATURES,
                                  logits ? logits + DDX_INCEPTION_LOGITS : NULL);
}

// ---- CPU: parity with PyTorch and bad weight files --------------------------------------------
static void test_cpu_parity(const fixture *fx, const char *path) {
    ddx_inception *net = NULL;
    ddx_status st = ddx_inception_load(path, DDX_CPU, DDX_INCEPTION_FP32, 1, &net);
    CHECK(st == DDX_OK, "load the formula weights: %s", ddx_last_error());
    if (st != DDX_OK) return;
    CHECK(ddx_inception_has_logits(net), "the fc is found");
    float pool3[2 * DDX_INCEPTION_FEATURES], logits[2 * DDX_INCEPTION_LOGITS];
    st = run_fixture(net, fx, pool3, logits);
    CHECK(st == DDX_OK, "features: %s", ddx_last_error());
    if (st == DDX_OK) {
        for (int i = 0; i < 2; i++) {
            const double ep = rel_err(pool3 + i * DDX_INCEPTION_FEATURES, fx->pool3 + i * DDX_INCEPTION_FEATURES,
                                      DDX_INCEPTION_FEATURES);
            const double el = rel_err(logits + i * DDX_INCEPTION_LOGITS, fx->logits + i * DDX_INCEPTION_LOGITS,
                                      DDX_INCEPTION_LOGITS);
            printf("inception: image %d (%s): pool3 rel err %.3g, logits rel err %.3g\n", i, i ? "20x24 gray" : "32x32 rgb",
                   ep, el);
            CHECK(ep <= 1e-4, "image %d: pool3 vs pytorch-fid: rel err %.3g > 1e-4", i, ep);
            CHECK(el <= 1e-4, "image %d: logits vs pytorch-fid: rel err %.3g > 1e-4", i, el);
        }
    }
    ddx_inception_free(net);

    // Batches: three RGB images in chunks of 2 + 1 (the fixture image, its mirror, the fixture
    // image again); the first and the last must each be PyTorch's features for that image.
    st = ddx_inception_load(path, DDX_CPU, DDX_INCEPTION_FP32, 2, &net);
    CHECK(st == DDX_OK && ddx_inception_batch(net) == 2, "load with batch 2: %s", ddx_last_error());
    if (st != DDX_OK) return;
    enum { PX = 32 * 32 * 3 };
    static float three[3 * PX], f3[3 * DDX_INCEPTION_FEATURES];
    for (int k = 0; k < PX; k++) {
        const int y = k / (32 * 3), x = (k / 3) % 32, ch = k % 3;
        three[k] = three[2 * PX + k] = fx->rgb[k];
        three[PX + k] = fx->rgb[(y * 32 + 31 - x) * 3 + ch];
    }
    st = ddx_inception_features(net, three, 3, 32, 32, 3, f3, NULL);
    CHECK(st == DDX_OK, "batched features: %s", ddx_last_error());
    if (st == DDX_OK) {
        const double e0 = rel_err(f3, fx->pool3, DDX_INCEPTION_FEATURES);
        const double e2 = rel_err(f3 + 2 * DDX_INCEPTION_FEATURES, fx->pool3, DDX_INCEPTION_FEATURES);
        const double em = rel_err(f3 + DDX_INCEPTION_FEATURES, fx->pool3, DDX_INCEPTION_FEATURES);
        CHECK(e0 <= 1e-4 && e2 <= 1e-4, "batch of 2 + 1: images 0 and 2 vs pytorch-fid: %.3g, %.3g", e0, e2);
        CHECK(em > 1e-3, "the mirrored image gives other features (%.3g)", em);
    }

    // Bad calls on a good network.
    CHECK(ddx_inception_features(net, fx->rgb, 1, 32, 32, 2, pool3, NULL) == DDX_E_INPUT, "2 channels refused");
    CHECK(ddx_inception_features(net, fx->rgb, 0, 32, 32, 3, pool3, NULL) == DDX_E_INPUT, "n = 0 refused");
    ddx_inception_free(net);
}

static void expect_load_error(const char *path, const char *what, const char *needle1, const char *needle2) {
    ddx_inception *net = NULL;
    ddx_clear_error();
    ddx_status st = ddx_inception_load(path, DDX_CPU, DDX_INCEPTION_FP32, 1, &net);
    const char *msg = ddx_last_error();
    CHECK(st == DDX_E_INPUT && net == NULL, "%s: status %s, want DDX_E_INPUT", what, ddx_status_name(st));
    CHECK(strstr(msg, path) && strstr(msg, needle1) && (!needle2 || strstr(msg, needle2)) && !strchr(msg, '\n'),
          "%s: the message names the file and '%s': %s", what, needle1, msg);
    ddx_inception_free(net);
}

static void test_bad_weights(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    CHECK(write_weights(path, "Mixed_6c.branch7x7_2.bn.running_var", NULL, true) == DDX_OK, "write: %s", ddx_last_error());
    expect_load_error(path, "a missing BatchNorm tensor", "Mixed_6c.branch7x7_2.bn.running_var", "missing");

    snprintf(path, sizeof path, "%s/shape.safetensors", dir);
    CHECK(write_weights(path, NULL, "Mixed_6b.branch7x7_2.conv.weight", true) == DDX_OK, "write: %s", ddx_last_error());
    expect_load_error(path, "a 1x7 weight stored as 7x1", "Mixed_6b.branch7x7_2.conv.weight", "[128, 128, 1, 7]");

    snprintf(path, sizeof path, "%s/fc_half.safetensors", dir);
    CHECK(write_weights(path, "fc.bias", NULL, true) == DDX_OK, "write: %s", ddx_last_error());
    expect_load_error(path, "fc.weight without fc.bias", "fc.bias", NULL);

    snprintf(path, sizeof path, "%s/not_there.safetensors", dir);
    ddx_inception *net = NULL;
    ddx_status st = ddx_inception_load(path, DDX_CPU, DDX_INCEPTION_FP32, 1, &net);
    CHECK(st != DDX_OK && net == NULL && strstr(ddx_last_error(), path), "a missing file names itself: %s",
          ddx_last_error());

    // No fc: features work, logits are refused.
    snprintf(path, sizeof path, "%s/no_fc.safetensors", dir);
    CHECK(write_weights(path, NULL, NULL, false) == DDX_OK, "write: %s", ddx_last_error());
    st = ddx_inception_load(path, DDX_CPU, DDX_INCEPTION_FP32, 1, &net);
    CHECK(st == DDX_OK && !ddx_inception_has_logits(net), "weights without the fc load, without logits: %s",
          ddx_last_error());
    if (net) {
        static float img[8 * 8 * 3], f[DDX_INCEPTION_FEATURES], l[DDX_INCEPTION_LOGITS];
        CHECK(ddx_inception_features(net, img, 1, 8, 8, 3, f, l) == DDX_E_INPUT, "logits without an fc refused");
        ddx_inception_free(net);
    }
    // The GPU precisions on the CPU.
    CHECK(ddx_inception_load(path, DDX_CPU, DDX_INCEPTION_BF16, 1, &net) == DDX_E_INPUT && !net,
          "bf16 on the CPU refused");
}

// The library's formula weights (ddx_inception_write_test_weights, from its own architecture
// table) are the same file as the one built here from PyTorch's state-dict list.
static void test_write_test_weights(const char *dir, const char *ref_path) {
    char path[512];
    snprintf(path, sizeof path, "%s/lib.safetensors", dir);
    ddx_status st = ddx_inception_write_test_weights(path, true);
    CHECK(st == DDX_OK, "ddx_inception_write_test_weights: %s", ddx_last_error());
    ddx_st_file a, b;
    if (st != DDX_OK || ddx_st_read(path, &a) != DDX_OK) return;
    if (ddx_st_read(ref_path, &b) != DDX_OK) {
        ddx_st_close(&a);
        return;
    }
    bool same = a.n_tensors == b.n_tensors && a.n_tensors == (size_t)g_nt;
    for (size_t i = 0; same && i < a.n_tensors; i++)
        same = strcmp(a.tensors[i].name, b.tensors[i].name) == 0 && a.tensors[i].nbytes == b.tensors[i].nbytes &&
               memcmp(a.tensors[i].data, b.tensors[i].data, a.tensors[i].nbytes) == 0;
    CHECK(same, "the library's test weights equal the fixture's (%zu vs %zu tensors)", a.n_tensors, b.n_tensors);
    ddx_st_close(&a);
    ddx_st_close(&b);
    unlink(path);
}

// ---- CUDA: every precision against the CPU --------------------------------------------------------
static void test_cuda(const fixture *fx, const char *path) {
    ddx_inception *cpu = NULL;
    ddx_status st = ddx_inception_load(path, DDX_CPU, DDX_INCEPTION_FP32, 2, &cpu);
    CHECK(st == DDX_OK, "cpu load: %s", ddx_last_error());
    if (st != DDX_OK) return;
    float ref_p[2 * DDX_INCEPTION_FEATURES], ref_l[2 * DDX_INCEPTION_LOGITS];
    CHECK(run_fixture(cpu, fx, ref_p, ref_l) == DDX_OK, "cpu forward: %s", ddx_last_error());
    // Three RGB images (the fixture image and two variants) in chunks of 2 vs one at a time.
    const int n3 = 3, px = 32 * 32 * 3;
    float *imgs = malloc(sizeof(float) * n3 * px), *batched = malloc(sizeof(float) * n3 * DDX_INCEPTION_FEATURES);
    for (int i = 0; i < n3; i++)
        for (int k = 0; k < px; k++) imgs[i * px + k] = i == 0 ? fx->rgb[k] : fx->rgb[(k * (i + 1) * 7) % px];

    static const struct {
        ddx_inception_precision p;
        const char *name;
        double tol;
    } precs[3] = {{DDX_INCEPTION_FP32, "fp32", 1e-5}, {DDX_INCEPTION_TF32, "tf32", 1e-2}, {DDX_INCEPTION_BF16, "bf16", 5e-2}};
    for (int k = 0; k < 3; k++) {
        ddx_inception *g = NULL;
        st = ddx_inception_load(path, DDX_CUDA, precs[k].p, 2, &g);
        CHECK(st == DDX_OK, "cuda %s load: %s", precs[k].name, ddx_last_error());
        if (st != DDX_OK) continue;
        float p[2 * DDX_INCEPTION_FEATURES], l[2 * DDX_INCEPTION_LOGITS];
        st = run_fixture(g, fx, p, l);
        CHECK(st == DDX_OK, "cuda %s forward: %s", precs[k].name, ddx_last_error());
        if (st == DDX_OK) {
            const double ep = rel_err(p, ref_p, 2 * DDX_INCEPTION_FEATURES);
            const double el = rel_err(l, ref_l, 2 * DDX_INCEPTION_LOGITS);
            const double ef = rel_err(p, fx->pool3, 2 * DDX_INCEPTION_FEATURES);
            printf("inception cuda %s: pool3 rel err vs cpu %.3g, vs pytorch %.3g; logits vs cpu %.3g\n",
                   precs[k].name, ep, ef, el);
            CHECK(ep <= precs[k].tol && el <= precs[k].tol, "cuda %s vs cpu: pool3 %.3g, logits %.3g > %.g",
                  precs[k].name, ep, el, precs[k].tol);
        }
        // Chunked batch (2 + 1) equals one image at a time.
        st = ddx_inception_features(g, imgs, n3, 32, 32, 3, batched, NULL);
        CHECK(st == DDX_OK, "cuda %s batch: %s", precs[k].name, ddx_last_error());
        double eb = 0.0;
        for (int i = 0; i < n3 && st == DDX_OK; i++) {
            float one[DDX_INCEPTION_FEATURES];
            st = ddx_inception_features(g, imgs + i * px, 1, 32, 32, 3, one, NULL);
            eb = fmax(eb, rel_err(batched + i * DDX_INCEPTION_FEATURES, one, DDX_INCEPTION_FEATURES));
        }
        CHECK(st == DDX_OK && eb <= precs[k].tol, "cuda %s: chunked batch vs single images rel err %.3g", precs[k].name,
              eb);
        ddx_inception_free(g);
    }
    free(imgs), free(batched);
    ddx_inception_free(cpu);
}

int main(int argc, char **argv) {
    const bool cuda = argc > 1 && strcmp(argv[1], "--cuda") == 0;
    if (cuda && !ddx_cuda_available()) {
        printf("inception-cuda: no GPU, skipped\n");
        return 77;
    }
    fixture fx;
    if (!fixture_load(&fx)) return 1;
    char dir[] = "/tmp/ddx_inception_XXXXXX";
    if (!mkdtemp(dir)) {
        printf("inception: cannot make a temporary folder\n");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    ddx_status st = write_weights(path, NULL, NULL, true);
    CHECK(st == DDX_OK, "write the formula weights: %s", ddx_last_error());
    if (st == DDX_OK) {
        if (cuda) {
            test_cuda(&fx, path);
        } else {
            test_cpu_parity(&fx, path);
            test_write_test_weights(dir, path);
            test_bad_weights(dir);
        }
    }
    static const char *const files[] = {"w", "missing", "shape", "fc_half", "no_fc"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    for (int i = 0; i < g_nt; i++) free(g_t[i].data);
    free(fx.own);
    ddx_st_close(&fx.f);
    return ddx_test_finish(cuda ? "inception-cuda" : "inception");
}
