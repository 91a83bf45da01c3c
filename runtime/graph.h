// One step run as a CUDA graph: the same helper for the training step and the sampler's
// denoising step. Device-agnostic: on the CPU (or with graphs off) every run is eager and the
// per-step input buffer is plain host memory the ops read directly, so callers have one path.
//
// The rule. A body that reads everything that changes per step from the input buffer (uploaded
// before each run) issues the same kernels with the same arguments every run, so:
//   - after creation or an invalidation the first run is eager: the activation arena settles
//     (a chained arena coalesces at the next ddx_ctx_reset into one block of the high-water
//     size, after which addresses repeat);
//   - the next run is captured and launched;
//   - later runs replay it, but only while the arena's head block is the one the capture used
//     and unchained; otherwise the graph is dropped and the two steps above start again;
//   - a failed capture says why once (naming the helper) and the helper stays eager for good.
// Anything else baked into the capture (a batch size, a noise offset, another tensor) is the
// caller's to announce with ddx_graph_step_invalidate.
#ifndef DDX_GRAPH_H
#define DDX_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ddx_cuda_graph;
struct ddx_cuda_staging;

typedef struct ddx_graph_step {
    const char *what;                 // "training step", "sampling": names it in the one message
    bool graphs;                      // capture and replay (CUDA context and asked for)
    bool no_capture;                  // a capture failed: eager from now on
    int eager_runs;                   // eager runs since creation or the last invalidation
    size_t in_bytes;
    ddx_device dev;
    void *in_host;                    // no graphs: the host inputs ...
    void *in_dev;                     // ... and where the ops read them (the same on the CPU)
    struct ddx_cuda_staging *in;      // CUDA with graphs: pinned host + device copies
    struct ddx_cuda_graph *exec;
    const void *arena_base;           // the activation block the capture used
    size_t arena_size;
    int64_t replays;                  // launches of a captured graph (for reports and tests)
} ddx_graph_step;

// The body of one step. captured: the body is being recorded, so it must take per-step values
// (noise step word, coefficients) from the device input buffer, not from host arguments.
typedef ddx_status (*ddx_graph_body)(ddx_ctx *c, bool captured, void *arg);

// in_bytes: the size of the per-step input buffer (may be 0). graphs: asked for; honoured only
// on a CUDA context of a CUDA build. what: a static string for the message.
ddx_status ddx_graph_step_init(ddx_graph_step *g, const ddx_ctx *c, bool graphs, size_t in_bytes, const char *what);
// Frees the graph and the input buffer (waits for the context's stream first).
void ddx_graph_step_free(ddx_graph_step *g, ddx_ctx *c);
// The host side of the input buffer for the next run; waits until the previous run's upload
// has read it (the host runs at most one step ahead of the device).
ddx_status ddx_graph_step_inputs(ddx_graph_step *g, void **host);
// The address the body reads the inputs from (on the context's device).
void *ddx_graph_step_inputs_dev(ddx_graph_step *g);
// Uploads the first upload_bytes of the inputs, then runs the body: replay, capture or eager
// (eager runs and captures start with ddx_ctx_reset; a replay touches no host state).
ddx_status ddx_graph_step_run(ddx_graph_step *g, ddx_ctx *c, size_t upload_bytes, ddx_graph_body body, void *arg);
// Drops the captured graph: the next run is eager, the one after it captured again.
ddx_status ddx_graph_step_invalidate(ddx_graph_step *g, ddx_ctx *c);

#ifdef __cplusplus
}
#endif

#endif
