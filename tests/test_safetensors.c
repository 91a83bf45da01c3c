// JSON parser and safetensors reader/writer: round trips, atomic writes, and hostile files.
// Runs with workdir = tests/ (reads data/safetensors/ref_small.safetensors).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "safetensors.h"
#include "status.h"

#include "check.h"
#include "fs_util.h"

static char g_dir[256];

// ---- helpers ------------------------------------------------------------------------------

// A raw file: 8-byte length field `hlen`, header bytes, data_len bytes of a pattern.
static uint8_t *mk_raw(uint64_t hlen, const char *hdr, size_t hdr_n, size_t data_len, size_t *out_len) {
    size_t len = 8 + hdr_n + data_len;
    uint8_t *b = malloc(len ? len : 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b + 8, hdr, hdr_n);
    for (size_t i = 0; i < data_len; i++) b[8 + hdr_n + i] = (uint8_t)(i * 7 + 1);
    *out_len = len;
    return b;
}

static uint8_t *mk_file(const char *hdr, size_t data_len, size_t *out_len) {
    return mk_raw(strlen(hdr), hdr, strlen(hdr), data_len, out_len);
}

static bool msg_ok(const char *want) {
    const char *m = ddx_last_error();
    if (!m[0] || strchr(m, '\n')) return false;
    return !want || strstr(m, want) != NULL;
}

// Parses from an exact-size heap copy so that ASan sees any over-read.
static ddx_status parse_exact(const uint8_t *buf, size_t len, ddx_st_file *f) {
    uint8_t *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, buf, len);
    ddx_clear_error();
    ddx_status st = ddx_st_parse(copy, len, "mem.safetensors", f);
    ddx_st_close(f);
    free(copy);
    return st;
}

static void expect_bad_buf(const char *label, const uint8_t *buf, size_t len, const char *want) {
    ddx_st_file f;
    ddx_status st = parse_exact(buf, len, &f);
    CHECK(st == DDX_E_INPUT, "%s: expected DDX_E_INPUT, got %s (%s)", label, ddx_status_name(st), ddx_last_error());
    if (st != DDX_OK)
        CHECK(msg_ok(want), "%s: message \"%s\" should be one non-empty line containing \"%s\"", label,
              ddx_last_error(), want ? want : "");
    CHECK(ddx_last_error()[0] == 0 || strstr(ddx_last_error(), "mem.safetensors"),
          "%s: message \"%s\" does not name the file", label, ddx_last_error());
}

static void expect_bad(const char *label, const char *hdr, size_t data_len, const char *want) {
    size_t len;
    uint8_t *b = mk_file(hdr, data_len, &len);
    expect_bad_buf(label, b, len, want);
    free(b);
}

static void expect_good(const char *label, const char *hdr, size_t data_len, size_t n_tensors) {
    size_t len;
    uint8_t *b = mk_file(hdr, data_len, &len);
    ddx_st_file f;
    ddx_clear_error();
    ddx_status st = ddx_st_parse(b, len, "mem.safetensors", &f);
    CHECK(st == DDX_OK && f.n_tensors == n_tensors, "%s: expected OK with %zu tensors, got %s (%s), %zu tensors",
          label, n_tensors, ddx_status_name(st), ddx_last_error(), f.n_tensors);
    ddx_st_close(&f);
    free(b);
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

static bool write_all(const char *path, const void *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return false;
    bool ok = fwrite(buf, 1, len, fp) == len;
    return fclose(fp) == 0 && ok;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

// ---- JSON ---------------------------------------------------------------------------------

static ddx_status jparse(const char *s, ddx_json *v) {
    size_t n = strlen(s);
    char *copy = malloc(n ? n : 1);  // exact size, no NUL: the parser must not read past len
    memcpy(copy, s, n);
    ddx_clear_error();
    ddx_status st = ddx_json_parse(copy, n, "t.json", v);
    free(copy);
    return st;
}

static void json_bad(const char *s, const char *want) {
    ddx_json v;
    ddx_status st = jparse(s, &v);
    CHECK(st == DDX_E_INPUT && msg_ok(want), "json %s: expected DDX_E_INPUT with \"%s\", got %s (%s)", s,
          want ? want : "", ddx_status_name(st), ddx_last_error());
    CHECK(v.type == DDX_JSON_NULL, "json %s: output not reset on failure", s);
    ddx_json_free(&v);
}

static void test_json(void) {
    ddx_json v;
    ddx_status st = jparse(" {\"a\":[1,-2,3.5,true,false,null,\"x\\n\\u00e9\\ud83d\\ude00\\/\"],\"b\":{},\"c\":[]}\r\n\t", &v);
    CHECK(st == DDX_OK, "json: valid document rejected: %s", ddx_last_error());
    if (st == DDX_OK) {
        const ddx_json *a = ddx_json_get(&v, "a");
        CHECK(a && a->type == DDX_JSON_ARRAY && a->n == 7, "json: array a wrong");
        if (a && a->n == 7) {
            int64_t i;
            CHECK(ddx_json_as_index(&a->u.items[0], &i) && i == 1, "json: a[0] != 1");
            CHECK(!ddx_json_as_index(&a->u.items[1], &i) && ddx_json_number(&a->u.items[1]) == -2.0, "json: a[1]");
            CHECK(!ddx_json_as_index(&a->u.items[2], &i) && ddx_json_number(&a->u.items[2]) == 3.5, "json: a[2]");
            CHECK(a->u.items[3].type == DDX_JSON_BOOL && a->u.items[3].u.b, "json: a[3]");
            CHECK(a->u.items[4].type == DDX_JSON_BOOL && !a->u.items[4].u.b, "json: a[4]");
            CHECK(a->u.items[5].type == DDX_JSON_NULL, "json: a[5]");
            const char *want = "x\n\xC3\xA9\xF0\x9F\x98\x80/";
            CHECK(a->u.items[6].type == DDX_JSON_STRING && a->u.items[6].n == strlen(want) &&
                      memcmp(a->u.items[6].u.s, want, strlen(want)) == 0, "json: escapes decoded wrong");
        }
        const ddx_json *b = ddx_json_get(&v, "b");
        CHECK(b && b->type == DDX_JSON_OBJECT && b->n == 0, "json: empty object b");
        CHECK(ddx_json_get(&v, "zz") == NULL, "json: missing key found");
    }
    ddx_json_free(&v);

    // Integer limits: 2^63-1 is an index, 2^63 is not; non-integers never are.
    struct { const char *s; bool index; int64_t val; double num; } nums[] = {
        {"0", true, 0, 0}, {"9223372036854775807", true, INT64_MAX, 9223372036854775807.0},
        {"9223372036854775808", false, 0, 9223372036854775808.0}, {"-1", false, 0, -1},
        {"-0", false, 0, -0.0}, {"1e2", false, 0, 100}, {"1.0", false, 0, 1}, {"2E-1", false, 0, 0.2},
        {"123456789012345678901234567890", false, 0, 1.2345678901234568e29},
    };
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        st = jparse(nums[k].s, &v);
        int64_t i = -7;
        bool idx = st == DDX_OK && ddx_json_as_index(&v, &i);
        CHECK(st == DDX_OK && idx == nums[k].index && (!idx || i == nums[k].val) &&
                  ddx_json_number(&v) == nums[k].num,
              "json number %s: st %s index %d value %" PRId64 " number %g", nums[k].s, ddx_status_name(st), idx, i,
              ddx_json_number(&v));
        ddx_json_free(&v);
    }

    // Depth: 64 nested arrays parse, 65 do not.
    char deep[200];
    for (int d = 64; d <= 65; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        deep[2 * d] = 0;
        st = jparse(deep, &v);
        if (d == 64) CHECK(st == DDX_OK, "json: depth 64 rejected: %s", ddx_last_error());
        else CHECK(st == DDX_E_INPUT && msg_ok("depth"), "json: depth 65 accepted or wrong message: %s",
                   ddx_last_error());
        ddx_json_free(&v);
    }

    const char *bad[][2] = {
        {"", "end of input"}, {"   ", "end of input"}, {"{", "expected a string key"}, {"[1,2", "expected ','"},
        {"{\"a\"}", "expected ':'"}, {"{\"a\":1,}", "expected a string key"}, {"[1,]", "expected a value"},
        {"{,}", "expected a string key"}, {"{} x", "trailing"}, {"{}{}", "trailing"}, {"tru", "unexpected"},
        {"nul", "unexpected"}, {"{'a':1}", "expected a string key"}, {"01", "leading zero"}, {"1.", "after '.'"},
        {"-", "expected a digit"}, {"1e", "exponent"}, {"+1", "unexpected"}, {".5", "unexpected"},
        {"NaN", "unexpected"}, {"Infinity", "unexpected"}, {"\xEF\xBB\xBF{}", "unexpected"},
        {"\"abc", "unterminated"}, {"\"abc\\", "unterminated"}, {"\"a\tb\"", "control character"},
        {"\"a\x01\"", "control character"}, {"\"\\x\"", "invalid escape"}, {"\"\\u12\"", "4 hex"},
        {"\"\\u12g4\"", "4 hex"}, {"\"\\ud800\"", "high surrogate"}, {"\"\\ud800\\u0041\"", "not a low surrogate"},
        {"\"\\udc00\"", "low surrogate"}, {"\"\\ud800\\\"\"", "high surrogate"}, {"\"\xff\"", "UTF-8"},
        {"\"\xC0\xAF\"", "UTF-8"}, {"\"\xE0\x80\xAF\"", "UTF-8"}, {"\"\xED\xA0\x80\"", "UTF-8"},
        {"\"\xF4\x90\x80\x80\"", "UTF-8"}, {"\"\xE2\x82\"", "UTF-8"}, {"\"\x80\"", "UTF-8"}, {"{\xff}", "string key"},
        {"{\"a\":1,\"a\":2}", "duplicate key"}, {"{\"a\":1,\"\\u0061\":2}", "duplicate key"},
        {"[{\"x\":{\"k\":1,\"j\":2,\"k\":3}}]", "duplicate key \"k\""}, {"[1 2]", "expected ','"},
        {"\"\\u0000\" 1", "trailing"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) json_bad(bad[k][0], bad[k][1]);

    // A NUL inside the buffer (not a terminator): invalid outside strings.
    {
        ddx_json w;
        ddx_clear_error();
        st = ddx_json_parse("{}\0", 3, "t.json", &w);
        CHECK(st == DDX_E_INPUT && msg_ok("trailing"), "json: NUL after value accepted (%s)", ddx_last_error());
        ddx_json_free(&w);
    }

    // Many keys: duplicate detection must find a late duplicate.
    {
        ddx_json_buf b = {0};
        ddx_json_buf_append(&b, "{", 1);
        for (int i = 0; i < 5000; i++) ddx_json_buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i);
        ddx_json_buf_append(&b, "}", 1);
        st = ddx_json_parse(b.data, b.len, "many.json", &v);
        CHECK(st == DDX_OK && v.n == 5000, "json: 5000 distinct keys rejected: %s", ddx_last_error());
        ddx_json_free(&v);
        b.len--;
        ddx_json_buf_append(&b, ",\"k4321\":0}", 11);
        st = ddx_json_parse(b.data, b.len, "many.json", &v);
        CHECK(st == DDX_E_INPUT && msg_ok("duplicate key \"k4321\""), "json: late duplicate missed: %s",
              ddx_last_error());
        ddx_json_free(&v);
        ddx_json_buf_free(&b);
    }

    // Writer: every ASCII byte plus multi-byte UTF-8 and an embedded NUL survive escape + parse.
    {
        char src[200];
        size_t n = 0;
        for (int c = 0; c < 128; c++) src[n++] = (char)c;
        const char *u = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
        memcpy(src + n, u, strlen(u));
        n += strlen(u);
        CHECK(ddx_json_utf8_valid(src, n), "json: valid UTF-8 rejected");
        ddx_json_buf b = {0};
        ddx_json_buf_string(&b, src, n);
        CHECK(!b.failed && memchr(b.data, '\n', b.len) == NULL, "json: writer left a raw newline");
        st = ddx_json_parse(b.data, b.len, "w.json", &v);
        CHECK(st == DDX_OK && v.type == DDX_JSON_STRING && v.n == n && memcmp(v.u.s, src, n) == 0,
              "json: escaped string does not round trip: %s", ddx_last_error());
        ddx_json_free(&v);
        ddx_json_buf_free(&b);
    }
    CHECK(!ddx_json_utf8_valid("\xC0\x80", 2) && !ddx_json_utf8_valid("\xED\xB0\x80", 3) &&
              !ddx_json_utf8_valid("\xF8\x88\x80\x80\x80", 5) && ddx_json_utf8_valid("\xF4\x8F\xBF\xBF", 4),
          "json: utf8_valid edge cases");
    char pb[16];
    CHECK(strcmp(ddx_json_printable("a\nb\xff", 4, pb, sizeof pb), "a?b?") == 0 &&
              strcmp(ddx_json_printable("0123456789abcdefghij", 20, pb, sizeof pb), "0123456789ab...") == 0,
          "json: printable");
}

// ---- safetensors round trip ---------------------------------------------------------------

static float f32v[6] = {1.5f, -2.25f, 0.0f, 3e38f, -1e-30f, 7.0f};
static uint16_t bf16v[4] = {0x3F80, 0xBF80, 0x7F80, 0x0001};
static uint16_t f16v[3] = {0x3C00, 0xC000, 0x7BFF};
static int64_t i64v[3] = {INT64_MIN, -1, INT64_MAX};
static int32_t i32v[5] = {INT32_MIN, -5, 0, 5, INT32_MAX};
static uint8_t u8v[7] = {0, 1, 2, 127, 128, 254, 255};
static float scalarv = 42.5f;

static void build_writer(ddx_st_writer *w) {
    ddx_st_writer_init(w);
    // Added in a scrambled order: the file must come out sorted anyway.
    ddx_status st = DDX_OK;
    st |= ddx_st_writer_add(w, "u8.odd", DDX_ST_U8, 1, (int64_t[]){7}, u8v);
    st |= ddx_st_writer_add(w, "f32", DDX_ST_F32, 2, (int64_t[]){2, 3}, f32v);
    st |= ddx_st_writer_add(w, "scalar", DDX_ST_F32, 0, NULL, &scalarv);
    st |= ddx_st_writer_add(w, "bf16", DDX_ST_BF16, 3, (int64_t[]){1, 2, 2}, bf16v);
    st |= ddx_st_writer_add(w, "empty", DDX_ST_F32, 2, (int64_t[]){0, 3}, NULL);
    st |= ddx_st_writer_add(w, "f16", DDX_ST_F16, 1, (int64_t[]){3}, f16v);
    st |= ddx_st_writer_add(w, "i64", DDX_ST_I64, 1, (int64_t[]){3}, i64v);
    st |= ddx_st_writer_add(w, "i32", DDX_ST_I32, 8, (int64_t[]){1, 1, 1, 5, 1, 1, 1, 1}, i32v);
    st |= ddx_st_writer_add(w, "unet.down.0.w \"q\"\\é", DDX_ST_U8, 1, (int64_t[]){1}, u8v);
    st |= ddx_st_writer_meta(w, "step", "1234");
    st |= ddx_st_writer_meta(w, "config", "model:\n  ch: 64\t# \"quoted\" \\ é 😀 \x01");
    st |= ddx_st_writer_meta(w, "empty", "");
    CHECK(st == DDX_OK, "writer: building failed: %s", ddx_last_error());
}

static void check_roundtrip(const ddx_st_file *f, const char *label) {
    struct { const char *name; ddx_st_dtype dt; int ndim; int64_t shape[8]; const void *data; size_t nbytes; } want[] = {
        {"bf16", DDX_ST_BF16, 3, {1, 2, 2}, bf16v, sizeof bf16v},
        {"empty", DDX_ST_F32, 2, {0, 3}, NULL, 0},
        {"f16", DDX_ST_F16, 1, {3}, f16v, sizeof f16v},
        {"f32", DDX_ST_F32, 2, {2, 3}, f32v, sizeof f32v},
        {"i32", DDX_ST_I32, 8, {1, 1, 1, 5, 1, 1, 1, 1}, i32v, sizeof i32v},
        {"i64", DDX_ST_I64, 1, {3}, i64v, sizeof i64v},
        {"scalar", DDX_ST_F32, 0, {0}, &scalarv, 4},
        {"u8.odd", DDX_ST_U8, 1, {7}, u8v, sizeof u8v},
        {"unet.down.0.w \"q\"\\é", DDX_ST_U8, 1, {1}, u8v, 1},
    };
    size_t nw = sizeof want / sizeof want[0];
    CHECK(f->n_tensors == nw, "%s: %zu tensors, want %zu", label, f->n_tensors, nw);
    for (size_t i = 0; i < nw && i < f->n_tensors; i++) {
        const ddx_st_tensor *t = &f->tensors[i];
        CHECK(strcmp(t->name, want[i].name) == 0, "%s: tensor %zu is \"%s\", want \"%s\" (sorted order)", label, i,
              t->name, want[i].name);
        CHECK(ddx_st_find(f, want[i].name) == t, "%s: find(\"%s\") wrong", label, want[i].name);
        bool shape_ok = t->ndim == want[i].ndim;
        for (int d = 0; d < 8; d++) shape_ok = shape_ok && t->shape[d] == (d < t->ndim ? want[i].shape[d] : 0);
        CHECK(t->dtype == want[i].dt && shape_ok && t->nbytes == want[i].nbytes, "%s: \"%s\" dtype/shape/nbytes",
              label, t->name);
        CHECK(want[i].nbytes == 0 || memcmp(t->data, want[i].data, want[i].nbytes) == 0, "%s: \"%s\" data differs",
              label, t->name);
        CHECK((uintptr_t)t->data % ddx_st_dtype_size(t->dtype) == 0, "%s: \"%s\" data misaligned", label, t->name);
    }
    CHECK(ddx_st_find(f, "nope") == NULL && ddx_st_find(f, "") == NULL, "%s: find of a missing name", label);
    CHECK(f->n_meta == 3, "%s: %zu metadata pairs, want 3", label, f->n_meta);
    const char *c = ddx_st_meta_get(f, "config");
    CHECK(c && strcmp(c, "model:\n  ch: 64\t# \"quoted\" \\ é 😀 \x01") == 0, "%s: metadata config", label);
    CHECK(ddx_st_meta_get(f, "step") && strcmp(ddx_st_meta_get(f, "step"), "1234") == 0, "%s: metadata step", label);
    CHECK(ddx_st_meta_get(f, "empty") && ddx_st_meta_get(f, "empty")[0] == 0, "%s: metadata empty", label);
    CHECK(ddx_st_meta_get(f, "missing") == NULL, "%s: missing metadata found", label);
}

static void test_roundtrip(void) {
    ddx_st_writer w;
    build_writer(&w);
    char path[300];
    snprintf(path, sizeof path, "%s/rt.safetensors", g_dir);
    ddx_status st = ddx_st_write(&w, path);
    CHECK(st == DDX_OK, "roundtrip: write failed: %s", ddx_last_error());
    void *mem = NULL;
    size_t mem_len = 0;
    st = ddx_st_serialize(&w, &mem, &mem_len);
    CHECK(st == DDX_OK, "roundtrip: serialize failed: %s", ddx_last_error());

    size_t flen = 0;
    uint8_t *fbytes = read_all(path, &flen);
    CHECK(fbytes && flen == mem_len && memcmp(fbytes, mem, flen) == 0, "roundtrip: file and serialize differ");
    if (fbytes && flen >= 8) {
        uint64_t h = 0;
        for (int i = 7; i >= 0; i--) h = h << 8 | fbytes[i];
        CHECK((8 + h) % 8 == 0, "roundtrip: data start %llu not 8-aligned", (unsigned long long)(8 + h));
        size_t close = (size_t)h;
        while (close > 0 && fbytes[8 + close - 1] == ' ') close--;
        CHECK(fbytes[8] == '{' && close > 0 && fbytes[8 + close - 1] == '}' && h - close < 8,
              "roundtrip: header must be JSON then fewer than 8 spaces of padding");
        // Header keys in name order: "bf16" must precede "empty", which precedes "f16".
        const char *hdr = (const char *)fbytes + 8;
        const char *p1 = memmem(hdr, h, "\"bf16\":{", 8), *p2 = memmem(hdr, h, "\"empty\":{", 9),
                   *p3 = memmem(hdr, h, "\"u8.odd\":{", 10), *pm = memmem(hdr, h, "\"__metadata__\":{", 16);
        CHECK(pm && p1 && p2 && p3 && pm < p1 && p1 < p2 && p2 < p3, "roundtrip: header key order");
    }
    free(fbytes);

    ddx_st_file f;
    st = ddx_st_read(path, &f);
    CHECK(st == DDX_OK, "roundtrip: read failed: %s", ddx_last_error());
    if (st == DDX_OK) check_roundtrip(&f, "roundtrip(file)");
    ddx_st_close(&f);
    ddx_st_close(&f);  // double close is harmless

    st = ddx_st_parse(mem, mem_len, "mem", &f);
    CHECK(st == DDX_OK, "roundtrip: parse failed: %s", ddx_last_error());
    if (st == DDX_OK) check_roundtrip(&f, "roundtrip(mem)");
    ddx_st_close(&f);
    free(mem);
    ddx_st_writer_free(&w);

    // Empty writer: a valid file with no tensors.
    ddx_st_writer_init(&w);
    st = ddx_st_serialize(&w, &mem, &mem_len);
    CHECK(st == DDX_OK && mem_len == 16, "roundtrip: empty file is %zu bytes", mem_len);
    st = ddx_st_parse(mem, mem_len, "empty", &f);
    CHECK(st == DDX_OK && f.n_tensors == 0 && f.n_meta == 0, "roundtrip: empty file: %s", ddx_last_error());
    ddx_st_close(&f);
    free(mem);
    ddx_st_writer_free(&w);

    // Writer input errors.
    ddx_st_writer_init(&w);
    uint8_t x[4] = {0};
    struct { ddx_status st; const char *what; } errs[] = {
        {ddx_st_writer_add(&w, "neg", DDX_ST_U8, 1, (int64_t[]){-1}, x), "negative"},
        {ddx_st_writer_add(&w, "ndim", DDX_ST_U8, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x), "ndim"},
        {ddx_st_writer_add(&w, "dt", (ddx_st_dtype)99, 1, (int64_t[]){1}, x), "dtype"},
        {ddx_st_writer_add(&w, "__metadata__", DDX_ST_U8, 1, (int64_t[]){1}, x), "reserved"},
        {ddx_st_writer_add(&w, "null", DDX_ST_U8, 1, (int64_t[]){1}, NULL), "NULL"},
        {ddx_st_writer_add(&w, "bad\xff", DDX_ST_U8, 1, (int64_t[]){1}, x), "UTF-8"},
        {ddx_st_writer_add(&w, "ovf", DDX_ST_F32, 2, (int64_t[]){1ll << 40, 1ll << 40}, x), "overflow"},
        {ddx_st_writer_meta(&w, "k", "\xC0\x80"), "UTF-8"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        CHECK(errs[i].st == DDX_E_INPUT, "writer: bad %s accepted", errs[i].what);
    CHECK(w.n_tensors == 0 && w.n_meta == 0, "writer: rejected entries were kept");
    ddx_st_writer_free(&w);
}

// ---- atomic write -------------------------------------------------------------------------

static void test_atomic(void) {
    char path[300], sub[300], subpath[400], missing[300];
    snprintf(path, sizeof path, "%s/atomic.safetensors", g_dir);
    float v1[2] = {1, 2}, v2[3] = {3, 4, 5};
    ddx_st_writer w;
    ddx_st_writer_init(&w);
    ddx_st_writer_add(&w, "w", DDX_ST_F32, 1, (int64_t[]){2}, v1);
    ddx_status st = ddx_st_write(&w, path);
    ddx_st_writer_free(&w);
    CHECK(st == DDX_OK, "atomic: first write failed: %s", ddx_last_error());
    CHECK(chmod(path, 0640) == 0, "atomic: chmod");
    size_t old_len = 0;
    uint8_t *old = read_all(path, &old_len);

    // Duplicate tensor name: rejected before anything touches the disk.
    ddx_st_writer_init(&w);
    ddx_st_writer_add(&w, "w", DDX_ST_F32, 1, (int64_t[]){3}, v2);
    ddx_st_writer_add(&w, "a", DDX_ST_F32, 1, (int64_t[]){3}, v2);
    ddx_st_writer_add(&w, "w", DDX_ST_F32, 1, (int64_t[]){3}, v2);
    ddx_clear_error();
    st = ddx_st_write(&w, path);
    CHECK(st == DDX_E_INPUT && msg_ok("duplicate tensor name \"w\""), "atomic: duplicate name gave %s (%s)",
          ddx_status_name(st), ddx_last_error());
    void *mem;
    size_t mem_len;
    st = ddx_st_serialize(&w, &mem, &mem_len);
    CHECK(st == DDX_E_INPUT, "atomic: serialize accepted a duplicate name");
    ddx_st_writer_free(&w);

    ddx_st_writer_init(&w);
    ddx_st_writer_add(&w, "w", DDX_ST_F32, 1, (int64_t[]){3}, v2);
    ddx_st_writer_meta(&w, "k", "1");
    ddx_st_writer_meta(&w, "k", "2");
    ddx_clear_error();
    st = ddx_st_write(&w, path);
    CHECK(st == DDX_E_INPUT && msg_ok("duplicate metadata key"), "atomic: duplicate metadata gave %s (%s)",
          ddx_status_name(st), ddx_last_error());
    ddx_st_writer_free(&w);

    // The target is a non-empty directory: refused before anything is written.
    ddx_st_writer_init(&w);
    ddx_st_writer_add(&w, "w", DDX_ST_F32, 1, (int64_t[]){3}, v2);
    snprintf(sub, sizeof sub, "%s/isdir.safetensors", g_dir);
    snprintf(subpath, sizeof subpath, "%s/keep", sub);
    mkdir(sub, 0755);
    write_all(subpath, "x", 1);
    ddx_clear_error();
    st = ddx_st_write(&w, sub);
    CHECK(st == DDX_E_INPUT && msg_ok("a folder"), "atomic: write over a directory gave %s (%s)", ddx_status_name(st),
          ddx_last_error());
    struct stat sb;
    CHECK(stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode) && access(subpath, F_OK) == 0,
          "atomic: directory target was disturbed");

    // A FIFO and a symlink (to the good file) are refused and left as they are.
    char fifo[400], link[400];
    snprintf(fifo, sizeof fifo, "%s/fifo.safetensors", g_dir);
    snprintf(link, sizeof link, "%s/link.safetensors", g_dir);
    CHECK(mkfifo(fifo, 0600) == 0, "atomic: mkfifo");
    ddx_clear_error();
    st = ddx_st_write(&w, fifo);
    CHECK(st == DDX_E_INPUT && msg_ok("a FIFO"), "atomic: write to a FIFO gave %s (%s)", ddx_status_name(st),
          ddx_last_error());
    CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode), "atomic: the FIFO was replaced");
    CHECK(symlink(path, link) == 0, "atomic: symlink");
    ddx_clear_error();
    st = ddx_st_write(&w, link);
    CHECK(st == DDX_E_INPUT && msg_ok("symbolic link"), "atomic: write to a symlink gave %s (%s)", ddx_status_name(st),
          ddx_last_error());
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode), "atomic: the symlink was replaced");
    unlink(fifo);
    unlink(link);

    // A write that fails part way (EFBIG from the file-size limit, as ENOSPC would): the
    // previous file stays, the temp file goes.
    {
        static float big[4096];
        ddx_st_writer wb;
        ddx_st_writer_init(&wb);
        ddx_st_writer_add(&wb, "w", DDX_ST_F32, 1, (int64_t[]){4096}, big);
        struct rlimit old_lim;
        CHECK(fsize_limit(1000, &old_lim), "atomic: setrlimit");
        ddx_clear_error();
        st = ddx_st_write(&wb, path);
        fsize_unlimit(&old_lim);
        CHECK(st == DDX_E_IO && msg_ok("atomic.safetensors"), "atomic: write past the size limit gave %s (%s)",
              ddx_status_name(st), ddx_last_error());
        ddx_st_writer_free(&wb);
    }

    snprintf(missing, sizeof missing, "%s/no/such/dir/x.safetensors", g_dir);
    ddx_clear_error();
    st = ddx_st_write(&w, missing);
    CHECK(st == DDX_E_INPUT && msg_ok("does not exist"), "atomic: missing dir gave %s (%s)", ddx_status_name(st),
          ddx_last_error());

    // Read-only directory (meaningless for root, who may write anyway).
    chmod(g_dir, 0500);
    if (access(g_dir, W_OK) == 0) {
        n_skip++;
        printf("SKIP atomic: read-only directory case (running as root)\n");
    } else {
        ddx_clear_error();
        st = ddx_st_write(&w, path);
        CHECK(st == DDX_E_INPUT && msg_ok("not writable"), "atomic: read-only dir gave %s (%s)", ddx_status_name(st),
              ddx_last_error());
    }
    chmod(g_dir, 0700);

    size_t now_len = 0;
    uint8_t *now = read_all(path, &now_len);
    CHECK(old && now && now_len == old_len && memcmp(old, now, old_len) == 0,
          "atomic: failed writes changed the previous file");
    free(now);
    CHECK(count_temps(g_dir) == 0 && count_temps(sub) == 0, "atomic: temp files left behind");

    // A successful overwrite replaces the content and keeps the file's mode.
    st = ddx_st_write(&w, path);
    CHECK(st == DDX_OK, "atomic: overwrite failed: %s", ddx_last_error());
    ddx_st_writer_free(&w);
    ddx_st_file f;
    st = ddx_st_read(path, &f);
    const ddx_st_tensor *t = st == DDX_OK ? ddx_st_find(&f, "w") : NULL;
    CHECK(t && t->shape[0] == 3 && memcmp(t->data, v2, sizeof v2) == 0, "atomic: overwrite content wrong");
    ddx_st_close(&f);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0640, "atomic: mode 0%o not kept",
          (unsigned)(sb.st_mode & 0777));
    CHECK(count_temps(g_dir) == 0, "atomic: temp files left after success");
    free(old);

    // Reading: missing file is an I/O error, a directory is bad input.
    ddx_clear_error();
    st = ddx_st_read(missing, &f);
    CHECK(st == DDX_E_IO && msg_ok("no/such/dir"), "read: missing file gave %s (%s)", ddx_status_name(st),
          ddx_last_error());
    st = ddx_st_read(sub, &f);
    CHECK(st == DDX_E_INPUT && msg_ok("regular file"), "read: directory gave %s (%s)", ddx_status_name(st),
          ddx_last_error());
}

// ---- hostile input ------------------------------------------------------------------------

#define T(name, dt, shape, b, e) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_bad_headers(void) {
    expect_good("valid", "{" T("a", "F32", "[2]", 0, 8) "}", 8, 1);
    expect_good("padded", "{" T("a", "F32", "[2]", 0, 8) "}    \n\t ", 8, 1);
    expect_good("empty", "{}", 0, 0);
    expect_good("meta only", "{\"__metadata__\":{\"a\":\"b\"}}", 0, 0);
    expect_good("zero-size tensors at the same offset",
                "{" T("a", "F32", "[0]", 0, 0) "," T("b", "U8", "[2]", 0, 2) "," T("c", "I64", "[0,5]", 2, 2) "}", 2, 3);
    expect_good("zero dim beside a huge one", "{" T("a", "F32", "[0,4611686018427387904,4611686018427387904]", 0, 0) "}",
                0, 1);

    struct { const char *label, *hdr; size_t data; const char *want; } cases[] = {
        {"overlap", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12, "overlaps"},
        {"same span", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 0, 8) "}", 8, "overlaps"},
        {"gap", "{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", 12, "belong to no tensor"},
        {"not at 0", "{" T("a", "F32", "[1]", 4, 8) "}", 8, "belong to no tensor"},
        {"trailing data", "{" T("a", "F32", "[1]", 0, 4) "}", 8, "trailing bytes"},
        {"no tensors, data", "{}", 4, "trailing bytes"},
        {"past end", "{" T("a", "F32", "[2]", 0, 8) "}", 4, "run past"},
        {"huge end", "{" T("a", "U8", "[9223372036854775807]", 0, 9223372036854775807) "}", 4, "run past"},
        {"begin > end", "{" T("a", "F32", "[0]", 8, 0) "}", 8, "begin > end"},
        {"size mismatch", "{" T("a", "F32", "[3]", 0, 8) "}", 8, "needs 12"},
        {"unknown dtype", "{" T("a", "F64", "[1]", 0, 8) "}", 8, "unsupported dtype \"F64\""},
        {"lowercase dtype", "{" T("a", "f32", "[1]", 0, 4) "}", 4, "unsupported dtype"},
        {"dtype number", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is a JSON number"},
        {"shape not array", "{" T("a", "F32", "4", 0, 4) "}", 4, "shape is a JSON number"},
        {"shape negative", "{" T("a", "F32", "[-1]", 0, 4) "}", 4, "shape[0]"},
        {"shape float", "{" T("a", "F32", "[1.0]", 0, 4) "}", 4, "shape[0]"},
        {"shape exp", "{" T("a", "F32", "[1,1e0]", 0, 4) "}", 4, "shape[1]"},
        {"shape string", "{" T("a", "F32", "[\"1\"]", 0, 4) "}", 4, "shape[0]"},
        {"shape 2^63", "{" T("a", "U8", "[9223372036854775808]", 0, 4) "}", 4, "shape[0]"},
        {"shape 20 digits", "{" T("a", "U8", "[99999999999999999999]", 0, 4) "}", 4, "shape[0]"},
        {"ndim 9", "{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, "9 dims"},
        {"numel overflow", "{" T("a", "F32", "[1099511627776,1099511627776]", 0, 4) "}", 4, "overflow"},
        {"bytes overflow", "{" T("a", "F32", "[2305843009213693952,2]", 0, 4) "}", 4, "overflow"},
        {"offsets short", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "[begin, end]"},
        {"offsets long", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4, "[begin, end]"},
        {"offsets object", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4, "[begin, end]"},
        {"offsets negative", "{" T("a", "F32", "[1]", -4, 0) "}", 4, "data_offsets must hold"},
        {"offsets -0", "{" T("a", "F32", "[1]", -0, 4) "}", 4, "data_offsets must hold"},
        {"offsets float", "{" T("a", "F32", "[1]", 0, 4.0) "}", 4, "data_offsets must hold"},
        {"offsets 2^64", "{" T("a", "F32", "[1]", 0, 18446744073709551616) "}", 4, "data_offsets must hold"},
        {"duplicate name", "{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8, "duplicate key \"a\""},
        {"duplicate via escape", "{" T("a", "F32", "[1]", 0, 4) "," T("\\u0061", "F32", "[1]", 4, 8) "}", 8,
         "duplicate key"},
        {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "duplicate key \"dtype\""},
        {"extra key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
         "unknown key \"x\""},
        {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing \"data_offsets\""},
        {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing \"dtype\""},
        {"entry array", "{\"a\":[1]}", 0, "entry is a JSON array"},
        {"entry null", "{\"a\":null}", 0, "entry is a JSON null"},
        {"NUL in name", "{" T("a\\u0000b", "F32", "[1]", 0, 4) "}", 4, "NUL"},
        {"meta number", "{\"__metadata__\":{\"k\":1}}", 0, "expected a string"},
        {"meta null", "{\"__metadata__\":{\"k\":null}}", 0, "expected a string"},
        {"meta object", "{\"__metadata__\":{\"k\":{}}}", 0, "expected a string"},
        {"meta array", "{\"__metadata__\":[\"k\"]}", 0, "expected an object"},
        {"meta string", "{\"__metadata__\":\"k\"}", 0, "expected an object"},
        {"meta NUL", "{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "NUL"},
        {"meta dup", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate key"},
        {"two metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key"},
        {"root array", "[]", 0, "expected an object"},
        {"root string", "\"x\"", 0, "expected an object"},
        {"root null", "null", 0, "expected an object"},
        {"not JSON", "{", 0, "invalid JSON"},
        {"garbage", "PK\x03\x04 not json", 0, "invalid JSON"},
        {"trailing garbage", "{} x", 0, "trailing"},
        {"two objects", "{}{}", 0, "trailing"},
        {"key no colon", "{\"a\"}", 0, "expected ':'"},
        {"trailing comma", "{" T("a", "F32", "[1]", 0, 4) ",}", 4, "invalid JSON"},
        {"non-UTF-8 key", "{\"\xff\xfe\":{}}", 0, "UTF-8"},
        {"overlong UTF-8", "{\"__metadata__\":{\"k\":\"\xC0\xAF\"}}", 0, "UTF-8"},
        {"surrogate UTF-8", "{\"__metadata__\":{\"k\":\"\xED\xA0\x80\"}}", 0, "UTF-8"},
        {"lone surrogate escape", "{\"__metadata__\":{\"k\":\"\\ud800\"}}", 0, "surrogate"},
        {"raw newline in key", "{\"a\nb\":{}}", 0, "control character"},
        {"invalid escape", "{\"\\q\":{}}", 0, "invalid escape"},
        {"BOM", "\xEF\xBB\xBF{}", 0, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_bad(cases[i].label, cases[i].hdr, cases[i].data, cases[i].want);

    // A NUL byte inside the header region.
    {
        size_t len;
        uint8_t *b = mk_raw(4, "{}\0 ", 4, 0, &len);
        expect_bad_buf("NUL in header", b, len, "trailing");
        free(b);
    }
    // Depth: 70 nested arrays inside metadata.
    {
        char hdr[256];
        int n = snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"k\":");
        for (int i = 0; i < 70; i++) hdr[n++] = '[';
        for (int i = 0; i < 70; i++) hdr[n++] = ']';
        hdr[n++] = '}';
        hdr[n++] = '}';
        hdr[n] = 0;
        expect_bad("depth 70", hdr, 0, "nesting depth");
    }
    // Header length field.
    const char *hdr = "{" T("a", "F32", "[1]", 0, 4) "}";
    size_t hn = strlen(hdr), len;
    struct { const char *label; uint64_t hlen; const char *want; } lens[] = {
        {"hlen 0", 0, "header length is 0"},
        {"hlen 2^63", 1ull << 63, "exceeds"},
        {"hlen 2^64-1", UINT64_MAX, "exceeds"},
        {"hlen file+1", hn + 4 + 1, "exceeds"},
        {"hlen too short", hn - 1, "invalid JSON"},
        {"hlen into data", hn + 2, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t *b = mk_raw(lens[i].hlen, hdr, hn, 4, &len);
        expect_bad_buf(lens[i].label, b, len, lens[i].want);
        free(b);
    }
    for (size_t n = 0; n < 8; n++) {
        uint8_t b[8] = {2, 0, 0, 0, 0, 0, 0, 0};
        char label[32];
        snprintf(label, sizeof label, "%zu-byte file", n);
        expect_bad_buf(label, b, n, "shorter than the 8-byte");
    }
}

// Every truncation of a valid file fails cleanly, in memory and through ddx_st_read.
static void test_truncation(void) {
    ddx_st_writer w;
    ddx_st_writer_init(&w);
    float a[3] = {1, 2, 3};
    uint8_t b[2] = {9, 8};
    ddx_st_writer_add(&w, "a", DDX_ST_F32, 1, (int64_t[]){3}, a);
    ddx_st_writer_add(&w, "b", DDX_ST_U8, 2, (int64_t[]){1, 2}, b);
    ddx_st_writer_meta(&w, "m", "v");
    void *mem;
    size_t len;
    ddx_status st = ddx_st_serialize(&w, &mem, &len);
    ddx_st_writer_free(&w);
    CHECK(st == DDX_OK, "truncation: serialize failed");
    if (st != DDX_OK) return;
    char path[300];
    snprintf(path, sizeof path, "%s/trunc.safetensors", g_dir);
    int bad_mem = 0, bad_disk = 0, bad_msg = 0;
    for (size_t n = 0; n < len; n++) {
        ddx_st_file f;
        st = parse_exact(mem, n, &f);
        if (st != DDX_E_INPUT) {
            bad_mem++;
            printf("FAIL truncation to %zu bytes (memory): %s %s\n", n, ddx_status_name(st), ddx_last_error());
        } else if (!msg_ok(NULL)) {
            bad_msg++;
        }
        write_all(path, mem, n);
        ddx_clear_error();
        st = ddx_st_read(path, &f);
        ddx_st_close(&f);
        if (st != DDX_E_INPUT || !strstr(ddx_last_error(), path)) {
            bad_disk++;
            printf("FAIL truncation to %zu bytes (file): %s %s\n", n, ddx_status_name(st), ddx_last_error());
        }
    }
    CHECK(bad_mem == 0 && bad_disk == 0 && bad_msg == 0, "truncation: %d memory, %d file, %d message failures of %zu",
          bad_mem, bad_disk, bad_msg, len);
    ddx_st_file f;
    st = parse_exact(mem, len, &f);
    CHECK(st == DDX_OK, "truncation: the untruncated file must parse: %s", ddx_last_error());
    free(mem);
}

// Random byte mutations of a valid file's length field and header: never a crash, only OK or
// DDX_E_INPUT, and an accepted file still satisfies the tiling invariants.
static void test_mutation(void) {
    const char *hdr = "{\"__metadata__\":{\"k\":\"v\\u00e9\"}," T("a", "F32", "[2,1]", 0, 8) ","
                      T("b", "U8", "[3]", 8, 11) "," T("c", "I64", "[]", 11, 19) "}";
    size_t len;
    uint8_t *base = mk_file(hdr, 19, &len);
    size_t hend = 8 + strlen(hdr);
    static const char interesting[] = "{}[]\":,0123456789-.eE\\u \x00\x80\xff\xc3\xed";
    const uint64_t seed = 0xD1CE5EEDull;
    g_rng = seed;
    int bad = 0, ok = 0, inval = 0;
    for (int it = 0; it < 4000; it++) {
        size_t n = len;
        if (rnd() % 8 == 0) n = (size_t)(rnd() % (len + 1));  // sometimes also truncate
        uint8_t *b = malloc(len);
        memcpy(b, base, len);
        int muts = 1 + (int)(rnd() % 4);
        for (int m = 0; m < muts; m++) {
            size_t at = (size_t)(rnd() % hend);
            switch (rnd() % 3) {
            case 0: b[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: b[at] = (uint8_t)interesting[rnd() % (sizeof interesting - 1)]; break;
            default: b[at] = (uint8_t)rnd(); break;
            }
        }
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, b, n);
        free(b);
        ddx_st_file f;
        ddx_clear_error();
        ddx_status st = ddx_st_parse(exact, n, "mut.safetensors", &f);
        if (st == DDX_OK) {
            ok++;
            uint64_t total = 0;
            for (size_t i = 0; i < f.n_tensors; i++) {
                const ddx_st_tensor *t = &f.tensors[i];
                total += t->nbytes;
                if (t->nbytes && ((const uint8_t *)t->data < exact || (const uint8_t *)t->data + t->nbytes > exact + n))
                    bad++;
                if (i && strcmp(f.tensors[i - 1].name, t->name) >= 0) bad++;
            }
            uint64_t h = 0;
            for (int i = 7; i >= 0; i--) h = h << 8 | exact[i];
            if (total != n - 8 - h) bad++;
        } else if (st == DDX_E_INPUT && msg_ok(NULL)) {
            inval++;
        } else {
            bad++;
            printf("FAIL mutation %d (seed 0x%llx): %s \"%s\"\n", it, (unsigned long long)seed, ddx_status_name(st),
                   ddx_last_error());
        }
        ddx_st_close(&f);
        free(exact);
    }
    CHECK(bad == 0, "mutation: %d bad outcomes (seed 0x%llx)", bad, (unsigned long long)seed);
    CHECK(inval > 1000, "mutation: only %d of 4000 mutants were rejected: mutations too weak", inval);
    printf("mutation: seed 0x%llx, 4000 mutants, %d accepted, %d rejected\n", (unsigned long long)seed, ok, inval);
    free(base);
}

// A file written by the Python safetensors package (tests/reference/make_safetensors_fixture.py).
static void test_reference_fixture(void) {
    const char *path = "data/safetensors/ref_small.safetensors";
    ddx_st_file f;
    ddx_status st = ddx_st_read(path, &f);
    CHECK(st == DDX_OK, "fixture: %s", ddx_last_error());
    if (st != DDX_OK) return;
    CHECK(f.n_tensors == 7, "fixture: %zu tensors, want 7", f.n_tensors);
    const ddx_st_tensor *t = ddx_st_find(&f, "conv.weight");
    CHECK(t && t->dtype == DDX_ST_F32 && t->ndim == 4 && t->shape[0] == 2 && t->shape[1] == 1 && t->shape[2] == 2 &&
              t->shape[3] == 3, "fixture: conv.weight header");
    if (t && t->nbytes == 48) {
        bool eq = true;
        for (int i = 0; i < 12; i++) {
            float x;
            memcpy(&x, (const uint8_t *)t->data + 4 * i, 4);
            eq = eq && x == (float)i * 0.5f - 3.0f;
        }
        CHECK(eq, "fixture: conv.weight values");
    }
    t = ddx_st_find(&f, "counts");
    static const int64_t counts[3] = {-(1ll << 40), 0, (1ll << 62) + 1};
    CHECK(t && t->dtype == DDX_ST_I64 && t->ndim == 1 && t->nbytes == 24 && memcmp(t->data, counts, 24) == 0,
          "fixture: counts");
    t = ddx_st_find(&f, "half");
    static const uint16_t half[3] = {0x3C00, 0xC100, 0x0000};  // 1.0, -2.5, 0.0
    CHECK(t && t->dtype == DDX_ST_F16 && t->nbytes == 6 && memcmp(t->data, half, 6) == 0, "fixture: half");
    t = ddx_st_find(&f, "idx");
    static const int32_t idx[2] = {-7, 7};
    CHECK(t && t->dtype == DDX_ST_I32 && t->ndim == 2 && t->shape[0] == 1 && t->shape[1] == 2 &&
              memcmp(t->data, idx, 8) == 0, "fixture: idx");
    t = ddx_st_find(&f, "bytes");
    static const uint8_t bytes[3] = {0, 1, 255};
    CHECK(t && t->dtype == DDX_ST_U8 && t->nbytes == 3 && memcmp(t->data, bytes, 3) == 0, "fixture: bytes");
    t = ddx_st_find(&f, "scalar");
    float sc = 0;
    if (t && t->nbytes == 4) memcpy(&sc, t->data, 4);
    CHECK(t && t->dtype == DDX_ST_F32 && t->ndim == 0 && sc == 3.25f, "fixture: scalar");
    t = ddx_st_find(&f, "empty");
    CHECK(t && t->dtype == DDX_ST_F32 && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 4 && t->nbytes == 0,
          "fixture: empty");
    const char *note = ddx_st_meta_get(&f, "note");
    CHECK(note && strcmp(note, "h\xC3\xA9llo \"ddx\"") == 0, "fixture: metadata note");
    CHECK(ddx_st_meta_get(&f, "format") && strcmp(ddx_st_meta_get(&f, "format"), "np") == 0,
          "fixture: metadata format");
    ddx_st_close(&f);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/ddx_test_st_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        printf("FAIL cannot create a temp directory: %s\n", strerror(errno));
        printf("safetensors: 0 passed, 1 failed\n");
        return 1;
    }
    test_json();
    test_roundtrip();
    test_atomic();
    test_bad_headers();
    test_truncation();
    test_mutation();
    test_reference_fixture();
    chmod(g_dir, 0700);
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return ddx_test_finish("safetensors");
}
