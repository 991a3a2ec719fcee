#!/usr/bin/env bash
# `make demo`: the whole pattern on this machine. Starts the sandbox (Kubernetes API server;
# Azure simulator with Azurite and a token-auth container registry), uploads the example churn
# data set into the simulated Stack Hub storage, runs the real controller, and applies
# examples/ with kubectl (only endpoints and credentials filled in, by the kustomize overlay
# scripts/demo/kustomization.yaml.in): EdgeComputeTarget -> TrainingRun (examples/training/
# train.py) -> ModelRelease. Prints one line per change of a resource's phase or Ready reason,
# then a summary, also written to $DEMO_DIR/summary.json. Exits 0 only if all three reached
# Ready; on failure prints the logs' tails, exits 1. Everything it starts is stopped on exit;
# the registry's storage stays in $DEMO_DIR. Binaries come from `cargo build --bins`.
#
# Environment (all optional):
#   EDGETRAIN_DEMO_DIR      state directory, wiped first (default: target/demo)
#   EDGETRAIN_DEMO_TIMEOUT  how long all three get to be Ready (seconds, `s` allowed; default 600s)
#   EDGETRAIN_DEMO_KEEP=1   keep everything running after success until Ctrl-C
#   EDGETRAIN_BIN_DIR       where the binaries are (default: ${CARGO_TARGET_DIR:-target}/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO_DIR=${EDGETRAIN_DEMO_DIR:-$ROOT/target/demo}
TIMEOUT=${EDGETRAIN_DEMO_TIMEOUT:-600s}
TIMEOUT_SECONDS=${TIMEOUT%s}
case "$TIMEOUT_SECONDS" in
  '' | *[!0-9]*) echo "demo: EDGETRAIN_DEMO_TIMEOUT=$TIMEOUT is not a number of seconds" >&2; exit 1 ;;
esac
BIN_DIR=${EDGETRAIN_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
TEMPLATES=$ROOT/scripts/demo
# The names examples/ uses.
NAMESPACE=edgetrain-demo
TARGET=factory-gpu-01
RUN=churn-2026-11
RELEASE=churn-2026-11
DATA_CONTAINER=telemetry
DATA_PREFIX=churn/2026-11/
# How long each sandbox process gets to answer after it starts (Azurite's first start is slow).
START_SECONDS=60

SANDBOX=$BIN_DIR/edgetrain-sandbox
CONTROLLER=$BIN_DIR/edgetrain-controller
for bin in "$SANDBOX" "$CONTROLLER"; do
  [ -x "$bin" ] || { echo "demo: $bin not found; run 'cargo build --bins' first (make demo does)" >&2; exit 1; }
done
for tool in kubectl curl python3 sed; do
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
umask 077
TENANT_ID=72f988bf-86f1-41af-91ab-2d7cd011db47
STACKHUB_SUBSCRIPTION=11111111-2222-3333-4444-555555555555
AZUREML_SUBSCRIPTION=66666666-7777-8888-9999-000000000000
CLIENT_SECRET_STACKHUB=$(secret)
CLIENT_SECRET_AZUREML=$(secret)
# A storage account key is 64 random bytes, base64.
STORAGE_KEY=$(head -c 64 /dev/urandom | base64 -w 0)
REGISTRY_PASSWORD=$(secret)
# For the skopeo commands of the summary, which read it from here instead of showing it.
printf '%s' "$REGISTRY_PASSWORD" >"$DEMO_DIR/registry-password"
# Known once the simulator serves (from its sandbox.json).
AZURE_URL= DATA_ENDPOINT= REGISTRY= BASE_REPOSITORY= BASE_DIGEST= EXAMPLES=
render() { # render TEMPLATE OUT: fill in the @NAME@ placeholders
  sed -e "s|@TENANT_ID@|$TENANT_ID|g" \
      -e "s|@STACKHUB_SUBSCRIPTION@|$STACKHUB_SUBSCRIPTION|g" \
      -e "s|@AZUREML_SUBSCRIPTION@|$AZUREML_SUBSCRIPTION|g" \
      -e "s|@CLIENT_SECRET_STACKHUB@|$CLIENT_SECRET_STACKHUB|g" \
      -e "s|@CLIENT_SECRET_AZUREML@|$CLIENT_SECRET_AZUREML|g" \
      -e "s|@STORAGE_KEY@|$STORAGE_KEY|g" \
      -e "s|@REGISTRY_PASSWORD@|$REGISTRY_PASSWORD|g" \
      -e "s|@AZURE_URL@|$AZURE_URL|g" \
      -e "s|@DATA_ENDPOINT@|$DATA_ENDPOINT|g" \
      -e "s|@REGISTRY@|$REGISTRY|g" \
      -e "s|@BASE_REPOSITORY@|$BASE_REPOSITORY|g" \
      -e "s|@BASE_DIGEST@|$BASE_DIGEST|g" \
      -e "s|@EXAMPLES@|$EXAMPLES|g" "$1" >"$2"
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
# Where Azurite, its CA, the blob proxy and the registry are (written before the endpoint).
INFO=$DEMO_DIR/azure/sandbox.json
info() { python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$INFO" "$1"; }
SANDBOX_CA=$(info storage.caPemPath) || fail "no storage in $INFO (azurite = false?)"
DATA_ENDPOINT=$(info storage.pathStyle)/$(info storage.stackHubAccount)
BLOB_PROXY=$(info blobProxy)
REGISTRY=$(info registry.host) || fail "no registry in $INFO (registry.enabled = false?)"
REGISTRY_CERT_DIR=$(info registry.certDir)
BASE_REPOSITORY=$(info registry.baseImages.0.repository)
BASE_DIGEST=$(info registry.baseImages.0.digest)
echo "Stack Hub storage: $DATA_ENDPOINT; registry: $REGISTRY ($BASE_REPOSITORY:$(info registry.baseImages.0.tag) = $BASE_DIGEST)"

# --- 2. the data set, already on premises ------------------------------------------------
say "example data -> $DATA_ENDPOINT/$DATA_CONTAINER/$DATA_PREFIX"
"$SANDBOX" example-data "$DEMO_DIR/data" >/dev/null || fail "cannot write the example data"
AZURE_STORAGE_KEY=$STORAGE_KEY "$SANDBOX" upload --state-dir "$DEMO_DIR/azure" \
  --container "$DATA_CONTAINER" --prefix "$DATA_PREFIX" "$DEMO_DIR"/data/*.csv \
  || fail "cannot upload the example data"

# --- 3. CRDs and examples/, with the real kubectl -----------------------------------------
say "kubectl apply -k examples/ (overlay: $DEMO_DIR/manifests)"
mkdir -p "$DEMO_DIR/manifests"
EXAMPLES=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
  "$ROOT/examples" "$DEMO_DIR/manifests")
render "$TEMPLATES/kustomization.yaml.in" "$DEMO_DIR/manifests/kustomization.yaml"
# They were registered at start (field manager sandbox-kube-register); applying the same
# manifests server-side makes kubectl a co-owner, without conflicts.
k apply --server-side -f "$ROOT/crds" || fail "kubectl apply -f crds failed"
k apply -k "$DEMO_DIR/manifests" || fail "kubectl apply -k failed"

# --- 4. the controller ----------------------------------------------------------------------
say "edgetrain-controller"
# SSL_CERT_FILE: trust the sandbox CA (Azurite, registry), as the chart does for a private CA.
# Azure ML hands out `{account}.blob.localhost` and `localhost` URLs: the simulator's proxy is
# their DNS; ALL_PROXY, not HTTPS_PROXY, which the Kubernetes client would take as its own.
start controller env KUBECONFIG="$KUBECONFIG_FILE" POD_NAMESPACE=default POD_NAME=edgetrain-demo \
  SSL_CERT_FILE="$SANDBOX_CA" ALL_PROXY="http://$BLOB_PROXY" NO_PROXY=127.0.0.1 \
  RUST_LOG="${RUST_LOG:-info}" "$CONTROLLER" --metrics-addr 127.0.0.1:0 \
  --allowed-arm-endpoints "$AZURE_URL" --allowed-authorities "$AZURE_URL"
# Port 0 avoids racing for a free port; the controller logs the address it bound.
metrics_line() { grep -m 1 'serving /metrics' "$DEMO_DIR/controller.log"; }
wait_until controller 30 metrics_line
METRICS_URL=http://$(metrics_line | grep -oE '127\.0\.0\.1:[0-9]+' | head -n 1)
[ "$METRICS_URL" != http:// ] || fail "no metrics address in the controller log"
wait_until controller 30 curl -sf "$METRICS_URL/readyz"
echo "metrics: $METRICS_URL/metrics"

say "progress (one line per change; timeout ${TIMEOUT_SECONDS}s)"
k get edgetrain -n "$NAMESPACE" || fail "kubectl get edgetrain failed"
rc=0
python3 "$TEMPLATES/watch.py" --kubeconfig "$KUBECONFIG_FILE" --namespace "$NAMESPACE" \
  --azure-url "$AZURE_URL" --requests-at-ready "$DEMO_DIR/requests-at-ect-ready.json" \
  --timeout "$TIMEOUT_SECONDS" || rc=$?
case $rc in
  0) ;;
  2) fail "ect/$TARGET, tr/$RUN, mr/$RELEASE were not all Ready within ${TIMEOUT_SECONDS}s" ;;
  *) fail "a resource failed (see above)" ;;
esac

say "kubectl get edgetrain -n $NAMESPACE -o wide"
k get edgetrain -n "$NAMESPACE" -o wide || fail "kubectl get edgetrain failed"
say "metrics (edgetrain_*)"
curl -sf "$METRICS_URL/metrics" | grep '^edgetrain_' | grep -v '_bucket{' || fail "no edgetrain_ metrics"
say "Azure simulator inventory ($AZURE_URL/_sandbox/inventory)"
curl -sf "$AZURE_URL/_sandbox/inventory" | python3 -c '
import json, sys
for item in json.load(sys.stdin):
    print("%-10s %s" % (item.get("provisioning_state") or "-", item["id"]))
' || fail "cannot read the simulator inventory"

say "summary ($DEMO_DIR/summary.json)"
k get edgecomputetargets.edgetrain.dev,trainingruns.edgetrain.dev,modelreleases.edgetrain.dev \
  -n "$NAMESPACE" -o json >"$DEMO_DIR/resources.json" || fail "kubectl get -o json failed"
curl -sf "$AZURE_URL/_sandbox/requests" >"$DEMO_DIR/requests.json" \
  || fail "cannot read the simulator's request counts"
python3 "$TEMPLATES/summary.py" --resources "$DEMO_DIR/resources.json" --info "$INFO" \
  --requests "$DEMO_DIR/requests.json" --requests-at-ready "$DEMO_DIR/requests-at-ect-ready.json" \
  --kubeconfig "$KUBECONFIG_FILE" --namespace "$NAMESPACE" --release "$RELEASE" \
  --registry-password-file "$DEMO_DIR/registry-password" --out "$DEMO_DIR/summary.json" \
  || fail "cannot write the summary"

say "demo OK: ect/$TARGET, tr/$RUN and mr/$RELEASE are Ready"
if [ "${EDGETRAIN_DEMO_KEEP:-0}" = 1 ]; then
  echo "Still running. In another shell: export KUBECONFIG=$KUBECONFIG_FILE; kubectl get edgetrain -A"
  echo "Ctrl-C stops everything."
  trap 'exit 0' INT TERM
  wait
fi
