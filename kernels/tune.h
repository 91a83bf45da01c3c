// Tuning knobs: the DDX_CONV_*, DDX_ATTN_* and DDX_GN_* environment variables that pick a
// kernel variant or a size for comparisons and benchmarks (never needed for normal use), in
// one table (name, values, default, meaning) and read through one function, ddx_tune_raw.
// Each reader still parses its value as before and caches it for the process (see the file
// named in docs/ARCHITECTURE.md's environment table, which lists the same variables).
// Plain C, no CUDA: included by kernels/*.cu and by runtime/ops/conv.c.
#ifndef DDX_KERNELS_TUNE_H
#define DDX_KERNELS_TUNE_H

#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

// KNOB_ENV("NAME", ID, "values", "default", "what it does")
#define DDX_TUNE_KNOBS(KNOB_ENV)                                                                               \
    KNOB_ENV("DDX_CONV_SCRATCH_KB", CONV_SCRATCH_KB, "KiB, at least 4", "1024",                                 \
             "CPU conv im2col scratch size per thread")                                                        \
    KNOB_ENV("DDX_CONV_TC_BM", CONV_TC_BM, "64, 128, 256", "by shape (64 or 128)",                              \
             "rows per block of the tensor-core conv kernels")                                                 \
    KNOB_ENV("DDX_CONV_TC_KS", CONV_TC_KS, "1 or 2", "2", "K-tile depth of the tensor-core conv kernels")      \
    KNOB_ENV("DDX_CONV_WGRAD_BLOCKS", CONV_WGRAD_BLOCKS, "1..65536", "512",                                     \
             "target block count of the split-K conv weight gradient")                                         \
    KNOB_ENV("DDX_CONV_SIMT", CONV_SIMT, "1", "off", "keep bf16 convs on the SIMT kernels")                    \
    KNOB_ENV("DDX_ATTN_FWD_V1", ATTN_FWD_V1, "set", "off",                                                     \
             "the double-buffered K/V bf16 attention forward instead of the single-buffer default")            \
    KNOB_ENV("DDX_ATTN_FWD_MT", ATTN_FWD_MT, "1", "off",                                                        \
             "the default attention forward with one 16-row tile per warp at every head_dim")                  \
    KNOB_ENV("DDX_ATTN_BWD_V1", ATTN_BWD_V1, "set", "off", "the bf16 attention backward kernels that recompute S") \
    KNOB_ENV("DDX_GN_CLUSTER", GN_CLUSTER, "0, 1, 2, 4, 8, 16", "automatic",                                    \
             "GroupNorm: 0 = always the tiled kernels; N = that cluster size wherever an item fits")           \
    KNOB_ENV("DDX_GN_CL_V2", GN_CL_V2, "0", "1", "0 selects the two-pass GroupNorm cluster kernels")            \
    KNOB_ENV("DDX_GN_DEBUG", GN_DEBUG, "set", "off", "one stderr line per distinct GroupNorm (direction, shape, path)")

typedef enum ddx_tune {
#define DDX_TUNE_ENUM(name, id, values, def, doc) DDX_TUNE_##id,
    DDX_TUNE_KNOBS(DDX_TUNE_ENUM)
#undef DDX_TUNE_ENUM
        DDX_TUNE_COUNT
} ddx_tune;

typedef struct ddx_tune_info {
    const char *name, *values, *def, *doc;
} ddx_tune_info;

static inline const ddx_tune_info *ddx_tune_table(void) {
#define DDX_TUNE_ROW(name, id, values, def, doc) {name, values, def, doc},
    static const ddx_tune_info table[DDX_TUNE_COUNT] = {DDX_TUNE_KNOBS(DDX_TUNE_ROW)};
#undef DDX_TUNE_ROW
    return table;
}

// The raw value of knob k, NULL when unset: the one place these variables are read.
static inline const char *ddx_tune_raw(ddx_tune k) { return getenv(ddx_tune_table()[k].name); }

#ifdef __cplusplus
}
#endif

#endif
