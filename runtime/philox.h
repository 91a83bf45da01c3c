// Philox4x32-10 on the host: the CPU fills over the core in kernels/philox.h (keying
// convention, exact float helpers, per-element draws), which the kernels share so that CPU
// and GPU give identical bits. See kernels/philox.h for the convention.
#ifndef DDX_PHILOX_H
#define DDX_PHILOX_H

#include <stdint.h>

#include "kernels/philox.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- CPU fills (runtime/philox.c) -----------------------------------------------------------
// out[i] for i in [0, n) is element offset + i under the keying convention above.
// DDX_E_INPUT for n < 0, out == NULL with n > 0, step >= 2^32, or offset + n overflowing.
ddx_status ddx_philox_u32(uint32_t *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                          uint64_t offset);
// Uniform in (0, 1), see ddx_philox_unit.
ddx_status ddx_philox_uniform(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                              uint64_t offset);
// Standard normal, see ddx_philox_normal4.
ddx_status ddx_philox_normal(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                             uint64_t offset);

#ifdef __cplusplus
}
#endif

#endif
