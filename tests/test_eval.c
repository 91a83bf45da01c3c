// The evaluation tools' own pieces (no Inception weights needed): the PNG-exact quantisation
// against PNGs written by runtime/image.c and read back, SHA-256 known answers, and
// ddx_sampling_run_at giving exactly the images of one longer run (what makes ddx-eval's
// shards resumable without changing the result).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image.h>

#include "check.h"
#include "eval/gen.h"
#include "eval/sha256.h"
#include "models/sampler.h"
#include "runtime/image.h"
#include "runtime/philox.h"

static void test_quantize(const char *tmpdir) {
    enum { H = 16, W = 16, C = 3, N = H * W * C };
    float x[N];
    ddx_status st = ddx_philox_normal(x, N, 7, 0, 0, 0);
    CHECK(st == DDX_OK, "philox");
    // Edge values: the ends, just inside, half-steps of the 8-bit grid, non-finite.
    const float edge[] = {-1.0f, 1.0f, -1.5f, 2.0f, 0.0f, NAN, INFINITY, -INFINITY, -0.99607843f, 0.99607843f,
                          1.0f / 255.0f - 1.0f, 2.0f / 255.0f - 1.0f, 0.5f / 127.5f - 1.0f};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) x[i] = edge[i];
    for (int i = 100; i < 400; i++) x[i] = -1.0f + (float)(i - 100) / 149.5f;   // the grid, and between
    char path[512];
    snprintf(path, sizeof path, "%s/q.png", tmpdir);
    st = ddx_image_write(path, x, H, W, C, DDX_NORMALIZE_CLIP, NULL);
    CHECK(st == DDX_OK, "ddx_image_write: %s", ddx_last_error());
    int w, h, c;
    uint8_t *png = stbi_load(path, &w, &h, &c, C);
    CHECK(png && w == W && h == H, "read back the PNG");
    uint8_t q[N];
    ddx_quantize_u8(x, N, q);
    int bad = 0;
    for (int i = 0; png && i < N; i++) bad += q[i] != png[i];
    CHECK(png && bad == 0, "quantised values differ from the saved PNG at %d of %d values", bad, N);
    CHECK(q[0] == 0 && q[1] == 255 && q[2] == 0 && q[3] == 255 && q[5] == 0 && q[6] == 255 && q[7] == 0,
          "ends and non-finite values: %d %d %d %d %d %d %d", q[0], q[1], q[2], q[3], q[5], q[6], q[7]);
    stbi_image_free(png);
    unlink(path);
}

static void sha_case(const char *tmpdir, const char *msg, size_t reps, const char *want) {
    char path[512];
    snprintf(path, sizeof path, "%s/sha.bin", tmpdir);
    FILE *f = fopen(path, "wb");
    for (size_t i = 0; f && i < reps; i++) fputs(msg, f);
    if (f) fclose(f);
    char hex[65] = "";
    ddx_status st = ddx_sha256_file(path, "test", hex);
    CHECK(st == DDX_OK && !strcmp(hex, want), "sha256 of %zu x '%.20s': %s, want %s", reps, msg, hex, want);
    unlink(path);
}

static void test_sha256(const char *tmpdir) {
    // FIPS 180-4 examples and a long message across many 1 MiB read chunks.
    sha_case(tmpdir, "", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_case(tmpdir, "abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha_case(tmpdir, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    sha_case(tmpdir, "a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    char hex[65];
    CHECK(ddx_sha256_file("/nonexistent/x", "test", hex) != DDX_OK, "a missing file is an error");
}

static void test_run_at(void) {
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    cfg.model.type = DDX_MODEL_TYPE_UNET_DDPM;
    cfg.model.image_size = 8;
    cfg.model.in_channels = cfg.model.out_channels = 1;
    cfg.model.ch = 8;
    cfg.model.ch_mult = (ddx_int_list){2, {1, 2}};
    cfg.model.num_res_blocks = 1;
    cfg.model.attn_resolutions = (ddx_int_list){1, {4}};
    cfg.model.groups = 4;
    cfg.data.image_size = 8;
    cfg.diffusion.timesteps = 40;
    ddx_param_store ps;
    ddx_param_store_init(&ps, DDX_CPU);
    ddx_model *m = NULL;
    ddx_schedule sched = {0};
    ddx_status st = ddx_model_create(&cfg, &ps, &m);
    if (!st) st = ddx_param_store_finalize_inference(&ps);
    if (!st) st = ddx_model_init(m, 5);
    if (!st) st = ddx_schedule_init(&sched, &cfg);
    CHECK(st == DDX_OK, "tiny model: %s", ddx_last_error());
    const ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 5, .eta = 1.0, .seed = 11, .batch = 3};
    ddx_sampling *sp = NULL;
    if (!st) st = ddx_sampling_create(m, &sched, &o, DDX_CPU, &sp);
    enum { N = 7, PER = 64 };
    float all[N * PER], part[4 * PER], one[PER];
    if (!st) st = ddx_sampling_run(sp, N, NULL, NULL, all, NULL, NULL);
    if (!st) st = ddx_sampling_run_at(sp, 2, 4, NULL, NULL, part, NULL, NULL);
    CHECK(st == DDX_OK, "sampling: %s", ddx_last_error());
    double d = 0;
    for (int i = 0; i < 4 * PER; i++) d = fmax(d, fabs((double)all[2 * PER + i] - part[i]));
    printf("run_at(2, 4) vs images 2..5 of run(7): max |diff| %.3g\n", d);
    // The same noise; the network's float sums depend on which images share a batch (OpenBLAS
    // blocks by the row count), so across other batch boundaries only to rounding.
    CHECK(!st && d < 1e-5, "images 2..5 drawn alone differ from the same images of one run by %.3g", d);
    // With the same batch boundaries (what ddx-eval's fixed shards give): the same bits.
    if (!st) st = ddx_sampling_run_at(sp, 3, 3, NULL, NULL, part, NULL, NULL);
    CHECK(!st && !memcmp(all + 3 * PER, part, 3 * PER * sizeof(float)), "images 3..5 (one batch) drawn alone differ");
    if (!st) st = ddx_sampling_run_at(sp, 6, 1, NULL, NULL, one, NULL, NULL);
    CHECK(!st && !memcmp(all + 6 * PER, one, sizeof one), "image 6 (a batch of its own) drawn alone differs");
    CHECK(!st && memcmp(all, part, 3 * PER * sizeof(float)) != 0, "a shard starting at 3 must not repeat images 0..2");
    CHECK(ddx_sampling_run_at(sp, -1, 1, NULL, NULL, one, NULL, NULL) == DDX_E_INPUT, "a negative first index is refused");
    ddx_sampling_free(sp);
    ddx_schedule_free(&sched);
    ddx_model_free(m);
    ddx_param_store_free(&ps);
}

int main(void) {
    char tmpdir[] = "/tmp/ddx_test_eval_XXXXXX";
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_quantize(tmpdir);
    test_sha256(tmpdir);
    test_run_at();
    rmdir(tmpdir);
    return ddx_test_finish("eval");
}
