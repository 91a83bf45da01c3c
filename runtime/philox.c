// CPU fills for the Philox streams defined in philox.h. The GPU launchers in
// kernels/philox.cu produce the same bits; tests/test_philox.c checks both.
#include "philox.h"

#include <inttypes.h>

typedef enum { FILL_U32, FILL_UNIFORM, FILL_NORMAL } fill_kind;

static ddx_status fill_check(const char *fn, const void *out, int64_t n, uint64_t step, uint64_t offset) {
    if (n < 0) return ddx_errorf(DDX_E_INPUT, "%s: negative element count %" PRId64, fn, n);
    if (n > 0 && !out) return ddx_errorf(DDX_E_INPUT, "%s: output is NULL for %" PRId64 " elements", fn, n);
    if (step > UINT32_MAX)
        return ddx_errorf(DDX_E_INPUT, "%s: step %" PRIu64 " does not fit the 32-bit counter word", fn, step);
    if (offset > UINT64_MAX - (uint64_t)n)
        return ddx_errorf(DDX_E_INPUT, "%s: offset %" PRIu64 " + %" PRId64 " elements overflows 64 bits", fn, offset, n);
    return DDX_OK;
}

// Walks the groups that cover elements [offset, offset + n) and keeps the lanes in range,
// so a partial head/tail group costs one extra Philox call, not one per element.
static void fill(void *out, int64_t n, uint64_t seed, uint32_t stream, uint32_t step, uint64_t offset,
                 fill_kind kind) {
    if (n == 0) return;
    uint64_t end = offset + (uint64_t)n;   // one past the last element
    uint64_t g0 = offset >> 2, g1 = (end - 1) >> 2;
    for (uint64_t g = g0; g <= g1; g++) {
        uint32_t x[4];
        float z[4];
        ddx_philox_group(seed, stream, step, g, x);
        if (kind == FILL_NORMAL) ddx_philox_normal4(x, z);
        unsigned lo = g == g0 ? (unsigned)(offset & 3) : 0u;
        unsigned hi = g == g1 ? (unsigned)((end - 1) & 3) : 3u;
        for (unsigned l = lo; l <= hi; l++) {
            uint64_t i = (g << 2) + l - offset;
            switch (kind) {
            case FILL_U32: ((uint32_t *)out)[i] = x[l]; break;
            case FILL_UNIFORM: ((float *)out)[i] = ddx_philox_unit(x[l]); break;
            case FILL_NORMAL: ((float *)out)[i] = z[l]; break;
            }
        }
    }
}

ddx_status ddx_philox_u32(uint32_t *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                          uint64_t offset) {
    DDX_TRY(fill_check("ddx_philox_u32", out, n, step, offset));
    fill(out, n, seed, stream, (uint32_t)step, offset, FILL_U32);
    return DDX_OK;
}

ddx_status ddx_philox_uniform(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                              uint64_t offset) {
    DDX_TRY(fill_check("ddx_philox_uniform", out, n, step, offset));
    fill(out, n, seed, stream, (uint32_t)step, offset, FILL_UNIFORM);
    return DDX_OK;
}

ddx_status ddx_philox_normal(float *out, int64_t n, uint64_t seed, uint32_t stream, uint64_t step,
                             uint64_t offset) {
    DDX_TRY(fill_check("ddx_philox_normal", out, n, step, offset));
    fill(out, n, seed, stream, (uint32_t)step, offset, FILL_NORMAL);
    return DDX_OK;
}
