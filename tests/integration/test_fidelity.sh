#!/usr/bin/env bash
# test_fidelity.sh: step-for-step fidelity of training with PyTorch (issue 5, "as llm.c proves itself").
# tests/oracle/fidelity_torch.py writes initial ResNet-18 + GeM weights and 20 batches (4 instances x
# m = 3 differently augmented copies, 36x36); tool_fidelity trains 20 steps of the whole recipe (joint loss
# λ = 0.5, our distance-weighted sampler, learnable β, SGD with momentum and weight decay, linear schedule
# with warm-up) and writes its losses, lr, β, sampled triplets and its full state before every step; the
# script then starts PyTorch from our state at every step, with our triplets, and compares the loss (1e-4
# relative) and the state after the step (weights, momentum, BN statistics, β), and replays the two
# trajectories independently (reported). See docs/testing.md, "Step-for-step fidelity".
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
py=${MG_PYTHON:-/usr/bin/python3}
tool=${MG_BUILD_DIR:?}/tests/tool_fidelity
src=${MG_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
"$py" -c "import torch, torchvision, numpy" 2>/dev/null || { echo "SKIPPED: no torch"; exit 77; }
[ -x "$tool" ] || fail "$tool is not built"
tmp=$(mktemp -d "${MG_TEST_TMP:-/tmp}/fidelity.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
export MG_FIDELITY_THREADS=${MG_FIDELITY_THREADS:-2} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONDONTWRITEBYTECODE=1

"$py" "$src/tests/oracle/fidelity_torch.py" gen "$tmp" || fail "generator"
mkdir -p "$tmp/state"
"$tool" "$tmp/input.safetensors" "$tmp/c_out.safetensors" "$tmp/state" > "$tmp/c.log" \
  || { cat "$tmp/c.log"; fail "tool_fidelity"; }
"$py" "$src/tests/oracle/fidelity_torch.py" check "$tmp" || fail "training differs from the PyTorch reference"
