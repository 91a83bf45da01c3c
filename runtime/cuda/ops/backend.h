// Host glue of the CUDA op families outside cuda_ops.c: one file per family
// (runtime/cuda/cuda_<family>.c, kernels in kernels/<family>.cu), each declaring here the
// forward/backward entry points that cuda_ops.c's dispatch table lists.
#ifndef DDX_CUDA_FAMILIES_H
#define DDX_CUDA_FAMILIES_H

#include "op_impl.h"

// dst += src on the context's stream, any f32/bf16 pair of equal element count (cuda_ops.c).
ddx_status ddx_cuda_accumulate(ddx_ctx *c, ddx_tensor *dst, const ddx_tensor *src);

// conv: conv2d
ddx_status ddx_cuda_conv2d_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_conv2d_bwd(ddx_ctx *c, ddx_node *n);
// norm: group_norm, linear (cuBLAS), mse_loss, sum, mean
ddx_status ddx_cuda_group_norm_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_group_norm_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_linear_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_linear_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mse_loss_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mse_loss_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_sum_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_sum_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mean_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mean_bwd(ddx_ctx *c, ddx_node *n);
// attention: attention
ddx_status ddx_cuda_attention_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_attention_bwd(ddx_ctx *c, ddx_node *n);
// misc: upsample2x, pool2x, concat, embedding, timestep_emb, dropout
ddx_status ddx_cuda_upsample2x_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_upsample2x_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_pool2x_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_pool2x_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_concat_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_concat_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_embedding_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_embedding_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_timestep_emb_fwd(ddx_ctx *c, ddx_node *n);   // no backward (t never requires grad)
ddx_status ddx_cuda_dropout_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_dropout_bwd(ddx_ctx *c, ddx_node *n);

#endif
