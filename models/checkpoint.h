// Checkpoints: safetensors files holding a model's weights under their PyTorch state-dict
// names (conv weights OIHW, as PyTorch and diffusers store them), optionally the EMA weights
// ("ema/<name>") and the Adam moments ("adam_m/<name>", "adam_v/<name>"), and in
// __metadata__ the resolved config and the training position. Written atomically. Reading
// treats the file as untrusted: every parameter must be present with its shape, nothing
// else may be, and nothing reaches the parameter store until the whole file checked out.
// Files without ddx metadata (a published state dict converted to safetensors) load too.
#ifndef DDX_CHECKPOINT_H
#define DDX_CHECKPOINT_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "runtime/tensor.h"

#define DDX_CKPT_FORMAT "ddx-checkpoint-1"

typedef struct ddx_ckpt_state {
    int64_t step;          // optimizer steps done
    int64_t data_batch;    // index of the next batch the loader hands out
    uint64_t seed;
    double loss_sum;       // loss accumulated since the last log line, and how many steps
    int64_t loss_n;
    double elapsed_s;      // training wall time so far, over every resume (0 when not stored)
    // Class-conditional models: the class names, one per line ("T-shirt/top\nTrouser\n..."),
    // metadata "class_names", so sampling by name needs no data set. NULL: none. Read back, it
    // points into the open checkpoint (valid until ddx_checkpoint_close).
    const char *class_names;
} ddx_ckpt_state;

typedef enum ddx_ckpt_content {
    DDX_CKPT_WEIGHTS = 1,        // plain names
    DDX_CKPT_EMA = 2,            // ema/<name>
    DDX_CKPT_ADAM = 4,           // adam_m/<name>, adam_v/<name>
} ddx_ckpt_content;

// Writes `content` (a mask of ddx_ckpt_content) of ps with cfg and st in the metadata.
ddx_status ddx_checkpoint_save(const char *path, const ddx_param_store *ps, int content, const ddx_config *cfg,
                               const ddx_ckpt_state *st);

typedef struct ddx_checkpoint {
    char *path;
    struct ddx_st_file *file;
    bool is_ddx;           // has DDX_CKPT_FORMAT metadata
    int content;           // what the file holds (mask)
    bool has_config;
    ddx_config cfg;        // the stored config when has_config
    ddx_ckpt_state state;  // zero unless is_ddx
} ddx_checkpoint;

// Reads and validates the file (not yet against a model). Truncated, corrupt or hostile files:
// DDX_E_INPUT naming the path.
ddx_status ddx_checkpoint_open(const char *path, ddx_checkpoint *ck);
void ddx_checkpoint_close(ddx_checkpoint *ck);
// Loads the parts in `want` into ps's buffers (weights -> VALUE, ema -> EMA, adam -> ADAM_M/V).
// A missing or wrong-shaped parameter, or a tensor the model does not have: DDX_E_INPUT naming
// the file and the tensor; the store is left untouched. Legacy diffusers names are accepted.
ddx_status ddx_checkpoint_load(const ddx_checkpoint *ck, ddx_param_store *ps, int want);
// For inference: loads the model weights, or with ema the EMA weights (ema/<name>), into ps's
// VALUE buffer, the only one an inference store has (ddx_param_store_finalize_inference).
// The same checks as ddx_checkpoint_load.
ddx_status ddx_checkpoint_load_value(const ddx_checkpoint *ck, ddx_param_store *ps, bool ema);

#ifdef __cplusplus
}
#endif

#endif
