// The CUDA API of a build without CUDA: every call says so, so that the rest of the runtime
// needs no #if and a user who asks for the GPU learns how to get one.
#include "cuda.h"
#include "ops.h"

#define DDX_NO_CUDA "built without CUDA (reconfigure with nvcc on PATH)"

// Every entry NULL: dispatch reports the op as having no CUDA kernel.
const ddx_backend_op ddx_cuda_ops[DDX_OP_COUNT] = {0};

bool ddx_cuda_available(void) { return false; }

const char *ddx_cuda_describe(void) { return DDX_NO_CUDA; }

ddx_status ddx_cuda_ctx_create(struct ddx_cuda_ctx **out) {
    if (out) *out = NULL;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA context: " DDX_NO_CUDA);
}

void ddx_cuda_ctx_destroy(struct ddx_cuda_ctx *cc) { (void)cc; }

ddx_status ddx_cuda_sync(struct ddx_cuda_ctx *cc) {
    (void)cc;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA sync: " DDX_NO_CUDA);
}

bool ddx_cuda_capturing(void) { return false; }

ddx_status ddx_cuda_prof_record(size_t i) {
    (void)i;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA events: " DDX_NO_CUDA);
}

ddx_status ddx_cuda_prof_elapsed(size_t i, size_t j, float *ms) {
    (void)i, (void)j;
    if (ms) *ms = 0;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA events: " DDX_NO_CUDA);
}

ddx_status ddx_cuda_malloc(size_t bytes, void **out) {
    if (out) *out = NULL;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA allocation of %zu bytes: " DDX_NO_CUDA, bytes);
}

void ddx_cuda_free(void *p) { (void)p; }

void ddx_cuda_pool_trim(void) {}

size_t ddx_cuda_pool_bytes_in_use(void) { return 0; }

ddx_status ddx_cuda_memcpy(void *dst, const void *src, size_t bytes, ddx_copy_kind kind) {
    (void)dst;
    (void)src;
    (void)kind;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA copy of %zu bytes: " DDX_NO_CUDA, bytes);
}

ddx_status ddx_cuda_memset(void *dst, int byte, size_t bytes) {
    (void)dst;
    (void)byte;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA memset of %zu bytes: " DDX_NO_CUDA, bytes);
}

ddx_status ddx_cuda_timer_create(struct ddx_cuda_timer **out) {
    if (out) *out = NULL;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA timer: " DDX_NO_CUDA);
}

void ddx_cuda_timer_destroy(struct ddx_cuda_timer *t) { (void)t; }

ddx_status ddx_cuda_timer_start(struct ddx_cuda_timer *t, struct ddx_cuda_ctx *cc) {
    (void)t, (void)cc;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA timer: " DDX_NO_CUDA);
}

ddx_status ddx_cuda_timer_stop(struct ddx_cuda_timer *t, struct ddx_cuda_ctx *cc, float *ms) {
    (void)t, (void)cc;
    if (ms) *ms = 0;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA timer: " DDX_NO_CUDA);
}

ddx_status ddx_cuda_copy_async(struct ddx_cuda_ctx *cc, void *dst, const void *src, size_t bytes) {
    (void)cc, (void)dst, (void)src;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA copy of %zu bytes: " DDX_NO_CUDA, bytes);
}
