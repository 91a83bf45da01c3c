// eval/fid.h against tests/data/fid (tests/reference/make_fid_fixtures.py: numpy, scipy's
// sqrtm as pytorch-fid calls it, torch-fidelity's KID/IS formulas): streaming statistics,
// Fréchet distance (incl. N < d), KID, IS, numpy's RandomState draws, .npz files numpy wrote,
// the .npz round trip, hostile .npz files and the Inception weights lookup.
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "eval/fid.h"
#include "safetensors.h"

#define FX "data/fid/"

static ddx_st_file fx;
static char tmpdir[256];

static const ddx_st_tensor *tensor(const char *name, ddx_st_dtype dt, int64_t *rows, int64_t *cols) {
    const ddx_st_tensor *t = ddx_st_find(&fx, name);
    if (!t || t->dtype != dt) {
        printf("fixture tensor %s missing or of the wrong dtype; rerun tests/reference/make_fid_fixtures.py\n", name);
        exit(1);
    }
    *rows = t->shape[0];
    *cols = t->ndim > 1 ? t->shape[1] : 1;
    return t;
}

static double meta(const char *key) {
    const char *v = ddx_st_meta_get(&fx, key);
    if (!v) {
        printf("fixture metadata %s missing\n", key);
        exit(1);
    }
    return strtod(v, NULL);
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 1e-300 ? fabs(b) : 1.0); }

// Statistics of a fixture feature set, fed in uneven batches (1, 7, then the rest).
static void stats_of(const char *name, ddx_gauss *g, int64_t keep) {
    int64_t n, d;
    const float *x = tensor(name, DDX_ST_F32, &n, &d)->data;
    ddx_fstats *s;
    CHECK(ddx_fstats_create(&s, d, keep) == DDX_OK, "create: %s", ddx_last_error());
    int64_t cuts[] = {0, 1, 8, n};
    for (int i = 0; i < 3; i++)
        CHECK(ddx_fstats_add(s, x + cuts[i] * d, cuts[i + 1] - cuts[i]) == DDX_OK, "add: %s", ddx_last_error());
    CHECK(ddx_fstats_count(s) == n, "count %lld", (long long)ddx_fstats_count(s));
    int64_t kept;
    const float *k = ddx_fstats_kept(s, &kept);
    CHECK(kept == (keep < n ? keep : n), "kept %lld rows of %lld", (long long)kept, (long long)keep);
    if (kept) CHECK(memcmp(k, x, (size_t)(kept * d) * sizeof(float)) == 0, "kept rows differ from the input");
    CHECK(ddx_fstats_finish(s, g) == DDX_OK, "finish: %s", ddx_last_error());
    ddx_fstats_free(s);
}

static void compare_gauss(const ddx_gauss *got, const ddx_gauss *want, double tol, const char *what) {
    CHECK(got->d == want->d, "%s: d %lld vs %lld", what, (long long)got->d, (long long)want->d);
    if (got->d != want->d) return;
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < want->d * want->d; i++) scale = fmax(scale, fabs(want->sigma[i]));
    for (int64_t i = 0; i < want->d; i++) worst = fmax(worst, fabs(got->mu[i] - want->mu[i]) / fabs(want->mu[i]));
    CHECK(worst <= tol, "%s: mu off by %.3g relative", what, worst);
    worst = 0;
    for (int64_t i = 0; i < want->d * want->d; i++) worst = fmax(worst, fabs(got->sigma[i] - want->sigma[i]) / scale);
    CHECK(worst <= tol, "%s: sigma off by %.3g (relative to its largest entry)", what, worst);
}

static void test_stats_and_frechet(void) {
    ddx_gauss g1, g2, g3, n1, n3;
    stats_of("f1", &g1, 0);
    stats_of("f2", &g2, 1000);
    stats_of("f3", &g3, 5);
    // numpy's mean / cov of the same float32 features, as np.savez and savez_compressed wrote them.
    CHECK(ddx_npz_read_stats(FX "stats1.npz", 0, &n1) == DDX_OK, "stats1.npz: %s", ddx_last_error());
    CHECK(ddx_npz_read_stats(FX "stats3_compressed.npz", 0, &n3) == DDX_OK, "stats3: %s", ddx_last_error());
    compare_gauss(&g1, &n1, 1e-12, "f1 vs numpy (np.savez)");
    compare_gauss(&g3, &n3, 1e-12, "f3 vs numpy (np.savez_compressed)");

    struct { const char *key; const ddx_gauss *a, *b; } cases[] = {
        {"fid_12", &g1, &g2}, {"fid_13", &g1, &g3}, {"fid_31", &g3, &g1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double fid = NAN;
        CHECK(ddx_frechet_distance(cases[i].a, cases[i].b, &fid) == DDX_OK, "%s: %s", cases[i].key, ddx_last_error());
        CHECK(rel(fid, meta(cases[i].key)) <= 1e-6, "%s: %.12g vs pytorch-fid %.12g", cases[i].key, fid, meta(cases[i].key));
    }
    // Same covariance, shifted mean: the trace terms cancel and FID is |shift|^2 (up to sqrtm's
    // rounding on a rank-deficient sigma, which the fixture carries too).
    ddx_gauss sh;
    CHECK(ddx_gauss_alloc(&sh, g3.d) == DDX_OK, "alloc");
    for (int64_t i = 0; i < g3.d; i++) sh.mu[i] = g3.mu[i] + 0.25;
    memcpy(sh.sigma, g3.sigma, (size_t)(g3.d * g3.d) * sizeof(double));
    double fid = NAN, self = NAN;
    CHECK(ddx_frechet_distance(&g3, &sh, &fid) == DDX_OK, "fid_33: %s", ddx_last_error());
    CHECK(rel(fid, meta("fid_33")) <= 1e-6, "fid_33: %.12g vs %.12g", fid, meta("fid_33"));
    CHECK(ddx_frechet_distance(&g1, &g1, &self) == DDX_OK && fabs(self) < 1e-9 * meta("fid_12"), "FID(x, x) = %.3g", self);
    // Mismatched dimensions and non-finite statistics are refused.
    ddx_gauss small;
    CHECK(ddx_gauss_alloc(&small, 3) == DDX_OK, "alloc");
    CHECK(ddx_frechet_distance(&g1, &small, &fid) == DDX_E_INPUT && strstr(ddx_last_error(), "dimensions differ"),
          "dimension mismatch: %s", ddx_last_error());
    sh.sigma[5] = NAN;
    CHECK(ddx_frechet_distance(&g1, &sh, &fid) == DDX_E_INPUT, "NaN sigma accepted");
    ddx_gauss_free(&small);
    ddx_gauss_free(&sh);
    ddx_gauss_free(&g1);
    ddx_gauss_free(&g2);
    ddx_gauss_free(&g3);
    ddx_gauss_free(&n1);
    ddx_gauss_free(&n3);
}

static void test_fstats_bad(void) {
    ddx_fstats *s;
    CHECK(ddx_fstats_create(&s, 0, 0) == DDX_E_INPUT, "d = 0 accepted");
    CHECK(ddx_fstats_create(&s, DDX_FID_MAX_DIM + 1, 0) == DDX_E_INPUT, "d above the limit accepted");
    CHECK(ddx_fstats_create(&s, 4, 0) == DDX_OK, "create");
    float row[8] = {1, 2, 3, 4, 1, 2, NAN, 4};
    ddx_gauss g;
    CHECK(ddx_fstats_add(s, row, 1) == DDX_OK, "add");
    CHECK(ddx_fstats_finish(s, &g) == DDX_E_INPUT, "covariance of one row accepted");
    CHECK(ddx_fstats_add(s, row, 2) == DDX_E_INPUT && strstr(ddx_last_error(), "row 1"), "NaN row: %s", ddx_last_error());
    CHECK(ddx_fstats_count(s) == 1, "a refused batch was counted");
    ddx_fstats_free(s);
}

static void test_rng(void) {
    int64_t n, c;
    const int64_t *want = tensor("perm_2020_1000", DDX_ST_I64, &n, &c)->data;
    int64_t *perm = malloc(70000 * sizeof(int64_t));
    ddx_np_rng r;
    ddx_np_rng_seed(&r, 2020);
    ddx_np_rng_permutation(&r, perm, n);
    CHECK(memcmp(perm, want, (size_t)n * sizeof(int64_t)) == 0, "RandomState(2020).permutation(1000) differs from numpy");
    want = tensor("perm_0_70000_head", DDX_ST_I64, &n, &c)->data;
    ddx_np_rng_seed(&r, 0);
    ddx_np_rng_permutation(&r, perm, 70000);
    CHECK(memcmp(perm, want, (size_t)n * sizeof(int64_t)) == 0, "RandomState(0).permutation(70000) differs from numpy");
    free(perm);
}

static void test_kid_is(void) {
    int64_t n1, n2, d, d2, ni, c;
    const float *k1 = tensor("k1", DDX_ST_F32, &n1, &d)->data, *k2 = tensor("k2", DDX_ST_F32, &n2, &d2)->data;
    const int64_t *i1 = tensor("kid_idx1", DDX_ST_I64, &ni, &c)->data, *i2 = tensor("kid_idx2", DDX_ST_I64, &ni, &c)->data;
    ddx_kid_opts o = ddx_kid_defaults();
    CHECK(o.subsets == 100 && o.subset_size == 1000 && o.degree == 3 && o.coef0 == 1 && o.gamma == 0 && o.seed == 2020,
          "KID defaults are not torch-fidelity's");
    o.subsets = (int64_t)meta("kid_subsets");
    o.subset_size = (int64_t)meta("kid_size");
    o.idx1 = i1;
    o.idx2 = i2;
    double m = NAN, s = NAN;
    CHECK(ddx_kid(k1, n1, k2, n2, d, &o, &m, &s) == DDX_OK, "kid: %s", ddx_last_error());
    CHECK(rel(m, meta("kid_fixed_mean")) <= 1e-6 && rel(s, meta("kid_fixed_std")) <= 1e-6,
          "KID (fixed subsets) %.12g +- %.12g vs %.12g +- %.12g", m, s, meta("kid_fixed_mean"), meta("kid_fixed_std"));
    o = ddx_kid_defaults();
    o.subsets = (int64_t)meta("kid_seeded_subsets");
    o.subset_size = (int64_t)meta("kid_seeded_size");
    CHECK(ddx_kid(k1, n1, k2, n2, d, &o, &m, &s) == DDX_OK, "kid: %s", ddx_last_error());
    CHECK(rel(m, meta("kid_seeded_mean")) <= 1e-6 && rel(s, meta("kid_seeded_std")) <= 1e-6,
          "KID (RandomState(2020) subsets) %.12g +- %.12g vs %.12g +- %.12g", m, s, meta("kid_seeded_mean"),
          meta("kid_seeded_std"));
    o.subset_size = n2 + 1;
    CHECK(ddx_kid(k1, n1, k2, n2, d, &o, &m, &s) == DDX_E_INPUT && strstr(ddx_last_error(), "larger than"),
          "KID subset above the set size: %s", ddx_last_error());

    const float *lg = tensor("logits", DDX_ST_F32, &ni, &c)->data;
    struct { const char *k; int64_t splits; bool shuf; uint32_t seed; } is[] = {
        {"is", 10, true, 2020}, {"is_noshuffle", 10, false, 0}, {"is_splits3", 3, true, 7}};
    for (size_t i = 0; i < sizeof is / sizeof is[0]; i++) {
        char km[64], ks[64];
        snprintf(km, sizeof km, "%s_mean", is[i].k);
        snprintf(ks, sizeof ks, "%s_std", is[i].k);
        CHECK(ddx_inception_score(lg, ni, c, is[i].splits, is[i].shuf, is[i].seed, &m, &s) == DDX_OK, "%s", ddx_last_error());
        CHECK(rel(m, meta(km)) <= 1e-6 && rel(s, meta(ks)) <= 1e-6, "%s: %.12g +- %.12g vs %.12g +- %.12g", is[i].k, m, s,
              meta(km), meta(ks));
    }
    CHECK(ddx_inception_score(lg, 5, c, 10, true, 0, &m, &s) == DDX_E_INPUT, "IS with fewer rows than splits accepted");
}

static char *tmp(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static long file_bytes(const char *path, unsigned char **data) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc((size_t)n + 1);
    if (fread(*data, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

static void put_bytes(const char *path, const unsigned char *data, long n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, (size_t)n, f) != (size_t)n) {
        printf("cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

// A bad file: DDX_E_INPUT with one line that names the file (and the key when given).
static void expect_bad(const char *path, const char *key, const char *why) {
    ddx_gauss g;
    ddx_status st = ddx_npz_read_stats(path, 0, &g);
    const char *e = ddx_last_error();
    CHECK(ddx_exit_code(st) == 2 && strstr(e, path) && !strchr(e, '\n') && (!key || strstr(e, key)) && g.mu == NULL,
          "%s: status %d, message '%s'", why, st, e);
    ddx_gauss_free(&g);
}

static void test_npz(void) {
    ddx_gauss g, r, f32;
    CHECK(ddx_npz_read_stats(FX "stats1.npz", 0, &g) == DDX_OK, "%s", ddx_last_error());
    // Round trip through ddx's writer, bit-exact (numpy.load of the same writer's output is
    // checked by tests/reference/check_inception.py, which has numpy).
    CHECK(ddx_npz_write_stats(tmp("rt.npz"), "--out", &g) == DDX_OK, "write: %s", ddx_last_error());
    CHECK(ddx_npz_read_stats(tmp("rt.npz"), 0, &r) == DDX_OK, "read back: %s", ddx_last_error());
    CHECK(r.d == g.d && memcmp(r.mu, g.mu, (size_t)g.d * 8) == 0 && memcmp(r.sigma, g.sigma, (size_t)(g.d * g.d) * 8) == 0,
          "round trip changed the statistics");
    ddx_gauss_free(&r);
    // float32, Fortran-order sigma, extra key, deflate: converted to the same values numpy holds.
    CHECK(ddx_npz_read_stats(FX "stats2_f32_fortran.npz", 0, &f32) == DDX_OK, "%s", ddx_last_error());
    ddx_gauss g2;
    stats_of("f2", &g2, 0);
    compare_gauss(&f32, &g2, 1e-6, "float32 Fortran-order sigma");
    double asym = 0;
    for (int64_t i = 0; i < f32.d; i++)
        for (int64_t j = 0; j < f32.d; j++) asym = fmax(asym, fabs(f32.sigma[i * f32.d + j] - f32.sigma[j * f32.d + i]));
    CHECK(asym == 0, "Fortran-order sigma read transposed wrongly (asymmetry %.3g)", asym);
    CHECK(ddx_npz_read_stats(FX "stats1.npz", 63, &r) == DDX_E_INPUT && strstr(ddx_last_error(), "above the limit"),
          "d above max_dim: %s", ddx_last_error());
    ddx_gauss_free(&r);
    ddx_gauss_free(&g2);
    ddx_gauss_free(&f32);

    expect_bad(FX "bad_dtype.npz", "'mu'", "integer mu");
    expect_bad(FX "bad_shape.npz", "'sigma'", "sigma [8, 7]");
    expect_bad(FX "bad_nomu.npz", "'mu'", "missing mu");
    expect_bad(FX "bad_mismatch.npz", "'sigma'", "mu [6] with sigma [8, 8]");
    expect_bad(FX "bad_sigma_1d.npz", "'sigma'", "sigma as a vector");
    expect_bad(FX "features.safetensors", NULL, "a safetensors file");
    expect_bad(tmp("missing.npz"), NULL, "missing file");

    unsigned char *b = NULL;
    long n = file_bytes(FX "stats1.npz", &b);
    if (n < 1000 || !b) {
        CHECK(0, "read stats1.npz");
        return;
    }
    // Truncations: mid-data, mid-central-directory, and only the first bytes.
    long cuts[] = {n / 2, n - 40, 100};
    for (int i = 0; i < 3; i++) {
        put_bytes(tmp("trunc.npz"), b, cuts[i]);
        expect_bad(tmp("trunc.npz"), NULL, "truncated");
    }
    // A flipped data byte: the CRC catches it.
    unsigned char *c = malloc((size_t)n);
    memcpy(c, b, (size_t)n);
    c[n / 2] ^= 0x55;
    put_bytes(tmp("crc.npz"), c, n);
    expect_bad(tmp("crc.npz"), NULL, "corrupt data");
    // sigma's .npy header claims a bigger shape than its data holds: (64, 64) -> (64, 99).
    memcpy(c, b, (size_t)n);
    unsigned char *p = (unsigned char *)memmem(c, (size_t)n, "(64, 64)", 8);
    CHECK(p != NULL, "sigma shape in stats1.npz");
    if (p) {
        memcpy(p, "(64, 99)", 8);
        put_bytes(tmp("shape.npz"), c, n);
        expect_bad(tmp("shape.npz"), "'sigma'", "header shape larger than the data");
        memcpy(p, "(64, 64)", 8);
    }
    // A central directory that claims a 3 GB member is refused before any allocation.
    unsigned char *cd = (unsigned char *)memmem(c, (size_t)n, "PK\1\2", 4);
    CHECK(cd != NULL, "central directory in stats1.npz");
    if (cd) {
        memcpy(cd + 24, "\0\0\0\xb0", 4);
        put_bytes(tmp("huge.npz"), c, n);
        expect_bad(tmp("huge.npz"), "'mu'", "member claiming 3 GB");
    }
    free(c);
    free(b);
    // A FIFO as input is refused, not read forever.
    CHECK(mkfifo(tmp("fifo.npz"), 0600) == 0, "mkfifo");
    expect_bad(tmp("fifo.npz"), NULL, "FIFO");
    // The writer never replaces a non-regular file and leaves nothing half-written.
    CHECK(ddx_npz_write_stats(tmp("fifo.npz"), "--out", &g) == DDX_E_INPUT && strstr(ddx_last_error(), "--out"),
          "writing over a FIFO: %s", ddx_last_error());
    CHECK(ddx_npz_write_stats(tmp("nodir/x.npz"), "--out", &g) != DDX_OK, "writing into a missing folder succeeded");
    ddx_gauss_free(&g);
}

static void test_inception_path(void) {
    char out[4096];
    const char *src = NULL;
    const char *f = tmp("weights.safetensors");
    put_bytes(f, (const unsigned char *)"x", 1);
    CHECK(ddx_inception_path(f, "--inception", out, sizeof out, &src) == DDX_OK && strcmp(out, f) == 0 &&
          strcmp(src, "--inception") == 0, "explicit path: %s", ddx_last_error());
    setenv("DDX_INCEPTION", f, 1);
    CHECK(ddx_inception_path(NULL, "--inception", out, sizeof out, &src) == DDX_OK && strcmp(src, "DDX_INCEPTION") == 0,
          "env: %s", ddx_last_error());
    // The explicit path wins over the environment, and a missing one names the fetch command.
    CHECK(ddx_inception_path(tmp("nope.safetensors"), "eval.inception", out, sizeof out, &src) == DDX_E_INPUT &&
          strstr(ddx_last_error(), "eval.inception") && strstr(ddx_last_error(), DDX_INCEPTION_FETCH),
          "missing explicit: %s", ddx_last_error());
    unsetenv("DDX_INCEPTION");
    setenv("XDG_CACHE_HOME", tmpdir, 1);
    CHECK(ddx_inception_path("", "--inception", out, sizeof out, &src) == DDX_E_INPUT &&
          strstr(ddx_last_error(), DDX_INCEPTION_FILE) && strstr(ddx_last_error(), DDX_INCEPTION_FETCH) &&
          strstr(ddx_last_error(), tmpdir), "missing default: %s", ddx_last_error());
    char dir[600];
    snprintf(dir, sizeof dir, "%s/ddx", tmpdir);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/ddx/%s", tmpdir, DDX_INCEPTION_FILE);
    put_bytes(dir, (const unsigned char *)"x", 1);
    CHECK(ddx_inception_path(NULL, NULL, out, sizeof out, &src) == DDX_OK && strcmp(out, dir) == 0 &&
          strcmp(src, "default cache path") == 0, "default path: %s", ddx_last_error());
    CHECK(ddx_inception_path(tmpdir, "--inception", out, sizeof out, &src) == DDX_E_INPUT &&
          strstr(ddx_last_error(), "not a regular file"), "a folder: %s", ddx_last_error());
    CHECK(ddx_inception_path(NULL, NULL, out, 8, &src) == DDX_E_INPUT, "path longer than the buffer accepted");
}

int main(void) {
    ddx_status st = ddx_st_read(FX "features.safetensors", &fx);
    if (st != DDX_OK) {
        printf("%s\n", ddx_last_error());
        return 1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ddx_test_fid_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    test_stats_and_frechet();
    test_fstats_bad();
    test_rng();
    test_kid_is();
    test_npz();
    test_inception_path();
    ddx_st_close(&fx);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return ddx_test_finish("fid");
}
