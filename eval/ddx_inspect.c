// ddx-inspect: look inside a checkpoint or a config before a run trusts it.
//
//   ddx-inspect FILE.safetensors          tensors (name, dtype, shape, bytes) and metadata
//   ddx-inspect CONFIG.yaml [--set k=v]…  the resolved config (defaults, file, overrides,
//                                         cross-key checks) printed as YAML
//
// Exit codes: 0 fine, 2 bad input (one line on stderr naming the file and the problem),
// 1 anything else.
#include <stdio.h>
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

static int inspect_safetensors(const char *path) {
    ddx_st_file f;
    ddx_status st = ddx_st_read(path, &f);
    if (st != DDX_OK) return fail(st);
    size_t total = 0;
    printf("%s: %zu tensors\n", path, f.n_tensors);
    for (size_t i = 0; i < f.n_tensors; i++) {
        const ddx_st_tensor *t = &f.tensors[i];
        char shape[160] = "[";
        size_t k = 1;
        for (int d = 0; d < t->ndim && k < sizeof shape; d++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
        if (k < sizeof shape) snprintf(shape + k, sizeof shape - k, "]");
        char name[128];   // names come from an untrusted file: no terminal escapes reach the screen
        ddx_json_printable(t->name, strlen(t->name), name, sizeof name);
        printf("  %-48s %-5s %-24s %zu bytes\n", name, ddx_st_dtype_name(t->dtype), shape, t->nbytes);
        total += t->nbytes;
    }
    printf("  total %zu bytes (%.2f MiB)\n", total, (double)total / (1 << 20));
    for (size_t i = 0; i < f.n_meta; i++) {
        char key[128], value[256];
        ddx_json_printable(f.meta[i].key, strlen(f.meta[i].key), key, sizeof key);
        ddx_json_printable(f.meta[i].value, strlen(f.meta[i].value), value, sizeof value);
        printf("  __metadata__ %s = %s\n", key, value);
    }
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

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "ddx-inspect: no file given (ddx-inspect FILE.safetensors | CONFIG.yaml [--set key=value ...])\n");
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    const char *path = argv[1];
    const char *sets[64];
    int n_sets = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc && n_sets < 64) {
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
