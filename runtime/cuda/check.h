// Internal to the CUDA backend (runtime/cuda/*.c and GPU tests): error-checking macros for
// CUDA runtime, cuBLAS and NCCL calls, and the definition of the CUDA context.
//
// Each macro evaluates the call once; on failure it records one line
//   "<call text> failed: <error name>: <error string> at file:line (device N)"
// with ddx_errorf(DDX_E_CUDA, ...) and returns DDX_E_CUDA from the enclosing function, which
// must therefore return ddx_status.
#ifndef DDX_CUDA_CHECK_H
#define DDX_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "ddx_config.h"
#include "status.h"

#if DDX_HAVE_NCCL
#include <nccl.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

// What ops need to enqueue work: every context of a process shares one stream (see
// device.c for why), each has its own cuBLAS handle bound to it.
struct ddx_cuda_ctx {
    int device;
    cudaStream_t stream;     // non-blocking: never serialises with the legacy default stream
    cublasHandle_t blas;
};

static inline cudaStream_t ddx_cuda_stream(const struct ddx_cuda_ctx *cc) { return cc ? cc->stream : (cudaStream_t)0; }

// The current device for error messages, -1 if even that query fails.
static inline int ddx_cuda_device_index(void) {
    int d = -1;
    if (cudaGetDevice(&d) != cudaSuccess) d = -1;
    return d;
}

static inline ddx_status ddx_cuda_fail_(cudaError_t e, const char *call, const char *file, int line) {
    return ddx_errorf(DDX_E_CUDA, "%s failed: %s: %s at %s:%d (device %d)", call, cudaGetErrorName(e),
                      cudaGetErrorString(e), file, line, ddx_cuda_device_index());
}

static inline ddx_status ddx_cublas_fail_(cublasStatus_t e, const char *call, const char *file, int line) {
    return ddx_errorf(DDX_E_CUDA, "%s failed: %s: %s at %s:%d (device %d)", call, cublasGetStatusName(e),
                      cublasGetStatusString(e), file, line, ddx_cuda_device_index());
}

// The cast lets kernel launchers that return cudaError_t as int be checked too.
#define DDX_CUDA_CHECK(call)                                                          \
    do {                                                                              \
        cudaError_t ddx_cuda_e_ = (cudaError_t)(call);                                \
        if (ddx_cuda_e_ != cudaSuccess) return ddx_cuda_fail_(ddx_cuda_e_, #call, __FILE__, __LINE__); \
    } while (0)

// After a <<<>>> launch: catches bad launch configurations (asynchronous faults surface at
// the next synchronising call instead).
#define DDX_CUDA_CHECK_LAUNCH() DDX_CUDA_CHECK(cudaGetLastError())

#define DDX_CUBLAS_CHECK(call)                                                        \
    do {                                                                              \
        cublasStatus_t ddx_blas_e_ = (call);                                          \
        if (ddx_blas_e_ != CUBLAS_STATUS_SUCCESS) return ddx_cublas_fail_(ddx_blas_e_, #call, __FILE__, __LINE__); \
    } while (0)

#if DDX_HAVE_NCCL
static inline const char *ddx_nccl_result_name_(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "ncclSuccess";
    case ncclUnhandledCudaError: return "ncclUnhandledCudaError";
    case ncclSystemError: return "ncclSystemError";
    case ncclInternalError: return "ncclInternalError";
    case ncclInvalidArgument: return "ncclInvalidArgument";
    case ncclInvalidUsage: return "ncclInvalidUsage";
    case ncclRemoteError: return "ncclRemoteError";
    case ncclInProgress: return "ncclInProgress";
    default: return "ncclResult(unknown)";
    }
}

static inline ddx_status ddx_nccl_fail_(ncclResult_t e, const char *call, const char *file, int line) {
    return ddx_errorf(DDX_E_CUDA, "%s failed: %s: %s at %s:%d (device %d)", call, ddx_nccl_result_name_(e),
                      ncclGetErrorString(e), file, line, ddx_cuda_device_index());
}

#define DDX_NCCL_CHECK(call)                                                          \
    do {                                                                              \
        ncclResult_t ddx_nccl_e_ = (call);                                            \
        if (ddx_nccl_e_ != ncclSuccess) return ddx_nccl_fail_(ddx_nccl_e_, #call, __FILE__, __LINE__); \
    } while (0)
#endif

#ifdef __cplusplus
}
#endif

#endif
