// The storage type a launcher of the norm, linear and losses families is told its tensors
// have (the math is always fp32 or wider). Shared by those launcher headers.
#ifndef DDX_KERNELS_DTYPE_H
#define DDX_KERNELS_DTYPE_H

#ifdef __cplusplus
extern "C" {
#endif

// Storage types of the tensors a launcher touches (math is always fp32 or wider).
typedef enum ddx_k_norm_dt { DDX_K_NORM_F32 = 0, DDX_K_NORM_BF16 = 1 } ddx_k_norm_dt;

#ifdef __cplusplus
}
#endif

#endif
