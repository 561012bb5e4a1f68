# mpi_common.sh: sourced by tests/mpi/test_*.sh (not a test itself). Skips (exit 77) when this build
# has no MPI or mpirun/numpy/PIL are missing; sets up the launcher for containers and root; makes the
# tiny generated dataset of the training tests; provides run_mpi and the common training options.
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
bin=${MG_BIN:?}; py=${MG_PYTHON:-/usr/bin/python3}
case "$bin" in /*) ;; *) bin=$PWD/$bin ;; esac
if ! "$bin" --version | grep -q "^MPI: yes"; then
  echo "SKIPPED: this multigrain was built without MPI (MG_MPI=OFF or libopenmpi-dev missing at configure time)"
  exit 77
fi
command -v mpirun >/dev/null 2>&1 || { echo "SKIPPED: mpirun not found (install openmpi-bin)"; exit 77; }
"$py" -c "import numpy, PIL" 2>/dev/null || { echo "SKIPPED: no numpy/PIL for $py"; exit 77; }

# OpenMPI refuses to start as root without these; --oversubscribe lets 2 ranks share fewer cores;
# no core binding (the machine is shared); the vader single-copy mechanism (CMA, ptrace) is often
# forbidden in containers; one machine needs only the shared-memory transport (ob1 + self,vader: no
# probing of network devices or UCX, which print warnings or fail in containers).
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
MPIRUN=(mpirun --oversubscribe --bind-to none)
if [ "$(id -u)" = 0 ]; then
  MPIRUN+=(--allow-run-as-root)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# run_mpi SECONDS ARGS...: mpirun under a hard time limit (a hang is a failure, never a stuck CI job)
run_mpi() { local t=$1; shift; timeout -k 5 "$t" "${MPIRUN[@]}" "$@"; }

tmp=$(mktemp -d "${MG_TEST_TMP:-/tmp}/mpi.XXXXXX"); [ -n "${MG_KEEP_TMP:-}" ] || trap 'rm -rf "$tmp"' EXIT

# 3 classes x 16 train / 4 val images of 36x36 (tests/common/gen_color_images.py)
"$py" "${MG_SOURCE_DIR:?}/tests/common/gen_color_images.py" "$tmp/data" || fail "generator"

# ResNet-18 at 32x32, global batch 12 = 4 images x m = 3 copies, 4 batches per epoch, one thread per
# rank, a small lr (the comparisons are over a few steps: see test_equivalence.sh).
common=(--data "$tmp/data" --set arch=resnet18 --set num_classes=3 --set input_size=32 --batch-size 12
        --set repeated_augmentations=3 --set epoch_len_factor=1 --set augmentation=torch --set crop_scale_min=0.5
        --lr 0.002 --set workers=1 --set log_every_steps=1 --set eval_every_epochs=1 --set save_checkpoint_epochs=1
        --seed 3 --threads 1)
oracle=${MG_SOURCE_DIR:?}/tests/oracle
