// ddx-mask KIND --size S|HxW [--n N] [--seed S] --out mask.png
//
// Writes the inpainting masks ddx-inpaint would use (models/mask.h) for images 0..N-1 of a run
// with that seed: one PNG for N = 1, a grid for more (white keep, black fill), and prints the
// fraction each one fills. A bad kind, size or mask file exits 2 with one line.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/mask.h"
#include "runtime/image.h"
#include "runtime/outfile.h"

static void usage(FILE *f) {
    fprintf(f, "usage: ddx-mask KIND --size S|HxW [--n N] [--seed S] --out MASK.png\n"
               "  KIND: box | box:X,Y,W,H | center | half:left|right|top|bottom | strokes | file:MASK.png\n"
               "  (see ddx-inpaint --help; the random kinds depend on the seed and the image index only)\n");
}

static int fail(ddx_status st) {
    fprintf(stderr, "ddx-mask: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

static bool parse_long(const char *s, long lo, long hi, long *v, const char **end) {
    char *e;
    errno = 0;
    long x = strtol(s, &e, 10);
    if (e == s || errno || x < lo || x > hi) return false;
    *v = x;
    if (end) *end = e;
    else if (*e) return false;
    return true;
}

int main(int argc, char **argv) {
    const char *kind = NULL, *size = NULL, *n_s = NULL, *seed_s = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--size")) slot = &size;
        else if (!strcmp(a, "--n")) slot = &n_s;
        else if (!strcmp(a, "--seed")) slot = &seed_s;
        else if (!strcmp(a, "--out")) slot = &out;
        else if (a[0] != '-' && !kind) {
            kind = a;
            continue;
        } else {
            fprintf(stderr, "ddx-mask: unknown argument '%s' (see ddx-mask --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ddx-mask: %s needs a value\n", a);
            return 2;
        }
        *slot = argv[++i];
    }
    if (!kind || !size || !out) {
        usage(stderr);
        return 2;
    }
    long h = 0, w = 0, n = 1, seed = 0;
    const char *e = NULL;
    if (!parse_long(size, 2, 4096, &h, &e) || (*e && (*e != 'x' || !parse_long(e + 1, 2, 4096, &w, NULL)))) {
        fprintf(stderr, "ddx-mask: --size '%s': use S or HxW with sides in 2..4096\n", size);
        return 2;
    }
    if (!*e) w = h;
    if (n_s && !parse_long(n_s, 1, 1024, &n, NULL)) {
        fprintf(stderr, "ddx-mask: --n '%s': an integer in 1..1024\n", n_s);
        return 2;
    }
    if (seed_s && !parse_long(seed_s, 0, __LONG_MAX__, &seed, NULL)) {
        fprintf(stderr, "ddx-mask: --seed '%s': a non-negative integer\n", seed_s);
        return 2;
    }
    ddx_mask_spec sp;
    ddx_status st = ddx_mask_parse(kind, "mask kind", &sp);
    if (!st) st = ddx_output_check(out, "--out");
    if (st) return fail(st);
    const size_t hw = (size_t)h * (size_t)w;
    uint8_t *m = malloc(hw);
    float *img = malloc((size_t)n * hw * sizeof *img);
    if (!m || !img) st = ddx_errorf(DDX_E_NOMEM, "out of memory for %ld masks of %ldx%ld", n, w, h);
    for (long i = 0; i < n && !st; i++) {
        st = ddx_mask_make(&sp, "mask kind", (int)h, (int)w, (uint64_t)seed, i, m);
        if (st) break;
        for (size_t k = 0; k < hw; k++) img[(size_t)i * hw + k] = m[k] ? 1.0f : -1.0f;
        printf("mask %ld: fills %.4f of the %ldx%ld image\n", i, 1.0 - (double)ddx_mask_kept(m, (int)h, (int)w) / (double)hw, w,
               h);
    }
    if (!st) st = n == 1 ? ddx_image_write(out, img, (int)h, (int)w, 1, DDX_NORMALIZE_CLIP, NULL)
                         : ddx_image_grid_write(out, img, (int)n, (int)h, (int)w, 1, 0, DDX_NORMALIZE_CLIP, NULL);
    if (!st) printf("wrote %s\n", out);
    free(m);
    free(img);
    return st ? fail(st) : 0;
}
