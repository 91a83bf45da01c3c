// For op implementers: the shared front-end machinery. Model code includes ops.h only.
#ifndef DDX_OP_IMPL_H
#define DDX_OP_IMPL_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// True when the context has no sticky error and every one of the n required inputs is
// non-NULL and on the context's device. Otherwise records the error and returns false.
bool ddx_op_ok(ddx_ctx *c, const char *op, int n, ddx_tensor *const *required);
// Records an error as the context's sticky status and returns NULL (for `return ddx_op_fail(...)`).
ddx_tensor *ddx_op_fail(ddx_ctx *c, ddx_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Allocates the output [ndim, shape] of dtype out_dt, runs the backend's forward and, when
// grad is enabled and an input requires grad, appends the node to the tape and marks the
// output requires_grad. in[] may hold NULL for absent optional inputs.
ddx_tensor *ddx_op_run(ddx_ctx *c, ddx_op op, int n_in, ddx_tensor *const *in, const ddx_op_params *p,
                       ddx_dtype out_dt, int ndim, const int64_t *shape);
// Appends a node whose output already exists (ops that allocate nothing, like reshape).
// Returns false (sticky error set) when the tape cannot grow.
bool ddx_op_record(ddx_ctx *c, ddx_op op, int n_in, ddx_tensor *const *in, const ddx_op_params *p, ddx_tensor *out);
// The gradient buffer a backward should accumulate into for input i, or NULL when that input
// is absent or does not require grad.
ddx_tensor *ddx_in_grad(ddx_ctx *c, ddx_node *n, int i);
// For an output gradient dy that passes to input `in` unchanged (add, a fused residual):
// when nobody has written in's grad yet and it matches dy's dtype and shape, dy's buffer
// becomes that grad (no zeroed buffer, no pass over it) and true is returned. Safe because the
// tape runs in reverse: nothing reads n->out->grad after its node, and later writers only
// add into the input's grad. At most one input may take a given dy.
bool ddx_grad_take(ddx_tensor *in, ddx_tensor *dy);
// When t requires grad and has none yet: gives it an uninitialised grad that the caller's
// kernel must write in full (not add into) and returns true; otherwise false (add into
// t->grad as usual). An allocation failure returns false with c's status set.
bool ddx_grad_fresh(ddx_ctx *c, ddx_tensor *t);

// Room for a shape printed into an error message (ddx_shape_str).
#define DDX_SHAPE_BUF 64

static inline bool ddx_is_float_dtype(ddx_dtype dt) { return dt == DDX_F32 || dt == DDX_BF16; }
// The CPU backend is the fp32 reference: anything else reaching it is a dispatch mistake or a
// bf16 tensor on the CPU, which has no bf16 kernels. DDX_E_UNSUPPORTED naming op and operand.
ddx_status ddx_cpu_need_f32(const char *op, const ddx_tensor *t, const char *what);

static inline const float *ddx_f32c(const ddx_tensor *t) { return (const float *)t->data; }
static inline float *ddx_f32(ddx_tensor *t) { return (float *)t->data; }

#ifdef __cplusplus
}
#endif

#endif
