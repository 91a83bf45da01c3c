// The FID Inception network: pytorch-fid's FIDInceptionV3 (torchvision Inception3 layout with
// the FIDInceptionA/C/E_1/E_2 blocks of the TF inception-2015-12-05 graph) up to the 2048-d
// pool3 features, plus the 1008-way fc (logits, for the Inception Score) when the weights have
// one. Inference only, on the runtime's own ops (CPU or CUDA), batched.
//
// Weights: a safetensors file with f32 tensors named as in pytorch-fid's fid_inception_v3()
// state dict (`Conv2d_1a_3x3.conv.weight` [O,I,KH,KW], `Conv2d_1a_3x3.bn.weight/.bias/
// .running_mean/.running_var`, ..., `Mixed_7c.branch_pool.bn.running_var`, optional
// `fc.weight` [1008,2048] and `fc.bias` [1008]). BatchNorm (eps 1e-3) is folded into each conv
// at load. A missing tensor or a wrong shape is DDX_E_INPUT naming the tensor and the file.
//
// Input: host f32 NHWC images in [0, 1] (quantised by the caller if it wants PNG-exact
// statistics), 1 channel (repeated to 3) or 3. As pytorch-fid's InceptionV3(resize_input=True,
// normalize_input=True): bilinear resize to 299x299 (align_corners=False, no antialiasing) on
// the [0, 1] values first, then 2x-1, then the network.
#ifndef DDX_INCEPTION_H
#define DDX_INCEPTION_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>

#include "runtime/status.h"
#include "runtime/tensor.h"

#define DDX_INCEPTION_FEATURES 2048
#define DDX_INCEPTION_LOGITS 1008
#define DDX_INCEPTION_SIZE 299

typedef enum ddx_inception_precision {
    DDX_INCEPTION_FP32 = 0,   // the reference; the only one on the CPU
    DDX_INCEPTION_TF32,       // CUDA: f32 tensors, convs on the TF32 tensor cores
    DDX_INCEPTION_BF16,       // CUDA: bf16 activations and weights, fp32 accumulation and output
} ddx_inception_precision;

typedef struct ddx_inception ddx_inception;

// Loads and folds the weights onto `dev` and makes the network's own context. `batch` bounds
// the images per forward pass (memory grows with it; 0 picks a default: 8 on the CPU, 64 on
// CUDA). TF32/BF16 on the CPU is DDX_E_INPUT. On failure *out is NULL and the thread's
// error message (ddx_last_error) names the file and tensor.
ddx_status ddx_inception_load(const char *path, ddx_device dev, ddx_inception_precision prec, int batch,
                              ddx_inception **out);
void ddx_inception_free(ddx_inception *net);
// Whether the weights had fc.weight/fc.bias (logits available).
bool ddx_inception_has_logits(const ddx_inception *net);
int ddx_inception_batch(const ddx_inception *net);

// images: host f32 [n, h, w, c] in [0, 1], c = 1 or 3, h, w >= 1. pool3: host f32 [n, 2048].
// logits: host f32 [n, 1008] or NULL (must be NULL when !has_logits). Runs in chunks of the
// network's batch; any n >= 1.
ddx_status ddx_inception_features(ddx_inception *net, const float *images, int n, int h, int w, int c, float *pool3,
                                  float *logits);

// Writes a weights file holding every tensor ddx_inception_load reads (and the fc when with_fc),
// filled by a fixed formula of each tensor's name and element index (the one
// tests/reference/gen_inception.py documents and tests/test_inception.c checks against
// pytorch-fid): not a trained network, but the real names, shapes and value ranges, for tests and
// benchmarks of the whole pipeline without the real weights. Atomic (runtime/safetensors.h).
ddx_status ddx_inception_write_test_weights(const char *path, bool with_fc);

#ifdef __cplusplus
}
#endif

#endif
