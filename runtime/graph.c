// The graph-step helper (runtime/graph.h).
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddx_config.h"
#include "cuda.h"

ddx_status ddx_graph_step_init(ddx_graph_step *g, const ddx_ctx *c, bool graphs, size_t in_bytes, const char *what) {
    memset(g, 0, sizeof *g);
    g->what = what ? what : "step";
    g->in_bytes = in_bytes;
    g->graphs = DDX_HAVE_CUDA && graphs && c->device == DDX_CUDA && c->cuda;
#if DDX_HAVE_CUDA
    if (g->graphs) return ddx_cuda_staging_create(in_bytes ? in_bytes : 1, &g->in);
#endif
    if (!(g->in_host = calloc(1, in_bytes ? in_bytes : 1)))
        return ddx_errorf(DDX_E_NOMEM, "%s: out of host memory for %zu bytes of step inputs", g->what, in_bytes);
    g->dev = c->device;
    g->in_dev = g->in_host;
    // Eager on a GPU: a device copy the host buffer is copied into before each run.
    if (c->device != DDX_CPU) {
        ddx_status st = ddx_dev_alloc(c->device, in_bytes ? in_bytes : 1, &g->in_dev);
        if (st != DDX_OK) {
            g->in_dev = NULL;
            return st;
        }
    }
    return DDX_OK;
}

void ddx_graph_step_free(ddx_graph_step *g, ddx_ctx *c) {
#if DDX_HAVE_CUDA
    if (c && c->cuda && (g->exec || g->in)) (void)ddx_cuda_sync(c->cuda);   // nothing in flight may use what we free
    ddx_cuda_graph_destroy(g->exec);
    ddx_cuda_staging_destroy(g->in);
#else
    (void)c;
#endif
    if (g->in_dev && g->in_dev != g->in_host) ddx_dev_free(g->dev, g->in_dev);
    free(g->in_host);
    memset(g, 0, sizeof *g);
}

ddx_status ddx_graph_step_inputs(ddx_graph_step *g, void **host) {
#if DDX_HAVE_CUDA
    if (g->in) return ddx_cuda_staging_host(g->in, host);
#endif
    *host = g->in_host;
    return DDX_OK;
}

void *ddx_graph_step_inputs_dev(ddx_graph_step *g) {
#if DDX_HAVE_CUDA
    if (g->in) return ddx_cuda_staging_dev(g->in);
#endif
    return g->in_dev;
}

ddx_status ddx_graph_step_invalidate(ddx_graph_step *g, ddx_ctx *c) {
    g->eager_runs = 0;
#if DDX_HAVE_CUDA
    if (g->exec) {
        DDX_TRY(ddx_cuda_sync(c->cuda));   // a launched replay may still be running
        ddx_cuda_graph_destroy(g->exec);
        g->exec = NULL;
    }
#else
    (void)c;
#endif
    return DDX_OK;
}

#if DDX_HAVE_CUDA
static bool arena_is_captured(const ddx_graph_step *g, const ddx_ctx *c) {
    const ddx_arena_block *h = c->act.head;
    return h && !h->next && (const void *)h->base == g->arena_base && h->size == g->arena_size;
}

// Captures the body and launches it; on failure says why once and leaves the helper eager.
static ddx_status capture(ddx_graph_step *g, ddx_ctx *c, ddx_graph_body body, void *arg, bool *done) {
    *done = false;
    DDX_TRY(ddx_ctx_reset(c));
    ddx_status st = ddx_cuda_capture_begin(c->cuda);
    if (st == DDX_OK) {
        st = body(c, true, arg);
        st = ddx_cuda_capture_end(c->cuda, st, &g->exec);
    }
    if (st == DDX_OK) {
        const ddx_arena_block *h = c->act.head;
        g->arena_base = h ? (const void *)h->base : NULL;
        g->arena_size = h ? h->size : 0;
        if (arena_is_captured(g, c)) {
            DDX_TRY(ddx_cuda_graph_launch(c->cuda, g->exec));
            *done = true;
            return DDX_OK;
        }
        ddx_cuda_graph_destroy(g->exec);   // a chained arena cannot have been captured; be safe
        g->exec = NULL;
        st = ddx_errorf(DDX_E_INTERNAL, "the activation arena grew during the captured step");
    }
    fprintf(stderr, "ddx: CUDA graphs off for the %s: %s; running it eagerly\n", g->what, ddx_last_error());
    g->no_capture = true;
    return DDX_OK;
}
#endif

ddx_status ddx_graph_step_run(ddx_graph_step *g, ddx_ctx *c, size_t upload_bytes, ddx_graph_body body, void *arg) {
#if DDX_HAVE_CUDA
    if (g->in) DDX_TRY(ddx_cuda_staging_upload(c->cuda, g->in, upload_bytes));
    if (g->exec) {
        if (arena_is_captured(g, c)) {
            DDX_TRY(ddx_cuda_graph_launch(c->cuda, g->exec));
            g->replays++;
            return DDX_OK;
        }
        // Something else made the arena coalesce into a new block: settle, then capture again.
        DDX_TRY(ddx_graph_step_invalidate(g, c));
    }
    if (g->graphs && !g->no_capture && g->eager_runs >= 1) {
        bool done;
        DDX_TRY(capture(g, c, body, arg, &done));
        if (done) return DDX_OK;
    }
#endif
    if (g->in_dev && g->in_dev != g->in_host) DDX_TRY(ddx_memcpy(g->in_dev, g->dev, g->in_host, DDX_CPU, upload_bytes));
    DDX_TRY(ddx_ctx_reset(c));
    DDX_TRY(body(c, false, arg));
    g->eager_runs++;
    return DDX_OK;
}
