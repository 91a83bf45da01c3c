// The run report: RUN/log.jsonl read leniently (a line that is not a JSON object with a "step"
// is skipped and listed with its line number, never fatal), plotted into RUN/loss.png and into
// one self-contained RUN/report.html (inline SVG plots, the sample grids embedded as base64
// PNGs up to a size cap, the resolved config, the device and software versions of
// RUN/run_info.json). Used by ddx-report and by ddx-train at each sample step.
#ifndef DDX_EVAL_REPORT_H
#define DDX_EVAL_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

// Bounds on what a log may make the reader hold, whatever the file claims or holds.
#define DDX_REPORT_MAX_LINES 500000           // log lines read; the rest are counted, not read
#define DDX_REPORT_MAX_LINE 65536             // bytes per line; a longer line is skipped
#define DDX_REPORT_MAX_SKIPS_LISTED 100       // skipped lines named one by one
#define DDX_REPORT_EMBED_ONE (8u << 20)       // a sample PNG larger than this is linked, not embedded
#define DDX_REPORT_EMBED_TOTAL (32u << 20)    // embedded PNG bytes per report; later ones are linked
#define DDX_REPORT_MAX_TEXT (1u << 20)        // config.yaml / run_info.json bytes shown

// EMA weight of the smoothed loss curve (debiased like TensorBoard's smoothing slider).
#define DDX_REPORT_SMOOTHING 0.6

typedef struct ddx_runlog_skip {
    int64_t line;    // 1-based
    char why[160];
} ddx_runlog_skip;

typedef struct ddx_runlog {
    // Training lines ("loss" present), in file order; missing numbers are NaN.
    int64_t n;
    double *step, *loss, *loss_smooth, *last_loss, *grad_norm, *lr, *img_per_s, *elapsed_s;
    // Evaluation lines ("eval":"fid").
    int64_t nf;
    double *fstep, *fid, *kid;
    int64_t lines;         // lines read
    int64_t other;         // well-formed lines of another kind (kept out of the plots)
    int64_t nskip;         // lines skipped; the first DDX_REPORT_MAX_SKIPS_LISTED are in skip[]
    ddx_runlog_skip *skip;
    bool capped;           // the file had more than DDX_REPORT_MAX_LINES lines
    bool missing;          // no log.jsonl at all
} ddx_runlog;

// Reads path. Only allocation and read errors fail; a missing file gives missing = true.
ddx_status ddx_runlog_read(const char *path, ddx_runlog *log);
void ddx_runlog_free(ddx_runlog *log);

// RUN/loss.png (or out when not NULL): loss raw and smoothed over steps.
ddx_status ddx_report_loss_png(const char *run_dir, const ddx_runlog *log, const char *out);
// RUN/report.html (or out when not NULL). *skipped (may be NULL) gets the number of log lines
// skipped, so a caller can say so.
ddx_status ddx_report_write(const char *run_dir, const char *out, int64_t *skipped);

#endif
