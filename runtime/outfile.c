#include "outfile.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ddx_status ddx_output_check(const char *path, const char *what) {
    if (!path || !*path) return ddx_errorf(DDX_E_INPUT, "%s: empty output path", what);
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode))
            return ddx_errorf(DDX_E_INPUT, "%s: '%s' exists and is not a regular file (%s); choose another path", what, path,
                              S_ISDIR(sb.st_mode)    ? "a folder"
                              : S_ISLNK(sb.st_mode)  ? "a symbolic link"
                              : S_ISFIFO(sb.st_mode) ? "a FIFO"
                              : S_ISSOCK(sb.st_mode) ? "a socket"
                                                     : "a device");
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
        return ddx_errorf(DDX_E_INPUT, "%s: folder '%s' does not exist; create it or choose another", what, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return ddx_errorf(DDX_E_INPUT, "%s: folder '%s' is not writable; choose another", what, dir);
    return DDX_OK;
}
