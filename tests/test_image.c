// PNG writer: grids read back with stb_image (layout, border, values), clip and auto
// normalisation, single images, atomic replacement, and unwritable or non-regular paths.
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h>

#include "check.h"
#include "fs_util.h"
#include "runtime/image.h"

static char g_dir[256];

static uint8_t *read_png(const char *path, int *w, int *h, int *c) {
    uint8_t *p = stbi_load(path, w, h, c, 0);
    CHECK(p != NULL, "cannot read back %s", path);
    return p;
}

static void test_grid(void) {
    enum { N = 5, H = 3, W = 4, C = 3 };
    float x[N * H * W * C];
    // Value q/127.5 - 1 must come back as the byte q.
    for (int i = 0; i < N * H * W * C; i++) x[i] = (float)((i * 7) % 256) / 127.5f - 1.0f;
    char path[400];
    snprintf(path, sizeof path, "%s/grid.png", g_dir);
    bool stretched = true;
    ddx_status st = ddx_image_grid_write(path, x, N, H, W, C, 0, DDX_NORMALIZE_CLIP, &stretched);
    CHECK(st == DDX_OK, "grid write: %s", ddx_last_error());
    CHECK(!stretched, "clip never stretches");
    int w, h, c;
    uint8_t *p = read_png(path, &w, &h, &c);
    if (!p) return;
    // cols = ceil(sqrt(5)) = 3, rows = 2, 2-pixel borders around and between cells.
    CHECK(w == 3 * (W + 2) + 2 && h == 2 * (H + 2) + 2 && c == 3, "grid is %dx%dx%d", w, h, c);
    if (w == 20 && h == 12 && c == 3) {
        int bad = 0, border_bad = 0;
        bool is_img[12][20] = {{false}};
        for (int i = 0; i < N; i++) {
            int ox = (i % 3) * (W + 2) + 2, oy = (i / 3) * (H + 2) + 2;
            for (int yy = 0; yy < H; yy++)
                for (int xx = 0; xx < W; xx++) {
                    is_img[oy + yy][ox + xx] = true;
                    for (int ch = 0; ch < C; ch++) {
                        int k = ((i * H + yy) * W + xx) * C + ch;
                        bad += p[((oy + yy) * w + ox + xx) * 3 + ch] != (k * 7) % 256;
                    }
                }
        }
        for (int yy = 0; yy < h; yy++)
            for (int xx = 0; xx < w; xx++)
                if (!is_img[yy][xx])
                    for (int ch = 0; ch < 3; ch++) border_bad += p[(yy * w + xx) * 3 + ch] != 0;
        CHECK(bad == 0, "grid cells: %d bytes wrong", bad);
        CHECK(border_bad == 0, "border / empty cell: %d bytes not black", border_bad);
    }
    stbi_image_free(p);
    char tmp[450];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0, "temp file %s left behind", tmp);

    // Explicit columns: 5 in one row.
    st = ddx_image_grid_write(path, x, N, H, W, C, 5, DDX_NORMALIZE_CLIP, NULL);
    p = read_png(path, &w, &h, &c);
    CHECK(st == DDX_OK && p && w == 5 * (W + 2) + 2 && h == H + 4, "cols=5 grid is %dx%d", w, h);
    stbi_image_free(p);
}

// One grey image written with `mode`; returns the bytes (caller frees) and *stretched.
static uint8_t *roundtrip_grey(const float *x, int n, ddx_normalize mode, bool *stretched) {
    char path[400];
    snprintf(path, sizeof path, "%s/one.png", g_dir);
    ddx_status st = ddx_image_write(path, x, 1, n, 1, mode, stretched);
    CHECK(st == DDX_OK, "image write: %s", ddx_last_error());
    if (st) return NULL;
    int w, h, c;
    uint8_t *p = read_png(path, &w, &h, &c);
    CHECK(!p || (w == n && h == 1 && c == 1), "single image is %dx%dx%d, want %dx1x1 (no border)", w, h, c, n);
    if (p && (w != n || h != 1 || c != 1)) {
        stbi_image_free(p);
        return NULL;
    }
    return p;
}

static void test_normalize(void) {
    bool s = true;
    const float clipv[6] = {-7.0f, -1.0f, 0.0f, 1.0f, 3.0f, NAN};
    uint8_t *p = roundtrip_grey(clipv, 6, DDX_NORMALIZE_CLIP, &s);
    if (p) {
        CHECK(p[0] == 0 && p[1] == 0 && p[2] == 128 && p[3] == 255 && p[4] == 255 && p[5] == 0,
              "clip: %d %d %d %d %d %d", p[0], p[1], p[2], p[3], p[4], p[5]);
        CHECK(!s, "clip set *stretched");
        stbi_image_free(p);
    }
    // Far outside [-1, 1]: auto stretches min..max to 0..255.
    const float wide[5] = {-10.0f, -5.0f, 0.0f, 10.0f, INFINITY};
    p = roundtrip_grey(wide, 5, DDX_NORMALIZE_AUTO, &s);
    if (p) {
        CHECK(s, "auto did not stretch [-10, 10]");
        CHECK(p[0] == 0 && p[1] == 64 && p[2] == 128 && p[3] == 255 && p[4] == 255, "auto wide: %d %d %d %d %d", p[0],
              p[1], p[2], p[3], p[4]);
        stbi_image_free(p);
    }
    // A tiny range: stretched too.
    const float tiny[3] = {0.0f, 0.0625f, 0.125f};
    p = roundtrip_grey(tiny, 3, DDX_NORMALIZE_AUTO, &s);
    if (p) {
        CHECK(s && p[0] == 0 && p[1] == 128 && p[2] == 255, "auto tiny: stretched=%d %d %d %d", s, p[0], p[1], p[2]);
        stbi_image_free(p);
    }
    // Inside [-1.2, 1.2] with a normal range: auto behaves as clip.
    const float normal[4] = {-1.2f, -0.5f, 0.5f, 1.2f};
    p = roundtrip_grey(normal, 4, DDX_NORMALIZE_AUTO, &s);
    if (p) {
        CHECK(!s && p[0] == 0 && p[1] == 64 && p[2] == 191 && p[3] == 255, "auto normal: stretched=%d %d %d %d %d", s,
              p[0], p[1], p[2], p[3]);
        stbi_image_free(p);
    }
    // A constant picture is never stretched (there is no range to stretch).
    const float flat[2] = {0.0f, 0.0f};
    p = roundtrip_grey(flat, 2, DDX_NORMALIZE_AUTO, &s);
    if (p) {
        CHECK(!s && p[0] == 128 && p[1] == 128, "auto constant: stretched=%d %d", s, p[0]);
        stbi_image_free(p);
    }
}

static void test_errors(void) {
    float x[12] = {0};
    ddx_status st = ddx_image_write("/nonexistent-ddx-folder/a.png", x, 2, 2, 3, DDX_NORMALIZE_CLIP, NULL);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "/nonexistent-ddx-folder"),
          "missing folder: %s '%s'", ddx_status_name(st), ddx_last_error());
    CHECK(ddx_image_write("x.png", x, 2, 2, 2, DDX_NORMALIZE_CLIP, NULL) == DDX_E_INPUT, "2 channels accepted");
    CHECK(ddx_image_grid_write("x.png", x, 0, 2, 2, 3, 0, DDX_NORMALIZE_CLIP, NULL) == DDX_E_INPUT, "n = 0 accepted");
    CHECK(ddx_image_grid_write("x.png", NULL, 1, 2, 2, 3, 0, DDX_NORMALIZE_CLIP, NULL) == DDX_E_INPUT, "NULL accepted");

    // A failed write leaves the previous file intact and no temp file behind. The file-size
    // limit makes the write fail with EFBIG as a full disk would, for root too.
    char path[400];
    snprintf(path, sizeof path, "%s/keep.png", g_dir);
    float grey[4] = {-1.0f, 1.0f, 1.0f, -1.0f};
    CHECK(ddx_image_write(path, grey, 2, 2, 1, DDX_NORMALIZE_CLIP, NULL) == DDX_OK, "keep.png: %s", ddx_last_error());
    enum { BIG = 64 };
    static float noise[BIG * BIG];
    for (int i = 0; i < BIG * BIG; i++) noise[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    struct rlimit old_lim;
    CHECK(fsize_limit(512, &old_lim), "setrlimit");
    st = ddx_image_write(path, noise, BIG, BIG, 1, DDX_NORMALIZE_CLIP, NULL);
    fsize_unlimit(&old_lim);
    CHECK(st == DDX_E_IO && strstr(ddx_last_error(), path), "write past the size limit: %s '%s'", ddx_status_name(st),
          ddx_last_error());
    int w, h, c;
    uint8_t *p = read_png(path, &w, &h, &c);
    if (p) {
        CHECK(w == 2 && h == 2 && c == 1 && p[0] == 0 && p[1] == 255 && p[2] == 255 && p[3] == 0,
              "keep.png changed by the failed write");
        stbi_image_free(p);
    }
    CHECK(count_temps(g_dir) == 0, "a failed write left a temp file");

    // Something that is not a regular file is refused, never replaced: a FIFO (opening it to
    // write would hang, renaming over it would destroy it) and a symlink (to a good PNG).
    char fifo[400], link[400];
    snprintf(fifo, sizeof fifo, "%s/fifo.png", g_dir);
    snprintf(link, sizeof link, "%s/link.png", g_dir);
    struct stat sb;
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s", fifo);
    st = ddx_image_write(fifo, grey, 2, 2, 1, DDX_NORMALIZE_CLIP, NULL);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "FIFO") && strstr(ddx_last_error(), fifo), "FIFO: %s '%s'",
          ddx_status_name(st), ddx_last_error());
    CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO was replaced");
    CHECK(symlink(path, link) == 0, "symlink %s", link);
    st = ddx_image_grid_write(link, noise, 4, 4, 4, 1, 0, DDX_NORMALIZE_CLIP, NULL);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "symbolic link"), "symlink: %s '%s'", ddx_status_name(st),
          ddx_last_error());
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode), "the symlink was replaced");
    p = read_png(path, &w, &h, &c);
    if (p) {
        CHECK(w == 2 && h == 2, "the symlink's target changed");
        stbi_image_free(p);
    }
    CHECK(count_temps(g_dir) == 0, "a refused write left a temp file");
    remove(fifo);
    remove(link);
    remove(path);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/ddx_test_image_XXXXXX");
    if (!mkdtemp(g_dir)) {
        printf("FATAL: mkdtemp\n");
        return 1;
    }
    test_grid();
    test_normalize();
    test_errors();
    char path[400];
    snprintf(path, sizeof path, "%s/grid.png", g_dir);
    remove(path);
    snprintf(path, sizeof path, "%s/one.png", g_dir);
    remove(path);
    rmdir(g_dir);
    return ddx_test_finish("test_image");
}
