#!/usr/bin/env bash
# test_install_deps.sh: scripts/install-deps.sh against fake dpkg-query, apt-get and id commands on a
# PATH of their own (nothing is installed, no network): which packages each mode finds missing,
# node and npm found by command for --bench, --print installing nothing, an install running
# "apt-get update" then one "apt-get install" of exactly the missing packages, nothing run when
# nothing is missing, and an unknown option refused with exit 2.
set -euo pipefail
: "${MG_SOURCE_DIR:?}" "${MG_TEST_TMP:?}"
dir=$MG_TEST_TMP/install_deps_$$
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin"
script=$MG_SOURCE_DIR/scripts/install-deps.sh
bash=$(command -v bash)
grep=$(command -v grep)
ln -s "$grep" "$dir/bin/grep"
# dpkg-query -W -f='${Status}' PKG: installed unless PKG is listed in $dir/missing
cat > "$dir/bin/dpkg-query" <<EOF
#!$bash
pkg=\${!#}
if $grep -qx "\$pkg" "$dir/missing"; then exit 1; fi
printf 'install ok installed'
EOF
# apt-get and id: log the calls, act as root
printf '#!%s\necho "apt-get $*" >> "%s/apt.log"\n' "$bash" "$dir" > "$dir/bin/apt-get"
printf '#!%s\necho 0\n' "$bash" > "$dir/bin/id"
chmod +x "$dir/bin/dpkg-query" "$dir/bin/apt-get" "$dir/bin/id"
run() { env -i PATH="$dir/bin" "$bash" "$script" "$@"; }

# everything installed, node and npm on PATH: nothing missing, nothing run
printf '#!%s\n' "$bash" > "$dir/bin/node"
cp "$dir/bin/node" "$dir/bin/npm"
chmod +x "$dir/bin/node" "$dir/bin/npm"
: > "$dir/missing"
[ -z "$(run --bench --print)" ]
run --bench
[ ! -e "$dir/apt.log" ]

# two packages missing and no node or npm
printf 'python3-torch\ntime\n' > "$dir/missing"
rm "$dir/bin/node" "$dir/bin/npm"
[ "$(run --bench --print)" = "$(printf 'python3-torch\ntime\nnodejs\nnpm')" ]
[ "$(run --print --test)" = python3-torch ] # option order does not matter
[ -z "$(run --build --print)" ]              # neither is a build package; node is --bench's only
[ ! -e "$dir/apt.log" ]                      # --print installs nothing
# node from elsewhere (NodeSource ships npm with it): only what is still missing
printf '#!%s\n' "$bash" > "$dir/bin/node"
chmod +x "$dir/bin/node"
[ "$(run --bench --print)" = "$(printf 'python3-torch\ntime\nnpm')" ]

# an install: one update, one install of exactly the missing packages
run --bench > "$dir/out"
grep -qxF 'install-deps: installing python3-torch time npm' "$dir/out"
[ "$(cat "$dir/apt.log")" = "$(printf 'apt-get update -qq\napt-get install -y -qq --no-install-recommends python3-torch time npm')" ]

# an unknown option: exit 2 and a line naming it
set +e
err=$(run --bogus 2>&1 >/dev/null)
rc=$?
set -e
[ "$rc" = 2 ]
echo "$err" | grep -qF "unknown option '--bogus'"
echo "install-deps: all checks passed"
