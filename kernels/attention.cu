// Flash-style attention kernels (see attention.h for the contract): fp32 SIMT kernels for every
// shape and dtype, and bf16 tensor-core (mma.sync) kernels that the bf16 launchers prefer
// where they apply (the "bf16 tensor-core path" section below).
//
// ---- fp32 SIMT kernels ----
// Forward: one 128-thread block per (item, head, tile of BQ query rows). The Q tile stays in
// shared memory; the block walks the keys in tiles of BK: S = Q K^T (register-tiled, scaled
// into log2 units), an online softmax per row (running max m and sum l; the O accumulator is
// rescaled by exp2(m_old - m_new)), then O += P V with V loaded into the buffer K used. O lives
// in registers, the score tile in shared memory; at the end O / l and lse = ln(sum exp) are
// written. Nothing of size L x L ever reaches device memory.
//
// Backward (FlashAttention-2 scheme, deterministic):
//   delta_i = dO_i . O_i                                 (one warp per row)
//   dK/dV: one block per (item, head, key tile), looping over query tiles:
//          P^T = exp(scale K Q^T - lse), dV += P^T dO, dP^T = V dO^T,
//          dS^T = P^T (dP^T - delta), dK += scale dS^T Q
//   dQ:    one block per (item, head, query tile), looping over key tiles:
//          P = exp(scale Q K^T - lse), dP = dO V^T, dS = P (dP - delta), dQ += scale dS K
// Each grad element is owned by one thread of one block and accumulated in a fixed order,
// then added once into the caller's buffer: no atomics, bit-reproducible.
//
// Shared-memory tiles are [rows][dp] floats with dp = head_dim rounded up to 4 (zero-filled
// past head_dim and past L) plus padding that makes dp/4 odd, so that float4 reads of 8
// consecutive rows hit 8 distinct 16-byte bank groups. Tile sizes are compile-time per
// head_dim bucket (32, 64, 128, 256, 512: the smallest that holds head_dim), chosen to keep
// the per-thread register accumulators at <= 64 floats (no spills under 255 registers).
#include "kernels/attention.h"

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/common.cuh"
#include "kernels/tune.h"
#include "kernels/ptx.cuh"

namespace {

constexpr int NT = 128;                      // threads per block, every kernel
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

#include "kernels/attention_simt.cuh"

#include "kernels/attention_tc.cuh"

// Whether the bf16 forward / backward takes the tensor-core kernels.
bool tc_fwd_ok(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *out, int64_t L, int D) {
    return tc::shape_ok(L, D) && tc::aligned16(q) && tc::aligned16(k) && tc::aligned16(v) && tc::aligned16(out) &&
           tc::device_ok(tc::fwd_smem(D));
}
bool tc_bwd_ok(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *dout, const uint16_t *dq,
               const uint16_t *dk, const uint16_t *dv, int64_t L, int D) {
    return tc::shape_ok(L, D) && tc::aligned16(q) && tc::aligned16(k) && tc::aligned16(v) && tc::aligned16(dout) &&
           tc::aligned16(dq) && tc::aligned16(dk) && tc::aligned16(dv) && tc::bwd_variant(D) != 0;
}

}  // namespace

extern "C" size_t ddx_k_attention_smem_bytes(int head_dim) {
    const int dp = pad_of(round4(head_dim));
    switch (bucket_of(head_dim)) {
    case 32: return smem_bytes_at<32>(dp);
    case 64: return smem_bytes_at<64>(dp);
    case 128: return smem_bytes_at<128>(dp);
    case 256: return smem_bytes_at<256>(dp);
    case 512: return smem_bytes_at<512>(dp);
    default: return 0;
    }
}

extern "C" int ddx_k_attention_fwd_f32(const float *q, const float *k, const float *v, float *out, float *lse, int64_t N,
                                       int64_t L, int heads, int head_dim, float scale, void *stream) {
    return fwd_any(q, k, v, out, lse, N, L, heads, head_dim, scale, stream);
}

extern "C" int ddx_k_attention_fwd_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse,
                                        int64_t N, int64_t L, int heads, int head_dim, float scale, void *stream) {
    if (!shape_ok(N, L, heads, head_dim) || N == 0 || L == 0 || !tc_fwd_ok(q, k, v, out, L, head_dim))
        return fwd_any(q, k, v, out, lse, N, L, heads, head_dim, scale, stream);
    cudaStream_t st = (cudaStream_t)stream;
    switch (tc::bucket(head_dim)) {
    case 32: return (int)tc::fwd_launch<32>(q, k, v, out, lse, N, L, heads, head_dim, scale, st);
    case 64: return (int)tc::fwd_launch<64>(q, k, v, out, lse, N, L, heads, head_dim, scale, st);
    case 128: return (int)tc::fwd_launch<128>(q, k, v, out, lse, N, L, heads, head_dim, scale, st);
    default: return (int)tc::fwd_launch<256>(q, k, v, out, lse, N, L, heads, head_dim, scale, st);
    }
}

extern "C" int ddx_k_attention_bwd_f32(const float *q, const float *k, const float *v, const float *out, const float *dout,
                                       const float *lse, float *delta, float *dq, float *dk, float *dv, int64_t N, int64_t L,
                                       int heads, int head_dim, float scale, void *stream) {
    return bwd_any(q, k, v, out, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, stream);
}

extern "C" int ddx_k_attention_bwd_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *out,
                                        const uint16_t *dout, const float *lse, float *delta, uint16_t *dq, uint16_t *dk,
                                        uint16_t *dv, int64_t N, int64_t L, int heads, int head_dim, float scale,
                                        void *stream) {
    if (!shape_ok(N, L, heads, head_dim) || N == 0 || L == 0 || (!dq && !dk && !dv) ||
        !tc_bwd_ok(q, k, v, dout, dq, dk, dv, L, head_dim))
        return bwd_any(q, k, v, out, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, stream);
    cudaStream_t st = (cudaStream_t)stream;
    const cudaError_t e = delta_launch(out, dout, delta, N, L, heads, head_dim, st);
    if (e != cudaSuccess) return (int)e;
    switch (tc::bucket(head_dim)) {
    case 32: return (int)tc::bwd_launch<32>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, st);
    case 64: return (int)tc::bwd_launch<64>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, st);
    case 128: return (int)tc::bwd_launch<128>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, st);
    default: return (int)tc::bwd_launch<256>(q, k, v, dout, lse, delta, dq, dk, dv, N, L, heads, head_dim, scale, st);
    }
}
