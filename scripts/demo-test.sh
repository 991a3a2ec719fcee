#!/usr/bin/env bash
# End-to-end test of scripts/demo.sh (run by `make test` and `make demo-test`, after
# `cargo build --bins`): in temporary state directories, so it never touches .sandbox/ and can
# run next to a `make demo`.
#  1. the demo succeeds: exit 0, Ready=True, controller metrics and the simulator's VM shown,
#     no generated client secret in any log or in the output, every process stopped;
#  2. the demo fails cleanly: with a Ready timeout shorter than the first long-running
#     operation (the demo config holds each for 1.5 s) it exits 1, prints the logs' tails,
#     and stops every process too.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

failures=0
check() { # check DESCRIPTION CMD...
  local what=$1; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; failures=$((failures + 1)); fi
}
has() { grep -qE -- "$2" "$1"; }
all_stopped() { # every pid the demo recorded is gone
  local pid _name
  while read -r pid _name; do
    if kill -0 "$pid" 2>/dev/null; then echo "  still running: $pid $_name"; return 1; fi
  done <"$1/pids"
}
no_secret_leaked() { # no client secret from the generated config in the logs or the output
  local dir=$1 out=$2 s
  for s in $(sed -n 's/^client_secret = "\(.*\)"$/\1/p' "$dir/azure.toml"); do
    [ -n "$s" ] || return 1
    if grep -rqF -- "$s" "$dir"/*.log "$out"; then echo "  secret found in logs"; return 1; fi
  done
}

echo "demo-test: success path"
before=$failures
OK_DIR=$WORK/ok
rc=0
EDGETRAIN_DEMO_DIR=$OK_DIR scripts/demo.sh >"$WORK/ok.out" 2>&1 || rc=$?
check "demo exits 0" test "$rc" -eq 0
check "Ready=True among the conditions" has "$WORK/ok.out" $'^Ready\tTrue\tReady'
check "VMReady and ComputeAttached are True" \
  bash -c "grep -qP '^VMReady\tTrue' '$WORK/ok.out' && grep -qP '^ComputeAttached\tTrue' '$WORK/ok.out'"
check "kubectl get edgetrain lists the target" has "$WORK/ok.out" '^edgetrain-demo +(edgecomputetarget\.edgetrain\.dev/)?factory-gpu-01 +True +Ready +Running'
check "controller metrics shown" has "$WORK/ok.out" '^edgetrain_reconciles_total\{kind="EdgeComputeTarget"\} [1-9]'
check "simulator inventory shows the VM, Succeeded" \
  has "$WORK/ok.out" '^Succeeded +/subscriptions/.*/Microsoft\.Compute/virtualMachines/edgetrain-demo-factory-gpu-01-vm$'
check "simulator inventory shows the attached compute" \
  has "$WORK/ok.out" '/workspaces/churn-ws/computes/factory-gpu-01$'
check "no client secret in logs or output" no_secret_leaked "$OK_DIR" "$WORK/ok.out"
check "every process stopped" all_stopped "$OK_DIR"
[ "$failures" -eq "$before" ] || { echo "--- demo output"; cat "$WORK/ok.out"; }

echo "demo-test: failure path"
before=$failures
BAD_DIR=$WORK/bad
rc=0
EDGETRAIN_DEMO_DIR=$BAD_DIR EDGETRAIN_DEMO_TIMEOUT=1s scripts/demo.sh >"$WORK/bad.out" 2>&1 || rc=$?
check "demo exits 1" test "$rc" -eq 1
check "says why" has "$WORK/bad.out" 'demo FAILED: ect/factory-gpu-01 did not become Ready within 1s'
check "prints the controller log's tail" has "$WORK/bad.out" "last lines of $BAD_DIR/controller.log"
check "every process stopped" all_stopped "$BAD_DIR"
[ "$failures" -eq "$before" ] || { echo "--- demo output"; cat "$WORK/bad.out"; }

if [ "$failures" -gt 0 ]; then
  echo "demo-test: $failures check(s) failed"
  exit 1
fi
echo "demo-test: all checks passed"
