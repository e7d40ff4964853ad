#!/usr/bin/env bash
# Runs every suite and ends with one line: "tests: N passed, N failed, N skipped".
#   fast suite   test/server test/ignition   (pure code, seconds)
#   net suite    test/net                    (real clients, namespaces, daemons, VMs; skips
#                                             with a printed reason where root or a tool is missing)
# Pass suite directories to run only those: scripts/test.sh test/server
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

suite() {
  local name=$1; shift
  echo "== $name: $*"
  npx tap --reporter=tap --disable-coverage "$@" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

if [ $# -gt 0 ]; then
  suite selected "$@"
else
  suite fast --jobs=2 test/server test/ignition
  # One file at a time: these start daemons and VMs on a 2-core machine.
  [ -d test/net ] && suite net --jobs=1 --timeout=900 test/net
fi

awk '/^# \{ total: / {
       for (i = 1; i <= NF; i++) { gsub(/[,{}]/, "", $i); if ($i ~ /:$/) { k = $i; sub(/:$/, "", k); v[k] += $(i+1) } }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", v["pass"], v["fail"], v["skip"] + v["todo"] }' "$log"
exit $status
