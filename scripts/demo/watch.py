#!/usr/bin/env python3
"""Progress of the demo's three resources, like `kubectl get -w` over all of them.

Reads `kubectl get <kinds> -o json` twice a second (one `get -w` cannot watch several kinds) and
prints one line whenever a resource's phase, Ready status/reason, set of True conditions or
set of recorded milestones (data fingerprint, code digest, metrics, model version, artifact,
image) changes; what was gained is shown with a `+`. When the EdgeComputeTarget first is Ready, saves the simulator's request counts (the
budget to Ready). Exit 0 once every resource is Ready, 1 when one fails (Stalled, or a
TrainingRun that Failed or was Canceled; its conditions are printed), 2 on timeout, 3 when the
demo that started it is gone (killed with SIGKILL, its trap never ran).
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

KINDS = "edgecomputetargets.edgetrain.dev,trainingruns.edgetrain.dev,modelreleases.edgetrain.dev"
SHORT = {"EdgeComputeTarget": "ect", "TrainingRun": "tr", "ModelRelease": "mr"}
MESSAGE_WIDTH = 90
# Status fields whose first appearance is a step of the pattern, by the name a line shows.
MILESTONES = {
    "fingerprint": "dataFingerprint",
    "code": "codeDigest",
    "metrics": "metrics",
    "model": "modelVersion",
    "artifact": "artifactDigest",
    "image": "imageDigest",
}


def conditions(obj):
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def state(obj):
    """What a line is printed for: phase, Ready (status, reason), True conditions and
    milestones reached."""
    conds = conditions(obj)
    status = obj.get("status") or {}
    ready = conds.get("Ready", {})
    true = [t for t, c in conds.items() if c.get("status") == "True" and t != "Ready"]
    reached = [name for name, field in MILESTONES.items() if status.get(field)]
    return (status.get("phase", ""), ready.get("status", "Unknown"), ready.get("reason", ""),
            tuple(sorted(true)) + tuple(reached))


def failure(obj):
    """Why a resource will not become Ready without help, or None."""
    conds = conditions(obj)
    stalled = conds.get("Stalled", {})
    if stalled.get("status") == "True":
        return f"Stalled {stalled.get('reason')}: {stalled.get('message')}"
    phase = (obj.get("status") or {}).get("phase")
    if obj["kind"] == "TrainingRun" and phase in ("Failed", "Canceled"):
        ready = conds.get("Ready", {})
        return f"{phase} {ready.get('reason')}: {ready.get('message')}"
    return None


def line(obj, previous):
    phase, status, reason, true = state(obj)
    gained = [t for t in true if t not in (previous[3] if previous else ())]
    message = conditions(obj).get("Ready", {}).get("message", "")
    if len(message) > MESSAGE_WIDTH:
        message = message[: MESSAGE_WIDTH - 3] + "..."
    name = f"{SHORT[obj['kind']]}/{obj['metadata']['name']}"
    return "%s  %-24s %-10s Ready=%-7s %-24s %s%s" % (
        time.strftime("%H:%M:%S"),
        name,
        phase or "-",
        status,
        reason or "-",
        "".join(f"+{t} " for t in gained),
        message,
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--azure-url", required=True)
    p.add_argument("--requests-at-ready", required=True, help="file for the counts at ECT Ready")
    p.add_argument("--expect", type=int, default=3, help="resources that must all be Ready")
    p.add_argument("--timeout", type=float, required=True, help="seconds")
    args = p.parse_args()

    deadline = time.monotonic() + args.timeout
    parent = os.getppid()
    seen = {}
    ect_ready_saved = False
    while True:
        if os.getppid() != parent:
            return 3
        out = subprocess.run(
            ["kubectl", "--kubeconfig", args.kubeconfig, "get", KINDS, "-n", args.namespace, "-o", "json"],
            capture_output=True,
            text=True,
        )
        items = json.loads(out.stdout)["items"] if out.returncode == 0 else []
        for obj in items:
            key = (obj["kind"], obj["metadata"]["name"])
            now = state(obj)
            if seen.get(key) != now:
                print(line(obj, seen.get(key)), flush=True)
            if (
                obj["kind"] == "EdgeComputeTarget"
                and now[1] == "True"
                and not ect_ready_saved
            ):
                # Read at once: the budget is what it took to reach Ready.
                with urllib.request.urlopen(f"{args.azure_url}/_sandbox/requests") as r:
                    counts = r.read()
                with open(args.requests_at_ready, "wb") as f:
                    f.write(counts)
                ect_ready_saved = True
            seen[key] = now
        for obj in items:
            why = failure(obj)
            if why:
                print(f"{obj['kind']}/{obj['metadata']['name']} failed: {why}", flush=True)
                for c in conditions(obj).values():
                    print(f"  {c['type']}\t{c['status']}\t{c.get('reason', '')}\t{c.get('message', '')}")
                return 1
        if len(items) >= args.expect and all(s[1] == "True" for s in seen.values()):
            return 0
        if time.monotonic() > deadline:
            print(f"timed out after {args.timeout:.0f}s; last conditions:", flush=True)
            for obj in items:
                name = f"{obj['kind']}/{obj['metadata']['name']}"
                conds = conditions(obj).values()
                if not conds:
                    print(f"  {name} (none yet)")
                for c in conds:
                    print(f"  {name} {c['type']}\t{c['status']}\t{c.get('reason', '')}\t{c.get('message', '')}")
            return 2
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
