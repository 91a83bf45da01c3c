// Helpers shared by the kernel files: bf16 <-> f32 element conversion, vector loads/stores,
// and the host side's launch geometry. Included by the .cu files only (not a launcher header).
#ifndef DDX_KERNELS_COMMON_CUH
#define DDX_KERNELS_COMMON_CUH

#include <cuda_runtime.h>

#include <atomic>
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

// ---- host side: launch geometry -----------------------------------------------------------
cudaStream_t st(void *stream) { return (cudaStream_t)stream; }

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// 32-bit indices when every index of every buffer the kernel touches is below 2^31.
bool fits32(int64_t elements) { return elements < ((int64_t)1 << 31); }

// SMs of the current device, asked once. A failed query answers 132 (an H100/H200's count):
// the launch itself then reports the dead device.
int sm_count() {
    static std::atomic<int> s_sms{0};
    int sms = s_sms.load(std::memory_order_relaxed);
    if (sms > 0) return sms;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        sms <= 0) {
        (void)cudaGetLastError();
        return 132;
    }
    s_sms.store(sms, std::memory_order_relaxed);
    return sms;
}

// Enough blocks for every SM to hold 4096 threads (two full waves of 2048); grid-stride loops
// take the rest.
int grid_for(int64_t work, int threads) {
    const int64_t blocks = (work + threads - 1) / threads;
    const int64_t cap = (int64_t)sm_count() * (4096 / threads);
    if (blocks < 1) return 1;
    return (int)(blocks < cap ? blocks : cap);
}

}  // namespace

#endif
