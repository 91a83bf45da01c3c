// The CUDA device layer: device probe, contexts (stream + cuBLAS handle), the caching device
// memory pool, copies, CUDA-graph capture and launch, pinned staging buffers and profiling
// events. The op backend (runtime/cuda/ops/) builds on it; every call is checked through
// check.h.
//
// One stream per process. Every context shares it (each with its own cuBLAS handle), and
// ddx_cuda_memcpy/memset enqueue on it too. That is what makes the pool safe without
// events: a block freed on the host and handed out again can only be touched by work
// enqueued later on the same stream, so the old and the new user never overlap. (A future
// second stream, e.g. for NCCL, must order itself against this one before freeing.)
#include "cuda.h"
#include "cuda/check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- device probe -------------------------------------------------------------------------
static pthread_once_t g_probe_once = PTHREAD_ONCE_INIT;
static bool g_available;
static char g_describe[512];

static void cuda_probe(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        (void)cudaGetLastError();
        if (e != cudaSuccess)
            snprintf(g_describe, sizeof g_describe, "no CUDA device: cudaGetDeviceCount: %s: %s", cudaGetErrorName(e),
                     cudaGetErrorString(e));
        else
            snprintf(g_describe, sizeof g_describe, "no CUDA device: cudaGetDeviceCount found none");
        return;
    }
    int dev = 0, drv = 0;
    struct cudaDeviceProp prop;
    memset(&prop, 0, sizeof prop);
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        e = cudaGetLastError();
        snprintf(g_describe, sizeof g_describe, "CUDA device %d unusable: %s: %s", dev, cudaGetErrorName(e), cudaGetErrorString(e));
        return;
    }
    if (cudaDriverGetVersion(&drv) != cudaSuccess) {
        (void)cudaGetLastError();
        drv = 0;
    }
    snprintf(g_describe, sizeof g_describe, "%.200s (sm_%d%d, %.0f GiB, driver %d.%d)", prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), drv / 1000, (drv % 1000) / 10);
    g_available = true;
}

bool ddx_cuda_available(void) {
    pthread_once(&g_probe_once, cuda_probe);
    return g_available;
}

const char *ddx_cuda_describe(void) {
    pthread_once(&g_probe_once, cuda_probe);
    return g_describe;
}

static ddx_status require_device(const char *what) {
    if (ddx_cuda_available()) return DDX_OK;
    return ddx_errorf(DDX_E_UNSUPPORTED, "%s: %s", what, ddx_cuda_describe());
}

// ---- the shared stream --------------------------------------------------------------------
// With the stream lives one cuBLAS workspace that every handle is given: work on one stream
// runs in order, so the handles can share it, and a fixed workspace is what lets cuBLAS calls
// be captured into a CUDA graph (without one cuBLAS may allocate during the capture).
// 32 MiB is cuBLAS's recommendation for Hopper (4 MiB elsewhere).
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)

static pthread_mutex_t g_stream_mu = PTHREAD_MUTEX_INITIALIZER;
static cudaStream_t g_stream;
static void *g_blas_ws;
static int g_stream_refs;

static ddx_status stream_acquire(cudaStream_t *out, void **ws) {
    ddx_status st = DDX_OK;
    pthread_mutex_lock(&g_stream_mu);
    if (g_stream_refs == 0) {
        cudaError_t e = cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking);
        if (e != cudaSuccess) {
            g_stream = NULL;
            st = ddx_cuda_fail_(e, "cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking)", __FILE__, __LINE__);
        } else if ((e = cudaMalloc(&g_blas_ws, CUBLAS_WORKSPACE_BYTES)) != cudaSuccess) {
            g_blas_ws = NULL;
            st = ddx_cuda_fail_(e, "cudaMalloc(&g_blas_ws, CUBLAS_WORKSPACE_BYTES)", __FILE__, __LINE__);
            if (cudaStreamDestroy(g_stream) != cudaSuccess) (void)cudaGetLastError();
            g_stream = NULL;
        }
    }
    if (st == DDX_OK) {
        g_stream_refs++;
        *out = g_stream;
        *ws = g_blas_ws;
    }
    pthread_mutex_unlock(&g_stream_mu);
    return st;
}

// Takes a reference only when the stream exists (copies never create it); NULL otherwise.
static cudaStream_t stream_borrow(void) {
    cudaStream_t s = NULL;
    pthread_mutex_lock(&g_stream_mu);
    if (g_stream_refs > 0) {
        g_stream_refs++;
        s = g_stream;
    }
    pthread_mutex_unlock(&g_stream_mu);
    return s;
}

static void stream_release(void) {
    pthread_mutex_lock(&g_stream_mu);
    if (g_stream_refs > 0 && --g_stream_refs == 0) {
        // Destroying a stream with work in flight is legal (the work completes), but wait so
        // that a following pool trim or process exit sees an idle device.
        if (cudaStreamSynchronize(g_stream) != cudaSuccess) (void)cudaGetLastError();
        if (cudaStreamDestroy(g_stream) != cudaSuccess) (void)cudaGetLastError();
        if (g_blas_ws && cudaFree(g_blas_ws) != cudaSuccess) (void)cudaGetLastError();
        g_stream = NULL;
        g_blas_ws = NULL;
    }
    pthread_mutex_unlock(&g_stream_mu);
}

// ---- contexts -----------------------------------------------------------------------------
static ddx_status ctx_init(struct ddx_cuda_ctx *cc) {
    void *ws = NULL;
    DDX_CUDA_CHECK(cudaGetDevice(&cc->device));
    DDX_TRY(stream_acquire(&cc->stream, &ws));
    DDX_CUBLAS_CHECK(cublasCreate(&cc->blas));
    DDX_CUBLAS_CHECK(cublasSetStream(cc->blas, cc->stream));
    // After cublasSetStream, which resets a handle's workspace to cuBLAS's own pool.
    DDX_CUBLAS_CHECK(cublasSetWorkspace(cc->blas, ws, CUBLAS_WORKSPACE_BYTES));
    return DDX_OK;
}

ddx_status ddx_cuda_ctx_create(struct ddx_cuda_ctx **out) {
    if (!out) return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_ctx_create: out is NULL");
    *out = NULL;
    DDX_TRY(require_device("CUDA context"));
    struct ddx_cuda_ctx *cc = calloc(1, sizeof *cc);
    if (!cc) return ddx_errorf(DDX_E_NOMEM, "CUDA context: out of host memory");
    ddx_status st = ctx_init(cc);
    if (st != DDX_OK) {
        ddx_cuda_ctx_destroy(cc);
        return st;
    }
    *out = cc;
    return DDX_OK;
}

void ddx_cuda_ctx_destroy(struct ddx_cuda_ctx *cc) {
    if (!cc) return;
    if (cc->blas && cublasDestroy(cc->blas) != CUBLAS_STATUS_SUCCESS) (void)cudaGetLastError();
    if (cc->stream) stream_release();
    free(cc);
}

ddx_status ddx_cuda_sync(struct ddx_cuda_ctx *cc) {
    if (!cc) {
        DDX_TRY(require_device("CUDA sync"));
        DDX_CUDA_CHECK(cudaDeviceSynchronize());
        return DDX_OK;
    }
    DDX_CUDA_CHECK(cudaStreamSynchronize(cc->stream));
    return DDX_OK;
}

// ---- caching memory pool ------------------------------------------------------------------
// Size classes: powers of two from 512 B to 1 MiB (bins), multiples of 2 MiB above (reused
// on an exact class match). Steady-state training asks for the same sizes every step (the
// arena's coalesced block, parameter buffers), so exact reuse is what matters.
#define POOL_MIN_SHIFT 9
#define POOL_SMALL_SHIFT 20
#define POOL_NBINS (POOL_SMALL_SHIFT - POOL_MIN_SHIFT + 1)
#define POOL_LARGE_ROUND ((size_t)2 << 20)
#define POOL_HASH_BITS 12
#define POOL_HASH (1u << POOL_HASH_BITS)

typedef struct pool_block {
    void *ptr;
    size_t size;              // class size: what cudaMalloc got
    struct pool_block *next;  // in a free list or a live hash chain
} pool_block;

static struct {
    pthread_mutex_t mu;
    pool_block *small_free[POOL_NBINS];
    pool_block *large_free;
    pool_block *live[POOL_HASH];
    size_t in_use, cached;
} g_pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

static bool pool_class(size_t bytes, size_t *size, int *bin) {
    if (bytes <= ((size_t)1 << POOL_SMALL_SHIFT)) {
        int s = POOL_MIN_SHIFT;
        while (((size_t)1 << s) < bytes) s++;
        *size = (size_t)1 << s;
        *bin = s - POOL_MIN_SHIFT;
        return true;
    }
    if (bytes > SIZE_MAX - POOL_LARGE_ROUND) return false;
    *size = (bytes + POOL_LARGE_ROUND - 1) / POOL_LARGE_ROUND * POOL_LARGE_ROUND;
    *bin = -1;
    return true;
}

static unsigned pool_hash(const void *p) {
    // Fibonacci hashing: big blocks are 2 MiB aligned, so the low bits alone would collide.
    return (unsigned)(((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull) >> (64 - POOL_HASH_BITS));
}

static pool_block *pool_take_cached(size_t size, int bin) {
    pool_block **pp = bin >= 0 ? &g_pool.small_free[bin] : &g_pool.large_free;
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->size == size) {
            pool_block *b = *pp;
            *pp = b->next;
            g_pool.cached -= b->size;
            return b;
        }
    }
    return NULL;
}

static void pool_free_list(pool_block **head) {
    while (*head) {
        pool_block *b = *head;
        *head = b->next;
        if (cudaFree(b->ptr) != cudaSuccess) (void)cudaGetLastError();
        g_pool.cached -= b->size;
        free(b);
    }
}

static void pool_trim_locked(void) {
    if (g_pool.cached == 0) return;
    // cudaFree of memory a queued kernel still uses is undefined; wait for the device first.
    if (cudaDeviceSynchronize() != cudaSuccess) (void)cudaGetLastError();
    for (int i = 0; i < POOL_NBINS; i++) pool_free_list(&g_pool.small_free[i]);
    pool_free_list(&g_pool.large_free);
}

void ddx_cuda_pool_trim(void) {
    if (!ddx_cuda_available()) return;
    pthread_mutex_lock(&g_pool.mu);
    pool_trim_locked();
    pthread_mutex_unlock(&g_pool.mu);
}

size_t ddx_cuda_pool_bytes_in_use(void) {
    pthread_mutex_lock(&g_pool.mu);
    size_t n = g_pool.in_use;
    pthread_mutex_unlock(&g_pool.mu);
    return n;
}

#define MIB(x) ((double)(x) / (1024.0 * 1024.0))

// Graph capture state (see the CUDA graph section below). A pool block handed out or taken
// back during a capture would be baked into the graph and then reused by someone else, so
// the pool refuses to allocate then, and a free marks the capture as unusable.
static atomic_int g_capturing;
static atomic_int g_capture_poisoned;

ddx_status ddx_cuda_malloc(size_t bytes, void **out) {
    if (!out) return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_malloc: out is NULL");
    *out = NULL;
    DDX_TRY(require_device("CUDA allocation"));
    if (atomic_load(&g_capturing))
        return ddx_errorf(DDX_E_CUDA, "CUDA pool: allocation of %zu bytes while a CUDA graph is being captured "
                                      "(a captured step must allocate nothing; the activation arena must be large enough)",
                          bytes);
    size_t size;
    int bin;
    if (!pool_class(bytes, &size, &bin))
        return ddx_errorf(DDX_E_NOMEM, "CUDA pool: a request of %zu bytes cannot be satisfied (size overflow)", bytes);

    pthread_mutex_lock(&g_pool.mu);
    pool_block *b = pool_take_cached(size, bin);
    if (!b) {
        b = malloc(sizeof *b);
        if (!b) {
            pthread_mutex_unlock(&g_pool.mu);
            return ddx_errorf(DDX_E_NOMEM, "CUDA pool: out of host memory for a block record");
        }
        void *p = NULL;
        cudaError_t e = cudaMalloc(&p, size);
        if (e == cudaErrorMemoryAllocation) {
            // Blocks cached in other size classes may be what is missing: give them back, retry once.
            (void)cudaGetLastError();
            pool_trim_locked();
            e = cudaMalloc(&p, size);
        }
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            free(b);
            size_t free_b = 0, total_b = 0;
            if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
            const size_t in_use = g_pool.in_use;
            pthread_mutex_unlock(&g_pool.mu);
            if (e == cudaErrorMemoryAllocation)
                return ddx_errorf(DDX_E_NOMEM,
                                  "CUDA pool: cudaMalloc of %zu bytes (%.1f MiB) failed on device %d after trimming the cache: "
                                  "%.1f MiB free of %.1f MiB, ddx holds %.1f MiB; reduce the batch size or the model",
                                  size, MIB(size), ddx_cuda_device_index(), MIB(free_b), MIB(total_b), MIB(in_use));
            return ddx_cuda_fail_(e, "cudaMalloc(&p, size)", __FILE__, __LINE__);
        }
        b->ptr = p;
        b->size = size;
    }
    const unsigned h = pool_hash(b->ptr);
    b->next = g_pool.live[h];
    g_pool.live[h] = b;
    g_pool.in_use += b->size;
    pthread_mutex_unlock(&g_pool.mu);
    *out = b->ptr;
    return DDX_OK;
}

void ddx_cuda_free(void *p) {
    if (!p) return;
    if (atomic_load(&g_capturing)) atomic_store(&g_capture_poisoned, 1);
    pthread_mutex_lock(&g_pool.mu);
    pool_block **pp = &g_pool.live[pool_hash(p)];
    while (*pp && (*pp)->ptr != p) pp = &(*pp)->next;
    pool_block *b = *pp;
    if (!b) {
        pthread_mutex_unlock(&g_pool.mu);
        // No status to return through: say it loudly, since it means a double free or a
        // pointer that never came from the pool.
        fprintf(stderr, "ddx: ddx_cuda_free(%p): not a live block of the CUDA pool (double free?)\n", p);
        return;
    }
    *pp = b->next;
    g_pool.in_use -= b->size;
    int bin = -1;
    size_t size;
    (void)pool_class(b->size, &size, &bin);
    pool_block **head = bin >= 0 ? &g_pool.small_free[bin] : &g_pool.large_free;
    b->next = *head;
    *head = b;
    g_pool.cached += b->size;
    pthread_mutex_unlock(&g_pool.mu);
}

// ---- copies -------------------------------------------------------------------------------
// On the shared stream, so a copy is ordered after every kernel enqueued before it; without
// a context yet, on the legacy stream followed by a device-wide wait, because a pageable
// host-to-device cudaMemcpy may return before its DMA lands and a later non-blocking stream
// would not wait for it.
ddx_status ddx_cuda_memcpy(void *dst, const void *src, size_t bytes, ddx_copy_kind kind) {
    if (bytes == 0) return DDX_OK;
    if (!dst || !src)
        return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_memcpy: NULL pointer (dst %p, src %p, %zu bytes)", dst, src, bytes);
    enum cudaMemcpyKind k;
    switch (kind) {
    case DDX_COPY_H2D: k = cudaMemcpyHostToDevice; break;
    case DDX_COPY_D2H: k = cudaMemcpyDeviceToHost; break;
    case DDX_COPY_D2D: k = cudaMemcpyDeviceToDevice; break;
    default: return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_memcpy: bad copy kind %d", (int)kind);
    }
    DDX_TRY(require_device("CUDA copy"));
    cudaStream_t s = stream_borrow();
    ddx_status st = DDX_OK;
    cudaError_t e;
    if (s) {
        enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        if ((e = cudaStreamIsCapturing(s, &cs)) != cudaSuccess) {
            st = ddx_cuda_fail_(e, "cudaStreamIsCapturing(s, &cs)", __FILE__, __LINE__);
        } else if (cs != cudaStreamCaptureStatusNone && k != cudaMemcpyDeviceToDevice) {
            // A graph would replay the copy from or to whatever the host memory holds then.
            st = ddx_errorf(DDX_E_CUDA, "ddx_cuda_memcpy: a %s copy of %zu bytes inside a CUDA graph capture "
                                        "(per-step host data must be staged before the graph is launched)",
                            k == cudaMemcpyHostToDevice ? "host-to-device" : "device-to-host", bytes);
        } else if ((e = cudaMemcpyAsync(dst, src, bytes, k, s)) != cudaSuccess) {
            st = ddx_cuda_fail_(e, "cudaMemcpyAsync(dst, src, bytes, k, s)", __FILE__, __LINE__);
        } else if (cs == cudaStreamCaptureStatusNone && (e = cudaStreamSynchronize(s)) != cudaSuccess) {
            st = ddx_cuda_fail_(e, "cudaStreamSynchronize(s)", __FILE__, __LINE__);
        }
        stream_release();
        return st;
    }
    DDX_CUDA_CHECK(cudaMemcpy(dst, src, bytes, k));
    DDX_CUDA_CHECK(cudaDeviceSynchronize());
    return DDX_OK;
}

// Stream-ordered, not host-synchronous: device memory is only observable through later
// stream work or ddx_cuda_memcpy (which waits for the stream), so nobody can see it early.
ddx_status ddx_cuda_memset(void *dst, int byte, size_t bytes) {
    if (bytes == 0) return DDX_OK;
    if (!dst) return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_memset: NULL pointer (%zu bytes)", bytes);
    DDX_TRY(require_device("CUDA memset"));
    cudaStream_t s = stream_borrow();
    if (s) {
        cudaError_t e = cudaMemsetAsync(dst, byte, bytes, s);
        stream_release();
        if (e != cudaSuccess) return ddx_cuda_fail_(e, "cudaMemsetAsync(dst, byte, bytes, s)", __FILE__, __LINE__);
        return DDX_OK;
    }
    DDX_CUDA_CHECK(cudaMemset(dst, byte, bytes));
    DDX_CUDA_CHECK(cudaDeviceSynchronize());
    return DDX_OK;
}

// ---- CUDA graphs ----------------------------------------------------------------------------
struct ddx_cuda_graph {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
};

bool ddx_cuda_capturing(void) { return atomic_load(&g_capturing) != 0; }

// ---- profiling events -------------------------------------------------------------------------
// Only the profiling path (one thread, DDX_PROFILE) uses them; never freed (the process ends).
static cudaEvent_t *g_prof_ev;
static size_t g_prof_nev;

ddx_status ddx_cuda_prof_record(size_t i) {
    if (atomic_load(&g_capturing)) return ddx_errorf(DDX_E_UNSUPPORTED, "profiling events: a capture is running");
    if (!g_stream) return ddx_errorf(DDX_E_INTERNAL, "profiling events: no CUDA context");
    if (i >= g_prof_nev) {
        size_t n = g_prof_nev ? 2 * g_prof_nev : 1024;
        while (n <= i) n *= 2;
        cudaEvent_t *ev = realloc(g_prof_ev, n * sizeof *ev);
        if (!ev) return ddx_errorf(DDX_E_NOMEM, "profiling events: out of host memory");
        g_prof_ev = ev;
        for (; g_prof_nev < n; g_prof_nev++) DDX_CUDA_CHECK(cudaEventCreate(&g_prof_ev[g_prof_nev]));
    }
    DDX_CUDA_CHECK(cudaEventRecord(g_prof_ev[i], g_stream));
    return DDX_OK;
}

ddx_status ddx_cuda_prof_elapsed(size_t i, size_t j, float *ms) {
    *ms = 0;
    if (i >= g_prof_nev || j >= g_prof_nev) return ddx_errorf(DDX_E_INTERNAL, "profiling events: %zu/%zu not recorded", i, j);
    DDX_CUDA_CHECK(cudaEventSynchronize(g_prof_ev[j]));
    DDX_CUDA_CHECK(cudaEventElapsedTime(ms, g_prof_ev[i], g_prof_ev[j]));
    return DDX_OK;
}

ddx_status ddx_cuda_capture_begin(struct ddx_cuda_ctx *cc) {
    if (!cc) return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_capture_begin: no CUDA context");
    int expected = 0;
    if (!atomic_compare_exchange_strong(&g_capturing, &expected, 1))
        return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_capture_begin: a capture is already in progress");
    atomic_store(&g_capture_poisoned, 0);
    cudaError_t e = cudaStreamBeginCapture(cc->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        atomic_store(&g_capturing, 0);
        return ddx_cuda_fail_(e, "cudaStreamBeginCapture(cc->stream, cudaStreamCaptureModeThreadLocal)", __FILE__, __LINE__);
    }
    return DDX_OK;
}

ddx_status ddx_cuda_capture_end(struct ddx_cuda_ctx *cc, ddx_status why, struct ddx_cuda_graph **out) {
    *out = NULL;
    if (!cc) return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_capture_end: no CUDA context");
    // The first error of the capture is the useful message; keep it rather than the
    // "capture invalidated" that ending the capture reports after it.
    char first[512] = "";
    if (why != DDX_OK) snprintf(first, sizeof first, "%s", ddx_last_error());
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(cc->stream, &graph);
    atomic_store(&g_capturing, 0);
    const bool poisoned = atomic_exchange(&g_capture_poisoned, 0) != 0;
    ddx_status st = DDX_OK;
    if (why != DDX_OK) {
        st = ddx_errorf(why, "%s", first);
    } else if (e != cudaSuccess) {
        st = ddx_cuda_fail_(e, "cudaStreamEndCapture(cc->stream, &graph)", __FILE__, __LINE__);
    } else if (poisoned) {
        st = ddx_errorf(DDX_E_CUDA, "a device buffer was freed while the step was being captured");
    }
    if (st != DDX_OK) {
        (void)cudaGetLastError();   // capture errors are not sticky; clear them for later calls
        if (graph && cudaGraphDestroy(graph) != cudaSuccess) (void)cudaGetLastError();
        return st;
    }
    struct ddx_cuda_graph *g = calloc(1, sizeof *g);
    if (!g) {
        if (cudaGraphDestroy(graph) != cudaSuccess) (void)cudaGetLastError();
        return ddx_errorf(DDX_E_NOMEM, "CUDA graph: out of host memory");
    }
    g->graph = graph;
    e = cudaGraphInstantiate(&g->exec, graph, 0);
    if (e != cudaSuccess) {
        st = ddx_cuda_fail_(e, "cudaGraphInstantiate(&g->exec, graph, 0)", __FILE__, __LINE__);
        (void)cudaGetLastError();
        g->exec = NULL;
        ddx_cuda_graph_destroy(g);
        return st;
    }
    *out = g;
    return DDX_OK;
}

ddx_status ddx_cuda_graph_launch(struct ddx_cuda_ctx *cc, struct ddx_cuda_graph *g) {
    if (!cc || !g) return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_graph_launch: no context or graph");
    DDX_CUDA_CHECK(cudaGraphLaunch(g->exec, cc->stream));
    return DDX_OK;
}

void ddx_cuda_graph_destroy(struct ddx_cuda_graph *g) {
    if (!g) return;
    if (g->exec && cudaGraphExecDestroy(g->exec) != cudaSuccess) (void)cudaGetLastError();
    if (g->graph && cudaGraphDestroy(g->graph) != cudaSuccess) (void)cudaGetLastError();
    free(g);
}

// ---- staging buffers -----------------------------------------------------------------------
struct ddx_cuda_staging {
    void *host, *dev;
    size_t bytes;
    cudaEvent_t read;   // recorded after each upload: the host buffer may be rewritten once it fired
    bool pending;
};

void ddx_cuda_staging_destroy(struct ddx_cuda_staging *st) {
    if (!st) return;
    if (st->read) {
        if (st->pending && cudaEventSynchronize(st->read) != cudaSuccess) (void)cudaGetLastError();
        if (cudaEventDestroy(st->read) != cudaSuccess) (void)cudaGetLastError();
    }
    if (st->host && cudaFreeHost(st->host) != cudaSuccess) (void)cudaGetLastError();
    ddx_cuda_free(st->dev);
    free(st);
}

static ddx_status staging_init(struct ddx_cuda_staging *st, size_t bytes) {
    DDX_TRY(ddx_cuda_malloc(bytes, &st->dev));
    DDX_CUDA_CHECK(cudaHostAlloc(&st->host, bytes, cudaHostAllocDefault));
    DDX_CUDA_CHECK(cudaEventCreateWithFlags(&st->read, cudaEventDisableTiming));
    memset(st->host, 0, bytes);
    st->bytes = bytes;
    return DDX_OK;
}

ddx_status ddx_cuda_staging_create(size_t bytes, struct ddx_cuda_staging **out) {
    *out = NULL;
    DDX_TRY(require_device("CUDA staging buffer"));
    if (bytes == 0) bytes = 1;
    struct ddx_cuda_staging *st = calloc(1, sizeof *st);
    if (!st) return ddx_errorf(DDX_E_NOMEM, "CUDA staging buffer: out of host memory");
    ddx_status s = staging_init(st, bytes);
    if (s != DDX_OK) {
        ddx_cuda_staging_destroy(st);
        return s;
    }
    *out = st;
    return DDX_OK;
}

ddx_status ddx_cuda_staging_host(struct ddx_cuda_staging *st, void **host) {
    *host = NULL;
    if (st->pending) {
        DDX_CUDA_CHECK(cudaEventSynchronize(st->read));
        st->pending = false;
    }
    *host = st->host;
    return DDX_OK;
}

void *ddx_cuda_staging_dev(struct ddx_cuda_staging *st) { return st->dev; }

ddx_status ddx_cuda_staging_upload(struct ddx_cuda_ctx *cc, struct ddx_cuda_staging *st, size_t bytes) {
    if (!cc || bytes > st->bytes)
        return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_staging_upload: %zu bytes into a %zu-byte buffer", bytes, st->bytes);
    if (bytes == 0) return DDX_OK;
    DDX_CUDA_CHECK(cudaMemcpyAsync(st->dev, st->host, bytes, cudaMemcpyHostToDevice, cc->stream));
    DDX_CUDA_CHECK(cudaEventRecord(st->read, cc->stream));
    st->pending = true;
    return DDX_OK;
}

// ---- timing for benchmarks ----------------------------------------------------------------
struct ddx_cuda_timer {
    cudaEvent_t start, stop;
};

ddx_status ddx_cuda_timer_create(struct ddx_cuda_timer **out) {
    *out = NULL;
    DDX_TRY(require_device("CUDA timer"));
    struct ddx_cuda_timer *t = calloc(1, sizeof *t);
    if (!t) return ddx_errorf(DDX_E_NOMEM, "CUDA timer: out of host memory");
    cudaError_t e = cudaEventCreate(&t->start);
    if (e == cudaSuccess && (e = cudaEventCreate(&t->stop)) != cudaSuccess) {
        if (cudaEventDestroy(t->start) != cudaSuccess) (void)cudaGetLastError();
    }
    if (e != cudaSuccess) {
        free(t);
        return ddx_cuda_fail_(e, "cudaEventCreate", __FILE__, __LINE__);
    }
    *out = t;
    return DDX_OK;
}

void ddx_cuda_timer_destroy(struct ddx_cuda_timer *t) {
    if (!t) return;
    if (cudaEventDestroy(t->start) != cudaSuccess) (void)cudaGetLastError();
    if (cudaEventDestroy(t->stop) != cudaSuccess) (void)cudaGetLastError();
    free(t);
}

ddx_status ddx_cuda_timer_start(struct ddx_cuda_timer *t, struct ddx_cuda_ctx *cc) {
    if (!t || !cc) return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_timer_start: no timer or context");
    DDX_CUDA_CHECK(cudaEventRecord(t->start, cc->stream));
    return DDX_OK;
}

ddx_status ddx_cuda_timer_stop(struct ddx_cuda_timer *t, struct ddx_cuda_ctx *cc, float *ms) {
    *ms = 0;
    if (!t || !cc) return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_timer_stop: no timer or context");
    DDX_CUDA_CHECK(cudaEventRecord(t->stop, cc->stream));
    DDX_CUDA_CHECK(cudaEventSynchronize(t->stop));
    DDX_CUDA_CHECK(cudaEventElapsedTime(ms, t->start, t->stop));
    return DDX_OK;
}

ddx_status ddx_cuda_copy_async(struct ddx_cuda_ctx *cc, void *dst, const void *src, size_t bytes) {
    if (!cc) return ddx_errorf(DDX_E_INTERNAL, "ddx_cuda_copy_async: no CUDA context");
    if (bytes == 0) return DDX_OK;
    DDX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cc->stream));
    return DDX_OK;
}
