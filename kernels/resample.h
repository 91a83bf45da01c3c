// CUDA kernels of the smaller ops: upsample2x, pool2x, concat (as strided row copies),
// embedding, timestep_emb and dropout (runtime/ops.h gives their semantics,
// runtime/ops/misc.c their CPU reference).
//
// Host launchers take raw device pointers, sizes and a cudaStream_t passed as void*, enqueue
// the work and return the cudaError_t of the launch as an int (0 = success;
// cudaErrorInvalidValue (1) for sizes the front-ends would refuse). bf16 tensors are uint16_t
// bit patterns; all math is fp32. Backward launchers ACCUMULATE into their gradient output.
// Every result is deterministic (no atomics), and the floating-point operations happen in the
// same order as on the CPU, so outputs are meant to be bit-identical to the reference
// (timestep_emb: up to a ~2^-29 chance per value that a double exp/sin lands on the other
// side of a float rounding boundary than glibc's).
#ifndef DDX_KERNELS_RESAMPLE_H
#define DDX_KERNELS_RESAMPLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- upsample2x: x [N, H, W, C] -> y [N, 2H, 2W, C] -----------------------------------------
// bilinear = 0: nearest; 1: bilinear with align_corners=False (F.interpolate(scale_factor=2)).
int ddx_k_upsample2x_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear,
                         void *stream);
int ddx_k_upsample2x_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear,
                          void *stream);
// dx [N, H, W, C] += the adjoint applied to dy [N, 2H, 2W, C]; a gather per dx element.
int ddx_k_upsample2x_bwd_f32(float *dx, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C, int bilinear,
                             void *stream);
int ddx_k_upsample2x_bwd_bf16(uint16_t *dx, const uint16_t *dy, int64_t N, int64_t H, int64_t W, int64_t C,
                              int bilinear, void *stream);

// ---- pool2x: x [N, H, W, C] (H, W even) -> y [N, H/2, W/2, C] -------------------------------
// avg = 0: max (first max wins ties, a NaN wins: PyTorch's rule); 1: average.
int ddx_k_pool2x_f32(float *y, const float *x, int64_t N, int64_t H, int64_t W, int64_t C, int avg, void *stream);
int ddx_k_pool2x_bf16(uint16_t *y, const uint16_t *x, int64_t N, int64_t H, int64_t W, int64_t C, int avg,
                      void *stream);
// dx [N, H, W, C] += the gradient of dy [N, H/2, W/2, C]; max recomputes the argmax from x.
int ddx_k_pool2x_bwd_f32(float *dx, const float *x, const float *dy, int64_t N, int64_t H, int64_t W, int64_t C,
                         int avg, void *stream);
int ddx_k_pool2x_bwd_bf16(uint16_t *dx, const uint16_t *x, const uint16_t *dy, int64_t N, int64_t H, int64_t W,
                          int64_t C, int avg, void *stream);

// ---- strided rows (concat and its backward) -------------------------------------------------
// For r in [0, rows), j in [0, width): dst[r * dst_ld + j] = src[r * src_ld + j] (copy) or
// += (acc). Column offsets are folded into the pointers by the caller.
int ddx_k_rows_copy_f32(float *dst, int64_t dst_ld, const float *src, int64_t src_ld, int64_t rows, int64_t width,
                        void *stream);
int ddx_k_rows_copy_bf16(uint16_t *dst, int64_t dst_ld, const uint16_t *src, int64_t src_ld, int64_t rows,
                         int64_t width, void *stream);
int ddx_k_rows_acc_f32(float *dst, int64_t dst_ld, const float *src, int64_t src_ld, int64_t rows, int64_t width,
                       void *stream);
int ddx_k_rows_acc_bf16(uint16_t *dst, int64_t dst_ld, const uint16_t *src, int64_t src_ld, int64_t rows,
                        int64_t width, void *stream);

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

// ---- dropout ---------------------------------------------------------------------------------
// Element e is kept when its Philox uniform (ddx_philox_uniform_at(seed, stream, step, e)) is
// >= p, decided exactly on the integer grid: keep <=> 2 * (bits >> 9) + 1 >= threshold with
// threshold = ceil(p * 2^24). Kept elements are scaled by `scale` (1 / (1 - p), 0 for p = 1).
typedef struct ddx_k_dropout_key {
    uint64_t seed;
    uint32_t stream;
    uint32_t step;
    int32_t threshold;   // in [0, 2^24]
    float scale;
    // Non-NULL under CUDA graphs: the step word is read from this device address when the
    // kernel runs (`step` is then ignored), so a replayed step draws that step's masks.
    const uint32_t *step_dev;
} ddx_k_dropout_key;

// y = keep ? x * scale : +0
int ddx_k_dropout_f32(float *y, const float *x, int64_t n, ddx_k_dropout_key key, void *stream);
int ddx_k_dropout_bf16(uint16_t *y, const uint16_t *x, int64_t n, ddx_k_dropout_key key, void *stream);
// dx = keep ? dx + dy * scale : dx (dropped elements are left untouched, not even + 0)
int ddx_k_dropout_bwd_f32(float *dx, const float *dy, int64_t n, ddx_k_dropout_key key, void *stream);
int ddx_k_dropout_bwd_bf16(uint16_t *dx, const uint16_t *dy, int64_t n, ddx_k_dropout_key key, void *stream);

#ifdef __cplusplus
}
#endif

#endif
