#!/usr/bin/env bash
# run_distribute_train.sh [DATASET_PATH] [DEVICE_NUM] [CONFIG]: data-parallel training with DEVICE_NUM
# processes on this machine, launched by OpenMPI's mpirun (the reference's argument order and layout):
# rank r runs in ./train_parallel<r>/ with its output in train_parallel<r>/log; rank 0's folder is
# the run folder (checkpoints/, metrics.jsonl, config.yaml), the others hold only their log.
# batch_size in CONFIG is the global batch (each rank takes batch_size / DEVICE_NUM); threads per
# rank default to the cores divided among the ranks (MG_THREADS to change). Over several machines,
# run the same `multigrain train` under your launcher instead: `mpirun -np N --hostfile H ...` or
# `srun --mpi=pmix ...` (README, "Training on several processes / machines").
# RESUME=1 continues the run in ./train_parallel0 (with any DEVICE_NUM dividing the global batch);
# extra `multigrain train` options go in MG_TRAIN_ARGS.
set -u
source "$(dirname "$0")/mg_launch_common.sh"
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: bash $0 [DATASET_PATH] [DEVICE_NUM] [CONFIG]" >&2
  echo "  e.g. bash $0 /data/imagenet 8 configs/multigrain_resnet50.yaml" >&2
  exit 2
fi
data=$(mg_abs "$1"); n=$2; cfg=$(mg_abs "${3:-$mg_repo/configs/multigrain_resnet50.yaml}")
case "$n" in ''|*[!0-9]*|0) MG_EXIT=2 mg_die "DEVICE_NUM must be a positive integer, found '$n'" ;; esac
[ -d "$data" ] || MG_EXIT=2 mg_die "DATASET_PATH $data is not a folder"
[ -f "$cfg" ] || MG_EXIT=2 mg_die "CONFIG $cfg does not exist"
mg_find_bin
mg_mpirun "$n"
base=$PWD
resume=()
if ls train_parallel0/checkpoints/*.safetensors >/dev/null 2>&1; then
  [ "${RESUME:-0}" = 1 ] || MG_EXIT=2 mg_die "./train_parallel0 holds a previous run: remove the train_parallel* folders, or continue with RESUME=1"
  resume=(--resume "$base/train_parallel0")
fi
for ((i = 0; i < n; i++)); do mkdir -p "train_parallel$i"; done
threads=$(mg_threads "$n")
echo "run_distribute_train: ${mpi[*]} $bin train -c $cfg --data $data --out $base/train_parallel0 --threads $threads"
echo "run_distribute_train: logs in train_parallel<rank>/log, checkpoints in train_parallel0/checkpoints"
# shellcheck disable=SC2086
"${mpi[@]}" "$mg_repo/scripts/mg_rank_exec.sh" "$base" "$bin" train -c "$cfg" --data "$data" \
  --out "$base/train_parallel0" --threads "$threads" "${resume[@]}" ${MG_TRAIN_ARGS:-}
rc=$?
tail -n 5 train_parallel0/log
[ $rc -eq 0 ] || echo "run_distribute_train: failed (exit $rc); see train_parallel*/log" >&2
exit $rc
