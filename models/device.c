// ddx_device_pick (models/device.h).
#include "models/device.h"

#include <stdio.h>
#include <string.h>

#include "runtime/cuda.h"
#include "runtime/ops.h"

// Why there is no GPU, in a user's words; the runtime's description names the CUDA call.
static const char *no_gpu_reason(const char *desc) {
    if (strstr(desc, "built without CUDA")) return "this build has no CUDA; reconfigure with nvcc on PATH";
    if (strstr(desc, "InsufficientDriver") || strstr(desc, "NoDriver") || strstr(desc, "StubLibrary"))
        return "no CUDA driver";
    if (strstr(desc, "found none") || strstr(desc, "NoDevice") || strstr(desc, "DevicesUnavailable")) return "no CUDA device";
    return desc;
}

ddx_status ddx_device_pick(ddx_run_device want, ddx_device *out, char *why, size_t why_n, bool *fallback) {
    char tmp[16];
    if (!why) why = tmp, why_n = sizeof tmp;
    if (fallback) *fallback = false;
    *out = DDX_CPU;
    if (want == DDX_RUN_DEVICE_CPU) {
        snprintf(why, why_n, "run.device: cpu");
        return DDX_OK;
    }
    bool gpu = ddx_cuda_available();
    if (!gpu) {
        if (want == DDX_RUN_DEVICE_CUDA)
            return ddx_errorf(DDX_E_INPUT, "run.device: cuda, but %s; use run.device: auto or cpu", ddx_cuda_describe());
        snprintf(why, why_n, "no GPU found (%s)", no_gpu_reason(ddx_cuda_describe()));
        if (fallback) *fallback = true;
        return DDX_OK;
    }
    // A run must not stop at its first op without a kernel: auto stays on the CPU until the CUDA
    // backend covers every op.
    char missing[256] = "";
    size_t k = 0;
    int n_missing = 0;
    for (int op = 0; op < DDX_OP_COUNT; op++) {
        if (ddx_cuda_ops[op].fwd && (ddx_cuda_ops[op].bwd || !ddx_op_differentiable((ddx_op)op))) continue;
        if (n_missing++ < 6 && k < sizeof missing)
            k += (size_t)snprintf(missing + k, sizeof missing - k, "%s%s", k ? ", " : "", ddx_op_name((ddx_op)op));
    }
    if (n_missing) {
        if (want == DDX_RUN_DEVICE_CUDA)
            return ddx_errorf(DDX_E_INPUT, "run.device: cuda, but %d ops have no CUDA kernel yet (%s%s); use run.device: cpu",
                              n_missing, missing, n_missing > 6 ? ", ..." : "");
        snprintf(why, why_n, "%s present, but %d ops have no CUDA kernel yet (%s%s)", ddx_cuda_describe(), n_missing, missing,
                 n_missing > 6 ? ", ..." : "");
        if (fallback) *fallback = true;
        return DDX_OK;
    }
    *out = DDX_CUDA;
    snprintf(why, why_n, "%s", ddx_cuda_describe());
    return DDX_OK;
}
