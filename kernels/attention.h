// Fused (flash-style) multi-head attention kernels: forward and backward.
//
// q, k, v, out, dout and the grads are [N, L, C] with C = heads * head_dim (head h is the
// column block [h*head_dim, (h+1)*head_dim) of every row), contiguous, all of one dtype:
// f32, or bf16 stored as uint16_t bit patterns. f32 runs fp32 SIMT kernels; bf16 runs
// tensor-core kernels (bf16 products, fp32 accumulation and softmax; P and dS rounded to bf16
// before their products) when head_dim % 8 == 0, head_dim <= 256, every pointer is 16-byte
// aligned and the device is sm_80+ with the shared memory they need, else the fp32 SIMT
// kernels. Per head:
//   out_i = sum_j softmax_j(scale * q_i . k_j) v_j
// and the forward also writes the row logsumexp lse [N, heads, L] (f32, natural log) that the
// backward recomputes the probabilities from. The L x L score matrix never goes to memory.
//
// Host launchers take raw device pointers and a cudaStream_t passed as void*, enqueue the work
// and return the cudaError_t of the launch as an int (0 = success; cudaErrorInvalidValue (1)
// for shapes they do not handle: head_dim outside [1, DDX_K_ATTENTION_MAX_HEAD_DIM], a grid
// over 2^31 blocks). The backward ACCUMULATES into dq, dk, dv (each may be NULL); it is
// deterministic (no atomics: every grad element is summed by one thread in a fixed order).
#ifndef DDX_KERNELS_ATTENTION_H
#define DDX_KERNELS_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DDX_K_ATTENTION_MAX_HEAD_DIM 512

// Dynamic shared memory (bytes) the largest of the fp32 SIMT attention kernels asks for at this
// head_dim, 0 when head_dim is not supported. The caller compares it with the device's
// opt-in limit (cudaDevAttrMaxSharedMemoryPerBlockOptin) to refuse cleanly on small GPUs. The
// bf16 tensor-core kernels (at head_dim 256: forward 101 KB, backward up to ~136 KB; 169 KB
// for the double-buffered forward, DDX_ATTN_FWD_V1=1) check the limit themselves and
// leave the call to the SIMT kernels where they do not fit.
// (The default backward takes 217 KB at head_dim 256 and falls back to the recomputing one,
// DDX_ATTN_BWD_V1=1, where the device allows less.)
size_t ddx_k_attention_smem_bytes(int head_dim);

// out, lse (lse: [N, heads, L] f32).
int ddx_k_attention_fwd_f32(const float *q, const float *k, const float *v, float *out, float *lse, int64_t N, int64_t L,
                            int heads, int head_dim, float scale, void *stream);
int ddx_k_attention_fwd_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, int64_t N,
                             int64_t L, int heads, int head_dim, float scale, void *stream);

// dq += ..., dk += ..., dv += ... (NULL: not wanted). out and lse are the forward's; delta is
// scratch of N * heads * L floats (overwritten: delta_i = dout_i . out_i per head).
int ddx_k_attention_bwd_f32(const float *q, const float *k, const float *v, const float *out, const float *dout,
                            const float *lse, float *delta, float *dq, float *dk, float *dv, int64_t N, int64_t L, int heads,
                            int head_dim, float scale, void *stream);
int ddx_k_attention_bwd_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *out,
                             const uint16_t *dout, const float *lse, float *delta, uint16_t *dq, uint16_t *dk, uint16_t *dv,
                             int64_t N, int64_t L, int heads, int head_dim, float scale, void *stream);

#ifdef __cplusplus
}
#endif

#endif
