// A fixed pool of worker threads for the CPU backend's hot loops.
//
// Why not OpenBLAS's own threading: it forks and joins per GEMM (visible as sched_yield in
// profiles) and leaves everything around the GEMM (im2col, col2im, bias sums, GroupNorm) on
// one core. The pool instead splits whole op-level work (images of a batch, rows of a matrix)
// and runs single-threaded GEMMs inside; once it starts it sets OpenBLAS to one thread.
//
// Determinism: ddx_parallel_for always cuts [0, n) into the same T contiguous ranges for a
// given thread count T, and thread t always gets range t, also when the pool cannot be used
// (a nested call, or a second caller thread) and the ranges run one after another on the
// caller. Callers that reduce per-thread partial results do it in thread order afterwards, so
// the result bits depend on T only, never on scheduling.
//
// T comes from the environment variable DDX_NUM_THREADS (1..256) when set, else the number of
// online CPUs; it is fixed at the first call.
#ifndef DDX_THREADS_H
#define DDX_THREADS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// The body of a parallel loop: units [begin, end) of the n, on behalf of thread tid in [0, T).
// Called at most once per tid and call, never with an empty range.
typedef void (*ddx_parallel_fn)(void *arg, int64_t begin, int64_t end, int tid);

// T, the number of ranges every ddx_parallel_for splits its work into (starts the pool).
// Size per-thread scratch with it before the parallel call.
int ddx_threads_count(void);

// Runs fn over [0, n) split into T contiguous ranges, range t = [n*t/T, n*(t+1)/T), the caller
// taking range 0; returns when all are done. n < T leaves the higher tids without work.
void ddx_parallel_for(int64_t n, ddx_parallel_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif
