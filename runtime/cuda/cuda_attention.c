// PLACEHOLDER: host glue of the attention CUDA family.
#include "cuda/cuda_families.h"
typedef int ddx_placeholder_cuda_attention;
