// CUDA kernels of conv2d (runtime/ops.h gives the semantics, runtime/ops/conv.c the CPU
// reference): forward, input gradient (dgrad), weight gradient (wgrad) and bias gradient.
//
// Layouts: x [N, H, W, Ci] (NHWC), w [Co, KH, KW, Ci] (OHWI), bias [Co], y [N, Ho, Wo, Co].
// All three products are implicit GEMMs: the im2col matrix is never stored, each tile of it
// is gathered from x (or dy) straight into shared memory, padding taps reading as zero.
//
// Launcher contract (as kernels/elementwise.h): raw device pointers, the stream as void*,
// the cudaError_t of the launch returned as an int (0 = success, cudaErrorInvalidValue for
// geometry the kernels do not handle: pixel or K counts of 2^30 or more). bf16 tensors are
// uint16_t bit patterns; every product and sum is fp32 (the bias-gradient sums fp64).
// Backward launchers ACCUMULATE into dx, dw, db. Results are deterministic: every sum runs
// in an order fixed by the shapes alone (no atomics; split-K partials are folded in split
// order by a second kernel), so the same shapes give the same bits on any card.
#ifndef DDX_KERNELS_CONV_H
#define DDX_KERNELS_CONV_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// The geometry of one conv2d. Ho, Wo are the output's (pad_bottom and pad_right only enter
// through them); stride is 1 or 2.
typedef struct ddx_k_conv_geom {
    int64_t N, H, W, Ci;
    int64_t Co, KH, KW;
    int64_t Ho, Wo;
    int stride, pad_top, pad_left;
    // dgrad only: 1 writes dx (every element, so it need not be zeroed first), 0 (the default
    // of a zero-initialised geometry) adds into it.
    int dx_overwrite;
    // forward only: y = conv + bias + residual ([N, Ho, Wo, Co], y's dtype), NULL for none.
    const void *residual;
} ddx_k_conv_geom;

// 1 when the kernels handle this geometry (every pixel count and GEMM dimension below 2^30,
// stride 1 or 2, non-negative padding), else 0.
int ddx_k_conv2d_supported(const ddx_k_conv_geom *g);

// Precision: _f32 computes in fp32 FMA (SIMT); _bf16 on the tensor cores (bf16 products, fp32
// accumulation) when the channel counts the gathers walk are multiples of 8 and the tensors
// 16-byte aligned, else in fp32 SIMT; _tf32 takes f32 tensors and uses the tensor cores in TF32
// (operands rounded to 10 mantissa bits, fp32 accumulation) when those channel counts are
// multiples of 4, else fp32 SIMT. DDX_CONV_SIMT=1 in the environment keeps everything SIMT.

// y = conv(x, w) + bias (bias may be NULL).
int ddx_k_conv2d_fwd_f32(float *y, const float *x, const float *w, const float *bias, const ddx_k_conv_geom *g,
                         void *stream);
int ddx_k_conv2d_fwd_bf16(uint16_t *y, const uint16_t *x, const uint16_t *w, const uint16_t *bias,
                          const ddx_k_conv_geom *g, void *stream);
int ddx_k_conv2d_fwd_tf32(float *y, const float *x, const float *w, const float *bias, const ddx_k_conv_geom *g,
                          void *stream);

// dx += the input gradient of dy [N, Ho, Wo, Co] through w.
int ddx_k_conv2d_dgrad_f32(float *dx, const float *dy, const float *w, const ddx_k_conv_geom *g, void *stream);
int ddx_k_conv2d_dgrad_bf16(uint16_t *dx, const uint16_t *dy, const uint16_t *w, const ddx_k_conv_geom *g,
                            void *stream);
int ddx_k_conv2d_dgrad_tf32(float *dx, const float *dy, const float *w, const ddx_k_conv_geom *g, void *stream);

// dw += the weight gradient, summed over the N*Ho*Wo output pixels split into
// ddx_k_conv2d_wgrad_splits(g) ranges. When that is more than 1, `part` must hold
// splits * Co * KH*KW*Ci floats of scratch (fully overwritten); with 1 split it may be NULL.
int64_t ddx_k_conv2d_wgrad_splits(const ddx_k_conv_geom *g);
int ddx_k_conv2d_wgrad_f32(float *dw, const float *dy, const float *x, float *part, const ddx_k_conv_geom *g,
                           void *stream);
// The bf16 / tf32 weight gradients may run on the tensor cores with their own split: their
// scratch is ddx_k_conv2d_wgrad_splits_{bf16,tf32}(g) * Co * KH*KW*Ci floats (8-byte aligned).
int64_t ddx_k_conv2d_wgrad_splits_bf16(const ddx_k_conv_geom *g);
int64_t ddx_k_conv2d_wgrad_splits_tf32(const ddx_k_conv_geom *g);
int ddx_k_conv2d_wgrad_bf16(uint16_t *dw, const uint16_t *dy, const uint16_t *x, float *part,
                            const ddx_k_conv_geom *g, void *stream);
int ddx_k_conv2d_wgrad_tf32(float *dw, const float *dy, const float *x, float *part, const ddx_k_conv_geom *g,
                            void *stream);

// db += the column sums of dy viewed as [N*Ho*Wo, Co], in two passes through `part`:
// ddx_k_conv2d_bgrad_parts(g) * Co doubles of scratch (fully overwritten).
int64_t ddx_k_conv2d_bgrad_parts(const ddx_k_conv_geom *g);
int ddx_k_conv2d_bgrad_f32(float *db, const float *dy, double *part, const ddx_k_conv_geom *g, void *stream);
int ddx_k_conv2d_bgrad_bf16(uint16_t *db, const uint16_t *dy, double *part, const ddx_k_conv_geom *g, void *stream);

#ifdef __cplusplus
}
#endif

#endif
