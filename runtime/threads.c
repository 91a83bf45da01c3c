// The CPU worker pool: T-1 persistent threads plus the caller. See threads.h.
//
// Hand-off: the caller publishes the job and bumps a generation counter under the mutex; a
// worker spins briefly on the counter (ops come back to back during a step, so the next job
// is usually microseconds away) and then sleeps on a condition variable, so an idle process
// costs no CPU on a machine shared with other work. Completion is a countdown with the same
// spin-then-sleep on the caller's side.
#include "threads.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define DDX_THREADS_MAX 256
// Polls before sleeping: about 10-50 us, longer than the gap between two ops' parallel
// regions, far shorter than a scheduler tick.
#define DDX_THREADS_SPIN 4000

typedef struct pool {
    int T;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    atomic_uint gen;        // bumped once per job
    atomic_int pending;     // workers still running the current job
    atomic_flag busy;       // a caller owns the pool
    ddx_parallel_fn fn;
    void *arg;
    int64_t n;
} pool;

static pool g_pool = {
    .T = 1,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv_work = PTHREAD_COND_INITIALIZER,
    .cv_done = PTHREAD_COND_INITIALIZER,
    .busy = ATOMIC_FLAG_INIT,
};
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
// Set inside pool workers and inside a caller's parallel region: a nested ddx_parallel_for
// runs its ranges inline instead of waiting on workers that are busy with the outer one.
static _Thread_local bool t_in_region;

static void run_range(int64_t n, int T, int t, ddx_parallel_fn fn, void *arg) {
    int64_t b = n * t / T, e = n * (t + 1) / T;
    if (e > b) fn(arg, b, e, t);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p) {
    const int tid = (int)(intptr_t)p;
    t_in_region = true;
    unsigned seen = 0;
    for (;;) {
        unsigned cur = atomic_load_explicit(&g_pool.gen, memory_order_acquire);
        for (int i = 0; cur == seen && i < DDX_THREADS_SPIN; i++) {
            cpu_relax();
            cur = atomic_load_explicit(&g_pool.gen, memory_order_acquire);
        }
        if (cur == seen) {
            pthread_mutex_lock(&g_pool.mu);
            while ((cur = atomic_load_explicit(&g_pool.gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&g_pool.cv_work, &g_pool.mu);
            pthread_mutex_unlock(&g_pool.mu);
        }
        seen = cur;
        run_range(g_pool.n, g_pool.T, tid, g_pool.fn, g_pool.arg);
        if (atomic_fetch_sub_explicit(&g_pool.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&g_pool.mu);
            pthread_cond_signal(&g_pool.cv_done);
            pthread_mutex_unlock(&g_pool.mu);
        }
    }
    return NULL;
}

static int threads_from_env(void) {
    const char *s = getenv("DDX_NUM_THREADS");
    if (s && *s) {
        char *end = NULL;
        long v = strtol(s, &end, 10);
        // A malformed value falls back to the CPU count rather than failing every op.
        if (end && *end == '\0' && v >= 1 && v <= DDX_THREADS_MAX) return (int)v;
    }
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n < 1) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return n > DDX_THREADS_MAX ? DDX_THREADS_MAX : n;
}

static void pool_start(void) {
    int T = threads_from_env();
    // The pool owns the parallelism from here on: OpenBLAS threading inside our threads would
    // oversubscribe the cores.
    openblas_set_num_threads(1);
    int started = 1;
    for (int t = 1; t < T; t++) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &at, worker_main, (void *)(intptr_t)t);
        pthread_attr_destroy(&at);
        if (rc != 0) break;
        started++;
    }
    // If a thread cannot be created, the ranges are still cut T ways (so results do not
    // change) but ddx_parallel_for runs them inline: see pool_usable.
    g_pool.T = T;
    if (started < T) atomic_flag_test_and_set(&g_pool.busy);
}

int ddx_threads_count(void) {
    pthread_once(&g_once, pool_start);
    return g_pool.T;
}

void ddx_parallel_for(int64_t n, ddx_parallel_fn fn, void *arg) {
    const int T = ddx_threads_count();
    if (n <= 0) return;
    // One range of work, or no pool available: the same ranges, one after another.
    if (T == 1 || n == 1 || t_in_region || atomic_flag_test_and_set_explicit(&g_pool.busy, memory_order_acquire)) {
        bool was = t_in_region;
        t_in_region = true;
        for (int t = 0; t < T; t++) run_range(n, T, t, fn, arg);
        t_in_region = was;
        return;
    }
    g_pool.fn = fn;
    g_pool.arg = arg;
    g_pool.n = n;
    atomic_store_explicit(&g_pool.pending, T - 1, memory_order_relaxed);
    pthread_mutex_lock(&g_pool.mu);
    atomic_fetch_add_explicit(&g_pool.gen, 1, memory_order_release);
    pthread_cond_broadcast(&g_pool.cv_work);
    pthread_mutex_unlock(&g_pool.mu);

    t_in_region = true;
    run_range(n, T, 0, fn, arg);
    t_in_region = false;

    for (int i = 0; atomic_load_explicit(&g_pool.pending, memory_order_acquire) != 0 && i < DDX_THREADS_SPIN; i++)
        cpu_relax();
    if (atomic_load_explicit(&g_pool.pending, memory_order_acquire) != 0) {
        pthread_mutex_lock(&g_pool.mu);
        while (atomic_load_explicit(&g_pool.pending, memory_order_acquire) != 0)
            pthread_cond_wait(&g_pool.cv_done, &g_pool.mu);
        pthread_mutex_unlock(&g_pool.mu);
    }
    atomic_flag_clear_explicit(&g_pool.busy, memory_order_release);
}
