// What the evaluation tools share: a checkpoint opened for inference (the model, its
// inference-only parameter store, the schedule, the resolved config) and the uint8
// quantisation every metric sees, so ddx-eval, ddx-compare and the trainer's FID measure the
// images a user would get as PNGs, not the raw floats.
#ifndef DDX_EVAL_GEN_H
#define DDX_EVAL_GEN_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "models/checkpoint.h"
#include "models/diffusion.h"
#include "models/model.h"
#include "models/sampler.h"

typedef struct ddx_gen {
    ddx_config cfg;          // the checkpoint's stored config (or --config's)
    ddx_device dev;
    ddx_param_store ps;      // values only (ddx_param_store_finalize_inference)
    ddx_model *model;
    ddx_schedule sched;
    bool ema;                // the EMA weights were loaded
    int64_t step;            // the checkpoint's training step (0 when not a ddx checkpoint)
    char class_names[4096];  // a class-conditional checkpoint's stored names (models/classes.h), else ""
    char device_why[256];
} ddx_gen;

// Opens `ckpt` for sampling: the stored config (or `config` when the file has none; a file
// with a stored config ignores `config` only when it is NULL), the device from run.device, the
// EMA weights unless no_ema (or the file has none).
ddx_status ddx_gen_open(ddx_gen *g, const char *ckpt, const char *config, bool no_ema);
// The same from a checkpoint the caller has open and a config it has resolved (its flags and
// --set applied, validated): device, inference-only model, the weights, schedule. ck stays open.
// On error g is left for ddx_gen_close, like on success.
ddx_status ddx_gen_from(ddx_gen *g, const ddx_checkpoint *ck, const ddx_config *cfg, bool no_ema);
// Idempotent: a closed (or failed) g may be closed again.
void ddx_gen_close(ddx_gen *g);
// CUDA graphs for sampling: on unless DDX_CUDA_GRAPHS=0, off under DDX_PROFILE (which times
// every op on its own).
bool ddx_gen_graphs(void);

// A sampler over g's model. steps is read for DDIM only.
ddx_status ddx_gen_sampler(ddx_gen *g, ddx_sampler kind, int steps, double eta, uint64_t seed, int batch,
                           ddx_sampling **out);

// x in [-1, 1] to the 8-bit value a saved PNG holds (runtime/image.c's clip mode:
// u = (x + 1) / 2 clipped, floor(255 u + 0.5); NaN -> 0). tests/test_eval.c checks it
// against PNGs written and read back.
void ddx_quantize_u8(const float *x, size_t n, uint8_t *out);

double ddx_now_s(void);

// "12m05s" / "1h02m" / "45s": for ETAs.
void ddx_fmt_duration(double s, char *buf, size_t n);

// Command-line numbers: the whole string, in [lo, hi], else DDX_E_INPUT naming the flag.
ddx_status ddx_parse_i64(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out);
ddx_status ddx_parse_f64(const char *flag, const char *s, double lo, double hi, double *out);

#ifdef __cplusplus
}
#endif

#endif
