#!/usr/bin/env bash
# run_standalone_train_gpu.sh: the GPU variant of run_standalone_train.sh (same arguments: the reference's
# run_*_gpu.sh). It will select the CUDA backend (and NCCL for the all-reduce) once that backend
# exists; this version has none, so it checks the arguments, then stops with exit status 2 and says so.
set -u
source "$(dirname "$0")/mg_launch_common.sh"
if [ $# -lt 1 ] || [ $# -gt 2 ]; then echo "usage: bash $0 [DATASET_PATH] [CONFIG]" >&2; exit 2; fi
mg_find_bin
if "$bin" --version | grep -q "^CUDA: yes"; then
  MG_EXIT=2 mg_die "$bin has CUDA compiled in, but selecting it from the launch scripts is not written yet"
fi
MG_EXIT=2 mg_die "the CUDA backend is not built in this version of multigrain ('$bin --version' says CUDA: no); use scripts/run_standalone_train.sh to run on the CPU"
