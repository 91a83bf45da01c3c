// Tensors, arenas and the parameter store.
// Layout is NHWC everywhere; a tensor is always contiguous, up to 4-D.
#ifndef DDX_TENSOR_H
#define DDX_TENSOR_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define DDX_MAX_DIMS 4

typedef enum ddx_dtype { DDX_F32 = 0, DDX_BF16, DDX_I32, DDX_U8, DDX_DTYPE_COUNT } ddx_dtype;
typedef enum ddx_device { DDX_CPU = 0, DDX_CUDA, DDX_DEVICE_COUNT } ddx_device;

size_t ddx_dtype_size(ddx_dtype dt);
const char *ddx_dtype_name(ddx_dtype dt);
const char *ddx_device_name(ddx_device dev);

typedef struct ddx_tensor {
    void *data;                      // device memory when device == DDX_CUDA
    int64_t shape[DDX_MAX_DIMS];     // entries past ndim are 1
    int ndim;
    ddx_dtype dtype;
    ddx_device device;
    bool requires_grad;              // grads flow into this tensor in backward
    struct ddx_tensor *grad;         // same shape/dtype/device; allocated lazily (NULL until needed)
    const char *name;                // parameter name, or NULL for activations
} ddx_tensor;

int64_t ddx_numel(const ddx_tensor *t);
size_t ddx_nbytes(const ddx_tensor *t);
// Same shape (ndim and every dim).
bool ddx_same_shape(const ddx_tensor *a, const ddx_tensor *b);
// "[2, 8, 8, 64]" into buf; returns buf.
const char *ddx_shape_str(const ddx_tensor *t, char *buf, size_t n);

// A tensor header over memory owned elsewhere (arena, parameter store, caller).
ddx_tensor ddx_tensor_wrap(void *data, ddx_dtype dt, ddx_device dev, int ndim, const int64_t *shape);
// Rows [n0, n1) along dim 0: shares memory, no autograd.
ddx_tensor ddx_tensor_slice(const ddx_tensor *t, int64_t n0, int64_t n1);

// ---------------------------------------------------------------------------------------
// Arenas: bump allocators over one device's memory. reset() frees everything at once, so a
// step's activations land at the same addresses every step (what CUDA graph replay needs).
// When a block runs out the arena chains another; the next reset coalesces them into one
// block of the high-water size so that from then on addresses repeat.
typedef struct ddx_arena_block {
    struct ddx_arena_block *next;
    uint8_t *base;
    size_t size, used;
} ddx_arena_block;

typedef struct ddx_arena {
    const char *name;
    ddx_device device;
    ddx_arena_block *head;      // current block first
    size_t peak;                // high-water bytes in use since creation
    size_t in_use;              // bytes in use now, over all blocks
    // Test mode: every allocation is poisoned (0xFF bytes: NaN for f32/bf16) and followed by
    // DDX_GUARD_BYTES of a canary pattern that ddx_arena_check_guards() verifies.
    bool debug;
    struct ddx_guard *guards;   // debug only: list of guard regions
    size_t n_guards, cap_guards;
} ddx_arena;

#define DDX_ARENA_ALIGN 256
#define DDX_GUARD_BYTES DDX_ARENA_ALIGN   // a full alignment unit keeps the next allocation aligned

ddx_status ddx_arena_init(ddx_arena *a, const char *name, ddx_device dev, size_t initial_bytes);
void ddx_arena_free(ddx_arena *a);
void *ddx_arena_alloc(ddx_arena *a, size_t bytes);   // NULL and an error message on failure
ddx_status ddx_arena_reset(ddx_arena *a);
// DDX_E_INTERNAL naming the arena and offset if any guard region was overwritten.
ddx_status ddx_arena_check_guards(const ddx_arena *a);
size_t ddx_arena_capacity(const ddx_arena *a);

// Scratch that an op needs only during its own call: take a mark before allocating it and
// rewind after, so the space is reused by the next op instead of living until the step's
// reset. Only memory allocated after the mark may be released this way, and nothing may
// still refer to it (on CUDA: later work on the same stream may overwrite it, which stream
// order makes safe). In debug mode the rewind first verifies the released guards.
typedef struct ddx_arena_mark {
    ddx_arena_block *block;
    size_t used, in_use, n_guards;
} ddx_arena_mark;
ddx_arena_mark ddx_arena_mark_get(const ddx_arena *a);
ddx_status ddx_arena_rewind(ddx_arena *a, ddx_arena_mark m);

// ---------------------------------------------------------------------------------------
// Parameter store: every parameter is a view into one flat f32 buffer; gradients, Adam m and
// v, and EMA are flat buffers of the same layout, so optimizer, grad-norm, EMA and all-reduce
// run over plain ranges. Build it in two phases: add() every parameter, then finalize().
typedef struct ddx_param {
    char *name;                   // PyTorch state-dict key
    ddx_tensor value;             // view into store->value
    ddx_tensor grad;              // view into store->grad
    size_t offset;                // element offset in every flat buffer
} ddx_param;

typedef enum ddx_param_buf { DDX_PBUF_VALUE = 0, DDX_PBUF_GRAD, DDX_PBUF_ADAM_M, DDX_PBUF_ADAM_V, DDX_PBUF_EMA, DDX_PBUF_COUNT } ddx_param_buf;

typedef struct ddx_param_store {
    ddx_device device;
    ddx_param **params;           // individually allocated: the tensor pointers handed out stay valid
    size_t n_params, cap_params;
    size_t numel;                 // total f32 elements (padded per param to 64-element alignment)
    float *buf[DDX_PBUF_COUNT];   // each numel floats on `device`; NULL before finalize
    bool finalized;
} ddx_param_store;

void ddx_param_store_init(ddx_param_store *s, ddx_device dev);
// Returns the parameter's value tensor (data NULL until finalize; the pointer stays valid).
ddx_tensor *ddx_param_add(ddx_param_store *s, const char *name, int ndim, const int64_t *shape);
ddx_status ddx_param_store_finalize(ddx_param_store *s);   // allocates and zeroes all buffers
// Inference: only the VALUE buffer (no gradient, Adam or EMA memory); the grads stay NULL.
ddx_status ddx_param_store_finalize_inference(ddx_param_store *s);
// The first nbufs buffers of ddx_param_buf (1: VALUE only; DDX_PBUF_COUNT: all).
ddx_status ddx_param_store_finalize_bufs(ddx_param_store *s, int nbufs);
// Bytes of the buffers allocated on the store's device.
size_t ddx_param_store_bytes(const ddx_param_store *s);
ddx_param *ddx_param_find(ddx_param_store *s, const char *name);
void ddx_param_store_free(ddx_param_store *s);
// Parameter count (real elements, not padding).
size_t ddx_param_count(const ddx_param_store *s);

// ---------------------------------------------------------------------------------------
// Host <-> device helpers that work for both backends.
ddx_status ddx_memcpy(void *dst, ddx_device ddev, const void *src, ddx_device sdev, size_t bytes);
ddx_status ddx_dev_alloc(ddx_device dev, size_t bytes, void **out);  // from the device pool
ddx_status ddx_dev_memset(ddx_device dev, void *p, int byte, size_t bytes);
void ddx_dev_free(ddx_device dev, void *p);

// bf16 conversion, round-to-nearest-even, NaN kept quiet.
static inline uint16_t ddx_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}
static inline float ddx_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

#ifdef __cplusplus
}
#endif

#endif
