// The runtime's view of the CUDA backend. Implemented by runtime/cuda/cuda_rt.c when the
// build has CUDA, and by runtime/cuda_none.c (every call answers "built without CUDA")
// otherwise, so the rest of the runtime never needs an #if.
#ifndef DDX_CUDA_H
#define DDX_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ddx_cuda_ctx;   // stream, cuBLAS handle, device index

// Built with CUDA and at least one device visible to this process.
bool ddx_cuda_available(void);
// One line: "NVIDIA H200 (sm_90, 139 GiB, driver 13.0)" or why there is none.
const char *ddx_cuda_describe(void);

ddx_status ddx_cuda_ctx_create(struct ddx_cuda_ctx **out);
void ddx_cuda_ctx_destroy(struct ddx_cuda_ctx *cc);
ddx_status ddx_cuda_sync(struct ddx_cuda_ctx *cc);

// Device memory from the caching pool: freed blocks are kept by size class and reused,
// so steady-state training does no cudaMalloc/cudaFree.
ddx_status ddx_cuda_malloc(size_t bytes, void **out);
void ddx_cuda_free(void *p);
// Returns all cached blocks to the driver.
void ddx_cuda_pool_trim(void);
size_t ddx_cuda_pool_bytes_in_use(void);

typedef enum ddx_copy_kind { DDX_COPY_H2D = 0, DDX_COPY_D2H, DDX_COPY_D2D } ddx_copy_kind;
// Synchronous with respect to the host (the runtime's default stream semantics).
ddx_status ddx_cuda_memcpy(void *dst, const void *src, size_t bytes, ddx_copy_kind kind);
ddx_status ddx_cuda_memset(void *dst, int byte, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
