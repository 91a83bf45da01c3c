// PLACEHOLDER: host glue of the conv CUDA family.
#include "cuda/cuda_families.h"
typedef int ddx_placeholder_cuda_conv;
