// Class names and the class lookup: see models/classes.h.
#include "models/classes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int ddx_class_names_count(const char *names) {
    int n = 0;
    for (const char *p = names; p && *p; n++) {
        const char *e = strchr(p, '\n');
        p = e ? e + 1 : p + strlen(p);
    }
    return n;
}

// Line k of names: its start and length; false past the end.
static int line_at(const char *names, int k, const char **start, size_t *len) {
    const char *p = names;
    for (int i = 0; p && *p; i++) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (i == k) {
            *start = p, *len = l;
            return 1;
        }
        p = e ? e + 1 : p + l;
    }
    return 0;
}

void ddx_class_name(const char *names, int k, char *buf, size_t n) {
    const char *s;
    size_t l;
    if (!n) return;
    if (!line_at(names, k, &s, &l)) l = 0, s = "";
    snprintf(buf, n, "%.*s", (int)(l < n ? l : n - 1), s);
}

// The classes there are, for an error message: "0 T-shirt/top, 1 Trouser, ..." or "0..K-1".
static void describe(const char *names, int num_classes, char *buf, size_t n) {
    const int have = ddx_class_names_count(names);
    if (have == 0) {
        snprintf(buf, n, "0..%d (the checkpoint stores no class names)", num_classes - 1);
        return;
    }
    size_t at = 0;
    buf[0] = 0;
    for (int k = 0; k < num_classes && k < have && at + 1 < n; k++) {
        char nm[128];
        ddx_class_name(names, k, nm, sizeof nm);
        int w = snprintf(buf + at, n - at, "%s%d %s", k ? ", " : "", k, nm);
        if (w < 0 || (size_t)w >= n - at) {
            snprintf(buf + (n > 5 ? n - 5 : 0), n > 5 ? 5 : n, " ...");
            return;
        }
        at += (size_t)w;
    }
}

ddx_status ddx_class_lookup(const char *names, int num_classes, const char *arg, const char *what, int32_t *out) {
    char have[512];
    if (num_classes <= 0)
        return ddx_errorf(DDX_E_INPUT, "%s %s: the model is unconditional (model.num_classes 0); it has no classes to choose",
                          what, arg);
    describe(names, num_classes, have, sizeof have);
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (*arg && !*end && errno == 0) {
        if (v < 0 || v >= num_classes)
            return ddx_errorf(DDX_E_INPUT, "%s %s: no such class; the classes are %s", what, arg, have);
        *out = (int32_t)v;
        return DDX_OK;
    }
    const size_t al = strlen(arg);
    int exact = -1, folded = -1, n_folded = 0;
    for (int k = 0; k < num_classes; k++) {
        const char *s;
        size_t l;
        if (!line_at(names, k, &s, &l)) break;
        if (l != al) continue;
        if (!strncmp(s, arg, l) && exact < 0) exact = k;
        if (!strncasecmp(s, arg, l)) folded = folded < 0 ? k : folded, n_folded++;
    }
    if (exact >= 0 || n_folded == 1) {
        *out = exact >= 0 ? exact : folded;
        return DDX_OK;
    }
    return ddx_errorf(DDX_E_INPUT, "%s '%s': no such class%s; the classes are %s", what, arg,
                      n_folded > 1 ? " (several names match when case is ignored)" : "", have);
}
