// Image quality metrics shared by the evaluation, inpainting and super-resolution tools.
//
// Images are f32 [h, w, c] (HWC, the runtime's image layout) with data range 1 (pixel values
// in [0, 1]); everything is computed in double. A mask, where given, is h*w bytes, nonzero for
// a pixel that counts (all its channels); NULL means the whole image.
#ifndef DDX_EVAL_METRICS_H
#define DDX_EVAL_METRICS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// PSNR in dB with data range 1: 10 log10(1 / MSE), the MSE over every counted element (as
// skimage.metrics.peak_signal_noise_ratio(a, b, data_range=1) for a NULL mask). +INFINITY when
// the counted elements are equal; NAN when the mask counts no pixel or a dimension is < 1.
double ddx_psnr(const float *a, const float *b, int h, int w, int c, const uint8_t *mask);

// The side of the SSIM window: a Gaussian of sigma 1.5 truncated at 3.5 sigma (radius 5).
#define DDX_SSIM_WIN 11

// SSIM of Wang et al. 2004 as skimage.metrics.structural_similarity(a, b, data_range=1,
// channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False) computes it
// (K1 0.01, K2 0.03): per channel, local statistics under the Gaussian window with the image
// mirrored at its borders (scipy's "reflect"), the SSIM map averaged over the pixels at least 5
// from every border; then the mean over channels.
// With a mask: the SSIM map averaged over the counted pixels instead, border pixels included
// (their statistics use the mirrored image), so that a filled region touching the border counts.
// NAN when h or w is below DDX_SSIM_WIN, c < 1, or the mask counts no pixel.
double ddx_ssim(const float *a, const float *b, int h, int w, int c, const uint8_t *mask);

#ifdef __cplusplus
}
#endif

#endif
