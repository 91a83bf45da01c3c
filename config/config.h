// Experiment configs: YAML (through libyaml) into a typed struct.
//
// One schema table in config.c (key path, type, field offset, default, range, enum names, doc)
// drives defaults, YAML loading, `--set a.b=value` overrides, emitting the resolved config as
// YAML, and describing the keys. Adding a key = one field here + one table line there.
//
// Typical use (what ddx-train does):
//     ddx_config cfg;
//     ddx_status st = ddx_config_resolve(&cfg, argv_config_path, sets, n_sets);
//     if (st) { fprintf(stderr, "%s\n", ddx_last_error()); return ddx_exit_code(st); }
//     ddx_config_emit(&cfg, stdout);                      // print the resolved config
//     ddx_config_save(&cfg, "RUN/config.yaml");          // and keep it with the run
//
// Rules of the file format (strict on purpose: a typo must never silently train the wrong model):
//   - the top level is a mapping of sections (run, model, diffusion, data, train, sample, eval), each a
//     mapping of keys; `train.lr: 2e-4` (a dotted key at the top level) is accepted too;
//   - unknown keys, wrong types, out-of-range values, unknown enum names, duplicate keys,
//     anchors/aliases, tags, several documents, tabs used for indentation and non-UTF-8 bytes are
//     errors (DDX_E_INPUT) with ONE line "FILE:LINE: key 'a.b': what is wrong";
//   - an empty file (or one holding only comments, or an empty section) means "all defaults";
//   - booleans are `true`/`false` only (YAML 1.2; yes/no/on/off are rejected);
//   - numbers are plain (unquoted) scalars: floats accept 1e-4, 2.0e-4, .5 and integers; integer
//     keys accept any exact integer (8e5 is 800000); a quoted "2e-4" is a string, not a number;
//   - strings may be plain or quoted; enum names are case-sensitive.
// The struct owns no heap memory: copy it by value, there is nothing to free.
#ifndef DDX_CONFIG_H
#define DDX_CONFIG_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/status.h"

#define DDX_CONFIG_STR_MAX 1024  // bytes per string key, including the terminating NUL
#define DDX_CONFIG_LIST_MAX 8    // entries per integer-list key
#define DDX_CONFIG_MAX_KEYS 128  // capacity of the per-key origin table (schema size is checked)

typedef enum ddx_run_device { DDX_RUN_DEVICE_AUTO = 0, DDX_RUN_DEVICE_CPU, DDX_RUN_DEVICE_CUDA } ddx_run_device;
typedef enum ddx_precision { DDX_PRECISION_FP32 = 0, DDX_PRECISION_TF32, DDX_PRECISION_BF16 } ddx_precision;
typedef enum ddx_model_type { DDX_MODEL_TYPE_UNET_PLAIN = 0, DDX_MODEL_TYPE_UNET_DDPM } ddx_model_type;
typedef enum ddx_beta_schedule { DDX_BETA_SCHEDULE_LINEAR = 0, DDX_BETA_SCHEDULE_COSINE, DDX_BETA_SCHEDULE_SCALED_LINEAR } ddx_beta_schedule;
// fixedlarge: sigma_t^2 = beta_t; fixedsmall: sigma_t^2 = posterior variance beta~_t (Ho et al. 3.2).
typedef enum ddx_variance { DDX_VARIANCE_FIXEDLARGE = 0, DDX_VARIANCE_FIXEDSMALL } ddx_variance;
// What the network predicts: the noise, the clean image, or v = alpha_t*eps - sigma_t*x0.
typedef enum ddx_parameterization { DDX_PARAMETERIZATION_EPS = 0, DDX_PARAMETERIZATION_X0, DDX_PARAMETERIZATION_V } ddx_parameterization;
typedef enum ddx_dataset_kind { DDX_DATASET_FASHION_MNIST = 0, DDX_DATASET_CIFAR10, DDX_DATASET_IMAGE_FOLDER } ddx_dataset_kind;
typedef enum ddx_sampler {
    DDX_SAMPLER_DDPM = 0,
    DDX_SAMPLER_DDIM,
    DDX_SAMPLER_DPMPP2M,   // DPM-Solver++(2M), Lu et al. 2022 (diffusers DPMSolverMultistepScheduler)
    DDX_SAMPLER_DPMPP3M,   // DPM-Solver++(3M)
    DDX_SAMPLER_HEUN,      // Heun's 2nd order, EDM (Karras et al. 2022; diffusers HeunDiscreteScheduler)
    DDX_SAMPLER_EULER_A,   // Euler ancestral (diffusers EulerAncestralDiscreteScheduler)
} ddx_sampler;
// The config's name of a sampler ("ddpm", "dpmpp2m", ...); "?" for a value outside the enum.
const char *ddx_sampler_name(ddx_sampler s);
// The sampler of that name; an unknown name is DDX_E_INPUT with a message naming `what` (a flag) and
// the accepted names.
ddx_status ddx_sampler_parse(const char *name, const char *what, ddx_sampler *out);
// How `sample.steps` timesteps are picked out of `diffusion.timesteps` (DDIM paper, appendix D.2).
typedef enum ddx_spacing {
    DDX_SPACING_UNIFORM = 0,
    DDX_SPACING_QUADRATIC,
    DDX_SPACING_LEADING,    // diffusers 'leading' (steps_offset 0): the same timesteps as uniform
    DDX_SPACING_TRAILING,   // diffusers 'trailing': round(T - k T / steps) - 1
    DDX_SPACING_KARRAS,     // Karras et al. 2022 sigmas, rho = 7, mapped to timesteps as diffusers does
} ddx_spacing;
// What the network sees besides x_t (concatenated on the channel axis): nothing, or the
// low-resolution image of x0 upsampled bicubically to the model's size (super-resolution,
// models/lowres.h; the factor is data.sr_factor).
typedef enum ddx_cond { DDX_COND_NONE = 0, DDX_COND_LOWRES } ddx_cond;
// Per-sample weight of the training loss: uniform, or Min-SNR-gamma (Hang et al. 2023).
typedef enum ddx_loss_weight { DDX_LOSS_WEIGHT_UNIFORM = 0, DDX_LOSS_WEIGHT_MIN_SNR } ddx_loss_weight;

typedef struct ddx_int_list {
    int n;
    int v[DDX_CONFIG_LIST_MAX];
} ddx_int_list;

typedef struct ddx_config {
    struct {
        char name[DDX_CONFIG_STR_MAX];     // run folder name under out_dir
        char out_dir[DDX_CONFIG_STR_MAX];
        uint64_t seed;
        ddx_run_device device;
        ddx_precision precision;           // GPU compute precision; CPU always runs fp32
        double comm_timeout_s;             // data parallel: bound on every collective
        double comm_bucket_mb;             // data parallel: gradient all-reduce bucket size
    } run;
    struct {
        ddx_model_type type;
        int in_channels, out_channels, image_size;
        int ch;                            // base channel count
        ddx_int_list ch_mult;              // channel multiplier per resolution level
        int num_res_blocks;                // ResBlocks per level
        ddx_int_list attn_resolutions;     // feature-map sizes that get self-attention
        double dropout;
        int num_classes;                   // 0 = unconditional
        int groups;                        // GroupNorm groups
        double norm_eps;
        // unet_ddpm only (diffusers UNet2DModel settings; the defaults are google/ddpm-cifar10-32's):
        ddx_int_list block_out_channels;   // per-level widths; empty = ch * ch_mult
        int attention_head_dim;            // channels per attention head; 0 = one head
        bool flip_sin_to_cos;              // timestep embedding [cos, sin] instead of [sin, cos]
        int freq_shift;                    // timestep embedding frequencies exp(-ln(1e4) i / (ch/2 - freq_shift))
        int downsample_padding;            // 0: pad right/bottom by 1; 1: pad 1 on every side
        ddx_cond cond;                     // lowres: in_channels = 2 * out_channels
    } model;
    struct {
        int timesteps;
        ddx_beta_schedule beta_schedule;
        double beta_start, beta_end;       // linear schedule only
        ddx_variance variance;
        ddx_parameterization parameterization;
        bool rescale_zero_terminal_snr;    // abar_{T-1} = 0 exactly (Lin et al. 2023)
    } diffusion;
    struct {
        ddx_dataset_kind dataset;
        char path[DDX_CONFIG_STR_MAX];     // "" = the data set's standard location
        int image_size;                    // must equal model.image_size
        bool hflip;                        // random horizontal flips
        int num_workers;
        int64_t max_image_pixels;          // image_folder: width x height limit checked before decoding
        int sr_factor;                     // model.cond lowres: low-res side = image_size / sr_factor; else 0
    } data;
    struct {
        int batch_size;                    // global batch, over all ranks
        int64_t total_steps;
        double lr, beta1, beta2, weight_decay;
        int64_t warmup_steps;
        double grad_clip;                  // max global grad norm; 0 = off
        double ema_decay;                  // 0 = no EMA
        bool ema_warmup;                   // decay min(ema_decay, (1 + step) / (10 + step))
        int64_t log_every, sample_every, checkpoint_every;  // 0 = never (sample/checkpoint)
        int keep_checkpoints;              // step_N.safetensors kept besides last.safetensors
        ddx_loss_weight loss_weight;
        double min_snr_gamma;              // loss_weight min_snr: gamma
        double max_loss_ratio;             // divergence: interval mean > ratio x median of the last 10; 0 = off
        double label_dropout;              // class-conditional: P(label -> null class) per image (classifier-free guidance)
    } train;
    struct {
        ddx_sampler sampler;
        int steps;
        double eta;                        // DDIM stochasticity: 0 = deterministic
        int n;                             // number of images
        ddx_spacing spacing;
        double guidance;                   // classifier-free guidance scale w (1 = plain conditional)
    } sample;
    struct {
        int64_t fid_every;                 // ddx-train: steps between FID evaluations; 0 = never
        int64_t fid_samples;               // images per training FID
        char ref[DDX_CONFIG_STR_MAX];      // reference .npz or image folder
        char inception[DDX_CONFIG_STR_MAX];  // weights; "" = DDX_INCEPTION / the cache path
    } eval;
    // Where each key got its value, for messages about cross-key problems found after loading
    // and --set: the file's path, and per schema key 0 = default, > 0 = line in `source`,
    // -1 = a --set override. Not part of the value: ddx_config_diff ignores it.
    struct {
        char source[DDX_CONFIG_STR_MAX];
        int32_t line[DDX_CONFIG_MAX_KEYS];
    } origin;
} ddx_config;

// The U-Net's levels and the channel width of level i (0 <= i < levels): block_out_channels
// when it is set, else ch * ch_mult[i].
int ddx_config_levels(const ddx_config *cfg);
int64_t ddx_config_level_width(const ddx_config *cfg, int i);
// The width of the sinusoidal timestep embedding (the time MLP is 4x as wide):
// block_out_channels[0] when block_out_channels is set, else ch.
int ddx_config_time_width(const ddx_config *cfg);

// Every key at its default (Ho et al. 2020 CIFAR-10 settings). Never fails.
void ddx_config_defaults(ddx_config *cfg);
// Defaults, then the keys in the YAML file at `path`. Per-key checks (type, range, enum) only;
// cross-key checks are ddx_config_validate's, so that --set can still fix them. On failure
// *cfg is left unchanged. Missing/unreadable file: DDX_E_IO naming the path.
ddx_status ddx_config_load(const char *path, ddx_config *cfg);
// The same from text in memory (a checkpoint's stored config); `what` names it in messages.
ddx_status ddx_config_load_string(const char *text, size_t len, const char *what, ddx_config *cfg);
// One override "a.b=value" (what follows --set). Lists are written [1,2,2,2] (or 1,2,2,2);
// strings are taken verbatim after '='. Same checks as the file; on failure *cfg is unchanged.
ddx_status ddx_config_set(ddx_config *cfg, const char *assignment);
// Cross-key consistency (e.g. data.image_size == model.image_size, attention resolutions the
// U-Net actually reaches, channel counts divisible by groups).
ddx_status ddx_config_validate(const ddx_config *cfg);
// defaults -> load(path, unless NULL) -> each --set in order -> validate.
ddx_status ddx_config_resolve(ddx_config *cfg, const char *path, const char *const *sets, int n_sets);
// The whole resolved config as YAML that ddx_config_load reads back to an equal struct
// (floats are written with the fewest digits that round-trip exactly).
ddx_status ddx_config_emit(const ddx_config *cfg, FILE *f);
// ddx_config_emit to `path` atomically: temp file in the same folder, fsync, rename.
ddx_status ddx_config_save(const ddx_config *cfg, const char *path);
// NULL if every key is equal, else the path of the first key that differs ("train.lr");
// what a resume uses to say which setting changed since the checkpoint.
const char *ddx_config_diff(const ddx_config *a, const ddx_config *b);
// Every key with its type, default, range/allowed values and meaning (for --help-config).
void ddx_config_describe(FILE *f);

#ifdef __cplusplus
}
#endif

#endif
