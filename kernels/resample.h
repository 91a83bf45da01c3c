// CUDA kernels of the resampling family: upsample2x, pool2x, pool2d, resize (runtime/ops.h gives their
// semantics, runtime/ops/resample.c their CPU reference).
//
// Host launchers take raw device pointers, sizes and a cudaStream_t passed as void*, enqueue
// the work and return the cudaError_t of the launch as an int (0 = success;
// cudaErrorInvalidValue (1) for sizes the front-ends would refuse). bf16 tensors are uint16_t
// bit patterns; all math is fp32. Backward launchers ACCUMULATE into their gradient output.
// Every result is deterministic (no atomics), and the floating-point operations happen in the
// same order as on the CPU, so outputs are meant to be bit-identical to the reference.
#ifndef DDX_KERNELS_RESAMPLE_H
#define DDX_KERNELS_RESAMPLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- upsample2x: x [N, H, W, C] -> y [N, 2H, 2W, C] -----------------------------------------
// bilinear = 0: nearest; 1: bilinear with align_corners=False (F.interpolate(scale_factor=2)).
int ddx_k_upsample2x_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear,
                         void *stream);
int ddx_k_upsample2x_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear,
                          void *stream);
// dx [N, H, W, C] += the adjoint applied to dy [N, 2H, 2W, C]; a gather per dx element.
int ddx_k_upsample2x_bwd_f32(float *dx, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear,
                             void *stream);
int ddx_k_upsample2x_bwd_bf16(uint16_t *dx, const uint16_t *dy, int64_t N, int64_t H, int64_t W, int64_t C,
                              int bilinear, void *stream);

// ---- pool2x: x [N, H, W, C] (H, W even) -> y [N, H/2, W/2, C] -------------------------------
// avg = 0: max (first max wins ties, a NaN wins: PyTorch's rule); 1: average.
int ddx_k_pool2x_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int avg, void *stream);
int ddx_k_pool2x_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int avg,
                      void *stream);
// dx [N, H, W, C] += the gradient of dy [N, H/2, W/2, C]; max recomputes the argmax from x.
int ddx_k_pool2x_bwd_f32(float *dx, const float *x, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C,
                         int avg, void *stream);
int ddx_k_pool2x_bwd_bf16(uint16_t *dx, const uint16_t *x, const uint16_t *dy, int64_t N, int64_t H, int64_t W,
                          int64_t C, int avg, void *stream);

// ---- pool2d: x [N, H, W, C] -> y [N, Ho, Wo, C] (runtime/ops.h: ddx_pool2d_params) ------
// avg = 0: max (-inf padding, first max wins ties, a NaN wins); 1: average, divided by kh*kw
// when count_include_pad, else by the window's pixels inside the input.
int ddx_k_pool2d_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo,
                     int kh, int kw, int stride, int pad_h, int pad_w, int avg, int count_include_pad, void *stream);
int ddx_k_pool2d_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho,
                      int64_t Wo, int kh, int kw, int stride, int pad_h, int pad_w, int avg, int count_include_pad,
                      void *stream);
// dx [N, H, W, C] += the gradient of dy [N, Ho, Wo, C]: a gather per dx element over the
// windows that hold it (max recomputes each window's argmax from x).
int ddx_k_pool2d_bwd_f32(float *dx, const float *x, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C,
                         int64_t Ho, int64_t Wo, int kh, int kw, int stride, int pad_h, int pad_w, int avg,
                         int count_include_pad, void *stream);
int ddx_k_pool2d_bwd_bf16(uint16_t *dx, const uint16_t *x, const uint16_t *dy, int64_t N, int64_t H, int64_t W,
                          int64_t C, int64_t Ho, int64_t Wo, int kh, int kw, int stride, int pad_h, int pad_w, int avg,
                          int count_include_pad, void *stream);

// ---- resize: bilinear x [N, H, W, C] -> y [N, Ho, Wo, C], align_corners=False ------------
int ddx_k_resize_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo,
                     void *stream);
int ddx_k_resize_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho,
                      int64_t Wo, void *stream);
// dx [N, H, W, C] += the adjoint applied to dy [N, Ho, Wo, C]; a gather per dx element.
int ddx_k_resize_bwd_f32(float *dx, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho,
                         int64_t Wo, void *stream);
int ddx_k_resize_bwd_bf16(uint16_t *dx, const uint16_t *dy, int64_t N, int64_t H, int64_t W, int64_t C, int64_t Ho,
                          int64_t Wo, void *stream);

#ifdef __cplusplus
}
#endif

#endif
