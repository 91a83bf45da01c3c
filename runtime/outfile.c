#include "outfile.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
    return S_ISDIR(m) ? "a folder" : S_ISLNK(m) ? "a symbolic link" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "a device";
}

ddx_status ddx_input_open(const char *path, const char *what, int *fd, int64_t *size) {
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0) return ddx_errorf(DDX_E_IO, "%s: cannot open %s: %s", what, path, strerror(errno));
    struct stat sb;
    if (fstat(*fd, &sb) != 0) {
        const int e = errno;
        close(*fd);
        *fd = -1;
        return ddx_errorf(DDX_E_IO, "%s: cannot stat %s: %s", what, path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(*fd);
        *fd = -1;
        return ddx_errorf(DDX_E_INPUT, "%s: %s: not a regular file (%s)", what, path, kind_of(sb.st_mode));
    }
    if (size) *size = (int64_t)sb.st_size;
    return DDX_OK;
}

ddx_status ddx_output_check(const char *path, const char *what) {
    if (!path || !*path) return ddx_errorf(DDX_E_INPUT, "%s: empty output path", what);
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode))
            return ddx_errorf(DDX_E_INPUT, "%s: '%s' exists and is not a regular file (%s); choose another path", what, path,
                              kind_of(sb.st_mode));
    } else if (errno != ENOENT) {
        return ddx_errorf(DDX_E_INPUT, "%s: cannot look at '%s': %s", what, path, strerror(errno));
    }
    // The folder that will hold it (and the temp file the atomic writers rename from).
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return ddx_errorf(DDX_E_INPUT, "%s: path '%s' is too long", what, path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ddx_errorf(DDX_E_INPUT, "%s: cannot write '%s': folder '%s' does not exist; create it or choose another", what,
                          path, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return ddx_errorf(DDX_E_INPUT, "%s: cannot write '%s': folder '%s' is not writable; choose another", what, path, dir);
    return DDX_OK;
}

static void atomic_free(ddx_atomic_file *a) {
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
    a->f = NULL;
}

ddx_status ddx_atomic_open(ddx_atomic_file *a, const char *path, const char *what) {
    memset(a, 0, sizeof *a);
    a->what = what;
    DDX_TRY(ddx_output_check(path, what));
    size_t pl = strlen(path);
    a->path = strdup(path);
    a->tmp = malloc(pl + sizeof DDX_ATOMIC_TMP_SUFFIX "XXXXXX");
    if (!a->path || !a->tmp) {
        atomic_free(a);
        return ddx_errorf(DDX_E_NOMEM, "%s: out of memory", path);
    }
    memcpy(a->tmp, path, pl);
    memcpy(a->tmp + pl, DDX_ATOMIC_TMP_SUFFIX "XXXXXX", sizeof DDX_ATOMIC_TMP_SUFFIX "XXXXXX");
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        ddx_status st = ddx_errorf(DDX_E_IO, "%s: cannot create temp file %s: %s (is the folder writable?)", path, a->tmp,
                                   strerror(errno));
        atomic_free(a);
        return st;
    }
    // mkstemp makes 0600; a replaced file keeps its mode, a new one gets the usual 0644.
    struct stat sb;
    mode_t mode = (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode)) ? (sb.st_mode & 07777) : 0644;
    const char *step = "chmod";
    if (fchmod(fd, mode) == 0) {
        step = "fdopen";
        a->f = fdopen(fd, "wb");
    }
    if (!a->f) {
        ddx_status st = ddx_errorf(DDX_E_IO, "%s: %s of temp file %s failed: %s", path, step, a->tmp, strerror(errno));
        close(fd);
        unlink(a->tmp);
        atomic_free(a);
        return st;
    }
    return DDX_OK;
}

bool ddx_atomic_write(ddx_atomic_file *a, const void *data, size_t n) {
    if (a->err) return false;
    if (n && fwrite(data, 1, n, a->f) != n) {
        a->err = errno ? errno : EIO;
        return false;
    }
    return true;
}

void ddx_atomic_abort(ddx_atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    atomic_free(a);
}

ddx_status ddx_atomic_commit(ddx_atomic_file *a) {
    if (!a->f) return ddx_errorf(DDX_E_INTERNAL, "ddx_atomic_commit: file not open");
    int e = a->err;
    errno = 0;
    if (!e && (fflush(a->f) != 0 || ferror(a->f))) e = errno ? errno : EIO;
    if (!e && fsync(fileno(a->f)) != 0) e = errno;
    int c = fclose(a->f);
    a->f = NULL;
    if (!e && c != 0) e = errno ? errno : EIO;
    if (e) {
        ddx_status st = ddx_errorf(DDX_E_IO, "%s: writing temp file %s failed: %s (disk full?); nothing was replaced",
                                   a->path, a->tmp, strerror(e));
        ddx_atomic_abort(a);
        return st;
    }
    // The target may have changed while the file was written (a slow checkpoint): look again,
    // so the rename never replaces something that is not a regular file.
    ddx_status st = ddx_output_check(a->path, a->what);
    if (st) {
        ddx_atomic_abort(a);
        return st;
    }
    if (rename(a->tmp, a->path) != 0) {
        st = ddx_errorf(DDX_E_IO, "%s: cannot rename temp file %s over it: %s", a->path, a->tmp, strerror(errno));
        ddx_atomic_abort(a);
        return st;
    }
    // fsync of the folder makes the rename itself durable.
    char *slash = strrchr(a->path, '/');
    if (slash == a->path) a->path[1] = '\0';
    else if (slash) *slash = '\0';
    const char *dir = slash ? a->path : ".";
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        st = ddx_errorf(DDX_E_IO, "%s: written, but cannot open folder %s to fsync it: %s", a->tmp, dir, strerror(errno));
    } else {
        // Some file systems cannot fsync a folder; the rename is then as durable as they allow.
        if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
            st = ddx_errorf(DDX_E_IO, "%s: written, but fsync of folder %s failed: %s", a->tmp, dir, strerror(errno));
        close(fd);
    }
    atomic_free(a);
    return st;
}

bool ddx_atomic_is_temp_name(const char *name) {
    size_t n = strlen(name), sl = strlen(DDX_ATOMIC_TMP_SUFFIX);
    if (n < sl + 6 + 1 || memcmp(name + n - 6 - sl, DDX_ATOMIC_TMP_SUFFIX, sl) != 0) return false;
    for (size_t i = n - 6; i < n; i++)
        if (!isalnum((unsigned char)name[i])) return false;
    return true;
}

ddx_status ddx_atomic_sweep(const char *dir, int *count, uint64_t *bytes) {
    int n = 0;
    uint64_t total = 0;
    DIR *d = opendir(dir);
    if (!d) return ddx_errorf(DDX_E_IO, "%s: cannot list the folder: %s", dir, strerror(errno));
    ddx_status st = DDX_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ddx_atomic_is_temp_name(e->d_name)) continue;
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0) {
            st = ddx_errorf(DDX_E_IO, "%s/%s: cannot remove a stale temp file: %s", dir, e->d_name, strerror(errno));
            break;
        }
        n++;
        total += (uint64_t)sb.st_size;
    }
    closedir(d);
    if (count) *count = n;
    if (bytes) *bytes = total;
    return st;
}
