// safetensors files (https://github.com/huggingface/safetensors): read with full validation,
// write atomically.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON object
//   {"__metadata__": {str: str}?, name: {"dtype": D, "shape": [..], "data_offsets": [b, e]}, ...}
// then the data buffer; offsets are relative to the buffer and must tile it exactly.
// Every file is untrusted: any defect is DDX_E_INPUT with a one-line message naming the file.
#ifndef DDX_SAFETENSORS_H
#define DDX_SAFETENSORS_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define DDX_ST_MAX_DIMS 8
// Larger headers are refused before parsing: real ones are kilobytes to a few megabytes, and a
// JSON tree costs several times its text in memory.
#define DDX_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef enum ddx_st_dtype {
    DDX_ST_F32 = 0,
    DDX_ST_BF16,
    DDX_ST_F16,
    DDX_ST_I64,
    DDX_ST_I32,
    DDX_ST_U8,
    DDX_ST_DTYPE_COUNT
} ddx_st_dtype;

size_t ddx_st_dtype_size(ddx_st_dtype dt);      // 0 for an invalid dtype
const char *ddx_st_dtype_name(ddx_st_dtype dt); // "F32", ...; "?" for an invalid dtype
// Exact, case-sensitive match of the file's spelling; false when unknown.
bool ddx_st_dtype_parse(const char *s, ddx_st_dtype *out);

typedef struct ddx_st_tensor {
    char *name;
    ddx_st_dtype dtype;
    int ndim;                         // 0 for a scalar
    int64_t shape[DDX_ST_MAX_DIMS];   // entries past ndim are 0
    // Little-endian element data. Aligned to the element size whenever the file's offsets are
    // (ddx_st_read places the buffer 8-aligned; every file ddx or the Python package writes keeps
    // each tensor aligned); memcpy when reading files of unknown origin element-wise.
    const void *data;
    size_t nbytes;
} ddx_st_tensor;

typedef struct ddx_st_meta {
    char *key;
    char *value;
} ddx_st_meta;

typedef struct ddx_st_file {
    ddx_st_tensor *tensors;   // sorted by name (strcmp)
    size_t n_tensors;
    ddx_st_meta *meta;        // __metadata__ pairs, sorted by key
    size_t n_meta;
    void *owned;              // file contents when opened by ddx_st_read
} ddx_st_file;

// Reads the whole file into memory and validates it. On failure *out is empty (safe to close).
ddx_status ddx_st_read(const char *path, ddx_st_file *out);
// Same, over a buffer the caller keeps alive while *out is used: tensor data points into buf.
// `what` names the buffer in error messages.
ddx_status ddx_st_parse(const void *buf, size_t len, const char *what, ddx_st_file *out);
const ddx_st_tensor *ddx_st_find(const ddx_st_file *f, const char *name);  // NULL when absent
const char *ddx_st_meta_get(const ddx_st_file *f, const char *key);        // NULL when absent
void ddx_st_close(ddx_st_file *f);

// ---- writer -------------------------------------------------------------------------------
// Collects tensors (data borrowed until ddx_st_write returns) and metadata (copied). Header keys
// are written sorted by name. Data is laid out by element size (largest first), then name, so
// every tensor stays aligned to its element size with no gaps; the header is padded with spaces
// so the data buffer starts 8-aligned.
typedef struct ddx_st_writer {
    ddx_st_tensor *tensors;   // data not owned
    size_t n_tensors, cap_tensors;
    ddx_st_meta *meta;
    size_t n_meta, cap_meta;
} ddx_st_writer;

void ddx_st_writer_init(ddx_st_writer *w);
// DDX_E_INPUT for an invalid dtype, ndim outside [0, 8], a negative dim, a size overflow, a name
// that is NULL, "__metadata__" or not UTF-8, or NULL data with nbytes > 0.
ddx_status ddx_st_writer_add(ddx_st_writer *w, const char *name, ddx_st_dtype dtype, int ndim,
                             const int64_t *shape, const void *data);
ddx_status ddx_st_writer_meta(ddx_st_writer *w, const char *key, const char *value);
// Atomic: writes path + ".tmp.XXXXXX" in the same directory, fsyncs it, renames it over path
// and fsyncs the directory. On any failure the temp file is removed and an existing file at
// path is left untouched. Duplicate tensor names or metadata keys are DDX_E_INPUT.
ddx_status ddx_st_write(const ddx_st_writer *w, const char *path);
// The same bytes into a malloc'd buffer (free() it).
ddx_status ddx_st_serialize(const ddx_st_writer *w, void **out, size_t *out_len);
void ddx_st_writer_free(ddx_st_writer *w);

#ifdef __cplusplus
}
#endif

#endif
