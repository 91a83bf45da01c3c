#!/usr/bin/env bash
# Multi-node data-parallel training under Slurm: one ddx-train rank per GPU.
#
#   sbatch --nodes=8 tools/ddx_sbatch.sh configs/cifar10_ddpm.yaml [--set key=value ...]
#   sbatch --nodes=1 --gpus-per-node=4 --ntasks-per-node=4 tools/ddx_sbatch.sh CONFIG ...
#
# srun starts the ranks; each reads SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID and
# takes GPU SLURM_LOCALID. The NCCL id goes from rank 0 to the others through a TCP rendezvous
# at MASTER_ADDR:MASTER_PORT (the first node of the job, a port derived from the job id).
# train.batch_size is the GLOBAL batch: 128 per GPU on 64 GPUs is --set train.batch_size=8192.
# Rank 0 writes the run folder (run.out_dir must be on a file system every node can read, so
# that --resume finds the checkpoint on all of them).
#SBATCH --job-name=ddx-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=ddx-train-%j.out
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: sbatch tools/ddx_sbatch.sh CONFIG.yaml [ddx-train arguments...]" >&2; exit 2; }
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
export MASTER_ADDR MASTER_PORT
# InfiniBand: see README "Multi-GPU and multi-node training" for the NCCL variables a cluster
# may need (NCCL_IB_HCA, NCCL_SOCKET_IFNAME, ...); set them here or in the environment.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export DDX_NUM_THREADS=${DDX_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-8}}
train=${DDX_TRAIN:-$(dirname "$0")/../build/train/ddx-train}
# --kill-on-bad-exit: a rank that exits non-zero ends the step, like mpirun does.
exec srun --kill-on-bad-exit=1 --cpu-bind=cores "$train" "$@"
