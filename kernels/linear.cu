// Kernels of the linear family: the helpers around linear's cuBLAS GEMMs (bias broadcast
// into the output, bias gradient as a fixed-order column sum; see linear.h).
#include "kernels/linear.h"

#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cstdint>

#include "kernels/common.cuh"

namespace {

constexpr int kThreads = 256;

// ---- linear helpers -----------------------------------------------------------------------
template <typename T> __global__ void __launch_bounds__(kThreads) rows_fill_k(T *y, const T *bias, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    for (int64_t i = global_tid(); i < n; i += grid_stride()) y[i] = bias[i % cols];
}

constexpr int kColX = 32, kColY = 8;

// part[p, c] = sum of dy[r, c] over chunk p's rows; block (32 columns) x (8 row lanes), the
// row lanes folded in order.
template <typename T>
__global__ void __launch_bounds__(kColX *kColY) colsum_part_k(float *part, const T *dy, int64_t rows, int64_t cols,
                                                            int64_t rchunk, int64_t P) {
    __shared__ float sh[kColY][kColX + 1];
    const int64_t p = blockIdx.x % P, tile = blockIdx.x / P;
    const int64_t c = tile * kColX + threadIdx.x;
    const int64_t r0 = p * rchunk, r1 = r0 + rchunk < rows ? r0 + rchunk : rows;
    float s = 0.0f;
    if (c < cols)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += kColY) s += to_f(dy[r * cols + c]);
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || c >= cols) return;
#pragma unroll
    for (int k = 1; k < kColY; k++) s += sh[k][threadIdx.x];
    part[p * cols + c] = s;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) colsum_final_k(T *db, const float *part, int64_t cols, int64_t P) {
    for (int64_t c = global_tid(); c < cols; c += grid_stride()) {
        double s = 0.0;
        for (int64_t p = 0; p < P; p++) s += part[p * cols + c];
        db[c] = from_f<T>(to_f(db[c]) + (float)s);
    }
}

// Column-sum chunking: about four blocks per SM, at least 64 rows per chunk.
void colsum_chunks(int64_t rows, int64_t cols, int64_t *rchunk, int64_t *P) {
    const int64_t tiles = cdiv(cols, kColX);
    const int64_t p_want = cdiv(4 * (int64_t)sm_count(), tiles);
    int64_t r = cdiv(rows, p_want);
    if (r < 64) r = 64;
    *rchunk = r;
    *P = rows > 0 ? cdiv(rows, r) : 1;
}

template <typename T> int colsum_run(T *db, const T *dy, int64_t rows, int64_t cols, float *scratch, cudaStream_t s) {
    int64_t rchunk, P;
    colsum_chunks(rows, cols, &rchunk, &P);
    const int64_t blocks = P * cdiv(cols, kColX);
    if (blocks > INT_MAX) return (int)cudaErrorInvalidConfiguration;
    colsum_part_k<T><<<(unsigned)blocks, dim3(kColX, kColY), 0, s>>>(scratch, dy, rows, cols, rchunk, P);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    colsum_final_k<T><<<grid_for(cols, kThreads), kThreads, 0, s>>>(db, scratch, cols, P);
    return (int)cudaGetLastError();
}

}  // namespace

// ---- extern "C" launchers -----------------------------------------------------------------
extern "C" {

int ddx_k_rows_fill_bias(void *y, const void *bias, int64_t rows, int64_t cols, ddx_k_norm_dt dt, void *stream) {
    if (rows <= 0 || cols <= 0) return 0;
    const int grid = grid_for(rows * cols, kThreads);
    if (dt == DDX_K_NORM_F32)
        rows_fill_k<float><<<grid, kThreads, 0, st(stream)>>>((float *)y, (const float *)bias, rows, cols);
    else
        rows_fill_k<uint16_t><<<grid, kThreads, 0, st(stream)>>>((uint16_t *)y, (const uint16_t *)bias, rows, cols);
    return (int)cudaGetLastError();
}

int64_t ddx_k_colsum_scratch_floats(int64_t rows, int64_t cols) {
    int64_t rchunk, P;
    colsum_chunks(rows, cols, &rchunk, &P);
    return P * (cols > 0 ? cols : 1);
}

int ddx_k_colsum_acc(void *db, const void *dy, int64_t rows, int64_t cols, ddx_k_norm_dt dt, float *scratch,
                     void *stream) {
    if (rows <= 0 || cols <= 0) return 0;
    if (dt == DDX_K_NORM_F32) return colsum_run<float>((float *)db, (const float *)dy, rows, cols, scratch, st(stream));
    return colsum_run<uint16_t>((uint16_t *)db, (const uint16_t *)dy, rows, cols, scratch, st(stream));
}

}  // extern "C"
