// Device helpers shared by the kernel files: bf16 <-> f32 element conversion and vector
// loads/stores. Included by the .cu files only (not a launcher header).
#ifndef DDX_KERNELS_COMMON_CUH
#define DDX_KERNELS_COMMON_CUH

#include <cuda_runtime.h>

#include <cstdint>

namespace {

// ---- element conversion (bf16 = the top half of an f32) -----------------------------------
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

// Round-to-nearest-even with quiet NaNs, bit-identical to ddx_f32_to_bf16 in runtime/tensor.h:
// the CPU and the GPU must round the same.
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
    const uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ uint16_t from_f<uint16_t>(float v) { return f32_to_bf16(v); }

// ---- vectors: V elements of T moved by one load or store instruction ----------------------
template <int BYTES> struct Raw;
template <> struct Raw<16> { using type = uint4; };
template <> struct Raw<8> { using type = uint2; };
template <> struct Raw<4> { using type = uint32_t; };
template <> struct Raw<2> { using type = uint16_t; };

template <int V, typename T> union Pack {
    typename Raw<V * (int)sizeof(T)>::type raw;
    T v[V];
};

template <int V, typename T> __device__ __forceinline__ void load(const T *p, float (&out)[V]) {
    Pack<V, T> pk;
    pk.raw = *reinterpret_cast<const typename Raw<V * (int)sizeof(T)>::type *>(p);
#pragma unroll
    for (int k = 0; k < V; k++) out[k] = to_f(pk.v[k]);
}

template <int V, typename T> __device__ __forceinline__ void store(T *p, const float (&in)[V]) {
    Pack<V, T> pk;
#pragma unroll
    for (int k = 0; k < V; k++) pk.v[k] = from_f<T>(in[k]);
    *reinterpret_cast<typename Raw<V * (int)sizeof(T)>::type *>(p) = pk.raw;
}

__device__ __forceinline__ int64_t global_tid() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_stride() { return (int64_t)gridDim.x * blockDim.x; }

}  // namespace

#endif
