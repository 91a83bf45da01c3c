// ddx-report RUN_DIR [--out FILE.html] [--loss-png FILE.png]
//
// One self-contained HTML page for a run folder (eval/report.h): the training curves as inline
// SVG, FID/KID over steps when logged, the sample grids by step, the device and software the
// run used and its resolved config. A malformed or cut log line is skipped and named in the
// page, never fatal. Also refreshes RUN_DIR/loss.png.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/report.h"
#include "runtime/outfile.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddx-report RUN_DIR [--out FILE.html] [--loss-png FILE.png]\n"
            "  writes RUN_DIR/report.html: loss (logged and smoothed), grad norm, lr, img/s, FID/KID\n"
            "  over steps when logged, the sample grids by step (embedded), the device and software\n"
            "  versions (run_info.json) and the resolved config; one file, no network needed to view it\n"
            "  --out FILE.html    the page (default RUN_DIR/report.html)\n"
            "  --loss-png FILE    the loss plot as PNG (default RUN_DIR/loss.png; 'none' to skip)\n");
}

int main(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *loss = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out") || !strcmp(a, "--loss-png")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ddx-report: %s needs a value (see ddx-report --help)\n", a);
                return 2;
            }
            *(!strcmp(a, "--out") ? &out : &loss) = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ddx-report: unknown argument '%s' (see ddx-report --help)\n", a);
            return 2;
        } else if (dir) {
            fprintf(stderr, "ddx-report: one run folder only ('%s' and '%s')\n", dir, a);
            return 2;
        } else {
            dir = a;
        }
    }
    if (!dir) {
        fprintf(stderr, "ddx-report: RUN_DIR is required (see ddx-report --help)\n");
        return 2;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "ddx-report: %s: not a run folder (no such folder); give the folder ddx-train printed as 'run folder:'\n", dir);
        return 2;
    }
    char logp[4096];
    snprintf(logp, sizeof logp, "%s/log.jsonl", dir);
    ddx_status st = DDX_OK;
    // Both outputs checked before either is written.
    if (out) st = ddx_output_check(out, "--out");
    if (!st && loss && strcmp(loss, "none")) st = ddx_output_check(loss, "--loss-png");
    int64_t skipped = 0;
    if (!st && !(loss && !strcmp(loss, "none"))) {
        ddx_runlog log;
        st = ddx_runlog_read(logp, &log);
        if (!st) st = ddx_report_loss_png(dir, &log, loss);
        ddx_runlog_free(&log);
    }
    if (!st) st = ddx_report_write(dir, out, &skipped);
    if (st) {
        fprintf(stderr, "ddx-report: %s\n", ddx_last_error());
        return ddx_exit_code(st);
    }
    if (skipped) fprintf(stderr, "ddx-report: %s: %lld line(s) skipped (listed in the report)\n", logp, (long long)skipped);
    if (out) printf("report: %s\n", out);
    else printf("report: %s/report.html\n", dir);
    return 0;
}
