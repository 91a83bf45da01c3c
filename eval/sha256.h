// SHA-256 (FIPS 180-4) of a file: what ties ddx-eval's resumable shards to the exact checkpoint
// and Inception weights they were made from.
#ifndef DDX_EVAL_SHA256_H
#define DDX_EVAL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

typedef struct ddx_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} ddx_sha256;

void ddx_sha256_init(ddx_sha256 *s);
void ddx_sha256_update(ddx_sha256 *s, const void *data, size_t n);
void ddx_sha256_final(ddx_sha256 *s, uint8_t out[32]);
// hex[65]: the lowercase hex digest of the file at path (read through ddx_input_open).
ddx_status ddx_sha256_file(const char *path, const char *what, char hex[65]);

#endif
