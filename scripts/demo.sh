#!/usr/bin/env bash
# `make demo`: start the sandbox (Kubernetes API server + Azure simulator) on this machine,
# apply a demo EdgeComputeTarget with kubectl, run the real controller against both, and show
# the target reaching Ready. Exits 0 only if it did; on failure prints the logs' tails, exits 1.
# Everything it starts is stopped on exit. Binaries come from `cargo build --bins`.
#
# Environment (all optional):
#   EDGETRAIN_DEMO_DIR      state directory, wiped first (default: .sandbox)
#   EDGETRAIN_DEMO_TIMEOUT  how long to wait for Ready (kubectl duration, default 120s)
#   EDGETRAIN_DEMO_KEEP=1   keep everything running after success until Ctrl-C
#   EDGETRAIN_BIN_DIR       where the binaries are (default: ${CARGO_TARGET_DIR:-target}/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO_DIR=${EDGETRAIN_DEMO_DIR:-$ROOT/.sandbox}
TIMEOUT=${EDGETRAIN_DEMO_TIMEOUT:-120s}
BIN_DIR=${EDGETRAIN_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
TEMPLATES=$ROOT/scripts/demo
NAMESPACE=edgetrain-demo
TARGET=factory-gpu-01
# How long each sandbox process gets to answer after it starts (Azurite's first start is slow).
START_SECONDS=60

SANDBOX=$BIN_DIR/edgetrain-sandbox
CONTROLLER=$BIN_DIR/edgetrain-controller
for bin in "$SANDBOX" "$CONTROLLER"; do
  [ -x "$bin" ] || { echo "demo: $bin not found; run 'cargo build --bins' first (make demo does)" >&2; exit 1; }
done
for tool in kubectl curl python3; do
  command -v "$tool" >/dev/null || { echo "demo: '$tool' is not on PATH; run 'make tools'" >&2; exit 1; }
done

if [ -t 1 ]; then
  say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  say() { printf '\n== %s\n' "$*"; }
fi
KUBECONFIG_FILE=$DEMO_DIR/kubeconfig
k() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# --- processes: recorded, stopped on exit -------------------------------------------------
PIDS=()
NAMES=()
start() { # start NAME CMD...: run in the background, output to $DEMO_DIR/NAME.log
  local name=$1; shift
  NO_COLOR=1 "$@" >"$DEMO_DIR/$name.log" 2>&1 &
  PIDS+=("$!"); NAMES+=("$name")
  echo "$! $name" >>"$DEMO_DIR/pids"
  echo "started $name (pid $!), log $DEMO_DIR/$name.log"
}
stop_all() {
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    # SIGTERM lets the simulator stop Azurite and its jobs; force only if it hangs.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Not our children any more, so nobody here reaps them: an exited one may linger as a zombie.
running() { local state; state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ "$state" != Z ]; }

# A run killed with SIGKILL never ran its trap: stop what it recorded before wiping its state,
# but only processes that are still our binaries (a pid may have been reused since).
stop_leftovers() {
  [ -f "$DEMO_DIR/pids" ] || return 0
  local pid name exe sandbox controller
  sandbox=$(readlink -f "$SANDBOX")
  controller=$(readlink -f "$CONTROLLER")
  while read -r pid name; do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    # A binary rebuilt since shows as "PATH (deleted)".
    case "${exe% (deleted)}" in
      "$sandbox" | "$controller")
        echo "stopping $name (pid $pid) left over from an earlier run"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
        if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        ;;
    esac
  done <"$DEMO_DIR/pids"
}

fail() {
  echo >&2
  echo "demo FAILED: $*" >&2
  local log
  for log in "$DEMO_DIR"/*.log; do
    [ -e "$log" ] || continue
    echo "--- last lines of $log" >&2
    tail -n 25 "$log" >&2
  done
  exit 1
}

alive() { # alive NAME: fail when the named process has exited
  local i
  for i in "${!NAMES[@]}"; do
    if [ "${NAMES[i]}" = "$1" ] && ! kill -0 "${PIDS[i]}" 2>/dev/null; then
      fail "$1 exited early"
    fi
  done
}

wait_until() { # wait_until NAME SECONDS CMD...: retry CMD while NAME runs
  local name=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    alive "$name"
    [ $SECONDS -lt $deadline ] || fail "$name did not answer within ${seconds}s"
    sleep 0.2
  done
}

# --- 1. fresh state, the two sandbox servers ----------------------------------------------
say "sandbox in $DEMO_DIR"
stop_leftovers
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR/azure"
chmod 700 "$DEMO_DIR"   # generated files hold the demo's client secrets

secret() { head -c 24 /dev/urandom | base64 | tr -d '+/=\n'; }
TENANT_ID=72f988bf-86f1-41af-91ab-2d7cd011db47
STACKHUB_SUBSCRIPTION=11111111-2222-3333-4444-555555555555
AZUREML_SUBSCRIPTION=66666666-7777-8888-9999-000000000000
CLIENT_SECRET_STACKHUB=$(secret)
CLIENT_SECRET_AZUREML=$(secret)
AZURE_URL=
render() { # render TEMPLATE OUT: fill in the @NAME@ placeholders
  sed -e "s|@TENANT_ID@|$TENANT_ID|g" \
      -e "s|@STACKHUB_SUBSCRIPTION@|$STACKHUB_SUBSCRIPTION|g" \
      -e "s|@AZUREML_SUBSCRIPTION@|$AZUREML_SUBSCRIPTION|g" \
      -e "s|@CLIENT_SECRET_STACKHUB@|$CLIENT_SECRET_STACKHUB|g" \
      -e "s|@CLIENT_SECRET_AZUREML@|$CLIENT_SECRET_AZUREML|g" \
      -e "s|@AZURE_URL@|$AZURE_URL|g" "$1" >"$2"
  if grep -n '@[A-Z_]*@' "$2"; then fail "unfilled placeholder in $2"; fi
}
render "$TEMPLATES/sandbox-azure.toml.in" "$DEMO_DIR/azure.toml"

start kube-api "$SANDBOX" kube-api --listen 127.0.0.1:0 \
  --kubeconfig "$KUBECONFIG_FILE" --crds "$ROOT/crds"
start azure "$SANDBOX" azure --listen 127.0.0.1:0 \
  --state-dir "$DEMO_DIR/azure" --config "$DEMO_DIR/azure.toml"

wait_until kube-api "$START_SECONDS" k get --raw /version
echo "Kubernetes API: $(k config view -o jsonpath='{.clusters[0].cluster.server}')"
# The simulator writes its URL to <state-dir>/endpoint once it serves.
wait_until azure "$START_SECONDS" test -s "$DEMO_DIR/azure/endpoint"
AZURE_URL=$(head -n 1 "$DEMO_DIR/azure/endpoint")
wait_until azure "$START_SECONDS" curl -sf "$AZURE_URL/metadata/endpoints?api-version=2015-01-01"
echo "Azure simulator: $AZURE_URL"

# --- 2. CRDs, the target and its credentials, with the real kubectl -----------------------
say "kubectl apply"
render "$TEMPLATES/credentials.yaml.in" "$DEMO_DIR/credentials.yaml"
render "$TEMPLATES/edgecomputetarget.yaml.in" "$DEMO_DIR/edgecomputetarget.yaml"
# They were registered at start (field manager sandbox-kube-register); applying the same
# manifests server-side makes kubectl a co-owner, without conflicts.
k apply --server-side -f "$ROOT/crds" || fail "kubectl apply -f crds failed"
k apply -f "$ROOT/examples/namespace.yaml" || fail "kubectl apply namespace failed"
k apply -f "$DEMO_DIR/credentials.yaml" || fail "kubectl apply credentials failed"
k apply -f "$DEMO_DIR/edgecomputetarget.yaml" || fail "kubectl apply EdgeComputeTarget failed"

# --- 3. the controller ----------------------------------------------------------------------
say "edgetrain-controller"
start controller env KUBECONFIG="$KUBECONFIG_FILE" POD_NAMESPACE=default POD_NAME=edgetrain-demo \
  RUST_LOG="${RUST_LOG:-info}" "$CONTROLLER" --metrics-addr 127.0.0.1:0 \
  --allowed-arm-endpoints "$AZURE_URL" --allowed-authorities "$AZURE_URL"
# Port 0 avoids racing for a free port; the controller logs the address it bound.
metrics_line() { grep -m 1 'serving /metrics' "$DEMO_DIR/controller.log"; }
wait_until controller 30 metrics_line
METRICS_URL=http://$(metrics_line | grep -oE '127\.0\.0\.1:[0-9]+' | head -n 1)
[ "$METRICS_URL" != http:// ] || fail "no metrics address in the controller log"
wait_until controller 30 curl -sf "$METRICS_URL/readyz"
echo "metrics: $METRICS_URL/metrics"

say "kubectl wait --for=condition=Ready ect/$TARGET (timeout $TIMEOUT)"
k get ect -n "$NAMESPACE" "$TARGET" -o wide || fail "kubectl get ect failed"
conditions() {
  k get ect "$TARGET" -n "$NAMESPACE" -o jsonpath='{range .status.conditions[*]}{.type}{"\t"}{.status}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}'
}
if ! k wait --for=condition=Ready "ect/$TARGET" -n "$NAMESPACE" --timeout="$TIMEOUT"; then
  echo "conditions of ect/$TARGET:" >&2
  conditions >&2 || true
  fail "ect/$TARGET did not become Ready within $TIMEOUT"
fi
# Read at once: the budget is what it took to reach Ready, before later resyncs add to it.
requests_at_ready=$(curl -sf "$AZURE_URL/_sandbox/requests") || fail "cannot read the simulator's request counts"

say "kubectl get edgetrain -A -o wide"
k get edgetrain -A -o wide || fail "kubectl get edgetrain failed"
say "conditions of ect/$TARGET"
conditions || fail "kubectl get ect -o jsonpath failed"
say "kubectl get events -n $NAMESPACE"
k get events -n "$NAMESPACE" || fail "kubectl get events failed"
say "metrics (edgetrain_*)"
curl -sf "$METRICS_URL/metrics" | grep '^edgetrain_' | grep -v '_bucket{' || fail "no edgetrain_ metrics"
say "Azure simulator inventory ($AZURE_URL/_sandbox/inventory)"
curl -sf "$AZURE_URL/_sandbox/inventory" | python3 -c '
import json, sys
for item in json.load(sys.stdin):
    print("%-10s %s" % (item.get("provisioning_state") or "-", item["id"]))
' || fail "cannot read the simulator inventory"
say "Azure requests by verb until ect/$TARGET was Ready ($AZURE_URL/_sandbox/requests)"
printf '%s' "$requests_at_ready" | python3 -c '
import json, sys
counts = json.load(sys.stdin)
for verb, n in counts.items():
    if verb not in ("total", "by_kind"):
        print("%-7s %d" % (verb, n))
print("requests to Ready: %d" % counts["total"])
' || fail "cannot read the simulator's request counts"

say "demo OK: ect/$TARGET is Ready"
if [ "${EDGETRAIN_DEMO_KEEP:-0}" = 1 ]; then
  echo "Still running. In another shell: export KUBECONFIG=$KUBECONFIG_FILE; kubectl get edgetrain -A"
  echo "Ctrl-C stops everything."
  trap 'exit 0' INT TERM
  wait
fi
