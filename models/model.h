// The networks: built from runtime ops, chosen by model.type in the config.
//
// Parameter names and shapes are the PyTorch state-dict keys of the reference implementation
// (diffusers UNet2DModel for unet_ddpm; tests/reference/make_unet_plain_fixtures.py for unet_plain),
// except that conv weights live in memory as OHWI [Co,KH,KW,Ci] (NHWC compute) and are OIHW
// in files: every 4-D parameter is a conv weight and models/checkpoint.c transposes it.
#ifndef DDX_MODEL_H
#define DDX_MODEL_H

#ifdef __cplusplus
extern "C" {
#endif

#include "config/config.h"
#include "runtime/ops.h"

typedef struct ddx_model ddx_model;

// Adds every parameter of the network cfg->model describes to `ps` (which must not be
// finalized yet) and returns the model. Bad model settings: DDX_E_INPUT naming the key.
ddx_status ddx_model_create(const ddx_config *cfg, ddx_param_store *ps, ddx_model **out);
// After ddx_param_store_finalize: PyTorch's default initialisation (conv/linear weights and
// biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), GroupNorm weight 1 bias 0, embeddings N(0,1)),
// drawn from Philox stream DDX_RNG_STREAM_INIT keyed by seed, parameter k using step k:
// the same seed gives the same weights on every device.
ddx_status ddx_model_init(const ddx_model *m, uint64_t seed);
// x [N,H,W,in_channels] f32, t [N] f32 timesteps (integers 0..T-1 as floats), y [N] i32
// class labels or NULL (only when num_classes > 0) -> [N,H,W,out_channels].
// Dropout is active when c->training.
ddx_tensor *ddx_model_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y);
// The dtype the network computes in: DDX_F32 (the default, and the CPU reference) or DDX_BF16
// (mixed precision: activations bf16, weights cast from the fp32 store at each use, fp32
// GroupNorm statistics and accumulation inside every kernel; the forward still takes and
// returns f32 tensors). Anything else: DDX_E_INPUT.
ddx_status ddx_model_set_compute(ddx_model *m, ddx_dtype dt);
ddx_dtype ddx_model_compute(const ddx_model *m);
// The store this model's parameters live in.
ddx_param_store *ddx_model_params(const ddx_model *m);
void ddx_model_free(ddx_model *m);

// Older names for the same tensors that published checkpoints use (diffusers' deprecated
// attention keys: query/key/value/proj_attn -> to_q/to_k/to_v/to_out.0). Writes the current
// name into buf and returns buf, or returns NULL when `name` needs no renaming.
const char *ddx_model_rename_legacy(const char *name, char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
