# mg_launch_common.sh: sourced by the run_*.sh launch scripts (not run on its own): finds the
# multigrain program and prepares OpenMPI's launcher for this machine.
#   MG_BIN       the program (default: build/multigrain of this checkout, else multigrain on PATH)
#   MG_MPIRUN    the launcher (default mpirun)
#   MG_THREADS   compute threads per process (default: the cores divided among the processes)
mg_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mg_die() { echo "$(basename "$0"): $*" >&2; exit "${MG_EXIT:-1}"; }
mg_abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

mg_find_bin() {
  if [ -n "${MG_BIN:-}" ]; then bin=$(mg_abs "$MG_BIN")
  elif [ -x "$mg_repo/build/multigrain" ]; then bin=$mg_repo/build/multigrain
  else bin=$(command -v multigrain || true)
  fi
  [ -n "$bin" ] && [ -x "$bin" ] || mg_die "multigrain not found: run 'make' in $mg_repo or set MG_BIN"
}

# mpi=(mpirun ...) for N processes on this machine: as root OpenMPI needs --allow-run-as-root;
# more processes than cores need --oversubscribe; no core binding (each process runs a thread pool);
# ptrace-restricted machines (containers, Yama ptrace_scope >= 1) cannot use the shared-memory
# single-copy mechanism (CMA), so it is turned off there unless the user chose one.
mg_mpirun() {
  local n=$1
  command -v "${MG_MPIRUN:-mpirun}" >/dev/null 2>&1 || mg_die "${MG_MPIRUN:-mpirun} not found: install openmpi-bin (scripts/install-deps.sh)"
  "$bin" --version | grep -q "^MPI: yes" \
    || mg_die "$bin was built without MPI: install libopenmpi-dev and rebuild (cmake -DMG_MPI=ON)"
  mpi=("${MG_MPIRUN:-mpirun}" -np "$n" --bind-to none)
  if [ "$(id -u)" = 0 ]; then
    mpi+=(--allow-run-as-root)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
  [ "$n" -le "$(nproc)" ] || mpi+=(--oversubscribe)
  local scope=/proc/sys/kernel/yama/ptrace_scope
  if [ -z "${OMPI_MCA_btl_vader_single_copy_mechanism:-}" ] && [ -r $scope ] && [ "$(cat $scope)" != 0 ]; then
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
  fi
}

# threads per process: the cores shared among n processes (at least 1)
mg_threads() { local t=$(( $(nproc) / $1 )); echo "${MG_THREADS:-$(( t > 0 ? t : 1 ))}"; }
