// The runtime's view of the CUDA backend. Implemented by runtime/cuda/device.c (and the op backend in runtime/cuda/ops/) when the
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
// Op timing for DDX_PROFILE: records timing event i (a process-wide pool, grown on demand) on
// the shared stream; DDX_E_UNSUPPORTED while a capture runs (the event would be a graph node).
ddx_status ddx_cuda_prof_record(size_t i);
// Milliseconds from event i to event j, waiting for j to complete.
ddx_status ddx_cuda_prof_elapsed(size_t i, size_t j, float *ms);
// True between capture_begin and capture_end of any context (the stream is shared; always
// false without CUDA).
bool ddx_cuda_capturing(void);

// Device memory from the caching pool: freed blocks are kept by size class and reused,
// so steady-state training does no cudaMalloc/cudaFree.
ddx_status ddx_cuda_malloc(size_t bytes, void **out);
void ddx_cuda_free(void *p);
// Returns all cached blocks to the driver.
void ddx_cuda_pool_trim(void);
size_t ddx_cuda_pool_bytes_in_use(void);

typedef enum ddx_copy_kind { DDX_COPY_H2D = 0, DDX_COPY_D2H, DDX_COPY_D2D } ddx_copy_kind;
// Synchronous with respect to the host (the runtime's default stream semantics). While the
// stream is being captured into a CUDA graph a device-to-device copy is only enqueued (it
// becomes a node of the graph) and a copy to or from the host is an error.
ddx_status ddx_cuda_memcpy(void *dst, const void *src, size_t bytes, ddx_copy_kind kind);
ddx_status ddx_cuda_memset(void *dst, int byte, size_t bytes);

// ---- CUDA graphs (callers guard these with DDX_HAVE_CUDA; runtime/cuda_none.c has none) ----
// A step captured once and replayed: everything it touches must sit at fixed addresses and
// everything that changes per step must be read from device memory (see docs/ARCHITECTURE.md).
struct ddx_cuda_graph;
// Starts capturing the context's stream (thread-local mode: a host sync, a host copy or a
// pool allocation in this thread fails the capture instead of running).
ddx_status ddx_cuda_capture_begin(struct ddx_cuda_ctx *cc);
// Ends the capture and instantiates it. On failure nothing is kept, the stream is out of
// capture mode again and the status (with ddx_last_error) says why; `why` is the first
// error recorded during the capture, if any (DDX_OK otherwise).
ddx_status ddx_cuda_capture_end(struct ddx_cuda_ctx *cc, ddx_status why, struct ddx_cuda_graph **out);
ddx_status ddx_cuda_graph_launch(struct ddx_cuda_ctx *cc, struct ddx_cuda_graph *g);
void ddx_cuda_graph_destroy(struct ddx_cuda_graph *g);

// A pinned host buffer and a device buffer of the same size, for per-step inputs: fill
// host(), then upload() enqueues one copy on the stream without waiting; host() waits until
// the previous upload has read the buffer, so the host runs at most one step ahead.
struct ddx_cuda_staging;
ddx_status ddx_cuda_staging_create(size_t bytes, struct ddx_cuda_staging **out);
void ddx_cuda_staging_destroy(struct ddx_cuda_staging *st);
ddx_status ddx_cuda_staging_host(struct ddx_cuda_staging *st, void **host);
void *ddx_cuda_staging_dev(struct ddx_cuda_staging *st);
// Copies the first `bytes` of the host buffer to the device buffer on cc's stream.
ddx_status ddx_cuda_staging_upload(struct ddx_cuda_ctx *cc, struct ddx_cuda_staging *st, size_t bytes);

// ---- timing for benchmarks (test_ops --perf) -------------------------------------------------
// Two events on cc's stream: start() records the first; stop() records the second, waits for
// it and gives the milliseconds between them (the GPU timeline, not host time).
struct ddx_cuda_timer;
ddx_status ddx_cuda_timer_create(struct ddx_cuda_timer **out);
void ddx_cuda_timer_destroy(struct ddx_cuda_timer *t);
ddx_status ddx_cuda_timer_start(struct ddx_cuda_timer *t, struct ddx_cuda_ctx *cc);
ddx_status ddx_cuda_timer_stop(struct ddx_cuda_timer *t, struct ddx_cuda_ctx *cc, float *ms);
// A device-to-device copy enqueued on cc's stream without waiting for it (ddx_cuda_memcpy
// waits after every copy, which a bandwidth reference must not include).
ddx_status ddx_cuda_copy_async(struct ddx_cuda_ctx *cc, void *dst, const void *src, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
