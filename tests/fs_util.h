// File-system helpers of the writer tests (image, safetensors, config): the writers' temp
// files left in a folder, and writes that fail past a size the way they do on a full disk.
#ifndef DDX_TESTS_FS_UTIL_H
#define DDX_TESTS_FS_UTIL_H

#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>

// Entries of dir whose name holds ".tmp." (the atomic writers' temp files); -1 if unreadable.
static inline int count_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

// From now on a write past `bytes` of a file fails with EFBIG (SIGXFSZ ignored), as on a full
// disk; *old keeps the limit for fsize_unlimit. False if the limit cannot be set.
static inline bool fsize_limit(rlim_t bytes, struct rlimit *old) {
    if (getrlimit(RLIMIT_FSIZE, old) != 0) return false;
    struct rlimit lim = *old;
    lim.rlim_cur = bytes;
    signal(SIGXFSZ, SIG_IGN);
    return setrlimit(RLIMIT_FSIZE, &lim) == 0;
}

static inline void fsize_unlimit(const struct rlimit *old) { setrlimit(RLIMIT_FSIZE, old); }

#endif
