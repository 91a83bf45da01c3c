// The low-resolution conditioning of super-resolution models (model.cond lowres): host-side
// resampling of f32 HWC images, the same bits on every device because it runs on the host.
//
//   low  = area downsample of x0 by f: each low-res pixel is the mean of its f x f block
//          (PyTorch F.avg_pool2d(kernel_size=f, stride=f); PIL/OpenCV "area" for whole factors);
//   cond = bicubic upsample of low by f, PyTorch F.interpolate(mode='bicubic',
//          align_corners=False) semantics: source coordinate (i + 0.5) / f - 0.5, Keys' cubic
//          convolution with A = -0.75, neighbours outside the image clamped to the border;
//          then clamped to [-1, 1], the range of the data, as an 8-bit bicubic image would be.
//
// Why on the host and not as ops: the conditioning is a fixed function of the batch with no
// gradient, and costs about 30 flops per pixel against the U-Net's hundreds of thousands, so
// the trainer computes it per batch next to the data and uploads it with the batch (on CUDA it
// rides in the graph step's staged inputs); CPU and CUDA training then see identical inputs.
#ifndef DDX_LOWRES_H
#define DDX_LOWRES_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "config/config.h"
#include "runtime/status.h"

// x [n, H, W, C] -> out [n, H/f, W/f, C]; f >= 1 must divide H and W (DDX_E_INPUT otherwise).
ddx_status ddx_area_downsample(const float *x, int64_t n, int H, int W, int C, int f, float *out);
// x [n, h, w, C] -> out [n, h f, w f, C], bicubic as above, not clamped (the PyTorch values).
ddx_status ddx_bicubic_upsample(const float *x, int64_t n, int h, int w, int C, int f, float *out);
// Clamps n values to [lo, hi] in place.
void ddx_clamp_f32(float *x, int64_t n, float lo, float hi);
// The conditioning input of a model.cond lowres model for clean images x0 [n, S, S, C] in
// [-1, 1] (S = model.image_size, C = model.out_channels, f = data.sr_factor): area down, bicubic
// up, clamped to [-1, 1], into out [n, S, S, C].
ddx_status ddx_lowres_cond(const ddx_config *cfg, const float *x0, int64_t n, float *out);
// The conditioning from a low-res image low [n, S/f, S/f, C] (what ddx-superres reads).
ddx_status ddx_lowres_cond_from_low(const ddx_config *cfg, const float *low, int64_t n, float *out);

#ifdef __cplusplus
}
#endif

#endif
