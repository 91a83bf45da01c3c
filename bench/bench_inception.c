// `ddx-bench inception`: FID Inception features (models/inception.h) in images per second,
// end to end as ddx-eval runs them: host images -> resize to 299 -> network -> pool3 on the host.
// The PyTorch baseline is bench/reference/torch_inception.py (same image size, batch and
// threads); the ratio goes in bench/results/ (speed is never asserted in a test).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_kernels.h"
#include "models/inception.h"
#include "runtime/threads.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static void usage(FILE *f) {
    fprintf(f, "usage: ddx-bench inception [--weights F.safetensors] [--device cpu|cuda] [--precision fp32|tf32|bf16]\n"
               "                           [--batch B] [--images N] [--size S] [--channels 1|3] [--reps R]\n"
               "  Times ddx_inception_features on N random SxS images (default 32x32x3, resized to 299 inside),\n"
               "  batch B (default 8 on the CPU, 64 on CUDA), after one warm-up call; the median of R runs.\n"
               "  Without --weights it writes formula weights (ddx_inception_write_test_weights) to a temp file:\n"
               "  the speed does not depend on the values. Baseline: bench/reference/torch_inception.py.\n");
}

int ddx_bench_inception(int argc, char **argv) {
    const char *weights = NULL;
    ddx_device dev = DDX_CPU;
    ddx_inception_precision prec = DDX_INCEPTION_FP32;
    int batch = 0, n = 0, size = 32, ch = 3, reps = 3;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!v) {
            ok = false;
        } else if (!strcmp(a, "--weights")) {
            weights = v;
        } else if (!strcmp(a, "--device")) {
            ok = !strcmp(v, "cpu") || !strcmp(v, "cuda");
            dev = !strcmp(v, "cuda") ? DDX_CUDA : DDX_CPU;
        } else if (!strcmp(a, "--precision")) {
            ok = !strcmp(v, "fp32") || !strcmp(v, "tf32") || !strcmp(v, "bf16");
            prec = !strcmp(v, "tf32") ? DDX_INCEPTION_TF32 : !strcmp(v, "bf16") ? DDX_INCEPTION_BF16 : DDX_INCEPTION_FP32;
        } else if (!strcmp(a, "--batch")) {
            ok = parse_int(v, 1, 4096, &batch);
        } else if (!strcmp(a, "--images")) {
            ok = parse_int(v, 1, 1 << 20, &n);
        } else if (!strcmp(a, "--size")) {
            ok = parse_int(v, 1, 4096, &size);
        } else if (!strcmp(a, "--channels")) {
            ok = parse_int(v, 1, 3, &ch) && ch != 2;
        } else if (!strcmp(a, "--reps")) {
            ok = parse_int(v, 1, 1000, &reps);
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "ddx-bench inception: bad option '%s'%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
        i++;
    }
    char tmpdir[] = "/tmp/ddx_bench_inception_XXXXXX", tmpw[512] = "";
    if (!weights) {
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "ddx-bench inception: cannot make a temporary folder\n");
            return 1;
        }
        snprintf(tmpw, sizeof tmpw, "%s/w.safetensors", tmpdir);
        if (ddx_inception_write_test_weights(tmpw, true) != DDX_OK) {
            fprintf(stderr, "ddx-bench inception: %s\n", ddx_last_error());
            rmdir(tmpdir);
            return 1;
        }
        weights = tmpw;
    }
    ddx_inception *net = NULL;
    ddx_status st = ddx_inception_load(weights, dev, prec, batch, &net);
    if (tmpw[0]) {
        unlink(tmpw);
        rmdir(tmpdir);
    }
    if (st != DDX_OK) {
        fprintf(stderr, "ddx-bench inception: %s\n", ddx_last_error());
        return ddx_exit_code(st);
    }
    batch = ddx_inception_batch(net);
    if (!n) n = dev == DDX_CUDA ? 4 * batch : 2 * batch;
    const size_t px = (size_t)size * size * ch;
    float *img = malloc(sizeof(float) * px * (size_t)n), *out = malloc(sizeof(float) * DDX_INCEPTION_FEATURES * (size_t)n);
    double *t = calloc((size_t)reps, sizeof(double));
    if (!img || !out || !t) {
        fprintf(stderr, "ddx-bench inception: out of host memory\n");
        free(img), free(out), free(t);
        ddx_inception_free(net);
        return 1;
    }
    uint64_t z = 0x243F6A8885A308D3ull;
    for (size_t i = 0; i < px * (size_t)n; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        img[i] = (float)(z >> 40) * 0x1p-24f;
    }
    const char *pname = prec == DDX_INCEPTION_TF32 ? "tf32" : prec == DDX_INCEPTION_BF16 ? "bf16" : "fp32";
    printf("ddx-bench inception: %s %s, %d threads, %d images %dx%dx%d, batch %d, median of %d after 1 warm-up\n",
           dev == DDX_CUDA ? "cuda" : "cpu", pname, dev == DDX_CPU ? ddx_threads_count() : 0, n, size, size, ch, batch,
           reps);
    st = ddx_inception_features(net, img, batch < n ? batch : n, size, size, ch, out, NULL);
    for (int r = 0; r < reps && st == DDX_OK; r++) {
        const double t0 = now_s();
        st = ddx_inception_features(net, img, n, size, size, ch, out, NULL);
        t[r] = now_s() - t0;
    }
    int rc = 0;
    if (st != DDX_OK) {
        fprintf(stderr, "ddx-bench inception: %s\n", ddx_last_error());
        rc = ddx_exit_code(st);
    } else {
        for (int a = 1; a < reps; a++)
            for (int b = a; b > 0 && t[b] < t[b - 1]; b--) {
                double s = t[b];
                t[b] = t[b - 1];
                t[b - 1] = s;
            }
        const double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
        printf("ddx inception features: %.3f s for %d images = %.2f img/s (best %.2f img/s)\n", med, n, n / med, n / t[0]);
    }
    free(img), free(out), free(t);
    ddx_inception_free(net);
    return rc;
}
