#!/usr/bin/env bash
# End-to-end test of scripts/demo.sh (run by `make test` and `make demo-test`, after
# `cargo build --bins`): in temporary state directories, so it never touches target/demo/ and
# can run next to a `make demo`.
#  1. the demo succeeds: exit 0; the EdgeComputeTarget, TrainingRun and ModelRelease all Ready;
#     progress lines as the phases change; summary.json with every field well-formed (digests
#     `sha256:` + 64 hex, metrics non-empty); the target Ready within 90 Azure requests (the
#     simulator's counts, tokens and metadata included); no generated secret (client secrets,
#     storage key, registry password) in any log or in the output; every process stopped;
#  2. the independent check of issue 12: a plain `docker-registry` on the kept registry
#     storage serves the image and artifact references of summary.json to `skopeo inspect`;
#  3. the demo fails cleanly: with a timeout shorter than the first long-running operation
#     (the demo config holds each for 1.5 s) it exits 1, prints the logs' tails, and stops
#     every process too;
#  4. a run killed with SIGKILL (its trap never runs) leaves its processes; the next run in the
#     same directory stops them and succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'stop_registry; rm -rf "$WORK"' EXIT

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
within_budget() { # within_budget COUNTS MAX: the simulator's total when the target was Ready
  local n
  n=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["total"])' "$1") \
    || { echo "  no request counts at Ready"; return 1; }
  [ "$n" -le "$2" ] || { echo "  $n requests to Ready"; return 1; }
}
no_secret_leaked() { # no secret from the generated config in the logs or the output
  local dir=$1 out=$2 s
  local count=0
  while read -r s; do
    [ -n "$s" ] || return 1
    count=$((count + 1))
    if grep -rqF -- "$s" "$dir"/*.log "$dir"/azure/*.log "$dir"/azure/registry/*.log "$out"; then
      echo "  secret found in logs"; return 1
    fi
  done < <(sed -n 's/^\(client_secret\|stack_hub_key\|password\) = "\(.*\)"$/\2/p' "$dir/azure.toml")
  # Two client secrets, the storage account key, the registry reader's password.
  [ "$count" -eq 4 ] || { echo "  expected 4 secrets in azure.toml, found $count"; return 1; }
}
summary_ok() { # summary.json has every field the issue asks for, well-formed
  python3 - "$1" <<'PY'
import json, re, sys
s = json.load(open(sys.argv[1]))
ref = re.compile(r"^127\.0\.0\.1:[0-9]+/[a-z0-9/._-]+@sha256:[0-9a-f]{64}$")
problems = []
kinds = {(r["kind"], r["name"]) for r in s["resources"]}
if kinds != {("EdgeComputeTarget", "factory-gpu-01"), ("TrainingRun", "churn-2026-11"),
             ("ModelRelease", "churn-2026-11")}:
    problems.append(f"resources {kinds}")
for r in s["resources"]:
    ready = [c for c in r["conditions"] if c["type"] == "Ready"]
    if not ready or ready[0]["status"] != "True":
        problems.append(f"{r['kind']} not Ready: {ready}")
if not s["metrics"] or not all(isinstance(v, (int, float)) for v in s["metrics"].values()):
    problems.append(f"metrics {s['metrics']}")
if not 0.5 < s["metrics"].get("accuracy", 0) <= 1:
    problems.append(f"accuracy {s['metrics'].get('accuracy')}: the example data is learnable")
for k in ("artifactRef", "imageRef"):
    if not ref.match(s[k]):
        problems.append(f"{k} {s[k]!r}")
if s["artifactRef"] == s["imageRef"]:
    problems.append("artifact and image are the same manifest")
if not re.match(r"^/subscriptions/.+/workspaces/churn-ws/models/churn/versions/[0-9]+$", s["modelId"]):
    problems.append(f"modelId {s['modelId']!r}")
for k in ("dataFingerprint", "codeDigest"):
    if not re.match(r"^(sha256:)?[0-9a-f]{64}$", s[k]):
        problems.append(f"{k} {s[k]!r}")
if not (isinstance(s["bytesUploaded"], int) and s["bytesUploaded"] > 0):
    problems.append(f"bytesUploaded {s['bytesUploaded']!r}")
import os
if not os.path.isdir(os.path.join(s["registryStorage"], "docker/registry/v2/repositories/models/churn")):
    problems.append(f"registryStorage {s['registryStorage']!r} has no models/churn")
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REGISTRY_PID=
stop_registry() { [ -z "$REGISTRY_PID" ] || { kill "$REGISTRY_PID" 2>/dev/null; wait "$REGISTRY_PID" 2>/dev/null; REGISTRY_PID=; } || true; }
kept_storage_serves() { # kept_storage_serves SUMMARY: plain docker-registry on the kept storage
  local summary=$1 port storage ref
  storage=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["registryStorage"])' "$summary")
  port=$(free_port)
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$storage" "$port" >"$WORK/registry.yml"
  docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  for key in imageRef artifactRef; do
    ref=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$summary" "$key")
    # Same repository and digest, on this registry's address.
    if ! skopeo inspect --tls-verify=false --raw "docker://127.0.0.1:$port/${ref#*/}" >"$WORK/$key.json"; then
      echo "  skopeo inspect of $key ${ref#*/} failed"; cat "$WORK/registry.log"; stop_registry; return 1
    fi
    # What it serves at the digest hashes to the digest.
    if [ "sha256:$(sha256sum <"$WORK/$key.json" | cut -d' ' -f1)" != "${ref#*@}" ]; then
      echo "  $key: content does not hash to ${ref#*@}"; stop_registry; return 1
    fi
  done
  skopeo inspect --tls-verify=false "docker://127.0.0.1:$port/$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["imageRef"].split("/", 1)[1])' "$summary")" \
    >"$WORK/image-inspect.json" || { echo "  skopeo inspect (config) of the image failed"; stop_registry; return 1; }
  stop_registry
}

echo "demo-test: success path"
before=$failures
OK_DIR=$WORK/ok
rc=0
EDGETRAIN_DEMO_DIR=$OK_DIR scripts/demo.sh >"$WORK/ok.out" 2>&1 || rc=$?
check "demo exits 0" test "$rc" -eq 0
check "progress: the target went through the VM to Ready" \
  has "$WORK/ok.out" '^[0-9:]{8}  ect/factory-gpu-01 .*Ready=True +Ready '
check "progress: the run was submitted before it succeeded" \
  has "$WORK/ok.out" '^[0-9:]{8}  tr/churn-2026-11 +Submitted +Ready=False +JobSubmitted'
check "progress: the run's data fingerprint" has "$WORK/ok.out" '^[0-9:]{8}  tr/churn-2026-11 .*\+fingerprint '
check "progress: the run's code digest" has "$WORK/ok.out" '^[0-9:]{8}  tr/churn-2026-11 .*\+code '
check "progress: the run's metrics" has "$WORK/ok.out" '^[0-9:]{8}  tr/churn-2026-11 .*\+metrics '
check "progress: the run succeeded" \
  has "$WORK/ok.out" '^[0-9:]{8}  tr/churn-2026-11 +Succeeded +Ready=True +Succeeded .*completed'
check "progress: the release registered and pushed" \
  has "$WORK/ok.out" '^[0-9:]{8}  mr/churn-2026-11 .*Ready=True +Released .*\+Pushed'
check "kubectl get edgetrain lists the target" has "$WORK/ok.out" '^(edgecomputetarget\.edgetrain\.dev/)?factory-gpu-01 +True +Ready +Running'
check "controller metrics shown for all three kinds" has "$WORK/ok.out" '^edgetrain_reconciles_total\{kind="ModelRelease"\} [1-9]'
check "simulator inventory shows the VM, Succeeded" \
  has "$WORK/ok.out" '^Succeeded +/subscriptions/.*/Microsoft\.Compute/virtualMachines/edgetrain-demo-factory-gpu-01-vm$'
check "simulator inventory shows the registered model version" \
  has "$WORK/ok.out" '/workspaces/churn-ws/models/churn/versions/1$'
check "summary shows the metrics" has "$WORK/ok.out" '^ +metrics  accuracy='
check "summary shows the image by digest" has "$WORK/ok.out" '^ +image  127\.0\.0\.1:[0-9]+/models/churn@sha256:[0-9a-f]{64}$'
check "summary shows the request counts" has "$WORK/ok.out" '^ +Azure requests  [0-9]+ \(GET [0-9]+.*; [0-9]+ to ect Ready$'
check "summary shows a skopeo command" has "$WORK/ok.out" '^  skopeo inspect --cert-dir .* docker://127\.0\.0\.1'
check "summary.json is complete and well-formed" summary_ok "$OK_DIR/summary.json"
check "the target was Ready within 90 Azure requests (tokens and metadata included)" \
  within_budget "$OK_DIR/requests-at-ect-ready.json" 90
check "no generated secret in logs or output" no_secret_leaked "$OK_DIR" "$WORK/ok.out"
check "every process stopped" all_stopped "$OK_DIR"
[ "$failures" -eq "$before" ] || { echo "--- demo output"; cat "$WORK/ok.out"; }

echo "demo-test: the kept registry storage, served by a plain docker-registry"
check "skopeo inspects the image and the artifact by digest" kept_storage_serves "$OK_DIR/summary.json"
check "the image has the base's layer and the model's" \
  python3 -c 'import json, sys; sys.exit(len(json.load(open(sys.argv[1]))["Layers"]) < 2)' "$WORK/image-inspect.json"

echo "demo-test: failure path"
before=$failures
BAD_DIR=$WORK/bad
rc=0
EDGETRAIN_DEMO_DIR=$BAD_DIR EDGETRAIN_DEMO_TIMEOUT=1s scripts/demo.sh >"$WORK/bad.out" 2>&1 || rc=$?
check "demo exits 1" test "$rc" -eq 1
check "says why" has "$WORK/bad.out" 'demo FAILED: ect/factory-gpu-01, tr/churn-2026-11, mr/churn-2026-11 were not all Ready within 1s'
check "shows the target's last conditions" has "$WORK/bad.out" '^  EdgeComputeTarget/factory-gpu-01 '
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
