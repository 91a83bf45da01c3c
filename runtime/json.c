// Strict JSON parser (recursive descent, depth-limited) and string writer. See json.h.
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jparser {
    const uint8_t *p;
    size_t len, pos;
    const char *what;
} jparser;

static ddx_status jp_fail(const jparser *P, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ddx_status jp_fail(const jparser *P, size_t at, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ddx_errorf(DDX_E_INPUT, "%s: invalid JSON at byte %zu: %s", P->what ? P->what : "json", at, msg);
}

// "'x'" for printable ASCII, "byte 0xNN" otherwise, "end of input" past the end.
static const char *jp_char_desc(const jparser *P, size_t at, char buf[24]) {
    if (at >= P->len) return "end of input";
    uint8_t c = P->p[at];
    if (c >= 0x20 && c < 0x7f) snprintf(buf, 24, "'%c'", (char)c);
    else snprintf(buf, 24, "byte 0x%02X", c);
    return buf;
}

static void jp_skip_ws(jparser *P) {
    while (P->pos < P->len) {
        uint8_t c = P->p[P->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        P->pos++;
    }
}

// Length of the valid UTF-8 sequence starting at s (1..4), or 0 when it is invalid or cut off.
static size_t utf8_seq_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) k = 2;
    else if (c == 0xE0) { k = 3; lo = 0xA0; }           // no overlong 3-byte forms
    else if (c == 0xED) { k = 3; hi = 0x9F; }           // no UTF-16 surrogates
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) k = 3;
    else if (c == 0xF0) { k = 4; lo = 0x90; }           // no overlong 4-byte forms
    else if (c >= 0xF1 && c <= 0xF3) k = 4;
    else if (c == 0xF4) { k = 4; hi = 0x8F; }           // nothing above U+10FFFF
    else return 0;
    if (n < k) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return k;
}

bool ddx_json_utf8_valid(const void *s, size_t n) {
    const uint8_t *p = s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq_len(p + i, n - i);
        if (k == 0) return false;
        i += k;
    }
    return true;
}

const char *ddx_json_printable(const char *s, size_t n, char *buf, size_t bufn) {
    if (bufn == 0) return buf;
    size_t keep = n;
    bool cut = false;
    if (keep > bufn - 1) {
        keep = bufn > 4 ? bufn - 4 : bufn - 1;
        cut = bufn > 4;
    }
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (cut) {
        memcpy(buf + keep, "...", 3);
        keep += 3;
    }
    buf[keep] = '\0';
    return buf;
}

static int hex_val(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Reads the 4 hex digits of a \u escape at P->pos.
static ddx_status jp_hex4(jparser *P, uint32_t *out) {
    if (P->len - P->pos < 4) return jp_fail(P, P->pos, "\\u escape needs 4 hex digits");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_val(P->p[P->pos + (size_t)i]);
        if (h < 0) return jp_fail(P, P->pos + (size_t)i, "\\u escape needs 4 hex digits");
        v = v << 4 | (uint32_t)h;
    }
    P->pos += 4;
    *out = v;
    return DDX_OK;
}

static size_t utf8_put(uint8_t *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

// P->pos is at the opening quote. The decoded string is never longer than its source, so one
// allocation sized to the source span suffices.
static ddx_status jp_string(jparser *P, char **out, size_t *out_len) {
    size_t start = P->pos;
    size_t end = start + 1;
    while (end < P->len && P->p[end] != '"') end += (P->p[end] == '\\') ? 2 : 1;
    if (end >= P->len) return jp_fail(P, start, "unterminated string");
    uint8_t *s = malloc(end - start);
    if (!s) return ddx_errorf(DDX_E_NOMEM, "%s: out of memory parsing JSON string", P->what);
    size_t n = 0;
    P->pos = start + 1;
    ddx_status st = DDX_OK;
    for (;;) {
        uint8_t c = P->p[P->pos];
        if (c == '"') { P->pos++; break; }
        if (c < 0x20) {
            st = jp_fail(P, P->pos, "raw control character 0x%02X in string (must be escaped)", c);
            goto fail;
        }
        if (c == '\\') {
            size_t esc = P->pos;
            P->pos++;
            uint8_t e = P->p[P->pos++];
            switch (e) {
            case '"': s[n++] = '"'; break;
            case '\\': s[n++] = '\\'; break;
            case '/': s[n++] = '/'; break;
            case 'b': s[n++] = '\b'; break;
            case 'f': s[n++] = '\f'; break;
            case 'n': s[n++] = '\n'; break;
            case 'r': s[n++] = '\r'; break;
            case 't': s[n++] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if ((st = jp_hex4(P, &cp)) != DDX_OK) goto fail;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    st = jp_fail(P, esc, "lone low surrogate \\u%04X", cp);
                    goto fail;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo = 0;
                    if (P->len - P->pos < 2 || P->p[P->pos] != '\\' || P->p[P->pos + 1] != 'u') {
                        st = jp_fail(P, esc, "high surrogate \\u%04X not followed by a \\u low surrogate", cp);
                        goto fail;
                    }
                    P->pos += 2;
                    if ((st = jp_hex4(P, &lo)) != DDX_OK) goto fail;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        st = jp_fail(P, esc, "high surrogate \\u%04X followed by \\u%04X, not a low surrogate", cp, lo);
                        goto fail;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                // 6 source bytes (or 12 for a pair) always cover the <= 4 output bytes.
                n += utf8_put(s + n, cp);
                break;
            }
            default: {
                char d[24];
                st = jp_fail(P, esc, "invalid escape \\%s", jp_char_desc(P, esc + 1, d));
                goto fail;
            }
            }
            continue;
        }
        size_t k = utf8_seq_len(P->p + P->pos, end - P->pos);
        if (k == 0) {
            st = jp_fail(P, P->pos, "invalid UTF-8 byte 0x%02X in string", c);
            goto fail;
        }
        memcpy(s + n, P->p + P->pos, k);
        n += k;
        P->pos += k;
    }
    s[n] = '\0';
    *out = (char *)s;
    *out_len = n;
    return DDX_OK;
fail:
    free(s);
    return st;
}

static ddx_status jp_number(jparser *P, ddx_json *out) {
    size_t start = P->pos;
    uint8_t flags = DDX_JSON_NUM_INT;
    bool overflow = false;
    uint64_t mag = 0;
    if (P->p[P->pos] == '-') {
        flags |= DDX_JSON_NUM_NEG;
        P->pos++;
    }
    if (P->pos >= P->len || P->p[P->pos] < '0' || P->p[P->pos] > '9') {
        char d[24];
        return jp_fail(P, P->pos, "expected a digit, got %s", jp_char_desc(P, P->pos, d));
    }
    if (P->p[P->pos] == '0') {
        P->pos++;
        if (P->pos < P->len && P->p[P->pos] >= '0' && P->p[P->pos] <= '9')
            return jp_fail(P, start, "number with a leading zero");
    } else {
        while (P->pos < P->len && P->p[P->pos] >= '0' && P->p[P->pos] <= '9') {
            uint64_t d = (uint64_t)(P->p[P->pos] - '0');
            if (mag > ((uint64_t)INT64_MAX - d) / 10) overflow = true;
            else mag = mag * 10 + d;
            P->pos++;
        }
    }
    if (P->pos < P->len && P->p[P->pos] == '.') {
        flags &= (uint8_t)~DDX_JSON_NUM_INT;
        P->pos++;
        if (P->pos >= P->len || P->p[P->pos] < '0' || P->p[P->pos] > '9')
            return jp_fail(P, P->pos, "expected a digit after '.'");
        while (P->pos < P->len && P->p[P->pos] >= '0' && P->p[P->pos] <= '9') P->pos++;
    }
    if (P->pos < P->len && (P->p[P->pos] == 'e' || P->p[P->pos] == 'E')) {
        flags &= (uint8_t)~DDX_JSON_NUM_INT;
        P->pos++;
        if (P->pos < P->len && (P->p[P->pos] == '+' || P->p[P->pos] == '-')) P->pos++;
        if (P->pos >= P->len || P->p[P->pos] < '0' || P->p[P->pos] > '9')
            return jp_fail(P, P->pos, "expected a digit in exponent");
        while (P->pos < P->len && P->p[P->pos] >= '0' && P->p[P->pos] <= '9') P->pos++;
    }
    out->type = DDX_JSON_NUMBER;
    if ((flags & DDX_JSON_NUM_INT) && !overflow) {
        flags |= DDX_JSON_NUM_EXACT;
        out->u.i = (flags & DDX_JSON_NUM_NEG) ? -(int64_t)mag : (int64_t)mag;
    } else {
        // strtod needs a terminated copy: the input buffer is not NUL-terminated.
        size_t n = P->pos - start;
        char *tmp = malloc(n + 1);
        if (!tmp) return ddx_errorf(DDX_E_NOMEM, "%s: out of memory parsing JSON number", P->what);
        memcpy(tmp, P->p + start, n);
        tmp[n] = '\0';
        out->u.d = strtod(tmp, NULL);
        free(tmp);
    }
    out->flags = flags;
    return DDX_OK;
}

static ddx_status jp_literal(jparser *P, const char *word, ddx_json *out, ddx_json_type type, bool b) {
    size_t n = strlen(word);
    if (P->len - P->pos < n || memcmp(P->p + P->pos, word, n) != 0) {
        char d[24];
        return jp_fail(P, P->pos, "unexpected %s", jp_char_desc(P, P->pos, d));
    }
    P->pos += n;
    out->type = (uint8_t)type;
    if (type == DDX_JSON_BOOL) out->u.b = b;
    return DDX_OK;
}

// Grows *arr (elements of `size` bytes) so that one more fits.
static bool grow(void **arr, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return true;
    size_t nc = *cap ? *cap * 2 : 4;
    if (nc > SIZE_MAX / size) return false;
    void *p = realloc(*arr, nc * size);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

static ddx_status jp_value(jparser *P, ddx_json *out, int depth);

static ddx_status jp_array(jparser *P, ddx_json *out, int depth) {
    size_t open = P->pos++;
    ddx_json *items = NULL;
    size_t n = 0, cap = 0;
    ddx_status st = DDX_OK;
    jp_skip_ws(P);
    if (P->pos < P->len && P->p[P->pos] == ']') {
        P->pos++;
        goto done;
    }
    for (;;) {
        if (!grow((void **)&items, &cap, n, sizeof *items)) {
            st = ddx_errorf(DDX_E_NOMEM, "%s: out of memory parsing JSON array", P->what);
            goto fail;
        }
        if ((st = jp_value(P, &items[n], depth)) != DDX_OK) goto fail;
        n++;
        jp_skip_ws(P);
        if (P->pos < P->len && P->p[P->pos] == ',') { P->pos++; continue; }
        if (P->pos < P->len && P->p[P->pos] == ']') { P->pos++; break; }
        char d[24];
        st = jp_fail(P, P->pos, "expected ',' or ']' in array opened at byte %zu, got %s", open,
                     jp_char_desc(P, P->pos, d));
        goto fail;
    }
done:
    out->type = DDX_JSON_ARRAY;
    out->n = n;
    out->u.items = items;
    return DDX_OK;
fail:
    for (size_t i = 0; i < n; i++) ddx_json_free(&items[i]);
    free(items);
    return st;
}

static int member_cmp(const void *a, const void *b) {
    const ddx_json_member *x = *(const ddx_json_member *const *)a;
    const ddx_json_member *y = *(const ddx_json_member *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

// Sorting pointers keeps duplicate detection O(n log n): a hostile header may hold millions of keys.
static ddx_status jp_check_dups(const jparser *P, size_t open, const ddx_json_member *m, size_t n) {
    if (n < 2) return DDX_OK;
    const ddx_json_member **idx = malloc(n * sizeof *idx);
    if (!idx) return ddx_errorf(DDX_E_NOMEM, "%s: out of memory checking JSON keys", P->what);
    for (size_t i = 0; i < n; i++) idx[i] = &m[i];
    qsort(idx, n, sizeof *idx, member_cmp);
    ddx_status st = DDX_OK;
    for (size_t i = 1; i < n; i++) {
        if (member_cmp(&idx[i - 1], &idx[i]) == 0) {
            char k[80];
            st = ddx_errorf(DDX_E_INPUT, "%s: duplicate key \"%s\" in the JSON object at byte %zu (keys must be unique)",
                            P->what, ddx_json_printable(idx[i]->key, idx[i]->key_len, k, sizeof k), open);
            break;
        }
    }
    free(idx);
    return st;
}

static ddx_status jp_object(jparser *P, ddx_json *out, int depth) {
    size_t open = P->pos++;
    ddx_json_member *m = NULL;
    size_t n = 0, cap = 0;
    ddx_status st = DDX_OK;
    char d[24];
    jp_skip_ws(P);
    if (P->pos < P->len && P->p[P->pos] == '}') {
        P->pos++;
        goto done;
    }
    for (;;) {
        jp_skip_ws(P);
        if (P->pos >= P->len || P->p[P->pos] != '"') {
            st = jp_fail(P, P->pos, "expected a string key in object opened at byte %zu, got %s", open,
                         jp_char_desc(P, P->pos, d));
            goto fail;
        }
        if (!grow((void **)&m, &cap, n, sizeof *m)) {
            st = ddx_errorf(DDX_E_NOMEM, "%s: out of memory parsing JSON object", P->what);
            goto fail;
        }
        if ((st = jp_string(P, &m[n].key, &m[n].key_len)) != DDX_OK) goto fail;
        jp_skip_ws(P);
        if (P->pos >= P->len || P->p[P->pos] != ':') {
            free(m[n].key);
            st = jp_fail(P, P->pos, "expected ':' after object key, got %s", jp_char_desc(P, P->pos, d));
            goto fail;
        }
        P->pos++;
        if ((st = jp_value(P, &m[n].value, depth)) != DDX_OK) {
            free(m[n].key);
            goto fail;
        }
        n++;
        jp_skip_ws(P);
        if (P->pos < P->len && P->p[P->pos] == ',') { P->pos++; continue; }
        if (P->pos < P->len && P->p[P->pos] == '}') { P->pos++; break; }
        st = jp_fail(P, P->pos, "expected ',' or '}' in object opened at byte %zu, got %s", open,
                     jp_char_desc(P, P->pos, d));
        goto fail;
    }
    if ((st = jp_check_dups(P, open, m, n)) != DDX_OK) goto fail;
done:
    out->type = DDX_JSON_OBJECT;
    out->n = n;
    out->u.members = m;
    return DDX_OK;
fail:
    for (size_t i = 0; i < n; i++) {
        free(m[i].key);
        ddx_json_free(&m[i].value);
    }
    free(m);
    return st;
}

static ddx_status jp_value(jparser *P, ddx_json *out, int depth) {
    memset(out, 0, sizeof *out);
    jp_skip_ws(P);
    if (P->pos >= P->len) return jp_fail(P, P->pos, "unexpected end of input, expected a value");
    uint8_t c = P->p[P->pos];
    if (c == '{' || c == '[') {
        if (depth >= DDX_JSON_MAX_DEPTH)
            return jp_fail(P, P->pos, "nesting depth exceeds %d", DDX_JSON_MAX_DEPTH);
        return c == '{' ? jp_object(P, out, depth + 1) : jp_array(P, out, depth + 1);
    }
    if (c == '"') {
        ddx_status st = jp_string(P, &out->u.s, &out->n);
        if (st == DDX_OK) out->type = DDX_JSON_STRING;
        return st;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return jp_number(P, out);
    if (c == 't') return jp_literal(P, "true", out, DDX_JSON_BOOL, true);
    if (c == 'f') return jp_literal(P, "false", out, DDX_JSON_BOOL, false);
    if (c == 'n') return jp_literal(P, "null", out, DDX_JSON_NULL, false);
    char d[24];
    return jp_fail(P, P->pos, "unexpected %s, expected a value", jp_char_desc(P, P->pos, d));
}

ddx_status ddx_json_parse(const void *buf, size_t len, const char *what, ddx_json *out) {
    memset(out, 0, sizeof *out);
    jparser P = {.p = buf, .len = len, .pos = 0, .what = what ? what : "json"};
    if (!buf && len) return ddx_errorf(DDX_E_INTERNAL, "%s: ddx_json_parse got a NULL buffer", P.what);
    ddx_status st = jp_value(&P, out, 0);
    if (st != DDX_OK) return st;
    jp_skip_ws(&P);
    if (P.pos != P.len) {
        char d[24];
        st = jp_fail(&P, P.pos, "trailing %s after the value", jp_char_desc(&P, P.pos, d));
        ddx_json_free(out);
        return st;
    }
    return DDX_OK;
}

void ddx_json_free(ddx_json *v) {
    if (!v) return;
    switch (v->type) {
    case DDX_JSON_STRING: free(v->u.s); break;
    case DDX_JSON_ARRAY:
        for (size_t i = 0; i < v->n; i++) ddx_json_free(&v->u.items[i]);
        free(v->u.items);
        break;
    case DDX_JSON_OBJECT:
        for (size_t i = 0; i < v->n; i++) {
            free(v->u.members[i].key);
            ddx_json_free(&v->u.members[i].value);
        }
        free(v->u.members);
        break;
    default: break;
    }
    memset(v, 0, sizeof *v);
}

const ddx_json *ddx_json_get(const ddx_json *v, const char *key) {
    if (!v || v->type != DDX_JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < v->n; i++)
        if (v->u.members[i].key_len == n && memcmp(v->u.members[i].key, key, n) == 0) return &v->u.members[i].value;
    return NULL;
}

bool ddx_json_as_index(const ddx_json *v, int64_t *out) {
    if (!v || v->type != DDX_JSON_NUMBER) return false;
    if ((v->flags & (DDX_JSON_NUM_EXACT | DDX_JSON_NUM_NEG)) != DDX_JSON_NUM_EXACT) return false;
    *out = v->u.i;
    return true;
}

double ddx_json_number(const ddx_json *v) {
    if (!v || v->type != DDX_JSON_NUMBER) return 0.0;
    if (v->flags & DDX_JSON_NUM_EXACT) {
        // Keeps the sign of "-0".
        if (v->u.i == 0 && (v->flags & DDX_JSON_NUM_NEG)) return -0.0;
        return (double)v->u.i;
    }
    return v->u.d;
}

const char *ddx_json_type_name(int type) {
    switch (type) {
    case DDX_JSON_NULL: return "null";
    case DDX_JSON_BOOL: return "boolean";
    case DDX_JSON_NUMBER: return "number";
    case DDX_JSON_STRING: return "string";
    case DDX_JSON_ARRAY: return "array";
    case DDX_JSON_OBJECT: return "object";
    default: return "?";
    }
}

// ---- writer -------------------------------------------------------------------------------

static bool buf_reserve(ddx_json_buf *b, size_t extra) {
    if (b->failed) return false;
    if (extra > SIZE_MAX - b->len - 1) {
        b->failed = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return true;
    size_t nc = b->cap ? b->cap : 64;
    while (nc < need) nc = nc > SIZE_MAX / 2 ? need : nc * 2;
    char *p = realloc(b->data, nc);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = nc;
    return true;
}

void ddx_json_buf_append(ddx_json_buf *b, const void *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ddx_json_buf_printf(ddx_json_buf *b, const char *fmt, ...) {
    if (b->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n)) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ddx_json_buf_string(ddx_json_buf *b, const char *s, size_t n) {
    ddx_json_buf_append(b, "\"", 1);
    size_t run = 0;  // start of the pending run of bytes that need no escape
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (!esc) continue;
        ddx_json_buf_append(b, s + run, i - run);
        ddx_json_buf_append(b, esc, strlen(esc));
        run = i + 1;
    }
    ddx_json_buf_append(b, s + run, n - run);
    ddx_json_buf_append(b, "\"", 1);
}

void ddx_json_buf_free(ddx_json_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}
