#!/usr/bin/env bash
# run_scaling.sh: data-parallel scaling on this machine (docs/PERFORMANCE.md, "Data-parallel training"):
# ResNet-50 training images/s with 1 and 2 ranks (one thread each, --batch images per rank at 224x224,
# random data, per-rank BN and sampling: the recipe's defaults), the time per step spent in
# collectives (polled non-blocking collectives with the default dist_timeout, and blocking ones with
# dist_timeout 0), and the all-reduce time of ResNet-50's 25,557,032 gradients for a few bucket sizes.
# Usage: bench/run_scaling.sh [BUILD_DIR] [BATCH_PER_RANK] [STEPS]   (defaults: build-mpi 8 4; ~2 min)
set -eu
build=${1:-build-mpi}; batch=${2:-8}; steps=${3:-4}
bench=$build/bench_dist
[ -x "$bench" ] || { echo "run_scaling.sh: $bench not found (cmake --build $build)" >&2; exit 2; }
"$build/multigrain" --version | grep -q "^MPI: yes" || { echo "run_scaling.sh: $build has no MPI" >&2; exit 2; }
mpi=(mpirun --bind-to none)
if [ "$(id -u)" = 0 ]; then mpi+=(--allow-run-as-root); fi
[ "$(nproc)" -ge 2 ] || mpi+=(--oversubscribe)
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(mpirun --version | head -n1), OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-default}"
set -x
"$bench" --mode train --arch resnet50 --batch "$batch" --size 224 --steps "$steps" --threads 1
"${mpi[@]}" -np 2 "$bench" --mode train --arch resnet50 --batch "$batch" --size 224 --steps "$steps" --threads 1
"${mpi[@]}" -np 2 "$bench" --mode train --arch resnet50 --batch "$batch" --size 224 --steps "$steps" --threads 1 --timeout 0
for mb in 25 4 100; do
  "${mpi[@]}" -np 2 "$bench" --mode allreduce --floats 25557032 --reps 10 --bucket-mb $mb
done
"${mpi[@]}" -np 2 "$bench" --mode allreduce --floats 25557032 --reps 10 --timeout 0
set +x
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
