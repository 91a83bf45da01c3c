// The shared assertion helper of the C test programs: CHECK counts, prints each failure with
// file:line, and ddx_test_finish() prints the closing "NAME: N passed, N failed[, N skipped]"
// line and gives the exit code (1 on any failure, 77 when everything was skipped).
#ifndef DDX_TESTS_CHECK_H
#define DDX_TESTS_CHECK_H

#include <stdio.h>

static int n_pass __attribute__((unused)), n_fail __attribute__((unused)), n_skip __attribute__((unused));

#define CHECK(cond, ...)                                \
    do {                                                \
        if (cond) {                                     \
            n_pass++;                                   \
        } else {                                        \
            n_fail++;                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                        \
            printf("\n");                               \
        }                                               \
    } while (0)

static inline int ddx_test_finish(const char *name) {
    printf("%s: %d passed, %d failed", name, n_pass, n_fail);
    if (n_skip) printf(", %d skipped", n_skip);
    printf("\n");
    if (n_fail) return 1;
    return n_pass == 0 && n_skip ? 77 : 0;
}

#endif
