// Output paths: every file ddx writes (PNGs, checkpoints, configs, logs) goes through these
// checks, so a mistyped --out never replaces a device node, a FIFO, a folder or a symlink.
#ifndef DDX_OUTFILE_H
#define DDX_OUTFILE_H

#ifdef __cplusplus
extern "C" {
#endif

#include "status.h"

// DDX_OK when `path` may be written: it does not exist, or it is a regular file (not a
// symlink, device, FIFO, socket or folder), and its folder exists and is writable.
// Otherwise DDX_E_INPUT with one line naming `what` (the flag or key the user typed) and the
// path. Meant to run before any expensive work, and again by each writer just before it writes.
ddx_status ddx_output_check(const char *path, const char *what);

#ifdef __cplusplus
}
#endif

#endif
