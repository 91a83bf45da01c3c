// The comm layer without MPI (runtime/comm.h): launch variables of the three forms (Open MPI,
// torchrun-style, Slurm) including bad values, which must be DDX_E_INPUT (exit 2) naming the
// variable; the single backend's collectives; the TCP rendezvous between two processes (the
// blob arrives), refusing two ranks with one local rank on one host, and timing out cleanly
// when rank 0 never listens or a rank never connects.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/comm.h"

#include "check.h"

static const char *const *g_env;
static const char *lookup(const char *name, void *arg) {
    (void)arg;
    size_t n = strlen(name);
    for (const char *const *e = g_env; *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

static ddx_status parse(const char *const *env, ddx_launch *l) {
    g_env = env;
    return ddx_launch_parse(lookup, NULL, l);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A port nothing listens on, most likely: in the dynamic range, varied by pid.
static int some_port(int k) { return 20000 + (int)(getpid() * 7 + k * 131) % 20000; }

int main(void) {
    ddx_launch l;
    // ---- the three forms ----
    CHECK(parse((const char *[]){NULL}, &l) == DDX_OK && l.world == 1 && l.rank == 0 && !strcmp(l.source, "none"), "no launcher");
    CHECK(parse((const char *[]){"OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=0", NULL}, &l) ==
                  DDX_OK &&
              l.rank == 2 && l.world == 4 && l.local_rank == 0 && l.under_mpi && !strcmp(l.source, "Open MPI"),
          "Open MPI form");
    CHECK(parse((const char *[]){"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_ADDR=node0", "MASTER_PORT=29500", NULL}, &l) ==
                  DDX_OK &&
              l.rank == 1 && l.world == 2 && l.local_rank == 1 && !l.under_mpi && !strcmp(l.master_addr, "node0") &&
              l.master_port == 29500,
          "torchrun-style form");
    CHECK(parse((const char *[]){"SLURM_PROCID=5", "SLURM_NTASKS=8", "SLURM_LOCALID=1", NULL}, &l) == DDX_OK && l.rank == 5 &&
              l.world == 8 && l.local_rank == 1 && !strcmp(l.source, "Slurm"),
          "Slurm form");
    CHECK(parse((const char *[]){"SLURM_PROCID=3", "SLURM_NTASKS=16", "SLURM_STEP_NUM_TASKS=4", "SLURM_LOCALID=3", NULL}, &l) ==
                  DDX_OK &&
              l.world == 4,
          "Slurm: the step's task count wins over the job's");
    CHECK(parse((const char *[]){"OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=2", "SLURM_PROCID=0", "SLURM_NTASKS=1", NULL}, &l) ==
                  DDX_OK &&
              l.rank == 1 && l.world == 2 && l.local_rank == 1,
          "mpirun inside an sbatch job: Open MPI's variables win; no local rank: the rank");
    CHECK(parse((const char *[]){"RANK=0", "WORLD_SIZE=2", "SLURM_PROCID=1", "SLURM_NTASKS=2", NULL}, &l) == DDX_OK && l.rank == 0,
          "torchrun-style variables win over Slurm's");
    // ---- bad values: DDX_E_INPUT naming the variable ----
    static const struct {
        const char *env[6];
        const char *name;
    } bad[] = {
        {{"RANK=abc", "WORLD_SIZE=2"}, "RANK"},
        {{"RANK=1x", "WORLD_SIZE=2"}, "RANK"},
        {{"RANK=", "WORLD_SIZE=2"}, "RANK"},
        {{"RANK=-1", "WORLD_SIZE=2"}, "RANK"},
        {{"RANK=2", "WORLD_SIZE=2"}, "RANK=2"},
        {{"RANK=0", "WORLD_SIZE=0"}, "WORLD_SIZE"},
        {{"RANK=0", "WORLD_SIZE=99999999999"}, "WORLD_SIZE"},
        {{"RANK=0"}, "WORLD_SIZE"},
        {{"WORLD_SIZE=2"}, "RANK"},
        {{"RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=2"}, "LOCAL_RANK"},
        {{"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=0"}, "MASTER_PORT"},
        {{"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=http"}, "MASTER_PORT"},
        {{"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=h"}, "MASTER_PORT"},
        {{"OMPI_COMM_WORLD_RANK=3", "OMPI_COMM_WORLD_SIZE=2"}, "OMPI_COMM_WORLD_RANK"},
        {{"OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_LOCAL_RANK=z"}, "OMPI_COMM_WORLD_LOCAL_RANK"},
        {{"SLURM_PROCID=1", "SLURM_NTASKS=one"}, "SLURM_NTASKS"},
        {{"SLURM_PROCID=4", "SLURM_NTASKS=4"}, "SLURM_PROCID"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ddx_status st = parse(bad[i].env, &l);
        CHECK(st == DDX_E_INPUT && ddx_exit_code(st) == 2 && strstr(ddx_last_error(), bad[i].name) &&
                  !strchr(ddx_last_error(), '\n'),
              "bad launch %zu (%s, %s): want DDX_E_INPUT naming %s, got %d: %s", i, bad[i].env[0], bad[i].env[1] ? bad[i].env[1] : "",
              bad[i].name, (int)st, ddx_last_error());
    }
    // ---- the single backend: collectives are the identity ----
    ddx_launch one = {.world = 1, .source = "none"};
    ddx_comm *c = NULL;
    CHECK(ddx_comm_init(&one, DDX_CPU, 5, false, &c) == DDX_OK && c && ddx_comm_backend_of(c) == DDX_COMM_SINGLE,
          "single backend: %s", ddx_last_error());
    float v[3] = {1, 2, 3};
    double d[2] = {4, 5};
    CHECK(ddx_comm_allreduce(c, v, 3, DDX_F32, DDX_COMM_AVG) == DDX_OK && v[0] == 1 && v[2] == 3, "single all-reduce");
    CHECK(ddx_comm_allreduce_host(c, d, 2, DDX_COMM_SUM, "test") == DDX_OK && d[1] == 5, "single host all-reduce");
    CHECK(ddx_comm_allreduce(c, v, 3, DDX_I32, DDX_COMM_SUM) == DDX_E_UNSUPPORTED, "i32 all-reduce refused");
    CHECK(ddx_comm_broadcast(c, v, sizeof v, 0) == DDX_OK && ddx_comm_barrier(c) == DDX_OK, "single broadcast, barrier");
    ddx_comm_finalize(c);
    CHECK(ddx_comm_init(&one, DDX_CPU, 0, false, &c) == DDX_E_INPUT && strstr(ddx_last_error(), "run.comm_timeout_s"),
          "timeout 0 refused");

    // ---- TCP rendezvous ----
    char blob[64], got[64];
    for (int i = 0; i < 64; i++) blob[i] = (char)(i * 7 + 1);
    int port = some_port(0);
    pid_t pid = fork();
    if (pid == 0) {   // rank 1: starts first, retries until rank 0 listens
        memset(got, 0, sizeof got);
        ddx_status st = ddx_comm_rendezvous("127.0.0.1", port, 1, 2, 1, got, sizeof got, 10);
        _exit(st == DDX_OK && !memcmp(got, blob, sizeof blob) ? 0 : 3);
    }
    usleep(200000);
    ddx_status st = ddx_comm_rendezvous("127.0.0.1", port, 0, 2, 0, blob, sizeof blob, 10);
    int ws = 0;
    waitpid(pid, &ws, 0);
    CHECK(st == DDX_OK && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "rendezvous of 2 ranks: %d, child %d: %s", (int)st, ws,
          ddx_last_error());

    // Two ranks claiming local rank 0 on this host (one GPU for two): both refused, exit 2.
    port = some_port(1);
    pid = fork();
    if (pid == 0) {
        ddx_status s1 = ddx_comm_rendezvous("localhost", port, 1, 2, 0, got, sizeof got, 10);
        _exit(s1 == DDX_E_INPUT && strstr(ddx_last_error(), "share one GPU") ? 0 : 3);
    }
    st = ddx_comm_rendezvous("localhost", port, 0, 2, 0, blob, sizeof blob, 10);
    waitpid(pid, &ws, 0);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "share one GPU") && WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
          "duplicate local rank: %d, child %d: %s", (int)st, ws, ddx_last_error());

    // Rank 0 never listens: rank 1 gives up after the timeout, with one line naming the address.
    double t0 = now_s();
    st = ddx_comm_rendezvous("127.0.0.1", some_port(2), 1, 2, 1, got, sizeof got, 1.5);
    double dt = now_s() - t0;
    CHECK(st == DDX_E_IO && strstr(ddx_last_error(), "127.0.0.1") && strstr(ddx_last_error(), "MASTER_ADDR") && dt >= 1.4 && dt < 5,
          "rendezvous without rank 0: %d after %.2f s: %s", (int)st, dt, ddx_last_error());
    printf("rendezvous with no rank 0 timed out after %.2f s (timeout 1.5 s): %s\n", dt, ddx_last_error());
    // Nobody connects to rank 0: it gives up too.
    t0 = now_s();
    st = ddx_comm_rendezvous("127.0.0.1", some_port(3), 0, 3, 0, blob, sizeof blob, 1.5);
    dt = now_s() - t0;
    CHECK(st == DDX_E_IO && strstr(ddx_last_error(), "heard from 1 of 3") && dt >= 1.4 && dt < 5,
          "rendezvous without the other ranks: %d after %.2f s: %s", (int)st, dt, ddx_last_error());
    return ddx_test_finish("comm");
}
