#!/usr/bin/env bash
# mg_rank_exec.sh BASE COMMAND...: run by mpirun once per rank (scripts/run_distribute_train.sh): runs
# COMMAND in BASE/train_parallel<rank>/ with its output in that folder's `log`, as the reference's
# scripts do. exec keeps the process the launcher started (MPI sees the same process).
base=$1; shift
rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${PMI_RANK:-${SLURM_PROCID:-0}}}}
dir=$base/train_parallel$rank
mkdir -p "$dir" && cd "$dir" || exit 1
env > env.log
exec "$@" > log 2>&1
