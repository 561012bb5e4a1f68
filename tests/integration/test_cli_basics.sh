#!/usr/bin/env bash
# test_cli_basics.sh: the CLI contract: help, version, unknown commands/options and bad numbers
# exit 2 with one clear line naming what was wrong; unwritten commands exit non-zero.
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
bin=${MG_BIN:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"$bin" --help >"$tmp/out" 2>&1 || fail "--help exited non-zero"
for c in train eval embed classify search whiten tune-p retrieval-eval convert report bench; do
  grep -q "^  $c " "$tmp/out" || fail "--help does not list '$c'"
  "$bin" "$c" --help >/dev/null 2>&1 || fail "'$c --help' exited non-zero"
done
"$bin" --version | grep -q '^multigrain [0-9]' || fail "--version"

"$bin" frobnicate >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "frobnicate: exit $rc, expected 2"
[ "$(head -n1 "$tmp/err")" = "multigrain: unknown command 'frobnicate'" ] || fail "frobnicate message: $(head -n1 "$tmp/err")"
grep -q '^usage: multigrain' "$tmp/err" || fail "frobnicate: no usage on stderr"

"$bin" train --batch-size banana >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "--batch-size banana: exit $rc, expected 2"
head -n1 "$tmp/err" | grep -q -- "--batch-size.*'banana'" || fail "banana message: $(head -n1 "$tmp/err")"

"$bin" train --batch-size 0 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "--batch-size 0: exit $rc"
"$bin" train --no-such-option 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "unknown option: exit $rc"
head -n1 "$tmp/err" | grep -q "unknown option '--no-such-option'" || fail "unknown option message: $(head -n1 "$tmp/err")"
"$bin" train --config 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "missing value: exit $rc"
head -n1 "$tmp/err" | grep -q "needs a value" || fail "missing value message"
"$bin" --bogus-global 2>/dev/null; [ $? -eq 2 ] || fail "unknown global option"
"$bin" 2>/dev/null; [ $? -eq 2 ] || fail "no command"
echo "cli basics: ok"
