// CUDA kernels of the embedding family: embedding and timestep_emb (runtime/ops.h gives their
// semantics, runtime/ops/embed.c their CPU reference).
//
// Host launchers take raw device pointers, sizes and a cudaStream_t passed as void*, enqueue
// the work and return the cudaError_t of the launch as an int (0 = success;
// cudaErrorInvalidValue (1) for sizes the front-ends would refuse). bf16 tensors are uint16_t
// bit patterns; all math is fp32. The backward launcher ACCUMULATES into its gradient output.
// Every result is deterministic (no atomics), and the floating-point operations happen in the
// same order as on the CPU, so outputs are meant to be bit-identical to the reference
// (timestep_emb: up to a ~2^-29 chance per value that a double exp/sin lands on the other
// side of a float rounding boundary than glibc's).
#ifndef DDX_KERNELS_EMBED_H
#define DDX_KERNELS_EMBED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- embedding: idx [N] i32, table [V, D] -> y [N, D] ---------------------------------------
// An index outside [0, V) yields a row of NaNs (the indices live on the device, so the host
// cannot check them without a sync; the NaNs reach the loss and the grad-norm check).
int ddx_k_embedding_f32(float *y, const int32_t *idx, const float *table, int64_t N, int64_t V, int64_t D,
                        void *stream);
int ddx_k_embedding_bf16(uint16_t *y, const int32_t *idx, const uint16_t *table, int64_t N, int64_t V, int64_t D,
                         void *stream);
// dtable [V, D] += dy rows summed per index, in increasing position order (as the CPU's
// sequential scatter-add), by the first position holding each index; out-of-range indices
// add nothing. No atomics.
int ddx_k_embedding_bwd_f32(float *dtable, const int32_t *idx, const float *dy, int64_t N, int64_t V, int64_t D,
                            void *stream);
int ddx_k_embedding_bwd_bf16(uint16_t *dtable, const int32_t *idx, const uint16_t *dy, int64_t N, int64_t V,
                             int64_t D, void *stream);

// ---- timestep_emb: t [N] f32 -> y [N, 2 * half] f32 -----------------------------------------
// freq_k = fp32(exp(fp32(fp32(neg_log_period * k) / denom))), arg = fp32(t * freq_k); the first
// half of each row holds sin(arg) (cos when flip), the second cos (sin when flip).
// neg_log_period = fp32(-ln max_period) and denom = fp32(half - freq_shift), from the host.
int ddx_k_timestep_emb_f32(float *y, const float *t, int64_t N, int64_t half, float neg_log_period, float denom,
                           int flip, void *stream);

#ifdef __cplusplus
}
#endif

#endif
