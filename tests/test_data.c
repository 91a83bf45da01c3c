// Data sets and the batch loader: synthetic idx.gz / CIFAR .bin / PNG+JPEG folders written into a
// temp folder (exact pixels, labels, channel order, crop and resize), the loader's order
// (permutations, flips, determinism, next == batch_at with and without prefetch, across epochs),
// bad inputs (each DDX_E_INPUT naming the file), and the real Fashion-MNIST when installed.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <stb_image.h>
#include <stb_image_write.h>

#include "check.h"
#include "train/data.h"

static char g_dir[256];

static void path_in(char *out, size_t cap, const char *rel) { snprintf(out, cap, "%s/%s", g_dir, rel); }

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void write_gz(const char *path, const uint8_t *data, size_t len) {
    gzFile g = gzopen(path, "wb");
    if (!g || gzwrite(g, data, (unsigned)len) != (int)len || gzclose(g) != Z_OK) {
        printf("FATAL: cannot write %s\n", path);
        exit(1);
    }
}

static void write_raw(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        printf("FATAL: cannot write %s\n", path);
        exit(1);
    }
}

static uint8_t fm_pixel(int i, int y, int x) { return (uint8_t)(i * 7 + y * 28 + x); }

// Fashion-MNIST style files in `sub` (created): n images of rows x cols, n_labels labels.
static void write_fmnist(const char *sub, int n, int rows, int cols, int n_labels, uint32_t img_magic,
                         int label_add) {
    char dir[512], p[600];
    path_in(dir, sizeof dir, sub);
    mkdir(dir, 0755);
    size_t ilen = 16 + (size_t)n * rows * cols;
    uint8_t *img = malloc(ilen);
    put_be32(img, img_magic);
    put_be32(img + 4, (uint32_t)n);
    put_be32(img + 8, (uint32_t)rows);
    put_be32(img + 12, (uint32_t)cols);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++) img[16 + ((size_t)i * rows + y) * cols + x] = fm_pixel(i, y, x);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    write_gz(p, img, ilen);
    uint8_t *lab = malloc(8 + (size_t)n_labels);
    put_be32(lab, 0x801);
    put_be32(lab + 4, (uint32_t)n_labels);
    for (int i = 0; i < n_labels; i++) lab[8 + i] = (uint8_t)(i % 10 + label_add);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    write_gz(p, lab, 8 + (size_t)n_labels);
    free(img);
    free(lab);
}

static void cfg_for(ddx_config *cfg, ddx_dataset_kind kind, const char *sub, int size, int channels) {
    ddx_config_defaults(cfg);
    cfg->data.dataset = kind;
    if (sub) path_in(cfg->data.path, sizeof cfg->data.path, sub);
    else cfg->data.path[0] = 0;
    cfg->data.image_size = size;
    cfg->model.image_size = size;
    cfg->model.in_channels = cfg->model.out_channels = channels;
}

// Expects DDX_E_INPUT whose message contains `needle`.
#define CHECK_INPUT_ERR(st, needle, what)                                                                      \
    do {                                                                                                       \
        ddx_status st_ = (st);                                                                                 \
        CHECK(st_ == DDX_E_INPUT, "%s: status %s, want bad input (%s)", what, ddx_status_name(st_), ddx_last_error()); \
        CHECK(strstr(ddx_last_error(), needle) != NULL, "%s: message '%s' does not name '%s'", what,            \
              ddx_last_error(), needle);                                                                       \
    } while (0)

static void test_fashion_synthetic(void) {
    write_fmnist("fm", 37, 28, 28, 37, 0x803, 0);
    ddx_config cfg;
    cfg_for(&cfg, DDX_DATASET_FASHION_MNIST, "fm", 28, 1);
    ddx_dataset d;
    ddx_status st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK, "fashion synthetic load: %s", ddx_last_error());
    if (st) return;
    CHECK(d.n == 37 && d.size == 28 && d.channels == 1 && d.num_classes == 10, "fashion shape n=%lld s=%d c=%d",
          (long long)d.n, d.size, d.channels);
    int bad = 0, badl = 0;
    for (int i = 0; i < 37; i++) {
        if (d.labels[i] != i % 10) badl++;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) bad += d.pixels[(i * 28 + y) * 28 + x] != fm_pixel(i, y, x);
    }
    CHECK(bad == 0, "fashion pixels: %d differ", bad);
    CHECK(badl == 0, "fashion labels: %d differ", badl);
    CHECK(strstr(d.desc, "37 images") != NULL, "desc '%s'", d.desc);
    ddx_dataset_free(&d);

    // 28 -> 32 enlarges bilinearly (half-pixel centres); compare with a direct double formula.
    cfg.data.image_size = cfg.model.image_size = 32;
    st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK && d.size == 32, "fashion resized load: %s", ddx_last_error());
    if (st) return;
    int worst = 0;
    for (int i = 0; i < 37; i += 12)
        for (int oy = 0; oy < 32; oy++)
            for (int ox = 0; ox < 32; ox++) {
                double sy = fmin(fmax((oy + 0.5) * 28 / 32 - 0.5, 0), 27), sx = fmin(fmax((ox + 0.5) * 28 / 32 - 0.5, 0), 27);
                int y0 = (int)sy, x0 = (int)sx, y1 = y0 < 27 ? y0 + 1 : 27, x1 = x0 < 27 ? x0 + 1 : 27;
                double fy = sy - y0, fx = sx - x0;
                double v = (1 - fy) * ((1 - fx) * fm_pixel(i, y0, x0) + fx * fm_pixel(i, y0, x1)) +
                           fy * ((1 - fx) * fm_pixel(i, y1, x0) + fx * fm_pixel(i, y1, x1));
                int diff = abs((int)floor(v + 0.5) - d.pixels[((int64_t)i * 32 + oy) * 32 + ox]);
                if (diff > worst) worst = diff;
            }
    // 1: the float accumulation may round a value sitting at .5 the other way.
    CHECK(worst <= 1, "fashion 28->32 bilinear differs from the formula by %d", worst);
    ddx_dataset_free(&d);

    cfg.model.in_channels = cfg.model.out_channels = 3;
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "model.out_channels", "fashion with 3 channels");
}

static void test_fashion_bad(void) {
    ddx_config cfg;
    ddx_dataset d;
    cfg_for(&cfg, DDX_DATASET_FASHION_MNIST, "no-such-folder", 28, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "no-such-folder/train-images-idx3-ubyte.gz", "fashion missing");
    CHECK(strstr(ddx_last_error(), "dataset-fashion-mnist") != NULL, "missing message says how to get it: %s",
          ddx_last_error());

    write_fmnist("fm_magic", 5, 28, 28, 5, 0x804, 0);
    cfg_for(&cfg, DDX_DATASET_FASHION_MNIST, "fm_magic", 28, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "train-images-idx3-ubyte.gz", "fashion bad magic");

    write_fmnist("fm_count", 5, 28, 28, 4, 0x803, 0);
    cfg_for(&cfg, DDX_DATASET_FASHION_MNIST, "fm_count", 28, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "train-labels-idx1-ubyte.gz", "fashion label count");

    write_fmnist("fm_label", 5, 28, 28, 5, 0x803, 6);  // labels 6..10
    cfg_for(&cfg, DDX_DATASET_FASHION_MNIST, "fm_label", 28, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "train-labels-idx1-ubyte.gz", "fashion label range");

    // Header promising more images than the file holds.
    write_fmnist("fm_short", 5, 28, 28, 5, 0x803, 0);
    char p[600];
    path_in(p, sizeof p, "fm_short/train-images-idx3-ubyte.gz");
    {
        uint8_t img[16 + 4 * 784];
        put_be32(img, 0x803);
        put_be32(img + 4, 5);
        put_be32(img + 8, 28);
        put_be32(img + 12, 28);
        memset(img + 16, 9, sizeof img - 16);
        write_gz(p, img, sizeof img);
    }
    cfg_for(&cfg, DDX_DATASET_FASHION_MNIST, "fm_short", 28, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "fm_short/train-images-idx3-ubyte.gz", "fashion short idx");

    // A gzip stream cut in half.
    write_fmnist("fm_trunc", 50, 28, 28, 50, 0x803, 0);
    path_in(p, sizeof p, "fm_trunc/train-images-idx3-ubyte.gz");
    struct stat sb;
    stat(p, &sb);
    CHECK(truncate(p, sb.st_size / 2) == 0, "truncate %s", p);
    cfg_for(&cfg, DDX_DATASET_FASHION_MNIST, "fm_trunc", 28, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "fm_trunc/train-images-idx3-ubyte.gz", "fashion truncated gz");
}

enum { CIFAR_REC = 3073 };
static const int cifar_counts[5] = {3, 2, 4, 1, 2};

static uint8_t cifar_val(int rec, int plane, int p) { return (uint8_t)(rec * 31 + plane * 85 + p * 3 + (p >> 5)); }

static void write_cifar(const char *sub) {
    char dir[512], p[600];
    path_in(dir, sizeof dir, sub);
    mkdir(dir, 0755);
    int rec = 0;
    for (int b = 0; b < 5; b++) {
        size_t len = (size_t)cifar_counts[b] * CIFAR_REC;
        uint8_t *buf = malloc(len);
        for (int r = 0; r < cifar_counts[b]; r++, rec++) {
            uint8_t *o = buf + (size_t)r * CIFAR_REC;
            o[0] = (uint8_t)(rec % 10);
            for (int pl = 0; pl < 3; pl++)
                for (int q = 0; q < 1024; q++) o[1 + pl * 1024 + q] = cifar_val(rec, pl, q);
        }
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, b + 1);
        write_raw(p, buf, len);
        free(buf);
    }
}

static void test_cifar(void) {
    write_cifar("cifar");
    ddx_config cfg;
    ddx_dataset d;
    cfg_for(&cfg, DDX_DATASET_CIFAR10, "cifar", 32, 3);
    ddx_status st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK, "cifar load: %s", ddx_last_error());
    if (st) return;
    CHECK(d.n == 12 && d.size == 32 && d.channels == 3 && d.num_classes == 10, "cifar shape n=%lld", (long long)d.n);
    int bad = 0, badl = 0;
    for (int r = 0; r < 12; r++) {
        badl += d.labels[r] != r % 10;
        for (int q = 0; q < 1024; q++)
            for (int pl = 0; pl < 3; pl++) bad += d.pixels[((size_t)r * 1024 + q) * 3 + pl] != cifar_val(r, pl, q);
    }
    CHECK(bad == 0, "cifar NHWC pixels: %d differ", bad);
    CHECK(badl == 0, "cifar labels: %d differ", badl);

    // 32 -> 16 is a 2x2 area average.
    cfg.data.image_size = cfg.model.image_size = 16;
    ddx_dataset h;
    st = ddx_dataset_load(&cfg, &h);
    CHECK(st == DDX_OK && h.size == 16, "cifar 16 load: %s", ddx_last_error());
    if (!st) {
        int worst = 0;
        for (int r = 0; r < 12; r++)
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 16; x++)
                    for (int c = 0; c < 3; c++) {
                        int s = 0;
                        for (int dy = 0; dy < 2; dy++)
                            for (int dx = 0; dx < 2; dx++)
                                s += d.pixels[(((size_t)r * 32 + 2 * y + dy) * 32 + 2 * x + dx) * 3 + c];
                        int want = (int)floor(s / 4.0 + 0.5);
                        int got = h.pixels[(((size_t)r * 16 + y) * 16 + x) * 3 + c];
                        if (abs(want - got) > worst) worst = abs(want - got);
                    }
        CHECK(worst == 0, "cifar 2x2 area average off by %d", worst);
        ddx_dataset_free(&h);
    }
    ddx_dataset_free(&d);

    cfg_for(&cfg, DDX_DATASET_CIFAR10, "cifar", 32, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "model.out_channels", "cifar with 1 channel");

    char p[600];
    write_cifar("cifar_missing");
    path_in(p, sizeof p, "cifar_missing/data_batch_3.bin");
    remove(p);
    cfg_for(&cfg, DDX_DATASET_CIFAR10, "cifar_missing", 32, 3);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "cifar_missing/data_batch_3.bin", "cifar missing batch");
    CHECK(strstr(ddx_last_error(), "cifar-10-binary.tar.gz") != NULL, "cifar missing says where to get it: %s",
          ddx_last_error());

    // The test split names its own file (it used to speak of data_batch_*).
    CHECK_INPUT_ERR(ddx_dataset_load_split(&cfg, true, &d), "cifar_missing/test_batch.bin", "cifar missing test batch");
    CHECK(strstr(ddx_last_error(), "DIR/test_batch.bin exists") && !strstr(ddx_last_error(), "data_batch"),
          "cifar missing test batch says which file: %s", ddx_last_error());

    write_cifar("cifar_size");
    path_in(p, sizeof p, "cifar_size/data_batch_2.bin");
    CHECK(truncate(p, 2 * CIFAR_REC - 7) == 0, "truncate");
    cfg_for(&cfg, DDX_DATASET_CIFAR10, "cifar_size", 32, 3);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "cifar_size/data_batch_2.bin", "cifar wrong size");
}

// Class names: CIFAR-10's from batches.meta.txt (the standard ten when it is absent, refused when
// it is not ten names); an image folder's from its sorted sub-folders, sorted as names.
static void test_class_names(void) {
    ddx_config cfg;
    ddx_dataset d;
    char p[600];
    write_cifar("cifar_names");
    cfg_for(&cfg, DDX_DATASET_CIFAR10, "cifar_names", 32, 3);
    ddx_status st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK && d.class_names && !strncmp(d.class_names, "airplane\nautomobile\nbird\n", 25) &&
              strstr(d.class_names, "\ntruck\n"),
          "cifar without batches.meta.txt: the standard names: %s", st ? ddx_last_error() : d.class_names);
    if (!st) ddx_dataset_free(&d);
    path_in(p, sizeof p, "cifar_names/batches.meta.txt");
    const char *meta = "plane\r\ncar\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\nlorry\n\n";
    write_raw(p, (const uint8_t *)meta, strlen(meta));
    st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK && d.class_names && !strcmp(d.class_names, "plane\ncar\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\nlorry\n"),
          "batches.meta.txt names: %s", st ? ddx_last_error() : d.class_names);
    if (!st) ddx_dataset_free(&d);
    write_raw(p, (const uint8_t *)"a\nb\nc\n", 6);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "batches.meta.txt", "batches.meta.txt with 3 names");
    CHECK(strstr(ddx_last_error(), "lists 3 class names"), "says how many: %s", ddx_last_error());

    // Folders "a-b", "a" and "c" (with an image one level further down): classes a, a-b, c.
    static const char *const dirs[] = {"imgs_cls", "imgs_cls/a-b", "imgs_cls/a", "imgs_cls/c", "imgs_cls/c/deep"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        path_in(p, sizeof p, dirs[i]);
        mkdir(p, 0755);
    }
    static const char *const files[] = {"imgs_cls/a-b/1.png", "imgs_cls/a/2.png", "imgs_cls/a/3.png", "imgs_cls/c/deep/4.png"};
    const uint8_t px[4] = {10, 20, 30, 40};
    for (size_t i = 0; i < 4; i++) {
        path_in(p, sizeof p, files[i]);
        CHECK(stbi_write_png(p, 2, 2, 1, px, 2), "write %s", p);
    }
    cfg_for(&cfg, DDX_DATASET_IMAGE_FOLDER, "imgs_cls", 2, 1);
    st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK, "class folders: %s", ddx_last_error());
    if (!st) {
        // Images sorted by path: a-b/1, a/2, a/3, c/deep/4 ("a-b/" sorts before "a/").
        CHECK(d.num_classes == 3 && d.class_names && !strcmp(d.class_names, "a\na-b\nc\n"), "folder classes %d: %s",
              d.num_classes, d.class_names ? d.class_names : "(none)");
        CHECK(d.n == 4 && d.labels[0] == 1 && d.labels[1] == 0 && d.labels[2] == 0 && d.labels[3] == 2,
              "folder labels %d %d %d %d", d.labels[0], d.labels[1], d.labels[2], d.labels[3]);
        ddx_dataset_free(&d);
    }
}

static void test_image_folder(void) {
    char p[600];
    path_in(p, sizeof p, "imgs");
    mkdir(p, 0755);
    path_in(p, sizeof p, "imgs/a");
    mkdir(p, 0755);
    path_in(p, sizeof p, "imgs/c");
    mkdir(p, 0755);
    path_in(p, sizeof p, "imgs/c/d");
    mkdir(p, 0755);
    // a/1.png: RGB 6 wide x 4 high; the center 4x4 crop (columns 1..4) has 2x2 blocks whose
    // means are whole numbers, columns 0 and 5 are junk that the crop must drop.
    uint8_t rgb[4 * 6 * 3];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 6; x++)
            for (int c = 0; c < 3; c++) {
                int v = 255;
                if (x >= 1 && x <= 4) v = 40 * ((y / 2) * 2 + (x - 1) / 2) + 4 * ((y & 1) * 2 + ((x - 1) & 1)) + c;
                rgb[(y * 6 + x) * 3 + c] = (uint8_t)v;
            }
    path_in(p, sizeof p, "imgs/a/1.png");
    CHECK(stbi_write_png(p, 6, 4, 3, rgb, 6 * 3), "write %s", p);
    // b.PNG: grey 2x2 (upper case extension), enlarged to 4x4 bilinearly.
    const uint8_t grey[4] = {0, 160, 80, 240};
    path_in(p, sizeof p, "imgs/b.PNG");
    CHECK(stbi_write_png(p, 2, 2, 1, grey, 2), "write %s", p);
    // c/d/2.jpeg: flat colour (JPEG is lossy, so only approximately checked).
    uint8_t flat[8 * 8 * 3];
    for (int i = 0; i < 64; i++) {
        flat[3 * i] = 200;
        flat[3 * i + 1] = 100;
        flat[3 * i + 2] = 50;
    }
    path_in(p, sizeof p, "imgs/c/d/2.jpeg");
    CHECK(stbi_write_jpg(p, 8, 8, 3, flat, 95), "write %s", p);
    path_in(p, sizeof p, "imgs/notes.txt");
    write_raw(p, (const uint8_t *)"hello", 5);

    ddx_config cfg;
    ddx_dataset d;
    cfg_for(&cfg, DDX_DATASET_IMAGE_FOLDER, "imgs", 2, 3);
    ddx_status st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK, "image folder load: %s", ddx_last_error());
    if (!st) {
        CHECK(d.n == 3 && d.size == 2 && d.channels == 3 && d.num_classes == 0, "folder shape n=%lld", (long long)d.n);
        int bad = 0;
        for (int by = 0; by < 2; by++)
            for (int bx = 0; bx < 2; bx++)
                for (int c = 0; c < 3; c++) {
                    int want = 40 * (by * 2 + bx) + 6 + c; // mean of 0, 4, 8, 12 is 6
                    bad += d.pixels[(by * 2 + bx) * 3 + c] != want;
                }
        CHECK(bad == 0, "crop + 2x2 area resize of a/1.png: %d values wrong", bad);
        // b.PNG, grey -> RGB, 2 -> 2: the pixels themselves on every channel.
        bad = 0;
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 3; c++) bad += d.pixels[12 + i * 3 + c] != grey[i];
        CHECK(bad == 0, "grey PNG as RGB: %d values wrong", bad);
        // The JPEG, shrunk 8 -> 2.
        int worst = 0;
        const int want[3] = {200, 100, 50};
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 3; c++) {
                int dv = abs(d.pixels[24 + i * 3 + c] - want[c]);
                if (dv > worst) worst = dv;
            }
        CHECK(worst <= 6, "flat JPEG decoded off by %d (quality 95)", worst);
        int labels_zero = d.labels[0] == 0 && d.labels[1] == 0 && d.labels[2] == 0;
        CHECK(labels_zero, "image folder labels are 0");
        ddx_dataset_free(&d);
    }

    // Enlarging b.PNG to 4x4, grey: separable weights 1, .75/.25, .25/.75, 1 (exact in binary).
    cfg_for(&cfg, DDX_DATASET_IMAGE_FOLDER, "imgs", 4, 1);
    st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK && d.channels == 1, "grey folder load: %s", ddx_last_error());
    if (!st) {
        const double w[4][2] = {{1, 0}, {.75, .25}, {.25, .75}, {0, 1}};
        int bad = 0;
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                double v = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) v += w[y][a] * w[x][b] * grey[a * 2 + b];
                bad += d.pixels[16 + y * 4 + x] != (int)v;
            }
        CHECK(bad == 0, "bilinear 2 -> 4 of b.PNG: %d values wrong", bad);
        // RGB PNG forced to grey: r == g == b + c offsets; stb's luma weights sum to 256/256, so
        // a near-grey pixel stays within 2 of its channels.
        int worst = 0;
        for (int i = 0; i < 16; i++) {
            int y = i / 4, x = i % 4, base = 40 * ((y / 2) * 2 + x / 2) + 4 * ((y & 1) * 2 + (x & 1));
            int dv = abs(d.pixels[i] - base);
            if (dv > worst) worst = dv;
        }
        CHECK(worst <= 2, "RGB PNG forced to grey off by %d", worst);
        ddx_dataset_free(&d);
    }

    // Undecodable file.
    path_in(p, sizeof p, "imgs_bad");
    mkdir(p, 0755);
    path_in(p, sizeof p, "imgs_bad/ok.png");
    CHECK(stbi_write_png(p, 2, 2, 1, grey, 2), "write");
    path_in(p, sizeof p, "imgs_bad/zz_broken.jpg");
    write_raw(p, (const uint8_t *)"\xff\xd8\xff garbage, not a jpeg", 24);
    cfg_for(&cfg, DDX_DATASET_IMAGE_FOLDER, "imgs_bad", 2, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "imgs_bad/zz_broken.jpg", "undecodable image");

    path_in(p, sizeof p, "imgs_empty");
    mkdir(p, 0755);
    path_in(p, sizeof p, "imgs_empty/readme.txt");
    write_raw(p, (const uint8_t *)"x", 1);
    cfg_for(&cfg, DDX_DATASET_IMAGE_FOLDER, "imgs_empty", 2, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "imgs_empty", "empty folder");

    cfg_for(&cfg, DDX_DATASET_IMAGE_FOLDER, "imgs_nowhere", 2, 1);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "imgs_nowhere", "missing folder");

    cfg_for(&cfg, DDX_DATASET_IMAGE_FOLDER, "imgs", 2, 4);
    CHECK_INPUT_ERR(ddx_dataset_load(&cfg, &d), "model.out_channels", "4-channel folder");
}

static uint32_t png_crc(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

// data.max_image_pixels is checked from the file's header, before any decoding: a small file
// that declares a huge picture never reaches the decoder.
static void test_image_pixel_limit(void) {
    char p[512];
    ddx_config cfg;
    ddx_dataset d;
    path_in(p, sizeof p, "imgs_huge");
    mkdir(p, 0755);
    // 20000 x 20000 grey in the header (1.6 GB as RGB floats would be far more), no pixel data:
    // decoding would fail with a different message, so the limit's message proves the order.
    uint8_t png[8 + 25 + 12];
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    put_be32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put_be32(png + 16, 20000);
    put_be32(png + 20, 20000);
    png[24] = 8, png[25] = 0, png[26] = 0, png[27] = 0, png[28] = 0;  // 8-bit grey, no interlace
    put_be32(png + 29, png_crc(png + 12, 17));
    put_be32(png + 33, 0);
    memcpy(png + 37, "IEND", 4);
    put_be32(png + 41, png_crc(png + 37, 4));
    path_in(p, sizeof p, "imgs_huge/huge.png");
    write_raw(p, png, sizeof png);
    cfg_for(&cfg, DDX_DATASET_IMAGE_FOLDER, "imgs_huge", 4, 1);
    ddx_status st = ddx_dataset_load(&cfg, &d);
    CHECK_INPUT_ERR(st, "data.max_image_pixels", "20000x20000 header");
    CHECK(strstr(ddx_last_error(), "huge.png") && strstr(ddx_last_error(), "20000x20000"), "message: %s", ddx_last_error());
    if (!st) ddx_dataset_free(&d);

    // A real, decodable 64x48 image: refused under a limit of 3000 pixels, loaded at exactly 3072.
    static uint8_t grey[64 * 48];
    for (int i = 0; i < 64 * 48; i++) grey[i] = (uint8_t)i;
    path_in(p, sizeof p, "imgs_wide");
    mkdir(p, 0755);
    path_in(p, sizeof p, "imgs_wide/w.png");
    CHECK(stbi_write_png(p, 64, 48, 1, grey, 64), "write %s", p);
    cfg_for(&cfg, DDX_DATASET_IMAGE_FOLDER, "imgs_wide", 4, 1);
    cfg.data.max_image_pixels = 3000;
    st = ddx_dataset_load(&cfg, &d);
    CHECK_INPUT_ERR(st, "data.max_image_pixels", "64x48 over 3000 pixels");
    if (!st) ddx_dataset_free(&d);
    cfg.data.max_image_pixels = 64 * 48;
    st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK && d.n == 1, "64x48 at a limit of 3072 pixels: %s", ddx_last_error());
    if (!st) ddx_dataset_free(&d);
}

// ---- loader ----------------------------------------------------------------------------------
enum { LN = 103, LS = 4, LC = 3, LB = 10, PER_EPOCH = LN / LB };

static uint8_t lpix(int i, int y, int x, int c) { return (uint8_t)((i * 37 + y * 13 + x * 50 + c * 3) & 255); }

static void make_set(ddx_dataset *d) {
    memset(d, 0, sizeof *d);
    d->n = LN;
    d->size = LS;
    d->channels = LC;
    d->num_classes = 0;
    d->pixels = malloc(LN * LS * LS * LC);
    d->labels = malloc(sizeof(int32_t) * LN);
    for (int i = 0; i < LN; i++) {
        d->labels[i] = i; // the label identifies the image
        for (int y = 0; y < LS; y++)
            for (int x = 0; x < LS; x++)
                for (int c = 0; c < LC; c++) d->pixels[((i * LS + y) * LS + x) * LC + c] = lpix(i, y, x, c);
    }
    d->pixels[0] = 0;  // pin the extremes of the scale
    d->pixels[1] = 255;
}

// 1 flipped, 0 not, -1 neither (wrong pixels or scale).
static int classify(const ddx_dataset *d, int idx, const float *x) {
    int plain = 1, flip = 1;
    for (int y = 0; y < LS; y++)
        for (int xx = 0; xx < LS; xx++)
            for (int c = 0; c < LC; c++) {
                float v = x[(y * LS + xx) * LC + c];
                uint8_t a = d->pixels[((idx * LS + y) * LS + xx) * LC + c];
                uint8_t b = d->pixels[((idx * LS + y) * LS + (LS - 1 - xx)) * LC + c];
                if (v != (float)a / 127.5f - 1.0f) plain = 0;
                if (v != (float)b / 127.5f - 1.0f) flip = 0;
            }
    return plain ? 0 : flip ? 1 : -1;
}

static void test_loader(void) {
    ddx_dataset d;
    make_set(&d);
    const int img = LS * LS * LC;
    float *x = malloc(sizeof(float) * LB * img), *x2 = malloc(sizeof(float) * LB * img);
    int32_t y[LB], y2[LB];

    // Every epoch is a permutation (each image at most once, 100 of 103 used), orders differ.
    int first_of_epoch[3] = {0};
    int flips = 0, total = 0, wrong = 0;
    for (int e = 0; e < 3; e++) {
        int seen[LN] = {0};
        for (int k = e * PER_EPOCH; k < (e + 1) * PER_EPOCH; k++) {
            ddx_status st = ddx_loader_batch_at(&d, LB, 1234, true, k, x, y);
            if (st) {
                CHECK(0, "batch_at %d: %s", k, ddx_last_error());
                return;
            }
            for (int j = 0; j < LB; j++) {
                if (y[j] < 0 || y[j] >= LN) {
                    wrong++;
                    continue;
                }
                seen[y[j]]++;
                int cl = classify(&d, y[j], x + j * img);
                if (cl < 0) wrong++;
                flips += cl == 1;
                total++;
            }
            if (k == e * PER_EPOCH) first_of_epoch[e] = y[0] * 1000 + y[1];
        }
        int dup = 0, used = 0;
        for (int i = 0; i < LN; i++) {
            dup += seen[i] > 1;
            used += seen[i] == 1;
        }
        CHECK(dup == 0 && used == PER_EPOCH * LB, "epoch %d: %d duplicates, %d distinct images", e, dup, used);
    }
    // With batch 1 nothing is dropped: each epoch holds every index exactly once.
    for (int e = 0; e < 2; e++) {
        int seen[LN] = {0}, bad = 0;
        for (int k = e * LN; k < (e + 1) * LN; k++) {
            int32_t one = -1;
            if (ddx_loader_batch_at(&d, 1, 77, false, k, NULL, &one) != DDX_OK || one < 0 || one >= LN) bad++;
            else seen[one]++;
        }
        for (int i = 0; i < LN; i++) bad += seen[i] != 1;
        CHECK(bad == 0, "batch 1, epoch %d: %d indices not seen exactly once", e, bad);
    }
    CHECK(wrong == 0, "%d batch images match neither their source nor its mirror (or bad scale)", wrong);
    CHECK(first_of_epoch[0] != first_of_epoch[1] || first_of_epoch[1] != first_of_epoch[2],
          "epochs start with the same images");
    // 300 fair coin flips: mean 150, sd 8.7; [100, 200] is more than 5 sd.
    CHECK(flips >= 100 && flips <= 200, "%d of %d images flipped", flips, total);

    // Scaling: 0 -> -1 and 255 -> 1 exactly, all values within [-1, 1].
    {
        float lo = 2, hi = -2;
        for (int k = 0; k < PER_EPOCH; k++) {
            ddx_loader_batch_at(&d, LB, 5, false, k, x, y);
            for (int i = 0; i < LB * img; i++) {
                lo = x[i] < lo ? x[i] : lo;
                hi = x[i] > hi ? x[i] : hi;
            }
        }
        CHECK(lo == -1.0f && hi == 1.0f, "scaled range [%g, %g], want exactly [-1, 1]", lo, hi);
    }

    // No flips when hflip is off; determinism; another seed, another order.
    {
        int any_flip = 0, bad = 0;
        for (int k = 0; k < 2 * PER_EPOCH; k++) {
            ddx_loader_batch_at(&d, LB, 1234, false, k, x, y);
            for (int j = 0; j < LB; j++) {
                int cl = classify(&d, y[j], x + j * img);
                bad += cl < 0;
                // A symmetric image would classify as plain either way; lpix is never symmetric.
                any_flip += cl == 1;
            }
        }
        CHECK(any_flip == 0 && bad == 0, "hflip off: %d flipped, %d wrong", any_flip, bad);
        ddx_loader_batch_at(&d, LB, 1234, true, 17, x, y);
        ddx_loader_batch_at(&d, LB, 1234, true, 17, x2, y2);
        CHECK(!memcmp(x, x2, sizeof(float) * LB * img) && !memcmp(y, y2, sizeof y), "batch_at is not deterministic");
        ddx_loader_batch_at(&d, LB, 1235, true, 17, x2, y2);
        CHECK(memcmp(y, y2, sizeof y) != 0, "seeds 1234 and 1235 give the same batch");
        // Flip state with hflip off equals the unflipped images of the same order.
        ddx_loader_batch_at(&d, LB, 1234, false, 17, x2, y2);
        CHECK(!memcmp(y, y2, sizeof y), "hflip changes the order (it must only mirror)");
    }

    // next() == batch_at, sync and prefetched, from a nonzero start across an epoch boundary.
    const int prefetches[3] = {0, 1, 3};
    for (int pi = 0; pi < 3; pi++) {
        ddx_loader *l = NULL;
        ddx_status st = ddx_loader_create(&d, LB, 99, true, 7, prefetches[pi], &l);
        CHECK(st == DDX_OK, "loader create prefetch %d: %s", prefetches[pi], ddx_last_error());
        if (st) continue;
        int mism = 0, idx_bad = 0;
        for (int i = 0; i < 25; i++) {
            int64_t bi = -1;
            st = ddx_loader_next(l, x, y, &bi);
            if (st) {
                CHECK(0, "next: %s", ddx_last_error());
                break;
            }
            idx_bad += bi != 7 + i;
            ddx_loader_batch_at(&d, LB, 99, true, 7 + i, x2, y2);
            mism += memcmp(x, x2, sizeof(float) * LB * img) != 0 || memcmp(y, y2, sizeof y) != 0;
        }
        CHECK(mism == 0 && idx_bad == 0, "prefetch %d: %d batches differ from batch_at, %d wrong indices",
              prefetches[pi], mism, idx_bad);
        // NULL outputs are allowed and still advance.
        int64_t bi = -1;
        st = ddx_loader_next(l, NULL, y, &bi);
        CHECK(st == DDX_OK && bi == 32, "next with x = NULL: %s, index %lld", ddx_status_name(st), (long long)bi);
        ddx_loader_free(l);
    }

    // Stopping early: free with a full ring and with a consumer that never asked.
    {
        ddx_loader *l = NULL;
        CHECK(ddx_loader_create(&d, LB, 1, true, 0, 4, &l) == DDX_OK, "create");
        ddx_loader_next(l, x, y, NULL);
        usleep(20000);
        ddx_loader_free(l);
        CHECK(ddx_loader_create(&d, LB, 1, true, 0, 2, &l) == DDX_OK, "create");
        ddx_loader_free(l);
    }

    // A worker error reaches the consumer: epochs past 2^32 cannot be keyed.
    {
        ddx_loader *l = NULL;
        int64_t start = (int64_t)UINT32_MAX * PER_EPOCH + PER_EPOCH - 2;
        ddx_status st = ddx_loader_create(&d, LB, 1, true, start, 3, &l);
        CHECK(st == DDX_OK, "create near the epoch limit: %s", ddx_last_error());
        if (!st) {
            ddx_status s1 = ddx_loader_next(l, x, y, NULL), s2 = ddx_loader_next(l, x, y, NULL);
            ddx_status s3 = ddx_loader_next(l, x, y, NULL);
            CHECK(s1 == DDX_OK && s2 == DDX_OK && s3 == DDX_E_INPUT, "worker error: %s %s %s", ddx_status_name(s1),
                  ddx_status_name(s2), ddx_status_name(s3));
            CHECK(strstr(ddx_last_error(), "2^32") != NULL, "worker error message '%s'", ddx_last_error());
            ddx_loader_free(l);
        }
    }

    ddx_loader *l = NULL;
    CHECK(ddx_loader_create(&d, LN + 1, 1, true, 0, 2, &l) == DDX_E_INPUT && !l, "batch larger than the set");
    CHECK(ddx_loader_create(&d, LB, 1, true, -1, 2, &l) == DDX_E_INPUT && !l, "negative start");
    free(x);
    free(x2);
    ddx_dataset_free(&d);
}

static void test_real_fashion(void) {
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &sb) != 0) {
        printf("SKIP real Fashion-MNIST: /usr/share/datasets/fashion-mnist not installed\n");
        n_skip++;
        return;
    }
    ddx_config cfg;
    cfg_for(&cfg, DDX_DATASET_FASHION_MNIST, NULL, 28, 1);
    ddx_dataset d;
    ddx_status st = ddx_dataset_load(&cfg, &d);
    CHECK(st == DDX_OK, "real Fashion-MNIST: %s", ddx_last_error());
    if (st) return;
    CHECK(d.n == 60000 && d.size == 28 && d.channels == 1, "real Fashion-MNIST n=%lld", (long long)d.n);
    int64_t per[10] = {0}, out_of_range = 0, sum = 0;
    for (int64_t i = 0; i < d.n; i++) {
        if (d.labels[i] < 0 || d.labels[i] > 9) out_of_range++;
        else per[d.labels[i]]++;
    }
    for (int64_t i = 0; i < d.n * 28 * 28; i += 997) sum += d.pixels[i];
    int balanced = 1;
    for (int c = 0; c < 10; c++) balanced &= per[c] == 6000;
    CHECK(out_of_range == 0 && balanced, "real labels: %lld out of range, class 0 has %lld (want 6000 each)",
          (long long)out_of_range, (long long)per[0]);
    CHECK(sum > 0, "real pixels are all zero");
    printf("real: %s\n", d.desc);
    ddx_dataset_free(&d);
}

static void rm_rf(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", path);
}

// A FIFO in place of a data file is refused at once, not waited on (the alarm turns a hang
// into a failure rather than a stuck suite).
static void test_fifo(void) {
    write_fmnist("fm_fifo", 5, 28, 28, 5, 0x803, 0);
    char p[600];
    path_in(p, sizeof p, "fm_fifo/train-images-idx3-ubyte.gz");
    unlink(p);
    CHECK(mkfifo(p, 0600) == 0, "mkfifo %s", p);
    ddx_config cfg;
    ddx_dataset d;
    cfg_for(&cfg, DDX_DATASET_FASHION_MNIST, "fm_fifo", 28, 1);
    alarm(10);
    ddx_status st = ddx_dataset_load(&cfg, &d);
    alarm(0);
    CHECK_INPUT_ERR(st, "fm_fifo/train-images-idx3-ubyte.gz", "fashion FIFO");
    CHECK(strstr(ddx_last_error(), "not a regular file") != NULL, "FIFO message: %s", ddx_last_error());
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/ddx_test_data_XXXXXX");
    if (!mkdtemp(g_dir)) {
        printf("FATAL: mkdtemp\n");
        return 1;
    }
    test_fashion_synthetic();
    test_fashion_bad();
    test_cifar();
    test_image_folder();
    test_class_names();
    test_image_pixel_limit();
    test_loader();
    test_real_fashion();
    test_fifo();
    rm_rf(g_dir);
    return ddx_test_finish("test_data");
}
