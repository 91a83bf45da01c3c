// Which device a tool runs on, from the config's run.device: shared by ddx-train, ddx-sample
// and the benchmarks (no trainer needed).
#ifndef DDX_DEVICE_H
#define DDX_DEVICE_H

#ifdef __cplusplus
extern "C" {
#endif

#include "config/config.h"
#include "runtime/tensor.h"

// auto takes the GPU when this build has CUDA, a GPU is present and every op of the registry
// has a CUDA kernel; otherwise the CPU, with the reason in why (may be NULL) in words a user
// reads: "no GPU found (no CUDA driver)". *fallback (may be NULL) says the CPU was taken
// because no usable GPU was found. device: cuda without a usable GPU is DDX_E_INPUT.
ddx_status ddx_device_pick(ddx_run_device want, ddx_device *out, char *why, size_t why_n, bool *fallback);

#ifdef __cplusplus
}
#endif

#endif
