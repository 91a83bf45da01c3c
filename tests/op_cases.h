// Test cases for the op driver (tests/test_ops.c). Each op family lists its cases in
// tests/cases_<family>.c; the driver runs every case on every backend against the CPU
// reference and, with --grad, checks every backward against central finite differences.
// With --perf it times the same cases (and the perf-only ones of tests/cases_perf.c).
#ifndef DDX_OP_CASES_H
#define DDX_OP_CASES_H

#include "runtime/ops.h"

// How the driver fills an input.
typedef enum ddx_gen {
    DDX_GEN_NORMAL = 0,     // N(0, 1)
    DDX_GEN_UNIFORM,        // U(-1, 1)
    DDX_GEN_POSITIVE,       // U(0.5, 1.5)
    DDX_GEN_AWAY_FROM_ZERO, // U(-1,-0.1) or U(0.1,1): for kinks at 0 (relu)
    DDX_GEN_DISTINCT,       // a permutation of an even grid on [-2, 2): max pool never ties; the
                            // driver keeps finite-difference steps below a quarter of the spacing
    DDX_GEN_INDEX,          // i32 in [0, gen_arg)
    DDX_GEN_TIMESTEP,       // f32 integers in [0, gen_arg)
    DDX_GEN_SMALL,          // N(0, 0.1^2): e.g. weights
} ddx_gen;

typedef struct ddx_case_input {
    int ndim;                          // 0: the input is absent (NULL, e.g. no bias)
    int64_t shape[DDX_MAX_DIMS];
    ddx_dtype dtype;                   // 0 = DDX_F32
    ddx_gen gen;
    int64_t gen_arg;
    bool grad;                         // check the gradient of this input
} ddx_case_input;

struct ddx_op_case;
// Builds the op from already created inputs (NULL where absent); returns the op's output.
typedef ddx_tensor *(*ddx_case_apply)(ddx_ctx *c, ddx_tensor **in, const struct ddx_op_case *tc);

typedef struct ddx_op_case {
    ddx_op op;                         // the op under test (coverage: every op needs a case)
    const char *desc;                  // shape/params in words, printed on failure
    int n_inputs;
    ddx_case_input in[DDX_MAX_INPUTS];
    ddx_case_apply apply;
    ddx_op_params p;                   // whatever apply needs
    // Forward tolerance vs the CPU reference: |got - ref| <= atol + rtol * |ref|, per dtype
    // class. 0 means the defaults in test_ops.c (fp32 1e-5 rel, bf16 1e-2 rel).
    double fwd_rtol, fwd_atol;
    // Gradient tolerance vs central differences (defaults in test_ops.c); the finite
    // difference step is grad_h * max(1, |x|) (default 1e-2).
    double grad_rtol, grad_atol, grad_h;
    bool no_grad;                      // forward-only case (e.g. large real U-Net shapes)
    bool training;                     // run with ctx->training = true (dropout)
    bool tf32;                         // run with ctx->tf32 = true (CUDA: TF32 tensor cores)
    // bf16 inputs reach the CPU reference as f32 holding the same (bf16-rounded) values, for
    // ops whose CPU reference is f32-only; cast/copy/fill leave this false and see real bf16.
    bool bf16_ref_f32;
    // Perf-only case (test_ops --perf): the correctness runs skip it (too big for the CPU
    // reference or finite differences); the bits name the backends that time it.
    unsigned perf_only;
    // FLOPs of one forward (backward = false) or one backward (all input grads), for GFLOP/s
    // in --perf; NULL for memory-bound ops, which report GB/s only.
    double (*flops)(const struct ddx_op_case *tc, bool backward);
} ddx_op_case;

#define DDX_CASE_PERF_CPU 1u
#define DDX_CASE_PERF_CUDA 2u

// FLOP counts for the flops field (tests/cases_perf.c): the GEMM work of conv2d (in[0] x,
// in[1] w, p.conv2d), linear (in[0] x, in[1] w) and attention (in[0] q [N, L, C], p.attention).
double ddx_case_flops_conv2d(const ddx_op_case *tc, bool backward);
double ddx_case_flops_linear(const ddx_op_case *tc, bool backward);
double ddx_case_flops_attention(const ddx_op_case *tc, bool backward);

typedef struct ddx_case_list {
    const ddx_op_case *cases;
    size_t n;
} ddx_case_list;

// The op families, one case table each: tests/cases_<family>.c defines ddx_cases_<family>()
// (the same stems as runtime/ops/, runtime/cuda/ops/ and kernels/). The driver runs every
// family listed here, so a new op needs only its rows in its family's table; a new family
// adds one entry here and its file to tests/meson.build.
#define DDX_CASE_FAMILIES(X) \
    X(elementwise)           \
    X(conv)                  \
    X(linear)                \
    X(norm)                  \
    X(attention)             \
    X(losses)                \
    X(resample)              \
    X(embed)                 \
    X(diffusion)

#define DDX_X_CASES_DECL(fam) ddx_case_list ddx_cases_##fam(void);
DDX_CASE_FAMILIES(DDX_X_CASES_DECL)
#undef DDX_X_CASES_DECL
// DDPM U-Net shapes for test_ops --perf only: batch 4 on the CPU, batch 128 on CUDA.
ddx_case_list ddx_cases_perf(void);

#endif
