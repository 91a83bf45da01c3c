// ddx-inspect: look inside a checkpoint or a config before a run trusts it.
//
//   ddx-inspect FILE.safetensors          tensors (name, dtype, shape, bytes) and metadata
//   ddx-inspect CONFIG.yaml [--set k=v]…  the resolved config (defaults, file, overrides,
//                                         cross-key checks) printed as YAML
//
// Exit codes: 0 fine, 2 bad input (one line on stderr naming the file and the problem),
// 1 anything else.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "runtime/json.h"
#include "runtime/safetensors.h"

static void usage(FILE *f) {
    fprintf(f, "usage: ddx-inspect FILE.safetensors\n"
               "       ddx-inspect CONFIG.yaml [--set key=value ...]\n");
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int fail(ddx_status st) {
    fprintf(stderr, "ddx-inspect: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

// Names and values come from an untrusted file: no terminal escapes reach the screen. The copy
// is whole (a checkpoint's stored config is printed in full, not cut to a buffer).
static char *printable(const char *s, size_t n) {
    char *buf = malloc(n + 1);
    if (buf) ddx_json_printable(s, n, buf, n + 1);
    return buf;
}

static void shape_text(const ddx_st_tensor *t, char *shape, size_t n) {
    size_t k = (size_t)snprintf(shape, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(shape + k, n - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (k < n) snprintf(shape + k, n - k, "]");
}

// A multi-line value (the stored config YAML) is printed line by line under its key, indented,
// so that it reads as the YAML it is.
static void print_meta(const char *key, const char *value) {
    char *k = printable(key, strlen(key));
    if (!strchr(value, '\n')) {
        char *v = printable(value, strlen(value));
        printf("  __metadata__ %s = %s\n", k ? k : "?", v ? v : "?");
        free(v);
        free(k);
        return;
    }
    printf("  __metadata__ %s =\n", k ? k : "?");
    free(k);
    for (const char *line = value; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (n && line[n - 1] == '\r') n--;
        char *v = printable(line, n);
        printf("    %s\n", v ? v : "?");
        free(v);
        line += nl ? (size_t)(nl - line) + 1 : strlen(line);
    }
}

static int inspect_safetensors(const char *path) {
    ddx_st_file f;
    ddx_status st = ddx_st_read(path, &f);
    if (st != DDX_OK) return fail(st);
    // Columns as wide as their widest entry, so long names do not push later columns out of line.
    int name_w = 4, shape_w = 5;
    for (size_t i = 0; i < f.n_tensors; i++) {
        char shape[160];
        shape_text(&f.tensors[i], shape, sizeof shape);
        size_t nl = strlen(f.tensors[i].name), sl = strlen(shape);
        if (nl > (size_t)name_w) name_w = nl > 4096 ? 4096 : (int)nl;
        if (sl > (size_t)shape_w) shape_w = (int)sl;
    }
    size_t total = 0;
    printf("%s: %zu tensors\n", path, f.n_tensors);
    for (size_t i = 0; i < f.n_tensors; i++) {
        const ddx_st_tensor *t = &f.tensors[i];
        char shape[160];
        shape_text(t, shape, sizeof shape);
        char *name = printable(t->name, strlen(t->name));
        printf("  %-*s %-5s %-*s %zu bytes\n", name_w, name ? name : "?", ddx_st_dtype_name(t->dtype), shape_w, shape,
               t->nbytes);
        free(name);
        total += t->nbytes;
    }
    printf("  total %zu bytes (%.2f MiB)\n", total, (double)total / (1 << 20));
    for (size_t i = 0; i < f.n_meta; i++) print_meta(f.meta[i].key, f.meta[i].value);
    ddx_st_close(&f);
    return 0;
}

static int inspect_config(const char *path, const char *const *sets, int n_sets) {
    ddx_config cfg;
    ddx_status st = ddx_config_resolve(&cfg, path, sets, n_sets);
    if (st != DDX_OK) return fail(st);
    st = ddx_config_emit(&cfg, stdout);
    return st == DDX_OK ? 0 : fail(st);
}

static int run(int argc, char **argv, const char **sets) {
    const char *path = argv[1];
    int n_sets = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            sets[n_sets++] = argv[++i];
        } else {
            fprintf(stderr, "ddx-inspect: unexpected argument '%s' (only --set key=value follows a config)\n", argv[i]);
            return 2;
        }
    }
    if (ends_with(path, ".safetensors")) {
        if (n_sets) {
            fprintf(stderr, "ddx-inspect: --set applies to configs, not to %s\n", path);
            return 2;
        }
        return inspect_safetensors(path);
    }
    if (ends_with(path, ".yaml") || ends_with(path, ".yml")) return inspect_config(path, sets, n_sets);
    fprintf(stderr, "ddx-inspect: %s: unknown file type (expected .safetensors, .yaml or .yml)\n", path);
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "ddx-inspect: no file given (ddx-inspect FILE.safetensors | CONFIG.yaml [--set key=value ...])\n");
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    // Room for every argument, so no number of --set options is refused or dropped.
    const char **sets = calloc((size_t)argc, sizeof *sets);
    if (!sets) {
        fprintf(stderr, "ddx-inspect: out of memory\n");
        return 1;
    }
    int rc = run(argc, argv, sets);
    free(sets);
    return rc;
}
