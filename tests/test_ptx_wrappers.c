// gpu suite: the sm_90a inline-PTX wrappers of kernels/ptx.cuh against the host. One
// warpgroup multiplies a 64x16 by a 16x8 bf16 tile with one wgmma m64n8k16 from shared-memory
// descriptors, after a bulk copy of A that completes on an mbarrier (kernels/ptx_check.cu).
// The operands are small integers (exact in bf16, products and sums exact in f32), so the
// product must match the host exactly; the echo of A tells a bad copy from a bad product.
// SKIP (77) without CUDA, without a device, or on a device that is not sm_90.
// Written without a GPU at hand (2026-12-08): this test had not been run when it was committed.
#include "ddx_config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runtime/cuda.h"
#include "runtime/tensor.h"

#include "check.h"

#if DDX_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/ptx_check.h"
#endif

int main(void) {
#if !DDX_HAVE_CUDA
    printf("SKIP: built without CUDA (%s)\n", ddx_cuda_describe());
    n_skip++;
    return ddx_test_finish("ptx-wrappers");
#else
    if (!ddx_cuda_available()) {
        printf("SKIP: no CUDA device (%s)\n", ddx_cuda_describe());
        n_skip++;
        return ddx_test_finish("ptx-wrappers");
    }
    enum { M = 64, N = 8, K = 16 };
    uint16_t a[M * K], bt[N * K], echo[M * K];
    float ref[M * N], got[M * N];
    for (int i = 0; i < M * K; i++) a[i] = ddx_f32_to_bf16((float)((i * 7 + 3) % 9 - 4));   // -4..4
    for (int i = 0; i < N * K; i++) bt[i] = ddx_f32_to_bf16((float)((i * 5 + 1) % 7 - 3));  // -3..3
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += ddx_bf16_to_f32(a[m * K + k]) * ddx_bf16_to_f32(bt[n * K + k]);
            ref[m * N + n] = s;
        }
    void *da = NULL, *db = NULL, *dd = NULL, *de = NULL;
    bool ok = cudaMalloc(&da, sizeof a) == cudaSuccess && cudaMalloc(&db, sizeof bt) == cudaSuccess &&
              cudaMalloc(&dd, sizeof got) == cudaSuccess && cudaMalloc(&de, sizeof echo) == cudaSuccess;
    CHECK(ok, "cudaMalloc of the test buffers");
    if (ok) {
        cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice);
        cudaMemcpy(db, bt, sizeof bt, cudaMemcpyHostToDevice);
        cudaMemset(dd, 0xFF, sizeof got);   // NaN: an element the kernel never writes fails
        cudaMemset(de, 0xFF, sizeof echo);
        const int e = ddx_k_ptx_wgmma_check(da, db, dd, de);
        if (e == (int)cudaErrorNoKernelImageForDevice) {
            printf("SKIP: the wgmma self-test needs an sm_90 device (%s)\n", ddx_cuda_describe());
            n_skip++;
        } else {
            CHECK(e == 0, "wgmma check kernel: %s", cudaGetErrorString((cudaError_t)e));
            if (e == 0) {
                cudaMemcpy(got, dd, sizeof got, cudaMemcpyDeviceToHost);
                cudaMemcpy(echo, de, sizeof echo, cudaMemcpyDeviceToHost);
                CHECK(memcmp(echo, a, sizeof a) == 0, "bulk copy + mbarrier: A as it landed in shared memory");
                int bad = 0, first = -1;
                for (int i = 0; i < M * N; i++)
                    if (!(got[i] == ref[i])) bad++, first = first < 0 ? i : first;
                CHECK(bad == 0, "wgmma m64n8k16 bf16: %d of %d elements differ (first at row %d col %d: %g, want %g)",
                      bad, M * N, first / N, first % N, first >= 0 ? (double)got[first] : 0.0,
                      first >= 0 ? (double)ref[first] : 0.0);
            }
        }
    }
    cudaFree(da), cudaFree(db), cudaFree(dd), cudaFree(de);
    return ddx_test_finish("ptx-wrappers");
#endif
}
