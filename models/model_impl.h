// For network implementers (models/unet_*.c): how a network registers its parameters and
// its forward. Callers use models/model.h only.
#ifndef DDX_MODEL_IMPL_H
#define DDX_MODEL_IMPL_H

#include "models/model.h"

// How ddx_model_init fills a parameter (PyTorch's defaults for the module that owns it).
typedef enum ddx_init_kind {
    DDX_INIT_UNIFORM_FAN_IN = 0,  // conv/linear weight and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    DDX_INIT_ONES,                // GroupNorm weight
    DDX_INIT_ZEROS,               // GroupNorm bias
    DDX_INIT_NORMAL,              // nn.Embedding: N(0, 1)
} ddx_init_kind;

typedef struct ddx_init_spec {
    ddx_tensor *t;
    ddx_init_kind kind;
    int64_t fan_in;
} ddx_init_spec;

typedef ddx_tensor *(*ddx_model_forward_fn)(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y);

struct ddx_model {
    ddx_config cfg;                // the resolved config the model was built from
    ddx_param_store *ps;
    void *impl;                    // the network's own struct (parameter tensor pointers)
    ddx_model_forward_fn forward;
    void (*free_impl)(void *impl);
    ddx_dtype compute;             // DDX_F32 or DDX_BF16 (ddx_model_set_compute)
    // During one ddx_model_forward in a narrower compute dtype: the whole parameter store cast
    // at once (ddx_model_w hands out views into it), and the headers that cast reads and
    // accumulates its gradient into. NULL outside a forward.
    ddx_tensor *cast_all;
    ddx_tensor store_value, store_grad;
    ddx_init_spec *init;           // one per parameter, in creation order
    size_t n_init, cap_init;
};

// Adds parameter `name` of `shape` to m->ps and records how to initialise it; NULL (with the
// error message set) when the store refuses. Conv weights are OHWI [Co, KH, KW, Ci].
ddx_tensor *ddx_model_param(ddx_model *m, const char *name, int ndim, const int64_t *shape, ddx_init_kind kind,
                            int64_t fan_in);
// printf-style name (the U-Nets build names like "down_blocks.1.resnets.0.conv1.weight").
ddx_tensor *ddx_model_paramf(ddx_model *m, int ndim, const int64_t *shape, ddx_init_kind kind, int64_t fan_in,
                             const char *fmt, ...) __attribute__((format(printf, 6, 7)));

// Parameter p as the network computes with it: p itself in fp32, else p in m->compute, as a
// view into the store-wide cast ddx_model_forward makes (one cast kernel forward, one
// accumulate backward, whose gradient lands in the fp32 store), or a cast of its own when p
// is not in the store. Conv and linear weights and biases go through this; GroupNorm's scale
// and shift stay fp32 (the op takes them so), as does anything the network keeps in fp32 on
// purpose.
ddx_tensor *ddx_model_w(ddx_ctx *c, const ddx_model *m, ddx_tensor *p);

// Each network: reads m->cfg.model, registers its parameters with ddx_model_param, sets
// m->impl, m->forward and m->free_impl.
ddx_status ddx_unet_ddpm_create(ddx_model *m);
ddx_status ddx_unet_plain_create(ddx_model *m);

#endif
