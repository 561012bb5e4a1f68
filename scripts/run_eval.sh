#!/usr/bin/env bash
# run_eval.sh [DATASET_PATH] [CHECKPOINT_PATH]: top-1/top-5 of a checkpoint on DATASET_PATH/val (or
# the t10k IDX files), in ./eval/ (the reference's layout: the output in eval/log, the result also
# in eval/result.json). The test crop size is the run's input_size when the checkpoint sits in a run
# folder (RUN/checkpoints/*.safetensors next to RUN/config.yaml), else 224; EVAL_SIZE overrides it.
set -u
source "$(dirname "$0")/mg_launch_common.sh"
if [ $# -ne 2 ]; then
  echo "usage: bash $0 [DATASET_PATH] [CHECKPOINT_PATH]" >&2
  echo "  e.g. bash $0 /data/imagenet train_parallel0/checkpoints/checkpoint_e0120_s00600480.safetensors" >&2
  exit 2
fi
data=$(mg_abs "$1"); ckpt=$(mg_abs "$2")
[ -d "$data" ] || MG_EXIT=2 mg_die "DATASET_PATH $data is not a folder"
[ -f "$ckpt" ] || MG_EXIT=2 mg_die "CHECKPOINT_PATH $ckpt does not exist"
mg_find_bin
size=${EVAL_SIZE:-}
runcfg=$(dirname "$(dirname "$ckpt")")/config.yaml
if [ -z "$size" ] && [ -f "$runcfg" ]; then size=$(sed -n 's/^input_size: *\([0-9]*\).*/\1/p' "$runcfg" | head -n1); fi
size=${size:-224}
mkdir -p eval
echo "run_eval: $bin eval -c $ckpt --data $data --size $size (log: eval/log)"
"$bin" eval -c "$ckpt" --data "$data" --size "$size" --json "$PWD/eval/result.json" 2>&1 | tee eval/log
exit "${PIPESTATUS[0]}"
