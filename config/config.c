// YAML configs into ddx_config, driven by one schema table (KEYS below).
//
// Loading reads the whole file first (configs are small) so that problems libyaml reports by
// byte offset, non-UTF-8 bytes and tab indentation can all be named by line. Values are
// converted into a scratch copy of the struct and copied out only on success, so a failed load
// or --set never leaves a half-applied config behind.
#include "config/config.h"
#include "runtime/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

// ---------------------------------------------------------------------------------------------
// Schema

typedef enum key_type { T_STR, T_INT, T_I64, T_U64, T_F64, T_BOOL, T_ENUM, T_LIST } key_type;

enum { OPEN_LO = 1, OPEN_HI = 2 };  // range bounds that are excluded: (lo, hi], [lo, hi), ...

typedef struct cfg_key {
    const char *path;            // "train.lr"
    key_type type;
    size_t off, size;            // field offset and size in ddx_config
    const char *def;             // default, written as a --set value would be
    double lo, hi;               // inclusive range (of each entry, for lists)
    int open;                    // OPEN_LO / OPEN_HI make a bound exclusive
    int min_len;                 // lists: fewest entries
    const char *const *names;    // enums: names in enum order, NULL-terminated
    const char *doc;
} cfg_key;

// The _Generic selections make a table line fail to compile when its field has another type.
#define FIELD_(f) (((ddx_config *)0)->f)
#define OFF_(f, T) _Generic(FIELD_(f), T: offsetof(ddx_config, f))
#define K_STR(p, f, d, doc) {p, T_STR, OFF_(f, char *), sizeof(FIELD_(f)), d, 0, 0, 0, 0, NULL, doc}
#define K_INT(p, f, d, lo, hi, doc) {p, T_INT, OFF_(f, int), sizeof(int), d, lo, hi, 0, 0, NULL, doc}
#define K_I64(p, f, d, lo, hi, doc) {p, T_I64, OFF_(f, int64_t), sizeof(int64_t), d, lo, hi, 0, 0, NULL, doc}
#define K_U64(p, f, d, doc) {p, T_U64, OFF_(f, uint64_t), sizeof(uint64_t), d, 0, 0, 0, 0, NULL, doc}
#define K_F64(p, f, d, lo, hi, open, doc) {p, T_F64, OFF_(f, double), sizeof(double), d, lo, hi, open, 0, NULL, doc}
#define K_BOOL(p, f, d, doc) {p, T_BOOL, OFF_(f, bool), sizeof(bool), d, 0, 0, 0, 0, NULL, doc}
#define K_ENUM(p, f, T, names, d, doc) {p, T_ENUM, OFF_(f, T), sizeof(T), d, 0, 0, 0, 0, names, doc}
#define K_LIST(p, f, d, lo, hi, min_len, doc) \
    {p, T_LIST, OFF_(f, ddx_int_list), sizeof(ddx_int_list), d, lo, hi, 0, min_len, NULL, doc}

// Enums are stored through an int, so every enum type must be int-sized.
_Static_assert(sizeof(ddx_run_device) == sizeof(int) && sizeof(ddx_precision) == sizeof(int) &&
               sizeof(ddx_model_type) == sizeof(int) && sizeof(ddx_beta_schedule) == sizeof(int) &&
               sizeof(ddx_variance) == sizeof(int) && sizeof(ddx_parameterization) == sizeof(int) &&
               sizeof(ddx_dataset_kind) == sizeof(int) && sizeof(ddx_sampler) == sizeof(int) &&
               sizeof(ddx_spacing) == sizeof(int) && sizeof(ddx_cond) == sizeof(int) &&
               sizeof(ddx_loss_weight) == sizeof(int), "enum fields must be int-sized");

static const char *const N_DEVICE[] = {"auto", "cpu", "cuda", NULL};
static const char *const N_PRECISION[] = {"fp32", "tf32", "bf16", NULL};
static const char *const N_MODEL[] = {"unet_plain", "unet_ddpm", NULL};
static const char *const N_SCHEDULE[] = {"linear", "cosine", "scaled_linear", NULL};
static const char *const N_VARIANCE[] = {"fixedlarge", "fixedsmall", NULL};
static const char *const N_PARAM[] = {"eps", "x0", "v", NULL};
static const char *const N_DATASET[] = {"fashion_mnist", "cifar10", "image_folder", NULL};
static const char *const N_SAMPLER[] = {"ddpm", "ddim", "dpmpp2m", "dpmpp3m", "heun", "euler_a", NULL};
const char *ddx_sampler_name(ddx_sampler s) {
    return (unsigned)s < sizeof N_SAMPLER / sizeof N_SAMPLER[0] - 1 ? N_SAMPLER[s] : "?";
}

ddx_status ddx_sampler_parse(const char *name, const char *what, ddx_sampler *out) {
    for (int i = 0; N_SAMPLER[i]; i++)
        if (name && !strcmp(name, N_SAMPLER[i])) {
            *out = (ddx_sampler)i;
            return DDX_OK;
        }
    return ddx_errorf(DDX_E_INPUT, "%s: unknown sampler '%s'; one of ddpm, ddim, dpmpp2m, dpmpp3m, heun, euler_a", what,
                      name ? name : "");
}
static const char *const N_SPACING[] = {"uniform", "quadratic", "leading", "trailing", "karras", NULL};
static const char *const N_COND[] = {"none", "lowres", NULL};
static const char *const N_LOSS_WEIGHT[] = {"uniform", "min_snr", NULL};

#define BIG 1e12  // step counts: far beyond any run, far below int64 overflow

// Defaults are Ho et al. 2020 (DDPM) CIFAR-10 settings. Keys of one section stay together:
// the emitter starts a new section whenever the prefix changes.
static const cfg_key KEYS[] = {
    K_STR("run.name", run.name, "run", "run folder name under out_dir"),
    K_STR("run.out_dir", run.out_dir, "outputs", "folder that holds run folders"),
    K_U64("run.seed", run.seed, "0", "seed of every random stream (noise, init, data order)"),
    K_ENUM("run.device", run.device, ddx_run_device, N_DEVICE, "auto", "auto = cuda when a GPU is present"),
    K_ENUM("run.precision", run.precision, ddx_precision, N_PRECISION, "fp32", "GPU compute precision"),
    K_F64("run.comm_timeout_s", run.comm_timeout_s, "300", 0, 1e6, OPEN_LO,
          "multi-rank runs: seconds any collective may take before every rank stops naming the missing rank(s); "
          "must exceed a sample grid's time (rank 0 samples while the others wait)"),
    K_F64("run.comm_bucket_mb", run.comm_bucket_mb, "25", 0.01, 4096, 0,
          "multi-rank runs: MiB per gradient all-reduce bucket (started during backward)"),

    K_ENUM("model.type", model.type, ddx_model_type, N_MODEL, "unet_ddpm", "network architecture"),
    K_INT("model.in_channels", model.in_channels, "3", 1, 64, "image channels in"),
    K_INT("model.out_channels", model.out_channels, "3", 1, 64, "channels predicted"),
    K_INT("model.image_size", model.image_size, "32", 4, 4096, "square image side the U-Net is built for"),
    K_INT("model.ch", model.ch, "128", 1, 4096, "base channel count"),
    K_LIST("model.ch_mult", model.ch_mult, "[1, 2, 2, 2]", 1, 64, 1, "channel multiplier per level"),
    K_INT("model.num_res_blocks", model.num_res_blocks, "2", 1, 64, "ResBlocks per level"),
    K_LIST("model.attn_resolutions", model.attn_resolutions, "[16]", 1, 4096, 0, "feature sizes with self-attention"),
    K_F64("model.dropout", model.dropout, "0.1", 0, 1, OPEN_HI, "dropout in ResBlocks"),
    K_INT("model.num_classes", model.num_classes, "0", 0, 1000000, "class count; 0 = unconditional"),
    K_INT("model.groups", model.groups, "32", 1, 1024, "GroupNorm groups"),
    K_F64("model.norm_eps", model.norm_eps, "1e-6", 0, 1, OPEN_LO | OPEN_HI, "GroupNorm epsilon"),
    K_LIST("model.block_out_channels", model.block_out_channels, "[]", 1, 65536, 0,
           "unet_ddpm widths per level; [] = ch * ch_mult (set: replaces ch and ch_mult, time embedding block_out_channels[0] wide)"),
    K_INT("model.attention_head_dim", model.attention_head_dim, "0", 0, 65536, "unet_ddpm channels per attention head; 0 = one head"),
    K_BOOL("model.flip_sin_to_cos", model.flip_sin_to_cos, "false", "unet_ddpm timestep embedding order: false [sin, cos], true [cos, sin]"),
    K_INT("model.freq_shift", model.freq_shift, "1", 0, 65536, "unet_ddpm timestep embedding frequency shift (diffusers freq_shift)"),
    K_INT("model.downsample_padding", model.downsample_padding, "0", 0, 1, "unet_ddpm downsampling: 0 pads right/bottom, 1 pads every side"),
    K_ENUM("model.cond", model.cond, ddx_cond, N_COND, "none",
           "input besides x_t: none, or lowres (super-resolution: x0 area-downsampled by data.sr_factor, bicubic-upsampled back, "
           "clamped to [-1, 1], concatenated on the channel axis; in_channels = 2 * out_channels)"),

    K_INT("diffusion.timesteps", diffusion.timesteps, "1000", 1, 100000, "diffusion steps T"),
    K_ENUM("diffusion.beta_schedule", diffusion.beta_schedule, ddx_beta_schedule, N_SCHEDULE, "linear",
           "noise schedule: linear (Ho et al.), cosine (Nichol & Dhariwal, diffusers squaredcos_cap_v2) or scaled_linear "
           "(linspace(sqrt(beta_start), sqrt(beta_end), T)^2, Stable Diffusion's)"),
    K_F64("diffusion.beta_start", diffusion.beta_start, "1e-4", 0, 1, OPEN_LO | OPEN_HI, "beta_1 (linear, scaled_linear)"),
    K_F64("diffusion.beta_end", diffusion.beta_end, "0.02", 0, 1, OPEN_LO | OPEN_HI, "beta_T (linear, scaled_linear)"),
    K_BOOL("diffusion.rescale_zero_terminal_snr", diffusion.rescale_zero_terminal_snr, "false",
           "rescale the schedule so that abar at the last timestep is exactly 0 (Lin et al. 2023, diffusers "
           "rescale_zero_terminal_snr); needs parameterization v or x0"),
    K_ENUM("diffusion.variance", diffusion.variance, ddx_variance, N_VARIANCE, "fixedlarge", "reverse-process variance"),
    K_ENUM("diffusion.parameterization", diffusion.parameterization, ddx_parameterization, N_PARAM, "eps",
           "what the network predicts: eps (the noise), x0 (the clean image) or v = sqrt(abar) eps - sqrt(1 - abar) x0"),

    K_ENUM("data.dataset", data.dataset, ddx_dataset_kind, N_DATASET, "cifar10", "training images"),
    K_STR("data.path", data.path, "", "data location; \"\" = the data set's standard place"),
    K_INT("data.image_size", data.image_size, "32", 4, 4096, "image side fed to the model"),
    K_BOOL("data.hflip", data.hflip, "true", "random horizontal flips"),
    K_INT("data.num_workers", data.num_workers, "2", 0, 256, "loader threads"),
    K_I64("data.max_image_pixels", data.max_image_pixels, "16777216", 1, 4294836225LL,
          "image_folder: largest image (width x height) decoded; larger files are refused before decoding"),
    K_INT("data.sr_factor", data.sr_factor, "0", 0, 8,
          "model.cond lowres: 2, 4 or 8, the low-res side is image_size / sr_factor (box average of factor x factor pixels); "
          "0 = no super-resolution"),

    K_INT("train.batch_size", train.batch_size, "128", 1, 1 << 20, "global batch over all ranks"),
    K_I64("train.total_steps", train.total_steps, "800000", 1, BIG, "optimizer steps"),
    K_F64("train.lr", train.lr, "2e-4", 0, 10, OPEN_LO, "peak learning rate (AdamW)"),
    K_F64("train.beta1", train.beta1, "0.9", 0, 1, OPEN_HI, "AdamW beta1"),
    K_F64("train.beta2", train.beta2, "0.999", 0, 1, OPEN_HI, "AdamW beta2"),
    K_F64("train.weight_decay", train.weight_decay, "0", 0, 10, 0, "AdamW decoupled weight decay"),
    K_I64("train.warmup_steps", train.warmup_steps, "5000", 0, BIG, "linear lr warmup"),
    K_F64("train.grad_clip", train.grad_clip, "1.0", 0, 1e6, 0, "max global grad norm; 0 = off"),
    K_F64("train.ema_decay", train.ema_decay, "0.9999", 0, 1, OPEN_HI, "EMA of weights; 0 = off"),
    K_BOOL("train.ema_warmup", train.ema_warmup, "false", "EMA decay min(ema_decay, (1+step)/(10+step)): lets short runs use EMA"),
    K_I64("train.log_every", train.log_every, "100", 1, BIG, "steps between log lines"),
    K_I64("train.sample_every", train.sample_every, "10000", 0, BIG, "steps between sample grids; 0 = never"),
    K_I64("train.checkpoint_every", train.checkpoint_every, "10000", 0, BIG, "steps between checkpoints; 0 = end only"),
    K_INT("train.keep_checkpoints", train.keep_checkpoints, "2", 0, 1000,
          "checkpoints/step_N.safetensors kept besides last.safetensors (oldest removed); 0 = last only"),
    K_ENUM("train.loss_weight", train.loss_weight, ddx_loss_weight, N_LOSS_WEIGHT, "uniform",
           "per-sample loss weight: uniform, or min_snr (Hang et al. 2023, as diffusers' training scripts: "
           "min(SNR, gamma) / SNR for eps, / (SNR + 1) for v, min(SNR, gamma) for x0)"),
    K_F64("train.min_snr_gamma", train.min_snr_gamma, "5", 0, 1e6, OPEN_LO, "gamma of train.loss_weight min_snr"),
    K_F64("train.max_loss_ratio", train.max_loss_ratio, "100", 0, 1e30, 0,
          "stop when a log interval's mean loss exceeds this x the median of the last 10; 0 = off (non-finite always stops)"),
    K_F64("train.label_dropout", train.label_dropout, "0", 0, 1, OPEN_HI,
          "class-conditional models: chance that an image's label is replaced by the null class (p_uncond of "
          "classifier-free guidance, e.g. 0.1); 0 = never"),

    K_ENUM("sample.sampler", sample.sampler, ddx_sampler, N_SAMPLER, "ddpm",
           "reverse process: ddpm (all T steps), ddim, dpmpp2m / dpmpp3m (DPM-Solver++ 2M / 3M multistep), heun (Heun 2nd "
           "order, EDM; 2 model calls per step but the last), euler_a (Euler ancestral); the last four match diffusers' "
           "schedulers of the same name"),
    K_INT("sample.steps", sample.steps, "1000", 1, 100000, "sampling steps (<= diffusion.timesteps)"),
    K_F64("sample.eta", sample.eta, "0", 0, 1, 0, "DDIM noise scale; 0 = deterministic"),
    K_INT("sample.n", sample.n, "64", 1, 1000000, "images to sample"),
    K_ENUM("sample.spacing", sample.spacing, ddx_spacing, N_SPACING, "uniform",
           "timestep spacing for strided sampling: uniform = leading (k * (T // steps)), quadratic (DDIM paper), trailing "
           "(round(T - k T / steps) - 1, reaches t = T - 1), karras (Karras sigmas, rho 7, between sigma(0) and "
           "sigma(T-1); heun and euler_a evaluate the model at fractional t, the others at t rounded)"),
    K_F64("sample.guidance", sample.guidance, "1", 0, 1000, 0,
          "classifier-free guidance scale w of class-conditional models: eps_u + w (eps_c - eps_u); 1 = none, 0 = "
          "unconditional"),

    K_I64("eval.fid_every", eval.fid_every, "0", 0, BIG,
          "ddx-train: steps between FID/KID evaluations logged to log.jsonl (and one at the end); 0 = never"),
    K_I64("eval.fid_samples", eval.fid_samples, "2048", 2, 10000000,
          "images sampled (sample.sampler/steps/eta, EMA weights) for each training FID"),
    K_STR("eval.ref", eval.ref, "", "reference statistics for the training FID: a .npz from ddx-eval stats, or an image folder"),
    K_STR("eval.inception", eval.inception, "",
          "FID Inception weights; \"\" = $DDX_INCEPTION, else ~/.cache/ddx/ (python3 tools/fetch_inception.py fetches them)"),
};

#define N_KEYS ((int)(sizeof(KEYS) / sizeof(KEYS[0])))
_Static_assert(sizeof(KEYS) / sizeof(KEYS[0]) <= DDX_CONFIG_MAX_KEYS, "raise DDX_CONFIG_MAX_KEYS");

#define MAX_FILE_BYTES (1 << 20)

static int find_key(const char *path) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].path, path) == 0) return i;
    return -1;
}

// A path is a section when some key lies below it ("train" for "train.lr").
static bool is_section(const char *path) {
    size_t n = strlen(path);
    if (n == 0) return false;
    for (int i = 0; i < N_KEYS; i++)
        if (strncmp(KEYS[i].path, path, n) == 0 && KEYS[i].path[n] == '.') return true;
    return false;
}

static const char *leaf_of(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

// ---------------------------------------------------------------------------------------------
// Messages

// Where a value came from: a file line, a --set, or the built-in defaults (file == set == NULL).
typedef struct where {
    const char *file;
    int line;  // 1-based; 0 = no line
    const char *set;
} where;

static ddx_status vfail(const where *w, const char *key, const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char pre[1400] = "";
    if (w && w->file && w->line > 0)
        snprintf(pre, sizeof pre, "%s:%d: ", w->file, w->line);
    else if (w && w->file)
        snprintf(pre, sizeof pre, "%s: ", w->file);
    else if (w && w->set)
        snprintf(pre, sizeof pre, "--set %.300s: ", w->set);
    else
        snprintf(pre, sizeof pre, "built-in default: ");
    if (key) return ddx_errorf(DDX_E_INPUT, "%skey '%s': %s", pre, key, msg);
    return ddx_errorf(DDX_E_INPUT, "%s%s", pre, msg);
}

static ddx_status fail(const where *w, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ddx_status fail(const where *w, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ddx_status st = vfail(w, key, fmt, ap);
    va_end(ap);
    return st;
}

// The offending text, shortened and with unprintable bytes escaped, for "got '...'".
static const char *show(const char *s, size_t len, char *buf, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 60) {
            o += (size_t)snprintf(buf + o, n - o, "...");
            break;
        }
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(buf + o, n - o, "\\x%02X", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = 0;
    return buf;
}

static void range_str(const cfg_key *k, char *buf, size_t n) {
    snprintf(buf, n, "%c%.15g, %.15g%c", (k->open & OPEN_LO) ? '(' : '[', k->lo, k->hi,
             (k->open & OPEN_HI) ? ')' : ']');
}

static bool in_range(const cfg_key *k, double v) {
    if ((k->open & OPEN_LO) ? !(v > k->lo) : !(v >= k->lo)) return false;
    if ((k->open & OPEN_HI) ? !(v < k->hi) : !(v <= k->hi)) return false;
    return true;
}

static void names_str(const char *const *names, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; names[i] && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", names[i]);
}

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

// "; did you mean 'train.lr'?" or the keys of the section, or the sections: whatever helps.
static void suggest(const char *path, char *buf, size_t n) {
    buf[0] = 0;
    const char *leaf = leaf_of(path);
    for (int i = 0; i < N_KEYS; i++)  // the right key in the wrong section
        if (leaf != path && strcmp(leaf_of(KEYS[i].path), leaf) == 0) {
            snprintf(buf, n, "; did you mean '%s'?", KEYS[i].path);
            return;
        }
    size_t best = SIZE_MAX;
    char best_path[128] = "";
    for (int i = 0; i < N_KEYS; i++) {
        // Candidates: every key, and every section (its path up to the first dot).
        const char *dot = strchr(KEYS[i].path, '.');
        char section[128];
        snprintf(section, sizeof section, "%.*s", (int)(dot ? dot - KEYS[i].path : 0), KEYS[i].path);
        size_t d = edit_distance(path, KEYS[i].path);
        if (d < best) best = d, snprintf(best_path, sizeof best_path, "%s", KEYS[i].path);
        d = edit_distance(path, section);
        if (d < best) best = d, snprintf(best_path, sizeof best_path, "%s", section);
    }
    size_t len = strlen(path);
    if (best_path[0] && (best <= 2 || best * 3 <= len)) {
        snprintf(buf, n, "; did you mean '%s'?", best_path);
        return;
    }
    char section[128];
    snprintf(section, sizeof section, "%.*s", (int)(leaf - path - (leaf != path)), path);
    size_t o = 0;
    if (leaf != path && is_section(section)) {
        o += (size_t)snprintf(buf, n, "; keys of '%s' are:", section);
        size_t sl = strlen(section);
        for (int i = 0; i < N_KEYS && o < n; i++)
            if (strncmp(KEYS[i].path, section, sl) == 0 && KEYS[i].path[sl] == '.')
                o += (size_t)snprintf(buf + o, n - o, " %s", KEYS[i].path + sl + 1);
        return;
    }
    o += (size_t)snprintf(buf, n, "; sections are:");
    for (int i = 0; i < N_KEYS && o < n; i++) {
        const char *dot = strchr(KEYS[i].path, '.');
        int sl = (int)(dot - KEYS[i].path);
        if (i == 0 || strncmp(KEYS[i - 1].path, KEYS[i].path, (size_t)sl + 1) != 0)
            o += (size_t)snprintf(buf + o, n - o, " %.*s", sl, KEYS[i].path);
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars

// YAML 1.2 core-schema float syntax without .inf/.nan: 1, -2.5, .5, 5., 1e-4, 2.0E+3.
static bool float_syntax(const char *s) {
    if (*s == '+' || *s == '-') s++;
    int digits = 0;
    while (*s >= '0' && *s <= '9') s++, digits++;
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') s++, digits++;
    }
    if (!digits) return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!(*s >= '0' && *s <= '9')) return false;
        while (*s >= '0' && *s <= '9') s++;
    }
    return *s == 0;
}

static bool int_syntax(const char *s, bool allow_minus) {
    if (*s == '+' || (allow_minus && *s == '-')) s++;
    if (!*s) return false;
    for (; *s; s++)
        if (!(*s >= '0' && *s <= '9')) return false;
    return true;
}

// The library never calls setlocale, so strtod's decimal point is '.'.
static ddx_status to_double(const cfg_key *k, const char *s, const char *shown, const where *w, double *out) {
    if (!float_syntax(s)) {
        if (strstr(s, "inf") || strstr(s, "nan") || strstr(s, "Inf") || strstr(s, "NaN") || strstr(s, "NAN"))
            return fail(w, k->path, "expected a finite number, got '%s'", shown);
        return fail(w, k->path, "expected a number, got '%s'", shown);
    }
    errno = 0;
    double v = strtod(s, NULL);
    if (!isfinite(v)) return fail(w, k->path, "number '%s' is too large for a double", shown);
    *out = v;
    return DDX_OK;
}

// Integers: plain decimal, or any float spelling of an exact integer (8e5 = 800000).
static ddx_status to_int64(const cfg_key *k, const char *s, const char *shown, const where *w,
                           const char *what, int64_t *out) {
    if (int_syntax(s, true)) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno == ERANGE) return fail(w, k->path, "%s%s'%s' overflows a 64-bit integer", what, *what ? " " : "", shown);
        *out = v;
        return DDX_OK;
    }
    if (!float_syntax(s)) return fail(w, k->path, "expected an integer%s%s, got '%s'", *what ? " for " : "", what, shown);
    double d = strtod(s, NULL);
    if (!isfinite(d) || fabs(d) > 9007199254740992.0)
        return fail(w, k->path, "%s%s'%s' is too large", what, *what ? " " : "", shown);
    if (d != floor(d))
        return fail(w, k->path, "expected an integer%s%s, got '%s'", *what ? " for " : "", what, shown);
    *out = (int64_t)d;
    return DDX_OK;
}

static bool is_null(const char *s, bool plain) {
    return plain && (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"));
}

static const char *expected(const cfg_key *k, char *buf, size_t n) {
    switch (k->type) {
    case T_STR: return "a string";
    case T_INT: case T_I64: case T_U64: return "an integer";
    case T_F64: return "a number";
    case T_BOOL: return "true or false";
    case T_LIST: return "a list of integers like [1, 2, 2, 2]";
    case T_ENUM: {
        char names[256];
        names_str(k->names, names, sizeof names);
        snprintf(buf, n, "one of: %s", names);
        return buf;
    }
    }
    return "?";
}

static ddx_status list_entry(const cfg_key *k, ddx_int_list *l, const char *s, bool plain, const where *w) {
    char shown[200], what[32];
    show(s, strlen(s), shown, sizeof shown);
    snprintf(what, sizeof what, "entry %d", l->n + 1);
    if (!plain) return fail(w, k->path, "expected an integer for %s, got the quoted string \"%s\"", what, shown);
    if (l->n >= DDX_CONFIG_LIST_MAX)
        return fail(w, k->path, "too many entries; at most %d are allowed", DDX_CONFIG_LIST_MAX);
    int64_t v = 0;
    DDX_TRY(to_int64(k, s, shown, w, what, &v));
    if (!in_range(k, (double)v)) {
        char r[80];
        range_str(k, r, sizeof r);
        return fail(w, k->path, "%s (%lld) is out of range %s", what, (long long)v, r);
    }
    l->v[l->n++] = (int)v;
    return DDX_OK;
}

static ddx_status list_done(const cfg_key *k, const ddx_int_list *l, const where *w) {
    if (l->n < k->min_len)
        return fail(w, k->path, "needs at least %d entr%s, got %d", k->min_len, k->min_len == 1 ? "y" : "ies", l->n);
    return DDX_OK;
}

// "[1, 2, 2, 2]" or "1,2,2,2" (a --set value or a default).
static ddx_status list_from_text(const cfg_key *k, const char *text, const where *w, ddx_int_list *out) {
    char buf[DDX_CONFIG_STR_MAX];
    char shown[200];
    size_t len = strlen(text);
    if (len >= sizeof buf) return fail(w, k->path, "value is %zu bytes long; at most %zu are allowed", len, sizeof buf - 1);
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t')) len--;
    while (len && (*text == ' ' || *text == '\t')) text++, len--;
    if (len && text[0] == '[') {
        if (text[len - 1] != ']')
            return fail(w, k->path, "expected %s, got '%s' (missing ']')", expected(k, NULL, 0), show(text, len, shown, sizeof shown));
        text++, len -= 2;
    }
    memcpy(buf, text, len);
    buf[len] = 0;
    ddx_int_list l = {0};
    char *p = buf;
    bool empty = true;
    for (char *q = buf; *q; q++)
        if (*q != ' ' && *q != '\t') empty = false;
    while (!empty) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        while (*p == ' ' || *p == '\t') p++;
        char *e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        if (*p == '[' || *p == '{' || *p == ']')
            return fail(w, k->path, "expected %s, got a nested list", expected(k, NULL, 0));
        if (!*p) return fail(w, k->path, "entry %d is empty", l.n + 1);
        DDX_TRY(list_entry(k, &l, p, true, w));
        if (!comma) break;
        p = comma + 1;
    }
    DDX_TRY(list_done(k, &l, w));
    *out = l;
    return DDX_OK;
}

// Offset of the first byte that is not valid UTF-8 (overlongs and surrogates included), or -1.
static ptrdiff_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, min = 0x10000, c &= 0x07;
        } else {
            return (ptrdiff_t)i;
        }
        if (i + len > n) return (ptrdiff_t)i;
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return (ptrdiff_t)i;
            c = (c << 6) | (s[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return (ptrdiff_t)i;
        i += len;
    }
    return -1;
}

// Strings must survive emit -> load unchanged: valid UTF-8 (a --set value is raw bytes), and
// no control characters, including the Unicode ones YAML treats as line breaks (NEL, U+2028,
// U+2029) and the BOM, which the parser would fold or drop.
static bool string_ok(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    if (utf8_invalid_at(u, len) >= 0) return false;
    for (size_t i = 0; i < len; i++) {
        if (u[i] < 0x20 || u[i] == 0x7f) return false;
        if (u[i] == 0xC2 && i + 1 < len && u[i + 1] >= 0x80 && u[i + 1] <= 0x9F) return false;  // U+0080..U+009F
        if (u[i] == 0xE2 && i + 2 < len && u[i + 1] == 0x80 && (u[i + 2] == 0xA8 || u[i + 2] == 0xA9)) return false;
        if (u[i] == 0xEF && i + 2 < len && u[i + 1] == 0xBB && u[i + 2] == 0xBF) return false;  // U+FEFF
    }
    return true;
}

// Converts one scalar into its field of `cfg`. `plain` is false for quoted YAML scalars: they
// are strings, so a quoted "2e-4" where a number belongs is an error, not a silent conversion.
static ddx_status set_scalar(const cfg_key *k, const char *s, size_t len, bool plain, const where *w, ddx_config *cfg) {
    char shown[200];
    show(s, len, shown, sizeof shown);
    char *field = (char *)cfg + k->off;
    if (strlen(s) != len) return fail(w, k->path, "value contains a NUL byte");
    // One limit for every value, whatever its type: a long number or list is refused, never
    // cut into another valid value (strings have their field's own, possibly smaller, limit).
    if (k->type != T_STR && len > DDX_CONFIG_STR_MAX - 1)
        return fail(w, k->path, "value is %zu bytes long; at most %d are allowed", len, DDX_CONFIG_STR_MAX - 1);
    if (k->type == T_LIST) return list_from_text(k, s, w, (ddx_int_list *)(void *)field);
    if (is_null(s, plain)) {
        if (k->type == T_STR) return fail(w, k->path, "no value given (write \"\" for an empty string)");
        char eb[300];
        return fail(w, k->path, "no value given; expected %s", expected(k, eb, sizeof eb));
    }
    if (!plain && k->type != T_STR && k->type != T_ENUM) {
        char eb[300];
        return fail(w, k->path, "expected %s, got the quoted string \"%s\" (remove the quotes)", expected(k, eb, sizeof eb), shown);
    }
    switch (k->type) {
    case T_STR:
        if (!string_ok(s, len))
            return fail(w, k->path, "string '%s' contains a control character or invalid UTF-8", shown);
        if (len >= k->size) return fail(w, k->path, "string is %zu bytes long; at most %zu are allowed", len, k->size - 1);
        memcpy(field, s, len + 1);
        return DDX_OK;
    case T_INT:
    case T_I64: {
        int64_t v = 0;
        DDX_TRY(to_int64(k, s, shown, w, "", &v));
        if (!in_range(k, (double)v)) {
            char r[80];
            range_str(k, r, sizeof r);
            return fail(w, k->path, "value %s is out of range %s", shown, r);
        }
        if (k->type == T_INT) {
            int iv = (int)v;
            memcpy(field, &iv, sizeof iv);
        } else {
            memcpy(field, &v, sizeof v);
        }
        return DDX_OK;
    }
    case T_U64: {
        if (int_syntax(s, false)) {
            errno = 0;
            unsigned long long v = strtoull(s, NULL, 10);
            if (errno == ERANGE) return fail(w, k->path, "'%s' is out of range [0, 18446744073709551615]", shown);
            uint64_t u = v;
            memcpy(field, &u, sizeof u);
            return DDX_OK;
        }
        int64_t v = 0;
        DDX_TRY(to_int64(k, s, shown, w, "", &v));
        if (v < 0) return fail(w, k->path, "'%s' is out of range [0, 18446744073709551615]", shown);
        uint64_t u = (uint64_t)v;
        memcpy(field, &u, sizeof u);
        return DDX_OK;
    }
    case T_F64: {
        double v = 0;
        DDX_TRY(to_double(k, s, shown, w, &v));
        if (!in_range(k, v)) {
            char r[80];
            range_str(k, r, sizeof r);
            return fail(w, k->path, "value %s is out of range %s", shown, r);
        }
        memcpy(field, &v, sizeof v);
        return DDX_OK;
    }
    case T_BOOL: {
        bool v;
        if (!strcmp(s, "true"))
            v = true;
        else if (!strcmp(s, "false"))
            v = false;
        else if (!strcasecmp(s, "yes") || !strcasecmp(s, "no") || !strcasecmp(s, "on") || !strcasecmp(s, "off") ||
                 !strcasecmp(s, "y") || !strcasecmp(s, "n") || !strcasecmp(s, "true") || !strcasecmp(s, "false"))
            return fail(w, k->path, "expected true or false, got '%s' (booleans are YAML 1.2 style: write true or false)", shown);
        else
            return fail(w, k->path, "expected true or false, got '%s'", shown);
        memcpy(field, &v, sizeof v);
        return DDX_OK;
    }
    case T_ENUM: {
        for (int i = 0; k->names[i]; i++)
            if (!strcmp(s, k->names[i])) {
                memcpy(field, &i, sizeof i);
                return DDX_OK;
            }
        char names[256];
        names_str(k->names, names, sizeof names);
        for (int i = 0; k->names[i]; i++)
            if (!strcasecmp(s, k->names[i]))
                return fail(w, k->path, "unknown value '%s'; allowed: %s (did you mean '%s'? names are case-sensitive)",
                            shown, names, k->names[i]);
        return fail(w, k->path, "unknown value '%s'; allowed: %s", shown, names);
    }
    case T_LIST: break;
    }
    return ddx_errorf(DDX_E_INTERNAL, "config: key '%s' has an unknown type", k->path);
}

// ---------------------------------------------------------------------------------------------
// Defaults and --set

int ddx_config_levels(const ddx_config *cfg) {
    return cfg->model.block_out_channels.n > 0 ? cfg->model.block_out_channels.n : cfg->model.ch_mult.n;
}

int64_t ddx_config_level_width(const ddx_config *cfg, int i) {
    if (cfg->model.block_out_channels.n > 0) return cfg->model.block_out_channels.v[i];
    return (int64_t)cfg->model.ch * cfg->model.ch_mult.v[i];
}

int ddx_config_time_width(const ddx_config *cfg) {
    return cfg->model.block_out_channels.n > 0 ? cfg->model.block_out_channels.v[0] : cfg->model.ch;
}

void ddx_config_defaults(ddx_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < N_KEYS; i++)  // a default that fails to parse stays 0; tests catch that
        (void)set_scalar(&KEYS[i], KEYS[i].def, strlen(KEYS[i].def), true, NULL, cfg);
}

ddx_status ddx_config_set(ddx_config *cfg, const char *assignment) {
    where w = {NULL, 0, assignment};
    const char *eq = strchr(assignment, '=');
    if (!eq) return fail(&w, NULL, "expected KEY=VALUE, e.g. --set train.lr=1e-4");
    char key[256];
    const char *k0 = assignment, *k1 = eq;
    while (k0 < k1 && (*k0 == ' ' || *k0 == '\t')) k0++;
    while (k1 > k0 && (k1[-1] == ' ' || k1[-1] == '\t')) k1--;
    if (k1 - k0 >= (ptrdiff_t)sizeof key)
        return fail(&w, NULL, "key is %td bytes long; at most %zu are allowed", k1 - k0, sizeof key - 1);
    memcpy(key, k0, (size_t)(k1 - k0));
    key[k1 - k0] = 0;
    int i = find_key(key);
    if (i < 0) {
        if (is_section(key)) return fail(&w, NULL, "'%s' is a section; set one of its keys, e.g. %s.KEY=VALUE", key, key);
        char sug[512];
        suggest(key, sug, sizeof sug);
        return fail(&w, NULL, "unknown key '%s'%s", key, sug);
    }
    const cfg_key *k = &KEYS[i];
    const char *v = eq + 1;
    size_t len = strlen(v);
    char trimmed[DDX_CONFIG_STR_MAX];
    if (k->type != T_STR) {  // strings are verbatim: a name may end in a space if the user says so
        while (*v == ' ' || *v == '\t') v++, len--;
        while (len && (v[len - 1] == ' ' || v[len - 1] == '\t')) len--;
        if (len >= sizeof trimmed)
            return fail(&w, k->path, "value is %zu bytes long; at most %d are allowed", len, DDX_CONFIG_STR_MAX - 1);
        memcpy(trimmed, v, len);
        trimmed[len] = 0;
        v = trimmed;
    } else if (len == 0) {
        // An explicit empty string is what `--set data.path=` means.
        ddx_config tmp = *cfg;
        ((char *)&tmp + k->off)[0] = 0;
        tmp.origin.line[i] = -1;
        *cfg = tmp;
        return DDX_OK;
    }
    ddx_config tmp = *cfg;
    DDX_TRY(set_scalar(k, v, len, k->type != T_STR, &w, &tmp));
    tmp.origin.line[i] = -1;
    *cfg = tmp;
    return DDX_OK;
}

// ---------------------------------------------------------------------------------------------
// Loading

typedef struct loader {
    yaml_parser_t parser;
    yaml_event_t ev;
    bool have_ev;
    const char *file;
    const unsigned char *buf;
    size_t len;
    ddx_config *cfg;
    int32_t seen[DDX_CONFIG_MAX_KEYS];  // line where each key was first given
    struct {
        char path[64];
        int line;
    } sections[32];
    int n_sections;
} loader;

static int line_of_offset(const loader *L, size_t off) {
    int line = 1;
    for (size_t i = 0; i < off && i < L->len; i++)
        if (L->buf[i] == '\n') line++;
    return line;
}

static int ev_line(const loader *L) { return (int)L->ev.start_mark.line + 1; }

static ddx_status syntax_error(loader *L) {
    const yaml_parser_t *p = &L->parser;
    where w = {L->file, 0, NULL};
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->error == YAML_READER_ERROR) {
        w.line = line_of_offset(L, p->problem_offset);
        return fail(&w, NULL, "cannot read the file as YAML: %s (byte offset %zu)", problem, p->problem_offset);
    }
    if (p->error == YAML_MEMORY_ERROR) return ddx_errorf(DDX_E_NOMEM, "%s: out of memory while parsing YAML", L->file);
    w.line = (int)p->problem_mark.line + 1;
    // libyaml reports e.g. an unclosed '[' where it gave up, often past the last line; then
    // the context mark (where the construct began) is where the user should look.
    if (p->context && p->problem_mark.index >= L->len) {
        w.line = (int)p->context_mark.line + 1;
        return fail(&w, NULL, "YAML syntax error: %s %s that starts on this line; the file ends before it is closed",
                    problem, p->context);
    }
    if (p->context && p->context_mark.line != p->problem_mark.line)
        return fail(&w, NULL, "YAML syntax error: %s %s that starts on line %d", problem, p->context,
                    (int)p->context_mark.line + 1);
    if (p->context) return fail(&w, NULL, "YAML syntax error: %s %s", problem, p->context);
    return fail(&w, NULL, "YAML syntax error: %s", problem);
}

// Fetches the next event, freeing the previous one, and rejects YAML features a config must
// not use (they would make what the file says differ from what it looks like).
static ddx_status advance(loader *L) {
    if (L->have_ev) yaml_event_delete(&L->ev);
    L->have_ev = false;
    if (!yaml_parser_parse(&L->parser, &L->ev)) return syntax_error(L);
    L->have_ev = true;
    where w = {L->file, ev_line(L), NULL};
    const yaml_char_t *anchor = NULL, *tag = NULL;
    switch (L->ev.type) {
    case YAML_ALIAS_EVENT: return fail(&w, NULL, "anchors and aliases are not supported (&name, *name); write the values out");
    case YAML_SCALAR_EVENT: anchor = L->ev.data.scalar.anchor, tag = L->ev.data.scalar.tag; break;
    case YAML_SEQUENCE_START_EVENT: anchor = L->ev.data.sequence_start.anchor, tag = L->ev.data.sequence_start.tag; break;
    case YAML_MAPPING_START_EVENT: anchor = L->ev.data.mapping_start.anchor, tag = L->ev.data.mapping_start.tag; break;
    default: break;
    }
    if (anchor) return fail(&w, NULL, "anchors and aliases are not supported (&name, *name); write the values out");
    if (tag) return fail(&w, NULL, "tags ('%s') are not supported; write the plain value", (const char *)tag);
    return DDX_OK;
}

static const char *event_kind(const yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_SEQUENCE_START_EVENT: return "a list";
    case YAML_MAPPING_START_EVENT: return "a mapping";
    default: return "something else";
    }
}

// Scalar problems are reported on the key's line: libyaml places an empty value's mark on the
// next token, which may be lines further down.
static ddx_status parse_value(loader *L, int ki, int key_line) {
    const cfg_key *k = &KEYS[ki];
    where w = {L->file, key_line, NULL};
    char eb[300];
    if (L->ev.type == YAML_SCALAR_EVENT) {
        const char *s = (const char *)L->ev.data.scalar.value;
        size_t len = L->ev.data.scalar.length;
        bool plain = L->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (k->type == T_LIST) {
            char shown[200];
            return fail(&w, k->path, "expected %s, got '%s'", expected(k, eb, sizeof eb), show(s, len, shown, sizeof shown));
        }
        ddx_status st = set_scalar(k, s, len, plain, &w, L->cfg);
        int last = (int)L->ev.end_mark.line + 1;
        if (st != DDX_OK && plain && last > key_line) {
            // A plain scalar folds following more-indented lines into itself, so a
            // mis-indented next key shows up as a strange value of this one.
            char msg[1500];
            snprintf(msg, sizeof msg, "%s", ddx_last_error());
            return ddx_errorf(st, "%s (the value spans lines %d-%d: check the indentation)", msg, key_line, last);
        }
        return st;
    }
    if (L->ev.type != YAML_SEQUENCE_START_EVENT || k->type != T_LIST)
        return fail(&w, k->path, "expected %s, got %s", expected(k, eb, sizeof eb), event_kind(&L->ev));
    ddx_int_list l = {0};
    for (;;) {
        DDX_TRY(advance(L));
        w.line = ev_line(L);
        if (L->ev.type == YAML_SEQUENCE_END_EVENT) break;
        if (L->ev.type != YAML_SCALAR_EVENT)
            return fail(&w, k->path, "expected an integer for entry %d, got %s", l.n + 1, event_kind(&L->ev));
        const char *s = (const char *)L->ev.data.scalar.value;
        if (strlen(s) != L->ev.data.scalar.length) return fail(&w, k->path, "entry %d contains a NUL byte", l.n + 1);
        DDX_TRY(list_entry(k, &l, s, L->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE, &w));
    }
    DDX_TRY(list_done(k, &l, &w));
    memcpy((char *)L->cfg + k->off, &l, sizeof l);
    return DDX_OK;
}

// The current event is the MAPPING_START of `prefix` ("" = the top level).
static ddx_status parse_mapping(loader *L, const char *prefix) {
    for (;;) {
        DDX_TRY(advance(L));
        if (L->ev.type == YAML_MAPPING_END_EVENT) return DDX_OK;
        int line = ev_line(L);
        where w = {L->file, line, NULL};
        if (L->ev.type != YAML_SCALAR_EVENT)
            return fail(&w, NULL, "a mapping key must be a plain name, got %s", event_kind(&L->ev));
        char path[256], shown[200];
        const char *key = (const char *)L->ev.data.scalar.value;
        size_t klen = L->ev.data.scalar.length;
        if (klen + strlen(prefix) + 2 > sizeof path || strlen(key) != klen)
            return fail(&w, NULL, "unknown key '%s'", show(key, klen, shown, sizeof shown));
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
        show(path, strlen(path), shown, sizeof shown);
        int ki = find_key(path);
        if (ki >= 0) {
            if (L->seen[ki]) return fail(&w, path, "duplicate key (first given on line %d)", L->seen[ki]);
            L->seen[ki] = line;
            DDX_TRY(advance(L));
            DDX_TRY(parse_value(L, ki, line));
            L->cfg->origin.line[ki] = line;
            continue;
        }
        if (!is_section(path)) {
            char sug[512];
            suggest(path, sug, sizeof sug);
            return fail(&w, NULL, "unknown key '%s'%s", shown, sug);
        }
        for (int i = 0; i < L->n_sections; i++)
            if (!strcmp(L->sections[i].path, path))
                return fail(&w, NULL, "duplicate section '%s' (first given on line %d); merge the two", path,
                            L->sections[i].line);
        if (L->n_sections < (int)(sizeof L->sections / sizeof L->sections[0]) && strlen(path) < sizeof L->sections[0].path) {
            memcpy(L->sections[L->n_sections].path, path, strlen(path) + 1);
            L->sections[L->n_sections++].line = line;
        }
        DDX_TRY(advance(L));
        if (L->ev.type == YAML_MAPPING_START_EVENT) {
            DDX_TRY(parse_mapping(L, path));
        } else if (L->ev.type == YAML_SCALAR_EVENT &&
                   is_null((const char *)L->ev.data.scalar.value, L->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE)) {
            continue;  // "train:" with nothing under it: keep the defaults
        } else {
            w.line = ev_line(L);
            if (L->ev.type == YAML_SCALAR_EVENT)
                return fail(&w, NULL, "section '%s' must hold keys (a mapping), got '%s'", path,
                            show((const char *)L->ev.data.scalar.value, L->ev.data.scalar.length, shown, sizeof shown));
            return fail(&w, NULL, "section '%s' must hold keys (a mapping), got %s", path, event_kind(&L->ev));
        }
    }
}

static ddx_status parse_stream(loader *L) {
    where w = {L->file, 0, NULL};
    DDX_TRY(advance(L));  // STREAM_START
    DDX_TRY(advance(L));
    if (L->ev.type == YAML_STREAM_END_EVENT) return DDX_OK;  // empty file: all defaults
    DDX_TRY(advance(L));                                     // past DOCUMENT_START
    w.line = ev_line(L);
    if (L->ev.type == YAML_MAPPING_START_EVENT) {
        DDX_TRY(parse_mapping(L, ""));
    } else if (L->ev.type == YAML_SCALAR_EVENT) {
        const char *s = (const char *)L->ev.data.scalar.value;
        if (!is_null(s, L->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE)) {
            char shown[200];
            return fail(&w, NULL, "the top level must be a mapping of sections (run:, model:, ...), got '%s'",
                        show(s, L->ev.data.scalar.length, shown, sizeof shown));
        }
    } else {
        return fail(&w, NULL, "the top level must be a mapping of sections (run:, model:, ...), got %s", event_kind(&L->ev));
    }
    DDX_TRY(advance(L));  // DOCUMENT_END
    DDX_TRY(advance(L));
    if (L->ev.type == YAML_DOCUMENT_START_EVENT) {
        w.line = ev_line(L);
        return fail(&w, NULL, "a second YAML document ('---') starts here; a config holds exactly one");
    }
    return DDX_OK;
}

// libyaml's message for a tab in indentation ("found character that cannot start any token")
// does not say "tab", and some tab layouts parse into something unintended; so look first.
// (A tab-indented line inside a multi-line quoted string would be flagged too; configs have none.)
static ddx_status check_tabs(const loader *L) {
    int line = 1;
    for (size_t i = 0; i < L->len;) {
        bool tab = false;
        size_t j = i;
        while (j < L->len && (L->buf[j] == ' ' || L->buf[j] == '\t')) tab |= L->buf[j++] == '\t';
        bool content = j < L->len && L->buf[j] != '\n' && L->buf[j] != '\r' && L->buf[j] != '#';
        if (tab && content) {
            where w = {L->file, line, NULL};
            return fail(&w, NULL, "tab character in indentation; YAML does not allow tabs there, indent with spaces");
        }
        while (j < L->len && L->buf[j] != '\n') j++;
        i = j + 1;
        line++;
    }
    return DDX_OK;
}

static ddx_status read_file(const char *path, unsigned char **out, size_t *out_len) {
    int fd;
    ddx_status st = ddx_input_open(path, "config file", &fd, NULL);
    if (st == DDX_E_INPUT) return ddx_errorf(st, "%s; give the path of a YAML config file", ddx_last_error());
    if (st != DDX_OK) return st;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return ddx_errorf(DDX_E_IO, "%s: cannot open config file: %s", path, strerror(e));
    }
    unsigned char *buf = malloc(MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        return ddx_errorf(DDX_E_NOMEM, "%s: out of memory reading the config", path);
    }
    size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        free(buf);
        return ddx_errorf(DDX_E_IO, "%s: cannot read config file: %s", path, strerror(err));
    }
    if (n > MAX_FILE_BYTES) {
        free(buf);
        return ddx_errorf(DDX_E_INPUT, "%s: larger than %d bytes; is this really a config file?", path, MAX_FILE_BYTES);
    }
    *out = buf;
    *out_len = n;
    return DDX_OK;
}

static ddx_status load_buffer(const char *path, const unsigned char *buf, size_t len, ddx_config *cfg);

ddx_status ddx_config_load(const char *path, ddx_config *cfg) {
    unsigned char *buf = NULL;
    size_t len = 0;
    DDX_TRY(read_file(path, &buf, &len));
    ddx_status st = load_buffer(path, buf, len, cfg);
    free(buf);
    return st;
}

ddx_status ddx_config_load_string(const char *text, size_t len, const char *what, ddx_config *cfg) {
    return load_buffer(what, (const unsigned char *)text, len, cfg);
}

static ddx_status load_buffer(const char *path, const unsigned char *buf, size_t len, ddx_config *cfg) {
    ddx_config *tmp = malloc(sizeof *tmp);
    loader *L = calloc(1, sizeof *L);
    ddx_status st = DDX_OK;
    if (!tmp || !L) {
        st = ddx_errorf(DDX_E_NOMEM, "%s: out of memory loading the config", path);
        goto out;
    }
    ddx_config_defaults(tmp);
    snprintf(tmp->origin.source, sizeof tmp->origin.source, "%s", path);
    L->file = path, L->buf = buf, L->len = len, L->cfg = tmp;
    ptrdiff_t bad = utf8_invalid_at(buf, len);
    if (bad >= 0) {
        where w = {path, line_of_offset(L, (size_t)bad), NULL};
        st = fail(&w, NULL, "byte 0x%02X is not valid UTF-8; save the file as UTF-8", buf[bad]);
        goto out;
    }
    st = check_tabs(L);
    if (st) goto out;
    if (!yaml_parser_initialize(&L->parser)) {
        st = ddx_errorf(DDX_E_NOMEM, "%s: cannot initialise the YAML parser", path);
        goto out;
    }
    yaml_parser_set_input_string(&L->parser, buf, len);
    st = parse_stream(L);
    if (L->have_ev) yaml_event_delete(&L->ev);
    yaml_parser_delete(&L->parser);
    if (st == DDX_OK) *cfg = *tmp;
out:
    free(L);
    free(tmp);
    return st;
}

// ---------------------------------------------------------------------------------------------
// Cross-key validation

static ddx_status invalid(const ddx_config *cfg, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ddx_status invalid(const ddx_config *cfg, const char *key, const char *fmt, ...) {
    int i = find_key(key);
    int line = i >= 0 ? cfg->origin.line[i] : 0;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) return ddx_errorf(DDX_E_INPUT, "%s:%d: key '%s': %s", cfg->origin.source, line, key, msg);
    if (line < 0) return ddx_errorf(DDX_E_INPUT, "key '%s' (from --set): %s", key, msg);
    if (cfg->origin.source[0])
        return ddx_errorf(DDX_E_INPUT, "%s: key '%s' (default, not in the file): %s", cfg->origin.source, key, msg);
    return ddx_errorf(DDX_E_INPUT, "key '%s' (default): %s", key, msg);
}

ddx_status ddx_config_validate(const ddx_config *c) {
    const char *name = c->run.name;
    if (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return invalid(c, "run.name", "'%s' is not a folder name (non-empty, no '/', not . or ..)", name);
    if (!c->run.out_dir[0]) return invalid(c, "run.out_dir", "must not be empty (use \".\" for the current folder)");
    const bool own_widths = c->model.block_out_channels.n > 0;
    const int levels = ddx_config_levels(c);
    const int size = c->model.image_size;
    if (c->data.image_size != size)
        return invalid(c, "data.image_size", "%d differs from model.image_size %d; the model is built for the data's size, set both",
                       c->data.image_size, size);
    // The image's channels are out_channels (eps, x0 and v predictions all have them); a
    // low-res conditioning input adds as many again.
    const bool lowres = c->model.cond == DDX_COND_LOWRES;
    const int want_in = lowres ? 2 * c->model.out_channels : c->model.out_channels;
    if (c->model.in_channels != want_in)
        return invalid(c, "model.in_channels", "%d must be %s (%d): %s", c->model.in_channels,
                       lowres ? "2 x model.out_channels" : "model.out_channels", want_in,
                       lowres ? "x_t and the upsampled low-res image are concatenated on the channel axis (model.cond lowres)"
                              : "eps, x0 and v predictions all have the image's channels");
    if (lowres && c->data.sr_factor != 2 && c->data.sr_factor != 4 && c->data.sr_factor != 8)
        return invalid(c, "data.sr_factor", "%d: model.cond lowres needs 2, 4 or 8", c->data.sr_factor);
    if (lowres && size % c->data.sr_factor != 0)
        return invalid(c, "data.sr_factor", "%d does not divide model.image_size %d (the low-res side must be whole)",
                       c->data.sr_factor, size);
    if (!lowres && c->data.sr_factor != 0)
        return invalid(c, "data.sr_factor", "%d is set but model.cond is none; set model.cond: lowres or leave sr_factor at 0",
                       c->data.sr_factor);
    if (c->data.dataset == DDX_DATASET_FASHION_MNIST && c->model.out_channels != 1)
        return invalid(c, "model.out_channels", "Fashion-MNIST images have 1 channel, got %d", c->model.out_channels);
    if (c->data.dataset == DDX_DATASET_CIFAR10 && c->model.out_channels != 3)
        return invalid(c, "model.out_channels", "CIFAR-10 images have 3 channels, got %d", c->model.out_channels);
    if (c->data.dataset == DDX_DATASET_IMAGE_FOLDER && !c->data.path[0])
        return invalid(c, "data.path", "dataset image_folder needs data.path (the folder of images)");
    // unet_plain (models/unet_plain.c) is fixed at three levels and has no GroupNorm or
    // attention, so the groups and attn_resolutions rules below are unet_ddpm's only.
    const bool plain = c->model.type == DDX_MODEL_TYPE_UNET_PLAIN;
    if (plain && levels != 3)
        return invalid(c, "model.ch_mult", "unet_plain has exactly 3 levels (e.g. [1, 2, 4]), got %d entries", levels);
    if (plain) {
        // unet_plain does not read the diffusers settings; one set away from its default would be
        // silently ignored, so it is refused instead.
        ddx_config d;
        ddx_config_defaults(&d);
        const char *ddpm_only[] = {"model.block_out_channels", "model.attention_head_dim", "model.flip_sin_to_cos",
                                   "model.freq_shift", "model.downsample_padding"};
        for (size_t i = 0; i < sizeof ddpm_only / sizeof ddpm_only[0]; i++) {
            const cfg_key *k = &KEYS[find_key(ddpm_only[i])];
            const bool same = k->type == T_LIST ? ((const ddx_int_list *)(const void *)((const char *)c + k->off))->n == 0
                                                : memcmp((const char *)c + k->off, (const char *)&d + k->off, k->size) == 0;
            if (!same) return invalid(c, k->path, "is a unet_ddpm setting; unet_plain does not read it (leave it at its default)");
        }
    }
    const char *width_key = own_widths ? "model.block_out_channels" : "model.ch_mult";
    // Each level but the last halves the feature map, so the side must divide evenly.
    if (levels - 1 >= 31 || size % (1 << (levels - 1)) != 0)
        return invalid(c, "model.image_size", "%d cannot be halved %d times (%s has %d levels)", size, levels - 1, width_key, levels);
    for (int i = 0; i < levels; i++) {
        int64_t ch = ddx_config_level_width(c, i);
        if (ch > 65536) return invalid(c, width_key, "level %d has %lld channels; at most 65536", i, (long long)ch);
        if (!plain && ch % c->model.groups != 0) {
            if (own_widths)
                return invalid(c, "model.groups", "%d does not divide the %lld channels of level %d (model.block_out_channels)",
                               c->model.groups, (long long)ch, i);
            return invalid(c, "model.groups", "%d does not divide the %lld channels of level %d (model.ch %d x ch_mult %d)",
                           c->model.groups, (long long)ch, i, c->model.ch, c->model.ch_mult.v[i]);
        }
    }
    for (int j = 0; !plain && j < c->model.attn_resolutions.n; j++) {
        int r = c->model.attn_resolutions.v[j];
        bool reached = false;
        char sizes[128] = "";
        size_t o = 0;
        for (int i = 0; i < levels; i++) {
            reached |= (size >> i) == r;
            o += (size_t)snprintf(sizes + o, sizeof sizes - (o < sizeof sizes ? o : sizeof sizes), "%s%d", i ? ", " : "", size >> i);
            if (o >= sizeof sizes) o = sizeof sizes - 1;
        }
        if (!reached)
            return invalid(c, "model.attn_resolutions", "%d is not a feature-map size of this U-Net (it has %s)", r, sizes);
    }
    // Attention heads: the mid block (last level) always has attention, other levels where listed.
    const int hd = c->model.attention_head_dim;
    for (int i = 0; !plain && hd > 0 && i < levels; i++) {
        bool attn = i == levels - 1;
        for (int j = 0; j < c->model.attn_resolutions.n; j++) attn |= (size >> i) == c->model.attn_resolutions.v[j];
        const int64_t ch = ddx_config_level_width(c, i);
        if (attn && ch % hd != 0)
            return invalid(c, "model.attention_head_dim", "%d does not divide the %lld channels of level %d, which has attention",
                           hd, (long long)ch, i);
    }
    const int tw = ddx_config_time_width(c);
    if (!plain && (tw % 2 != 0 || tw / 2 == c->model.freq_shift))
        return invalid(c, own_widths ? "model.block_out_channels" : "model.ch",
                       "the timestep embedding is %d wide; it must be even and half of it must differ from model.freq_shift %d", tw,
                       c->model.freq_shift);
    if (c->diffusion.rescale_zero_terminal_snr && c->diffusion.parameterization == DDX_PARAMETERIZATION_EPS)
        return invalid(c, "diffusion.rescale_zero_terminal_snr",
                       "is true but diffusion.parameterization is eps: at zero terminal SNR x_T is pure noise and a noise "
                       "prediction says nothing about x0 (Lin et al. 2023); set diffusion.parameterization: v (or x0)");
    if (c->diffusion.beta_schedule != DDX_BETA_SCHEDULE_COSINE && !(c->diffusion.beta_start < c->diffusion.beta_end))
        return invalid(c, "diffusion.beta_start", "%g must be below diffusion.beta_end %g", c->diffusion.beta_start,
                       c->diffusion.beta_end);
    if (c->sample.steps > c->diffusion.timesteps)
        return invalid(c, "sample.steps", "%d exceeds diffusion.timesteps %d", c->sample.steps, c->diffusion.timesteps);
    if (c->train.label_dropout > 0 && c->model.num_classes == 0)
        return invalid(c, "train.label_dropout", "%g needs a class-conditional model (model.num_classes > 0)",
                       c->train.label_dropout);
    if (c->sample.guidance != 1.0 && c->model.num_classes == 0)
        return invalid(c, "sample.guidance", "%g needs a class-conditional model (model.num_classes > 0)", c->sample.guidance);
    if (c->train.warmup_steps > c->train.total_steps)
        return invalid(c, "train.warmup_steps", "%lld exceeds train.total_steps %lld", (long long)c->train.warmup_steps,
                       (long long)c->train.total_steps);
    if (c->eval.fid_every > 0 && c->model.cond == DDX_COND_LOWRES)
        return invalid(c, "eval.fid_every", "is %lld but model.cond is lowres: a super-resolution model is measured by "
                       "ddx-superres --eval (PSNR/SSIM against bicubic); set eval.fid_every: 0",
                       (long long)c->eval.fid_every);
    if (c->eval.fid_every > 0 && !c->eval.ref[0])
        return invalid(c, "eval.ref", "is empty but eval.fid_every is %lld; make reference statistics with ddx-eval stats "
                                      "--config CONFIG --split test --out ref.npz and set eval.ref: ref.npz",
                       (long long)c->eval.fid_every);
    return DDX_OK;
}

ddx_status ddx_config_resolve(ddx_config *cfg, const char *path, const char *const *sets, int n_sets) {
    ddx_config tmp;
    ddx_config_defaults(&tmp);
    if (path) DDX_TRY(ddx_config_load(path, &tmp));
    for (int i = 0; i < n_sets; i++) DDX_TRY(ddx_config_set(&tmp, sets[i]));
    DDX_TRY(ddx_config_validate(&tmp));
    *cfg = tmp;
    return DDX_OK;
}

// ---------------------------------------------------------------------------------------------
// Emitting

// The fewest significant digits that read back to the same double, so files stay readable
// (2e-4 rather than 0.00020000000000000001) and still round-trip bit for bit.
static void format_double(double v, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", n - strlen(buf) - 1);
}

static ddx_status format_value(const cfg_key *k, const ddx_config *cfg, char *buf, size_t n) {
    const char *field = (const char *)cfg + k->off;
    switch (k->type) {
    case T_STR: {
        size_t o = 0;
        buf[o++] = '"';
        for (const char *s = field; *s && o + 8 < n; s++) {
            unsigned char c = (unsigned char)*s;
            if (c == '"' || c == '\\')
                buf[o++] = '\\', buf[o++] = (char)c;
            else if (c < 0x20 || c == 0x7f)
                o += (size_t)snprintf(buf + o, n - o, "\\x%02X", c);
            else
                buf[o++] = (char)c;
        }
        buf[o++] = '"';
        buf[o] = 0;
        return DDX_OK;
    }
    case T_INT: {
        int v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%d", v);
        return DDX_OK;
    }
    case T_I64: {
        int64_t v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%lld", (long long)v);
        return DDX_OK;
    }
    case T_U64: {
        uint64_t v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%llu", (unsigned long long)v);
        return DDX_OK;
    }
    case T_F64: {
        double v;
        memcpy(&v, field, sizeof v);
        if (!isfinite(v)) return ddx_errorf(DDX_E_INPUT, "config: key '%s' holds a non-finite value", k->path);
        format_double(v, buf, n);
        return DDX_OK;
    }
    case T_BOOL: {
        bool v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%s", v ? "true" : "false");
        return DDX_OK;
    }
    case T_ENUM: {
        int v, count = 0;
        memcpy(&v, field, sizeof v);
        while (k->names[count]) count++;
        if (v < 0 || v >= count) return ddx_errorf(DDX_E_INPUT, "config: key '%s' holds %d, not one of its %d values", k->path, v, count);
        snprintf(buf, n, "%s", k->names[v]);
        return DDX_OK;
    }
    case T_LIST: {
        ddx_int_list l;
        memcpy(&l, field, sizeof l);
        if (l.n < 0 || l.n > DDX_CONFIG_LIST_MAX) return ddx_errorf(DDX_E_INPUT, "config: key '%s' has %d entries", k->path, l.n);
        size_t o = (size_t)snprintf(buf, n, "[");
        for (int i = 0; i < l.n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%d", i ? ", " : "", l.v[i]);
        snprintf(buf + o, n - o, "]");
        return DDX_OK;
    }
    }
    return ddx_errorf(DDX_E_INTERNAL, "config: key '%s' has an unknown type", k->path);
}

ddx_status ddx_config_emit(const ddx_config *cfg, FILE *f) {
    char value[4 * DDX_CONFIG_STR_MAX + 16], line[5 * DDX_CONFIG_STR_MAX];
    fprintf(f, "# ddx config, resolved (defaults + file + --set)\n");
    for (int i = 0; i < N_KEYS; i++) {
        const cfg_key *k = &KEYS[i];
        const char *leaf = leaf_of(k->path);
        int sl = (int)(leaf - k->path) - 1;
        if (i == 0 || strncmp(KEYS[i - 1].path, k->path, (size_t)sl + 1) != 0)
            fprintf(f, "%s%.*s:\n", i ? "\n" : "", sl, k->path);
        DDX_TRY(format_value(k, cfg, value, sizeof value));
        int w = snprintf(line, sizeof line, "  %s: %s", leaf, value);
        fprintf(f, "%s%*s# %s\n", line, w < 40 ? 40 - w : 1, "", k->doc);
    }
    if (fflush(f) != 0 || ferror(f)) return ddx_errorf(DDX_E_IO, "writing the config: %s", strerror(errno));
    return DDX_OK;
}

ddx_status ddx_config_save(const ddx_config *cfg, const char *path) {
    ddx_atomic_file a;
    DDX_TRY(ddx_atomic_open(&a, path, "config output"));
    ddx_status st = ddx_config_emit(cfg, a.f);
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ddx_last_error());
        ddx_atomic_abort(&a);
        // emit knows no path: name the file the user will look for.
        return st == DDX_E_IO ? ddx_errorf(st, "%s: %s (disk full?); nothing was replaced", path, msg) : st;
    }
    return ddx_atomic_commit(&a);
}

// ---------------------------------------------------------------------------------------------
// Comparing and describing

const char *ddx_config_diff(const ddx_config *a, const ddx_config *b) {
    for (int i = 0; i < N_KEYS; i++) {
        const cfg_key *k = &KEYS[i];
        const char *fa = (const char *)a + k->off, *fb = (const char *)b + k->off;
        bool same;
        if (k->type == T_STR) {
            same = strncmp(fa, fb, k->size) == 0;
        } else if (k->type == T_LIST) {
            ddx_int_list la, lb;
            memcpy(&la, fa, sizeof la);
            memcpy(&lb, fb, sizeof lb);
            same = la.n == lb.n && la.n >= 0 && la.n <= DDX_CONFIG_LIST_MAX &&
                   memcmp(la.v, lb.v, (size_t)la.n * sizeof la.v[0]) == 0;
        } else {
            same = memcmp(fa, fb, k->size) == 0;  // doubles compared bit for bit
        }
        if (!same) return k->path;
    }
    return NULL;
}

void ddx_config_describe(FILE *f) {
    static const char *const type_names[] = {"string", "integer", "integer", "integer", "number", "bool", "enum", "list"};
    for (int i = 0; i < N_KEYS; i++) {
        const cfg_key *k = &KEYS[i];
        char extra[300] = "";
        if (k->type == T_ENUM) {
            char names[256];
            names_str(k->names, names, sizeof names);
            snprintf(extra, sizeof extra, " {%s}", names);
        } else if (k->type == T_INT || k->type == T_I64 || k->type == T_F64 || k->type == T_LIST) {
            char r[80];
            range_str(k, r, sizeof r);
            snprintf(extra, sizeof extra, " %s%s", k->type == T_LIST ? "entries in " : "", r);
        }
        fprintf(f, "%-28s %s%s, default %s%s%s: %s\n", k->path, type_names[k->type], extra,
                k->type == T_STR ? "\"" : "", k->def, k->type == T_STR ? "\"" : "", k->doc);
    }
}
