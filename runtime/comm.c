// Collective communication: see runtime/comm.h.
#include "comm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ddx_config.h"

#if DDX_HAVE_MPI
#include <mpi.h>
#endif
#if DDX_HAVE_CUDA
#include "cuda.h"
#include "cuda/check.h"
#endif

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s) {
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

// ---- launch variables ---------------------------------------------------------------------
// An integer in [lo, hi] from variable `name`; absent: *present = false.
static ddx_status env_int(const char *(*get)(const char *, void *), void *arg, const char *name, long lo, long hi,
                          bool *present, int *out) {
    const char *v = get(name, arg);
    *present = v != NULL;
    if (!v) return DDX_OK;
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || end == v || *end != '\0' || errno == ERANGE || x < lo || x > hi)
        return ddx_errorf(DDX_E_INPUT, "launch: %s='%s' is not an integer in [%ld, %ld]; fix the launcher's environment", name, v,
                          lo, hi);
    *out = (int)x;
    return DDX_OK;
}

typedef struct launch_form {
    const char *source, *rank, *world, *world_alt, *local;
} launch_form;

ddx_status ddx_launch_parse(const char *(*get)(const char *name, void *arg), void *arg, ddx_launch *out) {
    memset(out, 0, sizeof *out);
    out->world = 1;
    out->source = "none";
    // Open MPI describes the process itself; torchrun-style variables are set explicitly by a
    // launcher; Slurm's are inherited by everything in a job (use srun, or one of the others).
    static const launch_form forms[] = {
        {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", NULL, "OMPI_COMM_WORLD_LOCAL_RANK"},
        {"torchrun-style env", "RANK", "WORLD_SIZE", NULL, "LOCAL_RANK"},
        {"Slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_LOCALID"},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        const launch_form *f = &forms[i];
        bool has_rank = false, has_world = false, has_local = false;
        int rank = 0, world = 1, local = 0;
        DDX_TRY(env_int(get, arg, f->rank, 0, INT_MAX - 1, &has_rank, &rank));
        const char *wname = f->world;
        DDX_TRY(env_int(get, arg, wname, 1, INT_MAX, &has_world, &world));
        if (!has_world && f->world_alt) {
            wname = f->world_alt;
            DDX_TRY(env_int(get, arg, wname, 1, INT_MAX, &has_world, &world));
        }
        if (!has_rank && !has_world) continue;
        if (has_rank != has_world)
            return ddx_errorf(DDX_E_INPUT, "launch: %s is set but %s is not (%s); set both or neither", has_rank ? f->rank : wname,
                              has_rank ? wname : f->rank, f->source);
        if (rank >= world)
            return ddx_errorf(DDX_E_INPUT, "launch: %s=%d is not below %s=%d (%s); ranks are 0 .. world size - 1", f->rank, rank,
                              wname, world, f->source);
        DDX_TRY(env_int(get, arg, f->local, 0, INT_MAX - 1, &has_local, &local));
        if (!has_local) local = rank;   // one node: the local rank is the rank
        if (local >= world)
            return ddx_errorf(DDX_E_INPUT, "launch: %s=%d is not below the world size %d (%s)", f->local, local, world, f->source);
        out->rank = rank;
        out->world = world;
        out->local_rank = local;
        out->source = f->source;
        out->under_mpi = i == 0;
        break;
    }
    const char *addr = get("MASTER_ADDR", arg);
    bool has_port = false;
    int port = 0;
    DDX_TRY(env_int(get, arg, "MASTER_PORT", 1, 65535, &has_port, &port));
    if (addr) {
        if (!*addr || strlen(addr) >= sizeof out->master_addr)
            return ddx_errorf(DDX_E_INPUT, "launch: MASTER_ADDR='%.64s' is empty or too long; set it to rank 0's host name or address",
                              addr);
        snprintf(out->master_addr, sizeof out->master_addr, "%s", addr);
    }
    out->master_port = has_port ? port : 0;
    if ((addr != NULL) != has_port)
        return ddx_errorf(DDX_E_INPUT, "launch: %s is set but %s is not; the rendezvous needs both", addr ? "MASTER_ADDR" : "MASTER_PORT",
                          addr ? "MASTER_PORT" : "MASTER_ADDR");
    return DDX_OK;
}

static const char *getenv_cb(const char *name, void *arg) {
    (void)arg;
    const char *v = getenv(name);
    return v;
}

ddx_status ddx_launch_from_env(ddx_launch *out) { return ddx_launch_parse(getenv_cb, NULL, out); }

// ---- TCP rendezvous -----------------------------------------------------------------------
#define RDV_MAGIC 0x31584444u   // "DDX1"
#define RDV_HOST 64
#define RDV_MSG 240

typedef struct rdv_hello {
    uint32_t magic;
    int32_t rank, world, local_rank;
    char host[RDV_HOST];
} rdv_hello;

typedef struct rdv_reply {
    uint32_t magic;
    int32_t status;   // 0 ok, else the world is refused (msg says why)
    uint64_t bytes;
    char msg[RDV_MSG];
} rdv_reply;

// Reads/writes exactly n bytes before the deadline.
static int io_full(int fd, void *buf, size_t n, bool wr, double deadline) {
    uint8_t *p = buf;
    while (n > 0) {
        double left = deadline - mono_s();
        if (left <= 0) return ETIMEDOUT;
        struct pollfd pf = {.fd = fd, .events = wr ? POLLOUT : POLLIN};
        int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) continue;
        ssize_t k = wr ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k < 0) return errno;
        if (k == 0) return ECONNRESET;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void host_name(char *buf, size_t n) {
    if (gethostname(buf, n) != 0) snprintf(buf, n, "?");
    buf[n - 1] = 0;
}

// Rank 0: the world's (host, local rank) pairs are refused when two ranks share one, a rank
// is out of range or given twice, or a rank disagrees on the world size.
static void rdv_check(const rdv_hello *h, int world, char *msg, size_t n) {
    msg[0] = 0;
    for (int i = 0; i < world; i++) {
        if (h[i].world != world) {
            snprintf(msg, n, "rank %d says the world size is %d, rank 0 says %d; launch every rank with the same world size",
                     h[i].rank, h[i].world, world);
            return;
        }
        for (int j = 0; j < i; j++) {
            if (h[i].rank == h[j].rank) {
                snprintf(msg, n, "two processes claim rank %d; give every process its own rank", h[i].rank);
                return;
            }
            if (h[i].local_rank == h[j].local_rank && !strncmp(h[i].host, h[j].host, RDV_HOST)) {
                snprintf(msg, n, "ranks %d and %d both have local rank %d on host %.64s: two ranks would share one GPU", h[j].rank,
                         h[i].rank, h[i].local_rank, h[i].host);
                return;
            }
        }
    }
}

ddx_status ddx_comm_rendezvous(const char *addr, int port, int rank, int world, int local_rank, void *blob, size_t bytes,
                               double timeout_s) {
    const double deadline = mono_s() + timeout_s;
    rdv_hello me = {.magic = RDV_MAGIC, .rank = rank, .world = world, .local_rank = local_rank};
    host_name(me.host, sizeof me.host);
    if (world <= 1) return DDX_OK;
    if (rank == 0) {
        int ls = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool v6 = ls >= 0;
        if (!v6) ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ls < 0) return ddx_errorf(DDX_E_IO, "rendezvous: socket: %s", strerror(errno));
        int one = 1, zero = 0;
        (void)setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int rc;
        if (v6) {
            (void)setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
            rc = bind(ls, (struct sockaddr *)&sa, sizeof sa);
        } else {
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
            rc = bind(ls, (struct sockaddr *)&sa, sizeof sa);
        }
        if (rc != 0 || listen(ls, world) != 0) {
            int e = errno;
            close(ls);
            return ddx_errorf(DDX_E_IO, "rendezvous: rank 0 cannot listen on port %d (MASTER_PORT): %s; pick a free port", port,
                              strerror(e));
        }
        rdv_hello *h = calloc((size_t)world, sizeof *h);
        int *fds = malloc((size_t)world * sizeof *fds);
        if (!h || !fds) {
            free(h);
            free(fds);
            close(ls);
            return ddx_errorf(DDX_E_NOMEM, "rendezvous: out of host memory for %d ranks", world);
        }
        h[0] = me;
        ddx_status st = DDX_OK;
        int got = 1;
        for (int i = 0; i < world; i++) fds[i] = -1;
        while (got < world && st == DDX_OK) {
            double left = deadline - mono_s();
            struct pollfd pf = {.fd = ls, .events = POLLIN};
            int r = left > 0 ? poll(&pf, 1, (int)(left * 1000) + 1) : 0;
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                st = ddx_errorf(DDX_E_IO, "rendezvous: rank 0 heard from %d of %d ranks on port %d within %g s "
                                          "(run.comm_timeout_s); check that every rank was started with MASTER_ADDR=%s MASTER_PORT=%d",
                                got, world, port, timeout_s, addr ? addr : "?", port);
                break;
            }
            int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0) continue;
            rdv_hello x;
            if (io_full(fd, &x, sizeof x, false, deadline) != 0 || x.magic != RDV_MAGIC) {
                close(fd);   // not one of ours (a port scanner, a stale rank): ignore it
                continue;
            }
            x.host[RDV_HOST - 1] = 0;
            fds[got] = fd;
            h[got++] = x;
        }
        close(ls);
        rdv_reply rep = {.magic = RDV_MAGIC, .status = 0, .bytes = bytes};
        if (st == DDX_OK) {
            for (int i = 1; i < world && !rep.msg[0]; i++)
                if (h[i].rank < 0 || h[i].rank >= world)
                    snprintf(rep.msg, sizeof rep.msg, "a process claims rank %d of a world of %d", h[i].rank, world);
            if (!rep.msg[0]) rdv_check(h, world, rep.msg, sizeof rep.msg);
            rep.status = rep.msg[0] ? 1 : 0;
        } else {
            rep.status = 2;
            snprintf(rep.msg, sizeof rep.msg, "rank 0 gave up waiting for the other ranks");
        }
        for (int i = 1; i < got; i++) {
            if (io_full(fds[i], &rep, sizeof rep, true, deadline) == 0 && rep.status == 0)
                (void)io_full(fds[i], blob, bytes, true, deadline);
            close(fds[i]);
        }
        free(h);
        free(fds);
        if (st != DDX_OK) return st;
        if (rep.status) return ddx_errorf(DDX_E_INPUT, "launch: %s", rep.msg);
        return DDX_OK;
    }
    // Other ranks: connect (rank 0 may not listen yet), say who we are, read the verdict.
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int last = 0;
    while (mono_s() < deadline) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        int g = getaddrinfo(addr, portstr, &hints, &res);
        if (g != 0) {
            if (g == EAI_AGAIN) {
                sleep_s(0.2);
                continue;
            }
            return ddx_errorf(DDX_E_INPUT, "launch: MASTER_ADDR='%s': %s", addr, gai_strerror(g));
        }
        int fd = -1;
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            if (fd < 0) continue;
            if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
                last = errno;
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(res);
        if (fd < 0) {
            sleep_s(0.1);
            continue;
        }
        rdv_reply rep;
        int e = io_full(fd, &me, sizeof me, true, deadline);
        if (!e) e = io_full(fd, &rep, sizeof rep, false, deadline);
        if (!e && rep.magic != RDV_MAGIC) e = EPROTO;
        if (!e && rep.status == 0 && rep.bytes != bytes) e = EPROTO;
        if (!e && rep.status == 0) e = io_full(fd, blob, bytes, false, deadline);
        close(fd);
        if (e == ETIMEDOUT) break;
        if (e) return ddx_errorf(DDX_E_IO, "rendezvous: rank %d: the exchange with %s:%d failed: %s", rank, addr, port, strerror(e));
        rep.msg[RDV_MSG - 1] = 0;
        if (rep.status == 1) return ddx_errorf(DDX_E_INPUT, "launch: %s", rep.msg);
        if (rep.status) return ddx_errorf(DDX_E_IO, "rendezvous: rank %d: %s", rank, rep.msg);
        return DDX_OK;
    }
    return ddx_errorf(DDX_E_IO, "rendezvous: rank %d could not reach rank 0 at %s:%d within %g s (run.comm_timeout_s)%s%s; "
                                "check MASTER_ADDR/MASTER_PORT and that rank 0 runs",
                      rank, addr, port, timeout_s, last ? ": " : "", last ? strerror(last) : "");
}

// ---- the comm object ----------------------------------------------------------------------
#define MAX_PENDING 1024

struct ddx_comm {
    ddx_comm_backend backend;
    int rank, world, local_rank;
    ddx_device device;
    double timeout_s;
    bool mpi_inited;   // this process called MPI_Init (and so calls MPI_Finalize)
    double busy_since; // start of the oldest outstanding non-blocking collective
#if DDX_HAVE_MPI
    MPI_Comm mcomm;
    bool have_mcomm;
    MPI_Op bf16_sum;
    bool have_bf16_op;
    MPI_Request req[MAX_PENDING];
    struct {
        void *buf;
        int64_t n;
        ddx_dtype dt;
        ddx_comm_op op;
    } pend[MAX_PENDING];
    int n_req;
#endif
#if DDX_HAVE_NCCL
    ncclComm_t nccl;
    bool have_nccl;
    cudaStream_t stream;
    cudaEvent_t ev_compute, ev_comm;
    struct ddx_cuda_ctx *compute;
    bool comm_pending;   // started collectives the compute stream is not ordered after yet
    double *dscratch;    // device doubles for ddx_comm_allreduce_host without MPI
    pthread_t watchdog;
    bool have_watchdog;
    atomic_int wd_stop;
    atomic_int wd_busy;          // inside a watched section
    _Atomic double wd_since;     // its start
    char wd_what[128];
#endif
};

int ddx_comm_rank(const ddx_comm *c) { return c ? c->rank : 0; }
int ddx_comm_world(const ddx_comm *c) { return c ? c->world : 1; }
ddx_comm_backend ddx_comm_backend_of(const ddx_comm *c) { return c ? c->backend : DDX_COMM_SINGLE; }
const char *ddx_comm_backend_name(ddx_comm_backend b) {
    switch (b) {
    case DDX_COMM_SINGLE: return "single";
    case DDX_COMM_MPI: return "mpi";
    case DDX_COMM_NCCL: return "nccl";
    }
    return "?";
}

void ddx_comm_describe(const ddx_comm *c, const ddx_launch *l, char *buf, size_t n) {
    char host[RDV_HOST];
    host_name(host, sizeof host);
    snprintf(buf, n, "world %d (%s backend, launched by %s); rank 0 on %s", ddx_comm_world(c),
             ddx_comm_backend_name(ddx_comm_backend_of(c)), l ? l->source : "none", host);
}

void ddx_comm_abort(ddx_comm *c, int code, const char *why) {
    fprintf(stderr, "ddx: rank %d of %d: %s\n", ddx_comm_rank(c), ddx_comm_world(c), why);
    fflush(stderr);
    fflush(stdout);
#if DDX_HAVE_NCCL
    if (c && c->have_nccl) (void)ncclCommAbort(c->nccl);
#endif
#if DDX_HAVE_MPI
    int inited = 0, fin = 0;
    if (MPI_Initialized(&inited) == MPI_SUCCESS && inited && MPI_Finalized(&fin) == MPI_SUCCESS && !fin && c && c->world > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
#endif
    _exit(code);
}

#if DDX_HAVE_MPI
static ddx_status mpi_fail(ddx_comm *c, int e, const char *call) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(e, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", e);
    return ddx_errorf(DDX_E_IO, "%s failed on rank %d: %s", call, c ? c->rank : -1, s);
}
#define MPI_CHECK(c, call)                                    \
    do {                                                      \
        int ddx_mpi_e_ = (call);                              \
        if (ddx_mpi_e_ != MPI_SUCCESS) return mpi_fail((c), ddx_mpi_e_, #call); \
    } while (0)

// bf16 sum as NCCL does it: add in f32, round to nearest even.
static float bf16_to_f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint16_t f_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static void bf16_sum_fn(void *in, void *inout, int *len, MPI_Datatype *dt) {
    (void)dt;
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++) b[i] = f_to_bf16(bf16_to_f(a[i]) + bf16_to_f(b[i]));
}

static ddx_status mpi_types(ddx_comm *c, ddx_dtype dt, ddx_comm_op op, MPI_Datatype *t, MPI_Op *o) {
    if (dt == DDX_F32) *t = MPI_FLOAT;
    else if (dt == DDX_BF16) *t = MPI_UINT16_T;
    else return ddx_errorf(DDX_E_UNSUPPORTED, "all-reduce: dtype %s (f32 and bf16 only)", ddx_dtype_name(dt));
    if (dt == DDX_BF16) {
        if (op != DDX_COMM_SUM && op != DDX_COMM_AVG)
            return ddx_errorf(DDX_E_UNSUPPORTED, "all-reduce: bf16 supports sum and avg only");
        *o = c->bf16_sum;
        return DDX_OK;
    }
    *o = op == DDX_COMM_MAX ? MPI_MAX : op == DDX_COMM_MIN ? MPI_MIN : MPI_SUM;
    return DDX_OK;
}

static void mpi_avg_fix(ddx_comm *c, void *buf, int64_t n, ddx_dtype dt) {
    const float w = (float)c->world;
    if (dt == DDX_F32) {
        float *p = buf;
        for (int64_t i = 0; i < n; i++) p[i] /= w;
    } else {
        uint16_t *p = buf;
        for (int64_t i = 0; i < n; i++) p[i] = f_to_bf16(bf16_to_f(p[i]) / w);
    }
}

// Which ranks are there: every rank that timed out in the same collective runs this too, so
// a token from each live rank arrives within the window; the ranks that send none are named.
static void mpi_who_is_missing(ddx_comm *c, char *out, size_t n) {
    const int W = c->world, tag = 0x4444;
    int *tok_in = calloc((size_t)W, sizeof *tok_in), tok = c->rank;
    MPI_Request *rq = malloc((size_t)(2 * W) * sizeof *rq);
    int *done = calloc((size_t)W, sizeof *done);
    out[0] = 0;
    if (!tok_in || !rq || !done) {
        free(tok_in), free(rq), free(done);
        return;
    }
    for (int r = 0; r < W; r++) {
        rq[r] = rq[W + r] = MPI_REQUEST_NULL;
        if (r == c->rank) continue;
        if (MPI_Irecv(&tok_in[r], 1, MPI_INT, r, tag, c->mcomm, &rq[r]) != MPI_SUCCESS) rq[r] = MPI_REQUEST_NULL;
        if (MPI_Isend(&tok, 1, MPI_INT, r, tag, c->mcomm, &rq[W + r]) != MPI_SUCCESS) rq[W + r] = MPI_REQUEST_NULL;
    }
    double window = c->timeout_s / 2;
    if (window < 1) window = 1;
    if (window > 10) window = 10;
    const double end = mono_s() + window;
    int left = W - 1;
    while (left > 0 && mono_s() < end) {
        for (int r = 0; r < W; r++) {
            if (r == c->rank || done[r] || rq[r] == MPI_REQUEST_NULL) continue;
            int f = 0;
            if (MPI_Test(&rq[r], &f, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
                rq[r] = MPI_REQUEST_NULL;
                continue;
            }
            if (f) done[r] = 1, left--;
        }
        sleep_s(0.01);
    }
    size_t k = 0;
    int missing = 0;
    for (int r = 0; r < W && k + 16 < n; r++) {
        if (r == c->rank || done[r]) continue;
        k += (size_t)snprintf(out + k, n - k, "%s%d", missing ? ", " : "", r);
        missing++;
    }
    if (!missing) snprintf(out, n, "none found (every rank answered a probe: a rank is behind or the network is broken)");
    // The requests are left posted: the job is about to end.
    free(tok_in), free(rq), free(done);
}

static void mpi_timeout_abort(ddx_comm *c, const char *what) {
    char who[256], why[512];
    mpi_who_is_missing(c, who, sizeof who);
    snprintf(why, sizeof why, "%s did not complete within run.comm_timeout_s = %g s; rank(s) not responding: %s; stopping every rank",
             what, c->timeout_s, who);
    ddx_comm_abort(c, 1, why);
}

static ddx_status mpi_wait(ddx_comm *c, MPI_Request *rq, int n, const char *what) {
    const double t0 = mono_s(), deadline = t0 + c->timeout_s;
    for (;;) {
        int flag = 0;
        int e = MPI_Testall(n, rq, &flag, MPI_STATUSES_IGNORE);
        if (e != MPI_SUCCESS) {
            char why[512];
            mpi_fail(c, e, what);
            snprintf(why, sizeof why, "%s: %s", what, ddx_last_error());
            ddx_comm_abort(c, 1, why);
        }
        if (flag) return DDX_OK;
        const double now = mono_s();
        if (now > deadline) mpi_timeout_abort(c, what);
        // Collectives of a step are short: spin briefly, then sleep so a waiting rank leaves
        // its core to the ranks still computing (CI oversubscribes 3 ranks on 2 cores).
        if (now - t0 > 0.002) sleep_s(0.0002);
    }
}
#endif

// ---- NCCL ---------------------------------------------------------------------------------
#if DDX_HAVE_NCCL
static void *nccl_watchdog(void *arg) {
    ddx_comm *c = arg;
    while (!atomic_load(&c->wd_stop)) {
        ncclResult_t ae = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(c->nccl, &ae);
        char why[512];
        if (r != ncclSuccess || (ae != ncclSuccess && ae != ncclInProgress)) {
            snprintf(why, sizeof why, "NCCL reported an asynchronous error: %s (a peer rank died or the network failed); stopping every rank",
                     ncclGetErrorString(r != ncclSuccess ? r : ae));
            ddx_comm_abort(c, 1, why);
        }
        if (atomic_load(&c->wd_busy) && mono_s() - atomic_load(&c->wd_since) > c->timeout_s) {
            snprintf(why, sizeof why, "%s did not complete within run.comm_timeout_s = %g s (NCCL does not say which rank is missing); "
                                      "stopping every rank",
                     c->wd_what, c->timeout_s);
            ddx_comm_abort(c, 1, why);
        }
        sleep_s(0.05);
    }
    return NULL;
}

static ncclDataType_t nccl_type(ddx_dtype dt) { return dt == DDX_BF16 ? ncclBfloat16 : ncclFloat32; }
static ncclRedOp_t nccl_op(ddx_comm_op op) {
    return op == DDX_COMM_AVG ? ncclAvg : op == DDX_COMM_MAX ? ncclMax : op == DDX_COMM_MIN ? ncclMin : ncclSum;
}

// Waits for the comm stream with the deadline, polling NCCL's asynchronous errors.
static ddx_status nccl_wait(ddx_comm *c, const char *what) {
    const double deadline = mono_s() + c->timeout_s;
    DDX_CUDA_CHECK(cudaEventRecord(c->ev_comm, c->stream));
    for (;;) {
        cudaError_t e = cudaEventQuery(c->ev_comm);
        if (e == cudaSuccess) return DDX_OK;
        if (e != cudaErrorNotReady) return ddx_cuda_fail_(e, "cudaEventQuery(c->ev_comm)", __FILE__, __LINE__);
        ncclResult_t ae = ncclSuccess;
        DDX_NCCL_CHECK(ncclCommGetAsyncError(c->nccl, &ae));
        char why[512];
        if (ae != ncclSuccess && ae != ncclInProgress) {
            snprintf(why, sizeof why, "%s: NCCL error %s; stopping every rank", what, ncclGetErrorString(ae));
            ddx_comm_abort(c, 1, why);
        }
        if (mono_s() > deadline) {
            snprintf(why, sizeof why, "%s did not complete within run.comm_timeout_s = %g s; stopping every rank", what, c->timeout_s);
            ddx_comm_abort(c, 1, why);
        }
        sleep_s(0.0002);
    }
}
#endif

#if DDX_HAVE_NCCL
static ddx_status bind_gpu(const ddx_launch *l) {
    int n = 0;
    DDX_CUDA_CHECK(cudaGetDeviceCount(&n));
    if (l->local_rank >= n)
        return ddx_errorf(DDX_E_INPUT, "launch: local rank %d but this host has %d GPU(s): ranks would share a GPU; start at most %d "
                                       "rank(s) per host",
                          l->local_rank, n, n);
    DDX_CUDA_CHECK(cudaSetDevice(l->local_rank));
    return DDX_OK;
}
#endif

ddx_status ddx_comm_init(const ddx_launch *l, ddx_device dev, double timeout_s, bool force_nccl, ddx_comm **out) {
    *out = NULL;
    if (!(timeout_s > 0)) return ddx_errorf(DDX_E_INPUT, "run.comm_timeout_s: must be > 0, got %g", timeout_s);
    ddx_comm *c = calloc(1, sizeof *c);
    if (!c) return ddx_errorf(DDX_E_NOMEM, "comm: out of host memory");
    c->rank = l->rank;
    c->world = l->world;
    c->local_rank = l->local_rank;
    c->device = dev;
    c->timeout_s = timeout_s;
    c->backend = DDX_COMM_SINGLE;
    ddx_status st = DDX_OK;
    const bool want_nccl = dev == DDX_CUDA && (l->world > 1 || force_nccl);
    if (l->world == 1 && !want_nccl) {
        *out = c;
        return DDX_OK;
    }
    if (!want_nccl && dev != DDX_CPU) st = ddx_errorf(DDX_E_INTERNAL, "comm: unknown device");
#if !DDX_HAVE_MPI
    if (!st && !want_nccl)
        st = ddx_errorf(DDX_E_UNSUPPORTED, "launch: %d CPU ranks need MPI, and this build has none (install libopenmpi-dev, "
                                           "reconfigure the build)",
                        l->world);
#endif
#if !DDX_HAVE_NCCL
    if (!st && want_nccl)
        st = ddx_errorf(DDX_E_UNSUPPORTED, "launch: %d CUDA ranks need NCCL, and this build has none (the CUDA toolkit's libnccl)",
                        l->world);
#endif
#if DDX_HAVE_MPI
    // MPI carries the CPU collectives, and bootstraps NCCL when mpirun started the job.
    if (!st && (!want_nccl || l->under_mpi)) {
        int inited = 0;
        MPI_Initialized(&inited);
        if (!inited) {
            if (MPI_Init(NULL, NULL) != MPI_SUCCESS) st = ddx_errorf(DDX_E_IO, "launch: MPI_Init failed");
            else c->mpi_inited = true;
        }
        if (!st) {
            MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
            int e = MPI_Comm_dup(MPI_COMM_WORLD, &c->mcomm);
            if (e != MPI_SUCCESS) st = mpi_fail(c, e, "MPI_Comm_dup");
            else c->have_mcomm = true;
        }
        if (!st) {
            MPI_Comm_set_errhandler(c->mcomm, MPI_ERRORS_RETURN);
            int size = 0, rank = 0;
            MPI_Comm_size(c->mcomm, &size);
            MPI_Comm_rank(c->mcomm, &rank);
            if (size != l->world)
                st = ddx_errorf(DDX_E_INPUT, "launch: the environment (%s) says world size %d but MPI has %d process(es); start the "
                                             "job with mpirun -np %d, or fix the variables",
                                l->source, l->world, size, l->world);
            else if (rank != l->rank)
                st = ddx_errorf(DDX_E_INPUT, "launch: the environment (%s) says rank %d but MPI says %d", l->source, l->rank, rank);
        }
        if (!st) {
            int e = MPI_Op_create(bf16_sum_fn, 1, &c->bf16_sum);
            if (e != MPI_SUCCESS) st = mpi_fail(c, e, "MPI_Op_create");
            else c->have_bf16_op = true;
        }
        if (!st) {
            // Two ranks of one host with the same local rank would share a GPU (and mean a
            // broken launch on the CPU too): refuse the world on every rank.
            rdv_hello me = {.magic = RDV_MAGIC, .rank = c->rank, .world = c->world, .local_rank = c->local_rank};
            host_name(me.host, sizeof me.host);
            rdv_hello *all = calloc((size_t)c->world, sizeof *all);
            if (!all) st = ddx_errorf(DDX_E_NOMEM, "comm: out of host memory");
            int e = st ? MPI_SUCCESS : MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, c->mcomm);
            if (!st && e != MPI_SUCCESS) st = mpi_fail(c, e, "MPI_Allgather");
            char msg[RDV_MSG];
            if (!st) {
                rdv_check(all, c->world, msg, sizeof msg);
                if (msg[0]) st = ddx_errorf(DDX_E_INPUT, "launch: %s", msg);
            }
            free(all);
        }
        if (!st) c->backend = DDX_COMM_MPI;
    }
#endif
#if DDX_HAVE_NCCL
    if (!st && want_nccl) {
        st = bind_gpu(l);
        ncclUniqueId id;
        memset(&id, 0, sizeof id);
        if (!st && c->rank == 0) {
            ncclResult_t r = ncclGetUniqueId(&id);
            if (r != ncclSuccess) st = ddx_nccl_fail_(r, "ncclGetUniqueId(&id)", __FILE__, __LINE__);
        }
#if DDX_HAVE_MPI
        if (!st && c->backend == DDX_COMM_MPI) {
            MPI_Request rq;
            int e = MPI_Ibcast(&id, (int)sizeof id, MPI_BYTE, 0, c->mcomm, &rq);
            if (e != MPI_SUCCESS) st = mpi_fail(c, e, "MPI_Ibcast(ncclUniqueId)");
            else st = mpi_wait(c, &rq, 1, "the NCCL id broadcast");
        } else
#endif
        if (!st && l->world > 1) {
            if (!l->master_addr[0])
                st = ddx_errorf(DDX_E_INPUT, "launch: %d CUDA ranks started without mpirun need MASTER_ADDR and MASTER_PORT (rank 0's "
                                             "host and a free port) for the NCCL rendezvous",
                                l->world);
            else
                st = ddx_comm_rendezvous(l->master_addr, l->master_port, c->rank, c->world, c->local_rank, &id, sizeof id, timeout_s);
        }
        if (!st) {
            ncclResult_t r = ncclCommInitRank(&c->nccl, c->world, id, c->rank);
            if (r != ncclSuccess) st = ddx_nccl_fail_(r, "ncclCommInitRank(&c->nccl, c->world, id, c->rank)", __FILE__, __LINE__);
            else c->have_nccl = true;
        }
        cudaError_t e = cudaSuccess;
        if (!st && (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
            st = ddx_cuda_fail_(e, "cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)", __FILE__, __LINE__);
        if (!st && (e = cudaEventCreateWithFlags(&c->ev_compute, cudaEventDisableTiming)) != cudaSuccess)
            st = ddx_cuda_fail_(e, "cudaEventCreateWithFlags(&c->ev_compute, cudaEventDisableTiming)", __FILE__, __LINE__);
        if (!st && (e = cudaEventCreateWithFlags(&c->ev_comm, cudaEventDisableTiming)) != cudaSuccess)
            st = ddx_cuda_fail_(e, "cudaEventCreateWithFlags(&c->ev_comm, cudaEventDisableTiming)", __FILE__, __LINE__);
        if (!st && (e = cudaMalloc((void **)&c->dscratch, 64 * sizeof(double))) != cudaSuccess)
            st = ddx_cuda_fail_(e, "cudaMalloc(&c->dscratch)", __FILE__, __LINE__);
        if (!st) {
            c->backend = DDX_COMM_NCCL;
            if (pthread_create(&c->watchdog, NULL, nccl_watchdog, c) != 0)
                st = ddx_errorf(DDX_E_NOMEM, "comm: cannot start the NCCL watchdog thread");
            else c->have_watchdog = true;
        }
    }
#endif
    if (st) {
        // The message stays the first failure's.
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ddx_last_error());
        ddx_comm_finalize(c);
        return ddx_errorf(st, "%s", msg);
    }
    *out = c;
    return DDX_OK;
}

void ddx_comm_set_compute(ddx_comm *c, struct ddx_cuda_ctx *cc) {
#if DDX_HAVE_NCCL
    if (c) c->compute = cc;
#else
    (void)c, (void)cc;
#endif
}

#if DDX_HAVE_NCCL
// Orders the comm stream after everything enqueued so far on the compute stream.
static ddx_status nccl_after_compute(ddx_comm *c) {
    if (!c->compute) return ddx_errorf(DDX_E_INTERNAL, "comm: NCCL collective before ddx_comm_set_compute");
    DDX_CUDA_CHECK(cudaEventRecord(c->ev_compute, ddx_cuda_stream(c->compute)));
    DDX_CUDA_CHECK(cudaStreamWaitEvent(c->stream, c->ev_compute, 0));
    return DDX_OK;
}
// And the compute stream after the comm stream: the gradient buffer is read by the optimizer
// next, and no pool block the collectives touch can be reused before they finish.
static ddx_status nccl_join(ddx_comm *c) {
    DDX_CUDA_CHECK(cudaEventRecord(c->ev_comm, c->stream));
    DDX_CUDA_CHECK(cudaStreamWaitEvent(ddx_cuda_stream(c->compute), c->ev_comm, 0));
    c->comm_pending = false;
    return DDX_OK;
}
#endif

static ddx_status check_dtype(ddx_dtype dt, int64_t n) {
    if (dt != DDX_F32 && dt != DDX_BF16) return ddx_errorf(DDX_E_UNSUPPORTED, "all-reduce: dtype %s (f32 and bf16 only)", ddx_dtype_name(dt));
    if (n < 0 || n > INT_MAX) return ddx_errorf(DDX_E_INPUT, "all-reduce: %lld elements (at most 2^31 - 1 per call)", (long long)n);
    return DDX_OK;
}

ddx_status ddx_comm_allreduce_start(ddx_comm *c, void *buf, int64_t n, ddx_dtype dt, ddx_comm_op op) {
    DDX_TRY(check_dtype(dt, n));
    if (!c || c->backend == DDX_COMM_SINGLE || n == 0) return DDX_OK;
#if DDX_HAVE_MPI
    if (c->backend == DDX_COMM_MPI) {
        if (c->n_req == MAX_PENDING) DDX_TRY(ddx_comm_wait_all(c, "an all-reduce"));
        MPI_Datatype t = MPI_FLOAT;
        MPI_Op o = MPI_SUM;
        DDX_TRY(mpi_types(c, dt, op, &t, &o));
        if (c->n_req == 0) c->busy_since = mono_s();
        MPI_CHECK(c, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, t, o, c->mcomm, &c->req[c->n_req]));
        c->pend[c->n_req].buf = buf;
        c->pend[c->n_req].n = n;
        c->pend[c->n_req].dt = dt;
        c->pend[c->n_req].op = op;
        c->n_req++;
        return DDX_OK;
    }
#endif
#if DDX_HAVE_NCCL
    if (c->backend == DDX_COMM_NCCL) {
        // Each bucket waits for the backward work enqueued so far, which finished its grads.
        DDX_TRY(nccl_after_compute(c));
        DDX_NCCL_CHECK(ncclAllReduce(buf, buf, (size_t)n, nccl_type(dt), nccl_op(op), c->nccl, c->stream));
        c->comm_pending = true;
        return DDX_OK;
    }
#endif
    (void)buf, (void)op;
    return ddx_errorf(DDX_E_INTERNAL, "comm: backend %s not built", ddx_comm_backend_name(c->backend));
}

void ddx_comm_progress(ddx_comm *c) {
#if DDX_HAVE_MPI
    if (c && c->backend == DDX_COMM_MPI && c->n_req > 0) {
        int flag = 0;
        // Errors surface in ddx_comm_wait_all; here MPI only gets a chance to move data.
        (void)MPI_Testall(c->n_req, c->req, &flag, MPI_STATUSES_IGNORE);
    }
#else
    (void)c;
#endif
}

ddx_status ddx_comm_wait_all(ddx_comm *c, const char *what) {
    if (!c || c->backend == DDX_COMM_SINGLE) return DDX_OK;
#if DDX_HAVE_MPI
    if (c->backend == DDX_COMM_MPI) {
        if (c->n_req == 0) return DDX_OK;
        DDX_TRY(mpi_wait(c, c->req, c->n_req, what));
        for (int i = 0; i < c->n_req; i++)
            if (c->pend[i].op == DDX_COMM_AVG) mpi_avg_fix(c, c->pend[i].buf, c->pend[i].n, c->pend[i].dt);
        c->n_req = 0;
        return DDX_OK;
    }
#endif
#if DDX_HAVE_NCCL
    if (c->backend == DDX_COMM_NCCL) {
        (void)what;
        return c->comm_pending ? nccl_join(c) : DDX_OK;
    }
#endif
    (void)what;
    return DDX_OK;
}

ddx_status ddx_comm_allreduce(ddx_comm *c, void *buf, int64_t n, ddx_dtype dt, ddx_comm_op op) {
    DDX_TRY(ddx_comm_allreduce_start(c, buf, n, dt, op));
    return ddx_comm_wait_all(c, "an all-reduce");
}

ddx_status ddx_comm_allreduce_host(ddx_comm *c, double *v, int n, ddx_comm_op op, const char *what) {
    if (!c || c->backend == DDX_COMM_SINGLE || n == 0) return DDX_OK;
    if (n < 0 || n > 64) return ddx_errorf(DDX_E_INTERNAL, "comm: %d host values (at most 64)", n);
#if DDX_HAVE_MPI
    if (c->have_mcomm) {
        MPI_Request rq;
        MPI_Op o = op == DDX_COMM_MAX ? MPI_MAX : op == DDX_COMM_MIN ? MPI_MIN : MPI_SUM;
        MPI_CHECK(c, MPI_Iallreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, o, c->mcomm, &rq));
        DDX_TRY(mpi_wait(c, &rq, 1, what));
        if (op == DDX_COMM_AVG)
            for (int i = 0; i < n; i++) v[i] /= c->world;
        return DDX_OK;
    }
#endif
#if DDX_HAVE_NCCL
    if (c->backend == DDX_COMM_NCCL) {
        DDX_CUDA_CHECK(cudaMemcpyAsync(c->dscratch, v, (size_t)n * sizeof *v, cudaMemcpyHostToDevice, c->stream));
        DDX_NCCL_CHECK(ncclAllReduce(c->dscratch, c->dscratch, (size_t)n, ncclFloat64, nccl_op(op), c->nccl, c->stream));
        DDX_CUDA_CHECK(cudaMemcpyAsync(v, c->dscratch, (size_t)n * sizeof *v, cudaMemcpyDeviceToHost, c->stream));
        return nccl_wait(c, what);
    }
#endif
    (void)v, (void)op, (void)what;
    return DDX_OK;
}

bool ddx_comm_host_cheap(const ddx_comm *c) {
    if (!c || c->backend == DDX_COMM_SINGLE) return true;
#if DDX_HAVE_MPI
    if (c->have_mcomm) return true;
#endif
    return false;
}

ddx_status ddx_comm_broadcast(ddx_comm *c, void *buf, size_t bytes, int root) {
    if (!c || c->backend == DDX_COMM_SINGLE || bytes == 0) return DDX_OK;
    if (root < 0 || root >= c->world) return ddx_errorf(DDX_E_INTERNAL, "broadcast: root %d of a world of %d", root, c->world);
#if DDX_HAVE_MPI
    if (c->backend == DDX_COMM_MPI) {
        if (bytes > INT_MAX) return ddx_errorf(DDX_E_INPUT, "broadcast: %zu bytes (at most 2^31 - 1)", bytes);
        MPI_Request rq;
        MPI_CHECK(c, MPI_Ibcast(buf, (int)bytes, MPI_BYTE, root, c->mcomm, &rq));
        return mpi_wait(c, &rq, 1, "a broadcast");
    }
#endif
#if DDX_HAVE_NCCL
    if (c->backend == DDX_COMM_NCCL) {
        DDX_TRY(nccl_after_compute(c));
        DDX_NCCL_CHECK(ncclBroadcast(buf, buf, bytes, ncclUint8, root, c->nccl, c->stream));
        c->comm_pending = true;
        return nccl_join(c);
    }
#endif
    (void)buf;
    return DDX_OK;
}

ddx_status ddx_comm_barrier(ddx_comm *c) {
    if (!c || c->backend == DDX_COMM_SINGLE) return DDX_OK;
#if DDX_HAVE_MPI
    if (c->have_mcomm) {
        MPI_Request rq;
        MPI_CHECK(c, MPI_Ibarrier(c->mcomm, &rq));
        return mpi_wait(c, &rq, 1, "a barrier");
    }
#endif
    double one = 1;
    return ddx_comm_allreduce_host(c, &one, 1, DDX_COMM_SUM, "a barrier");
}

void ddx_comm_watch_begin(ddx_comm *c, const char *what) {
#if DDX_HAVE_NCCL
    if (!c || c->backend != DDX_COMM_NCCL) return;
    snprintf(c->wd_what, sizeof c->wd_what, "%s", what);
    atomic_store(&c->wd_since, mono_s());
    atomic_store(&c->wd_busy, 1);
#else
    (void)c, (void)what;
#endif
}

void ddx_comm_watch_end(ddx_comm *c) {
#if DDX_HAVE_NCCL
    if (c && c->backend == DDX_COMM_NCCL) atomic_store(&c->wd_busy, 0);
#else
    (void)c;
#endif
}

void ddx_comm_finalize(ddx_comm *c) {
    if (!c) return;
#if DDX_HAVE_NCCL
    if (c->have_watchdog) {
        atomic_store(&c->wd_stop, 1);
        pthread_join(c->watchdog, NULL);
    }
    if (c->stream && cudaStreamSynchronize(c->stream) != cudaSuccess) (void)cudaGetLastError();
    if (c->have_nccl) (void)ncclCommDestroy(c->nccl);
    if (c->ev_compute) (void)cudaEventDestroy(c->ev_compute);
    if (c->ev_comm) (void)cudaEventDestroy(c->ev_comm);
    if (c->dscratch) (void)cudaFree(c->dscratch);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
#endif
#if DDX_HAVE_MPI
    if (c->have_mcomm) {
        if (c->n_req) (void)ddx_comm_wait_all(c, "the last all-reduce");
        if (c->have_bf16_op) MPI_Op_free(&c->bf16_sum);
        MPI_Comm_free(&c->mcomm);
    }
    if (c->mpi_inited) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
    }
#endif
    free(c);
}
