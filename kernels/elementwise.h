// Elementwise CUDA kernels: fill, copy, cast, add/mul with broadcasting, scale, SiLU, ReLU,
// dropout, concat (as strided row copies), their backward passes and gradient accumulation.
//
// Host launchers take raw device pointers, element counts and a cudaStream_t passed as void*
// (so that C files need no CUDA header), enqueue the work and return the cudaError_t of the
// launch as an int (0 = success). bf16 tensors are stored as uint16_t bit patterns; all math
// is fp32. Backward launchers ACCUMULATE into their gradient output (dx += ...), never
// overwrite. Work on 16-byte vectors when every pointer is 16-byte aligned, else per element.
#ifndef DDX_KERNELS_ELEMENTWISE_H
#define DDX_KERNELS_ELEMENTWISE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// b broadcast into a (4-D, trailing dims padded with 1): shape is a's shape, bstride holds
// b's element strides with 0 on every dim where b has extent 1.
typedef struct ddx_k_bcast {
    int64_t shape[4];
    int64_t bstride[4];
} ddx_k_bcast;

// From a's and b's 4-D shapes; returns 0, or -1 when some b dim is neither 1 nor a's.
static inline int ddx_k_bcast_make(ddx_k_bcast *bc, const int64_t ashape[4], const int64_t bshape[4]) {
    int64_t stride = 1;
    for (int d = 3; d >= 0; d--) {
        if (bshape[d] != 1 && bshape[d] != ashape[d]) return -1;
        bc->shape[d] = ashape[d];
        bc->bstride[d] = bshape[d] == 1 ? 0 : stride;
        stride *= bshape[d];
    }
    return 0;
}

int ddx_k_fill_f32(float *y, int64_t n, float value, void *stream);
int ddx_k_fill_bf16(uint16_t *y, int64_t n, float value, void *stream);   // value rounded like ddx_f32_to_bf16
int ddx_k_fill_i32(int32_t *y, int64_t n, int32_t value, void *stream);
// Byte copy, device to device, stream-ordered.
int ddx_k_copy(void *dst, const void *src, int64_t bytes, void *stream);
// Round-to-nearest-even with quiet NaNs: bit-identical to ddx_f32_to_bf16 (runtime/tensor.h).
int ddx_k_cast_f32_to_bf16(uint16_t *y, const float *x, int64_t n, void *stream);
int ddx_k_cast_bf16_to_f32(float *y, const uint16_t *x, int64_t n, void *stream);

// dst += src (the backward of copy/reshape/add and every gradient merge).
int ddx_k_accumulate_f32(float *dst, const float *src, int64_t n, void *stream);
int ddx_k_accumulate_bf16(uint16_t *dst, const uint16_t *src, int64_t n, void *stream);
// dst += src across dtypes (the backward of cast).
int ddx_k_accumulate_bf16_into_f32(float *dst, const uint16_t *src, int64_t n, void *stream);
int ddx_k_accumulate_f32_into_bf16(uint16_t *dst, const float *src, int64_t n, void *stream);
// dst += alpha * src (the backward of scale).
int ddx_k_axpy_f32(float *dst, const float *src, float alpha, int64_t n, void *stream);
int ddx_k_axpy_bf16(uint16_t *dst, const uint16_t *src, float alpha, int64_t n, void *stream);

// y = alpha * x + beta
int ddx_k_scale_f32(float *y, const float *x, float alpha, float beta, int64_t n, void *stream);
int ddx_k_scale_bf16(uint16_t *y, const uint16_t *x, float alpha, float beta, int64_t n, void *stream);
// y = x * sigmoid(x);  dx += dy * s(x) * (1 + x * (1 - s(x)))
int ddx_k_silu_f32(float *y, const float *x, int64_t n, void *stream);
int ddx_k_silu_bf16(uint16_t *y, const uint16_t *x, int64_t n, void *stream);
int ddx_k_silu_bwd_f32(float *dx, const float *x, const float *dy, int64_t n, void *stream);
int ddx_k_silu_bwd_bf16(uint16_t *dx, const uint16_t *x, const uint16_t *dy, int64_t n, void *stream);
// y = max(x, 0);  dx += x > 0 ? dy : 0
int ddx_k_relu_f32(float *y, const float *x, int64_t n, void *stream);
int ddx_k_relu_bf16(uint16_t *y, const uint16_t *x, int64_t n, void *stream);
int ddx_k_relu_bwd_f32(float *dx, const float *x, const float *dy, int64_t n, void *stream);
int ddx_k_relu_bwd_bf16(uint16_t *dx, const uint16_t *x, const uint16_t *dy, int64_t n, void *stream);

// y = a + b and y = a * b, b broadcast into a's shape (y and a: bc->shape, contiguous).
int ddx_k_add_f32(float *y, const float *a, const float *b, const ddx_k_bcast *bc, void *stream);
int ddx_k_add_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, const ddx_k_bcast *bc, void *stream);
int ddx_k_mul_f32(float *y, const float *a, const float *b, const ddx_k_bcast *bc, void *stream);
int ddx_k_mul_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, const ddx_k_bcast *bc, void *stream);
// The backward of mul for a: da += dy * b (b broadcast).
int ddx_k_mul_bwd_a_f32(float *da, const float *dy, const float *b, const ddx_k_bcast *bc, void *stream);
int ddx_k_mul_bwd_a_bf16(uint16_t *da, const uint16_t *dy, const uint16_t *b, const ddx_k_bcast *bc, void *stream);
// The backward for b of add (a == NULL) and mul (a = the forward's a): db[j] += sum of dy
// (or dy * a) over every position of a's shape that b[j] was broadcast to. Deterministic:
// the summation order depends only on the shapes.
int ddx_k_bcast_reduce_f32(float *db, const float *dy, const float *a, const ddx_k_bcast *bc, void *stream);
int ddx_k_bcast_reduce_bf16(uint16_t *db, const uint16_t *dy, const uint16_t *a, const ddx_k_bcast *bc, void *stream);

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
    // Philox element index of element 0 (a data-parallel rank's rows: their global index).
    uint64_t offset;
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
