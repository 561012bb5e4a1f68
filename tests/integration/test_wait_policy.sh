#!/usr/bin/env bash
# test_wait_policy.sh: the OpenMP idle-thread setting each command line gets (runtime.h,
# src/cli/main.c command_wait), read back from `multigrain -v`'s debug line after the re-exec:
# inference commands spin briefly (GOMP_SPINCOUNT=10000), training and the rest sleep at once
# (OMP_WAIT_POLICY=PASSIVE), and a setting in the environment is kept as it is. Skips on a build
# without oneDNN (no OpenMP runtime to set, so no re-exec).
set -u
: "${MG_BIN:?}"
"$MG_BIN" --version | grep -q "oneDNN: yes" || { echo "SKIPPED: no oneDNN in this build"; exit 77; }
fails=0
check() { # expected setting, then the command line
    local want=$1; shift
    local got
    got=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u MG_NO_REEXEC "$MG_BIN" -v "$@" 2>&1 |
          sed -n 's/.*OpenMP idle threads: //p' | head -1)
    if [ "$got" != "$want" ]; then echo "FAIL: multigrain -v $*: expected '$want', found '$got'"; fails=1; fi
}
check GOMP_SPINCOUNT=10000 embed --help
check GOMP_SPINCOUNT=10000 eval --help
check GOMP_SPINCOUNT=10000 classify --help
check GOMP_SPINCOUNT=10000 tune-p --help
check GOMP_SPINCOUNT=10000 retrieval-eval --help
check GOMP_SPINCOUNT=10000 bench model --help
check OMP_WAIT_POLICY=PASSIVE bench model --mode train --help
check OMP_WAIT_POLICY=PASSIVE bench model --mode=train --help
check OMP_WAIT_POLICY=PASSIVE train --help
check OMP_WAIT_POLICY=PASSIVE search --help
check OMP_WAIT_POLICY=PASSIVE convert --help
# the user's own setting stays
got=$(env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=ACTIVE "$MG_BIN" -v embed --help 2>&1 | sed -n 's/.*OpenMP idle threads: //p')
[ "$got" = "OMP_WAIT_POLICY=ACTIVE" ] || { echo "FAIL: OMP_WAIT_POLICY=ACTIVE became '$got'"; fails=1; }
got=$(env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=5 "$MG_BIN" -v train --help 2>&1 | sed -n 's/.*OpenMP idle threads: //p')
[ "$got" = "GOMP_SPINCOUNT=5" ] || { echo "FAIL: GOMP_SPINCOUNT=5 became '$got'"; fails=1; }
[ $fails = 0 ] && echo "wait policy: ok"
exit $fails
