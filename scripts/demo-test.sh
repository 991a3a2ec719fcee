#!/usr/bin/env bash
# End-to-end test of scripts/demo.sh (run by `make test` and `make demo-test`, after
# `cargo build --bins`): in temporary state directories, so it never touches .sandbox/ and can
# run next to a `make demo`.
#  1. the demo succeeds: exit 0, Ready=True, controller metrics and the simulator's VM shown,
#     Ready within 90 Azure requests (the simulator's counts, tokens and metadata included),
#     no generated client secret in any log or in the output, every process stopped;
#  2. the demo fails cleanly: with a Ready timeout shorter than the first long-running
#     operation (the demo config holds each for 1.5 s) it exits 1, prints the logs' tails,
#     and stops every process too;
#  3. a run killed with SIGKILL (its trap never runs) leaves its processes; the next run in the
#     same directory stops them and succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

failures=0
passes=0
check() { # check DESCRIPTION CMD...
  local what=$1; shift
  if "$@"; then echo "ok   $what"; passes=$((passes + 1)); else echo "FAIL $what"; failures=$((failures + 1)); fi
}
has() { grep -qE -- "$2" "$1"; }
# An orphan that exited may stay a zombie until init reaps it: that counts as stopped.
running() { local state; state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ "$state" != Z ]; }
all_running() { local p; for p in "$@"; do running "$p" || return 1; done; }
none_running() { local p; for p in "$@"; do ! running "$p" || return 1; done; }
all_stopped() { # every pid the demo recorded is gone
  local pid _name
  while read -r pid _name; do
    if running "$pid"; then echo "  still running: $pid $_name"; return 1; fi
  done <"$1/pids"
  # Azurite is the simulator's child, not recorded: find anything still using the directory.
  if grep -lsF -- "$1/" /proc/[0-9]*/cmdline; then echo "  a process still uses $1"; return 1; fi
}
within_budget() { # within_budget OUTPUT MAX: the demo's "requests to Ready: N" is at most MAX
  local n
  n=$(sed -n 's/^requests to Ready: \([0-9][0-9]*\)$/\1/p' "$1")
  [ -n "$n" ] || { echo "  no request count in the output"; return 1; }
  [ "$n" -le "$2" ] || { echo "  $n requests to Ready"; return 1; }
}
no_secret_leaked() { # no client secret from the generated config in the logs or the output
  local dir=$1 out=$2 s
  local count=0
  while read -r s; do
    [ -n "$s" ] || return 1
    count=$((count + 1))
    if grep -qF -- "$s" "$dir"/*.log "$out"; then echo "  secret found in logs"; return 1; fi
  done < <(sed -n 's/^client_secret = "\(.*\)"$/\1/p' "$dir/azure.toml")
  [ "$count" -eq 2 ] || { echo "  expected 2 client secrets in azure.toml, found $count"; return 1; }
}

echo "demo-test: success path"
before=$failures
OK_DIR=$WORK/ok
rc=0
EDGETRAIN_DEMO_DIR=$OK_DIR scripts/demo.sh >"$WORK/ok.out" 2>&1 || rc=$?
check "demo exits 0" test "$rc" -eq 0
check "Ready=True among the conditions" has "$WORK/ok.out" $'^Ready\tTrue\tReady'
check "VMReady is True" has "$WORK/ok.out" $'^VMReady\tTrue'
check "ComputeAttached is True" has "$WORK/ok.out" $'^ComputeAttached\tTrue'
check "kubectl get edgetrain lists the target" has "$WORK/ok.out" '^edgetrain-demo +(edgecomputetarget\.edgetrain\.dev/)?factory-gpu-01 +True +Ready +Running'
check "controller metrics shown" has "$WORK/ok.out" '^edgetrain_reconciles_total\{kind="EdgeComputeTarget"\} [1-9]'
check "simulator inventory shows the VM, Succeeded" \
  has "$WORK/ok.out" '^Succeeded +/subscriptions/.*/Microsoft\.Compute/virtualMachines/edgetrain-demo-factory-gpu-01-vm$'
check "simulator inventory shows the attached compute" \
  has "$WORK/ok.out" '/workspaces/churn-ws/computes/factory-gpu-01$'
check "requests by verb shown" has "$WORK/ok.out" '^PUT +[1-9]'
check "Ready within 90 Azure requests (tokens and metadata included)" within_budget "$WORK/ok.out" 90
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
check "shows the target's conditions" has "$WORK/bad.out" '^conditions of ect/factory-gpu-01:$'
check "prints the controller log's tail" has "$WORK/bad.out" "last lines of $BAD_DIR/controller.log"
check "every process stopped" all_stopped "$BAD_DIR"
[ "$failures" -eq "$before" ] || { echo "--- demo output"; cat "$WORK/bad.out"; }

echo "demo-test: a run killed with SIGKILL leaves processes; the next run stops them"
before=$failures
KILL_DIR=$WORK/killed
EDGETRAIN_DEMO_DIR=$KILL_DIR EDGETRAIN_DEMO_KEEP=1 scripts/demo.sh >"$WORK/killed-1.out" 2>&1 &
first=$!
for _ in $(seq 600); do has "$WORK/killed-1.out" '^Ctrl-C stops everything' && break; sleep 0.2; done
kill -KILL "$first"
wait "$first" 2>/dev/null || true
mapfile -t left < <(awk '{print $1}' "$KILL_DIR/pids")
check "first run reached Ready" has "$WORK/killed-1.out" '^== demo OK'
check "first run recorded its 3 processes" test "${#left[@]}" -eq 3
check "first run left its processes running" all_running "${left[@]}"
rc=0
EDGETRAIN_DEMO_DIR=$KILL_DIR scripts/demo.sh >"$WORK/killed-2.out" 2>&1 || rc=$?
check "second run exits 0" test "$rc" -eq 0
check "second run says it stopped the leftovers" has "$WORK/killed-2.out" '^stopping controller \(pid [0-9]+\) left over'
check "no leftover survives" none_running "${left[@]}"
check "every process stopped" all_stopped "$KILL_DIR"
[ "$failures" -eq "$before" ] || { echo "--- outputs"; cat "$WORK/killed-1.out" "$WORK/killed-2.out"; }

# The plain closing line CI reads: "N passed, N failed".
echo "demo-test: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
