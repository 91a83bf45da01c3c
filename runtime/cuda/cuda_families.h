// Host glue of the CUDA op families outside cuda_ops.c: one file per family
// (runtime/cuda/cuda_<family>.c, kernels in kernels/<family>.cu), each declaring here the
// forward/backward entry points that cuda_ops.c's dispatch table lists.
#ifndef DDX_CUDA_FAMILIES_H
#define DDX_CUDA_FAMILIES_H

#include "op_impl.h"

// conv: conv2d
// norm: group_norm, linear (cuBLAS), mse_loss, sum, mean
// attention: attention
// misc: upsample2x, pool2x, concat, embedding, timestep_emb, dropout

#endif
