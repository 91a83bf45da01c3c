// PLACEHOLDER: host glue of the misc CUDA family.
#include "cuda/cuda_families.h"
typedef int ddx_placeholder_cuda_misc;
