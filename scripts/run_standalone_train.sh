#!/usr/bin/env bash
# run_standalone_train.sh [DATASET_PATH] [CONFIG]: train on one machine in one process, in ./train/
# (the reference's layout: the run folder with checkpoints/, metrics.jsonl, config.yaml, and the
# program's output in train/log). Runs in the foreground and also shows the output.
#   DATASET_PATH  ImageNet layout (train/<class>/*.jpg, val/...) or a folder of IDX files
#   CONFIG        YAML config (default: configs/multigrain_resnet50.yaml)
# RESUME=1 continues the run in ./train; extra `multigrain train` options go in MG_TRAIN_ARGS.
set -u
source "$(dirname "$0")/mg_launch_common.sh"
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: bash $0 [DATASET_PATH] [CONFIG]" >&2
  echo "  e.g. bash $0 /data/imagenet configs/multigrain_resnet50.yaml" >&2
  exit 2
fi
data=$(mg_abs "$1"); cfg=$(mg_abs "${2:-$mg_repo/configs/multigrain_resnet50.yaml}")
[ -d "$data" ] || MG_EXIT=2 mg_die "DATASET_PATH $data is not a folder"
[ -f "$cfg" ] || MG_EXIT=2 mg_die "CONFIG $cfg does not exist"
mg_find_bin
resume=()
if ls train/checkpoints/*.safetensors >/dev/null 2>&1; then
  [ "${RESUME:-0}" = 1 ] || MG_EXIT=2 mg_die "./train holds a previous run: remove it, or continue it with RESUME=1"
  resume=(--resume "$PWD/train")
fi
mkdir -p train
echo "run_standalone_train: $bin train -c $cfg --data $data --out $PWD/train (log: train/log)"
# shellcheck disable=SC2086
"$bin" train -c "$cfg" --data "$data" --out "$PWD/train" "${resume[@]}" ${MG_TRAIN_ARGS:-} 2>&1 | tee train/log
exit "${PIPESTATUS[0]}"
