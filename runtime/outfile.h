// Paths ddx writes and reads. Every file ddx writes (PNGs, checkpoints, configs, logs) goes
// through these checks, so a mistyped --out never replaces a device node, a FIFO, a folder or a
// symlink; every file it reads by path is opened through ddx_input_open, so a FIFO or a device
// given as an input is refused at once instead of blocking or being read forever.
#ifndef DDX_OUTFILE_H
#define DDX_OUTFILE_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

// DDX_OK when `path` may be written: it does not exist, or it is a regular file (not a
// symlink, device, FIFO, socket or folder), and its folder exists and is writable.
// Otherwise DDX_E_INPUT with one line naming `what` (the flag or key the user typed) and the
// path. Meant to run before any expensive work, and again by each writer just before it writes.
ddx_status ddx_output_check(const char *path, const char *what);

// Opens `path` for reading (O_RDONLY, close-on-exec) when it is a regular file. The open is
// non-blocking, so naming a FIFO cannot wait for a writer (on a regular file the flag changes
// nothing); anything but a regular file is
// DDX_E_INPUT "WHAT: PATH: not a regular file (a FIFO)", an open or stat failure DDX_E_IO.
// what: the flag, key or kind of file ("config file", "data.path"). *size (may be NULL) gets
// the file's size.
ddx_status ddx_input_open(const char *path, const char *what, int *fd, int64_t *size);

// The one atomic writer. open checks the path (ddx_output_check), creates "PATH.tmp.XXXXXX"
// in the target's folder and hands out a FILE*; write through it (ddx_atomic_write or any
// stdio call on `f`); commit flushes, fsyncs, checks every flush/close and ferror, renames
// over PATH and fsyncs the folder, so a crash or a full disk leaves either the old file or
// the new one, never a mix. abort (and a failed commit) removes the temp file. A replaced
// file keeps its permission bits; a new one gets 0644.
typedef struct ddx_atomic_file {
    FILE *f;
    char *path;
    char *tmp;
    const char *what;
    int err;                  // first errno seen by ddx_atomic_write (0: none)
} ddx_atomic_file;

#define DDX_ATOMIC_TMP_SUFFIX ".tmp."   // temp names: PATH + suffix + 6 mkstemp characters

ddx_status ddx_atomic_open(ddx_atomic_file *a, const char *path, const char *what);
// Writes n bytes; a failure is remembered and reported by commit (so callers may chain writes).
bool ddx_atomic_write(ddx_atomic_file *a, const void *data, size_t n);
ddx_status ddx_atomic_commit(ddx_atomic_file *a);
void ddx_atomic_abort(ddx_atomic_file *a);

// True when `name` (a bare file name) is a temp file of the atomic writer: any name ending in
// DDX_ATOMIC_TMP_SUFFIX and six characters of [A-Za-z0-9].
bool ddx_atomic_is_temp_name(const char *name);

// Removes the atomic writer's temp files (regular files only, by name) left in folder `dir`
// by a writer that was killed; never descends. *count and *bytes (may be NULL) get what went.
ddx_status ddx_atomic_sweep(const char *dir, int *count, uint64_t *bytes);

#ifdef __cplusplus
}
#endif

#endif
