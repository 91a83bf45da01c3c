// A small strict JSON (RFC 8259) parser and string writer.
// Built for untrusted input (safetensors headers): rejects invalid UTF-8, raw control characters
// in strings, lone surrogates, leading zeros, trailing garbage, duplicate object keys and nesting
// deeper than DDX_JSON_MAX_DEPTH. Every error is DDX_E_INPUT with a one-line message naming the
// input and byte offset.
#ifndef DDX_JSON_H
#define DDX_JSON_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define DDX_JSON_MAX_DEPTH 64

typedef enum ddx_json_type {
    DDX_JSON_NULL = 0,
    DDX_JSON_BOOL,
    DDX_JSON_NUMBER,
    DDX_JSON_STRING,
    DDX_JSON_ARRAY,
    DDX_JSON_OBJECT,
} ddx_json_type;

// Number flags (ddx_json.flags).
enum {
    DDX_JSON_NUM_INT = 1,   // written without fraction or exponent
    DDX_JSON_NUM_NEG = 2,   // written with a leading '-' (including "-0")
    DDX_JSON_NUM_EXACT = 4, // INT and its value fits int64: u.i holds it (else u.d)
};

typedef struct ddx_json_member ddx_json_member;

// Kept at 24 bytes: a hostile header of "[1,1,1,...]" allocates one node per two bytes.
typedef struct ddx_json {
    uint8_t type;   // ddx_json_type
    uint8_t flags;  // numbers only
    size_t n;       // string: bytes (NUL not counted); array: items; object: members
    union {
        bool b;
        char *s;                   // NUL-terminated; may hold NULs from "\u0000" (use n)
        struct ddx_json *items;
        ddx_json_member *members;  // in document order
        int64_t i;                 // number with DDX_JSON_NUM_EXACT
        double d;                  // any other number
    } u;
} ddx_json;

struct ddx_json_member {
    char *key;       // decoded, NUL-terminated; may hold NULs (use key_len)
    size_t key_len;
    ddx_json value;
};

// Parses exactly one JSON value from buf[0, len) (whitespace around it allowed). `what` names
// the input in error messages (a path). On failure *out is a JSON null and nothing leaks.
ddx_status ddx_json_parse(const void *buf, size_t len, const char *what, ddx_json *out);
void ddx_json_free(ddx_json *v);

// Member of an object by key (compared as bytes); NULL when v is no object or lacks the key.
const ddx_json *ddx_json_get(const ddx_json *v, const char *key);
// True when v is an integer literal in [0, 2^63-1] (no fraction, exponent or sign).
bool ddx_json_as_index(const ddx_json *v, int64_t *out);
double ddx_json_number(const ddx_json *v);
const char *ddx_json_type_name(int type);
// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool ddx_json_utf8_valid(const void *s, size_t n);
// Copies s[0, n) into buf for an error message: bytes outside printable ASCII become '?', long
// strings are cut with "...", so hostile names cannot break the one-line message. Returns buf.
const char *ddx_json_printable(const char *s, size_t n, char *buf, size_t bufn);

// Growable output buffer. Allocation failure is sticky (failed = true) so callers check once.
typedef struct ddx_json_buf {
    char *data;   // NUL-terminated while !failed
    size_t len, cap;
    bool failed;
} ddx_json_buf;

void ddx_json_buf_append(ddx_json_buf *b, const void *s, size_t n);
void ddx_json_buf_printf(ddx_json_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Appends s[0, n) as a quoted JSON string. s must be valid UTF-8 (check with
// ddx_json_utf8_valid first); control characters, '"' and '\\' are escaped.
void ddx_json_buf_string(ddx_json_buf *b, const char *s, size_t n);
void ddx_json_buf_free(ddx_json_buf *b);

#ifdef __cplusplus
}
#endif

#endif
