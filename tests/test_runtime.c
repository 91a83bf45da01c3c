// Arena, parameter store, context, tape and status tests.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/ops.h"
// Every public header in one translation unit: names must not clash.
#include "config/config.h"
#include "runtime/cuda.h"
#include "runtime/json.h"
#include "runtime/op_impl.h"
#include "runtime/philox.h"
#include "runtime/safetensors.h"

#include "check.h"

static void test_arena(void) {
    ddx_arena a;
    CHECK(ddx_arena_init(&a, "test", DDX_CPU, 4096) == DDX_OK, "init");
    void *p1 = ddx_arena_alloc(&a, 10), *p2 = ddx_arena_alloc(&a, 100);
    CHECK(p1 && p2 && (uintptr_t)p1 % DDX_ARENA_ALIGN == 0 && (uintptr_t)p2 % DDX_ARENA_ALIGN == 0, "alignment");
    CHECK((uint8_t *)p2 - (uint8_t *)p1 >= 10, "no overlap");
    // Outgrow the first block: the arena chains, then coalesces on reset.
    void *big = ddx_arena_alloc(&a, 1 << 20);
    CHECK(big != NULL && a.head->next != NULL, "chained a second block");
    size_t peak = a.peak;
    CHECK(ddx_arena_reset(&a) == DDX_OK && a.head && !a.head->next, "reset coalesces to one block");
    CHECK(ddx_arena_capacity(&a) >= peak, "coalesced block holds the high-water mark (%zu < %zu)", ddx_arena_capacity(&a), peak);
    void *q1 = ddx_arena_alloc(&a, 10), *q2 = ddx_arena_alloc(&a, 100), *q3 = ddx_arena_alloc(&a, 1 << 20);
    CHECK(ddx_arena_reset(&a) == DDX_OK, "reset");
    void *r1 = ddx_arena_alloc(&a, 10), *r2 = ddx_arena_alloc(&a, 100), *r3 = ddx_arena_alloc(&a, 1 << 20);
    CHECK(q1 == r1 && q2 == r2 && q3 == r3, "addresses repeat step to step");
    // Mark / rewind: scratch is released for the next allocation, also across a chained block.
    ddx_arena_mark m = ddx_arena_mark_get(&a);
    void *s1 = ddx_arena_alloc(&a, 1000);
    CHECK(ddx_arena_rewind(&a, m) == DDX_OK && ddx_arena_alloc(&a, 1000) == s1, "rewind reuses the space");
    CHECK(ddx_arena_rewind(&a, m) == DDX_OK, "rewind");
    size_t in_use = a.in_use;
    void *s2 = ddx_arena_alloc(&a, ddx_arena_capacity(&a) * 2);   // forces a new block
    CHECK(s2 && ddx_arena_rewind(&a, m) == DDX_OK && a.in_use == in_use, "rewind past a chained block");
    CHECK(ddx_arena_alloc(&a, 64) != NULL && ddx_arena_reset(&a) == DDX_OK, "usable after rewind");
    ddx_arena_free(&a);

    // Debug mode: poison and guards.
    CHECK(ddx_arena_init(&a, "dbg", DDX_CPU, 1 << 16) == DDX_OK, "init debug");
    a.debug = true;
    float *f = ddx_arena_alloc(&a, 5 * sizeof(float));
    CHECK(f && isnan(f[0]) && isnan(f[4]), "fresh memory is NaN-poisoned");
    CHECK(ddx_arena_check_guards(&a) == DDX_OK, "guards intact");
    for (int i = 0; i < 5; i++) f[i] = 1.0f;
    CHECK(ddx_arena_check_guards(&a) == DDX_OK, "in-bounds writes keep guards");
    ((uint8_t *)f)[DDX_ARENA_ALIGN + 3] = 0;   // past the 256-byte rounded allocation: in the guard
    ddx_status st = ddx_arena_check_guards(&a);
    CHECK(st == DDX_E_INTERNAL && strstr(ddx_last_error(), "guard"), "overrun detected: %s", ddx_last_error());
    ddx_arena_free(&a);

    // A rewind checks the guards of what it releases.
    CHECK(ddx_arena_init(&a, "dbg2", DDX_CPU, 1 << 16) == DDX_OK, "init debug 2");
    a.debug = true;
    ddx_arena_mark m2 = ddx_arena_mark_get(&a);
    uint8_t *sc = ddx_arena_alloc(&a, 10);
    sc[DDX_ARENA_ALIGN] = 1;   // first guard byte
    CHECK(ddx_arena_rewind(&a, m2) == DDX_E_INTERNAL, "rewind catches a scratch overrun");
    ddx_arena_free(&a);
}

static void test_param_store(void) {
    ddx_param_store s;
    ddx_param_store_init(&s, DDX_CPU);
    ddx_tensor *w = ddx_param_add(&s, "conv.weight", 4, (int64_t[]){8, 3, 3, 3});
    ddx_tensor *b = ddx_param_add(&s, "conv.bias", 1, (int64_t[]){8});
    CHECK(w && b && ddx_param_count(&s) == 8 * 27 + 8, "count %zu", ddx_param_count(&s));
    CHECK(ddx_param_store_finalize(&s) == DDX_OK, "finalize");
    ddx_param *pb = ddx_param_find(&s, "conv.bias");
    CHECK(pb && pb->offset % 64 == 0 && pb->offset >= 216, "aligned offset %zu", pb ? pb->offset : 0);
    CHECK((float *)b->data == s.buf[DDX_PBUF_VALUE] + pb->offset, "value is a view of the flat buffer");
    CHECK((float *)b->grad->data == s.buf[DDX_PBUF_GRAD] + pb->offset, "grad has the same layout");
    CHECK(((float *)w->data)[0] == 0.0f && s.buf[DDX_PBUF_EMA][5] == 0.0f, "buffers zeroed");
    CHECK(ddx_param_find(&s, "nope") == NULL, "unknown name");
    CHECK(ddx_param_add(&s, "late", 1, (int64_t[]){1}) == NULL, "no adds after finalize");
    ddx_param_store_free(&s);
}

static void test_tape(void) {
    ddx_ctx c;
    CHECK(ddx_ctx_init(&c, DDX_CPU, 1 << 16) == DDX_OK, "ctx");
    // Parameter p [3]; y = sum-like chain without reductions: L = scale(mul(p, p)[i]) via reshape to [1].
    ddx_param_store s;
    ddx_param_store_init(&s, DDX_CPU);
    ddx_tensor *p = ddx_param_add(&s, "p", 1, (int64_t[]){1});
    CHECK(ddx_param_store_finalize(&s) == DDX_OK, "finalize");
    ((float *)p->data)[0] = 1.5f;
    for (int step = 0; step < 2; step++) {
        CHECK(ddx_ctx_reset(&c) == DDX_OK, "reset");
        ddx_tensor *y = ddx_scale(&c, ddx_mul(&c, p, p), 3.0f, 1.0f);   // 3 p^2 + 1
        CHECK(y && y->requires_grad && c.n_nodes == 2, "tape has 2 nodes (%zu)", c.n_nodes);
        CHECK(y && fabsf(((float *)y->data)[0] - 7.75f) < 1e-6f, "forward value");
        CHECK(ddx_backward(&c, y, 1.0f) == DDX_OK, "backward: %s", ddx_last_error());
    }
    // Parameter grads accumulate across the two steps until the optimizer zeroes them: 2 * 6p.
    CHECK(fabsf(s.buf[DDX_PBUF_GRAD][0] - 18.0f) < 1e-5f, "param grad accumulated: %g", s.buf[DDX_PBUF_GRAD][0]);

    // No tape without grad.
    CHECK(ddx_ctx_reset(&c) == DDX_OK, "reset");
    ddx_ctx_set_grad(&c, false);
    ddx_tensor *z = ddx_silu(&c, p);
    CHECK(z && !z->requires_grad && c.n_nodes == 0, "grad disabled records nothing");
    ddx_ctx_set_grad(&c, true);

    // Sticky errors: a bad op makes every later op return NULL; the first message survives.
    ddx_tensor *a = ddx_new(&c, DDX_F32, 2, (int64_t[]){2, 3});
    ddx_tensor *b = ddx_new(&c, DDX_F32, 2, (int64_t[]){2, 4});
    ddx_tensor *bad = ddx_add(&c, a, b);
    CHECK(bad == NULL && ddx_ctx_status(&c) == DDX_E_INPUT, "broadcast mismatch is an input error");
    CHECK(strstr(ddx_last_error(), "add") && strstr(ddx_last_error(), "[2, 4]"), "message names op and shape: %s", ddx_last_error());
    CHECK(ddx_silu(&c, a) == NULL && strstr(ddx_last_error(), "add"), "later ops are no-ops, first error kept");
    CHECK(ddx_reshape(&c, a, 1, (int64_t[]){5}) == NULL, "still sticky");
    CHECK(ddx_ctx_reset(&c) == DDX_OK && ddx_ctx_status(&c) == DDX_OK, "reset clears the error");
    a = ddx_new(&c, DDX_F32, 2, (int64_t[]){2, 3});
    CHECK(ddx_reshape(&c, a, 1, (int64_t[]){5}) == NULL && strstr(ddx_last_error(), "6 elements"), "reshape size check: %s", ddx_last_error());
    CHECK(ddx_ctx_reset(&c) == DDX_OK, "reset");
    a = ddx_new(&c, DDX_F32, 1, (int64_t[]){2});
    CHECK(ddx_backward(&c, a, 1.0f) == DDX_E_INPUT, "backward of a non-scalar is refused");

    // A CUDA tensor handed to a CPU context is refused, naming both devices.
    ddx_tensor fake = ddx_tensor_wrap((void *)16, DDX_F32, DDX_CUDA, 1, (int64_t[]){1});
    CHECK(ddx_silu(&c, &fake) == NULL && strstr(ddx_last_error(), "cuda"), "device mismatch: %s", ddx_last_error());
    ddx_param_store_free(&s);
    ddx_ctx_free(&c);
}

static void test_misc(void) {
    CHECK(ddx_exit_code(DDX_OK) == 0 && ddx_exit_code(DDX_E_INPUT) == 2 && ddx_exit_code(DDX_E_IO) == 2 &&
              ddx_exit_code(DDX_E_CUDA) == 1 && ddx_exit_code(DDX_E_INTERNAL) == 1,
          "exit codes");
    CHECK(ddx_op_from_name("conv2d") == DDX_OP_CONV2D && ddx_op_from_name("nope") == DDX_OP_COUNT, "op names");
    CHECK(!ddx_op_differentiable(DDX_OP_FILL) && ddx_op_differentiable(DDX_OP_CONV2D), "differentiable flags");
    ddx_errorf(DDX_E_INPUT, "two\nlines");
    CHECK(strchr(ddx_last_error(), '\n') == NULL, "messages are one line");
    // bf16 rounding: ties to even, NaN stays NaN, inf stays inf.
    CHECK(ddx_f32_to_bf16(1.0f) == 0x3f80 && ddx_f32_to_bf16(-2.0f) == 0xc000, "bf16 exact");
    union { uint32_t u; float f; } t = {0x3f808000u};   // exactly halfway between 0x3f80 and 0x3f81
    CHECK(ddx_f32_to_bf16(t.f) == 0x3f80, "tie to even (down)");
    t.u = 0x3f818000u;
    CHECK(ddx_f32_to_bf16(t.f) == 0x3f82, "tie to even (up)");
    CHECK(isnan(ddx_bf16_to_f32(ddx_f32_to_bf16(NAN))) && isinf(ddx_bf16_to_f32(ddx_f32_to_bf16(INFINITY))), "nan/inf");
    ddx_tensor x = ddx_tensor_wrap((void *)0x1000, DDX_F32, DDX_CPU, 4, (int64_t[]){8, 2, 2, 3});
    ddx_tensor v = ddx_tensor_slice(&x, 2, 5);
    CHECK(v.shape[0] == 3 && (uintptr_t)v.data == 0x1000 + 2 * 12 * 4, "batch slice view");
}

// A message that wraps the previous one (the pattern every layer uses to add its context).
static void test_error_wrap(void) {
    ddx_errorf(DDX_E_NOMEM, "host allocation of %d bytes failed", 822083584);
    ddx_errorf(DDX_E_NOMEM, "arena %s: cannot allocate a %.1f MiB block on %s: %s", "activations", 784.0, "cpu",
               ddx_last_error());
    CHECK(strcmp(ddx_last_error(),
                 "arena activations: cannot allocate a 784.0 MiB block on cpu: host allocation of 822083584 bytes failed") == 0,
          "wrapped message: %s", ddx_last_error());
    ddx_errorf(DDX_E_INPUT, "%s", ddx_last_error());
    CHECK(strstr(ddx_last_error(), "arena activations: cannot") == ddx_last_error(), "self-wrapped message: %s", ddx_last_error());
}

int main(void) {
    test_error_wrap();
    test_arena();
    test_param_store();
    test_tape();
    test_misc();
    return ddx_test_finish("runtime");
}
