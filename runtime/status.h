// Status codes and the error message that travels with them.
// Library code returns a status and never exits; main() maps it to an exit code.
#ifndef DDX_STATUS_H
#define DDX_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdarg.h>

typedef enum ddx_status {
    DDX_OK = 0,
    DDX_E_INPUT,        // bad user input: config, file, shape, argument (exit 2)
    DDX_E_IO,           // the OS refused a read/write (exit 2: user must fix a path)
    DDX_E_NOMEM,        // host or device allocation failed (exit 1)
    DDX_E_UNSUPPORTED,  // op/dtype/device combination not implemented (exit 1)
    DDX_E_CUDA,         // CUDA / cuBLAS / NCCL runtime failure (exit 1)
    DDX_E_INTERNAL,     // a broken invariant inside ddx (exit 1)
} ddx_status;

// Records a printf-style message for the calling thread and returns `st`, so that
// `return ddx_errorf(DDX_E_INPUT, "%s: ...", path);` both reports and propagates.
ddx_status ddx_errorf(ddx_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
ddx_status ddx_verrorf(ddx_status st, const char *fmt, va_list ap);
// The message of the last error recorded on this thread ("" if none).
const char *ddx_last_error(void);
void ddx_clear_error(void);
const char *ddx_status_name(ddx_status st);
// 0 for OK, 2 for input/IO errors, 1 otherwise (docs/ARCHITECTURE.md: errors).
int ddx_exit_code(ddx_status st);

#define DDX_TRY(expr)                              \
    do {                                           \
        ddx_status ddx_try_st_ = (expr);           \
        if (ddx_try_st_ != DDX_OK) return ddx_try_st_; \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
