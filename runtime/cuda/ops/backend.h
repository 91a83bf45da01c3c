// The CUDA op backend: one file per op family (runtime/cuda/ops/<family>.c, kernels in
// kernels/<family>.cu) adapts tape nodes to the kernel launchers, declaring here the
// forward/backward entry points that table.c's dispatch table lists.
#ifndef DDX_CUDA_OPS_BACKEND_H
#define DDX_CUDA_OPS_BACKEND_H

#include "op_impl.h"

ddx_status ddx_cuda_fill_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_copy_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_copy_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_cast_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_cast_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_reshape_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_reshape_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_add_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_add_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mul_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mul_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_scale_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_scale_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_silu_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_silu_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_relu_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_relu_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_concat_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_concat_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_conv2d_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_conv2d_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_linear_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_linear_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_group_norm_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_group_norm_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_upsample2x_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_upsample2x_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_pool2x_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_pool2x_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_attention_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_attention_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_embedding_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_embedding_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_timestep_emb_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_dropout_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_dropout_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mse_loss_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mse_loss_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_sum_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_sum_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mean_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_mean_bwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_randn_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_q_sample_fwd(ddx_ctx *c, ddx_node *n);
ddx_status ddx_cuda_sampler_step_fwd(ddx_ctx *c, ddx_node *n);

// dst += src on the context's stream, any f32/bf16 pair of equal element count (elementwise.c).
ddx_status ddx_cuda_accumulate(ddx_ctx *c, ddx_tensor *dst, const ddx_tensor *src);

#endif
