#include "status.h"

#include <stdio.h>
#include <string.h>

// Per thread so that the data-loader thread's errors never clobber the trainer's.
static _Thread_local char g_msg[1024];

ddx_status ddx_verrorf(ddx_status st, const char *fmt, va_list ap) {
    // Formatted aside first: callers wrap the previous message ("...: %s", ddx_last_error()),
    // and formatting into the buffer an argument points at garbles it.
    char msg[sizeof g_msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    memcpy(g_msg, msg, sizeof g_msg);
    // One line: a newline inside a message would break log parsing and the "one-line error" rule.
    for (char *p = g_msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return st;
}

ddx_status ddx_errorf(ddx_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ddx_verrorf(st, fmt, ap);
    va_end(ap);
    return st;
}

const char *ddx_last_error(void) { return g_msg; }
void ddx_clear_error(void) { g_msg[0] = 0; }

const char *ddx_status_name(ddx_status st) {
    switch (st) {
    case DDX_OK: return "ok";
    case DDX_E_INPUT: return "bad input";
    case DDX_E_IO: return "i/o error";
    case DDX_E_NOMEM: return "out of memory";
    case DDX_E_UNSUPPORTED: return "unsupported";
    case DDX_E_CUDA: return "cuda error";
    case DDX_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

int ddx_exit_code(ddx_status st) {
    if (st == DDX_OK) return 0;
    if (st == DDX_E_INPUT || st == DDX_E_IO) return 2;
    return 1;
}
