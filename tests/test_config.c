// Config tests: defaults, the example configs, --set of every type, emit -> load round trips,
// cross-key validation, and one bad-input fixture per error class (tests/data/config/), each
// of which must give DDX_E_INPUT with a message naming the file, the line and the key.
// Runs with the working directory tests/ (meson workdir).
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "fs_util.h"

static int n_pass, n_fail;

static void check(int ok, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void check(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        n_pass++;
        return;
    }
    n_fail++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}
#define CHECK(cond, ...) check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define CIFAR "../configs/cifar10_ddpm.yaml"
#define FASHION "../configs/fashion_mnist_ddpm.yaml"
#define BAD "data/config/"

static const char *diff_name(const char *d) { return d ? d : "(none)"; }

// `st` must be `want` and the last error must contain every NULL-terminated substring.
static void expect_error(const char *what, ddx_status st, ddx_status want, ...) {
    const char *msg = ddx_last_error();
    if (getenv("DDX_TEST_VERBOSE")) printf("  %-28s %s\n", what, msg);  // to review the wording
    CHECK(st == want, "%s: status %s, want %s (message: %s)", what, ddx_status_name(st), ddx_status_name(want), msg);
    CHECK(strchr(msg, '\n') == NULL, "%s: message is not one line: %s", what, msg);
    va_list ap;
    va_start(ap, want);
    for (const char *sub; (sub = va_arg(ap, const char *));)
        CHECK(strstr(msg, sub) != NULL, "%s: message lacks \"%s\": %s", what, sub, msg);
    va_end(ap);
}

static void test_defaults(void) {
    ddx_config c;
    memset(&c, 0xAB, sizeof c);
    ddx_config_defaults(&c);
    CHECK(!strcmp(c.run.name, "run") && !strcmp(c.run.out_dir, "outputs"), "run strings: '%s' '%s'", c.run.name, c.run.out_dir);
    CHECK(c.run.seed == 0 && c.run.device == DDX_RUN_DEVICE_AUTO && c.run.precision == DDX_PRECISION_FP32, "run scalars");
    CHECK(c.model.type == DDX_MODEL_TYPE_UNET_DDPM && c.model.in_channels == 3 && c.model.out_channels == 3, "model io");
    CHECK(c.model.image_size == 32 && c.model.ch == 128 && c.model.num_res_blocks == 2, "model sizes");
    CHECK(c.model.ch_mult.n == 4 && c.model.ch_mult.v[0] == 1 && c.model.ch_mult.v[1] == 2 && c.model.ch_mult.v[2] == 2 &&
              c.model.ch_mult.v[3] == 2, "ch_mult default (n=%d)", c.model.ch_mult.n);
    CHECK(c.model.attn_resolutions.n == 1 && c.model.attn_resolutions.v[0] == 16, "attn_resolutions default");
    CHECK(c.model.dropout == 0.1 && c.model.num_classes == 0 && c.model.groups == 32 && c.model.norm_eps == 1e-6, "model misc");
    CHECK(c.diffusion.timesteps == 1000 && c.diffusion.beta_schedule == DDX_BETA_SCHEDULE_LINEAR &&
              c.diffusion.beta_start == 1e-4 && c.diffusion.beta_end == 0.02 &&
              c.diffusion.variance == DDX_VARIANCE_FIXEDLARGE && c.diffusion.parameterization == DDX_PARAMETERIZATION_EPS,
          "diffusion defaults");
    CHECK(c.data.dataset == DDX_DATASET_CIFAR10 && c.data.path[0] == 0 && c.data.image_size == 32 && c.data.hflip &&
              c.data.num_workers == 2, "data defaults");
    CHECK(c.train.batch_size == 128 && c.train.total_steps == 800000 && c.train.lr == 2e-4 && c.train.beta1 == 0.9 &&
              c.train.beta2 == 0.999 && c.train.weight_decay == 0 && c.train.warmup_steps == 5000 &&
              c.train.grad_clip == 1.0 && c.train.ema_decay == 0.9999 && c.train.log_every == 100 &&
              c.train.sample_every == 10000 && c.train.checkpoint_every == 10000, "train defaults");
    CHECK(c.sample.sampler == DDX_SAMPLER_DDPM && c.sample.steps == 1000 && c.sample.eta == 0 && c.sample.n == 64 &&
              c.sample.spacing == DDX_SPACING_UNIFORM, "sample defaults");
    CHECK(c.origin.source[0] == 0 && c.origin.line[0] == 0, "defaults have no origin");
    ddx_status st = ddx_config_validate(&c);
    CHECK(st == DDX_OK, "defaults validate: %s", ddx_last_error());
}

static void test_examples(void) {
    ddx_config d, c;
    ddx_config_defaults(&d);
    ddx_status st = ddx_config_load(CIFAR, &c);
    CHECK(st == DDX_OK, "load %s: %s", CIFAR, ddx_last_error());
    if (st == DDX_OK) {
        CHECK(!strcmp(c.run.name, "cifar10_ddpm"), "cifar name '%s'", c.run.name);
        // Defaults are the Ho et al. CIFAR-10 settings, so only the name may differ.
        snprintf(d.run.name, sizeof d.run.name, "cifar10_ddpm");
        CHECK(ddx_config_diff(&c, &d) == NULL, "cifar10 config differs from defaults at %s", diff_name(ddx_config_diff(&c, &d)));
        CHECK(!strcmp(c.origin.source, CIFAR), "origin source '%s'", c.origin.source);
        CHECK(ddx_config_validate(&c) == DDX_OK, "cifar validates: %s", ddx_last_error());
    }
    st = ddx_config_load(FASHION, &c);
    CHECK(st == DDX_OK, "load %s: %s", FASHION, ddx_last_error());
    if (st == DDX_OK) {
        CHECK(c.data.dataset == DDX_DATASET_FASHION_MNIST && c.model.in_channels == 1 && c.model.image_size == 28 &&
                  c.data.image_size == 28 && !c.data.hflip, "fashion data/model");
        CHECK(c.model.ch == 32 && c.model.ch_mult.n == 3 && c.model.attn_resolutions.v[0] == 7 && c.model.groups == 8,
              "fashion unet");
        CHECK(c.sample.sampler == DDX_SAMPLER_DDIM && c.sample.steps == 50 && c.train.total_steps == 1000 &&
                  c.train.ema_warmup, "fashion train/sample");
        CHECK(ddx_config_validate(&c) == DDX_OK, "fashion validates: %s", ddx_last_error());
    }
    // Files that say nothing (empty, comments only, empty sections) mean all defaults.
    const char *empty[] = {BAD "empty.yaml", BAD "comments_only.yaml", BAD "empty_sections.yaml"};
    for (int i = 0; i < 3; i++) {
        ddx_config_defaults(&d);
        st = ddx_config_load(empty[i], &c);
        CHECK(st == DDX_OK, "load %s: %s", empty[i], ddx_last_error());
        CHECK(st != DDX_OK || ddx_config_diff(&c, &d) == NULL, "%s differs from defaults", empty[i]);
    }
    st = ddx_config_load(BAD "crlf_bom.yaml", &c);  // Windows line ends and a UTF-8 BOM
    CHECK(st == DDX_OK && c.train.lr == 1e-3 && c.model.ch == 32 && !strcmp(c.run.name, "w\xc3\xa9"), "crlf_bom.yaml: %s",
          ddx_last_error());
    st = ddx_config_load(BAD "dotted_keys.yaml", &c);
    CHECK(st == DDX_OK && c.train.lr == 3e-4 && c.model.ch == 64, "dotted top-level keys: %s", ddx_last_error());
    CHECK(st != DDX_OK || (c.origin.line[0] == 0 && c.model.ch == 64), "origin of untouched key is default");
}

static void test_set(void) {
    ddx_config c;
    ddx_config_defaults(&c);
    struct {
        const char *set;
        int ok;
    } good[] = {
        {"run.name=my run", 1},   {"run.out_dir=/tmp/x y", 1},
        {"run.seed=18446744073709551615", 1},
        {"run.device=cuda", 1},   {"run.precision=bf16", 1},
        {"model.ch_mult=[1,2,2,2]", 1},
        {"model.attn_resolutions = [ ]", 1},
        {"model.num_classes=10", 1},
        {"train.total_steps=8e5", 1},
        {"train.lr=.5", 1},       {"train.beta2=2.0e-4", 1},
        {"train.weight_decay=1", 1},
        {"data.hflip=false", 1},  {"data.path=", 1},
        {" sample.eta = 1e-1 ", 1},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ddx_status st = ddx_config_set(&c, good[i].set);
        CHECK(st == DDX_OK, "--set %s: %s", good[i].set, ddx_last_error());
    }
    CHECK(!strcmp(c.run.name, "my run") && !strcmp(c.run.out_dir, "/tmp/x y"), "string sets: '%s' '%s'", c.run.name, c.run.out_dir);
    CHECK(c.run.seed == UINT64_MAX, "u64 seed");
    CHECK(c.run.device == DDX_RUN_DEVICE_CUDA && c.run.precision == DDX_PRECISION_BF16, "enum sets");
    CHECK(c.model.ch_mult.n == 4 && c.model.ch_mult.v[3] == 2 && c.model.attn_resolutions.n == 0, "list sets");
    CHECK(c.model.num_classes == 10 && c.train.total_steps == 800000, "int sets");
    CHECK(c.train.lr == 0.5 && c.train.beta2 == 2.0e-4 && c.train.weight_decay == 1.0 && c.sample.eta == 0.1, "float sets");
    CHECK(!c.data.hflip && c.data.path[0] == 0, "bool and empty string sets");
    CHECK(c.origin.line[0] == -1, "origin of a --set key is -1");
    ddx_status st = ddx_config_set(&c, "model.ch_mult=1, 2, 4");
    CHECK(st == DDX_OK && c.model.ch_mult.n == 3 && c.model.ch_mult.v[2] == 4, "list without brackets: %s", ddx_last_error());

    struct {
        const char *set;
        const char *subs[3];
    } bad[] = {
        {"train.lr=abc", {"--set train.lr=abc", "key 'train.lr'", "expected a number, got 'abc'"}},
        {"train.lrr=1", {"unknown key 'train.lrr'", "did you mean 'train.lr'", NULL}},
        {"train.lr", {"--set train.lr", "KEY=VALUE", NULL}},
        {"train=1", {"'train' is a section", NULL, NULL}},
        {"train.batch_size=12.5", {"key 'train.batch_size'", "expected an integer, got '12.5'", NULL}},
        {"train.batch_size=", {"key 'train.batch_size'", "no value", NULL}},
        {"model.ch=0", {"key 'model.ch'", "out of range [1, 4096]", NULL}},
        {"model.dropout=1", {"key 'model.dropout'", "out of range [0, 1)", NULL}},
        {"model.norm_eps=0", {"key 'model.norm_eps'", "out of range (0, 1)", NULL}},
        {"run.seed=18446744073709551616", {"key 'run.seed'", "out of range", NULL}},
        {"run.seed=-3", {"key 'run.seed'", "out of range", NULL}},
        {"train.total_steps=1e300", {"key 'train.total_steps'", "too large", NULL}},
        {"train.lr=inf", {"key 'train.lr'", "finite", NULL}},
        {"data.hflip=yes", {"key 'data.hflip'", "true or false", NULL}},
        {"data.hflip=True", {"key 'data.hflip'", "true or false", NULL}},
        {"sample.sampler=DDIM", {"key 'sample.sampler'", "allowed: ddpm, ddim", "did you mean 'ddim'"}},
        {"diffusion.beta_schedule=quadratic", {"unknown value 'quadratic'", "allowed: linear, cosine, scaled_linear", NULL}},
        {"train.loss_weight=snr", {"key 'train.loss_weight'", "allowed: uniform, min_snr", NULL}},
        {"train.min_snr_gamma=0", {"key 'train.min_snr_gamma'", "out of range", NULL}},
        {"diffusion.rescale_zero_terminal_snr=1", {"key 'diffusion.rescale_zero_terminal_snr'", "true or false", NULL}},
        {"model.ch_mult=[1,2,[2]]", {"key 'model.ch_mult'", "nested", NULL}},
        {"model.ch_mult=[1,2", {"key 'model.ch_mult'", "missing ']'", NULL}},
        {"model.ch_mult=[]", {"key 'model.ch_mult'", "at least 1", NULL}},
        {"model.ch_mult=[1,,2]", {"key 'model.ch_mult'", "entry 2 is empty", NULL}},
        {"model.ch_mult=[1,2,3,4,5,6,7,8,9]", {"key 'model.ch_mult'", "at most 8", NULL}},
        {"model.ch_mult=[1,0]", {"key 'model.ch_mult'", "entry 2 (0) is out of range", NULL}},
        {"run.name=a\tb", {"key 'run.name'", "control character", NULL}},
        {"run.name=caf\xe9", {"key 'run.name'", "invalid UTF-8", NULL}},
        {"run.name=a\xe2\x80\xa8" "b", {"key 'run.name'", "control character", NULL}},
        {"run.name=a\xc2\x85" "b", {"key 'run.name'", "control character", NULL}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ddx_config before = c;
        st = ddx_config_set(&c, bad[i].set);
        expect_error(bad[i].set, st, DDX_E_INPUT, bad[i].subs[0], bad[i].subs[1], bad[i].subs[2], (const char *)NULL);
        CHECK(memcmp(&before, &c, sizeof c) == 0, "--set %s changed the config although it failed", bad[i].set);
    }
    char longname[DDX_CONFIG_STR_MAX + 16] = "run.name=";
    memset(longname + 9, 'x', DDX_CONFIG_STR_MAX);
    longname[9 + DDX_CONFIG_STR_MAX] = 0;
    st = ddx_config_set(&c, longname);
    expect_error("overlong run.name", st, DDX_E_INPUT, "key 'run.name'", "at most 1023", (const char *)NULL);
}

typedef struct bad_case {
    const char *file;
    int line;  // 0: the message carries no line
    const char *subs[3];
} bad_case;

static void test_bad_files(void) {
    static const bad_case cases[] = {
        {"unknown_key.yaml", 4, {"unknown key 'train.lrr'", "did you mean 'train.lr'?", NULL}},
        {"unknown_section.yaml", 3, {"unknown key 'trainer'", "did you mean 'train'?", NULL}},
        {"wrong_section_key.yaml", 3, {"unknown key 'model.lr'", "did you mean 'train.lr'?", NULL}},
        {"string_for_int.yaml", 2, {"key 'train.batch_size'", "expected an integer, got 'abc'", NULL}},
        {"list_for_scalar.yaml", 2, {"key 'train.lr'", "expected a number, got a list", NULL}},
        {"map_for_list.yaml", 2, {"key 'model.ch_mult'", "got a mapping", NULL}},
        {"scalar_for_list.yaml", 2, {"key 'model.ch_mult'", "expected a list of integers", "got '2'"}},
        {"non_integer.yaml", 2, {"key 'train.batch_size'", "expected an integer, got '12.5'", NULL}},
        {"int_overflow.yaml", 2, {"key 'train.total_steps'", "overflows", NULL}},
        {"int_range.yaml", 2, {"key 'model.ch'", "out of range [1, 4096]", NULL}},
        {"float_range.yaml", 2, {"key 'model.dropout'", "out of range [0, 1)", NULL}},
        {"float_nan.yaml", 2, {"key 'train.lr'", "finite", NULL}},
        {"float_bad.yaml", 2, {"key 'train.lr'", "expected a number, got 'abc'", NULL}},
        {"quoted_number.yaml", 2, {"key 'train.lr'", "quoted", NULL}},
        {"bad_enum.yaml", 3, {"key 'diffusion.beta_schedule'", "unknown value 'quadratic'", "allowed: linear, cosine, scaled_linear"}},
        {"bad_list_entry.yaml", 2, {"key 'model.ch_mult'", "entry 3", "got 'x'"}},
        {"list_too_long.yaml", 2, {"key 'model.ch_mult'", "at most 8", NULL}},
        {"list_empty.yaml", 2, {"key 'model.ch_mult'", "at least 1", NULL}},
        {"nested_list.yaml", 4, {"key 'model.ch_mult'", "entry 2", "got a list"}},
        {"duplicate_key.yaml", 4, {"key 'train.lr'", "duplicate", "line 2"}},
        {"duplicate_section.yaml", 5, {"duplicate section 'train'", "line 1", NULL}},
        {"syntax_error.yaml", 3, {"YAML syntax error", "did not find expected ',' or ']'", "ends before"}},
        {"syntax_indent.yaml", 2, {"key 'model.ch'", "spans lines 2-3", "check the indentation"}},
        {"tabs.yaml", 3, {"tab", "indent with spaces", NULL}},
        {"anchor.yaml", 2, {"anchors and aliases are not supported", NULL, NULL}},
        {"alias.yaml", 3, {"anchors and aliases are not supported", NULL, NULL}},
        {"tag.yaml", 2, {"tags", "not supported", NULL}},
        {"multi_doc.yaml", 3, {"second YAML document", NULL, NULL}},
        {"top_list.yaml", 1, {"top level must be a mapping", "got a list", NULL}},
        {"top_scalar.yaml", 1, {"top level must be a mapping", "got 'hello'", NULL}},
        {"section_scalar.yaml", 3, {"section 'train' must hold keys", "got '5'", NULL}},
        {"bool_yes.yaml", 2, {"key 'data.hflip'", "true or false", "got 'yes'"}},
        {"null_value.yaml", 2, {"key 'train.lr'", "no value", NULL}},
        {"ctrl_string.yaml", 2, {"key 'run.name'", "control character", NULL}},
        {"negative_seed.yaml", 2, {"key 'run.seed'", "out of range", NULL}},
        {"not_utf8.yaml", 2, {"not valid UTF-8", "0xE9", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *bc = &cases[i];
        char path[256], at[300];
        snprintf(path, sizeof path, BAD "%s", bc->file);
        if (bc->line)
            snprintf(at, sizeof at, "%s:%d: ", path, bc->line);
        else
            snprintf(at, sizeof at, "%s: ", path);
        ddx_config c, before;
        ddx_config_load(FASHION, &c);
        before = c;
        ddx_status st = ddx_config_load(path, &c);
        expect_error(bc->file, st, DDX_E_INPUT, at, bc->subs[0], bc->subs[1], bc->subs[2], (const char *)NULL);
        CHECK(memcmp(&before, &c, sizeof c) == 0, "%s: failed load changed the config", bc->file);
    }
    ddx_config c;
    ddx_status st = ddx_config_load(BAD "does_not_exist.yaml", &c);
    expect_error("missing file", st, DDX_E_IO, BAD "does_not_exist.yaml", "No such file", (const char *)NULL);
    st = ddx_config_load(BAD, &c);  // a folder, not a file
    CHECK(st == DDX_E_IO || st == DDX_E_INPUT, "loading a folder: %s", ddx_status_name(st));
}

static void test_validate(void) {
    ddx_config c;
    ddx_status st = ddx_config_resolve(&c, BAD "cross_attn.yaml", NULL, 0);
    expect_error("attn 20 unreachable", st, DDX_E_INPUT, BAD "cross_attn.yaml:3: ", "key 'model.attn_resolutions'",
                 "20 is not a feature-map size", "32, 16, 8, 4", (const char *)NULL);
    const char *set_size[] = {"model.image_size=64"};
    st = ddx_config_resolve(&c, CIFAR, set_size, 1);
    expect_error("image size mismatch", st, DDX_E_INPUT, CIFAR ":38: ", "key 'data.image_size'", "model.image_size 64",
                 (const char *)NULL);
    const char *set_both[] = {"model.image_size=64", "data.image_size=64"};
    st = ddx_config_resolve(&c, CIFAR, set_both, 2);
    CHECK(st == DDX_OK && c.model.image_size == 64, "resolve with two --set: %s", ddx_last_error());
    const char *set_groups[] = {"model.ch=100"};
    st = ddx_config_resolve(&c, NULL, set_groups, 1);
    expect_error("groups", st, DDX_E_INPUT, "key 'model.groups' (default)", "does not divide", (const char *)NULL);
    const char *set_ch[] = {"model.in_channels=1", "model.out_channels=1"};
    st = ddx_config_resolve(&c, NULL, set_ch, 2);
    expect_error("cifar channels", st, DDX_E_INPUT, "key 'model.out_channels' (from --set)", "CIFAR-10", (const char *)NULL);
    const char *set_levels[] = {"model.image_size=28", "data.image_size=28"};
    st = ddx_config_resolve(&c, NULL, set_levels, 2);
    expect_error("halving", st, DDX_E_INPUT, "key 'model.image_size'", "cannot be halved 3 times", (const char *)NULL);
    const char *set_betas[] = {"diffusion.beta_start=0.5"};
    st = ddx_config_resolve(&c, NULL, set_betas, 1);
    expect_error("betas", st, DDX_E_INPUT, "key 'diffusion.beta_start'", "below diffusion.beta_end", (const char *)NULL);
    const char *set_zsnr[] = {"diffusion.rescale_zero_terminal_snr=true"};
    st = ddx_config_resolve(&c, NULL, set_zsnr, 1);
    expect_error("zsnr eps", st, DDX_E_INPUT, "key 'diffusion.rescale_zero_terminal_snr' (from --set)", "parameterization is eps",
                 "set diffusion.parameterization: v", (const char *)NULL);
    const char *set_zsnr_v[] = {"diffusion.rescale_zero_terminal_snr=true", "diffusion.parameterization=v",
                                "diffusion.beta_schedule=scaled_linear", "diffusion.beta_start=0.00085",
                                "diffusion.beta_end=0.012", "train.loss_weight=min_snr", "train.min_snr_gamma=5"};
    st = ddx_config_resolve(&c, NULL, set_zsnr_v, 7);
    CHECK(st == DDX_OK && c.diffusion.rescale_zero_terminal_snr && c.diffusion.beta_schedule == DDX_BETA_SCHEDULE_SCALED_LINEAR &&
              c.train.loss_weight == DDX_LOSS_WEIGHT_MIN_SNR && c.train.min_snr_gamma == 5,
          "zsnr + v + scaled_linear + min_snr: %s", ddx_last_error());
    const char *set_sl[] = {"diffusion.beta_schedule=scaled_linear", "diffusion.beta_start=0.02", "diffusion.beta_end=0.01"};
    st = ddx_config_resolve(&c, NULL, set_sl, 3);
    expect_error("scaled_linear betas", st, DDX_E_INPUT, "key 'diffusion.beta_start'", "below diffusion.beta_end",
                 (const char *)NULL);
    const char *set_steps[] = {"sample.steps=2000"};
    st = ddx_config_resolve(&c, NULL, set_steps, 1);
    expect_error("steps", st, DDX_E_INPUT, "key 'sample.steps'", "exceeds diffusion.timesteps", (const char *)NULL);
    const char *set_folder[] = {"data.dataset=image_folder"};
    st = ddx_config_resolve(&c, NULL, set_folder, 1);
    expect_error("image_folder path", st, DDX_E_INPUT, "key 'data.path'", "needs data.path", (const char *)NULL);
    const char *set_name[] = {"run.name=a/b"};
    st = ddx_config_resolve(&c, NULL, set_name, 1);
    expect_error("run name", st, DDX_E_INPUT, "key 'run.name'", "not a folder name", (const char *)NULL);
    const char *set_bad[] = {"train.lr=x"};
    st = ddx_config_resolve(&c, CIFAR, set_bad, 1);
    expect_error("resolve stops at a bad --set", st, DDX_E_INPUT, "--set train.lr=x", (const char *)NULL);
}

// Emits to a string (caller frees).
static char *emit_str(const ddx_config *c) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;
    ddx_status st = ddx_config_emit(c, f);
    fclose(f);
    if (st != DDX_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {  // splitmix64
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }  // [0, 1)

static void test_round_trip(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    ddx_config a, b;
    ddx_status st = ddx_config_load(FASHION, &a);
    CHECK(st == DDX_OK, "load fashion: %s", ddx_last_error());
    const char *sets[] = {
        "run.name=it's \"quoted\" \\ back\xc3\xa9 ",  // quotes, backslash, UTF-8, trailing space
        "run.out_dir=: # not a comment",
        "data.path=- [x]",
        "run.seed=12345678901234567",
        "train.lr=0.30000000000000004",
        "model.norm_eps=4.9e-300",
        "model.attn_resolutions=[]",
        "sample.spacing=quadratic",
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        st = ddx_config_set(&a, sets[i]);
        CHECK(st == DDX_OK, "--set %s: %s", sets[i], ddx_last_error());
    }
    st = ddx_config_save(&a, path);
    CHECK(st == DDX_OK, "save %s: %s", path, ddx_last_error());
    st = ddx_config_load(path, &b);
    CHECK(st == DDX_OK, "reload %s: %s", path, ddx_last_error());
    CHECK(st != DDX_OK || ddx_config_diff(&a, &b) == NULL, "round trip differs at %s", diff_name(ddx_config_diff(&a, &b)));
    CHECK(st != DDX_OK || b.origin.line[0] > 0, "reloaded keys carry file lines");
    char *ta = emit_str(&a), *tb = emit_str(&b);
    CHECK(ta && tb && !strcmp(ta, tb), "emit text differs after a round trip");
    CHECK(ta && strstr(ta, "  lr: 0.30000000000000004") && strstr(ta, "  ch_mult: [1, 2, 2]") && strstr(ta, "hflip: false"),
          "emitted text:\n%s", ta ? ta : "(null)");
    free(ta);
    free(tb);
    // Save replaced the file atomically: no temp file left behind.
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0, "temp file %s left behind", tmp);

    // Random doubles survive emit -> load bit for bit (shortest round-trip formatting).
    int bad = 0;
    for (int i = 0; i < 300 && !bad; i++) {
        a.train.lr = 10.0 * (1.0 - rng_unit());            // (0, 10]
        a.train.beta2 = rng_unit();                         // [0, 1)
        a.model.norm_eps = ldexp(1.0 - rng_unit(), -(int)(rng_next() % 900));  // tiny to 1
        if (a.model.norm_eps >= 1.0) a.model.norm_eps = 0.5;
        a.train.weight_decay = (double)(rng_next() % 11);    // integral: emitted as "N.0"
        a.train.total_steps = 1 + (int64_t)(rng_next() % 1000000000000ull);
        a.run.seed = rng_next();
        st = ddx_config_save(&a, path);
        if (st == DDX_OK) st = ddx_config_load(path, &b);
        if (st != DDX_OK || ddx_config_diff(&a, &b) != NULL) {
            bad = 1;
            CHECK(0, "random round trip %d: %s / differs at %s (lr %.17g)", i, st ? ddx_last_error() : "ok",
                  diff_name(ddx_config_diff(&a, &b)), a.train.lr);
        }
    }
    CHECK(!bad, "random round trips");

    // Defaults round trip too (every key present in the file).
    ddx_config_defaults(&a);
    st = ddx_config_save(&a, path);
    if (st == DDX_OK) st = ddx_config_load(path, &b);
    CHECK(st == DDX_OK && ddx_config_diff(&a, &b) == NULL, "defaults round trip: %s", ddx_last_error());
    unlink(path);

    // The diff names the key that differs.
    b = a;
    b.sample.eta = 0.5;
    CHECK(ddx_config_diff(&a, &b) && !strcmp(ddx_config_diff(&a, &b), "sample.eta"), "diff names sample.eta");
    b = a;
    b.model.ch_mult.v[5] = 7;  // past n: not part of the value
    CHECK(ddx_config_diff(&a, &b) == NULL, "diff ignores list slots past n");

    snprintf(path, sizeof path, "%s/no/such/folder/config.yaml", dir);
    st = ddx_config_save(&a, path);
    expect_error("save into a missing folder", st, DDX_E_INPUT, path, (const char *)NULL);

    // A FIFO, a symlink or a folder where config.yaml goes: refused and left as it is.
    snprintf(path, sizeof path, "%s/fifo.yaml", dir);
    struct stat sb;
    CHECK(mkfifo(path, 0600) == 0, "mkfifo %s", path);
    st = ddx_config_save(&a, path);
    expect_error("save onto a FIFO", st, DDX_E_INPUT, path, "FIFO", (const char *)NULL);
    CHECK(lstat(path, &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO was replaced");
    unlink(path);
    char target[600];
    snprintf(target, sizeof target, "%s/target.yaml", dir);
    snprintf(path, sizeof path, "%s/link.yaml", dir);
    CHECK(symlink(target, path) == 0, "symlink %s", path);
    st = ddx_config_save(&a, path);
    expect_error("save onto a symlink", st, DDX_E_INPUT, path, "symbolic link", (const char *)NULL);
    CHECK(lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode) && access(target, F_OK) != 0, "the symlink was followed or replaced");
    unlink(path);

    // A write that fails part way (EFBIG from the file-size limit, as ENOSPC would) keeps the
    // previous config and leaves no temp file.
    snprintf(path, sizeof path, "%s/keep.yaml", dir);
    ddx_config_defaults(&a);
    st = ddx_config_save(&a, path);
    CHECK(st == DDX_OK, "save %s: %s", path, ddx_last_error());
    struct stat before;
    CHECK(stat(path, &before) == 0, "stat %s", path);
    struct rlimit old_lim;
    CHECK(fsize_limit(200, &old_lim), "setrlimit");
    a.train.lr = 0.5;
    st = ddx_config_save(&a, path);
    fsize_unlimit(&old_lim);
    expect_error("save past the size limit", st, DDX_E_IO, path, (const char *)NULL);
    ddx_config b2;
    CHECK(ddx_config_load(path, &b2) == DDX_OK && b2.train.lr != 0.5 && stat(path, &sb) == 0 && sb.st_size == before.st_size,
          "the failed save changed %s", path);
    DIR *dd = opendir(dir);
    int temps = 0;
    for (struct dirent *e; dd && (e = readdir(dd));) temps += strstr(e->d_name, ".tmp.") != NULL;
    if (dd) closedir(dd);
    CHECK(temps == 0, "a failed save left %d temp files", temps);
    unlink(path);

    a.diffusion.variance = (ddx_variance)7;
    char *t = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&t, &n);
    st = f ? ddx_config_emit(&a, f) : DDX_E_IO;
    if (f) fclose(f);
    free(t);
    expect_error("emit of a corrupt enum", st, DDX_E_INPUT, "diffusion.variance", (const char *)NULL);
}

static void test_describe(void) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) {
        CHECK(0, "open_memstream");
        return;
    }
    ddx_config_describe(f);
    fclose(f);
    CHECK(buf && strstr(buf, "train.lr") && strstr(buf, "(0, 10]") && strstr(buf, "{linear, cosine, scaled_linear}"),
          "describe output:\n%s", buf ? buf : "");
    free(buf);
}

// Only regular files are read as configs: a FIFO would block the open (waiting for a writer)
// and then the read. The alarm turns a hang into a failed test rather than a stuck suite.
static void test_not_regular(const char *dir) {
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/config.fifo", dir);
    if (mkfifo(fifo, 0600) != 0) {
        CHECK(0, "mkfifo %s", fifo);
        return;
    }
    ddx_config c;
    alarm(10);
    ddx_status st = ddx_config_resolve(&c, fifo, NULL, 0);
    alarm(0);
    expect_error("config is a FIFO", st, DDX_E_INPUT, fifo, "not a regular file", (const char *)NULL);
    unlink(fifo);
    st = ddx_config_resolve(&c, dir, NULL, 0);
    expect_error("config is a folder", st, DDX_E_INPUT, dir, "not a regular file", (const char *)NULL);
}

// A value longer than the limit is refused by key, never cut: cutting 1999 zeros and a 7 to
// the first 1039 bytes used to give the valid seed 0.
static void test_long_values(void) {
    enum { DIGITS = 2000, STR = 5000 };
    static char set[STR + 64], yaml[STR + 64];
    ddx_config c;
    ddx_config_defaults(&c);

    int o = snprintf(set, sizeof set, "run.seed=");
    memset(set + o, '0', DIGITS - 1);
    set[o + DIGITS - 1] = '7';
    set[o + DIGITS] = 0;
    ddx_status st = ddx_config_set(&c, set);
    expect_error("--set 2000-digit seed", st, DDX_E_INPUT, "run.seed", "at most 1023", (const char *)NULL);
    CHECK(c.run.seed == 0, "refused seed left the config alone: %llu", (unsigned long long)c.run.seed);

    o = snprintf(yaml, sizeof yaml, "run:\n  seed: ");
    memset(yaml + o, '0', DIGITS - 1);
    yaml[o + DIGITS - 1] = '7';
    yaml[o + DIGITS] = '\n';
    st = ddx_config_load_string(yaml, (size_t)o + DIGITS + 1, "long_seed.yaml", &c);
    expect_error("YAML 2000-digit seed", st, DDX_E_INPUT, "long_seed.yaml:2", "run.seed", "at most 1023", (const char *)NULL);

    o = snprintf(set, sizeof set, "run.name=");
    memset(set + o, 'a', STR);
    set[o + STR] = 0;
    st = ddx_config_set(&c, set);
    expect_error("--set 5000-byte string", st, DDX_E_INPUT, "run.name", "at most 1023", (const char *)NULL);
    CHECK(!strcmp(c.run.name, "run"), "refused name left the config alone: %.40s", c.run.name);

    o = snprintf(yaml, sizeof yaml, "run:\n  name: ");
    memset(yaml + o, 'a', STR);
    yaml[o + STR] = '\n';
    st = ddx_config_load_string(yaml, (size_t)o + STR + 1, "long_name.yaml", &c);
    expect_error("YAML 5000-byte string", st, DDX_E_INPUT, "long_name.yaml:2", "run.name", "at most 1023", (const char *)NULL);

    o = snprintf(set, sizeof set, "model.ch_mult=[1, 2, ");
    memset(set + o, '0', DIGITS);
    snprintf(set + o + DIGITS, sizeof set - (size_t)(o + DIGITS), "2]");
    st = ddx_config_set(&c, set);
    expect_error("--set 2000-byte list", st, DDX_E_INPUT, "model.ch_mult", "at most 1023", (const char *)NULL);

    // At the limit a value still loads: 1022 zeros and a 7 is seed 7.
    o = snprintf(set, sizeof set, "run.seed=");
    memset(set + o, '0', 1022);
    set[o + 1022] = '7';
    set[o + 1023] = 0;
    st = ddx_config_set(&c, set);
    CHECK(st == DDX_OK && c.run.seed == 7, "1023-byte seed: %s, seed %llu", ddx_status_name(st), (unsigned long long)c.run.seed);
}

int main(void) {
    char dir[] = "/tmp/ddx_test_config.XXXXXX";
    if (!mkdtemp(dir)) {
        printf("config: cannot create a temp folder\n");
        return 1;
    }
    test_defaults();
    test_examples();
    test_set();
    test_bad_files();
    test_validate();
    test_round_trip(dir);
    test_describe();
    test_not_regular(dir);
    test_long_values();
    rmdir(dir);
    printf("config: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
