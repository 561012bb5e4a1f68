#!/usr/bin/env bash
# test_scripts.sh: the reference-style launch scripts in scripts/ on the tiny generated dataset:
#  - run_distribute_train.sh DATA 2 CONFIG: mpirun with 2 ranks; train_parallel0/ is the run folder
#    (config.yaml, metrics.jsonl, checkpoints/), train_parallel1/ holds rank 1's log only; a second
#    call refuses to overwrite the run (exit 2) and RESUME=1 continues it;
#  - run_standalone_train.sh DATA CONFIG: one process in ./train/ with train/log;
#  - run_eval.sh DATA CHECKPOINT: eval/log with the top-1 line and eval/result.json;
#  - wrong argument counts print the usage and exit 2; the _gpu variants exit 2 saying that the CUDA
#    backend is not built.
source "$(dirname "$0")/mpi_common.sh"
S=${MG_SOURCE_DIR:?}/scripts
export MG_BIN=$bin MG_THREADS=1
cat > "$tmp/tiny.yaml" <<'YAML'
arch: resnet18
num_classes: 3
input_size: 32
batch_size: 12
repeated_augmentations: 3
epoch_len_factor: 1
augmentation: torch
crop_scale_min: 0.5
lr: 0.002
workers: 1
epochs: 1
YAML
cd "$tmp" || fail "cd"

timeout -k 5 120 bash "$S/run_distribute_train.sh" "$tmp/data" 2 tiny.yaml >dist.out 2>&1 || { cat dist.out train_parallel*/log; fail "run_distribute_train.sh"; }
for f in train_parallel0/config.yaml train_parallel0/metrics.jsonl train_parallel0/log train_parallel1/log; do
  [ -f "$f" ] || fail "missing $f"
done
ck=$(ls train_parallel0/checkpoints/*.safetensors | tail -n1)
[ -n "$ck" ] || fail "no checkpoint in train_parallel0/checkpoints"
[ ! -e train_parallel1/checkpoints ] && [ ! -e train_parallel1/metrics.jsonl ] || fail "rank 1 wrote run files"
grep -q "train: 2 ranks (mpi)" train_parallel0/log || fail "rank 0 log: $(cat train_parallel0/log)"
grep -q "^epoch: 1 step: 4, loss is " train_parallel0/log || fail "no step lines in train_parallel0/log"
timeout -k 5 60 bash "$S/run_distribute_train.sh" "$tmp/data" 2 tiny.yaml >again.out 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "RESUME=1" again.out || { cat again.out; fail "a second run over train_parallel0: exit $rc"; }
RESUME=1 timeout -k 5 120 bash "$S/run_distribute_train.sh" "$tmp/data" 2 tiny.yaml >resume.out 2>&1 \
  || { cat resume.out; fail "RESUME=1"; }
grep -q "resuming from" train_parallel0/log || fail "RESUME=1 did not resume"

timeout -k 5 120 bash "$S/run_standalone_train.sh" "$tmp/data" tiny.yaml >alone.out 2>&1 || { cat alone.out; fail "run_standalone_train.sh"; }
grep -q "^epoch: 1 step: 4, loss is " train/log || fail "train/log: $(cat train/log)"
ls train/checkpoints/*.safetensors >/dev/null 2>&1 || fail "no checkpoint in train/checkpoints"

timeout -k 5 60 bash "$S/run_eval.sh" "$tmp/data" "$ck" >eval.out 2>&1 || { cat eval.out; fail "run_eval.sh"; }
grep -q "^top-1: " eval/log || fail "eval/log: $(cat eval/log)"
grep -q -- "--size 32" eval.out || fail "run_eval.sh did not take input_size 32 from the run's config.yaml"
"$py" -c "import json, sys; r = json.load(open('eval/result.json')); assert 'top1' in str(r) or 'top_1' in str(r), r" \
  || fail "eval/result.json: $(cat eval/result.json)"

for s in "run_standalone_train.sh" "run_distribute_train.sh $tmp/data" "run_eval.sh $tmp/data" \
         "run_standalone_train_gpu.sh" "run_distribute_train_gpu.sh" "run_eval_gpu.sh"; do
  # shellcheck disable=SC2086
  bash $S/$s >usage.out 2>&1; rc=$?
  [ $rc -eq 2 ] && grep -q "^usage: bash " usage.out || { cat usage.out; fail "$s: exit $rc, expected a usage message and 2"; }
done
bash "$S/run_eval_gpu.sh" "$tmp/data" "$ck" >gpu.out 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "CUDA backend is not built" gpu.out || { cat gpu.out; fail "run_eval_gpu.sh: exit $rc"; }
bash "$S/run_distribute_train_gpu.sh" "$tmp/data" 2 tiny.yaml >gpu.out 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "CUDA backend is not built" gpu.out || { cat gpu.out; fail "run_distribute_train_gpu.sh: exit $rc"; }
echo ok
