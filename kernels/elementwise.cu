// Elementwise kernels (see elementwise.h for the launcher contract).
//
// Every kernel is a grid-stride loop over 16-byte vectors (4 x f32, 8 x bf16) with 64-bit
// indices; the launcher falls back to one element per iteration when a pointer is not
// 16-byte aligned (tensor views can start anywhere). Elementwise work is memory-bound, so
// the only things that matter are wide coalesced accesses and enough blocks in flight.
#include "kernels/elementwise.h"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "kernels/common.cuh"
#include "kernels/philox.h"

namespace {

constexpr int kThreads = 256;

// ---- ops ----------------------------------------------------------------------------------
// Unary: y = op(y_old, x); binary: y = op(y_old, a, b). kReadsY says whether y_old is read
// (accumulating backward ops), so pure forward ops never load their output.
struct OpIdentity {
    static constexpr bool kReadsY = false;
    __device__ float operator()(float, float x) const { return x; }
};
struct OpAxpy {
    static constexpr bool kReadsY = true;
    float alpha;
    __device__ float operator()(float y, float x) const { return y + alpha * x; }
};
struct OpScale {
    static constexpr bool kReadsY = false;
    float alpha, beta;
    __device__ float operator()(float, float x) const { return alpha * x + beta; }
};
struct OpSilu {
    static constexpr bool kReadsY = false;
    // expf(-x) overflows to inf for x < -88, giving -0: the correct limit.
    __device__ float operator()(float, float x) const { return x / (1.0f + expf(-x)); }
};
struct OpRelu {
    static constexpr bool kReadsY = false;
    __device__ float operator()(float, float x) const { return x > 0.0f ? x : 0.0f; }
};

struct OpAdd {
    static constexpr bool kReadsY = false;
    __device__ float operator()(float, float a, float b) const { return a + b; }
};
struct OpMul {
    static constexpr bool kReadsY = false;
    __device__ float operator()(float, float a, float b) const { return a * b; }
};
struct OpMulAcc {  // da += dy * b
    static constexpr bool kReadsY = true;
    __device__ float operator()(float y, float a, float b) const { return y + a * b; }
};
struct OpSiluBwd {  // a = x, b = dy
    static constexpr bool kReadsY = true;
    __device__ float operator()(float y, float x, float dy) const {
        float s = 1.0f / (1.0f + expf(-x));
        return y + dy * (s * (1.0f + x * (1.0f - s)));
    }
};
struct OpReluBwd {  // a = x, b = dy
    static constexpr bool kReadsY = true;
    __device__ float operator()(float y, float x, float dy) const { return x > 0.0f ? y + dy : y; }
};

// ---- kernels ------------------------------------------------------------------------------
// Stores a ready-made element (the host converts the value once, so f32, bf16 and i32
// share one kernel and bf16 rounding happens on the host exactly like the CPU's).
template <int V, typename T> __global__ void fill_k(T *y, int64_t n, T value) {
    const int64_t nv = n / V;
    Pack<V, T> pk;
#pragma unroll
    for (int k = 0; k < V; k++) pk.v[k] = value;
    for (int64_t i = global_tid(); i < nv; i += grid_stride())
        *reinterpret_cast<typename Raw<V * (int)sizeof(T)>::type *>(y + i * V) = pk.raw;
    for (int64_t i = nv * V + global_tid(); i < n; i += grid_stride()) y[i] = value;
}

template <int V, typename TO, typename TI, typename Op>
__global__ void unary_k(TO *y, const TI *x, int64_t n, Op op) {
    const int64_t nv = n / V;
    for (int64_t i = global_tid(); i < nv; i += grid_stride()) {
        float xv[V], yv[V] = {};
        load<V>(x + i * V, xv);
        if (Op::kReadsY) load<V>(y + i * V, yv);
#pragma unroll
        for (int k = 0; k < V; k++) yv[k] = op(yv[k], xv[k]);
        store<V>(y + i * V, yv);
    }
    for (int64_t i = nv * V + global_tid(); i < n; i += grid_stride()) {
        float yo = Op::kReadsY ? to_f(y[i]) : 0.0f;
        y[i] = from_f<TO>(op(yo, to_f(x[i])));
    }
}

// a, b and y all of a's shape.
template <int V, typename T, typename Op>
__global__ void binary_full_k(T *y, const T *a, const T *b, int64_t n, Op op) {
    const int64_t nv = n / V;
    for (int64_t i = global_tid(); i < nv; i += grid_stride()) {
        float av[V], bv[V], yv[V] = {};
        load<V>(a + i * V, av);
        load<V>(b + i * V, bv);
        if (Op::kReadsY) load<V>(y + i * V, yv);
#pragma unroll
        for (int k = 0; k < V; k++) yv[k] = op(yv[k], av[k], bv[k]);
        store<V>(y + i * V, yv);
    }
    for (int64_t i = nv * V + global_tid(); i < n; i += grid_stride()) {
        float yo = Op::kReadsY ? to_f(y[i]) : 0.0f;
        y[i] = from_f<T>(op(yo, to_f(a[i]), to_f(b[i])));
    }
}

// 4-D broadcast geometry after canonicalisation: a's dims d0..d3 (d0 implied) and b's
// strides. The index type I is 32-bit whenever the element count allows, because 64-bit
// division costs several times more and this kernel does three per vector.
template <typename I> struct Bcast4 {
    I d1, d2, d3;
    I bs0, bs1, bs2, bs3;   // bs3 is 0 or 1
};

// b broadcast into a. With V > 1 the launcher guarantees d3 % V == 0 (so there is no tail
// and a vector never crosses a row) and that b is 16-byte aligned; when bs3 == 1 b's offset
// is then a multiple of V too, because every other nonzero stride is a multiple of d3.
template <int V, typename T, typename Op, typename I>
__global__ void binary_bcast_k(T *y, const T *a, const T *b, int64_t n, Bcast4<I> g, Op op) {
    const int64_t nv = n / V;
    for (int64_t i = global_tid(); i < nv; i += grid_stride()) {
        const I e = (I)(i * V);
        const I i3 = e % g.d3;
        I t = e / g.d3;
        const I i2 = t % g.d2;
        t /= g.d2;
        const I i1 = t % g.d1;
        const I i0 = t / g.d1;
        const I boff = i0 * g.bs0 + i1 * g.bs1 + i2 * g.bs2 + i3 * g.bs3;
        float av[V], bv[V], yv[V] = {};
        load<V>(a + i * V, av);
        if (g.bs3 != 0) {
            load<V>(b + boff, bv);
        } else {
            const float bs = to_f(b[boff]);
#pragma unroll
            for (int k = 0; k < V; k++) bv[k] = bs;
        }
        if (Op::kReadsY) load<V>(y + i * V, yv);
#pragma unroll
        for (int k = 0; k < V; k++) yv[k] = op(yv[k], av[k], bv[k]);
        store<V>(y + i * V, yv);
    }
}

// Reduction geometry for db: a's dims merged into at most two kept groups (present in b)
// and two reduced groups (broadcast in b), each as (extent, stride in a). Absent groups have
// extent 1 and stride 0. b's element j is (j / k_in_n, j % k_in_n) over the kept groups.
struct RedGeom {
    int64_t k_out_n, k_out_s, k_in_n, k_in_s;
    int64_t r_out_n, r_out_s, r_in_n, r_in_s;
};

__device__ __forceinline__ int64_t red_offset(const RedGeom &g, int64_t p) {
    if (g.r_out_n == 1) return p * g.r_in_s;
    return (p / g.r_in_n) * g.r_out_s + (p % g.r_in_n) * g.r_in_s;
}

constexpr int kColX = 32, kColY = 16;

// Innermost dim kept (e.g. b [1,1,1,C] or [N,1,1,C]): a block owns 32 consecutive b
// elements, so each row of loads is coalesced; 16 lanes per column split the reduction and
// are summed in a fixed order, which keeps the result deterministic.
template <typename T, bool MUL>
__global__ void __launch_bounds__(kColX *kColY) reduce_cols_k(T *db, const T *dy, const T *a, RedGeom g) {
    __shared__ float part[kColY][kColX + 1];
    const int64_t ncb = (g.k_in_n + kColX - 1) / kColX;
    const int64_t nblk = g.k_out_n * ncb;
    const int64_t nr = g.r_out_n * g.r_in_n;
    for (int64_t blk = blockIdx.x; blk < nblk; blk += gridDim.x) {
        const int64_t jo = blk / ncb;
        const int64_t ji = (blk % ncb) * kColX + threadIdx.x;
        float s = 0.0f;
        if (ji < g.k_in_n) {
            const int64_t base = jo * g.k_out_s + ji;   // innermost stride is 1
            for (int64_t p = threadIdx.y; p < nr; p += kColY) {
                const int64_t o = base + red_offset(g, p);
                float v = to_f(dy[o]);
                if (MUL) v *= to_f(a[o]);
                s += v;
            }
        }
        part[threadIdx.y][threadIdx.x] = s;
        __syncthreads();
        if (threadIdx.y == 0 && ji < g.k_in_n) {
            float t = 0.0f;
#pragma unroll
            for (int k = 0; k < kColY; k++) t += part[k][threadIdx.x];
            const int64_t j = jo * g.k_in_n + ji;
            db[j] = from_f<T>(to_f(db[j]) + t);
        }
        __syncthreads();
    }
}

// Innermost dim reduced (e.g. b [N,1,1,1] or a scalar): one block per b element walks its
// positions with consecutive threads on consecutive addresses, then a fixed-order tree sum.
template <typename T, bool MUL>
__global__ void __launch_bounds__(kThreads) reduce_rows_k(T *db, const T *dy, const T *a, RedGeom g, int64_t nb) {
    __shared__ float warp_sum[kThreads / 32];
    const int64_t nr = g.r_out_n * g.r_in_n;
    for (int64_t j = blockIdx.x; j < nb; j += gridDim.x) {
        const int64_t base = (j / g.k_in_n) * g.k_out_s + (j % g.k_in_n) * g.k_in_s;
        float s = 0.0f;
        for (int64_t p = threadIdx.x; p < nr; p += kThreads) {
            const int64_t o = base + red_offset(g, p);
            float v = to_f(dy[o]);
            if (MUL) v *= to_f(a[o]);
            s += v;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if ((threadIdx.x & 31) == 0) warp_sum[threadIdx.x >> 5] = s;
        __syncthreads();
        if (threadIdx.x == 0) {
            float t = 0.0f;
#pragma unroll
            for (int k = 0; k < kThreads / 32; k++) t += warp_sum[k];
            db[j] = from_f<T>(to_f(db[j]) + t);
        }
        __syncthreads();
    }
}

// ---- host side ----------------------------------------------------------------------------
bool aligned(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

template <typename T> int launch_fill(T *y, int64_t n, T value, cudaStream_t s) {
    constexpr int V = 16 / sizeof(T);
    if (n <= 0) return 0;
    if (aligned(y, 16))
        fill_k<V, T><<<grid_for(n / V > 0 ? n / V : n, kThreads), kThreads, 0, s>>>(y, n, value);
    else
        fill_k<1, T><<<grid_for(n, kThreads), kThreads, 0, s>>>(y, n, value);
    return (int)cudaGetLastError();
}

// Host copy of ddx_f32_to_bf16 (runtime/tensor.h), kept here so kernels/ needs no runtime header.
uint16_t host_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}

template <typename TO, typename TI, typename Op> int launch_unary(TO *y, const TI *x, int64_t n, Op op, cudaStream_t s) {
    constexpr int V = 16 / (sizeof(TO) > sizeof(TI) ? sizeof(TO) : sizeof(TI));
    if (n <= 0) return 0;
    if (aligned(y, V * sizeof(TO)) && aligned(x, V * sizeof(TI)))
        unary_k<V, TO, TI, Op><<<grid_for(n / V > 0 ? n / V : n, kThreads), kThreads, 0, s>>>(y, x, n, op);
    else
        unary_k<1, TO, TI, Op><<<grid_for(n, kThreads), kThreads, 0, s>>>(y, x, n, op);
    return (int)cudaGetLastError();
}

template <typename T, typename Op> int launch_binary_full(T *y, const T *a, const T *b, int64_t n, Op op, cudaStream_t s) {
    constexpr int V = 16 / sizeof(T);
    if (n <= 0) return 0;
    if (aligned(y, 16) && aligned(a, 16) && aligned(b, 16))
        binary_full_k<V, T, Op><<<grid_for(n / V > 0 ? n / V : n, kThreads), kThreads, 0, s>>>(y, a, b, n, op);
    else
        binary_full_k<1, T, Op><<<grid_for(n, kThreads), kThreads, 0, s>>>(y, a, b, n, op);
    return (int)cudaGetLastError();
}

// a's shape with size-1 dims dropped and neighbouring dims of the same kind (kept in b, or
// broadcast) merged: [2,32,32,128] with b [2,1,1,128] becomes kept 2, broadcast 1024,
// kept 128. At most 4 groups remain, alternating kept/broadcast.
struct Canon {
    int ng;
    int64_t n[4];
    bool kept[4];
    int64_t as[4];   // stride in a
    int64_t bs[4];   // stride in b (0 when broadcast)
    int64_t numel;
};

Canon canonicalise(const ddx_k_bcast *bc) {
    Canon c = {};
    c.numel = 1;
    for (int d = 0; d < 4; d++) {
        c.numel *= bc->shape[d];
        if (bc->shape[d] == 1) continue;
        const bool kept = bc->bstride[d] != 0;
        if (c.ng > 0 && c.kept[c.ng - 1] == kept) {
            c.n[c.ng - 1] *= bc->shape[d];
        } else {
            c.n[c.ng] = bc->shape[d];
            c.kept[c.ng] = kept;
            c.ng++;
        }
    }
    int64_t as = 1, bs = 1;
    for (int k = c.ng - 1; k >= 0; k--) {
        c.as[k] = as;
        as *= c.n[k];
        c.bs[k] = c.kept[k] ? bs : 0;
        if (c.kept[k]) bs *= c.n[k];
    }
    return c;
}

bool canon_is_full(const Canon &c) { return c.ng == 0 || (c.ng == 1 && c.kept[0]); }

template <int V, typename T, typename Op, typename I>
void run_bcast(T *y, const T *a, const T *b, const Canon &c, Op op, cudaStream_t s) {
    // Right-align the groups into 4 dims.
    int64_t n4[4] = {1, 1, 1, 1}, b4[4] = {0, 0, 0, 0};
    for (int k = 0; k < c.ng; k++) {
        n4[4 - c.ng + k] = c.n[k];
        b4[4 - c.ng + k] = c.bs[k];
    }
    Bcast4<I> g = {(I)n4[1], (I)n4[2], (I)n4[3], (I)b4[0], (I)b4[1], (I)b4[2], (I)b4[3]};
    binary_bcast_k<V, T, Op, I><<<grid_for(c.numel / V, kThreads), kThreads, 0, s>>>(y, a, b, c.numel, g, op);
}

template <typename T, typename Op> int launch_binary(T *y, const T *a, const T *b, const ddx_k_bcast *bc, Op op, cudaStream_t s) {
    constexpr int V = 16 / sizeof(T);
    const Canon c = canonicalise(bc);
    if (c.numel <= 0) return 0;
    if (canon_is_full(c)) return launch_binary_full<T, Op>(y, a, b, c.numel, op, s);
    const int64_t d3 = c.n[c.ng - 1];
    const bool vec = d3 % V == 0 && aligned(y, 16) && aligned(a, 16) && aligned(b, 16);
    const bool small = c.numel <= (int64_t)UINT32_MAX;
    if (vec && small) run_bcast<V, T, Op, uint32_t>(y, a, b, c, op, s);
    else if (vec) run_bcast<V, T, Op, uint64_t>(y, a, b, c, op, s);
    else if (small) run_bcast<1, T, Op, uint32_t>(y, a, b, c, op, s);
    else run_bcast<1, T, Op, uint64_t>(y, a, b, c, op, s);
    return (int)cudaGetLastError();
}

template <typename T> int launch_bcast_reduce(T *db, const T *dy, const T *a, const ddx_k_bcast *bc, cudaStream_t s) {
    const Canon c = canonicalise(bc);
    if (c.numel <= 0) return 0;
    if (canon_is_full(c)) {
        // Nothing is broadcast: db += dy, or db += dy * a.
        if (a) return launch_binary_full<T, OpMulAcc>(db, dy, a, c.numel, OpMulAcc{}, s);
        return launch_unary<T, T, OpAxpy>(db, dy, c.numel, OpAxpy{1.0f}, s);
    }
    RedGeom g = {1, 0, 1, 0, 1, 0, 1, 0};
    int nk = 0, nrd = 0;
    for (int k = c.ng - 1; k >= 0; k--) {   // innermost first
        if (c.kept[k]) {
            if (nk == 0) { g.k_in_n = c.n[k]; g.k_in_s = c.as[k]; }
            else { g.k_out_n = c.n[k]; g.k_out_s = c.as[k]; }
            nk++;
        } else {
            if (nrd == 0) { g.r_in_n = c.n[k]; g.r_in_s = c.as[k]; }
            else { g.r_out_n = c.n[k]; g.r_out_s = c.as[k]; }
            nrd++;
        }
    }
    if (nk > 2 || nrd > 2) return (int)cudaErrorInvalidValue;   // impossible for 4 dims
    const int64_t nb = g.k_in_n * g.k_out_n;
    if (c.kept[c.ng - 1]) {
        const int64_t nblk = g.k_out_n * ((g.k_in_n + kColX - 1) / kColX);
        const dim3 block(kColX, kColY);
        const int grid = grid_for(nblk * kColX * kColY, kColX * kColY);
        if (a) reduce_cols_k<T, true><<<grid, block, 0, s>>>(db, dy, a, g);
        else reduce_cols_k<T, false><<<grid, block, 0, s>>>(db, dy, a, g);
    } else {
        const int grid = grid_for(nb * kThreads, kThreads);
        if (a) reduce_rows_k<T, true><<<grid, kThreads, 0, s>>>(db, dy, a, g, nb);
        else reduce_rows_k<T, false><<<grid, kThreads, 0, s>>>(db, dy, a, g, nb);
    }
    return (int)cudaGetLastError();
}

}  // namespace

// ---- extern "C" launchers -----------------------------------------------------------------
extern "C" {

int ddx_k_fill_f32(float *y, int64_t n, float value, void *stream) { return launch_fill(y, n, value, st(stream)); }
int ddx_k_fill_bf16(uint16_t *y, int64_t n, float value, void *stream) {
    return launch_fill(y, n, host_f32_to_bf16(value), st(stream));
}
int ddx_k_fill_i32(int32_t *y, int64_t n, int32_t value, void *stream) { return launch_fill(y, n, value, st(stream)); }

int ddx_k_copy(void *dst, const void *src, int64_t bytes, void *stream) {
    if (bytes <= 0) return 0;
    return (int)cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice, st(stream));
}

int ddx_k_cast_f32_to_bf16(uint16_t *y, const float *x, int64_t n, void *stream) {
    return launch_unary(y, x, n, OpIdentity{}, st(stream));
}
int ddx_k_cast_bf16_to_f32(float *y, const uint16_t *x, int64_t n, void *stream) {
    return launch_unary(y, x, n, OpIdentity{}, st(stream));
}

int ddx_k_accumulate_f32(float *dst, const float *src, int64_t n, void *stream) {
    return launch_unary(dst, src, n, OpAxpy{1.0f}, st(stream));
}
int ddx_k_accumulate_bf16(uint16_t *dst, const uint16_t *src, int64_t n, void *stream) {
    return launch_unary(dst, src, n, OpAxpy{1.0f}, st(stream));
}
int ddx_k_accumulate_bf16_into_f32(float *dst, const uint16_t *src, int64_t n, void *stream) {
    return launch_unary(dst, src, n, OpAxpy{1.0f}, st(stream));
}
int ddx_k_accumulate_f32_into_bf16(uint16_t *dst, const float *src, int64_t n, void *stream) {
    return launch_unary(dst, src, n, OpAxpy{1.0f}, st(stream));
}
int ddx_k_axpy_f32(float *dst, const float *src, float alpha, int64_t n, void *stream) {
    return launch_unary(dst, src, n, OpAxpy{alpha}, st(stream));
}
int ddx_k_axpy_bf16(uint16_t *dst, const uint16_t *src, float alpha, int64_t n, void *stream) {
    return launch_unary(dst, src, n, OpAxpy{alpha}, st(stream));
}

int ddx_k_scale_f32(float *y, const float *x, float alpha, float beta, int64_t n, void *stream) {
    return launch_unary(y, x, n, OpScale{alpha, beta}, st(stream));
}
int ddx_k_scale_bf16(uint16_t *y, const uint16_t *x, float alpha, float beta, int64_t n, void *stream) {
    return launch_unary(y, x, n, OpScale{alpha, beta}, st(stream));
}

int ddx_k_silu_f32(float *y, const float *x, int64_t n, void *stream) { return launch_unary(y, x, n, OpSilu{}, st(stream)); }
int ddx_k_silu_bf16(uint16_t *y, const uint16_t *x, int64_t n, void *stream) { return launch_unary(y, x, n, OpSilu{}, st(stream)); }
int ddx_k_silu_bwd_f32(float *dx, const float *x, const float *dy, int64_t n, void *stream) {
    return launch_binary_full(dx, x, dy, n, OpSiluBwd{}, st(stream));
}
int ddx_k_silu_bwd_bf16(uint16_t *dx, const uint16_t *x, const uint16_t *dy, int64_t n, void *stream) {
    return launch_binary_full(dx, x, dy, n, OpSiluBwd{}, st(stream));
}

int ddx_k_relu_f32(float *y, const float *x, int64_t n, void *stream) { return launch_unary(y, x, n, OpRelu{}, st(stream)); }
int ddx_k_relu_bf16(uint16_t *y, const uint16_t *x, int64_t n, void *stream) { return launch_unary(y, x, n, OpRelu{}, st(stream)); }
int ddx_k_relu_bwd_f32(float *dx, const float *x, const float *dy, int64_t n, void *stream) {
    return launch_binary_full(dx, x, dy, n, OpReluBwd{}, st(stream));
}
int ddx_k_relu_bwd_bf16(uint16_t *dx, const uint16_t *x, const uint16_t *dy, int64_t n, void *stream) {
    return launch_binary_full(dx, x, dy, n, OpReluBwd{}, st(stream));
}

int ddx_k_add_f32(float *y, const float *a, const float *b, const ddx_k_bcast *bc, void *stream) {
    return launch_binary(y, a, b, bc, OpAdd{}, st(stream));
}
int ddx_k_add_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, const ddx_k_bcast *bc, void *stream) {
    return launch_binary(y, a, b, bc, OpAdd{}, st(stream));
}
int ddx_k_mul_f32(float *y, const float *a, const float *b, const ddx_k_bcast *bc, void *stream) {
    return launch_binary(y, a, b, bc, OpMul{}, st(stream));
}
int ddx_k_mul_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, const ddx_k_bcast *bc, void *stream) {
    return launch_binary(y, a, b, bc, OpMul{}, st(stream));
}
int ddx_k_mul_bwd_a_f32(float *da, const float *dy, const float *b, const ddx_k_bcast *bc, void *stream) {
    return launch_binary(da, dy, b, bc, OpMulAcc{}, st(stream));
}
int ddx_k_mul_bwd_a_bf16(uint16_t *da, const uint16_t *dy, const uint16_t *b, const ddx_k_bcast *bc, void *stream) {
    return launch_binary(da, dy, b, bc, OpMulAcc{}, st(stream));
}

int ddx_k_bcast_reduce_f32(float *db, const float *dy, const float *a, const ddx_k_bcast *bc, void *stream) {
    return launch_bcast_reduce(db, dy, a, bc, st(stream));
}
int ddx_k_bcast_reduce_bf16(uint16_t *db, const uint16_t *dy, const uint16_t *a, const ddx_k_bcast *bc, void *stream) {
    return launch_bcast_reduce(db, dy, a, bc, st(stream));
}

}  // extern "C"

// ---- concat's strided rows and dropout ------------------------------------------------------
// Memory-bound like the rest: one thread moves one 16-byte vector where the pointers allow it
// (one element otherwise), with 32-bit index math when every index fits. Dropout's keep
// decision is the CPU's integer test on the same Philox bits (kernels/philox.h).
namespace {

// ---- strided rows (concat) ----------------------------------------------------------------
// One thread per vector of the rows x width block; consecutive threads walk a row, so both
// sides are coalesced.
template <int V, typename T, typename I, bool kAcc>
__global__ void __launch_bounds__(kThreads)
    rows_k(T *__restrict__ dst, I dst_ld, const T *__restrict__ src, I src_ld, I width_v, int64_t nvec) {
    for (int64_t i = global_tid(); i < nvec; i += grid_stride()) {
        const I e = (I)i;
        const I r = e / width_v, j = (e - r * width_v) * V;
        float v[V];
        load<V>(src + r * src_ld + j, v);
        if (kAcc) {
            float d[V];
            load<V>(dst + r * dst_ld + j, d);
#pragma unroll
            for (int k = 0; k < V; k++) v[k] = __fadd_rn(d[k], v[k]);
        }
        store<V>(dst + r * dst_ld + j, v);
    }
}

// ---- dropout ------------------------------------------------------------------------------
// One thread per Philox group (elements 4g .. 4g+3), so each group is drawn once; the keep
// decision is the CPU's integer test (runtime/ops/elementwise.c, dropout_mask_block), so the mask is
// bit-identical. kBwd: out = dx, in = dy; else out = y, in = x.
template <bool kBwd> __device__ __forceinline__ float dropout_one(bool keep, float in, float out, float scale) {
    if (kBwd) return keep ? __fadd_rn(out, __fmul_rn(in, scale)) : out;
    return keep ? __fmul_rn(in, scale) : 0.0f;
}

template <typename T, bool kBwd>
__global__ void __launch_bounds__(kThreads)
    dropout_k(T *__restrict__ out, const T *__restrict__ in, int64_t n, ddx_k_dropout_key key, bool vec) {
    // Element e is Philox index offset + e: local group g covers elements 4g - sh .. 4g - sh + 3.
    const int64_t sh = (int64_t)(key.offset & 3);
    const int64_t groups = (n + sh + 3) / 4;
    const uint32_t step = key.step_dev ? __ldg(key.step_dev) : key.step;
    for (int64_t g = global_tid(); g < groups; g += grid_stride()) {
        uint32_t w[4];
        ddx_philox_group(key.seed, key.stream, step, (key.offset >> 2) + (uint64_t)g, w);
        bool keep[4];
#pragma unroll
        for (int l = 0; l < 4; l++) keep[l] = (int32_t)(((w[l] >> 9) << 1) | 1u) >= key.threshold;
        const int64_t e0 = 4 * g - sh;
        if (vec && sh == 0 && e0 + 4 <= n) {
            float a[4], o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            load<4>(in + e0, a);
            if (kBwd) load<4>(out + e0, o);
#pragma unroll
            for (int l = 0; l < 4; l++) o[l] = dropout_one<kBwd>(keep[l], a[l], o[l], key.scale);
            store<4>(out + e0, o);
        } else {
#pragma unroll
            for (int l = 0; l < 4; l++) {
                const int64_t e = e0 + l;
                if (e < 0 || e >= n || (kBwd && !keep[l])) continue;
                const float o = kBwd ? to_f(out[e]) : 0.0f;
                out[e] = from_f<T>(dropout_one<kBwd>(keep[l], to_f(in[e]), o, key.scale));
            }
        }
    }
}

constexpr int kBad = (int)cudaErrorInvalidValue;

// ---- rows ----
template <int V, typename T, typename I, bool kAcc>
int rows_go(T *dst, int64_t dld, const T *src, int64_t sld, int64_t rows, int64_t width, cudaStream_t s) {
    const int64_t nvec = rows * (width / V);
    rows_k<V, T, I, kAcc><<<grid_for(nvec, kThreads), kThreads, 0, s>>>(dst, (I)dld, src, (I)sld, (I)(width / V), nvec);
    return (int)cudaGetLastError();
}

template <typename T, bool kAcc>
int rows_launch(T *dst, int64_t dld, const T *src, int64_t sld, int64_t rows, int64_t width, void *stream) {
    if (rows < 0 || width < 0 || dld < width || sld < width) return kBad;
    if (rows == 0 || width == 0) return 0;
    constexpr int V = 16 / sizeof(T);
    const bool vec = width % V == 0 && dld % V == 0 && sld % V == 0 && aligned(dst, 16) && aligned(src, 16);
    const int64_t big = rows * (dld > sld ? dld : sld);
    cudaStream_t s = st(stream);
    if (fits32(big))
        return vec ? rows_go<V, T, uint32_t, kAcc>(dst, dld, src, sld, rows, width, s)
                   : rows_go<1, T, uint32_t, kAcc>(dst, dld, src, sld, rows, width, s);
    return vec ? rows_go<V, T, int64_t, kAcc>(dst, dld, src, sld, rows, width, s)
               : rows_go<1, T, int64_t, kAcc>(dst, dld, src, sld, rows, width, s);
}

// ---- dropout ----
template <typename T, bool kBwd>
int dropout_launch(T *out, const T *in, int64_t n, ddx_k_dropout_key key, void *stream) {
    if (n < 0 || key.threshold < 0 || key.threshold > (1 << 24)) return kBad;
    if (n == 0) return 0;
    const bool vec = aligned(out, 4 * sizeof(T)) && aligned(in, 4 * sizeof(T));
    const int64_t groups = (n + (int64_t)(key.offset & 3) + 3) / 4;
    dropout_k<T, kBwd><<<grid_for(groups, kThreads), kThreads, 0, st(stream)>>>(out, in, n, key, vec);
    return (int)cudaGetLastError();
}

}  // namespace

extern "C" {

int ddx_k_rows_copy_f32(float *dst, int64_t dst_ld, const float *src, int64_t src_ld, int64_t rows, int64_t width,
                        void *stream) {
    return rows_launch<float, false>(dst, dst_ld, src, src_ld, rows, width, stream);
}
int ddx_k_rows_copy_bf16(uint16_t *dst, int64_t dst_ld, const uint16_t *src, int64_t src_ld, int64_t rows,
                         int64_t width, void *stream) {
    return rows_launch<uint16_t, false>(dst, dst_ld, src, src_ld, rows, width, stream);
}
int ddx_k_rows_acc_f32(float *dst, int64_t dst_ld, const float *src, int64_t src_ld, int64_t rows, int64_t width,
                       void *stream) {
    return rows_launch<float, true>(dst, dst_ld, src, src_ld, rows, width, stream);
}
int ddx_k_rows_acc_bf16(uint16_t *dst, int64_t dst_ld, const uint16_t *src, int64_t src_ld, int64_t rows,
                        int64_t width, void *stream) {
    return rows_launch<uint16_t, true>(dst, dst_ld, src, src_ld, rows, width, stream);
}

int ddx_k_dropout_f32(float *y, const float *x, int64_t n, ddx_k_dropout_key key, void *stream) {
    return dropout_launch<float, false>(y, x, n, key, stream);
}
int ddx_k_dropout_bf16(uint16_t *y, const uint16_t *x, int64_t n, ddx_k_dropout_key key, void *stream) {
    return dropout_launch<uint16_t, false>(y, x, n, key, stream);
}
int ddx_k_dropout_bwd_f32(float *dx, const float *dy, int64_t n, ddx_k_dropout_key key, void *stream) {
    return dropout_launch<float, true>(dx, dy, n, key, stream);
}
int ddx_k_dropout_bwd_bf16(uint16_t *dx, const uint16_t *dy, int64_t n, ddx_k_dropout_key key, void *stream) {
    return dropout_launch<uint16_t, true>(dx, dy, n, key, stream);
}

}  // extern "C"
