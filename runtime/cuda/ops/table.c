// The CUDA dispatch table: each op's entry points, defined in its family's file under
// runtime/cuda/ops/.
#include "cuda/ops/backend.h"

const ddx_backend_op ddx_cuda_ops[DDX_OP_COUNT] = {
    [DDX_OP_FILL] = {ddx_cuda_fill_fwd, NULL},
    [DDX_OP_COPY] = {ddx_cuda_copy_fwd, ddx_cuda_copy_bwd},
    [DDX_OP_CAST] = {ddx_cuda_cast_fwd, ddx_cuda_cast_bwd},
    [DDX_OP_RESHAPE] = {ddx_cuda_reshape_fwd, ddx_cuda_reshape_bwd},
    [DDX_OP_ADD] = {ddx_cuda_add_fwd, ddx_cuda_add_bwd},
    [DDX_OP_MUL] = {ddx_cuda_mul_fwd, ddx_cuda_mul_bwd},
    [DDX_OP_SCALE] = {ddx_cuda_scale_fwd, ddx_cuda_scale_bwd},
    [DDX_OP_SILU] = {ddx_cuda_silu_fwd, ddx_cuda_silu_bwd},
    [DDX_OP_RELU] = {ddx_cuda_relu_fwd, ddx_cuda_relu_bwd},
    [DDX_OP_CONCAT] = {ddx_cuda_concat_fwd, ddx_cuda_concat_bwd},
    [DDX_OP_CONV2D] = {ddx_cuda_conv2d_fwd, ddx_cuda_conv2d_bwd},
    [DDX_OP_LINEAR] = {ddx_cuda_linear_fwd, ddx_cuda_linear_bwd},
    [DDX_OP_GROUP_NORM] = {ddx_cuda_group_norm_fwd, ddx_cuda_group_norm_bwd},
    [DDX_OP_UPSAMPLE2X] = {ddx_cuda_upsample2x_fwd, ddx_cuda_upsample2x_bwd},
    [DDX_OP_POOL2X] = {ddx_cuda_pool2x_fwd, ddx_cuda_pool2x_bwd},
    [DDX_OP_ATTENTION] = {ddx_cuda_attention_fwd, ddx_cuda_attention_bwd},
    [DDX_OP_EMBEDDING] = {ddx_cuda_embedding_fwd, ddx_cuda_embedding_bwd},
    [DDX_OP_TIMESTEP_EMB] = {ddx_cuda_timestep_emb_fwd, NULL},
    [DDX_OP_DROPOUT] = {ddx_cuda_dropout_fwd, ddx_cuda_dropout_bwd},
    [DDX_OP_MSE_LOSS] = {ddx_cuda_mse_loss_fwd, ddx_cuda_mse_loss_bwd},
    [DDX_OP_SUM] = {ddx_cuda_sum_fwd, ddx_cuda_sum_bwd},
    [DDX_OP_MEAN] = {ddx_cuda_mean_fwd, ddx_cuda_mean_bwd},
    [DDX_OP_RANDN] = {ddx_cuda_randn_fwd, NULL},
    [DDX_OP_Q_SAMPLE] = {ddx_cuda_q_sample_fwd, NULL},
    [DDX_OP_SAMPLER_STEP] = {ddx_cuda_sampler_step_fwd, NULL},
};
