// Collective communication for data-parallel training: one small API over three backends.
//
//   single  world 1: every collective is a no-op (the default, nothing to initialise)
//   mpi     CPU ranks: collectives on host memory through MPI (Open MPI in CI)
//   nccl    CUDA ranks: collectives on device memory through NCCL on the comm's own stream,
//           ordered against the compute stream with events; bootstrap (the unique id) through
//           MPI_Bcast when the job was started by mpirun, otherwise through a TCP rendezvous
//           at MASTER_ADDR:MASTER_PORT
//
// The launch (rank, world size, local rank) comes from the environment: Open MPI's
// OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK, Slurm's SLURM_PROCID/SLURM_STEP_NUM_TASKS (or
// SLURM_NTASKS)/SLURM_LOCALID, or torchrun-style RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/
// MASTER_PORT, in that order of precedence (mpirun inside an sbatch job sees both Open MPI's
// and Slurm's variables; Open MPI's describe the process). Bad values are DDX_E_INPUT naming
// the variable.
//
// Every collective has a deadline (the timeout given to ddx_comm_init, run.comm_timeout_s):
// a collective that does not complete in time, or an MPI/NCCL error, prints one line naming
// this rank, the collective and, where it can be found out, the ranks that did not arrive,
// then ends the whole job (MPI_Abort / ncclCommAbort + exit 1): a dead or hung rank never
// leaves the others waiting forever. MPI errors are returned (MPI_ERRORS_RETURN), never fatal
// inside MPI, so that line is always ddx's.
#ifndef DDX_COMM_H
#define DDX_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ddx_comm_backend { DDX_COMM_SINGLE = 0, DDX_COMM_MPI, DDX_COMM_NCCL } ddx_comm_backend;
typedef enum ddx_comm_op { DDX_COMM_SUM = 0, DDX_COMM_AVG, DDX_COMM_MAX, DDX_COMM_MIN } ddx_comm_op;

typedef struct ddx_launch {
    int rank, world, local_rank;
    const char *source;       // "none" (world 1, no launcher), "Open MPI", "Slurm", "torchrun-style env"
    bool under_mpi;           // started by mpirun/mpiexec (MPI_Init will see the whole world)
    char master_addr[256];    // torchrun-style rendezvous ("" when not set)
    int master_port;          // 0 when not set
} ddx_launch;

// Reads the launch from the environment (see the header comment). No launcher variables:
// rank 0 of world 1. DDX_E_INPUT (one line naming the variable) for a non-numeric or
// out-of-range value, rank >= world, local rank >= world, or a half-given form (RANK without
// WORLD_SIZE, a bad MASTER_PORT).
ddx_status ddx_launch_from_env(ddx_launch *out);
// The same from an explicit lookup (tests): get(name) returns the value or NULL.
ddx_status ddx_launch_parse(const char *(*get)(const char *name, void *arg), void *arg, ddx_launch *out);

typedef struct ddx_comm ddx_comm;
struct ddx_cuda_ctx;

// Starts the backend for `dev` (CPU: single at world 1, mpi otherwise; CUDA: nccl; world 1
// on CUDA is single unless `force_nccl`) and checks the world: the MPI world size must equal
// the launcher's, no two ranks of one host may share a local rank (one GPU each), and on CUDA
// the local rank must name a GPU of this host (ddx_comm_init selects it). DDX_E_INPUT for an
// inconsistent world, DDX_E_UNSUPPORTED when the build lacks the backend. `timeout_s` bounds
// every collective and the rendezvous.
ddx_status ddx_comm_init(const ddx_launch *l, ddx_device dev, double timeout_s, bool force_nccl, ddx_comm **out);
// Collective: every rank must call it. Waits for outstanding work, frees the backend
// (MPI_Finalize for the rank that initialised MPI).
void ddx_comm_finalize(ddx_comm *c);

int ddx_comm_rank(const ddx_comm *c);
int ddx_comm_world(const ddx_comm *c);
ddx_comm_backend ddx_comm_backend_of(const ddx_comm *c);
const char *ddx_comm_backend_name(ddx_comm_backend b);
// "world 3 (mpi, Open MPI): rank 0 on host a, ..." one line, for the ddx-train banner.
void ddx_comm_describe(const ddx_comm *c, const ddx_launch *l, char *buf, size_t n);

// NCCL: the compute stream the collectives are ordered against (a struct ddx_cuda_ctx *);
// ignored by the other backends.
void ddx_comm_set_compute(ddx_comm *c, struct ddx_cuda_ctx *cc);

// In place, n elements of f32 or bf16 (host memory for single/mpi, device memory for nccl).
// Blocking: returns when the result is in buf (nccl: when the compute stream is ordered after
// it; the host does not wait for the GPU).
ddx_status ddx_comm_allreduce(ddx_comm *c, void *buf, int64_t n, ddx_dtype dt, ddx_comm_op op);
// Non-blocking: starts the all-reduce (nccl: after everything already on the compute stream);
// ddx_comm_wait_all completes every started one. Calls must be started in the same order on
// every rank. ddx_comm_progress lets MPI move started ones along (MPI has no progress thread
// here; the trainer calls it between backward nodes).
ddx_status ddx_comm_allreduce_start(ddx_comm *c, void *buf, int64_t n, ddx_dtype dt, ddx_comm_op op);
void ddx_comm_progress(ddx_comm *c);
// `what` names the collective in a timeout message ("gradient all-reduce of step 12").
ddx_status ddx_comm_wait_all(ddx_comm *c, const char *what);
// Host doubles on every backend (control values: the stop flag, the loss, parameter
// checksums); nccl without MPI goes through a small device buffer. `what` names it in a
// timeout message.
ddx_status ddx_comm_allreduce_host(ddx_comm *c, double *v, int n, ddx_comm_op op, const char *what);
// Whether ddx_comm_allreduce_host is a host-only exchange (single, mpi, or nccl bootstrapped
// by MPI); otherwise it goes through the GPU and waits for the comm stream.
bool ddx_comm_host_cheap(const ddx_comm *c);
// `bytes` bytes from `root` (host memory for single/mpi, device memory for nccl).
ddx_status ddx_comm_broadcast(ddx_comm *c, void *buf, size_t bytes, int root);
ddx_status ddx_comm_barrier(ddx_comm *c);
// Ends every rank of the job now with exit code `code` after printing `why` (one line) on
// this rank's stderr. Safe after a failed collective; never returns.
void ddx_comm_abort(ddx_comm *c, int code, const char *why) __attribute__((noreturn));
// NCCL watchdog: between begin and end the comm's thread polls ncclCommGetAsyncError and
// aborts the job when an error shows or the section outlives the timeout (the host may be
// blocked inside CUDA then, where no wait loop of ours runs). No-op for other backends.
void ddx_comm_watch_begin(ddx_comm *c, const char *what);
void ddx_comm_watch_end(ddx_comm *c);

// The TCP rendezvous on its own (tests, and the NCCL bootstrap without MPI): rank 0 listens
// on port `port` and sends `bytes` bytes of blob to each of the world - 1 other ranks, which
// connect to addr:port (retrying until the deadline) and receive it. Every rank reports
// (host name, local rank) and rank 0 refuses duplicates, ranks out of range and a different
// world size: DDX_E_INPUT on every rank, with rank 0's one-line reason. DDX_E_IO when the
// rendezvous does not complete within timeout_s.
ddx_status ddx_comm_rendezvous(const char *addr, int port, int rank, int world, int local_rank, void *blob, size_t bytes,
                               double timeout_s);

#ifdef __cplusplus
}
#endif

#endif
